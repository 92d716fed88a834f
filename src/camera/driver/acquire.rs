//! Taking one frame: checking the request against the register map, attempts with
//! backoff, the recovery between them (clear the stream halt, reset the port, reconnect),
//! and the stream loop that checks each leader against the request, watches cancellation
//! and the interlock, and returns only a verified block.

use std::sync::Arc;
use std::time::Duration;

use ndarray::Array2;

use crate::camera::clock::CancelToken;
use crate::camera::counters::CameraCounters;
use crate::camera::stream::{
    StreamError, StreamEvent, FLAG_SHUTTER_OPEN, FLAG_TEMPERATURE_LOCKED, MAX_LEADER_TRANSFER,
    TRAILER_LEN,
};
use crate::camera::transport::TransportError;

use super::{Camera, CameraError, Frame, FrameRequest, Shutter};

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

impl Camera {
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
                    .map_or_else(|| "not a number".into(), |e| e.to_string()),
            });
        }
        self.register("Binning")?
            .check_value(req.binning as i64)
            .map_err(|problem| CameraError::BadValue {
                register: "Binning".into(),
                value: req.binning.to_string(),
                problem: problem.to_string(),
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
