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

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::delivery::{self, BrokerConfig, OutboxConfig, TlsFiles, Topics};
use crate::process::Detector;

/// Prefix of the environment overrides.
pub const ENV_PREFIX: &str = "LUMIQ";
/// Separator between section and key in an environment override.
pub const ENV_SEPARATOR: &str = "__";
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
];

/// Longest Unix socket path Linux accepts (`sun_path` is 108 bytes with the NUL).
const MAX_SOCKET_PATH_BYTES: usize = 107;

// ---------------------------------------------------------------------------------------
// The file's shape
// ---------------------------------------------------------------------------------------

/// Everything the daemon reads from its configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `[instrument]`, required: who this daemon speaks for.
    pub instrument: InstrumentSettings,
    #[serde(default)]
    pub state: StateSettings,
    #[serde(default)]
    pub calibration: CalibrationSettings,
    #[serde(default)]
    pub status: StatusSettings,
    /// `[broker]`: absent means no broker (only `lumiq demo` runs without one: it embeds
    /// its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<BrokerSettings>,
    #[serde(default)]
    pub camera: CameraSettings,
    #[serde(default)]
    pub controller: ControllerSettings,
    #[serde(default)]
    pub acquisition: AcquisitionSettings,
    #[serde(default)]
    pub channels: ChannelSettings,
    #[serde(default)]
    pub processing: ProcessingSettings,
    #[serde(default)]
    pub logging: LoggingSettings,
    /// Where the settings came from (not part of the file).
    #[serde(skip)]
    pub source: SettingsSource,
}

/// Where a [`Settings`] came from: the file (or a label for a string) and the keys the
/// environment overrode, so an error can point at the right one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SettingsSource {
    /// The file's path, or the label given to [`Settings::from_toml_str`].
    pub origin: String,
    /// Keys (`section.key`) set by `LUMIQ_<SECTION>__<KEY>` variables.
    pub env_keys: Vec<String>,
}

/// `[instrument]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstrumentSettings {
    /// Required. The instrument's id: an MQTT topic level, the outbox's owner, the records'
    /// `instrument_id`.
    pub id: String,
    /// Required. The site (lab, facility): an MQTT topic level.
    pub site: String,
}

/// `[state]`: where the daemon keeps what must survive a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSettings {
    /// Holds `outbox.sqlite` and `archive/` (systemd: `StateDirectory=lumiq`).
    #[serde(default = "default_state_dir")]
    pub dir: PathBuf,
    /// Acquisition folders older than this are deleted from the archive, once delivered;
    /// 0 keeps everything. An undelivered acquisition is never deleted.
    #[serde(default = "default_retention_days")]
    pub archive_retention_days: u32,
    /// Below this much free space on the state directory's disk, new acquisitions are
    /// refused and `lumiq status` asks for a person, MB.
    #[serde(default = "default_min_free_disk_mb")]
    pub min_free_disk_mb: u64,
}

/// `[calibration]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CalibrationSettings {
    /// The calibration set (a folder with `calibration.toml`); default `<state.dir>/calibration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// An older set makes `lumiq status` ask for a person, days.
    #[serde(default = "default_calibration_max_age_days")]
    pub max_age_days: u32,
}

/// `[status]`: the local socket `lumiq status` talks to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusSettings {
    /// Unix socket, mode 0660, group of the daemon (systemd: `RuntimeDirectory=lumiq`).
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
}

/// `[broker]`: the lab's MQTT broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSettings {
    /// Required in the section: host name or address.
    pub host: String,
    /// Default 8883 with TLS (`ca_file` set), else 1883.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// MQTT client id; default `lumiq-<instrument.id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// A file holding the password (first line); needs `username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// The CA certificate (PEM) that signed the broker's certificate; setting it turns TLS on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// This instrument's certificate (PEM) for mutual TLS; with `key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// The private key (PEM) of `cert_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Topic prefix; topics are `<prefix>/<site>/<instrument>/...`.
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    /// Subscribe `<prefix>/<site>/<instrument>/command` for acquisition requests from the LIMS.
    #[serde(default)]
    pub command_topic: bool,
    /// MQTT keep-alive, s (at least 5).
    #[serde(default = "default_keep_alive_s")]
    pub keep_alive_s: u64,
    /// How long to wait for TCP, TLS and CONNACK, s.
    #[serde(default = "default_connect_timeout_s")]
    pub connect_timeout_s: u64,
}

/// Which camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CameraKind {
    /// The cooled CCD over USB (rusb).
    Usb,
    /// The simulated camera, through the same USB codec.
    Simulated,
}

/// `[camera]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraSettings {
    #[serde(default = "default_camera_kind")]
    pub kind: CameraKind,
    /// USB: the camera's serial number, to pick one of several; default the first found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Sensor temperature the cooler holds, °C.
    #[serde(default = "default_cooling_setpoint_c")]
    pub cooling_setpoint_c: f64,
    /// Simulated camera: seed of its scene.
    #[serde(default = "default_seed")]
    pub seed: u64,
}

/// Which imager controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ControllerKind {
    /// The controller on a serial line.
    Serial,
    /// The simulated controller behind a pseudo-terminal.
    Simulated,
}

/// `[controller]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerSettings {
    #[serde(default = "default_controller_kind")]
    pub kind: ControllerKind,
    /// Serial: the tty (the udev rule names it `/dev/lumiq-controller`); must exist at start.
    #[serde(default = "default_controller_path")]
    pub path: PathBuf,
    /// Serial: line speed, baud.
    #[serde(default = "default_baud")]
    pub baud: u32,
}

/// `[acquisition]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcquisitionSettings {
    /// Acquire every this many seconds without a trigger (soak tests, the demo); 0 = off.
    #[serde(default)]
    pub auto_interval_s: u64,
    /// Give up an acquisition when the sensor has not reached its setpoint after this, s.
    #[serde(default = "default_cooling_timeout_s")]
    pub cooling_timeout_s: u64,
    /// Stage position (A–D), which sets the field of view.
    #[serde(default = "default_shelf")]
    pub shelf: String,
    /// The lens's f-number.
    #[serde(default = "default_f_number")]
    pub f_number: f64,
    /// Emission filter wheel position (0: open).
    #[serde(default)]
    pub filter_position: u8,
    /// Darks older than this are taken again, days.
    #[serde(default = "default_dark_max_age_days")]
    pub dark_max_age_days: f64,
    /// Binnings auto-exposure may choose, finest first (each of 1, 2, 4, 8, 16; the
    /// calibration set needs a bias at each).
    #[serde(default = "default_binnings")]
    pub binnings: Vec<u32>,
}

