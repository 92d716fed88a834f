//! Round trips through the writer and the reader, and the hand-written real-layout
//! fixtures in `tests/data/ivis/`.

use super::click_info::*;
use super::*;
use chrono::TimeZone;

/// Owned data behind an [`IvisFolderSpec`].
struct Fixture {
    meta: AcquisitionMeta,
    lum: Array2<u16>,
    photo: Array2<u16>,
    bias: Array2<f32>,
    dark: Option<Array2<f32>>,
    coefficients: Vec<(f64, f64, f64)>,
    shelves: Vec<(char, f64)>,
    flat: RadialFlat,
    defects: Vec<(usize, usize)>,
    columns: Vec<usize>,
    rois: Vec<Roi>,
    animals: Vec<String>,
}

const ROWS: usize = 32;
const COLS: usize = 48;

fn fixture() -> Fixture {
    let animals: Vec<String> = ["3466", "3467", "3468"].map(String::from).to_vec();
    Fixture {
        meta: AcquisitionMeta {
            instrument_id: "IS1234N5678".into(),
            acquired_at: Utc.with_ymd_and_hms(2022, 1, 5, 10, 32, 17).unwrap(),
            settings: AcquisitionSettings {
                exposure_s: 60.0,
                binning: 8,
                f_number: 1.0,
                fov_cm: 22.4,
                sensor_temp_c: -89.9,
                emission_filter: "open".into(),
                shelf: Some("D".into()),
            },
            study_id: Some("Étude µ-CT 12".into()),
            subject_ids: animals.clone(),
            injection_time: Some(Utc.with_ymd_and_hms(2022, 1, 5, 10, 5, 0).unwrap()),
            view: Some("Dorsal".into()),
            photograph: Some(PhotographMeta {
                exposure_s: 0.2,
                binning: 2,
            }),
        },
        lum: Array2::from_shape_fn((ROWS, COLS), |(r, c)| {
            if (r, c) == (3, 4) {
                65535
            } else {
                (600 + r * 37 + c * 11) as u16
            }
        }),
        photo: Array2::from_shape_fn((ROWS * 4, COLS * 4), |(r, c)| (r * 300 + c) as u16),
        bias: Array2::from_shape_fn((ROWS, COLS), |(r, c)| {
            500.0 + (c % 3) as f32 * 0.37 + r as f32 * 0.01
        }),
        dark: Some(Array2::from_shape_fn((ROWS, COLS), |(r, c)| {
            2.0 + ((r + c) % 5) as f32 * 0.13
        })),
        coefficients: vec![
            (22.4, 1.0, 7.223e5),
            (22.4, 2.0, 2.8892e6),
            (12.5, 1.0, 2.319e6),
        ],
        shelves: vec![('A', 4.0), ('B', 6.5), ('C', 12.5), ('D', 22.4)],
        flat: RadialFlat {
            k: [1.0, 0.0, -1.6e-3, 0.0, 1.2e-6],
            x0_cm: 0.3,
            y0_cm: -0.2,
        },
        defects: vec![(120, 45), (7, 7)],
        columns: vec![337],
        rois: vec![
            Roi {
                label: "ROI 1".into(),
                shape: RoiShape::Ellipse {
                    xc: 100.0,
                    yc: 80.0,
                    width: 40.0,
                    height: 40.0,
                    angle_deg: 0.0,
                },
            },
            Roi {
                label: "mouse 2; flank".into(),
                shape: RoiShape::Ellipse {
                    xc: 200.5,
                    yc: 120.25,
                    width: 64.0,
                    height: 24.0,
                    angle_deg: 30.0,
                },
            },
            Roi {
                label: "ROI 3".into(),
                shape: RoiShape::Rectangle {
                    xc: 300.0,
                    yc: 200.0,
                    width: 48.0,
                    height: 16.0,
                    angle_deg: -12.5,
                },
            },
        ],
        animals,
    }
}

