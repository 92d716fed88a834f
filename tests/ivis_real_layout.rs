//! IVIS click folders in the layout of real ones, end to end through `lumiq process`.
//!
//! The text files are hand-written in `tests/data/ivis/real-layout/` (not by lumiq's
//! writer): the camera block only in ClickInfo.txt, labels and ROIs in
//! AnalyzedClickInfo.txt, Living Image's CCDMap grammar, a trailing `# comment`, the doubled
//! colon, the real shelf D f/1 flat-field coefficients, a 1920-pixel sensor (240 px at
//! binning 8), and a saturated own dark naming the library click `BKG20220105025931`. The
//! frames are made here from a known scene, so the ROIs' gross flux by Living Image's
//! convention is known independently of lumiq's reader.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use lumiq::formats::tiff_io::write_u16;
use lumiq::process::roi::RoiShape;
use ndarray::Array2;
use serde_json::Value;

const N: usize = 240;
const BINNING: f64 = 8.0;
const EXPOSURE_S: f64 = 40.0;
const FOV_CM: f64 = 22.4;
const C_CCD: f64 = 7.223e5;
const BIAS_ADU: f64 = 608.5;
const DARK_ADU: f64 = 3.1;
/// Real shelf D f/1 coefficients k0..k4, x0, y0 (cm), as in the fixture's ClickInfo.txt.
const FF5_D_F1: [f64; 7] = [
    0.993171, 0.001630, -0.005467, 0.000520, -0.000023, -0.013469, 0.602904,
];
/// The fixture's ROIs, in sensor (unbinned) pixels: (xc, yc, width, height, angle).
const ROIS: [(f64, f64, f64, f64, f64); 5] = [
    (225.9, 424.3, 225.9, 225.9, 0.0),
    (601.7, 431.0, 225.9, 225.9, 0.0),
    (962.4, 418.8, 225.9, 225.9, 0.0),
    (1330.2, 440.6, 240.0, 200.0, 10.0),
    (1702.5, 425.1, 225.9, 225.9, 0.0),
];
/// Peak of each tumour's light, ADU before vignetting: bright to faint.
const PEAKS_ADU: [f64; 5] = [3000.0, 800.0, 150.0, 1500.0, 40.0];

/// The flat field at a pixel centre, with Living Image's axis offset: x0 right, y0 **up**.
fn ff(row: usize, col: usize) -> f64 {
    let px = FOV_CM / N as f64;
    let k = FF5_D_F1;
    let dx = (col as f64 + 0.5) * px - (FOV_CM / 2.0 + k[5]);
    let dy = (row as f64 + 0.5) * px - (FOV_CM / 2.0 - k[6]);
    let r = dx.hypot(dy);
    k[0] + k[1] * r + k[2] * r * r + k[3] * r.powi(3) + k[4] * r.powi(4)
}

/// The light reaching each pixel before vignetting, ADU: a Gaussian tumour at each ROI
/// centre (σ 3 px) on a faint even glow of the stage (0.4 ADU).
fn scene_adu() -> Array2<f64> {
    Array2::from_shape_fn((N, N), |(r, c)| {
        let (x, y) = (c as f64 + 0.5, r as f64 + 0.5);
        0.4 + ROIS
            .iter()
            .zip(PEAKS_ADU)
            .map(|(roi, peak)| {
                let (dx, dy) = (x - roi.0 / BINNING, y - roi.1 / BINNING);
                peak * (-(dx * dx + dy * dy) / (2.0 * 9.0)).exp()
            })
            .sum::<f64>()
    })
}

/// A click folder from the hand-written text and frames of the scene; the library holds
/// the background click it names.
fn folder(root: &Path) -> (std::path::PathBuf, std::path::PathBuf, Array2<u16>) {
    let dir = root.join("SS20220105115231_001");
    let library = root.join("BkgLibrary");
    std::fs::create_dir_all(&dir).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ivis/real-layout");
    for name in ["ClickInfo.txt", "AnalyzedClickInfo.txt"] {
        std::fs::copy(fixture.join(name), dir.join(name)).unwrap();
    }
    let scene = scene_adu();
    let lum = Array2::from_shape_fn((N, N), |(r, c)| {
        (BIAS_ADU + DARK_ADU + scene[[r, c]] * ff(r, c)).round() as u16
    });
    write_u16(&dir.join("luminescent.TIF"), &lum).unwrap();
    write_u16(
        &dir.join("readbias.TIF"),
        &Array2::from_elem((N, N), (BIAS_ADU * 10.0) as u16),
    )
    .unwrap();
    // The folder's own dark is unusable, as in the real folder.
    write_u16(
        &dir.join("background.TIF"),
        &Array2::from_elem((N, N), 65534),
    )
    .unwrap();
    // Photograph, binning 2 (960²): five bright bodies on a dark stage.
    let photo = Array2::from_shape_fn((4 * N, 4 * N), |(r, c)| {
        let on_mouse = ROIS.iter().any(|roi| {
            let (dx, dy) = (
                (c as f64 + 0.5) * 2.0 - roi.0,
                (r as f64 + 0.5) * 2.0 - roi.1,
            );
            (dx / 150.0).powi(2) + ((dy - 300.0) / 700.0).powi(2) <= 1.0
        });
        if on_mouse {
            30000
        } else {
            2000
        }
    });
    write_u16(&dir.join("photograph.TIF"), &photo).unwrap();
    lumiq::formats::ivis::write_background_click(
        &library.join("BKG20220105025931"),
        &Array2::from_elem((N, N), DARK_ADU as f32),
        8,
        EXPOSURE_S,
        10.0,
    )
    .unwrap();
    (dir, library, lum)
}

