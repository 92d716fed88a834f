//! Checking the settings against the machine at start: [`Settings::validate`] (files exist
//! and are readable, devices exist, the state directory is writable or creatable, topic
//! levels are valid, numbers are in range), every problem found reported at once in
//! [`ConfigError::Invalid`].
//!
//! The segmentation model is checked against its manifest (found, listed, sha256) without
//! parsing it: `lumiq run` parses it at start, before anything else.

use std::path::{Path, PathBuf};

use super::convert::origin_of;
use super::{ConfigError, ControllerKind, Problem, Settings, MAX_SOCKET_PATH_BYTES};
use crate::delivery::{self, Topics};
use crate::process::Detector;

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

        // [qc]
        if let Some(q) = &self.qc {
            if let Err(e) = super::convert::parse_date(&q.reference_date) {
                c.push(
                    "qc.reference_date",
                    Some(format!("{:?}", q.reference_date)),
                    e,
                    "write the date on the source's certificate, e.g. reference_date = \"2026-01-15\"",
                );
            }
            let positive = [
                (
                    "qc.radiance",
                    q.radiance,
                    "the certified radiance in photons/s/cm²/sr, from the source's certificate",
                ),
                (
                    "qc.source_radius_cm",
                    q.source_radius_cm,
                    "the source's radius in cm",
                ),
                (
                    "qc.tolerance",
                    q.tolerance,
                    "e.g. tolerance = 0.1 for ±10 %",
                ),
                (
                    "qc.valid_hours",
                    q.valid_hours,
                    "e.g. valid_hours = 26 for a daily QC",
                ),
            ];
            for (key, v, fix) in positive {
                if !(v.is_finite() && v > 0.0) {
                    c.push(key, Some(v.to_string()), "must be a positive number", fix);
                }
            }
            if !(0.0..1.0).contains(&q.radiance_rel_uncertainty) {
                c.push(
                    "qc.radiance_rel_uncertainty",
                    Some(q.radiance_rel_uncertainty.to_string()),
                    "must be a relative uncertainty in [0, 1)",
                    "e.g. 0.0025 for a NIST-traceable standard known to 0.25 %",
                );
            }
            if q.half_life_days
                .is_some_and(|h| !(h.is_finite() && h >= 0.0))
            {
                c.push(
                    "qc.half_life_days",
                    q.half_life_days.map(|h| h.to_string()),
                    "must be 0 (no decay) or a positive number of days",
                    "leave it out: source_kind sets it (tritium: 12.32 years)",
                );
            }
            if let Some(text) = &q.schedule {
                match super::schedule::QcSchedule::parse(text) {
                    Err(e) => c.push(
                        "qc.schedule",
                        Some(format!("{text:?}")),
                        e,
                        "e.g. schedule = \"07:30\" (daily, local time) or \"every 12 h\"",
                    ),
                    Ok(_) if !q.mounted => c.push(
                        "qc.schedule",
                        Some(format!("{text:?}")),
                        "the daemon can only image a source that stays in the box",
                        "set qc.mounted = true if the source is fixed in the field of view, or remove schedule and run `lumiq qc FOLDER` after placing it",
                    ),
                    Ok(_) => {}
                }
            }
        }
        if !(self.camera.sim_response.is_finite() && self.camera.sim_response > 0.0) {
            c.push(
                "camera.sim_response",
                Some(self.camera.sim_response.to_string()),
                "must be a positive number",
                "1 is the simulated camera as calibrated; 0.97 gives 3 % fewer counts",
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

        // [processing]: the model file is found and matches its manifest. Design: its
        // sha256 proves it is the file the manifest describes, so it is not parsed here
        // (tract takes far longer); `lumiq run` parses it at start, before anything else.
        if self.processing.detector != Detector::Classical {
            let checked = crate::segment::resolve_model_path(self.processing.model.as_deref())
                .and_then(|p| crate::segment::manifest::read_verified(&p).map(|_| ()));
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

/// A delivery error's message without its "delivery configuration:" prefix, for a
/// problem's text.
pub(super) fn strip_delivery(e: delivery::DeliveryError) -> String {
    match e {
        delivery::DeliveryError::Config(m) => m,
        other => other.to_string(),
    }
}
