//! Crash points, for the tests of recovery: with `LUMIQ_FAULT_ABORT_AT=<point>` in its
//! environment the daemon aborts — no cleanup, as a SIGKILL or a power cut would leave it —
//! the first time it reaches that point of an acquisition's path:
//!
//! - `staged`: the raw frames are in `archive/.staging/<id>/`, nothing processed;
//! - `committed`: the record is in the outbox, its outputs may not be written yet;
//! - `outputs_written`: the maps, overlay and `.outputs-complete` are written and the
//!   record is committed, the folder not yet finished;
//! - `record_written`: `record.json` holds the committed bytes, the folder is not yet
//!   renamed out of staging.
//!
//! Unset (always, in production) it costs one cached lookup per point.
//!
//! Owns: the knob. The points are where `super::stages` calls [`reached`].

use std::sync::OnceLock;

/// The environment variable naming the crash point.
pub const ABORT_AT_ENV: &str = "LUMIQ_FAULT_ABORT_AT";

/// Abort the process when `point` is the configured crash point.
pub(crate) fn reached(point: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    let at = AT.get_or_init(|| std::env::var(ABORT_AT_ENV).ok().filter(|v| !v.is_empty()));
    if at.as_deref() == Some(point) {
        tracing::error!("{ABORT_AT_ENV}={point}: aborting here, as a crash would");
        std::process::abort();
    }
}
