//! The publisher: one tokio task that drives rumqttc's MQTT 5 event loop and moves records
//! from the outbox to the broker.
//!
//! Owns: the connection (TCP or TLS, last will, clean start), the send window, correlating
//! PUBACKs with seqs, acknowledgement marks, re-sending after reconnects, the retained status
//! (online after every connection, offline on a clean stop) and events. Does not own the
//! outbox's storage or the record.
//!
//! Design notes:
//! - **lumiq owns delivery, not the MQTT session.** The connection uses clean start, and
//!   after every failure rumqttc's own retransmission queue is emptied: after each CONNACK
//!   the publisher re-sends everything unacknowledged from the outbox, oldest first. A record
//!   PUBACKed by the broker but lost to the connection before the PUBACK arrived is sent twice;
//!   the LIMS deduplicates by `measurement_id`.
//! - **PUBACK ↔ seq.** rumqttc assigns packet ids inside its event loop and reports each as
//!   `Outgoing::Publish(pkid)`, in the order the requests were queued. The publisher queues
//!   requests only from this task and remembers their order (`fifo`), so each pkid maps to
//!   the seq (or status, or event) it carries; `Incoming::PubAck(pkid)` then names the seq.
//! - **MQTT 5** so that a publish the broker refuses (e.g. its ACL) comes back as a PUBACK
//!   with a reason code instead of vanishing: the row stays unacknowledged, the refusal is
//!   counted and shown in the status, and the row is retried after `refused_retry`.
//! - The event loop's `poll()` future is never cancelled while a connection is healthy (it
//!   is pinned across the other `select!` branches), so no packet is half-written.
//! - Outbox calls from this task are short and made in place: reads of the next rows (well
//!   under a millisecond) and acknowledgement marks (no fsync of their own). The fsync'd
//!   commits run on the caller's thread; while one holds the outbox's lock the task waits for
//!   it (a few milliseconds). Run the publisher on a runtime whose other tasks tolerate that,
//!   e.g. its own current-thread runtime.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rumqttc::v5::mqttbytes::v5::{LastWill, Packet, PubAck, PubAckReason};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, StateError};
use rumqttc::{Outgoing, TlsConfiguration, Transport};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::outbox::{now_ms, Outbox, Seq};
use super::status::{DeliveryStatus, LatencySummary, LinkState};
use super::tls::{client_config, TlsFiles};
use super::topics::Topics;
use super::wire::{
    envelope_json, rfc3339, EnvelopeFields, EventKind, NewEvent, Severity, StatusMessage,
    StatusReason, StatusState,
};
use super::DeliveryError;

/// Where and how to reach the broker.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerConfig {
    pub host: String,
    pub port: u16,
    /// MQTT client id (default `lumiq-<instrument>`).
    pub client_id: Option<String>,
    /// TLS (with an optional client certificate); `None` for plain TCP.
    pub tls: Option<TlsFiles>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// MQTT keep-alive, ≥ 5 s.
    pub keep_alive: Duration,
    /// How long to wait for TCP, TLS and CONNACK.
    pub connect_timeout: Duration,
}

