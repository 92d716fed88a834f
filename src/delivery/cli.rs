//! The delivery subcommands of `lumiq`: `replay` (re-send stored records from a seq) and the
//! hidden `deliver-test` (a real publishing process for the chaos test and demos: it commits
//! synthetic records and delivers them; it can be SIGKILLed and restarted on the same outbox).
//!
//! Owns flag parsing and output of those two commands only; `crate::cli` dispatches to them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use super::outbox::{Outbox, OutboxConfig, OutboxError};
use super::publisher::{BrokerConfig, Publisher, PublisherConfig};
use super::tls::TlsFiles;
use super::topics::{Topics, DEFAULT_PREFIX};
use super::{synthetic, DeliveryStatus};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The outbox database (the daemon's `outbox.sqlite`).
    #[arg(long)]
    pub outbox: PathBuf,
    /// Re-send every stored record from this seq on (acknowledged or not).
    #[arg(long)]
    pub from_seq: u64,
}

/// `lumiq replay`: re-queue stored records; the running publisher sends them within about a
/// second (or the next one at its start). Prints the outcome as one JSON object.
pub fn replay(a: ReplayArgs) -> anyhow::Result<()> {
    let ob = Outbox::open_existing(&a.outbox)?;
    let o = ob.request_replay(a.from_seq)?;
    if let Some(first) = o.pruned_before {
        eprintln!(
            "warning: records before seq {first} were pruned after their retention ({} days); replaying from {first}",
            ob.retention().as_secs() / 86_400
        );
    }
    eprintln!(
        "re-queued {} acknowledged records (seq {}..={}, {} were still waiting); a running lumiq sends them within a second, otherwise at its next start",
        o.requeued, o.from_seq, o.to_seq, o.already_pending
    );
    println!("{}", serde_json::to_string(&o)?);
    Ok(())
}

#[derive(Debug, Args)]
pub struct DeliverTestArgs {
    /// Outbox database (created if missing).
    #[arg(long)]
    pub outbox: PathBuf,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long)]
    pub port: u16,
    #[arg(long, default_value = DEFAULT_PREFIX)]
    pub prefix: String,
    #[arg(long, default_value = "lab")]
    pub site: String,
    #[arg(long, default_value = "imager-01")]
    pub instrument: String,
    #[arg(long)]
    pub client_id: Option<String>,
    /// Commit synthetic records until the outbox's last seq reaches this (so a restarted
    /// process continues where the killed one stopped).
    #[arg(long, default_value_t = 0)]
    pub produce: u64,
    /// Pause between two commits, ms.
    #[arg(long, default_value_t = 20)]
    pub interval_ms: u64,
    /// Stop cleanly (offline status) once everything is produced and acknowledged.
    #[arg(long)]
    pub exit_when_delivered: bool,
    /// Give up (exit 2) after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub max_runtime_s: u64,
    #[arg(long, default_value_t = 32)]
    pub window: usize,
    #[arg(long, default_value_t = 100_000)]
    pub max_unacked: u64,
    #[arg(long)]
    pub ca: Option<PathBuf>,
    #[arg(long)]
    pub cert: Option<PathBuf>,
    #[arg(long)]
    pub key: Option<PathBuf>,
    #[arg(long)]
    pub username: Option<String>,
    #[arg(long)]
    pub password: Option<String>,
}

/// `lumiq deliver-test`: commit synthetic records and deliver them. Prints one line per
/// commit (`committed <seq> <measurement_id>`) and, at the end, the delivery status as JSON.
pub fn deliver_test(a: DeliverTestArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(deliver_test_async(a))
}

async fn deliver_test_async(a: DeliverTestArgs) -> anyhow::Result<()> {
    let mut ocfg = OutboxConfig::new(&a.instrument);
    ocfg.max_unacked = a.max_unacked;
    let outbox = Outbox::open(&a.outbox, &ocfg)?;
    let topics = Topics::new(&a.prefix, &a.site, &a.instrument)?;
    let mut broker = BrokerConfig::new(&a.host, a.port);
    broker.client_id = a.client_id.clone();
    broker.keep_alive = Duration::from_secs(5);
    broker.connect_timeout = Duration::from_secs(3);
    broker.username = a.username.clone();
    broker.password = a.password.clone();
    if let Some(ca) = &a.ca {
        broker.tls = Some(TlsFiles {
            ca: ca.clone(),
            client_cert: a.cert.clone(),
            client_key: a.key.clone(),
        });
    }
    let mut pcfg = PublisherConfig::new(topics, broker);
    pcfg.window = a.window;
    pcfg.reconnect_min = Duration::from_millis(100);
    pcfg.reconnect_max = Duration::from_millis(1000);
    pcfg.ack_timeout = Duration::from_secs(10);
    let publisher = Publisher::spawn(outbox.clone(), pcfg)?;

    // The producer commits from its own thread, as the daemon's commit stage does.
    let producer = {
        let outbox = outbox.clone();
        let (target, interval, instrument) = (
            a.produce,
            Duration::from_millis(a.interval_ms),
            a.instrument.clone(),
        );
        std::thread::spawn(move || -> Result<(), OutboxError> {
            let mut n = outbox.stats()?.last_seq.unwrap_or(0);
            while n < target {
                let rec = synthetic::record(&instrument, n);
                match outbox.commit(&rec) {
                    Ok(seq) => {
                        println!("committed {seq} {}", rec.measurement_id);
                        n = seq;
                    }
                    Err(e @ OutboxError::Full { .. }) => eprintln!("refused: {e}"),
                    Err(e) => return Err(e),
                }
                std::thread::sleep(interval);
            }
            Ok(())
        })
    };

    let started = Instant::now();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    let mut producer = Some(producer);
    let outcome = loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = term.recv() => break "stopped by SIGTERM",
            _ = tokio::signal::ctrl_c() => break "stopped by SIGINT",
        }
        if producer.as_ref().is_some_and(|p| p.is_finished()) {
            producer
                .take()
                .unwrap()
                .join()
                .map_err(|_| anyhow::anyhow!("the producer thread panicked"))??;
        }
        if a.exit_when_delivered && producer.is_none() {
            let s: DeliveryStatus = publisher.status();
            if s.unacked == 0 && s.in_flight == 0 {
                break "everything produced and acknowledged";
            }
        }
        if started.elapsed() > Duration::from_secs(a.max_runtime_s) {
            let s = publisher.status();
            eprintln!("{}", serde_json::to_string(&s)?);
            anyhow::bail!(
                "gave up after {} s with {} records unacknowledged",
                a.max_runtime_s,
                s.unacked
            );
        }
    };
    let report = publisher.status();
    let shut = publisher.shutdown(Duration::from_secs(3)).await;
    eprintln!(
        "{outcome}; offline status published: {}; unacknowledged left: {}",
        shut.offline_published, shut.unacked_left
    );
    println!("status {}", serde_json::to_string(&report)?);
    Ok(())
}
