//! Fuzz the lumiq acquisition folder's metadata (`acquisition.json`): the input is the file,
//! in a folder that holds small valid frames under the names lumiq writes
//! (`luminescent.tiff`, `photograph.tiff`), so the reader gets past the JSON to the checks
//! of what it names. Invariants: no panic; an error names the folder or file.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lumiq::formats::acquisition_folder::read;
use lumiq::formats::tiff_io::write_u16;
use ndarray::Array2;

fn folder() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("lumiq-fuzz-acq-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let frame = Array2::from_shape_fn((16, 16), |(r, c)| 600 + (r * 16 + c) as u16);
        write_u16(&d.join("luminescent.tiff"), &frame).unwrap();
        write_u16(&d.join("photograph.tiff"), &frame).unwrap();
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = folder();
    std::fs::write(dir.join("acquisition.json"), data).unwrap();
    if let Err(e) = read(dir) {
        let msg = e.to_string();
        assert!(
            msg.contains(dir.to_str().unwrap()),
            "an error names the folder or file: {msg}"
        );
    }
});
