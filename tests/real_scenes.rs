//! Real scenes: five mice on the stage with the anaesthesia manifold, nose cones, dividers,
//! tails, tags and the skin's own glow ending sharply at each body's outline, processed the
//! way `lumiq process` does (the mice found in the photograph first, then the frame).
//! Judged against the simulator's truth: completeness at true SNR ≥ 5, false detections a
//! frame, net flux at SNR ≥ 20, and pulls.
//!
//! Run with `cargo test --release --test real_scenes -- --nocapture` to see the figures.

mod common;

use lumiq::process::subjects::locate_subjects;
use lumiq::process::{quantify_with, FrameGeometry, ProcessingParams, Quantification};
use lumiq::simulate::{simulate_acquisition, Instrument, SceneSpec, SimulatedAcquisition};

/// One true tumour's outcome.
struct Outcome {
    what: String,
    true_flux: f64,
    expected_snr: f64,
    /// (net flux, statistical sigma, SNR as the record states it).
    measured: Option<(f64, f64, f64)>,
}

struct Tally {
    outcomes: Vec<Outcome>,
    false_detections: Vec<String>,
    frames: usize,
}

fn process(sim: &SimulatedAcquisition, inst: &Instrument, with_bodies: bool) -> Quantification {
    let spec = &sim.truth.spec;
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
    let params = ProcessingParams::default();
    let subjects = sim
        .photograph_adu
        .as_ref()
        .filter(|_| with_bodies)
        .map(|p| locate_subjects(&p.mapv(f32::from), spec.fov_cm, &params.subjects));
    quantify_with(
        &sim.luminescent_adu,
        &cal,
        &geom,
        &[],
        &params,
        None,
        subjects.as_ref(),
    )
    .unwrap()
}