impl Fixture {
    fn spec(&self) -> IvisFolderSpec<'_> {
        IvisFolderSpec {
            meta: &self.meta,
            luminescent_adu: &self.lum,
            photograph_adu: Some(&self.photo),
            readbias_adu: &self.bias,
            dark_adu: self.dark.as_ref(),
            data_multiplier: 10.0,
            coefficients: &self.coefficients,
            shelf_fovs: &self.shelves,
            flat: self.flat,
            saturation_adu: 65000.0,
            defects_unbinned: &self.defects,
            bad_columns_unbinned: &self.columns,
            rois_unbinned: &self.rois,
            animal_numbers: &self.animals,
            camera_id: "IS1234N5678",
            background_click: None,
        }
    }

    fn write(&self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        write_click_folder(dir.path(), &self.spec()).unwrap();
        dir
    }
}

fn read_err(dir: &Path) -> String {
    read_click_folder(dir).unwrap_err().to_string()
}

/// Replace `from` by `to` (once) in a folder's ClickInfo.txt, keeping Latin-1 bytes.
fn edit_click_info(dir: &Path, from: &str, to: &str) {
    let p = dir.join(CLICK_INFO);
    let text = decode_latin1(&std::fs::read(&p).unwrap());
    assert!(text.contains(from), "{from:?} not in ClickInfo.txt");
    let t = Text {
        lines: vec![text
            .replacen(from, to, 1)
            .trim_end_matches("\r\n")
            .to_string()],
    };
    std::fs::write(&p, t.to_latin1(&p).unwrap()).unwrap();
}

#[test]
fn round_trip_keeps_meta_frames_and_calibration() {
    let fx = fixture();
    let dir = fx.write();
    assert!(is_click_folder(dir.path()));
    let f = read_click_folder(dir.path()).unwrap();
    let a = &f.acquisition;
    assert!(f.analyzed);
    assert_eq!(a.source, SourceFormat::IvisClickFolder);
    assert_eq!(a.meta, fx.meta);
    assert_eq!(a.luminescent_adu, fx.lum);
    assert_eq!(a.photograph_adu.as_ref(), Some(&fx.photo));
    assert_eq!(a.meta.subject_ids, ["3466", "3467", "3468"]);

    let cal = &f.calibration;
    assert_eq!(cal.coefficient, 7.223e5);
    assert_eq!(cal.coefficient_rel_uncertainty, 0.05);
    assert_eq!(cal.sensor.saturation_adu, 65000.0);
    assert_eq!(cal.sensor.gain_e_per_adu, 1.5);
    // Bias and dark: stored ×10 and rounded, read back ÷10.
    let expect = |v: f32| ((f64::from(v) * 10.0).round() / 10.0) as f32;
    assert_eq!(cal.bias_adu, fx.bias.mapv(expect));
    assert_eq!(
        cal.dark_adu.as_ref().unwrap(),
        &fx.dark.as_ref().unwrap().mapv(expect)
    );
    assert!((cal.bias_adu[[0, 1]] - 500.4).abs() < 1e-4);

    // Flat: the polynomial at the pixel centres, with r in cm (pixel = 22.4/48 cm).
    let px = 22.4 / COLS as f64;
    let expected_flat = fx.flat.to_frame(ROWS, COLS, px);
    assert_eq!(cal.flat, expected_flat);
    let centre = fx.flat.at(24.5 * px, 16.5 * px, 22.4, ROWS as f64 * px);
    assert!((f64::from(cal.flat[[16, 24]]) - centre).abs() < 1e-6);
    // Corner (0, 0): dx = 0.5 px − (11.2 + 0.3), dy = 0.5 px − (7.467 − (−0.2)): the
    // axis offset's y points up the image, so y0 = −0.2 puts the axis below the centre.
    let (dx, dy) = (0.5 * px - 11.5, 0.5 * px - (ROWS as f64 * px / 2.0 + 0.2));
    let r = (dx * dx + dy * dy).sqrt();
    let corner = 1.0 - 1.6e-3 * r * r + 1.2e-6 * r.powi(4);
    assert!((f64::from(cal.flat[[0, 0]]) - corner).abs() < 1e-6);
    assert!(cal.flat[[0, 0]] < cal.flat[[16, 24]] && (cal.flat[[16, 24]] - 1.0).abs() < 0.01);

    // Bad pixels: (x 120, y 45) → (row 5, col 15); (7, 7) → (0, 0); column 337, rows
    // 0..=255 (written as the triple `337,0,255`) → column 42.
    let bad = &cal.bad_pixels;
    assert!(bad[[5, 15]] && bad[[0, 0]]);
    assert!((0..ROWS).all(|r| bad[[r, 42]]));
    assert_eq!(bad.iter().filter(|&&b| b).count(), 2 + ROWS);

    // ROIs: unbinned → luminescent grid, ÷ binning 8; labels kept (`;` becomes `,`).
    let rois = &a.imported_rois;
    assert_eq!(rois.len(), 3);
    assert_eq!(rois[0].shape, fx.rois[0].shape.scaled(8.0));
    assert_eq!(rois[1].shape, fx.rois[1].shape.scaled(8.0));
    assert_eq!(rois[1].label, "mouse 2, flank");
    assert_eq!(
        rois[2].shape,
        RoiShape::Rectangle {
            xc: 37.5,
            yc: 25.0,
            width: 6.0,
            height: 2.0,
            angle_deg: -12.5
        }
    );

    assert_eq!(
        a.meta.acquired_at,
        Utc.with_ymd_and_hms(2022, 1, 5, 10, 32, 17).unwrap()
    );
    assert_eq!(
        f.flags,
        [
            QualityFlag::FlatFromPolynomial,
            QualityFlag::NoiseModelAssumed
        ]
    );
    let names: Vec<&str> = f.files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "ClickInfo.txt",
            "AnalyzedClickInfo.txt",
            "luminescent.TIF",
            "readbias.TIF",
            "background.TIF",
            "photograph.TIF"
        ]
    );
    assert!(f.files.iter().all(|(_, h)| h.len() == 64));
}

