//! The segmentation model at run time, on the committed model (`models/tumour-seg-v1.onnx`
//! with `models/manifest.toml`): the sha256 check, padding and tiling against a single
//! pass, tract against onnxruntime on a saved vector, the chosen detector's flux accuracy
//! on held-out frames, and `lumiq process --detector` through the binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ndarray::{Array2, Axis, Slice};
use serde_json::Value;

use lumiq::process::segment_input::model_input;
use lumiq::process::{quantify_with, Detector, FrameGeometry, ProcessingParams, SegmentationModel};
use lumiq::segment::{TileLayout, TractSegmenter, DEFAULT_DETECTOR};
use lumiq::simulate::training::{generate_frame, Profile};
use lumiq::simulate::{simulate_acquisition, Instrument, SceneSpec};

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

fn model_path() -> PathBuf {
    models_dir().join("tumour-seg-v1.onnx")
}

fn load() -> TractSegmenter {
    TractSegmenter::load(&model_path()).expect("the committed model loads")
}

fn max_abs_diff(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    assert_eq!(a.dim(), b.dim());
    a.iter()
        .zip(b.iter())
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
}

fn crop(
    a: &Array2<f32>,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) -> Array2<f32> {
    a.slice_axis(Axis(0), Slice::from(rows))
        .slice_axis(Axis(1), Slice::from(cols))
        .to_owned()
}

/// A copy of the model and its manifest in a temporary folder.
fn copied_model() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tumour-seg-v1.onnx");
    std::fs::copy(model_path(), &file).unwrap();
    std::fs::copy(
        models_dir().join("manifest.toml"),
        dir.path().join("manifest.toml"),
    )
    .unwrap();
    (dir, file)
}

#[test]
fn a_model_file_that_does_not_match_its_manifest_is_refused() {
    let (_dir, file) = copied_model();
    let good = load().identity().sha256.clone();
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&file, &bytes).unwrap();
    let err = TractSegmenter::load(&file).unwrap_err().to_string();
    let actual = lumiq::segment::manifest::sha256_hex(&bytes);
    for needle in [
        file.display().to_string(),
        good.clone(),
        actual,
        "manifest.toml".to_string(),
        "restore".to_string(),
    ] {
        assert!(err.contains(&needle), "{err:?} should mention {needle:?}");
    }
}

#[test]
fn a_model_without_its_manifest_is_refused() {
    let (_dir, file) = copied_model();
    std::fs::remove_file(file.with_file_name("manifest.toml")).unwrap();
    let err = TractSegmenter::load(&file).unwrap_err().to_string();
    assert!(err.contains("manifest.toml"), "{err}");
    assert!(err.contains("keep manifest.toml beside the model"), "{err}");
}

/// A real model input: a held-out frame's working grid.
fn real_input(index: u64) -> Array2<f32> {
    generate_frame(Profile::Heldout, 424_242, index).input
}

