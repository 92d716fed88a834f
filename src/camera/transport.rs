//! The narrow seam under the camera codec: three bulk pipes (control out, control in,
//! stream in) plus the two USB recovery actions. Implemented by the rusb transport
//! ([`super::usb`]) and by the simulated camera ([`super::sim`]).
//!
//! Owns: the trait and the error vocabulary of the seam, with each error's class
//! (transient: retry; disconnected: reconnect; other: report).

use std::time::Duration;

/// A failed transfer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("timed out")]
    Timeout,
    #[error("endpoint stalled")]
    Stall,
    #[error("device disconnected")]
    Disconnected,
    #[error("device sent more data than the buffer holds")]
    Overflow,
    #[error("device or interface busy")]
    Busy,
    #[error("no device: {0}")]
    NoDevice(String),
    #[error("{0}")]
    Other(String),
}

impl TransportError {
    /// Retrying the same transfer after a pause may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TransportError::Timeout
                | TransportError::Stall
                | TransportError::Overflow
                | TransportError::Busy
        )
    }

    /// The device is gone: reconnect.
    pub fn is_disconnect(&self) -> bool {
        matches!(
            self,
            TransportError::Disconnected | TransportError::NoDevice(_)
        )
    }
}

/// An open connection to one camera.
pub trait Transport: Send {
    /// Send one control packet (bulk OUT).
    fn send_control(&mut self, packet: &[u8], timeout: Duration) -> Result<(), TransportError>;
    /// Receive one acknowledge (bulk IN); returns its length.
    fn recv_control(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError>;
    /// Receive one stream transfer (bulk IN); returns its length.
    fn recv_stream(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError>;
    /// Clear a halt (STALL) on the stream endpoint.
    fn clear_stream_halt(&mut self) -> Result<(), TransportError>;
    /// USB port reset; the device re-enumerates (the connection may become unusable).
    fn reset(&mut self) -> Result<(), TransportError>;
    /// What this is, for logs (bus/address or "simulated camera SIM-0001").
    fn describe(&self) -> String;
}

/// Finds and opens the camera; called again to reconnect after the device vanished.
pub trait Connector: Send {
    fn connect(&mut self) -> Result<Box<dyn Transport>, TransportError>;
    fn describe(&self) -> String;
}
