//! The daemon's three stages, each on its own thread, joined by bounded channels:
//!
//! ```text
//! triggers ──requests (1)──▶ acquire ──captures (channels.captures)──▶ process
//!                                                                         │
//!            archive/<day>/<id> ◀── commit (outbox, fsync) ◀──records (channels.records)
//! ```
//!
//! - **acquire** owns the [`Imager`] (blocking USB and serial I/O): runs the sequence a
//!   request asks for, and between requests watches the controller (start button, door) and
//!   the camera (temperature, cooling lock). A capture leaves as an immutable `Arc` value.
//! - **process** stages the raw acquisition folder in the archive, quantifies it with
//!   [`crate::job`] (rayon inside, never on the async runtime), hands the record to commit,
//!   writes the outputs (maps, overlay), and finishes the archive folder once the commit
//!   stage says the record is committed.
//! - **commit** commits the record to the outbox (fsync). An outbox that refuses (full) is
//!   retried until it accepts: a processed record is never dropped; status shows the
//!   retries.
//!
//! Shutdown: the acquire stage sees `stopping`, abandons its sequence through the cancel
//! token (nothing half-written: the capture was only in memory) and exits, closing the
//! captures channel; process drains what is queued and exits, closing records; commit
//! drains and exits.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::archive::{Archive, Leftover};
use super::socket::AcquireRequest;
use super::status::{FluxValue, LastAcquisition};
use super::Shared;
use crate::acquire::{Capture, CaptureError, Imager, SequenceConfig};
use crate::controller::Event;
use crate::delivery::wire::NewEvent;
use crate::delivery::{EventKind, OutboxError, Severity};
use crate::errors::{one_line, Fault, FileError};
use crate::job::JobError;
use crate::process::ProcessingParams;
use crate::record::MeasurementRecord;
use crate::simulate::Truth;

/// A trigger accepted for the acquire stage.
#[derive(Debug, Clone)]
pub struct AcceptedTrigger {
    pub id: Uuid,
    pub request: AcquireRequest,
    pub trigger: String,
}

/// One acquisition, captured: immutable from here on.
#[derive(Debug)]
pub struct CaptureItem {
    pub id: Uuid,
    /// When the sequence returned the capture.
    pub captured_at: DateTime<Utc>,
    pub trigger: String,
    pub capture: Capture,
    pub truth: Option<Truth>,
    /// An image of the mounted reference source for the QC (`super::qc_acquire`).
    pub qc: bool,
}

/// Work for the process stage.
#[derive(Debug)]
pub enum Work {
    Capture(Arc<CaptureItem>),
    /// A raw acquisition left in staging by a previous run.
    Folder {
        id: String,
        staging: PathBuf,
    },
}

/// Processed and written to staging, waiting for the outbox.
#[derive(Debug)]
pub struct Processed {
    pub staging: PathBuf,
    /// Told whether the commit succeeded: the process stage, still writing the outputs,
    /// then finishes the archive folder. `None`: the commit stage finishes it.
    pub committed: Option<std::sync::mpsc::SyncSender<bool>>,
    pub captured_at: Option<DateTime<Utc>>,
    pub record: Box<MeasurementRecord>,
    pub trigger: String,
}

