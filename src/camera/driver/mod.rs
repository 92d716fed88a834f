//! The host's camera driver: register access and frame acquisition over a [`Transport`],
//! with retries, backoff, endpoint recovery and a reconnect loop.
//!
//! Owns: the policy around the sans-IO codecs — which transfer to ask for next, what a
//! fault means (retry, clear the halt, reconnect, give up), re-applying the settings after
//! the device came back, and counting every fault. Blocking by design: run it on its own
//! thread (or `spawn_blocking`); every wait is short (`stream_poll`, `control_timeout`) so
//! a [`CancelToken`] and the caller's interlock check are seen between transfers.
//!
//! Invariant: [`Camera::acquire`] returns only frames the [`StreamDecoder`] verified whole
//! and whose leader matches the request; everything else is discarded and counted.
//!
//! Files:
//! - `mod.rs`: the driver's types (configuration, requests, frames, identity, errors), the
//!   [`Camera`] itself and its public register, cooling and lock API.
//! - `link.rs`: the control channel — one command with retries, register reads and writes,
//!   losing the device, the reconnect loop and restoring the settings.
//! - `acquire.rs`: taking one frame — attempts, recovery between them (clear the halt,
//!   reset, reconnect) and the stream loop that checks each leader against the request.

mod acquire;
mod link;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ndarray::Array2;

use super::clock::{CancelToken, Clock};
use super::control::{ControlClient, Status};
use super::counters::{CameraCounters, CameraCountersSnapshot};
use super::regmap::{Register, RegisterMap};
use super::stream::{StreamDecoder, StreamLimits, MAX_LEADER_TRANSFER};
use super::transport::{Connector, Transport, TransportError};

/// Timeouts, retries and fixed settings of the driver.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraConfig {
    /// Wait for one acknowledge.
    pub control_timeout: Duration,
    /// Tries of one control command (the first included).
    pub control_attempts: u32,
    /// Timeout of one stream read: how often cancellation and the interlock are checked.
    pub stream_poll: Duration,
    /// A frame is late when it has not arrived this long after exposure + read-out.
    pub frame_margin: Duration,
    /// Tries of one frame (the first included) before giving up.
    pub frame_attempts: u32,
    /// First pause before a retry; doubles up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Give up reconnecting after this long.
    pub reconnect_timeout: Duration,
    /// Give up waiting for the cooling lock after this long.
    pub lock_timeout: Duration,
    /// Interval between temperature reads while waiting for the lock.
    pub lock_poll: Duration,
    /// Bytes per payload transfer (`StreamTransferSize`).
    pub transfer_size: u32,
    /// Read-out pixel rate (`ReadoutSpeed`), kHz: the calibrated speed.
    pub readout_speed_khz: u32,
    /// Pre-amplifier gain (`Gain`): the calibrated gain.
    pub gain: u32,
    pub limits: StreamLimits,
}

impl Default for CameraConfig {
    fn default() -> Self {
        CameraConfig {
            control_timeout: Duration::from_millis(500),
            control_attempts: 4,
            stream_poll: Duration::from_millis(100),
            frame_margin: Duration::from_secs(10),
            frame_attempts: 3,
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(8),
            reconnect_timeout: Duration::from_secs(120),
            lock_timeout: Duration::from_secs(20 * 60),
            lock_poll: Duration::from_secs(1),
            transfer_size: 1 << 20,
            readout_speed_khz: 1000,
            gain: 1,
            limits: StreamLimits::default(),
        }
    }
}

/// Shutter during an exposure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shutter {
    /// Closed throughout: darks and biases.
    Closed,
    /// Open during the exposure only.
    Auto,
}

impl Shutter {
    fn register_value(self) -> i64 {
        match self {
            Shutter::Closed => 0,
            Shutter::Auto => 2,
        }
    }
}

/// One frame to take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameRequest {
    pub exposure_s: f64,
    pub binning: u32,
    pub shutter: Shutter,
    /// Wait for the cooling lock before exposing (luminescent frames and darks).
    pub require_lock: bool,
}

