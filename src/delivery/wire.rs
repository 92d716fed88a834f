//! What goes on the wire: the measurement envelope, the retained status message and events.
//! Each has a JSON Schema in `schemas/` (`measurement-envelope`, `status`, `event`); bump the
//! version constant and the schema together.
//!
//! Design: the envelope wraps the stored record verbatim (`"record": {...}`) instead of
//! adding fields to it. The record is byte-for-byte what `lumiq process` prints and what
//! `schemas/measurement.schema.json` describes; delivery facts (`seq`, `published_at`,
//! `replay`) change from one send to the next and live outside it. The LIMS's idempotency
//! key, `measurement_id`, is repeated at the top so it can deduplicate without reading the
//! record.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const ENVELOPE_SCHEMA: &str = "lumiq.measurement.envelope";
/// 2 added `record_schema`: the measurement topic also carries the sequence records of
/// kinetic series.
pub const ENVELOPE_SCHEMA_VERSION: u32 = 2;
pub const STATUS_SCHEMA: &str = "lumiq.status";
pub const STATUS_SCHEMA_VERSION: u32 = 1;
pub const EVENT_SCHEMA: &str = "lumiq.event";
pub const EVENT_SCHEMA_VERSION: u32 = 1;

/// RFC 3339, UTC, milliseconds, `Z`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The envelope's fields other than the record (serialised first, the record spliced in).
#[derive(Debug, Serialize, Deserialize)]
struct EnvelopeHead<'a> {
    schema: &'a str,
    schema_version: u32,
    measurement_id: &'a str,
    record_schema: &'a str,
    seq: u64,
    instrument_id: &'a str,
    site: &'a str,
    acquired_at: &'a str,
    committed_at: &'a str,
    published_at: &'a str,
    replay: bool,
}

/// Facts of one send of one stored record.
pub struct EnvelopeFields<'a> {
    /// The record's `measurement_id` (UUIDv7), repeated at the top: the LIMS's idempotency
    /// key.
    pub measurement_id: &'a str,
    /// What `record` is: `lumiq.measurement` (one acquisition) or `lumiq.sequence` (a
    /// kinetic series' summary; `measurement_id` is then its `sequence_id`).
    pub record_schema: &'a str,
    /// The record's per-instrument sequence number from the outbox: 1, 2, 3, ... without
    /// gaps; a gap means a record is missing.
    pub seq: u64,
    /// The record's `instrument_id`, also the topic's instrument level.
    pub instrument_id: &'a str,
    /// The topic's site level (`instrument.site`).
    pub site: &'a str,
    /// The record's `acquired_at` (start of the acquisition), RFC 3339, UTC, milliseconds.
    pub acquired_at: &'a str,
    /// When the record was durably committed to the outbox (written RFC 3339, UTC,
    /// milliseconds).
    pub committed_at: DateTime<Utc>,
    /// When this copy is sent (written RFC 3339, UTC, milliseconds); differs between copies
    /// of one record.
    pub published_at: DateTime<Utc>,
    /// Sent because a replay was asked for (the LIMS has probably seen it before).
    pub replay: bool,
}

/// The measurement topic's payload: the envelope with `record_json` (a stored
/// `MeasurementRecord`, compact JSON) as its `record` member.
pub fn envelope_json(f: &EnvelopeFields, record_json: &str) -> String {
    let committed_at = rfc3339(f.committed_at);
    let published_at = rfc3339(f.published_at);
    let head = EnvelopeHead {
        schema: ENVELOPE_SCHEMA,
        schema_version: ENVELOPE_SCHEMA_VERSION,
        measurement_id: f.measurement_id,
        record_schema: f.record_schema,
        seq: f.seq,
        instrument_id: f.instrument_id,
        site: f.site,
        acquired_at: f.acquired_at,
        committed_at: &committed_at,
        published_at: &published_at,
        replay: f.replay,
    };
    let mut s = serde_json::to_string(&head).expect("plain fields serialise");
    debug_assert!(s.ends_with('}'));
    s.pop();
    s.reserve(record_json.len() + 12);
    s.push_str(",\"record\":");
    s.push_str(record_json);
    s.push('}');
    s
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusState {
    Online,
    Offline,
}

/// Why the status is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusReason {
    /// Published by lumiq right after each (re)connection.
    Connected,
    /// Published by lumiq itself on a clean stop.
    CleanStop,
    /// The last will: the broker lost the connection without a clean stop.
    ConnectionLost,
}

/// The program behind a status message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Software {
    /// Always `"lumiq"`.
    pub name: String,
    /// lumiq's version (`CARGO_PKG_VERSION`).
    pub version: String,
}

