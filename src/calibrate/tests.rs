//! `build_set` end to end on simulated raw frames: the set it writes calibrates a frame
//! close to the simulated instrument's truth, merges keep what they should, wrong inputs
//! are refused; and the committed simulated set still loads and calibrates.

use std::path::PathBuf;

use chrono::{TimeZone, Utc};

use super::*;
use crate::acquisition::{AcquisitionMeta, RawAcquisition, SourceFormat};
use crate::formats::calibration_set::CalibrationSet;
use crate::simulate::calibration_frames::{
    frame_meta, shipped_set_dir, sim_instrument_options, simulate_raw_calibration_frames,
};
use crate::simulate::Instrument;

fn meta(inst: &Instrument, binning: u32, exposure_s: f64) -> AcquisitionMeta {
    frame_meta(
        &inst.instrument_id,
        Utc.with_ymd_and_hms(2026, 2, 1, 9, 0, 0).unwrap(),
        binning,
        exposure_s,
        -90.0,
    )
}

/// Checks shared by the small end-to-end test and the committed set.
fn check_calibration(set: &CalibrationSet, inst: &Instrument, b: u32) {
    let n = inst.frame_px(b);
    let (cal, items) = set.frame_calibration(&meta(inst, b, 60.0), n, n).unwrap();
    let bias_mean = cal.bias_adu.mean().unwrap() as f64;
    assert!(
        (bias_mean - inst.bias_level_adu).abs() < 1.0,
        "bias mean {bias_mean}"
    );
    let c = n / 2;
    let centre = cal.flat[[c, c]];
    assert!((centre - 1.0).abs() < 0.02, "flat centre {centre}");
    for (r, cc) in [(0, 0), (0, n - 1), (n - 1, 0), (n - 1, n - 1)] {
        assert!(cal.flat[[r, cc]] < 0.9, "flat corner {}", cal.flat[[r, cc]]);
    }
    let col = inst.bad_column.unwrap() / b as usize;
    let flagged = cal.bad_pixels.column(col).iter().filter(|&&v| v).count();
    assert_eq!(
        flagged, n,
        "bad column {col} flagged in {flagged} of {n} rows"
    );
    // The dark at the same exposure is unscaled and close to the true dark charge.
    assert!(
        items[2].detail.contains("scaled by 1.000000"),
        "{}",
        items[2].detail
    );
    let truth = inst.ideal_calibration(b, 60.0, -90.0, 22.4, 1.0);
    let dark = cal.dark_adu.as_ref().unwrap();
    let (td, md) = (truth.dark_adu.unwrap(), dark);
    let good: Vec<f64> = td
        .iter()
        .zip(md.iter())
        .zip(cal.bad_pixels.iter())
        .filter(|(_, &bad)| !bad)
        .map(|((&t, &m), _)| (m - t) as f64)
        .collect();
    let mean_err = good.iter().sum::<f64>() / good.len() as f64;
    assert!(mean_err.abs() < 0.3, "dark mean error {mean_err} ADU");
    // Every true hot pixel is flagged.
    let (hot, _) = inst.defects();
    let bu = b as usize;
    let missed = hot
        .iter()
        .filter(|&&(x, y)| !cal.bad_pixels[[y / bu, x / bu]])
        .count();
    assert_eq!(missed, 0, "{missed} of {} hot pixels missed", hot.len());
    // The flat matches the truth (vignetting × PRNU) to a fraction of a percent.
    let flat_err = (&cal.flat - &truth.flat).mapv(|v| v.abs()).mean().unwrap();
    assert!(flat_err < 0.01, "flat mean abs error {flat_err}");
}