impl BrokerConfig {
    pub fn new(host: impl Into<String>, port: u16) -> BrokerConfig {
        BrokerConfig {
            host: host.into(),
            port,
            client_id: None,
            tls: None,
            username: None,
            password: None,
            keep_alive: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "mqtts" } else { "mqtt" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PublisherConfig {
    pub topics: Topics,
    pub broker: BrokerConfig,
    /// Most measurements sent and not yet PUBACKed. The broker's receive maximum (Mosquitto:
    /// 20) may lower the number actually on the wire.
    pub window: usize,
    /// A measurement with no PUBACK after this long while connected: drop the connection,
    /// reconnect and re-send.
    pub ack_timeout: Duration,
    /// Reconnect backoff, doubling from `reconnect_min` to `reconnect_max`.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Period of housekeeping: flushing acknowledgement marks, noticing replay requests from
    /// other processes, retries of refused publishes, the stop sequence.
    pub housekeeping_interval: Duration,
    /// A publish the broker refused (PUBACK reason code) is retried after this long.
    pub refused_retry: Duration,
    /// Largest MQTT packet accepted from the broker, and largest measurement payload sent:
    /// a bigger record stays in the outbox, refused, and the status says so.
    pub max_packet_bytes: u32,
    /// Events waiting for the link, in memory (events are not kept in the outbox); when
    /// full the oldest is dropped and `events_dropped` counts it.
    pub event_queue: usize,
    /// Subscribe this topic (QoS 1) after every connection and hand what arrives on it to
    /// [`PublisherHandle::take_commands`] (the LIMS's command topic); `None`: no subscription.
    pub command_topic: Option<String>,
}

impl PublisherConfig {
    pub fn new(topics: Topics, broker: BrokerConfig) -> PublisherConfig {
        PublisherConfig {
            topics,
            broker,
            window: 32,
            ack_timeout: Duration::from_secs(30),
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(5),
            housekeeping_interval: Duration::from_millis(250),
            refused_retry: Duration::from_secs(60),
            max_packet_bytes: 4 << 20,
            event_queue: 256,
            command_topic: None,
        }
    }
}

/// What a clean stop achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// The retained offline status was PUBACKed by the broker.
    pub offline_published: bool,
    /// Records still unacknowledged in the outbox (they go out at the next start).
    pub unacked_left: u64,
}

/// Commands waiting for the daemon; a full queue drops the newest and logs it.
const COMMAND_QUEUE: usize = 16;

enum Cmd {
    Event(NewEvent),
    Stop {
        timeout: Duration,
        reply: oneshot::Sender<ShutdownReport>,
    },
}

/// The link half of [`DeliveryStatus`], written by the task.
struct LinkInfo {
    link: LinkState,
    link_since: DateTime<Utc>,
    last_error: Option<String>,
    connections: u64,
    last_puback_at: Option<DateTime<Utc>>,
    in_flight: usize,
    acked: u64,
    refused: u64,
    last_refusal: Option<String>,
    events_dropped: u64,
    latencies_ms: VecDeque<f64>,
}

const LATENCY_SAMPLES: usize = 2048;

/// Starts the publisher task.
pub struct Publisher;

impl Publisher {
    /// Spawn the publisher on the current tokio runtime. Fails only on configuration (TLS
    /// files, keep-alive); broker trouble is retried and shown in [`PublisherHandle::status`].
    pub fn spawn(outbox: Outbox, cfg: PublisherConfig) -> Result<PublisherHandle, DeliveryError> {
        if cfg.topics.instrument_id() != outbox.instrument_id() {
            return Err(DeliveryError::Config(format!(
                "the topics are for instrument {:?} but the outbox holds {:?}",
                cfg.topics.instrument_id(),
                outbox.instrument_id()
            )));
        }
        if cfg.broker.keep_alive < Duration::from_secs(5) {
            return Err(DeliveryError::Config(
                "broker keep-alive must be at least 5 s".into(),
            ));
        }
        if cfg.window == 0 || cfg.window > 1024 {
            return Err(DeliveryError::Config(
                "the send window must be between 1 and 1024 records".into(),
            ));
        }
        let boot_id = Uuid::now_v7();
        let booted_at = Utc::now();
        let b = &cfg.broker;
        let client_id = b
            .client_id
            .clone()
            .unwrap_or_else(|| format!("lumiq-{}", cfg.topics.instrument_id()));
        let mut opts = MqttOptions::new(client_id, b.host.clone(), b.port);
        opts.set_keep_alive(b.keep_alive)
            .set_clean_start(true)
            .set_connection_timeout(b.connect_timeout.as_secs().max(1))
            .set_max_packet_size(Some(cfg.max_packet_bytes))
            .set_outgoing_inflight_upper_limit(cfg.window as u16);
        let will = StatusMessage::new(
            cfg.topics.instrument_id(),
            cfg.topics.site(),
            StatusState::Offline,
            StatusReason::ConnectionLost,
            boot_id,
            booted_at,
            booted_at,
        );
        opts.set_last_will(LastWill::new(
            cfg.topics.status(),
            serde_json::to_vec(&will).expect("status serialises"),
            QoS::AtLeastOnce,
            true,
            None,
        ));
        if let Some(user) = &b.username {
            opts.set_credentials(user.clone(), b.password.clone().unwrap_or_default());
        }
        if let Some(tls) = &b.tls {
            let config = client_config(tls)?;
            opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(config)));
        }
        let (client, eventloop) = AsyncClient::new(opts, cfg.window + cfg.event_queue + 8);
        let shared = Arc::new(Mutex::new(LinkInfo {
            link: LinkState::Connecting,
            link_since: Utc::now(),
            last_error: None,
            connections: 0,
            last_puback_at: None,
            in_flight: 0,
            acked: 0,
            refused: 0,
            last_refusal: None,
            events_dropped: 0,
            latencies_ms: VecDeque::with_capacity(LATENCY_SAMPLES),
        }));
        let (cmd_tx, cmd_rx) = mpsc::channel(1024);
        let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let driver = Driver {
            outbox: outbox.clone(),
            client,
            shared: shared.clone(),
            boot_id,
            booted_at,
            up: false,
            fifo: VecDeque::new(),
            pkids: HashMap::new(),
            inflight: BTreeMap::new(),
            cursor: 0,
            replay_gen: outbox.replay_generation(),
            acks: Vec::new(),
            acked_unflushed: BTreeSet::new(),
            refused: BTreeMap::new(),
            events: VecDeque::new(),
            stopping: None,
            last_prune: None,
            outbox_refusal: None,
            commands: cfg.command_topic.is_some().then_some(commands_tx),
            cfg: cfg.clone(),
        };
        let task = tokio::spawn(run(driver, eventloop, cmd_rx));
        Ok(PublisherHandle {
            outbox,
            shared,
            cmd_tx,
            task,
            boot_id,
            commands: cfg.command_topic.is_some().then_some(commands_rx),
            cfg,
        })
    }
}

