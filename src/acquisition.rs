//! The data model of one acquisition as it arrives from an instrument: settings, ids,
//! raw frames and imported regions of interest. (An acquisition is the data; making one
//! on the devices is [`crate::acquire`].)
//!
//! Owns: plain values, no I/O. Readers in [`crate::formats`] build these from lumiq
//! acquisition folders and IVIS click folders; [`crate::process`] consumes them.

use chrono::{DateTime, Utc};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::process::roi::Roi;

/// How the instrument was set for one frame: exposure, binning, optics, sensor
/// temperature, filter and shelf. Built once per acquisition (by the sequence, a reader or
/// the simulator) and shared: [`AcquisitionMeta`] holds it, and the measurement record's
/// `acquisition` carries it as it is (`record::AcquisitionInfo`), field for field, in this
/// order. `acquisition.json` lists the same keys, read strictly key by key
/// (`formats::acquisition_folder::AcquisitionFile`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcquisitionSettings {
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
    /// Stage shelf (A–D); null (absent in `acquisition.json`) when not known.
    pub shelf: Option<String>,
}

/// Settings and identities of one luminescent acquisition.
///
/// Its settings read as its own fields (`meta.exposure_s`): it dereferences to
/// [`AcquisitionSettings`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcquisitionMeta {
    /// Instrument that took the frames (a stable id, used in topics and records).
    pub instrument_id: String,
    /// Start of the luminescent exposure, UTC.
    pub acquired_at: DateTime<Utc>,
    /// How the instrument was set (serialised in place, as flat fields).
    #[serde(flatten)]
    pub settings: AcquisitionSettings,
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

impl std::ops::Deref for AcquisitionMeta {
    type Target = AcquisitionSettings;
    fn deref(&self) -> &AcquisitionSettings {
        &self.settings
    }
}

impl std::ops::DerefMut for AcquisitionMeta {
    fn deref_mut(&mut self) -> &mut AcquisitionSettings {
        &mut self.settings
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_serialise_as_flat_fields_in_place() {
        let meta = AcquisitionMeta {
            instrument_id: "sim".into(),
            acquired_at: "2026-03-02T09:00:00Z".parse().unwrap(),
            // The synthetic record's settings: 60 s, binning 8, f/1, 22.4 cm, shelf D.
            settings: crate::delivery::synthetic::record("sim", 1)
                .acquisition
                .settings,
            study_id: None,
            subject_ids: vec!["M1".into()],
            injection_time: None,
            view: None,
            photograph: None,
        };
        let json = serde_json::to_string(&meta).unwrap();
        assert_eq!(
            json,
            r#"{"instrument_id":"sim","acquired_at":"2026-03-02T09:00:00Z","exposure_s":60.0,"binning":8,"f_number":1.0,"fov_cm":22.4,"sensor_temp_c":-90.0,"emission_filter":"open","shelf":"D","study_id":null,"subject_ids":["M1"],"injection_time":null,"view":null,"photograph":null}"#
        );
        let back: AcquisitionMeta = serde_json::from_str(&json).unwrap();
        assert_eq!(back, meta);
        assert_eq!(back.exposure_s, 60.0);
    }
}
