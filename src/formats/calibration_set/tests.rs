//! Unit tests of the calibration set: selection and scaling of the masters, every refusal
//! and its message, and the index's TOML round trip.

use std::collections::HashMap;
use std::path::Path;

use chrono::{TimeZone, Utc};
use ndarray::Array2;

use super::*;
use crate::acquisition::AcquisitionMeta;
use crate::formats::tiff_io::write_f32;
use crate::simulate::calibration_frames::frame_meta;

const B: u32 = 4;
const N: usize = 16; // binned side; the sensor is 64².

fn index() -> CalibrationIndex {
    CalibrationIndex {
        schema: SCHEMA.into(),
        schema_version: SCHEMA_VERSION,
        id: "test-set".into(),
        instrument_id: "sim-ivis-01".into(),
        created_at: Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap(),
        sensor: SensorSection {
            width_px: 64,
            height_px: 64,
            pixel_pitch_um: 13.5,
            gain_e_per_adu: 1.5,
            read_noise_e: 5.0,
            saturation_adu: 65000.0,
            noise_source: None,
        },
        dark_rules: DarkRules::default(),
        bias: vec![BiasEntry {
            version: 1,
            binning: B,
            file: "bias_b4.tiff".into(),
            frames_combined: 10,
            noise_adu: 1.25,
        }],
        dark: vec![
            DarkEntry {
                version: 1,
                binning: B,
                exposure_s: 60.0,
                sensor_temp_c: -90.0,
                file: "dark_b4_60s.tiff".into(),
                frames_combined: 10,
                noise_adu: 1.5,
                acquired_at: Some(Utc.with_ymd_and_hms(2026, 1, 5, 8, 30, 0).unwrap()),
                setpoint_c: Some(-90.0),
            },
            DarkEntry {
                version: 1,
                binning: B,
                exposure_s: 600.0,
                sensor_temp_c: -90.0,
                file: "dark_b4_600s.tiff".into(),
                frames_combined: 10,
                noise_adu: 2.0,
                acquired_at: None,
                setpoint_c: None,
            },
        ],
        flat: vec![FlatEntry {
            version: 1,
            fov_cm: 22.4,
            binning: B,
            filter: "open".into(),
            f_number: 1.0,
            file: "flat_b4.tiff".into(),
            frames_combined: 10,
        }],
        bad_pixels: BadPixelTable {
            pixels: vec![[5, 9]],
            columns: vec![37],
            binned: vec![
                BinnedBadPixels {
                    binning: 2,
                    pixels: vec![[20, 30]],
                    columns: vec![],
                },
                BinnedBadPixels {
                    binning: 8,
                    pixels: vec![[1, 1]],
                    columns: vec![],
                },
            ],
        },
        coefficient: vec![CoefficientEntry {
            version: 1,
            fov_cm: 22.4,
            f_number: 1.0,
            c: 7.223e5,
            rel_uncertainty: 0.03,
        }],
    }
}

