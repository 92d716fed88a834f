//! lumiq: the instrument-side daemon of a preclinical bioluminescence imager.
//!
//! Map of the crate:
//! - [`acquisition`]: the data model of one acquisition (settings, ids, raw frames).
//! - [`process`]: the pure core — bias, dark, flat, bad pixels, cosmic rays, background,
//!   detection, photometry with uncertainties. No I/O.
//! - [`formats`]: TIFF frames, lumiq acquisition folders, IVIS click folders and
//!   calibration sets: reading, writing, and clear errors for bad input.
//! - [`record`]: the standardized measurement record (`lumiq.measurement`) and its schema.
//! - [`simulate`]: a physically honest simulated instrument with ground truth.
//! - [`overlay`]: the overlay picture a biologist looks at.
//! - [`calibrate`]: building calibration masters from raw frames.
//! - [`job`]: one acquisition end to end: load, quantify, record, write outputs.
//! - [`cli`]: the `lumiq` command line (the binary only parses flags and calls it).
#![forbid(unsafe_code)]

pub mod acquisition;
pub mod calibrate;
pub mod cli;
pub mod formats;
pub mod job;
pub mod overlay;
pub mod process;
pub mod record;
pub mod simulate;