#[test]
fn acquired_at_comes_from_acquisition_seconds_since_1904() {
    let fx = fixture();
    let dir = fx.write();
    // 2022-01-05T10:32:17Z is Unix 1641378737; 1904 → 1970 is 2082844800 s.
    let text = decode_latin1(&std::fs::read(dir.path().join(CLICK_INFO)).unwrap());
    assert!(
        text.contains("Acquisition Seconds:\t3724223537\r\n"),
        "{text}"
    );
    assert!(text.contains("Acquisition Date:\tWednesday, January 5, 2022\r\n"));
    // Seconds win over a contradicting date; the written date is only for people.
    std::fs::remove_file(dir.path().join(ANALYZED_CLICK_INFO)).unwrap();
    edit_click_info(dir.path(), "3724223537", "3724223537.25");
    edit_click_info(dir.path(), "January 5, 2022", "March 1, 2023");
    let f = read_click_folder(dir.path()).unwrap();
    assert!(!f.analyzed);
    assert_eq!(
        f.acquisition.meta.acquired_at,
        Utc.with_ymd_and_hms(2022, 1, 5, 10, 32, 17).unwrap() + TimeDelta::milliseconds(250)
    );
}

#[test]
fn crlf_latin1_round_trip_and_bare_lf_parses() {
    let fx = fixture();
    let dir = fx.write();
    let p = dir.path().join(CLICK_INFO);
    let bytes = std::fs::read(&p).unwrap();
    // Latin-1: µ is the single byte 0xB5, É is 0xC9 (never UTF-8's 0xC2 0xB5).
    assert!(
        bytes.windows(2).any(|w| w == [b' ', 0xB5]),
        "µ not stored as Latin-1"
    );
    assert!(bytes.contains(&0xC9));
    assert!(!bytes.windows(2).any(|w| w == [0xC2, 0xB5]));
    // CRLF everywhere: every LF follows a CR.
    assert!(bytes
        .iter()
        .enumerate()
        .all(|(i, &b)| b != b'\n' || (i > 0 && bytes[i - 1] == b'\r')));
    assert!(bytes.ends_with(b"\r\n"));

    std::fs::remove_file(dir.path().join(ANALYZED_CLICK_INFO)).unwrap();
    // A Latin-1 comment with é, and a field value with °.
    let mut edited = b"# r\xE9sum\xE9 de l'exp\xE9rience\r\n".to_vec();
    edited.extend_from_slice(&bytes);
    std::fs::write(&p, &edited).unwrap();
    let f = read_click_folder(dir.path()).unwrap();
    assert_eq!(
        f.acquisition.meta.study_id.as_deref(),
        Some("Étude µ-CT 12")
    );
    assert_eq!(f.acquisition.meta, fx.meta);

    // Bare LF (a file that went through a Unix tool) parses to the same thing.
    let lf: Vec<u8> = edited.iter().copied().filter(|&b| b != b'\r').collect();
    std::fs::write(&p, &lf).unwrap();
    let g = read_click_folder(dir.path()).unwrap();
    assert_eq!(g.acquisition.meta, fx.meta);
    assert_eq!(g.calibration.coefficient, 7.223e5);
}