/// A verified frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub block_id: u64,
    /// Device clock at the start of the exposure, ns.
    pub timestamp_ns: u64,
    /// Host time when the exposure was started.
    pub started_at: DateTime<Utc>,
    pub exposure_s: f64,
    pub binning: u32,
    /// Sensor temperature at read-out, °C.
    pub sensor_temp_c: f64,
    pub shutter_open: bool,
    pub temperature_locked: bool,
    /// Raw counts, binned, `[row, column]`.
    pub pixels: Arc<Array2<u16>>,
}

/// Identity of the connected camera.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceInfo {
    pub model: String,
    pub serial: String,
    pub firmware: String,
    pub sensor_width_px: u32,
    pub sensor_height_px: u32,
}

/// The camera layer's error. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    #[error("cannot connect to the camera ({connector}): {source}; check the USB cable, the camera's power and the vendor/product/serial in the configuration")]
    Connect {
        connector: String,
        source: TransportError,
    },
    #[error("the camera vanished and did not come back within {waited_s:.0} s ({attempts} attempts); check the USB cable and the camera's power")]
    ReconnectTimeout { waited_s: f64, attempts: u64 },
    #[error("the camera refused to {op} {register}: {status}")]
    Refused {
        op: &'static str,
        register: String,
        status: Status,
    },
    #[error("{register} = {value}: {problem}")]
    BadValue {
        register: String,
        value: String,
        problem: String,
    },
    #[error("register {0:?} is not in the register map")]
    UnknownRegister(String),
    #[error("the camera's control channel failed: {0}; check the USB connection")]
    Control(String),
    #[error("the camera's cooling did not lock at {setpoint_c:.1} °C within {waited_s:.0} s (sensor at {temp_c:.2} °C); check the cooler's power and airflow, or use a warmer setpoint")]
    CoolingTimeout {
        setpoint_c: f64,
        temp_c: f64,
        waited_s: f64,
    },
    #[error("no good frame from the camera after {attempts} attempts (last fault: {last}); nothing was kept")]
    FrameFailed { attempts: u32, last: String },
    #[error("the camera answered with an inconsistent value: {0}")]
    Protocol(String),
    #[error("acquisition cancelled")]
    Cancelled,
    #[error("acquisition aborted: {0}")]
    Aborted(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Desired {
    cooling_setpoint_cc: Option<i64>,
}

/// The host's driver of one camera.
pub struct Camera {
    connector: Box<dyn Connector>,
    link: Option<Box<dyn Transport>>,
    map: Arc<RegisterMap>,
    ctl: ControlClient,
    decoder: StreamDecoder,
    clock: Arc<dyn Clock>,
    cfg: CameraConfig,
    counters: Arc<CameraCounters>,
    desired: Desired,
    info: DeviceInfo,
    last_block_id: Option<u64>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Camera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Camera")
            .field("connector", &self.connector.describe())
            .field("info", &self.info)
            .finish()
    }
}

