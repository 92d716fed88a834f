//! The daemon's side of the daily QC (docs/qc.md): what `lumiq status` says of it and
//! when it asks for a person, correcting each record by the QC of its time, and announcing
//! each new QC once. The daemon's own QC acquisitions are `qc_acquire`.
//!
//! Owns: reading the QC history for the daemon and applying it; the arithmetic is
//! `crate::process::qc`, the history file `crate::qc::history`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use std::collections::HashSet;

use crate::config::Settings;
use crate::delivery::wire::{EventKind, NewEvent, Severity};
use crate::process::qc::{QcResult, QcVerdict};
use crate::record::MeasurementRecord;

/// Correct `record` by the QC of its acquisition time from the history in the state
/// directory, when `[qc]` is set. A history that cannot be read leaves the record flagged
/// `qc_missing` and is logged: the record is never held back for it.
pub(super) fn apply_to_record(settings: &Settings, record: &mut MeasurementRecord) {
    if settings.qc.is_none() {
        return;
    }
    let path = settings.qc_history_path();
    let history = crate::qc::history::load(&path).unwrap_or_else(|e| {
        tracing::error!(
            "measurement {}: {e}; the record is flagged qc_missing",
            record.measurement_id
        );
        Vec::new()
    });
    let at = DateTime::parse_from_rfc3339(&record.acquired_at)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|_| Utc::now());
    let selection = crate::process::qc::select(&history, &record.instrument_id, at);
    crate::record::apply_qc(record, &selection);
}

/// The `qc` event of one result: `qc_pass` (info), `qc_out_of_tolerance` (warning) or
/// `qc_invalid` (error), with the QC's id, source and factor.
pub(super) fn qc_event(r: &QcResult) -> NewEvent {
    let (code, severity) = match r.verdict {
        QcVerdict::Pass => ("qc_pass", Severity::Info),
        QcVerdict::OutOfTolerance => ("qc_out_of_tolerance", Severity::Warning),
        QcVerdict::Invalid => ("qc_invalid", Severity::Error),
    };
    let mut ev = NewEvent::new(EventKind::Qc, code, severity, crate::qc::summary_line(r))
        .detail("qc_id", r.qc_id.clone())
        .detail("source_id", r.source.id.clone())
        .detail(
            "performed_at",
            crate::delivery::wire::rfc3339(r.performed_at),
        );
    if let Some(k) = r.response_factor {
        ev = ev.detail("response_factor", k.value);
    }
    ev
}

/// Announces each QC appended to the history while the daemon runs (`lumiq qc` on this
/// machine) as a `qc` event, once. Results already in the history at start are not
/// announced again.
pub(super) struct QcWatch {
    seen: HashSet<String>,
}

impl QcWatch {
    pub(super) fn new(settings: &Settings) -> Self {
        let seen = match settings.qc {
            Some(_) => crate::qc::history::load(&settings.qc_history_path())
                .map(|h| h.into_iter().map(|r| r.qc_id).collect())
                .unwrap_or_default(),
            None => HashSet::new(),
        };
        QcWatch { seen }
    }

    /// The daemon's own QC acquisition `qc_id` announces itself (with its acquisition's
    /// details): the watch leaves it out.
    pub(super) fn announced(&mut self, qc_id: &str) {
        self.seen.insert(qc_id.to_string());
    }

    /// The results of this instrument not announced yet, oldest first.
    pub(super) fn new_results(&mut self, settings: &Settings) -> Vec<QcResult> {
        if settings.qc.is_none() {
            return Vec::new();
        }
        let Ok(history) = crate::qc::history::load(&settings.qc_history_path()) else {
            return Vec::new();
        };
        history
            .into_iter()
            .filter(|r| r.instrument_id == settings.instrument.id)
            .filter(|r| self.seen.insert(r.qc_id.clone()))
            .collect()
    }
}

/// The QC part of the report, read from the history in the state directory.
pub(super) fn status_now(settings: &Settings, now: DateTime<Utc>) -> QcStatus {
    let loaded = settings
        .qc
        .as_ref()
        .map(|_| crate::qc::history::load(&settings.qc_history_path()).map_err(|e| e.to_string()));
    match loaded {
        None => qc_status(false, &settings.instrument.id, Ok(&[]), now),
        Some(Ok(h)) => qc_status(true, &settings.instrument.id, Ok(&h), now),
        Some(Err(e)) => qc_status(true, &settings.instrument.id, Err(e), now),
    }
}

