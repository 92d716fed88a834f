//! The `lumiq` binary end to end, as a user or a script runs it: simulate → process on
//! lumiq folders (with the repository's measured calibration set) and IVIS click folders,
//! and every bad input a lab will meet, each giving a non-zero exit, nothing on stdout, and
//! one line on stderr naming the file or field and the fix.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use common::lumiq;

fn ok_json(out: Output) -> Value {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "lumiq failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    // Exactly one JSON object on stdout.
    let mut stream = serde_json::Deserializer::from_str(&stdout).into_iter::<Value>();
    let first = stream.next().expect("a record").expect("valid JSON");
    assert!(
        stream.next().is_none(),
        "more than one JSON value on stdout"
    );
    assert!(first.is_object());
    first
}

/// A failed run: non-zero exit, empty stdout, one line on stderr containing every needle.
fn assert_clear_error(out: Output, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "stdout must be empty on error: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("lumiq: error"))
        .collect();
    assert_eq!(lines.len(), 1, "one error line expected: {stderr}");
    for n in needles {
        assert!(
            lines[0].contains(n),
            "error {:?} should mention {n:?}",
            lines[0]
        );
    }
    lines[0].to_string()
}

fn simulate(dir: &Path, extra: &[&str]) {
    let d = dir.to_str().unwrap();
    let mut args = vec!["simulate", "--out", d];
    args.extend_from_slice(extra);
    let out = lumiq(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn truth(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("truth.json")).unwrap()).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn lumiq_folder_with_the_repository_calibration_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let acq = tmp.path().join("acq");
    simulate(&acq, &["--seed", "7", "--flux", "2e5", "2e7", "--rois"]);
    let out_dir = tmp.path().join("out");
    let rec = ok_json(lumiq(&["process", s(&acq), "--out", s(&out_dir)]));
    common::assert_valid_record(&rec);
    assert_eq!(rec["calibration"]["source"], "calibration_set");
    assert!(rec["calibration"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["kind"] == "dark"));
    for f in [
        "radiance.tiff",
        "background.tiff",
        "overlay.png",
        "record.json",
    ] {
        assert!(out_dir.join(f).is_file(), "{f} written");
    }
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("record.json")).unwrap())
            .unwrap();
    assert_eq!(written["measurement_id"], rec["measurement_id"]);

    // Every tumour found, its net flux close to the truth (bright: SNR in the hundreds).
    let t = truth(&acq);
    let regions = rec["regions"].as_array().unwrap();
    for tumour in t["tumours"].as_array().unwrap() {
        let (x, y) = (
            tumour["centre_px"][0].as_f64().unwrap(),
            tumour["centre_px"][1].as_f64().unwrap(),
        );
        let flux = tumour["total_flux"].as_f64().unwrap();
        let best = regions
            .iter()
            .filter(|r| r["source"] == "detected")
            .min_by(|a, b| {
                let d = |r: &&Value| {
                    (r["centroid_px"][0].as_f64().unwrap() - x)
                        .hypot(r["centroid_px"][1].as_f64().unwrap() - y)
                };
                d(a).total_cmp(&d(b))
            })
            .expect("detections");
        let dist = (best["centroid_px"][0].as_f64().unwrap() - x)
            .hypot(best["centroid_px"][1].as_f64().unwrap() - y);
        assert!(
            dist < 3.0,
            "tumour at ({x:.1}, {y:.1}) found {dist:.1} px away"
        );
        let measured = best["total_flux"]["value"].as_f64().unwrap();
        assert!(
            (measured - flux).abs() / flux < 0.05,
            "tumour at ({x:.1}, {y:.1}): {measured:.4e} vs {flux:.4e}"
        );
    }
    // Imported ROIs come back in order, with Living Image's gross flux.
    let rois: Vec<&Value> = regions
        .iter()
        .filter(|r| r["source"] == "imported")
        .collect();
    let roi_truth = t["rois"].as_array().unwrap();
    assert_eq!(rois.len(), roi_truth.len());
    for (r, rt) in rois.iter().zip(roi_truth) {
        assert_eq!(r["label"], rt["label"]);
        let expected = rt["expected_gross_flux"].as_f64().unwrap();
        let got = r["gross_total_flux"]["value"].as_f64().unwrap();
        let sigma = r["gross_total_flux"]["uncertainty_components"]["poisson"]
            .as_f64()
            .unwrap()
            .hypot(
                r["gross_total_flux"]["uncertainty_components"]["read_noise"]
                    .as_f64()
                    .unwrap(),
            );
        assert!(
            ((got - expected) / sigma).abs() < 5.0,
            "{}: gross {got:.4e} vs {expected:.4e} (sigma {sigma:.2e})",
            r["label"]
        );
    }
}