/// Handle on a running publisher: status, events, clean stop.
pub struct PublisherHandle {
    outbox: Outbox,
    shared: Arc<Mutex<LinkInfo>>,
    cmd_tx: mpsc::Sender<Cmd>,
    task: tokio::task::JoinHandle<()>,
    boot_id: Uuid,
    commands: Option<mpsc::Receiver<Vec<u8>>>,
    cfg: PublisherConfig,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

impl PublisherHandle {
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn boot_id(&self) -> Uuid {
        self.boot_id
    }

    /// The payloads arriving on `command_topic` (once; `None` without a command topic).
    pub fn take_commands(&mut self) -> Option<mpsc::Receiver<Vec<u8>>> {
        self.commands.take()
    }

    /// A snapshot for `lumiq status`.
    pub fn status(&self) -> DeliveryStatus {
        let stats = self.outbox.stats();
        let info = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let latency = (!info.latencies_ms.is_empty()).then(|| {
            let mut v: Vec<f64> = info.latencies_ms.iter().copied().collect();
            v.sort_by(|a, b| a.total_cmp(b));
            LatencySummary {
                samples: v.len(),
                p50_ms: percentile(&v, 0.50),
                p99_ms: percentile(&v, 0.99),
                max_ms: *v.last().unwrap(),
            }
        });
        let (stats, stats_err) = match stats {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e.to_string())),
        };
        DeliveryStatus {
            instrument_id: self.cfg.topics.instrument_id().into(),
            site: self.cfg.topics.site().into(),
            boot_id: self.boot_id.to_string(),
            broker: self.cfg.broker.url(),
            link: info.link,
            link_since: rfc3339(info.link_since),
            last_error: info.last_error.clone().or(stats_err.clone()),
            connections: info.connections,
            unacked: stats.as_ref().map_or(0, |s| s.unacked),
            oldest_unacked_age_s: stats.as_ref().and_then(|s| s.oldest_unacked_age_s),
            last_seq: stats.as_ref().and_then(|s| s.last_seq),
            last_acked_seq: stats.as_ref().and_then(|s| s.last_acked_seq),
            last_puback_at: info.last_puback_at.map(rfc3339),
            in_flight: info.in_flight,
            acked_since_start: info.acked,
            refused_by_broker: info.refused,
            last_refusal: info.last_refusal.clone(),
            events_dropped: info.events_dropped,
            puback_latency: latency,
            accepting: stats.as_ref().is_some_and(|s| s.accepting),
            refusal: stats.as_ref().and_then(|s| s.refusal.clone()).or(stats_err),
            outbox_path: self.outbox.path().display().to_string(),
            outbox_bytes: stats.as_ref().map_or(0, |s| s.db_bytes),
            oldest_stored_seq: stats.as_ref().and_then(|s| s.oldest_stored_seq),
            retention_s: self.outbox.retention().as_secs(),
        }
    }

    /// Queue an event for `.../event` (QoS 1, best effort: kept in memory while the link is
    /// down, up to `event_queue`).
    pub fn publish_event(&self, event: NewEvent) {
        if self.cmd_tx.try_send(Cmd::Event(event)).is_err() {
            self.shared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .events_dropped += 1;
        }
    }

    /// Stop cleanly: stop sending new records, wait up to `timeout` for the PUBACKs of those
    /// in flight, publish the retained offline status, disconnect. Unacknowledged records
    /// stay in the outbox for the next start.
    pub async fn shutdown(self, timeout: Duration) -> ShutdownReport {
        let (tx, rx) = oneshot::channel();
        let sent = self
            .cmd_tx
            .send(Cmd::Stop { timeout, reply: tx })
            .await
            .is_ok();
        let report = if sent { rx.await.ok() } else { None };
        let _ = self.task.await;
        report.unwrap_or_else(|| ShutdownReport {
            offline_published: false,
            unacked_left: self.outbox.stats().map_or(0, |s| s.unacked),
        })
    }
}

