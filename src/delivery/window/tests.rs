//! The send window, case by case: each case is a sequence of events (what the broker, the
//! MQTT client and the outbox did) and the exact publishes, acknowledgements and marks they
//! lead to, with the window's state after.
//!
//! `Sim` plays the publisher's part with a pretend outbox (a set of unacknowledged seqs) and
//! a pretend request queue, calling the window exactly as `publisher::Driver` does.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::*;

const RETRY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
enum Ev {
    /// CONNACK: the window is told, the online status and waiting events are published,
    /// then a fill.
    Connect,
    /// The connection failed (then acknowledgements are marked, as the publisher does).
    Lost,
    /// The outbox was notified of new rows: a fill.
    Fill,
    /// The client reported `Outgoing::Publish` with these packet ids, in order.
    Pkids(&'static [u16]),
    /// A PUBACK accepting the publish with this packet id.
    PubAck(u16),
    /// A PUBACK refusing it (e.g. the broker's ACL).
    PubRefused(u16),
    /// Housekeeping after this many seconds: marks, due retries, the ack timeout, a fill.
    Wait(u64),
    /// From now on marking acknowledgements in the outbox fails (true) or works (false).
    MarkFails(bool),
    /// The client's request queue holds at most this many publishes without a packet id.
    Room(usize),
    /// An event to publish.
    Event(&'static str),
}
use Ev::*;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    /// The online status was published.
    Online,
    /// Measurement seq was published.
    Publish(Seq),
    /// An event was published.
    PublishEvent(String),
    /// Events dropped from the full queue.
    EventsDropped(u64),
    /// Measurement seq was PUBACKed.
    Accepted(Seq),
    /// Measurement seq was refused by the broker.
    Refused(Seq),
    /// Measurement seq is too large to send.
    TooLarge(Seq),
    /// These seqs were marked acknowledged in the outbox, in this order.
    Marked(Vec<Seq>),
    /// A packet id was reported with no publish waiting for one.
    NoRequest(u16),
    /// Housekeeping: no PUBACK within the timeout.
    AckTimeout,
}
use Out::*;

struct Sim {
    w: Window,
    t0: Instant,
    now: Instant,
    /// The outbox's unacknowledged rows.
    unacked: BTreeSet<Seq>,
    /// Rows whose payload is larger than the largest packet.
    oversize: BTreeSet<Seq>,
    room: usize,
    mark_fails: bool,
    out: Vec<Out>,
}

impl Sim {
    fn new(window_records: usize, event_queue: usize, unacked: &[Seq], oversize: &[Seq]) -> Sim {
        // The clock's only read: an origin; every later moment is an offset from it.
        let t0 = Instant::now();
        Sim {
            w: Window::new(window_records, RETRY, event_queue),
            t0,
            now: t0,
            unacked: unacked.iter().copied().collect(),
            oversize: oversize.iter().copied().collect(),
            room: usize::MAX,
            mark_fails: false,
            out: Vec::new(),
        }
    }

    fn now_ms(&self) -> i64 {
        self.now.duration_since(self.t0).as_millis() as i64
    }

    /// The client's `try_publish`: refused when its request queue is full.
    fn publish(&mut self, tag: Tag) -> bool {
        if self.w.fifo.len() >= self.room {
            return false;
        }
        self.out.push(match &tag {
            Tag::Measurement(seq) => Publish(*seq),
            Tag::Status(_) => Online,
            Tag::Event(p) => PublishEvent(p.clone()),
        });
        self.w.sent(tag, self.now);
        true
    }

    fn fill(&mut self) {
        while let Some(read) = self.w.wants() {
            let rows: Vec<Seq> = self
                .unacked
                .range(read.after + 1..)
                .take(read.limit)
                .copied()
                .collect();
            if rows.is_empty() {
                break;
            }
            for seq in rows {
                if self.w.offer(seq, self.now) == Offer::Skip {
                    continue;
                }
                if self.oversize.contains(&seq) {
                    self.w.too_large(seq, self.now);
                    self.out.push(TooLarge(seq));
                    continue;
                }
                if !self.publish(Tag::Measurement(seq)) {
                    return;
                }
            }
        }
    }

    fn mark(&mut self) {
        if self.w.acks_to_mark().is_empty() || self.mark_fails {
            return;
        }
        let seqs: Vec<Seq> = self.w.acks_to_mark().iter().map(|(s, _)| *s).collect();
        for s in &seqs {
            self.unacked.remove(s);
        }
        self.out.push(Marked(seqs));
        self.w.marked();
    }

