//! `lumiq trend DIR... --out DIR`: every acquisition below the DIRs (the daemon's archive,
//! or folders to quantify), joined into each tumour's flux against day; writes
//! `trend.csv` (one row per tumour and session), `tumours.csv` (growth rate, doubling time
//! and spread per tumour) and `trend.png`, and prints the tumours' table.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use crate::job::{self, Sources};
use crate::overlay::plot::{render_trend, PlotPoint, PlotSeries};
use crate::process::qc::QcResult;
use crate::process::ProcessingParams;
use crate::record::{MeasurementRecord, QcState};

#[derive(Debug, Args)]
pub struct TrendArgs {
    /// Folders to search for acquisitions: the daemon's archive (each acquisition's
    /// `record.json` is used as delivered) or acquisition folders and IVIS click folders
    /// (quantified as `lumiq process` does).
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Where to write trend.csv, tumours.csv and trend.png (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Calibration set for lumiq folders that are quantified (as for `lumiq process`).
    #[arg(long)]
    pub calibration: Option<PathBuf>,
    /// The QC history that corrects acquisitions without a QC of their own (as for
    /// `lumiq process --qc-history`).
    #[arg(long, value_name = "FILE")]
    pub qc_history: Option<PathBuf>,
}

/// Returns the exit code: 0 all read, 1 some acquisitions failed (listed on stderr).
pub fn run(a: TrendArgs) -> anyhow::Result<i32> {
    let found = crate::batch::discover(&a.dirs);
    let (history, sources) = inputs(a.qc_history.as_deref(), a.calibration.as_deref())?;
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(found.acquisitions.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut records = Vec::new();
    let mut failed: Vec<String> = found
        .problems
        .iter()
        .map(|p| format!("{}: {}", p.folder.display(), p.error))
        .collect();
    for folder in &found.acquisitions {
        bar.inc(1);
        match record_of(folder, &sources, history.as_deref()) {
            Ok(r) => records.push(r),
            Err(e) => failed.push(format!("{}: {e:#}", folder.display())),
        }
    }
    bar.finish_and_clear();
    let trend = super::build(&records);
    failed.extend(trend.problems.iter().cloned());
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("{}: cannot create the folder", a.out.display()))?;
    write_csv(&a.out.join("trend.csv"), &trend.points)?;
    write_csv(&a.out.join("tumours.csv"), &trend.tumours)?;
    let series = plot_series(&trend);
    let title = format!(
        "{} acquisitions, {} tumours: peak flux per session",
        records.len(),
        trend.tumours.len()
    );
    crate::overlay::write_png(&a.out.join("trend.png"), &render_trend(&series, &title))?;
    println!("study       tumour        sessions  growth/day        doubling (d)  CV");
    for t in &trend.tumours {
        println!(
            "{:<11} {:<13} {:>8}  {:>16}  {:>12}  {:>6}",
            t.study_id,
            t.tumour,
            t.sessions,
            match (t.growth_per_day, t.growth_per_day_sigma) {
                (Some(g), Some(s)) => format!("{g:.4} ± {s:.4}"),
                _ => "-".into(),
            },
            t.doubling_days.map_or("-".into(), |d| format!("{d:.2}")),
            t.cv.map_or("-".into(), |c| format!("{:.2} %", 100.0 * c)),
        );
    }
    for f in &failed {
        eprintln!("lumiq: trend: {f}");
    }
    eprintln!(
        "lumiq: trend: {} acquisitions, {} sessions rows, written to {}",
        records.len(),
        trend.points.len(),
        a.out.display()
    );
    Ok(if failed.is_empty() { 0 } else { 1 })
}

/// The QC history, when given, and the calibration both commands quantify folders with.
fn inputs<'a>(
    qc_history: Option<&Path>,
    calibration: Option<&'a Path>,
) -> anyhow::Result<(Option<Vec<QcResult>>, Sources<'a>)> {
    let history = qc_history.map(crate::qc::history::load).transpose()?;
    let sources = Sources {
        calibration_dir: calibration,
        ..Sources::default()
    };
    Ok((history, sources))
}

