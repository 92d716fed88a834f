//! The daemon's shared state ([`Shared`]): what every task and thread sees. It decides on
//! triggers ([`Shared::trigger`] refuses with a reason and counts it, never drops one
//! silently), builds the [`StatusReport`] `lumiq status` shows, and answers the socket's
//! requests. Also the loop heartbeats the watchdog checks ([`Heartbeats`]).
//!
//! Owns: the state and its locking. Does not own the loops that change it (`serve`,
//! [`super::stages`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::camera::Clock;
use crate::config::Settings;
use crate::delivery::{Outbox, OutboxError, PublisherHandle};
use crate::formats::calibration_set::CalibrationSet;

use super::archive::{self, Archive};
use super::notify::Heartbeat;
use super::socket::{AcquireRequest, Request, RequestError, Response};
use super::stages::{self, AcceptedTrigger};
use super::status::{
    self, AcquisitionCounters, CalibrationStatus, CameraStatus, ControllerStatus, DaemonState,
    DiskStatus, LastAcquisition, QueueStatus, QueuesStatus, Refusals, StatusReport,
};

/// Why a trigger was refused. Each kind has its own counter in the status
/// ([`Refusal::counter`]); the words are the status's `last` refusal and the answer to
/// `lumiq acquire`.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("the daemon is stopping")]
    Stopping,
    #[error("invalid request: {0}")]
    InvalidRequest(RequestError),
    #[error("only {free_mb} MB free on {} (state.min_free_disk_mb = {min_mb}); free some space", dir.display())]
    DiskLow {
        free_mb: u64,
        min_mb: u64,
        dir: PathBuf,
    },
    /// The outbox refuses new records (full).
    #[error(transparent)]
    OutboxFull(OutboxError),
    #[error("processing is behind: {waiting} captures wait for it (channels.captures = {capacity}); try again when one is done")]
    ProcessingBehind { waiting: usize, capacity: usize },
    /// The camera's last error.
    #[error("the camera is not connected ({0}); check its USB cable and power")]
    CameraUnavailable(String),
    #[error("an acquisition is already waiting to start; try again when it has begun")]
    Busy,
    #[error("no mounted reference source: a QC acquisition needs [qc] with mounted = true; otherwise place the source, acquire, and run `lumiq qc FOLDER`")]
    QcNotMounted,
}

impl Refusal {
    /// The status counter of this kind of refusal.
    pub fn counter(&self) -> fn(&mut Refusals) -> &mut u64 {
        match self {
            Refusal::Stopping => |r| &mut r.stopping,
            Refusal::InvalidRequest(_) => |r| &mut r.invalid_request,
            Refusal::DiskLow { .. } => |r| &mut r.disk_low,
            Refusal::OutboxFull(_) => |r| &mut r.outbox_full,
            Refusal::ProcessingBehind { .. } => |r| &mut r.processing_queue_full,
            Refusal::CameraUnavailable(_) => |r| &mut r.camera_unavailable,
            Refusal::Busy => |r| &mut r.busy,
            Refusal::QcNotMounted => |r| &mut r.invalid_request,
        }
    }
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
    /// When the LIMS's last replay was accepted (replays are rate-limited).
    pub last_replay: Option<Instant>,
}

#[derive(Debug, Default)]
pub(crate) struct QueuesCounters {
    pub commit_retries: u64,
}

/// State shared by the daemon's threads and tasks.
pub struct Shared {
    pub(crate) settings: Settings,
    pub(super) started_at: DateTime<Utc>,
    pub(super) started: Instant,
    pub(super) inner: Mutex<Inner>,
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
    pub(super) publisher: Mutex<Option<PublisherHandle>>,
    pub(super) triggers: Mutex<Option<mpsc::Sender<AcceptedTrigger>>>,
    /// The instrument's clock (simulated for the simulated instrument): calibration age.
    pub(super) clock: Mutex<Option<Arc<dyn Clock>>>,
    /// Which QC results have been announced as `qc` events.
    pub(super) qc_watch: Mutex<super::qc::QcWatch>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn qc_watch(&self) -> MutexGuard<'_, super::qc::QcWatch> {
        self.qc_watch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count a refusal in the status and hand it back.
    pub(super) fn refuse(&self, why: Refusal) -> Refusal {
        let mut s = self.lock();
        *why.counter()(&mut s.refusals) += 1;
        s.refusals.total += 1;
        s.refusals.last = Some(why.to_string());
        why
    }

