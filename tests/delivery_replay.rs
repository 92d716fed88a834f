//! Replay: a LIMS that saw a gap asks for everything from a seq on; `lumiq replay --from-seq N`
//! (another process, on the running daemon's outbox) re-queues the stored records and the
//! running publisher sends them again, flagged `replay`. Errors name the problem.

#[path = "common/delivery.rs"]
mod delivery_common;

use std::process::Command;
use std::time::Duration;

use delivery_common::*;
use lumiq::delivery::{
    synthetic, BrokerConfig, LinkState, Outbox, OutboxConfig, Publisher, PublisherConfig, Topics,
};

fn lumiq(args: &[&str]) -> std::process::Output {
    Command::new(LUMIQ).args(args).output().unwrap()
}

#[test]
fn replay_from_seq_resends_acknowledged_records_through_the_running_publisher() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = Mosquitto::plain(dir.path(), port, false);
    let p = port.to_string();
    let sub = subscribe_ready(
        s(&[
            "-h",
            "127.0.0.1",
            "-p",
            &p,
            "-q",
            "1",
            "-v",
            "-t",
            "lumiq/v1/lab/imager-01/#",
        ]),
        &s(&["-h", "127.0.0.1", "-p", &p]),
    );
    let schemas = Schemas::load();
    let rt = Runtime::new();
    let path = dir.path().join("outbox.sqlite");
    let ob = Outbox::open(&path, &OutboxConfig::new("imager-01")).unwrap();
    let mut broker = BrokerConfig::new("127.0.0.1", port);
    broker.keep_alive = Duration::from_secs(5);
    let mut cfg =
        PublisherConfig::new(Topics::new("lumiq/v1", "lab", "imager-01").unwrap(), broker);
    cfg.housekeeping_interval = Duration::from_millis(100);
    let publisher = {
        let _g = rt.handle.enter();
        Publisher::spawn(ob.clone(), cfg).unwrap()
    };
    for n in 0..10 {
        ob.commit(&synthetic::record("imager-01", n)).unwrap();
    }
    wait_for(Duration::from_secs(10), "10 records acknowledged", || {
        publisher.status().unacked == 0
    });
    wait_for(Duration::from_secs(5), "10 records received", || {
        tally(&schemas, &lumiq_messages(&sub)).copies == 10
    });

    // Another process asks for a replay from seq 4.
    let out = lumiq(&[
        "replay",
        "--outbox",
        path.to_str().unwrap(),
        "--from-seq",
        "4",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            o["from_seq"].as_u64(),
            o["to_seq"].as_u64(),
            o["requeued"].as_u64()
        ),
        (Some(4), Some(10), Some(7))
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stderr).trim());

    wait_for(Duration::from_secs(10), "the 7 replayed copies", || {
        tally(&schemas, &lumiq_messages(&sub)).replays == 7
    });
    wait_for(
        Duration::from_secs(5),
        "the replayed rows acknowledged again",
        || publisher.status().unacked == 0,
    );
    let t = tally(&schemas, &lumiq_messages(&sub));
    assert_eq!((t.received.len(), t.copies, t.duplicates), (10, 17, 7));
    let mut replayed: Vec<u64> = lumiq_messages(&sub)
        .iter()
        .filter(|(t, _)| t.ends_with("/measurement"))
        .map(|(_, p)| serde_json::from_str::<serde_json::Value>(p).unwrap())
        .filter(|v| v["replay"] == true)
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    replayed.sort();
    assert_eq!(replayed, (4..=10).collect::<Vec<_>>());
    assert_eq!(publisher.status().link, LinkState::Connected);

    // Bad requests are refused with a reason.
    let out = lumiq(&[
        "replay",
        "--outbox",
        path.to_str().unwrap(),
        "--from-seq",
        "11",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("replay from seq 11") && err.contains("last seq committed is 10"),
        "{err}"
    );
    let out = lumiq(&[
        "replay",
        "--outbox",
        dir.path().join("nope.sqlite").to_str().unwrap(),
        "--from-seq",
        "1",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file"));
    rt.block_on(publisher.shutdown(Duration::from_secs(3)));
}

#[test]
fn replay_before_the_retention_window_starts_at_the_oldest_stored_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.sqlite");
    let mut cfg = OutboxConfig::new("imager-01");
    cfg.retention = Duration::from_millis(1);
    let ob = Outbox::open(&path, &cfg).unwrap();
    for n in 0..6 {
        ob.commit(&synthetic::record("imager-01", n)).unwrap();
    }
    let t = chrono::Utc::now().timestamp_millis() - 1000;
    ob.mark_acked(&[(1, t), (2, t), (3, t)]).unwrap();
    assert_eq!(ob.prune_expired().unwrap(), 3);
    drop(ob);
    let out = lumiq(&[
        "replay",
        "--outbox",
        path.to_str().unwrap(),
        "--from-seq",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("records before seq 4 were pruned"), "{err}");
    let o: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(o["from_seq"], 4);
    assert_eq!(o["pruned_before"], 4);
    assert_eq!(o["already_pending"], 3);
}
