//! `lumiq demo`: the whole daemon on one machine with nothing installed but Mosquitto — the
//! simulated camera (through the USB codec) and controller (through a pseudo-terminal), a
//! state directory of its own, a broker, and a subscriber that receives the records as a
//! LIMS would.
//!
//! - Broker: the `[broker]` of `--config` when it has one; otherwise `mosquitto` from `PATH`
//!   (or `/usr/sbin/mosquitto`) started on a free local port for the demo's lifetime; a clear
//!   error when neither exists. Design: no broker is compiled into the binary — the
//!   embeddable rumqttd has no shutdown API and brings a second copy of axum, hyper and
//!   rustls; Mosquitto is what labs run anyway.
//! - Output: every record envelope received from the broker is printed on stdout as one JSON
//!   line (first copy of each `measurement_id` only); logs and the final status table go to
//!   stderr. With `--acquisitions N` the demo stops by itself after N records, exit 0;
//!   without it, it runs until Ctrl-C.
//! - State: a fresh temporary folder (outbox, archive, a copy of the simulated instrument's
//!   calibration set — the daemon adds darks to it), removed at the end.
//!
//! Owns: the demo's wiring only; the daemon is [`super::serve`], unchanged.

use std::collections::HashSet;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use super::{RunHooks, Shared};
use crate::config::{BrokerSettings, CameraKind, ConfigError, ControllerKind, Settings};
use crate::simulate::calibration_frames::SHIPPED_SET_DIR;

/// Why the demo could not run. Messages name what is missing and the fix.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("--acquisitions 0: give the number of records to wait for (1 or more)")]
    NoAcquisitions,
    #[error("no broker: --config has no [broker] section and `mosquitto` is not installed; install it (Debian: apt install mosquitto) or pass --config with a [broker] section")]
    NoBroker,
    #[error("cannot start {}", .0.display())]
    StartBroker(PathBuf, #[source] std::io::Error),
    #[error("{} did not listen on 127.0.0.1:{port} within 10 s", bin.display())]
    BrokerSilent { bin: PathBuf, port: u16 },
    #[error("the demo's broker settings")]
    BrokerSettings(#[source] toml::de::Error),
    #[error("lumiq demo: the simulated instrument's calibration set ({SHIPPED_SET_DIR}) is not here; run the demo from the repository's root")]
    NoCalibration,
    #[error("cannot create {}", .0.display())]
    Create(PathBuf, #[source] std::io::Error),
    #[error("cannot copy {}", .0.display())]
    Copy(PathBuf, #[source] std::io::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] crate::delivery::DeliveryError),
    #[error(transparent)]
    Subscribe(#[from] rumqttc::ClientError),
    #[error("the demo's subscriber cannot reach {url}: {error}")]
    SubscriberUnreachable {
        url: String,
        error: Box<rumqttc::ConnectionError>,
    },
    #[error("the demo's subscriber got no answer from {0}")]
    SubscriberSilent(String),
    #[error("the demo's subscriber could not subscribe at {0}")]
    NotSubscribed(String),
    #[error(transparent)]
    Daemon(#[from] super::DaemonError),
}

/// Settings of the demo when no `--config` is given.
const DEMO_SETTINGS: &str = r#"
[instrument]
id = "sim-ivis-01"
site = "demo-lab"

[calibration]
# The shipped set was built 56 days before the simulated instrument's clock starts.
max_age_days = 90

[state]
min_free_disk_mb = 200

[acquisition]
auto_interval_s = 3
"#;

/// A folder of the demo's, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Result<TempDir, DemoError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let p =
            std::env::temp_dir().join(format!("lumiq-demo-{what}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).map_err(|e| DemoError::Create(p.clone(), e))?;
        Ok(TempDir(p))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A broker process started for the demo; killed when dropped.
struct DemoBroker {
    child: Child,
    _dir: TempDir,
}

impl Drop for DemoBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_mosquitto() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("mosquitto"))
            .find(|p| p.is_file())
    });
    from_path.or_else(|| {
        let p = PathBuf::from("/usr/sbin/mosquitto");
        p.is_file().then_some(p)
    })
}

fn start_broker() -> Result<(DemoBroker, u16), DemoError> {
    let Some(bin) = find_mosquitto() else {
        return Err(DemoError::NoBroker);
    };
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dir = TempDir::new("broker")?;
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )?;
    let child = Command::new(&bin)
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| DemoError::StartBroker(bin.clone(), e))?;
    let broker = DemoBroker { child, _dir: dir };
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t0.elapsed() > Duration::from_secs(10) {
            return Err(DemoError::BrokerSilent { bin, port });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::info!("demo broker: {} on 127.0.0.1:{port}", bin.display());
    Ok((broker, port))
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), DemoError> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), to.join(e.file_name()))
                .map_err(|err| DemoError::Copy(e.path(), err))?;
        }
    }
    Ok(())
}

