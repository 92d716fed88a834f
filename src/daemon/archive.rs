//! The archive: one folder per acquisition under `<state.dir>/archive`, written atomically,
//! kept until delivered and older than the retention period.
//!
//! Layout:
//! - `.staging/<id>/` — an acquisition being written: the raw acquisition folder
//!   (`acquisition.json`, frames, `capture.json`), then the outputs of processing
//!   (`record.json`, `radiance.tiff`, `background.tiff`, `overlay.png`); `record.json` is
//!   replaced by the outbox's bytes for the id just before the folder is finished
//!   (`super::committed`).
//! - `<YYYY-MM-DD>/<id>/` — finished: every file fsync'd, renamed from `.staging` only after
//!   the record was committed to the outbox, then the parent folders fsync'd. A folder here
//!   is complete and its record is in the outbox.
//! - `failed/<id>/` — raw frames that could not be processed (a bad input), with
//!   `error.txt`, kept for a person. Frames the disk failed to read stay in `.staging`.
//! - `<YYYY-MM-DD>/<id>/.delivered` — written once the outbox says the broker acknowledged
//!   the record: retention deletes only folders that have it.
//! - `<YYYY-MM-DD>/<sequence_id>/sequence.json` — a kinetic series' sequence record, byte for
//!   byte as committed (staged, committed, then finished like an acquisition).
//! - `.series/<sequence_id>.json` — a kinetic series taken whose sequence record is not yet
//!   committed ([`SeriesRef`]): removed once it is.
//! - `<YYYY-MM-DD>/<id>/` with `.qc-acquisition` — a QC acquisition: the reference source's
//!   raw frames and `qc.json`, the result appended to the QC history (nothing goes to the
//!   outbox; it is marked delivered once the result is in the history).
//!
//! Recovery at start ([`Archive::recover`]): a staging folder with a readable `record.json`
//! and every output (`.outputs-complete`) is committed (commits are idempotent by id) and
//! finished; one with the raw acquisition but not all outputs is processed again (its id,
//! hence its record's id, is kept), and so is one the disk fails to read; anything else
//! (a crash while the raw frames were written) is removed. A staged `sequence.json` is
//! committed and finished like a processed acquisition. A staged QC acquisition whose
//! frames are whole is measured again, or finished with the result already in the history. So a crash at any moment leaves
//! no half-written acquisition folder and loses no acquisition that reached the disk.
//!
//! Does not own: the acquisition folder's format ([`crate::formats::acquisition_folder`]) or
//! processing ([`crate::job`]).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};

use crate::acquire::Capture;
use crate::errors::Fault;
use crate::formats::acquisition_folder::{self, FrameKind};
use crate::record::MeasurementRecord;
use crate::sequence::{SequenceRecord, SeriesRef};
use crate::simulate::Truth;

pub const STAGING_DIR: &str = ".staging";
pub const FAILED_DIR: &str = "failed";
pub const DELIVERED_MARK: &str = ".delivered";
pub const RECORD_FILE: &str = "record.json";
pub const SEQUENCE_FILE: &str = "sequence.json";
pub const SERIES_DIR: &str = ".series";
pub const ERROR_FILE: &str = "error.txt";
/// Written into a staging folder once every output of processing is on disk.
pub const OUTPUTS_MARK: &str = ".outputs-complete";

/// An archive I/O failure, naming the path and what to check.
#[derive(Debug, thiserror::Error)]
#[error("archive {path}: {problem}; check that the state directory is writable and has free space")]
pub struct ArchiveError {
    pub path: String,
    pub problem: String,
}

fn err(path: &Path, problem: impl std::fmt::Display) -> ArchiveError {
    ArchiveError {
        path: path.display().to_string(),
        problem: problem.to_string(),
    }
}

/// What a staging folder left by a previous run holds.
#[derive(Debug)]
pub enum Leftover {
    /// Processed: commit the record, then finish the folder.
    Processed {
        staging: PathBuf,
        record: Box<MeasurementRecord>,
    },
    /// Raw acquisition only: process it again.
    Raw { staging: PathBuf, id: String },
    /// A QC acquisition (the reference source's image, [`acquisition_folder::QC_MARK`]):
    /// measure it again unless its result is already in the QC history, then finish.
    Qc { staging: PathBuf, id: String },
    /// A sequence record (`json`, as it is to be committed): commit it, then finish.
    Sequence {
        staging: PathBuf,
        record: Box<SequenceRecord>,
        json: String,
    },
}

