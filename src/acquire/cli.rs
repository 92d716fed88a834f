//! `lumiq capture`: run a sequence on the imager (or the simulated imager) and write its
//! acquisition folder. Flag parsing and what the user sees; the work is in the sequences.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use super::folder;
use super::sequence::{Capture, Imager, SequenceConfig};
use super::sim::{simulated_imager, simulated_sequence, SimulatedOptions};
use crate::camera::usb::{UsbCameraConfig, UsbConnector};
use crate::camera::{Camera, CameraConfig, FaultKnob, FaultPlan, RegisterMap, SystemClock};
use crate::controller::{Controller, ControllerConfig};

const KNOBS_HELP: &str = "\
Fault knobs (--fault, simulated imager only; each hits the luminescent frame --fault-times times):
  disconnect-mid-payload  recovers: reconnect loop, settings restored, cooling re-locked, frame retaken
  truncated-payload       recovers: short payload discarded, frame retaken
  bad-trailer             recovers: frame with a failed trailer status discarded, retaken
  stall                   recovers: stream endpoint halt cleared, frame retaken
  wrong-block-id          recovers: frame with mismatched block ids discarded, retaken
  door-open               fails cleanly: the interlock aborts, exit code 1, no folder
With --fault-times 3 or more, every knob fails cleanly (3 attempts per frame).";

#[derive(Debug, Args)]
#[command(after_long_help = KNOBS_HELP, after_help = KNOBS_HELP)]
pub struct CaptureArgs {
    /// Folder to write: a lumiq acquisition folder that `lumiq process` quantifies (must
    /// not exist; written atomically, so a failed capture leaves nothing behind).
    #[arg(long)]
    pub out: PathBuf,
    /// Use the simulated imager: a simulated camera through the full USB codec and a
    /// simulated controller through a pseudo-terminal, on a simulated clock.
    #[arg(long)]
    pub simulated: bool,
    /// Inject a fault into the simulated imager.
    #[arg(long, value_enum, requires = "simulated")]
    pub fault: Option<FaultKnob>,
    /// Frames the fault hits.
    #[arg(long, default_value_t = 1)]
    pub fault_times: u32,
    /// Scene of the simulated imager.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The dark library: a calibration set (default: $LUMIQ_CALIBRATION_DIR, then
    /// calibration/<instrument_id>). Missing or stale darks are taken and added to it.
    #[arg(long)]
    pub calibration: Option<PathBuf>,
    /// Darks from a set older than this many days are taken again.
    #[arg(long, default_value_t = 90.0)]
    pub dark_max_age_days: f64,
    /// Kinetic series: this many luminescent frames at a fixed interval, written as
    /// OUT/frame-001, OUT/frame-002, ... with OUT/kinetic.json.
    #[arg(long)]
    pub kinetic: Option<usize>,
    /// Kinetic series: seconds from the start of one frame to the start of the next.
    #[arg(long, default_value_t = 300.0)]
    pub interval_s: f64,
    /// The instrument's id (default: sim-ivis-01 for the simulated imager).
    #[arg(long)]
    pub instrument: Option<String>,
    /// The camera's USB address as VID:PID[:SERIAL] (hexadecimal ids), e.g. 1d6b:0104.
    #[arg(long, conflicts_with = "simulated")]
    pub usb: Option<String>,
    /// The imager controller's serial port, e.g. /dev/ttyUSB0.
    #[arg(long, conflicts_with = "simulated")]
    pub serial_port: Option<String>,
}