/// Run the demo.
pub fn run(acquisitions: Option<usize>, config: Option<&Path>) -> Result<(), DemoError> {
    if acquisitions == Some(0) {
        return Err(DemoError::NoAcquisitions);
    }
    let _ = crate::logging::init(crate::config::LogFormat::Text, "info");
    let mut settings = match config {
        Some(p) => Settings::load(p)?,
        None => Settings::from_toml_str(DEMO_SETTINGS, "lumiq demo's built-in settings")?,
    };
    let state = TempDir::new("state")?;
    settings.camera.kind = CameraKind::Simulated;
    settings.controller.kind = ControllerKind::Simulated;
    settings.state.dir = state.path().join("state");
    settings.status.socket = state.path().join("lumiq.sock");
    let calibration = settings.state.dir.join("calibration");
    copy_dir(&shipped_simulated_calibration()?, &calibration)?;
    settings.calibration.dir = Some(calibration);
    if settings.acquisition.auto_interval_s == 0 {
        settings.acquisition.auto_interval_s = 3;
    }
    let mut _broker = None;
    if settings.broker.is_none() {
        let (b, port) = start_broker()?;
        _broker = Some(b);
        let b: BrokerSettings = toml::from_str(&format!("host = \"127.0.0.1\"\nport = {port}\n"))
            .map_err(DemoError::BrokerSettings)?;
        settings.broker = Some(b);
    }
    settings.validate()?;
    let broker = settings.broker_config()?.expect("a broker is configured");
    let topic = settings.topics()?.measurement();
    eprintln!(
        "lumiq demo: instrument {} at {}, broker {}, records on {topic}; `lumiq status --socket {}` works while it runs",
        settings.instrument.id,
        settings.instrument.site,
        broker.url(),
        settings.status.socket.display()
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async move {
        // The LIMS side: subscribe before the daemon starts, so no record is missed.
        let mut opts = MqttOptions::new(
            format!("lumiq-demo-lims-{}", std::process::id()),
            broker.host.clone(),
            broker.port,
        );
        opts.set_max_packet_size(8 << 20, 64 << 10);
        if let (Some(u), p) = (&broker.username, &broker.password) {
            opts.set_credentials(u.clone(), p.clone().unwrap_or_default());
        }
        if let Some(tls) = &broker.tls {
            let cfg = crate::delivery::tls::client_config(tls)?;
            opts.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Rustls(
                cfg,
            )));
        }
        let (client, mut el) = AsyncClient::new(opts, 16);
        client.subscribe(topic.clone(), QoS::AtLeastOnce).await?;
        let t0 = Instant::now();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), el.poll()).await {
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => break,
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    return Err(DemoError::SubscriberUnreachable {
                        url: broker.url(),
                        error: Box::new(error),
                    })
                }
                Err(_) => return Err(DemoError::SubscriberSilent(broker.url())),
            }
            if t0.elapsed() > Duration::from_secs(10) {
                return Err(DemoError::NotSubscribed(broker.url()));
            }
        }
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let shared: Arc<Mutex<Option<Arc<Shared>>>> = Arc::new(Mutex::new(None));
        let sh = shared.clone();
        let final_table: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let table = final_table.clone();
        let lims = tokio::spawn(async move {
            let mut seen = HashSet::new();
            let mut stop_tx = Some(stop_tx);
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let text = String::from_utf8_lossy(&p.payload).into_owned();
                        let id = serde_json::from_str::<serde_json::Value>(&text)
                            .ok()
                            .and_then(|v| v["measurement_id"].as_str().map(String::from))
                            .unwrap_or_default();
                        if !seen.insert(id) {
                            continue;
                        }
                        {
                            let mut out = std::io::stdout().lock();
                            let _ = writeln!(out, "{text}");
                            let _ = out.flush();
                        }
                        if acquisitions.is_some_and(|n| seen.len() >= n) {
                            // Keep the last status (with every record acknowledged) for the end.
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            if let Some(s) = &*sh.lock().unwrap_or_else(|p| p.into_inner()) {
                                *table.lock().unwrap_or_else(|p| p.into_inner()) =
                                    Some(super::status::render_table(&s.report()));
                            }
                            if let Some(tx) = stop_tx.take() {
                                let _ = tx.send(());
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!("demo subscriber: {e}; reconnecting");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        let hooks = RunHooks {
            on_ready: Some(Box::new(move |s| {
                *shared.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
            })),
            stop: Some(stop_rx),
        };
        let r = super::serve(settings, hooks).await;
        lims.abort();
        r?;
        if let Some(t) = final_table.lock().unwrap_or_else(|p| p.into_inner()).take() {
            eprintln!("\n{t}");
        }
        Ok(())
    });
    drop(_broker);
    drop(state);
    result
}

/// The calibration set shipped for the simulated instrument
/// ([`crate::simulate::calibration_frames::shipped_set_dir`]), or why it is not here.
fn shipped_simulated_calibration() -> Result<PathBuf, DemoError> {
    crate::simulate::calibration_frames::shipped_set_dir().ok_or(DemoError::NoCalibration)
}
