//! `[qc] schedule` in the daemon: at each due time, a QC acquisition of the mounted
//! reference source is asked for with the trigger `qc_schedule`, like `lumiq acquire --qc`.
//!
//! It waits its turn: behind the acquisition in progress it simply queues; when another
//! trigger is already waiting to start, or processing is behind, it is asked again every
//! few seconds until accepted. Any other refusal (stopping, camera unavailable, disk low,
//! outbox full) skips that run: it is logged, counted in the status's refusals and
//! published as a `qc` event `qc_not_run`, and the next due time stands.
//!
//! Owns: the due times. The schedule's forms are [`crate::config::QcSchedule`]; the QC
//! acquisition itself is `super::qc_acquire`.

use std::time::Duration;

use chrono::{DateTime, Local};
use tokio::time::Instant;

use super::shared::Refusal;
use super::socket::AcquireRequest;
use super::Shared;
use crate::config::QcSchedule;
use crate::delivery::wire::NewEvent;
use crate::delivery::{EventKind, Severity};

/// How soon a run that could not queue yet is asked again.
const RETRY: Duration = Duration::from_secs(2);

/// The daemon's QC schedule: when it is next due.
pub(super) struct QcScheduler {
    schedule: QcSchedule,
    started: DateTime<Local>,
    next_at: Instant,
    /// A due run not yet accepted (the acquire stage had one waiting already).
    waiting: bool,
}

impl QcScheduler {
    /// The schedule of `[qc]`, or `None` when the daemon does not run QC by itself.
    pub(super) fn new(shared: &Shared) -> Option<QcScheduler> {
        let schedule = shared.settings.qc_schedule()?;
        let started = Local::now();
        let next_at = Instant::now() + schedule.wait_after(&started, &started);
        tracing::info!(
            "QC of the mounted reference source: {schedule}, next in {:.0} s",
            (next_at - Instant::now()).as_secs_f64()
        );
        Some(QcScheduler {
            schedule,
            started,
            next_at,
            waiting: false,
        })
    }

    /// When the next run is due (or asked again).
    pub(super) fn next_at(&self) -> Instant {
        self.next_at
    }

    /// It is due: ask for the QC acquisition and work out the next due time.
    pub(super) fn fire(&mut self, shared: &Shared) {
        let req = AcquireRequest {
            qc: true,
            ..AcquireRequest::default()
        };
        match shared.trigger(req, "qc_schedule") {
            Ok(id) => {
                tracing::info!("scheduled QC: acquisition {id} queued");
                self.waiting = false;
            }
            Err(Refusal::Busy | Refusal::ProcessingBehind { .. }) => {
                if !self.waiting {
                    tracing::info!(
                        "scheduled QC waits its turn: another acquisition is waiting to start"
                    );
                }
                self.waiting = true;
                self.next_at = Instant::now() + RETRY;
                return;
            }
            Err(Refusal::Stopping) => self.waiting = false,
            Err(why) => {
                self.waiting = false;
                tracing::warn!("scheduled QC not run: {why}");
                shared.publish_event(
                    NewEvent::new(
                        EventKind::Qc,
                        "qc_not_run",
                        Severity::Warning,
                        format!("the scheduled QC could not be run: {why}"),
                    )
                    .detail("schedule", self.schedule.to_string()),
                );
            }
        }
        // A daily time is looked for from a minute on, so a wake-up a hair early on the
        // wall clock cannot run the same day's QC twice.
        let now = Local::now();
        let from = match self.schedule {
            QcSchedule::Daily(_) => now + chrono::Duration::seconds(60),
            QcSchedule::Every(_) => now,
        };
        let lead = (from - now).to_std().unwrap_or_default();
        self.next_at = Instant::now() + lead + self.schedule.wait_after(&from, &self.started);
    }
}