#[test]
fn text_outside_latin1_is_refused_on_write() {
    let mut fx = fixture();
    fx.meta.study_id = Some("study → 2".into());
    let dir = tempfile::tempdir().unwrap();
    let e = write_click_folder(dir.path(), &fx.spec())
        .unwrap_err()
        .to_string();
    assert!(e.contains("ClickInfo.txt") && e.contains("Latin-1"), "{e}");
}

#[test]
fn unusable_dark_is_flagged_and_never_subtracted() {
    let mut fx = fixture();
    fx.dark = None;
    let dir = fx.write();
    let raw = read_u16(&dir.path().join("background.TIF")).unwrap();
    assert!(raw.iter().all(|&v| v == 65534));
    let f = read_click_folder(dir.path()).unwrap();
    assert!(f.calibration.dark_adu.is_none());
    assert!(f.flags.contains(&QualityFlag::DarkNotSubtracted));

    // More than half the pixels at the ceiling is unusable too; less than half is not.
    let mut half = Array2::from_elem((4, 4), 30u16);
    half.rows_mut()
        .into_iter()
        .take(2)
        .for_each(|mut r| r.fill(65535));
    assert!(!dark_is_unusable(&half));
    half[[2, 0]] = 65534;
    assert!(dark_is_unusable(&half));
}

#[test]
fn missing_binning_factor_names_file_section_and_field() {
    let mut fx = fixture();
    fx.rois.clear();
    let dir = fx.write();
    assert!(!dir.path().join(ANALYZED_CLICK_INFO).exists());
    // The luminescent section's Binning Factor follows its Acquisition Seconds.
    edit_click_info(
        dir.path(),
        "Acquisition Seconds:\t3724223537\r\nBinning Factor:\t8\r\n",
        "Acquisition Seconds:\t3724223537\r\n",
    );
    let err = read_click_folder(dir.path()).unwrap_err();
    assert!(matches!(err, FormatError::MissingField { .. }), "{err:?}");
    let e = err.to_string();
    assert!(e.contains("ClickInfo.txt"), "{e}");
    assert!(e.contains("Binning Factor"), "{e}");
    assert!(e.contains("luminescent image"), "{e}");
}

#[test]
fn missing_coefficient_names_fov_and_f_number() {
    let mut fx = fixture();
    fx.meta.f_number = 4.0;
    let dir = fx.write();
    let e = read_err(dir.path());
    assert!(e.contains("Coef C-ccd at FOV 22.4, f4"), "{e}");
    assert!(e.contains("FOV 22.4 cm at f/4"), "{e}");
    // It lists what the folder has.
    assert!(
        e.contains("FOV 22.4, f2") && e.contains("FOV 12.5, f1"),
        "{e}"
    );
}

