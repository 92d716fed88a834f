//! The daemon: `lumiq run` on the imager's PC. Wires the camera and controller
//! ([`crate::acquire`]), processing ([`crate::job`]), the archive and delivery
//! ([`crate::delivery`]) into a service that runs unattended, and answers `lumiq status`.
//!
//! - [`pipeline`]: the acquire → process → commit stages, their threads and channels.
//! - [`archive`]: acquisition folders written atomically, recovery after a crash, retention.
//! - [`socket`]: the Unix socket (newline-delimited JSON) and its client.
//! - [`status`]: the [`StatusReport`], the reasons a person is needed, the table.
//! - [`notify`]: sd_notify (READY, WATCHDOG, STATUS, STOPPING) and loop heartbeats.
//! - [`commands`]: the LIMS's command topic.
//! - [`demo`]: `lumiq demo`, the whole daemon with the simulated instrument and a broker.
//! - [`cli`]: `lumiq run`, `acquire`, `status`, `demo`.
//!
//! Triggers (all through [`Shared::trigger`], which refuses with a reason and counts it, and
//! never drops one silently): `lumiq acquire` over the socket, the controller's start button,
//! the LIMS command topic, and `acquisition.auto_interval_s`.
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
pub mod notify;
pub mod pipeline;
pub mod socket;
pub mod status;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::acquire::{
    simulated_imager, simulated_sequence, Imager, SequenceConfig, SimulatedOptions,
};
use crate::camera::usb::{UsbCameraConfig, UsbConnector};
use crate::camera::{Camera, CameraConfig, Clock, RegisterMap, SystemClock};
use crate::config::{CameraKind, ControllerKind, Settings};
use crate::controller::{Controller, ControllerConfig};
use crate::delivery::{Outbox, Publisher, PublisherConfig, PublisherHandle};
use crate::formats::calibration_set::CalibrationSet;

