//! Loading: [`Settings::load`] (the file plus the process environment),
//! [`Settings::from_toml_str`] and [`Settings::from_toml_str_with_env`], and the
//! environment overrides: which variables are settings (`LUMIQ_<SECTION>__<KEY>`, named by
//! [`super::env_var`]) and which are mistyped ones.
//!
//! The `config` crate merges the file and the environment; what it converts silently and
//! how its errors are reworded is `convert.rs`.

use std::collections::BTreeMap;
use std::path::Path;

use super::convert::{exactly_as_written, translate};
use super::{env_var, ConfigError, Settings, SettingsSource, ENV_PREFIX, ENV_SEPARATOR, SECTIONS};

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
}
