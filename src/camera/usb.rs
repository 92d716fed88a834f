//! The production transport: the camera over USB with rusb (libusb).
//!
//! Owns: finding the device by vendor id, product id and (optionally) serial number,
//! claiming its interface, the three bulk endpoints with timeouts, clearing a halt,
//! resetting the port, and turning every libusb failure into a [`TransportError`] whose
//! class the driver understands. Reconnecting is the driver's job: it calls
//! [`UsbConnector::connect`] again.
//!
//! Design: an explicit `rusb::Context`, never the global one — on a machine without a USB
//! bus the global context panics, while `Context::new` returns an error we can explain.

use std::time::Duration;

use rusb::UsbContext;
use serde::{Deserialize, Serialize};

use super::transport::{Connector, Transport, TransportError};

/// Where the camera is and how to talk to it (a section of the daemon's configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsbCameraConfig {
    pub vendor_id: u16,
    pub product_id: u16,
    /// The camera's serial number (iSerialNumber); `None` takes the first match.
    #[serde(default)]
    pub serial: Option<String>,
    #[serde(default)]
    pub interface: u8,
    #[serde(default = "default_control_out")]
    pub control_out_endpoint: u8,
    #[serde(default = "default_control_in")]
    pub control_in_endpoint: u8,
    #[serde(default = "default_stream_in")]
    pub stream_in_endpoint: u8,
}

fn default_control_out() -> u8 {
    0x01
}
fn default_control_in() -> u8 {
    0x81
}
fn default_stream_in() -> u8 {
    0x82
}

/// A camera's USB ids that cannot be parsed (the text as given, and the expected form).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UsbIdError {
    #[error("{0:?}: vendor and product ids are 4 hex digits, e.g. 1d6b:0104")]
    NotHex(String),
    #[error("{0:?}: expected VID:PID[:SERIAL], e.g. 1d6b:0104:SIM-0001")]
    Malformed(String),
}

impl UsbCameraConfig {
    pub fn new(vendor_id: u16, product_id: u16, serial: Option<String>) -> Self {
        UsbCameraConfig {
            vendor_id,
            product_id,
            serial,
            interface: 0,
            control_out_endpoint: default_control_out(),
            control_in_endpoint: default_control_in(),
            stream_in_endpoint: default_stream_in(),
        }
    }

    /// Parse `VID:PID[:SERIAL]` with hexadecimal ids, e.g. `1d6b:0104:SIM-0001`.
    pub fn parse(text: &str) -> Result<Self, UsbIdError> {
        let parts: Vec<&str> = text.splitn(3, ':').collect();
        let hex = |s: &str| u16::from_str_radix(s.trim_start_matches("0x"), 16);
        match parts.as_slice() {
            [v, p, rest @ ..] => {
                let (Ok(v), Ok(p)) = (hex(v), hex(p)) else {
                    return Err(UsbIdError::NotHex(text.to_string()));
                };
                let serial = rest
                    .first()
                    .filter(|s| !s.is_empty())
                    .map(|s| s.to_string());
                Ok(UsbCameraConfig::new(v, p, serial))
            }
            _ => Err(UsbIdError::Malformed(text.to_string())),
        }
    }

    fn describe(&self) -> String {
        format!(
            "USB {:04x}:{:04x}{}",
            self.vendor_id,
            self.product_id,
            self.serial
                .as_ref()
                .map(|s| format!(" serial {s}"))
                .unwrap_or_default()
        )
    }
}

fn map_err(e: rusb::Error) -> TransportError {
    match e {
        rusb::Error::Timeout => TransportError::Timeout,
        rusb::Error::Pipe => TransportError::Stall,
        rusb::Error::NoDevice => TransportError::Disconnected,
        rusb::Error::Overflow => TransportError::Overflow,
        rusb::Error::Busy => TransportError::Busy,
        rusb::Error::NotFound => TransportError::NoDevice("not found".into()),
        rusb::Error::Access => TransportError::Other(
            "permission denied: install systemd/99-lumiq.rules and add the service user to group lumiq".into(),
        ),
        other => TransportError::Other(other.to_string()),
    }
}

/// Finds and opens the camera.
pub struct UsbConnector {
    cfg: UsbCameraConfig,
    context: Option<rusb::Context>,
}

impl UsbConnector {
    pub fn new(cfg: UsbCameraConfig) -> Self {
        UsbConnector { cfg, context: None }
    }

    fn context(&mut self) -> Result<rusb::Context, TransportError> {
        if let Some(c) = &self.context {
            return Ok(c.clone());
        }
        let c = rusb::Context::new().map_err(|e| {
            TransportError::NoDevice(format!(
                "cannot initialise libusb ({e}): this machine has no usable USB bus (no /sys/bus/usb?)"
            ))
        })?;
        self.context = Some(c.clone());
        Ok(c)
    }
}