impl Camera {
    /// Connect, read the camera's identity and apply the fixed settings.
    pub fn open(
        mut connector: Box<dyn Connector>,
        map: Arc<RegisterMap>,
        clock: Arc<dyn Clock>,
        cfg: CameraConfig,
    ) -> Result<Camera, CameraError> {
        let link = connector.connect().map_err(|source| CameraError::Connect {
            connector: connector.describe(),
            source,
        })?;
        let buf = vec![0u8; (cfg.transfer_size as usize).max(MAX_LEADER_TRANSFER)];
        let mut cam = Camera {
            connector,
            link: Some(link),
            map,
            ctl: ControlClient::new(),
            decoder: StreamDecoder::new(cfg.limits),
            clock,
            cfg,
            counters: Arc::new(CameraCounters::default()),
            desired: Desired::default(),
            info: DeviceInfo {
                model: String::new(),
                serial: String::new(),
                firmware: String::new(),
                sensor_width_px: 0,
                sensor_height_px: 0,
            },
            last_block_id: None,
            buf,
        };
        cam.configure(true)?;
        tracing::info!(
            "camera {} (serial {}, firmware {}) connected: {}",
            cam.info.model,
            cam.info.serial,
            cam.info.firmware,
            cam.link.as_ref().map(|l| l.describe()).unwrap_or_default()
        );
        Ok(cam)
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    pub fn counters(&self) -> Arc<CameraCounters> {
        self.counters.clone()
    }

    pub fn counters_snapshot(&self) -> CameraCountersSnapshot {
        self.counters.snapshot()
    }

    pub fn map(&self) -> &RegisterMap {
        &self.map
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    fn register(&self, name: &str) -> Result<Register, CameraError> {
        self.map
            .get(name)
            .cloned()
            .ok_or_else(|| CameraError::UnknownRegister(name.into()))
    }

    fn backoff(&self, retry: u32) -> Duration {
        let f = 2u32.saturating_pow(retry.saturating_sub(1)).min(1 << 16);
        (self.cfg.backoff_initial * f).min(self.cfg.backoff_max)
    }

    /// Read a numeric register by name.
    pub fn read(&mut self, name: &str) -> Result<i64, CameraError> {
        self.read_inner(name, true)
    }

    /// Read a string register by name.
    pub fn read_string(&mut self, name: &str) -> Result<String, CameraError> {
        self.read_string_inner(name, true)
    }

    /// Write a numeric register by name (checked against the map first).
    pub fn write(&mut self, name: &str, value: i64) -> Result<(), CameraError> {
        self.write_inner(name, value, true)
    }

    /// Sensor temperature, °C.
    pub fn sensor_temp_c(&mut self) -> Result<f64, CameraError> {
        Ok(self.read("SensorTemperature")? as f64 / 100.0)
    }

    /// Turn the cooler on at a setpoint (kept and restored after a reconnect).
    pub fn set_cooling(&mut self, setpoint_c: f64) -> Result<(), CameraError> {
        let cc = (setpoint_c * 100.0).round() as i64;
        self.register("CoolingSetpoint")?
            .check_value(cc)
            .map_err(|problem| CameraError::BadValue {
                register: "CoolingSetpoint".into(),
                value: format!("{setpoint_c} °C"),
                problem: problem.to_string(),
            })?;
        self.desired.cooling_setpoint_cc = Some(cc);
        self.write("CoolingSetpoint", cc)?;
        self.write("CoolerEnable", 1)
    }

    /// The setpoint asked for, °C.
    pub fn cooling_setpoint_c(&self) -> Option<f64> {
        self.desired.cooling_setpoint_cc.map(|c| c as f64 / 100.0)
    }

    /// Wait until the camera reports its temperature locked; returns the temperature.
    pub fn wait_for_lock(&mut self, cancel: &CancelToken) -> Result<f64, CameraError> {
        let Some(sp) = self.cooling_setpoint_c() else {
            return Err(CameraError::BadValue {
                register: "CoolingSetpoint".into(),
                value: "unset".into(),
                problem: "set a cooling setpoint before waiting for the lock".into(),
            });
        };
        let start = self.clock.elapsed();
        let mut next_log = Duration::from_secs(60);
        loop {
            if self.read("TemperatureLocked")? == 1 {
                return self.sensor_temp_c();
            }
            if cancel.is_cancelled() {
                return Err(CameraError::Cancelled);
            }
            let waited = self.clock.elapsed() - start;
            if waited >= self.cfg.lock_timeout {
                return Err(CameraError::CoolingTimeout {
                    setpoint_c: sp,
                    temp_c: self.sensor_temp_c()?,
                    waited_s: waited.as_secs_f64(),
                });
            }
            if waited >= next_log {
                tracing::debug!(
                    "waiting for the cooling lock at {sp:.1} °C: sensor at {:.2} °C after {:.0} s",
                    self.sensor_temp_c()?,
                    waited.as_secs_f64()
                );
                next_log += Duration::from_secs(60);
            }
            self.clock.sleep(self.cfg.lock_poll);
        }
    }
}
