//! The simulated camera's device side: its state (registers, sessions on the bus, the
//! exposure in progress, queued acknowledges and stream transfers), the thermal model,
//! the execution of GenCP commands with their acknowledges (PENDING_ACK for slow writes),
//! the read-out of a block with the frame's physics and the box's light, and the injection
//! of the planned faults into that block.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use super::scene::{Light, SimScene};
use crate::camera::clock::Clock;
use crate::camera::control::{
    AckBody, AckPacket, Command, CommandPacket, ControlError, Status, PENDING_ACK, READMEM_ACK,
    WRITEMEM_ACK,
};
use crate::camera::regmap::{RegType, RegisterMap};
use crate::camera::stream::{
    encode_block, Leader, Trailer, FLAG_SHUTTER_OPEN, FLAG_TEMPERATURE_LOCKED, PIXEL_FORMAT_MONO16,
    TRAILER_DATA_DISCARDED, TRAILER_SUCCESS,
};
use crate::camera::transport::TransportError;
use crate::controller::sim::SimBox;

use super::{FaultKnob, SimCameraConfig};

#[derive(Debug, Clone, Copy)]
pub(super) struct Exposure {
    pub(super) block_id: u64,
    pub(super) start: Duration,
    pub(super) ready_at: Duration,
    pub(super) exposure_us: u64,
    pub(super) binning: u32,
    pub(super) shutter_open: bool,
    pub(super) read_noise_factor: f64,
    pub(super) gain_factor: f64,
    pub(super) fault: Option<FaultKnob>,
    pub(super) door_opened: bool,
}

/// A fault pending on the block being streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StreamFault {
    /// Stall when this many transfers of the block have been sent.
    StallAt(usize),
    /// Vanish when this many transfers have been sent.
    DisconnectAt(usize),
}

pub(super) struct Device {
    pub(super) cfg: SimCameraConfig,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) map: Arc<RegisterMap>,
    pub(super) sim_box: Option<SimBox>,
    pub(super) regs: HashMap<u64, i64>,
    pub(super) session: u64,
    pub(super) plugged: bool,
    pub(super) unplugged_until: Duration,
    /// Sensor temperature `temp0_c` at time `t0`; it relaxes toward the target from there.
    pub(super) t0: Duration,
    pub(super) temp0_c: f64,
    pub(super) exposure: Option<Exposure>,
    pub(super) stream: VecDeque<Vec<u8>>,
    pub(super) sent_in_block: usize,
    pub(super) stream_fault: Option<StreamFault>,
    pub(super) stalled: bool,
    pub(super) acks: VecDeque<(Duration, Vec<u8>)>,
    pub(super) next_block_id: u64,
    pub(super) scene: SimScene,
    pub(super) fired: HashMap<FaultKnob, u32>,
    pub(super) blocks_sent: u64,
}

impl Device {
    fn reg(&self, name: &str) -> i64 {
        let r = self.map.get(name).expect("register in the map");
        *self.regs.get(&r.address).unwrap_or(&0)
    }

    fn target_c(&self) -> f64 {
        if self.reg("CoolerEnable") == 1 {
            self.reg("CoolingSetpoint") as f64 / 100.0
        } else {
            self.cfg.ambient_c
        }
    }

    pub(super) fn temp_at(&self, t: Duration) -> f64 {
        let target = self.target_c();
        // Regulated (cooler on) either way; drifting back to ambient with it off.
        let tau = if self.reg("CoolerEnable") == 1 {
            self.cfg.cooling_tau_s
        } else {
            self.cfg.warming_tau_s
        };
        let dt = t.saturating_sub(self.t0).as_secs_f64();
        target + (self.temp0_c - target) * (-dt / tau).exp()
    }

    pub(super) fn rebase_thermal(&mut self) {
        let now = self.clock.elapsed();
        self.temp0_c = self.temp_at(now);
        self.t0 = now;
    }

    fn locked_at(&self, t: Duration) -> bool {
        self.reg("CoolerEnable") == 1
            && (self.temp_at(t) - self.reg("CoolingSetpoint") as f64 / 100.0).abs()
                <= self.cfg.lock_tolerance_c
    }