/// A set in a temporary folder; `edit` changes the index, `frames` the masters.
fn make_set(
    edit: impl FnOnce(&mut CalibrationIndex),
    frames: impl FnOnce(&mut HashMap<&'static str, Array2<f32>>),
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut ix = index();
    edit(&mut ix);
    let mut m: HashMap<&'static str, Array2<f32>> = HashMap::new();
    m.insert("bias_b4.tiff", Array2::from_elem((N, N), 500.0));
    m.insert("dark_b4_60s.tiff", Array2::from_elem((N, N), 10.0));
    m.insert("dark_b4_600s.tiff", Array2::from_elem((N, N), 100.0));
    m.insert(
        "flat_b4.tiff",
        Array2::from_shape_fn((N, N), |(r, c)| {
            1.0 - 0.001 * ((r as f32 - 7.5).powi(2) + (c as f32 - 7.5).powi(2))
        }),
    );
    frames(&mut m);
    for (name, a) in &m {
        write_f32(&dir.path().join(name), a).unwrap();
    }
    std::fs::write(dir.path().join(INDEX_FILE), ix.to_toml()).unwrap();
    dir
}

fn meta(binning: u32, exposure_s: f64, temp: f64) -> AcquisitionMeta {
    frame_meta(
        "sim-ivis-01",
        Utc.with_ymd_and_hms(2026, 1, 6, 9, 0, 0).unwrap(),
        binning,
        exposure_s,
        temp,
    )
}

fn err_of(dir: &Path, m: &AcquisitionMeta, rows: usize, cols: usize) -> String {
    let set = CalibrationSet::load(dir).unwrap();
    set.frame_calibration(m, rows, cols)
        .unwrap_err()
        .to_string()
}

#[test]
fn selects_and_scales_the_dark() {
    let dir = make_set(|_| {}, |_| {});
    let set = CalibrationSet::load(dir.path()).unwrap();
    // 120 s: the 60 s dark (ratio 2) beats the 600 s one (ratio 5); scale 2.
    let (cal, items) = set.frame_calibration(&meta(B, 120.0, -89.0), N, N).unwrap();
    let d = cal.dark_adu.as_ref().unwrap();
    assert!(d.iter().all(|&v| (v - 20.0).abs() < 1e-4), "{d:?}");
    assert!((cal.dark_var_adu2 - 9.0).abs() < 1e-4);
    assert!((cal.bias_var_adu2 - 1.5625).abs() < 1e-6);
    assert_eq!(cal.bias_adu[[3, 3]], 500.0);
    assert_eq!(cal.coefficient, 7.223e5);
    let kinds: Vec<&str> = items.iter().map(|i| i.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["index", "bias", "dark", "flat", "bad_pixels", "coefficient"]
    );
    let dark = &items[2];
    assert_eq!(dark.id, "dark_b4_60s.tiff");
    assert!(dark.detail.contains("scaled by 2.0"), "{}", dark.detail);
    assert_eq!(
        dark.sha256,
        crate::formats::sha256_file(&dir.path().join("dark_b4_60s.tiff")).unwrap()
    );
    assert!(items.iter().all(|i| i.sha256.len() == 64));

    // 400 s: the 600 s dark is nearer (ratio 1.5), scaled by 2/3.
    let (cal, _) = set.frame_calibration(&meta(B, 400.0, -91.5), N, N).unwrap();
    let v = cal.dark_adu.unwrap()[[0, 0]];
    assert!((v - 100.0 * 400.0 / 600.0).abs() < 1e-3, "{v}");

    // Bad pixels: unbinned (5, 9) → binned (1, 2); column 37 → 9; binning-2 (20, 30)
    // → (10, 15); the binning-8 entry cannot be placed at binning 4.
    let bp = &cal.bad_pixels;
    assert!(bp[[2, 1]]);
    assert!(bp.column(9).iter().all(|&b| b));
    assert!(bp[[15, 10]]);
    assert_eq!(bp.iter().filter(|&&b| b).count(), N + 2);
}

#[test]
fn another_binning_is_refused() {
    let dir = make_set(|_| {}, |_| {});
    let e = err_of(dir.path(), &meta(2, 60.0, -90.0), 32, 32);
    assert!(e.contains("calibration.toml"), "{e}");
    assert!(
        e.contains("binning 4") && e.contains("frame is binning 2"),
        "{e}"
    );
    assert!(e.contains("use a set made at the frame's binning"), "{e}");
}

#[test]
fn another_size_is_refused() {
    let dir = make_set(|_| {}, |_| {});
    let e = err_of(dir.path(), &meta(B, 60.0, -90.0), 20, 24);
    assert!(e.contains("bias_b4.tiff"), "{e}");
    assert!(e.contains("size 16x16") && e.contains("size 24x20"), "{e}");
    assert!(e.contains("use a set made at the frame's binning"), "{e}");
}

#[test]
fn dark_temperature_out_of_tolerance_is_refused() {
    let dir = make_set(|_| {}, |_| {});
    let e = err_of(dir.path(), &meta(B, 60.0, -85.0), N, N);
    assert!(e.contains("calibration.toml"), "{e}");
    assert!(
        e.contains("-85.0 °C") && e.contains("60 s at -90.0 °C"),
        "{e}"
    );
    assert!(e.contains("lumiq calibrate dark"), "{e}");
}

#[test]
fn dark_exposure_ratio_too_large_is_refused() {
    let dir = make_set(|_| {}, |_| {});
    let e = err_of(dir.path(), &meta(B, 5.0, -90.0), N, N);
    assert!(e.contains("exposure ratio 12.00"), "{e}");
    assert!(e.contains("max_exposure_ratio 4"), "{e}");
    assert!(e.contains("lumiq calibrate dark"), "{e}");
}

#[test]
fn dark_saturated_everywhere_is_refused() {
    let dir = make_set(
        |_| {},
        |m| {
            m.insert("dark_b4_60s.tiff", Array2::from_elem((N, N), 65034.0));
        },
    );
    let e = err_of(dir.path(), &meta(B, 60.0, -90.0), N, N);
    assert!(e.contains("dark_b4_60s.tiff"), "{e}");
    assert!(e.contains("saturated in every pixel"), "{e}");
    assert!(e.contains("take new darks"), "{e}");
}

#[test]
fn flat_with_zero_or_nan_is_refused() {
    for bad in [0.0f32, f32::NAN] {
        let dir = make_set(
            |_| {},
            |m| {
                m.get_mut("flat_b4.tiff").unwrap()[[3, 4]] = bad;
            },
        );
        let e = err_of(dir.path(), &meta(B, 60.0, -90.0), N, N);
        assert!(e.contains("flat_b4.tiff"), "{e}");
        assert!(e.contains("row 3, column 4"), "{e}");
        assert!(e.contains("rebuild the flat"), "{e}");
    }
}

#[test]
fn missing_coefficient_is_refused() {
    let dir = make_set(
        |ix| {
            ix.flat.push(FlatEntry {
                version: 1,
                fov_cm: 12.5,
                ..ix.flat[0].clone()
            });
            ix.flat[1].file = "flat_b4.tiff".into();
        },
        |_| {},
    );
    let mut m = meta(B, 60.0, -90.0);
    m.fov_cm = 12.5;
    let e = err_of(dir.path(), &m, N, N);
    assert!(e.contains("calibration.toml"), "{e}");
    assert!(e.contains("[[coefficient]] for fov 12.5 cm, f/1"), "{e}");
    assert!(e.contains("add a [[coefficient]] entry"), "{e}");
}

#[test]
fn missing_flat_names_what_exists() {
    let dir = make_set(|_| {}, |_| {});
    let mut m = meta(B, 60.0, -90.0);
    m.emission_filter = "GFP".into();
    let e = err_of(dir.path(), &m, N, N);
    assert!(
        e.contains("filter \"GFP\"") && e.contains("filter \"open\""),
        "{e}"
    );
    assert!(e.contains("lumiq calibrate flat"), "{e}");
}

#[test]
fn unknown_key_is_refused_by_name() {
    let dir = make_set(|_| {}, |_| {});
    let p = dir.path().join(INDEX_FILE);
    let text = std::fs::read_to_string(&p).unwrap();
    let text = text.replace("[sensor]\n", "[sensor]\ngain_e_per_adu_typo = 1.5\n");
    std::fs::write(&p, text).unwrap();
    let e = CalibrationSet::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("calibration.toml"), "{e}");
    assert!(e.contains("gain_e_per_adu_typo"), "{e}");
    assert!(e.contains("fix or remove the key"), "{e}");
}

