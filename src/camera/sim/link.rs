//! The simulated camera's USB side: [`SimConnector`] (plugging in again after a pull,
//! re-enumeration as a firmware restart, one session per connection) and the transport of
//! one connection — control and stream endpoints that advance the simulated clock instead
//! of waiting, the stall and the disconnect faults, clearing the halt and the port reset.

use std::time::Duration;

use crate::camera::transport::{Connector, Transport, TransportError};

use super::device::StreamFault;
use super::SimCamera;

/// Connects the driver to the simulated camera.
pub struct SimConnector {
    pub(super) cam: SimCamera,
}

impl Connector for SimConnector {
    fn connect(&mut self) -> Result<Box<dyn Transport>, TransportError> {
        let mut d = self.cam.lock();
        if !d.plugged {
            if d.clock.elapsed() < d.unplugged_until {
                return Err(TransportError::NoDevice(format!(
                    "simulated camera {} is not on the bus",
                    d.cfg.serial
                )));
            }
            d.plugged = true;
            d.firmware_restart();
        }
        d.session += 1;
        let session = d.session;
        let serial = d.cfg.serial.clone();
        drop(d);
        Ok(Box::new(SimLink {
            cam: self.cam.clone(),
            session,
            serial,
        }))
    }

    fn describe(&self) -> String {
        format!("simulated camera {}", self.cam.serial())
    }
}

/// One connection to the simulated camera.
struct SimLink {
    cam: SimCamera,
    session: u64,
    serial: String,
}

impl Transport for SimLink {
    fn send_control(&mut self, packet: &[u8], _timeout: Duration) -> Result<(), TransportError> {
        let mut d = self.cam.lock();
        d.check(self.session)?;
        d.update();
        d.execute(packet);
        Ok(())
    }

    fn recv_control(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        let mut d = self.cam.lock();
        d.check(self.session)?;
        let now = d.clock.elapsed();
        let Some(&(at, _)) = d.acks.front() else {
            d.clock.sleep(timeout);
            d.update();
            return Err(TransportError::Timeout);
        };
        if at > now {
            if at - now > timeout {
                d.clock.sleep(timeout);
                d.update();
                return Err(TransportError::Timeout);
            }
            d.clock.sleep(at - now);
        }
        d.update();
        let (_, a) = d.acks.pop_front().expect("checked above");
        if a.len() > buf.len() {
            return Err(TransportError::Overflow);
        }
        buf[..a.len()].copy_from_slice(&a);
        Ok(a.len())
    }

    fn recv_stream(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        let mut d = self.cam.lock();
        d.check(self.session)?;
        if d.stalled {
            return Err(TransportError::Stall);
        }
        d.update();
        if d.stream.is_empty() {
            let now = d.clock.elapsed();
            match d.exposure.map(|e| e.ready_at) {
                Some(ready) if ready.saturating_sub(now) <= timeout => {
                    d.clock.sleep(ready.saturating_sub(now));
                    d.update();
                }
                _ => {
                    d.clock.sleep(timeout);
                    d.update();
                    return Err(TransportError::Timeout);
                }
            }
        }
        match d.stream_fault {
            Some(StreamFault::StallAt(k)) if d.sent_in_block == k => {
                d.stream_fault = None;
                d.stalled = true;
                d.stream.clear();
                return Err(TransportError::Stall);
            }
            Some(StreamFault::DisconnectAt(k)) if d.sent_in_block == k => {
                d.stream_fault = None;
                let off = d.cfg.replug_after;
                d.unplug(off);
                return Err(TransportError::Disconnected);
            }
            _ => {}
        }
        let Some(t) = d.stream.pop_front() else {
            return Err(TransportError::Timeout);
        };
        d.sent_in_block += 1;
        if t.len() > buf.len() {
            return Err(TransportError::Overflow);
        }
        buf[..t.len()].copy_from_slice(&t);
        Ok(t.len())
    }

    fn clear_stream_halt(&mut self) -> Result<(), TransportError> {
        let mut d = self.cam.lock();
        d.check(self.session)?;
        d.stalled = false;
        d.stream.clear();
        d.exposure = None;
        Ok(())
    }

    fn reset(&mut self) -> Result<(), TransportError> {
        let mut d = self.cam.lock();
        d.check(self.session)?;
        d.firmware_restart();
        Ok(())
    }

    fn describe(&self) -> String {
        format!("simulated camera {}", self.serial)
    }
}