/// Regression: a flat `1,0,0,0,0,0,0` and real, non-monotonic coefficients were
/// refused. Any polynomial positive over the frame is used; an implausible one is
/// flagged; one that reaches zero is an error naming the line.
#[test]
fn flat_polynomials_positive_are_used_implausible_flagged_non_positive_refused() {
    let mut fx = fixture();
    let flags_for = |fx: &Fixture| {
        let dir = fx.write();
        read_click_folder(dir.path()).map(|f| (f.flags, f.calibration.flat))
    };
    // Flat: no vignetting at all. Valid, not flagged, FF = 1 everywhere.
    fx.flat = RadialFlat {
        k: [1.0, 0.0, 0.0, 0.0, 0.0],
        x0_cm: 0.0,
        y0_cm: 0.0,
    };
    let (flags, flat) = flags_for(&fx).unwrap();
    assert!(!flags.contains(&QualityFlag::FlatImplausible), "{flags:?}");
    assert!(flat.iter().all(|&v| v == 1.0));
    // Real shelf D f/1 at 22.4 cm (falls to ~0.21 in the corners) and shelf A f/1 at
    // 4 cm (not monotonic), each on its own field of view.
    for (shelf, fov_cm, k) in [
        (
            "D",
            22.4,
            [
                0.993171, 0.001630, -0.005467, 0.000520, -0.000023, -0.013469, 0.602904,
            ],
        ),
        (
            "A",
            4.0,
            [
                1.020414, -0.189043, 0.298781, -0.180408, 0.028754, -0.046228, 0.133962,
            ],
        ),
    ] {
        let mut fx = fixture();
        fx.meta.shelf = Some(shelf.into());
        fx.meta.fov_cm = fov_cm;
        fx.coefficients.push((4.0, 1.0, 2.263e7));
        fx.flat = RadialFlat {
            k: [k[0], k[1], k[2], k[3], k[4]],
            x0_cm: k[5],
            y0_cm: k[6],
        };
        let (flags, _) = flags_for(&fx).unwrap();
        assert!(
            !flags.contains(&QualityFlag::FlatImplausible),
            "{k:?}: {flags:?}"
        );
    }
    // Rising toward the corners: used as stored, flagged.
    fx.flat = RadialFlat {
        k: [1.0, 0.0, 2.0e-3, 0.0, 0.0],
        x0_cm: 0.0,
        y0_cm: 0.0,
    };
    let (flags, _) = flags_for(&fx).unwrap();
    assert!(flags.contains(&QualityFlag::FlatImplausible), "{flags:?}");
    // Falling through zero inside the frame is an error naming the line.
    fx.flat.k = [1.0, 0.0, -2.0e-2, 0.0, 0.0];
    let dir = fx.write();
    let e = read_err(dir.path());
    assert!(e.contains("Shelf Position D FF5 f/1 Coefs"), "{e}");
    assert!(e.contains("> 0 everywhere"), "{e}");
}

#[test]
fn truncated_luminescent_tiff_is_an_error_naming_it() {
    let fx = fixture();
    let dir = fx.write();
    let p = dir.path().join("luminescent.TIF");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = read_err(dir.path());
    assert!(e.contains("luminescent.TIF"), "{e}");
}

