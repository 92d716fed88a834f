//! The `lumiq` command line. Parses flags and calls the library; prints the record on
//! stdout and one-line errors on stderr.
//!
//! Owns: argument parsing, the exit code, and what the user sees. Nothing else.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::calibrate::{self as calib, CalibrateOptions};
use crate::formats::calibration_set::CoefficientEntry;
use crate::job;
use crate::process::{Detector, ProcessingParams};
use crate::segment::{self, TractSegmenter};
use crate::simulate::{self, Instrument, SceneSpec};

#[derive(Debug, Parser)]
#[command(
    name = "lumiq",
    version,
    about = "Calibrated tumour quantification for bioluminescence imagers"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Quantify one acquisition (a lumiq acquisition folder or an IVIS click folder) and
    /// print its measurement record as one JSON object.
    Process(ProcessArgs),
    /// Quantify every IVIS click folder and lumiq acquisition folder below some folders and
    /// write one CSV row per region (Living Image's ROI columns, then lumiq's). Exit 0: every
    /// folder processed; 1: some failed (listed in FILE.errors.csv); 2: nothing written.
    Batch(BatchArgs),
    /// Simulate an acquisition (or raw calibration frames) with ground truth.
    Simulate(SimulateArgs),
    /// Build calibration masters (bias, dark, flat, bad pixels, gain) from raw frames.
    Calibrate(CalibrateArgs),
    /// Capture a photograph, an auto-exposed luminescent frame and its dark from the imager
    /// (or the simulated imager) into a lumiq acquisition folder.
    Capture(crate::acquire::cli::CaptureArgs),
    /// Re-send stored measurement records from a seq on (e.g. after a LIMS saw a gap).
    Replay(crate::delivery::cli::ReplayArgs),
    /// Commit synthetic records and deliver them over MQTT (chaos tests, demos).
    #[command(hide = true)]
    DeliverTest(crate::delivery::cli::DeliverTestArgs),
    /// Write simulated frames for training or evaluating the segmentation model: model
    /// input, per-tumour truth labels and a JSON of each frame's tumours.
    #[command(hide = true)]
    SimulateTraining(SimulateTrainingArgs),
    /// Score the segmentation model, the classical detector and their union on a held-out
    /// simulated set: completeness by SNR, false positives, flux error, IoU.
    Eval(crate::eval::cli::EvalArgs),
    /// Check the daemon's configuration file (`lumiq config check FILE`) or print the
    /// effective settings (`lumiq config print FILE`).
    Config(crate::config::cli::ConfigArgs),
    /// Run the daemon: acquire, quantify, archive and deliver every acquisition; answer
    /// `lumiq status` on the local socket.
    Run(crate::daemon::cli::RunArgs),
    /// Ask the running daemon for an acquisition; prints its id (exit 1 when refused).
    Acquire(crate::daemon::cli::AcquireArgs),
    /// The running daemon's state at a glance (exit 0 fine, 1 needs a person, 2 not running).
    Status(crate::daemon::cli::StatusArgs),
    /// The whole daemon with the simulated instrument and a broker; records arrive on stdout
    /// as a LIMS receives them.
    Demo(crate::daemon::cli::DemoArgs),
    /// Daily QC: measure the reference light source in each FOLDER, append the result to
    /// the QC history (exit 1 when one is out of tolerance or invalid).
    Qc(crate::qc::cli::QcArgs),
    /// Each tumour's peak flux against day across a study (calibrated and QC-corrected),
    /// its growth rate and doubling time: trend.csv, tumours.csv and trend.png.
    Trend(crate::trend::cli::TrendArgs),
    /// The sequence record of one kinetic series: each region's peak flux, time to peak,
    /// area under the curve and whether the series covered the peak, as one JSON object.
    Kinetics(crate::trend::cli::KineticsArgs),
}

#[derive(Debug, Args)]
pub struct SimulateTrainingArgs {
    /// Output folder (frames/ and manifest.json are written inside).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of frames.
    #[arg(long)]
    pub frames: u64,
    /// Seed of the set; frame i of (profile, seed) is always the same frame.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Parameter ranges: training, or held out (beyond training).
    #[arg(long, value_enum, default_value = "train")]
    pub profile: simulate::training::Profile,
}

