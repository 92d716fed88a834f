//! `lumiq config check|print FILE`: flag parsing and what the user sees.

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