#[derive(Debug, Clone)]
enum Tag {
    Measurement(Seq),
    Status(StatusState),
    Event(String),
}

struct Sent {
    tag: Tag,
    at: Instant,
}

struct Stopping {
    deadline: Instant,
    offline_sent: bool,
    offline_acked: bool,
    disconnect_sent: bool,
    done: bool,
    reply: Option<oneshot::Sender<ShutdownReport>>,
}

struct Driver {
    cfg: PublisherConfig,
    outbox: Outbox,
    client: AsyncClient,
    shared: Arc<Mutex<LinkInfo>>,
    boot_id: Uuid,
    booted_at: DateTime<Utc>,
    /// CONNACK received on the current connection.
    up: bool,
    /// Requests queued to rumqttc whose packet id is not known yet, in queue order.
    fifo: VecDeque<(Tag, Instant)>,
    /// Packet id → what it carries, for publishes waiting for their PUBACK.
    pkids: HashMap<u16, Sent>,
    /// Measurements sent on this connection and not yet PUBACKed.
    inflight: BTreeMap<Seq, Instant>,
    /// Every unacknowledged row with seq ≤ cursor is in flight, refused (waiting for its
    /// retry), or acknowledged but not yet marked: the next fill starts after it.
    cursor: Seq,
    replay_gen: u64,
    /// PUBACKed measurements not yet marked in the outbox.
    acks: Vec<(Seq, i64)>,
    acked_unflushed: BTreeSet<Seq>,
    /// Refused by the broker: retry at.
    refused: BTreeMap<Seq, Instant>,
    /// Event payloads waiting for the link.
    events: VecDeque<String>,
    stopping: Option<Stopping>,
    last_prune: Option<Instant>,
    outbox_refusal: Option<String>,
    /// Where payloads of `cfg.command_topic` go.
    commands: Option<mpsc::Sender<Vec<u8>>>,
}

enum Step {
    Polled(Box<Result<Event, ConnectionError>>),
    Reset(String),
    Finish,
}