#[derive(Debug, Args)]
pub struct ProcessArgs {
    /// The acquisition folder.
    pub path: PathBuf,
    /// Calibration set for a lumiq folder (default: $LUMIQ_CALIBRATION_DIR, then
    /// calibration/<instrument_id>). IVIS click folders carry their own.
    #[arg(long)]
    pub calibration: Option<PathBuf>,
    /// Write radiance.tiff, background.tiff, overlay.png and record.json here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the record on one line instead of indented.
    #[arg(long)]
    pub compact: bool,
    /// How tumours are found: the classical detector, the segmentation model, or both
    /// (default: the winner of `lumiq eval` on the held-out set, see models/README.md).
    #[arg(long, value_enum)]
    pub detector: Option<DetectorChoice>,
    /// Segmentation model file, checked against the manifest.toml beside it (default:
    /// $LUMIQ_MODEL, then models/tumour-seg-v1.onnx).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// IVIS click folders: the lab's library of background (dark) clicks, one folder per
    /// click (`BKG20220105025931`); the click a folder names in `Background Click` is used
    /// when its own dark is unusable or absent (default: $LUMIQ_IVIS_BACKGROUNDS).
    #[arg(long, value_name = "DIR", env = "LUMIQ_IVIS_BACKGROUNDS")]
    pub ivis_backgrounds: Option<PathBuf>,
    /// The QC history (`lumiq qc`'s, `<state.dir>/qc/history.jsonl`): the newest usable QC
    /// made before the acquisition corrects its fluxes (`qc_corrected_flux`), see
    /// docs/qc.md. Without it the record says `qc.state = "not_configured"`.
    #[arg(long, value_name = "FILE")]
    pub qc_history: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BatchArgs {
    /// Folders to search, recursively, for click folders and acquisition folders.
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// The table to write (one row per region); the folders that failed go to
    /// FILE.errors.csv beside it. Both are replaced atomically at the end of the run.
    #[arg(long, value_name = "FILE")]
    pub csv: PathBuf,
    /// Calibration set for lumiq folders (as for `lumiq process`). IVIS click folders carry
    /// their own.
    #[arg(long)]
    pub calibration: Option<PathBuf>,
    /// The lab's background-click library for IVIS click folders (as for `lumiq process`;
    /// default: $LUMIQ_IVIS_BACKGROUNDS).
    #[arg(long, value_name = "DIR", env = "LUMIQ_IVIS_BACKGROUNDS")]
    pub ivis_backgrounds: Option<PathBuf>,
    /// How tumours are found (as for `lumiq process`).
    #[arg(long, value_enum)]
    pub detector: Option<DetectorChoice>,
    /// Segmentation model file (as for `lumiq process`).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// The QC history (as for `lumiq process`): fills the qc_* columns.
    #[arg(long, value_name = "FILE")]
    pub qc_history: Option<PathBuf>,
}

/// `--detector` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DetectorChoice {
    Classical,
    Model,
    Combined,
}

