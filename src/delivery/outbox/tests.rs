//! Unit tests of the outbox: sequence numbers, idempotent commits, acknowledgements, pruning, the cap, replay and another instrument's records.

use super::*;
use crate::delivery::synthetic;

fn open(dir: &Path, cfg: &OutboxConfig) -> Outbox {
    Outbox::open(dir.join("outbox.sqlite"), cfg).unwrap()
}

#[test]
fn seqs_increase_without_gaps_and_commits_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(dir.path(), &OutboxConfig::new("imager-01"));
    let a = synthetic::record("imager-01", 1);
    let b = synthetic::record("imager-01", 2);
    assert_eq!(ob.commit(&a).unwrap(), 1);
    assert_eq!(ob.commit(&b).unwrap(), 2);
    assert_eq!(ob.commit(&a).unwrap(), 1, "same measurement_id, same seq");
    let rows = ob.unacked_after(0, 10).unwrap();
    assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
    let back: MeasurementRecord = serde_json::from_str(&rows[0].record_json).unwrap();
    assert_eq!(back, a);
}

#[test]
fn acked_rows_leave_the_queue_and_pruning_never_reuses_a_seq() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = OutboxConfig::new("imager-01");
    cfg.retention = Duration::ZERO;
    let ob = open(dir.path(), &cfg);
    for i in 0..3 {
        ob.commit(&synthetic::record("imager-01", i)).unwrap();
    }
    ob.mark_acked(&[(1, now_ms() - 10), (2, now_ms() - 10)])
        .unwrap();
    assert_eq!(ob.unacked_after(0, 10).unwrap()[0].seq, 3);
    assert_eq!(ob.prune_expired().unwrap(), 2);
    ob.mark_acked(&[(3, now_ms() - 10)]).unwrap();
    ob.prune_expired().unwrap();
    assert_eq!(ob.commit(&synthetic::record("imager-01", 9)).unwrap(), 4);
    let s = ob.stats().unwrap();
    assert_eq!((s.unacked, s.last_seq, s.stored), (1, Some(4), 1));
}

#[test]
fn cap_refuses_new_records_and_keeps_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = OutboxConfig::new("imager-01");
    cfg.max_unacked = 2;
    let ob = open(dir.path(), &cfg);
    ob.commit(&synthetic::record("imager-01", 0)).unwrap();
    ob.commit(&synthetic::record("imager-01", 1)).unwrap();
    let e = ob.commit(&synthetic::record("imager-01", 2)).unwrap_err();
    assert!(
        matches!(
            e,
            OutboxError::Full {
                reason: FullReason::UnackedCap { cap: 2 },
                unacked: 2,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("new acquisitions are refused"),
        "{e}"
    );
    assert!(ob.admit().is_err());
    assert!(!ob.stats().unwrap().accepting);
    ob.mark_acked(&[(1, now_ms())]).unwrap();
    ob.admit().unwrap();
    assert!(ob.stats().unwrap().accepting);
    assert_eq!(ob.commit(&synthetic::record("imager-01", 2)).unwrap(), 3);
}

#[test]
fn replay_requeues_acknowledged_rows() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(dir.path(), &OutboxConfig::new("imager-01"));
    for i in 0..5 {
        ob.commit(&synthetic::record("imager-01", i)).unwrap();
    }
    ob.mark_acked(&(1..=4).map(|s| (s, now_ms())).collect::<Vec<_>>())
        .unwrap();
    let o = ob.request_replay(3).unwrap();
    assert_eq!(
        (o.from_seq, o.to_seq, o.requeued, o.already_pending),
        (3, 5, 2, 1)
    );
    let rows = ob.unacked_after(0, 10).unwrap();
    assert_eq!(
        rows.iter().map(|r| (r.seq, r.replay)).collect::<Vec<_>>(),
        [(3, true), (4, true), (5, false)]
    );
    assert!(ob
        .request_replay(6)
        .unwrap_err()
        .to_string()
        .contains("last seq committed is 5"));
}

#[test]
fn another_instruments_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(dir.path(), &OutboxConfig::new("imager-01"));
    let e = ob.commit(&synthetic::record("imager-02", 0)).unwrap_err();
    assert!(matches!(e, OutboxError::WrongInstrument { .. }));
    drop(ob);
    let e = Outbox::open(
        dir.path().join("outbox.sqlite"),
        &OutboxConfig::new("imager-02"),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("give each instrument its own outbox"),
        "{e}"
    );
}

#[test]
fn a_format_1_outbox_is_upgraded_in_place_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.sqlite");
    let a = synthetic::record("imager-01", 1);
    {
        // The tables as format 1 wrote them, with one unacknowledged record.
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO meta VALUES ('instrument_id', 'imager-01'), ('format', '1');
             CREATE TABLE outbox (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 measurement_id TEXT NOT NULL UNIQUE,
                 acquired_at TEXT NOT NULL,
                 committed_at_ms INTEGER NOT NULL,
                 record TEXT NOT NULL,
                 acked_at_ms INTEGER,
                 replay INTEGER NOT NULL DEFAULT 0
             );",
        )
        .unwrap();
        c.execute(
            "INSERT INTO outbox(measurement_id, acquired_at, committed_at_ms, record) VALUES (?1, ?2, 1, ?3)",
            params![a.measurement_id.to_string(), a.acquired_at, serde_json::to_string(&a).unwrap()],
        )
        .unwrap();
    }
    let ob = open(dir.path(), &OutboxConfig::new("imager-01"));
    let seq = ob
        .commit_json(&Committed {
            id: "0190c0de-0000-7000-8000-00000000000a",
            instrument_id: "imager-01",
            acquired_at: &a.acquired_at,
            record_schema: "lumiq.sequence",
            json: "{\"schema\":\"lumiq.sequence\"}",
        })
        .unwrap();
    assert_eq!(seq, 2, "the seq goes on from the old rows");
    let rows = ob.unacked_after(0, 10).unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| (r.seq, r.record_schema.as_str()))
            .collect::<Vec<_>>(),
        [(1, "lumiq.measurement"), (2, "lumiq.sequence")]
    );
    let back: MeasurementRecord = serde_json::from_str(&rows[0].record_json).unwrap();
    assert_eq!(back, a);
    let format: String = ob
        .lock()
        .conn
        .query_row("SELECT value FROM meta WHERE key='format'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(format, OUTBOX_FORMAT.to_string());
    drop(ob);
    // Opening again changes nothing.
    let ob = open(dir.path(), &OutboxConfig::new("imager-01"));
    assert_eq!(ob.unacked_after(0, 10).unwrap().len(), 2);
}
