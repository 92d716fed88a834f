//! Guided calibration (`lumiq calibrate --guided`): a technician builds a new calibration
//! set on the instrument in five steps — (1) door closed and cooling locked, (2) bias
//! frames, (3) darks at the exposures and binnings the daemon uses, (4) the flat-field
//! panel placed on the stage and the flats taken, (5) the set built with
//! [`crate::calibrate::build_set`] and swapped in for the old one atomically.
//!
//! Owns: the steps, their order and what each takes; nothing here reads a keyboard or
//! draws: a [`Guide`] (the terminal's is [`super::prompt`]) shows each step, waits for the
//! technician where a step needs one, and follows the frames.
//!
//! The old set stays valid until the end: the raw frames and the new set are written in a
//! work folder beside it (`.<set>.guided-<pid>`), the new set starts as a copy of the old
//! one (so its coefficients and the entries not re-made are kept) and is exchanged with
//! the old one in one rename (`renameat2(RENAME_EXCHANGE)`; where the file system cannot,
//! two renames). A run that fails or is interrupted leaves the old set as it was.

use std::path::{Path, PathBuf};

use super::dark::write_calibration_frames;
use super::sequence::{CaptureError, Imager, Prepared, SequenceConfig};
use crate::acquisition::{AcquisitionMeta, AcquisitionSettings};
use crate::calibrate::{build_set, CalibrateError, CalibrateOptions, CalibrationSummary};
use crate::camera::{Frame, FrameRequest, Shutter};
use crate::errors::FileError;
use crate::formats::acquisition_folder::FrameKind;
use crate::formats::calibration_set::{CalibrationIndex, CalibrationSet, INDEX_FILE};
use crate::formats::FormatError;

/// The shortest exposure the camera takes (its `ExposureTime` minimum): the bias frames'.
pub const BIAS_EXPOSURE_S: f64 = 1e-4;
/// The flats' probe exposure, s (the flats' own exposure is scaled from it).
const FLAT_PROBE_S: f64 = 0.5;
/// The flats' exposure is kept within this range, s.
const FLAT_EXPOSURE_RANGE_S: (f64, f64) = (0.01, 600.0);

/// What to take.
#[derive(Debug, Clone, PartialEq)]
pub struct GuidedPlan {
    /// Binnings of the bias, darks and flats (the daemon's auto-exposure binnings).
    pub binnings: Vec<u32>,
    /// Exposures of the darks, s (each at each binning).
    pub dark_exposures_s: Vec<f64>,
    /// Raw frames combined into each master (at least 2).
    pub frames_per_master: usize,
    /// Level above bias the flats aim for, ADU.
    pub flat_target_adu: f64,
    /// The set's id when there is no set yet (else the set keeps its own).
    pub new_set_id: String,
}

/// The five steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// Door closed and cooling locked.
    Prepare,
    Bias,
    Darks,
    /// The flat-field panel placed, the flats taken.
    Flats,
    /// The set built and swapped in.
    Build,
}

/// One step as the technician sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub kind: StepKind,
    pub number: usize,
    pub total: usize,
    pub title: String,
    /// What the technician does (or what the instrument does, for steps without them).
    pub instructions: String,
    /// The step waits for the technician to say it is done before it starts.
    pub needs_technician: bool,
    /// Units of work the step's progress counts (frames; 1 for steps without frames).
    pub work: u64,
}

/// What shows the steps and hears the technician.
pub trait Guide {
    /// Show `step`; when it needs the technician, return once they say it is done.
    fn begin(&mut self, step: &Step) -> Result<(), GuidedError>;
    /// One unit of the step's work done.
    fn advance(&mut self, what: &str);
    /// The step is done.
    fn finish(&mut self, summary: &str);
}

/// Why guided calibration stopped. The old set is as it was.
#[derive(Debug, thiserror::Error)]
pub enum GuidedError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Calibrate(#[from] CalibrateError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{0}")]
    Plan(String),
    #[error("the flat-field panel gives {level_adu:.0} ADU above bias in a {probe_s} s frame at binning {binning}; place the panel on the stage, switch it on and start again")]
    NoPanelLight {
        level_adu: f64,
        probe_s: f64,
        binning: u32,
    },
    #[error("stopped at step {step}: {reason}; the calibration set was not changed")]
    Stopped { step: usize, reason: String },
}

