//! The LIMS's command topic (`<prefix>/<site>/<instrument>/command`, when
//! `broker.command_topic` is on): the study and subjects of the next acquisition, and
//! optionally "acquire now".
//!
//! Payload, one JSON object:
//! `{"study_id":"S-12","subject_ids":["M1","M2"],"injection_time":"2026-11-27T09:50:00Z","acquire":false}`.
//! Without `acquire` (or `false`) the ids wait for the next acquisition, whatever triggers
//! it (the start button, typically); with `"acquire": true` an acquisition is triggered now,
//! and with `"acquire": true, "qc": true` the daily QC on the mounted reference source.
//! A command that cannot be used — not JSON, unknown fields, bad values, or a refused
//! trigger — is published as a `command_rejected` event with the reason; it never stops the
//! daemon.
//!
//! Replay: `{"replay_from_seq": N}` (alone) makes every stored record with seq ≥ N go out
//! again, flagged `replay` (as `lumiq replay` does), for a LIMS that found a gap in `seq`.
//! It is answered by a `delivery` event: `replay_accepted` (from/to seq, how many re-queued,
//! where it really starts when older records were pruned) or `replay_refused` (the reason:
//! past the last seq, nothing stored, or another replay accepted less than
//! [`REPLAY_MIN_INTERVAL`] ago).
//!
//! Owns: parsing and checking a command. The subscription itself is the publisher's
//! (`PublisherConfig::command_topic`): one MQTT connection per instrument.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::socket::{AcquireRequest, RequestError};
use super::Shared;
use crate::delivery::wire::NewEvent;
use crate::delivery::{EventKind, Severity};

/// A command from the LIMS.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimsCommand {
    #[serde(default)]
    pub study_id: Option<String>,
    #[serde(default)]
    pub subject_ids: Vec<String>,
    #[serde(default)]
    pub injection_time: Option<DateTime<Utc>>,
    /// Trigger an acquisition now (else the ids wait for the next one).
    #[serde(default)]
    pub acquire: bool,
    /// With `acquire`: image the mounted reference source (the daily QC) instead.
    #[serde(default)]
    pub qc: bool,
    /// Send every stored record with seq ≥ this again (alone in its command).
    #[serde(default)]
    pub replay_from_seq: Option<u64>,
}

/// At most one replay is accepted this often (a replay re-sends up to the whole outbox).
pub const REPLAY_MIN_INTERVAL: Duration = Duration::from_secs(10);

/// Why a command cannot be used: the reason published in the `command_rejected` event.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("not a command ({0}); send {{\"study_id\":\"…\",\"subject_ids\":[\"…\"],\"acquire\":false}}")]
    NotACommand(serde_json::Error),
    #[error("the command names no study, no subjects and does not ask to acquire")]
    Empty,
    #[error("\"qc\": true needs \"acquire\": true (a QC is run now, never queued)")]
    QcWithoutAcquire,
    #[error("a replay command carries only replay_from_seq, e.g. {{\"replay_from_seq\": 1234}}")]
    ReplayWithOthers,
    #[error("replay_from_seq = 0: seqs start at 1")]
    ReplayFromZero,
    #[error(transparent)]
    Request(#[from] RequestError),
}

/// Parse and check a payload; the error is the reason published in the event.
pub fn parse(payload: &[u8]) -> Result<LimsCommand, CommandError> {
    let c: LimsCommand = serde_json::from_slice(payload).map_err(CommandError::NotACommand)?;
    if let Some(from) = c.replay_from_seq {
        if c.study_id.is_some()
            || !c.subject_ids.is_empty()
            || c.injection_time.is_some()
            || c.acquire
            || c.qc
        {
            return Err(CommandError::ReplayWithOthers);
        }
        if from == 0 {
            return Err(CommandError::ReplayFromZero);
        }
        return Ok(c);
    }
    if c.qc && !c.acquire {
        return Err(CommandError::QcWithoutAcquire);
    }
    if c.study_id.is_none() && c.subject_ids.is_empty() && !c.acquire {
        return Err(CommandError::Empty);
    }
    c.as_request().validate()?;
    Ok(c)
}

impl LimsCommand {
    pub fn as_request(&self) -> AcquireRequest {
        AcquireRequest {
            study_id: self.study_id.clone(),
            subject_ids: self.subject_ids.clone(),
            injection_time: self.injection_time,
            kinetic: None,
            interval_s: None,
            qc: self.qc,
        }
    }
}

fn rejected(reason: &dyn std::fmt::Display, payload: &[u8]) -> NewEvent {
    let shown: String = String::from_utf8_lossy(payload).chars().take(200).collect();
    NewEvent::new(
        EventKind::Fault,
        "command_rejected",
        Severity::Warning,
        format!("command rejected: {reason}"),
    )
    .detail("payload", shown)
}

