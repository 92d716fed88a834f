//! The quantification job: read an acquisition (lumiq folder or IVIS click folder) and
//! its calibration, quantify it, build the record, and write the outputs. A job is always
//! this, one acquisition quantified end to end; the daemon runs one per capture.
//!
//! Owns: the I/O around the pure core for one acquisition — what `lumiq process` runs
//! and what the daemon will run for every acquisition. Errors name the file and the fix.

use std::path::{Path, PathBuf};

use chrono::Utc;
use uuid::Uuid;

use crate::acquisition::RawAcquisition;
use crate::errors::{Fault, FileError};
use crate::formats::FormatError;
use crate::formats::{acquisition_folder, calibration_set::CalibrationSet, ivis, tiff_io};
use crate::overlay::{self, OverlayError, OverlayInput, OverlayRegion};
use crate::process::{
    quantify_with, FrameCalibration, FrameGeometry, ProcessError, ProcessingParams, QualityFlag,
    Quantification, RegionSource, SegmentationModel,
};
use crate::record::{
    self, CalibrationInfo, CalibrationItemRecord, CoefficientRecord, MeasurementRecord,
    RecordContext,
};

/// Environment variable naming the calibration set to use when none is given.
pub const CALIBRATION_ENV: &str = "LUMIQ_CALIBRATION_DIR";