/// The daily QC against the reference light source (`[qc]`, docs/qc.md): the newest QC of
/// the history and the one records are corrected by now.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct QcStatus {
    /// `[qc]` is set: the instrument has a reference source to check against.
    pub configured: bool,
    /// When the newest QC (any verdict) imaged its source.
    pub last_at: Option<String>,
    pub age_days: Option<f64>,
    /// The newest QC's verdict.
    pub verdict: Option<QcVerdict>,
    /// The QC a record made now is corrected by (the newest usable one), its factor and
    /// whether it is older than its validity.
    pub applied_qc_id: Option<String>,
    pub response_factor: Option<f64>,
    pub stale: bool,
    /// The history could not be read, or the newest QC's reason for being invalid.
    pub error: Option<String>,
    pub note: String,
}

/// Why the QC needs a person: none yet, stale, the newest invalid, out of tolerance, or an
/// unreadable history.
pub(super) fn qc_attention(q: &QcStatus) -> Vec<String> {
    let mut out = Vec::new();
    if !q.configured {
        return out;
    }
    if let (Some(e), None) = (&q.error, &q.verdict) {
        out.push(format!(
            "the QC history cannot be read ({e}): records are flagged qc_missing until it can"
        ));
        return out;
    }
    match q.verdict {
        None => out.push(
            "no QC yet: image the reference source and run `lumiq qc`; records are flagged qc_missing".into(),
        ),
        Some(QcVerdict::Invalid) => out.push(format!(
            "the last QC could not measure its source ({}): check the source's placement and run `lumiq qc` again; records are flagged qc_failed",
            q.error.as_deref().unwrap_or("no reason given")
        )),
        Some(QcVerdict::OutOfTolerance) => out.push(format!(
            "QC out of tolerance: response factor {}; check the optics, filter and source, records are flagged qc_out_of_tolerance",
            q.response_factor.map_or("?".into(), |k| format!("{k:.4}"))
        )),
        Some(QcVerdict::Pass) => {}
    }
    if q.stale {
        out.push(format!(
            "QC is stale ({} old): run `lumiq qc`; records are flagged qc_stale",
            q.age_days.map_or("?".into(), |d| format!("{:.1} d", d))
        ));
    }
    out
}

