//! Camera benchmarks (criterion; `cargo bench --bench camera`).
//!
//! - `stream_decode/2048x2048`: the host's stream decoder on one 8 MiB Mono16 block in
//!   1 MiB transfers (leader, 8 payload transfers, trailer), CRC-32 and the frame's
//!   allocation included. Budget: ≥ 1 GB/s, far above USB 3's ~0.4 GB/s line rate.
//! - `acquire_2048/protocol`: one full 2048² (binning 1) acquisition from the simulated
//!   camera through the control codec, the transport seam, the stream decoder and the
//!   driver's checks, with a cheap test pattern instead of physics: the host's overhead
//!   beyond the exposure (which costs nothing on the simulated clock). Budget: ≤ 50 ms.
//! - `acquire_2048/physics`: the same with the simulated instrument's physics (scene,
//!   Poisson noise, dark current, cosmic rays): what a simulated acquisition costs.
//!
//! Timings never live in pass/fail tests; BENCHMARKS.md records the numbers.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lumiq::camera::sim::scene::FramePhysics;
use lumiq::camera::stream::{
    encode_block, Leader, StreamDecoder, StreamEvent, StreamLimits, PIXEL_FORMAT_MONO16,
    TRAILER_SUCCESS,
};
use lumiq::camera::{
    Camera, CameraConfig, CancelToken, Clock, FrameRequest, RegisterMap, Shutter, SimCamera,
    SimCameraConfig, SimClock,
};

fn stream_decode(c: &mut Criterion) {
    let (w, h) = (2048u32, 2048u32);
    let payload: Vec<u8> = (0..w * h)
        .flat_map(|i| ((500 + i % 4096) as u16).to_le_bytes())
        .collect();
    let leader = Leader {
        block_id: 1,
        timestamp_ns: 0,
        pixel_format: PIXEL_FORMAT_MONO16,
        width: w,
        height: h,
        offset_x: 0,
        offset_y: 0,
        padding_x: 0,
        binning_x: 1,
        binning_y: 1,
        payload_size: payload.len() as u64,
        exposure_us: 1_000_000,
        sensor_temp_cc: -9000,
        flags: 3,
    };
    let transfers = encode_block(&leader, &payload, 1 << 20, TRAILER_SUCCESS);
    let mut g = c.benchmark_group("stream_decode");
    g.throughput(Throughput::Bytes(payload.len() as u64));
    g.sample_size(30);
    g.bench_function("2048x2048", |b| {
        let mut d = StreamDecoder::new(StreamLimits::default());
        b.iter(|| {
            let mut out = None;
            for t in &transfers {
                if let Some(StreamEvent::Block(blk)) = d.feed(t).expect("valid") {
                    out = Some(blk);
                }
            }
            out.expect("a block")
        })
    });
    g.finish();
}

fn camera(physics: FramePhysics) -> Camera {
    let clock: Arc<dyn Clock> = Arc::new(SimClock::new(
        Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap(),
    ));
    let sim = SimCamera::new(
        SimCameraConfig {
            physics,
            ..SimCameraConfig::default()
        },
        clock.clone(),
        None,
    );
    let mut cam = Camera::open(
        Box::new(sim.connector()),
        RegisterMap::builtin(),
        clock,
        CameraConfig::default(),
    )
    .unwrap();
    cam.set_cooling(-90.0).unwrap();
    cam.wait_for_lock(&CancelToken::new()).unwrap();
    cam
}

fn acquire_2048(c: &mut Criterion) {
    let req = FrameRequest {
        exposure_s: 1.0,
        binning: 1,
        shutter: Shutter::Auto,
        require_lock: true,
    };
    let mut g = c.benchmark_group("acquire_2048");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    let mut cam = camera(FramePhysics::Pattern);
    g.bench_function("protocol", |b| {
        b.iter(|| {
            cam.acquire(&req, &CancelToken::new(), &mut || None)
                .unwrap()
        })
    });
    let mut cam = camera(FramePhysics::Scene(lumiq::simulate::SceneSpec::default()));
    cam.acquire(&req, &CancelToken::new(), &mut || None)
        .unwrap(); // render the scene once
    g.bench_function("physics", |b| {
        b.iter(|| {
            cam.acquire(&req, &CancelToken::new(), &mut || None)
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, stream_decode, acquire_2048);
criterion_main!(benches);
