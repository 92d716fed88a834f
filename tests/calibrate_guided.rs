//! `lumiq calibrate --guided` end to end with the real binary on the simulated instrument
//! the settings name: a new calibration set replaces the old one only at the end, its
//! darks say when and at which setpoint they were taken, and its flat — taken of the
//! simulated flat-field panel — is the lens's vignetting and nothing else.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use lumiq::formats::calibration_set::CalibrationSet;
use lumiq::formats::tiff_io::read_f32;
use lumiq::simulate::Instrument;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Settings for the simulated instrument, its set a copy of the shipped one; binning 8.
fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let cal = dir.join("calibration");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("calibration/sim-ivis-01"),
        &cal,
    );
    let config = dir.join("lumiq.toml");
    std::fs::write(
        &config,
        format!(
            r#"[instrument]
id = "sim-ivis-01"
site = "test-lab"

[state]
dir = "{state}"
min_free_disk_mb = 1

[calibration]
dir = "{cal}"

[status]
socket = "{socket}"

[broker]
host = "127.0.0.1"
port = 1883

[camera]
kind = "simulated"
cooling_setpoint_c = -90.0

[controller]
kind = "simulated"

[acquisition]
binnings = [8]
"#,
            state = dir.join("state").display(),
            cal = cal.display(),
            socket = dir.join("lumiq.sock").display(),
        ),
    )
    .unwrap();
    (config, cal)
}

/// Every file of a folder and its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Folders beside the set other than the set itself and the settings' state.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("guided"))
        .collect()
}

#[test]
fn guided_calibration_replaces_the_set_at_the_end() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, cal) = setup(tmp.path());
    let before = snapshot(&cal);
    let old = CalibrationSet::load(&cal).unwrap().index;
    let cfg = config.to_str().unwrap();

    // Interrupted: the technician confirms step 1, then the input closes at step 4 (the
    // flat-field panel), after the bias frames and darks were taken. Nothing changed.
    let mut child = Command::new(env!("CARGO_BIN_EXE_lumiq"))
        .args([
            "calibrate",
            "--guided",
            "--config",
            cfg,
            "--frames-per-master",
            "3",
            "--dark-exposure",
            "60",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("Step 3/5: darks") && err.contains("done: 3 darks"),
        "{err}"
    );
    assert!(err.contains("stopped at step 4"), "{err}");
    assert!(err.contains("the calibration set was not changed"), "{err}");
    assert!(snapshot(&cal) == before, "the old set was touched");
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());

    // Through with --yes.
    let out = common::lumiq(&[
        "calibrate",
        "--guided",
        "--config",
        cfg,
        "--yes",
        "--frames-per-master",
        "4",
        "--dark-exposure",
        "60",
        "--dark-exposure",
        "240",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for n in 1..=5 {
        assert!(err.contains(&format!("Step {n}/5")), "{err}");
    }
    assert!(err.contains("replaced"), "{err}");
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());

    let set = CalibrationSet::load(&cal).unwrap();
    let ix = &set.index;
    assert_eq!(ix.id, old.id);
    assert!(
        ix.created_at > old.created_at,
        "{} vs {}",
        ix.created_at,
        old.created_at
    );
    // The coefficients of the old set are kept; binning 4, not re-made, too.
    assert_eq!(ix.coefficient, old.coefficient);
    assert!(ix.bias.iter().any(|b| b.binning == 4 && b.version == 1));
    let b8 = ix.bias.iter().find(|b| b.binning == 8).unwrap();
    assert_eq!((b8.version, b8.frames_combined), (2, 4));
    // The new darks: when and at which setpoint.
    let new_darks: Vec<_> = ix
        .dark
        .iter()
        .filter(|d| d.binning == 8 && d.frames_combined == 4)
        .collect();
    assert_eq!(new_darks.len(), 2, "{:?}", ix.dark);
    for d in &new_darks {
        let t = d.acquired_at.unwrap();
        assert!(t > old.created_at && t <= ix.created_at, "{d:?}");
        assert_eq!(d.setpoint_c, Some(-90.0), "{d:?}");
        assert!((d.sensor_temp_c + 90.0).abs() < 0.5, "{d:?}");
    }
    let text = std::fs::read_to_string(cal.join("calibration.toml")).unwrap();
    assert!(text.contains("acquired_at = ") && text.contains("setpoint_c = -90.0"));

    // The flat of the panel, divided by the lens's vignetting, is flat: within 1 % (rms
    // over the central 90 % of the field).
    let flat = ix
        .flat
        .iter()
        .find(|f| f.binning == 8 && f.version == 2)
        .unwrap_or_else(|| panic!("no new flat: {:?}", ix.flat));
    let ff = read_f32(&cal.join(&flat.file)).unwrap();
    let vig = Instrument::default().vignetting_frame(8, flat.fov_cm);
    assert_eq!(ff.dim(), vig.dim());
    let n = ff.nrows();
    let m = n / 20;
    let mut ratio = Vec::new();
    for r in m..n - m {
        for c in m..n - m {
            ratio.push(ff[[r, c]] as f64 / vig[[r, c]] as f64);
        }
    }
    let mean = ratio.iter().sum::<f64>() / ratio.len() as f64;
    let rms =
        (ratio.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / ratio.len() as f64).sqrt() / mean;
    // Vignetting itself is far from flat: the correction is what makes it so.
    let vmin = vig.iter().cloned().fold(f32::INFINITY, f32::min);
    eprintln!("flat/vignetting: mean {mean:.4}, rms {rms:.5}; vignetting down to {vmin:.3}");
    assert!(vmin < 0.9, "{vmin}");
    assert!(rms < 0.01, "flat / vignetting rms {rms}");
    assert!((mean - 1.0).abs() < 0.02, "flat / vignetting mean {mean}");
}
