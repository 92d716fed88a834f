//! The durable outbox: every measurement record (and every kinetic series' sequence record)
//! is committed here (SQLite, WAL,
//! `synchronous=FULL`: the commit returns after the write-ahead log is fsync'd) before its
//! acquisition counts as done, and leaves the "unacknowledged" set only on the broker's
//! PUBACK.
//!
//! Owns: the database file, the per-instrument `seq` (SQLite `AUTOINCREMENT`: increasing,
//! never reused, even after old rows are pruned), the caps (unacknowledged records, database
//! bytes) and what happens at them (the commit is refused with [`OutboxError::Full`]; nothing
//! stored is ever dropped), acknowledgement marks, retention of acknowledged rows, and
//! replay requests. Does not own: MQTT (see [`super::publisher`]).
//!
//! Design: one connection behind a mutex. Commits are `BEGIN IMMEDIATE` transactions at
//! `synchronous=FULL`; acknowledgement marks are batched and written at
//! `synchronous=NORMAL` (no fsync of their own): losing one in a power cut only causes a
//! duplicate send, which the LIMS deduplicates by `measurement_id`. Another process (e.g.
//! `lumiq replay`) may open the same file: WAL allows it, and `PRAGMA data_version` tells the
//! publisher that something changed.
//!
//! Files: `error.rs` ([`OutboxError`]), `replay.rs` ([`Outbox::request_replay`]),
//! `tests.rs`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::record::MeasurementRecord;

mod error;
mod replay;
pub use error::{OutboxError, ReplayRefusal};
pub use replay::ReplayOutcome;

/// Per-instrument sequence number of a committed record: 1, 2, 3, ... without gaps.
pub type Seq = u64;

/// Version of the outbox's own tables (not of any payload). 2 added `record_schema`; a
/// format-1 file is upgraded in place when opened (its rows are measurement records).
const OUTBOX_FORMAT: i64 = 2;

/// `record_schema` of a measurement record.
pub const MEASUREMENT_SCHEMA: &str = crate::record::SCHEMA;

#[derive(Debug, Clone, PartialEq)]
pub struct OutboxConfig {
    /// The instrument whose records this outbox holds; a record of another is refused.
    pub instrument_id: String,
    /// Most unacknowledged records held. At the cap, [`Outbox::commit`] refuses with
    /// [`OutboxError::Full`] (`FullReason::UnackedCap`) until PUBACKs bring the count down.
    pub max_unacked: u64,
    /// Cap on the database's size in bytes (SQLite `max_page_count`), or `None` for "until
    /// the disk is full". Either way a full database refuses commits with
    /// `FullReason::Disk`.
    pub max_db_bytes: Option<u64>,
    /// How long acknowledged records are kept so a LIMS can ask for a replay.
    pub retention: Duration,
}

impl OutboxConfig {
    pub fn new(instrument_id: impl Into<String>) -> OutboxConfig {
        OutboxConfig {
            instrument_id: instrument_id.into(),
            max_unacked: 100_000,
            max_db_bytes: None,
            retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// Why the outbox refuses new records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FullReason {
    /// `max_unacked` records are waiting for the broker.
    UnackedCap { cap: u64 },
    /// The database or the disk under it has no room (SQLITE_FULL).
    Disk,
}

/// One stored record as the publisher needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub seq: Seq,
    pub measurement_id: String,
    pub acquired_at: String,
    pub committed_at: DateTime<Utc>,
    /// The stored record as compact JSON, exactly as committed.
    pub record_json: String,
    /// What `record_json` is: `lumiq.measurement` (a `MeasurementRecord`) or
    /// `lumiq.sequence` (a `SequenceRecord`).
    pub record_schema: String,
    /// Re-queued by a replay request.
    pub replay: bool,
}

/// Counts and ages for `lumiq status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxStats {
    pub path: String,
    pub unacked: u64,
    /// Commit time of the oldest unacknowledged record.
    pub oldest_unacked_committed_at: Option<String>,
    pub oldest_unacked_age_s: Option<f64>,
    /// The last seq ever committed (also after pruning).
    pub last_seq: Option<Seq>,
    /// The highest acknowledged seq still stored.
    pub last_acked_seq: Option<Seq>,
    /// The oldest seq still stored (acknowledged or not): replays can start here.
    pub oldest_stored_seq: Option<Seq>,
    pub stored: u64,
    pub db_bytes: u64,
    /// `false` while commits are refused; `refusal` says why.
    pub accepting: bool,
    pub refusal: Option<String>,
}

