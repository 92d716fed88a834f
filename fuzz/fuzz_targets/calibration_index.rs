//! Fuzz the calibration set's index (`calibration.toml`): parse, then the checks a set's
//! loading makes of its values. Invariants: no panic; an index that parses and passes its
//! checks writes back (`to_toml`) to text that parses to the same index.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use lumiq::formats::calibration_set::CalibrationIndex;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("calibration.toml");
    let Ok(ix) = CalibrationIndex::parse(text, path) else {
        return;
    };
    if ix.validate(path).is_ok() {
        let again = CalibrationIndex::parse(&ix.to_toml(), path).expect("written index parses");
        assert_eq!(again, ix);
    }
});