use self::archive::Archive;
use self::notify::{Heartbeat, Notifier};
use self::pipeline::{Job, Processed, Work};
use self::socket::{AcquireRequest, Request, Response, SocketServer};
use self::status::{
    AcquisitionCounters, CalibrationStatus, CameraStatus, ControllerStatus, DaemonState,
    DiskStatus, LastAcquisition, QcStatus, QueueStatus, QueuesStatus, Refusals, StatusReport,
};

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
    Socket(#[from] socket::SocketError),
    #[error("cannot open the imager: {0}")]
    Devices(#[from] crate::acquire::CaptureError),
}

/// The loops whose progress the watchdog needs.
#[derive(Debug)]
pub struct Heartbeats {
    pub acquire: Heartbeat,
    pub process: Heartbeat,
    pub commit: Heartbeat,
}

/// What the stages and the socket share; facts for the status report.
pub(crate) struct Inner {
    pub camera: CameraStatus,
    pub controller: ControllerStatus,
    pub last: Option<LastAcquisition>,
    pub counters: AcquisitionCounters,
    pub refusals: Refusals,
    pub queues: QueuesCounters,
    pub calibration: CalibrationStatus,
    pub acquiring: Option<String>,
    pub ready: bool,
    /// Study and subjects the LIMS named for the next acquisition.
    pub next_subjects: Option<AcquireRequest>,
}

#[derive(Debug, Default)]
pub(crate) struct QueuesCounters {
    pub commit_retries: u64,
}

/// State shared by the daemon's threads and tasks.
pub struct Shared {
    pub(crate) settings: Settings,
    started_at: DateTime<Utc>,
    started: Instant,
    inner: Mutex<Inner>,
    pub(crate) stopping: AtomicBool,
    pub(crate) processing: AtomicBool,
    pub(crate) captures_waiting: AtomicUsize,
    pub(crate) records_waiting: AtomicUsize,
    pub(crate) outbox: Outbox,
    pub(crate) archive: Archive,
    pub(crate) calibration_dir: PathBuf,
    /// The segmentation model, loaded and hash-checked once at start (None: classical).
    pub(crate) model: Option<crate::segment::TractSegmenter>,
    pub(crate) heartbeats: Heartbeats,
    publisher: Mutex<Option<PublisherHandle>>,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    /// The instrument's clock (simulated for the simulated instrument): calibration age.
    clock: Mutex<Option<Arc<dyn Clock>>>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn refuse(&self, kind: fn(&mut Refusals) -> &mut u64, why: String) -> String {
        let mut s = self.lock();
        *kind(&mut s.refusals) += 1;
        s.refusals.total += 1;
        s.refusals.last = Some(why.clone());
        why
    }

    /// Ask for an acquisition: its id, or why it is refused (counted in the status).
    pub fn trigger(&self, req: AcquireRequest, trigger: &str) -> Result<String, String> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(self.refuse(|r| &mut r.stopping, "the daemon is stopping".into()));
        }
        if let Err(e) = req.validate() {
            return Err(self.refuse(|r| &mut r.invalid_request, format!("invalid request: {e}")));
        }
        let min = self.settings.state.min_free_disk_mb;
        if let Ok(free) = archive::free_mb(&self.settings.state.dir) {
            if free < min {
                return Err(self.refuse(
                    |r| &mut r.disk_low,
                    format!(
                        "only {free} MB free on {} (state.min_free_disk_mb = {min}); free some space",
                        self.settings.state.dir.display()
                    ),
                ));
            }
        }
        if let Err(e) = self.outbox.admit() {
            return Err(self.refuse(|r| &mut r.outbox_full, e.to_string()));
        }
        let cap = self.settings.channels.captures;
        let waiting = self.captures_waiting.load(Ordering::SeqCst);
        if waiting >= cap {
            return Err(self.refuse(
                |r| &mut r.processing_queue_full,
                format!(
                    "processing is behind: {waiting} captures wait for it (channels.captures = {cap}); try again when one is done"
                ),
            ));
        }
        if !self.lock().camera.connected {
            let e = self.lock().camera.last_error.clone().unwrap_or_default();
            return Err(self.refuse(
                |r| &mut r.camera_unavailable,
                format!("the camera is not connected ({e}); check its USB cable and power"),
            ));
        }
        let id = Uuid::now_v7();
        let job = Job {
            id,
            request: req,
            trigger: trigger.to_string(),
        };
        let sent = match &*self.jobs.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(tx) => tx.try_send(job).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => true,
                mpsc::error::TrySendError::Closed(_) => false,
            }),
            None => Err(false),
        };
        match sent {
            Ok(()) => {
                self.lock().counters.triggered += 1;
                Ok(id.to_string())
            }
            Err(true) => Err(self.refuse(
                |r| &mut r.busy,
                "an acquisition is already waiting to start; try again when it has begun".into(),
            )),
            Err(false) => Err(self.refuse(|r| &mut r.stopping, "the daemon is stopping".into())),
        }
    }

    pub(crate) fn set_camera_error(&self, e: String) {
        let mut s = self.lock();
        s.camera.connected = false;
        s.camera.last_error = Some(e);
    }

    pub(crate) fn set_controller_error(&self, e: String) {
        let mut s = self.lock();
        s.controller.connected = false;
        s.controller.last_error = Some(e);
    }

    pub(crate) fn set_door(&self, open: Option<bool>, locked: Option<bool>) {
        let mut s = self.lock();
        s.controller.connected = true;
        s.controller.last_error = None;
        if open.is_some() {
            s.controller.door_open = open;
        }
        if locked.is_some() {
            s.controller.door_locked = locked;
        }
    }

    pub(crate) fn finish_acquisition(&self, last: LastAcquisition) {
        {
            let mut s = self.lock();
            match last.outcome.as_str() {
                "committed" => s.counters.committed += 1,
                "abandoned" => s.counters.abandoned += 1,
                _ => s.counters.failed += 1,
            }
            s.last = Some(last);
        }
        self.refresh_calibration();
    }

    /// An acquisition failed: status, counters and an event.
    pub(crate) fn fail(&self, id: &str, trigger: &str, acquired_at: Option<String>, msg: &str) {
        self.publish_event(pipeline::failure_event(id, msg));
        self.finish_acquisition(LastAcquisition {
            id: id.to_string(),
            outcome: "failed".into(),
            acquired_at,
            finished_at: crate::delivery::wire::rfc3339(Utc::now()),
            trigger: trigger.to_string(),
            captured_at: None,
            seq: None,
            regions: None,
            brightest_net_flux: None,
            error: Some(msg.to_string()),
        });
    }

    pub(crate) fn publish_event(&self, ev: crate::delivery::wire::NewEvent) {
        if let Some(p) = &*self.publisher.lock().unwrap_or_else(|p| p.into_inner()) {
            p.publish_event(ev);
        }
    }

    /// Read the calibration set's index again (after darks were added, periodically).
    pub(crate) fn refresh_calibration(&self) {
        let now = self
            .clock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or_else(Utc::now, |c| c.utc_now());
        let st = calibration_status(
            &self.calibration_dir,
            f64::from(self.settings.calibration.max_age_days),
            now,
        );
        self.lock().calibration = st;
    }

    fn state(&self) -> DaemonState {
        let s = self.lock();
        if self.stopping.load(Ordering::SeqCst) {
            DaemonState::Stopping
        } else if !s.ready {
            DaemonState::Starting
        } else if s.acquiring.is_some() {
            DaemonState::Acquiring
        } else if self.processing.load(Ordering::SeqCst)
            || self.captures_waiting.load(Ordering::SeqCst) > 0
            || self.records_waiting.load(Ordering::SeqCst) > 0
        {
            DaemonState::Processing
        } else {
            DaemonState::Idle
        }
    }

    /// The status report, now.
    pub fn report(&self) -> StatusReport {
        let now = Utc::now();
        let delivery = match &*self.publisher.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(p) => p.status(),
            None => stopped_delivery(&self.settings, &self.outbox),
        };
        let state = self.state();
        let dir = &self.settings.state.dir;
        let (free_mb, disk_error) = match archive::free_mb(dir) {
            Ok(f) => (Some(f), None),
            Err(e) => (None, Some(e)),
        };
        let s = self.lock();
        let mut r = StatusReport {
            schema: status::SCHEMA.into(),
            schema_version: status::SCHEMA_VERSION,
            version: env!("CARGO_PKG_VERSION").into(),
            instrument_id: self.settings.instrument.id.clone(),
            site: self.settings.instrument.site.clone(),
            pid: std::process::id(),
            started_at: crate::delivery::wire::rfc3339(self.started_at),
            uptime_s: self.started.elapsed().as_secs_f64(),
            at: crate::delivery::wire::rfc3339(now),
            state,
            camera: s.camera.clone(),
            controller: s.controller.clone(),
            last_acquisition: s.last.clone(),
            acquisitions: s.counters.clone(),
            queues: QueuesStatus {
                captures: QueueStatus {
                    setting: "channels.captures".into(),
                    waiting: self.captures_waiting.load(Ordering::SeqCst),
                    capacity: self.settings.channels.captures,
                },
                records: QueueStatus {
                    setting: "channels.records".into(),
                    waiting: self.records_waiting.load(Ordering::SeqCst),
                    capacity: self.settings.channels.records,
                },
                refusals: s.refusals.clone(),
                commit_retries: s.queues.commit_retries,
            },
            delivery,
            calibration: s.calibration.clone(),
            qc: QcStatus {
                last_at: None,
                age_days: None,
                note: "no QC run recorded (lumiq has no QC procedure yet)".into(),
            },
            disk: DiskStatus {
                path: dir.display().to_string(),
                free_mb,
                min_free_mb: self.settings.state.min_free_disk_mb,
                error: disk_error,
            },
            attention: vec![],
        };
        drop(s);
        r.attention = status::attention(&r, now);
        r
    }

    /// One line for systemd's `STATUS=`.
    fn status_line(&self) -> String {
        let r = self.report();
        format!(
            "{}; {} unacked; broker {:?}; last seq {}{}",
            r.state.name(),
            r.delivery.unacked,
            r.delivery.link,
            r.delivery.last_seq.map_or("-".into(), |s| s.to_string()),
            if r.attention.is_empty() {
                String::new()
            } else {
                format!("; needs a person: {}", r.attention.join("; "))
            }
        )
        .to_lowercase()
    }

    fn handle(&self, req: Request) -> Response {
        match req {
            Request::Status => Response::status(self.report()),
            Request::Acquire(a) => match self.trigger(a, "cli") {
                Ok(id) => Response::queued(id),
                Err(e) => Response::refused(e),
            },
        }
    }
}

