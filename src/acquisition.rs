//! The data model of one acquisition as it arrives from an instrument: settings, ids,
//! raw frames and imported regions of interest.
//!
//! Owns: plain values, no I/O. Readers in [`crate::formats`] build these from lumiq
//! acquisition folders and IVIS click folders; [`crate::process`] consumes them.

use chrono::{DateTime, Utc};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::process::roi::Roi;

/// Settings and identities of one luminescent acquisition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcquisitionMeta {
    /// Instrument that took the frames (a stable id, used in topics and records).
    pub instrument_id: String,
    /// Start of the luminescent exposure, UTC.
    pub acquired_at: DateTime<Utc>,
    /// Luminescent exposure time in seconds.
    pub exposure_s: f64,
    /// On-chip binning factor of the luminescent frame (1, 2, 4, 8, 16).
    pub binning: u32,
    /// Lens f-number (1, 2, 4, 8, 16).
    pub f_number: f64,
    /// Field of view at the object plane, across the image width, in cm.
    pub fov_cm: f64,
    /// Measured CCD temperature during the exposure, °C.
    pub sensor_temp_c: f64,
    /// Emission filter name ("open" when none).
    pub emission_filter: String,
    /// Stage shelf (A–D) when known.
    pub shelf: Option<String>,
    /// Study identifier from the LIMS or the user labels.
    pub study_id: Option<String>,
    /// Subject (animal) ids, in left-to-right order on the stage.
    pub subject_ids: Vec<String>,
    /// Luciferin injection time, UTC, when recorded.
    pub injection_time: Option<DateTime<Utc>>,
    /// Free-text view ("dorsal", "ventral", ...).
    pub view: Option<String>,
    /// Photograph settings when a photograph was taken.
    pub photograph: Option<PhotographMeta>,
}

/// Settings of the grey-scale photograph taken with the LED on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhotographMeta {
    pub exposure_s: f64,
    pub binning: u32,
}

/// Where an acquisition was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceFormat {
    /// A lumiq acquisition folder (`acquisition.json` + 16-bit TIFF frames).
    LumiqFolder,
    /// A Living Image (IVIS) click folder.
    IvisClickFolder,
}

/// One acquisition with its raw frames, as read from disk, before any correction.
#[derive(Debug, Clone)]
pub struct RawAcquisition {
    pub meta: AcquisitionMeta,
    /// Raw luminescent counts (ADU), binned, indexed `[row (y), column (x)]`.
    pub luminescent_adu: Array2<u16>,
    /// Raw photograph counts (ADU), possibly at a finer binning than the luminescent frame.
    pub photograph_adu: Option<Array2<u16>>,
    /// Regions drawn by a user (IVIS ROIs), already in the luminescent frame's pixel grid.
    pub imported_rois: Vec<Roi>,
    pub source: SourceFormat,
}
