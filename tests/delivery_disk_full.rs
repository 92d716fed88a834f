//! A full outbox refuses new acquisitions with a clear status, keeps (and keeps delivering)
//! everything already stored, stays intact, and accepts again when room returns.
//!
//! - `disk_full_...`: the database is made "full" with SQLite's `max_page_count` (an
//!   injected limit: the same SQLITE_FULL error a full disk gives, without mounting anything).
//! - `real_small_filesystem_...`: the outbox on a real 1 MiB tmpfs (half of it taken by a file), when this machine lets
//!   the test mount one (root with CAP_SYS_ADMIN); skipped, saying so, otherwise.
//! - `unacked_cap_...`: the configured cap on unacknowledged records, while the broker is
//!   unreachable, with username/password authentication once it is up.

#[path = "common/delivery.rs"]
mod delivery_common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use delivery_common::*;
use lumiq::delivery::{
    synthetic, BrokerConfig, FullReason, LinkState, Outbox, OutboxConfig, OutboxError, Publisher,
    PublisherConfig, PublisherHandle, Topics,
};

const INSTRUMENT: &str = "imager-01";

fn publisher(
    rt: &Runtime,
    outbox: &Outbox,
    port: u16,
    creds: Option<(&str, &str)>,
) -> PublisherHandle {
    let mut broker = BrokerConfig::new("127.0.0.1", port);
    broker.keep_alive = Duration::from_secs(5);
    broker.connect_timeout = Duration::from_secs(2);
    if let Some((u, p)) = creds {
        broker.username = Some(u.into());
        broker.password = Some(p.into());
    }
    let mut cfg = PublisherConfig::new(Topics::new("lumiq/v1", "lab", INSTRUMENT).unwrap(), broker);
    cfg.reconnect_min = Duration::from_millis(100);
    cfg.reconnect_max = Duration::from_millis(300);
    cfg.housekeeping_interval = Duration::from_millis(100);
    let _g = rt.handle.enter();
    Publisher::spawn(outbox.clone(), cfg).unwrap()
}

fn subscriber(port: u16, extra: &[&str]) -> Subscriber {
    let p = port.to_string();
    let mut args = s(&["-h", "127.0.0.1", "-p", &p]);
    args.extend(s(extra));
    let probe = args.clone();
    args.extend(s(&["-q", "1", "-v", "-t", "lumiq/v1/lab/imager-01/#"]));
    subscribe_ready(args, &probe)
}

/// Commit until the outbox refuses; returns the ids committed and the refusal.
fn fill_until_full(ob: &Outbox, limit: u64) -> (Vec<String>, OutboxError) {
    let mut ids = Vec::new();
    for n in 0..limit {
        let r = synthetic::record(INSTRUMENT, n);
        match ob.commit(&r) {
            Ok(seq) => {
                assert_eq!(seq, ids.len() as u64 + 1);
                ids.push(r.measurement_id.to_string());
            }
            Err(e) => return (ids, e),
        }
    }
    panic!("the outbox took {limit} records without filling up");
}

/// Everything stored is intact: integrity check, seqs 1..=n, each record's id.
fn assert_intact(ob: &Outbox, ids: &[String]) {
    ob.check_integrity().unwrap();
    let index = ob.index().unwrap();
    assert_eq!(index.len(), ids.len());
    for (i, (seq, id, _)) in index.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1);
        assert_eq!(id, &ids[i]);
        let json = ob.record_json(*seq).unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["measurement_id"], id.as_str());
    }
}

fn delivered_ids(schemas: &Schemas, sub: &Subscriber) -> std::collections::BTreeSet<String> {
    tally(schemas, &lumiq_messages(sub))
        .received
        .into_keys()
        .collect()
}

