//! The calibration set: one folder holding a TOML index (`calibration.toml`) and 32-bit
//! float TIFF masters — bias, dark and flat per binning — plus the bad-pixel map, the
//! radiance coefficients per (field of view, f-number) and the sensor's facts. Specified in
//! `docs/calibration-set.md`.
//!
//! ```text
//! <set>/calibration.toml             index (schema "lumiq.calibration", version 1)
//! <set>/bias_b8.tiff                 master bias, ADU
//! <set>/dark_b8_60s_-90.0C.tiff      dark charge for 60 s with the bias removed, ADU
//! <set>/flat_b8_fov22.4_f1_open.tiff flat field, 1.0 on the optical axis
//! ```
//!
//! Owns: parsing and validating the index (unknown keys are errors naming the key), and
//! the selection rules that turn the set into one frame's
//! [`FrameCalibration`](crate::process::FrameCalibration) with the provenance of every file
//! used. [`CalibrationSet::load`] checks the index and that every file it names exists; the
//! masters themselves are read lazily, on the first frame that needs them, and kept (with
//! their SHA-256) for the life of the `CalibrationSet`: load the set again to pick up a
//! rebuilt one. Does not own building masters (see [`crate::calibrate`]).
//!
//! Files:
//! - `index.rs`: the index's schema (`calibration.toml` as written on disk), its parsing,
//!   validation and TOML text.
//! - `set.rs`: a loaded set: loading and checking the folder, the lazy master cache.
//! - `select.rs`: the selection and scaling rules for one frame, with provenance.
//! - `tests.rs`: unit tests.

mod index;
mod select;
mod set;
#[cfg(test)]
mod tests;

pub use index::{
    BadPixelTable, BiasEntry, BinnedBadPixels, CalibrationIndex, CoefficientEntry, DarkEntry,
    DarkRules, FlatEntry, SensorSection,
};
pub use select::CalibrationItem;
pub use set::CalibrationSet;

pub const INDEX_FILE: &str = "calibration.toml";
pub const SCHEMA: &str = "lumiq.calibration";
pub const SCHEMA_VERSION: u32 = 1;
/// A flat or coefficient matches a frame's field of view within this many cm.
pub const FOV_TOLERANCE_CM: f64 = 0.05;
/// A flat or coefficient matches a frame's f-number within this many f-stops.
pub const F_NUMBER_TOLERANCE: f64 = 0.01;

fn feq(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

/// Exposure ratio ≥ 1 between two exposures.
fn exposure_ratio(a: f64, b: f64) -> f64 {
    if a >= b {
        a / b
    } else {
        b / a
    }
}

fn list<T: std::fmt::Display>(v: impl IntoIterator<Item = T>) -> String {
    let s: Vec<String> = v.into_iter().map(|x| x.to_string()).collect();
    if s.is_empty() {
        "none".into()
    } else {
        s.join(", ")
    }
}

/// Filter names compare case-insensitively, ignoring surrounding blanks.
fn same_filter(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}
