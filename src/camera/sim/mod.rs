//! The simulated camera: a genuine implementation of the device side of the camera's USB
//! interface, served through the same [`Transport`](super::transport::Transport) seam the
//! rusb transport implements. The host driver, the codecs and the sequences cannot tell it
//! from hardware.
//!
//! Owns: the device's registers (served from the same register map file, with its ranges
//! and access rules), GenCP acknowledges including PENDING_ACK for slow writes, the
//! streaming of leader / payload / trailer blocks, the sensor's thermal behaviour (the
//! temperature settles exponentially toward the setpoint; the lock holds within 0.5 °C,
//! and is lost when [`SimCamera::disturb_temperature`] warms the sensor),
//! frames with the physics of `lumiq simulate` ([`scene`]), the light of the
//! box it sits in (a [`SimBox`] shared with the simulated controller: photograph LED, door,
//! emission filter, shelf) and fault knobs ([`FaultKnob`]).
//!
//! Time is the [`Clock`]'s: a read that would wait advances a simulated clock instead, so a
//! 240 s exposure or a ten-minute cool-down costs microseconds of a test.
//!
//! Files:
//! - `mod.rs`: the fault knobs and plans, the camera's make-up ([`SimCameraConfig`]) and
//!   the [`SimCamera`] handle tests and `lumiq capture --simulated` hold.
//! - `device.rs`: the device itself — registers, thermal model, command execution and
//!   acknowledges, read-out of blocks and the injection of faults into them.
//! - `link.rs`: the USB side — [`SimConnector`] (plugging in, re-enumeration) and the
//!   transport of one connection (control and stream endpoints, stall, disconnect).
//! - `scene.rs`: what the camera sees — the scene of `lumiq simulate` rendered and read out
//!   for each frame's settings ([`scene::FramePhysics`]).

mod device;
mod link;
pub mod scene;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::clock::Clock;
use super::regmap::RegisterMap;
use crate::controller::sim::SimBox;
use crate::simulate::{Instrument, SceneSpec, Truth};
use scene::{FramePhysics, SimScene};

use device::Device;
pub use link::SimConnector;

/// A fault the simulated camera can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKnob {
    /// The camera drops off the bus half-way through a payload and comes back a few
    /// seconds later (recovers: reconnect, restore settings, re-lock, retake).
    DisconnectMidPayload,
    /// Half the payload arrives, then the trailer (recovers: frame discarded, retaken).
    TruncatedPayload,
    /// The trailer reports a discarded frame (recovers: frame discarded, retaken).
    BadTrailer,
    /// The streaming endpoint stalls (recovers: halt cleared, frame retaken).
    Stall,
    /// The trailer's block id differs from the leader's (recovers: frame discarded, retaken).
    WrongBlockId,
    /// The imager's door is opened during the luminescent exposure (fails cleanly: the
    /// interlock aborts the capture and no folder is written).
    DoorOpen,
}

impl FaultKnob {
    pub const ALL: [FaultKnob; 6] = [
        FaultKnob::DisconnectMidPayload,
        FaultKnob::TruncatedPayload,
        FaultKnob::BadTrailer,
        FaultKnob::Stall,
        FaultKnob::WrongBlockId,
        FaultKnob::DoorOpen,
    ];

    /// The knob's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FaultKnob::DisconnectMidPayload => "disconnect-mid-payload",
            FaultKnob::TruncatedPayload => "truncated-payload",
            FaultKnob::BadTrailer => "bad-trailer",
            FaultKnob::Stall => "stall",
            FaultKnob::WrongBlockId => "wrong-block-id",
            FaultKnob::DoorOpen => "door-open",
        }
    }

    /// Whether a capture recovers from one occurrence (the others fail cleanly).
    pub fn recoverable(self) -> bool {
        self != FaultKnob::DoorOpen
    }
}

/// When and how often a fault fires.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultPlan {
    pub knob: FaultKnob,
    /// Frames it hits (`u32::MAX`: every eligible frame).
    pub times: u32,
    /// Only frames exposed at least this long are hit (15 s, the shortest luminescent
    /// exposure auto-exposure chooses: the luminescent frame, not the photograph or the
    /// probes).
    pub min_exposure_s: f64,
}

impl FaultPlan {
    pub fn once(knob: FaultKnob) -> Self {
        FaultPlan {
            knob,
            times: 1,
            min_exposure_s: 15.0,
        }
    }
    pub fn always(knob: FaultKnob) -> Self {
        FaultPlan {
            times: u32::MAX,
            ..FaultPlan::once(knob)
        }
    }
}