/// The QC part of the report at `now`, from the history (or the error reading it).
pub fn qc_status(
    configured: bool,
    instrument_id: &str,
    history: Result<&[QcResult], String>,
    now: DateTime<Utc>,
) -> QcStatus {
    if !configured {
        return QcStatus {
            note: "no reference source configured ([qc] in the configuration)".into(),
            ..QcStatus::default()
        };
    }
    let history = match history {
        Ok(h) => h,
        Err(e) => {
            return QcStatus {
                configured,
                error: Some(e),
                note: "the QC history cannot be read".into(),
                ..QcStatus::default()
            }
        }
    };
    let newest = history
        .iter()
        .filter(|q| q.instrument_id == instrument_id)
        .max_by_key(|q| q.performed_at);
    let sel = crate::process::qc::select(history, instrument_id, now);
    let days = |t: DateTime<Utc>| (now - t).num_milliseconds() as f64 / 86_400_000.0;
    QcStatus {
        configured,
        last_at: newest.map(|q| crate::delivery::wire::rfc3339(q.performed_at)),
        age_days: newest.map(|q| days(q.performed_at)),
        verdict: newest.map(|q| q.verdict),
        applied_qc_id: sel.applied.map(|q| q.qc_id.clone()),
        response_factor: sel.applied.and_then(|q| q.response_factor).map(|k| k.value),
        stale: sel.stale,
        error: newest.and_then(|q| q.error.clone()),
        note: match newest {
            None => "no QC yet: run `lumiq qc` on an image of the reference source".into(),
            Some(q) => crate::qc::summary_line(q),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn at(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).single().unwrap() + Duration::hours(h)
    }

    fn qc(h: i64, verdict: QcVerdict) -> QcResult {
        let factor = if verdict == QcVerdict::Pass {
            0.97
        } else {
            0.82
        };
        crate::process::qc::sample_result(&format!("qc-{h}"), "imager-01", at(h), verdict, factor)
    }

    fn attention(history: &[QcResult], now_h: i64) -> (QcStatus, Vec<String>) {
        let s = qc_status(true, "imager-01", Ok(history), at(now_h));
        let a = qc_attention(&s);
        (s, a)
    }

    #[test]
    fn a_fresh_passing_qc_needs_nobody() {
        let (s, a) = attention(&[qc(8, QcVerdict::Pass)], 10);
        assert!(a.is_empty(), "{a:?}");
        assert_eq!(s.applied_qc_id.as_deref(), Some("qc-8"));
        assert_eq!(s.response_factor, Some(0.97));
        assert!(!s.stale);
    }

    #[test]
    fn stale_failed_out_of_tolerance_and_absent_qc_ask_for_a_person() {
        let (s, a) = attention(&[qc(8, QcVerdict::Pass)], 8 + 30);
        assert!(s.stale && a.iter().any(|l| l.contains("stale")), "{a:?}");
        let (_, a) = attention(&[qc(8, QcVerdict::Pass), qc(9, QcVerdict::Invalid)], 10);
        assert!(
            a.iter().any(|l| l.contains("could not measure its source")),
            "{a:?}"
        );
        let (_, a) = attention(&[qc(8, QcVerdict::OutOfTolerance)], 10);
        assert!(
            a.iter()
                .any(|l| l.contains("out of tolerance") && l.contains("0.8200")),
            "{a:?}"
        );
        let (_, a) = attention(&[], 10);
        assert!(a.iter().any(|l| l.contains("no QC yet")), "{a:?}");
        let s = qc_status(true, "imager-01", Err("bad line 3".into()), at(10));
        assert!(qc_attention(&s).iter().any(|l| l.contains("bad line 3")));
    }

    #[test]
    fn each_new_qc_is_announced_once_with_its_verdict() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::from_toml_str(
            &format!(
                "[instrument]\nid = \"imager-01\"\nsite = \"lab\"\n[state]\ndir = {:?}\n\
                 [qc]\nsource_id = \"LED-1\"\nsource_kind = \"led\"\nradiance = 5e5\n\
                 reference_date = \"2026-01-01\"\nsource_centre_cm = [11.2, 11.2]\nsource_radius_cm = 1.5\n",
                dir.path().display().to_string()
            ),
            "test",
        )
        .unwrap();
        let path = settings.qc_history_path();
        crate::qc::history::append(&path, &qc(1, QcVerdict::Pass)).unwrap();
        let mut watch = QcWatch::new(&settings);
        assert!(
            watch.new_results(&settings).is_empty(),
            "the old one is not news"
        );
        crate::qc::history::append(&path, &qc(2, QcVerdict::OutOfTolerance)).unwrap();
        crate::qc::history::append(&path, &qc(3, QcVerdict::Invalid)).unwrap();
        let news = watch.new_results(&settings);
        assert_eq!(news.len(), 2);
        assert!(watch.new_results(&settings).is_empty(), "announced once");
        watch.announced("qc-4");
        crate::qc::history::append(&path, &qc(4, QcVerdict::Pass)).unwrap();
        assert!(
            watch.new_results(&settings).is_empty(),
            "the daemon's own QC is announced by its acquisition, not again by the watch"
        );
        let ev = qc_event(&news[0]);
        assert_eq!(
            (ev.code.as_str(), ev.severity),
            ("qc_out_of_tolerance", Severity::Warning)
        );
        assert_eq!(ev.details["qc_id"], "qc-2");
        assert_eq!(ev.details["response_factor"], 0.82);
        let ev = qc_event(&news[1]);
        assert_eq!(
            (ev.code.as_str(), ev.severity),
            ("qc_invalid", Severity::Error)
        );
        assert!(ev.message.contains("QC invalid"));
    }

    #[test]
    fn without_a_reference_source_qc_is_not_a_reason_for_attention() {
        let s = qc_status(false, "imager-01", Ok(&[]), at(10));
        assert!(!s.configured && qc_attention(&s).is_empty());
    }
}