async fn run(mut d: Driver, mut el: EventLoop, mut cmds: mpsc::Receiver<Cmd>) {
    let mut tick = tokio::time::interval(d.cfg.housekeeping_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backoff = d.cfg.reconnect_min;
    let mut cmds_open = true;
    loop {
        let step = {
            let mut poll = std::pin::pin!(el.poll());
            loop {
                if d.finished() {
                    break Step::Finish;
                }
                tokio::select! {
                    r = &mut poll => break Step::Polled(Box::new(r)),
                    c = cmds.recv(), if cmds_open => match c {
                        Some(c) => d.on_cmd(c),
                        None => {
                            cmds_open = false;
                            d.begin_stop(Duration::from_secs(2), None);
                        }
                    },
                    _ = d.outbox.notified(), if d.up && d.stopping.is_none() => d.fill(),
                    _ = tick.tick() => {
                        if let Some(reason) = d.housekeeping() {
                            break Step::Reset(reason);
                        }
                    }
                }
            }
        };
        match step {
            Step::Finish => break,
            Step::Polled(r) => match *r {
                Ok(ev) => {
                    if matches!(ev, Event::Incoming(Packet::ConnAck(_))) {
                        backoff = d.cfg.reconnect_min;
                    }
                    d.on_event(ev);
                }
                Err(e) => {
                    let msg = explain(&e, &d.cfg.broker);
                    d.connection_lost(&mut el, msg);
                    if d.stopping.is_some() {
                        d.finish_stop();
                        break;
                    }
                    // Back off, still answering commands and doing housekeeping.
                    let sleep = tokio::time::sleep(backoff);
                    tokio::pin!(sleep);
                    loop {
                        tokio::select! {
                            _ = &mut sleep => break,
                            c = cmds.recv(), if cmds_open => match c {
                                Some(c) => d.on_cmd(c),
                                None => {
                                    cmds_open = false;
                                    d.begin_stop(Duration::ZERO, None);
                                }
                            },
                            _ = tick.tick() => { d.housekeeping(); }
                        }
                        if d.stopping.is_some() {
                            break;
                        }
                    }
                    if d.stopping.is_some() {
                        d.finish_stop();
                        break;
                    }
                    backoff = (backoff * 2).min(d.cfg.reconnect_max);
                    d.set_link(LinkState::Connecting);
                }
            },
            Step::Reset(reason) => {
                // The connection is abandoned, so cancelling poll() above was harmless.
                el.clean();
                d.connection_lost(&mut el, reason);
            }
        }
    }
    d.flush_acks();
}

/// A connection failure in words that say what to check.
fn explain(e: &ConnectionError, b: &BrokerConfig) -> String {
    let broker = b.url();
    let text = e.to_string();
    if b.tls.is_some() {
        // rustls reports through several wrappers (TLS error, I/O error, codec error);
        // the cause is the same whichever carried it.
        let markers = [
            "received fatal alert",
            "invalid peer certificate",
            "certificate",
            "handshake",
        ];
        if let Some(at) = markers.iter().find_map(|m| text.find(m)) {
            let cause = &text[at..];
            let advice = if cause.starts_with("received fatal alert") {
                "the broker rejected this client's certificate: check that the client certificate \
                 and key were issued by the CA the broker trusts (its cafile), match each other \
                 and are not expired"
            } else if cause.starts_with("invalid peer certificate") {
                "the broker's certificate is not trusted: configure the CA file of the CA that \
                 signed it, and check that it names this host and is not expired"
            } else {
                "check the CA file, the client certificate and key, and the broker's TLS listener"
            };
            return format!("{broker}: TLS handshake failed ({cause}); {advice}");
        }
    }
    let io_text = |io: &std::io::Error| -> String {
        if io.kind() == std::io::ErrorKind::ConnectionRefused {
            format!(
                "{broker}: connection refused: is the broker running and listening on that port?"
            )
        } else {
            format!("{broker}: {io}")
        }
    };
    match e {
        ConnectionError::Io(io) => io_text(io),
        ConnectionError::Tls(rumqttc::v5::TlsError::Io(io)) => io_text(io),
        ConnectionError::Tls(t) => format!("{broker}: TLS: {t}"),
        ConnectionError::ConnectionRefused(code) => format!(
            "{broker}: the broker refused the MQTT connection ({code:?}); check the username and \
             password, or that the certificate's identity is allowed"
        ),
        ConnectionError::Timeout(_) => format!(
            "{broker}: no CONNACK within {} s; check the address and that the broker is healthy",
            b.connect_timeout.as_secs().max(1)
        ),
        ConnectionError::MqttState(StateError::Io(io)) => io_text(io),
        ConnectionError::MqttState(StateError::ConnectionAborted) => {
            format!("{broker}: the connection was closed")
        }
        ConnectionError::MqttState(StateError::ConnFail { reason }) => format!(
            "{broker}: the broker refused the MQTT connection ({reason:?}); check the credentials \
             or the certificate's identity"
        ),
        _ => format!("{broker}: {text}"),
    }
}

fn pub_ack_ok(ack: &PubAck) -> bool {
    matches!(
        ack.reason,
        PubAckReason::Success | PubAckReason::NoMatchingSubscribers
    )
}

impl Driver {
    fn info(&self) -> std::sync::MutexGuard<'_, LinkInfo> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_link(&self, link: LinkState) {
        let mut i = self.info();
        if i.link != link {
            i.link = link;
            i.link_since = Utc::now();
        }
    }

    fn finished(&self) -> bool {
        self.stopping.as_ref().is_some_and(|s| s.done)
    }

    fn on_cmd(&mut self, c: Cmd) {
        match c {
            Cmd::Event(ev) => self.queue_event(ev),
            Cmd::Stop { timeout, reply } => self.begin_stop(timeout, Some(reply)),
        }
    }

    fn queue_event(&mut self, ev: NewEvent) {
        let msg = ev.into_message(
            self.cfg.topics.instrument_id(),
            self.cfg.topics.site(),
            self.boot_id,
            Utc::now(),
        );
        let payload = serde_json::to_string(&msg).expect("event serialises");
        if self.up
            && self.submit(
                Tag::Event(payload.clone()),
                &self.cfg.topics.event(),
                false,
                &payload,
            )
        {
            return;
        }
        self.events.push_back(payload);
        while self.events.len() > self.cfg.event_queue {
            self.events.pop_front();
            self.info().events_dropped += 1;
        }
    }

    /// Queue one QoS 1 publish to rumqttc; remembers its place for pkid correlation.
    fn submit(&mut self, tag: Tag, topic: &str, retain: bool, payload: &str) -> bool {
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload.to_string())
        {
            Ok(()) => {
                self.fifo.push_back((tag, Instant::now()));
                true
            }
            Err(e) => {
                tracing::debug!("request queue full ({e}); retrying later");
                false
            }
        }
    }

    fn status_payload(&self, state: StatusState, reason: StatusReason) -> String {
        serde_json::to_string(&StatusMessage::new(
            self.cfg.topics.instrument_id(),
            self.cfg.topics.site(),
            state,
            reason,
            self.boot_id,
            self.booted_at,
            Utc::now(),
        ))
        .expect("status serialises")
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Incoming(Packet::ConnAck(_)) => self.link_up(),
            Event::Incoming(Packet::PubAck(ack)) => self.on_puback(ack),
            Event::Incoming(Packet::Publish(p)) => self.on_command(&p.topic, &p.payload),
            Event::Incoming(Packet::Disconnect(d)) => {
                let why = d
                    .properties
                    .and_then(|p| p.reason_string)
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default();
                self.info().last_error = Some(format!(
                    "{}: the broker disconnected this client ({:?}{why})",
                    self.cfg.broker.url(),
                    d.reason_code
                ));
            }
            Event::Outgoing(Outgoing::Publish(pkid)) => match self.fifo.pop_front() {
                Some((tag, at)) if pkid != 0 => {
                    self.pkids.insert(pkid, Sent { tag, at });
                }
                Some(_) => {}
                None => tracing::warn!("publish {pkid} left without a queued request"),
            },
            Event::Outgoing(Outgoing::Disconnect) => {
                if let Some(s) = &mut self.stopping {
                    s.done = true;
                }
            }
            _ => {}
        }
    }

    fn link_up(&mut self) {
        self.up = true;
        debug_assert!(self.fifo.is_empty() && self.pkids.is_empty() && self.inflight.is_empty());
        {
            let mut i = self.info();
            i.connections += 1;
        }
        self.set_link(LinkState::Connected);
        tracing::info!("connected to {}", self.cfg.broker.url());
        self.cursor = 0;
        if let Some(topic) = self.cfg.command_topic.clone() {
            // Clean start: the subscription is made again on every connection.
            if let Err(e) = self.client.try_subscribe(topic.clone(), QoS::AtLeastOnce) {
                tracing::warn!("cannot subscribe {topic}: {e}");
            }
        }
        let online = self.status_payload(StatusState::Online, StatusReason::Connected);
        let topic = self.cfg.topics.status();
        self.submit(Tag::Status(StatusState::Online), &topic, true, &online);
        let topic = self.cfg.topics.event();
        while let Some(ev) = self.events.pop_front() {
            if !self.submit(Tag::Event(ev.clone()), &topic, false, &ev) {
                self.events.push_front(ev);
                break;
            }
        }
        self.fill();
    }

    /// A message on the command topic: handed to the daemon as it came.
    fn on_command(&mut self, topic: &[u8], payload: &[u8]) {
        let Some(tx) = &self.commands else { return };
        if self.cfg.command_topic.as_deref().map(str::as_bytes) != Some(topic) {
            return;
        }
        if tx.try_send(payload.to_vec()).is_err() {
            tracing::warn!(
                "command dropped: {COMMAND_QUEUE} commands are already waiting for the daemon"
            );
        }
    }

    /// The connection is gone (error, ack timeout): forget what was on it; everything
    /// unacknowledged goes again after the next CONNACK.
    fn connection_lost(&mut self, el: &mut EventLoop, reason: String) {
        // Events rumqttc buffered before the failure (PUBACKs among them) are real.
        let stale: Vec<Event> = el.state.events.drain(..).collect();
        for ev in stale {
            self.on_event(ev);
        }
        // Clean start: rumqttc must not retransmit anything itself.
        el.pending.clear();
        let was_up = self.up;
        self.up = false;
        // Unacknowledged events go back to the front of the queue, oldest first.
        let mut sent: Vec<(Instant, String)> = self
            .pkids
            .drain()
            .filter_map(|(_, s)| match s.tag {
                Tag::Event(p) => Some((s.at, p)),
                _ => None,
            })
            .collect();
        sent.sort_by_key(|(at, _)| *at);
        let queued: Vec<String> = self
            .fifo
            .drain(..)
            .filter_map(|(t, _)| match t {
                Tag::Event(p) => Some(p),
                _ => None,
            })
            .collect();
        for p in sent.into_iter().map(|(_, p)| p).chain(queued).rev() {
            self.events.push_front(p);
        }
        self.inflight.clear();
        self.cursor = 0;
        if let Some(s) = &mut self.stopping {
            s.done = true;
        }
        if was_up {
            tracing::warn!("link to the broker lost: {reason}");
        } else {
            tracing::debug!("connection attempt failed: {reason}");
        }
        {
            let mut i = self.info();
            i.last_error = Some(reason);
            i.in_flight = 0;
        }
        self.set_link(LinkState::Disconnected);
        self.flush_acks();
    }

    fn on_puback(&mut self, ack: PubAck) {
        let Some(sent) = self.pkids.remove(&ack.pkid) else {
            return;
        };
        let ok = pub_ack_ok(&ack);
        let refusal = |what: &str, topic: &str| {
            let why = ack
                .properties
                .as_ref()
                .and_then(|p| p.reason_string.clone())
                .map(|s| format!(" ({s})"))
                .unwrap_or_default();
            format!(
                "broker refused {what} on {topic}: {:?}{why}; check that the broker's ACL lets \
                 this client write {}/#",
                ack.reason,
                self.cfg.topics.base()
            )
        };
        match sent.tag {
            Tag::Measurement(seq) => {
                self.inflight.remove(&seq);
                if ok {
                    let ms = sent.at.elapsed().as_secs_f64() * 1000.0;
                    self.acks.push((seq, now_ms()));
                    self.acked_unflushed.insert(seq);
                    let mut i = self.info();
                    i.acked += 1;
                    i.last_puback_at = Some(Utc::now());
                    if i.latencies_ms.len() == LATENCY_SAMPLES {
                        i.latencies_ms.pop_front();
                    }
                    i.latencies_ms.push_back(ms);
                } else {
                    let msg = refusal(
                        &format!("measurement seq {seq}"),
                        &self.cfg.topics.measurement(),
                    );
                    tracing::error!("{msg}");
                    self.refused
                        .insert(seq, Instant::now() + self.cfg.refused_retry);
                    let mut i = self.info();
                    i.refused += 1;
                    i.last_refusal = Some(msg);
                }
                self.info().in_flight = self.inflight.len();
                if self.acks.len() >= (self.cfg.window / 2).max(1) || self.inflight.is_empty() {
                    self.flush_acks();
                }
                if self.stopping.is_some() {
                    self.progress_stop();
                } else {
                    self.fill();
                }
            }
            Tag::Status(state) => {
                if !ok {
                    let msg = refusal("the status", &self.cfg.topics.status());
                    tracing::error!("{msg}");
                    let mut i = self.info();
                    i.refused += 1;
                    i.last_refusal = Some(msg);
                }
                if state == StatusState::Offline {
                    if let Some(s) = &mut self.stopping {
                        s.offline_acked = ok;
                        self.disconnect();
                    }
                }
            }
            Tag::Event(_) => {
                if !ok {
                    let msg = refusal("an event", &self.cfg.topics.event());
                    tracing::error!("{msg}");
                    let mut i = self.info();
                    i.refused += 1;
                    i.last_refusal = Some(msg);
                }
            }
        }
    }

    /// Send unacknowledged records, oldest first, until the window is full.
    fn fill(&mut self) {
        if !self.up || self.stopping.is_some() {
            return;
        }
        let gen = self.outbox.replay_generation();
        if gen != self.replay_gen {
            self.replay_gen = gen;
            self.cursor = 0;
        }
        let topic = self.cfg.topics.measurement();
        let now = Instant::now();
        while self.inflight.len() < self.cfg.window {
            let want = self.cfg.window - self.inflight.len();
            let rows = match self.outbox.unacked_after(self.cursor, want) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("{e}");
                    self.info().last_error = Some(e.to_string());
                    return;
                }
            };
            if rows.is_empty() {
                break;
            }
            for row in rows {
                if self.inflight.contains_key(&row.seq) || self.acked_unflushed.contains(&row.seq) {
                    self.cursor = row.seq;
                    continue;
                }
                if let Some(due) = self.refused.get(&row.seq) {
                    if *due > now {
                        self.cursor = row.seq;
                        continue;
                    }
                    self.refused.remove(&row.seq);
                }
                let payload = envelope_json(
                    &EnvelopeFields {
                        measurement_id: &row.measurement_id,
                        seq: row.seq,
                        instrument_id: self.cfg.topics.instrument_id(),
                        site: self.cfg.topics.site(),
                        acquired_at: &row.acquired_at,
                        committed_at: row.committed_at,
                        published_at: Utc::now(),
                        replay: row.replay,
                    },
                    &row.record_json,
                );
                // Topic, header and properties fit in 1 KiB.
                if payload.len() + 1024 > self.cfg.max_packet_bytes as usize {
                    let msg = format!(
                        "measurement seq {} is {} bytes, more than max_packet_bytes ({}); it stays \
                         in the outbox: raise the limit here and on the broker",
                        row.seq,
                        payload.len(),
                        self.cfg.max_packet_bytes
                    );
                    tracing::error!("{msg}");
                    self.refused.insert(row.seq, now + self.cfg.refused_retry);
                    let mut i = self.info();
                    i.refused += 1;
                    i.last_refusal = Some(msg);
                    drop(i);
                    self.cursor = row.seq;
                    continue;
                }
                if !self.submit(Tag::Measurement(row.seq), &topic, false, &payload) {
                    self.info().in_flight = self.inflight.len();
                    return;
                }
                self.cursor = row.seq;
                self.inflight.insert(row.seq, now);
            }
        }
        self.info().in_flight = self.inflight.len();
    }

    fn flush_acks(&mut self) {
        if self.acks.is_empty() {
            return;
        }
        match self.outbox.mark_acked(&self.acks) {
            Ok(()) => {
                for (seq, _) in self.acks.drain(..) {
                    self.acked_unflushed.remove(&seq);
                }
            }
            // Kept in memory and retried; at worst (process killed) they are sent again.
            Err(e) => tracing::warn!("cannot mark acknowledgements yet: {e}"),
        }
    }

    /// Periodic work; returns a reason to drop the connection, if any.
    fn housekeeping(&mut self) -> Option<String> {
        self.flush_acks();
        match self.outbox.changed_elsewhere() {
            Ok(true) => self.cursor = 0,
            Ok(false) => {}
            Err(e) => tracing::warn!("{e}"),
        }
        let now = Instant::now();
        if self.refused.values().any(|due| *due <= now) {
            self.cursor = 0;
        }
        if self
            .last_prune
            .is_none_or(|t| now.duration_since(t) > Duration::from_secs(60))
        {
            self.last_prune = Some(now);
            match self.outbox.prune_expired() {
                Ok(0) => {}
                Ok(n) => tracing::info!("pruned {n} acknowledged records past their retention"),
                Err(e) => tracing::warn!("{e}"),
            }
        }
        self.watch_outbox_refusal();
        if self.stopping.is_some() {
            self.progress_stop();
            return None;
        }
        if self.up {
            if let Some(oldest) = self.pkids.values().map(|s| s.at).min() {
                if now.duration_since(oldest) > self.cfg.ack_timeout {
                    return Some(format!(
                        "{}: no PUBACK for {} s; reconnecting to re-send",
                        self.cfg.broker.url(),
                        self.cfg.ack_timeout.as_secs()
                    ));
                }
            }
        }
        self.fill();
        None
    }

    /// Publish an event when the outbox starts or stops refusing acquisitions.
    fn watch_outbox_refusal(&mut self) {
        let now = match self.outbox.refusal() {
            Ok(r) => r,
            Err(_) => return,
        };
        if now == self.outbox_refusal {
            return;
        }
        let ev = match &now {
            Some(msg) => NewEvent::new(
                EventKind::Fault,
                "outbox_full",
                Severity::Error,
                msg.clone(),
            ),
            None => NewEvent::new(
                EventKind::Delivery,
                "outbox_accepting",
                Severity::Info,
                "the outbox accepts new acquisitions again",
            ),
        };
        self.outbox_refusal = now;
        self.queue_event(ev);
    }

    /// The stop sequence: in-flight PUBACKs (until the deadline), offline status, DISCONNECT.
    fn progress_stop(&mut self) {
        let Some(s) = &self.stopping else { return };
        let (deadline, offline_sent) = (s.deadline, s.offline_sent);
        let now = Instant::now();
        if !offline_sent && self.up && (self.inflight.is_empty() || now >= deadline) {
            if let Some(s) = &mut self.stopping {
                s.offline_sent = true;
            }
            let offline = self.status_payload(StatusState::Offline, StatusReason::CleanStop);
            let topic = self.cfg.topics.status();
            if !self.submit(Tag::Status(StatusState::Offline), &topic, true, &offline) {
                self.disconnect();
            }
        } else if now >= deadline + Duration::from_secs(2) {
            // The broker never answered: give up on the offline status.
            self.disconnect();
            if let Some(s) = &mut self.stopping {
                s.done = true;
            }
        }
    }

    fn begin_stop(&mut self, timeout: Duration, reply: Option<oneshot::Sender<ShutdownReport>>) {
        if let Some(s) = &mut self.stopping {
            if reply.is_some() {
                s.reply = reply;
            }
            return;
        }
        self.stopping = Some(Stopping {
            deadline: Instant::now() + timeout,
            offline_sent: false,
            offline_acked: false,
            disconnect_sent: false,
            done: !self.up,
            reply,
        });
        self.flush_acks();
        self.progress_stop();
    }

    fn disconnect(&mut self) {
        if let Some(s) = &mut self.stopping {
            if !s.disconnect_sent {
                s.disconnect_sent = true;
                if self.client.try_disconnect().is_err() {
                    s.done = true;
                }
            }
        }
    }

    fn finish_stop(&mut self) {
        self.flush_acks();
        self.set_link(LinkState::Stopped);
        if let Some(s) = self.stopping.take() {
            let report = ShutdownReport {
                offline_published: s.offline_acked,
                unacked_left: self.outbox.stats().map_or(0, |st| st.unacked),
            };
            if let Some(r) = s.reply {
                let _ = r.send(report);
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if self.stopping.is_some() {
            self.finish_stop();
        }
    }
}