/// A hand-written AnalyzedClickInfo.txt that carries the camera block itself (not
/// lumiq's writer), read alone: section and key spellings, `Shape=Square`, a background
/// ROI, `Open`.
#[test]
fn analyzed_click_info_alone_with_a_camera_block_reads() {
    let dir = tempfile::tempdir().unwrap();
    let golden =
        include_bytes!("../../../tests/data/ivis/analyzed-with-camera-block/AnalyzedClickInfo.txt");
    assert!(golden.windows(2).any(|w| w == b"\r\n"));
    std::fs::write(dir.path().join(ANALYZED_CLICK_INFO), golden).unwrap();
    let (rows, cols) = (64, 64);
    write_u16(
        &dir.path().join("luminescent.TIF"),
        &Array2::from_elem((rows, cols), 700),
    )
    .unwrap();
    write_u16(
        &dir.path().join("photograph.TIF"),
        &Array2::from_elem((128, 128), 9000),
    )
    .unwrap();
    write_u16(
        &dir.path().join("readbias.TIF"),
        &Array2::from_elem((rows, cols), 6085),
    )
    .unwrap();
    write_u16(
        &dir.path().join("background.TIF"),
        &Array2::from_elem((rows, cols), 31),
    )
    .unwrap();
    let f = read_click_folder(dir.path()).unwrap();
    let m = &f.acquisition.meta;
    assert!(f.analyzed);
    assert_eq!(m.instrument_id, "IS1234N5678");
    assert_eq!(
        (m.binning, m.fov_cm, m.f_number, m.exposure_s),
        (4, 12.5, 1.0, 60.0)
    );
    assert_eq!(m.shelf.as_deref(), Some("C"));
    assert_eq!(m.emission_filter, "open");
    assert_eq!(m.sensor_temp_c, -89.8);
    assert_eq!(m.study_id.as_deref(), Some("Orthotopic 4T1, µCT follow-up"));
    assert_eq!(m.subject_ids, ["3466", "3467", "3468"]);
    assert_eq!(m.view.as_deref(), Some("Dorsal"));
    assert_eq!(
        m.acquired_at,
        Utc.with_ymd_and_hms(2022, 1, 5, 10, 32, 17).unwrap()
    );
    assert_eq!(
        m.injection_time,
        Some(Utc.with_ymd_and_hms(2022, 1, 5, 10, 20, 0).unwrap())
    );
    assert_eq!(
        m.photograph,
        Some(PhotographMeta {
            exposure_s: 0.2,
            binning: 2
        })
    );
    let cal = &f.calibration;
    assert_eq!(cal.coefficient, 2.319e6);
    assert_eq!(cal.sensor.saturation_adu, 60000.0);
    assert!((cal.bias_adu[[10, 10]] - 608.5).abs() < 1e-4);
    assert!((cal.dark_adu.as_ref().unwrap()[[0, 0]] - 3.1).abs() < 1e-6);
    assert!(cal.bad_pixels[[5, 2]] && cal.bad_pixels[[40, 25]]);
    let rois = &f.acquisition.imported_rois;
    assert_eq!(rois.len(), 2, "the background ROI is not imported");
    assert_eq!(
        rois[0].shape,
        RoiShape::Ellipse {
            xc: 225.9 / 4.0,
            yc: 424.3 / 4.0,
            width: 225.9 / 4.0,
            height: 225.9 / 4.0,
            angle_deg: 0.0
        }
    );
    assert_eq!(rois[1].label, "Mouse 2 flank");
    assert!(matches!(rois[1].shape, RoiShape::Rectangle { angle_deg, .. } if angle_deg == 15.0));
}

/// The hand-written pair in tests/data/ivis/real-layout, with frames of the real sizes
/// (luminescent 240² at binning 8, photograph 960² at binning 2: a 1920-pixel sensor).
fn real_layout_folder(own_dark: u16) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in [CLICK_INFO, ANALYZED_CLICK_INFO] {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/ivis/real-layout")
                .join(name),
            dir.path().join(name),
        )
        .unwrap();
    }
    let n = 240;
    write_u16(
        &dir.path().join("luminescent.TIF"),
        &Array2::from_elem((n, n), 640),
    )
    .unwrap();
    write_u16(
        &dir.path().join("photograph.TIF"),
        &Array2::from_elem((4 * n, 4 * n), 9000),
    )
    .unwrap();
    write_u16(
        &dir.path().join("readbias.TIF"),
        &Array2::from_elem((n, n), 6085),
    )
    .unwrap();
    write_u16(
        &dir.path().join("background.TIF"),
        &Array2::from_elem((n, n), own_dark),
    )
    .unwrap();
    dir
}

