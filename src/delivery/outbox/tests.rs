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