    /// The firmware (re)starts: registers to their defaults, nothing in flight.
    pub(super) fn firmware_restart(&mut self) {
        self.rebase_thermal();
        self.regs.clear();
        for r in self.map.registers() {
            if let Some(d) = r.default {
                self.regs.insert(r.address, d);
            }
        }
        self.rebase_thermal();
        self.exposure = None;
        self.stream.clear();
        self.stream_fault = None;
        self.stalled = false;
        self.acks.clear();
        self.next_block_id = 1;
    }

    pub(super) fn check(&self, session: u64) -> Result<(), TransportError> {
        if !self.plugged || self.session != session {
            Err(TransportError::Disconnected)
        } else {
            Ok(())
        }
    }

    pub(super) fn unplug(&mut self, for_: Duration) {
        self.rebase_thermal();
        self.plugged = false;
        self.unplugged_until = self.clock.elapsed() + for_;
    }

    fn take_fault(&mut self, exposure_s: f64) -> Option<FaultKnob> {
        for plan in &self.cfg.faults {
            let fired = self.fired.get(&plan.knob).copied().unwrap_or(0);
            if exposure_s >= plan.min_exposure_s && fired < plan.times {
                self.fired.insert(plan.knob, fired + 1);
                tracing::debug!("simulated camera: injecting {}", plan.knob.name());
                return Some(plan.knob);
            }
        }
        None
    }

    fn box_light(&self, shutter_open: bool) -> (Light, f64) {
        let mut light = Light {
            shutter_open,
            ..Light::dark()
        };
        let mut fov = 22.4;
        if let Some(b) = &self.sim_box {
            let s = b.state();
            light.led_percent = s.led_percent;
            light.door_open = s.door_open;
            light.filter_transmission = s.filter_transmission();
            light.flat_panel = s.flat_panel;
            light.reference_source = s.reference_source;
            fov = s.fov_cm();
        }
        (light, fov)
    }

    /// Advance the exposure in progress to `now`: the door fault at mid-exposure, the block
    /// at the end of the read-out.
    pub(super) fn update(&mut self) {
        let now = self.clock.elapsed();
        let Some(mut e) = self.exposure else {
            return;
        };
        let mid = e.start + Duration::from_micros(e.exposure_us / 2);
        if e.fault == Some(FaultKnob::DoorOpen) && !e.door_opened && now >= mid {
            if let Some(b) = &self.sim_box {
                b.force_door_open();
            }
            e.door_opened = true;
            self.exposure = Some(e);
        }
        if now < e.ready_at {
            return;
        }
        self.exposure = None;
        let exposure_s = e.exposure_us as f64 / 1e6;
        let (mut light, fov) = self.box_light(e.shutter_open);
        light.door_open |= e.door_opened;
        let temp = self.temp_at(e.start + Duration::from_micros(e.exposure_us / 2));
        let seed = self
            .cfg
            .noise_seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(self.blocks_sent.wrapping_mul(1_000_003))
            .wrapping_add(self.session);
        let pixels = self.scene.frame(
            e.binning,
            exposure_s,
            fov,
            temp,
            light,
            e.gain_factor,
            e.read_noise_factor,
            seed,
        );
        self.blocks_sent += 1;
        let (h, w) = pixels.dim();
        let mut payload = Vec::with_capacity(w * h * 2);
        for p in pixels.iter() {
            payload.extend_from_slice(&p.to_le_bytes());
        }
        let mut flags = 0;
        if e.shutter_open {
            flags |= FLAG_SHUTTER_OPEN;
        }
        if self.locked_at(e.ready_at) {
            flags |= FLAG_TEMPERATURE_LOCKED;
        }
        let leader = Leader {
            block_id: e.block_id,
            timestamp_ns: e.start.as_nanos() as u64,
            pixel_format: PIXEL_FORMAT_MONO16,
            width: w as u32,
            height: h as u32,
            offset_x: 0,
            offset_y: 0,
            padding_x: 0,
            binning_x: e.binning as u8,
            binning_y: e.binning as u8,
            payload_size: payload.len() as u64,
            exposure_us: e.exposure_us,
            sensor_temp_cc: (self.temp_at(e.ready_at) * 100.0).round() as i16,
            flags,
        };
        let transfer = self.reg("StreamTransferSize").max(4096) as usize;
        let status = if e.fault == Some(FaultKnob::BadTrailer) {
            TRAILER_DATA_DISCARDED
        } else {
            TRAILER_SUCCESS
        };
        let mut transfers = encode_block(&leader, &payload, transfer, status);
        let n_payload = transfers.len() - 2;
        self.stream_fault = None;
        match e.fault {
            Some(FaultKnob::TruncatedPayload) => {
                let keep = (n_payload / 2).max(1).min(n_payload);
                let kept: Vec<u8> = transfers[1..1 + keep].concat();
                let kept_len = if keep == n_payload && n_payload == 1 {
                    kept.len() / 2
                } else {
                    kept.len()
                };
                let mut t = vec![transfers[0].clone()];
                if kept_len == kept.len() {
                    t.extend(transfers[1..1 + keep].iter().cloned());
                } else {
                    t.push(kept[..kept_len].to_vec());
                }
                t.push(
                    Trailer {
                        block_id: leader.block_id,
                        status: TRAILER_SUCCESS,
                        valid_payload_size: kept_len as u64,
                        height: leader.height,
                        payload_crc32: crc32fast::hash(&kept[..kept_len]),
                    }
                    .encode(),
                );
                transfers = t;
            }
            Some(FaultKnob::WrongBlockId) => {
                let last = transfers.last_mut().expect("a trailer");
                let mut tr = Trailer::decode(last).expect("our own trailer");
                tr.block_id += 1;
                *last = tr.encode();
            }
            Some(FaultKnob::Stall) => self.stream_fault = Some(StreamFault::StallAt(1)),
            Some(FaultKnob::DisconnectMidPayload) => {
                if n_payload == 1 {
                    // One payload transfer: send half of it, then vanish.
                    let p = transfers.remove(1);
                    let (a, b) = p.split_at(p.len() / 2);
                    transfers.insert(1, b.to_vec());
                    transfers.insert(1, a.to_vec());
                    self.stream_fault = Some(StreamFault::DisconnectAt(2));
                } else {
                    self.stream_fault = Some(StreamFault::DisconnectAt(1 + n_payload / 2));
                }
            }
            _ => {}
        }
        self.sent_in_block = 0;
        self.stream.extend(transfers);
    }

