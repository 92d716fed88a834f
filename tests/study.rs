//! Comparable across days: a simulated study on a drifting instrument, run through what a
//! lab runs — each day `lumiq qc` on the reference source's image, then every frame of the
//! kinetic series quantified as `lumiq process` does, QC applied from the history by
//! acquisition time, and the series summarised into a sequence record.
//!
//! Constant tumours must read constant across the days after correction (coefficient of
//! variation ≤ 2 %, against ≥ 10 % for a single calibrated image at the day's delay), and
//! growing tumours at their true rate (within 5 %). Run with `--nocapture` for the table.

use std::path::{Path, PathBuf};

use lumiq::job::{self, Sources};
use lumiq::process::qc::{
    self, QcProcedure, QcResult, QcVerdict, ReferenceSource, TRITIUM_HALF_LIFE_DAYS,
};
use lumiq::process::ProcessingParams;
use lumiq::record::{self, MeasurementRecord};
use lumiq::sequence::{self, SequenceRecord};
use lumiq::simulate::calibration_frames::shipped_set_dir;
use lumiq::simulate::study::{self, StudySpec, StudyTruth};
use lumiq::simulate::write::write_lumiq;
use lumiq::simulate::Instrument;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

fn calibration() -> PathBuf {
    shipped_set_dir().expect("the shipped calibration set")
}

fn procedure(spec: &StudySpec) -> QcProcedure {
    QcProcedure {
        source: spec.source.clone(),
        placement: spec.placement,
        tolerance: 0.10,
        valid_hours: 26.0,
    }
}

/// One day as a lab runs it: QC first, then the series. Returns the QC and the series'
/// records (QC applied) and its sequence record.
fn run_day(
    inst: &Instrument,
    truth: &StudyTruth,
    day: usize,
    dir: &Path,
    history: &mut Vec<QcResult>,
) -> (Vec<MeasurementRecord>, SequenceRecord) {
    let cal = calibration();
    let sources = Sources {
        calibration_dir: Some(&cal),
        ..Sources::default()
    };
    let d = study::simulate_day(inst, truth, day);
    let qc_dir = dir.join(format!("day{day:02}/qc"));
    write_lumiq(&qc_dir, &d.qc_image, vec![]).unwrap();
    let result = lumiq::qc::run_on_folder(&qc_dir, &sources, &procedure(&truth.spec)).unwrap();
    history.push(result);
    let params = ProcessingParams::default();
    let mut records = Vec::new();
    for (k, sim) in d.series.iter().enumerate() {
        let f = dir.join(format!("day{day:02}/frame-{k:03}"));
        write_lumiq(&f, sim, vec![]).unwrap();
        let input = job::load_with(&f, &sources).unwrap();
        let mut rec = job::run(input, &params).unwrap().record;
        let sel = qc::select(history, &rec.instrument_id, sim.meta.acquired_at);
        record::apply_qc(&mut rec, &sel);
        records.push(rec);
    }
    let seq = sequence::build(&records, Uuid::now_v7()).unwrap();
    (records, seq)
}

/// Check `value` against `schemas/NAME`.
fn assert_valid(name: &str, value: &impl serde::Serialize) {
    let path = format!("{}/schemas/{name}", env!("CARGO_MANIFEST_DIR"));
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    let value = serde_json::to_value(value).unwrap();
    let errors: Vec<String> = v.iter_errors(&value).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{name}: {errors:?}");
}

fn cv(v: &[f64]) -> f64 {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() / m
}