/// `[channels]`: capacities of the bounded queues between the daemon's stages. A full
/// queue refuses (never drops) and the refusal is counted in `lumiq status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSettings {
    /// Captures acquired and waiting for processing. Full: the next acquisition waits
    /// (a trigger meanwhile is refused and counted).
    #[serde(default = "default_captures")]
    pub captures: usize,
    /// Records processed and waiting for the outbox commit. Full: processing waits.
    #[serde(default = "default_records")]
    pub records: usize,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `journald` when the journal is the output (`JOURNAL_STREAM` set), else `text`.
    #[default]
    Auto,
    /// Human-readable lines with timestamps, colours on a terminal.
    Text,
    /// One JSON object per line.
    Json,
    /// Lines with syslog priority prefixes (`<3>` … `<7>`) that journald parses.
    Journald,
}

impl LogFormat {
    /// The word used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Auto => "auto",
            LogFormat::Text => "text",
            LogFormat::Json => "json",
            LogFormat::Journald => "journald",
        }
    }
}

/// `[processing]`: how tumours are found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessingSettings {
    /// `model`, `classical` or `combined`; default the evaluated winner
    /// (`segment::DEFAULT_DETECTOR`, see models/README.md).
    #[serde(default = "default_detector")]
    pub detector: Detector,
    /// The segmentation model file (its `manifest.toml` beside it); default `$LUMIQ_MODEL`,
    /// else `models/` in the working directory, else `/usr/share/lumiq/models`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<PathBuf>,
}

impl Default for ProcessingSettings {
    fn default() -> Self {
        ProcessingSettings {
            detector: default_detector(),
            model: None,
        }
    }
}

fn default_detector() -> Detector {
    crate::segment::DEFAULT_DETECTOR
}

/// `[logging]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingSettings {
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter (`info`, `lumiq=debug,rumqttc=warn`); `RUST_LOG` overrides it.
    #[serde(default = "default_level")]
    pub level: String,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/lumiq")
}
fn default_retention_days() -> u32 {
    90
}
fn default_min_free_disk_mb() -> u64 {
    2048
}
fn default_calibration_max_age_days() -> u32 {
    30
}
fn default_socket() -> PathBuf {
    PathBuf::from("/run/lumiq/lumiq.sock")
}
fn default_topic_prefix() -> String {
    delivery::topics::DEFAULT_PREFIX.to_string()
}
fn default_keep_alive_s() -> u64 {
    15
}
fn default_connect_timeout_s() -> u64 {
    5
}
fn default_camera_kind() -> CameraKind {
    CameraKind::Usb
}
fn default_cooling_setpoint_c() -> f64 {
    -90.0
}
fn default_seed() -> u64 {
    1
}
fn default_controller_kind() -> ControllerKind {
    ControllerKind::Serial
}
fn default_controller_path() -> PathBuf {
    PathBuf::from("/dev/lumiq-controller")
}
fn default_baud() -> u32 {
    115_200
}
fn default_cooling_timeout_s() -> u64 {
    600
}
fn default_shelf() -> String {
    "D".to_string()
}
fn default_f_number() -> f64 {
    1.0
}
fn default_binnings() -> Vec<u32> {
    crate::acquire::autoexpose::AutoExposureConfig::default().binnings
}
fn default_dark_max_age_days() -> f64 {
    90.0
}
fn default_captures() -> usize {
    2
}
fn default_records() -> usize {
    16
}
fn default_level() -> String {
    "info".to_string()
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            dir: default_state_dir(),
            archive_retention_days: default_retention_days(),
            min_free_disk_mb: default_min_free_disk_mb(),
        }
    }
}
impl Default for StatusSettings {
    fn default() -> Self {
        StatusSettings {
            socket: default_socket(),
        }
    }
}
impl Default for CameraSettings {
    fn default() -> Self {
        CameraSettings {
            kind: default_camera_kind(),
            serial: None,
            cooling_setpoint_c: default_cooling_setpoint_c(),
            seed: default_seed(),
        }
    }
}
impl Default for ControllerSettings {
    fn default() -> Self {
        ControllerSettings {
            kind: default_controller_kind(),
            path: default_controller_path(),
            baud: default_baud(),
        }
    }
}
impl Default for AcquisitionSettings {
    fn default() -> Self {
        AcquisitionSettings {
            auto_interval_s: 0,
            cooling_timeout_s: default_cooling_timeout_s(),
            shelf: default_shelf(),
            f_number: default_f_number(),
            filter_position: 0,
            dark_max_age_days: default_dark_max_age_days(),
            binnings: default_binnings(),
        }
    }
}
impl Default for ChannelSettings {
    fn default() -> Self {
        ChannelSettings {
            captures: default_captures(),
            records: default_records(),
        }
    }
}
impl Default for LoggingSettings {
    fn default() -> Self {
        LoggingSettings {
            format: LogFormat::Auto,
            level: default_level(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// The environment variable that overrides `key` (`broker.ca_file` → `LUMIQ_BROKER__CA_FILE`).
pub fn env_var(key: &str) -> String {
    format!(
        "{ENV_PREFIX}_{}",
        key.to_ascii_uppercase().replace('.', ENV_SEPARATOR)
    )
}

/// One problem with one setting, found by [`Settings::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, or `environment LUMIQ_X__Y` when the environment set the value.
    pub origin: String,
    /// `section.key`.
    pub key: String,
    /// The value as written (TOML syntax), if there is one.
    pub value: Option<String>,
    /// What is wrong.
    pub problem: String,
    /// What to do.
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.key)?;
        if let Some(v) = &self.value {
            write!(f, " = {v}")?;
        }
        write!(
            f,
            ": {}; {} (env {})",
            self.problem,
            self.fix,
            env_var(&self.key)
        )
    }
}

/// Why the settings cannot be used. Every message names the file (or variable), the key and
/// the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the configuration file: {source}; check the path (default /etc/lumiq/lumiq.toml) and that the daemon's user may read it")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{origin}: not valid TOML: {detail}")]
    Syntax { origin: String, detail: String },
    #[error("{origin}: unknown key {key}; {}", valid_keys_hint(.section.as_deref(), .valid))]
    UnknownKey {
        origin: String,
        /// `section.key`, or the section's name for an unknown section.
        key: String,
        /// The section it is in (`None` at the top level).
        section: Option<String>,
        valid: Vec<String>,
    },
    #[error("{origin}: {key} = {found}: wrong type, expected {expected} (env {env})", env = env_var(.key))]
    WrongType {
        origin: String,
        key: String,
        found: String,
        expected: String,
    },
    #[error("{origin}: {key} is required: {fix} (env {env})", env = env_var(.key))]
    Missing {
        origin: String,
        key: String,
        fix: String,
    },
    #[error("{origin}: {key}: {detail} (env {env})", env = env_var(.key))]
    BadValue {
        origin: String,
        key: String,
        detail: String,
    },
    #[error("environment variable {name}: {problem}")]
    Env { name: String, problem: String },
    #[error("{}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
    #[error("{origin}: {detail}")]
    Other { origin: String, detail: String },
}

