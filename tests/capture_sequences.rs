//! Whole sequences end to end: the simulated camera through the USB codec and driver, the
//! simulated controller through a real pseudo-terminal, the sequence, the atomic folder
//! writer, then `job::load` + `job::run` (what `lumiq process` does) into a measurement
//! record checked against the simulator's truth. Fault knobs: recovered once, clean
//! failure (no folder) when persistent; the door interlock; darks from the library or
//! acquired; kinetic series; cancellation.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use lumiq::acquire::dark::DarkSource;
use lumiq::acquire::folder::{write_capture, write_kinetic};
use lumiq::acquire::{simulated_imager, simulated_sequence, CaptureError, SimulatedOptions};
use lumiq::camera::{Clock, FaultKnob, FaultPlan};
use lumiq::formats::acquisition_folder;
use lumiq::job;
use lumiq::process::ProcessingParams;
use lumiq::simulate::Truth;

fn repo_library() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("calibration/sim-ivis-01")
}

/// A private copy of the shipped library (tests that add darks must not touch the repo's).
fn library_copy(dir: &Path) -> PathBuf {
    let dst = dir.join("library");
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(repo_library()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    dst
}

fn opts(faults: Vec<FaultPlan>) -> SimulatedOptions {
    SimulatedOptions {
        faults,
        ..SimulatedOptions::default()
    }
}

/// Quantify a folder as `lumiq process` does and check it against the truth.
fn quantify_and_check(dir: &Path, library: &Path) -> serde_json::Value {
    let input = job::load(dir, Some(library)).expect("the folder loads with its calibration");
    let out = job::run(input, &ProcessingParams::default()).expect("it quantifies");
    let record = serde_json::to_value(&out.record).unwrap();
    common::assert_valid_record(&record);
    let truth: Truth =
        serde_json::from_str(&std::fs::read_to_string(dir.join("truth.json")).unwrap()).unwrap();
    let matches = common::match_truth(&out.quantification, &truth);
    let mut checked = 0;
    for (t, m) in truth.tumours.iter().zip(&matches) {
        let Some(i) = m else { continue };
        let r = &out.quantification.regions[*i];
        if r.snr < 30.0 {
            continue;
        }
        let err = (r.total_flux.value - t.total_flux) / t.total_flux;
        assert!(
            err.abs() < 0.1,
            "tumour {} flux {:.3e} vs true {:.3e}",
            t.id,
            r.total_flux.value,
            t.total_flux
        );
        checked += 1;
    }
    assert!(
        checked >= 3,
        "only {checked} bright tumours matched the truth"
    );
    record
}

#[test]
fn standard_sequence_to_a_quantified_record() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sim = simulated_imager(opts(vec![])).unwrap();
    let cfg = simulated_sequence(repo_library(), sim.clock.utc_now());
    let capture = sim.imager.standard(&cfg).unwrap();
    let r = &capture.report;
    // The photograph is LED-lit, the luminescent frame auto-exposed within bounds, the
    // dark from the library.
    let photo = capture.photograph.as_ref().unwrap();
    assert_eq!((photo.binning, photo.exposure_s), (4, 0.2));
    assert!(photo.pixels.iter().copied().max().unwrap() > 15_000);
    let ae = r.auto_exposure.as_ref().unwrap();
    assert!(ae.steps.len() >= 2 && ae.steps[0].role == "probe" && ae.steps[0].exposure_s == 1.0);
    assert!((15.0..=240.0).contains(&capture.meta.exposure_s));
    assert!([4, 8].contains(&capture.meta.binning));
    assert!(!ae.saturated);
    assert!((capture.meta.sensor_temp_c + 90.0).abs() < 1.0);
    assert_eq!(r.dark.source, DarkSource::Library);
    assert_eq!(r.camera_counters.frames_discarded, 0);
    // The door was locked for the sequence and released after; the LED is off.
    let state = sim.sim_box.state();
    assert!(!state.door_locked && state.led_percent == 0);
    let dir = tmp.path().join("acq");
    write_capture(
        &dir,
        &capture,
        sim.camera.truth(capture.meta.binning, 22.4).as_ref(),
    )
    .unwrap();
    for f in [
        "acquisition.json",
        "luminescent.tiff",
        "photograph.tiff",
        "capture.json",
        "truth.json",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let folder = acquisition_folder::read(&dir).unwrap();
    assert_eq!(
        folder.acquisition.luminescent_adu,
        *capture.luminescent.pixels
    );
    let record = quantify_and_check(&dir, &repo_library());
    let dark_item = record["calibration"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "dark")
        .unwrap()
        .clone();
    assert_eq!(dark_item["id"], serde_json::json!(r.dark.file));
}

#[test]
fn recoverable_faults_are_retried_and_the_capture_quantifies() {
    for knob in FaultKnob::ALL.into_iter().filter(|k| k.recoverable()) {
        let tmp = tempfile::tempdir().unwrap();
        let mut sim = simulated_imager(opts(vec![FaultPlan::once(knob)])).unwrap();
        let cfg = simulated_sequence(repo_library(), sim.clock.utc_now());
        let capture = sim
            .imager
            .standard(&cfg)
            .unwrap_or_else(|e| panic!("{}: {e}", knob.name()));
        assert_eq!(
            sim.camera.faults_fired().get(&knob),
            Some(&1),
            "{}",
            knob.name()
        );
        let c = &capture.report.camera_counters;
        assert_eq!(c.frames_discarded, 1, "{}: {c:?}", knob.name());
        assert_eq!(c.frame_retries, 1, "{}: {c:?}", knob.name());
        let dir = tmp.path().join("acq");
        write_capture(
            &dir,
            &capture,
            sim.camera.truth(capture.meta.binning, 22.4).as_ref(),
        )
        .unwrap();
        quantify_and_check(&dir, &repo_library());
    }
}

#[test]
fn persistent_faults_fail_cleanly_and_leave_no_folder() {
    for knob in FaultKnob::ALL {
        let mut sim = simulated_imager(opts(vec![FaultPlan::always(knob)])).unwrap();
        let cfg = simulated_sequence(repo_library(), sim.clock.utc_now());
        let e = sim.imager.standard(&cfg).expect_err(knob.name());
        let text = e.to_string();
        match knob {
            FaultKnob::DoorOpen => {
                assert!(matches!(e, CaptureError::DoorOpened { .. }), "{text}");
                assert!(
                    text.contains("door was opened during the luminescent exposure"),
                    "{text}"
                );
            }
            _ => assert!(
                text.contains("no good frame from the camera after 3 attempts"),
                "{}: {text}",
                knob.name()
            ),
        }
        assert!(!text.contains('\n'));
        // Whatever happened, the door lock is released and the LED is off.
        let s = sim.sim_box.state();
        assert!(!s.door_locked && s.led_percent == 0, "{s:?}");
    }
}

#[test]
fn door_open_once_aborts_the_capture() {
    let mut sim = simulated_imager(opts(vec![FaultPlan::once(FaultKnob::DoorOpen)])).unwrap();
    let cfg = simulated_sequence(repo_library(), sim.clock.utc_now());
    let e = sim.imager.standard(&cfg).unwrap_err();
    assert!(matches!(e, CaptureError::DoorOpened { .. }), "{e}");
    assert!(sim.imager.camera.counters_snapshot().aborted >= 1);
}

#[test]
fn an_open_door_refuses_the_capture_before_anything_is_exposed() {
    let mut sim = simulated_imager(opts(vec![])).unwrap();
    assert!(sim.sim_box.open_door());
    let cfg = simulated_sequence(repo_library(), sim.clock.utc_now());
    let e = sim.imager.standard(&cfg).unwrap_err();
    assert!(matches!(e, CaptureError::DoorOpen), "{e}");
    assert_eq!(
        e.to_string(),
        "the imager's door is open; close it and start the capture again"
    );
    assert_eq!(sim.camera.blocks_sent(), 0);
}

#[test]
fn missing_darks_are_acquired_with_the_shutter_closed_and_added_to_the_library() {
    let tmp = tempfile::tempdir().unwrap();
    let library = library_copy(tmp.path());
    let mut sim = simulated_imager(opts(vec![])).unwrap();
    let mut cfg = simulated_sequence(library.clone(), sim.clock.utc_now());
    // The library's darks are at -90 °C: at -80 °C none is within 2 °C.
    cfg.cooling_setpoint_c = -80.0;
    cfg.dark.frames = 3;
    let capture = sim.imager.standard(&cfg).unwrap();
    let d = &capture.report.dark;
    assert_eq!(d.source, DarkSource::Acquired);
    assert!(d.reason.as_deref().unwrap().contains("no dark"), "{d:?}");
    assert_eq!(d.frames_acquired, 3);
    assert!((d.sensor_temp_c + 80.0).abs() < 1.0, "{d:?}");
    assert!(library.join(&d.file).is_file());
    assert!(std::fs::read_dir(&library).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with(".new-darks")));
    let dir = tmp.path().join("acq");
    write_capture(
        &dir,
        &capture,
        sim.camera.truth(capture.meta.binning, 22.4).as_ref(),
    )
    .unwrap();
    let record = quantify_and_check(&dir, &library);
    let items = record["calibration"]["items"].as_array().unwrap();
    assert!(items
        .iter()
        .any(|i| i["kind"] == "dark" && i["id"] == serde_json::json!(d.file)));
}

