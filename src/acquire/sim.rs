//! The simulated imager, assembled for real: a simulated camera reached through the full
//! USB codec and driver, and a simulated controller reached through a real
//! pseudo-terminal and the serial driver. `lumiq capture --simulated`, the tests and the
//! benchmarks use it; nothing in the sequences knows it is simulated.
//!
//! Owns: wiring and the simulated instrument's defaults (scene, epoch of the simulated
//! clock). Time is a [`SimClock`]: cool-downs and exposures cost no real time.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};

use super::guided::{Guide, GuidedError, Step, StepKind};
use super::sequence::{CaptureError, Imager, SequenceConfig};
use crate::camera::sim::scene::FramePhysics;
use crate::camera::{
    Camera, CameraConfig, Clock, FaultPlan, RegisterMap, SimCamera, SimCameraConfig, SimClock,
};
use crate::controller::{Controller, ControllerConfig, SimBox, SimController, SimControllerConfig};
use crate::simulate::SceneSpec;

/// Wall-clock start of the simulated clock (the simulated folders' dates are fixed, so a
/// capture is reproducible; 56 days after the shipped calibration set was built).
pub fn default_epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0)
        .single()
        .expect("a valid date")
}

/// How to build the simulated imager.
#[derive(Debug, Clone)]
pub struct SimulatedOptions {
    pub seed: u64,
    pub faults: Vec<FaultPlan>,
    /// The scene in front of the camera (its seed is overridden by `seed`).
    pub scene: SceneSpec,
    pub epoch: DateTime<Utc>,
    pub camera: CameraConfig,
    pub controller: SimControllerConfig,
    /// Frame physics; `None` renders the scene.
    pub physics: Option<FramePhysics>,
    /// The camera's response relative to its calibration (1 as calibrated).
    pub response: f64,
}

impl Default for SimulatedOptions {
    fn default() -> Self {
        SimulatedOptions {
            seed: 1,
            faults: Vec::new(),
            scene: SceneSpec {
                flux_range: (1.0e5, 1.0e7),
                ..SceneSpec::default()
            },
            epoch: default_epoch(),
            camera: CameraConfig::default(),
            controller: SimControllerConfig::default(),
            physics: None,
            response: 1.0,
        }
    }
}

/// The simulated imager and handles on its simulated parts.
pub struct SimulatedImager {
    pub imager: Imager,
    pub camera: SimCamera,
    pub sim_box: SimBox,
    pub clock: Arc<SimClock>,
    /// Keeps the controller's pseudo-terminal served.
    pub controller: SimController,
}

impl std::fmt::Debug for SimulatedImager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedImager").finish()
    }
}

/// Build the simulated imager.
pub fn simulated_imager(opts: SimulatedOptions) -> Result<SimulatedImager, CaptureError> {
    let clock = Arc::new(SimClock::new(opts.epoch));
    let sim_box = SimBox::new();
    let scene = SceneSpec {
        seed: opts.seed,
        ..opts.scene.clone()
    };
    let cam_cfg = SimCameraConfig {
        physics: opts.physics.clone().unwrap_or(FramePhysics::Scene(scene)),
        faults: opts.faults.clone(),
        noise_seed: opts.seed.wrapping_mul(31).wrapping_add(7),
        response: opts.response,
        ..SimCameraConfig::default()
    };
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let sim_camera = SimCamera::new(cam_cfg, dyn_clock.clone(), Some(sim_box.clone()));
    let sim_controller =
        SimController::start(sim_box.clone(), opts.controller.clone()).map_err(|e| {
            CaptureError::Config(format!(
                "cannot start the simulated controller's pseudo-terminal: {e}"
            ))
        })?;
    let controller = Controller::open(ControllerConfig::new(sim_controller.path()))?;
    let camera = Camera::open(
        Box::new(sim_camera.connector()),
        RegisterMap::builtin(),
        dyn_clock,
        opts.camera.clone(),
    )?;
    Ok(SimulatedImager {
        imager: Imager::new(camera, controller, true),
        camera: sim_camera,
        sim_box,
        clock,
        controller: sim_controller,
    })
}

/// The simulated instrument's sequence settings: dark library at `library`, luciferin
/// injected ten minutes before the simulated clock starts.
pub fn simulated_sequence(library: PathBuf, epoch: DateTime<Utc>) -> SequenceConfig {
    SequenceConfig::simulated(library, Some(epoch - ChronoDuration::minutes(10)))
}

/// A technician at the simulated instrument, for `lumiq calibrate --guided`: once the
/// guide `inner` has shown a step (and heard Enter, where it waits), does in the simulated
/// box what the step asks — closes the door, lays the flat-field panel on the stage for
/// the flats and takes it away when the set is built.
pub struct SimTechnician<'a> {
    pub inner: &'a mut dyn Guide,
    pub sim_box: SimBox,
}

impl Guide for SimTechnician<'_> {
    fn begin(&mut self, step: &Step) -> Result<(), GuidedError> {
        self.inner.begin(step)?;
        match step.kind {
            StepKind::Prepare => self.sim_box.close_door(),
            StepKind::Flats => {
                self.sim_box.set_flat_panel(true);
                self.sim_box.close_door();
            }
            StepKind::Build => self.sim_box.set_flat_panel(false),
            StepKind::Bias | StepKind::Darks => {}
        }
        Ok(())
    }
    fn advance(&mut self, what: &str) {
        self.inner.advance(what)
    }
    fn finish(&mut self, summary: &str) {
        self.inner.finish(summary)
    }
}
