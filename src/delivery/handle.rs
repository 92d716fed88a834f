//! The handle on a running publisher: the status snapshot `lumiq status` shows, events
//! queued for the broker, the clean stop; and what the publisher task shares with it (the
//! link facts it writes, the commands it reads).
//!
//! Does not own: the task itself ([`super::publisher`]) or the outbox's storage.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::broker::PublisherConfig;
use super::outbox::Outbox;
use super::status::{DeliveryStatus, LatencySummary, LinkState};
use super::wire::{rfc3339, NewEvent};
use crate::stats::percentile_sorted;

/// What a clean stop achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// The retained offline status was PUBACKed by the broker.
    pub offline_published: bool,
    /// Records still unacknowledged in the outbox (they go out at the next start).
    pub unacked_left: u64,
}

/// Commands waiting for the daemon; a full queue drops the newest and logs it.
pub(super) const COMMAND_QUEUE: usize = 16;

pub(super) enum Cmd {
    Event(NewEvent),
    Stop {
        timeout: Duration,
        reply: oneshot::Sender<ShutdownReport>,
    },
}

/// The link half of [`DeliveryStatus`], written by the task.
pub(super) struct LinkInfo {
    pub(super) link: LinkState,
    pub(super) link_since: DateTime<Utc>,
    pub(super) last_error: Option<String>,
    pub(super) connections: u64,
    pub(super) last_puback_at: Option<DateTime<Utc>>,
    pub(super) in_flight: usize,
    pub(super) acked: u64,
    pub(super) refused: u64,
    pub(super) last_refusal: Option<String>,
    pub(super) events_dropped: u64,
    pub(super) latencies_ms: VecDeque<f64>,
}

pub(super) const LATENCY_SAMPLES: usize = 2048;

impl LinkInfo {
    pub(super) fn new() -> LinkInfo {
        LinkInfo {
            link: LinkState::Connecting,
            link_since: Utc::now(),
            last_error: None,
            connections: 0,
            last_puback_at: None,
            in_flight: 0,
            acked: 0,
            refused: 0,
            last_refusal: None,
            events_dropped: 0,
            latencies_ms: VecDeque::with_capacity(LATENCY_SAMPLES),
        }
    }
}

/// Handle on a running publisher: status, events, clean stop.
pub struct PublisherHandle {
    pub(super) outbox: Outbox,
    pub(super) shared: Arc<Mutex<LinkInfo>>,
    pub(super) cmd_tx: mpsc::Sender<Cmd>,
    pub(super) task: tokio::task::JoinHandle<()>,
    pub(super) boot_id: Uuid,
    pub(super) commands: Option<mpsc::Receiver<Vec<u8>>>,
    pub(super) cfg: PublisherConfig,
}

impl PublisherHandle {
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn boot_id(&self) -> Uuid {
        self.boot_id
    }

    /// The payloads arriving on `command_topic` (once; `None` without a command topic).
    pub fn take_commands(&mut self) -> Option<mpsc::Receiver<Vec<u8>>> {
        self.commands.take()
    }

    /// A snapshot for `lumiq status`.
    pub fn status(&self) -> DeliveryStatus {
        let stats = self.outbox.stats();
        let info = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let latency = (!info.latencies_ms.is_empty()).then(|| {
            let mut v: Vec<f64> = info.latencies_ms.iter().copied().collect();
            v.sort_by(|a, b| a.total_cmp(b));
            LatencySummary {
                samples: v.len(),
                p50_ms: percentile_sorted(&v, 50.0),
                p99_ms: percentile_sorted(&v, 99.0),
                max_ms: *v.last().unwrap(),
            }
        });
        let (stats, stats_err) = match stats {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e.to_string())),
        };
        DeliveryStatus {
            instrument_id: self.cfg.topics.instrument_id().into(),
            site: self.cfg.topics.site().into(),
            boot_id: self.boot_id.to_string(),
            broker: self.cfg.broker.url(),
            link: info.link,
            link_since: rfc3339(info.link_since),
            last_error: info.last_error.clone().or(stats_err.clone()),
            connections: info.connections,
            unacked: stats.as_ref().map_or(0, |s| s.unacked),
            oldest_unacked_age_s: stats.as_ref().and_then(|s| s.oldest_unacked_age_s),
            last_seq: stats.as_ref().and_then(|s| s.last_seq),
            last_acked_seq: stats.as_ref().and_then(|s| s.last_acked_seq),
            last_puback_at: info.last_puback_at.map(rfc3339),
            in_flight: info.in_flight,
            acked_since_start: info.acked,
            refused_by_broker: info.refused,
            last_refusal: info.last_refusal.clone(),
            events_dropped: info.events_dropped,
            puback_latency: latency,
            accepting: stats.as_ref().is_some_and(|s| s.accepting),
            refusal: stats.as_ref().and_then(|s| s.refusal.clone()).or(stats_err),
            outbox_path: self.outbox.path().display().to_string(),
            outbox_bytes: stats.as_ref().map_or(0, |s| s.db_bytes),
            oldest_stored_seq: stats.as_ref().and_then(|s| s.oldest_stored_seq),
            retention_s: self.outbox.retention().as_secs(),
        }
    }

    /// Queue an event for `.../event` (QoS 1, best effort: kept in memory while the link is
    /// down, up to `event_queue`).
    pub fn publish_event(&self, event: NewEvent) {
        if self.cmd_tx.try_send(Cmd::Event(event)).is_err() {
            self.shared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .events_dropped += 1;
        }
    }

    /// Stop cleanly: stop sending new records, wait up to `timeout` for the PUBACKs of those
    /// in flight, publish the retained offline status, disconnect. Unacknowledged records
    /// stay in the outbox for the next start.
    pub async fn shutdown(self, timeout: Duration) -> ShutdownReport {
        let (tx, rx) = oneshot::channel();
        let sent = self
            .cmd_tx
            .send(Cmd::Stop { timeout, reply: tx })
            .await
            .is_ok();
        let report = if sent { rx.await.ok() } else { None };
        let _ = self.task.await;
        report.unwrap_or_else(|| ShutdownReport {
            offline_published: false,
            unacked_left: self.outbox.stats().map_or(0, |s| s.unacked),
        })
    }
}
