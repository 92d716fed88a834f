//! Acquisition sequences: what the imager does when a technician presses start. (Acquire
//! is the verb; the data it makes is [`crate::acquisition`].)
//!
//! - [`sequence`]: the [`Imager`] (camera + controller) and its sequences — prepare (door
//!   interlock, stage, filter, cooling lock), photograph, auto-exposed luminescent frame,
//!   the dark, kinetic series — and the [`CaptureReport`].
//! - [`autoexpose`]: auto-exposure decisions, pure.
//! - [`dark`]: the dark from the library, or acquired and added to it.
//! - [`cooling`]: when the camera's cooling lock was last gained, and at which setpoint
//!   (darks from before are taken again), pure.
//! - [`folder`]: writing captures as lumiq acquisition folders, atomically.
//! - [`guided`]: guided calibration (`lumiq calibrate --guided`): the steps that build a
//!   new calibration set on the instrument and swap it in.
//! - [`prompt`]: the terminal side of guided calibration (prompts, progress bars).
//! - [`cli`]: `lumiq capture`.
//! - [`sim`]: the simulated imager wired through the real codecs, drivers and a
//!   pseudo-terminal, and the simulated technician of guided calibration.
//!
//! Does not own: the devices' protocols ([`crate::camera`], [`crate::controller`]) or
//! quantification ([`crate::job`]): a capture's folder is quantified like any other.

pub mod autoexpose;
pub mod cli;
pub mod cooling;
pub mod dark;
pub mod folder;
pub mod guided;
pub mod prompt;
pub mod sequence;
pub mod sim;

pub use sequence::{Capture, CaptureError, CaptureReport, Imager, SequenceConfig};
pub use sim::{
    simulated_imager, simulated_sequence, SimTechnician, SimulatedImager, SimulatedOptions,
};
