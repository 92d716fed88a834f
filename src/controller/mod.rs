//! The imager's controller on a serial line: door interlock, photograph LED, stage shelf
//! (field of view), emission filter wheel, heated stage, and its unsolicited events.
//!
//! - [`protocol`]: the line protocol, sans-IO (framing, CRC-16, typed requests, replies,
//!   events, error codes). Specified in `firmware-interfaces/controller-serial.md`.
//! - [`driver`]: the host's driver over a serial port, with timeouts, retries and counters.
//! - [`sim`]: the simulated controller behind a real pseudo-terminal, and the simulated
//!   box it shares with the simulated camera.
//!
//! Does not own: what a sequence does with the door or the LED ([`crate::acquire`]).

pub mod driver;
pub mod protocol;
pub mod sim;

pub use driver::{Controller, ControllerConfig, ControllerError, ControllerInfo};
pub use protocol::{Event, Shelf};
pub use sim::{SimBox, SimController, SimControllerConfig};
