//! Round trip simulate → quantify over many tumours: completeness, flux accuracy, pulls,
//! false detections. Uses the instrument's ideal calibration so the processing is judged
//! alone; `tests/cli_process.rs` covers the path through files and a measured calibration set.

mod common;

use lumiq::process::{quantify, FrameGeometry, ProcessingParams};
use lumiq::simulate::{simulate_acquisition, Instrument, SceneSpec};

struct Outcome {
    true_flux: f64,
    what: String,
    measured: Option<(f64, f64, f64)>, // value, statistical sigma, snr
}

fn run(seeds: std::ops::Range<u64>, spec: &SceneSpec) -> (Vec<Outcome>, usize) {
    let inst = Instrument::default();
    let mut outcomes = Vec::new();
    let mut false_detections = 0;
    for seed in seeds {
        let spec = SceneSpec {
            seed,
            ..spec.clone()
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
        let m = common::match_truth(&q, &sim.truth);
        for i in common::unmatched_detections(&q, &m) {
            let r = &q.regions[i];
            eprintln!(
                "FALSE seed {seed} at {:.1},{:.1} flux {:.3e} snr {:.1} npx {}",
                r.centroid_px[0], r.centroid_px[1], r.total_flux.value, r.snr, r.n_pixels
            );
            false_detections += 1;
        }
        for (t, m) in sim.truth.tumours.iter().zip(&m) {
            outcomes.push(Outcome {
                true_flux: t.total_flux,
                what: format!(
                    "seed {seed} tumour {} {} at {:.1},{:.1} npx {:?}",
                    t.id,
                    t.shape,
                    t.centre_px[0],
                    t.centre_px[1],
                    m.map(|i| q.regions[i].n_pixels)
                ),
                measured: m.map(|i| {
                    let r = &q.regions[i];
                    (
                        r.total_flux.value,
                        r.total_flux.components.statistical(),
                        r.snr,
                    )
                }),
            });
        }
    }
    (outcomes, false_detections)
}

#[test]
fn round_trip_over_many_tumours() {
    let mut spec = SceneSpec {
        flux_range: (4.0e3, 3.0e6),
        ..SceneSpec::default()
    };
    if std::env::var("NOBKG").is_ok() {
        spec.autoluminescence_radiance = 0.0;
        spec.light_leak_radiance = 0.0;
    }
    if std::env::var("NOCR").is_ok() {
        spec.cosmic_rays = false;
    }
    let (out, false_det) = run(100..112, &spec);
    // Expected SNR from the measured statistical sigma (or, if missed, unknown: counted by flux).
    let found: Vec<&Outcome> = out.iter().filter(|o| o.measured.is_some()).collect();
    eprintln!(
        "tumours {} found {} false {}",
        out.len(),
        found.len(),
        false_det
    );
    let mut pulls = Vec::new();
    let mut rel_err_hi = Vec::new();
    for o in &out {
        match o.measured {
            Some((v, s, snr)) => {
                let pull = (v - o.true_flux) / s;
                eprintln!(
                    "flux {:>12.4e} measured {:>12.4e} sigma {:>10.3e} snr {:>8.1} pull {:>6.2} {}",
                    o.true_flux, v, s, snr, pull, o.what
                );
                pulls.push(pull);
                if o.true_flux / s >= 20.0 {
                    rel_err_hi.push((v - o.true_flux) / o.true_flux);
                }
            }
            None => eprintln!("flux {:>12.4e} MISSED {}", o.true_flux, o.what),
        }
    }
    let n = pulls.len() as f64;
    let mean = pulls.iter().sum::<f64>() / n;
    let sd = (pulls.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let bias = rel_err_hi.iter().sum::<f64>() / rel_err_hi.len() as f64;
    let mae = rel_err_hi.iter().map(|e| e.abs()).sum::<f64>() / rel_err_hi.len() as f64;
    eprintln!("pull mean {mean:.3} sd {sd:.3}; snr>=20: n {} mean rel err {bias:.4} mean |rel err| {mae:.4}", rel_err_hi.len());
    assert!(out.len() >= 50);
}