fn valid_keys_hint(section: Option<&str>, valid: &[String]) -> String {
    let list = valid.join(", ");
    match section {
        Some(s) => format!("valid keys of [{s}]: {list}"),
        None => format!("valid sections: {list}"),
    }
}

impl ConfigError {
    /// The problems of an [`ConfigError::Invalid`], else empty.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid(p) => p,
            _ => &[],
        }
    }
}

// ---------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------

/// The `LUMIQ_<SECTION>__<KEY>` variables among `vars`, or the error of a mistyped one.
fn setting_vars(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let prefix = format!("{ENV_PREFIX}_");
    let mut out = BTreeMap::new();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        if rest.contains(ENV_SEPARATOR) {
            out.insert(name, value);
            continue;
        }
        // Design: LUMIQ_CALIBRATION_DIR (read by `lumiq process`) starts with a section's
        // name; it is the one other variable known to share a section's first word.
        if name == crate::job::CALIBRATION_ENV {
            continue;
        }
        let lower = rest.to_ascii_lowercase();
        if let Some(section) = SECTIONS
            .iter()
            .find(|s| lower.starts_with(&format!("{s}_")))
        {
            let key = &lower[section.len() + 1..];
            return Err(ConfigError::Env {
                name: name.clone(),
                problem: format!(
                    "looks like a setting of [{section}] but has a single '_' after the section; \
                     write {} (two underscores between section and key) or unset it",
                    env_var(&format!("{section}.{key}"))
                ),
            });
        }
    }
    Ok(out)
}

impl Settings {
    /// Read `path` (TOML) and apply the process environment's `LUMIQ_<SECTION>__<KEY>`
    /// overrides. Does not touch the machine beyond reading the file: call
    /// [`Settings::validate`] before using the settings.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut vars = Vec::new();
        for (name, value) in std::env::vars_os() {
            // Names that are not UTF-8 are not ours; a value that is not, of one of ours, is
            // refused rather than skipped.
            let Ok(name) = name.into_string() else {
                continue;
            };
            match value.into_string() {
                Ok(v) => vars.push((name, v)),
                Err(_)
                    if name.starts_with(&format!("{ENV_PREFIX}_"))
                        && name.contains(ENV_SEPARATOR) =>
                {
                    return Err(ConfigError::Env {
                        name,
                        problem: "its value is not valid UTF-8 text".into(),
                    })
                }
                Err(_) => {}
            }
        }
        Settings::from_toml_str_with_env(&text, &path.display().to_string(), vars)
    }

    /// Parse settings from TOML text alone (no environment); `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Settings, ConfigError> {
        Settings::from_toml_str_with_env(text, origin, std::iter::empty())
    }

    /// Parse settings from TOML text plus the `LUMIQ_<SECTION>__<KEY>` variables among
    /// `vars` (others are ignored), as [`Settings::load`] does with the process environment.
    pub fn from_toml_str_with_env(
        text: &str,
        origin: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let env = setting_vars(vars)?;
        // Keys the environment sets, as `section.key`.
        let env_keys: Vec<String> = env
            .keys()
            .map(|name| {
                name[ENV_PREFIX.len() + 1..]
                    .to_ascii_lowercase()
                    .replace(ENV_SEPARATOR, ".")
            })
            .collect();
        // Design: the text is parsed with `toml` first so a syntax error keeps its line
        // and column and names the file; the `config` crate then merges the environment.
        let file_table = text
            .parse::<toml::Table>()
            .map_err(|e| ConfigError::Syntax {
                origin: origin.to_string(),
                detail: e.to_string().trim_end().replace('\n', "\n  "),
            })?;
        let env_values: Vec<(String, String)> = env_keys
            .iter()
            .cloned()
            .zip(env.values().cloned())
            .collect();
        let built = ::config::Config::builder()
            .add_source(::config::File::from_str(text, ::config::FileFormat::Toml))
            .add_source(
                ::config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("_")
                    .separator(ENV_SEPARATOR)
                    .source(Some(env.into_iter().collect())),
            )
            .build()
            .map_err(|e| translate(e, origin, &env_keys))?;
        let mut settings: Settings = built
            .try_deserialize()
            .map_err(|e| translate(e, origin, &env_keys))?;
        exactly_as_written(&settings, &file_table, &env_values, origin)?;
        settings.source = SettingsSource {
            origin: origin.to_string(),
            env_keys,
        };
        Ok(settings)
    }
}

/// The TOML type of a value, as a message says it.
fn toml_type(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a number",
        toml::Value::Boolean(_) => "a boolean (true or false)",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "a list",
        toml::Value::Table(_) => "a table",
    }
}

/// Refuse what the `config` crate converts silently: every value the settings hold must be
/// exactly the one written. In the file, the TOML type must match (a float is not rounded
/// into a port, a string is not read as a boolean); in the environment, the text must
/// read back as the value (`LUMIQ_BROKER__PORT=yes` is not port 1).
fn exactly_as_written(
    settings: &Settings,
    file: &toml::Table,
    env: &[(String, String)],
    origin: &str,
) -> Result<(), ConfigError> {
    let Ok(toml::Value::Table(effective)) = toml::Value::try_from(settings) else {
        return Ok(());
    };
    let lookup = |key: &str| -> Option<&toml::Value> {
        let (section, name) = key.split_once('.')?;
        effective.get(section)?.as_table()?.get(name)
    };
    for (key, text) in env {
        let Some(value) = lookup(key) else { continue };
        let same = match value {
            toml::Value::String(s) => s == text,
            toml::Value::Integer(i) => text.trim().parse::<i64>().ok() == Some(*i),
            toml::Value::Float(f) => text.trim().parse::<f64>().ok() == Some(*f),
            toml::Value::Boolean(b) => text.trim().eq_ignore_ascii_case(&b.to_string()),
            _ => true,
        };
        if !same {
            return Err(ConfigError::WrongType {
                origin: format!("environment {}", env_var(key)),
                key: key.clone(),
                found: format!("string {text:?}"),
                expected: toml_type(value).to_string(),
            });
        }
    }
    for (section, table) in file {
        let Some(table) = table.as_table() else {
            continue;
        };
        for (name, written) in table {
            let key = format!("{section}.{name}");
            if env.iter().any(|(k, _)| *k == key) {
                continue;
            }
            let Some(value) = lookup(&key) else { continue };
            let same = match (written, value) {
                (toml::Value::Integer(i), toml::Value::Float(f)) => *i as f64 == *f,
                (w, v) => std::mem::discriminant(w) == std::mem::discriminant(v),
            };
            if !same {
                return Err(ConfigError::WrongType {
                    origin: origin.to_string(),
                    found: match written {
                        toml::Value::String(s) => format!("string {s:?}"),
                        toml::Value::Integer(i) => format!("integer `{i}`"),
                        toml::Value::Float(f) => format!("floating point `{f}`"),
                        toml::Value::Boolean(b) => format!("boolean `{b}`"),
                        other => toml_type(other).to_string(),
                    },
                    expected: toml_type(value).to_string(),
                    key,
                });
            }
        }
    }
    Ok(())
}