impl From<DetectorChoice> for Detector {
    fn from(d: DetectorChoice) -> Detector {
        match d {
            DetectorChoice::Classical => Detector::Classical,
            DetectorChoice::Model => Detector::Model,
            DetectorChoice::Combined => Detector::Combined,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SimFormat {
    Lumiq,
    Ivis,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Folder to write (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Write raw bias, dark and flat frames for `lumiq calibrate` instead of an acquisition.
    #[arg(long)]
    pub calibration_frames: bool,
    #[arg(long, value_enum, default_value = "lumiq")]
    pub format: SimFormat,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 8)]
    pub binning: u32,
    /// Width (and height) of the simulated sensor in unbinned pixels: 2048, or 1920 like
    /// an IVIS Spectrum (240 px at binning 8).
    #[arg(long, default_value_t = 2048, value_name = "PX")]
    pub sensor_px: usize,
    #[arg(long, default_value_t = 60.0)]
    pub exposure_s: f64,
    #[arg(long, default_value_t = 5)]
    pub mice: usize,
    /// Smallest and largest tumour total flux, photons/s.
    #[arg(long, num_args = 2, value_names = ["MIN", "MAX"], default_values_t = [2.0e4, 2.0e7])]
    pub flux: Vec<f64>,
    /// Add a pair of touching tumours on the first mouse.
    #[arg(long)]
    pub touching: bool,
    /// Lay the mice in touching pairs (first with second, third with fourth).
    #[arg(long)]
    pub touching_mice: bool,
    /// Give every mouse a tail in the photograph (the default; kept for older scripts).
    #[arg(long, conflicts_with = "no_tails")]
    pub tails: bool,
    /// Photograph mice without tails.
    #[arg(long)]
    pub no_tails: bool,
    /// Photograph without the apparatus and the finer anatomy: no manifold or nose cones, no
    /// dividers, no ear tags or tail marks, elliptical mice without a neck.
    #[arg(long)]
    pub plain_photo: bool,
    /// Unevenness of the photograph's LED light (0 = the instrument's gentle falloff; 0.6 =
    /// a far corner at about a third of the brightest spot, shaded bodies).
    #[arg(long, default_value_t = 0.0, value_name = "U")]
    pub uneven_light: f64,
    /// Sources of light on the stage off every mouse (listed in truth.json).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub stray_sources: usize,
    #[arg(long)]
    pub no_cosmic_rays: bool,
    /// Draw a circular ROI around every tumour (lumiq folders; IVIS folders always get them).
    #[arg(long)]
    pub rois: bool,
    /// IVIS only: write a dark frame saturated everywhere, as some real folders have.
    #[arg(long)]
    pub unusable_dark: bool,
    /// IVIS only: write the folder's own dark saturated, and the true dark as the background
    /// click it names (`Background Click`) in this library folder (for `--ivis-backgrounds`).
    #[arg(long, value_name = "DIR", conflicts_with = "unusable_dark")]
    pub background_library: Option<PathBuf>,
    /// Write a longitudinal study on a drifting instrument instead of one acquisition: each
    /// day the reference source's image (OUT/qc/dayNN) and a kinetic series after an
    /// injection (OUT/frames/dayNN/frame-NNN), with OUT/study.json (the truth) and
    /// OUT/lumiq.toml (its [qc] source); see docs/qc.md.
    #[arg(long)]
    pub study: bool,
    /// Study: days to simulate.
    #[arg(long, default_value_t = 10, requires = "study")]
    pub days: usize,
    /// Calibration frames: binnings to simulate.
    #[arg(long, value_delimiter = ',', default_values_t = [4u32, 8])]
    pub binnings: Vec<u32>,
    /// Calibration frames: frames per master.
    #[arg(long, default_value_t = 10)]
    pub frames: usize,
}

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// Calibration set folder to create or update.
    #[arg(long, required_unless_present = "guided")]
    pub out: Option<PathBuf>,
    /// Identifier of the set (default: the folder's name).
    #[arg(long)]
    pub id: Option<String>,
    /// Instrument the frames come from (default: the first frame's `instrument_id`).
    #[arg(long)]
    pub instrument: Option<String>,
    /// Absolute calibration coefficient to record, as FOV_CM:F_NUMBER:C:REL_UNCERTAINTY
    /// (e.g. 22.4:1:7.223e5:0.05); repeat for each field of view and f-number.
    #[arg(long = "coefficient", value_name = "FOV:F:C:REL")]
    pub coefficients: Vec<String>,
    /// Record the simulated instrument's coefficients and sensor facts, with a fixed
    /// creation time (for frames from `lumiq simulate --calibration-frames`).
    #[arg(long)]
    pub simulated_instrument: bool,
    /// Raw level at or above which a pixel is saturated, ADU.
    #[arg(long)]
    pub saturation_adu: Option<f64>,
    /// Raw frames: lumiq acquisition folders of kind bias, dark or flat, or folders holding them.
    #[arg(required_unless_present = "guided", conflicts_with = "guided")]
    pub frames: Vec<PathBuf>,
    #[command(flatten)]
    pub guided: crate::daemon::guided_cli::GuidedArgs,
}

/// Run the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    // The daemon's commands set up logging from their settings.
    if !matches!(cli.command, Command::Run(_) | Command::Demo(_)) {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_target(false)
            .init();
    }
    match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("lumiq: error: {}", chain.join(": "));
            1
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Process(a) => process(a),
        Command::Batch(a) => exit_with(batch(a)),
        Command::Simulate(a) => simulate(a),
        Command::Calibrate(a) => calibrate(a),
        Command::Capture(a) => crate::acquire::cli::capture(a),
        Command::Replay(a) => crate::delivery::cli::replay(a),
        Command::DeliverTest(a) => crate::delivery::cli::deliver_test(a),
        Command::SimulateTraining(a) => simulate_training(a),
        Command::Config(a) => crate::config::cli::run(a),
        Command::Eval(a) => crate::eval::cli::run(a),
        Command::Run(a) => crate::daemon::cli::run(a),
        Command::Demo(a) => crate::daemon::cli::demo(a),
        Command::Acquire(a) => exit_with(crate::daemon::cli::acquire(a)?),
        Command::Status(a) => exit_with(crate::daemon::cli::status(a)?),
        Command::Qc(a) => exit_with(crate::qc::cli::run(a)?),
        Command::Trend(a) => exit_with(crate::trend::cli::run(a)?),
        Command::Kinetics(a) => crate::trend::cli::kinetics(a),
    }
}