/// The acquisition's record: its `record.json` when it has one (an archive folder), else
/// quantified now; corrected by `history` when it carries no QC of its own.
pub(crate) fn record_of(
    folder: &Path,
    sources: &Sources,
    history: Option<&[QcResult]>,
) -> anyhow::Result<MeasurementRecord> {
    let stored = folder.join("record.json");
    let mut record: MeasurementRecord = if stored.is_file() {
        let text = std::fs::read_to_string(&stored)
            .with_context(|| format!("{}: cannot read", stored.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not a measurement record", stored.display()))?
    } else {
        let input = job::load_with(folder, sources)?;
        job::run(input, &ProcessingParams::default())?.record
    };
    if let (Some(h), QcState::NotConfigured) = (history, record.qc.state) {
        let at = chrono::DateTime::parse_from_rfc3339(&record.acquired_at)
            .with_context(|| format!("acquired_at {:?}", record.acquired_at))?
            .with_timezone(&chrono::Utc);
        let sel = crate::process::qc::select(h, &record.instrument_id, at);
        crate::record::apply_qc(&mut record, &sel);
    }
    Ok(record)
}

fn write_csv<T: serde::Serialize>(path: &Path, rows: &[T]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_path(path)
        .with_context(|| format!("{}: cannot write", path.display()))?;
    for r in rows {
        w.serialize(r)
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    w.flush()
        .with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(())
}

fn plot_series(t: &super::Trend) -> Vec<PlotSeries> {
    t.tumours
        .iter()
        .map(|s| {
            let mine = t
                .points
                .iter()
                .filter(|p| p.study_id == s.study_id && p.tumour == s.tumour);
            PlotSeries {
                label: s.tumour.clone(),
                raw: mine
                    .clone()
                    .map(|p| PlotPoint {
                        day: p.day,
                        value: p.peak_flux,
                        sigma: p.peak_flux_sigma,
                    })
                    .collect(),
                corrected: mine
                    .filter_map(|p| {
                        Some(PlotPoint {
                            day: p.day,
                            value: p.corrected_peak_flux?,
                            sigma: p.corrected_peak_flux_sigma?,
                        })
                    })
                    .collect(),
            }
        })
        .collect()
}

#[derive(Debug, Args)]
pub struct KineticsArgs {
    /// The series: a folder holding its frames (`lumiq capture --kinetic` writes
    /// frame-001, frame-002, ...), the frames themselves, or archive folders with their
    /// `record.json`.
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Calibration set for lumiq folders that are quantified (as for `lumiq process`).
    #[arg(long)]
    pub calibration: Option<PathBuf>,
    /// The QC history that corrects frames without a QC of their own.
    #[arg(long, value_name = "FILE")]
    pub qc_history: Option<PathBuf>,
}

/// `lumiq kinetics`: the sequence record (`lumiq.sequence`) of one kinetic series, printed
/// as one JSON object. Every frame must be read: a frame that fails fails the command.
pub fn kinetics(a: KineticsArgs) -> anyhow::Result<()> {
    let found = crate::batch::discover(&a.dirs);
    if let Some(p) = found.problems.first() {
        anyhow::bail!("{}: {}", p.folder.display(), p.error);
    }
    if found.acquisitions.is_empty() {
        anyhow::bail!(
            "no acquisition folder below {}: give the series' folder or its frames",
            a.dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let (history, sources) = inputs(a.qc_history.as_deref(), a.calibration.as_deref())?;
    let records = found
        .acquisitions
        .iter()
        .map(|f| {
            record_of(f, &sources, history.as_deref()).with_context(|| f.display().to_string())
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let seq = crate::sequence::build(&records, uuid::Uuid::now_v7())?;
    println!("{}", serde_json::to_string_pretty(&seq)?);
    Ok(())
}