#[test]
fn tiling_and_padding_give_the_single_pass_map() {
    let seg = load();
    let mut input = real_input(0);
    // Make it at least 160² so a 96-pixel tile layout needs several tiles per side.
    if input.dim().0 < 160 || input.dim().1 < 160 {
        input = Array2::from_shape_fn((192, 208), |(r, c)| {
            input[[r % input.dim().0, c % input.dim().1]]
        });
    }
    let (rows, cols) = input.dim();
    let single = seg.run(input.view()).unwrap();
    let tiled_seg = load()
        .with_layout(TileLayout {
            max_tile_px: 96,
            ..*seg.layout()
        })
        .unwrap();
    let tiled = tiled_seg.run(input.view()).unwrap();
    let d = max_abs_diff(&single, &tiled);
    assert!(d < 1e-3, "tiled vs single pass: max |Δp| = {d}");

    // Padding: an odd-sized crop, padded to the multiple, equals the whole frame's map
    // away from the crop's edges (by the overlap the contract gives). The crop starts on
    // the pad multiple, so the network's poolings see each pixel at the same phase.
    let m = seg.layout().overlap_px;
    let p = seg.layout().pad_multiple_px;
    let (r0, c0, r1, c1) = (p, 2 * p, rows - 7, cols - 3);
    let part = crop(&input, r0..r1, c0..c1);
    assert_ne!(part.dim().0 % seg.layout().pad_multiple_px, 0);
    let part_map = seg.run(part.view()).unwrap();
    assert_eq!(part_map.dim(), part.dim());
    let inner_part = crop(&part_map, m..part.dim().0 - m, m..part.dim().1 - m);
    let inner_full = crop(&single, r0 + m..r1 - m, c0 + m..c1 - m);
    let d = max_abs_diff(&inner_part, &inner_full);
    assert!(d < 1e-3, "padded crop vs whole frame: max |Δp| = {d}");
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn tract_gives_onnxruntime_output_on_the_saved_vector() {
    let seg = load();
    let dir = models_dir().join("testdata");
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("vector.json")).unwrap()).unwrap();
    assert_eq!(
        meta["model_sha256"].as_str().unwrap(),
        seg.identity().sha256,
        "the saved vector is of another model file: regenerate it with `python models/testdata/make_vectors.py`"
    );
    let shape: Vec<usize> = meta["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let (rows, cols) = (shape[2], shape[3]);
    let input =
        Array2::from_shape_vec((rows, cols), read_f32(&dir.join("vector_input.f32"))).unwrap();
    let logits =
        Array2::from_shape_vec((rows, cols), read_f32(&dir.join("vector_output.f32"))).unwrap();
    let expected = logits.mapv(|x| 1.0 / (1.0 + (-x).exp()));
    let got = seg.run_pass(input.view().insert_axis(Axis(0))).unwrap();
    let d = max_abs_diff(&got, &expected);
    assert!(d < 1e-4, "tract vs onnxruntime: max |Δp| = {d}");
    // The vector is not trivial: it has confident tumour and background pixels.
    assert!(expected.iter().any(|&p| p > 0.9) && expected.iter().any(|&p| p < 0.1));
}

/// The default detector on simulated five-mouse acquisitions of the instrument
/// (`simulate_acquisition`, seeds the training generator never uses): every tumour whose
/// SNR (an ideal 3.5-sigma aperture at the true position, pixel noise and background model
/// error, as `tests/accuracy.rs` defines it) is at least 20 is found, with a mean absolute
/// flux error of at most 2 %.
#[test]
fn the_default_detector_measures_bright_tumours_within_two_percent() {
    let seg = load();
    let inst = Instrument::default();
    let params = ProcessingParams {
        detector: DEFAULT_DETECTOR,
        ..ProcessingParams::default()
    };
    let mut errors = Vec::new();
    for seed in 500..506 {
        let spec = SceneSpec {
            seed,
            flux_range: (4.0e3, 3.0e6),
            ..SceneSpec::default()
        };
        let sim = simulate_acquisition(&inst, &spec);
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
        let q = quantify_with(
            &sim.luminescent_adu,
            &cal,
            &geom,
            &[],
            &params,
            Some(&seg as &dyn SegmentationModel),
            None,
        )
        .unwrap();
        assert_eq!(q.detector, DEFAULT_DETECTOR);
        let matches = common::match_truth(&q, &sim.truth);
        for (t, m) in sim.truth.tumours.iter().zip(&matches) {
            let sigma = common::ideal_flux_sigma(&q, &sim.truth, t);
            if t.total_flux / sigma >= 20.0 {
                let i = m.unwrap_or_else(|| {
                    panic!(
                        "seed {seed}: tumour {} of SNR {:.0} missed",
                        t.id,
                        t.total_flux / sigma
                    )
                });
                errors.push((q.regions[i].total_flux.value - t.total_flux) / t.total_flux);
            }
        }
    }
    assert!(errors.len() >= 15, "only {} bright tumours", errors.len());
    let mean_abs = errors.iter().map(|e| e.abs()).sum::<f64>() / errors.len() as f64;
    eprintln!(
        "{} tumours with SNR >= 20, detector {}: mean |flux error| {:.2} %",
        errors.len(),
        DEFAULT_DETECTOR.as_str(),
        100.0 * mean_abs
    );
    assert!(
        mean_abs <= 0.02,
        "mean |flux error| {:.2} %",
        100.0 * mean_abs
    );
}

