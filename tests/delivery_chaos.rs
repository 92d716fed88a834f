//! Chaos: no measurement is lost whatever happens to the broker, the network or the
//! publishing process.
//!
//! Real processes throughout: Mosquitto with persistence (started here on a free port), an
//! independent subscriber standing in for the LIMS (`mosquitto_sub` with a persistent session
//! at QoS 1, connected straight to the broker), `lumiq deliver-test` publishing through a TCP
//! proxy. While 320 records are produced, the broker is SIGKILLed and restarted, the proxy's
//! link is cut, and the publisher is SIGKILLed and restarted (once together with the broker).
//!
//! Then the subscriber's view is checked against the outbox the way a LIMS would: every
//! payload valid against its schema, every id known, no seq missing; duplicates counted. If the
//! broker lost PUBACKed messages (Mosquitto acknowledges before its persistence file is
//! written, so a SIGKILL can drop them) the LIMS sees the gap and asks `lumiq replay
//! --from-seq N`; the test reports how many needed that.

#[path = "common/delivery.rs"]
mod delivery_common;

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use delivery_common::*;
use lumiq::delivery::Outbox;

const RECORDS: u64 = 320;
const INSTRUMENT: &str = "imager-01";

fn publisher_args(outbox: &str, port: u16) -> Vec<String> {
    s(&[
        "deliver-test",
        "--outbox",
        outbox,
        "--port",
        &port.to_string(),
        "--site",
        "lab",
        "--instrument",
        INSTRUMENT,
        "--produce",
        &RECORDS.to_string(),
        "--interval-ms",
        "20",
        "--exit-when-delivered",
        "--max-runtime-s",
        "90",
    ])
}

/// Highest seq a publisher process printed as committed.
fn last_committed(p: &Lumiq) -> u64 {
    p.out
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| l.strip_prefix("committed "))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .max()
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy)]
enum Chaos {
    KillBroker,
    CutLink,
    KillPublisher,
    KillBoth,
}

