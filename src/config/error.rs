//! The errors a technician reads: [`ConfigError`] (loading or checking failed) and
//! [`Problem`] (one setting that [`Settings::validate`](super::Settings::validate) refused).
//! Every message names the file or environment variable, the key as `section.key` with its
//! environment form, the value and the fix.

use std::fmt;

use super::convert::valid_keys_hint;
use super::env_var;

/// One problem with one setting, found by [`Settings::validate`](super::Settings::validate).
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

impl ConfigError {
    /// The problems of an [`ConfigError::Invalid`], else empty.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid(p) => p,
            _ => &[],
        }
    }
}