#[test]
fn the_model_finds_regions_through_the_same_photometry() {
    // On one acquisition the model's and the classical detector's regions on the same
    // bright tumour are measured by the same photometry: their fluxes agree closely.
    let seg = load();
    let inst = Instrument::default();
    let spec = SceneSpec {
        seed: 321,
        ..SceneSpec::default()
    };
    let sim = simulate_acquisition(&inst, &spec);
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
    let run = |detector| {
        quantify_with(
            &sim.luminescent_adu,
            &cal,
            &geom,
            &[],
            &ProcessingParams {
                detector,
                ..ProcessingParams::default()
            },
            Some(&seg as &dyn SegmentationModel),
            None,
        )
        .unwrap()
    };
    let classical = run(Detector::Classical);
    let model = run(Detector::Model);
    assert!(classical.model.is_none());
    assert_eq!(model.model.as_ref().unwrap().sha256, seg.identity().sha256);
    let mc = common::match_truth(&classical, &sim.truth);
    let mm = common::match_truth(&model, &sim.truth);
    let mut compared = 0;
    for (a, b) in mc.iter().zip(&mm) {
        if let (Some(a), Some(b)) = (a, b) {
            if classical.regions[*a].snr < 50.0 {
                continue;
            }
            let fa = classical.regions[*a].total_flux.value;
            let fb = model.regions[*b].total_flux.value;
            let sigma = classical.regions[*a].total_flux.components.statistical();
            assert!(
                (fa - fb).abs() < 0.02 * fa + 3.0 * sigma,
                "classical {fa} vs model {fb} (σ {sigma})"
            );
            compared += 1;
        }
    }
    assert!(
        compared >= 3,
        "only {compared} bright tumours found by both"
    );
}

fn lumiq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lumiq"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("LUMIQ_CALIBRATION_DIR")
        .env_remove("LUMIQ_MODEL")
        .output()
        .expect("run lumiq")
}

#[test]
fn process_names_the_detector_and_the_model_in_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let acq = dir.path().join("acq");
    let acq_s = acq.to_str().unwrap();
    let out = lumiq(&["simulate", "--out", acq_s, "--seed", "5"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sha = load().identity().sha256.clone();
    for (detector, has_model) in [("model", true), ("combined", true), ("classical", false)] {
        let out = lumiq(&["process", acq_s, "--detector", detector, "--compact"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let record: Value = serde_json::from_slice(&out.stdout).unwrap();
        common::assert_valid_record(&record);
        assert_eq!(record["processing"]["detector"], detector);
        assert_eq!(record["processing"]["params"]["detector"], detector);
        if has_model {
            assert_eq!(record["processing"]["model"]["sha256"], sha.as_str());
            assert_eq!(record["processing"]["model"]["name"], "tumour-seg-v1");
        } else {
            assert!(record["processing"].get("model").is_none());
        }
        assert!(!record["regions"].as_array().unwrap().is_empty());
    }
    // Without --detector the record names the default.
    let out = lumiq(&["process", acq_s, "--compact"]);
    let record: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["processing"]["detector"], DEFAULT_DETECTOR.as_str());

    // A tampered model given with --model: one clear line, nothing on stdout.
    let (_mdir, file) = copied_model();
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let out = lumiq(&[
        "process",
        acq_s,
        "--detector",
        "model",
        "--model",
        file.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&sha) && stderr.contains("sha256"),
        "{stderr}"
    );
}

#[test]
fn model_input_of_a_frame_runs_without_error_at_every_binning() {
    // Frames of several binnings and sizes (each a new plan) give maps of their own size.
    let seg = load();
    for index in 0..4 {
        let f = generate_frame(Profile::Heldout, 99, index);
        let x = model_input(
            &f.quantification.net_radiance,
            &f.quantification.variance,
            f.info.block,
        );
        let p = seg.run(x.view()).unwrap();
        assert_eq!(p.dim(), x.dim());
        assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}