    fn puback(&mut self, pkid: u16, ok: bool) {
        let Some(acked) = self.w.puback(pkid, ok, self.now, self.now_ms()) else {
            return;
        };
        match acked {
            Acked::Measurement { seq, .. } => self.out.push(Accepted(seq)),
            Acked::MeasurementRefused { seq, retry_at } => {
                assert_eq!(retry_at, self.now + RETRY);
                self.out.push(Refused(seq));
            }
            Acked::Status { .. } | Acked::Event { .. } => return,
        }
        if self.w.marks_due() {
            self.mark();
        }
        self.fill();
    }

    fn apply(&mut self, ev: Ev) {
        match ev {
            Connect => {
                self.w.connected();
                self.publish(Tag::Status(StatusState::Online));
                while let Some(p) = self.w.next_event() {
                    if !self.publish(Tag::Event(p.clone())) {
                        self.w.unsent_event(p);
                        break;
                    }
                }
                self.fill();
            }
            Lost => {
                self.w.lost();
                self.mark();
            }
            Fill => self.fill(),
            Pkids(ids) => {
                for &id in ids {
                    if !self.w.outgoing(id) {
                        self.out.push(NoRequest(id));
                    }
                }
            }
            PubAck(id) => self.puback(id, true),
            PubRefused(id) => self.puback(id, false),
            Wait(s) => {
                self.now += Duration::from_secs(s);
                self.mark();
                self.w.retry_due(self.now);
                if self
                    .w
                    .oldest_wait(self.now)
                    .is_some_and(|d| d > Duration::from_secs(30))
                {
                    self.out.push(AckTimeout);
                    return;
                }
                self.fill();
            }
            MarkFails(f) => self.mark_fails = f,
            Room(n) => self.room = n,
            Event(p) => {
                if self.w.is_up() && self.publish(Tag::Event(p.into())) {
                    return;
                }
                let dropped = self.w.queue_event(p.into());
                if dropped > 0 {
                    self.out.push(EventsDropped(dropped));
                }
            }
        }
    }
}

struct Case {
    name: &'static str,
    window_records: usize,
    event_queue: usize,
    /// The outbox's unacknowledged rows at the start.
    unacked: &'static [Seq],
    oversize: &'static [Seq],
    events: &'static [Ev],
    out: Vec<Out>,
    /// Measurements in flight after the events.
    in_flight: &'static [Seq],
    /// The outbox's unacknowledged rows after the events.
    unacked_after: &'static [Seq],
}

fn check(case: Case) {
    let mut sim = Sim::new(
        case.window_records,
        case.event_queue,
        case.unacked,
        case.oversize,
    );
    for &ev in case.events {
        sim.apply(ev);
    }
    assert_eq!(sim.out, case.out, "{}: outputs", case.name);
    let in_flight: Vec<Seq> = sim.w.inflight.iter().copied().collect();
    assert_eq!(in_flight, case.in_flight, "{}: in flight", case.name);
    let unacked: Vec<Seq> = sim.unacked.iter().copied().collect();
    assert_eq!(unacked, case.unacked_after, "{}: outbox", case.name);
}

fn ev(p: &str) -> Out {
    PublishEvent(p.into())
}

#[test]
fn window_cases() {
    let cases = vec![
        Case {
            name: "a connection sends the oldest rows, up to the window",
            window_records: 3,
            event_queue: 8,
            unacked: &[1, 2, 3, 4, 5],
            oversize: &[],
            events: &[Connect],
            out: vec![Online, Publish(1), Publish(2), Publish(3)],
            in_flight: &[1, 2, 3],
            unacked_after: &[1, 2, 3, 4, 5],
        },
        Case {
            name: "nothing is sent while the link is down",
            window_records: 3,
            event_queue: 8,
            unacked: &[1, 2],
            oversize: &[],
            events: &[Fill, Wait(1)],
            out: vec![],
            in_flight: &[],
            unacked_after: &[1, 2],
        },
        Case {
            name: "window full: nothing more is sent until a PUBACK frees a slot",
            window_records: 2,
            event_queue: 8,
            unacked: &[1, 2, 3, 4],
            oversize: &[],
            // Packet ids: 1 the status, 2 and 3 the measurements.
            events: &[Connect, Fill, Wait(1), Pkids(&[1, 2, 3]), Fill, PubAck(2)],
            out: vec![
                Online,
                Publish(1),
                Publish(2),
                Accepted(1),
                Marked(vec![1]),
                Publish(3),
            ],
            in_flight: &[2, 3],
            unacked_after: &[2, 3, 4],
        },
        Case {
            name: "reconnect: everything unacknowledged is sent again, oldest first",
            window_records: 3,
            event_queue: 8,
            unacked: &[1, 2, 3, 4],
            oversize: &[],
            events: &[
                Connect,
                Pkids(&[1, 2, 3, 4]),
                PubAck(3), // seq 2
                Lost,
                Connect,
            ],
            out: vec![
                Online,
                Publish(1),
                Publish(2),
                Publish(3),
                Accepted(2),
                Marked(vec![2]),
                Publish(4),
                Online,
                Publish(1),
                Publish(3),
                Publish(4),
            ],
            in_flight: &[1, 3, 4],
            unacked_after: &[1, 3, 4],
        },
        Case {
            name: "reconnect: a PUBACK after the loss is not the new connection's",
            window_records: 3,
            event_queue: 8,
            unacked: &[1, 2],
            oversize: &[],
            events: &[Connect, Pkids(&[1, 2, 3]), Lost, PubAck(2), Connect],
            out: vec![
                Online,
                Publish(1),
                Publish(2),
                Online,
                Publish(1),
                Publish(2),
            ],
            in_flight: &[1, 2],
            unacked_after: &[1, 2],
        },
        Case {
            name: "an acknowledged row whose mark failed is not sent again after a reconnect",
            window_records: 4,
            event_queue: 8,
            unacked: &[1, 2, 3],
            oversize: &[],
            events: &[
                MarkFails(true),
                Connect,
                Pkids(&[1, 2, 3, 4]),
                PubAck(2), // seq 1
                PubAck(3), // seq 2: half a window of acks, the mark fails
                Lost,
                Connect,
                MarkFails(false),
                Wait(1),
            ],
            out: vec![
                Online,
                Publish(1),
                Publish(2),
                Publish(3),
                Accepted(1),
                Accepted(2),
                Online,
                Publish(3),
                Marked(vec![1, 2]),
            ],
            in_flight: &[3],
            unacked_after: &[3],
        },
        Case {
            name: "duplicate PUBACK: ignored, the row is acknowledged and marked once",
            window_records: 4,
            event_queue: 8,
            unacked: &[1, 2],
            oversize: &[],
            events: &[Connect, Pkids(&[1, 2, 3]), PubAck(2), PubAck(2), PubAck(3)],
            out: vec![
                Online,
                Publish(1),
                Publish(2),
                Accepted(1),
                Accepted(2),
                Marked(vec![1, 2]),
            ],
            in_flight: &[],
            unacked_after: &[],
        },
        Case {
            name: "refused: stays unacknowledged, passed over until its retry is due",
            window_records: 3,
            event_queue: 8,
            unacked: &[1, 2, 3],
            oversize: &[],
            events: &[
                Connect,
                Pkids(&[1, 2, 3, 4]),
                PubRefused(3), // seq 2
                PubAck(1),     // the status
                PubAck(2),     // seq 1
                PubAck(4),     // seq 3
                Fill,
                Wait(59),
                Wait(1),
            ],
            out: vec![
                Online,
                Publish(1),
                Publish(2),
                Publish(3),
                Refused(2),
                Accepted(1),
                Marked(vec![1]),
                Accepted(3),
                Marked(vec![3]),
                Publish(2),
            ],
            in_flight: &[2],
            unacked_after: &[2],
        },
        Case {
            name:
                "refused: its slot is free for the next row; a reconnect does not resend it early",
            window_records: 2,
            event_queue: 8,
            unacked: &[1, 2, 3],
            oversize: &[],
            events: &[Connect, Pkids(&[1, 2, 3]), PubRefused(2), Lost, Connect],
            out: vec![
                Online,
                Publish(1),
                Publish(2),
                Refused(1),
                Publish(3),
                Online,
                Publish(2),
                Publish(3),
            ],
            in_flight: &[2, 3],
            unacked_after: &[1, 2, 3],
        },
        Case {
            name: "too large: held back like a refusal, the next rows go",
            window_records: 4,
            event_queue: 8,
            unacked: &[1, 2, 3, 4],
            oversize: &[2],
            events: &[Connect, Wait(60)],
            out: vec![
                Online,
                Publish(1),
                TooLarge(2),
                Publish(3),
                Publish(4),
                // Due again: tried again, still too large.
                TooLarge(2),
            ],
            in_flight: &[1, 3, 4],
            unacked_after: &[1, 2, 3, 4],
        },
        Case {
            name: "packet ids: pairs survive the wrap from 65535 to 1 and out-of-order PUBACKs",
            window_records: 4,
            event_queue: 8,
            unacked: &[1, 2, 3],
            oversize: &[],
            events: &[
                Connect,
                Pkids(&[65534, 65535, 1, 2]),
                PubAck(1),     // seq 2
                PubAck(65535), // seq 1
                PubAck(65534), // the status
                PubAck(2),     // seq 3
            ],
            out: vec![
                Online,
                Publish(1),
                Publish(2),
                Publish(3),
                Accepted(2),
                Accepted(1),
                Marked(vec![2, 1]),
                Accepted(3),
                Marked(vec![3]),
            ],
            in_flight: &[],
            unacked_after: &[],
        },
        Case {
            name: "packet ids: a reused id is the new publish's",
            window_records: 1,
            event_queue: 8,
            unacked: &[1, 2],
            oversize: &[],
            events: &[
                Connect,
                Pkids(&[7, 8]),
                PubAck(8), // seq 1
                Pkids(&[8]),
                PubAck(8), // seq 2
            ],
            out: vec![
                Online,
                Publish(1),
                Accepted(1),
                Marked(vec![1]),
                Publish(2),
                Accepted(2),
                Marked(vec![2]),
            ],
            in_flight: &[],
            unacked_after: &[],
        },
        Case {
            name: "packet ids: one reported with nothing requested is noted, no pair is made",
            window_records: 2,
            event_queue: 8,
            unacked: &[1],
            oversize: &[],
            events: &[Connect, Pkids(&[1, 2, 3]), PubAck(3)],
            out: vec![Online, Publish(1), NoRequest(3)],
            in_flight: &[1],
            unacked_after: &[1],
        },
        Case {
            name: "request queue full: the fill stops and resumes at the row it stopped at",
            window_records: 4,
            event_queue: 8,
            unacked: &[1, 2, 3],
            oversize: &[],
            events: &[Room(2), Connect, Pkids(&[1, 2]), Fill],
            out: vec![Online, Publish(1), Publish(2), Publish(3)],
            in_flight: &[1, 2, 3],
            unacked_after: &[1, 2, 3],
        },
        Case {
            name: "no PUBACK within the timeout: the connection is given up",
            window_records: 2,
            event_queue: 8,
            unacked: &[1],
            oversize: &[],
            events: &[Connect, Pkids(&[1, 2]), Wait(30), Wait(1)],
            out: vec![Online, Publish(1), AckTimeout],
            in_flight: &[1],
            unacked_after: &[1],
        },
        Case {
            name: "events wait for the link, oldest dropped beyond the bound",
            window_records: 2,
            event_queue: 2,
            unacked: &[],
            oversize: &[],
            events: &[Event("a"), Event("b"), Event("c"), Connect],
            out: vec![EventsDropped(1), Online, ev("b"), ev("c")],
            in_flight: &[],
            unacked_after: &[],
        },
        Case {
            name: "events without a PUBACK at a loss go first after the reconnect, in order",
            window_records: 2,
            event_queue: 8,
            unacked: &[],
            oversize: &[],
            events: &[
                Connect,
                Event("a"),
                Event("b"),
                Event("c"),
                Pkids(&[1, 2, 3]), // status, a, b; c still waits for its id
                PubAck(2),         // a
                Lost,
                Event("d"),
                Connect,
            ],
            out: vec![
                Online,
                ev("a"),
                ev("b"),
                ev("c"),
                Online,
                ev("b"),
                ev("c"),
                ev("d"),
            ],
            in_flight: &[],
            unacked_after: &[],
        },
    ];
    for case in cases {
        check(case);
    }
}

#[test]
fn latency_and_ack_time_come_from_the_times_passed_in() {
    let t0 = Instant::now();
    let mut w = Window::new(2, RETRY, 8);
    w.connected();
    assert_eq!(w.wants(), Some(Read { after: 0, limit: 2 }));
    assert_eq!(w.offer(5, t0), Offer::Send);
    w.sent(Tag::Measurement(5), t0);
    assert_eq!(w.wants(), Some(Read { after: 5, limit: 1 }));
    assert!(w.outgoing(40));
    let later = t0 + Duration::from_millis(250);
    assert_eq!(w.oldest_wait(later), Some(Duration::from_millis(250)));
    assert_eq!(
        w.puback(40, true, later, 1_700_000_000_250),
        Some(Acked::Measurement {
            seq: 5,
            latency: Duration::from_millis(250)
        })
    );
    assert_eq!(w.acks_to_mark(), &[(5, 1_700_000_000_250)]);
    assert_eq!(w.oldest_wait(later), None);
    assert!(w.marks_due());
}

#[test]
fn status_and_event_pubacks_say_what_they_acknowledged() {
    let t0 = Instant::now();
    let mut w = Window::new(2, RETRY, 8);
    w.connected();
    w.sent(Tag::Status(StatusState::Offline), t0);
    w.sent(Tag::Event("e".into()), t0);
    assert!(w.outgoing(1) && w.outgoing(2));
    assert_eq!(
        w.puback(1, true, t0, 0),
        Some(Acked::Status {
            state: StatusState::Offline,
            ok: true
        })
    );
    assert_eq!(w.puback(2, false, t0, 0), Some(Acked::Event { ok: false }));
    assert_eq!(w.puback(2, true, t0, 0), None);
    assert!(w.acks_to_mark().is_empty());
}
