//! Fuzz the TIFF reader (16-bit frames and 32-bit float maps). Half the inputs are raw
//! bytes; the other half patch a small valid TIFF (16-bit or float, chosen by the first
//! byte) at offsets the input gives (pairs of a 16-bit offset and a byte), which reaches
//! the tags and strips behind a valid header. Invariants: no panic; a frame read has
//! as many pixels as its dimensions say and is not empty; an error names the file.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lumiq::formats::tiff_io::{read_f32, read_u16, write_f32, write_u16};
use ndarray::Array2;

fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("lumiq-fuzz-tiff-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

/// Valid 12×10 TIFFs: (16-bit, float).
fn valid() -> &'static (Vec<u8>, Vec<u8>) {
    static V: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    V.get_or_init(|| {
        let p = dir().join("valid.tif");
        write_u16(&p, &Array2::from_shape_fn((10, 12), |(r, c)| (r * 12 + c) as u16)).unwrap();
        let u = std::fs::read(&p).unwrap();
        write_f32(&p, &Array2::from_shape_fn((10, 12), |(r, c)| (r + c) as f32 * 0.5)).unwrap();
        let f = std::fs::read(&p).unwrap();
        (u, f)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let (u, f) = valid();
        let mut b = if mode & 2 == 0 { u.clone() } else { f.clone() };
        for p in rest.chunks_exact(3) {
            let at = u16::from_le_bytes([p[0], p[1]]) as usize;
            if let Some(x) = b.get_mut(at) {
                *x = p[2];
            }
        }
        b
    };
    let path = dir().join("input.tif");
    std::fs::write(&path, &bytes).unwrap();
    let named = |e: &dyn std::fmt::Display| {
        let msg = e.to_string();
        assert!(msg.contains(path.to_str().unwrap()), "error names the file: {msg}");
    };
    match read_u16(&path) {
        Ok(a) => assert!(!a.is_empty() && a.len() == a.nrows() * a.ncols()),
        Err(e) => named(&e),
    }
    match read_f32(&path) {
        Ok(a) => assert!(!a.is_empty() && a.len() == a.nrows() * a.ncols()),
        Err(e) => named(&e),
    }
});
