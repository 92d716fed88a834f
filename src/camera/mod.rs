//! The imager's cooled CCD camera over USB, shaped like USB3 Vision.
//!
//! - [`regmap`]: the register map, loaded from `firmware-interfaces/camera-registers.toml`.
//! - [`control`]: GenCP-style command/acknowledge packets and the host's sans-IO state.
//! - [`stream`]: leader / payload / trailer blocks and the host's sans-IO decoder, which
//!   hands out only complete, verified frames.
//! - [`transport`]: the narrow seam under the codecs; [`usb`] implements it with rusb,
//!   [`sim`] with a simulated camera (device side of the same bytes, with the physics of
//!   `lumiq simulate` in [`sim::scene`] and fault knobs).
//! - [`driver`]: the host's driver — registers, cooling lock, frames; retries, backoff,
//!   halt recovery and the reconnect loop; [`counters`] of every fault.
//! - [`clock`]: the clock seam (real or simulated time) and cancellation.
//!
//! Does not own: sequences of frames (photograph, auto-exposure, darks, kinetics): see
//! [`crate::acquire`].

pub mod clock;
pub mod control;
pub mod counters;
pub mod driver;
pub mod regmap;
pub mod sim;
pub mod stream;
pub mod transport;
pub mod usb;

pub use clock::{CancelToken, Clock, SimClock, SystemClock};
pub use counters::{CameraCounters, CameraCountersSnapshot};
pub use driver::{Camera, CameraConfig, CameraError, DeviceInfo, Frame, FrameRequest, Shutter};
pub use regmap::RegisterMap;
pub use sim::{FaultKnob, FaultPlan, SimCamera, SimCameraConfig};
pub use transport::{Connector, Transport, TransportError};

// The old name of `sim::scene`, kept for callers.
#[doc(hidden)]
pub use sim::scene as sim_scene;
