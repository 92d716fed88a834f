//! The daemon runs the daily QC by itself (`[qc] mounted`, `[qc] schedule`): the simulated
//! instrument's response is set off its calibration (`[camera] sim_response`), the daemon
//! images the mounted reference source, measures the response factor, keeps it in the QC
//! history and announces it once; the next record is corrected by it.
//!
//! Checked against a real Mosquitto and `mosquitto_sub`, the daemon a child process:
//! - `lumiq acquire --qc` at response 0.97: one `qc_pass` event naming the acquisition,
//!   its trigger and its archive folder; the factor within 1 % of 0.97; the history's
//!   entry has the acquisition's id; the folder holds the frames, `qc.json` and the marks;
//!   no measurement record is published for it; status shows outcome `qc` and the counter;
//!   the next record carries the QC's id and `qc_corrected_flux = total_flux / k`; after
//!   several status periods the QC is still announced exactly once;
//! - response 0.85 on `schedule = "every 4 s"`: QC runs without being asked, at least
//!   twice, each `out_of_tolerance`, `lumiq status` asks for a person and exits 1.

#[path = "common/delivery.rs"]
mod delivery_common;

#[path = "common/daemon.rs"]
mod daemon_common;

use std::path::Path;
use std::time::{Duration, Instant};

use daemon_common::*;
use delivery_common::*;
use serde_json::Value;

fn qc_section(response: f64, schedule: Option<&str>) -> String {
    format!(
        r#"
[camera]
kind = "simulated"
sim_response = {response}

[qc]
source_id = "LED-0042"
source_kind = "led"
radiance = 5.0e5
reference_date = "2026-01-15"
source_centre_cm = [11.2, 11.2]
source_radius_cm = 1.5
tolerance = 0.10
mounted = true
{}
"#,
        schedule.map_or(String::new(), |s| format!("schedule = {s:?}"))
    )
}

/// The setup's configuration with the `[camera]` it already has replaced by `extra`'s.
fn setup_qc(response: f64, schedule: Option<&str>) -> Setup {
    let s = setup_with(&qc_section(response, schedule));
    let text = std::fs::read_to_string(&s.config).unwrap();
    let once = text.replacen("[camera]\nkind = \"simulated\"\n", "", 1);
    assert_ne!(once, text, "the base configuration has a [camera] section");
    std::fs::write(&s.config, once).unwrap();
    s
}

fn qc_events(sub: &Subscriber, schemas: &Schemas) -> Vec<Value> {
    payloads(sub, schemas, "/event")
        .into_iter()
        .filter(|e| e["kind"] == "qc")
        .collect()
}

