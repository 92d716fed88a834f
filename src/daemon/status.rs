//! [`StatusReport`]: what `lumiq status` shows — one serde value the daemon builds on request,
//! the technician's table, the reasons that need a person, and the exit-code policy.
//!
//! Owns: the report's shape (`schemas/status-report.schema.json`), [`attention`] (the rules
//! that turn a report into "needs a person" reasons), [`render_table`] and the exit codes.
//! Does not own: collecting the facts (the daemon, `mod.rs`) or the socket (`socket.rs`).
//! Pure: the rules take the report and the current time, so they are tested on values.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::qc::qc_attention;
pub use super::qc::QcStatus;
use crate::delivery::{DeliveryStatus, LinkState};

/// `lumiq status` exit code: all fine.
pub const EXIT_OK: i32 = 0;
/// `lumiq status` exit code: something needs a person (reasons under the table).
pub const EXIT_ATTENTION: i32 = 1;
/// `lumiq status` exit code: the daemon is not reachable.
pub const EXIT_UNREACHABLE: i32 = 2;

/// The broker may be unreachable this long before a person is asked to look, s.
pub const BROKER_DOWN_LIMIT_S: f64 = 300.0;
/// The oldest unacknowledged record may be this old before a person is asked to look, s.
pub const UNACKED_AGE_LIMIT_S: f64 = 900.0;

/// What the daemon is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DaemonState {
    Starting,
    Idle,
    Acquiring,
    Processing,
    Stopping,
}

impl DaemonState {
    pub fn name(self) -> &'static str {
        match self {
            DaemonState::Starting => "starting",
            DaemonState::Idle => "idle",
            DaemonState::Acquiring => "acquiring",
            DaemonState::Processing => "processing",
            DaemonState::Stopping => "stopping",
        }
    }
}

/// The camera as last seen by the acquisition thread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraStatus {
    /// `usb` or `simulated`.
    pub kind: String,
    pub connected: bool,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub sensor_temp_c: Option<f64>,
    pub setpoint_c: f64,
    pub cooling_locked: Option<bool>,
    /// When these values were read (RFC 3339 UTC).
    pub checked_at: Option<String>,
    pub last_error: Option<String>,
}

/// The imager's controller as last seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControllerStatus {
    /// `serial` or `simulated`.
    pub kind: String,
    pub connected: bool,
    pub door_open: Option<bool>,
    pub door_locked: Option<bool>,
    pub last_error: Option<String>,
}

/// The brightest region's net total flux.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FluxValue {
    pub value: f64,
    pub uncertainty: f64,
    /// UCUM, `{photons}/s`.
    pub unit: String,
}

/// The last acquisition that finished (well or not).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastAcquisition {
    /// The acquisition id (equal to the record's `measurement_id`).
    pub id: String,
    /// `committed` (in the outbox), `failed` (see `error`), `abandoned` (stopped) or `qc`
    /// (the reference source measured: its QC id is `id`, `error` says why it did not pass).
    pub outcome: String,
    /// The exposure's start on the instrument's clock, when known.
    pub acquired_at: Option<String>,
    /// When the daemon finished with it (RFC 3339 UTC).
    pub finished_at: String,
    /// When the capture left the camera (RFC 3339 UTC): with `delivery.last_puback_at`,
    /// the acquisition-complete → PUBACK latency.
    pub captured_at: Option<String>,
    pub trigger: String,
    pub seq: Option<u64>,
    pub regions: Option<usize>,
    pub brightest_net_flux: Option<FluxValue>,
    pub error: Option<String>,
}

/// Counters of acquisitions since start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AcquisitionCounters {
    pub triggered: u64,
    pub committed: u64,
    pub failed: u64,
    pub abandoned: u64,
    /// QC acquisitions of the mounted reference source (whatever their verdict).
    pub qc: u64,
}

/// One bounded queue between stages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueStatus {
    /// The `[channels]` setting that sizes it.
    pub setting: String,
    pub waiting: usize,
    pub capacity: usize,
}

