//! Helpers for the delivery tests: a real Mosquitto on a free port, a real independent
//! subscriber (`mosquitto_sub` with a persistent session), a TCP proxy whose link can be cut,
//! and validation of every payload against the JSON Schemas in `schemas/`.
//!
//! Include with `#[path = "common/delivery.rs"] mod delivery_common;`. Every process started
//! here is killed when its handle drops, so a failing test leaves nothing running.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";
pub const LUMIQ: &str = env!("CARGO_BIN_EXE_lumiq");

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Poll `f` every 20 ms until it is true; panic naming `what` after `timeout`.
pub fn wait_for(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        if t0.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// A Mosquitto broker started by the test, with its own config file.
pub struct Mosquitto {
    pub port: u16,
    pub conf: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    pub kills: u32,
}

impl Mosquitto {
    /// Plain TCP on 127.0.0.1:`port`, anonymous, with persistence in `dir` saved after every
    /// change (so a SIGKILL loses as little as Mosquitto allows).
    pub fn plain(dir: &Path, port: u16, persistence: bool) -> Mosquitto {
        let body = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\n{}",
            persistence_lines(dir, persistence)
        );
        Mosquitto::start(dir, "mosquitto", port, &body)
    }

    /// Start with `body` (listeners and options) after the lines every test broker needs:
    /// `user root` (else it drops privileges and cannot write its files) and logging.
    pub fn start(dir: &Path, name: &str, port: u16, body: &str) -> Mosquitto {
        let conf = dir.join(format!("{name}.conf"));
        let log = dir.join(format!("{name}.log"));
        std::fs::write(
            &conf,
            format!(
                "user root\nlog_dest file {}\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\nconnection_messages true\n{body}\n",
                log.display()
            ),
        )
        .unwrap();
        let mut m = Mosquitto {
            port,
            conf,
            log,
            child: None,
            kills: 0,
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start /usr/sbin/mosquitto (Debian package mosquitto)");
        self.child = Some(child);
        let port = self.port;
        wait_for(Duration::from_secs(10), "mosquitto to listen", || {
            port_open(port)
        });
    }

    /// SIGKILL: no clean shutdown, no final save of its persistence file.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
            self.kills += 1;
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

pub fn persistence_lines(dir: &Path, on: bool) -> String {
    if on {
        format!(
            "persistence true\npersistence_location {}/\nautosave_interval 1\nautosave_on_changes true\n",
            dir.display()
        )
    } else {
        "persistence false\n".into()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }
}

/// A `mosquitto_sub` process; every line it prints (`topic payload` with `-v`) is collected.
pub struct Subscriber {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Subscriber {
    pub fn start(args: &[String]) -> Subscriber {
        let mut child = Command::new("mosquitto_sub")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mosquitto_sub (Debian package mosquitto-clients)");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let l = lines.clone();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                match line {
                    Ok(line) => l.lock().unwrap().push(line),
                    Err(_) => break,
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let e = stderr.clone();
        thread::spawn(move || {
            let mut s = String::new();
            err.read_to_string(&mut s).ok();
            e.lock().unwrap().push_str(&s);
        });
        Subscriber {
            child,
            lines,
            stderr,
        }
    }

    /// `(topic, payload)` of every message so far.
    pub fn messages(&self) -> Vec<(String, String)> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.split_once(' '))
            .map(|(t, p)| (t.to_string(), p.to_string()))
            .collect()
    }

    pub fn count_topic_suffix(&self, suffix: &str) -> usize {
        self.messages()
            .iter()
            .filter(|(t, _)| t.ends_with(suffix))
            .count()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// A TCP proxy on 127.0.0.1 to `upstream`; [`Proxy::cut`] closes every open connection
/// (both sides see the link drop) while new connections keep being accepted.
pub struct Proxy {
    pub port: u16,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
    pub cuts: Arc<AtomicU64>,
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (conns.clone(), stop.clone());
        thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).ok();
                        let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                            client.shutdown(Shutdown::Both).ok();
                            continue;
                        };
                        client.set_nodelay(true).ok();
                        server.set_nodelay(true).ok();
                        {
                            let mut g = c.lock().unwrap();
                            g.push(client.try_clone().unwrap());
                            g.push(server.try_clone().unwrap());
                        }
                        pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                        pipe(server, client);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy {
            port,
            conns,
            stop,
            cuts: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Cut the link: shut down every connection through the proxy.
    pub fn cut(&self) {
        for s in self.conns.lock().unwrap().drain(..) {
            s.shutdown(Shutdown::Both).ok();
        }
        self.cuts.fetch_add(1, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        from.shutdown(Shutdown::Both).ok();
        to.shutdown(Shutdown::Both).ok();
    });
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
    }
}

/// Validators for every payload lumiq publishes, by topic.
pub struct Schemas {
    envelope: jsonschema::Validator,
    record: jsonschema::Validator,
    sequence: jsonschema::Validator,
    status: jsonschema::Validator,
    event: jsonschema::Validator,
}

fn schema_file(name: &str) -> Value {
    let path = format!("{}/schemas/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Resolves the schemas' `$id`s to the files in `schemas/` (no network).
struct LocalSchemas;

impl jsonschema::Retrieve for LocalSchemas {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let record = format!(
            "https://lumiq.invalid/schemas/measurement/{}",
            lumiq::record::SCHEMA_VERSION
        );
        let sequence = format!(
            "https://lumiq.invalid/schemas/sequence/{}",
            lumiq::sequence::SCHEMA_VERSION
        );
        match uri.as_str() {
            u if u == record => Ok(schema_file("measurement.schema.json")),
            u if u == sequence => Ok(schema_file("sequence.schema.json")),
            other => Err(format!("unknown schema {other}").into()),
        }
    }
}

impl Schemas {
    pub fn load() -> Schemas {
        let build = |name: &str| {
            jsonschema::options()
                .with_retriever(LocalSchemas)
                .build(&schema_file(name))
                .unwrap_or_else(|e| panic!("schemas/{name} is not a valid schema: {e}"))
        };
        Schemas {
            envelope: build("measurement-envelope.schema.json"),
            record: build("measurement.schema.json"),
            sequence: build("sequence.schema.json"),
            status: build("status.schema.json"),
            event: build("event.schema.json"),
        }
    }

    fn check(v: &jsonschema::Validator, what: &str, value: &Value) {
        let errors: Vec<String> = v
            .iter_errors(value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what} violates its schema:\n{}\npayload: {value}",
            errors.join("\n")
        );
    }

    /// Validate one received message by its topic's last level; returns the parsed payload.
    /// Measurement envelopes are also checked for consistency with their record.
    pub fn validate(&self, topic: &str, payload: &str) -> Value {
        let v: Value = serde_json::from_str(payload)
            .unwrap_or_else(|e| panic!("payload on {topic} is not JSON ({e}): {payload}"));
        let kind = topic.rsplit('/').next().unwrap();
        match kind {
            "measurement" => {
                Self::check(&self.envelope, "measurement envelope", &v);
                assert_eq!(v["record_schema"], v["record"]["schema"]);
                if v["record_schema"] == "lumiq.sequence" {
                    Self::check(&self.sequence, "sequence record", &v["record"]);
                    assert_eq!(v["measurement_id"], v["record"]["sequence_id"]);
                    assert_eq!(v["acquired_at"], v["record"]["frames"][0]["acquired_at"]);
                } else {
                    Self::check(&self.record, "measurement record", &v["record"]);
                    assert_eq!(v["measurement_id"], v["record"]["measurement_id"]);
                    assert_eq!(v["acquired_at"], v["record"]["acquired_at"]);
                }
                assert_eq!(v["instrument_id"], v["record"]["instrument_id"]);
                let levels: Vec<&str> = topic.split('/').collect();
                let n = levels.len();
                assert_eq!(Some(levels[n - 2]), v["instrument_id"].as_str(), "{topic}");
                assert_eq!(Some(levels[n - 3]), v["site"].as_str(), "{topic}");
            }
            "status" => Self::check(&self.status, "status", &v),
            "event" => Self::check(&self.event, "event", &v),
            other => panic!("unexpected topic level {other} in {topic}"),
        }
        v
    }
}

/// What a subscriber received, checked against what the outbox holds.
#[derive(Debug, Default)]
pub struct Tally {
    /// measurement_id → seq, from the envelopes.
    pub received: HashMap<String, u64>,
    pub copies: u64,
    pub duplicates: u64,
    pub replays: u64,
    pub statuses: Vec<Value>,
    pub events: Vec<Value>,
}

/// Validate every message and count measurements by id.
pub fn tally(schemas: &Schemas, messages: &[(String, String)]) -> Tally {
    let mut t = Tally::default();
    for (topic, payload) in messages {
        let v = schemas.validate(topic, payload);
        if topic.ends_with("/measurement") {
            let id = v["measurement_id"].as_str().unwrap().to_string();
            let seq = v["seq"].as_u64().unwrap();
            t.copies += 1;
            if v["replay"].as_bool().unwrap() {
                t.replays += 1;
            }
            if let Some(prev) = t.received.insert(id.clone(), seq) {
                assert_eq!(prev, seq, "{id} arrived with two different seqs");
                t.duplicates += 1;
            }
        } else if topic.ends_with("/status") {
            t.statuses.push(v);
        } else {
            t.events.push(v);
        }
    }
    t
}

/// `lumiq deliver-test ...` as a child process with its stdout collected.
pub struct Lumiq {
    pub child: Child,
    pub out: Arc<Mutex<Vec<String>>>,
    pub err: Arc<Mutex<Vec<String>>>,
}

impl Lumiq {
    pub fn start(args: &[String]) -> Lumiq {
        let mut child = Command::new(LUMIQ)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start lumiq");
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        for (stream, sink) in [
            (
                Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
                out.clone(),
            ),
            (Box::new(child.stderr.take().unwrap()), err.clone()),
        ] {
            thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    match line {
                        Ok(l) => sink.lock().unwrap().push(l),
                        Err(_) => break,
                    }
                }
            });
        }
        Lumiq { child, out, err }
    }

    /// Seqs this process printed as committed.
    pub fn committed(&self) -> usize {
        self.out
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("committed "))
            .count()
    }

    pub fn kill9(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }

    /// Wait for a clean exit; panics with its stderr otherwise.
    pub fn wait_success(&mut self, timeout: Duration) {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(
                    st.success(),
                    "lumiq exited with {st}:\n{}",
                    self.err.lock().unwrap().join("\n")
                );
                return;
            }
            if t0.elapsed() > timeout {
                self.kill9();
                panic!(
                    "lumiq did not finish within {timeout:?}:\n{}",
                    self.err.lock().unwrap().join("\n")
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr(&self) -> String {
        self.err.lock().unwrap().join("\n")
    }

    /// The `status {...}` JSON line printed at the end, if any.
    pub fn final_status(&self) -> Option<Value> {
        self.out
            .lock()
            .unwrap()
            .iter()
            .find_map(|l| l.strip_prefix("status "))
            .map(|s| serde_json::from_str(s).unwrap())
    }
}

impl Drop for Lumiq {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A tokio runtime driven by a background thread, so a test can block (sleep, wait for
/// processes) on its own thread while the publisher task runs. Enter it before
/// `Publisher::spawn`: `let _g = rt.handle.enter();`.
pub struct Runtime {
    pub handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Runtime {
    pub fn new() -> Runtime {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let handle = rt.handle().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            rt.block_on(async {
                let _ = rx.await;
            });
        });
        Runtime {
            handle,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.handle.block_on(f)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}

/// A subscriber on `filter` (plus a probe topic), started and known to be subscribed.
pub fn subscribe_ready(mut args: Vec<String>, probe_pub_args: &[String]) -> Subscriber {
    args.extend(["-t".into(), "lumiq-test/probe".into()]);
    let sub = Subscriber::start(&args);
    let t0 = Instant::now();
    loop {
        let mut p = Command::new("mosquitto_pub");
        p.args(probe_pub_args)
            .args(["-t", "lumiq-test/probe", "-m", "probe", "-q", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        p.status().ok();
        thread::sleep(Duration::from_millis(100));
        if sub.messages().iter().any(|(t, _)| t == "lumiq-test/probe") {
            return sub;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the subscriber never received its probe: {}",
            sub.stderr()
        );
    }
}

/// Messages without the probe.
pub fn lumiq_messages(sub: &Subscriber) -> Vec<(String, String)> {
    sub.messages()
        .into_iter()
        .filter(|(t, _)| t != "lumiq-test/probe")
        .collect()
}

pub fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}
