//! The publisher: one tokio task that drives rumqttc's MQTT 5 event loop and moves records
//! from the outbox to the broker.
//!
//! Owns: the connection (TCP or TLS, last will, clean start), the I/O the send window asks
//! for (reading rows, publishing, marking acknowledgements in the outbox), the retained
//! status (online after every connection, offline on a clean stop), events, the stop
//! sequence and the link facts of the status. The window itself — what is in flight, which
//! packet id carries which seq, what goes next — is pure state in [`super::window`]: this
//! task feeds it every CONNACK, row, packet id, PUBACK and lost connection, and does what
//! it returns. Does not own the outbox's storage or the record.
//!
//! Design notes:
//! - **lumiq owns delivery, not the MQTT session.** The connection uses clean start, and
//!   after every failure rumqttc's own retransmission queue is emptied: after each CONNACK
//!   the publisher re-sends everything unacknowledged from the outbox, oldest first. A record
//!   PUBACKed by the broker but lost to the connection before the PUBACK arrived is sent twice;
//!   the LIMS deduplicates by `measurement_id`.
//! - **PUBACK ↔ seq.** rumqttc assigns packet ids inside its event loop and reports each as
//!   `Outgoing::Publish(pkid)`, in the order the requests were queued. The publisher queues
//!   requests only from this task and the window remembers their order, so each pkid maps
//!   to the seq (or status, or event) it carries; `Incoming::PubAck(pkid)` then names the seq.
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

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rumqttc::v5::mqttbytes::v5::{LastWill, Packet, PubAck, PubAckReason};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use rumqttc::{Outgoing, TlsConfiguration, Transport};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::broker::explain;
pub use super::broker::{BrokerConfig, PublisherConfig};
use super::handle::{Cmd, LinkInfo, COMMAND_QUEUE, LATENCY_SAMPLES};
pub use super::handle::{PublisherHandle, ShutdownReport};
use super::outbox::{now_ms, Outbox};
use super::status::LinkState;
use super::tls::client_config;
use super::window::{Acked, Offer, Tag, Window};
use super::wire::{
    envelope_json, EnvelopeFields, EventKind, NewEvent, Severity, StatusMessage, StatusReason,
    StatusState,
};
use super::DeliveryError;

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
        let shared = Arc::new(Mutex::new(LinkInfo::new()));
        let (cmd_tx, cmd_rx) = mpsc::channel(1024);
        let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let driver = Driver {
            outbox: outbox.clone(),
            client,
            shared: shared.clone(),
            boot_id,
            booted_at,
            window: Window::new(cfg.window, cfg.refused_retry, cfg.event_queue),
            replay_gen: outbox.replay_generation(),
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
    /// What is in flight and what goes next (pure state; this task does the I/O).
    window: Window,
    /// The outbox's replay generation at the last fill.
    replay_gen: u64,
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
                    _ = d.outbox.notified(), if d.window.is_up() && d.stopping.is_none() => d.fill(),
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
        if self.window.is_up()
            && self.submit(
                Tag::Event(payload.clone()),
                &self.cfg.topics.event(),
                false,
                &payload,
            )
        {
            return;
        }
        let dropped = self.window.queue_event(payload);
        if dropped > 0 {
            self.info().events_dropped += dropped;
        }
    }

    /// Queue one QoS 1 publish to rumqttc; remembers its place for pkid correlation.
    fn submit(&mut self, tag: Tag, topic: &str, retain: bool, payload: &str) -> bool {
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload.to_string())
        {
            Ok(()) => {
                self.window.sent(tag, Instant::now());
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
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                let paired = self.window.outgoing(pkid);
                if !paired {
                    tracing::warn!("publish {pkid} left without a queued request");
                }
            }
            Event::Outgoing(Outgoing::Disconnect) => {
                if let Some(s) = &mut self.stopping {
                    s.done = true;
                }
            }
            _ => {}
        }
    }

    fn link_up(&mut self) {
        self.window.connected();
        {
            let mut i = self.info();
            i.connections += 1;
        }
        self.set_link(LinkState::Connected);
        tracing::info!("connected to {}", self.cfg.broker.url());
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
        while let Some(ev) = self.window.next_event() {
            if !self.submit(Tag::Event(ev.clone()), &topic, false, &ev) {
                self.window.unsent_event(ev);
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
        let was_up = self.window.is_up();
        // Unacknowledged events go back to the front of the queue, oldest first.
        self.window.lost();
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
        let ok = pub_ack_ok(&ack);
        let Some(acked) = self.window.puback(ack.pkid, ok, Instant::now(), now_ms()) else {
            return;
        };
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
        match acked {
            Acked::Measurement { seq: _, latency } => {
                let mut i = self.info();
                i.acked += 1;
                i.last_puback_at = Some(Utc::now());
                if i.latencies_ms.len() == LATENCY_SAMPLES {
                    i.latencies_ms.pop_front();
                }
                i.latencies_ms.push_back(latency.as_secs_f64() * 1000.0);
            }
            Acked::MeasurementRefused { seq, .. } => {
                let msg = refusal(
                    &format!("measurement seq {seq}"),
                    &self.cfg.topics.measurement(),
                );
                tracing::error!("{msg}");
                self.count_refusal(msg);
            }
            Acked::Status { state, ok } => {
                if !ok {
                    let msg = refusal("the status", &self.cfg.topics.status());
                    tracing::error!("{msg}");
                    self.count_refusal(msg);
                }
                if state == StatusState::Offline {
                    if let Some(s) = &mut self.stopping {
                        s.offline_acked = ok;
                        self.disconnect();
                    }
                }
                return;
            }
            Acked::Event { ok } => {
                if !ok {
                    let msg = refusal("an event", &self.cfg.topics.event());
                    tracing::error!("{msg}");
                    self.count_refusal(msg);
                }
                return;
            }
        }
        // A measurement's PUBACK: a slot is free.
        self.info().in_flight = self.window.in_flight();
        if self.window.marks_due() {
            self.flush_acks();
        }
        if self.stopping.is_some() {
            self.progress_stop();
        } else {
            self.fill();
        }
    }

    fn count_refusal(&self, msg: String) {
        let mut i = self.info();
        i.refused += 1;
        i.last_refusal = Some(msg);
    }

    /// Send unacknowledged records, oldest first, until the window is full.
    fn fill(&mut self) {
        if !self.window.is_up() || self.stopping.is_some() {
            return;
        }
        let gen = self.outbox.replay_generation();
        if gen != self.replay_gen {
            self.replay_gen = gen;
            self.window.rewind();
        }
        let topic = self.cfg.topics.measurement();
        let now = Instant::now();
        while let Some(read) = self.window.wants() {
            let rows = match self.outbox.unacked_after(read.after, read.limit) {
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
                if self.window.offer(row.seq, now) == Offer::Skip {
                    continue;
                }
                let payload = envelope_json(
                    &EnvelopeFields {
                        measurement_id: &row.measurement_id,
                        record_schema: &row.record_schema,
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
                    self.window.too_large(row.seq, now);
                    self.count_refusal(msg);
                    continue;
                }
                if !self.submit(Tag::Measurement(row.seq), &topic, false, &payload) {
                    self.info().in_flight = self.window.in_flight();
                    return;
                }
            }
        }
        self.info().in_flight = self.window.in_flight();
    }

    fn flush_acks(&mut self) {
        if self.window.acks_to_mark().is_empty() {
            return;
        }
        match self.outbox.mark_acked(self.window.acks_to_mark()) {
            Ok(()) => self.window.marked(),
            // Kept in memory and retried; at worst (process killed) they are sent again.
            Err(e) => tracing::warn!("cannot mark acknowledgements yet: {e}"),
        }
    }

    /// Periodic work; returns a reason to drop the connection, if any.
    fn housekeeping(&mut self) -> Option<String> {
        self.flush_acks();
        match self.outbox.changed_elsewhere() {
            Ok(true) => self.window.rewind(),
            Ok(false) => {}
            Err(e) => tracing::warn!("{e}"),
        }
        let now = Instant::now();
        self.window.retry_due(now);
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
        if let Some(wait) = self.window.oldest_wait(now) {
            if wait > self.cfg.ack_timeout {
                return Some(format!(
                    "{}: no PUBACK for {} s; reconnecting to re-send",
                    self.cfg.broker.url(),
                    self.cfg.ack_timeout.as_secs()
                ));
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
        if !offline_sent && self.window.is_up() && (self.window.in_flight() == 0 || now >= deadline)
        {
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
            done: !self.window.is_up(),
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
