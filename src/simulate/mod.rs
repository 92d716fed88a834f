//! A physically honest simulated imager: a cooled CCD behind a lens looking at mice with
//! luminescent tumours, with everything a real instrument adds — bias with structure, read
//! noise, dark current that rises with temperature, hot pixels and a bad column, pixel
//! response non-uniformity, vignetting, Poisson photon noise, cosmic-ray tracks, a smooth
//! background (autoluminescence and a light leak) — and the ground truth.
//!
//! Owns: generating frames as values (pure, seeded, no I/O). Writing them as lumiq
//! acquisition folders or IVIS click folders lives in [`write`]; the raw calibration
//! frames (bias, dark, flat folders) and the options that build the simulated instrument's
//! calibration set live in [`calibration_frames`].
//!
//! The forward model inverts DESIGN.md's radiance formula: a pixel collects
//! `S = B + D + L̄ · t · b² · FF / C` ADU, with `L̄` the mean radiance over the pixel,
//! converted to electrons with the gain for Poisson noise.

pub mod acquisition;
pub mod calibration_frames;
pub mod instrument;
pub mod photo;
pub mod scene;
pub mod study;
pub mod training;
pub mod write;

pub use acquisition::simulate_acquisition;
pub use instrument::Instrument;
pub use scene::{SceneSpec, SimulatedAcquisition, TrueTumour, Truth};
