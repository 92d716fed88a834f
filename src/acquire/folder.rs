//! Writing what a sequence captured as lumiq acquisition folders, atomically: everything
//! goes into a hidden sibling folder (`.<name>.partial-<pid>`), which is renamed to the
//! requested path only when complete. A capture that fails leaves no folder behind; a
//! crash may leave a `.partial` folder, never a folder that looks complete.
//!
//! Owns: the layout of a capture's output — the acquisition folder of
//! `docs/acquisition-folder.md` plus `capture.json` (the [`CaptureReport`]) and, for the
//! simulated instrument, `truth.json`. Kinetic series: one acquisition folder per frame
//! (`frame-001`, …) under the requested path, and `kinetic.json`.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::sequence::{Capture, CaptureError, CaptureReport};
use crate::formats::acquisition_folder::{self, FrameKind};
use crate::simulate::Truth;

pub const REPORT_FILE: &str = "capture.json";
pub const TRUTH_FILE: &str = "truth.json";
pub const KINETIC_FILE: &str = "kinetic.json";

fn out_err(path: &Path, problem: impl std::fmt::Display) -> CaptureError {
    CaptureError::Output {
        path: path.display().to_string(),
        problem: problem.to_string(),
    }
}

/// Refuse an output path that exists (a capture never overwrites).
pub fn check_new(dir: &Path) -> Result<(), CaptureError> {
    if dir.exists() {
        return Err(out_err(
            dir,
            "already exists; choose a new folder (a capture never overwrites one)",
        ));
    }
    Ok(())
}

fn staging_dir(dir: &Path) -> Result<PathBuf, CaptureError> {
    let name = dir
        .file_name()
        .ok_or_else(|| out_err(dir, "is not a folder name"))?
        .to_string_lossy()
        .into_owned();
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .map_err(|e| out_err(&parent, format!("cannot create: {e}")))?;
    Ok(parent.join(format!(".{name}.partial-{}", std::process::id())))
}

/// Write into a staging folder with `fill`, then rename it to `dir`.
fn atomically(
    dir: &Path,
    fill: impl FnOnce(&Path) -> Result<(), CaptureError>,
) -> Result<(), CaptureError> {
    check_new(dir)?;
    let tmp = staging_dir(dir)?;
    let _ = std::fs::remove_dir_all(&tmp);
    let r = (|| {
        std::fs::create_dir_all(&tmp).map_err(|e| out_err(&tmp, format!("cannot create: {e}")))?;
        fill(&tmp)?;
        std::fs::rename(&tmp, dir).map_err(|e| {
            out_err(
                dir,
                format!("cannot move the finished folder into place: {e}"),
            )
        })
    })();
    if r.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    r
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<(), CaptureError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| out_err(path, e))?;
    std::fs::write(path, text).map_err(|e| out_err(path, format!("cannot write: {e}")))
}

fn write_one(dir: &Path, c: &Capture, truth: Option<&Truth>) -> Result<(), CaptureError> {
    let acq = c.raw_acquisition();
    std::fs::create_dir_all(dir).map_err(|e| out_err(dir, format!("cannot create: {e}")))?;
    write_json(&dir.join(REPORT_FILE), &c.report)?;
    if let Some(t) = truth {
        write_json(&dir.join(TRUTH_FILE), t)?;
    }
    // Frames first, acquisition.json last (acquisition_folder::write's order).
    acquisition_folder::write(dir, &acq, FrameKind::Luminescent).map_err(|e| out_err(dir, e))
}

/// Write one capture as an acquisition folder at `dir` (which must not exist).
pub fn write_capture(dir: &Path, c: &Capture, truth: Option<&Truth>) -> Result<(), CaptureError> {
    atomically(dir, |tmp| write_one(tmp, c, truth))
}

#[derive(Serialize)]
struct KineticIndex<'a> {
    schema: &'static str,
    schema_version: u32,
    frames: Vec<KineticEntry<'a>>,
}

#[derive(Serialize)]
struct KineticEntry<'a> {
    folder: String,
    acquired_at: chrono::DateTime<chrono::Utc>,
    exposure_s: f64,
    time_since_injection_s: Option<f64>,
    #[serde(skip)]
    _report: &'a CaptureReport,
}

/// Write a kinetic series: `dir/frame-001`, … (each an acquisition folder) and
/// `dir/kinetic.json`.
pub fn write_kinetic(
    dir: &Path,
    captures: &[Capture],
    truth: Option<&Truth>,
) -> Result<Vec<PathBuf>, CaptureError> {
    let names: Vec<String> = (1..=captures.len())
        .map(|i| format!("frame-{i:03}"))
        .collect();
    atomically(dir, |tmp| {
        for (c, name) in captures.iter().zip(&names) {
            write_one(&tmp.join(name), c, truth)?;
        }
        let index = KineticIndex {
            schema: "lumiq.kinetic",
            schema_version: 1,
            frames: captures
                .iter()
                .zip(&names)
                .map(|(c, name)| KineticEntry {
                    folder: name.clone(),
                    acquired_at: c.meta.acquired_at,
                    exposure_s: c.meta.exposure_s,
                    time_since_injection_s: c.report.luminescent.time_since_injection_s,
                    _report: &c.report,
                })
                .collect(),
        };
        write_json(&tmp.join(KINETIC_FILE), &index)
    })?;
    Ok(names.iter().map(|n| dir.join(n)).collect())
}
