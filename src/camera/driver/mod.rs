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

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ndarray::Array2;

use super::clock::{CancelToken, Clock};
use super::control::{AckEvent, ControlClient, Status};
use super::counters::{CameraCounters, CameraCountersSnapshot};
use super::regmap::{RegType, Register, RegisterMap};
use super::stream::{
    StreamDecoder, StreamError, StreamEvent, StreamLimits, FLAG_SHUTTER_OPEN,
    FLAG_TEMPERATURE_LOCKED, MAX_LEADER_TRANSFER, TRAILER_LEN,
};
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

/// How to recover before the next attempt of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    None,
    ClearHalt,
    /// The device stopped streaming: reset the port (it re-enumerates), then reconnect.
    Reset,
    Reconnect,
}

enum AttemptError {
    Retry(String, Recovery),
    Fatal(CameraError),
}

impl From<CameraError> for AttemptError {
    fn from(e: CameraError) -> Self {
        match e {
            CameraError::Control(m) => AttemptError::Retry(m, Recovery::Reconnect),
            e => AttemptError::Fatal(e),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Desired {
    cooling_setpoint_cc: Option<i64>,
}

enum Op<'a> {
    Read { address: u64, length: u16 },
    Write { address: u64, data: &'a [u8] },
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

    /// Identity and fixed settings; again after every reconnect (the device restarted).
    fn configure(&mut self, may_reconnect: bool) -> Result<(), CameraError> {
        let info = DeviceInfo {
            model: self.read_string_inner("ModelName", may_reconnect)?,
            serial: self.read_string_inner("SerialNumber", may_reconnect)?,
            firmware: self.read_string_inner("FirmwareVersion", may_reconnect)?,
            sensor_width_px: self.read_inner("SensorWidth", may_reconnect)? as u32,
            sensor_height_px: self.read_inner("SensorHeight", may_reconnect)? as u32,
        };
        if !info.serial.is_empty()
            && !self.info.serial.is_empty()
            && info.serial != self.info.serial
        {
            return Err(CameraError::Protocol(format!(
                "a different camera came back (serial {}, expected {})",
                info.serial, self.info.serial
            )));
        }
        self.info = info;
        self.write_inner(
            "ReadoutSpeed",
            self.cfg.readout_speed_khz as i64,
            may_reconnect,
        )?;
        self.write_inner("Gain", self.cfg.gain as i64, may_reconnect)?;
        self.write_inner(
            "StreamTransferSize",
            self.cfg.transfer_size as i64,
            may_reconnect,
        )?;
        self.write_inner("StreamEnable", 1, may_reconnect)?;
        if let Some(sp) = self.desired.cooling_setpoint_cc {
            self.write_inner("CoolingSetpoint", sp, may_reconnect)?;
            self.write_inner("CoolerEnable", 1, may_reconnect)?;
        }
        Ok(())
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

    fn lost(&mut self, why: &TransportError) {
        if self.link.take().is_some() {
            CameraCounters::inc(&self.counters.disconnects);
            tracing::warn!("camera vanished ({why}); entering the reconnect loop");
        }
        self.ctl.reset();
        self.decoder.reset();
        self.last_block_id = None;
    }

    /// Connect again until the device answers or `reconnect_timeout` passes, then restore
    /// the settings.
    fn reconnect(&mut self) -> Result<(), CameraError> {
        self.link = None;
        let start = self.clock.elapsed();
        let mut delay = self.cfg.backoff_initial;
        let mut attempts = 0u64;
        loop {
            attempts += 1;
            CameraCounters::inc(&self.counters.reconnect_attempts);
            match self.connector.connect() {
                Ok(link) => {
                    self.link = Some(link);
                    match self.configure(false) {
                        Ok(()) => {
                            CameraCounters::inc(&self.counters.reconnects);
                            tracing::info!(
                                "camera reconnected after {attempts} attempt(s); settings restored"
                            );
                            return Ok(());
                        }
                        Err(CameraError::Control(m)) => {
                            tracing::warn!("camera reconnect attempt {attempts}: lost again ({m})");
                            self.link = None;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => {
                    tracing::warn!("camera reconnect attempt {attempts}: {e}");
                }
            }
            let waited = self.clock.elapsed() - start;
            if waited >= self.cfg.reconnect_timeout {
                return Err(CameraError::ReconnectTimeout {
                    waited_s: waited.as_secs_f64(),
                    attempts,
                });
            }
            self.clock.sleep(delay);
            delay = (delay * 2).min(self.cfg.backoff_max);
        }
    }

    /// One control command with retries; returns the data of a read.
    fn transact(
        &mut self,
        op: &Op<'_>,
        name: &str,
        may_reconnect: bool,
    ) -> Result<Vec<u8>, CameraError> {
        let mut last = String::from("no answer");
        for attempt in 0..self.cfg.control_attempts.max(1) {
            if attempt > 0 {
                CameraCounters::inc(&self.counters.control_retries);
                self.clock.sleep(self.backoff(attempt));
            }
            if self.link.is_none() {
                if may_reconnect {
                    self.reconnect()?;
                } else {
                    return Err(CameraError::Control(format!("{name}: device disconnected")));
                }
            }
            let packet = match op {
                Op::Read { address, length } => self.ctl.read_mem(*address, *length),
                Op::Write { address, data } => self.ctl.write_mem(*address, data),
            };
            let timeout = self.cfg.control_timeout;
            let link = self.link.as_mut().expect("connected above");
            if let Err(e) = link.send_control(&packet, timeout) {
                last = format!("{name}: sending: {e}");
                if e.is_disconnect() {
                    self.lost(&e);
                } else if e == TransportError::Timeout {
                    CameraCounters::inc(&self.counters.control_timeouts);
                }
                continue;
            }
            let mut ack = [0u8; 12 + super::control::MAX_SCD_LEN];
            let mut wait = timeout;
            let mut lost: Option<TransportError> = None;
            loop {
                let link = self.link.as_mut().expect("connected");
                match link.recv_control(&mut ack, wait) {
                    Ok(n) => match self.ctl.handle_ack(&ack[..n]) {
                        Ok(AckEvent::ReadDone(d)) => return Ok(d),
                        Ok(AckEvent::WriteDone) => return Ok(Vec::new()),
                        Ok(AckEvent::Pending(d)) => {
                            CameraCounters::inc(&self.counters.pending_acks);
                            wait = d + timeout;
                        }
                        Ok(AckEvent::Stale { .. }) => {
                            CameraCounters::inc(&self.counters.stale_acks);
                        }
                        Ok(AckEvent::Failed(s)) if s.is_transient() => {
                            CameraCounters::inc(&self.counters.device_busy);
                            last = format!("{name}: device answered {s}");
                            break;
                        }
                        Ok(AckEvent::Failed(s)) => {
                            return Err(CameraError::Refused {
                                op: match op {
                                    Op::Read { .. } => "read",
                                    Op::Write { .. } => "write",
                                },
                                register: name.into(),
                                status: s,
                            })
                        }
                        Err(e) => {
                            CameraCounters::inc(&self.counters.control_protocol_errors);
                            last = format!("{name}: {e}");
                            break;
                        }
                    },
                    Err(TransportError::Timeout) => {
                        CameraCounters::inc(&self.counters.control_timeouts);
                        last = format!("{name}: no acknowledge within {} ms", wait.as_millis());
                        break;
                    }
                    Err(e) => {
                        last = format!("{name}: receiving: {e}");
                        if e.is_disconnect() {
                            lost = Some(e);
                        }
                        break;
                    }
                }
            }
            if let Some(e) = lost {
                self.lost(&e);
            }
        }
        Err(CameraError::Control(last))
    }

    fn read_inner(&mut self, name: &str, may_reconnect: bool) -> Result<i64, CameraError> {
        let r = self.register(name)?;
        if !r.access.readable() || r.kind == RegType::String {
            return Err(CameraError::BadValue {
                register: name.into(),
                value: "-".into(),
                problem: "is not a readable number register".into(),
            });
        }
        let d = self.transact(
            &Op::Read {
                address: r.address,
                length: r.byte_len() as u16,
            },
            name,
            may_reconnect,
        )?;
        r.decode(&d)
            .ok_or_else(|| CameraError::Protocol(format!("{name}: {} bytes", d.len())))
    }

    fn read_string_inner(
        &mut self,
        name: &str,
        may_reconnect: bool,
    ) -> Result<String, CameraError> {
        let r = self.register(name)?;
        let d = self.transact(
            &Op::Read {
                address: r.address,
                length: r.byte_len() as u16,
            },
            name,
            may_reconnect,
        )?;
        Ok(Register::decode_str(&d))
    }

    fn write_inner(
        &mut self,
        name: &str,
        value: i64,
        may_reconnect: bool,
    ) -> Result<(), CameraError> {
        let r = self.register(name)?;
        if !r.access.writable() {
            return Err(CameraError::BadValue {
                register: name.into(),
                value: value.to_string(),
                problem: "is read-only".into(),
            });
        }
        r.check_value(value)
            .map_err(|problem| CameraError::BadValue {
                register: name.into(),
                value: value.to_string(),
                problem,
            })?;
        let data = r.encode(value);
        self.transact(
            &Op::Write {
                address: r.address,
                data: &data,
            },
            name,
            may_reconnect,
        )?;
        Ok(())
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
                problem,
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

    /// Take one frame. Transient faults (truncated or corrupt blocks, bad trailer status,
    /// wrong block id, stalls, timeouts, a vanished device) are retried up to
    /// `frame_attempts` times with backoff; `watch` is called between transfers and aborts
    /// the exposure when it returns a reason (the door interlock).
    pub fn acquire(
        &mut self,
        req: &FrameRequest,
        cancel: &CancelToken,
        watch: &mut dyn FnMut() -> Option<String>,
    ) -> Result<Frame, CameraError> {
        let exposure_us = (req.exposure_s * 1e6).round();
        let er = self.register("ExposureTime")?;
        if !exposure_us.is_finite() || er.check_value(exposure_us as i64).is_err() {
            return Err(CameraError::BadValue {
                register: "ExposureTime".into(),
                value: format!("{} s", req.exposure_s),
                problem: er
                    .check_value(exposure_us as i64)
                    .err()
                    .unwrap_or_else(|| "not a number".into()),
            });
        }
        self.register("Binning")?
            .check_value(req.binning as i64)
            .map_err(|problem| CameraError::BadValue {
                register: "Binning".into(),
                value: req.binning.to_string(),
                problem,
            })?;
        let attempts = self.cfg.frame_attempts.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            if cancel.is_cancelled() {
                return Err(CameraError::Cancelled);
            }
            if attempt > 1 {
                CameraCounters::inc(&self.counters.frame_retries);
                self.clock.sleep(self.backoff(attempt - 1));
            }
            if self.link.is_none() {
                self.reconnect()?;
            }
            match self.try_acquire(req, exposure_us as i64, cancel, watch) {
                Ok(f) => {
                    CameraCounters::inc(&self.counters.frames_ok);
                    return Ok(f);
                }
                Err(AttemptError::Fatal(e)) => return Err(e),
                Err(AttemptError::Retry(fault, recovery)) => {
                    CameraCounters::inc(&self.counters.frames_discarded);
                    tracing::warn!(
                        "frame attempt {attempt} of {attempts} failed: {fault}; frame discarded"
                    );
                    last = fault;
                    match recovery {
                        Recovery::None => {}
                        Recovery::ClearHalt => {
                            if let Some(link) = self.link.as_mut() {
                                match link.clear_stream_halt() {
                                    Ok(()) => CameraCounters::inc(&self.counters.stalls_cleared),
                                    Err(e) if e.is_disconnect() => self.lost(&e),
                                    Err(e) => tracing::warn!("clearing the stream halt: {e}"),
                                }
                            }
                        }
                        Recovery::Reset => {
                            if let Some(link) = self.link.as_mut() {
                                if let Err(e) = link.reset() {
                                    tracing::warn!("resetting the camera's USB port: {e}");
                                }
                                CameraCounters::inc(&self.counters.resets);
                            }
                            // The device re-enumerates: connect again and restore settings.
                            self.lost(&TransportError::Other("USB port reset".into()));
                        }
                        Recovery::Reconnect => {
                            if self.link.is_some() {
                                self.lost(&TransportError::Disconnected);
                            }
                        }
                    }
                }
            }
        }
        Err(CameraError::FrameFailed { attempts, last })
    }

    /// Stop the acquisition in progress and flush what the device still streams.
    fn stop_and_drain(&mut self) {
        let _ = self.write_inner("AcquisitionStop", 1, false);
        self.decoder.reset();
        if let Some(link) = self.link.as_mut() {
            for _ in 0..100_000 {
                match link.recv_stream(&mut self.buf, Duration::from_millis(10)) {
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
    }

    fn try_acquire(
        &mut self,
        req: &FrameRequest,
        exposure_us: i64,
        cancel: &CancelToken,
        watch: &mut dyn FnMut() -> Option<String>,
    ) -> Result<Frame, AttemptError> {
        if req.require_lock {
            match self.wait_for_lock(cancel) {
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.write("ExposureTime", exposure_us)?;
        self.write("Binning", req.binning as i64)?;
        self.write("ShutterMode", req.shutter.register_value())?;
        let payload = self.read("PayloadSize")? as u64;
        let w = self.info.sensor_width_px / req.binning;
        let h = self.info.sensor_height_px / req.binning;
        if payload != w as u64 * h as u64 * 2 {
            return Err(AttemptError::Fatal(CameraError::Protocol(format!(
                "PayloadSize is {payload} bytes at binning {}, expected {w} x {h} x 2",
                req.binning
            ))));
        }
        self.decoder.reset();
        self.write("AcquisitionStart", 1)?;
        let started_at = self.clock.utc_now();
        let t0 = self.clock.elapsed();
        let readout = Duration::from_secs_f64(
            (w as f64 * h as f64) / (self.cfg.readout_speed_khz as f64 * 1000.0),
        );
        let deadline =
            t0 + Duration::from_secs_f64(req.exposure_s) + readout + self.cfg.frame_margin;
        let transfer = self.cfg.transfer_size as usize;
        loop {
            if cancel.is_cancelled() {
                CameraCounters::inc(&self.counters.aborted);
                self.stop_and_drain();
                return Err(AttemptError::Fatal(CameraError::Cancelled));
            }
            if let Some(reason) = watch() {
                CameraCounters::inc(&self.counters.aborted);
                self.stop_and_drain();
                return Err(AttemptError::Fatal(CameraError::Aborted(reason)));
            }
            let remaining = self.decoder.payload_remaining() as usize;
            // Room for the next payload piece, or for an early trailer.
            let want = if remaining > 0 {
                remaining.min(transfer).max(TRAILER_LEN)
            } else {
                MAX_LEADER_TRANSFER
            };
            let Some(link) = self.link.as_mut() else {
                return Err(AttemptError::Retry(
                    "device disconnected".into(),
                    Recovery::Reconnect,
                ));
            };
            let got = link.recv_stream(&mut self.buf[..want], self.cfg.stream_poll);
            match got {
                Ok(n) => match self.decoder.feed(&self.buf[..n]) {
                    Ok(Some(StreamEvent::Leader(l))) => {
                        let problem = if self.last_block_id.is_some_and(|last| l.block_id <= last) {
                            CameraCounters::inc(&self.counters.wrong_block_ids);
                            Some(format!(
                                "stale block id {} (last good block was {})",
                                l.block_id,
                                self.last_block_id.unwrap_or(0)
                            ))
                        } else if l.width != w
                            || l.height != h
                            || l.binning_x as u32 != req.binning
                            || l.exposure_us != exposure_us as u64
                            || (l.flags & FLAG_SHUTTER_OPEN != 0) != (req.shutter == Shutter::Auto)
                        {
                            CameraCounters::inc(&self.counters.mismatched_frames);
                            Some(format!(
                                "block {} is {}x{} binning {} exposure {} us shutter {}, not what was asked",
                                l.block_id,
                                l.width,
                                l.height,
                                l.binning_x,
                                l.exposure_us,
                                if l.flags & FLAG_SHUTTER_OPEN != 0 { "open" } else { "closed" }
                            ))
                        } else {
                            None
                        };
                        if let Some(p) = problem {
                            self.stop_and_drain();
                            return Err(AttemptError::Retry(p, Recovery::None));
                        }
                    }
                    Ok(Some(StreamEvent::Block(b))) => {
                        self.last_block_id = Some(b.leader.block_id);
                        let l = b.leader;
                        let pixels =
                            Array2::from_shape_vec((l.height as usize, l.width as usize), b.pixels)
                                .map_err(|e| {
                                    AttemptError::Fatal(CameraError::Protocol(e.to_string()))
                                })?;
                        return Ok(Frame {
                            block_id: l.block_id,
                            timestamp_ns: l.timestamp_ns,
                            started_at,
                            exposure_s: l.exposure_us as f64 / 1e6,
                            binning: l.binning_x as u32,
                            sensor_temp_c: l.sensor_temp_cc as f64 / 100.0,
                            shutter_open: l.flags & FLAG_SHUTTER_OPEN != 0,
                            temperature_locked: l.flags & FLAG_TEMPERATURE_LOCKED != 0,
                            pixels: Arc::new(pixels),
                        });
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let c = &self.counters;
                        CameraCounters::inc(match &e {
                            StreamError::Truncated { .. } => &c.truncated_payloads,
                            StreamError::TrailerStatus { .. } => &c.bad_trailer_status,
                            StreamError::WrongBlockId { .. } => &c.wrong_block_ids,
                            StreamError::Crc { .. } => &c.crc_errors,
                            _ => &c.stream_protocol_errors,
                        });
                        self.stop_and_drain();
                        return Err(AttemptError::Retry(e.to_string(), Recovery::None));
                    }
                },
                Err(TransportError::Timeout) => {
                    if self.clock.elapsed() > deadline {
                        CameraCounters::inc(&self.counters.frame_timeouts);
                        let silent = !self.decoder.in_block();
                        self.stop_and_drain();
                        return Err(AttemptError::Retry(
                            format!(
                                "no complete frame {:.1} s after the exposure ended",
                                (readout + self.cfg.frame_margin).as_secs_f64()
                            ),
                            // Nothing at all arrived: the device is stuck; reset it.
                            if silent {
                                Recovery::Reset
                            } else {
                                Recovery::None
                            },
                        ));
                    }
                }
                Err(TransportError::Stall) => {
                    self.decoder.reset();
                    return Err(AttemptError::Retry(
                        "the stream endpoint stalled".into(),
                        Recovery::ClearHalt,
                    ));
                }
                Err(e) if e.is_disconnect() => {
                    self.lost(&e);
                    return Err(AttemptError::Retry(
                        format!("the camera vanished during the frame ({e})"),
                        Recovery::Reconnect,
                    ));
                }
                Err(e) => {
                    self.stop_and_drain();
                    return Err(AttemptError::Retry(e.to_string(), Recovery::None));
                }
            }
        }
    }
}