/// The simulated camera's make-up.
#[derive(Debug, Clone)]
pub struct SimCameraConfig {
    pub model: String,
    pub serial: String,
    pub firmware: String,
    pub instrument: Instrument,
    pub physics: FramePhysics,
    /// Temperature of the box, °C: where the sensor starts and drifts to with the cooler off.
    pub ambient_c: f64,
    /// Time constant of the regulated temperature (cooler on), s.
    pub cooling_tau_s: f64,
    /// Time constant of warming with the cooler off, s.
    pub warming_tau_s: f64,
    /// The lock holds while |T − setpoint| ≤ this, °C.
    pub lock_tolerance_c: f64,
    /// How long the camera stays off the bus after a disconnect fault.
    pub replug_after: Duration,
    pub faults: Vec<FaultPlan>,
    /// Seed of the frames' noise.
    pub noise_seed: u64,
    /// The response relative to the calibration ([`scene::SimScene::response`]).
    pub response: f64,
}

impl Default for SimCameraConfig {
    fn default() -> Self {
        SimCameraConfig {
            model: "lumiq-sim-ccd-2048".into(),
            serial: "SIM-0001".into(),
            firmware: "1.4.2".into(),
            instrument: Instrument::default(),
            physics: FramePhysics::Scene(SceneSpec::default()),
            ambient_c: 20.0,
            cooling_tau_s: 90.0,
            warming_tau_s: 600.0,
            lock_tolerance_c: 0.5,
            replug_after: Duration::from_secs(3),
            faults: Vec::new(),
            noise_seed: 7,
            response: 1.0,
        }
    }
}

/// A handle on the simulated camera (clone it freely).
#[derive(Clone)]
pub struct SimCamera {
    dev: Arc<Mutex<Device>>,
}

impl std::fmt::Debug for SimCamera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimCamera")
    }
}

impl SimCamera {
    /// A camera on `clock`, in `sim_box` (or in the dark when `None`), powered and on the bus.
    pub fn new(cfg: SimCameraConfig, clock: Arc<dyn Clock>, sim_box: Option<SimBox>) -> Self {
        let mut scene = SimScene::new(cfg.instrument.clone(), cfg.physics.clone());
        scene.response = cfg.response;
        let ambient = cfg.ambient_c;
        let mut dev = Device {
            cfg,
            clock,
            map: RegisterMap::builtin(),
            sim_box,
            regs: HashMap::new(),
            session: 0,
            plugged: true,
            unplugged_until: Duration::ZERO,
            t0: Duration::ZERO,
            temp0_c: ambient,
            exposure: None,
            stream: VecDeque::new(),
            sent_in_block: 0,
            stream_fault: None,
            stalled: false,
            acks: VecDeque::new(),
            next_block_id: 1,
            scene,
            fired: HashMap::new(),
            blocks_sent: 0,
        };
        dev.firmware_restart();
        dev.t0 = dev.clock.elapsed();
        dev.temp0_c = ambient;
        SimCamera {
            dev: Arc::new(Mutex::new(dev)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Device> {
        self.dev.lock().expect("simulated camera lock")
    }

    /// The connector the driver uses (and uses again to reconnect).
    pub fn connector(&self) -> SimConnector {
        SimConnector { cam: self.clone() }
    }

    /// Ground truth of the scene at a binning and field of view.
    pub fn truth(&self, binning: u32, fov_cm: f64) -> Option<Truth> {
        self.lock().scene.truth(binning, fov_cm)
    }

    /// How often each fault fired.
    pub fn faults_fired(&self) -> HashMap<FaultKnob, u32> {
        self.lock().fired.clone()
    }

    /// Pull the cable for a while.
    pub fn unplug(&self, for_: Duration) {
        self.lock().unplug(for_)
    }

    /// The sensor warms by `delta_c` at once (a cooler hiccup, a power dip): beyond the
    /// lock tolerance the cooling lock is lost, and regained once the regulation has
    /// brought the sensor back (a few `cooling_tau_s` later on the camera's clock).
    pub fn disturb_temperature(&self, delta_c: f64) {
        let mut d = self.lock();
        d.rebase_thermal();
        d.temp0_c += delta_c;
    }

    /// The sensor's true temperature now, °C.
    pub fn sensor_temp_c(&self) -> f64 {
        let d = self.lock();
        d.temp_at(d.clock.elapsed())
    }

    /// Blocks read out so far.
    pub fn blocks_sent(&self) -> u64 {
        self.lock().blocks_sent
    }

    /// The instrument inside.
    pub fn instrument(&self) -> Instrument {
        self.lock().cfg.instrument.clone()
    }

    pub fn serial(&self) -> String {
        self.lock().cfg.serial.clone()
    }
}
