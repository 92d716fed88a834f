//! Benchmarks of the processing core on in-memory frames (no file I/O, no record, no
//! outputs): run with `cargo bench --bench quantify`; results and their reading are in
//! BENCHMARKS.md. Benchmarks are measurements, never pass/fail tests.
//!
//! Budgets (from the benchmark issue; none of them is enforced here):
//! - `quantify/2048x2048_bin1`: the whole chain on a full-resolution 2048² frame must be
//!   **at least 40× faster** than the Python peer stack (ccdproc + astroscrappy + photutils
//!   Background2D + sep) on the same frame, end to end. The peer side is timed by
//!   `benches/peer/run.sh`, which also times `lumiq process` on the same frame.
//! - `correct/2048x2048`: the bias/dark/flat step must reach **at least 50 % of memory
//!   bandwidth**, judged against `copy/*` in the same run: a plain copy that moves as many
//!   bytes through memory as `correct` does. Every group in the `correct`/`copy` family
//!   reports throughput in bytes moved, so criterion's `thrpt` line is directly GB/s and the
//!   fraction of bandwidth reached is `thrpt(correct) / thrpt(best copy)` — equivalently
//!   `time(best copy) / time(correct)`.
//! - `quantify/256x256_bin8`: the daemon's typical frame (binning 8); no numeric budget,
//!   reported so regressions on the common case are visible.
//! - `stages/*`: one call of each step of the chain on the 2048² frame, with the inputs the
//!   pipeline gives it, so the step that dominates `quantify` is visible. `quantify` calls
//!   the background fit and map twice and detection twice (a first pass to find the sources,
//!   a second with them masked); its second cosmic-ray round searches only next to the
//!   first round's hits. `stages/detect_part_*` split detection's matched-filter S/N maps
//!   from the rest of it. The stage inputs come from a one-pass background, so
//!   `stages/photometry` measures more (fainter) regions than `quantify` does.
//! - `correct_diagnostic/*`: no budget; `correct`'s loop with its outputs allocated once,
//!   to tell the cost of allocating and zeroing five output arrays per call from the loop.
//!
//! Bytes `correct` moves per pixel (it reads each input once and writes each output once):
//! reads raw u16 (2 B) + bias, dark, flat f32 (3 × 4 B) = 14 B; writes radiance,
//! Poisson variance, read variance, radiance-per-ADU f32 (4 × 4 B) + saturated bool (1 B)
//! = 17 B; 31 B per pixel, so 31 × 2048² = 130,023,424 B (130.0 MB) per call. The copy
//! reference copies half that (65,011,712 B), i.e. reads 65.0 MB and writes 65.0 MB: the
//! same 130.0 MB of memory traffic. GB/s = 0.130023424 / (seconds per call).
//!
//! The 2048² frame is the one `benches/peer/run.sh` simulates (`lumiq simulate --binning 1
//! --seed 1 --flux 2e6 2e8`: `SceneSpec`'s defaults), calibrated here ideally
//! (`Instrument::ideal_calibration`) instead of from simulated calibration frames.
//!
//! Sample counts are kept low (10 samples, flat sampling for the slow groups): the whole
//! file takes about 2 minutes on 2 cores. Run one group with e.g.
//! `cargo bench --bench quantify -- correct`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use ndarray::{Array2, Zip};
use rayon::prelude::*;

use lumiq::process::background::{BackgroundModel, SceneBackground};
use lumiq::process::correct::{
    correct, correct_into, repair_pixels, validate, CorrectedFrame, Repair,
};
use lumiq::process::cosmic::{find_cosmic_rays, CosmicSettings};
use lumiq::process::detect::{detect, smoothed_snr, DetectionSettings};
use lumiq::process::filters::dilate;
use lumiq::process::photometry::{measure, PhotometryInputs};
use lumiq::process::{quantify, FrameCalibration, FrameGeometry, ProcessingParams, RegionSource};
use lumiq::simulate::{simulate_acquisition, Instrument, SceneSpec};