#[test]
fn chaos_no_record_lost_through_broker_kills_link_cuts_and_publisher_kills() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let bport = free_port();
    let mut broker = Mosquitto::plain(dir.path(), bport, true);
    let proxy = Proxy::start(bport);
    let schemas = Schemas::load();
    let port = bport.to_string();
    let sub = subscribe_ready(
        s(&[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-c",
            "-i",
            "lims-chaos",
            "-q",
            "1",
            "-v",
            "-t",
            "lumiq/v1/lab/imager-01/#",
        ]),
        &s(&["-h", "127.0.0.1", "-p", &port]),
    );
    // Let the broker save the subscriber's session before anything can kill it.
    thread::sleep(Duration::from_millis(300));

    let outbox_path = dir.path().join("outbox.sqlite");
    let outbox = outbox_path.to_str().unwrap().to_string();
    let args = publisher_args(&outbox, proxy.port);
    let mut publisher = Lumiq::start(&args);

    let schedule: Vec<(u64, Chaos)> = vec![
        (25, Chaos::KillBroker),
        (50, Chaos::CutLink),
        (75, Chaos::KillPublisher),
        (100, Chaos::KillBroker),
        (125, Chaos::CutLink),
        (150, Chaos::KillPublisher),
        (175, Chaos::KillBroker),
        (200, Chaos::CutLink),
        (230, Chaos::KillBoth),
        (260, Chaos::CutLink),
        (285, Chaos::KillBroker),
    ];
    let (mut broker_kills, mut cuts, mut publisher_kills) = (0, 0, 0);
    let mut last_seen = 0;
    for (at, what) in schedule {
        wait_for(
            Duration::from_secs(60),
            &format!("seq {at} to be committed"),
            || {
                last_seen = last_seen.max(last_committed(&publisher));
                last_seen >= at
            },
        );
        match what {
            Chaos::KillBroker => {
                broker.kill9();
                broker_kills += 1;
                // The publisher keeps committing while the broker is down.
                thread::sleep(Duration::from_millis(400));
                broker.restart();
            }
            Chaos::CutLink => {
                proxy.cut();
                cuts += 1;
            }
            Chaos::KillPublisher => {
                publisher.kill9();
                publisher_kills += 1;
                publisher = Lumiq::start(&args);
            }
            Chaos::KillBoth => {
                publisher.kill9();
                broker.kill9();
                publisher_kills += 1;
                broker_kills += 1;
                thread::sleep(Duration::from_millis(300));
                broker.restart();
                publisher = Lumiq::start(&args);
            }
        }
        eprintln!(
            "chaos at seq {at}: {what:?} ({:.1} s)",
            t0.elapsed().as_secs_f64()
        );
    }
    publisher.wait_success(Duration::from_secs(60));
    let last_status = publisher
        .final_status()
        .expect("deliver-test prints its status");
    assert_eq!(last_status["unacked"], 0, "{last_status}");

    let ob = Outbox::open_existing(&outbox_path).unwrap();
    ob.check_integrity().unwrap();
    let index = ob.index().unwrap();
    let seqs: Vec<u64> = index.iter().map(|(s, _, _)| *s).collect();
    assert_eq!(
        seqs,
        (1..=RECORDS).collect::<Vec<_>>(),
        "the outbox's seqs have a gap"
    );
    assert!(
        index.iter().all(|(_, _, acked)| *acked),
        "every row acknowledged"
    );

    // The LIMS's view: wait for the subscriber to catch up (it reconnects after each kill).
    let missing = |t: &Tally| -> BTreeSet<u64> {
        let got: BTreeSet<u64> = t.received.values().copied().collect();
        (1..=RECORDS).filter(|s| !got.contains(s)).collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut tallied = tally(&schemas, &lumiq_messages(&sub));
    while !missing(&tallied).is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(200));
        tallied = tally(&schemas, &lumiq_messages(&sub));
    }
    let lost_first_pass = missing(&tallied);
    let mut replayed = 0;
    if let Some(&first) = lost_first_pass.iter().next() {
        // A gap: the LIMS asks for a replay from the first missing seq.
        eprintln!(
            "broker lost {} PUBACKed records (seqs {:?}); replaying from seq {first}",
            lost_first_pass.len(),
            lost_first_pass
        );
        let out = std::process::Command::new(LUMIQ)
            .args([
                "replay",
                "--outbox",
                &outbox,
                "--from-seq",
                &first.to_string(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        replayed = outcome["requeued"].as_u64().unwrap();
        let mut p = Lumiq::start(&publisher_args(&outbox, bport));
        p.wait_success(Duration::from_secs(30));
        wait_for(Duration::from_secs(10), "the replayed records", || {
            tallied = tally(&schemas, &lumiq_messages(&sub));
            missing(&tallied).is_empty()
        });
    }

    // 0 lost, 0 unknown ids, seq without gaps, each id with the seq the outbox gave it.
    let known: std::collections::HashMap<&str, u64> =
        index.iter().map(|(s, id, _)| (id.as_str(), *s)).collect();
    let unknown: Vec<&String> = tallied
        .received
        .keys()
        .filter(|id| !known.contains_key(id.as_str()))
        .collect();
    assert!(unknown.is_empty(), "ids the outbox never held: {unknown:?}");
    for (id, seq) in &tallied.received {
        assert_eq!(known[id.as_str()], *seq, "{id}");
    }
    assert!(missing(&tallied).is_empty());
    assert_eq!(tallied.received.len() as u64, RECORDS);

    // Status: online after every connection, the will after kills, offline at the clean stop.
    let reasons: Vec<&str> = tallied
        .statuses
        .iter()
        .map(|v| v["reason"].as_str().unwrap())
        .collect();
    let boots: BTreeSet<&str> = tallied
        .statuses
        .iter()
        .map(|v| v["boot_id"].as_str().unwrap())
        .collect();
    assert!(reasons.contains(&"connected"));
    assert!(
        reasons.contains(&"connection_lost"),
        "the last will after a SIGKILL: {reasons:?}"
    );
    assert_eq!(reasons.last(), Some(&"clean_stop"), "{reasons:?}");
    assert!(
        boots.len() as u32 > publisher_kills,
        "a boot id per publisher start"
    );

    let line = format!(
        "chaos: {RECORDS} records, {} copies received, {} duplicates, {} sent as replays; \
         broker SIGKILLs {broker_kills}, link cuts {cuts}, publisher SIGKILLs {publisher_kills}; \
         lost before replay {}, re-queued by replay {replayed}; lost 0, unknown ids 0, seq gaps 0; \
         {} status messages from {} boots; {:.1} s",
        tallied.copies,
        tallied.duplicates,
        tallied.replays,
        lost_first_pass.len(),
        tallied.statuses.len(),
        boots.len(),
        t0.elapsed().as_secs_f64()
    );
    eprintln!("{line}");
    std::fs::write(
        std::env::temp_dir().join("lumiq-delivery-chaos-last.txt"),
        format!("{line}\n"),
    )
    .ok();
}
