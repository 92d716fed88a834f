//! The daemon end to end, as it runs on the imager's PC: the simulated instrument (camera
//! through the USB codec, controller through a pseudo-terminal) → `lumiq run` (a child
//! process) → a real Mosquitto → an independent subscriber (`mosquitto_sub`, persistent
//! session) standing in for the LIMS.
//!
//! Checked: `lumiq acquire` over the socket gives an id whose record arrives and validates
//! (envelope, record, statuses and events against `schemas/`); `lumiq status --json`
//! validates against `schemas/status-report.schema.json` and reports the record (last seq,
//! nothing unacknowledged, regions), with exit 0; SIGTERM exits 0 well within the stop
//! budget, publishes the retained offline status and removes the socket; SIGKILL in the
//! middle of auto-acquisitions, then a restart: every committed record reaches the
//! subscriber (duplicates allowed), seqs are gap-free, the outbox passes its integrity check
//! and the archive holds only complete folders, each with its record committed.
//! A kinetic series (`lumiq acquire --kinetic N`) publishes its N measurement records, then
//! one sequence record on the same topic with the next seq, listing the frames, archived
//! byte for byte as published.
//! The LIMS's replay on the command topic (`{"replay_from_seq": N}`): refused past the last
//! seq, accepted (records re-sent flagged `replay`, a `replay_accepted` event), and
//! rate-limited, each answered by an event.
//! Also: `lumiq status` without a daemon exits 2 naming the socket and the fix, and
//! `lumiq demo --acquisitions 2` prints exactly two valid envelopes and exits 0.

#[path = "common/delivery.rs"]
mod delivery_common;

use std::collections::HashMap;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use delivery_common::*;

#[path = "common/daemon.rs"]
mod daemon_common;
use daemon_common::*;
use serde_json::Value;

