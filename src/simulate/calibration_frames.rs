//! The simulated instrument's raw calibration frames, written as lumiq acquisition folders
//! (biases, darks and flats at chosen binnings, reproducible), and the options that build
//! its calibration set from them. `lumiq simulate --calibration-frames`, `lumiq calibrate
//! --simulated-instrument` and the calibration tests use them; `calibration/sim-ivis-01`
//! was built with them.
//!
//! Owns: which frames, settings, seeds and times. Does not own: the physics of a frame
//! ([`super::instrument`]) or building the set ([`crate::calibrate::build_set`]).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, TimeZone, Utc};
use rayon::prelude::*;

use super::Instrument;
use crate::acquisition::{AcquisitionMeta, AcquisitionSettings, RawAcquisition, SourceFormat};
use crate::calibrate::CalibrateOptions;
use crate::errors::FileError;
use crate::formats::acquisition_folder::{self, FrameKind};
use crate::formats::calibration_set::CoefficientEntry;
use crate::formats::FormatError;

/// Why the raw calibration frames could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CalibrationFramesError {
    /// The output folder could not be created.
    #[error(transparent)]
    CreateDir(#[from] FileError),
    #[error("binning {binning} does not fit the {sensor_px}-pixel sensor")]
    Binning { binning: u32, sensor_px: usize },
    /// A frame's folder could not be written.
    #[error(transparent)]
    Format(#[from] FormatError),
}

/// Where the simulated instrument's calibration set is shipped, relative to the
/// repository's root (or an installed working directory).
pub const SHIPPED_SET_DIR: &str = "calibration/sim-ivis-01";

/// The shipped calibration set of the simulated instrument: [`SHIPPED_SET_DIR`] under the
/// working directory, else in the source tree this binary was built from; `None` when
/// neither holds its `calibration.toml`.
pub fn shipped_set_dir() -> Option<PathBuf> {
    [
        PathBuf::from("."),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")),
    ]
    .into_iter()
    .map(|base| base.join(SHIPPED_SET_DIR))
    .find(|dir| dir.join("calibration.toml").is_file())
}

/// Exposure of the simulated darks, s.
pub const SIM_DARK_EXPOSURE_S: f64 = 60.0;
/// Field of view, f-number and filter of the simulated flats.
pub const SIM_FLAT_FOV_CM: f64 = 22.4;
pub const SIM_FLAT_F_NUMBER: f64 = 1.0;
pub const SIM_FLAT_FILTER: &str = "open";
/// Exposure of the simulated flats, s, and their level on axis, electrons per binned pixel
/// (20 000 e⁻ ≈ 13 300 ADU: bright, far from saturation).
pub const SIM_FLAT_EXPOSURE_S: f64 = 1.0;
pub const SIM_FLAT_LEVEL_E: f64 = 20_000.0;

/// The metadata of one of the simulated instrument's calibration frames: its optics are
/// those of its flats (f/1, FOV 22.4 cm, filter "open"), whatever the frame's kind.
pub fn frame_meta(
    instrument_id: &str,
    acquired_at: DateTime<Utc>,
    binning: u32,
    exposure_s: f64,
    sensor_temp_c: f64,
) -> AcquisitionMeta {
    AcquisitionMeta {
        instrument_id: instrument_id.into(),
        acquired_at,
        settings: AcquisitionSettings {
            exposure_s,
            binning,
            f_number: SIM_FLAT_F_NUMBER,
            fov_cm: SIM_FLAT_FOV_CM,
            sensor_temp_c,
            emission_filter: SIM_FLAT_FILTER.into(),
            shelf: None,
        },
        study_id: None,
        subject_ids: vec![],
        injection_time: None,
        view: None,
        photograph: None,
    }
}

/// Write the simulated instrument's raw calibration frames as lumiq acquisition folders:
/// for every binning, `n_frames` biases, `n_frames` darks (60 s at the instrument's
/// reference temperature, −90 °C by default) and `n_frames` flats (FOV 22.4 cm, f/1, filter
/// "open", 1 s). Folders are `<out_dir>/b<binning>_<kind>_<nn>`; acquisition times are fixed
/// (2026-01-05, one minute apart) and seeds derived from the instrument's pattern seed, so
/// the output is reproducible. Returns the folders written.
pub fn simulate_raw_calibration_frames(
    inst: &Instrument,
    out_dir: &Path,
    binnings: &[u32],
    n_frames: usize,
) -> Result<Vec<PathBuf>, CalibrationFramesError> {
    std::fs::create_dir_all(out_dir)
        .map_err(FileError::at(out_dir, "cannot create; check permissions"))?;
    let t0 = Utc
        .with_ymd_and_hms(2026, 1, 5, 8, 0, 0)
        .single()
        .expect("a valid time");
    let mut jobs = Vec::new();
    for &b in binnings {
        if b == 0 || inst.frame_px(b) == 0 {
            return Err(CalibrationFramesError::Binning {
                binning: b,
                sensor_px: inst.sensor_px,
            });
        }
        for kind in [FrameKind::Bias, FrameKind::Dark, FrameKind::Flat] {
            for i in 0..n_frames {
                jobs.push((b, kind, i));
            }
        }
    }
    let results: Vec<Result<PathBuf, CalibrationFramesError>> = jobs
        .par_iter()
        .enumerate()
        .map(|(j, &(b, kind, i))| {
            let kind_no: u64 = match kind {
                FrameKind::Bias => 1,
                FrameKind::Dark => 2,
                FrameKind::Flat => 3,
                FrameKind::Luminescent => 4,
            };
            let seed = inst
                .pattern_seed
                .wrapping_mul(1_000_003)
                .wrapping_add(((b as u64) << 40) | (kind_no << 32) | i as u64);
            let temp = inst.dark_ref_temp_c;
            let (frame, exposure, name) = match kind {
                FrameKind::Bias => (inst.bias_frame(b, seed), 0.0, "bias"),
                FrameKind::Dark => (
                    inst.dark_frame(b, SIM_DARK_EXPOSURE_S, temp, seed),
                    SIM_DARK_EXPOSURE_S,
                    "dark",
                ),
                _ => (
                    inst.flat_frame(b, SIM_FLAT_FOV_CM, SIM_FLAT_LEVEL_E, seed),
                    SIM_FLAT_EXPOSURE_S,
                    "flat",
                ),
            };
            let meta = frame_meta(
                &inst.instrument_id,
                t0 + Duration::minutes(j as i64),
                b,
                exposure,
                temp,
            );
            let acq = RawAcquisition {
                meta,
                luminescent_adu: frame,
                photograph_adu: None,
                imported_rois: vec![],
                source: SourceFormat::LumiqFolder,
            };
            let dir = out_dir.join(format!("b{b}_{name}_{i:02}"));
            acquisition_folder::write(&dir, &acq, kind)?;
            Ok(dir)
        })
        .collect();
    results.into_iter().collect()
}

/// The options that build the simulated instrument's set (`calibration/sim-ivis-01`):
/// coefficients for FOV 12.5 and 22.4 cm at f/1, 2, 4, 8 and 16 from
/// [`Instrument::coefficient`], with the instrument's relative uncertainty.
pub fn sim_instrument_options(inst: &Instrument) -> CalibrateOptions {
    let mut o = CalibrateOptions::new(
        format!("{}-sim-calibration-v1", inst.instrument_id),
        inst.instrument_id.clone(),
    );
    o.saturation_adu = inst.sensor.saturation_adu;
    o.pixel_pitch_um = inst.sensor.pixel_pitch_um;
    for fov in [12.5, 22.4] {
        for f in [1.0, 2.0, 4.0, 8.0, 16.0] {
            o.coefficients.push(CoefficientEntry {
                version: 1,
                fov_cm: fov,
                f_number: f,
                c: inst.coefficient(fov, f),
                rel_uncertainty: inst.coefficient_rel_uncertainty,
            });
        }
    }
    o.created_at = Utc.with_ymd_and_hms(2026, 1, 5, 12, 0, 0).single();
    o
}