/// Where the value of `key` came from, for an error message.
fn origin_of(key: &str, origin: &str, env_keys: &[String]) -> String {
    if env_keys.iter().any(|k| k == key) {
        format!("environment {}", env_var(key))
    } else {
        origin.to_string()
    }
}

/// Turn the `config` crate's error into one that names the key, its env form and the fix.
fn translate(e: ::config::ConfigError, origin: &str, env_keys: &[String]) -> ConfigError {
    use ::config::ConfigError as C;
    match e {
        C::Type {
            unexpected,
            expected,
            key: Some(key),
            ..
        } => ConfigError::WrongType {
            origin: origin_of(&key, origin, env_keys),
            found: unexpected.to_string(),
            expected: expected.to_string(),
            key,
        },
        C::NotFound(key) => ConfigError::Missing {
            origin: origin.to_string(),
            fix: required_fix(&key),
            key,
        },
        C::At {
            error,
            key: Some(key),
            ..
        } => at_key(*error, key, origin, env_keys),
        C::Message(m) => message_at(&m, None, origin, env_keys),
        C::FileParse { cause, .. } => ConfigError::Syntax {
            origin: origin.to_string(),
            detail: cause.to_string(),
        },
        other => ConfigError::Other {
            origin: origin.to_string(),
            detail: other.to_string(),
        },
    }
}

/// An error the `config` crate located at `key` (a section, or `section.key`).
fn at_key(
    inner: ::config::ConfigError,
    key: String,
    origin: &str,
    env_keys: &[String],
) -> ConfigError {
    use ::config::ConfigError as C;
    match inner {
        C::Message(m) => message_at(&m, Some(&key), origin, env_keys),
        C::NotFound(k) => {
            let full = format!("{key}.{k}");
            ConfigError::Missing {
                origin: origin.to_string(),
                fix: required_fix(&full),
                key: full,
            }
        }
        other => ConfigError::BadValue {
            origin: origin_of(&key, origin, env_keys),
            detail: other.to_string(),
            key,
        },
    }
}

/// serde's messages: "unknown field `x`, expected one of `a`, `b`", "unknown variant ...",
/// "invalid value: ...".
fn message_at(msg: &str, at: Option<&str>, origin: &str, env_keys: &[String]) -> ConfigError {
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let (name, tail) = rest.split_once('`').unwrap_or((rest, ""));
        let valid: Vec<String> = tail
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        let key = match at {
            Some(section) => format!("{section}.{name}"),
            None => name.to_string(),
        };
        return ConfigError::UnknownKey {
            origin: origin_of(&key, origin, env_keys),
            key,
            section: at.map(str::to_string),
            valid,
        };
    }
    if msg.contains("does not have variant constructor") {
        if let Some((key, choices)) = at.and_then(|k| CHOICES.iter().find(|c| c.0 == k)) {
            let value = msg.rsplit(' ').next().unwrap_or("");
            return ConfigError::BadValue {
                origin: origin_of(key, origin, env_keys),
                key: key.to_string(),
                detail: format!("{value:?} is not one of {}", choices.join(", ")),
            };
        }
    }
    match at {
        Some(key) => ConfigError::BadValue {
            origin: origin_of(key, origin, env_keys),
            key: key.to_string(),
            detail: msg.to_string(),
        },
        None => ConfigError::Other {
            origin: origin.to_string(),
            detail: msg.to_string(),
        },
    }
}

/// The keys whose value is one of a few words, and the words.
const CHOICES: &[(&str, &[&str])] = &[
    ("camera.kind", &["usb", "simulated"]),
    ("controller.kind", &["serial", "simulated"]),
    ("processing.detector", &["classical", "model", "combined"]),
    ("logging.format", &["auto", "text", "json", "journald"]),
];

fn required_fix(key: &str) -> String {
    match key {
        "instrument" => "add an [instrument] section with id and site".into(),
        "instrument.id" => "set the instrument's id, e.g. id = \"ivis-lab3-01\"".into(),
        "instrument.site" => "set the site (lab or facility), e.g. site = \"lab3\"".into(),
        "broker.host" => {
            "set the broker's host name, or remove the [broker] section (demo only)".into()
        }
        _ => "set it".into(),
    }
}

// ---------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------

