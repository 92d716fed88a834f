//! Delivery benchmarks: durable outbox commits and end-to-end delivery to a real Mosquitto.
//!
//! - `outbox/commit_durable`: one ~6 KB record committed (SQLite WAL, `synchronous=FULL`:
//!   an fsync per commit). Budget: ≥ 200 commits/s, far above an imager's one acquisition
//!   every few seconds.
//! - `deliver/commit_and_ack_100`: 100 records committed durably and published at QoS 1
//!   until the broker has PUBACKed all of them and the outbox has marked them. Budget:
//!   ≥ 200 records/s.
//! - Printed after the criterion run: PUBACK latency p50/p99 (from the publisher queueing a
//!   publish to its PUBACK) under saturation and at a paced 50 records/s, and commit latency
//!   p50/p99. Budget: p99 PUBACK < 50 ms paced.
//!
//! Needs `/usr/sbin/mosquitto` (started here on a free port, persistence off: the durability
//! measured is lumiq's outbox). Without it only the outbox group runs.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use lumiq::delivery::{
    synthetic, BrokerConfig, Outbox, OutboxConfig, Publisher, PublisherConfig, PublisherHandle,
    Topics,
};

const INSTRUMENT: &str = "bench-01";

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn start_broker(dir: &Path) -> Option<(Broker, u16)> {
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n"),
    )
    .ok()?;
    let child = Command::new("/usr/sbin/mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let broker = Broker(child);
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t0.elapsed() > Duration::from_secs(5) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((broker, port))
}

fn bench_commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let ob = Outbox::open(
        dir.path().join("outbox.sqlite"),
        &OutboxConfig::new(INSTRUMENT),
    )
    .unwrap();
    let mut g = c.benchmark_group("outbox");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    g.bench_function("commit_durable", |b| {
        b.iter_batched(
            || synthetic::record(INSTRUMENT, 1),
            |r| ob.commit(&r).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// A current-thread tokio runtime driven by its own thread (the publisher's), while the
/// bench thread commits, as the daemon's commit stage does.
struct Rt {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Rt {
    fn new() -> Rt {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let handle = rt.handle().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            rt.block_on(async {
                let _ = rx.await;
            })
        });
        Rt {
            handle,
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|t| t.send(()));
        self.thread.take().map(|t| t.join());
    }
}

fn publisher(rt: &Rt, ob: &Outbox, port: u16) -> PublisherHandle {
    let broker = BrokerConfig::new("127.0.0.1", port);
    let cfg = PublisherConfig::new(
        Topics::new("lumiq/v1", "bench", INSTRUMENT).unwrap(),
        broker,
    );
    let _g = rt.handle.enter();
    let p = Publisher::spawn(ob.clone(), cfg).unwrap();
    let t0 = Instant::now();
    while p.status().connections == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no connection: {:?}",
            p.status().last_error
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    p
}

/// Wait until every record up to `last_seq` is acknowledged and marked.
fn wait_acked(p: &PublisherHandle, last_seq: u64) {
    loop {
        let s = p.status();
        if s.last_acked_seq >= Some(last_seq) && s.unacked == 0 {
            break;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn bench_deliver(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let Some((_broker, port)) = start_broker(dir.path()) else {
        eprintln!("deliver: skipped, /usr/sbin/mosquitto could not be started");
        return;
    };
    let rt = Rt::new();
    let ob = Outbox::open(
        dir.path().join("outbox.sqlite"),
        &OutboxConfig::new(INSTRUMENT),
    )
    .unwrap();
    let p = publisher(&rt, &ob, port);
    const N: u64 = 100;
    let mut g = c.benchmark_group("deliver");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    let mut n = 0;
    g.bench_function("commit_and_ack_100", |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                let mut last = 0;
                for _ in 0..N {
                    last = ob.commit(&synthetic::record(INSTRUMENT, n)).unwrap();
                    n += 1;
                }
                wait_acked(&p, last);
            }
            t0.elapsed()
        })
    });
    g.finish();
    let saturated = p.status().puback_latency.unwrap();
    rt.handle.block_on(p.shutdown(Duration::from_secs(2)));

    // Paced: 50 records/s for 6 s, committed from a separate thread as the daemon will.
    let ob2 = Outbox::open(
        dir.path().join("paced.sqlite"),
        &OutboxConfig::new(INSTRUMENT),
    )
    .unwrap();
    let p2 = publisher(&rt, &ob2, port);
    let producer = {
        let ob2 = ob2.clone();
        std::thread::spawn(move || {
            let mut commit_ms = Vec::new();
            let mut last = 0;
            for i in 0..300 {
                let r = synthetic::record(INSTRUMENT, i);
                let t = Instant::now();
                last = ob2.commit(&r).unwrap();
                commit_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                std::thread::sleep(Duration::from_millis(20));
            }
            (commit_ms, last)
        })
    };
    let (mut commit_ms, last) = producer.join().unwrap();
    wait_acked(&p2, last);
    let paced = p2.status().puback_latency.unwrap();
    rt.handle.block_on(p2.shutdown(Duration::from_secs(2)));
    println!(
        "delivery latency: PUBACK saturated (window 32, {} samples) p50 {:.2} ms p99 {:.2} ms max {:.2} ms; \
         PUBACK paced 50/s ({} samples) p50 {:.2} ms p99 {:.2} ms max {:.2} ms; \
         durable commit ({} samples) p50 {:.2} ms p99 {:.2} ms",
        saturated.samples,
        saturated.p50_ms,
        saturated.p99_ms,
        saturated.max_ms,
        paced.samples,
        paced.p50_ms,
        paced.p99_ms,
        paced.max_ms,
        commit_ms.len(),
        pct(&mut commit_ms, 0.5),
        pct(&mut commit_ms, 0.99),
    );
}

criterion_group!(benches, bench_commit, bench_deliver);
criterion_main!(benches);