#[test]
fn builds_a_set_from_simulated_frames_and_merges_into_it() {
    let inst = Instrument {
        sensor_px: 512,
        bad_column: Some(201),
        ..Instrument::default()
    };
    let raw = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let folders = simulate_raw_calibration_frames(&inst, raw.path(), &[2, 4], 10).unwrap();
    assert_eq!(folders.len(), 2 * 3 * 10);
    let opts = sim_instrument_options(&inst);
    // The parent folder stands for the 60 acquisition folders in it.
    let summary = build_set(&[raw.path().to_path_buf()], out.path(), &opts).unwrap();
    assert_eq!(summary.masters.len(), 6);
    assert_eq!(summary.photon_transfer.len(), 2);
    let g = inst.sensor.gain_e_per_adu;
    let rn = inst.sensor.read_noise_e;
    assert!((summary.gain_e_per_adu - g).abs() / g < 0.05, "{summary:?}");
    assert!((summary.read_noise_e - rn).abs() / rn < 0.05, "{summary:?}");
    for m in summary.masters.iter().filter(|m| m.kind != "flat") {
        assert!(m.noise_adu > 0.5 && m.noise_adu < 3.0, "{m:?}");
    }

    let set = CalibrationSet::load(out.path()).unwrap();
    assert_eq!(set.index.sensor.width_px, 512);
    check_calibration(&set, &inst, 2);
    check_calibration(&set, &inst, 4);

    // Merge: add darks of another exposure only; the rest of the set stays.
    let more = tempfile::tempdir().unwrap();
    let mut darks = Vec::new();
    for i in 0..3u64 {
        let frame = inst.dark_frame(4, 240.0, -90.0, 900 + i);
        let acq = RawAcquisition {
            meta: meta(&inst, 4, 240.0),
            luminescent_adu: frame,
            photograph_adu: None,
            imported_rois: vec![],
            source: SourceFormat::LumiqFolder,
        };
        let d = more.path().join(format!("d{i}"));
        acquisition_folder::write(&d, &acq, FrameKind::Dark).unwrap();
        darks.push(d);
    }
    let mut with_setpoint = opts.clone();
    with_setpoint.dark_setpoint_c = Some(-90.0);
    let summary = build_set(&darks, out.path(), &with_setpoint).unwrap();
    assert_eq!(summary.masters.len(), 1);
    let set = CalibrationSet::load(out.path()).unwrap();
    assert_eq!(set.index.dark.len(), 3);
    // Each dark says when (the median of its frames' times) and at which setpoint it was
    // taken; the darks of the first run keep theirs (no setpoint given then).
    let d240 = set
        .index
        .dark
        .iter()
        .find(|d| d.exposure_s == 240.0)
        .unwrap();
    assert_eq!(d240.acquired_at, Some(meta(&inst, 4, 240.0).acquired_at));
    assert_eq!(d240.setpoint_c, Some(-90.0));
    assert!(set
        .index
        .dark
        .iter()
        .filter(|d| d.exposure_s != 240.0)
        .all(|d| d.setpoint_c.is_none() && d.acquired_at.is_some()));
    assert_eq!(set.index.bias.len(), 2);
    assert!((set.index.sensor.gain_e_per_adu - g).abs() / g < 0.05);
    let n = inst.frame_px(4);
    let (_, items) = set.frame_calibration(&meta(&inst, 4, 200.0), n, n).unwrap();
    assert_eq!(items[2].id, "dark_b4_240s_-90.0C.tiff", "{:?}", items[2]);
    assert_eq!(items[2].version, Some(1));

    // The same darks again: that entry's next version; the coefficients, given again
    // unchanged, keep theirs; a changed coefficient is the next version.
    build_set(&darks, out.path(), &opts).unwrap();
    let set = CalibrationSet::load(out.path()).unwrap();
    let (_, items) = set.frame_calibration(&meta(&inst, 4, 200.0), n, n).unwrap();
    assert_eq!(items[2].version, Some(2), "{:?}", items[2]);
    assert!(set.index.coefficient.iter().all(|c| c.version == 1));
    assert!(set.index.bias.iter().all(|b| b.version == 1));
    let mut changed = opts.clone();
    changed.coefficients[0].c *= 1.01;
    build_set(&darks, out.path(), &changed).unwrap();
    let set = CalibrationSet::load(out.path()).unwrap();
    let versions: Vec<u32> = set.index.coefficient.iter().map(|c| c.version).collect();
    assert_eq!(
        versions.iter().filter(|&&v| v == 2).count(),
        1,
        "{versions:?}"
    );
    let text = std::fs::read_to_string(out.path().join("calibration.toml")).unwrap();
    assert!(text.contains("version = 2"), "{text}");
}

#[test]
fn wrong_inputs_are_refused_with_the_folder_named() {
    let inst = Instrument {
        sensor_px: 64,
        ..Instrument::default()
    };
    let raw = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let folders = simulate_raw_calibration_frames(&inst, raw.path(), &[4], 2).unwrap();
    let darks: Vec<PathBuf> = folders
        .iter()
        .filter(|p| p.to_string_lossy().contains("_dark_"))
        .cloned()
        .collect();
    let opts = sim_instrument_options(&inst);
    let e = build_set(&darks, out.path(), &opts)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("master bias") && e.contains("add bias frames"),
        "{e}"
    );

    let other = CalibrateOptions::new("x", "another-instrument");
    let e = build_set(&folders, out.path(), &other)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("b4_bias_00") && e.contains("another-instrument"),
        "{e}"
    );

    let e = build_set(&[raw.path().join("nope")], out.path(), &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope") && e.contains("acquisition.json"), "{e}");
}

fn committed_set_dir() -> PathBuf {
    shipped_set_dir().expect("the shipped calibration set")
}