struct Checker<'a> {
    settings: &'a Settings,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn origin(&self, key: &str) -> String {
        origin_of(
            key,
            &self.settings.source.origin,
            &self.settings.source.env_keys,
        )
    }

    fn push(
        &mut self,
        key: &str,
        value: Option<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.problems.push(Problem {
            origin: self.origin(key),
            key: key.to_string(),
            value,
            problem: problem.into(),
            fix: fix.into(),
        });
    }

    /// A file that must exist and be readable.
    fn readable_file(&mut self, key: &str, path: &Path, fix_missing: &str) -> bool {
        let value = Some(quote_path(path));
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.push(key, value, "no such file", fix_missing);
                false
            }
            Err(e) => {
                self.push(
                    key,
                    value,
                    format!("cannot inspect it: {e}"),
                    "check the path and its folders' permissions",
                );
                false
            }
            Ok(m) if !m.is_file() => {
                self.push(
                    key,
                    value,
                    "is not a regular file",
                    "point it at the file itself",
                );
                false
            }
            Ok(_) => match std::fs::File::open(path) {
                Ok(_) => true,
                Err(e) => {
                    self.push(
                        key,
                        value,
                        format!("cannot be read: {e}"),
                        "let the daemon's user (lumiq) read it, e.g. chgrp lumiq FILE && chmod 0640 FILE",
                    );
                    false
                }
            },
        }
    }

    /// A directory that exists and is writable, or can be created.
    fn writable_dir(&mut self, key: &str, dir: &Path, shown: &Path) {
        let value = Some(quote_path(shown));
        if dir.as_os_str().is_empty() {
            self.push(key, value, "is empty", "give a folder, e.g. /var/lib/lumiq");
            return;
        }
        // The folder itself, or the nearest existing ancestor it would be created in.
        let mut probe_in = dir.to_path_buf();
        loop {
            match std::fs::metadata(&probe_in) {
                Ok(m) if m.is_dir() => break,
                Ok(_) => {
                    self.push(
                        key,
                        value,
                        format!("{} is not a folder", probe_in.display()),
                        "point it at a folder",
                    );
                    return;
                }
                Err(_) => match probe_in.parent() {
                    Some(p) if !p.as_os_str().is_empty() => probe_in = p.to_path_buf(),
                    _ => {
                        probe_in = PathBuf::from(".");
                        break;
                    }
                },
            }
        }
        // Design: a probe file is the only honest test of writability (permissions, ACLs,
        // read-only mounts such as ProtectSystem=strict all count); it is removed at once.
        let probe = probe_in.join(format!(".lumiq-write-probe-{}", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
        {
            Ok(_) => {
                let _ = std::fs::remove_file(&probe);
            }
            Err(e) => {
                let what = if probe_in == dir {
                    "is not writable".to_string()
                } else {
                    format!(
                        "does not exist and cannot be created in {}",
                        probe_in.display()
                    )
                };
                self.push(
                    key,
                    value,
                    format!("{what}: {e}"),
                    "let the daemon's user (lumiq) write there (systemd: StateDirectory=/RuntimeDirectory= create it), or choose another folder",
                );
            }
        }
    }
}

fn quote_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

impl Settings {
    /// Check everything that needs the machine: files exist and are readable, devices
    /// exist, the state directory is writable (or creatable), topic levels, ranges. Returns
    /// every problem found at once in [`ConfigError::Invalid`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut c = Checker {
            settings: self,
            problems: Vec::new(),
        };

        // [instrument] and the topic prefix: MQTT topic levels.
        let prefix = self
            .broker
            .as_ref()
            .map(|b| b.topic_prefix.as_str())
            .unwrap_or(delivery::topics::DEFAULT_PREFIX);
        let (id, site) = (&self.instrument.id, &self.instrument.site);
        for (key, value, check) in [
            (
                "instrument.id",
                id,
                Topics::new(delivery::topics::DEFAULT_PREFIX, "site", id),
            ),
            (
                "instrument.site",
                site,
                Topics::new(delivery::topics::DEFAULT_PREFIX, site, "id"),
            ),
        ] {
            if let Err(e) = check {
                c.push(
                    key,
                    Some(format!("{value:?}")),
                    strip_delivery(e),
                    "use letters, digits, '-', '_' or '.'",
                );
            }
        }
        if let Err(e) = Topics::new(prefix, "site", "instrument") {
            c.push(
                "broker.topic_prefix",
                Some(format!("{prefix:?}")),
                strip_delivery(e),
                "e.g. topic_prefix = \"lumiq/v1\"",
            );
        }

        // [state]
        c.writable_dir("state.dir", &self.state.dir, &self.state.dir);

        // [calibration]
        let cal = self.calibration_dir();
        match crate::formats::calibration_set::CalibrationSet::load(&cal) {
            Ok(set) => {
                if set.index.instrument_id != self.instrument.id {
                    c.push(
                        "calibration.dir",
                        Some(quote_path(&cal)),
                        format!(
                            "the set calibrates instrument {:?}, not {:?}",
                            set.index.instrument_id, self.instrument.id
                        ),
                        "point it at this instrument's calibration set",
                    );
                }
            }
            Err(e) => {
                let missing = !cal.join("calibration.toml").exists();
                let (problem, fix) = if missing {
                    (
                        "no calibration.toml in this folder".to_string(),
                        format!(
                            "build the set with `lumiq calibrate --out {}` or copy the instrument's set there",
                            cal.display()
                        ),
                    )
                } else {
                    (
                        format!("the calibration set cannot be used: {e}"),
                        "fix or rebuild the set with `lumiq calibrate`".to_string(),
                    )
                };
                c.push("calibration.dir", Some(quote_path(&cal)), problem, fix);
            }
        }

        // [status]
        let socket = &self.status.socket;
        let bytes = socket.as_os_str().len();
        if socket.file_name().is_none() {
            c.push(
                "status.socket",
                Some(quote_path(socket)),
                "is not a socket file path",
                "e.g. /run/lumiq/lumiq.sock",
            );
        } else if bytes > MAX_SOCKET_PATH_BYTES {
            c.push(
                "status.socket",
                Some(quote_path(socket)),
                format!("is {bytes} bytes long; Unix socket paths are limited to {MAX_SOCKET_PATH_BYTES}"),
                "choose a shorter path",
            );
        } else {
            let parent = match socket.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            c.writable_dir("status.socket", &parent, socket);
        }

        // [broker]
        if let Some(b) = &self.broker {
            if b.host.trim().is_empty() {
                c.push(
                    "broker.host",
                    Some("\"\"".into()),
                    "is empty",
                    "give the broker's host name or address",
                );
            }
            if b.port == Some(0) {
                c.push(
                    "broker.port",
                    Some("0".into()),
                    "is not a TCP port",
                    "give a port in 1..=65535 (MQTT over TLS: 8883, plain: 1883)",
                );
            }
            if let Some(id) = &b.client_id {
                if id.is_empty() || id.len() > 65535 {
                    c.push(
                        "broker.client_id",
                        Some(format!("{id:?}")),
                        "is empty or too long",
                        "leave it unset for lumiq-<instrument.id>",
                    );
                }
            }
            if b.keep_alive_s < 5 {
                c.push(
                    "broker.keep_alive_s",
                    Some(b.keep_alive_s.to_string()),
                    "is below 5 s",
                    "use 5 or more (default 15)",
                );
            }
            if b.connect_timeout_s == 0 {
                c.push(
                    "broker.connect_timeout_s",
                    Some("0".into()),
                    "must be at least 1 s",
                    "use e.g. 5",
                );
            }
            if let Some(pw) = &b.password_file {
                if b.username.is_none() {
                    c.push(
                        "broker.password_file",
                        Some(quote_path(pw)),
                        "a password needs a user name",
                        "set broker.username too",
                    );
                }
                if c.readable_file("broker.password_file", pw, "put the broker password there (one line, mode 0640, group lumiq) or correct the path") {
                    match std::fs::read_to_string(pw) {
                        Ok(t) if t.lines().next().unwrap_or("").is_empty() => {
                            c.push("broker.password_file", Some(quote_path(pw)), "is empty", "write the password on its first line");
                        }
                        Ok(_) => {}
                        Err(e) => c.push("broker.password_file", Some(quote_path(pw)), format!("cannot be read as text: {e}"), "write the password as UTF-8 text"),
                    }
                }
            }
            let mut tls_files_ok = true;
            if let Some(ca) = &b.ca_file {
                tls_files_ok &= c.readable_file(
                    "broker.ca_file",
                    ca,
                    "install the lab's CA certificate there or correct the path",
                );
            }
            match (&b.cert_file, &b.key_file) {
                (Some(_), None) => {
                    tls_files_ok = false;
                    c.push(
                        "broker.key_file",
                        None,
                        "cert_file is set but key_file is not",
                        "give both the client certificate and its private key, or neither",
                    );
                }
                (None, Some(_)) => {
                    tls_files_ok = false;
                    c.push(
                        "broker.cert_file",
                        None,
                        "key_file is set but cert_file is not",
                        "give both the client certificate and its private key, or neither",
                    );
                }
                _ => {}
            }
            if let Some(cert) = &b.cert_file {
                if b.ca_file.is_none() {
                    tls_files_ok = false;
                    c.push("broker.ca_file", None, "a client certificate is set but no CA certificate (TLS is off without ca_file)", "set ca_file to the CA that signed the broker's certificate");
                }
                tls_files_ok &= c.readable_file(
                    "broker.cert_file",
                    cert,
                    "install this instrument's client certificate there or correct the path",
                );
            }
            if let Some(key) = &b.key_file {
                tls_files_ok &= c.readable_file("broker.key_file", key, "install this instrument's private key there (mode 0640, group lumiq) or correct the path");
            }
            // With every file present, build the TLS configuration: bad PEM or a key that
            // does not go with the certificate is found now, not at the first connection.
            if tls_files_ok {
                if let Some(files) = self.tls_files() {
                    if let Err(e) = delivery::tls::client_config(&files) {
                        // Which file: the wording of `delivery::tls`'s messages says.
                        let key = match &e {
                            delivery::DeliveryError::TlsFile { detail, .. }
                                if detail.contains("CA certificate") =>
                            {
                                "broker.ca_file"
                            }
                            delivery::DeliveryError::TlsFile { detail, .. }
                                if detail.contains("client certificate") =>
                            {
                                "broker.cert_file"
                            }
                            delivery::DeliveryError::TlsFile { .. } => "broker.key_file",
                            _ => "broker.ca_file",
                        };
                        c.push(
                            key,
                            None,
                            e.to_string(),
                            "install valid PEM files (see docs/delivery.md, TLS)",
                        );
                    }
                }
            }
        }

        // [camera]
        if !self.camera.cooling_setpoint_c.is_finite()
            || !(-120.0..=30.0).contains(&self.camera.cooling_setpoint_c)
        {
            c.push(
                "camera.cooling_setpoint_c",
                Some(self.camera.cooling_setpoint_c.to_string()),
                "is outside -120..=30 °C",
                "use the sensor's rated setpoint, e.g. -90",
            );
        }

        // [controller]
        if self.controller.kind == ControllerKind::Serial {
            let path = &self.controller.path;
            let value = Some(quote_path(path));
            match std::fs::metadata(path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => c.push(
                    "controller.path",
                    value,
                    "no such device",
                    "plug in the imager's controller and check that the udev rule (systemd/99-lumiq.rules) names it, or correct the path",
                ),
                Err(e) => c.push("controller.path", value, format!("cannot inspect it: {e}"), "check the path"),
                Ok(m) => {
                    use std::os::unix::fs::FileTypeExt;
                    if !m.file_type().is_char_device() {
                        c.push(
                            "controller.path",
                            value,
                            "is not a character device (a serial line or pseudo-terminal)",
                            "point it at the controller's tty, e.g. /dev/lumiq-controller or /dev/ttyUSB0",
                        );
                    }
                }
            }
            if self.controller.baud == 0 {
                c.push(
                    "controller.baud",
                    Some("0".into()),
                    "is not a line speed",
                    "use the controller's speed, 115200",
                );
            }
        }

        // [acquisition]
        if self.acquisition.cooling_timeout_s == 0 {
            c.push(
                "acquisition.cooling_timeout_s",
                Some("0".into()),
                "must be at least 1 s",
                "use e.g. 600",
            );
        }
        if crate::controller::Shelf::from_letter(&self.acquisition.shelf).is_none() {
            c.push(
                "acquisition.shelf",
                Some(format!("{:?}", self.acquisition.shelf)),
                "is not a stage position",
                "use one of \"A\", \"B\", \"C\", \"D\"",
            );
        }
        if !(self.acquisition.f_number.is_finite() && self.acquisition.f_number > 0.0) {
            c.push(
                "acquisition.f_number",
                Some(self.acquisition.f_number.to_string()),
                "must be a positive number",
                "use the lens's f-number, e.g. 1",
            );
        }
        if !(self.acquisition.dark_max_age_days.is_finite()
            && self.acquisition.dark_max_age_days > 0.0)
        {
            c.push(
                "acquisition.dark_max_age_days",
                Some(self.acquisition.dark_max_age_days.to_string()),
                "must be a positive number of days",
                "use e.g. 90",
            );
        }

        // [channels]
        for (key, n) in [
            ("channels.captures", self.channels.captures),
            ("channels.records", self.channels.records),
        ] {
            if n == 0 {
                c.push(
                    key,
                    Some("0".into()),
                    "a queue needs room for at least one item",
                    "use 1 or more",
                );
            }
        }

        // [processing]: the model file is found and matches its manifest.
        if self.processing.detector != Detector::Classical {
            let checked = crate::segment::resolve_model_path(self.processing.model.as_deref())
                .and_then(|p| crate::segment::TractSegmenter::load(&p).map(|_| ()));
            if let Err(e) = checked {
                c.push(
                    "processing.model",
                    self.processing.model.as_deref().map(quote_path),
                    e.to_string(),
                    "install models/ (model and manifest.toml) and point processing.model at the .onnx file, or set processing.detector = \"classical\"",
                );
            }
        }

        // [logging]
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.logging.level) {
            c.push("logging.level", Some(format!("{:?}", self.logging.level)), format!("is not a log filter: {e}"), "use error, warn, info, debug or trace, optionally per module (lumiq=debug,rumqttc=warn)");
        }

        if c.problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(c.problems))
        }
    }
}