#[test]
fn stale_darks_are_taken_again() {
    let tmp = tempfile::tempdir().unwrap();
    let library = library_copy(tmp.path());
    let epoch = Utc.with_ymd_and_hms(2026, 11, 27, 9, 0, 0).unwrap();
    let mut sim = simulated_imager(SimulatedOptions {
        epoch,
        ..opts(vec![])
    })
    .unwrap();
    let mut cfg = simulated_sequence(library.clone(), epoch);
    cfg.dark.frames = 2;
    let capture = sim.imager.standard(&cfg).unwrap();
    let d = &capture.report.dark;
    assert_eq!(d.source, DarkSource::Acquired);
    assert!(d.reason.as_deref().unwrap().contains("days old"), "{d:?}");
    // The set is fresh now: a second capture uses the library.
    let again = sim.imager.standard(&cfg).unwrap();
    assert_eq!(again.report.dark.source, DarkSource::Library);
}

#[test]
fn kinetic_series_at_a_fixed_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sim = simulated_imager(opts(vec![])).unwrap();
    let cfg = simulated_sequence(repo_library(), sim.clock.utc_now());
    let caps = sim
        .imager
        .kinetic(&cfg, 3, Duration::from_secs(300))
        .unwrap();
    assert_eq!(caps.len(), 3);
    let t: Vec<f64> = caps
        .iter()
        .map(|c| c.report.luminescent.time_since_injection_s.unwrap())
        .collect();
    assert!(t[0] > 0.0);
    for w in t.windows(2) {
        assert!((w[1] - w[0] - 300.0).abs() < 0.5, "{t:?}");
    }
    assert!(caps
        .iter()
        .all(|c| c.meta.exposure_s == caps[0].meta.exposure_s));
    let dir = tmp.path().join("kinetic");
    let truth = sim.camera.truth(caps[0].meta.binning, 22.4);
    let folders = write_kinetic(&dir, &caps, truth.as_ref()).unwrap();
    assert_eq!(folders.len(), 3);
    assert!(dir.join("kinetic.json").is_file());
    for f in &folders {
        quantify_and_check(f, &repo_library());
    }
    let too_short = sim
        .imager
        .kinetic(&cfg, 2, Duration::from_secs(5))
        .unwrap_err();
    assert!(
        too_short.to_string().contains("shorter than the exposure"),
        "{too_short}"
    );
}

#[test]
fn a_cancelled_capture_writes_nothing() {
    let mut sim = simulated_imager(opts(vec![])).unwrap();
    let cfg = simulated_sequence(repo_library(), sim.clock.utc_now());
    sim.imager.cancel.cancel();
    let e = sim.imager.standard(&cfg).unwrap_err();
    assert!(matches!(e, CaptureError::Cancelled), "{e}");
}

#[test]
fn the_folder_writer_never_overwrites_and_leaves_no_partial_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sim = simulated_imager(opts(vec![])).unwrap();
    let cfg = simulated_sequence(repo_library(), sim.clock.utc_now());
    let capture = sim.imager.standard(&cfg).unwrap();
    let dir = tmp.path().join("acq");
    std::fs::create_dir(&dir).unwrap();
    let e = write_capture(&dir, &capture, None).unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["acq".to_string()]);
}
