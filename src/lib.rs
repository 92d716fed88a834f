//! lumiq: the instrument-side daemon of a preclinical bioluminescence imager.
//!
//! Map of the crate:
//! - [`acquisition`]: the data model of one acquisition (settings, ids, raw frames).
//! - [`process`]: the pure core — bias, dark, flat, bad pixels, cosmic rays, background,
//!   detection, photometry with uncertainties. No I/O.
//! - [`formats`]: TIFF frames, lumiq acquisition folders, IVIS click folders and
//!   calibration sets: reading, writing, and clear errors for bad input.
//! - [`record`]: the standardized measurement record (`lumiq.measurement`) and its schema.
//! - [`sequence`]: the sequence record (`lumiq.sequence`): a kinetic series summarised per
//!   region (peak flux, time to peak, area under the curve, peak covered).
//! - [`eval`]: `lumiq eval`, the model against the classical detector on a held-out set.
//! - [`segment`]: the tumour-segmentation model (ONNX, tract): sha256-checked loading,
//!   plans per input size, padding and tiling, the probability map on the working grid.
//! - [`simulate`]: a physically honest simulated instrument with ground truth.
//! - [`overlay`]: the overlay picture a biologist looks at.
//! - [`calibrate`]: building calibration masters from raw frames.
//! - [`job`]: one acquisition end to end: load, quantify, record, write outputs.
//! - [`qc`]: `lumiq qc`, the daily check against a reference light source, and the QC
//!   history that records are corrected from.
//! - [`trend`]: `lumiq trend`, each tumour's flux against day across a study, growth rates.
//! - [`batch`]: `lumiq batch`, a lab's archive of folders quantified into one CSV table.
//! - [`delivery`]: the durable outbox and the MQTT publisher that delivers every record.
//! - [`camera`]: the cooled CCD over USB (USB3 Vision-shaped codecs, rusb transport,
//!   simulated camera, driver with retries and reconnects).
//! - [`controller`]: the imager's controller over a serial line (door, LED, shelf, filter,
//!   heated stage), its driver and its simulator behind a pseudo-terminal.
//! - [`acquire`]: acquisition sequences (cooling lock, photograph, auto-exposed
//!   luminescent frame, dark, kinetics) that write lumiq acquisition folders.
//! - [`daemon`]: `lumiq run` — acquire → process → commit stages, the archive, the status
//!   socket, sd_notify, `lumiq status`, `lumiq acquire` and `lumiq demo`.
//! - [`cli`]: the `lumiq` command line (the binary only parses flags and calls it).
//! - [`config`]: the daemon's settings (TOML file plus `LUMIQ_<SECTION>__<KEY>` overrides)
//!   and their checks at start.
//! - [`logging`]: the daemon's log output (terminal text, JSON lines, journald).
//! - [`errors`]: an error and its sources on one line; a bad input told from broken
//!   storage ([`errors::Fault`]).
//! - [`stats`]: percentiles of sorted samples, shared by the overlay and delivery status.
#![forbid(unsafe_code)]

pub mod acquire;
pub mod acquisition;
pub mod batch;
pub mod calibrate;
pub mod camera;
pub mod cli;
pub mod config;
pub mod controller;
pub mod daemon;
pub mod delivery;
pub mod errors;
pub mod eval;
pub mod formats;
pub mod job;
pub mod logging;
pub mod overlay;
pub mod process;
pub mod qc;
pub mod record;
pub mod segment;
pub mod sequence;
pub mod simulate;
pub mod stats;
pub mod trend;