fn strip_delivery(e: delivery::DeliveryError) -> String {
    match e {
        delivery::DeliveryError::Config(m) => m,
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// What the daemon needs
// ---------------------------------------------------------------------------------------

impl Settings {
    /// The outbox database: `<state.dir>/outbox.sqlite`.
    pub fn outbox_path(&self) -> PathBuf {
        self.state.dir.join(OUTBOX_FILE)
    }

    /// The archive of acquisition folders: `<state.dir>/archive`.
    pub fn archive_dir(&self) -> PathBuf {
        self.state.dir.join(ARCHIVE_DIR)
    }

    /// The calibration set: `calibration.dir`, default `<state.dir>/calibration`.
    pub fn calibration_dir(&self) -> PathBuf {
        self.calibration
            .dir
            .clone()
            .unwrap_or_else(|| self.state.dir.join("calibration"))
    }

    /// The archive retention, `None` for "keep forever".
    pub fn archive_retention(&self) -> Option<Duration> {
        match self.state.archive_retention_days {
            0 => None,
            d => Some(Duration::from_secs(u64::from(d) * 86_400)),
        }
    }

    /// The auto-acquire period, `None` when off.
    pub fn auto_interval(&self) -> Option<Duration> {
        match self.acquisition.auto_interval_s {
            0 => None,
            s => Some(Duration::from_secs(s)),
        }
    }

    /// This instrument's MQTT topics (prefix from `broker.topic_prefix`, default `lumiq/v1`).
    pub fn topics(&self) -> Result<Topics, ConfigError> {
        let prefix = self
            .broker
            .as_ref()
            .map(|b| b.topic_prefix.as_str())
            .unwrap_or(delivery::topics::DEFAULT_PREFIX);
        Topics::new(prefix, &self.instrument.site, &self.instrument.id).map_err(|e| {
            ConfigError::BadValue {
                origin: self.source.origin.clone(),
                key: "instrument.id".into(),
                detail: strip_delivery(e),
            }
        })
    }

    /// The outbox's configuration (this instrument, default caps).
    pub fn outbox_config(&self) -> OutboxConfig {
        OutboxConfig::new(self.instrument.id.clone())
    }

    /// The TLS files, when `broker.ca_file` is set.
    pub fn tls_files(&self) -> Option<TlsFiles> {
        let b = self.broker.as_ref()?;
        Some(TlsFiles {
            ca: b.ca_file.clone()?,
            client_cert: b.cert_file.clone(),
            client_key: b.key_file.clone(),
        })
    }

    /// The broker connection, `None` without a `[broker]` section. Reads the password file.
    pub fn broker_config(&self) -> Result<Option<BrokerConfig>, ConfigError> {
        let Some(b) = &self.broker else {
            return Ok(None);
        };
        let tls = self.tls_files();
        let port = b.port.unwrap_or(if tls.is_some() { 8883 } else { 1883 });
        let mut cfg = BrokerConfig::new(b.host.clone(), port);
        cfg.client_id = Some(
            b.client_id
                .clone()
                .unwrap_or_else(|| format!("lumiq-{}", self.instrument.id)),
        );
        cfg.tls = tls;
        cfg.username = b.username.clone();
        if let Some(pw) = &b.password_file {
            let text = std::fs::read_to_string(pw).map_err(|e| ConfigError::BadValue {
                origin: origin_of(
                    "broker.password_file",
                    &self.source.origin,
                    &self.source.env_keys,
                ),
                key: "broker.password_file".into(),
                detail: format!("{}: cannot read the password: {e}", pw.display()),
            })?;
            cfg.password = Some(text.lines().next().unwrap_or("").to_string());
        }
        cfg.keep_alive = Duration::from_secs(b.keep_alive_s);
        cfg.connect_timeout = Duration::from_secs(b.connect_timeout_s);
        Ok(Some(cfg))
    }

    /// The effective settings as TOML (what `lumiq config print` shows).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print the settings: {e}\n"))
    }
}

// ---------------------------------------------------------------------------------------
// `lumiq config`
// ---------------------------------------------------------------------------------------

/// `lumiq config check|print FILE`: flag parsing and what the user sees.
pub mod cli {
    use std::path::PathBuf;

    use clap::{Args, Subcommand};

    use super::{ConfigError, Settings};

    #[derive(Debug, Args)]
    pub struct ConfigArgs {
        #[command(subcommand)]
        pub command: ConfigCommand,
    }

    #[derive(Debug, Subcommand)]
    pub enum ConfigCommand {
        /// Load FILE plus the LUMIQ_<SECTION>__<KEY> environment overrides and check it as
        /// `lumiq run` does at start (files, devices, folders); print a summary of the
        /// effective settings, or every problem found (exit code 1).
        Check {
            /// The configuration file (TOML), e.g. /etc/lumiq/lumiq.toml.
            file: PathBuf,
        },
        /// Print the effective settings (file, environment overrides and defaults) as TOML.
        Print {
            file: PathBuf,
            /// Also check them as `check` does.
            #[arg(long)]
            check: bool,
        },
    }

    /// Run `lumiq config ...`.
    pub fn run(a: ConfigArgs) -> anyhow::Result<()> {
        match a.command {
            ConfigCommand::Check { file } => {
                let settings = load_checked(&file, true)?;
                println!("{}: ok", file.display());
                print!("{}", settings.summary());
                Ok(())
            }
            ConfigCommand::Print { file, check } => {
                let settings = load_checked(&file, check)?;
                print!("{}", settings.to_toml());
                Ok(())
            }
        }
    }

    fn load_checked(file: &std::path::Path, check: bool) -> anyhow::Result<Settings> {
        let settings = Settings::load(file)?;
        if check {
            if let Err(e) = settings.validate() {
                if let ConfigError::Invalid(problems) = &e {
                    for p in problems {
                        eprintln!("{p}");
                    }
                    anyhow::bail!(
                        "{}: {} problem{} above; fix {} and run `lumiq config check {}` again",
                        file.display(),
                        problems.len(),
                        if problems.len() == 1 { "" } else { "s" },
                        if problems.len() == 1 { "it" } else { "them" },
                        file.display()
                    );
                }
                return Err(e.into());
            }
        }
        Ok(settings)
    }
}

impl Settings {
    /// A few lines a technician reads: who, where, which devices, which broker.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let env = if self.source.env_keys.is_empty() {
            String::new()
        } else {
            format!(
                " (from the environment: {})",
                self.source.env_keys.join(", ")
            )
        };
        let _ = writeln!(
            s,
            "  instrument   {} at site {}{env}",
            self.instrument.id, self.instrument.site
        );
        let _ = writeln!(
            s,
            "  state        {} (outbox {}, archive {}, retention {})",
            self.state.dir.display(),
            self.outbox_path().display(),
            self.archive_dir().display(),
            match self.state.archive_retention_days {
                0 => "forever".to_string(),
                d => format!("{d} days"),
            }
        );
        let _ = writeln!(s, "  calibration  {}", self.calibration_dir().display());
        let _ = writeln!(s, "  status       {}", self.status.socket.display());
        let _ = writeln!(
            s,
            "  detector     {}{}",
            self.processing.detector.as_str(),
            match (&self.processing.model, self.processing.detector) {
                (_, Detector::Classical) => String::new(),
                (Some(m), _) => format!(" (model {})", m.display()),
                (None, _) =>
                    " (model from $LUMIQ_MODEL, models/ or /usr/share/lumiq/models)".into(),
            }
        );
        match &self.broker {
            None => {
                let _ = writeln!(
                    s,
                    "  broker       none (only `lumiq demo` runs without one)"
                );
            }
            Some(b) => {
                let tls = match (&b.ca_file, &b.cert_file) {
                    (Some(_), Some(_)) => "mutual TLS",
                    (Some(_), None) => "TLS",
                    _ => "plain TCP",
                };
                let port = b
                    .port
                    .unwrap_or(if b.ca_file.is_some() { 8883 } else { 1883 });
                let topics = self
                    .topics()
                    .map(|t| format!("{}/...", t.base()))
                    .unwrap_or_default();
                let _ = writeln!(
                    s,
                    "  broker       {}:{port} ({tls}), topics {topics}{}",
                    b.host,
                    if b.command_topic {
                        ", LIMS commands on"
                    } else {
                        ""
                    }
                );
            }
        }
        let _ = writeln!(
            s,
            "  camera       {}",
            match self.camera.kind {
                CameraKind::Usb => format!(
                    "usb{}, setpoint {} °C",
                    self.camera
                        .serial
                        .as_ref()
                        .map(|x| format!(" serial {x}"))
                        .unwrap_or_default(),
                    self.camera.cooling_setpoint_c
                ),
                CameraKind::Simulated => format!("simulated (seed {})", self.camera.seed),
            }
        );
        let _ = writeln!(
            s,
            "  controller   {}",
            match self.controller.kind {
                ControllerKind::Serial => format!(
                    "serial {} at {} baud",
                    self.controller.path.display(),
                    self.controller.baud
                ),
                ControllerKind::Simulated => "simulated".to_string(),
            }
        );
        let _ = writeln!(
            s,
            "  acquisition  auto {}, shelf {}, f/{}",
            match self.acquisition.auto_interval_s {
                0 => "off".to_string(),
                n => format!("every {n} s"),
            },
            self.acquisition.shelf,
            self.acquisition.f_number
        );
        let _ = writeln!(
            s,
            "  channels     captures {}, records {}",
            self.channels.captures, self.channels.records
        );
        let _ = writeln!(
            s,
            "  logging      {}, level {}",
            self.logging.format.as_str(),
            self.logging.level
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_follow_section_and_key() {
        assert_eq!(env_var("broker.ca_file"), "LUMIQ_BROKER__CA_FILE");
        assert_eq!(
            env_var("acquisition.auto_interval_s"),
            "LUMIQ_ACQUISITION__AUTO_INTERVAL_S"
        );
    }

    #[test]
    fn only_section_key_variables_are_settings() {
        let vars = [
            ("LUMIQ_BROKER__PORT", "1"),
            ("LUMIQ_SOCKET", "/x"),
            ("LUMIQ_CALIBRATION_DIR", "/y"),
            ("LUMIQ_MODEL", "/z"),
            ("PATH", "/bin"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let got = setting_vars(vars).unwrap();
        assert_eq!(got.keys().collect::<Vec<_>>(), ["LUMIQ_BROKER__PORT"]);
        let err = setting_vars([("LUMIQ_STATE_DIR".to_string(), "/s".to_string())]).unwrap_err();
        assert!(err.to_string().contains("write LUMIQ_STATE__DIR"), "{err}");
    }

    #[test]
    fn the_choices_in_messages_are_the_words_serde_accepts() {
        fn words<T: Serialize>(values: &[T]) -> Vec<String> {
            values
                .iter()
                .map(|v| {
                    serde_json::to_value(v)
                        .unwrap()
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect()
        }
        let table: BTreeMap<&str, Vec<String>> = CHOICES
            .iter()
            .map(|(k, c)| (*k, c.iter().map(|s| s.to_string()).collect()))
            .collect();
        assert_eq!(
            table["camera.kind"],
            words(&[CameraKind::Usb, CameraKind::Simulated])
        );
        assert_eq!(
            table["controller.kind"],
            words(&[ControllerKind::Serial, ControllerKind::Simulated])
        );
        let formats = [
            LogFormat::Auto,
            LogFormat::Text,
            LogFormat::Json,
            LogFormat::Journald,
        ];
        assert_eq!(table["logging.format"], words(&formats));
        for f in formats {
            assert_eq!(words(&[f]), [f.as_str()]);
        }
    }

    #[test]
    fn defaults_fill_everything_but_the_instrument() {
        let s = Settings::from_toml_str("[instrument]\nid = \"a\"\nsite = \"b\"\n", "t").unwrap();
        assert_eq!(s.state.dir, Path::new("/var/lib/lumiq"));
        assert_eq!(s.calibration_dir(), Path::new("/var/lib/lumiq/calibration"));
        assert_eq!(s.status.socket, Path::new("/run/lumiq/lumiq.sock"));
        assert_eq!((s.channels.captures, s.channels.records), (2, 16));
        assert_eq!(s.auto_interval(), None);
        assert!(s.broker.is_none());
        assert_eq!(s.broker_config().unwrap(), None);
        let err = Settings::from_toml_str("[state]\n", "t").unwrap_err();
        assert!(err.to_string().contains("instrument"), "{err}");
    }
}
