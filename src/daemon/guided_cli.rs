//! `lumiq calibrate --guided --config FILE`: guided calibration on the instrument the
//! daemon's settings name (`[camera]`, `[controller]`, `[acquisition]`, and the set at
//! `[calibration] dir`). Stop the daemon first: both cannot drive the camera at once.
//!
//! Owns: the flags, opening the instrument and choosing what to take; the steps are
//! [`crate::acquire::guided`], the terminal side [`crate::acquire::prompt`].

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::instrument::open_instrument;
use crate::acquire::guided::{self, GuidedPlan};
use crate::acquire::prompt::TerminalGuide;
use crate::acquire::SimTechnician;
use crate::config::Settings;
use crate::formats::calibration_set::CalibrationSet;

/// The flags of `lumiq calibrate --guided`.
#[derive(Debug, Args)]
pub struct GuidedArgs {
    /// Walk a technician through a new calibration set on the instrument the settings name
    /// (bias, darks, flat-field panel, flats), replacing `[calibration] dir` at the end.
    #[arg(long, requires = "config")]
    pub guided: bool,
    /// The daemon's settings (TOML; `LUMIQ_<SECTION>__<KEY>` variables override it).
    #[arg(long, requires = "guided")]
    pub config: Option<PathBuf>,
    /// Go through every step without waiting for Enter.
    #[arg(long, requires = "guided")]
    pub yes: bool,
    /// Raw frames per master (bias, each dark, each flat).
    #[arg(long, value_name = "N", default_value_t = 10, requires = "guided")]
    pub frames_per_master: usize,
    /// Exposure of the darks, s; repeat for each (default: the exposures of the set's
    /// darks at the daemon's binnings).
    #[arg(long = "dark-exposure", value_name = "S", requires = "guided")]
    pub dark_exposures_s: Vec<f64>,
}

/// The flats aim at this fraction of the saturation level above bias.
const FLAT_TARGET_FRACTION: f64 = 0.4;

/// Run guided calibration; `id` names a set made from nothing (default: the folder's name).
pub fn calibrate_guided(a: &GuidedArgs, id: Option<String>) -> anyhow::Result<()> {
    let file = a.config.as_ref().context("--guided needs --config FILE")?;
    let settings = Settings::load(file)?;
    let set_dir = settings.calibration_dir();
    // A first set is made from nothing: the check of the whole settings wants one already.
    if set_dir
        .join(crate::formats::calibration_set::INDEX_FILE)
        .exists()
    {
        settings.validate()?;
    }
    let existing = CalibrationSet::load(&set_dir).ok();
    let binnings = settings.acquisition.binnings.clone();
    let mut dark_exposures_s = a.dark_exposures_s.clone();
    if dark_exposures_s.is_empty() {
        if let Some(s) = &existing {
            for d in s
                .index
                .dark
                .iter()
                .filter(|d| binnings.contains(&d.binning))
            {
                if !dark_exposures_s
                    .iter()
                    .any(|t| (t - d.exposure_s).abs() < 1e-3)
                {
                    dark_exposures_s.push(d.exposure_s);
                }
            }
        }
    }
    if dark_exposures_s.is_empty() {
        anyhow::bail!(
            "{}: no darks at binnings {binnings:?} to take again; pass --dark-exposure S (repeatable) with the exposures the daemon uses",
            set_dir.display()
        );
    }
    let saturation_adu = existing
        .as_ref()
        .map_or(65000.0, |s| s.index.sensor.saturation_adu);
    let plan = GuidedPlan {
        binnings,
        dark_exposures_s,
        frames_per_master: a.frames_per_master,
        flat_target_adu: FLAT_TARGET_FRACTION * saturation_adu,
        new_set_id: id.unwrap_or_else(|| {
            set_dir
                .file_name()
                .map_or("calibration".into(), |n| n.to_string_lossy().into_owned())
        }),
    };
    let mut inst = open_instrument(&settings, set_dir.clone())
        .with_context(|| format!("{}: opening the instrument", settings.source.origin))?;
    let stdin = std::io::stdin();
    let mut terminal = TerminalGuide::new(stdin.lock(), a.yes);
    let done = match inst.sim_box.clone() {
        Some(sim_box) => {
            let mut technician = SimTechnician {
                inner: &mut terminal,
                sim_box,
            };
            guided::run(
                &mut inst.imager,
                &inst.sequence,
                &set_dir,
                &plan,
                &mut technician,
            )
        }
        None => guided::run(
            &mut inst.imager,
            &inst.sequence,
            &set_dir,
            &plan,
            &mut terminal,
        ),
    }?;
    for w in &done.summary.warnings {
        eprintln!("warning: {w}");
    }
    eprintln!(
        "\ncalibration set {} replaced: {} masters, gain {:.4} e-/ADU, read noise {:.3} e-",
        done.set.display(),
        done.summary.masters.len(),
        done.summary.gain_e_per_adu,
        done.summary.read_noise_e
    );
    Ok(())
}
