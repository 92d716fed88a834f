//! The camera's control channel: one command with retries and backoff (pending, stale and
//! busy acknowledges handled, timeouts and protocol errors counted), register reads and
//! writes checked against the map, losing the device, and the reconnect loop that connects
//! again and restores the identity check and the settings.

use crate::camera::control::AckEvent;
use crate::camera::counters::CameraCounters;
use crate::camera::regmap::{RegType, Register};
use crate::camera::transport::TransportError;

use super::{Camera, CameraError, DeviceInfo};

enum Op<'a> {
    Read { address: u64, length: u16 },
    Write { address: u64, data: &'a [u8] },
}

impl Camera {
    /// Identity and fixed settings; again after every reconnect (the device restarted).
    pub(super) fn configure(&mut self, may_reconnect: bool) -> Result<(), CameraError> {
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

    pub(super) fn lost(&mut self, why: &TransportError) {
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
    pub(super) fn reconnect(&mut self) -> Result<(), CameraError> {
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
            let mut ack = [0u8; 12 + crate::camera::control::MAX_SCD_LEN];
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

    pub(super) fn read_inner(
        &mut self,
        name: &str,
        may_reconnect: bool,
    ) -> Result<i64, CameraError> {
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

    pub(super) fn read_string_inner(
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

    pub(super) fn write_inner(
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
                problem: problem.to_string(),
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
}
