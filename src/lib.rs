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
//! - [`delivery`]: the durable outbox and the MQTT publisher that delivers every record.
//! - [`camera`]: the cooled CCD over USB (USB3 Vision-shaped codecs, rusb transport,
//!   simulated camera, driver with retries and reconnects).
//! - [`controller`]: the imager's controller over a serial line (door, LED, shelf, filter,
//!   heated stage), its driver and its simulator behind a pseudo-terminal.
//! - [`acquire`]: acquisition sequences (cooling lock, photograph, auto-exposed
//!   luminescent frame, dark, kinetics) that write lumiq acquisition folders.
//! - [`cli`]: the `lumiq` command line (the binary only parses flags and calls it).
#![forbid(unsafe_code)]

pub mod acquire;
pub mod acquisition;
pub mod calibrate;
pub mod camera;
pub mod cli;
pub mod controller;
pub mod delivery;
pub mod formats;
pub mod job;
pub mod overlay;
pub mod process;
pub mod record;
pub mod simulate;
