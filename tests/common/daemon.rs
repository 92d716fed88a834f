//! The daemon as a child process for the tests: its folder and configuration (simulated
//! instrument, the shipped calibration set, a Mosquitto of its own), `lumiq status --json`
//! validated against its schema, signals and waiting.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::delivery_common::*;

pub const INSTRUMENT: &str = "sim-ivis-01";
pub const SITE: &str = "lab-e2e";

pub fn lumiq(args: &[&str]) -> Output {
    Command::new(LUMIQ)
        .args(args)
        .env_remove("LUMIQ_SOCKET")
        .output()
        .expect("run lumiq")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn status_schema() -> jsonschema::Validator {
    let path = format!(
        "{}/schemas/status-report.schema.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&v).expect("the status-report schema is valid")
}

/// `lumiq status --json` over the socket: (exit code, validated report).
pub fn status(socket: &Path, schema: &jsonschema::Validator) -> Option<(i32, Value)> {
    let o = lumiq(&["status", "--json", "--socket", socket.to_str().unwrap()]);
    let code = o.status.code().unwrap_or(-1);
    if code == 2 {
        return None;
    }
    let out = text(&o.stdout);
    assert_eq!(
        out.lines().count(),
        1,
        "one JSON object: {out}{}",
        text(&o.stderr)
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let errors: Vec<String> = schema
        .iter_errors(&v)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "status report violates its schema: {errors:?}\n{v}"
    );
    Some((code, v))
}

pub fn wait_status(
    socket: &Path,
    schema: &jsonschema::Validator,
    timeout: Duration,
    what: &str,
    mut ok: impl FnMut(&Value) -> bool,
) -> (i32, Value) {
    let t0 = Instant::now();
    loop {
        if let Some((code, v)) = status(socket, schema) {
            if ok(&v) {
                return (code, v);
            }
            assert!(
                t0.elapsed() < timeout,
                "timed out waiting for {what}; last status: {v}"
            );
        } else {
            assert!(
                t0.elapsed() < timeout,
                "timed out waiting for the daemon ({what})"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

pub struct Setup {
    pub _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub broker: Mosquitto,
}

/// A daemon's folder: the shipped simulated calibration set, a Mosquitto of its own on a
/// free port, and a configuration for the simulated instrument; `extra` is appended to the
/// configuration (more sections, e.g. `[qc]`).
pub fn setup_with(extra: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let port = free_port();
    let broker = Mosquitto::plain(&dir, port, false);
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("calibration/sim-ivis-01"),
        &dir.join("calibration"),
    );
    let socket = dir.join("run/lumiq.sock");
    let config = dir.join("lumiq.toml");
    std::fs::write(
        &config,
        format!(
            r#"[instrument]
id = "{INSTRUMENT}"
site = "{SITE}"

[state]
dir = "{state}"
min_free_disk_mb = 1

[calibration]
dir = "{cal}"
max_age_days = 90

[status]
socket = "{socket}"

[broker]
host = "127.0.0.1"
port = {port}
command_topic = true

[camera]
kind = "simulated"

[controller]
kind = "simulated"

[acquisition]
auto_interval_s = 0
{extra}
"#,
            state = dir.join("state").display(),
            cal = dir.join("calibration").display(),
            socket = socket.display(),
        ),
    )
    .unwrap();
    Setup {
        _tmp: tmp,
        dir,
        config,
        socket,
        broker,
    }
}

/// `lumiq run` on the setup's configuration, its log in `daemon.log`.
pub fn start_daemon(s: &Setup, env: &[(&str, &str)]) -> std::process::Child {
    let mut c = Command::new(LUMIQ);
    c.args(["run", "--config", s.config.to_str().unwrap()])
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(s.dir.join("daemon.log"))
                .unwrap(),
        ));
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().expect("start lumiq run")
}

pub fn log(s: &Setup) -> String {
    std::fs::read_to_string(s.dir.join("daemon.log")).unwrap_or_default()
}

pub fn signal(child: &std::process::Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

pub fn wait_exit(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// A LIMS stand-in: `mosquitto_sub` on the setup's broker (QoS 1, client id `client`, a
/// persistent session when `persistent`), subscribed to each of the instrument's topic
/// `levels` (`measurement`, `event`, `#`, ...), ready when returned.
pub fn subscribe(setup: &Setup, client: &str, persistent: bool, levels: &[&str]) -> Subscriber {
    let port = setup.broker.port.to_string();
    let mut args = s(&[
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-v",
        "-q",
        "1",
        "-i",
        client,
    ]);
    if persistent {
        args.push("-c".into());
    }
    for l in levels {
        args.push("-t".into());
        args.push(format!("lumiq/v1/{SITE}/{INSTRUMENT}/{l}"));
    }
    subscribe_ready(args, &s(&["-h", "127.0.0.1", "-p", &port]))
}

/// Validated payloads lumiq published on topics ending in `suffix` (`/event`, ...).
pub fn payloads(sub: &Subscriber, schemas: &Schemas, suffix: &str) -> Vec<Value> {
    lumiq_messages(sub)
        .iter()
        .filter(|(t, _)| t.ends_with(suffix))
        .map(|(t, p)| schemas.validate(t, p))
        .collect()
}

/// Wait until the daemon answers and is idle.
pub fn wait_ready(s: &Setup, schema: &jsonschema::Validator) {
    wait_status(
        &s.socket,
        schema,
        Duration::from_secs(60),
        "the daemon to be ready",
        |v| v["state"] == "idle",
    );
}

/// Publish `payload` on the instrument's command topic, as the LIMS does (QoS 1).
pub fn publish_command(s: &Setup, payload: &str) {
    let ok = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &s.broker.port.to_string(),
            "-q",
            "1",
            "-t",
        ])
        .arg(format!("lumiq/v1/{SITE}/{INSTRUMENT}/command"))
        .args(["-m", payload])
        .status()
        .unwrap()
        .success();
    assert!(ok, "mosquitto_pub");
}

/// SIGTERM, and the daemon exits 0 within 30 s.
pub fn stop_cleanly(s: &Setup, mut d: std::process::Child) {
    signal(&d, "-TERM");
    let st = wait_exit(&mut d, Duration::from_secs(30)).expect("stops");
    assert!(st.success(), "{}", log(s));
}