impl Connector for UsbConnector {
    fn connect(&mut self) -> Result<Box<dyn Transport>, TransportError> {
        let ctx = self.context()?;
        let devices = ctx
            .devices()
            .map_err(|e| TransportError::NoDevice(format!("cannot list USB devices ({e})")))?;
        let mut seen = Vec::new();
        for dev in devices.iter() {
            let Ok(desc) = dev.device_descriptor() else {
                continue;
            };
            if desc.vendor_id() != self.cfg.vendor_id || desc.product_id() != self.cfg.product_id {
                continue;
            }
            let handle = match dev.open() {
                Ok(h) => h,
                Err(e) => {
                    seen.push(format!(
                        "bus {} address {}: {}",
                        dev.bus_number(),
                        dev.address(),
                        map_err(e)
                    ));
                    continue;
                }
            };
            let serial = handle
                .read_serial_number_string_ascii(&desc)
                .unwrap_or_default();
            if let Some(want) = &self.cfg.serial {
                if &serial != want {
                    seen.push(format!("serial {serial}"));
                    continue;
                }
            }
            match handle.set_auto_detach_kernel_driver(true) {
                Ok(()) | Err(rusb::Error::NotSupported) => {}
                Err(e) => return Err(map_err(e)),
            }
            handle
                .claim_interface(self.cfg.interface)
                .map_err(map_err)?;
            let description = format!(
                "USB bus {} address {} ({:04x}:{:04x} serial {serial})",
                dev.bus_number(),
                dev.address(),
                desc.vendor_id(),
                desc.product_id()
            );
            return Ok(Box::new(UsbTransport {
                handle,
                cfg: self.cfg.clone(),
                description,
            }));
        }
        Err(TransportError::NoDevice(if seen.is_empty() {
            format!("no {} on the USB bus", self.cfg.describe())
        } else {
            format!(
                "no {}; found instead: {}",
                self.cfg.describe(),
                seen.join("; ")
            )
        }))
    }

    fn describe(&self) -> String {
        self.cfg.describe()
    }
}

/// An open, claimed camera.
pub struct UsbTransport {
    handle: rusb::DeviceHandle<rusb::Context>,
    cfg: UsbCameraConfig,
    description: String,
}

impl Transport for UsbTransport {
    fn send_control(&mut self, packet: &[u8], timeout: Duration) -> Result<(), TransportError> {
        let n = self
            .handle
            .write_bulk(self.cfg.control_out_endpoint, packet, timeout)
            .map_err(map_err)?;
        if n != packet.len() {
            return Err(TransportError::Other(format!(
                "short control write: {n} of {} bytes",
                packet.len()
            )));
        }
        Ok(())
    }

    fn recv_control(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        self.handle
            .read_bulk(self.cfg.control_in_endpoint, buf, timeout)
            .map_err(map_err)
    }

    fn recv_stream(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        self.handle
            .read_bulk(self.cfg.stream_in_endpoint, buf, timeout)
            .map_err(map_err)
    }

    fn clear_stream_halt(&mut self) -> Result<(), TransportError> {
        self.handle
            .clear_halt(self.cfg.stream_in_endpoint)
            .map_err(map_err)
    }

    fn reset(&mut self) -> Result<(), TransportError> {
        self.handle.reset().map_err(map_err)
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

impl Drop for UsbTransport {
    fn drop(&mut self) {
        let _ = self.handle.release_interface(self.cfg.interface);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_address_parses() {
        let c = UsbCameraConfig::parse("1d6b:0104:SIM-0001").unwrap();
        assert_eq!((c.vendor_id, c.product_id), (0x1d6b, 0x0104));
        assert_eq!(c.serial.as_deref(), Some("SIM-0001"));
        assert_eq!(UsbCameraConfig::parse("1d6b:0104").unwrap().serial, None);
        assert!(UsbCameraConfig::parse("camera").is_err());
        assert!(UsbCameraConfig::parse("zz:0104").is_err());
    }

    /// On a machine without a USB bus (like CI's) connecting is a clear error, never a
    /// panic; with a bus and no camera it says the camera is not there.
    #[test]
    fn connecting_without_the_camera_is_a_clear_error() {
        let mut c = UsbConnector::new(UsbCameraConfig::new(0x1d6b, 0x0104, Some("NOPE".into())));
        let e = c.connect().err().expect("no such camera here");
        assert!(matches!(e, TransportError::NoDevice(_)), "{e}");
        let text = e.to_string();
        assert!(text.contains("USB"), "{text}");
    }
}