/// Commands whose exit code says more than success or failure (`lumiq status`).
fn exit_with(code: i32) -> anyhow::Result<()> {
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

fn simulate_training(a: SimulateTrainingArgs) -> anyhow::Result<()> {
    let m = simulate::training::write_training_set(&a.out, a.profile, a.seed, a.frames)?;
    eprintln!(
        "wrote {} {:?} frames (seed {}, {} tumours) to {}",
        m.frames,
        m.profile,
        m.seed,
        m.tumours,
        a.out.display()
    );
    Ok(())
}

/// The detector `--detector` names and, unless it is the classical one, its model — loaded
/// (and its hash checked) before any acquisition is read: a bad model fails fast.
fn detector_and_model(
    choice: Option<DetectorChoice>,
    model: Option<&std::path::Path>,
) -> anyhow::Result<(Detector, Option<TractSegmenter>)> {
    let detector = choice.map_or(segment::DEFAULT_DETECTOR, Detector::from);
    if detector == Detector::Classical {
        if let Some(p) = model {
            tracing::warn!(
                "{}: --model is not used by the classical detector",
                p.display()
            );
        }
        return Ok((detector, None));
    }
    let path = segment::resolve_model_path(model)?;
    Ok((detector, Some(TractSegmenter::load(&path)?)))
}

/// `lumiq batch`: the exit code (0 all processed, 1 some folders failed, 2 nothing written).
fn batch(a: BatchArgs) -> i32 {
    match batch_run(&a) {
        Ok(summary) => {
            let errors = crate::batch::errors_path(&a.csv);
            let plural =
                |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
            eprintln!(
                "lumiq: batch: {}: {} processed ({} in {}), {} failed{}",
                plural(summary.folders, "folder"),
                summary.processed,
                plural(summary.rows, "row"),
                a.csv.display(),
                summary.failed,
                if summary.failed > 0 {
                    format!(" (listed in {})", errors.display())
                } else {
                    String::new()
                }
            );
            if summary.failed > 0 {
                1
            } else {
                0
            }
        }
        Err(e) => {
            eprintln!("lumiq: error: {}", crate::errors::one_line(&*e));
            2
        }
    }
}

fn batch_run(a: &BatchArgs) -> anyhow::Result<crate::batch::Summary> {
    use std::io::IsTerminal;
    let (detector, model) = detector_and_model(a.detector, a.model.as_deref())?;
    let params = ProcessingParams {
        detector,
        ..ProcessingParams::default()
    };
    let qc_history = a
        .qc_history
        .as_deref()
        .map(crate::qc::history::load)
        .transpose()?;
    let progress = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} folders, {eta} left  {wide_msg}",
            )
            .expect("a valid progress template"),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    Ok(crate::batch::run(
        &crate::batch::BatchOptions {
            roots: &a.dirs,
            csv: &a.csv,
            calibration: a.calibration.as_deref(),
            ivis_backgrounds: a.ivis_backgrounds.as_deref(),
            params: &params,
            model: model
                .as_ref()
                .map(|m| m as &dyn crate::process::SegmentationModel),
            qc_history: qc_history.as_deref(),
        },
        &progress,
    )?)
}

