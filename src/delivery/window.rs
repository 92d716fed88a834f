//! The send window: which records go to the broker next, what each packet id carries, and
//! what a PUBACK means. A pure state machine: its methods take what happened (a CONNACK, a
//! row offered by the outbox, a packet id assigned by the MQTT client, a PUBACK, a lost
//! connection) with the time passed in, change the state, and return what to do next.
//!
//! Owns: the publishes waiting for their packet id (in request order), packet id → what it
//! carries, the measurements in flight on this connection, the cursor into the outbox, the
//! PUBACKs not yet marked in the outbox, refusals waiting for their retry, and the events
//! waiting for the link.
//!
//! Does not own, and never does: reading rows, building payloads, publishing, marking
//! acknowledgements, reading the clock, counting for the status. The publisher
//! ([`super::publisher`]) does all of that with what this returns.
//!
//! One connection, as the publisher drives it:
//!
//! ```text
//! CONNACK ─▶ connected()
//! fill:      wants() ─▶ Read { after, limit } ─▶ outbox rows ─▶ offer(seq) ─▶ Send | Skip
//!            Send ─▶ publish; sent(Tag::Measurement(seq)) (or too_large(seq))
//! rumqttc:   Outgoing::Publish(pkid) ─▶ outgoing(pkid)          (request order)
//!            PubAck(pkid) ─▶ puback(pkid, ok) ─▶ Some(Acked) | None (duplicate, unknown)
//!            marks_due() ─▶ mark acks_to_mark() in the outbox ─▶ marked()
//! error:     lost()   (everything unacknowledged goes again after the next CONNACK)
//! ```
//!
//! Design: packet ids are assigned by rumqttc inside its event loop, not here. It reports
//! them as `Outgoing::Publish(pkid)` in the order the publishes were requested, so the
//! window keeps the requests in order and pairs each reported id with the oldest. Ids wrap
//! (…, 65535, 1, …); a pair lives only until its PUBACK, so a reused id is a new pair.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::outbox::Seq;
use super::wire::StatusState;

/// What a publish carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tag {
    /// The outbox row with this seq.
    Measurement(Seq),
    /// The retained status.
    Status(StatusState),
    /// An event, with its payload (events are kept in memory only, so the payload is too).
    Event(String),
}

/// Rows the window has room for: the next `limit` unacknowledged rows with seq > `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    pub after: Seq,
    pub limit: usize,
}

/// What to do with a row the outbox offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Publish it, then report it with [`Window::sent`] (or [`Window::too_large`]).
    Send,
    /// In flight, acknowledged but not marked yet, or refused and not due: passed over.
    Skip,
}

/// What a PUBACK acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acked {
    /// The broker has measurement `seq`; `latency` is from its publish to its PUBACK.
    Measurement { seq: Seq, latency: Duration },
    /// The broker refused measurement `seq`: it stays unacknowledged and is sent again at
    /// `retry_at`, not before.
    MeasurementRefused { seq: Seq, retry_at: Instant },
    /// A status publish, accepted (`ok`) or refused.
    Status { state: StatusState, ok: bool },
    /// An event publish, accepted (`ok`) or refused.
    Event { ok: bool },
}

#[derive(Debug)]
struct Sent {
    tag: Tag,
    at: Instant,
    /// Request order on this connection (ties in `at` are resolved by it).
    order: u64,
}