/// Regression: real folders put the camera block in ClickInfo.txt only, and lumiq
/// refused them (`missing field Camera System Info / Shelf Position D FOV`), then refused
/// their CCDMap (`-1,-1,929,1211,1828,1069,-1, 0, 0`).
#[test]
fn real_layout_pair_reads_camera_from_clickinfo_and_labels_from_analysis() {
    let dir = real_layout_folder(UNUSABLE_DARK_ADU);
    let f = read_click_folder(dir.path()).unwrap();
    let m = &f.acquisition.meta;
    assert!(f.analyzed);
    assert_eq!(m.instrument_id, "IS1234N5678");
    assert_eq!(
        (m.binning, m.fov_cm, m.f_number, m.exposure_s),
        (8, 22.4, 1.0, 40.0)
    );
    assert_eq!(m.shelf.as_deref(), Some("D"));
    assert_eq!(m.sensor_temp_c, -90.1);
    assert_eq!(m.subject_ids, ["3466", "3467", "3468", "3469", "3470"]);
    // Labels: AnalyzedClickInfo.txt's copy wins (re-labelled during analysis).
    assert_eq!(
        m.study_id.as_deref(),
        Some("GL261 brain, cohort 2 (réanalyse)")
    );
    assert_eq!(
        m.injection_time,
        Some(Utc.with_ymd_and_hms(2022, 1, 5, 11, 40, 0).unwrap())
    );
    let cal = &f.calibration;
    assert_eq!(cal.coefficient, 7.223e5);
    assert_eq!(cal.sensor.saturation_adu, 60000.0);
    // The real shelf D f/1 polynomial, not flagged; pixel 22.4/240 cm.
    assert!(
        !f.flags.contains(&QualityFlag::FlatImplausible),
        "{:?}",
        f.flags
    );
    let real_d = RadialFlat {
        k: [0.993171, 0.001630, -0.005467, 0.000520, -0.000023],
        x0_cm: -0.013469,
        y0_cm: 0.602904,
    };
    assert_eq!(cal.flat, real_d.to_frame(240, 240, 22.4 / 240.0));
    // y0 = +0.6 cm points up: the top corners are brighter than the bottom ones.
    assert!(cal.flat[[0, 0]] > cal.flat[[239, 0]] + 0.1);
    // CCDMap: bad pixels (929, 1211) and (1828, 1069) → binned (151, 116), (133, 228);
    // the second CCDMap line (column 5) does not count.
    let bad: Vec<(usize, usize)> = cal
        .bad_pixels
        .indexed_iter()
        .filter(|(_, &b)| b)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(bad, [(133, 228), (151, 116)]);
    // The folder's own dark is saturated: not subtracted, flagged.
    assert!(cal.dark_adu.is_none());
    assert!(f.flags.contains(&QualityFlag::DarkNotSubtracted));
    // ROIs in sensor (unbinned) pixels ÷ 8.
    let rois = &f.acquisition.imported_rois;
    assert_eq!(rois.len(), 5);
    assert_eq!(
        rois[0].shape,
        RoiShape::Ellipse {
            xc: 225.9 / 8.0,
            yc: 424.3 / 8.0,
            width: 225.9 / 8.0,
            height: 225.9 / 8.0,
            angle_deg: 0.0
        }
    );
    let names: Vec<&str> = f.files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(&names[..2], [CLICK_INFO, ANALYZED_CLICK_INFO]);
}

