//! Daily QC with a reference light source: quantify an image of the source, measure it,
//! judge the instrument's response factor, and keep every result in the QC history that
//! records are corrected from.
//!
//! Owns: running a QC on an acquisition folder ([`run_on_folder`]) and the history file
//! ([`history`]). The arithmetic (decay, the source's measurement, the factor, the
//! correction, which QC applies to a record) is pure, in `crate::process::qc`; the record's
//! side is `crate::record::apply_qc`. See docs/qc.md.

pub mod cli;
pub mod history;

use std::path::Path;

use chrono::Utc;
use uuid::Uuid;

use crate::job::{self, Sources};
use crate::process::qc::{self as core, QcProcedure, QcResult, QcVerdict};
use crate::process::{quantify, FrameGeometry, ProcessingParams};

/// Why a QC could not be run at all (a QC that ran but could not see its source is a
/// result, [`QcVerdict::Invalid`], and goes into the history).
#[derive(Debug, thiserror::Error)]
pub enum QcRunError {
    #[error("{folder}: {message}")]
    Input { folder: String, message: String },
}

/// Run one QC on the image of the reference source in `folder` (a lumiq acquisition
/// folder or an IVIS click folder, calibrated from `sources` as `lumiq process` does).
pub fn run_on_folder(
    folder: &Path,
    sources: &Sources,
    procedure: &QcProcedure,
) -> Result<QcResult, QcRunError> {
    let input_error = |message: String| QcRunError::Input {
        folder: folder.display().to_string(),
        message,
    };
    let input = job::load_with(folder, sources).map_err(|e| input_error(format!("{e:#}")))?;
    let acq = &input.acquisition;
    let m = &acq.meta;
    let geom = FrameGeometry {
        exposure_s: m.exposure_s,
        binning: m.binning,
        fov_cm: m.fov_cm,
    };
    let q = quantify(
        &acq.luminescent_adu,
        &input.calibration,
        &geom,
        &[],
        &ProcessingParams::default(),
    )
    .map_err(|e| input_error(format!("cannot quantify the source's image: {e}")))?;
    let saturation = input.calibration.sensor.saturation_adu;
    let saturated = acq.luminescent_adu.mapv(|v| f64::from(v) >= saturation);
    let expected = procedure.source.expected_radiance(m.acquired_at);
    let measured = core::measure_source(
        &q.radiance,
        &q.variance,
        Some(&saturated),
        q.pixel_size_cm,
        &procedure.placement,
    );
    let (measurement, response_factor, verdict, error) = match measured {
        Ok(s) => {
            let (k, verdict) =
                core::response_factor(&procedure.source, &s, m.acquired_at, procedure.tolerance);
            (Some(s), Some(k), verdict, None)
        }
        Err(e) => (None, None, QcVerdict::Invalid, Some(e.to_string())),
    };
    Ok(QcResult {
        qc_id: Uuid::now_v7().to_string(),
        instrument_id: m.instrument_id.clone(),
        performed_at: m.acquired_at,
        processed_at: Utc::now(),
        source: procedure.source.clone(),
        placement: procedure.placement,
        expected_radiance: expected,
        measurement,
        response_factor,
        verdict,
        tolerance: procedure.tolerance,
        valid_hours: procedure.valid_hours,
        fov_cm: m.fov_cm,
        f_number: m.f_number,
        error,
        input: folder.display().to_string(),
    })
}

/// One line for a person: the verdict, the factor and what to do.
pub fn summary_line(r: &QcResult) -> String {
    match (r.verdict, r.response_factor) {
        (QcVerdict::Invalid, _) | (_, None) => format!(
            "QC invalid: {} (source {})",
            r.error.as_deref().unwrap_or("the source was not measured"),
            r.source.id
        ),
        (QcVerdict::Pass, Some(k)) => format!(
            "QC pass: response factor {:.4} ± {:.4} (source {}, expected {:.4e} p/s/cm²/sr, tolerance ±{:.1} %)",
            k.value,
            k.uncertainty,
            r.source.id,
            r.expected_radiance,
            100.0 * r.tolerance
        ),
        (QcVerdict::OutOfTolerance, Some(k)) => format!(
            "QC out of tolerance: response factor {:.4} ± {:.4} is more than {:.1} % from 1 (source {}); records are corrected by it and flagged qc_out_of_tolerance: check the optics, filter and source placement",
            k.value,
            k.uncertainty,
            100.0 * r.tolerance,
            r.source.id
        ),
    }
}