fn process(a: ProcessArgs) -> anyhow::Result<()> {
    let (detector, model) = detector_and_model(a.detector, a.model.as_deref())?;
    let input = job::load_with(
        &a.path,
        &job::Sources {
            calibration_dir: a.calibration.as_deref(),
            ivis_backgrounds: a.ivis_backgrounds.as_deref(),
        },
    )?;
    let params = ProcessingParams {
        detector,
        ..ProcessingParams::default()
    };
    let acquired_at = input.acquisition.meta.acquired_at;
    let mut out = job::run_with_model(
        input,
        &params,
        model
            .as_ref()
            .map(|m| m as &dyn crate::process::SegmentationModel),
    )
    .with_context(|| a.path.display().to_string())?;
    if let Some(path) = &a.qc_history {
        let history = crate::qc::history::load(path)?;
        let selection =
            crate::process::qc::select(&history, &out.record.instrument_id, acquired_at);
        crate::record::apply_qc(&mut out.record, &selection);
    }
    if let Some(dir) = &a.out {
        job::write_outputs(dir, &out)?;
    }
    let json = if a.compact {
        serde_json::to_string(&out.record)?
    } else {
        serde_json::to_string_pretty(&out.record)?
    };
    println!("{json}");
    Ok(())
}

fn simulate(a: SimulateArgs) -> anyhow::Result<()> {
    if !(64..=8192).contains(&a.sensor_px) {
        anyhow::bail!(
            "--sensor-px {}: give the sensor's width in pixels, 64 to 8192 (e.g. 2048 or 1920)",
            a.sensor_px
        );
    }
    let inst = Instrument {
        sensor_px: a.sensor_px,
        ..Instrument::default()
    };
    if a.study {
        let cal = crate::simulate::calibration_frames::shipped_set_dir().ok_or_else(|| {
            anyhow::anyhow!("the simulated instrument's calibration set (calibration/sim-ivis-01) is not here: run from the repository")
        })?;
        let cal = std::fs::canonicalize(&cal)?;
        let spec = crate::simulate::study::StudySpec {
            seed: a.seed,
            days: a.days,
            ..Default::default()
        };
        let truth = crate::simulate::study::plan(&inst, &spec);
        crate::simulate::write::write_study(&inst, &truth, &a.out, &cal)?;
        eprintln!(
            "wrote a {}-day study under {}: run `lumiq qc --config {}/lumiq.toml {}/qc/*`, then `lumiq trend {}/frames --qc-history {}/state/qc/history.jsonl --out {}/report`",
            a.days,
            a.out.display(),
            a.out.display(),
            a.out.display(),
            a.out.display(),
            a.out.display(),
            a.out.display()
        );
        return Ok(());
    }
    if a.calibration_frames {
        let folders = crate::simulate::calibration_frames::simulate_raw_calibration_frames(
            &inst,
            &a.out,
            &a.binnings,
            a.frames,
        )?;
        eprintln!(
            "wrote {} raw calibration frames under {}",
            folders.len(),
            a.out.display()
        );
        return Ok(());
    }
    let (lo, hi) = (a.flux[0], a.flux[1]);
    if !(lo > 0.0 && hi >= lo) {
        anyhow::bail!(
            "--flux {lo} {hi}: give the smallest then the largest total flux, both positive"
        );
    }
    if !(0.0..=0.9).contains(&a.uneven_light) {
        anyhow::bail!(
            "--uneven-light {}: give a value from 0 (even light) to 0.9",
            a.uneven_light
        );
    }
    let spec = SceneSpec {
        seed: a.seed,
        binning: a.binning,
        exposure_s: a.exposure_s,
        mice: a.mice,
        flux_range: (lo, hi),
        touching_pair: a.touching,
        touching_mice: a.touching_mice,
        tails: a.tails || !a.no_tails,
        manifold: !a.plain_photo,
        dividers: !a.plain_photo,
        marks: !a.plain_photo,
        heads: !a.plain_photo,
        photo_unevenness: a.uneven_light,
        stray_sources: a.stray_sources,
        cosmic_rays: !a.no_cosmic_rays,
        ..SceneSpec::default()
    };
    if inst.sensor_px % a.binning as usize != 0 {
        anyhow::bail!(
            "--binning {}: must divide the sensor's {} pixels (see --sensor-px)",
            a.binning,
            inst.sensor_px
        );
    }
    let sim = simulate::simulate_acquisition(&inst, &spec);
    match a.format {
        SimFormat::Lumiq => {
            let rois = if a.rois {
                simulate::write::rois_around_tumours(&sim)
            } else {
                Vec::new()
            };
            simulate::write::write_lumiq(&a.out, &sim, rois)?
        }
        SimFormat::Ivis => {
            use simulate::write::IvisDark;
            let dark = match (&a.background_library, a.unusable_dark) {
                (Some(library), _) => IvisDark::Library(library),
                (None, true) => IvisDark::Unusable,
                (None, false) => IvisDark::Own,
            };
            simulate::write::write_ivis_with(&a.out, &inst, &sim, dark)?
        }
    }
    eprintln!(
        "wrote a simulated acquisition ({} mice, {} tumours) to {} with its ground truth in {}",
        sim.truth.mice.len(),
        sim.truth.tumours.len(),
        a.out.display(),
        simulate::write::TRUTH_FILE
    );
    Ok(())
}

