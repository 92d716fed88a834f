//! Where the `config` crate's behaviour is undone or reworded, and why. Everything here
//! exists because of that crate; nothing else in `config/` works around it.
//!
//! The crate is kept: it merges the `LUMIQ_<SECTION>__<KEY>` environment overrides onto
//! the file. But it does two things a technician must not meet:
//!
//! - It converts silently. Every value passes through the crate's own value type on its
//!   way to serde, which rounds a float into an integer (`port = 1.5` would be port 2)
//!   and reads a string such as "yes" or "on" as a boolean (`command_topic = "yes"`) or
//!   even as the integer 1 (`LUMIQ_BROKER__PORT=yes` would be port 1).
//!   [`exactly_as_written`] refuses every value that is not exactly the one written: in the
//!   file the TOML type must match, in the environment the text must read back as the
//!   value.
//! - Its errors do not say where or what to do. They carry serde's text ("unknown field
//!   `x`, expected one of ...", "enum ... does not have variant constructor y") and a key
//!   at best, never the file or the variable the value came from, its environment form, or
//!   the fix. [`translate`] (with [`at_key`] and [`message_at`]) turns them into
//!   [`ConfigError`]s that name the origin ([`origin_of`]: the file, or `environment
//!   LUMIQ_X__Y` when a variable set the key), the key with its variable, the valid keys
//!   ([`valid_keys_hint`]) or words ([`CHOICES`]) and what to write ([`required_fix`]).
//!
//! (A syntax error never reaches the crate: `load.rs` parses the text with `toml` first so
//! the message keeps its line and column.)

use super::env_var;
use super::{ConfigError, Settings};

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
pub(super) fn exactly_as_written(
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
pub(super) fn origin_of(key: &str, origin: &str, env_keys: &[String]) -> String {
    if env_keys.iter().any(|k| k == key) {
        format!("environment {}", env_var(key))
    } else {
        origin.to_string()
    }
}

/// Turn the `config` crate's error into one that names the key, its env form and the fix.
pub(super) fn translate(
    e: ::config::ConfigError,
    origin: &str,
    env_keys: &[String],
) -> ConfigError {
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

/// The valid keys of `section` (or the valid sections), for [`ConfigError::UnknownKey`]: serde
/// lists them in its message, the `config` crate keeps them only in its text.
pub(super) fn valid_keys_hint(section: Option<&str>, valid: &[String]) -> String {
    let list = valid.join(", ");
    match section {
        Some(s) => format!("valid keys of [{s}]: {list}"),
        None => format!("valid sections: {list}"),
    }
}

/// `2026-01-15` (midnight UTC) or an RFC 3339 time.
pub(super) fn parse_date(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
        .map_err(|_| format!("{s:?} is neither a date (2026-01-15) nor an RFC 3339 time"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;

    use super::*;
    use crate::config::{CameraKind, ControllerKind, LogFormat};

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
}
