//! Kinetic series in the daemon: once every frame of a series the daemon took is settled
//! (its measurement record committed, or its raw frames set aside as a bad input), the
//! series' sequence record (`lumiq.sequence`, [`crate::sequence`]) is built from the
//! committed records, staged in the archive, committed to the outbox — so it is published
//! on the measurement topic after its frames, sharing their seq — and archived.
//!
//! Owns: when a sequence record is made and that it is made once. The acquire stage notes
//! each series in the archive ([`Archive::pend_series`]) before its frames are processed;
//! [`settle_with`] runs after each commit and each failed frame, and [`settle_all`] at
//! start, so a restart at any moment neither loses the sequence record nor makes two (the
//! outbox deduplicates by `sequence_id`, and a staged record is committed as it is).
//!
//! Does not own: the summary itself ([`crate::sequence::build`]), the outbox or the archive.
//!
//! Invariants: a sequence record is committed only after every frame of its series is
//! settled; frames still in the archive's staging area (waiting for the next start, e.g.
//! after a disk error) keep it waiting. Its `frames_missing` lists exactly the frames set
//! aside in `failed/`.

use chrono::Utc;
use uuid::Uuid;

use crate::delivery::{outbox::Committed, Outbox, OutboxError, Seq};
use crate::record::MeasurementRecord;
use crate::sequence::{self, SeriesRef};

use super::archive::{Archive, ArchiveError};

/// Why a series' sequence record could not be made now (it is tried again at the next
/// commit and the next start).
#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("frame {id}: its committed record does not read back ({problem})")]
    Unreadable { id: Uuid, problem: String },
    #[error(transparent)]
    Sequence(#[from] sequence::SequenceError),
}

/// Where a series stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    /// Frames not yet committed nor set aside.
    Waiting { frames: usize },
    /// The sequence record was committed now.
    Committed {
        seq: Seq,
        regions: usize,
        missing: usize,
    },
    /// It was committed before (a repeated call, or a restart after the commit).
    AlreadyCommitted { seq: Seq },
    /// No frame of the series could be measured: there is nothing to summarise.
    NoFrames,
}

/// Settle one series: make, stage, commit and archive its sequence record when every frame
/// is settled.
pub fn settle(outbox: &Outbox, archive: &Archive, s: &SeriesRef) -> Result<Settled, SeriesError> {
    let id = s.sequence_id.to_string();
    if let Some((seq, _)) = outbox.record_by_id(&id)? {
        archive.series_done(&id)?;
        return Ok(Settled::AlreadyCommitted { seq });
    }
    let mut records = Vec::new();
    let mut missing = Vec::new();
    let mut waiting = 0;
    for m in &s.measurement_ids {
        match outbox.record_by_id(&m.to_string())? {
            Some((_, json)) => records.push(
                serde_json::from_str::<MeasurementRecord>(&json).map_err(|e| {
                    SeriesError::Unreadable {
                        id: *m,
                        problem: e.to_string(),
                    }
                })?,
            ),
            None if archive.is_failed(&m.to_string()) => missing.push(*m),
            None => waiting += 1,
        }
    }
    if waiting > 0 {
        return Ok(Settled::Waiting { frames: waiting });
    }
    if records.is_empty() {
        archive.series_done(&id)?;
        return Ok(Settled::NoFrames);
    }
    let mut record = sequence::build(&records, s.sequence_id)?;
    record.mark_missing(&missing);
    let json = serde_json::to_string(&record).expect("plain fields serialise");
    let staging = archive.stage_sequence(&id, &json)?;
    let seq = commit_staged(outbox, archive, &staging, &record, &json)?;
    Ok(Settled::Committed {
        seq,
        regions: record.regions.len(),
        missing: missing.len(),
    })
}

/// Commit a staged sequence record (also one recovered at start) and finish its folder.
pub fn commit_staged(
    outbox: &Outbox,
    archive: &Archive,
    staging: &std::path::Path,
    record: &sequence::SequenceRecord,
    json: &str,
) -> Result<Seq, SeriesError> {
    let id = record.sequence_id.to_string();
    let seq = outbox.commit_json(&Committed {
        id: &id,
        instrument_id: &record.instrument_id,
        acquired_at: record.acquired_at(),
        record_schema: sequence::SCHEMA,
        json,
    })?;
    archive.finish(staging, Utc::now())?;
    archive.series_done(&id)?;
    Ok(seq)
}

/// Settle the pending series that hold `measurement_id` (after its commit or its failure).
pub fn settle_with(outbox: &Outbox, archive: &Archive, measurement_id: &str) {
    for s in archive.pending_series() {
        if s.measurement_ids
            .iter()
            .any(|m| m.to_string() == measurement_id)
        {
            report(&s, settle(outbox, archive, &s));
        }
    }
}

/// Settle every pending series (at start, after the leftovers were committed).
pub fn settle_all(outbox: &Outbox, archive: &Archive) {
    for s in archive.pending_series() {
        report(&s, settle(outbox, archive, &s));
    }
}

