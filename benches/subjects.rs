//! Benchmark of subject finding (`process::subjects::locate_subjects`) on the simulator's
//! hardest five-mouse photographs (the real scene — manifold and nose cones, dividers,
//! heads behind a neck, tails to the bottom edge, ear tags and tail marks — with two
//! touching pairs and LED light falling to about a third across the stage): run with
//! `cargo bench --bench subjects`. It runs once per record (`record::build`), beside the
//! luminescent chain.
//!
//! Budget: 100 ms per photograph on this 2-core machine (it runs once per acquisition,
//! and acquisitions are minutes apart). Measured 88–101 ms at 512² and 117–137 ms at
//! 1024² while other builds shared the cores (BENCHMARKS.md; before the body cores and
//! the real scene's photograph, which add two distance transforms and two bounded
//! growths per photograph): several times the
//! binning-8 luminescent chain (`quantify/256x256_bin8`). The way to cut it is a coarser
//! working grid (`SubjectSettings::working_pixel_cm`), at the cost of the touching-pair
//! split's margin. Not enforced here: benchmarks are measurements.
//!
//! - `locate/photo_512_bin4`: the photograph of a binning-8 acquisition (512², 0.044 cm
//!   pixels), segmented at full resolution.
//! - `locate/photo_1024_bin2`: the photograph of a binning-4 acquisition (1024²), averaged
//!   in 2 × 2 blocks first (`SubjectSettings::working_pixel_cm`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

use lumiq::process::subjects::{locate_subjects, SubjectSettings};
use lumiq::simulate::{simulate_acquisition, Instrument, SceneSpec};

fn bench(c: &mut Criterion) {
    let inst = Instrument::default();
    let settings = SubjectSettings::default();
    let mut group = c.benchmark_group("locate");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    for (name, binning) in [("photo_512_bin4", 8u32), ("photo_1024_bin2", 4)] {
        let spec = SceneSpec {
            seed: 7,
            binning,
            touching_mice: true,
            tails: true,
            photo_unevenness: 0.6,
            ..SceneSpec::default()
        };
        let sim = simulate_acquisition(&inst, &spec);
        let photo = sim.photograph_adu.expect("a photograph").mapv(f32::from);
        assert_eq!(
            locate_subjects(&photo, spec.fov_cm, &settings)
                .subjects
                .len(),
            5
        );
        group.bench_function(name, |b| {
            b.iter(|| locate_subjects(black_box(&photo), spec.fov_cm, &settings))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