/// Living Image's convention for an imported ROI: total flux = 4π · Σ L·A over the pixels
/// whose centres lie inside, measured from the raw luminescent.TIF with the folder's own
/// read bias, dark, flat polynomial and C-ccd coefficient.
#[test]
fn ivis_click_folder_round_trips_through_its_own_calibration() {
    let tmp = tempfile::tempdir().unwrap();
    let acq = tmp.path().join("click");
    simulate(
        &acq,
        &["--format", "ivis", "--seed", "11", "--flux", "1e6", "2e7"],
    );
    assert!(acq.join("ClickInfo.txt").is_file() && acq.join("luminescent.TIF").is_file());
    let rec = ok_json(lumiq(&["process", s(&acq)]));
    common::assert_valid_record(&rec);
    assert_eq!(rec["acquisition"]["source_format"], "ivis_click_folder");
    assert_eq!(rec["calibration"]["source"], "ivis_click_folder");
    let flags: Vec<&str> = rec["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        flags.contains(&"flat_from_polynomial") && flags.contains(&"noise_model_assumed"),
        "{flags:?}"
    );
    assert!(!flags.contains(&"dark_not_subtracted"));
    assert_eq!(rec["acquisition"]["subject_ids"][0], "3466");

    let t = truth(&acq);
    let roi_truth = t["rois"].as_array().unwrap();
    let rois: Vec<&Value> = rec["regions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["source"] == "imported")
        .collect();
    assert_eq!(rois.len(), roi_truth.len());
    assert!(rois.len() >= 5);
    let mut rel_errors = Vec::new();
    for (r, rt) in rois.iter().zip(roi_truth) {
        assert_eq!(r["label"], rt["label"]);
        let expected = rt["expected_gross_flux"].as_f64().unwrap();
        let got = r["gross_total_flux"]["value"].as_f64().unwrap();
        rel_errors.push((got - expected) / expected);
    }
    let mean_abs = rel_errors.iter().map(|e| e.abs()).sum::<f64>() / rel_errors.len() as f64;
    assert!(
        mean_abs < 0.02,
        "imported ROI gross flux off by {:.2} % on average: {rel_errors:?}",
        mean_abs * 100.0
    );
}

#[test]
fn ivis_folder_with_an_unusable_dark_is_flagged_not_subtracted() {
    let tmp = tempfile::tempdir().unwrap();
    let acq = tmp.path().join("click");
    simulate(
        &acq,
        &[
            "--format",
            "ivis",
            "--seed",
            "12",
            "--unusable-dark",
            "--flux",
            "1e6",
            "2e7",
        ],
    );
    let rec = ok_json(lumiq(&["process", s(&acq)]));
    common::assert_valid_record(&rec);
    let flags: Vec<&str> = rec["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(flags.contains(&"dark_not_subtracted"), "{flags:?}");
    assert!(!rec["regions"].as_array().unwrap().is_empty());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn sim_once(tmp: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let p = tmp.join(name);
    simulate(&p, extra);
    p
}

#[test]
fn truncated_tiff_is_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let acq = sim_once(tmp.path(), "acq", &["--seed", "2"]);
    let f = acq.join("luminescent.tiff");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 3]).unwrap();
    assert_clear_error(
        lumiq(&["process", s(&acq)]),
        &["luminescent.tiff", "truncated"],
    );
}

#[test]
fn eight_bit_frame_is_refused_as_raw_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let acq = sim_once(tmp.path(), "acq", &["--seed", "2"]);
    let img = image::GrayImage::from_pixel(256, 256, image::Luma([10u8]));
    // Re-encode as an 8-bit TIFF through the tiff crate.
    let f = std::fs::File::create(acq.join("luminescent.tiff")).unwrap();
    let mut enc = tiff::encoder::TiffEncoder::new(f).unwrap();
    enc.write_image::<tiff::encoder::colortype::Gray8>(256, 256, img.as_raw())
        .unwrap();
    assert_clear_error(
        lumiq(&["process", s(&acq)]),
        &["luminescent.tiff", "16-bit"],
    );
}

#[test]
fn calibration_of_another_binning_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let acq = sim_once(tmp.path(), "acq", &["--seed", "2", "--binning", "2"]);
    assert_clear_error(
        lumiq(&["process", s(&acq)]),
        &["calibration.toml", "binning 2"],
    );
}

#[test]
fn calibration_of_another_size_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let acq = sim_once(tmp.path(), "acq", &["--seed", "2"]);
    // Crop the luminescent frame: binning 8 says 256², the file holds 200².
    let frame = lumiq::formats::tiff_io::read_u16(&acq.join("luminescent.tiff")).unwrap();
    let cropped = frame.slice(ndarray::s![..200, ..200]).to_owned();
    lumiq::formats::tiff_io::write_u16(&acq.join("luminescent.tiff"), &cropped).unwrap();
    assert_clear_error(lumiq(&["process", s(&acq)]), &["200"]);
}