fn report(s: &SeriesRef, r: Result<Settled, SeriesError>) {
    let id = s.sequence_id;
    let n = s.measurement_ids.len();
    match r {
        Ok(Settled::Waiting { frames }) => {
            tracing::debug!("kinetic series {id}: {frames} of {n} frames not yet committed")
        }
        Ok(Settled::Committed {
            seq,
            regions,
            missing,
        }) => tracing::info!(
            "kinetic series {id}: sequence record committed as seq {seq} ({n} frames{}, {regions} regions)",
            if missing > 0 {
                format!(", {missing} could not be measured")
            } else {
                String::new()
            }
        ),
        Ok(Settled::AlreadyCommitted { seq }) => {
            tracing::debug!("kinetic series {id}: sequence record already committed as seq {seq}")
        }
        Ok(Settled::NoFrames) => tracing::error!(
            "kinetic series {id}: none of its {n} frames could be measured (their raw frames are in the archive's failed/ folder); no sequence record"
        ),
        Err(e) => tracing::error!(
            "kinetic series {id}: sequence record not made ({e}); tried again at the next commit and the next start"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::OutboxConfig;

    fn frame(id: Uuid, minutes: i64, flux: f64) -> MeasurementRecord {
        let mut r = crate::delivery::synthetic::record("imager-01", 1);
        r.measurement_id = id;
        r.acquired_at = (chrono::DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z").unwrap()
            + chrono::Duration::minutes(minutes))
        .with_timezone(&Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        for g in &mut r.regions {
            g.total_flux.value = flux;
        }
        r
    }

    #[test]
    fn a_series_is_summarised_once_after_every_frame_is_settled() {
        let tmp = tempfile::tempdir().unwrap();
        let archive = Archive::open(&tmp.path().join("archive")).unwrap();
        let records: Vec<MeasurementRecord> = [(0, 1.0e6), (2, 3.0e6), (4, 2.0e6)]
            .iter()
            .map(|&(m, f)| frame(Uuid::now_v7(), m, f))
            .collect();
        let outbox = Outbox::open(
            tmp.path().join("outbox.db"),
            &OutboxConfig::new(records[0].instrument_id.clone()),
        )
        .unwrap();
        let s = SeriesRef {
            sequence_id: Uuid::now_v7(),
            measurement_ids: records.iter().map(|r| r.measurement_id).collect(),
        };
        archive.pend_series(&s).unwrap();
        assert_eq!(archive.pending_series(), vec![s.clone()]);

        outbox.commit(&records[0]).unwrap();
        assert_eq!(
            settle(&outbox, &archive, &s).unwrap(),
            Settled::Waiting { frames: 2 }
        );
        outbox.commit(&records[1]).unwrap();
        // The third frame's raw frames were set aside as a bad input.
        std::fs::create_dir_all(
            tmp.path()
                .join("archive/failed")
                .join(records[2].measurement_id.to_string()),
        )
        .unwrap();
        let Settled::Committed { seq, missing, .. } = settle(&outbox, &archive, &s).unwrap() else {
            panic!("not committed")
        };
        assert_eq!((seq, missing), (3, 1));
        assert!(archive.pending_series().is_empty(), "the note is removed");
        // Committed byte for byte as archived, and only once.
        let (_, json) = outbox
            .record_by_id(&s.sequence_id.to_string())
            .unwrap()
            .unwrap();
        let day = std::fs::read_dir(archive.root())
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().starts_with("20"))
            .unwrap()
            .path();
        let archived =
            std::fs::read_to_string(day.join(s.sequence_id.to_string()).join("sequence.json"))
                .unwrap();
        assert_eq!(archived, json);
        let v: sequence::SequenceRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(v.frames.len(), 2);
        assert_eq!(v.frames_missing, vec![records[2].measurement_id]);
        assert!(v.flags.contains(&sequence::SequenceFlag::FramesMissing));
        assert_eq!(
            settle(&outbox, &archive, &s).unwrap(),
            Settled::AlreadyCommitted { seq: 3 }
        );
        let rows = outbox.unacked_after(0, 10).unwrap();
        assert_eq!(
            rows.iter()
                .map(|r| r.record_schema.as_str())
                .collect::<Vec<_>>(),
            ["lumiq.measurement", "lumiq.measurement", "lumiq.sequence"]
        );
        assert_eq!(rows[2].acquired_at, records[0].acquired_at);
    }

    #[test]
    fn a_staged_sequence_record_is_committed_as_it_is_after_a_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("archive");
        let archive = Archive::open(&root).unwrap();
        let records: Vec<MeasurementRecord> = [(0, 1.0e6), (2, 3.0e6)]
            .iter()
            .map(|&(m, f)| frame(Uuid::now_v7(), m, f))
            .collect();
        let outbox = Outbox::open(
            tmp.path().join("outbox.db"),
            &OutboxConfig::new(records[0].instrument_id.clone()),
        )
        .unwrap();
        for r in &records {
            outbox.commit(r).unwrap();
        }
        let s = SeriesRef {
            sequence_id: Uuid::now_v7(),
            measurement_ids: records.iter().map(|r| r.measurement_id).collect(),
        };
        archive.pend_series(&s).unwrap();
        // The last run staged the record and stopped before committing it.
        let mut staged = sequence::build(&records, s.sequence_id).unwrap();
        staged.study_id = Some("made by the last run".into());
        let json = serde_json::to_string(&staged).unwrap();
        archive
            .stage_sequence(&s.sequence_id.to_string(), &json)
            .unwrap();
        let left = Archive::open(&root).unwrap().recover().unwrap();
        let [super::super::archive::Leftover::Sequence {
            staging,
            record,
            json: j,
        }] = &left[..]
        else {
            panic!("{left:?}")
        };
        commit_staged(&outbox, &archive, staging, record, j).unwrap();
        assert_eq!(
            outbox
                .record_by_id(&s.sequence_id.to_string())
                .unwrap()
                .unwrap()
                .1,
            json
        );
        assert!(archive.pending_series().is_empty());
        settle_all(&outbox, &archive);
        assert_eq!(outbox.index().unwrap().len(), 3, "not made a second time");
    }
}