/// What a retention pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub marked_delivered: usize,
    pub deleted: usize,
    /// Past the retention period but not known delivered: kept.
    pub kept_undelivered: usize,
}

#[derive(Debug, Clone)]
pub struct Archive {
    root: PathBuf,
}

impl Archive {
    /// Open (create) the archive at `root`.
    pub fn open(root: &Path) -> Result<Archive, ArchiveError> {
        for d in [
            root.to_path_buf(),
            root.join(STAGING_DIR),
            root.join(SERIES_DIR),
        ] {
            std::fs::create_dir_all(&d).map_err(|e| err(&d, format!("cannot create: {e}")))?;
        }
        Ok(Archive {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn staging_path(&self, id: &str) -> PathBuf {
        self.root.join(STAGING_DIR).join(id)
    }

    /// Write a capture's raw acquisition folder into `.staging/<id>` (frames first,
    /// `acquisition.json` last). A QC acquisition (`qc`) is marked before anything else
    /// ([`acquisition_folder::QC_MARK`]), so a crash never leaves it to be taken for a
    /// measurement.
    pub fn stage_capture(
        &self,
        id: &str,
        c: &Capture,
        truth: Option<&Truth>,
        qc: bool,
    ) -> Result<PathBuf, ArchiveError> {
        let dir = self.staging_path(id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| err(&dir, format!("cannot clear: {e}")))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| err(&dir, format!("cannot create: {e}")))?;
        if qc {
            write_synced(&dir.join(acquisition_folder::QC_MARK), b"")?;
        }
        let write_json = |name: &str, v: &dyn erased::Json| -> Result<(), ArchiveError> {
            let p = dir.join(name);
            std::fs::write(&p, v.json()).map_err(|e| err(&p, format!("cannot write: {e}")))
        };
        write_json(crate::acquire::folder::REPORT_FILE, &c.report)?;
        if let Some(t) = truth {
            write_json(crate::acquire::folder::TRUTH_FILE, t)?;
        }
        let acq = c.raw_acquisition();
        acquisition_folder::write(&dir, &acq, FrameKind::Luminescent).map_err(|e| err(&dir, e))?;
        Ok(dir)
    }

    /// Where [`Archive::finish`] at `now` puts the folder `id`.
    pub fn finished_path(&self, id: &str, now: DateTime<Utc>) -> PathBuf {
        self.root.join(now.format("%Y-%m-%d").to_string()).join(id)
    }

    /// Move a processed and committed staging folder into `<date>/<id>`: fsync every file,
    /// rename, fsync the folders that changed.
    pub fn finish(&self, staging: &Path, now: DateTime<Utc>) -> Result<PathBuf, ArchiveError> {
        let id = staging
            .file_name()
            .ok_or_else(|| err(staging, "not a folder name"))?;
        let dest = self.finished_path(&id.to_string_lossy(), now);
        let day = dest.parent().expect("a day folder").to_path_buf();
        std::fs::create_dir_all(&day).map_err(|e| err(&day, format!("cannot create: {e}")))?;
        sync_tree(staging)?;
        if dest.exists() {
            // Already finished by a previous run (which died before clearing staging): keep it.
            std::fs::remove_dir_all(staging)
                .map_err(|e| err(staging, format!("cannot remove a duplicate: {e}")))?;
        } else {
            std::fs::rename(staging, &dest)
                .map_err(|e| err(&dest, format!("cannot move the finished folder: {e}")))?;
        }
        sync_dir(&day)?;
        sync_dir(&self.root)?;
        sync_dir(&self.root.join(STAGING_DIR))?;
        Ok(dest)
    }

    /// Replace a staged acquisition's `record.json` by `json`, the record's bytes exactly as
    /// the outbox holds them (fsync'd).
    pub fn write_committed_record(&self, staging: &Path, json: &str) -> Result<(), ArchiveError> {
        write_synced(&staging.join(RECORD_FILE), json.as_bytes())
    }

    /// Keep the raw frames of an acquisition whose processing failed in `failed/<id>`.
    pub fn fail(&self, staging: &Path, error: &str) -> Result<PathBuf, ArchiveError> {
        let failed = self.root.join(FAILED_DIR);
        std::fs::create_dir_all(&failed)
            .map_err(|e| err(&failed, format!("cannot create: {e}")))?;
        let p = staging.join(ERROR_FILE);
        std::fs::write(&p, format!("{error}\n"))
            .map_err(|e| err(&p, format!("cannot write: {e}")))?;
        let dest = failed.join(staging.file_name().unwrap_or_default());
        sync_tree(staging)?;
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(staging, &dest).map_err(|e| err(&dest, format!("cannot move: {e}")))?;
        sync_dir(&failed)?;
        Ok(dest)
    }

    /// What previous runs left in `.staging` (see the module header). Folders with nothing
    /// usable are removed here.
    pub fn recover(&self) -> Result<Vec<Leftover>, ArchiveError> {
        let staging = self.root.join(STAGING_DIR);
        let mut out = Vec::new();
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&staging)
            .map_err(|e| err(&staging, format!("cannot list: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        for dir in dirs {
            let id = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let sequence = std::fs::read_to_string(dir.join(SEQUENCE_FILE))
                .ok()
                .and_then(|t| {
                    serde_json::from_str::<SequenceRecord>(&t)
                        .ok()
                        .map(|r| (r, t))
                })
                .filter(|(r, _)| r.sequence_id.to_string() == id);
            if let Some((record, json)) = sequence {
                out.push(Leftover::Sequence {
                    staging: dir,
                    record: Box::new(record),
                    json,
                });
                continue;
            }
            if acquisition_folder::is_qc_acquisition(&dir)
                && acquisition_folder::is_acquisition_folder(&dir)
            {
                out.push(Leftover::Qc { staging: dir, id });
                continue;
            }
            let record = std::fs::read_to_string(dir.join(RECORD_FILE))
                .ok()
                .and_then(|t| serde_json::from_str::<MeasurementRecord>(&t).ok())
                .filter(|r| r.measurement_id.to_string() == id)
                .filter(|_| dir.join(OUTPUTS_MARK).is_file());
            if let Some(record) = record {
                out.push(Leftover::Processed {
                    staging: dir,
                    record: Box::new(record),
                });
                continue;
            }
            match acquisition_folder::read(&dir) {
                Ok(_) => out.push(Leftover::Raw { staging: dir, id }),
                // The frames may be whole on a disk that failed to read them: never removed
                // for that; processing tries again (and leaves them here if it fails too).
                Err(e) if e.fault() == Fault::Storage => {
                    tracing::error!(
                        "{}: cannot read the raw frames ({e}); kept for processing",
                        dir.display()
                    );
                    out.push(Leftover::Raw { staging: dir, id });
                }
                Err(_) => {
                    tracing::warn!(
                        "{}: an acquisition interrupted while its frames were written; removed",
                        dir.display()
                    );
                    std::fs::remove_dir_all(&dir)
                        .map_err(|e| err(&dir, format!("cannot remove: {e}")))?;
                }
            }
        }
        Ok(out)
    }

    /// Finished folders as `(day, id, path)`.
    /// Stage a sequence record's JSON (exactly the bytes to be committed) in
    /// `.staging/<sequence_id>/sequence.json`, fsync'd.
    pub fn stage_sequence(&self, id: &str, json: &str) -> Result<PathBuf, ArchiveError> {
        let dir = self.staging_path(id);
        std::fs::create_dir_all(&dir).map_err(|e| err(&dir, format!("cannot create: {e}")))?;
        let p = dir.join(SEQUENCE_FILE);
        write_synced(&p, json.as_bytes())?;
        Ok(dir)
    }

    /// Note a kinetic series just taken (before its frames are processed), durably.
    pub fn pend_series(&self, s: &SeriesRef) -> Result<(), ArchiveError> {
        let dir = self.root.join(SERIES_DIR);
        let p = dir.join(format!("{}.json", s.sequence_id));
        let tmp = dir.join(format!(".{}.json.tmp", s.sequence_id));
        let json = serde_json::to_string_pretty(s).expect("plain fields serialise");
        write_synced(&tmp, json.as_bytes())?;
        std::fs::rename(&tmp, &p).map_err(|e| err(&p, format!("cannot rename: {e}")))?;
        sync_dir(&dir)
    }

    /// The series whose sequence record is not yet committed, oldest first. A marker that
    /// cannot be read is logged and left in place for a person.
    pub fn pending_series(&self) -> Vec<SeriesRef> {
        let dir = self.root.join(SERIES_DIR);
        let Ok(list) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = list
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        paths.sort();
        let mut out = Vec::new();
        for p in paths {
            match std::fs::read_to_string(&p)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str::<SeriesRef>(&t).map_err(|e| e.to_string()))
            {
                Ok(s) => out.push(s),
                Err(e) => tracing::error!(
                    "{}: not a kinetic series note ({e}); its sequence record cannot be made: remove the file once checked",
                    p.display()
                ),
            }
        }
        out
    }

    /// The series' sequence record is committed: forget it.
    pub fn series_done(&self, sequence_id: &str) -> Result<(), ArchiveError> {
        let dir = self.root.join(SERIES_DIR);
        let p = dir.join(format!("{sequence_id}.json"));
        match std::fs::remove_file(&p) {
            Ok(()) => sync_dir(&dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(err(&p, format!("cannot remove: {e}"))),
        }
    }

    /// Were this acquisition's raw frames set aside as a bad input (`failed/<id>`)?
    pub fn is_failed(&self, id: &str) -> bool {
        self.root.join(FAILED_DIR).join(id).is_dir()
    }

    fn finished(&self) -> Result<Vec<(NaiveDate, String, PathBuf)>, ArchiveError> {
        let mut out = Vec::new();
        let list = std::fs::read_dir(&self.root)
            .map_err(|e| err(&self.root, format!("cannot list: {e}")))?;
        for day in list.filter_map(|e| e.ok()) {
            let name = day.file_name().to_string_lossy().into_owned();
            let Ok(date) = NaiveDate::parse_from_str(&name, "%Y-%m-%d") else {
                continue;
            };
            let Ok(inner) = std::fs::read_dir(day.path()) else {
                continue;
            };
            for acq in inner.filter_map(|e| e.ok()) {
                out.push((
                    date,
                    acq.file_name().to_string_lossy().into_owned(),
                    acq.path(),
                ));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Mark delivered folders (the outbox's `acked`, by id) and delete those delivered and
    /// older than `retention` (`None`: keep forever). A folder never marked delivered is
    /// never deleted.
    pub fn retention_pass(
        &self,
        acked_by_id: &HashMap<String, bool>,
        retention: Option<Duration>,
        now: DateTime<Utc>,
    ) -> Result<RetentionOutcome, ArchiveError> {
        let mut o = RetentionOutcome::default();
        for (day, id, path) in self.finished()? {
            let mark = path.join(DELIVERED_MARK);
            let mut delivered = mark.exists();
            if !delivered && acked_by_id.get(&id) == Some(&true) {
                std::fs::write(&mark, b"").map_err(|e| err(&mark, format!("cannot write: {e}")))?;
                o.marked_delivered += 1;
                delivered = true;
            }
            let Some(keep) = retention else { continue };
            let day_start = day.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
            let age = (now - day_start).to_std().unwrap_or(Duration::ZERO);
            // The folder's day ended at most a day after it began.
            if age <= keep + Duration::from_secs(86_400) {
                continue;
            }
            if delivered {
                std::fs::remove_dir_all(&path)
                    .map_err(|e| err(&path, format!("cannot delete: {e}")))?;
                o.deleted += 1;
            } else {
                o.kept_undelivered += 1;
            }
        }
        Ok(o)
    }
}

/// fsync every file under `dir`, then `dir` itself.
fn sync_tree(dir: &Path) -> Result<(), ArchiveError> {
    let list = std::fs::read_dir(dir).map_err(|e| err(dir, format!("cannot list: {e}")))?;
    for e in list.filter_map(|e| e.ok()) {
        let p = e.path();
        if p.is_dir() {
            sync_tree(&p)?;
        } else {
            File::open(&p)
                .and_then(|f| f.sync_all())
                .map_err(|e| err(&p, format!("cannot fsync: {e}")))?;
        }
    }
    sync_dir(dir)
}

fn write_synced(p: &Path, bytes: &[u8]) -> Result<(), ArchiveError> {
    use std::io::Write;
    let mut f = File::create(p).map_err(|e| err(p, format!("cannot create: {e}")))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| err(p, format!("cannot write: {e}")))
}

fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| err(dir, format!("cannot fsync the folder: {e}")))
}

/// The free space of the file system holding `path` could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{}: {errno}", path.display())]
pub struct FreeSpaceError {
    pub path: PathBuf,
    pub errno: rustix::io::Errno,
}

/// Free space for an unprivileged user on the file system holding `path`, MB.
pub fn free_mb(path: &Path) -> Result<u64, FreeSpaceError> {
    let s = rustix::fs::statvfs(path).map_err(|errno| FreeSpaceError {
        path: path.to_path_buf(),
        errno,
    })?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize) / 1_000_000)
}

mod erased {
    /// Pretty JSON of any serialisable value, behind a trait object.
    pub trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(a: &Archive, date: &str, id: &str) -> PathBuf {
        let p = a.root().join(date).join(id);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join(RECORD_FILE), "{}").unwrap();
        p
    }

    #[test]
    fn retention_deletes_only_old_and_delivered() {
        let tmp = tempfile::tempdir().unwrap();
        let a = Archive::open(tmp.path()).unwrap();
        let old_acked = day(&a, "2026-01-01", "a");
        let old_unacked = day(&a, "2026-01-01", "b");
        let old_unknown = day(&a, "2026-01-02", "c");
        let new_acked = day(&a, "2026-11-26", "d");
        let acked: HashMap<String, bool> = [("a", true), ("b", false), ("d", true)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let now = DateTime::parse_from_rfc3339("2026-11-27T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let o = a
            .retention_pass(&acked, Some(Duration::from_secs(30 * 86_400)), now)
            .unwrap();
        assert_eq!(o.deleted, 1);
        assert_eq!(o.kept_undelivered, 2);
        assert_eq!(o.marked_delivered, 2);
        assert!(!old_acked.exists());
        assert!(old_unacked.exists() && old_unknown.exists() && new_acked.exists());
        assert!(new_acked.join(DELIVERED_MARK).exists());
        // Once marked, a folder pruned from the outbox (unknown there now) still goes.
        let o = a
            .retention_pass(&HashMap::new(), Some(Duration::from_secs(0)), now)
            .unwrap();
        assert_eq!(o.deleted, 1);
        assert!(!new_acked.exists());
        // Keep forever: nothing deleted.
        let o = a.retention_pass(&HashMap::new(), None, now).unwrap();
        assert_eq!(o.deleted, 0);
        assert!(old_unacked.exists());
    }

    #[test]
    fn recovery_removes_half_written_staging_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let a = Archive::open(tmp.path()).unwrap();
        let half = a.staging_path("0190c0de-0000-7000-8000-000000000000");
        std::fs::create_dir_all(&half).unwrap();
        std::fs::write(half.join("luminescent.tiff"), b"II*\0trunc").unwrap();
        let left = a.recover().unwrap();
        assert!(left.is_empty());
        assert!(!half.exists());
    }

    #[test]
    fn recovery_keeps_a_folder_the_disk_fails_to_read() {
        let tmp = tempfile::tempdir().unwrap();
        let a = Archive::open(tmp.path()).unwrap();
        let id = "0190c0de-0000-7000-8000-000000000001";
        let dir = a.staging_path(id);
        std::fs::create_dir_all(&dir).unwrap();
        // Reading /proc/self/mem at offset 0 fails with EIO, as a failing disk does.
        std::os::unix::fs::symlink("/proc/self/mem", dir.join("acquisition.json")).unwrap();
        let left = a.recover().unwrap();
        assert!(dir.is_dir(), "never removed for a read error");
        assert!(
            matches!(&left[..], [Leftover::Raw { id: i, .. }] if i == id),
            "{left:?}"
        );
    }

    #[test]
    fn free_space_is_reported() {
        assert!(free_mb(Path::new("/")).is_ok());
        assert!(free_mb(Path::new("/no/such/dir"))
            .unwrap_err()
            .to_string()
            .contains("/no/such/dir"));
    }
}