/// Bytes `correct` reads per pixel: raw u16 + bias, dark, flat f32.
const CORRECT_READ_BYTES_PER_PX: u64 = 2 + 3 * 4;
/// Bytes `correct` writes per pixel: four f32 maps + the saturation bool.
const CORRECT_WRITE_BYTES_PER_PX: u64 = 4 * 4 + 1;

/// One simulated frame with the calibration a perfect procedure would give it.
struct Frame {
    raw: Array2<u16>,
    cal: FrameCalibration,
    geom: FrameGeometry,
}

fn frame(binning: u32) -> Frame {
    let inst = Instrument::default();
    let spec = SceneSpec {
        binning,
        exposure_s: 60.0,
        // The photograph plays no part in quantification; skip simulating it.
        photograph: false,
        ..SceneSpec::default()
    };
    let sim = simulate_acquisition(&inst, &spec);
    let cal = inst.ideal_calibration(
        binning,
        spec.exposure_s,
        spec.sensor_temp_c,
        spec.fov_cm,
        spec.f_number,
    );
    let geom = FrameGeometry {
        exposure_s: spec.exposure_s,
        binning,
        fov_cm: spec.fov_cm,
    };
    Frame {
        raw: sim.luminescent_adu,
        cal,
        geom,
    }
}

fn quick_config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .nresamples(20_000)
}

fn benches(c: &mut Criterion) {
    let t0 = std::time::Instant::now();
    let full = frame(1);
    let small = frame(8);
    let params = ProcessingParams::default();
    let (rows, cols) = full.raw.dim();
    let n_px = (rows * cols) as u64;
    let correct_bytes = n_px * (CORRECT_READ_BYTES_PER_PX + CORRECT_WRITE_BYTES_PER_PX);
    eprintln!(
        "simulated {rows}x{cols} and {}x{} frames in {:.1} s",
        small.raw.nrows(),
        small.raw.ncols(),
        t0.elapsed().as_secs_f64()
    );
    eprintln!(
        "correct moves {correct_bytes} B per call ({} B read + {} B written per pixel); \
         GB/s = {:.6} / seconds; fraction of bandwidth = thrpt(correct) / thrpt(best copy)",
        CORRECT_READ_BYTES_PER_PX,
        CORRECT_WRITE_BYTES_PER_PX,
        correct_bytes as f64 * 1e-9
    );
    {
        let q = quantify(&full.raw, &full.cal, &full.geom, &[], &params).expect("frame quantifies");
        eprintln!(
            "quantify 2048²: {} regions, {} cosmic-ray pixels, {} bad pixels replaced",
            q.regions.len(),
            q.counts.cosmic_ray_pixels_replaced,
            q.counts.bad_pixels_replaced
        );
    }

    // (a) and (d): the whole chain.
    let mut g = c.benchmark_group("quantify");
    g.sampling_mode(SamplingMode::Flat);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("2048x2048_bin1", |b| {
        b.iter(|| quantify(black_box(&full.raw), &full.cal, &full.geom, &[], &params).unwrap())
    });
    g.sampling_mode(SamplingMode::Auto);
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("256x256_bin8", |b| {
        b.iter(|| quantify(black_box(&small.raw), &small.cal, &small.geom, &[], &params).unwrap())
    });
    g.finish();

    // (b) the bias/dark/flat step alone, in bytes moved per second.
    let mut g = c.benchmark_group("correct");
    g.throughput(Throughput::BytesDecimal(correct_bytes));
    g.bench_function("2048x2048", |b| {
        b.iter(|| correct(black_box(&full.raw), &full.cal, &full.geom))
    });
    g.finish();

    // (c) the memory-bandwidth reference: a copy moving the same number of bytes.
    let copy_len = (correct_bytes / 2) as usize;
    let src: Vec<u8> = (0..copy_len).map(|i| (i * 31 % 251) as u8).collect();
    let mut dst = vec![0u8; copy_len];
    let mut g = c.benchmark_group("copy");
    g.throughput(Throughput::BytesDecimal(2 * copy_len as u64));
    g.bench_function("memcpy_1thread", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&dst);
        })
    });
    g.bench_function("memcpy_rayon", |b| {
        b.iter(|| {
            par_copy(&mut dst, black_box(&src));
            black_box(&dst);
        })
    });
    // `correct` writes into freshly allocated arrays every call. This variant copies into a
    // new 65 MB buffer each time: above glibc's largest mmap threshold (32 MiB), so every
    // call maps fresh pages and pays a page fault and the kernel's zeroing per 4 KiB -- the
    // worst case of writing new memory (as in a one-shot `lumiq process`).
    g.bench_function("memcpy_rayon_fresh_alloc", |b| {
        b.iter(|| {
            let mut out = vec![0u8; copy_len];
            par_copy(&mut out, black_box(&src));
            out
        })
    });
    g.finish();
    drop((src, dst));

    // Diagnostic: `correct_into`, the same loop `correct` runs, writing into outputs
    // allocated once. Its gap to `correct/2048x2048` is the cost of
    // allocating and zeroing five fresh output arrays per call; its gap to `copy/*` is the
    // cost of the arithmetic (a division per pixel) and of the loop's shape.
    let mut outs = correct(&full.raw, &full.cal, &full.geom);
    let mut g = c.benchmark_group("correct_diagnostic");
    g.throughput(Throughput::BytesDecimal(correct_bytes));
    g.bench_function("same_loop_preallocated_outputs", |b| {
        b.iter(|| {
            correct_into(black_box(&full.raw), &full.cal, &full.geom, &mut outs);
            black_box(&outs);
        })
    });
    g.finish();
    drop(outs);

    stages(c, &full, &params);
}

