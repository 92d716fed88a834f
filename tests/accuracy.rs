//! Round trip simulate → quantify over many tumours: completeness, flux accuracy, pulls,
//! false detections. Uses the instrument's ideal calibration so the processing is judged
//! alone; `tests/cli.rs` covers the path through files and a measured calibration set.
//!
//! Twenty simulated acquisitions, five mice each, with cosmic rays, hot pixels, a bad
//! column, autoluminescence and a light leak; tumour fluxes span SNR ≈ 3 to ≈ 1000.

mod common;

use lumiq::process::{quantify, FrameGeometry, ProcessingParams};
use lumiq::simulate::{simulate_acquisition, Instrument, SceneSpec};

struct Outcome {
    what: String,
    true_flux: f64,
    /// True flux over the statistical uncertainty (pixel noise and background model) of an
    /// aperture of 3.5 sigma at the true position.
    expected_snr: f64,
    /// Measured (value, statistical sigma, SNR as the record states it).
    measured: Option<(f64, f64, f64)>,
}

fn run_frames(base: &SceneSpec, seeds: std::ops::Range<u64>) -> (Vec<Outcome>, Vec<String>) {
    let inst = Instrument::default();
    let mut outcomes = Vec::new();
    let mut false_detections = Vec::new();
    for seed in seeds {
        let spec = SceneSpec {
            seed,
            ..base.clone()
        };
        let sim = simulate_acquisition(&inst, &spec);
        let cal = inst.ideal_calibration(
            spec.binning,
            spec.exposure_s,
            spec.sensor_temp_c,
            spec.fov_cm,
            spec.f_number,
        );
        let geom = FrameGeometry {
            exposure_s: spec.exposure_s,
            binning: spec.binning,
            fov_cm: spec.fov_cm,
        };
        let q = quantify(
            &sim.luminescent_adu,
            &cal,
            &geom,
            &[],
            &ProcessingParams::default(),
        )
        .unwrap();
        let matches = common::match_truth(&q, &sim.truth);
        for i in common::unmatched_detections(&q, &matches) {
            let r = &q.regions[i];
            false_detections.push(format!(
                "seed {seed}: region at {:?} snr {:.1}",
                r.centroid_px, r.snr
            ));
        }
        for (t, m) in sim.truth.tumours.iter().zip(&matches) {
            let sigma = common::ideal_flux_sigma(&q, &sim.truth, t);
            outcomes.push(Outcome {
                what: format!(
                    "seed {seed} tumour {} ({}, {:.0} photons/s)",
                    t.id, t.shape, t.total_flux
                ),
                true_flux: t.total_flux,
                expected_snr: t.total_flux / sigma,
                measured: m.map(|i| {
                    (
                        q.regions[i].total_flux.value,
                        q.regions[i].total_flux.components.statistical(),
                        q.regions[i].snr,
                    )
                }),
            });
        }
    }
    (outcomes, false_detections)
}