/// Living Image's gross total flux of an ROI: 4π · Σ L·A over the pixels whose centres lie
/// inside, L = C·(S − B − D)/(t·b²)/FF with the dark Living Image used.
fn living_image_gross(lum: &Array2<u16>, roi: (f64, f64, f64, f64, f64)) -> f64 {
    let shape = RoiShape::Ellipse {
        xc: roi.0 / BINNING,
        yc: roi.1 / BINNING,
        width: roi.2 / BINNING,
        height: roi.3 / BINNING,
        angle_deg: roi.4,
    };
    let area_cm2 = (FOV_CM / N as f64).powi(2);
    let mut sum = 0.0;
    for ((r, c), &s) in lum.indexed_iter() {
        if shape.contains(c as f64 + 0.5, r as f64 + 0.5) {
            let l = C_CCD * (f64::from(s) - BIAS_ADU - DARK_ADU)
                / (EXPOSURE_S * BINNING * BINNING)
                / ff(r, c);
            sum += l * area_cm2;
        }
    }
    4.0 * std::f64::consts::PI * sum
}

fn lumiq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lumiq"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("LUMIQ_CALIBRATION_DIR")
        .env_remove("LUMIQ_IVIS_BACKGROUNDS")
        .output()
        .expect("run lumiq")
}

fn record(out: Output) -> Value {
    assert!(
        out.status.success(),
        "lumiq failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
    common::assert_valid_record(&rec);
    rec
}

fn flags(rec: &Value) -> Vec<String> {
    rec["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

fn imported(rec: &Value) -> Vec<&Value> {
    rec["regions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["source"] == "imported")
        .collect()
}

/// With the lab's background library, every ROI's gross flux is Living Image's within 2 %.
/// (Reading the flat's y0 downward instead moves ROI 1 by about 5 %, so this also pins the
/// upward reading end to end.)
#[test]
fn real_layout_folder_with_its_background_click_agrees_with_living_image() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, library, lum) = folder(tmp.path());
    let rec = record(lumiq(&[
        "process",
        dir.to_str().unwrap(),
        "--ivis-backgrounds",
        library.to_str().unwrap(),
        "--detector",
        "classical",
    ]));
    assert!(!flags(&rec).contains(&"dark_not_subtracted".to_string()));
    assert!(!flags(&rec).contains(&"flat_implausible".to_string()));
    assert_eq!(rec["acquisition"]["subject_ids"][4], "3470");
    let provenance = rec["calibration"]["items"].to_string();
    assert!(provenance.contains("BKG20220105025931/background.TIF"));
    let rois = imported(&rec);
    assert_eq!(rois.len(), 5);
    for (i, (r, roi)) in rois.iter().zip(ROIS).enumerate() {
        assert_eq!(r["label"], format!("ROI {}", i + 1));
        let expected = living_image_gross(&lum, roi);
        let got = r["gross_total_flux"]["value"].as_f64().unwrap();
        let rel = (got - expected) / expected;
        assert!(
            rel.abs() < 0.02,
            "ROI {}: gross {got:.4e} vs Living Image {expected:.4e} ({:+.2} %)",
            i + 1,
            rel * 100.0
        );
    }
}

/// Without the library the folder is still read and measured, and flagged; what the
/// missing dark can add to each gross flux is in its uncertainty.
#[test]
fn real_layout_folder_without_a_dark_is_flagged_and_its_gross_uncertainty_covers_the_dark() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _, lum) = folder(tmp.path());
    let rec = record(lumiq(&[
        "process",
        dir.to_str().unwrap(),
        "--detector",
        "classical",
    ]));
    assert!(flags(&rec).contains(&"dark_not_subtracted".to_string()));
    let rois = imported(&rec);
    assert_eq!(rois.len(), 5);
    // The dark stays in every gross flux; its bound, from the frame's darkest parts, is in
    // the uncertainty and covers the excess over Living Image's value (dark subtracted).
    for (i, (r, roi)) in rois.iter().zip(ROIS).enumerate() {
        let expected = living_image_gross(&lum, roi);
        let gross = &r["gross_total_flux"];
        let got = gross["value"].as_f64().unwrap();
        let dark = gross["uncertainty_components"]["dark"].as_f64().unwrap();
        let excess = got - expected;
        assert!(excess > 0.0, "ROI {}: the dark must add light", i + 1);
        assert!(
            dark >= excess && dark <= 1.5 * excess,
            "ROI {}: dark bound {dark:.4e} vs the dark's share {excess:.4e}",
            i + 1
        );
        assert!(gross["uncertainty"].as_f64().unwrap() >= dark);
        // The net flux does not carry it.
        assert_eq!(r["total_flux"]["uncertainty_components"]["dark"], 0.0);
    }
}