#[test]
fn committed_sim_instrument_set_calibrates_a_frame() {
    let inst = Instrument::default();
    let set = CalibrationSet::load(&committed_set_dir()).unwrap();
    assert_eq!(set.index.instrument_id, inst.instrument_id);
    let n = inst.frame_px(8);
    let (cal, items) = set.frame_calibration(&meta(&inst, 8, 60.0), n, n).unwrap();
    assert_eq!(cal.bias_adu.dim(), (256, 256));
    let bias_mean = cal.bias_adu.mean().unwrap() as f64;
    assert!((bias_mean - inst.bias_level_adu).abs() < 1.0, "{bias_mean}");
    let c = n / 2;
    assert!(
        (cal.flat[[c, c]] - 1.0).abs() < 0.02,
        "{}",
        cal.flat[[c, c]]
    );
    for (r, cc) in [(0, 0), (0, n - 1), (n - 1, 0), (n - 1, n - 1)] {
        assert!(cal.flat[[r, cc]] < 0.9, "{}", cal.flat[[r, cc]]);
    }
    let col = inst.bad_column.unwrap() / 8;
    assert!(
        cal.bad_pixels.column(col).iter().all(|&v| v),
        "column {col}"
    );
    assert_eq!(cal.coefficient, inst.coefficient(22.4, 1.0));
    assert_eq!(
        cal.coefficient_rel_uncertainty,
        inst.coefficient_rel_uncertainty
    );
    let g = inst.sensor.gain_e_per_adu;
    assert!((cal.sensor.gain_e_per_adu - g).abs() / g < 0.05);
    assert_eq!(items.len(), 6);
    // Binning 4 is in the set too, and a 12.5 cm coefficient.
    let n4 = inst.frame_px(4);
    let mut m = meta(&inst, 4, 30.0);
    assert!(set.frame_calibration(&m, n4, n4).is_ok());
    m.fov_cm = 12.5;
    let e = set.frame_calibration(&m, n4, n4).unwrap_err().to_string();
    assert!(e.contains("no [[flat]]"), "{e}");
}

/// Rebuilds `calibration/sim-ivis-01` (the committed set) from simulated raw frames:
/// `cargo test --release --lib generate_sim_instrument_set -- --ignored`.
#[test]
#[ignore = "writes calibration/sim-ivis-01; run on purpose"]
fn generate_sim_instrument_set() {
    let inst = Instrument::default();
    let raw = tempfile::tempdir().unwrap();
    let folders = simulate_raw_calibration_frames(&inst, raw.path(), &[4, 8], 12).unwrap();
    let dir = committed_set_dir();
    let staging = dir.with_file_name("sim-ivis-01.new");
    let _ = std::fs::remove_dir_all(&staging);
    let summary = build_set(&folders, &staging, &sim_instrument_options(&inst)).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&staging, &dir).unwrap();
    eprintln!("{summary:#?}");
    check_calibration(&CalibrationSet::load(&dir).unwrap(), &inst, 8);
    check_calibration(&CalibrationSet::load(&dir).unwrap(), &inst, 4);
}

/// Darks merged alone into a set used to rebuild the bad-pixel map of their binning from
/// the darks only, dropping the dead pixels the set's flats had found.
#[test]
fn merging_darks_alone_keeps_the_dead_pixels_found_from_flats() {
    let inst = Instrument {
        sensor_px: 128,
        ..Instrument::default()
    };
    let raw = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let folders = simulate_raw_calibration_frames(&inst, raw.path(), &[4], 4).unwrap();
    // Two dead pixels ([x, y] in the 32 × 32 grid of binning 4) in every flat: the bias
    // level, no response to light.
    let dead: [[u32; 2]; 2] = [[5, 7], [20, 11]];
    let mut inputs = Vec::new();
    for dir in &folders {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if !name.contains("_flat_") {
            inputs.push(dir.clone());
            continue;
        }
        let mut acq = acquisition_folder::read(dir).unwrap().acquisition;
        for [x, y] in dead {
            acq.luminescent_adu[[y as usize, x as usize]] = inst.bias_level_adu.round() as u16;
        }
        let d = raw.path().join(format!("dead_{name}"));
        acquisition_folder::write(&d, &acq, FrameKind::Flat).unwrap();
        inputs.push(d);
    }
    let opts = sim_instrument_options(&inst);
    build_set(&inputs, out.path(), &opts).unwrap();
    let map_b4 = || {
        let set = CalibrationSet::load(out.path()).unwrap();
        let e = set.index.bad_pixels.binned.iter().find(|e| e.binning == 4);
        e.expect("a map at binning 4").clone()
    };
    let before = map_b4();
    for p in dead {
        assert!(before.pixels.contains(&p), "{p:?} not found: {before:?}");
    }

    // Darks of another exposure, alone.
    let more = tempfile::tempdir().unwrap();
    let mut darks = Vec::new();
    for i in 0..3u64 {
        let acq = RawAcquisition {
            meta: meta(&inst, 4, 240.0),
            luminescent_adu: inst.dark_frame(4, 240.0, -90.0, 900 + i),
            photograph_adu: None,
            imported_rois: vec![],
            source: SourceFormat::LumiqFolder,
        };
        let d = more.path().join(format!("d{i}"));
        acquisition_folder::write(&d, &acq, FrameKind::Dark).unwrap();
        darks.push(d);
    }
    let summary = build_set(&darks, out.path(), &opts).unwrap();
    assert_eq!(summary.masters.len(), 1);
    let after = map_b4();
    for p in dead {
        assert!(
            after.pixels.contains(&p),
            "{p:?} dropped by the merge: {after:?}"
        );
    }
    // Nothing found before is lost (the hot pixels are found again from the new darks).
    for p in &before.pixels {
        assert!(
            after.pixels.contains(p),
            "{p:?} dropped by the merge: {after:?}"
        );
    }
    assert_eq!(after.columns, before.columns);
}
