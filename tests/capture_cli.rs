//! `lumiq capture` as a user runs it: the simulated imager through the full USB codec and
//! a pseudo-terminal into a folder that `lumiq process` quantifies; every fault knob either
//! recovers or exits non-zero with one error line and no folder; `--help` lists the knobs.

mod common;

use std::path::Path;
use std::process::Output;

use common::lumiq;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Non-zero exit, nothing on stdout, exactly one error line mentioning every needle.
fn assert_one_line_error(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected a failure: {err}");
    assert!(o.stdout.is_empty());
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("lumiq: error"))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert_eq!(
        err.trim_end().lines().last(),
        Some(lines[0]),
        "the error is the last line: {err}"
    );
    for n in needles {
        assert!(lines[0].contains(n), "{:?} should mention {n:?}", lines[0]);
    }
}

/// Only the named entries are in the folder (no `.partial` leftovers).
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn capture_then_process() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("acq");
    let o = lumiq(&["capture", "--simulated", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("dark from the library"),
        "{}",
        stderr(&o)
    );
    let p = lumiq(&["process", out.to_str().unwrap(), "--compact"]);
    assert!(p.status.success(), "{}", stderr(&p));
    let record: serde_json::Value = serde_json::from_slice(&p.stdout).unwrap();
    assert_eq!(record["instrument_id"], "sim-ivis-01");
    assert!(record["regions"].as_array().unwrap().len() >= 5);
    assert_eq!(entries(tmp.path()), vec!["acq".to_string()]);
}

#[test]
fn recoverable_knobs_recover_and_say_so() {
    for knob in [
        "disconnect-mid-payload",
        "truncated-payload",
        "bad-trailer",
        "stall",
        "wrong-block-id",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("acq");
        let o = lumiq(&[
            "capture",
            "--simulated",
            "--out",
            out.to_str().unwrap(),
            "--fault",
            knob,
        ]);
        let err = stderr(&o);
        assert!(o.status.success(), "{knob}: {err}");
        assert!(
            err.contains(&format!(
                "faults injected: {knob} ×1; recovered: 1 frame(s) discarded and retaken"
            )),
            "{knob}: {err}"
        );
        let p = lumiq(&["process", out.to_str().unwrap(), "--compact"]);
        assert!(p.status.success(), "{knob}: {}", stderr(&p));
    }
}

#[test]
fn failing_knobs_exit_non_zero_with_one_line_and_no_folder() {
    for (args, needle) in [
        (
            vec!["--fault", "door-open"],
            "door was opened during the luminescent exposure",
        ),
        (
            vec!["--fault", "stall", "--fault-times", "3"],
            "no good frame from the camera after 3 attempts",
        ),
        (
            vec!["--fault", "disconnect-mid-payload", "--fault-times", "9"],
            "no good frame",
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("acq");
        let mut a = vec!["capture", "--simulated", "--out", out.to_str().unwrap()];
        a.extend(args.iter().copied());
        let o = lumiq(&a);
        assert_one_line_error(&o, &[needle]);
        assert!(entries(tmp.path()).is_empty(), "{:?}", entries(tmp.path()));
    }
}

#[test]
fn help_lists_the_fault_knobs() {
    let o = lumiq(&["capture", "--help"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for knob in [
        "disconnect-mid-payload",
        "truncated-payload",
        "bad-trailer",
        "stall",
        "wrong-block-id",
        "door-open",
    ] {
        assert!(text.contains(knob), "--help should list {knob}: {text}");
    }
    assert!(
        text.contains("recovers") && text.contains("fails cleanly"),
        "{text}"
    );
}

#[test]
fn bad_invocations_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let existing = tmp.path().join("exists");
    std::fs::create_dir(&existing).unwrap();
    let o = lumiq(&[
        "capture",
        "--simulated",
        "--out",
        existing.to_str().unwrap(),
    ]);
    assert_one_line_error(&o, &["already exists"]);
    let out = tmp.path().join("acq");
    let o = lumiq(&["capture", "--out", out.to_str().unwrap()]);
    assert_one_line_error(&o, &["--simulated", "--usb"]);
    let o = lumiq(&[
        "capture",
        "--out",
        out.to_str().unwrap(),
        "--usb",
        "1d6b:0104",
        "--serial-port",
        "/dev/lumiq-no-such-tty",
        "--instrument",
        "sim-ivis-01",
    ]);
    assert_one_line_error(&o, &["/dev/lumiq-no-such-tty"]);
    assert!(!out.exists());
}