/// The send window of one publisher. See the module documentation for the protocol.
#[derive(Debug)]
pub struct Window {
    /// Most measurements in flight at once.
    capacity_records: usize,
    /// A refused measurement is retried after this long.
    refused_retry: Duration,
    /// Most events waiting for the link.
    event_queue: usize,
    /// CONNACK received on the current connection.
    up: bool,
    /// Publishes requested whose packet id is not known yet, in request order.
    fifo: VecDeque<Sent>,
    /// Packet id → what it carries, for publishes waiting for their PUBACK.
    pkids: HashMap<u16, Sent>,
    /// Measurements sent on this connection and not yet PUBACKed.
    inflight: BTreeSet<Seq>,
    /// Every unacknowledged row with seq ≤ cursor is in flight, refused (waiting for its
    /// retry), or acknowledged but not yet marked: the next fill starts after it.
    cursor: Seq,
    /// PUBACKed measurements not yet marked in the outbox, with their time (ms since the
    /// Unix epoch).
    acks: Vec<(Seq, i64)>,
    acked_unmarked: BTreeSet<Seq>,
    /// Refused (by the broker, or too large to send): retry at.
    refused: BTreeMap<Seq, Instant>,
    /// Event payloads waiting for the link, oldest first.
    events: VecDeque<String>,
    requests: u64,
}

impl Window {
    pub fn new(capacity_records: usize, refused_retry: Duration, event_queue: usize) -> Window {
        Window {
            capacity_records,
            refused_retry,
            event_queue,
            up: false,
            fifo: VecDeque::new(),
            pkids: HashMap::new(),
            inflight: BTreeSet::new(),
            cursor: 0,
            acks: Vec::new(),
            acked_unmarked: BTreeSet::new(),
            refused: BTreeMap::new(),
            events: VecDeque::new(),
            requests: 0,
        }
    }