/// What a guided calibration did.
#[derive(Debug, Clone)]
pub struct GuidedSummary {
    pub set: PathBuf,
    pub summary: CalibrationSummary,
    /// Flat exposure chosen per binning, s.
    pub flat_exposures_s: Vec<(u32, f64)>,
    pub prepared: Prepared,
}

impl GuidedPlan {
    fn check(&self) -> Result<(), GuidedError> {
        let bad = |m: String| Err(GuidedError::Plan(m));
        if self.binnings.is_empty() {
            return bad("no binnings: set [acquisition] binnings in the settings".into());
        }
        if let Some(b) = self.binnings.iter().find(|b| !(1..=64).contains(*b)) {
            return bad(format!("binning {b}: use binnings from 1 to 64"));
        }
        if self.dark_exposures_s.is_empty() {
            return bad("no dark exposures: pass --dark-exposure S (repeatable)".into());
        }
        if let Some(t) = self
            .dark_exposures_s
            .iter()
            .find(|t| !(t.is_finite() && **t >= BIAS_EXPOSURE_S && **t <= 600.0))
        {
            return bad(format!(
                "--dark-exposure {t}: use a number of seconds from {BIAS_EXPOSURE_S} to 600"
            ));
        }
        if self.frames_per_master < 2 {
            return bad(format!(
                "--frames-per-master {}: use at least 2 (10 or more for a low-noise master)",
                self.frames_per_master
            ));
        }
        Ok(())
    }
}

fn step(kind: StepKind, title: &str, instructions: String, needs: bool, work: u64) -> Step {
    Step {
        kind,
        number: kind as usize + 1,
        total: 5,
        title: title.into(),
        instructions,
        needs_technician: needs,
        work: work.max(1),
    }
}

/// Take `n` frames of `req` under the interlock, telling the guide after each.
fn frames(
    imager: &mut Imager,
    guide: &mut dyn Guide,
    req: &FrameRequest,
    n: usize,
    what: &str,
) -> Result<Vec<Frame>, GuidedError> {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        v.push(imager.frame(req, what)?);
        guide.advance(&format!("{what} {}/{n}", i + 1));
    }
    Ok(v)
}

/// Median of the central box (side a quarter of the frame) of a frame, ADU.
fn central_median(f: &Frame) -> f64 {
    let (rows, cols) = f.pixels.dim();
    let (r0, c0) = (rows * 3 / 8, cols * 3 / 8);
    let (r1, c1) = ((rows * 5 / 8).max(r0 + 1), (cols * 5 / 8).max(c0 + 1));
    let mut v: Vec<u16> = (r0..r1)
        .flat_map(|r| (c0..c1).map(move |c| (r, c)))
        .map(|rc| f.pixels[rc])
        .collect();
    v.sort_unstable();
    v[v.len() / 2] as f64
}

/// The work folder beside the set: `<parent>/.<name>.guided-<pid>`.
fn work_dir(set: &Path) -> PathBuf {
    let name = set
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "calibration".into());
    set.with_file_name(format!(".{name}.guided-{}", std::process::id()))
}

/// Copy the files of the set (a flat folder) into `to`.
fn copy_set(from: &Path, to: &Path) -> Result<(), GuidedError> {
    std::fs::create_dir_all(to).map_err(FileError::at(to, "cannot create; check permissions"))?;
    let entries =
        std::fs::read_dir(from).map_err(FileError::at(from, "cannot list; check permissions"))?;
    for e in entries {
        let e = e.map_err(FileError::at(from, "cannot list; check permissions"))?;
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name()))
                .map_err(FileError::at(&e.path(), "cannot copy into the new set"))?;
        }
    }
    Ok(())
}

/// Put the folder `new` in place of `set` in one step; afterwards `new` holds the old set
/// (or nothing, when there was none).
fn swap_in(new: &Path, set: &Path) -> Result<(), GuidedError> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    if !set.exists() {
        return std::fs::rename(new, set)
            .map_err(|e| FileError::at(set, "cannot move the new set into place")(e).into());
    }
    match renameat_with(CWD, new, CWD, set, RenameFlags::EXCHANGE) {
        Ok(()) => Ok(()),
        Err(_) => {
            // No atomic exchange on this file system: move the old set aside, then the new
            // one in (a crash between the two leaves the old set at `<new>.old`).
            let old = new.with_extension("old");
            std::fs::rename(set, &old)
                .map_err(FileError::at(set, "cannot move the old set aside"))?;
            std::fs::rename(new, set)
                .map_err(FileError::at(set, "cannot move the new set into place"))?;
            std::fs::rename(&old, new).map_err(FileError::at(&old, "cannot clean up"))?;
            Ok(())
        }
    }
}