#[test]
fn acquire_status_stop_kill_and_resume() {
    let s = setup_with("");
    let schemas = Schemas::load();
    let sschema = status_schema();
    let sub = subscribe(&s, "lims-e2e", true, &["#"]);

    // 1. Start, acquire from the command line, see the record arrive.
    let mut d = start_daemon(&s, &[]);
    wait_ready(&s, &sschema);
    let o = lumiq(&[
        "acquire",
        "--socket",
        s.socket.to_str().unwrap(),
        "--study",
        "STUDY-E2E",
        "--subject",
        "M7",
        "--subject",
        "M8",
    ]);
    assert!(o.status.success(), "{}{}", text(&o.stderr), log(&s));
    let id = text(&o.stdout).trim().to_string();
    assert_eq!(id.len(), 36, "an acquisition id: {id:?}");
    wait_for(Duration::from_secs(120), "the record on the broker", || {
        sub.messages()
            .iter()
            .any(|(t, p)| t.ends_with("/measurement") && p.contains(&id))
    });
    let t = tally(&schemas, &published(&sub));
    assert_eq!(t.received.get(&id), Some(&1), "first record is seq 1");
    let env: Value = published(&sub)
        .iter()
        .find(|(t, p)| t.ends_with("/measurement") && p.contains(&id))
        .map(|(_, p)| serde_json::from_str(p).unwrap())
        .unwrap();
    let record = &env["record"];
    assert_eq!(record["acquisition"]["study_id"], "STUDY-E2E");
    assert_eq!(
        record["acquisition"]["subject_ids"],
        serde_json::json!(["M7", "M8"])
    );
    // The daemon runs the default detector, with the model named and fingerprinted.
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/models/manifest.toml"))
            .unwrap();
    let sha = record["processing"]["model"]["sha256"]
        .as_str()
        .unwrap_or("");
    assert_eq!(
        record["processing"]["detector"],
        lumiq::segment::DEFAULT_DETECTOR.as_str()
    );
    assert!(
        sha.len() == 64 && manifest.contains(sha),
        "model sha256 {sha:?} from the manifest"
    );
    let regions = record["regions"].as_array().unwrap().len();
    assert!(
        regions >= 5,
        "the simulated mice's tumours are found: {regions}"
    );

    // 2. Status over the socket reports it.
    let (code, v) = wait_status(
        &s.socket,
        &sschema,
        Duration::from_secs(30),
        "the PUBACK",
        |v| {
            v["delivery"]["unacked"] == 0
                && v["delivery"]["last_acked_seq"] == 1
                && v["last_acquisition"]["id"] == id.as_str()
        },
    );
    assert_eq!(code, 0, "nothing needs a person: {}", v["attention"]);
    assert_eq!(v["attention"], serde_json::json!([]));
    assert_eq!(v["delivery"]["last_seq"], 1);
    assert_eq!(v["last_acquisition"]["id"], id.as_str());
    assert_eq!(v["last_acquisition"]["regions"], regions);
    assert_eq!(v["last_acquisition"]["trigger"], "cli");
    assert_eq!(v["camera"]["connected"], true);
    assert_eq!(v["queues"]["captures"]["capacity"], 2);
    let table = text(&lumiq(&["status", "--socket", s.socket.to_str().unwrap()]).stdout);
    assert!(
        table.contains(&id) && table.contains("last seq 1"),
        "{table}"
    );
    // A bad request is refused with a reason and counted, never queued.
    let o = lumiq(&[
        "acquire",
        "--socket",
        s.socket.to_str().unwrap(),
        "--subject",
        "a",
        "--subject",
        "b",
        "--subject",
        "c",
        "--subject",
        "d",
        "--subject",
        "e",
        "--subject",
        "f",
    ]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("at most 5"), "{}", text(&o.stderr));

    // The LIMS command topic: a bad command becomes an event with the reason; a good one
    // starts an acquisition for the study and subjects it names.
    let publish = |payload: &str| publish_command(&s, payload);
    publish(r#"{"study":"typo"}"#);
    wait_for(
        Duration::from_secs(20),
        "the command_rejected event",
        || {
            tally(&schemas, &published(&sub)).events.iter().any(|e| {
                e["code"] == "command_rejected"
                    && e["message"].as_str().unwrap().contains("unknown field")
            })
        },
    );
    publish(r#"{"study_id":"LIMS-STUDY","subject_ids":["L1","L2"],"acquire":true}"#);
    wait_for(
        Duration::from_secs(120),
        "the record the LIMS asked for",
        || {
            published(&sub)
                .iter()
                .any(|(t, p)| t.ends_with("/measurement") && p.contains("LIMS-STUDY"))
        },
    );
    let (_, v) = wait_status(
        &s.socket,
        &sschema,
        Duration::from_secs(30),
        "the LIMS record acknowledged",
        |v| v["delivery"]["last_acked_seq"] == 2 && v["last_acquisition"]["seq"] == 2,
    );
    assert_eq!(v["last_acquisition"]["trigger"], "lims");

    // 3. SIGTERM: exit 0 within the stop budget, offline status, socket removed.
    let t0 = Instant::now();
    signal(&d, "-TERM");
    let st = wait_exit(&mut d, Duration::from_secs(30)).expect("stopped within 30 s");
    assert!(st.success(), "exit status {st}: {}", log(&s));
    eprintln!("SIGTERM → exit in {:.2} s", t0.elapsed().as_secs_f64());
    assert!(!s.socket.exists(), "socket removed");
    wait_for(Duration::from_secs(5), "the offline status", || {
        tally(&schemas, &published(&sub))
            .statuses
            .last()
            .is_some_and(|st| st["state"] == "offline" && st["reason"] == "clean_stop")
    });

    // 4. Auto-acquisitions (the interval from the environment), SIGKILL in the middle.
    let mut d = start_daemon(&s, &[("LUMIQ_ACQUISITION__AUTO_INTERVAL_S", "1")]);
    wait_status(
        &s.socket,
        &sschema,
        Duration::from_secs(120),
        "auto-acquisitions",
        |v| v["delivery"]["last_seq"].as_u64().unwrap_or(0) >= 4,
    );
    // Kill while an acquisition is being processed (its raw frames in staging), if one can
    // be caught within 15 s; otherwise wherever it is.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(15) {
        match status(&s.socket, &sschema) {
            Some((_, v)) if v["state"] == "processing" => break,
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    signal(&d, "-KILL");
    wait_exit(&mut d, Duration::from_secs(10)).expect("killed");
    wait_for(Duration::from_secs(10), "the last will", || {
        tally(&schemas, &published(&sub))
            .statuses
            .last()
            .is_some_and(|st| st["reason"] == "connection_lost")
    });

    // 5. Restart: recovery, everything delivered, clean stop.
    let before = log(&s).len();
    let mut d = start_daemon(&s, &[]);
    wait_status(
        &s.socket,
        &sschema,
        Duration::from_secs(60),
        "everything acknowledged",
        |v| {
            v["state"] == "idle"
                && v["delivery"]["unacked"] == 0
                && v["delivery"]["link"] == "connected"
                && v["queues"]["records"]["waiting"] == 0
        },
    );
    signal(&d, "-TERM");
    let st = wait_exit(&mut d, Duration::from_secs(30)).expect("stopped within 30 s");
    assert!(st.success(), "{}", log(&s));

    let restart: Vec<String> = log(&s)[before..]
        .lines()
        .filter(|l| {
            l.contains("recovered") || l.contains("left unprocessed") || l.contains("interrupted")
        })
        .map(String::from)
        .collect();
    eprintln!(
        "after SIGKILL the restart found in staging: {}",
        if restart.is_empty() {
            "nothing (killed between acquisitions)".to_string()
        } else {
            restart.join("\n")
        }
    );

    // Every committed record delivered (by id), seqs gap-free, outbox intact.
    let outbox = lumiq::delivery::Outbox::open_existing(s.dir.join("state/outbox.sqlite")).unwrap();
    outbox.check_integrity().unwrap();
    let index = outbox.index().unwrap();
    let seqs: Vec<u64> = index.iter().map(|(seq, _, _)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "gap-free seqs"
    );
    assert!(seqs.len() >= 4, "{} records", seqs.len());
    wait_for(
        Duration::from_secs(10),
        "every committed record at the subscriber",
        || {
            let t = tally(&schemas, &published(&sub));
            index
                .iter()
                .all(|(seq, id, _)| t.received.get(id) == Some(seq))
        },
    );
    let t = tally(&schemas, &published(&sub));
    assert!(index.iter().all(|(_, _, acked)| *acked), "all acknowledged");
    let unknown: Vec<&String> = t
        .received
        .keys()
        .filter(|id| !index.iter().any(|(_, i, _)| i == *id))
        .collect();
    assert!(unknown.is_empty(), "records not in the outbox: {unknown:?}");
    assert_eq!(
        t.statuses.last().unwrap()["reason"],
        "clean_stop",
        "the last status is the clean stop"
    );
    eprintln!(
        "{} records, {} copies received ({} duplicates)",
        index.len(),
        t.copies,
        t.duplicates
    );

    // The archive: no staging leftovers; every folder complete and committed.
    let archive = s.dir.join("state/archive");
    let staging: Vec<_> = std::fs::read_dir(archive.join(".staging"))
        .unwrap()
        .collect();
    assert!(staging.is_empty(), "staging left: {staging:?}");
    let ids: HashMap<String, u64> = index.iter().map(|(q, i, _)| (i.clone(), *q)).collect();
    let mut folders = 0;
    for day in std::fs::read_dir(&archive).unwrap() {
        let day = day.unwrap();
        let name = day.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "failed" {
            continue;
        }
        for acq in std::fs::read_dir(day.path()).unwrap() {
            let acq = acq.unwrap().path();
            let id = acq.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                ids.contains_key(&id),
                "{} is not in the outbox",
                acq.display()
            );
            for f in [
                "acquisition.json",
                "luminescent.tiff",
                "record.json",
                "radiance.tiff",
                "overlay.png",
            ] {
                assert!(acq.join(f).is_file(), "{} lacks {f}", acq.display());
            }
            let rec: Value =
                serde_json::from_str(&std::fs::read_to_string(acq.join("record.json")).unwrap())
                    .unwrap();
            assert_eq!(rec["measurement_id"], id.as_str());
            folders += 1;
        }
    }
    assert_eq!(
        folders,
        index.len(),
        "one archive folder per committed record"
    );
}

#[test]
fn a_kinetic_series_publishes_its_sequence_record_after_its_frames() {
    let s = setup_with("");
    let schemas = Schemas::load();
    let sschema = status_schema();
    let sub = subscribe(&s, "lims-kinetic", true, &["measurement"]);
    let mut d = start_daemon(&s, &[]);
    wait_ready(&s, &sschema);
    let o = lumiq(&[
        "acquire",
        "--socket",
        s.socket.to_str().unwrap(),
        "--study",
        "STUDY-KIN",
        "--kinetic",
        "4",
        "--interval",
        "600",
    ]);
    assert!(o.status.success(), "{}{}", text(&o.stderr), log(&s));
    let first = text(&o.stdout).trim().to_string();
    let envelopes = || -> Vec<Value> {
        published(&sub)
            .iter()
            .filter(|(t, _)| t.ends_with("/measurement"))
            .map(|(t, p)| schemas.validate(t, p))
            .collect()
    };
    let t0 = Instant::now();
    while envelopes().len() < 5 {
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "timed out waiting for 4 records and a sequence record; received {}; daemon log:\n{}",
            envelopes().len(),
            log(&s)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut env = envelopes();
    env.sort_by_key(|v| v["seq"].as_u64());
    assert_eq!(env.len(), 5, "{env:?}");
    let seqs: Vec<u64> = env.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5], "one stream, no gap");
    let kinds: Vec<&str> = env
        .iter()
        .map(|v| v["record_schema"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "lumiq.measurement",
            "lumiq.measurement",
            "lumiq.measurement",
            "lumiq.measurement",
            "lumiq.sequence"
        ],
        "the sequence record comes after its frames"
    );
    assert_eq!(env[0]["measurement_id"], first.as_str());
    let seq = &env[4]["record"];
    let listed: Vec<&str> = seq["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["measurement_id"].as_str().unwrap())
        .collect();
    let frames: Vec<&str> = env[..4]
        .iter()
        .map(|v| v["measurement_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, frames);
    assert_eq!(seq["study_id"], "STUDY-KIN");
    assert_eq!(seq["frames_missing"], serde_json::json!([]));
    // The simulated injection is ten minutes before the clock starts, frames 10 min apart
    // (auto-exposure may choose more than two minutes).
    let minutes: Vec<f64> = seq["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["minutes"].as_f64().unwrap())
        .collect();
    for w in minutes.windows(2) {
        assert!(
            (w[1] - w[0] - 10.0).abs() < 0.05,
            "10 min apart: {minutes:?}"
        );
    }
    let regions = seq["regions"].as_array().unwrap();
    assert!(
        regions.len() >= 5,
        "each tumour followed: {}",
        regions.len()
    );
    for r in regions {
        assert_eq!(r["frames_found"], 4, "{r}");
        assert_eq!(r["points"].as_array().unwrap().len(), 4);
    }
    // Archived as published, and the series note is gone.
    let id = env[4]["measurement_id"].as_str().unwrap();
    let archive = s.dir.join("state/archive");
    let archived = std::fs::read_dir(&archive)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join(id).join("sequence.json"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no sequence.json for {id} under {}", archive.display()));
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(archived).unwrap()).unwrap();
    assert_eq!(&stored, seq);
    assert_eq!(
        std::fs::read_dir(archive.join(".series")).unwrap().count(),
        0,
        "no series left pending"
    );
    signal(&d, "-TERM");
    let st = wait_exit(&mut d, Duration::from_secs(30)).expect("stops");
    assert!(st.success(), "{}", log(&s));
}

/// What lumiq published (the probe and the commands sent to it left out).
fn published(sub: &Subscriber) -> Vec<(String, String)> {
    lumiq_messages(sub)
        .into_iter()
        .filter(|(t, _)| !t.ends_with("/command"))
        .collect()
}

#[test]
fn status_without_a_daemon_exits_2_and_says_what_to_check() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("nobody.sock");
    for args in [
        vec!["status", "--socket", sock.to_str().unwrap()],
        vec!["status", "--json", "--socket", sock.to_str().unwrap()],
        vec!["acquire", "--socket", sock.to_str().unwrap()],
    ] {
        let o = lumiq(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(o.stdout.is_empty());
        let err = text(&o.stderr);
        assert!(err.contains(sock.to_str().unwrap()), "{err}");
        assert!(err.contains("is the service running"), "{err}");
        assert!(err.contains("group lumiq"), "{err}");
    }
    // $LUMIQ_SOCKET is used when --socket is absent.
    let o = Command::new(LUMIQ)
        .args(["status"])
        .env("LUMIQ_SOCKET", &sock)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains(sock.to_str().unwrap()));
}

#[test]
fn demo_stops_after_two_records_printed_as_json_lines() {
    let schemas = Schemas::load();
    let mut child = Command::new(LUMIQ)
        .args(["demo", "--acquisitions", "2"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let st = wait_exit(&mut child, Duration::from_secs(180));
    if st.is_none() {
        child.kill().ok();
    }
    let o = child.wait_with_output().unwrap();
    let err = text(&o.stderr);
    assert!(st.is_some_and(|s| s.success()), "demo failed: {err}");
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "exactly two JSON lines: {out}");
    let mut ids = Vec::new();
    for l in lines {
        let v = schemas.validate("lumiq/v1/demo-lab/sim-ivis-01/measurement", l);
        ids.push(v["measurement_id"].as_str().unwrap().to_string());
    }
    assert_ne!(ids[0], ids[1]);
    assert!(err.contains("last seq 2"), "the final status table: {err}");
}

#[test]
fn the_lims_asks_for_a_replay_on_the_command_topic() {
    let s = setup_with("");
    let schemas = Schemas::load();
    let sub = subscribe(&s, "lims-replay", false, &["measurement", "event"]);
    let d = start_daemon(&s, &[]);
    wait_ready(&s, &status_schema());
    let measurements = || payloads(&sub, &schemas, "/measurement");
    let events = |code: &str| -> Vec<Value> {
        payloads(&sub, &schemas, "/event")
            .into_iter()
            .filter(|e| e["code"] == code)
            .collect()
    };
    for n in 1..=2 {
        let o = lumiq(&["acquire", "--socket", s.socket.to_str().unwrap()]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        wait_for(Duration::from_secs(240), "the record", || {
            measurements().len() >= n
        });
    }
    let command = |payload: &str| publish_command(&s, payload);

    // Past the last seq: refused, naming the last seq; nothing re-sent.
    command(r#"{"replay_from_seq": 99}"#);
    wait_for(Duration::from_secs(20), "replay_refused", || {
        !events("replay_refused").is_empty()
    });
    let refused = &events("replay_refused")[0];
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("the last seq committed is 2"),
        "{refused}"
    );
    assert_eq!(refused["severity"], "warning");

    // From seq 1: both records again, flagged replay, and the event says so.
    command(r#"{"replay_from_seq": 1}"#);
    wait_for(Duration::from_secs(30), "the replayed records", || {
        measurements().len() >= 4
    });
    let accepted = events("replay_accepted");
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    let det = &accepted[0]["details"];
    assert_eq!(
        (&det["from_seq"], &det["to_seq"], &det["requeued"]),
        (&Value::from(1), &Value::from(2), &Value::from(2)),
        "{det}"
    );
    let m = measurements();
    let replayed: Vec<u64> = m
        .iter()
        .filter(|v| v["replay"] == true)
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(replayed, [1, 2], "{m:?}");

    // At once again: rate-limited, answered, nothing re-sent.
    command(r#"{"replay_from_seq": 1}"#);
    wait_for(Duration::from_secs(20), "the rate-limited refusal", || {
        events("replay_refused").len() >= 2
    });
    let limited = &events("replay_refused")[1];
    assert!(
        limited["message"]
            .as_str()
            .unwrap()
            .contains("at most one every 10 s"),
        "{limited}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(measurements().len(), 4, "the refused replay sent nothing");
    stop_cleanly(&s, d);
}
