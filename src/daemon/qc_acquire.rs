//! A QC acquisition in the daemon (`[qc] mounted`): the mounted reference source imaged on
//! request (`lumiq acquire --qc`, the LIMS's `{"acquire": true, "qc": true}`) or on
//! `[qc] schedule`, measured as `lumiq qc` measures it, kept in the QC history and announced.
//!
//! Its path, on the process stage: the raw frames are staged with the QC mark (never taken
//! for a measurement, even after a crash), measured by [`crate::qc::run_on_folder`], the
//! result (whose `qc_id` is the acquisition's id) appended to the history, `qc.json`
//! written beside the frames, the folder finished into the archive and marked delivered
//! (nothing goes to the outbox), then one `qc` event with the acquisition's id, trigger
//! and folder. Records made afterwards are corrected by it like by any QC in the history.
//!
//! Recovery: a staged QC acquisition is measured again at the next start, unless its id
//! is already in the history (the run died after appending): then that result is used, so
//! the history never holds one QC twice.
//!
//! Owns: that path. The measurement is `crate::qc`; staging and finishing are the archive's.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::archive::DELIVERED_MARK;
use super::status::LastAcquisition;
use super::Shared;
use crate::acquire::Capture;
use crate::delivery::wire::rfc3339;
use crate::errors::FileError;
use crate::job::Sources;
use crate::process::qc::{QcResult, QcVerdict};
use crate::simulate::Truth;

/// The result beside the frames in the archive folder.
pub const QC_RESULT_FILE: &str = "qc.json";

/// A QC acquisition just captured (`captured_at`, by `trigger`): stage its frames, then
/// measure it.
pub(super) fn process_capture(
    shared: &Shared,
    id: &str,
    capture: &Capture,
    truth: Option<&Truth>,
    trigger: &str,
    captured_at: DateTime<Utc>,
) {
    match shared.archive.stage_capture(id, capture, truth, true) {
        Ok(staging) => process_staged(shared, id, &staging, trigger, Some(captured_at)),
        Err(e) => {
            let msg = format!("the reference source's frames could not be written: {e}");
            tracing::error!("QC acquisition {id}: {msg}");
            shared.fail(id, trigger, None, &msg);
        }
    }
}

/// Measure the staged QC acquisition `id` (or take its result from the history), keep the
/// result, finish the folder and announce it.
pub(super) fn process_staged(
    shared: &Shared,
    id: &str,
    staging: &Path,
    trigger: &str,
    captured_at: Option<DateTime<Utc>>,
) {
    let history = shared.settings.qc_history_path();
    let now = Utc::now();
    let folder = shared.archive.finished_path(id, now);
    let result = match measure(shared, id, staging, &folder, &history) {
        Ok(r) => r,
        Err(Failure::Input(msg)) => {
            tracing::error!("QC acquisition {id}: {msg}");
            let kept = match shared.archive.fail(staging, &msg) {
                Ok(p) => format!("; raw frames kept in {}", p.display()),
                Err(e) => format!("; the raw frames could not be kept: {e}"),
            };
            shared.fail(id, trigger, None, &format!("{msg}{kept}"));
            return;
        }
        Err(Failure::Keep(msg)) => {
            let msg = format!(
                "{msg}; the frames stay in {} and are measured again at the next start",
                staging.display()
            );
            tracing::error!("QC acquisition {id}: {msg}");
            shared.fail(id, trigger, None, &msg);
            return;
        }
    };
    let line = crate::qc::summary_line(&result);
    tracing::info!("QC acquisition {id} ({trigger}): {line}");
    let archived = write_beside(staging, &result)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            shared
                .archive
                .finish(staging, now)
                .map_err(|e| e.to_string())
        });
    let folder = match archived {
        Ok(p) => p,
        Err(e) => {
            // The result is in the history: records are corrected by it whatever happens
            // to the folder, which the next start finishes.
            tracing::error!("QC acquisition {id}: measured and kept in the history, but not archived ({e}); finished at the next start");
            staging.to_path_buf()
        }
    };
    let event = super::qc::qc_event(&result)
        .detail("acquisition_id", id)
        .detail("trigger", trigger)
        .detail("folder", folder.display().to_string());
    shared.publish_event(event);
    shared.finish_acquisition(LastAcquisition {
        id: id.to_string(),
        outcome: "qc".into(),
        acquired_at: Some(rfc3339(result.performed_at)),
        finished_at: rfc3339(Utc::now()),
        captured_at: captured_at.map(rfc3339),
        trigger: trigger.to_string(),
        seq: None,
        regions: None,
        brightest_net_flux: None,
        error: match result.verdict {
            QcVerdict::Pass => None,
            _ => Some(line),
        },
    });
}

enum Failure {
    /// The frames cannot be measured as they are: kept in `failed/` with the reason.
    Input(String),
    /// The history could not be read or written: the frames stay staged for the next start.
    Keep(String),
}

/// The QC of `id`: from the history when it is already there, else measured now and
/// appended (its `input` is the archive folder it will be finished into).
fn measure(
    shared: &Shared,
    id: &str,
    staging: &Path,
    folder: &Path,
    history: &Path,
) -> Result<QcResult, Failure> {
    let known = crate::qc::history::load(history)
        .map_err(|e| Failure::Keep(format!("the QC history cannot be read ({e})")))?;
    if let Some(r) = known.into_iter().find(|r| r.qc_id == id) {
        shared.qc_watch().announced(id);
        return Ok(r);
    }
    let procedure = match shared.settings.qc_procedure() {
        Ok(Some(p)) => p,
        Ok(None) => return Err(Failure::Input("no [qc] section: the reference source is not described, so its image cannot be judged; describe it in [qc] and run `lumiq qc` on the kept folder".into())),
        Err(e) => return Err(Failure::Input(format!("[qc] reference_date: {e}"))),
    };
    let sources = Sources {
        calibration_dir: Some(&shared.calibration_dir),
        ..Sources::default()
    };
    let mut r = crate::qc::run_on_folder(staging, &sources, &procedure).map_err(|e| {
        Failure::Input(format!(
            "the reference source's image cannot be measured: {e}"
        ))
    })?;
    r.qc_id = id.to_string();
    r.input = folder.display().to_string();
    // Before the append: the history watch must not announce it a second time.
    shared.qc_watch().announced(id);
    crate::qc::history::append(history, &r).map_err(|e| {
        Failure::Keep(format!(
            "measured, but the QC history cannot be written ({e})"
        ))
    })?;
    Ok(r)
}

/// `qc.json` and the delivered mark in the staging folder.
fn write_beside(staging: &Path, r: &QcResult) -> Result<(), FileError> {
    let p = staging.join(QC_RESULT_FILE);
    let json = serde_json::to_string_pretty(r).expect("a QC result serialises");
    std::fs::write(&p, json).map_err(FileError::at(&p, "cannot write"))?;
    let mark = staging.join(DELIVERED_MARK);
    std::fs::write(&mark, b"").map_err(FileError::at(&mark, "cannot write"))
}
