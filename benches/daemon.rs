//! The daemon as it runs: `lumiq run` (this build's binary) with the simulated instrument at
//! binning 1 (2048² frames), a real Mosquitto on a free port, acquisitions asked for over
//! the socket one at a time.
//!
//! Measured and printed (no pass/fail; goals from the daemon issue):
//! - acquisition complete → PUBACK, p50/p99/max over the acquisitions: from the moment the
//!   sequence returned the capture (`last_acquisition.captured_at`) to the broker's PUBACK of
//!   its record (`delivery.last_puback_at`; one acquisition at a time, so it is that
//!   record's). Covers staging the raw frames, quantification, outputs, the fsync'd commit,
//!   archiving and delivery. Goal: p99 ≤ 300 ms.
//! - idle CPU (% of one core) and RSS over `LUMIQ_BENCH_IDLE_S` seconds (default 30) after
//!   start, before any acquisition, from `/proc/<pid>/stat` and `/proc/<pid>/status`.
//!   Goal: RSS < 60 MB.
//! - peak RSS (`VmHWM`) after the acquisitions. Goal: < 300 MB.
//!
//! Run: `cargo bench --bench daemon` (`LUMIQ_BENCH_ACQUISITIONS`, default 20). Needs
//! `/usr/sbin/mosquitto`. The first acquisition (darks for the library, warm-up) is not
//! counted.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const LUMIQ: &str = env!("CARGO_BIN_EXE_lumiq");

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run(args: &[&str]) {
    let o = Command::new(LUMIQ).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "lumiq {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn status(socket: &Path) -> Option<Value> {
    let o = Command::new(LUMIQ)
        .args(["status", "--json", "--socket", socket.to_str().unwrap()])
        .output()
        .ok()?;
    serde_json::from_slice(&o.stdout).ok()
}

fn proc_field(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// utime + stime, clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn ticks_per_s() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn ms_between(a: &str, b: &str) -> f64 {
    let a = chrono::DateTime::parse_from_rfc3339(a).unwrap();
    let b = chrono::DateTime::parse_from_rfc3339(b).unwrap();
    (b - a).num_microseconds().unwrap() as f64 / 1000.0
}

/// `archive/<day>/<id>/record.json` (the folder is renamed into place right after the commit).
fn find_record(archive: &Path, id: &str) -> PathBuf {
    let t0 = Instant::now();
    loop {
        for day in std::fs::read_dir(archive).unwrap().filter_map(|d| d.ok()) {
            let p = day.path().join(id).join("record.json");
            if p.is_file() {
                return p;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no archive folder for {id}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn main() {
    // `cargo bench` passes --bench; a filter that is not ours skips the run.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"daemon".contains(a.as_str()))
    {
        return;
    }
    if !Path::new("/usr/sbin/mosquitto").exists() {
        eprintln!("daemon bench skipped: /usr/sbin/mosquitto is not installed");
        return;
    }
    let n = env_num("LUMIQ_BENCH_ACQUISITIONS", 20) as usize;
    let idle_s = env_num("LUMIQ_BENCH_IDLE_S", 30);
    let tmp = std::env::temp_dir().join(format!("lumiq-bench-daemon-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();

    // A calibration set with binning-1 masters, built from the simulated instrument.
    let t0 = Instant::now();
    let frames = tmp.join("frames");
    let cal = tmp.join("calibration");
    run(&[
        "simulate",
        "--calibration-frames",
        "--out",
        frames.to_str().unwrap(),
        "--binnings",
        "1",
        "--frames",
        "3",
    ]);
    run(&[
        "calibrate",
        "--simulated-instrument",
        "--out",
        cal.to_str().unwrap(),
        frames.to_str().unwrap(),
    ]);
    eprintln!(
        "binning-1 calibration set built in {:.0} s",
        t0.elapsed().as_secs_f64()
    );

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = tmp.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n"),
    )
    .unwrap();
    let _broker = Kill(
        Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "mosquitto did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let socket: PathBuf = tmp.join("lumiq.sock");
    let config = tmp.join("lumiq.toml");
    std::fs::write(
        &config,
        format!(
            "[instrument]\nid = \"sim-ivis-01\"\nsite = \"bench\"\n[state]\ndir = \"{}\"\nmin_free_disk_mb = 1\n[calibration]\ndir = \"{}\"\nmax_age_days = 90\n[status]\nsocket = \"{}\"\n[broker]\nhost = \"127.0.0.1\"\nport = {port}\n[camera]\nkind = \"simulated\"\n[controller]\nkind = \"simulated\"\n[acquisition]\nbinnings = [1]\n[logging]\nlevel = \"warn\"\n",
            tmp.join("state").display(),
            cal.display(),
            socket.display()
        ),
    )
    .unwrap();
    let daemon = Kill(
        Command::new(LUMIQ)
            .args(["run", "--config", config.to_str().unwrap()])
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let pid = daemon.0.id();
    let t0 = Instant::now();
    while status(&socket).is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the daemon did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Idle.
    std::thread::sleep(Duration::from_secs(2));
    let (c0, w0) = (cpu_ticks(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(idle_s));
    let idle_cpu = (cpu_ticks(pid) - c0) as f64 / ticks_per_s() / w0.elapsed().as_secs_f64();
    let idle_rss_kb = proc_field(pid, "VmRSS:");

    // Acquisitions, one at a time.
    let mut lat = Vec::new();
    let mut processed_frame = String::new();
    for i in 0..=n {
        let o = Command::new(LUMIQ)
            .args(["acquire", "--socket", socket.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
        let t0 = Instant::now();
        let v = loop {
            let v = status(&socket).unwrap();
            let last = &v["last_acquisition"];
            if last["id"] == id.as_str() {
                assert_eq!(last["outcome"], "committed", "{v}");
                if v["delivery"]["last_acked_seq"] == last["seq"] {
                    break v;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(600),
                "acquisition {id} never delivered: {v}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let last = &v["last_acquisition"];
        if i == 0 {
            let rec = find_record(&tmp.join("state/archive"), &id);
            let r: Value = serde_json::from_str(&std::fs::read_to_string(rec).unwrap()).unwrap();
            processed_frame = format!(
                "{}×{} px at binning {}",
                r["acquisition"]["frame_width_px"],
                r["acquisition"]["frame_height_px"],
                r["acquisition"]["binning"]
            );
            continue;
        }
        lat.push(ms_between(
            last["captured_at"].as_str().unwrap(),
            v["delivery"]["last_puback_at"].as_str().unwrap(),
        ));
    }
    let peak_kb = proc_field(pid, "VmHWM:");
    lat.sort_by(|a, b| a.total_cmp(b));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("daemon bench: {n} acquisitions of {processed_frame}, one at a time");
    println!(
        "  acquisition complete → PUBACK: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (goal p99 ≤ 300 ms)",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat.last().unwrap()
    );
    println!(
        "  idle over {idle_s} s: CPU {:.2} % of one core, RSS {:.1} MB (goal < 60 MB)",
        idle_cpu * 100.0,
        idle_rss_kb as f64 / 1024.0
    );
    println!(
        "  peak RSS (VmHWM) after the acquisitions: {:.1} MB (goal < 300 MB)",
        peak_kb as f64 / 1024.0
    );
    println!("  load average at the end: {}", load.trim());
    drop(daemon);
    let _ = std::fs::remove_dir_all(&tmp);
}