struct Refusal {
    reason: FullReason,
    message: String,
}

struct Inner {
    conn: Connection,
    refusal: Option<Refusal>,
    max_unacked: u64,
    last_record_bytes: usize,
    data_version: i64,
}

/// A handle on the outbox file; cheap to clone, shareable between threads.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Mutex<Inner>>,
    wake: Arc<tokio::sync::Notify>,
    /// Bumped by every replay request made through this handle or a clone.
    replays: Arc<AtomicU64>,
    path: PathBuf,
    instrument_id: String,
    retention: Duration,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("path", &self.path)
            .field("instrument_id", &self.instrument_id)
            .finish()
    }
}

pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn is_disk_full(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::DiskFull)
}

impl Outbox {
    /// Open (or create) the outbox at `path` for `cfg.instrument_id`.
    pub fn open(path: impl AsRef<Path>, cfg: &OutboxConfig) -> Result<Outbox, OutboxError> {
        let path = path.as_ref().to_path_buf();
        let p = path.display().to_string();
        let storage = |e: rusqlite::Error| OutboxError::Storage {
            path: p.clone(),
            detail: if is_disk_full(&e) {
                format!("{e}: the disk is full; free space to open the outbox")
            } else {
                format!("{e}: check the file is a lumiq outbox and its folder is writable")
            },
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| OutboxError::Storage {
                path: p.clone(),
                detail: format!("cannot create folder {}: {e}", dir.display()),
            })?;
        }
        let conn = Connection::open(&path).map_err(storage)?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(storage)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(storage)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(OutboxError::Storage {
                path: p,
                detail: format!("SQLite refused WAL mode (journal_mode={mode}); put the outbox on a local filesystem"),
            });
        }
        conn.execute_batch(
            "PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS outbox (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 measurement_id TEXT NOT NULL UNIQUE,
                 acquired_at TEXT NOT NULL,
                 committed_at_ms INTEGER NOT NULL,
                 record TEXT NOT NULL,
                 acked_at_ms INTEGER,
                 replay INTEGER NOT NULL DEFAULT 0,
                 record_schema TEXT NOT NULL DEFAULT 'lumiq.measurement'
             );
             CREATE INDEX IF NOT EXISTS outbox_unacked ON outbox(seq) WHERE acked_at_ms IS NULL;
             CREATE INDEX IF NOT EXISTS outbox_acked_at ON outbox(acked_at_ms) WHERE acked_at_ms IS NOT NULL;
             CREATE TABLE IF NOT EXISTS space_probe (pad BLOB);",
        )
        .map_err(storage)?;
        upgrade(&conn).map_err(storage)?;
        let stored_instrument: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key='instrument_id'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(storage)?;
        match stored_instrument {
            Some(s) if s != cfg.instrument_id => {
                return Err(OutboxError::WrongInstrument {
                    path: p,
                    outbox: s,
                    record: cfg.instrument_id.clone(),
                })
            }
            Some(_) => {}
            None => {
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('instrument_id', ?1), ('format', ?2)",
                    params![cfg.instrument_id, OUTBOX_FORMAT.to_string()],
                )
                .map_err(storage)?;
            }
        }
        let data_version: i64 = conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(storage)?;
        let ob = Outbox {
            inner: Arc::new(Mutex::new(Inner {
                conn,
                refusal: None,
                max_unacked: cfg.max_unacked,
                last_record_bytes: 4096,
                data_version,
            })),
            wake: Arc::new(tokio::sync::Notify::new()),
            replays: Arc::new(AtomicU64::new(0)),
            path,
            instrument_id: cfg.instrument_id.clone(),
            retention: cfg.retention,
        };
        ob.set_max_db_bytes(cfg.max_db_bytes)?;
        Ok(ob)
    }

    /// Open an existing outbox whatever its instrument (for `lumiq replay`).
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Outbox, OutboxError> {
        let path = path.as_ref();
        let p = path.display().to_string();
        if !path.is_file() {
            return Err(OutboxError::Storage {
                path: p,
                detail: "no such file; give the outbox path from the daemon's configuration".into(),
            });
        }
        let conn = Connection::open(path).map_err(|e| OutboxError::Storage {
            path: p.clone(),
            detail: e.to_string(),
        })?;
        let instrument: String = conn
            .query_row(
                "SELECT value FROM meta WHERE key='instrument_id'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| OutboxError::Storage {
                path: p.clone(),
                detail: format!("not a lumiq outbox ({e})"),
            })?;
        drop(conn);
        Outbox::open(path, &OutboxConfig::new(instrument))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn instrument_id(&self) -> &str {
        &self.instrument_id
    }

    pub fn retention(&self) -> Duration {
        self.retention
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave SQLite inconsistent (its own
        // transactions roll back); carry on with the connection.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn storage(&self, e: rusqlite::Error) -> OutboxError {
        OutboxError::Storage {
            path: self.path.display().to_string(),
            detail: e.to_string(),
        }
    }

    /// Resolves when a record was committed (or replay requested) through this handle or a
    /// clone of it. Used by the publisher.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake.notified()
    }

    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Counts replay requests made in this process (the publisher rescans when it moves).
    pub(crate) fn replay_generation(&self) -> u64 {
        self.replays.load(Ordering::SeqCst)
    }

    /// `None` while commits are accepted, else why they are refused (cheap: one count).
    pub fn refusal(&self) -> Result<Option<String>, OutboxError> {
        let g = self.lock();
        let unacked = Self::unacked_count(&g.conn).map_err(|e| self.storage(e))?;
        Ok(Self::refusal_of(self, &g, unacked))
    }

    fn refusal_of(&self, g: &Inner, unacked: u64) -> Option<String> {
        let accepting_cap = unacked < g.max_unacked;
        match &g.refusal {
            Some(r) if matches!(r.reason, FullReason::Disk) || !accepting_cap => {
                Some(r.message.clone())
            }
            None if !accepting_cap => Some(
                self.full(FullReason::UnackedCap { cap: g.max_unacked }, unacked)
                    .to_string(),
            ),
            _ => None,
        }
    }

    /// Change the database size cap (SQLite `max_page_count`); `None` lifts it.
    pub fn set_max_db_bytes(&self, max_db_bytes: Option<u64>) -> Result<(), OutboxError> {
        let g = self.lock();
        let page_size: i64 = g
            .conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(|e| self.storage(e))?;
        let pages = match max_db_bytes {
            Some(b) => (b as i64 / page_size).max(1),
            None => 4_294_967_294, // SQLite's largest page count
        };
        let _: i64 = g
            .conn
            .query_row(&format!("PRAGMA max_page_count={pages}"), [], |r| r.get(0))
            .map_err(|e| self.storage(e))?;
        Ok(())
    }

    /// Change the cap on unacknowledged records.
    pub fn set_max_unacked(&self, cap: u64) {
        self.lock().max_unacked = cap;
    }

    fn full(&self, reason: FullReason, unacked: u64) -> OutboxError {
        OutboxError::Full {
            path: self.path.display().to_string(),
            reason,
            unacked,
        }
    }

    fn refuse(&self, g: &mut Inner, reason: FullReason, unacked: u64) -> OutboxError {
        let e = self.full(reason.clone(), unacked);
        if g.refusal.is_none() {
            tracing::warn!("{e}");
        }
        g.refusal = Some(Refusal {
            reason,
            message: e.to_string(),
        });
        e
    }

    fn unacked_count(conn: &Connection) -> rusqlite::Result<u64> {
        conn.query_row(
            "SELECT COUNT(*) FROM outbox WHERE acked_at_ms IS NULL",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n as u64)
    }

    /// Commit one measurement record durably and return its seq. Returns after the
    /// write-ahead log is on disk (fsync). Committing the same `measurement_id` again returns
    /// its first seq. At a cap, refuses with [`OutboxError::Full`] and keeps everything
    /// already stored.
    pub fn commit(&self, record: &MeasurementRecord) -> Result<Seq, OutboxError> {
        let json = serde_json::to_string(record).map_err(|e| OutboxError::Storage {
            path: self.path.display().to_string(),
            detail: format!("cannot serialise the record: {e}"),
        })?;
        self.commit_json(&Committed {
            id: &record.measurement_id.to_string(),
            instrument_id: &record.instrument_id,
            acquired_at: &record.acquired_at,
            record_schema: MEASUREMENT_SCHEMA,
            json: &json,
        })
    }

    /// Commit any record as compact JSON (a sequence record: `record_schema`
    /// `lumiq.sequence`, its `sequence_id` as the id), with [`Outbox::commit`]'s guarantees.
    /// The id is unique across every kind of record in the outbox.
    pub fn commit_json(&self, c: &Committed<'_>) -> Result<Seq, OutboxError> {
        if c.instrument_id != self.instrument_id {
            return Err(OutboxError::WrongInstrument {
                path: self.path.display().to_string(),
                outbox: self.instrument_id.clone(),
                record: c.instrument_id.to_string(),
            });
        }
        let json = c.json;
        let id = c.id;
        let mut g = self.lock();
        let cap = g.max_unacked;
        let result = (|| -> rusqlite::Result<Result<(Seq, bool), u64>> {
            let tx = g
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(seq) = tx
                .query_row(
                    "SELECT seq FROM outbox WHERE measurement_id=?1",
                    [id],
                    |r| r.get::<_, i64>(0),
                )
                .optional()?
            {
                return Ok(Ok((seq as Seq, false)));
            }
            let unacked = Self::unacked_count(&tx)?;
            if unacked >= cap {
                return Ok(Err(unacked));
            }
            tx.execute(
                "INSERT INTO outbox(measurement_id, acquired_at, committed_at_ms, record, record_schema) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, c.acquired_at, now_ms(), json, c.record_schema],
            )?;
            let seq = tx.last_insert_rowid() as Seq;
            tx.commit()?;
            Ok(Ok((seq, true)))
        })();
        match result {
            Ok(Ok((seq, new))) => {
                g.refusal = None;
                g.last_record_bytes = json.len();
                drop(g);
                if new {
                    self.wake();
                }
                Ok(seq)
            }
            Ok(Err(unacked)) => Err(self.refuse(&mut g, FullReason::UnackedCap { cap }, unacked)),
            Err(e) if is_disk_full(&e) => {
                let unacked = Self::unacked_count(&g.conn).unwrap_or(0);
                Err(self.refuse(&mut g, FullReason::Disk, unacked))
            }
            Err(e) => Err(self.storage(e)),
        }
    }

    /// May a new acquisition start? `Err(Full)` when the unacknowledged cap is reached, or
    /// while the disk is full: after a disk-full refusal this probes with a committed write
    /// of twice the last record's size (then deletes it), so the answer follows the disk.
    pub fn admit(&self) -> Result<(), OutboxError> {
        let mut g = self.lock();
        let unacked = Self::unacked_count(&g.conn).map_err(|e| self.storage(e))?;
        if unacked >= g.max_unacked {
            let cap = g.max_unacked;
            return Err(self.refuse(&mut g, FullReason::UnackedCap { cap }, unacked));
        }
        if matches!(
            g.refusal,
            Some(Refusal {
                reason: FullReason::Disk,
                ..
            })
        ) {
            let pad = vec![0u8; g.last_record_bytes.saturating_mul(2).max(8192)];
            let probe = (|| -> rusqlite::Result<()> {
                let tx = g
                    .conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.execute("INSERT INTO space_probe(pad) VALUES (?1)", [&pad])?;
                tx.commit()?;
                g.conn.execute("DELETE FROM space_probe", [])?;
                Ok(())
            })();
            match probe {
                Ok(()) => {}
                Err(e) if is_disk_full(&e) => {
                    let _ = g.conn.execute("DELETE FROM space_probe", []);
                    return Err(self.refuse(&mut g, FullReason::Disk, unacked));
                }
                Err(e) => return Err(self.storage(e)),
            }
        }
        g.refusal = None;
        Ok(())
    }

    /// Up to `limit` unacknowledged rows with seq > `after`, oldest first.
    pub fn unacked_after(&self, after: Seq, limit: usize) -> Result<Vec<OutboxRow>, OutboxError> {
        let g = self.lock();
        let mut st = g
            .conn
            .prepare_cached(
                "SELECT seq, measurement_id, acquired_at, committed_at_ms, record, replay, record_schema
                 FROM outbox WHERE acked_at_ms IS NULL AND seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(|e| self.storage(e))?;
        let rows = st
            .query_map(params![after as i64, limit as i64], |r| {
                Ok(OutboxRow {
                    seq: r.get::<_, i64>(0)? as Seq,
                    measurement_id: r.get(1)?,
                    acquired_at: r.get(2)?,
                    committed_at: from_ms(r.get(3)?),
                    record_json: r.get(4)?,
                    replay: r.get::<_, i64>(5)? != 0,
                    record_schema: r.get(6)?,
                })
            })
            .map_err(|e| self.storage(e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.storage(e))
    }

    /// Mark rows acknowledged (PUBACK received at `acked_at_ms`). Written without an fsync
    /// of its own (see the module's design note). Rows already acknowledged keep their mark.
    pub fn mark_acked(&self, acks: &[(Seq, i64)]) -> Result<(), OutboxError> {
        if acks.is_empty() {
            return Ok(());
        }
        let mut g = self.lock();
        let r = (|| -> rusqlite::Result<()> {
            g.conn.execute_batch("PRAGMA synchronous=NORMAL")?;
            let tx = g.conn.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "UPDATE outbox SET acked_at_ms=?2, replay=0 WHERE seq=?1 AND acked_at_ms IS NULL",
                )?;
                for (seq, at) in acks {
                    st.execute(params![*seq as i64, at])?;
                }
            }
            tx.commit()
        })();
        let restore = g.conn.execute_batch("PRAGMA synchronous=FULL");
        r.and(restore).map_err(|e| self.storage(e))?;
        Ok(())
    }

    /// Delete acknowledged rows older than the retention period. Never touches an
    /// unacknowledged row. Returns how many were deleted.
    pub fn prune_expired(&self) -> Result<u64, OutboxError> {
        let cutoff = now_ms() - self.retention.as_millis() as i64;
        let g = self.lock();
        let n = g
            .conn
            .execute(
                "DELETE FROM outbox WHERE acked_at_ms IS NOT NULL AND acked_at_ms < ?1",
                [cutoff],
            )
            .map_err(|e| self.storage(e))?;
        Ok(n as u64)
    }

    /// Did another process (another connection) change the database since the last call?
    pub fn changed_elsewhere(&self) -> Result<bool, OutboxError> {
        let mut g = self.lock();
        let v: i64 = g
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(|e| self.storage(e))?;
        let changed = v != g.data_version;
        g.data_version = v;
        Ok(changed)
    }

    pub fn stats(&self) -> Result<OutboxStats, OutboxError> {
        let g = self.lock();
        let q = || -> rusqlite::Result<OutboxStats> {
            let (unacked, oldest_ms): (i64, Option<i64>) = g.conn.query_row(
                "SELECT COUNT(*), MIN(committed_at_ms) FROM outbox WHERE acked_at_ms IS NULL",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let last_seq: Option<i64> = g
                .conn
                .query_row(
                    "SELECT seq FROM sqlite_sequence WHERE name='outbox'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            let (stored, oldest_seq, last_acked): (i64, Option<i64>, Option<i64>) =
                g.conn.query_row(
                    "SELECT COUNT(*), MIN(seq), (SELECT MAX(seq) FROM outbox WHERE acked_at_ms IS NOT NULL) FROM outbox",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?;
            let pages: i64 = g.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            let page_size: i64 = g.conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            let refusal = self.refusal_of(&g, unacked as u64);
            let now = now_ms();
            Ok(OutboxStats {
                path: self.path.display().to_string(),
                unacked: unacked as u64,
                oldest_unacked_committed_at: oldest_ms.map(|m| super::wire::rfc3339(from_ms(m))),
                oldest_unacked_age_s: oldest_ms.map(|m| (now - m).max(0) as f64 / 1000.0),
                last_seq: last_seq.map(|s| s as Seq),
                last_acked_seq: last_acked.map(|s| s as Seq),
                oldest_stored_seq: oldest_seq.map(|s| s as Seq),
                stored: stored as u64,
                db_bytes: (pages * page_size) as u64,
                accepting: refusal.is_none(),
                refusal,
            })
        };
        q().map_err(|e| self.storage(e))
    }

    /// `PRAGMA integrity_check`: `Ok` or the problems SQLite lists.
    pub fn check_integrity(&self) -> Result<(), OutboxError> {
        let g = self.lock();
        let mut st = g
            .conn
            .prepare("PRAGMA integrity_check")
            .map_err(|e| self.storage(e))?;
        let lines: Vec<String> = st
            .query_map([], |r| r.get(0))
            .map_err(|e| self.storage(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.storage(e))?;
        if lines == ["ok"] {
            Ok(())
        } else {
            Err(OutboxError::Storage {
                path: self.path.display().to_string(),
                detail: format!("integrity check failed: {}", lines.join("; ")),
            })
        }
    }

    /// Every stored row's (seq, measurement_id, acknowledged?), oldest first. For tests and
    /// audits.
    pub fn index(&self) -> Result<Vec<(Seq, String, bool)>, OutboxError> {
        let g = self.lock();
        let mut st = g
            .conn
            .prepare("SELECT seq, measurement_id, acked_at_ms IS NOT NULL FROM outbox ORDER BY seq")
            .map_err(|e| self.storage(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((r.get::<_, i64>(0)? as Seq, r.get(1)?, r.get(2)?))
            })
            .map_err(|e| self.storage(e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.storage(e))
    }

    /// The stored record JSON and seq of one id (a `measurement_id` or a `sequence_id`).
    pub fn record_by_id(&self, id: &str) -> Result<Option<(Seq, String)>, OutboxError> {
        let g = self.lock();
        g.conn
            .query_row(
                "SELECT seq, record FROM outbox WHERE measurement_id=?1",
                [id],
                |r| Ok((r.get::<_, i64>(0)? as Seq, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.storage(e))
    }

    /// The stored record JSON of one seq.
    pub fn record_json(&self, seq: Seq) -> Result<Option<String>, OutboxError> {
        let g = self.lock();
        g.conn
            .query_row(
                "SELECT record FROM outbox WHERE seq=?1",
                [seq as i64],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.storage(e))
    }
}

/// One record to commit, already serialised.
#[derive(Debug, Clone, Copy)]
pub struct Committed<'a> {
    /// Unique across the outbox: the `measurement_id` or `sequence_id` (UUIDv7).
    pub id: &'a str,
    pub instrument_id: &'a str,
    /// RFC 3339 UTC: the acquisition's start (a sequence: its first frame's).
    pub acquired_at: &'a str,
    /// `lumiq.measurement` or `lumiq.sequence`.
    pub record_schema: &'a str,
    /// Compact JSON, stored and sent byte for byte.
    pub json: &'a str,
}

/// Bring a file of an older format to [`OUTBOX_FORMAT`] in place (idempotent).
fn upgrade(conn: &Connection) -> rusqlite::Result<()> {
    let has_schema: bool = conn
        .prepare("SELECT 1 FROM pragma_table_info('outbox') WHERE name='record_schema'")?
        .exists([])?;
    if !has_schema {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE;
             ALTER TABLE outbox ADD COLUMN record_schema TEXT NOT NULL DEFAULT '{MEASUREMENT_SCHEMA}';
             UPDATE meta SET value='{OUTBOX_FORMAT}' WHERE key='format';
             COMMIT;"
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
