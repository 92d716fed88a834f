//! Helpers shared by the integration tests: running the binary as a user does, and matching
//! measured regions to the simulator's ground truth.
#![allow(dead_code)]

use std::process::{Command, Output};

use lumiq::process::{Quantification, RegionSource};
use lumiq::simulate::{TrueTumour, Truth};

/// Run the `lumiq` binary from the repository's root (where `calibration/sim-ivis-01`
/// is found), without the calibration variable of the calling shell.
pub fn lumiq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lumiq"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("LUMIQ_CALIBRATION_DIR")
        .output()
        .expect("run lumiq")
}

/// For each true tumour, the index (in `q.regions`) of the detected region covering its
/// centre, if any.
pub fn match_truth(q: &Quantification, truth: &Truth) -> Vec<Option<usize>> {
    let (rows, cols) = q.detection_labels.dim();
    truth
        .tumours
        .iter()
        .map(|t| {
            let c = t.centre_px[0].floor() as isize;
            let r = t.centre_px[1].floor() as isize;
            if r < 0 || c < 0 || r as usize >= rows || c as usize >= cols {
                return None;
            }
            let l = q.detection_labels[[r as usize, c as usize]];
            (l > 0).then(|| l as usize - 1)
        })
        .collect()
}

/// Detected regions that no true tumour claims.
/// One sigma of an ideal measurement of `t`'s total flux, photons/s: the noise of the
/// pixels within 3.5 sigma of its centre plus the error of the background under them.
#[allow(dead_code)]
pub fn ideal_flux_sigma(q: &Quantification, truth: &Truth, t: &TrueTumour) -> f64 {
    let radius_px = 3.5 * t.sigma_major_cm / q.pixel_size_cm;
    let mut var = 0.0f64;
    let mut aperture = Vec::new();
    for ((r, c), v) in q.variance.indexed_iter() {
        let dx = c as f64 + 0.5 - t.centre_px[0];
        let dy = r as f64 + 0.5 - t.centre_px[1];
        if dx * dx + dy * dy <= radius_px * radius_px {
            var += *v as f64;
            aperture.push((r, c));
        }
    }
    let bkg = q.background_model.sum_error(aperture.into_iter());
    4.0 * std::f64::consts::PI * truth.pixel_area_cm2 * (var + bkg * bkg).sqrt()
}

pub fn unmatched_detections(q: &Quantification, matches: &[Option<usize>]) -> Vec<usize> {
    q.regions
        .iter()
        .enumerate()
        .filter(|(i, r)| r.source == RegionSource::Detected && !matches.contains(&Some(*i)))
        .map(|(i, _)| i)
        .collect()
}

/// Validate a measurement record against `schemas/measurement.schema.json`; panics with
/// every violation listed.
pub fn assert_valid_record(record: &serde_json::Value) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/measurement.schema.json"
    );
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema itself is valid");
    let errors: Vec<String> = validator
        .iter_errors(record)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "record violates the schema:\n{}",
        errors.join("\n")
    );
}
