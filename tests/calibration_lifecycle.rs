//! The dark library through the cooling lock's life, on the simulated instrument (camera
//! through the USB codec and driver, controller through a real pseudo-terminal): the
//! first acquisition after a start re-takes its darks (the lock counts as gained then),
//! the next uses them from the library, and after the camera loses its lock and regains it
//! the next acquisition re-takes them again: the calibration set gains a newer `[[dark]]`
//! entry, taken after the lock was regained, at the camera's setpoint.

use std::path::{Path, PathBuf};

use lumiq::acquire::dark::DarkSource;
use lumiq::acquire::{simulated_imager, simulated_sequence, SimulatedOptions};
use lumiq::formats::calibration_set::{CalibrationSet, DarkEntry};

/// A private copy of the shipped library (darks are added to it).
fn library_copy(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("calibration/sim-ivis-01");
    let dst = dir.join("library");
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    dst
}

fn dark_entry(library: &Path, file: &str) -> DarkEntry {
    let set = CalibrationSet::load(library).unwrap();
    set.index
        .dark
        .iter()
        .find(|d| d.file == file)
        .cloned()
        .unwrap_or_else(|| panic!("no [[dark]] with file {file}: {:?}", set.index.dark))
}

#[test]
fn a_regained_cooling_lock_retakes_the_darks() {
    let tmp = tempfile::tempdir().unwrap();
    let library = library_copy(tmp.path());
    let opts = SimulatedOptions::default();
    let epoch = opts.epoch;
    let mut sim = simulated_imager(opts).unwrap();
    let mut cfg = simulated_sequence(library.clone(), epoch);
    cfg.dark.retake_after_relock = true;

    // 1. The first lock after the start: the shipped darks predate it.
    let first = sim.imager.standard(&cfg).unwrap();
    let d1 = &first.report.dark;
    assert_eq!(d1.source, DarkSource::Acquired, "{d1:?}");
    let reason = d1.reason.as_deref().unwrap();
    assert!(reason.contains("before the cooling lock"), "{reason}");
    let gained1 = sim.imager.cooling.gained_at.expect("the lock was seen");
    let e1 = dark_entry(&library, &d1.file);
    assert!(e1.acquired_at.unwrap() >= gained1, "{e1:?} vs {gained1}");
    assert_eq!(e1.setpoint_c, Some(cfg.cooling_setpoint_c));

    // 2. Locked throughout: the library's new dark is used.
    let second = sim.imager.standard(&cfg).unwrap();
    assert_eq!(
        second.report.dark.source,
        DarkSource::Library,
        "{:?}",
        second.report.dark
    );
    assert_eq!(second.report.dark.file, d1.file);
    assert_eq!(sim.imager.cooling.gained_at, Some(gained1));

    // 3. The sensor warms by 5 °C: the acquire stage's polling sees the lock lost.
    sim.camera.disturb_temperature(5.0);
    let (temp_c, locked) = sim.imager.poll_cooling().unwrap();
    assert!(!locked, "still locked at {temp_c} °C");
    assert!(!sim.imager.cooling.locked);

    // 4. The next acquisition waits for the lock again, then re-takes its darks.
    let third = sim.imager.standard(&cfg).unwrap();
    let gained2 = sim.imager.cooling.gained_at.unwrap();
    assert!(gained2 > gained1, "{gained2} vs {gained1}");
    let d3 = &third.report.dark;
    assert_eq!(d3.source, DarkSource::Acquired, "{d3:?}");
    assert!(d3.frames_acquired >= 2, "{d3:?}");
    let reason = d3.reason.as_deref().unwrap();
    assert!(reason.contains("before the cooling lock"), "{reason}");
    // Auto-exposure may choose a slightly different exposure: the same entry's next
    // version, or a new entry beside it; either way the newest dark of the set.
    let e3 = dark_entry(&library, &d3.file);
    if d3.file == d1.file {
        assert_eq!(e3.version, e1.version + 1, "{e3:?} after {e1:?}");
    }
    assert!(e3.acquired_at.unwrap() > e1.acquired_at.unwrap(), "{e3:?}");
    let set = CalibrationSet::load(&library).unwrap();
    assert!(
        set.index
            .dark
            .iter()
            .filter(|d| d.file != e3.file)
            .all(|d| d.acquired_at.unwrap() < e3.acquired_at.unwrap()),
        "{:?}",
        set.index.dark
    );
    assert!(e3.acquired_at.unwrap() >= gained2, "{e3:?} vs {gained2}");
    assert_eq!(e3.setpoint_c, Some(cfg.cooling_setpoint_c));
}

/// Without the setting (as `lumiq capture` runs), the lock is still followed but the
/// library's darks are judged by their age alone.
#[test]
fn without_the_setting_the_library_dark_is_used() {
    let tmp = tempfile::tempdir().unwrap();
    let library = library_copy(tmp.path());
    let opts = SimulatedOptions::default();
    let epoch = opts.epoch;
    let mut sim = simulated_imager(opts).unwrap();
    let cfg = simulated_sequence(library.clone(), epoch);
    assert!(!cfg.dark.retake_after_relock);
    let c = sim.imager.standard(&cfg).unwrap();
    assert_eq!(
        c.report.dark.source,
        DarkSource::Library,
        "{:?}",
        c.report.dark
    );
    assert!(sim.imager.cooling.gained_at.is_some());
}