fn stopped_delivery(settings: &Settings, outbox: &Outbox) -> crate::delivery::DeliveryStatus {
    let stats = outbox.stats().ok();
    crate::delivery::DeliveryStatus {
        instrument_id: settings.instrument.id.clone(),
        site: settings.instrument.site.clone(),
        boot_id: String::new(),
        broker: String::new(),
        link: crate::delivery::LinkState::Stopped,
        link_since: crate::delivery::wire::rfc3339(Utc::now()),
        last_error: None,
        connections: 0,
        unacked: stats.as_ref().map_or(0, |s| s.unacked),
        oldest_unacked_age_s: stats.as_ref().and_then(|s| s.oldest_unacked_age_s),
        last_seq: stats.as_ref().and_then(|s| s.last_seq),
        last_acked_seq: stats.as_ref().and_then(|s| s.last_acked_seq),
        last_puback_at: None,
        in_flight: 0,
        acked_since_start: 0,
        refused_by_broker: 0,
        last_refusal: None,
        events_dropped: 0,
        puback_latency: None,
        accepting: stats.as_ref().is_some_and(|s| s.accepting),
        refusal: stats.as_ref().and_then(|s| s.refusal.clone()),
        outbox_path: outbox.path().display().to_string(),
        outbox_bytes: stats.as_ref().map_or(0, |s| s.db_bytes),
        oldest_stored_seq: stats.as_ref().and_then(|s| s.oldest_stored_seq),
        retention_s: outbox.retention().as_secs(),
    }
}