/// Refused triggers, by reason. Nothing is dropped: a refused trigger is answered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Refusals {
    pub total: u64,
    pub stopping: u64,
    pub busy: u64,
    pub processing_queue_full: u64,
    pub outbox_full: u64,
    pub disk_low: u64,
    pub camera_unavailable: u64,
    pub invalid_request: u64,
    /// The last refusal's reason.
    pub last: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuesStatus {
    pub captures: QueueStatus,
    pub records: QueueStatus,
    pub refusals: Refusals,
    /// Records that waited for an outbox that refused them (retried until accepted).
    pub commit_retries: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationStatus {
    pub dir: String,
    pub id: Option<String>,
    pub created_at: Option<String>,
    /// Age on the instrument's clock (simulated for the simulated instrument), days.
    pub age_days: Option<f64>,
    pub max_age_days: f64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskStatus {
    pub path: String,
    pub free_mb: Option<u64>,
    pub min_free_mb: u64,
    pub error: Option<String>,
}

/// Everything `lumiq status` shows (`schemas/status-report.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// `lumiq.daemon_status`.
    pub schema: String,
    pub schema_version: u32,
    pub version: String,
    pub instrument_id: String,
    pub site: String,
    pub pid: u32,
    pub started_at: String,
    pub uptime_s: f64,
    /// When the report was made (RFC 3339 UTC).
    pub at: String,
    pub state: DaemonState,
    pub camera: CameraStatus,
    pub controller: ControllerStatus,
    pub last_acquisition: Option<LastAcquisition>,
    pub acquisitions: AcquisitionCounters,
    pub queues: QueuesStatus,
    pub delivery: DeliveryStatus,
    pub calibration: CalibrationStatus,
    pub qc: QcStatus,
    pub disk: DiskStatus,
    /// Why a person is needed; empty when all is fine.
    pub attention: Vec<String>,
}

pub const SCHEMA: &str = "lumiq.daemon_status";
pub const SCHEMA_VERSION: u32 = 3;

fn age_s(since: &str, now: DateTime<Utc>) -> Option<f64> {
    let t = DateTime::parse_from_rfc3339(since).ok()?;
    Some((now - t.with_timezone(&Utc)).num_milliseconds() as f64 / 1000.0)
}

/// The reasons a person is needed, in order of urgency. `now` is the wall clock.
pub fn attention(r: &StatusReport, now: DateTime<Utc>) -> Vec<String> {
    let mut out = Vec::new();
    let d = &r.delivery;
    if !r.camera.connected {
        out.push(format!(
            "camera not connected{}: check its USB cable and power",
            r.camera
                .last_error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
    }
    if r.state == DaemonState::Acquiring && r.camera.cooling_locked == Some(false) {
        out.push(format!(
            "cooling not locked while acquiring (sensor {} vs setpoint {:.1} °C): check the cooler's power and airflow",
            r.camera
                .sensor_temp_c
                .map_or("unknown".into(), |t| format!("{t:.1}")),
            r.camera.setpoint_c
        ));
    }
    if !d.accepting {
        out.push(format!(
            "outbox refuses new acquisitions: {}",
            d.refusal.as_deref().unwrap_or("no reason given")
        ));
    }
    if let Some(free) = r.disk.free_mb {
        if free < r.disk.min_free_mb {
            out.push(format!(
                "disk below the minimum: {free} MB free on {} (state.min_free_disk_mb = {}); free space there, new acquisitions are refused until then",
                r.disk.path, r.disk.min_free_mb
            ));
        }
    }
    if d.link != LinkState::Connected && d.link != LinkState::Stopped {
        if let Some(down) = age_s(&d.link_since, now) {
            if down > BROKER_DOWN_LIMIT_S {
                out.push(format!(
                    "broker {} unreachable for {:.0} min{}",
                    d.broker,
                    down / 60.0,
                    d.last_error
                        .as_ref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ));
            }
        }
    }
    if let Some(age) = d.oldest_unacked_age_s {
        if d.unacked > 0 && age > UNACKED_AGE_LIMIT_S {
            out.push(format!(
                "{} record(s) not acknowledged by the broker, the oldest for {:.0} min: check the broker link",
                d.unacked,
                age / 60.0
            ));
        }
    }
    out.extend(qc_attention(&r.qc));
    match (&r.calibration.age_days, &r.calibration.error) {
        (_, Some(e)) => out.push(format!(
            "calibration set {} unusable: {e}",
            r.calibration.dir
        )),
        (Some(age), None) if *age > r.calibration.max_age_days => out.push(format!(
            "calibration set {} is {:.0} days old (calibration.max_age_days = {}): rebuild it with `lumiq calibrate`",
            r.calibration.id.as_deref().unwrap_or(&r.calibration.dir),
            age,
            r.calibration.max_age_days
        )),
        _ => {}
    }
    if let Some(last) = &r.last_acquisition {
        if last.outcome == "failed" {
            out.push(format!(
                "last acquisition {} failed: {}",
                last.id,
                last.error.as_deref().unwrap_or("no reason recorded")
            ));
        }
    }
    out
}

/// The exit code of `lumiq status` for a report.
pub fn exit_code(r: &StatusReport) -> i32 {
    if r.attention.is_empty() {
        EXIT_OK
    } else {
        EXIT_ATTENTION
    }
}

fn or_dash<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "—".to_string(), |v| v.to_string())
}

fn duration_words(s: f64) -> String {
    let s = s.max(0.0);
    if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 172_800.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} d", s / 86_400.0)
    }
}

