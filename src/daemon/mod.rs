//! The daemon: `lumiq run` on the imager's PC. Wires the camera and controller
//! ([`crate::acquire`]), processing ([`crate::job`]), the archive and delivery
//! ([`crate::delivery`]) into a service that runs unattended, and answers `lumiq status`.
//!
//! - [`stages`]: the acquire → process → commit stages, their threads and channels.
//! - [`archive`]: acquisition folders written atomically, recovery after a crash, retention.
//! - [`socket`]: the Unix socket (newline-delimited JSON) and its client.
//! - [`status`]: the [`StatusReport`], the reasons a person is needed, the table.
//! - [`notify`]: sd_notify (READY, WATCHDOG, STATUS, STOPPING) and loop heartbeats.
//! - [`commands`]: the LIMS's command topic.
//! - [`demo`]: `lumiq demo`, the whole daemon with the simulated instrument and a broker.
//! - [`cli`]: `lumiq run`, `acquire`, `status`, `demo`.
//! - [`guided_cli`]: `lumiq calibrate --guided`, guided calibration on the instrument the
//!   settings name.
//! - `shared`: [`Shared`], the state every task and thread sees: triggers, the status
//!   report, the socket's requests.
//! - `instrument`: opening the camera and controller (real or simulated) from the settings.
//! - `committed`: `record.json` is the outbox's bytes; a record committed by an earlier run
//!   stands when its acquisition is processed again.
//! - `fault`: crash points for the recovery tests (`LUMIQ_FAULT_ABORT_AT`).
//! - `series`: a kinetic series' sequence record, made once every frame is settled.
//! - `qc`: the QC in records, status and events; `qc_acquire`: the daemon's own QC
//!   acquisitions of the mounted reference source; `qc_schedule`: `[qc] schedule`.
//!
//! Triggers (all through [`Shared::trigger`], which refuses with a reason and counts it, and
//! never drops one silently): `lumiq acquire` over the socket, the controller's start button,
//! the LIMS command topic, `acquisition.auto_interval_s`, and `[qc] schedule` (a QC
//! acquisition, which waits its turn behind the acquisition in progress).
//!
//! Start: settings checked, outbox opened (SQLite recovers its WAL), leftovers of a previous
//! run recovered from the archive's staging area, publisher started, devices opened, socket
//! bound, then `READY=1`. Stop (SIGTERM, SIGINT): triggers refused, the acquisition in
//! flight abandoned between transfers, queued work processed and committed, the publisher
//! stopped cleanly (offline status), the socket removed; within [`STOP_BUDGET`].
//!
//! Does not own: the sequences, processing, the outbox or the publisher themselves.

pub mod archive;
pub mod cli;
pub mod commands;
pub mod demo;
pub mod guided_cli;
pub mod notify;
pub mod socket;
pub mod stages;
pub mod status;

mod committed;
pub(crate) mod fault;
pub(crate) mod instrument;
mod qc;
mod qc_acquire;
mod qc_schedule;
mod series;
mod shared;

pub use shared::{Heartbeats, Shared};

use instrument::open_instrument;
use shared::{calibration_status, Inner, QueuesCounters};

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::mpsc;

use crate::camera::Clock;
use crate::config::Settings;
use crate::delivery::{Outbox, Publisher, PublisherConfig};

use self::archive::Archive;
use self::notify::{Heartbeat, Notifier};
use self::socket::{AcquireRequest, SocketServer};
use self::stages::{AcceptedTrigger, Processed, Work};
use self::status::{AcquisitionCounters, CameraStatus, ControllerStatus, Refusals};

/// A clean stop finishes within this (systemd's TimeoutStopSec must be longer).
pub const STOP_BUDGET: Duration = Duration::from_secs(25);
/// Of the stop budget, what the publisher gets for PUBACKs in flight and the offline status.
const PUBLISHER_STOP: Duration = Duration::from_secs(5);

