//! IVIS (Living Image) click folders: reading the years of acquisitions labs already own,
//! and writing the same layout (for tests, the simulator and exports).
//!
//! ```text
//! <folder>/ClickInfo.txt           settings, camera calibration, user labels (Latin-1, CRLF)
//! <folder>/AnalyzedClickInfo.txt   image sections, labels and `*** ROIs:` after analysis
//! <folder>/luminescent.TIF         raw counts, 16-bit, binned
//! <folder>/photograph.TIF          optional, 16-bit, usually a finer binning
//! <folder>/readbias.TIF            read bias × its Data Multiplier
//! <folder>/background.TIF          dark charge × its Data Multiplier (may be unusable)
//! ```
//!
//! Specified, with every assumption lumiq makes, in `docs/ivis-click-folder.md`. The camera
//! block is only in ClickInfo.txt; labels and ROIs are in AnalyzedClickInfo.txt: both are
//! read and merged.
//!
//! - `click_info`: the text grammar and the merge of the two files;
//! - `camera`: the camera block as calibration (shelf, C-ccd, flat polynomial, CCDMap);
//! - `read`: a folder → [`RawAcquisition`] + [`FrameCalibration`] + flags;
//! - `write`: the same layout written (simulator, tests, exports).
//!
//! Owns: parsing ClickInfo text ([`ClickInfo`]: `*** <section>:<TAB>value` lines,
//! `Key:<TAB>Value` fields, `#` comments), turning a folder into a [`RawAcquisition`] plus the
//! [`FrameCalibration`] its own files describe (bias, dark, radial flat-field polynomial,
//! C-ccd coefficient, defect map) with [`QualityFlag`]s for what is missing or assumed, and
//! writing a folder in the same layout ([`write_click_folder`]).
//!
//! Does not own: applying any of it (that is [`crate::process`]), nor Living Image's own
//! corrections: the luminescent frame is always the raw counts as stored, whatever the
//! `Cosmic/Flat Field/Background Corrected` flags say (those describe what Living Image
//! applies on display, not the file).

mod camera;
mod click_info;
mod read;
#[cfg(test)]
mod tests;
mod write;

use std::fmt::Display;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};
use ndarray::Array2;

use super::tiff_io::{read_u16, write_u16};
use super::{sha256_file, FormatError};
use crate::acquisition::{
    AcquisitionMeta, AcquisitionSettings, PhotographMeta, RawAcquisition, SourceFormat,
};
use crate::process::correct::RadialFlat;
use crate::process::roi::{Roi, RoiShape};
use crate::process::{FrameCalibration, QualityFlag, SensorFacts};

use camera::*;
use click_info::*;
use read::*;
#[cfg(test)]
use write::*;

pub use click_info::ClickInfo;
pub use read::{read_click_folder, read_click_folder_with, ReadOptions};
pub use write::{write_background_click, write_click_folder, IvisFolderSpec};

pub(super) const CLICK_INFO: &str = "ClickInfo.txt";
pub(super) const ANALYZED_CLICK_INFO: &str = "AnalyzedClickInfo.txt";

pub(super) const LUMINESCENT: &str = "luminescent image";
pub(super) const PHOTOGRAPH: &str = "photographic image";
pub(super) const READBIAS: &str = "readbias image";
pub(super) const DARKCHARGE: &str = "darkcharge image";
pub(super) const CAMERA: &str = "Camera System Info";
pub(super) const USER_LABELS: &str = "User Label Name Set";
pub(super) const ROIS: &str = "ROIs";

// Design: gain, read noise and pixel pitch are not in ClickInfo. These are typical of the
// deep-cooled 2048² back-thinned CCDs in IVIS systems (and are the simulated instrument's);
// every record read this way carries `QualityFlag::NoiseModelAssumed`.
pub(super) const ASSUMED_GAIN_E_PER_ADU: f64 = 1.5;
pub(super) const ASSUMED_READ_NOISE_E: f64 = 5.0;
pub(super) const ASSUMED_PIXEL_PITCH_UM: f64 = 13.5;
/// Living Image states no uncertainty for C-ccd; 5 % (1σ) is an assumption of the order of
/// an absolute radiance calibration against a traceable source.
pub(super) const ASSUMED_COEFFICIENT_REL_UNCERTAINTY: f64 = 0.05;
/// Used (with a warning) when `CCD Saturation Level` is absent: the 16-bit ceiling.
pub(super) const FALLBACK_SATURATION_ADU: f64 = 65535.0;
/// A dark frame Living Image could not make is written with every pixel at this value.
pub(super) const UNUSABLE_DARK_ADU: u16 = 65534;
pub(super) const FOV_TOLERANCE_CM: f64 = 0.01;
pub(super) const F_NUMBER_TOLERANCE: f64 = 0.01;
/// A flat-field polynomial is implausible (flagged, still used) when it rises more than this
/// (relative) above its on-axis value anywhere in the frame: vignetting only takes light away.
pub(super) const FLAT_PEAK_TOLERANCE: f64 = 0.05;
/// ... or falls below this fraction of its on-axis value (real shelf D f/1 reaches 0.21 in
/// the corners of a 22.4 cm field) ...
pub(super) const FLAT_MIN_RELATIVE: f64 = 0.1;
/// ... or its on-axis value k0 lies outside this range (real ones are 0.99–1.02).
pub(super) const FLAT_AXIS_RANGE: (f64, f64) = (0.8, 1.25);

/// A click folder read from disk: the raw acquisition and the calibration its files carry.
#[derive(Debug, Clone)]
pub struct IvisFolder {
    pub path: PathBuf,
    /// `source` is [`SourceFormat::IvisClickFolder`].
    pub acquisition: RawAcquisition,
    pub calibration: FrameCalibration,
    pub flags: Vec<QualityFlag>,
    /// (file name, sha256) of every file used, for the record's provenance.
    pub files: Vec<(String, String)>,
    /// true when AnalyzedClickInfo.txt was read.
    pub analyzed: bool,
}

/// Whether `dir` holds a `ClickInfo.txt` or an `AnalyzedClickInfo.txt` (any letter case).
pub fn is_click_folder(dir: &Path) -> bool {
    locate(dir, ANALYZED_CLICK_INFO).is_file() || locate(dir, CLICK_INFO).is_file()
}

/// How FOVs and f-numbers are printed in keys: `22.4`, `4`, `12.5`, `1`.
pub(super) fn num(v: f64) -> String {
    format!("{v}")
}

/// The file named `name` in `dir`, matched without regard to letter case when the exact
/// name is absent (Living Image writes `.TIF`, copies through other systems may not).
/// A Windows path in a section line is reduced to its file name.
pub(super) fn locate(dir: &Path, name: &str) -> PathBuf {
    let name = name.rsplit(['\\', '/']).next().unwrap_or(name).trim();
    let exact = dir.join(name);
    if exact.is_file() {
        return exact;
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
            {
                return entry.path();
            }
        }
    }
    exact
}
