//! The archive holds exactly what was committed: an acquisition's `record.json` is written
//! from the outbox's bytes for its id just before its folder leaves staging, whichever path
//! got it there (processed now, processed again after a crash, or recovered processed).
//! An acquisition processed again after its record was committed by an earlier run keeps
//! the committed record; its maps and overlay, made again, are marked so
//! ([`REGENERATED_NOTE`]).
//!
//! Owns: those two rules. Committing is the outbox's, moving folders the archive's.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::archive::{Archive, ArchiveError};
use crate::delivery::{Outbox, OutboxError};
use crate::record::MeasurementRecord;

/// Beside the maps and overlay of an acquisition processed again after its record was
/// committed by an earlier run: says they were made again.
pub const REGENERATED_NOTE: &str = "outputs-regenerated.txt";

pub(super) fn regenerated_note(seq: u64, at: DateTime<Utc>) -> String {
    format!(
        "radiance.tiff, background.tiff and overlay.png were made again at {} from the raw frames: \
         the daemon stopped after committing this acquisition's record (seq {seq}) and before \
         archiving it. record.json is the record as committed and delivered; if the calibration \
         or the model changed in between, the maps may differ from it.\n",
        crate::delivery::wire::rfc3339(at)
    )
}

/// The seq of the record the outbox already holds for `id`, with that record when it reads
/// back as one. A stored record that does not (an older layout) is logged: `record.json`
/// still gets its bytes ([`finish_committed`]), and the status shows the record made now.
pub(super) fn committed_record(
    outbox: &Outbox,
    id: &str,
) -> Option<(u64, Option<MeasurementRecord>)> {
    match outbox.record_by_id(id) {
        Ok(Some((seq, json))) => match serde_json::from_str(&json) {
            Ok(r) => {
                tracing::warn!("acquisition {id}: its record was committed (seq {seq}) by the last run, which stopped before archiving it; the committed record is kept and the maps are made again");
                Some((seq, Some(r)))
            }
            Err(e) => {
                tracing::error!("acquisition {id}: its record was committed (seq {seq}) by the last run but does not read back as a record ({e}); record.json keeps the committed bytes and the maps are made again");
                Some((seq, None))
            }
        },
        Ok(None) => None,
        Err(e) => {
            tracing::error!("acquisition {id}: cannot look it up in the outbox ({e})");
            None
        }
    }
}

/// Why a committed acquisition could not be finished: it stays in staging, and the next
/// start finishes it.
#[derive(Debug, thiserror::Error)]
pub enum FinishError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("acquisition {0} is not in the outbox; it stays in staging and is committed at the next start")]
    NotCommitted(String),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
}

/// Finish a committed acquisition's staging folder: `record.json` becomes the outbox's
/// bytes for `id` (so the archive holds exactly what was committed and delivered), then
/// the folder moves into the archive.
pub(super) fn finish_committed(
    outbox: &Outbox,
    archive: &Archive,
    id: &str,
    staging: &Path,
) -> Result<PathBuf, FinishError> {
    let (_, json) = outbox
        .record_by_id(id)?
        .ok_or_else(|| FinishError::NotCommitted(id.to_string()))?;
    archive.write_committed_record(staging, &json)?;
    super::fault::reached("record_written");
    Ok(archive.finish(staging, Utc::now())?)
}