    /// Ask for an acquisition: its id, or why it is refused (counted in the status).
    pub fn trigger(&self, req: AcquireRequest, trigger: &str) -> Result<String, Refusal> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(self.refuse(Refusal::Stopping));
        }
        if let Err(e) = req.validate() {
            return Err(self.refuse(Refusal::InvalidRequest(e)));
        }
        if req.qc && !self.settings.qc_mounted() {
            return Err(self.refuse(Refusal::QcNotMounted));
        }
        let min = self.settings.state.min_free_disk_mb;
        if let Ok(free) = archive::free_mb(&self.settings.state.dir) {
            if free < min {
                return Err(self.refuse(Refusal::DiskLow {
                    free_mb: free,
                    min_mb: min,
                    dir: self.settings.state.dir.clone(),
                }));
            }
        }
        if let Err(e) = self.outbox.admit() {
            return Err(self.refuse(Refusal::OutboxFull(e)));
        }
        let capacity = self.settings.channels.captures;
        let waiting = self.captures_waiting.load(Ordering::SeqCst);
        if waiting >= capacity {
            return Err(self.refuse(Refusal::ProcessingBehind { waiting, capacity }));
        }
        if !self.lock().camera.connected {
            let e = self.lock().camera.last_error.clone().unwrap_or_default();
            return Err(self.refuse(Refusal::CameraUnavailable(e)));
        }
        let id = Uuid::now_v7();
        let accepted = AcceptedTrigger {
            id,
            request: req,
            trigger: trigger.to_string(),
        };
        let sent = match &*self.triggers.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(tx) => tx.try_send(accepted).map_err(|e| match e {
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
            Err(true) => Err(self.refuse(Refusal::Busy)),
            Err(false) => Err(self.refuse(Refusal::Stopping)),
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
                "qc" => s.counters.qc += 1,
                "abandoned" => s.counters.abandoned += 1,
                _ => s.counters.failed += 1,
            }
            s.last = Some(last);
        }
        self.refresh_calibration();
    }

    /// An acquisition failed: status, counters and an event.
    pub(crate) fn fail(&self, id: &str, trigger: &str, acquired_at: Option<String>, msg: &str) {
        self.publish_event(stages::failure_event(id, msg));
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

    /// Now on the instrument's clock (simulated for the simulated instrument): the clock
    /// acquisitions are stamped with.
    fn instrument_now(&self) -> chrono::DateTime<Utc> {
        self.clock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or_else(Utc::now, |c| c.utc_now())
    }

    /// Read the calibration set's index again (after darks were added, periodically).
    pub(crate) fn refresh_calibration(&self) {
        let now = self.instrument_now();
        let st = calibration_status(
            &self.calibration_dir,
            f64::from(self.settings.calibration.max_age_days),
            now,
        );
        self.lock().calibration = st;
    }

    pub(super) fn state(&self) -> DaemonState {
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
            Err(e) => (None, Some(e.to_string())),
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
            qc: super::qc::status_now(&self.settings, self.instrument_now()),
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
    pub(super) fn status_line(&self) -> String {
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

    pub(super) fn handle(&self, req: Request) -> Response {
        match req {
            Request::Status => Response::status(self.report()),
            Request::Acquire(a) => match self.trigger(a, "cli") {
                Ok(id) => Response::queued(id),
                Err(e) => Response::refused(e),
            },
        }
    }
}

pub(super) fn stopped_delivery(
    settings: &Settings,
    outbox: &Outbox,
) -> crate::delivery::DeliveryStatus {
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

pub(super) fn calibration_status(
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