fn run(base: &SceneSpec, seeds: std::ops::Range<u64>, with_bodies: bool) -> Tally {
    let inst = Instrument::default();
    let mut tally = Tally {
        outcomes: Vec::new(),
        false_detections: Vec::new(),
        frames: 0,
    };
    for seed in seeds {
        let spec = SceneSpec {
            seed,
            touching_mice: seed % 3 == 0,
            ..base.clone()
        };
        let sim = simulate_acquisition(&inst, &spec);
        let q = process(&sim, &inst, with_bodies);
        tally.frames += 1;
        let matches = common::match_truth(&q, &sim.truth);
        for i in common::unmatched_detections(&q, &matches) {
            let r = &q.regions[i];
            tally.false_detections.push(format!(
                "seed {seed}: region at {:.0?} snr {:.1} area {:.2} cm²",
                r.centroid_px, r.snr, r.area_cm2
            ));
        }
        for (t, m) in sim.truth.tumours.iter().zip(&matches) {
            let sigma = common::ideal_flux_sigma(&q, &sim.truth, t);
            tally.outcomes.push(Outcome {
                what: format!(
                    "seed {seed} tumour {} at {:.0?} ({}, {:.0} photons/s)",
                    t.id, t.centre_px, t.shape, t.total_flux
                ),
                true_flux: t.total_flux,
                expected_snr: t.total_flux / sigma,
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
    tally
}

struct Figures {
    completeness_snr5: f64,
    tumours_snr5: usize,
    false_per_frame: f64,
    median_abs_error_snr20: f64,
    worst_abs_error_snr20: f64,
    bright: usize,
    pull_sd: f64,
}

fn figures(t: &Tally) -> Figures {
    let above5: Vec<&Outcome> = t
        .outcomes
        .iter()
        .filter(|o| o.expected_snr >= 5.0)
        .collect();
    let found5 = above5.iter().filter(|o| o.measured.is_some()).count();
    let mut errors: Vec<f64> = t
        .outcomes
        .iter()
        .filter_map(|o| {
            o.measured
                .filter(|m| m.2 >= 20.0)
                .map(|(v, _, _)| ((v - o.true_flux) / o.true_flux).abs())
        })
        .collect();
    errors.sort_by(f64::total_cmp);
    let pulls: Vec<f64> = t
        .outcomes
        .iter()
        .filter_map(|o| o.measured.map(|(v, s, _)| (v - o.true_flux) / s))
        .collect();
    let n = pulls.len() as f64;
    let mean = pulls.iter().sum::<f64>() / n;
    let sd = (pulls.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    Figures {
        completeness_snr5: found5 as f64 / above5.len().max(1) as f64,
        tumours_snr5: above5.len(),
        false_per_frame: t.false_detections.len() as f64 / t.frames as f64,
        median_abs_error_snr20: errors.get(errors.len() / 2).copied().unwrap_or(f64::NAN),
        worst_abs_error_snr20: errors.last().copied().unwrap_or(f64::NAN),
        bright: errors.len(),
        pull_sd: sd,
    }
}

fn report(name: &str, t: &Tally, f: &Figures) {
    eprintln!(
        "{name}: {} frames; completeness at true SNR >= 5: {:.1} % of {}; false detections {:.2} a frame; \
         SNR >= 20 ({} tumours): median |error| {:.2} %, worst {:.2} %; pull sd {:.2}",
        t.frames,
        100.0 * f.completeness_snr5,
        f.tumours_snr5,
        f.false_per_frame,
        f.bright,
        100.0 * f.median_abs_error_snr20,
        100.0 * f.worst_abs_error_snr20,
        f.pull_sd
    );
    for o in &t.outcomes {
        if o.expected_snr >= 5.0 && o.measured.is_none() {
            eprintln!("  missed: {} true SNR {:.1}", o.what, o.expected_snr);
        }
    }
    for o in &t.outcomes {
        if let Some((v, sigma, snr)) = o.measured {
            let err = (v - o.true_flux) / o.true_flux;
            let pull = (v - o.true_flux) / sigma;
            if (snr >= 20.0 && err.abs() > 0.05) || pull.abs() > 3.0 {
                eprintln!(
                    "  off: {} error {:+.1} % pull {pull:+.1} snr {snr:.0}",
                    o.what,
                    100.0 * err
                );
            }
        }
    }
    for d in &t.false_detections {
        eprintln!("  false: {d}");
    }
}

fn scene() -> SceneSpec {
    SceneSpec {
        flux_range: (4.0e3, 3.0e6),
        body_glow_radiance: 2.0e3,
        ..SceneSpec::default()
    }
}

#[test]
fn the_bodies_glow_is_background_and_faint_tumours_are_found() {
    let tally = run(&scene(), 500..516, true);
    let f = figures(&tally);
    report("real scenes, bodies from the photograph", &tally, &f);
    assert!(f.tumours_snr5 >= 60, "only {} tumours", f.tumours_snr5);
    // The goals: completeness >= 95 % at true SNR >= 5, at most one false detection a
    // frame, at SNR >= 20 a median error within 3 % and a worst within 10 %, pull sd
    // 0.8-1.25 (measured: 98.0 %, 0.00, 1.08 %, 6.24 %, 1.23).
    assert!(
        f.completeness_snr5 >= 0.95,
        "completeness {:.3}",
        f.completeness_snr5
    );
    assert!(
        f.false_per_frame <= 1.0,
        "{:.2} false detections a frame",
        f.false_per_frame
    );
    assert!(
        f.median_abs_error_snr20 <= 0.02,
        "median |error| {:.3}",
        f.median_abs_error_snr20
    );
    assert!(
        f.worst_abs_error_snr20 <= 0.10,
        "worst |error| {:.3}",
        f.worst_abs_error_snr20
    );
    assert!(
        (0.8..=1.25).contains(&f.pull_sd),
        "pull sd {:.2}",
        f.pull_sd
    );
}

/// Without the bodies, one smooth mesh cannot follow the glow's edge: the same scenes then
/// give false detections along the outlines. This pins down that the photograph's bodies
/// are what removes them.
#[test]
fn without_the_bodies_the_glow_edges_give_false_detections() {
    let with = figures(&run(&scene(), 500..504, true));
    let tally = run(&scene(), 500..504, false);
    let without = figures(&tally);
    report("same scenes, no bodies", &tally, &without);
    assert!(
        without.false_per_frame > with.false_per_frame,
        "without bodies {:.2} false a frame, with {:.2}",
        without.false_per_frame,
        with.false_per_frame
    );
}