/// Run `lumiq capture`.
pub fn capture(a: CaptureArgs) -> anyhow::Result<()> {
    folder::check_new(&a.out)?;
    let instrument = a
        .instrument
        .clone()
        .unwrap_or_else(|| "sim-ivis-01".to_string());
    let library = crate::job::resolve_calibration_dir(a.calibration.as_deref(), &instrument)
        .context("the dark library")?;
    if let Some(n) = a.kinetic {
        if n == 0 {
            bail!("--kinetic 0: give the number of frames (1 or more)");
        }
    }
    if !(a.interval_s.is_finite() && a.interval_s > 0.0) {
        bail!(
            "--interval-s {}: give a positive number of seconds",
            a.interval_s
        );
    }
    if a.simulated {
        let opts = SimulatedOptions {
            seed: a.seed,
            faults: a
                .fault
                .map(|k| FaultPlan {
                    times: a.fault_times,
                    ..FaultPlan::once(k)
                })
                .into_iter()
                .collect(),
            ..SimulatedOptions::default()
        };
        let epoch = opts.epoch;
        let mut sim = simulated_imager(opts)?;
        let mut cfg = simulated_sequence(library, epoch);
        cfg.instrument_id = instrument;
        cfg.dark.max_age_days = a.dark_max_age_days;
        let result = run_sequence(&mut sim.imager, &cfg, &a);
        let fired: Vec<String> = sim
            .camera
            .faults_fired()
            .iter()
            .map(|(k, n)| format!("{} ×{n}", k.name()))
            .collect();
        let mut captures = result?;
        let truth = captures
            .first()
            .and_then(|c| sim.camera.truth(c.meta.binning, c.meta.fov_cm));
        for c in captures.iter_mut() {
            c.report.faults_injected = fired.clone();
        }
        write(&a, &captures, truth.as_ref())?;
        return Ok(());
    }
    let (Some(usb), Some(port)) = (&a.usb, &a.serial_port) else {
        bail!("pass --simulated, or --usb VID:PID[:SERIAL] and --serial-port PATH for the imager's camera and controller");
    };
    if a.instrument.is_none() {
        bail!("--instrument ID: name the imager (its calibration set is calibration/<ID>)");
    }
    let usb = UsbCameraConfig::parse(usb)?;
    let controller = Controller::open(ControllerConfig::new(port.clone()))?;
    let camera = Camera::open(
        Box::new(UsbConnector::new(usb)),
        RegisterMap::builtin(),
        std::sync::Arc::new(SystemClock::new()),
        CameraConfig::default(),
    )?;
    let mut imager = Imager::new(camera, controller, false);
    let mut cfg = SequenceConfig::simulated(library, None);
    cfg.instrument_id = instrument;
    cfg.dark.max_age_days = a.dark_max_age_days;
    cfg.subjects = Default::default();
    let captures = run_sequence(&mut imager, &cfg, &a)?;
    write(&a, &captures, None)
}

fn run_sequence(
    imager: &mut Imager,
    cfg: &SequenceConfig,
    a: &CaptureArgs,
) -> anyhow::Result<Vec<Capture>> {
    Ok(match a.kinetic {
        Some(n) => imager.kinetic(cfg, n, Duration::from_secs_f64(a.interval_s))?,
        None => vec![imager.standard(cfg)?],
    })
}

fn write(
    a: &CaptureArgs,
    captures: &[Capture],
    truth: Option<&crate::simulate::Truth>,
) -> anyhow::Result<()> {
    if a.kinetic.is_some() {
        folder::write_kinetic(&a.out, captures, truth)?;
    } else {
        folder::write_capture(&a.out, &captures[0], truth)?;
    }
    let c = &captures[0];
    let r = &c.report;
    let dark = match r.dark.source {
        super::dark::DarkSource::Library => format!("dark from the library ({})", r.dark.file),
        super::dark::DarkSource::Acquired => format!(
            "{} darks taken and added to the library ({})",
            r.dark.frames_acquired,
            r.dark.reason.as_deref().unwrap_or("")
        ),
    };
    let cc = &captures
        .last()
        .expect("at least one capture")
        .report
        .camera_counters;
    eprintln!(
        "captured {} frame(s) into {}: luminescent {} s at binning {} and {:.2} °C (auto-exposure: {} frames), {dark}",
        captures.len(),
        a.out.display(),
        c.meta.exposure_s,
        c.meta.binning,
        c.meta.sensor_temp_c,
        r.auto_exposure.as_ref().map_or(0, |ae| ae.steps.len()),
    );
    if !r.faults_injected.is_empty() || cc.frames_discarded > 0 {
        eprintln!(
            "faults injected: {}; recovered: {} frame(s) discarded and retaken, {} reconnect(s), {} stall(s) cleared",
            if r.faults_injected.is_empty() { "none".into() } else { r.faults_injected.join(", ") },
            cc.frame_retries,
            cc.reconnects,
            cc.stalls_cleared
        );
    }
    Ok(())
}
