//! Acquisition sequences: what the imager does when a technician presses start. (Acquire
//! is the verb; the data it makes is [`crate::acquisition`].)
//!
//! - [`sequence`]: the [`Imager`] (camera + controller) and its sequences — prepare (door
//!   interlock, stage, filter, cooling lock), photograph, auto-exposed luminescent frame,
//!   the dark, kinetic series — and the [`CaptureReport`].
//! - [`autoexpose`]: auto-exposure decisions, pure.
//! - [`dark`]: the dark from the library, or acquired and added to it.
//! - [`folder`]: writing captures as lumiq acquisition folders, atomically.
//! - [`cli`]: `lumiq capture`.
//! - [`sim`]: the simulated imager wired through the real codecs, drivers and a
//!   pseudo-terminal.
//!
//! Does not own: the devices' protocols ([`crate::camera`], [`crate::controller`]) or
//! quantification ([`crate::job`]): a capture's folder is quantified like any other.

pub mod autoexpose;
pub mod cli;
pub mod dark;
pub mod folder;
pub mod sequence;
pub mod sim;

pub use sequence::{Capture, CaptureError, CaptureReport, Imager, SequenceConfig};
pub use sim::{simulated_imager, simulated_sequence, SimulatedImager, SimulatedOptions};