#[test]
fn round_trip_over_many_tumours() {
    let base = SceneSpec {
        flux_range: (4.0e3, 3.0e6),
        ..SceneSpec::default()
    };
    let (out, false_detections) = run_frames(&base, 100..120);
    assert!(out.len() >= 50, "only {} tumours", out.len());

    // Every tumour with SNR >= 10 is detected (SNR of an ideal 3.5-sigma aperture at the
    // true position, with the same noise model the record uses: a missed tumour has no
    // measured SNR).
    let missed: Vec<&str> = out
        .iter()
        .filter(|o| o.expected_snr >= 10.0 && o.measured.is_none())
        .map(|o| o.what.as_str())
        .collect();
    assert!(
        missed.is_empty(),
        "missed tumours with SNR >= 10: {missed:?}"
    );

    // No false detection over twenty frames with cosmic rays and hot pixels.
    assert!(
        false_detections.is_empty(),
        "false detections: {false_detections:?}"
    );

    // Total flux within 2 % on average at SNR >= 20 (the SNR the record states).
    let rel: Vec<f64> = out
        .iter()
        .filter_map(|o| o.measured)
        .zip(out.iter().filter(|o| o.measured.is_some()))
        .filter(|((_, _, snr), _)| *snr >= 20.0)
        .map(|((v, _, _), o)| (v - o.true_flux) / o.true_flux)
        .collect();
    assert!(rel.len() >= 30, "only {} tumours at SNR >= 20", rel.len());
    let mean_rel = rel.iter().sum::<f64>() / rel.len() as f64;
    let mean_abs = rel.iter().map(|e| e.abs()).sum::<f64>() / rel.len() as f64;
    eprintln!(
        "SNR >= 20: {} tumours, mean error {:.2} %, mean |error| {:.2} %",
        rel.len(),
        100.0 * mean_rel,
        100.0 * mean_abs
    );
    assert!(
        mean_abs <= 0.02,
        "mean |error| {:.2} % at SNR >= 20",
        100.0 * mean_abs
    );
    assert!(
        mean_rel.abs() <= 0.02,
        "mean error {:.2} % at SNR >= 20",
        100.0 * mean_rel
    );

    // Pulls (measured - true) / sigma: the stated uncertainty matches the real scatter.
    let pulls: Vec<f64> = out
        .iter()
        .filter_map(|o| o.measured.map(|(v, s, _)| (v - o.true_flux) / s))
        .collect();
    for o in &out {
        if let Some((v, s, snr)) = o.measured {
            if ((v - o.true_flux) / s).abs() > 3.0 {
                eprintln!(
                    "large pull {:.1}: {} measured {v:.4e} sigma {s:.3e} snr {snr:.1}",
                    (v - o.true_flux) / s,
                    o.what
                );
            }
        }
    }
    let n = pulls.len() as f64;
    let mean = pulls.iter().sum::<f64>() / n;
    let sd = (pulls.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    eprintln!(
        "pulls over {} tumours: mean {mean:.3}, standard deviation {sd:.3}",
        pulls.len()
    );
    assert!(
        (0.8..=1.25).contains(&sd),
        "pull standard deviation {sd:.3}"
    );
}

/// The same physics at finer binnings: the result must not depend on how the frame was
/// binned (the detector works on a grid near its own scale at every binning).
#[test]
fn finer_binnings_give_the_same_answers() {
    for (binning, seeds, flux, min_bright) in [
        (4u32, 200..203u64, (1.0e4, 3.0e6), 10usize),
        (1, 300..301, (3.0e4, 3.0e7), 3),
    ] {
        let base = SceneSpec {
            binning,
            flux_range: flux,
            ..SceneSpec::default()
        };
        let (out, false_detections) = run_frames(&base, seeds);
        assert!(
            false_detections.is_empty(),
            "binning {binning}: false detections {false_detections:?}"
        );
        let missed: Vec<&str> = out
            .iter()
            .filter(|o| o.expected_snr >= 10.0 && o.measured.is_none())
            .map(|o| o.what.as_str())
            .collect();
        assert!(missed.is_empty(), "binning {binning}: missed {missed:?}");
        let rel: Vec<f64> = out
            .iter()
            .filter_map(|o| {
                o.measured
                    .filter(|m| m.2 >= 20.0)
                    .map(|(v, _, _)| (v - o.true_flux) / o.true_flux)
            })
            .collect();
        assert!(
            rel.len() >= min_bright,
            "binning {binning}: only {} bright tumours",
            rel.len()
        );
        let mean_abs = rel.iter().map(|e| e.abs()).sum::<f64>() / rel.len() as f64;
        eprintln!(
            "binning {binning}: {} tumours at SNR >= 20, mean |error| {:.2} %",
            rel.len(),
            100.0 * mean_abs
        );
        assert!(
            mean_abs <= 0.02,
            "binning {binning}: mean |error| {:.2} %",
            100.0 * mean_abs
        );
    }
}
