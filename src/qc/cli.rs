//! `lumiq qc FOLDER...`: run the daily QC on images of the reference light source, append
//! each result to the QC history, print it, and exit 1 when one is not a pass.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use crate::config::Settings;
use crate::job::Sources;
use crate::process::qc::QcVerdict;

#[derive(Debug, Args)]
pub struct QcArgs {
    /// The configuration file: its `[qc]` section describes the source, and the history is
    /// `<state.dir>/qc/history.jsonl`.
    #[arg(long, default_value = "/etc/lumiq/lumiq.toml")]
    pub config: PathBuf,
    /// Append to this history file instead of the state directory's.
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// The calibration set for lumiq folders (default: the configuration's).
    #[arg(long, value_name = "DIR")]
    pub calibration: Option<PathBuf>,
    /// Images of the reference source: lumiq acquisition folders or IVIS click folders.
    #[arg(required = true)]
    pub folders: Vec<PathBuf>,
}

/// Returns the exit code: 0 every QC passed, 1 one was out of tolerance or invalid.
pub fn run(a: QcArgs) -> anyhow::Result<i32> {
    let settings = Settings::load(&a.config)?;
    let Some(procedure) = settings
        .qc_procedure()
        .map_err(|e| anyhow::anyhow!("{}: [qc] reference_date: {e}", a.config.display()))?
    else {
        bail!(
            "{}: no [qc] section: describe the reference light source there (see docs/qc.md)",
            a.config.display()
        );
    };
    let history = a.history.unwrap_or_else(|| settings.qc_history_path());
    let calibration = a.calibration.unwrap_or_else(|| settings.calibration_dir());
    let sources = Sources {
        calibration_dir: Some(&calibration),
        ..Sources::default()
    };
    let mut code = 0;
    for folder in &a.folders {
        let result = super::run_on_folder(folder, &sources, &procedure)?;
        super::history::append(&history, &result)
            .with_context(|| "cannot keep the QC result; nothing was applied")?;
        println!(
            "{}",
            serde_json::to_string(&result).expect("a QC result serialises")
        );
        eprintln!("{}: {}", folder.display(), super::summary_line(&result));
        if result.verdict != QcVerdict::Pass {
            code = 1;
        }
    }
    Ok(code)
}