    fn ack(&self, status: Status, ack_id: u16, request_id: u16, body: AckBody) -> Vec<u8> {
        AckPacket {
            status,
            ack_id,
            request_id,
            body,
        }
        .encode()
    }

    /// Execute one command; queue its acknowledge(s).
    pub(super) fn execute(&mut self, bytes: &[u8]) {
        let now = self.clock.elapsed();
        let pkt = match CommandPacket::decode(bytes) {
            Ok(p) => p,
            Err(ControlError::Truncated { .. }) | Err(ControlError::BadPrefix(_)) => return,
            Err(_) => {
                let request_id = u16::from_le_bytes([bytes[10], bytes[11]]);
                let a = self.ack(
                    Status::InvalidHeader,
                    READMEM_ACK,
                    request_id,
                    AckBody::Empty,
                );
                self.acks.push_back((now, a));
                return;
            }
        };
        let rid = pkt.request_id;
        match pkt.command {
            Command::ReadMem { address, length } => {
                let reply = self.read_mem(address, length);
                let a = match reply {
                    Ok(d) => self.ack(Status::Success, READMEM_ACK, rid, AckBody::ReadMem(d)),
                    Err(s) => self.ack(s, READMEM_ACK, rid, AckBody::Empty),
                };
                self.acks.push_back((now, a));
            }
            Command::WriteMem { address, data } => {
                let pending = self.map.at(address).and_then(|r| r.pending_ms);
                let result = self.write_mem(address, &data);
                let a = match result {
                    Ok(()) => self.ack(
                        Status::Success,
                        WRITEMEM_ACK,
                        rid,
                        AckBody::WriteMem {
                            length_written: data.len() as u16,
                        },
                    ),
                    Err(s) => self.ack(s, WRITEMEM_ACK, rid, AckBody::Empty),
                };
                match pending {
                    Some(ms) if result.is_ok() => {
                        let p = self.ack(
                            Status::Success,
                            PENDING_ACK,
                            rid,
                            AckBody::Pending {
                                timeout_ms: ms as u16,
                            },
                        );
                        self.acks.push_back((now, p));
                        self.acks
                            .push_back((now + Duration::from_millis(ms as u64 / 2), a));
                    }
                    _ => self.acks.push_back((now, a)),
                }
            }
        }
    }

