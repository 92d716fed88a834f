//! `lumiq run`, `lumiq acquire`, `lumiq status` and `lumiq demo`: flags, output and exit
//! codes. The work is in the daemon.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Args;

use super::socket::{self, AcquireRequest, Request, SocketError};
use super::status::{self, EXIT_UNREACHABLE};
use crate::config::Settings;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file (TOML; `LUMIQ_<SECTION>__<KEY>` variables override it).
    #[arg(long, default_value = "/etc/lumiq/lumiq.toml")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct SocketArgs {
    /// The daemon's socket (default: $LUMIQ_SOCKET, then /run/lumiq/lumiq.sock).
    #[arg(long, conflicts_with = "config")]
    pub socket: Option<PathBuf>,
    /// Read the socket's path from this configuration file ([status] socket).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AcquireArgs {
    /// Study the acquisition belongs to.
    #[arg(long)]
    pub study: Option<String>,
    /// Subject (animal) id, left to right on the stage; repeat for each.
    #[arg(long = "subject")]
    pub subjects: Vec<String>,
    /// Luciferin injection time, RFC 3339 (e.g. 2026-11-27T09:50:00Z).
    #[arg(long)]
    pub injection_time: Option<DateTime<Utc>>,
    /// A kinetic series of N luminescent frames (each its own record).
    #[arg(long, value_name = "N")]
    pub kinetic: Option<usize>,
    /// Kinetic series: seconds from the start of one frame to the next.
    #[arg(long, value_name = "S", requires = "kinetic")]
    pub interval: Option<f64>,
    /// Image the mounted reference source and run the daily QC (`[qc] mounted = true`);
    /// prints the acquisition id, which becomes the QC's id in the history.
    #[arg(long, conflicts_with_all = ["study", "subjects", "injection_time", "kinetic"])]
    pub qc: bool,
    #[command(flatten)]
    pub socket: SocketArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub socket: SocketArgs,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Stop by itself, exit 0, once this many records came back from the broker.
    #[arg(long)]
    pub acquisitions: Option<usize>,
    /// Settings to start from (its [broker] is used when present; otherwise a broker is
    /// started for the demo).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

fn socket_path(a: &SocketArgs) -> anyhow::Result<PathBuf> {
    if let Some(cfg) = &a.config {
        let s = Settings::load(cfg)?;
        return Ok(s.status.socket);
    }
    Ok(socket::resolve_socket(a.socket.as_deref()))
}

const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

fn unreachable(e: &SocketError) -> i32 {
    eprintln!("lumiq: error: {e}");
    EXIT_UNREACHABLE
}

/// `lumiq run`.
pub fn run(a: RunArgs) -> anyhow::Result<()> {
    let settings = Settings::load(&a.config)?;
    settings.validate()?;
    crate::logging::init(settings.logging.format, &settings.logging.level)?;
    super::run(settings, super::RunHooks::default())?;
    Ok(())
}

/// `lumiq acquire`: prints the queued acquisition's id; non-zero when refused (1) or when the
/// daemon cannot be reached (2).
pub fn acquire(a: AcquireArgs) -> anyhow::Result<i32> {
    let path = socket_path(&a.socket)?;
    let req = AcquireRequest {
        study_id: a.study,
        subject_ids: a.subjects,
        injection_time: a.injection_time,
        kinetic: a.kinetic,
        interval_s: a.interval,
        qc: a.qc,
    };
    if let Err(e) = req.validate() {
        anyhow::bail!("{e}");
    }
    match socket::request(&path, &Request::Acquire(req), CLIENT_TIMEOUT) {
        Ok(r) if r.ok => {
            println!("{}", r.acquisition_id.unwrap_or_default());
            Ok(0)
        }
        Ok(r) => {
            eprintln!(
                "lumiq: acquisition refused: {}",
                r.error.unwrap_or_else(|| "no reason given".into())
            );
            Ok(1)
        }
        Err(e) => Ok(unreachable(&e)),
    }
}

/// `lumiq status`: the table (or `--json`); exit 0 all fine, 1 needs a person, 2 unreachable.
pub fn status(a: StatusArgs) -> anyhow::Result<i32> {
    let path = socket_path(&a.socket)?;
    let r = match socket::request(&path, &Request::Status, CLIENT_TIMEOUT) {
        Ok(r) => r,
        Err(e) => return Ok(unreachable(&e)),
    };
    let Some(report) = r.status.filter(|_| r.ok) else {
        anyhow::bail!(
            "the daemon at {} refused the status request: {}",
            path.display(),
            r.error.unwrap_or_default()
        );
    };
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", status::render_table(&report));
    }
    Ok(status::exit_code(&report))
}

/// `lumiq demo`.
pub fn demo(a: DemoArgs) -> anyhow::Result<()> {
    Ok(super::demo::run(a.acquisitions, a.config.as_deref())?)
}
