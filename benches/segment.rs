//! Inference time of the tumour-segmentation model with tract: one pass of the optimised
//! plan on a 512² and a 1024² input (the plan is built before timing, as the daemon builds
//! it once per frame size), on one thread per core (`tract_N`) and on one thread
//! (`tract_N_1thread`), plus the whole `TractSegmenter::run` on the 256² working grid
//! the simulated instrument's frames give at every binning. Run alone with
//! `cargo bench --bench segment`; `benches/segment/run.sh` runs it and onnxruntime on the
//! same model in the same run and prints the ratio. Results: BENCHMARKS.md.
//!
//! Budgets (from the segmentation issue; not enforced here): tract at most 1.2× the time
//! of onnxruntime on the same model, and at most 50 ms at 512², on this 2-core machine.
//!
//! The model is `models/tumour-seg-v1.onnx` (or `$LUMIQ_MODEL`), checked against its
//! manifest like at run time. The input is deterministic noise of the model input's scale
//! (a convolutional network's time does not depend on the values).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use ndarray::Array2;

use lumiq::segment::{resolve_model_path, TractSegmenter};

fn input(side: usize) -> Array2<f32> {
    // A fixed linear congruential sequence: no RNG dependency, same input every run.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    Array2::from_shape_fn((side, side), |_| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
    })
}

fn tract(c: &mut Criterion) {
    let path = resolve_model_path(None).expect("the model is found");
    let seg = TractSegmenter::load(&path).expect("the model loads");
    let mut g = c.benchmark_group("segment");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(8));
    let single = TractSegmenter::load(&path)
        .expect("the model loads")
        .with_threads(1);
    for side in [512usize, 1024] {
        let x = input(side);
        let x3 = x.view().insert_axis(ndarray::Axis(0));
        seg.run_pass(x3).expect("warm-up pass");
        g.bench_function(format!("tract_{side}"), |b| {
            b.iter(|| seg.run_pass(black_box(x3)).unwrap())
        });
        single.run_pass(x3).expect("warm-up pass");
        g.bench_function(format!("tract_{side}_1thread"), |b| {
            b.iter(|| single.run_pass(black_box(x3)).unwrap())
        });
    }
    let x = input(256);
    seg.run(x.view()).expect("warm-up run");
    g.bench_function("tract_run_256", |b| {
        b.iter(|| seg.run(black_box(x.view())).unwrap())
    });
    g.finish();
}

criterion_group!(benches, tract);
criterion_main!(benches);