/// Either text file missing or cut short: one error line naming it.
#[test]
fn missing_or_truncated_clickinfo_gives_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _, _) = folder(tmp.path());
    let click = dir.join("ClickInfo.txt");
    let bytes = std::fs::read(&click).unwrap();
    std::fs::remove_file(&click).unwrap();
    let out = lumiq(&["process", dir.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && out.stdout.is_empty());
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("lumiq: error"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("ClickInfo.txt") && errors[0].contains("camera block"));

    // Cut in the middle of the coefficient line this image needs.
    let cut = bytes
        .windows(26)
        .position(|w| w == b"Coef C-ccd at FOV 22.4, f1")
        .unwrap();
    std::fs::write(&click, &bytes[..cut + 15]).unwrap();
    let out = lumiq(&["process", dir.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && out.stdout.is_empty());
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("lumiq: error"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("ClickInfo.txt") && errors[0].contains("cut short"),
        "{}",
        errors[0]
    );
}

/// The simulator's IVIS writer makes the real layout by default: on a 1920-pixel sensor
/// (240 px at binning 8), with the folder's own dark saturated and the true one in the
/// library, every imported ROI's gross flux is within 2 % of the flux an ideal measurement
/// gives by Living Image's convention (truth.json).
#[test]
fn simulated_real_layout_on_a_1920_sensor_with_a_library_dark() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, library) = (tmp.path().join("click"), tmp.path().join("bkg"));
    let out = lumiq(&[
        "simulate",
        "--out",
        dir.to_str().unwrap(),
        "--format",
        "ivis",
        "--sensor-px",
        "1920",
        "--seed",
        "21",
        "--flux",
        "1e6",
        "2e7",
        "--background-library",
        library.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The layout: camera block in ClickInfo.txt only, ROIs in AnalyzedClickInfo.txt only.
    let text = |name: &str| {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        bytes.iter().map(|&b| char::from(b)).collect::<String>()
    };
    let (click, analyzed) = (text("ClickInfo.txt"), text("AnalyzedClickInfo.txt"));
    assert!(click.contains("*** Camera System Info:") && !click.contains("*** ROIs:"));
    assert!(analyzed.contains("*** ROIs:") && !analyzed.contains("*** Camera System Info:"));
    assert!(
        analyzed.contains("cm per pixel=0.011666666667"),
        "1920-pixel sensor"
    );
    assert!(click.contains("Background Click:\tBKG"));

    let rec = record(lumiq(&[
        "process",
        dir.to_str().unwrap(),
        "--ivis-backgrounds",
        library.to_str().unwrap(),
    ]));
    assert!(!flags(&rec).contains(&"dark_not_subtracted".to_string()));
    let truth: Value =
        serde_json::from_slice(&std::fs::read(dir.join("truth.json")).unwrap()).unwrap();
    let roi_truth = truth["rois"].as_array().unwrap();
    let rois = imported(&rec);
    assert_eq!(rois.len(), roi_truth.len());
    assert!(rois.len() >= 5);
    // The simulated sensor's bad column 1337 (binned column 167 at binning 8, in CCDMap) is
    // repaired by interpolation; where it crosses a bright tumour the repair loses part of
    // its light (measured here: −3.6 % on ROI 5). Those ROIs are held to 5 %, the rest to 2 %.
    let bad_column_px = 1337.0 / 8.0 + 0.5;
    let mut clean = 0;
    for (r, t) in rois.iter().zip(roi_truth) {
        assert_eq!(r["label"], t["label"]);
        let expected = t["expected_gross_flux"].as_f64().unwrap();
        let got = r["gross_total_flux"]["value"].as_f64().unwrap();
        let rel = (got - expected) / expected;
        let radius_px = (r["n_pixels"].as_f64().unwrap() / std::f64::consts::PI).sqrt();
        let crosses =
            (r["centroid_px"][0].as_f64().unwrap() - bad_column_px).abs() < radius_px + 1.0;
        let limit = if crosses { 0.05 } else { 0.02 };
        clean += usize::from(!crosses);
        assert!(
            rel.abs() < limit,
            "{}: gross {got:.4e} vs {expected:.4e} ({:+.2} %)",
            r["label"],
            rel * 100.0
        );
    }
    assert!(clean >= 5, "only {clean} ROIs clear of the bad column");
}
