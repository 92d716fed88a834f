//! The daemon's settings: one TOML file (`/etc/lumiq/lumiq.toml` under systemd) plus
//! environment overrides `LUMIQ_<SECTION>__<KEY>` (e.g. `LUMIQ_BROKER__PORT=8883`).
//!
//! Owns: the shape of the file ([`Settings`] and one struct per section, every struct
//! `deny_unknown_fields`), loading it with the `config` crate, checking it at start
//! ([`Settings::validate`]: files exist and are readable, devices exist, the state directory
//! is writable, topic levels are valid, numbers are in range) and the errors a technician
//! reads ([`ConfigError`]: each names the file or environment variable, the key as
//! `section.key` with its environment form, the value and the fix). Also the small
//! conversions the daemon needs ([`Settings::topics`], [`Settings::broker_config`],
//! [`Settings::outbox_config`], [`Settings::outbox_path`], [`Settings::archive_dir`], ...).
//!
//! Does not own: what the daemon does with the settings, or `lumiq status`.
//!
//! Public API (stable):
//! - [`Settings::load`]`(path)`: the file plus the process environment;
//! - [`Settings::from_toml_str`]`(text, origin)`: a string, no environment (tests);
//! - [`Settings::from_toml_str_with_env`]`(text, origin, vars)`: a string plus the given
//!   variables, exactly as [`Settings::load`] treats the process environment;
//! - [`Settings::validate`]: every check that needs the machine (files, devices,
//!   directories), all problems reported at once in [`ConfigError::Invalid`].
//!
//! Environment variables: only `LUMIQ_<SECTION>__<KEY>` names (a double underscore between
//! section and key) are settings. Other `LUMIQ_*` variables used by other commands
//! (`LUMIQ_CALIBRATION_DIR`, `LUMIQ_SOCKET`, ...) are ignored here, except a name whose
//! first word is a section and that has no double underscore (`LUMIQ_BROKER_PORT`): that is
//! a mistyped setting and is refused rather than silently ignored.
//!
//! Relative paths in the file are relative to the daemon's working directory (systemd: `/`;
//! use absolute paths there).
//!
//! Files:
//! - `schema.rs`: the file's shape, its defaults and serde attributes;
//! - `load.rs`: reading the file and the environment overrides (named by [`env_var`]);
//! - `convert.rs`: undoing the `config` crate's silent conversions and rewording its errors;
//! - `error.rs`: [`ConfigError`] and [`Problem`];
//! - `validate.rs`: [`Settings::validate`], the checks that need the machine;
//! - `schedule.rs`: [`QcSchedule`], `[qc] schedule`'s forms and when it is next due;
//! - `derive.rs`: the runtime values derived from the settings (paths, durations, topics,
//!   broker and outbox configuration, the printed forms);
//! - `cli.rs`: `lumiq config check|print`.

mod convert;
mod derive;
mod error;
mod load;
mod schedule;
mod schema;
mod validate;

pub mod cli;

pub use error::{ConfigError, Problem};
pub use schedule::QcSchedule;
pub use schema::{
    AcquisitionSettings, BrokerSettings, CalibrationSettings, CameraKind, CameraSettings,
    ChannelSettings, ControllerKind, ControllerSettings, InstrumentSettings, LogFormat,
    LoggingSettings, ProcessingSettings, QcSettings, Settings, SettingsSource, SourceKind,
    StateSettings, StatusSettings,
};

/// Prefix of the environment overrides.
pub const ENV_PREFIX: &str = "LUMIQ";
/// Separator between section and key in an environment override.
pub const ENV_SEPARATOR: &str = "__";

/// The environment variable that overrides `key` (`broker.ca_file` → `LUMIQ_BROKER__CA_FILE`).
pub fn env_var(key: &str) -> String {
    format!(
        "{ENV_PREFIX}_{}",
        key.to_ascii_uppercase().replace('.', ENV_SEPARATOR)
    )
}
/// The outbox database's file name inside the state directory.
pub const OUTBOX_FILE: &str = "outbox.sqlite";
/// The archive's folder name inside the state directory.
pub const ARCHIVE_DIR: &str = "archive";
/// The sections of the file, in order.
pub const SECTIONS: &[&str] = &[
    "instrument",
    "state",
    "calibration",
    "status",
    "broker",
    "camera",
    "controller",
    "acquisition",
    "channels",
    "processing",
    "logging",
    "qc",
];
/// The QC history's path inside the state directory (one JSON object a line).
pub const QC_HISTORY_FILE: &str = "qc/history.jsonl";

/// Longest Unix socket path Linux accepts (`sun_path` is 108 bytes with the NUL).
const MAX_SOCKET_PATH_BYTES: usize = 107;