/// The common part of both disk-full tests, once the outbox is full.
fn check_full_then_resume(
    ob: &Outbox,
    p: &PublisherHandle,
    sub: &Subscriber,
    schemas: &Schemas,
    ids: &mut Vec<String>,
    err: OutboxError,
    free_space: impl FnOnce(),
) {
    // Refused with a clear error, and the status says so.
    eprintln!("refusal: {err}");
    assert!(
        matches!(
            err,
            OutboxError::Full {
                reason: FullReason::Disk,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("no space left") && text.contains("new acquisitions are refused"),
        "{text}"
    );
    assert!(ob.admit().is_err(), "admission refused while full");
    let st = p.status();
    assert!(!st.accepting);
    assert!(
        st.refusal
            .as_deref()
            .unwrap_or("")
            .contains("no space left"),
        "{st:?}"
    );
    // Nothing stored is lost or damaged, and it is all delivered while full.
    assert_intact(ob, ids);
    wait_for(
        Duration::from_secs(20),
        "every stored record delivered while full",
        || delivered_ids(schemas, sub).len() == ids.len(),
    );
    wait_for(Duration::from_secs(5), "the outbox_full event", || {
        tally(schemas, &lumiq_messages(sub))
            .events
            .iter()
            .any(|e| e["code"] == "outbox_full" && e["severity"] == "error")
    });

    // Room returns: admission probes the disk, commits and delivery resume.
    free_space();
    ob.admit()
        .unwrap_or_else(|e| panic!("admission after space returned: {e}"));
    for n in 0..3 {
        let r = synthetic::record(INSTRUMENT, 1000 + n);
        ob.commit(&r)
            .unwrap_or_else(|e| panic!("commit after space returned: {e}"));
        ids.push(r.measurement_id.to_string());
    }
    assert!(p.status().accepting);
    wait_for(Duration::from_secs(20), "the new records delivered", || {
        let got = delivered_ids(schemas, sub);
        ids.iter().all(|id| got.contains(id))
    });
    wait_for(Duration::from_secs(5), "the outbox_accepting event", || {
        tally(schemas, &lumiq_messages(sub))
            .events
            .iter()
            .any(|e| e["code"] == "outbox_accepting")
    });
    wait_for(Duration::from_secs(10), "every ack marked", || {
        p.status().unacked == 0
    });
    assert_intact(ob, ids);
}

#[test]
fn disk_full_refuses_clearly_keeps_everything_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = Mosquitto::plain(dir.path(), port, false);
    let sub = subscriber(port, &[]);
    let schemas = Schemas::load();
    let rt = Runtime::new();
    let path = dir.path().join("outbox.sqlite");
    let mut cfg = OutboxConfig::new(INSTRUMENT);
    cfg.max_db_bytes = Some(256 * 1024);
    let ob = Outbox::open(&path, &cfg).unwrap();
    let p = publisher(&rt, &ob, port, None);
    wait_for(Duration::from_secs(10), "the link", || {
        p.status().link == LinkState::Connected
    });

    let (mut ids, err) = fill_until_full(&ob, 1000);
    eprintln!("{} records fit in 256 KiB", ids.len());
    assert!(ids.len() > 10);
    check_full_then_resume(&ob, &p, &sub, &schemas, &mut ids, err, || {
        ob.set_max_db_bytes(None).unwrap()
    });
    rt.block_on(p.shutdown(Duration::from_secs(3)));

    // Reopened from disk: intact, nothing pending.
    drop(ob);
    let ob = Outbox::open(&path, &OutboxConfig::new(INSTRUMENT)).unwrap();
    assert_intact(&ob, &ids);
    assert_eq!(ob.stats().unwrap().unacked, 0);
}

/// Unmounts on drop.
struct Tmpfs<'a>(&'a Path);

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        Command::new("umount").arg("-l").arg(self.0).status().ok();
    }
}

