//! The archive holds the record that was committed and delivered, whatever moment the
//! daemon died at. `LUMIQ_FAULT_ABORT_AT` makes `lumiq run` (a child process, simulated
//! instrument, a Mosquitto of its own) abort at one point of an acquisition's path —
//! frames staged, record committed, outputs written, record.json written — as a SIGKILL
//! would; the daemon is started again without it, and then, for every acquisition:
//! `archive/<day>/<id>/record.json` is byte for byte the outbox's record, one record per
//! acquisition, nothing left in staging. When the record had been committed before the
//! outputs were finished, the maps made again are marked (`outputs-regenerated.txt`).

#[path = "common/delivery.rs"]
mod delivery_common;

#[path = "common/daemon.rs"]
mod daemon_common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use daemon_common::*;
use lumiq::delivery::Outbox;

/// Finished archive folders: (id, path).
fn finished(archive: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for day in std::fs::read_dir(archive).unwrap().filter_map(|e| e.ok()) {
        let name = day.file_name().to_string_lossy().into_owned();
        if !name.starts_with("20") {
            continue;
        }
        for acq in std::fs::read_dir(day.path())
            .unwrap()
            .filter_map(|e| e.ok())
        {
            out.push((acq.file_name().to_string_lossy().into_owned(), acq.path()));
        }
    }
    out
}

fn crash_then_recover(point: &str, regenerated: bool) {
    let s = setup_with("");
    let sschema = status_schema();
    let mut d = start_daemon(&s, &[("LUMIQ_FAULT_ABORT_AT", point)]);
    wait_ready(&s, &sschema);
    let o = lumiq(&["acquire", "--socket", s.socket.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let id = text(&o.stdout).trim().to_string();
    let st = wait_exit(&mut d, Duration::from_secs(240))
        .unwrap_or_else(|| panic!("{point}: the daemon did not abort; log:\n{}", log(&s)));
    assert!(!st.success(), "{point}: aborted, not a clean exit");
    assert!(
        log(&s).contains(&format!("LUMIQ_FAULT_ABORT_AT={point}")),
        "{point}: aborted at the point asked for:\n{}",
        log(&s)
    );
    let _ = std::fs::remove_file(&s.socket);

    let d = start_daemon(&s, &[]);
    let archive = s.dir.join("state/archive");
    wait_status(
        &s.socket,
        &sschema,
        Duration::from_secs(240),
        "the acquisition to be archived after the restart",
        |v| {
            v["state"] == "idle"
                && finished(&archive).iter().any(|(i, _)| *i == id)
                && std::fs::read_dir(archive.join(".staging")).unwrap().count() == 0
        },
    );
    stop_cleanly(&s, d);

    let outbox = Outbox::open_existing(s.dir.join("state/outbox.sqlite")).unwrap();
    let index = outbox.index().unwrap();
    assert_eq!(
        index.len(),
        1,
        "{point}: one record for one acquisition: {index:?}"
    );
    let folders = finished(&archive);
    assert_eq!(folders.len(), 1, "{point}: {folders:?}");
    let (fid, folder) = &folders[0];
    assert_eq!(fid, &id);
    let (_, committed) = outbox.record_by_id(&id).unwrap().expect("committed");
    let archived = std::fs::read_to_string(folder.join("record.json")).unwrap();
    assert_eq!(
        archived, committed,
        "{point}: the archived record.json is the committed record, byte for byte"
    );
    assert_eq!(
        folder.join("outputs-regenerated.txt").is_file(),
        regenerated,
        "{point}: maps made again are marked, and only then"
    );
    for f in ["radiance.tiff", "background.tiff", "overlay.png"] {
        assert!(folder.join(f).is_file(), "{point}: {f} in {folder:?}");
    }
}

#[test]
fn crash_after_staging_the_frames() {
    crash_then_recover("staged", false);
}

#[test]
fn crash_after_committing_the_record() {
    crash_then_recover("committed", true);
}

#[test]
fn crash_after_writing_the_outputs() {
    crash_then_recover("outputs_written", false);
}

#[test]
fn crash_after_writing_the_committed_record() {
    crash_then_recover("record_written", false);
}