fn history(s: &Setup) -> Vec<Value> {
    std::fs::read_to_string(s.dir.join("state/qc/history.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_qc_on_request_measures_the_drift_and_corrects_the_next_record() {
    let s = setup_qc(0.97, None);
    let schemas = Schemas::load();
    let sschema = status_schema();
    let sub = subscribe(&s, "lims-qc", false, &["measurement", "event"]);
    let d = start_daemon(&s, &[]);
    wait_ready(&s, &sschema);

    let o = lumiq(&["acquire", "--qc", "--socket", s.socket.to_str().unwrap()]);
    assert!(o.status.success(), "{}{}", text(&o.stderr), log(&s));
    let qc_id = text(&o.stdout).trim().to_string();
    let (_, st) = wait_status(
        &s.socket,
        &sschema,
        Duration::from_secs(240),
        "the QC acquisition",
        |v| v["last_acquisition"]["id"] == qc_id.as_str(),
    );
    let done_at = Instant::now();
    let last = &st["last_acquisition"];
    assert_eq!(last["outcome"], "qc", "{}\n{}", st, log(&s));
    assert_eq!(last["trigger"], "cli");
    assert_eq!(last["error"], Value::Null, "a pass: {last}");
    assert_eq!(st["acquisitions"]["qc"], 1);
    assert_eq!(st["acquisitions"]["committed"], 0, "a QC is not a record");
    assert_eq!(st["qc"]["applied_qc_id"], qc_id.as_str());
    assert_eq!(st["qc"]["verdict"], "pass");

    // The history: one entry, the acquisition's id, the instrument's drift.
    let h = history(&s);
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0]["qc_id"], qc_id.as_str());
    let k = h[0]["response_factor"]["value"].as_f64().unwrap();
    let k_sigma = h[0]["response_factor"]["uncertainty"].as_f64().unwrap();
    eprintln!("response factor at sim_response 0.97: {k:.5} ± {k_sigma:.5}");
    assert!(
        (k / 0.97 - 1.0).abs() < 0.01,
        "k = {k} should be within 1 % of 0.97"
    );

    // The archive folder: frames, result, marks; recorded as the history's input.
    let folder = Path::new(h[0]["input"].as_str().unwrap());
    assert!(
        folder.starts_with(s.dir.join("state/archive")),
        "{folder:?}"
    );
    for f in [
        "acquisition.json",
        "qc.json",
        ".qc-acquisition",
        ".delivered",
    ] {
        assert!(
            folder.join(f).is_file(),
            "{} missing",
            folder.join(f).display()
        );
    }
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("qc.json")).unwrap()).unwrap();
    assert_eq!(stored, h[0], "qc.json is the history's entry");

    // The event, with what ties it to the acquisition.
    wait_for(Duration::from_secs(30), "the qc event", || {
        !qc_events(&sub, &schemas).is_empty()
    });
    let ev = qc_events(&sub, &schemas);
    assert_eq!(ev[0]["code"], "qc_pass", "{ev:?}");
    assert_eq!(ev[0]["details"]["qc_id"], qc_id.as_str());
    assert_eq!(ev[0]["details"]["acquisition_id"], qc_id.as_str());
    assert_eq!(ev[0]["details"]["trigger"], "cli");
    assert_eq!(ev[0]["details"]["folder"], folder.to_str().unwrap());
    assert_eq!(ev[0]["details"]["response_factor"].as_f64(), Some(k));

    // The next measurement is corrected by it.
    let o = lumiq(&["acquire", "--socket", s.socket.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let id = text(&o.stdout).trim().to_string();
    wait_for(Duration::from_secs(240), "the measurement record", || {
        !payloads(&sub, &schemas, "/measurement").is_empty()
    });
    let m = payloads(&sub, &schemas, "/measurement");
    assert_eq!(m.len(), 1, "no record for the QC acquisition: {m:?}");
    assert_eq!(m[0]["measurement_id"], id.as_str());
    let rec = &m[0]["record"];
    assert_eq!(rec["qc"]["qc_id"], qc_id.as_str(), "{}", rec["qc"]);
    assert_eq!(rec["qc"]["state"], "current");
    let regions = rec["regions"].as_array().unwrap();
    assert!(!regions.is_empty());
    for r in regions {
        let total = r["total_flux"]["value"].as_f64().unwrap();
        let corrected = r["qc_corrected_flux"]["value"].as_f64().unwrap();
        assert!(
            (corrected * k / total - 1.0).abs() < 1e-9,
            "corrected {corrected} = total {total} / k {k}"
        );
    }

    // Two status periods later the watch of the history has not announced it again.
    std::thread::sleep(Duration::from_secs(11).saturating_sub(done_at.elapsed()));
    let ev = qc_events(&sub, &schemas);
    assert_eq!(ev.len(), 1, "announced once: {ev:?}");
    stop_cleanly(&s, d);
}

#[test]
fn a_scheduled_qc_runs_by_itself_and_flags_an_instrument_out_of_tolerance() {
    let s = setup_qc(0.85, Some("every 4 s"));
    let schemas = Schemas::load();
    let sschema = status_schema();
    let sub = subscribe(&s, "lims-qc-schedule", false, &["measurement", "event"]);
    let d = start_daemon(&s, &[]);
    let (code, st) = wait_status(
        &s.socket,
        &sschema,
        Duration::from_secs(300),
        "two scheduled QC acquisitions",
        |v| v["acquisitions"]["qc"].as_u64() >= Some(2),
    );
    assert_eq!(st["last_acquisition"]["outcome"], "qc", "{st}");
    assert_eq!(st["last_acquisition"]["trigger"], "qc_schedule");
    assert_eq!(st["qc"]["verdict"], "out_of_tolerance");
    assert_eq!(code, 1, "a person is needed: {}", st["attention"]);
    assert!(
        st["attention"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str().unwrap().contains("out of tolerance")),
        "{}",
        st["attention"]
    );
    let h = history(&s);
    assert!(h.len() >= 2, "{h:?}");
    for q in &h {
        assert_eq!(q["verdict"], "out_of_tolerance");
        let k = q["response_factor"]["value"].as_f64().unwrap();
        eprintln!(
            "response factor at sim_response 0.85: {k:.5} ± {:.5}",
            q["response_factor"]["uncertainty"].as_f64().unwrap()
        );
        assert!((k / 0.85 - 1.0).abs() < 0.01, "k = {k}");
    }
    wait_for(Duration::from_secs(30), "two qc events", || {
        qc_events(&sub, &schemas).len() >= 2
    });
    for ev in qc_events(&sub, &schemas) {
        assert_eq!(ev["code"], "qc_out_of_tolerance", "{ev}");
        assert_eq!(ev["severity"], "warning");
        assert_eq!(ev["details"]["trigger"], "qc_schedule");
    }
    assert!(
        payloads(&sub, &schemas, "/measurement").is_empty(),
        "QC acquisitions publish no record"
    );
    stop_cleanly(&s, d);
}

#[test]
fn a_schedule_without_a_mounted_source_is_refused_with_the_fix() {
    let s = setup_with("");
    let text_cfg = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        text_cfg
            + &qc_section(1.0, Some("07:30"))
                .replace("[camera]\nkind = \"simulated\"\nsim_response = 1\n", "")
                .replace("mounted = true", "mounted = false"),
    )
    .unwrap();
    let o = lumiq(&["config", "check", s.config.to_str().unwrap()]);
    let err = text(&o.stderr) + &text(&o.stdout);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("qc.schedule"), "{err}");
    assert!(err.contains("qc.mounted = true"), "{err}");
}