/// Run the five steps on `imager` (settings `cfg`) and replace the set at `set`.
pub fn run(
    imager: &mut Imager,
    cfg: &SequenceConfig,
    set: &Path,
    plan: &GuidedPlan,
    guide: &mut dyn Guide,
) -> Result<GuidedSummary, GuidedError> {
    plan.check()?;
    let work = work_dir(set);
    let _ = std::fs::remove_dir_all(&work);
    let r = run_in(imager, cfg, set, &work, plan, guide);
    imager.finish();
    let _ = std::fs::remove_dir_all(&work);
    r
}

fn run_in(
    imager: &mut Imager,
    cfg: &SequenceConfig,
    set: &Path,
    work: &Path,
    plan: &GuidedPlan,
    guide: &mut dyn Guide,
) -> Result<GuidedSummary, GuidedError> {
    let existing = if set.join(INDEX_FILE).is_file() {
        let s = CalibrationSet::load(set)?;
        if s.index.instrument_id != cfg.instrument_id {
            return Err(GuidedError::Plan(format!(
                "{}: the set is for instrument {:?}, the settings name {:?}; point [calibration] dir at this instrument's set",
                set.display(),
                s.index.instrument_id,
                cfg.instrument_id
            )));
        }
        Some(s.index)
    } else {
        None
    };
    let raw = work.join("raw");
    let n = plan.frames_per_master;
    let nb = plan.binnings.len() as u64;

    // 1. Door closed, cooling locked.
    guide.begin(&step(
        StepKind::Prepare,
        "door closed, cooling locked",
        format!(
            "Take everything off the stage and close the door; the camera cools to {:.1} °C.",
            cfg.cooling_setpoint_c
        ),
        true,
        1,
    ))?;
    let prepared = imager.prepare(cfg)?;
    guide.advance("cooling locked");
    guide.finish(&format!(
        "door closed and locked; cooling locked at {:.2} °C after {:.0} s",
        prepared.locked_temp_c, prepared.cooling_wait_s
    ));
    let meta = AcquisitionMeta {
        instrument_id: cfg.instrument_id.clone(),
        acquired_at: imager.clock().utc_now(),
        settings: AcquisitionSettings {
            exposure_s: BIAS_EXPOSURE_S,
            binning: plan.binnings[0],
            f_number: cfg.f_number,
            fov_cm: prepared.fov_cm,
            sensor_temp_c: prepared.locked_temp_c,
            emission_filter: prepared.filter.clone(),
            shelf: Some(prepared.shelf.to_string()),
        },
        study_id: None,
        subject_ids: vec![],
        injection_time: None,
        view: None,
        photograph: None,
    };
    let mut folders = Vec::new();

    // 2. Bias.
    guide.begin(&step(
        StepKind::Bias,
        "bias frames",
        format!(
            "{n} bias frames (shutter closed, shortest exposure) at binning {:?}.",
            plan.binnings
        ),
        false,
        n as u64 * nb,
    ))?;
    let mut bias_level = Vec::new();
    for &b in &plan.binnings {
        let req = FrameRequest {
            exposure_s: BIAS_EXPOSURE_S,
            binning: b,
            shutter: Shutter::Closed,
            require_lock: true,
        };
        let f = frames(imager, guide, &req, n, &format!("bias b{b}"))?;
        let mut levels: Vec<f64> = f.iter().map(central_median).collect();
        levels.sort_by(f64::total_cmp);
        bias_level.push((b, levels[levels.len() / 2]));
        folders.extend(write_calibration_frames(
            &raw,
            &format!("bias_b{b}"),
            &meta,
            &f,
            FrameKind::Bias,
        )?);
    }
    guide.finish(&format!("{} bias frames", n * plan.binnings.len()));

    // 3. Darks.
    let ne = plan.dark_exposures_s.len() as u64;
    guide.begin(&step(
        StepKind::Darks,
        "darks",
        format!(
            "{n} darks (shutter closed) of {:?} s at binning {:?}.",
            plan.dark_exposures_s, plan.binnings
        ),
        false,
        n as u64 * nb * ne,
    ))?;
    for &b in &plan.binnings {
        for &t in &plan.dark_exposures_s {
            let req = FrameRequest {
                exposure_s: t,
                binning: b,
                shutter: Shutter::Closed,
                require_lock: true,
            };
            let f = frames(imager, guide, &req, n, &format!("dark b{b} {t} s"))?;
            folders.extend(write_calibration_frames(
                &raw,
                &format!("dark_b{b}_{}ms", (t * 1000.0).round() as u64),
                &meta,
                &f,
                FrameKind::Dark,
            )?);
        }
    }
    guide.finish(&format!("{} darks", n as u64 * nb * ne));

    // 4. Flats: the door is unlocked for the technician, then closed and locked again.
    imager.finish();
    guide.begin(&step(
        StepKind::Flats,
        "flat-field panel and flats",
        format!(
            "Open the door, lay the flat-field panel on the stage (shelf {}) so it fills the field, switch it on and close the door.",
            cfg.shelf
        ),
        true,
        (n as u64 + 1) * nb,
    ))?;
    let prepared4 = imager.prepare(cfg)?;
    let mut flat_exposures_s = Vec::new();
    for &(b, bias) in &bias_level {
        let probe_req = FrameRequest {
            exposure_s: FLAT_PROBE_S,
            binning: b,
            shutter: Shutter::Auto,
            require_lock: true,
        };
        let probe = imager.frame(&probe_req, "flat probe")?;
        guide.advance(&format!("flat probe b{b}"));
        let level_adu = central_median(&probe) - bias;
        if level_adu < 50.0 {
            return Err(GuidedError::NoPanelLight {
                level_adu,
                probe_s: FLAT_PROBE_S,
                binning: b,
            });
        }
        let t = (FLAT_PROBE_S * plan.flat_target_adu / level_adu)
            .clamp(FLAT_EXPOSURE_RANGE_S.0, FLAT_EXPOSURE_RANGE_S.1);
        let t = (t * 1000.0).round() / 1000.0;
        flat_exposures_s.push((b, t));
        let req = FrameRequest {
            exposure_s: t,
            ..probe_req
        };
        let f = frames(imager, guide, &req, n, &format!("flat b{b} {t} s"))?;
        let flat_meta = AcquisitionMeta {
            settings: AcquisitionSettings {
                fov_cm: prepared4.fov_cm,
                emission_filter: prepared4.filter.clone(),
                ..meta.settings.clone()
            },
            ..meta.clone()
        };
        folders.extend(write_calibration_frames(
            &raw,
            &format!("flat_b{b}"),
            &flat_meta,
            &f,
            FrameKind::Flat,
        )?);
    }
    imager.finish();
    guide.finish(&format!(
        "{} flats; exposures {:?}",
        n * plan.binnings.len(),
        flat_exposures_s
    ));

    // 5. Build beside, check, swap in.
    guide.begin(&step(
        StepKind::Build,
        "build and install the set",
        format!(
            "Open the door and take the panel away. The new set is built beside {} and replaces it once complete.",
            set.display()
        ),
        false,
        1,
    ))?;
    let new_set = work.join("set");
    let mut opts = match &existing {
        Some(ix) => options_like(ix),
        None => CalibrateOptions::new(plan.new_set_id.clone(), cfg.instrument_id.clone()),
    };
    if existing.is_some() {
        copy_set(set, &new_set)?;
    }
    opts.created_at = Some(imager.clock().utc_now());
    opts.dark_setpoint_c = Some(cfg.cooling_setpoint_c);
    let summary = build_set(&folders, &new_set, &opts)?;
    CalibrationSet::load(&new_set)?;
    swap_in(&new_set, set)?;
    guide.advance("set installed");
    guide.finish(&format!(
        "{} masters; gain {:.4} e-/ADU, read noise {:.3} e-; {} replaced",
        summary.masters.len(),
        summary.gain_e_per_adu,
        summary.read_noise_e,
        set.display()
    ));
    let mut summary = summary;
    summary.dir = set.to_path_buf();
    summary.index_path = set.join(INDEX_FILE);
    Ok(GuidedSummary {
        set: set.to_path_buf(),
        summary,
        flat_exposures_s,
        prepared,
    })
}

/// Options that rebuild the set `ix` describes: its id, instrument, saturation, pixel
/// pitch and dark rules (its coefficients are kept by the merge).
fn options_like(ix: &CalibrationIndex) -> CalibrateOptions {
    let mut o = CalibrateOptions::new(ix.id.clone(), ix.instrument_id.clone());
    o.saturation_adu = ix.sensor.saturation_adu;
    o.pixel_pitch_um = ix.sensor.pixel_pitch_um;
    o.dark_rules = ix.dark_rules;
    o
}
