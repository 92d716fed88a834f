//! The lumiq acquisition folder: what the daemon archives for every acquisition and what
//! `lumiq process` reads. Specified in `docs/acquisition-folder.md`.
//!
//! ```text
//! <folder>/acquisition.json   metadata (schema "lumiq.acquisition", version 1)
//! <folder>/luminescent.tiff   raw counts, 16-bit greyscale, binned
//! <folder>/photograph.tiff    optional, 16-bit greyscale
//! ```
//!
//! Owns: reading and writing that layout, strict validation of the metadata (unknown keys
//! and wrong types are errors naming the key). Does not own processing.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::tiff_io::{read_u16, write_u16};
use super::FormatError;
use crate::acquisition::{
    AcquisitionMeta, AcquisitionSettings, PhotographMeta, RawAcquisition, SourceFormat,
};
use crate::process::roi::Roi;

pub const METADATA_FILE: &str = "acquisition.json";
pub const SCHEMA: &str = "lumiq.acquisition";
pub const SCHEMA_VERSION: u32 = 1;

/// What the frames of a folder are: a measurement, or raw material for calibration masters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameKind {
    #[default]
    Luminescent,
    Bias,
    Dark,
    Flat,
}

/// File names of the frames, relative to the folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameFiles {
    pub luminescent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photograph: Option<String>,
}

/// `acquisition.json`, as written on disk. The instrument's settings
/// ([`AcquisitionSettings`], from `exposure_s` to `shelf`) are listed here key by key rather
/// than flattened in: serde's `flatten` buffers the keys it forwards, so a wrong type in one
/// of them would be reported at the end of the object instead of at the key, and an unknown
/// key without the list of known ones. [`AcquisitionFile::settings`] and
/// [`AcquisitionFile::from_meta`] convert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcquisitionFile {
    pub schema: String,
    pub schema_version: u32,
    #[serde(default)]
    pub kind: FrameKind,
    pub instrument_id: String,
    pub acquired_at: DateTime<Utc>,
    pub exposure_s: f64,
    pub binning: u32,
    pub f_number: f64,
    pub fov_cm: f64,
    pub sensor_temp_c: f64,
    #[serde(default = "default_filter")]
    pub emission_filter: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shelf: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study_id: Option<String>,
    #[serde(default)]
    pub subject_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injection_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<String>,
    pub frames: FrameFiles,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photograph: Option<PhotographMeta>,
    /// Regions drawn by a person, in the luminescent frame's pixel grid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rois: Vec<Roi>,
}

fn default_filter() -> String {
    "open".into()
}

impl AcquisitionFile {
    /// The instrument's settings the file records.
    pub fn settings(&self) -> AcquisitionSettings {
        AcquisitionSettings {
            exposure_s: self.exposure_s,
            binning: self.binning,
            f_number: self.f_number,
            fov_cm: self.fov_cm,
            sensor_temp_c: self.sensor_temp_c,
            emission_filter: self.emission_filter.clone(),
            shelf: self.shelf.clone(),
        }
    }

    pub fn meta(&self) -> AcquisitionMeta {
        AcquisitionMeta {
            instrument_id: self.instrument_id.clone(),
            acquired_at: self.acquired_at,
            settings: self.settings(),
            study_id: self.study_id.clone(),
            subject_ids: self.subject_ids.clone(),
            injection_time: self.injection_time,
            view: self.view.clone(),
            photograph: self.photograph.clone(),
        }
    }

    pub fn from_meta(
        meta: &AcquisitionMeta,
        kind: FrameKind,
        has_photograph: bool,
        rois: Vec<Roi>,
    ) -> Self {
        let AcquisitionSettings {
            exposure_s,
            binning,
            f_number,
            fov_cm,
            sensor_temp_c,
            emission_filter,
            shelf,
        } = meta.settings.clone();
        AcquisitionFile {
            schema: SCHEMA.into(),
            schema_version: SCHEMA_VERSION,
            kind,
            instrument_id: meta.instrument_id.clone(),
            acquired_at: meta.acquired_at,
            exposure_s,
            binning,
            f_number,
            fov_cm,
            sensor_temp_c,
            emission_filter,
            shelf,
            study_id: meta.study_id.clone(),
            subject_ids: meta.subject_ids.clone(),
            injection_time: meta.injection_time,
            view: meta.view.clone(),
            frames: FrameFiles {
                luminescent: "luminescent.tiff".into(),
                photograph: has_photograph.then(|| "photograph.tiff".into()),
            },
            photograph: if has_photograph {
                meta.photograph.clone()
            } else {
                None
            },
            rois,
        }
    }

