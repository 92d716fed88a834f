//! The file's shape: [`Settings`] and one struct (or enum) per section, with their
//! defaults and serde attributes (every struct `deny_unknown_fields`), and
//! [`SettingsSource`], where a [`Settings`] came from.
//!
//! Does not own: reading the file (`load.rs`), checking the values against the machine
//! (`validate.rs`) or what the daemon derives from them (`derive.rs`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::delivery;
use crate::process::Detector;

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
    /// `[qc]`: the daily check against a reference light source; absent means the
    /// instrument has no QC procedure (records say `qc.state = "not_configured"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qc: Option<QcSettings>,
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

/// What kind of reference light source `[qc]` describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// An LED radiance standard: no decay.
    Led,
    /// A tritium (betalight) source: decays with tritium's 12.32-year half-life.
    Tritium,
}

/// `[qc]`: the reference light source and how its check is judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QcSettings {
    /// Required. The source's id (serial number), carried into every record.
    pub source_id: String,
    /// Required. `"led"` or `"tritium"`.
    pub source_kind: SourceKind,
    /// Required. Certified radiance at `reference_date`, photons/s/cm²/sr.
    pub radiance: f64,
    /// Relative 1σ of the certified radiance (NIST-traceable LED standards: 0.0025).
    #[serde(default = "default_source_rel_uncertainty")]
    pub radiance_rel_uncertainty: f64,
    /// Required. The date the certified radiance holds for: `2026-01-15` or RFC 3339.
    pub reference_date: String,
    /// Half-life of the source's light, days; default 0 for an LED and 4499.88 (12.32
    /// years) for tritium.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_life_days: Option<f64>,
    /// Required. Where the source sits: its centre, cm from the image's top-left corner.
    pub source_centre_cm: [f64; 2],
    /// Required. The source's radius, cm.
    pub source_radius_cm: f64,
    /// A response factor further than this from 1 (relative) is out of tolerance.
    #[serde(default = "default_qc_tolerance")]
    pub tolerance: f64,
    /// A QC is current for this many hours; records made later are flagged `qc_stale`.
    #[serde(default = "default_qc_valid_hours")]
    pub valid_hours: f64,
    /// The source stays in the box at `source_centre_cm` (a fixture on the stage's edge or
    /// a dedicated shelf), so the daemon can image it by itself: `lumiq acquire --qc`, the
    /// LIMS's `{"acquire": true, "qc": true}` and `schedule`. Without it a technician places
    /// the source, acquires and runs `lumiq qc FOLDER`.
    #[serde(default)]
    pub mounted: bool,
    /// When the daemon runs the QC by itself: `"07:30"` (daily, local time) or
    /// `"every N s|m|h"`. Needs `mounted = true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

fn default_source_rel_uncertainty() -> f64 {
    0.0025
}
fn default_qc_tolerance() -> f64 {
    0.10
}
fn default_qc_valid_hours() -> f64 {
    26.0
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
    /// Simulated camera: its response relative to its calibration (0.97 gives 3 % fewer
    /// counts for the same light: optics, filters, sensor ageing), for trying the QC.
    #[serde(default = "default_sim_response")]
    pub sim_response: f64,
}

fn default_sim_response() -> f64 {
    1.0
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
    /// Darks taken before the camera's cooling lock was last (re)gained, or at another
    /// setpoint, are taken again (the first lock after a start counts as gained then).
    #[serde(default = "default_true")]
    pub dark_retake_after_relock: bool,
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
fn default_true() -> bool {
    true
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
            sim_response: default_sim_response(),
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
            dark_retake_after_relock: true,
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

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
