//! [`DeliveryStatus`]: what `lumiq status` shows about delivery. A plain snapshot with serde;
//! the publisher fills the link half, the outbox the counts.

use serde::{Deserialize, Serialize};

use super::outbox::Seq;

/// State of the link to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Opening TCP/TLS and waiting for CONNACK (first attempt or after a failure).
    Connecting,
    /// CONNACK received: records are flowing.
    Connected,
    /// The last attempt failed; `last_error` says why; retried with backoff.
    Disconnected,
    /// Stopped cleanly (offline status published).
    Stopped,
}

/// PUBACK latency over the last 2,048 measurements acknowledged, milliseconds: from the
/// publisher queueing the publish to rumqttc (so it includes waiting for the window and the
/// broker's receive maximum) to its PUBACK. The percentiles interpolate linearly between
/// ranks ([`crate::stats::percentile_sorted`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryStatus {
    pub instrument_id: String,
    pub site: String,
    /// Changes at every start; the retained status message carries it too.
    pub boot_id: String,
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub broker: String,
    pub link: LinkState,
    /// When `link` last changed (RFC 3339 UTC).
    pub link_since: String,
    /// Why the link last failed, in words that say what to check.
    pub last_error: Option<String>,
    /// Successful connections since start (1 after the first).
    pub connections: u64,
    /// Records committed but not acknowledged by the broker.
    pub unacked: u64,
    /// Age of the oldest unacknowledged record, seconds.
    pub oldest_unacked_age_s: Option<f64>,
    /// The last seq committed.
    pub last_seq: Option<Seq>,
    /// The highest seq the broker acknowledged (still stored).
    pub last_acked_seq: Option<Seq>,
    /// When the last PUBACK for a measurement arrived (RFC 3339 UTC).
    pub last_puback_at: Option<String>,
    /// Measurements sent on this connection and waiting for their PUBACK.
    pub in_flight: usize,
    /// PUBACKs this process received for measurements.
    pub acked_since_start: u64,
    /// PUBACKs with an error reason (e.g. not authorized by the broker's ACL).
    pub refused_by_broker: u64,
    /// The last refusal, with the topic and what to check.
    pub last_refusal: Option<String>,
    /// Events dropped because the in-memory event queue was full while the link was down.
    pub events_dropped: u64,
    pub puback_latency: Option<LatencySummary>,
    /// `false` when new acquisitions are refused (outbox full); `refusal` says why.
    pub accepting: bool,
    pub refusal: Option<String>,
    pub outbox_path: String,
    pub outbox_bytes: u64,
    /// Oldest seq a replay can start from.
    pub oldest_stored_seq: Option<Seq>,
    pub retention_s: u64,
}