impl Software {
    pub fn this() -> Software {
        Software {
            name: "lumiq".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// The retained payload of `.../status` (`schemas/status.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusMessage {
    /// Always `"lumiq.status"` ([`STATUS_SCHEMA`]).
    pub schema: String,
    /// [`STATUS_SCHEMA_VERSION`], as in `schemas/status.schema.json`.
    pub schema_version: u32,
    /// The instrument, as in the topic.
    pub instrument_id: String,
    /// The site, as in the topic.
    pub site: String,
    /// `online` or `offline`.
    pub state: StatusState,
    /// `connected` (sent by lumiq on each (re)connection), `clean_stop` (sent by lumiq when
    /// it stops) or `connection_lost` (the last will, sent by the broker).
    pub reason: StatusReason,
    /// Changes at every start of the publisher: a LIMS sees restarts.
    pub boot_id: Uuid,
    /// When this process started publishing: RFC 3339, UTC, milliseconds, `Z`.
    pub booted_at: String,
    /// When this message was written (for the will: when it was registered at connect):
    /// RFC 3339, UTC, milliseconds, `Z`.
    pub at: String,
    /// `lumiq` and its version.
    pub software: Software,
}

impl StatusMessage {
    pub fn new(
        instrument_id: &str,
        site: &str,
        state: StatusState,
        reason: StatusReason,
        boot_id: Uuid,
        booted_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> StatusMessage {
        StatusMessage {
            schema: STATUS_SCHEMA.into(),
            schema_version: STATUS_SCHEMA_VERSION,
            instrument_id: instrument_id.into(),
            site: site.into(),
            state,
            reason,
            boot_id,
            booted_at: rfc3339(booted_at),
            at: rfc3339(at),
            software: Software::this(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Calibration,
    Qc,
    Fault,
    Delivery,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// The payload of `.../event` (`schemas/event.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMessage {
    /// Always `"lumiq.event"` ([`EVENT_SCHEMA`]).
    pub schema: String,
    /// [`EVENT_SCHEMA_VERSION`], as in `schemas/event.schema.json`.
    pub schema_version: u32,
    /// UUIDv7, for deduplication.
    pub event_id: Uuid,
    /// The instrument, as in the topic.
    pub instrument_id: String,
    /// The site, as in the topic.
    pub site: String,
    /// The publisher's boot id (see [`StatusMessage::boot_id`]).
    pub boot_id: Uuid,
    /// When the publisher took the event in (it is sent then, or once the broker is back):
    /// RFC 3339, UTC, milliseconds, `Z`.
    pub at: String,
    /// `calibration`, `qc`, `fault` or `delivery`.
    pub kind: EventKind,
    /// Machine-readable, snake_case (e.g. `outbox_full`, `calibration_updated`).
    pub code: String,
    /// `info`, `warning` or `error`.
    pub severity: Severity,
    /// One sentence for a person, saying what to do when something is wrong.
    pub message: String,
    /// Event-specific facts: numbers carry their unit in the key (`age_s`, `temp_c`) or as
    /// `{value, unit}` with a UCUM code; empty when there is none.
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// An event as the caller describes it; the publisher fills in ids and times.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The event's `kind`.
    pub kind: EventKind,
    /// The event's `code`: machine-readable, snake_case.
    pub code: String,
    /// The event's `severity`.
    pub severity: Severity,
    /// The event's `message`: one sentence for a person.
    pub message: String,
    /// The event's `details` (add them with [`NewEvent::detail`]).
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl NewEvent {
    pub fn new(
        kind: EventKind,
        code: &str,
        severity: Severity,
        message: impl Into<String>,
    ) -> Self {
        NewEvent {
            kind,
            code: code.into(),
            severity,
            message: message.into(),
            details: Default::default(),
        }
    }

    pub fn detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }

    pub(crate) fn into_message(
        self,
        instrument_id: &str,
        site: &str,
        boot_id: Uuid,
        at: DateTime<Utc>,
    ) -> EventMessage {
        EventMessage {
            schema: EVENT_SCHEMA.into(),
            schema_version: EVENT_SCHEMA_VERSION,
            event_id: Uuid::now_v7(),
            instrument_id: instrument_id.into(),
            site: site.into(),
            boot_id,
            at: rfc3339(at),
            kind: self.kind,
            code: self.code,
            severity: self.severity,
            message: self.message,
            details: self.details,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_splices_the_record_verbatim() {
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678Z")
            .unwrap()
            .with_timezone(&Utc);
        let f = EnvelopeFields {
            measurement_id: "0190c0de-0000-7000-8000-000000000001",
            record_schema: "lumiq.sequence",
            seq: 7,
            instrument_id: "imager \"01\"",
            site: "lab",
            acquired_at: "2026-01-02T03:00:00.000Z",
            committed_at: t,
            published_at: t,
            replay: false,
        };
        let record = r#"{"a":[1,2,{"b":null}]}"#;
        let s = envelope_json(&f, record);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["seq"], 7);
        assert_eq!(v["schema_version"], ENVELOPE_SCHEMA_VERSION);
        assert_eq!(v["record_schema"], "lumiq.sequence");
        assert_eq!(v["instrument_id"], "imager \"01\"");
        assert_eq!(v["published_at"], "2026-01-02T03:04:05.678Z");
        assert_eq!(
            v["record"],
            serde_json::from_str::<serde_json::Value>(record).unwrap()
        );
        assert!(s.ends_with(&format!("\"record\":{record}}}")));
    }
}