/// Why an acquisition could not be processed, by whose fault: the daemon keeps a bad
/// input apart and leaves an acquisition the disk failed under for the next start.
#[derive(Debug, thiserror::Error)]
pub enum ProcessingError {
    /// The acquisition cannot be processed as it is (its frames, metadata or calibration):
    /// its raw frames are kept in `archive/failed/` with the reason.
    #[error(transparent)]
    Input(JobError),
    /// The disk failed to read or write it (see [`Fault::Storage`]): the raw frames may be
    /// fine, so they stay in staging and the next start processes them again.
    #[error(transparent)]
    Storage(JobError),
    /// A folder in staging whose name is not an acquisition id: a bad input.
    #[error(transparent)]
    Id(#[from] uuid::Error),
}

impl From<JobError> for ProcessingError {
    fn from(e: JobError) -> Self {
        match e.fault() {
            Fault::Input => ProcessingError::Input(e),
            Fault::Storage => ProcessingError::Storage(e),
        }
    }
}

/// What becomes of the raw frames in `staging` after `e` (described by `msg`), in words for
/// the status: a bad input goes to `archive/failed/`; after a storage failure they stay
/// where they are, for the next start.
fn keep_unprocessed(archive: &Archive, staging: &Path, e: &ProcessingError, msg: &str) -> String {
    match e {
        ProcessingError::Input(_) | ProcessingError::Id(_) => match archive.fail(staging, msg) {
            Ok(p) => format!("; raw frames kept in {}", p.display()),
            Err(e) => format!("; the raw frames could not be kept: {e}"),
        },
        ProcessingError::Storage(_) => format!(
            "; the raw frames stay in {} and are processed again at the next start",
            staging.display()
        ),
    }
}

/// How the acquire stage watches the instrument between acquisitions.
const EVENT_POLL: Duration = Duration::from_millis(200);
const DEVICE_POLL: Duration = Duration::from_secs(5);

/// The acquire stage (its own thread). `_keep` keeps the simulated devices alive;
/// `qc_source` brings the mounted reference source into view for a QC acquisition.
#[allow(clippy::too_many_arguments)]
pub fn acquire_loop<K>(
    shared: Arc<Shared>,
    mut imager: Imager,
    base: SequenceConfig,
    mut triggers: mpsc::Receiver<AcceptedTrigger>,
    captures: mpsc::Sender<Work>,
    truth_of: impl Fn(&Capture) -> Option<Truth>,
    qc_source: &dyn Fn(bool),
    _keep: K,
) {
    let hb = &shared.heartbeats.acquire;
    let mut next_device_poll = Instant::now();
    if let Err(e) = imager.camera.set_cooling(base.cooling_setpoint_c) {
        shared.set_camera_error(e.to_string());
    }
    loop {
        hb.beat();
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        match triggers.try_recv() {
            Ok(accepted) => {
                hb.busy();
                run_accepted(
                    &shared,
                    &mut imager,
                    &base,
                    accepted,
                    &captures,
                    &truth_of,
                    qc_source,
                );
                next_device_poll = Instant::now();
                continue;
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) => {}
        }
        match imager.controller.poll_events() {
            Ok(events) => {
                for e in events {
                    match e {
                        Event::StartButton => {
                            match shared.trigger(AcquireRequest::default(), "start_button") {
                                Ok(id) => tracing::info!("start button: acquisition {id} queued"),
                                Err(why) => tracing::warn!("start button refused: {why}"),
                            }
                        }
                        Event::DoorOpened => shared.set_door(Some(true), None),
                        Event::DoorClosed => shared.set_door(Some(false), None),
                        Event::Reset { firmware } => {
                            tracing::warn!(
                                "the imager's controller restarted (firmware {firmware})"
                            )
                        }
                    }
                }
            }
            Err(e) => shared.set_controller_error(e.to_string()),
        }
        if Instant::now() >= next_device_poll {
            hb.busy();
            poll_devices(&shared, &mut imager);
            next_device_poll = Instant::now() + DEVICE_POLL;
            hb.beat();
        }
        std::thread::sleep(EVENT_POLL);
    }
    tracing::debug!("acquire stage stopped");
}

fn poll_devices(shared: &Shared, imager: &mut Imager) {
    // Also notes a lock lost or gained, for the dark decision of the next acquisition.
    match imager.poll_cooling() {
        Ok((t, l)) => {
            let info = imager.camera.info().clone();
            let mut s = shared.lock();
            s.camera.connected = true;
            s.camera.sensor_temp_c = Some(t);
            s.camera.cooling_locked = Some(l);
            s.camera.model = Some(info.model);
            s.camera.serial = Some(info.serial);
            s.camera.checked_at = Some(crate::delivery::wire::rfc3339(Utc::now()));
            s.camera.last_error = None;
        }
        Err(e) => shared.set_camera_error(e.to_string()),
    }
    match imager.controller.door() {
        Ok((open, locked)) => shared.set_door(Some(open), Some(locked)),
        Err(e) => shared.set_controller_error(e.to_string()),
    }
}

fn run_accepted(
    shared: &Shared,
    imager: &mut Imager,
    base: &SequenceConfig,
    accepted: AcceptedTrigger,
    captures: &mpsc::Sender<Work>,
    truth_of: &dyn Fn(&Capture) -> Option<Truth>,
    qc_source: &dyn Fn(bool),
) {
    let mut cfg = base.clone();
    let mut req = accepted.request.clone();
    if req.qc {
        // The reference source alone: no study, no subjects, no injection.
        cfg.subjects = Default::default();
    } else if req.study_id.is_none() && req.subject_ids.is_empty() {
        if let Some(next) = shared.lock().next_subjects.take() {
            req.study_id = next.study_id;
            req.subject_ids = next.subject_ids;
            req.injection_time = req.injection_time.or(next.injection_time);
        }
    }
    if req.study_id.is_some() || !req.subject_ids.is_empty() {
        cfg.subjects.study_id = req.study_id.clone();
        cfg.subjects.subject_ids = req.subject_ids.clone();
    }
    if req.injection_time.is_some() {
        cfg.subjects.injection_time = req.injection_time;
    }
    shared.lock().acquiring = Some(accepted.id.to_string());
    tracing::info!(
        "{} {} started ({})",
        if req.qc {
            "QC acquisition"
        } else {
            "acquisition"
        },
        accepted.id,
        accepted.trigger
    );
    let result = match (req.kinetic, req.qc) {
        (Some(n), _) => imager.kinetic(
            &cfg,
            n,
            Duration::from_secs_f64(req.interval_s.unwrap_or(300.0)),
        ),
        (None, true) => {
            qc_source(true);
            let c = imager.standard(&cfg).map(|c| vec![c]);
            qc_source(false);
            c
        }
        (None, false) => imager.standard(&cfg).map(|c| vec![c]),
    };
    shared.lock().acquiring = None;
    let captured_at = Utc::now();
    match result {
        Ok(mut caps) => {
            let ids: Vec<Uuid> = (0..caps.len())
                .map(|k| if k == 0 { accepted.id } else { Uuid::now_v7() })
                .collect();
            if req.kinetic.is_some() {
                note_series(shared, &ids, &mut caps);
            }
            for (c, id) in caps.into_iter().zip(ids) {
                let truth = truth_of(&c);
                let item = CaptureItem {
                    id,
                    captured_at,
                    trigger: accepted.trigger.clone(),
                    capture: c,
                    truth,
                    qc: req.qc,
                };
                shared.captures_waiting.fetch_add(1, Ordering::SeqCst);
                // Full: this stage waits (the trigger check keeps that rare).
                if captures
                    .blocking_send(Work::Capture(Arc::new(item)))
                    .is_err()
                {
                    shared.captures_waiting.fetch_sub(1, Ordering::SeqCst);
                    tracing::error!("acquisition {id}: the process stage is gone; abandoned");
                }
            }
        }
        Err(CaptureError::Cancelled) => {
            tracing::warn!(
                "acquisition {} abandoned: the daemon is stopping; nothing was written",
                accepted.id
            );
            shared.finish_acquisition(LastAcquisition {
                id: accepted.id.to_string(),
                outcome: "abandoned".into(),
                acquired_at: None,
                finished_at: crate::delivery::wire::rfc3339(Utc::now()),
                captured_at: None,
                trigger: accepted.trigger,
                seq: None,
                regions: None,
                brightest_net_flux: None,
                error: Some("stopped during the acquisition".into()),
            });
        }
        Err(e) => {
            let msg = e.to_string();
            tracing::error!("acquisition {} failed: {msg}", accepted.id);
            if matches!(e, CaptureError::Camera(_)) {
                shared.set_camera_error(msg.clone());
            }
            shared.fail(&accepted.id.to_string(), &accepted.trigger, None, &msg);
        }
    }
}

/// A kinetic series: its sequence id in each frame's capture report, and a note in the
/// archive so its sequence record is made once every frame is settled (also after a
/// restart). A note that cannot be written is logged: the frames are processed anyway.
fn note_series(shared: &Shared, ids: &[Uuid], caps: &mut [Capture]) {
    let s = crate::sequence::SeriesRef {
        sequence_id: Uuid::now_v7(),
        measurement_ids: ids.to_vec(),
    };
    for (k, c) in caps.iter_mut().enumerate() {
        c.report.series = Some(crate::sequence::SeriesFrameRef {
            sequence_id: s.sequence_id,
            frame: k + 1,
            frames: ids.len(),
        });
    }
    match shared.archive.pend_series(&s) {
        Ok(()) => tracing::info!(
            "kinetic series {}: {} frames taken",
            s.sequence_id,
            ids.len()
        ),
        Err(e) => tracing::error!(
            "kinetic series {}: {e}; its frames are measured but no sequence record will be made for it",
            s.sequence_id
        ),
    }
}

/// The process stage (its own thread).
pub fn process_loop(
    shared: Arc<Shared>,
    leftovers: Vec<Leftover>,
    mut work: mpsc::Receiver<Work>,
    records: mpsc::Sender<Processed>,
) {
    let hb = &shared.heartbeats.process;
    for l in leftovers {
        hb.busy();
        match l {
            Leftover::Raw { staging, id } => {
                tracing::info!("processing acquisition {id}, left unprocessed by the last run");
                process_one(&shared, Work::Folder { id, staging }, &records);
            }
            Leftover::Qc { staging, id } => {
                tracing::info!("QC acquisition {id}, left unfinished by the last run");
                super::qc_acquire::process_staged(&shared, &id, &staging, "recovered", None);
            }
            Leftover::Processed { staging, record } => {
                let _ = records.blocking_send(Processed {
                    staging,
                    committed: None,
                    captured_at: None,
                    record,
                    trigger: "recovered".into(),
                });
                shared.records_waiting.fetch_add(1, Ordering::SeqCst);
            }
            // Committed at start (`serve`) before this stage runs; kept for completeness.
            Leftover::Sequence {
                staging,
                record,
                json,
            } => {
                if let Err(e) = super::series::commit_staged(
                    &shared.outbox,
                    &shared.archive,
                    &staging,
                    &record,
                    &json,
                ) {
                    tracing::error!(
                        "kinetic series {}: sequence record not committed ({e}); tried again at the next start",
                        record.sequence_id
                    );
                }
            }
        }
    }
    loop {
        hb.idle();
        let Some(w) = work.blocking_recv() else { break };
        hb.busy();
        if matches!(w, Work::Capture(_)) {
            shared.captures_waiting.fetch_sub(1, Ordering::SeqCst);
        }
        shared.processing.store(true, Ordering::SeqCst);
        process_one(&shared, w, &records);
        shared.processing.store(false, Ordering::SeqCst);
    }
    hb.idle();
    tracing::debug!("process stage stopped");
}

fn process_one(shared: &Shared, w: Work, records: &mpsc::Sender<Processed>) {
    let t0 = Instant::now();
    let captured_at = match &w {
        Work::Capture(item) => Some(item.captured_at),
        Work::Folder { .. } => None,
    };
    let (id, trigger, staging, acquired_at) = match &w {
        Work::Capture(item) if item.qc => {
            super::qc_acquire::process_capture(
                shared,
                &item.id.to_string(),
                &item.capture,
                item.truth.as_ref(),
                &item.trigger,
                item.captured_at,
            );
            return;
        }
        Work::Capture(item) => {
            let id = item.id.to_string();
            match shared
                .archive
                .stage_capture(&id, &item.capture, item.truth.as_ref(), false)
            {
                Ok(p) => {
                    super::fault::reached("staged");
                    let acquired_at = crate::delivery::wire::rfc3339(item.capture.meta.acquired_at);
                    (id, item.trigger.clone(), p, Some(acquired_at))
                }
                Err(e) => {
                    // The frames are only in memory and cannot be kept: say so loudly.
                    let msg = format!("the raw frames could not be written: {e}");
                    tracing::error!("acquisition {id}: {msg}");
                    shared.fail(&id, &item.trigger, None, &msg);
                    return;
                }
            }
        }
        Work::Folder { id, staging } => (id.clone(), "recovered".into(), staging.clone(), None),
    };
    let cal = shared.calibration_dir.clone();
    let staged_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let mut quantify_ms = 0.0;
    let r = (|| -> Result<crate::job::JobOutput, ProcessingError> {
        let t1 = Instant::now();
        let input = crate::job::load(&staging, Some(&cal))?;
        let params = ProcessingParams {
            detector: shared.settings.processing.detector,
            ..ProcessingParams::default()
        };
        let model = shared
            .model
            .as_ref()
            .map(|m| m as &dyn crate::process::SegmentationModel);
        let mut out = crate::job::run_with_model(input, &params, model)?;
        quantify_ms = t1.elapsed().as_secs_f64() * 1000.0;
        // The acquisition id is the record's id: processing the same frames again (after a
        // crash) gives the same id, and the outbox and the LIMS deduplicate it.
        out.record.measurement_id = Uuid::parse_str(&id)?;
        super::qc::apply_to_record(&shared.settings, &mut out.record);
        Ok(out)
    })();
    // A record already committed by an earlier run (it stopped before archiving): the
    // committed record stands, and the maps made now are marked as made again.
    let regenerated = match (&r, &w) {
        (Ok(_), Work::Folder { .. }) => super::committed::committed_record(&shared.outbox, &id),
        _ => None,
    };
    let r = r.map(|mut out| {
        if let Some((_, Some(record))) = &regenerated {
            out.record = record.clone();
        }
        out
    });
    match r {
        Ok(out) => {
            // Design: the record goes to the commit stage (and on to the LIMS) before the
            // outputs for people (maps, overlay: half the time on a 2048² frame) are
            // written; the archive folder is finished only when both are done.
            let record = Box::new(out.record.clone());
            let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
            tracing::info!(
                "acquisition {id} processed in {:.2} s (raw frames written {staged_ms:.0} ms, loaded and quantified {:.0} ms): {} regions",
                t0.elapsed().as_secs_f64(),
                quantify_ms,
                record.regions.len()
            );
            shared.records_waiting.fetch_add(1, Ordering::SeqCst);
            if records
                .blocking_send(Processed {
                    staging: staging.clone(),
                    committed: Some(done_tx),
                    captured_at,
                    record,
                    trigger,
                })
                .is_err()
            {
                shared.records_waiting.fetch_sub(1, Ordering::SeqCst);
                tracing::error!("acquisition {id}: the commit stage is gone; it stays in staging for the next start");
                return;
            }
            let t2 = Instant::now();
            let written = crate::job::write_outputs(&staging, &out).and_then(|()| {
                if let Some((seq, _)) = &regenerated {
                    let note = staging.join(super::committed::REGENERATED_NOTE);
                    std::fs::write(&note, super::committed::regenerated_note(*seq, Utc::now()))
                        .map_err(FileError::at(&note, "cannot write"))
                        .map_err(JobError::Write)?;
                }
                let mark = staging.join(super::archive::OUTPUTS_MARK);
                std::fs::write(&mark, b"")
                    .map_err(FileError::at(&mark, "cannot write"))
                    .map_err(JobError::Write)
            });
            tracing::info!(
                "acquisition {id}: outputs written in {:.0} ms",
                t2.elapsed().as_secs_f64() * 1000.0
            );
            let committed = done_rx.recv().unwrap_or(false);
            match (committed, written) {
                (true, Ok(())) => {
                    super::fault::reached("outputs_written");
                    if let Err(e) =
                        super::committed::finish_committed(&shared.outbox, &shared.archive, &id, &staging)
                    {
                        tracing::error!("acquisition {id} committed but not archived: {e}");
                    }
                }
                (true, Err(e)) => tracing::error!(
                    "acquisition {id} committed, but its outputs could not be written ({}); it stays in {} and is processed again at the next start",
                    one_line(&e),
                    staging.display()
                ),
                (false, _) => tracing::error!(
                    "acquisition {id} not committed; it stays in {} for the next start",
                    staging.display()
                ),
            }
        }
        Err(e) => {
            let msg = format!("processing failed: {}", one_line(&e));
            tracing::error!("acquisition {id}: {msg}");
            let kept = keep_unprocessed(&shared.archive, &staging, &e, &msg);
            shared.fail(&id, &trigger, acquired_at, &format!("{msg}{kept}"));
            super::series::settle_with(&shared.outbox, &shared.archive, &id);
        }
    }
}

/// The commit stage (its own thread).
pub fn commit_loop(shared: Arc<Shared>, mut records: mpsc::Receiver<Processed>) {
    let hb = &shared.heartbeats.commit;
    loop {
        hb.idle();
        let Some(p) = records.blocking_recv() else {
            break;
        };
        hb.busy();
        shared.records_waiting.fetch_sub(1, Ordering::SeqCst);
        commit_one(&shared, p);
    }
    hb.idle();
    tracing::debug!("commit stage stopped");
}

fn commit_one(shared: &Shared, p: Processed) {
    let id = p.record.measurement_id.to_string();
    let mut warned = false;
    let seq = loop {
        shared.heartbeats.commit.busy();
        match shared.outbox.commit(&p.record) {
            Ok(seq) => {
                super::fault::reached("committed");
                break seq;
            }
            Err(e @ OutboxError::Full { .. }) if !shared.stopping.load(Ordering::SeqCst) => {
                shared.lock().queues.commit_retries += 1;
                if !warned {
                    tracing::error!("acquisition {id} waits for the outbox: {e}");
                    warned = true;
                }
                std::thread::sleep(Duration::from_secs(2));
            }
            Err(e) => {
                tracing::error!(
                    "acquisition {id}: not committed ({e}); it stays in {} and is committed at the next start",
                    p.staging.display()
                );
                if let Some(tx) = &p.committed {
                    let _ = tx.send(false);
                }
                return;
            }
        }
    };
    // The status first (the publisher may get the PUBACK before the archive's fsyncs end).
    let brightest = p
        .record
        .regions
        .iter()
        .max_by(|a, b| a.total_flux.value.total_cmp(&b.total_flux.value))
        .map(|r| FluxValue {
            value: r.total_flux.value,
            uncertainty: r.total_flux.uncertainty,
            unit: r.total_flux.unit.clone(),
        });
    tracing::info!(
        "acquisition {id} committed as seq {seq} ({} regions)",
        p.record.regions.len()
    );
    shared.finish_acquisition(LastAcquisition {
        id: id.clone(),
        outcome: "committed".into(),
        acquired_at: Some(p.record.acquired_at.clone()),
        finished_at: crate::delivery::wire::rfc3339(Utc::now()),
        captured_at: p.captured_at.map(crate::delivery::wire::rfc3339),
        trigger: p.trigger,
        seq: Some(seq),
        regions: Some(p.record.regions.len()),
        brightest_net_flux: brightest,
        error: None,
    });
    match &p.committed {
        Some(tx) => {
            let _ = tx.send(true);
        }
        None => {
            if let Err(e) =
                super::committed::finish_committed(&shared.outbox, &shared.archive, &id, &p.staging)
            {
                tracing::error!("acquisition {id} (seq {seq}) committed but not archived: {e}");
            }
        }
    }
    super::series::settle_with(&shared.outbox, &shared.archive, &id);
}

/// Publish an acquisition failure as an event (best effort).
pub fn failure_event(id: &str, msg: &str) -> NewEvent {
    NewEvent::new(
        EventKind::Fault,
        "acquisition_failed",
        Severity::Error,
        format!("acquisition {id} failed: {msg}"),
    )
    .detail("acquisition_id", id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::FormatError;

    /// A raw acquisition in staging whose metadata (`{}`) names no frame.
    fn staged(a: &Archive, id: &str) -> PathBuf {
        let dir = a.staging_path(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("acquisition.json"), "{}").unwrap();
        dir
    }

    #[test]
    fn a_bad_input_is_kept_in_failed_and_a_failing_disk_leaves_it_staged() {
        let tmp = tempfile::tempdir().unwrap();
        let a = Archive::open(tmp.path()).unwrap();

        // Reading the frames failed with EIO: the frames may be fine.
        let dir = staged(&a, "0190c0de-0000-7000-8000-000000000001");
        let eio = std::io::Error::from_raw_os_error(5);
        let e = ProcessingError::from(JobError::Format(FormatError::io(&dir, eio)));
        assert!(matches!(e, ProcessingError::Storage(_)), "{e:?}");
        let said = keep_unprocessed(&a, &dir, &e, "processing failed");
        assert!(dir.is_dir(), "left in staging");
        assert!(!tmp.path().join("failed").exists());
        assert!(said.contains("processed again at the next start"), "{said}");

        // A folder that is not an acquisition: kept apart, with the reason.
        let e = ProcessingError::from(JobError::UnknownFolder(dir.clone()));
        assert!(matches!(e, ProcessingError::Input(_)), "{e:?}");
        let said = keep_unprocessed(&a, &dir, &e, "processing failed: x");
        let failed = tmp.path().join("failed").join(dir.file_name().unwrap());
        assert!(!dir.exists() && failed.is_dir());
        assert!(said.contains("raw frames kept in"), "{said}");
        assert_eq!(
            std::fs::read_to_string(failed.join("error.txt")).unwrap(),
            "processing failed: x\n"
        );
    }

    #[test]
    fn a_missing_frame_is_the_input_and_an_unreadable_one_the_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let a = Archive::open(tmp.path()).unwrap();
        let dir = staged(&a, "0190c0de-0000-7000-8000-000000000002");
        // acquisition.json names no frames that exist: a bad input.
        let e = ProcessingError::from(crate::job::load(&dir, Some(tmp.path())).err().unwrap());
        assert!(matches!(e, ProcessingError::Input(_)), "{e:?}");
        // The disk returns EIO for the metadata (reading /proc/self/mem at 0 does).
        std::fs::remove_file(dir.join("acquisition.json")).unwrap();
        std::os::unix::fs::symlink("/proc/self/mem", dir.join("acquisition.json")).unwrap();
        let e = ProcessingError::from(crate::job::load(&dir, Some(tmp.path())).err().unwrap());
        assert!(matches!(e, ProcessingError::Storage(_)), "{e:?}");
    }
}
