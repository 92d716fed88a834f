//! Processing behaviours judged against the simulator's ground truth, in memory: the
//! background under a strong gradient, saturation flags, dark handling, and the record's
//! schema.

mod common;

use chrono::TimeZone;
use lumiq::acquisition::{RawAcquisition, SourceFormat};
use lumiq::process::{quantify, FrameGeometry, ProcessingParams, QualityFlag, Quantification};
use lumiq::record::{self, CalibrationInfo, CoefficientRecord, RecordContext};
use lumiq::simulate::{simulate_acquisition, Instrument, SceneSpec, SimulatedAcquisition};

fn process(inst: &Instrument, sim: &SimulatedAcquisition, dark: bool) -> Quantification {
    let s = &sim.truth.spec;
    let mut cal = inst.ideal_calibration(
        s.binning,
        s.exposure_s,
        s.sensor_temp_c,
        s.fov_cm,
        s.f_number,
    );
    if !dark {
        cal.dark_adu = None;
    }
    let geom = FrameGeometry {
        exposure_s: s.exposure_s,
        binning: s.binning,
        fov_cm: s.fov_cm,
    };
    quantify(
        &sim.luminescent_adu,
        &cal,
        &geom,
        &[],
        &ProcessingParams::default(),
    )
    .unwrap()
}

/// One bright tumour per mouse, no autoluminescence, and a light leak rising linearly
/// from the left edge, scaled so that under the tumour being judged it reaches 30 % of that
/// tumour's peak radiance. Each tumour is judged in its own acquisition.
#[test]
fn gradient_at_30_percent_of_the_peak_biases_flux_by_at_most_2_percent() {
    let inst = Instrument::default();
    let mut checked = 0;
    for seed in 1..=3u64 {
        let base = SceneSpec {
            seed,
            tumours_per_mouse: (1, 1),
            flux_range: (3.0e6, 6.0e6),
            autoluminescence_radiance: 0.0,
            light_leak_radiance: 0.0,
            ..SceneSpec::default()
        };
        let clean = simulate_acquisition(&inst, &base);
        let fov = base.fov_cm;
        let pixel_cm = fov / clean.luminescent_adu.dim().1 as f64;
        for target in &clean.truth.tumours {
            let leak = 0.3 * target.peak_radiance * fov / (target.centre_px[0] * pixel_cm);
            let sim = simulate_acquisition(
                &inst,
                &SceneSpec {
                    light_leak_radiance: leak,
                    ..base.clone()
                },
            );
            let t = &sim.truth.tumours[target.id - 1];
            let under =
                sim.background_radiance[[t.centre_px[1] as usize, t.centre_px[0] as usize]] as f64;
            assert!(
                under >= 0.29 * t.peak_radiance,
                "the gradient reaches 30 % of the peak"
            );
            let q = process(&inst, &sim, true);
            let m = common::match_truth(&q, &sim.truth)[target.id - 1]
                .expect("every bright tumour is found");
            let r = &q.regions[m];
            let rel = (r.total_flux.value - t.total_flux) / t.total_flux;
            assert!(
                rel.abs() <= 0.02,
                "seed {seed} tumour {}: flux off by {:.2} % under a gradient of {:.0} % of its peak",
                t.id,
                rel * 100.0,
                100.0 * under / t.peak_radiance
            );
            checked += 1;
        }
    }
    assert!(checked >= 15, "{checked}");
}

#[test]
fn saturated_tumour_is_flagged() {
    let inst = Instrument::default();
    let spec = SceneSpec {
        mice: 1,
        tumours_per_mouse: (1, 1),
        flux_range: (5.0e10, 5.0e10),
        ..SceneSpec::default()
    };
    let sim = simulate_acquisition(&inst, &spec);
    assert!(sim
        .luminescent_adu
        .iter()
        .any(|&v| v as f64 >= inst.sensor.saturation_adu));
    let q = process(&inst, &sim, true);
    assert!(q.flags.contains(&QualityFlag::SaturatedPixels));
    assert!(q.flags.contains(&QualityFlag::SaturatedRegion));
    let m = common::match_truth(&q, &sim.truth)[0].expect("found");
    assert!(q.regions[m].saturated);
}

#[test]
fn missing_dark_is_flagged_and_left_to_the_background_model() {
    let inst = Instrument {
        dark_current_e_per_s: 0.05,
        ..Instrument::default()
    };
    let spec = SceneSpec {
        flux_range: (2.0e5, 2.0e6),
        ..SceneSpec::default()
    };
    let sim = simulate_acquisition(&inst, &spec);
    let q = process(&inst, &sim, false);
    assert!(q.flags.contains(&QualityFlag::DarkNotSubtracted));
    let matches = common::match_truth(&q, &sim.truth);
    for (t, m) in sim.truth.tumours.iter().zip(matches) {
        let r = &q.regions[m.expect("found")];
        let pull = (r.total_flux.value - t.total_flux) / r.total_flux.components.statistical();
        assert!(
            pull.abs() < 5.0,
            "tumour {}: pull {pull:.1} without a dark",
            t.id
        );
    }
}

#[test]
fn record_of_a_simulated_acquisition_follows_the_schema() {
    let inst = Instrument::default();
    let spec = SceneSpec::default();
    let sim = simulate_acquisition(&inst, &spec);
    let q = process(&inst, &sim, true);
    let acq = RawAcquisition {
        meta: sim.meta.clone(),
        luminescent_adu: sim.luminescent_adu.clone(),
        photograph_adu: sim.photograph_adu.clone(),
        imported_rois: vec![],
        source: SourceFormat::LumiqFolder,
    };
    let params = ProcessingParams::default();
    let rec = record::build(
        &acq,
        &q,
        RecordContext {
            measurement_id: uuid::Uuid::now_v7(),
            processed_at: chrono::Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap(),
            calibration: CalibrationInfo {
                source: "calibration_set".into(),
                id: "ideal".into(),
                coefficient: CoefficientRecord {
                    value: sim.truth.coefficient,
                    rel_uncertainty: 0.03,
                    unit: record::units::RADIANCE.into(),
                },
                items: vec![],
            },
            params: &params,
            input_flags: &[QualityFlag::NoiseModelAssumed],
        },
    );
    let json = serde_json::to_value(&rec).unwrap();
    common::assert_valid_record(&json);
    assert_eq!(json["regions"].as_array().unwrap().len(), q.regions.len());
    assert!(json["flags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "noise_model_assumed"));
    assert!(
        (json["acquisition"]["minutes_since_injection"]
            .as_f64()
            .unwrap()
            - 12.0)
            .abs()
            < 1e-9
    );
    // A record with a wrong unit is caught by the schema check itself.
    let mut broken = json.clone();
    broken["regions"][0]["total_flux"]["unit"] = "photons".into();
    let result = std::panic::catch_unwind(|| common::assert_valid_record(&broken));
    assert!(result.is_err());
}