#[test]
fn dark_saturated_everywhere_is_refused_naming_the_master() {
    let tmp = tempfile::tempdir().unwrap();
    let acq = sim_once(tmp.path(), "acq", &["--seed", "2"]);
    let cal = tmp.path().join("cal");
    copy_dir(
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/calibration/sim-ivis-01"
        )),
        &cal,
    );
    let dark = cal.join("dark_b8_60s_-90.0C.tiff");
    let d = lumiq::formats::tiff_io::read_f32(&dark).unwrap();
    lumiq::formats::tiff_io::write_f32(&dark, &d.mapv(|_| 65534.0)).unwrap();
    assert_clear_error(
        lumiq(&["process", s(&acq), "--calibration", s(&cal)]),
        &["dark_b8_60s_-90.0C.tiff", "saturated"],
    );
}

#[test]
fn flat_with_zeros_or_nan_is_refused_naming_the_master() {
    for bad in [0.0f32, f32::NAN] {
        let tmp = tempfile::tempdir().unwrap();
        let acq = sim_once(tmp.path(), "acq", &["--seed", "2"]);
        let cal = tmp.path().join("cal");
        copy_dir(
            Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/calibration/sim-ivis-01"
            )),
            &cal,
        );
        let flat = cal.join("flat_b8_fov22.4_f1_open.tiff");
        let mut f = lumiq::formats::tiff_io::read_f32(&flat).unwrap();
        f[[10, 20]] = bad;
        lumiq::formats::tiff_io::write_f32(&flat, &f).unwrap();
        assert_clear_error(
            lumiq(&["process", s(&acq), "--calibration", s(&cal)]),
            &["flat_b8_fov22.4_f1_open.tiff"],
        );
    }
}

fn edit_clickinfo(dir: &Path, edit: impl Fn(&str) -> String) {
    for name in ["ClickInfo.txt", "AnalyzedClickInfo.txt"] {
        let p = dir.join(name);
        if p.is_file() {
            // Latin-1: every byte is one char.
            let text: String = std::fs::read(&p)
                .unwrap()
                .iter()
                .map(|&b| b as char)
                .collect();
            let out: Vec<u8> = edit(&text).chars().map(|c| c as u32 as u8).collect();
            std::fs::write(&p, out).unwrap();
        }
    }
}

#[test]
fn ivis_folder_without_a_coefficient_for_its_fov_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let acq = sim_once(tmp.path(), "click", &["--format", "ivis", "--seed", "3"]);
    edit_clickinfo(&acq, |t| {
        t.split("\r\n")
            .filter(|l| !l.starts_with("Coef C-ccd at FOV 22.4, f1:"))
            .collect::<Vec<_>>()
            .join("\r\n")
    });
    assert_clear_error(lumiq(&["process", s(&acq)]), &["22.4", "f1"]);
}

#[test]
fn ivis_clickinfo_missing_a_field_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let acq = sim_once(tmp.path(), "click", &["--format", "ivis", "--seed", "3"]);
    edit_clickinfo(&acq, |t| {
        t.split("\r\n")
            .filter(|l| !l.starts_with("Luminescent Exposure (Seconds)"))
            .collect::<Vec<_>>()
            .join("\r\n")
    });
    assert_clear_error(
        lumiq(&["process", s(&acq)]),
        &["ClickInfo.txt", "Luminescent Exposure (Seconds)"],
    );
}

#[test]
fn unknown_metadata_key_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let acq = sim_once(tmp.path(), "acq", &["--seed", "2"]);
    let p = acq.join("acquisition.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    v["exposure_sec"] = 60.into();
    std::fs::write(&p, v.to_string()).unwrap();
    assert_clear_error(
        lumiq(&["process", s(&acq)]),
        &["acquisition.json", "exposure_sec"],
    );
}

#[test]
fn a_path_that_is_no_acquisition_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    assert_clear_error(
        lumiq(&["process", s(tmp.path())]),
        &["acquisition.json", "ClickInfo.txt"],
    );
    assert_clear_error(
        lumiq(&["process", s(&tmp.path().join("missing"))]),
        &["not a folder"],
    );
}

/// `lumiq calibrate` builds a set from simulated raw frames that `lumiq process` then uses.
#[test]
fn calibrate_then_process() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    let out = lumiq(&[
        "simulate",
        "--calibration-frames",
        "--binnings",
        "8",
        "--frames",
        "6",
        "--out",
        s(&raw),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let set = tmp.path().join("set");
    let out = lumiq(&[
        "calibrate",
        "--simulated-instrument",
        "--out",
        s(&set),
        s(&raw),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acq = sim_once(tmp.path(), "acq", &["--seed", "5"]);
    let rec = ok_json(lumiq(&["process", s(&acq), "--calibration", s(&set)]));
    common::assert_valid_record(&rec);
    assert_eq!(rec["calibration"]["id"], "set");
    assert!(!rec["regions"].as_array().unwrap().is_empty());
}