    /// A CONNACK arrived: the link is up and the next fill starts from the oldest row.
    pub fn connected(&mut self) {
        self.up = true;
        debug_assert!(self.fifo.is_empty() && self.pkids.is_empty() && self.inflight.is_empty());
        self.cursor = 0;
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Measurements sent on this connection and not yet PUBACKed.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// The next fill starts again from the oldest unacknowledged row (a replay was
    /// requested, or another process changed the outbox).
    pub fn rewind(&mut self) {
        self.cursor = 0;
    }

    /// The rows to read for the next fill; `None` while the link is down or the window full.
    pub fn wants(&self) -> Option<Read> {
        if !self.up || self.inflight.len() >= self.capacity_records {
            return None;
        }
        Some(Read {
            after: self.cursor,
            limit: self.capacity_records - self.inflight.len(),
        })
    }

    /// One row of the fill, in seq order. A refusal whose retry is due is forgotten here:
    /// the row is sent again.
    pub fn offer(&mut self, seq: Seq, now: Instant) -> Offer {
        if self.inflight.contains(&seq) || self.acked_unmarked.contains(&seq) {
            self.cursor = seq;
            return Offer::Skip;
        }
        if let Some(due) = self.refused.get(&seq) {
            if *due > now {
                self.cursor = seq;
                return Offer::Skip;
            }
            self.refused.remove(&seq);
        }
        Offer::Send
    }

    /// An offered row is too large to publish: held back like a refusal, until `retry_at`
    /// (returned).
    pub fn too_large(&mut self, seq: Seq, now: Instant) -> Instant {
        let retry_at = now + self.refused_retry;
        self.refused.insert(seq, retry_at);
        self.cursor = seq;
        retry_at
    }

    /// A publish was handed to the MQTT client at `at`; its packet id comes with the next
    /// [`Window::outgoing`]. A measurement is in flight from now on.
    pub fn sent(&mut self, tag: Tag, at: Instant) {
        if let Tag::Measurement(seq) = tag {
            self.cursor = seq;
            self.inflight.insert(seq);
        }
        self.requests += 1;
        self.fifo.push_back(Sent {
            tag,
            at,
            order: self.requests,
        });
    }

    /// The client wrote the oldest requested publish with packet id `pkid` (0: QoS 0, no
    /// PUBACK will come). False when no publish was waiting for an id.
    pub fn outgoing(&mut self, pkid: u16) -> bool {
        match self.fifo.pop_front() {
            Some(sent) => {
                if pkid != 0 {
                    self.pkids.insert(pkid, sent);
                }
                true
            }
            None => false,
        }
    }

    /// A PUBACK for `pkid`, accepted (`ok`) or refused by the broker, at `now` (`now_ms`:
    /// the same moment in ms since the Unix epoch, kept as the acknowledgement time).
    /// `None` for a packet id with nothing waiting: a duplicate PUBACK, or one for a
    /// connection already given up. Each publish is acknowledged at most once.
    pub fn puback(&mut self, pkid: u16, ok: bool, now: Instant, now_ms: i64) -> Option<Acked> {
        let sent = self.pkids.remove(&pkid)?;
        Some(match sent.tag {
            Tag::Measurement(seq) => {
                self.inflight.remove(&seq);
                if ok {
                    self.acks.push((seq, now_ms));
                    self.acked_unmarked.insert(seq);
                    Acked::Measurement {
                        seq,
                        latency: now.saturating_duration_since(sent.at),
                    }
                } else {
                    let retry_at = now + self.refused_retry;
                    self.refused.insert(seq, retry_at);
                    Acked::MeasurementRefused { seq, retry_at }
                }
            }
            Tag::Status(state) => Acked::Status { state, ok },
            Tag::Event(_) => Acked::Event { ok },
        })
    }

    /// After a measurement's PUBACK: mark the acknowledgements now (half a window of them
    /// collected, or nothing left in flight).
    pub fn marks_due(&self) -> bool {
        self.acks.len() >= (self.capacity_records / 2).max(1) || self.inflight.is_empty()
    }

    /// PUBACKed measurements to mark in the outbox (seq, ms since the Unix epoch).
    pub fn acks_to_mark(&self) -> &[(Seq, i64)] {
        &self.acks
    }

    /// Everything [`Window::acks_to_mark`] returned is marked in the outbox.
    pub fn marked(&mut self) {
        for (seq, _) in self.acks.drain(..) {
            self.acked_unmarked.remove(&seq);
        }
    }

    /// Housekeeping: when a refusal's retry is due, the next fill starts from the oldest
    /// row so that it sees it. True when one is due.
    pub fn retry_due(&mut self, now: Instant) -> bool {
        let due = self.refused.values().any(|at| *at <= now);
        if due {
            self.cursor = 0;
        }
        due
    }

    /// How long the oldest publish on this connection has waited for its PUBACK.
    pub fn oldest_wait(&self, now: Instant) -> Option<Duration> {
        if !self.up {
            return None;
        }
        let oldest = self.pkids.values().map(|s| s.at).min()?;
        Some(now.saturating_duration_since(oldest))
    }

    /// An event that cannot be published now waits for the link; the oldest waiting are
    /// dropped beyond the queue's bound. Returns how many were dropped.
    pub fn queue_event(&mut self, payload: String) -> u64 {
        self.events.push_back(payload);
        let mut dropped = 0;
        while self.events.len() > self.event_queue {
            self.events.pop_front();
            dropped += 1;
        }
        dropped
    }

    /// The oldest waiting event, to publish now.
    pub fn next_event(&mut self) -> Option<String> {
        self.events.pop_front()
    }

    /// An event taken with [`Window::next_event`] could not be published: it waits again,
    /// first in line.
    pub fn unsent_event(&mut self, payload: String) {
        self.events.push_front(payload);
    }

    /// The connection is gone: forget what was on it. Events without their PUBACK go back
    /// to the front of the queue, oldest first; measurements are read from the outbox again
    /// after the next CONNACK; statuses are not re-sent (a new one follows the CONNACK).
    pub fn lost(&mut self) {
        self.up = false;
        let mut unacked: Vec<Sent> = self.pkids.drain().map(|(_, s)| s).collect();
        unacked.sort_by_key(|s| (s.at, s.order));
        let again: Vec<String> = unacked
            .into_iter()
            .chain(self.fifo.drain(..))
            .filter_map(|s| match s.tag {
                Tag::Event(p) => Some(p),
                _ => None,
            })
            .collect();
        for p in again.into_iter().rev() {
            self.events.push_front(p);
        }
        self.inflight.clear();
        self.cursor = 0;
    }
}

#[cfg(test)]
mod tests;