#[test]
fn missing_master_file_and_other_instrument_are_refused() {
    let dir = make_set(|_| {}, |_| {});
    let mut m = meta(B, 60.0, -90.0);
    m.instrument_id = "other".into();
    let e = err_of(dir.path(), &m, N, N);
    assert!(
        e.contains("instrument_id") && e.contains("\"other\""),
        "{e}"
    );

    std::fs::remove_file(dir.path().join("flat_b4.tiff")).unwrap();
    let e = CalibrationSet::load(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("flat[0].file") && e.contains("flat_b4.tiff"),
        "{e}"
    );
}

#[test]
fn index_round_trips_through_toml() {
    let mut ix = index();
    ix.bad_pixels.binned[0].pixels = (0..200).map(|i| [i % 32, i / 7]).collect();
    let text = ix.to_toml();
    assert!(text.lines().all(|l| l.len() <= 100), "{text}");
    let back = CalibrationIndex::parse(&text, Path::new("x.toml")).unwrap();
    // The dark written without `acquired_at` reads back with the set's `created_at`.
    assert_eq!(back.dark[1].acquired_at, Some(ix.created_at));
    ix.dark[1].acquired_at = Some(ix.created_at);
    assert_eq!(back, ix);
    assert!(
        text.contains("acquired_at = \"2026-01-05T08:30:00Z\""),
        "{text}"
    );
    assert!(text.contains("setpoint_c = -90.0"), "{text}");
    assert!(text.contains("schema = \"lumiq.calibration\""), "{text}");
    assert!(text.contains("[[bad_pixels.binned]]"), "{text}");
}

/// A set in the layout written before darks recorded when and at which setpoint they were
/// taken (the shipped simulated set is one): it loads, each dark taken at the set's
/// `created_at`, its setpoint unknown.
#[test]
fn a_set_without_dark_provenance_still_loads() {
    let dir = crate::simulate::calibration_frames::shipped_set_dir().expect("the shipped set");
    let text = std::fs::read_to_string(dir.join(INDEX_FILE)).unwrap();
    assert!(!text.contains("acquired_at") && !text.contains("setpoint_c"));
    let set = CalibrationSet::load(&dir).unwrap();
    assert!(!set.index.dark.is_empty());
    for d in &set.index.dark {
        assert_eq!(d.acquired_at, Some(set.index.created_at), "{d:?}");
        assert_eq!(d.setpoint_c, None, "{d:?}");
    }
    // And a non-finite setpoint is refused by name.
    let bad = text.replacen("[[dark]]\n", "[[dark]]\nsetpoint_c = nan\n", 1);
    let e = CalibrationIndex::parse(&bad, Path::new("x.toml"))
        .and_then(|ix| ix.validate(Path::new("x.toml")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("dark[0].setpoint_c"), "{e}");
}