/// Why one acquisition could not be loaded, quantified or written. Each message names the
/// folder or file and the fix; [`JobError::fault`] tells a bad input from a failing disk.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{}: not a folder; pass a lumiq acquisition folder (with acquisition.json) or an IVIS click folder (with ClickInfo.txt)", .0.display())]
    NotAFolder(PathBuf),
    #[error("{}: neither a lumiq acquisition folder (no acquisition.json) nor an IVIS click folder (no ClickInfo.txt or AnalyzedClickInfo.txt)", .0.display())]
    UnknownFolder(PathBuf),
    #[error("no calibration set for instrument {instrument_id:?}: pass --calibration DIR, set {CALIBRATION_ENV}, or put the set in {}", default.display())]
    NoCalibration {
        instrument_id: String,
        /// Where the set was looked for last: `calibration/<instrument_id>`.
        default: PathBuf,
    },
    #[error("{}: the background-click library is not a folder; pass the folder holding the lab's BKG… clicks to --ivis-backgrounds", .0.display())]
    BackgroundsNotAFolder(PathBuf),
    /// A file of the acquisition or its calibration, read or written.
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("cannot quantify the luminescent frame")]
    Quantify(#[source] ProcessError),
    /// An output could not be written (e.g. "cannot write the record").
    #[error(transparent)]
    Write(#[from] FileError),
    #[error(transparent)]
    Overlay(#[from] OverlayError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

impl JobError {
    /// Whether the acquisition (or its calibration) is unusable as it is, or the disk failed
    /// under it: an output that cannot be written, a file that cannot be read for another
    /// reason than its absence.
    pub fn fault(&self) -> Fault {
        match self {
            JobError::Format(e) => e.fault(),
            JobError::Write(_) | JobError::Overlay(_) => Fault::Storage,
            JobError::NotAFolder(_)
            | JobError::UnknownFolder(_)
            | JobError::NoCalibration { .. }
            | JobError::BackgroundsNotAFolder(_)
            | JobError::Quantify(_)
            | JobError::Json(_) => Fault::Input,
        }
    }
}

/// An acquisition ready for the core, with everything the record needs to say about it.
pub struct LoadedInput {
    pub acquisition: RawAcquisition,
    pub calibration: FrameCalibration,
    pub calibration_info: CalibrationInfo,
    pub input_flags: Vec<QualityFlag>,
}

/// Where to find the calibration set for a lumiq folder: the explicit path, else
/// `$LUMIQ_CALIBRATION_DIR`, else `calibration/<instrument_id>` under the current directory.
pub fn resolve_calibration_dir(
    explicit: Option<&Path>,
    instrument_id: &str,
) -> Result<PathBuf, JobError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(CALIBRATION_ENV) {
        return Ok(PathBuf::from(p));
    }
    let default = Path::new("calibration").join(instrument_id);
    if default.join("calibration.toml").is_file() {
        return Ok(default);
    }
    Err(JobError::NoCalibration {
        instrument_id: instrument_id.to_string(),
        default,
    })
}

/// Where an acquisition's calibration comes from besides the folder itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sources<'a> {
    /// The calibration set of a lumiq folder (see [`resolve_calibration_dir`]).
    pub calibration_dir: Option<&'a Path>,
    /// The lab's background-click library, for IVIS click folders whose own dark is
    /// unusable (see [`ivis::ReadOptions`]).
    pub ivis_backgrounds: Option<&'a Path>,
}

/// Read an acquisition and the calibration it needs.
pub fn load(path: &Path, calibration_dir: Option<&Path>) -> Result<LoadedInput, JobError> {
    load_with(
        path,
        &Sources {
            calibration_dir,
            ..Sources::default()
        },
    )
}

/// [`load`], with every source of calibration.
pub fn load_with(path: &Path, sources: &Sources) -> Result<LoadedInput, JobError> {
    let calibration_dir = sources.calibration_dir;
    if !path.is_dir() {
        return Err(JobError::NotAFolder(path.to_path_buf()));
    }
    if acquisition_folder::is_acquisition_folder(path) {
        let folder = acquisition_folder::read(path)?;
        let acq = folder.acquisition;
        let dir = resolve_calibration_dir(calibration_dir, &acq.meta.instrument_id)?;
        let set = CalibrationSet::load(&dir)?;
        let (rows, cols) = acq.luminescent_adu.dim();
        let (cal, items) = set.frame_calibration(&acq.meta, rows, cols)?;
        let calibration_info = CalibrationInfo {
            source: "calibration_set".into(),
            id: set.index.id.clone(),
            coefficient: coefficient_record(&cal),
            items: items
                .into_iter()
                .map(|i| CalibrationItemRecord {
                    kind: i.kind,
                    id: i.id,
                    sha256: i.sha256,
                    detail: i.detail,
                    version: i.version,
                })
                .collect(),
        };
        return Ok(LoadedInput {
            acquisition: acq,
            calibration: cal,
            calibration_info,
            input_flags: Vec::new(),
        });
    }
    if ivis::is_click_folder(path) {
        if calibration_dir.is_some() {
            tracing::warn!(
                "{}: an IVIS click folder carries its own calibration; --calibration is ignored",
                path.display()
            );
        }
        if let Some(library) = sources.ivis_backgrounds {
            if !library.is_dir() {
                return Err(JobError::BackgroundsNotAFolder(library.to_path_buf()));
            }
        }
        let folder = ivis::read_click_folder_with(
            path,
            &ivis::ReadOptions {
                backgrounds_dir: sources.ivis_backgrounds,
            },
        )?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let calibration_info = CalibrationInfo {
            source: "ivis_click_folder".into(),
            id: name,
            coefficient: coefficient_record(&folder.calibration),
            items: folder
                .files
                .iter()
                .map(|(file, sha)| CalibrationItemRecord {
                    kind: "ivis_file".into(),
                    id: file.clone(),
                    sha256: sha.clone(),
                    detail: String::new(),
                    version: None,
                })
                .collect(),
        };
        return Ok(LoadedInput {
            acquisition: folder.acquisition,
            calibration: folder.calibration,
            calibration_info,
            input_flags: folder.flags,
        });
    }
    Err(JobError::UnknownFolder(path.to_path_buf()))
}

fn coefficient_record(cal: &FrameCalibration) -> CoefficientRecord {
    CoefficientRecord {
        value: cal.coefficient,
        rel_uncertainty: cal.coefficient_rel_uncertainty,
        unit: record::units::RADIANCE.into(),
    }
}

/// The result of one job.
pub struct JobOutput {
    pub record: MeasurementRecord,
    pub quantification: Quantification,
    pub input: LoadedInput,
}

/// Quantify a loaded acquisition and build its record (`params.detector` must be the
/// classical detector: see [`run_with_model`]).
pub fn run(input: LoadedInput, params: &ProcessingParams) -> Result<JobOutput, JobError> {
    run_with_model(input, params, None)
}

/// Quantify a loaded acquisition with `model` finding the regions when `params.detector`
/// asks for it (`segment::TractSegmenter`), and build its record. CPU-bound: on an async
/// runtime, call it from a blocking thread.
pub fn run_with_model(
    input: LoadedInput,
    params: &ProcessingParams,
    model: Option<&dyn SegmentationModel>,
) -> Result<JobOutput, JobError> {
    let m = &input.acquisition.meta;
    let geom = FrameGeometry {
        exposure_s: m.exposure_s,
        binning: m.binning,
        fov_cm: m.fov_cm,
    };
    // The mice first: the background follows their glow up to their outline.
    let subjects = input.acquisition.photograph_adu.as_ref().map(|photo| {
        crate::process::subjects::locate_subjects(
            &photo.mapv(f32::from),
            m.fov_cm,
            &params.subjects,
        )
    });
    let q = quantify_with(
        &input.acquisition.luminescent_adu,
        &input.calibration,
        &geom,
        &input.acquisition.imported_rois,
        params,
        model,
        subjects.as_ref(),
    )
    .map_err(JobError::Quantify)?;
    let record = record::build(
        &input.acquisition,
        &q,
        RecordContext {
            measurement_id: Uuid::now_v7(),
            processed_at: Utc::now(),
            calibration: input.calibration_info.clone(),
            params,
            input_flags: &input.input_flags,
        },
    );
    Ok(JobOutput {
        record,
        quantification: q,
        input,
    })
}

/// Write the record (`record.json`), the radiance and background maps (32-bit float TIFF)
/// and the overlay (`overlay.png`) into `out`.
pub fn write_outputs(out: &Path, job: &JobOutput) -> Result<(), JobError> {
    std::fs::create_dir_all(out).map_err(FileError::at(out, "cannot create the output folder"))?;
    let q = &job.quantification;
    tiff_io::write_f32(&out.join("radiance.tiff"), &q.radiance)?;
    tiff_io::write_f32(&out.join("background.tiff"), &q.background)?;
    let mut regions = Vec::new();
    let mut roi_masks = q.roi_masks.iter();
    for (i, r) in q.regions.iter().enumerate() {
        let mask = match r.source {
            RegionSource::Detected => q.detection_labels.mapv(|l| l as usize == i + 1),
            RegionSource::Imported => roi_masks
                .next()
                .cloned()
                .unwrap_or_else(|| q.detection_labels.mapv(|_| false)),
        };
        regions.push(OverlayRegion {
            mask,
            label: r.label.clone(),
            centroid_px: r.centroid_px,
        });
    }
    let m = &job.input.acquisition.meta;
    let img = overlay::render(&OverlayInput {
        photograph: job.input.acquisition.photograph_adu.as_ref(),
        radiance: &q.net_radiance,
        regions,
        range: None,
        title: format!(
            "{}  {}  {} s  bin {}  f/{}",
            m.instrument_id, job.record.acquired_at, m.exposure_s, m.binning, m.f_number
        ),
    });
    overlay::write_png(&out.join("overlay.png"), &img)?;
    let json = serde_json::to_string_pretty(&job.record)?;
    let path = out.join("record.json");
    std::fs::write(&path, json).map_err(FileError::at(&path, "cannot write the record"))?;
    Ok(())
}