/// Handle one payload from the command topic.
pub fn handle(shared: &Shared, payload: &[u8]) {
    let cmd = match parse(payload) {
        Ok(c) => c,
        Err(reason) => {
            tracing::warn!("LIMS command rejected: {reason}");
            shared.publish_event(rejected(&reason, payload));
            return;
        }
    };
    if let Some(from) = cmd.replay_from_seq {
        replay(shared, from);
        return;
    }
    if cmd.acquire {
        match shared.trigger(cmd.as_request(), "lims") {
            Ok(id) => tracing::info!("LIMS command: acquisition {id} queued"),
            Err(why) => {
                tracing::warn!("LIMS command refused: {why}");
                shared.publish_event(rejected(&why, payload));
            }
        }
    } else {
        tracing::info!(
            "LIMS command: next acquisition for study {:?}, subjects {:?}",
            cmd.study_id,
            cmd.subject_ids
        );
        shared.lock().next_subjects = Some(cmd.as_request());
    }
}

/// A replay the LIMS asked for: re-queue, or say why not; answered by an event either way.
fn replay(shared: &Shared, from_seq: u64) {
    let refused = |reason: String| {
        tracing::warn!("LIMS replay from seq {from_seq} refused: {reason}");
        shared.publish_event(
            NewEvent::new(
                EventKind::Delivery,
                "replay_refused",
                Severity::Warning,
                format!("replay from seq {from_seq} refused: {reason}"),
            )
            .detail("requested_from_seq", from_seq),
        );
    };
    let last = shared.lock().last_replay;
    if let Some(ago) = last
        .map(|t| t.elapsed())
        .filter(|a| *a < REPLAY_MIN_INTERVAL)
    {
        refused(format!(
            "a replay was accepted {:.0} s ago; at most one every {} s: ask again in {:.0} s",
            ago.as_secs_f64(),
            REPLAY_MIN_INTERVAL.as_secs(),
            (REPLAY_MIN_INTERVAL - ago).as_secs_f64().ceil()
        ));
        return;
    }
    match shared.outbox.request_replay(from_seq) {
        Ok(o) => {
            shared.lock().last_replay = Some(Instant::now());
            let message = match o.pruned_before {
                Some(oldest) => format!(
                    "replay accepted: seqs {}–{} go out again ({} re-queued); seqs before {oldest} were deleted after their retention and cannot come back",
                    o.from_seq, o.to_seq, o.requeued
                ),
                None => format!(
                    "replay accepted: seqs {}–{} go out again ({} re-queued)",
                    o.from_seq, o.to_seq, o.requeued
                ),
            };
            tracing::info!("LIMS {message}");
            let mut ev = NewEvent::new(
                EventKind::Delivery,
                "replay_accepted",
                Severity::Info,
                message,
            )
            .detail("requested_from_seq", o.requested_from_seq)
            .detail("from_seq", o.from_seq)
            .detail("to_seq", o.to_seq)
            .detail("requeued", o.requeued)
            .detail("already_pending", o.already_pending);
            if let Some(p) = o.pruned_before {
                ev = ev.detail("pruned_before", p);
            }
            shared.publish_event(ev);
        }
        Err(e) => refused(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(payload: &str, expect: Result<(), &str>) {
        match (parse(payload.as_bytes()), expect) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err(needle)) => assert!(
                e.to_string().contains(needle),
                "{e:?} should mention {needle:?}"
            ),
            (got, want) => panic!("{payload}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn commands_are_checked() {
        check(r#"{"study_id":"S1","subject_ids":["M1","M2"]}"#, Ok(()));
        check(r#"{"acquire":true}"#, Ok(()));
        check(r#"{"acquire":true,"qc":true}"#, Ok(()));
        check(r#"{"qc":true}"#, Err("needs \"acquire\": true"));
        check(r#"{"replay_from_seq":12}"#, Ok(()));
        check(r#"{"replay_from_seq":0}"#, Err("seqs start at 1"));
        check(r#"{"replay_from_seq":-1}"#, Err("not a command"));
        check(
            r#"{"replay_from_seq":3,"acquire":true}"#,
            Err("carries only replay_from_seq"),
        );
        check(
            r#"{"acquire":true,"qc":true,"study_id":"S1"}"#,
            Err("reference source alone"),
        );
        check(
            r#"{"study_id":"S1","injection_time":"2026-11-27T09:50:00Z","acquire":true}"#,
            Ok(()),
        );
        check("not json", Err("not a command"));
        check(r#"{"study":"S1"}"#, Err("unknown field"));
        check(r#"{}"#, Err("names no study"));
        check(
            r#"{"subject_ids":["a","b","c","d","e","f"]}"#,
            Err("at most 5"),
        );
        check(r#"{"subject_ids":[""]}"#, Err("empty id"));
        check(
            r#"{"study_id":"S","injection_time":"yesterday"}"#,
            Err("not a command"),
        );
    }
}