/// Why the daemon cannot start. Messages name the setting or file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Outbox(#[from] crate::delivery::OutboxError),
    #[error(transparent)]
    Delivery(#[from] crate::delivery::DeliveryError),
    #[error(transparent)]
    Archive(#[from] archive::ArchiveError),
    #[error(transparent)]
    Finish(#[from] committed::FinishError),
    #[error(transparent)]
    Socket(#[from] socket::SocketError),
    #[error("cannot open the imager: {0}")]
    Devices(#[from] crate::acquire::CaptureError),
}

/// Hooks for running the daemon inside another command (`lumiq demo`).
#[derive(Default)]
pub struct RunHooks {
    /// Called once the daemon is ready, with its shared state.
    pub on_ready: Option<Box<dyn FnOnce(Arc<Shared>) + Send>>,
    /// Resolves when the daemon should stop (besides SIGTERM and SIGINT).
    pub stop: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// `lumiq run`: serve until SIGTERM or SIGINT. Builds its own single-threaded runtime (the
/// publisher and the timers; the stages have their own threads).
pub fn run(settings: Settings, hooks: RunHooks) -> Result<(), DaemonError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DaemonError::Setup(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(serve(settings, hooks))
}

/// The daemon on the current runtime (which must have time and I/O enabled).
pub async fn serve(settings: Settings, mut hooks: RunHooks) -> Result<(), DaemonError> {
    let notifier = Notifier::from_env();
    let Some(broker) = settings.broker_config()? else {
        return Err(DaemonError::Setup(format!(
            "{}: no [broker] section; `lumiq run` needs the lab's broker (host, port, TLS files); only `lumiq demo` brings its own",
            settings.source.origin
        )));
    };
    std::fs::create_dir_all(&settings.state.dir).map_err(|e| {
        DaemonError::Setup(format!(
            "state.dir = {}: cannot create it: {e}",
            settings.state.dir.display()
        ))
    })?;
    let calibration_dir = settings.calibration_dir();
    // The model before anything else: a missing or altered file fails the start, not the
    // first acquisition.
    let model = if settings.processing.detector == crate::process::Detector::Classical {
        None
    } else {
        let path = crate::segment::resolve_model_path(settings.processing.model.as_deref())
            .map_err(|e| DaemonError::Setup(format!("processing.model: {e}")))?;
        let m = crate::segment::TractSegmenter::load(&path)
            .map_err(|e| DaemonError::Setup(format!("processing.model: {e}")))?;
        tracing::info!(
            "detector {}: model {} ({})",
            settings.processing.detector.as_str(),
            path.display(),
            m.identity().sha256
        );
        Some(m)
    };
    // The outbox first: SQLite recovers its write-ahead log on open.
    let outbox = Outbox::open(settings.outbox_path(), &settings.outbox_config())?;
    outbox.check_integrity()?;
    let archive = Archive::open(&settings.archive_dir())?;
    let leftovers = archive.recover()?;
    let mut raw_left = Vec::new();
    for l in leftovers {
        match l {
            archive::Leftover::Processed { staging, record } => {
                let seq = outbox.commit(&record)?;
                let id = record.measurement_id.to_string();
                committed::finish_committed(&outbox, &archive, &id, &staging)?;
                tracing::info!(
                    "recovered acquisition {} from the last run: committed as seq {seq}",
                    record.measurement_id
                );
            }
            archive::Leftover::Sequence {
                staging,
                record,
                json,
            } => match series::commit_staged(&outbox, &archive, &staging, &record, &json) {
                Ok(seq) => tracing::info!(
                    "recovered the sequence record of kinetic series {} from the last run: committed as seq {seq}",
                    record.sequence_id
                ),
                Err(e) => tracing::error!(
                    "kinetic series {}: its staged sequence record in {} could not be committed ({e}); tried again at the next start",
                    record.sequence_id,
                    staging.display()
                ),
            },
            raw => raw_left.push(raw),
        }
    }
    // Series whose frames were all committed before the last run stopped.
    series::settle_all(&outbox, &archive);
    let mut pcfg = PublisherConfig::new(settings.topics()?, broker);
    let command_topic = settings.broker.as_ref().is_some_and(|b| b.command_topic);
    if command_topic {
        pcfg.command_topic = Some(pcfg.topics.command());
    }
    let mut publisher = Publisher::spawn(outbox.clone(), pcfg)?;
    let lims_commands = publisher.take_commands();

    let work_limit = Duration::from_secs(settings.acquisition.cooling_timeout_s + 3600);
    let shared = Arc::new(Shared {
        started_at: Utc::now(),
        started: Instant::now(),
        inner: Mutex::new(Inner {
            camera: CameraStatus {
                kind: format!("{:?}", settings.camera.kind).to_lowercase(),
                connected: true,
                model: None,
                serial: None,
                sensor_temp_c: None,
                setpoint_c: settings.camera.cooling_setpoint_c,
                cooling_locked: None,
                checked_at: None,
                last_error: None,
            },
            controller: ControllerStatus {
                kind: format!("{:?}", settings.controller.kind).to_lowercase(),
                connected: true,
                door_open: None,
                door_locked: None,
                last_error: None,
            },
            last: None,
            counters: AcquisitionCounters::default(),
            refusals: Refusals::default(),
            queues: QueuesCounters::default(),
            calibration: calibration_status(
                &calibration_dir,
                f64::from(settings.calibration.max_age_days),
                Utc::now(),
            ),
            acquiring: None,
            ready: false,
            next_subjects: None,
            last_replay: None,
        }),
        stopping: AtomicBool::new(false),
        processing: AtomicBool::new(false),
        captures_waiting: AtomicUsize::new(0),
        records_waiting: AtomicUsize::new(0),
        outbox: outbox.clone(),
        archive,
        calibration_dir: calibration_dir.clone(),
        model,
        heartbeats: Heartbeats {
            acquire: Heartbeat::new("acquire", Duration::from_secs(60), work_limit),
            process: Heartbeat::new("process", Duration::from_secs(60), Duration::from_secs(600)),
            commit: Heartbeat::new("commit", Duration::from_secs(60), Duration::from_secs(600)),
        },
        publisher: Mutex::new(Some(publisher)),
        triggers: Mutex::new(None),
        clock: Mutex::new(None),
        qc_watch: Mutex::new(qc::QcWatch::new(&settings)),
        settings,
    });

    // The instrument: opened on the acquire thread, which keeps it.
    let (triggers_tx, triggers_rx) = mpsc::channel::<AcceptedTrigger>(1);
    let (captures_tx, captures_rx) = mpsc::channel::<Work>(shared.settings.channels.captures);
    let (records_tx, records_rx) = mpsc::channel::<Processed>(shared.settings.channels.records);
    let (opened_tx, opened_rx) = tokio::sync::oneshot::channel::<
        Result<(crate::camera::CancelToken, Arc<dyn Clock>), DaemonError>,
    >();
    let sh = shared.clone();
    let cal = calibration_dir.clone();
    let acquire_thread = std::thread::Builder::new()
        .name("lumiq-acquire".into())
        .spawn(move || match open_instrument(&sh.settings, cal) {
            Ok(inst) => {
                let _ = opened_tx.send(Ok((inst.imager.cancel.clone(), inst.imager.clock())));
                let truth = inst.truth;
                let qc_source = inst.qc_source;
                stages::acquire_loop(
                    sh,
                    inst.imager,
                    inst.sequence,
                    triggers_rx,
                    captures_tx,
                    move |c| truth(c),
                    &*qc_source,
                    inst.keep,
                );
            }
            Err(e) => {
                let _ = opened_tx.send(Err(e));
            }
        })
        .map_err(|e| DaemonError::Setup(format!("cannot start the acquire thread: {e}")))?;
    let opened = opened_rx.await;
    let (cancel, clock) = match opened {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            stop_publisher(&shared).await;
            return Err(e);
        }
        Err(_) => {
            stop_publisher(&shared).await;
            return Err(DaemonError::Setup(
                "the acquire thread ended before opening the imager".into(),
            ));
        }
    };
    *shared.clock.lock().unwrap_or_else(|p| p.into_inner()) = Some(clock);
    shared.refresh_calibration();
    *shared.triggers.lock().unwrap_or_else(|p| p.into_inner()) = Some(triggers_tx);

    let sh = shared.clone();
    let process_thread = std::thread::Builder::new()
        .name("lumiq-process".into())
        .spawn(move || stages::process_loop(sh, raw_left, captures_rx, records_tx))
        .map_err(|e| DaemonError::Setup(format!("cannot start the process thread: {e}")))?;
    let sh = shared.clone();
    let commit_thread = std::thread::Builder::new()
        .name("lumiq-commit".into())
        .spawn(move || stages::commit_loop(sh, records_rx))
        .map_err(|e| DaemonError::Setup(format!("cannot start the commit thread: {e}")))?;

    let sh = shared.clone();
    let socket_path = shared.settings.status.socket.clone();
    let mut server = match SocketServer::start(&socket_path, Arc::new(move |req| sh.handle(req))) {
        Ok(s) => s,
        Err(e) => {
            shared.stopping.store(true, Ordering::SeqCst);
            cancel.cancel();
            stop_publisher(&shared).await;
            return Err(e.into());
        }
    };
    shared.lock().ready = true;
    notifier.ready(&shared.status_line());
    tracing::info!(
        "lumiq {} ready: instrument {} at {}, socket {}, state {}",
        env!("CARGO_PKG_VERSION"),
        shared.settings.instrument.id,
        shared.settings.instrument.site,
        socket_path.display(),
        shared.settings.state.dir.display()
    );
    if let Some(f) = hooks.on_ready.take() {
        f(shared.clone());
    }

    // Timers, signals, LIMS commands.
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| DaemonError::Setup(format!("cannot handle SIGTERM: {e}")))?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| DaemonError::Setup(format!("cannot handle SIGINT: {e}")))?;
    let auto = shared.settings.auto_interval();
    let mut auto_tick = tokio::time::interval(auto.unwrap_or(Duration::from_secs(3600)));
    auto_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    auto_tick.tick().await;
    let wd_period = notify::watchdog_period()
        .map(|p| p / 2)
        .unwrap_or(Duration::from_secs(10));
    let mut wd_tick = tokio::time::interval(wd_period);
    let mut status_tick = tokio::time::interval(Duration::from_secs(5));
    let mut retention_tick = tokio::time::interval(Duration::from_secs(600));
    let mut stop_rx = hooks.stop.take();
    let mut lims = lims_commands;
    let mut qc_schedule = qc_schedule::QcScheduler::new(&shared);
    loop {
        let qc_due = qc_schedule.as_ref().map(|s| s.next_at());
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = async { match &mut stop_rx { Some(rx) => { let _ = rx.await; } None => std::future::pending().await } } => {
                tracing::info!("stop requested");
                break;
            }
            _ = auto_tick.tick(), if auto.is_some() => {
                match shared.trigger(AcquireRequest::default(), "auto") {
                    Ok(id) => tracing::info!("auto-acquire: acquisition {id} queued"),
                    Err(why) => tracing::info!("auto-acquire refused: {why}"),
                }
            }
            c = async { match &mut lims { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                match c {
                    Some(payload) => commands::handle(&shared, &payload),
                    None => lims = None,
                }
            }
            _ = wd_tick.tick() => {
                let stale: Vec<String> = [&shared.heartbeats.acquire, &shared.heartbeats.process, &shared.heartbeats.commit]
                    .iter()
                    .filter_map(|h| h.stale())
                    .collect();
                let publisher_up = shared.report().delivery.link != crate::delivery::LinkState::Stopped;
                if stale.is_empty() && publisher_up && !acquire_thread.is_finished() {
                    notifier.watchdog();
                } else {
                    tracing::error!("not pinging the watchdog: {}", if stale.is_empty() { "the publisher or the acquire stage stopped".to_string() } else { stale.join("; ") });
                }
            }
            _ = status_tick.tick() => {
                notifier.status(&shared.status_line());
                let news = shared.qc_watch().new_results(&shared.settings);
                for r in news {
                    tracing::info!("{}", crate::qc::summary_line(&r));
                    shared.publish_event(qc::qc_event(&r));
                }
            }
            _ = async { match qc_due { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => {
                if let Some(s) = qc_schedule.as_mut() {
                    s.fire(&shared);
                }
            }
            _ = retention_tick.tick() => retention(&shared),
        }
    }

    // Stop: refuse triggers, abandon the acquisition in flight, drain, stop the publisher.
    let t0 = Instant::now();
    shared.stopping.store(true, Ordering::SeqCst);
    notifier.stopping("stopping: finishing queued work");
    cancel.cancel();
    shared
        .triggers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let budget = STOP_BUDGET.saturating_sub(PUBLISHER_STOP);
    for (name, t) in [
        ("acquire", &acquire_thread),
        ("process", &process_thread),
        ("commit", &commit_thread),
    ] {
        while !t.is_finished() && t0.elapsed() < budget {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !t.is_finished() {
            tracing::error!("the {name} stage did not finish within {} s; what it held stays in the archive's staging area for the next start", budget.as_secs());
        }
    }
    let report = stop_publisher(&shared).await;
    server.stop();
    if let Some(r) = report {
        tracing::info!(
            "stopped in {:.1} s: offline status {}, {} record(s) unacknowledged for the next start",
            t0.elapsed().as_secs_f64(),
            if r.offline_published {
                "published"
            } else {
                "NOT published"
            },
            r.unacked_left
        );
    }
    Ok(())
}

async fn stop_publisher(shared: &Shared) -> Option<crate::delivery::ShutdownReport> {
    let p = shared
        .publisher
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    match p {
        Some(p) => Some(p.shutdown(PUBLISHER_STOP).await),
        None => None,
    }
}

fn retention(shared: &Shared) {
    shared.refresh_calibration();
    let index = match shared.outbox.index() {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!("archive retention skipped: {e}");
            return;
        }
    };
    let acked = index
        .into_iter()
        .map(|(_, id, acked)| (id, acked))
        .collect();
    match shared
        .archive
        .retention_pass(&acked, shared.settings.archive_retention(), Utc::now())
    {
        Ok(o) if o.deleted > 0 || o.kept_undelivered > 0 => tracing::info!(
            "archive retention: {} deleted, {} past retention kept because not yet delivered",
            o.deleted,
            o.kept_undelivered
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("archive retention: {e}"),
    }
}