#[test]
fn real_small_filesystem_refuses_clearly_keeps_everything_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN); disk_full_refuses_clearly_keeps_everything_and_resumes covers the same path with an injected limit");
        return;
    }
    let _guard = Tmpfs(&mnt);
    // A file taking room that the test frees later.
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![1u8; 512 * 1024]).unwrap();

    let port = free_port();
    let _broker = Mosquitto::plain(dir.path(), port, false);
    let sub = subscriber(port, &[]);
    let schemas = Schemas::load();
    let rt = Runtime::new();
    let path = mnt.join("outbox.sqlite");
    let ob = Outbox::open(&path, &OutboxConfig::new(INSTRUMENT)).unwrap();
    let p = publisher(&rt, &ob, port, None);
    wait_for(Duration::from_secs(10), "the link", || {
        p.status().link == LinkState::Connected
    });

    let (mut ids, err) = fill_until_full(&ob, 1000);
    eprintln!("{} records fit on the 1 MiB filesystem", ids.len());
    assert!(ids.len() > 5);
    check_full_then_resume(&ob, &p, &sub, &schemas, &mut ids, err, || {
        std::fs::remove_file(&filler).unwrap()
    });
    rt.block_on(p.shutdown(Duration::from_secs(3)));
    drop(ob);
    let ob = Outbox::open(&path, &OutboxConfig::new(INSTRUMENT)).unwrap();
    assert_intact(&ob, &ids);
    drop(ob);
}

#[test]
fn unacked_cap_refuses_while_the_broker_is_away_and_resumes_with_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rt = Runtime::new();
    let mut cfg = OutboxConfig::new(INSTRUMENT);
    cfg.max_unacked = 5;
    let ob = Outbox::open(dir.path().join("outbox.sqlite"), &cfg).unwrap();
    let p = publisher(&rt, &ob, port, Some(("imager-01", "s3cret")));

    // No broker yet: records wait, the sixth is refused, the status says why.
    let mut ids = Vec::new();
    for n in 0..5 {
        let r = synthetic::record(INSTRUMENT, n);
        ob.commit(&r).unwrap();
        ids.push(r.measurement_id.to_string());
    }
    let err = ob.commit(&synthetic::record(INSTRUMENT, 5)).unwrap_err();
    eprintln!("refusal: {err}");
    assert!(matches!(
        err,
        OutboxError::Full {
            reason: FullReason::UnackedCap { cap: 5 },
            unacked: 5,
            ..
        }
    ));
    assert!(err
        .to_string()
        .contains("5 unacknowledged records, the configured cap"));
    wait_for(
        Duration::from_secs(5),
        "a failed connection attempt",
        || p.status().last_error.is_some(),
    );
    std::thread::sleep(Duration::from_millis(200));
    let st = p.status();
    eprintln!(
        "status while the broker is away: {}",
        serde_json::to_string(&st).unwrap()
    );
    assert_ne!(st.link, LinkState::Connected);
    assert!(
        st.last_error
            .as_deref()
            .unwrap()
            .contains("connection refused"),
        "{st:?}"
    );
    assert_eq!((st.unacked, st.last_seq, st.accepting), (5, Some(5), false));
    assert!(st.oldest_unacked_age_s.unwrap() > 0.0);
    assert!(st.refusal.unwrap().contains("configured cap"));

    // The broker comes up, with a password file: delivered, accepting again.
    let pw = dir.path().join("passwords");
    let ok = Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&pw)
        .args(["imager-01", "s3cret"])
        .status()
        .unwrap();
    assert!(ok.success());
    let body = format!(
        "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\npersistence false\n",
        pw.display()
    );
    let _broker = Mosquitto::start(dir.path(), "mosquitto-pw", port, &body);
    wait_for(Duration::from_secs(10), "the backlog acknowledged", || {
        p.status().unacked == 0
    });
    let st = p.status();
    assert_eq!(st.link, LinkState::Connected);
    assert!(st.accepting && st.refusal.is_none(), "{st:?}");
    assert!(st.last_puback_at.is_some() && st.puback_latency.is_some());
    ob.commit(&synthetic::record(INSTRUMENT, 6)).unwrap();
    rt.block_on(p.shutdown(Duration::from_secs(3)));
}