    /// Check values a parser cannot: ranges and consistency.
    fn validate(&self, path: &Path) -> Result<(), FormatError> {
        if self.schema != SCHEMA {
            return Err(FormatError::bad_field(
                path,
                "schema",
                format!("is {:?}", self.schema),
                format!("expected {SCHEMA:?}: is this a lumiq acquisition folder?"),
            ));
        }
        if self.schema_version != SCHEMA_VERSION {
            return Err(FormatError::bad_field(
                path,
                "schema_version",
                format!("is {}", self.schema_version),
                format!("this lumiq reads version {SCHEMA_VERSION}; upgrade lumiq"),
            ));
        }
        let positive = |name: &str, v: f64, unit: &str| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(FormatError::bad_field(
                    path,
                    name,
                    format!("is {v}"),
                    format!("must be a positive number of {unit}"),
                ))
            }
        };
        if self.kind != FrameKind::Bias {
            positive("exposure_s", self.exposure_s, "seconds")?;
        }
        positive("f_number", self.f_number, "f-stops")?;
        positive("fov_cm", self.fov_cm, "cm")?;
        if !(1..=64).contains(&self.binning) {
            return Err(FormatError::bad_field(
                path,
                "binning",
                format!("is {}", self.binning),
                "must be an integer from 1 to 64",
            ));
        }
        if !self.sensor_temp_c.is_finite() {
            return Err(FormatError::bad_field(
                path,
                "sensor_temp_c",
                "is not a number",
                "record the CCD temperature in °C",
            ));
        }
        Ok(())
    }
}

/// A folder read from disk.
#[derive(Debug, Clone)]
pub struct AcquisitionFolder {
    pub path: PathBuf,
    pub file: AcquisitionFile,
    pub acquisition: RawAcquisition,
}

/// Marks an acquisition folder as an image of the reference light source taken for the
/// daily QC (the daemon's `lumiq acquire --qc`): its result is in the QC history, and it is
/// not a measurement of animals, so `lumiq trend` and `lumiq batch` leave it out.
pub const QC_MARK: &str = ".qc-acquisition";

/// Whether `dir` is an image of the reference source taken for the QC ([`QC_MARK`]).
pub fn is_qc_acquisition(dir: &Path) -> bool {
    dir.join(QC_MARK).is_file()
}

/// Whether `dir` looks like a lumiq acquisition folder.
pub fn is_acquisition_folder(dir: &Path) -> bool {
    dir.join(METADATA_FILE).is_file()
}

/// Read and validate a lumiq acquisition folder.
pub fn read(dir: &Path) -> Result<AcquisitionFolder, FormatError> {
    let meta_path = dir.join(METADATA_FILE);
    let text = std::fs::read_to_string(&meta_path).map_err(|e| FormatError::io(&meta_path, e))?;
    let file: AcquisitionFile = serde_json::from_str(&text).map_err(|e| {
        FormatError::invalid(
            &meta_path,
            format!("invalid metadata: {e}"),
            "fix the field named above (see docs/acquisition-folder.md)",
        )
    })?;
    file.validate(&meta_path)?;
    let lum = read_u16(&dir.join(&file.frames.luminescent))?;
    let photo = match &file.frames.photograph {
        Some(name) => Some(read_u16(&dir.join(name))?),
        None => None,
    };
    let acquisition = RawAcquisition {
        meta: file.meta(),
        luminescent_adu: lum,
        photograph_adu: photo,
        imported_rois: file.rois.clone(),
        source: SourceFormat::LumiqFolder,
    };
    Ok(AcquisitionFolder {
        path: dir.to_path_buf(),
        file,
        acquisition,
    })
}

/// Write a folder (frames first, metadata last, so a folder with metadata is complete).
pub fn write(dir: &Path, acq: &RawAcquisition, kind: FrameKind) -> Result<(), FormatError> {
    std::fs::create_dir_all(dir).map_err(|e| FormatError::io(dir, e))?;
    let file = AcquisitionFile::from_meta(
        &acq.meta,
        kind,
        acq.photograph_adu.is_some(),
        acq.imported_rois.clone(),
    );
    write_u16(&dir.join(&file.frames.luminescent), &acq.luminescent_adu)?;
    if let (Some(p), Some(name)) = (&acq.photograph_adu, &file.frames.photograph) {
        write_u16(&dir.join(name), p)?;
    }
    let meta_path = dir.join(METADATA_FILE);
    let json = serde_json::to_string_pretty(&file).expect("metadata serialises");
    std::fs::write(&meta_path, json).map_err(|e| FormatError::io(&meta_path, e))
}