fn par_copy(dst: &mut [u8], src: &[u8]) {
    const CHUNK: usize = 1 << 20;
    dst.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

/// One call of each step of `quantify`, fed the way the pipeline feeds it.
fn stages(c: &mut Criterion, f: &Frame, params: &ProcessingParams) {
    let (_, cols) = f.raw.dim();
    let pixel_cm = f.geom.pixel_size_cm(cols);
    let settings = DetectionSettings::for_grid(params, pixel_cm);
    let box_px = params.background_box_px(pixel_cm);

    let cosmic_settings = CosmicSettings::for_grid(
        params.cosmic_sigma,
        params.cosmic_sharpness,
        params.min_source_sigma_cm / pixel_cm,
    );
    // Inputs of each stage, prepared once as the pipeline would.
    let corrected = correct(&f.raw, &f.cal, &f.geom);
    let mut untrusted = corrected.saturated.clone();
    Zip::from(&mut untrusted)
        .and(&f.cal.bad_pixels)
        .for_each(|u, &b| *u |= b);
    // What the first cosmic-ray round is told to ignore: saturated and known bad pixels.
    let untrusted_first = untrusted.clone();
    let variance = &corrected.var_poisson + &corrected.var_read;
    let mut repaired: CorrectedFrame = corrected.clone();
    let cosmic = find_cosmic_rays(
        &repaired.radiance,
        &variance,
        &untrusted,
        None,
        &cosmic_settings,
    );
    Zip::from(&mut untrusted)
        .and(&cosmic)
        .for_each(|u, &c| *u |= c);
    repair_pixels(&mut repaired, &cosmic, &untrusted, Repair::Median);
    repair_pixels(
        &mut repaired,
        &f.cal.bad_pixels,
        &untrusted,
        Repair::Interpolate,
    );
    let variance = &repaired.var_poisson + &repaired.var_read;
    let model = BackgroundModel::fit(
        &repaired.radiance,
        &repaired.saturated,
        box_px,
        params.background_clip_sigma,
    );
    let background = model.map();
    let net = &repaired.radiance - &background;
    let detections = detect(&net, &variance, &settings);
    let mut pixels_of: Vec<Vec<(usize, usize)>> = vec![Vec::new(); detections.count + 1];
    for ((r, c), &l) in detections.aperture.indexed_iter() {
        if l > 0 {
            pixels_of[l as usize].push((r, c));
        }
    }
    eprintln!(
        "stages: background box {box_px} px, detection sigma {:.1} px, min area {} px, {} detections",
        settings.smoothing_sigma_px, settings.min_area_px, detections.count
    );

    let mut g = c.benchmark_group("stages");
    g.sampling_mode(SamplingMode::Flat);
    g.bench_function("validate", |b| {
        b.iter(|| validate(black_box(f.raw.dim()), &f.cal, &f.geom).unwrap())
    });
    g.bench_function("correct", |b| {
        b.iter(|| correct(black_box(&f.raw), &f.cal, &f.geom))
    });
    g.bench_function("cosmic_rays_find", |b| {
        b.iter(|| {
            find_cosmic_rays(
                black_box(&corrected.radiance),
                &variance,
                &untrusted_first,
                None,
                &cosmic_settings,
            )
        })
    });
    g.bench_function("repair_bad_pixels", |b| {
        b.iter_batched(
            || repaired.clone(),
            |mut fr| repair_pixels(&mut fr, &f.cal.bad_pixels, &untrusted, Repair::Interpolate),
            criterion::BatchSize::LargeInput,
        )
    });
    g.bench_function("background_fit", |b| {
        b.iter(|| {
            BackgroundModel::fit(
                black_box(&repaired.radiance),
                &repaired.saturated,
                box_px,
                params.background_clip_sigma,
            )
        })
    });
    g.bench_function("background_map", |b| b.iter(|| black_box(&model).map()));
    g.bench_function("detect", |b| {
        b.iter(|| detect(black_box(&net), &variance, &settings))
    });
    // Inside `detect`: the matched-filter S/N map (two separable Gaussian convolutions, of
    // the frame and of its variance) at the detection sigma, and again at half of it for
    // deblending; the rest of `detect` is labelling, deblending and wing growth.
    g.bench_function("detect_part_smoothed_snr_full_sigma", |b| {
        b.iter(|| smoothed_snr(black_box(&net), &variance, settings.smoothing_sigma_px))
    });
    g.bench_function("detect_part_smoothed_snr_half_sigma", |b| {
        b.iter(|| {
            smoothed_snr(
                black_box(&net),
                &variance,
                (0.5 * settings.smoothing_sigma_px).max(0.5),
            )
        })
    });
    g.bench_function("dilate_mask", |b| {
        let sources = detections.aperture.mapv(|l| l > 0);
        b.iter(|| dilate(black_box(&sources), 2))
    });
    g.bench_function("photometry", |b| {
        let scene_model = SceneBackground {
            off_body: model.clone(),
            on_body: None,
        };
        let inputs = PhotometryInputs {
            radiance: &repaired.radiance,
            background: &scene_model,
            background_map: &background,
            var_poisson: &repaired.var_poisson,
            var_read: &repaired.var_read,
            saturated: &repaired.saturated,
            pixel_size_cm: pixel_cm,
            coefficient_rel_uncertainty: f.cal.coefficient_rel_uncertainty,
            dark_bound_radiance: None,
        };
        b.iter(|| {
            pixels_of
                .iter()
                .enumerate()
                .skip(1)
                .map(|(i, px)| measure(&inputs, px, RegionSource::Detected, format!("T{i}")))
                .collect::<Vec<_>>()
        })
    });
    g.finish();
}

criterion_group! {
    name = quantify_benches;
    config = quick_config();
    targets = benches
}
criterion_main!(quantify_benches);