/// Least-squares slope of ln(y) against day.
fn log_slope(y: &[f64]) -> f64 {
    let n = y.len() as f64;
    let xs: Vec<f64> = (0..y.len()).map(|d| d as f64).collect();
    let ls: Vec<f64> = y.iter().map(|v| v.ln()).collect();
    let mx = xs.iter().sum::<f64>() / n;
    let ml = ls.iter().sum::<f64>() / n;
    let sxy: f64 = xs.iter().zip(&ls).map(|(x, l)| (x - mx) * (l - ml)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    sxy / sxx
}

#[test]
fn ten_days_on_a_drifting_instrument_give_comparable_numbers() {
    let inst = Instrument::default();
    let spec = StudySpec::default();
    let truth = study::plan(&inst, &spec);
    let dir = tempfile::tempdir().unwrap();
    let mut history = Vec::new();
    let n_t = truth.tumours.len();
    // Per tumour, per day: corrected peak, calibrated peak, corrected and calibrated single
    // image at the day's delay.
    let mut corrected_peak = vec![Vec::new(); n_t];
    let mut calibrated_peak = vec![Vec::new(); n_t];
    let mut single_calibrated = vec![Vec::new(); n_t];
    let mut single_corrected = vec![Vec::new(); n_t];
    let mut delay_rng = ChaCha8Rng::seed_from_u64(99);
    let pixel_cm = spec.scene.fov_cm / inst.frame_px(spec.scene.binning) as f64;
    let mut factors = Vec::new();
    for day in 0..spec.days {
        let (records, seq) = run_day(&inst, &truth, day, dir.path(), &mut history);
        let qc = history.last().unwrap();
        assert_ne!(qc.verdict, QcVerdict::Invalid, "day {day}: {:?}", qc.error);
        let k = qc.response_factor.unwrap();
        factors.push((truth.days[day].response, k.value));
        assert!(
            (k.value / truth.days[day].response - 1.0).abs() < 0.01,
            "day {day}: QC factor {} against a true response of {}",
            k.value,
            truth.days[day].response
        );
        for r in &records {
            assert!(r.qc.qc_id.is_some(), "every record names its QC");
        }
        if day == 0 {
            assert_valid("measurement.schema.json", &records[0]);
            assert_valid("sequence.schema.json", &seq);
        }
        // The single image a lab takes 5–20 min after injecting: the series' frame nearest
        // to a delay drawn in that range.
        let delay = delay_rng.random_range(5.0..=20.0);
        let single = seq
            .frames
            .iter()
            .enumerate()
            .min_by(|a, b| {
                (a.1.minutes - delay)
                    .abs()
                    .total_cmp(&(b.1.minutes - delay).abs())
            })
            .map(|(i, _)| i)
            .unwrap();
        let single_record = records
            .iter()
            .find(|r| r.measurement_id == seq.frames[single].measurement_id)
            .unwrap();
        for (ti, st) in truth.tumours.iter().enumerate() {
            let at = [
                st.tumour.centre_px[0] * pixel_cm,
                st.tumour.centre_px[1] * pixel_cm,
            ];
            let near = |c: [f64; 2]| ((c[0] - at[0]).powi(2) + (c[1] - at[1]).powi(2)).sqrt() < 0.5;
            let track = seq
                .regions
                .iter()
                .filter(|g| near(g.centroid_cm))
                .max_by_key(|g| g.frames_found)
                .unwrap_or_else(|| panic!("day {day}: tumour {ti} not followed"));
            assert!(
                track.peak_covered,
                "day {day}: tumour {ti} (peak at {:.2} min): the series spans the peak; {:?}",
                truth.days[day].time_to_peak_min[st.tumour.mouse], track.points
            );
            assert!(!track.saturated, "day {day}: tumour {ti} saturated");
            corrected_peak[ti].push(track.qc_corrected_peak_flux.as_ref().unwrap().value);
            calibrated_peak[ti].push(track.peak_flux.value);
            let region = single_record
                .regions
                .iter()
                .find(|g| near(g.centroid_cm))
                .unwrap_or_else(|| panic!("day {day}: tumour {ti} not in the single image"));
            single_calibrated[ti].push(region.total_flux.value);
            single_corrected[ti].push(region.qc_corrected_flux.as_ref().unwrap().value);
        }
    }
    println!("response (true, QC): {factors:.4?}");
    println!("tumour  growth/day  CV single calibrated  CV single corrected  CV peak calibrated  CV peak corrected  growth fitted to: corrected peaks, single calibrated images");
    let mut worst_constant = 0.0f64;
    let mut best_uncorrected = f64::MAX;
    for (ti, st) in truth.tumours.iter().enumerate() {
        let slope = log_slope(&corrected_peak[ti]);
        println!(
            "{ti:>6}  {:>10.3}  {:>19.2}%  {:>19.2}%  {:>18.2}%  {:>17.2}%  {:>8.4}, {:.4}",
            st.growth_per_day,
            100.0 * cv(&single_calibrated[ti]),
            100.0 * cv(&single_corrected[ti]),
            100.0 * cv(&calibrated_peak[ti]),
            100.0 * cv(&corrected_peak[ti]),
            slope,
            log_slope(&single_calibrated[ti])
        );
        if st.growth_per_day == 0.0 {
            worst_constant = worst_constant.max(cv(&corrected_peak[ti]));
            best_uncorrected = best_uncorrected.min(cv(&single_calibrated[ti]));
            // The corrected peak is also right, not only steady.
            let mean = corrected_peak[ti].iter().sum::<f64>() / spec.days as f64;
            assert!(
                (mean / st.peak_flux_day0 - 1.0).abs() < 0.05,
                "tumour {ti}: mean corrected peak {mean:.4e} against a true {:.4e}",
                st.peak_flux_day0
            );
        } else {
            assert!(
                (slope / st.growth_per_day - 1.0).abs() <= 0.05,
                "tumour {ti}: fitted growth {slope:.4}/day against a true {:.4}",
                st.growth_per_day
            );
        }
    }
    assert!(
        worst_constant <= 0.02,
        "constant tumours after correction: worst CV {:.2} %",
        100.0 * worst_constant
    );
    assert!(
        best_uncorrected >= 0.10,
        "the drift must be there to correct: best uncorrected CV {:.2} %",
        100.0 * best_uncorrected
    );
}

#[test]
fn a_year_old_tritium_source_does_not_read_as_drift() {
    let inst = Instrument::default();
    let mut spec = StudySpec {
        days: 2,
        response_amplitude: 0.0,
        ..StudySpec::default()
    };
    spec.scene.mice = 1;
    spec.frames_per_series = 1;
    spec.source = ReferenceSource {
        id: "SIM-H3-1".into(),
        half_life_days: TRITIUM_HALF_LIFE_DAYS,
        reference_date: spec.start - chrono::Duration::days(365),
        ..spec.source.clone()
    };
    let truth = study::plan(&inst, &spec);
    let dir = tempfile::tempdir().unwrap();
    let mut history = Vec::new();
    run_day(&inst, &truth, 0, dir.path(), &mut history);
    let with_decay = history[0].response_factor.unwrap();
    assert!(
        (with_decay.value - 1.0).abs() < 0.01,
        "a steady instrument reads {:.4} with the decay accounted for",
        with_decay.value
    );
    assert_eq!(history[0].verdict, QcVerdict::Pass);
    // The same measurement judged against the undecayed certificate reads a 5.5 % drop.
    let undecayed = ReferenceSource {
        half_life_days: 0.0,
        ..spec.source.clone()
    };
    let (k, _) = qc::response_factor(
        &undecayed,
        history[0].measurement.as_ref().unwrap(),
        history[0].performed_at,
        0.03,
    );
    assert!(
        (k.value / with_decay.value - 0.9453).abs() < 0.002,
        "ignoring the decay: {:.4}",
        k.value
    );
}