    fn read_mem(&mut self, address: u64, length: u16) -> Result<Vec<u8>, Status> {
        let r = self.map.at(address).ok_or(Status::InvalidAddress)?.clone();
        if length as usize != r.byte_len() {
            return Err(Status::InvalidParameter);
        }
        if !r.access.readable() {
            return Err(Status::AccessDenied);
        }
        let now = self.clock.elapsed();
        let v = match r.name.as_str() {
            "ModelName" => return r.encode_str(&self.cfg.model).ok_or(Status::Error),
            "SerialNumber" => return r.encode_str(&self.cfg.serial).ok_or(Status::Error),
            "FirmwareVersion" => return r.encode_str(&self.cfg.firmware).ok_or(Status::Error),
            "SensorWidth" | "SensorHeight" => self.cfg.instrument.sensor_px as i64,
            "PixelFormat" => PIXEL_FORMAT_MONO16 as i64,
            "SensorTemperature" => (self.temp_at(now) * 100.0).round() as i64,
            "TemperatureLocked" => self.locked_at(now) as i64,
            "Status" => {
                let mut s = 0;
                if let Some(e) = &self.exposure {
                    let end = e.start + Duration::from_micros(e.exposure_us);
                    s |= if now < end { 1 } else { 2 };
                }
                if !self.stream.is_empty() {
                    s |= 4;
                }
                s
            }
            "PayloadSize" => {
                let n = self.cfg.instrument.sensor_px as i64 / self.reg("Binning").max(1);
                n * n * 2
            }
            _ => {
                if r.kind == RegType::String {
                    return Err(Status::NotImplemented);
                }
                *self.regs.get(&address).unwrap_or(&0)
            }
        };
        Ok(r.encode(v))
    }

    fn write_mem(&mut self, address: u64, data: &[u8]) -> Result<(), Status> {
        let r = self.map.at(address).ok_or(Status::InvalidAddress)?.clone();
        if !r.access.writable() {
            return Err(Status::WriteProtect);
        }
        let v = r.decode(data).ok_or(Status::InvalidParameter)?;
        r.check_value(v).map_err(|_| Status::InvalidParameter)?;
        match r.name.as_str() {
            "AcquisitionStart" => {
                if self.reg("StreamEnable") != 1 {
                    return Err(Status::WrongConfig);
                }
                if self.exposure.is_some() {
                    return Err(Status::Busy);
                }
                let now = self.clock.elapsed();
                let exposure_us = self.reg("ExposureTime") as u64;
                let binning = self.reg("Binning") as u32;
                let speed_khz = self.reg("ReadoutSpeed") as f64;
                let n = (self.cfg.instrument.sensor_px / binning as usize) as f64;
                let readout = Duration::from_secs_f64(n * n / (speed_khz * 1000.0) + 0.01);
                let fault = self.take_fault(exposure_us as f64 / 1e6);
                let block_id = self.next_block_id;
                self.next_block_id += 1;
                self.stream.clear();
                self.exposure = Some(Exposure {
                    block_id,
                    start: now,
                    ready_at: now + Duration::from_micros(exposure_us) + readout,
                    exposure_us,
                    binning,
                    shutter_open: self.reg("ShutterMode") != 0,
                    read_noise_factor: match speed_khz as i64 {
                        100 => 0.8,
                        1000 => 1.0,
                        _ => 2.0,
                    },
                    gain_factor: self.reg("Gain") as f64,
                    fault,
                    door_opened: false,
                });
            }
            "AcquisitionStop" => {
                self.exposure = None;
                self.stream.clear();
                self.stream_fault = None;
            }
            "DeviceReset" => self.firmware_restart(),
            "CoolerEnable" | "CoolingSetpoint" => {
                self.rebase_thermal();
                self.regs.insert(address, v);
                self.rebase_thermal();
            }
            _ => {
                self.regs.insert(address, v);
            }
        }
        Ok(())
    }
}