fn calibration_status(
    dir: &std::path::Path,
    max_age_days: f64,
    now: DateTime<Utc>,
) -> CalibrationStatus {
    match CalibrationSet::load(dir) {
        Ok(set) => CalibrationStatus {
            dir: dir.display().to_string(),
            id: Some(set.index.id.clone()),
            created_at: Some(crate::delivery::wire::rfc3339(set.index.created_at)),
            age_days: Some((now - set.index.created_at).num_seconds() as f64 / 86_400.0),
            max_age_days,
            error: None,
        },
        Err(e) => CalibrationStatus {
            dir: dir.display().to_string(),
            id: None,
            created_at: None,
            age_days: None,
            max_age_days,
            error: Some(e.to_string()),
        },
    }
}

/// The opened instrument and what keeps its simulated parts alive.
struct Instrument {
    imager: Imager,
    sequence: SequenceConfig,
    keep: Box<dyn std::any::Any + Send>,
    truth: TruthFn,
}

fn open_instrument(
    settings: &Settings,
    calibration_dir: PathBuf,
) -> Result<Instrument, DaemonError> {
    let camera_cfg = CameraConfig {
        lock_timeout: Duration::from_secs(settings.acquisition.cooling_timeout_s),
        ..CameraConfig::default()
    };
    let (imager, mut sequence, keep, truth): (Imager, SequenceConfig, Box<dyn std::any::Any + Send>, TruthFn) =
        match (settings.camera.kind, settings.controller.kind) {
            (CameraKind::Simulated, ControllerKind::Simulated) => {
                let opts = SimulatedOptions {
                    seed: settings.camera.seed,
                    camera: camera_cfg,
                    ..SimulatedOptions::default()
                };
                let epoch = opts.epoch;
                let sim = simulated_imager(opts)?;
                let sequence = simulated_sequence(calibration_dir, epoch);
                let crate::acquire::SimulatedImager {
                    imager,
                    camera,
                    sim_box,
                    clock,
                    controller,
                } = sim;
                let cam = camera.clone();
                let truth: TruthFn = Box::new(move |c: &crate::acquire::Capture| {
                    cam.truth(c.meta.binning, c.meta.fov_cm)
                });
                (imager, sequence, Box::new((camera, sim_box, clock, controller)), truth)
            }
            (CameraKind::Usb, ControllerKind::Serial) => {
                let map = RegisterMap::builtin();
                let usb = UsbCameraConfig::new(map.vendor_id, map.product_id, settings.camera.serial.clone());
                let mut ccfg = ControllerConfig::new(settings.controller.path.display().to_string());
                ccfg.baud_rate = settings.controller.baud;
                let controller = Controller::open(ccfg).map_err(crate::acquire::CaptureError::from)?;
                let camera = Camera::open(
                    Box::new(UsbConnector::new(usb)),
                    map,
                    Arc::new(SystemClock::new()),
                    camera_cfg,
                )
                .map_err(crate::acquire::CaptureError::from)?;
                let mut sequence = SequenceConfig::simulated(calibration_dir, None);
                sequence.subjects = Default::default();
                (Imager::new(camera, controller, false), sequence, Box::new(()), Box::new(|_: &crate::acquire::Capture| None))
            }
            (c, k) => {
                return Err(DaemonError::Setup(format!(
                    "camera.kind = {c:?} with controller.kind = {k:?}: use \"simulated\" for both (the simulated imager) or \"usb\" with \"serial\" (the real one)"
                )))
            }
        };
    let shelf = settings.acquisition.shelf.chars().next().unwrap_or('D');
    sequence.instrument_id = settings.instrument.id.clone();
    sequence.cooling_setpoint_c = settings.camera.cooling_setpoint_c;
    sequence.shelf = shelf;
    sequence.filter_position = settings.acquisition.filter_position;
    sequence.f_number = settings.acquisition.f_number;
    sequence.dark.max_age_days = settings.acquisition.dark_max_age_days;
    sequence.auto_exposure.binnings = settings.acquisition.binnings.clone();
    sequence.auto_exposure.validate().map_err(|e| {
        DaemonError::Setup(format!(
            "acquisition.binnings = {:?}: {e} (env LUMIQ_ACQUISITION__BINNINGS)",
            settings.acquisition.binnings
        ))
    })?;
    Ok(Instrument {
        imager,
        sequence,
        keep,
        truth,
    })
}

