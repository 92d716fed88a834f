//! Fuzz the IVIS click-folder reader (`ClickInfo.txt` and `AnalyzedClickInfo.txt`, read
//! together as Living Image writes them). The input is split at its first NUL byte into
//! the two files, written into a folder that also holds small valid frames under the names
//! real folders use (`luminescent.TIF`, `photograph.TIF`, `readbias.TIF`,
//! `background.TIF`), so the reader gets past the text to the frames it names.
//! Invariants: no panic; an error names the folder or file it is about.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lumiq::formats::ivis::read_click_folder;
use lumiq::formats::tiff_io::write_u16;
use ndarray::Array2;

fn folder() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("lumiq-fuzz-ivis-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let frame = Array2::from_shape_fn((16, 16), |(r, c)| 600 + (r * 16 + c) as u16);
        for name in ["luminescent.TIF", "photograph.TIF", "readbias.TIF", "background.TIF"] {
            write_u16(&d.join(name), &frame).unwrap();
        }
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = folder();
    let (click, analyzed) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    std::fs::write(dir.join("ClickInfo.txt"), click).unwrap();
    match analyzed {
        Some(a) => std::fs::write(dir.join("AnalyzedClickInfo.txt"), a).unwrap(),
        None => {
            let _ = std::fs::remove_file(dir.join("AnalyzedClickInfo.txt"));
        }
    }
    if let Err(e) = read_click_folder(dir) {
        let msg = e.to_string();
        assert!(
            msg.contains(dir.to_str().unwrap()),
            "an error names the folder or file: {msg}"
        );
    }
});
