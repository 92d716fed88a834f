//! [`CalibrateError`]: why a calibration set could not be built. Every message names the
//! folder, file or value and the fix.

use std::path::PathBuf;

use crate::errors::{Fault, FileError};
use crate::formats::FormatError;

/// Why [`super::build_set`] failed. Sizes are written width × height, in pixels of the
/// frames' binning.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error("no input folders; pass lumiq acquisition folders of kind bias, dark or flat")]
    NoInputs,
    #[error("clip sigma is {0}; use a positive value (3 is usual)")]
    ClipSigma(f64),
    /// A file or folder could not be read, listed or written.
    #[error(transparent)]
    Io(#[from] FileError),
    #[error("{}: invalid metadata: {error}; fix the field named above (see docs/acquisition-folder.md)", path.display())]
    Metadata {
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error("{}: neither a lumiq acquisition folder (no {}) nor a folder holding some; pass acquisition folders of kind bias, dark or flat", .0.display(), crate::formats::acquisition_folder::METADATA_FILE)]
    NotAcquisitionFolders(PathBuf),
    #[error("{}: is a luminescent acquisition, not a calibration frame; pass only folders of kind bias, dark or flat", .0.display())]
    Luminescent(PathBuf),
    #[error("{}: frames from instrument {found:?}, but the set is for {expected:?}; calibrate each instrument with its own frames", path.display())]
    FramesOfAnotherInstrument {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{}: the set in this folder is for instrument {found:?}, not {expected:?}; write the new set to another folder", index.display())]
    SetOfAnotherInstrument {
        index: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{}: frame is {}x{} but {} is {}x{}; frames of one binning must share a size", path.display(), size.0, size.1, first.display(), first_size.0, first_size.1)]
    FrameSize {
        path: PathBuf,
        size: (usize, usize),
        first: PathBuf,
        first_size: (usize, usize),
    },
    #[error("{}: {kind} is {}x{} but the bias of binning {binning} is {}x{}; take bias and {kinds} with the same camera settings", path.display(), size.0, size.1, bias_size.0, bias_size.1)]
    BiasSize {
        path: PathBuf,
        /// "dark", "flat", ...
        kind: &'static str,
        /// "darks", "flats", ...
        kinds: &'static str,
        size: (usize, usize),
        binning: u32,
        bias_size: (usize, usize),
    },
    #[error("binning {binning}: the flat is {}x{} but the dark is {}x{}; take them with the same camera settings", flat.0, flat.1, dark.0, dark.1)]
    FlatDarkSize {
        binning: u32,
        flat: (usize, usize),
        dark: (usize, usize),
    },
    #[error("{what} at binning {binning} need a master bias of that binning, and neither the inputs nor the set in {} have one; add bias frames (zero-second, shutter closed) at binning {binning}", out.display())]
    NoBias {
        /// "darks" or "flats".
        what: &'static str,
        binning: u32,
        out: PathBuf,
    },
    #[error("{}: the flat frames carry no signal at the centre of the field after bias subtraction; expose the flats to a uniform light source (a few thousand ADU)", .0.display())]
    NoFlatSignal(PathBuf),
    #[error("cannot measure gain and read noise: photon transfer needs two flat frames and two bias frames of one binning; add them, or give the gain and read noise in the calibrate options")]
    NoGain,
    #[error("the calibration set just written does not load")]
    WrittenSetDoesNotLoad(#[source] FormatError),
    /// An input frame or metadata file, a master or the index, read or written.
    #[error(transparent)]
    Format(#[from] FormatError),
}

impl CalibrateError {
    /// Whether the frames, options or existing set are wrong, or the disk failed.
    pub fn fault(&self) -> Fault {
        match self {
            CalibrateError::Io(e) => e.fault(),
            CalibrateError::Format(e) | CalibrateError::WrittenSetDoesNotLoad(e) => e.fault(),
            _ => Fault::Input,
        }
    }
}