/// The table a technician reads at a glance, then the reasons a person is needed.
pub fn render_table(r: &StatusReport) -> String {
    let mut rows: Vec<(&str, String)> = Vec::new();
    let verdict = if r.attention.is_empty() {
        "OK".to_string()
    } else {
        format!("NEEDS A PERSON ({})", r.attention.len())
    };
    rows.push((
        "lumiq",
        format!(
            "{} on {} ({}), pid {}, up {} — {verdict}",
            r.version,
            r.instrument_id,
            r.site,
            r.pid,
            duration_words(r.uptime_s)
        ),
    ));
    rows.push(("state", r.state.name().to_string()));
    let c = &r.camera;
    rows.push((
        "camera",
        format!(
            "{}{}, {} °C (setpoint {:.1} °C), cooling {}",
            if c.connected {
                "connected"
            } else {
                "NOT CONNECTED"
            },
            c.model
                .as_ref()
                .map(|m| format!(" {m} {}", c.serial.as_deref().unwrap_or("")))
                .unwrap_or_default()
                .trim_end(),
            c.sensor_temp_c
                .map_or("?".to_string(), |t| format!("{t:.1}")),
            c.setpoint_c,
            match c.cooling_locked {
                Some(true) => "locked",
                Some(false) => "not locked",
                None => "unknown",
            }
        ),
    ));
    let k = &r.controller;
    rows.push((
        "controller",
        format!(
            "{}, door {}",
            if k.connected {
                "connected"
            } else {
                "NOT CONNECTED"
            },
            match (k.door_open, k.door_locked) {
                (Some(true), _) => "OPEN",
                (Some(false), Some(true)) => "closed, locked",
                (Some(false), _) => "closed",
                (None, _) => "unknown",
            }
        ),
    ));
    rows.push((
        "last acquisition",
        match &r.last_acquisition {
            None => "none since start".into(),
            Some(a) => {
                let flux = a
                    .brightest_net_flux
                    .as_ref()
                    .map(|f| {
                        format!(
                            ", brightest {:.3e} ± {:.1e} {}",
                            f.value, f.uncertainty, f.unit
                        )
                    })
                    .unwrap_or_default();
                format!(
                    "{} {} ({}), {}{}{}{}",
                    a.finished_at,
                    a.id,
                    a.trigger,
                    a.outcome,
                    a.seq.map(|s| format!(" seq {s}")).unwrap_or_default(),
                    a.regions
                        .map(|n| format!(", {n} regions"))
                        .unwrap_or_default(),
                    flux
                ) + &a
                    .error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            }
        },
    ));
    let n = &r.acquisitions;
    rows.push((
        "acquisitions",
        format!(
            "{} triggered, {} committed, {} failed, {} abandoned, {} QC",
            n.triggered, n.committed, n.failed, n.abandoned, n.qc
        ),
    ));
    let q = &r.queues;
    rows.push((
        "queues",
        format!(
            "captures {}/{}, records {}/{}; refused triggers {} (busy {}, processing queue full {}, outbox full {}, disk low {}, stopping {}, camera {}, invalid {})",
            q.captures.waiting,
            q.captures.capacity,
            q.records.waiting,
            q.records.capacity,
            q.refusals.total,
            q.refusals.busy,
            q.refusals.processing_queue_full,
            q.refusals.outbox_full,
            q.refusals.disk_low,
            q.refusals.stopping,
            q.refusals.camera_unavailable,
            q.refusals.invalid_request
        ),
    ));
    let d = &r.delivery;
    rows.push((
        "broker",
        format!(
            "{} {:?} since {}{}",
            d.broker,
            d.link,
            d.link_since,
            d.last_error
                .as_ref()
                .filter(|_| d.link != LinkState::Connected)
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        )
        .replace("Connected", "connected")
        .replace("Connecting", "connecting")
        .replace("Disconnected", "DISCONNECTED")
        .replace("Stopped", "stopped"),
    ));
    rows.push((
        "outbox",
        format!(
            "{} unacknowledged{}, last seq {}, last acked {}, {}{}",
            d.unacked,
            d.oldest_unacked_age_s
                .filter(|_| d.unacked > 0)
                .map(|a| format!(" (oldest {})", duration_words(a)))
                .unwrap_or_default(),
            or_dash(d.last_seq),
            or_dash(d.last_acked_seq),
            if d.accepting {
                "accepting".to_string()
            } else {
                format!("REFUSING: {}", d.refusal.as_deref().unwrap_or(""))
            },
            d.puback_latency
                .map(|l| format!(", PUBACK p50 {:.0} ms p99 {:.0} ms", l.p50_ms, l.p99_ms))
                .unwrap_or_default()
        ),
    ));
    let cal = &r.calibration;
    rows.push((
        "calibration",
        match (&cal.error, cal.age_days) {
            (Some(e), _) => format!("{}: {e}", cal.dir),
            (None, age) => format!(
                "{} , {} old (max {} d)",
                cal.id.as_deref().unwrap_or(&cal.dir),
                age.map_or("?".into(), |a| format!("{a:.0} d")),
                cal.max_age_days
            )
            .replace(" ,", ","),
        },
    ));
    rows.push((
        "QC",
        match (r.qc.age_days, r.qc.response_factor) {
            (Some(a), Some(k)) => format!(
                "{a:.1} d ago, response factor {k:.4}{}",
                if r.qc.stale { " (stale)" } else { "" }
            ),
            _ => r.qc.note.clone(),
        },
    ));
    rows.push((
        "disk",
        match r.disk.free_mb {
            Some(f) => format!(
                "{f} MB free on {} (minimum {} MB)",
                r.disk.path, r.disk.min_free_mb
            ),
            None => format!(
                "{}: {}",
                r.disk.path,
                r.disk.error.as_deref().unwrap_or("unknown")
            ),
        },
    ));
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut s = String::new();
    for (k, v) in rows {
        s.push_str(&format!("{k:<width$}  {v}\n"));
    }
    if !r.attention.is_empty() {
        s.push_str("\nneeds a person:\n");
        for a in &r.attention {
            s.push_str(&format!("  - {a}\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery() -> DeliveryStatus {
        DeliveryStatus {
            instrument_id: "i".into(),
            site: "s".into(),
            boot_id: "b".into(),
            broker: "mqtt://h:1883".into(),
            link: LinkState::Connected,
            link_since: "2026-11-27T10:00:00Z".into(),
            last_error: None,
            connections: 1,
            unacked: 0,
            oldest_unacked_age_s: None,
            last_seq: Some(3),
            last_acked_seq: Some(3),
            last_puback_at: None,
            in_flight: 0,
            acked_since_start: 3,
            refused_by_broker: 0,
            last_refusal: None,
            events_dropped: 0,
            puback_latency: None,
            accepting: true,
            refusal: None,
            outbox_path: "/x".into(),
            outbox_bytes: 0,
            oldest_stored_seq: Some(1),
            retention_s: 0,
        }
    }

    fn report() -> StatusReport {
        StatusReport {
            schema: SCHEMA.into(),
            schema_version: SCHEMA_VERSION,
            version: "0.1.0".into(),
            instrument_id: "i".into(),
            site: "s".into(),
            pid: 1,
            started_at: "2026-11-27T10:00:00Z".into(),
            uptime_s: 10.0,
            at: "2026-11-27T10:00:10Z".into(),
            state: DaemonState::Idle,
            camera: CameraStatus {
                kind: "simulated".into(),
                connected: true,
                model: None,
                serial: None,
                sensor_temp_c: Some(-90.0),
                setpoint_c: -90.0,
                cooling_locked: Some(true),
                checked_at: None,
                last_error: None,
            },
            controller: ControllerStatus {
                kind: "simulated".into(),
                connected: true,
                door_open: Some(false),
                door_locked: Some(false),
                last_error: None,
            },
            last_acquisition: None,
            acquisitions: AcquisitionCounters::default(),
            queues: QueuesStatus {
                captures: QueueStatus {
                    setting: "channels.captures".into(),
                    waiting: 0,
                    capacity: 2,
                },
                records: QueueStatus {
                    setting: "channels.records".into(),
                    waiting: 0,
                    capacity: 16,
                },
                refusals: Refusals::default(),
                commit_retries: 0,
            },
            delivery: delivery(),
            calibration: CalibrationStatus {
                dir: "/c".into(),
                id: Some("c".into()),
                created_at: None,
                age_days: Some(3.0),
                max_age_days: 30.0,
                error: None,
            },
            qc: QcStatus::default(),
            disk: DiskStatus {
                path: "/".into(),
                free_mb: Some(10_000),
                min_free_mb: 2048,
                error: None,
            },
            attention: vec![],
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-27T10:20:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// One rule at a time: each condition alone produces exactly one reason naming it.
    fn check(mutate: impl FnOnce(&mut StatusReport), needle: &str) {
        let mut r = report();
        assert!(attention(&r, now()).is_empty(), "baseline is fine");
        mutate(&mut r);
        let a = attention(&r, now());
        assert_eq!(a.len(), 1, "{a:?}");
        assert!(
            a[0].contains(needle),
            "{:?} should mention {needle:?}",
            a[0]
        );
        r.attention = a;
        assert_eq!(exit_code(&r), EXIT_ATTENTION);
        assert!(render_table(&r).contains(needle));
    }

    #[test]
    fn each_rule_asks_for_a_person() {
        check(|r| r.camera.connected = false, "camera not connected");
        check(
            |r| {
                r.state = DaemonState::Acquiring;
                r.camera.cooling_locked = Some(false);
            },
            "cooling not locked",
        );
        check(
            |r| {
                r.delivery.accepting = false;
                r.delivery.refusal = Some("full (cap)".into());
            },
            "full (cap)",
        );
        check(|r| r.disk.free_mb = Some(100), "disk below the minimum");
        check(
            |r| {
                r.delivery.link = LinkState::Disconnected;
                r.delivery.link_since = "2026-11-27T10:10:00Z".into();
            },
            "unreachable for 10 min",
        );
        check(
            |r| {
                r.delivery.unacked = 2;
                r.delivery.oldest_unacked_age_s = Some(1000.0);
            },
            "not acknowledged",
        );
        check(|r| r.calibration.age_days = Some(31.0), "31 days old");
        check(
            |r| {
                r.last_acquisition = Some(LastAcquisition {
                    id: "x".into(),
                    outcome: "failed".into(),
                    acquired_at: None,
                    finished_at: "t".into(),
                    captured_at: None,
                    trigger: "cli".into(),
                    seq: None,
                    regions: None,
                    brightest_net_flux: None,
                    error: Some("door open".into()),
                })
            },
            "door open",
        );
    }

    #[test]
    fn short_outages_and_idle_cooling_need_nobody() {
        let mut r = report();
        r.delivery.link = LinkState::Disconnected;
        r.delivery.link_since = "2026-11-27T10:17:00Z".into();
        r.camera.cooling_locked = Some(false);
        r.delivery.unacked = 3;
        r.delivery.oldest_unacked_age_s = Some(120.0);
        assert!(attention(&r, now()).is_empty());
        assert_eq!(exit_code(&r), EXIT_OK);
    }
}