/// AnalyzedClickInfo.txt alone has no camera block: the error names the missing file.
#[test]
fn analyzed_alone_without_camera_block_names_the_missing_clickinfo() {
    let dir = real_layout_folder(31);
    std::fs::remove_file(dir.path().join(CLICK_INFO)).unwrap();
    let e = read_err(dir.path());
    assert!(e.contains("ClickInfo.txt: is missing"), "{e}");
    assert!(e.contains("camera block"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    // ClickInfo.txt alone is enough: everything but the ROIs.
    let dir = real_layout_folder(31);
    std::fs::remove_file(dir.path().join(ANALYZED_CLICK_INFO)).unwrap();
    let f = read_click_folder(dir.path()).unwrap();
    assert!(!f.analyzed && f.acquisition.imported_rois.is_empty());
    assert_eq!(f.calibration.coefficient, 7.223e5);
    assert!((f.calibration.dark_adu.as_ref().unwrap()[[0, 0]] - 3.1).abs() < 1e-6);
}

/// A ClickInfo.txt cut short in a copy: one error line naming the file and saying so.
#[test]
fn truncated_clickinfo_gives_one_clear_error() {
    let dir = real_layout_folder(31);
    let p = dir.path().join(CLICK_INFO);
    let bytes = std::fs::read(&p).unwrap();
    let cut = bytes.windows(9).position(|w| w == b"Coef C-cc").unwrap();
    std::fs::write(&p, &bytes[..cut + 12]).unwrap();
    let e = read_err(dir.path());
    assert!(e.contains("ClickInfo.txt"), "{e}");
    assert!(e.contains("cut short"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    // Cut before the camera block: same.
    let cut = bytes
        .windows(22)
        .position(|w| w == b"*** Camera System Info")
        .unwrap();
    std::fs::write(&p, &bytes[..cut - 5]).unwrap();
    let e = read_err(dir.path());
    assert!(
        e.contains("ClickInfo.txt") && e.contains("cut short"),
        "{e}"
    );
}

/// `--ivis-backgrounds`: the folder's own dark is saturated; the click it names in
/// `Background Click` is taken from the library, scaled to the exposure.
#[test]
fn library_dark_replaces_an_unusable_own_dark() {
    let dir = real_layout_folder(UNUSABLE_DARK_ADU);
    let library = tempfile::tempdir().unwrap();
    let options = ReadOptions {
        backgrounds_dir: Some(library.path()),
    };
    // Not in the library: read, flagged, as without one.
    let f = read_click_folder_with(dir.path(), &options).unwrap();
    assert!(f.calibration.dark_adu.is_none());
    assert!(f.flags.contains(&QualityFlag::DarkNotSubtracted));
    // In the library, taken at 20 s: doubled for the 40 s image.
    let dark = Array2::from_elem((240, 240), 1.5f32);
    write_background_click(
        &library.path().join("BKG20220105025931"),
        &dark,
        8,
        20.0,
        10.0,
    )
    .unwrap();
    let f = read_click_folder_with(dir.path(), &options).unwrap();
    let used = f.calibration.dark_adu.as_ref().unwrap();
    assert!(used.iter().all(|&v| (v - 3.0).abs() < 1e-6));
    assert!(!f.flags.contains(&QualityFlag::DarkNotSubtracted));
    assert!(f
        .files
        .iter()
        .any(|(n, _)| n == "BKG20220105025931/background.TIF"));
    // A library click at another binning is an error naming it.
    write_background_click(
        &library.path().join("BKG20220105025931"),
        &Array2::from_elem((480, 480), 1.5f32),
        4,
        40.0,
        10.0,
    )
    .unwrap();
    let e = read_click_folder_with(dir.path(), &options)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("BKG20220105025931") && e.contains("binning 8"),
        "{e}"
    );
    // The folder's own usable dark always wins over the library.
    let dir = real_layout_folder(31);
    let f = read_click_folder_with(dir.path(), &options).unwrap();
    assert!((f.calibration.dark_adu.as_ref().unwrap()[[0, 0]] - 3.1).abs() < 1e-6);
}
