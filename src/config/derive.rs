//! What the daemon derives from the settings at run time: paths inside the state directory
//! ([`Settings::outbox_path`], [`Settings::archive_dir`], [`Settings::calibration_dir`]),
//! durations ([`Settings::archive_retention`], [`Settings::auto_interval`]), the delivery
//! layer's configuration ([`Settings::topics`], [`Settings::outbox_config`],
//! [`Settings::tls_files`], [`Settings::broker_config`]) and the printed forms
//! ([`Settings::to_toml`] for `lumiq config print`, [`Settings::summary`] for
//! `lumiq config check`).
//!
//! Does not own: checking the values (`validate.rs`); only [`Settings::topics`] and
//! [`Settings::broker_config`] can fail, on a value `validate` would have refused or a
//! password file that went away.

use std::path::PathBuf;
use std::time::Duration;

use super::convert::origin_of;
use super::validate::strip_delivery;
use super::{
    CameraKind, ConfigError, ControllerKind, QcSettings, Settings, SourceKind, ARCHIVE_DIR,
    OUTBOX_FILE, QC_HISTORY_FILE,
};
use crate::delivery::{self, BrokerConfig, OutboxConfig, TlsFiles, Topics};
use crate::process::qc::{QcProcedure, ReferenceSource, SourcePlacement, TRITIUM_HALF_LIFE_DAYS};
use crate::process::Detector;

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

    /// The QC history: `<state.dir>/qc/history.jsonl`.
    pub fn qc_history_path(&self) -> PathBuf {
        self.state.dir.join(QC_HISTORY_FILE)
    }

    /// The QC procedure of `[qc]`, `None` without the section. Fails only on a
    /// `reference_date` that `validate` would have refused.
    pub fn qc_procedure(&self) -> Result<Option<QcProcedure>, String> {
        self.qc.as_ref().map(QcSettings::procedure).transpose()
    }

    /// The source is mounted in the box: the daemon can image it by itself.
    pub fn qc_mounted(&self) -> bool {
        self.qc.as_ref().is_some_and(|q| q.mounted)
    }

    /// `[qc] schedule`, `None` when the daemon does not run QC by itself (or the text is
    /// one `validate` refuses).
    pub fn qc_schedule(&self) -> Option<super::QcSchedule> {
        let q = self.qc.as_ref().filter(|q| q.mounted)?;
        super::QcSchedule::parse(q.schedule.as_deref()?).ok()
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
        let _ = match &self.qc {
            None => writeln!(s, "  qc           none (no reference source)"),
            Some(q) => writeln!(
                s,
                "  qc           source {} ({}), tolerance ±{} %, current {} h, history {}",
                q.source_id,
                match q.source_kind {
                    SourceKind::Led => "LED",
                    SourceKind::Tritium => "tritium",
                },
                100.0 * q.tolerance,
                q.valid_hours,
                self.qc_history_path().display()
            ),
        };
        if let Some(q) = &self.qc {
            let _ = writeln!(
                s,
                "  qc run by    {}",
                match (q.mounted, self.qc_schedule()) {
                    (false, _) =>
                        "a technician (`lumiq qc FOLDER`; the source is not mounted)".to_string(),
                    (true, None) =>
                        "`lumiq acquire --qc` or the LIMS (mounted source, no schedule)".to_string(),
                    (true, Some(sch)) => format!("the daemon, {sch} (mounted source)"),
                }
            );
        }
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

impl QcSettings {
    /// The procedure these settings describe; the error names the unreadable date.
    pub fn procedure(&self) -> Result<QcProcedure, String> {
        Ok(QcProcedure {
            source: ReferenceSource {
                id: self.source_id.clone(),
                radiance_p_s_cm2_sr: self.radiance,
                radiance_rel_uncertainty: self.radiance_rel_uncertainty,
                reference_date: super::convert::parse_date(&self.reference_date)?,
                half_life_days: self.half_life_days.unwrap_or(match self.source_kind {
                    SourceKind::Led => 0.0,
                    SourceKind::Tritium => TRITIUM_HALF_LIFE_DAYS,
                }),
            },
            placement: SourcePlacement {
                centre_cm: self.source_centre_cm,
                radius_cm: self.source_radius_cm,
            },
            tolerance: self.tolerance,
            valid_hours: self.valid_hours,
        })
    }
}