fn parse_coefficient(text: &str) -> anyhow::Result<CoefficientEntry> {
    let parts: Vec<&str> = text.split(':').collect();
    let nums: Result<Vec<f64>, _> = parts.iter().map(|p| p.trim().parse::<f64>()).collect();
    match nums {
        Ok(v) if v.len() == 4 && v.iter().all(|x| x.is_finite()) && v[0] > 0.0 && v[1] > 0.0 && v[2] > 0.0 && v[3] >= 0.0 => {
            Ok(CoefficientEntry { fov_cm: v[0], f_number: v[1], c: v[2], rel_uncertainty: v[3], version: 1 })
        }
        _ => anyhow::bail!("--coefficient {text:?}: expected FOV_CM:F_NUMBER:C:REL_UNCERTAINTY with positive numbers, e.g. 22.4:1:7.223e5:0.05"),
    }
}

fn calibrate(a: CalibrateArgs) -> anyhow::Result<()> {
    if a.guided.guided {
        return crate::daemon::guided_cli::calibrate_guided(&a.guided, a.id.clone());
    }
    let out = a.out.clone().context("--out is required")?;
    let id =
        a.id.clone()
            .or_else(|| out.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "calibration".into());
    let mut opts = if a.simulated_instrument {
        // The simulated instrument's options, fixed creation time included: the same
        // frames always give the same set, byte for byte.
        let mut o =
            crate::simulate::calibration_frames::sim_instrument_options(&Instrument::default());
        o.id = id;
        o
    } else {
        let instrument = match &a.instrument {
            Some(i) => i.clone(),
            None => first_instrument_id(&a.frames)?,
        };
        CalibrateOptions::new(id, instrument)
    };
    for c in &a.coefficients {
        opts.coefficients.push(parse_coefficient(c)?);
    }
    if let Some(s) = a.saturation_adu {
        opts.saturation_adu = s;
    }
    let summary = calib::build_set(&a.frames, &out, &opts)?;
    for m in &summary.masters {
        eprintln!(
            "{:>5} b{} {:<40} {} frames, noise {:.3} ADU ({})",
            m.kind, m.binning, m.file, m.frames_combined, m.noise_adu, m.settings
        );
    }
    for w in &summary.warnings {
        eprintln!("warning: {w}");
    }
    eprintln!(
        "gain {:.4} e-/ADU, read noise {:.3} e-; calibration set written to {}",
        summary.gain_e_per_adu,
        summary.read_noise_e,
        summary.index_path.display()
    );
    Ok(())
}

/// The instrument id of the first acquisition folder found among the inputs.
fn first_instrument_id(inputs: &[PathBuf]) -> anyhow::Result<String> {
    use crate::formats::acquisition_folder;
    for p in inputs {
        let candidates: Vec<PathBuf> = if acquisition_folder::is_acquisition_folder(p) {
            vec![p.clone()]
        } else {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("{}: cannot list the folder", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|d| acquisition_folder::is_acquisition_folder(d))
                .collect();
            v.sort();
            v
        };
        if let Some(first) = candidates.first() {
            return Ok(acquisition_folder::read(first)?.file.instrument_id);
        }
    }
    anyhow::bail!("no lumiq acquisition folder among the inputs; pass folders of kind bias, dark or flat (or pass --instrument)")
}