type TruthFn = Box<dyn Fn(&crate::acquire::Capture) -> Option<crate::simulate::Truth> + Send>;

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
                archive.finish(&staging, Utc::now())?;
                tracing::info!(
                    "recovered acquisition {} from the last run: committed as seq {seq}",
                    record.measurement_id
                );
            }
            raw => raw_left.push(raw),
        }
    }
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
        jobs: Mutex::new(None),
        clock: Mutex::new(None),
        settings,
    });

    // The instrument: opened on the acquire thread, which keeps it.
    let (jobs_tx, jobs_rx) = mpsc::channel::<Job>(1);
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
                pipeline::acquire_loop(
                    sh,
                    inst.imager,
                    inst.sequence,
                    jobs_rx,
                    captures_tx,
                    move |c| truth(c),
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
    *shared.jobs.lock().unwrap_or_else(|p| p.into_inner()) = Some(jobs_tx);

    let sh = shared.clone();
    let process_thread = std::thread::Builder::new()
        .name("lumiq-process".into())
        .spawn(move || pipeline::process_loop(sh, raw_left, captures_rx, records_tx))
        .map_err(|e| DaemonError::Setup(format!("cannot start the process thread: {e}")))?;
    let sh = shared.clone();
    let commit_thread = std::thread::Builder::new()
        .name("lumiq-commit".into())
        .spawn(move || pipeline::commit_loop(sh, records_rx))
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
    loop {
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
            _ = status_tick.tick() => notifier.status(&shared.status_line()),
            _ = retention_tick.tick() => retention(&shared),
        }
    }

    // Stop: refuse triggers, abandon the acquisition in flight, drain, stop the publisher.
    let t0 = Instant::now();
    shared.stopping.store(true, Ordering::SeqCst);
    notifier.stopping("stopping: finishing queued work");
    cancel.cancel();
    shared.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
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
