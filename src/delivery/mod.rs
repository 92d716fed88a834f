//! Delivery: every measurement record reaches the lab's LIMS over MQTT, whatever happens
//! to the broker, the network or this process.
//!
//! Owns: the durable outbox ([`outbox`]: SQLite, fsync'd commits, per-instrument `seq`), the
//! MQTT topics ([`topics`]) and the JSON that goes on the wire ([`wire`]), the publisher task
//! ([`publisher`]: MQTT 5 over rumqttc, the connection and the I/O), the send window it
//! drives ([`window`]: pure state; oldest first within a bounded window, PUBACKs correlated
//! by packet id, everything unacknowledged re-sent after every reconnect and restart), TLS
//! material ([`tls`]) and the [`DeliveryStatus`] snapshot `lumiq status` shows.
//!
//! Does not own: building the record ([`crate::record`]), the daemon's acquisition loop, or
//! `lumiq status`'s socket. Broker acknowledgements alone are not trusted for durability:
//! a record leaves the outbox's "unacknowledged" set only on a successful PUBACK, and stays
//! on disk for the retention period after that so a LIMS can ask for a replay.
//!
//! Data flow:
//!
//! ```text
//! record ──Outbox::commit (fsync)──▶ outbox.sqlite ──Publisher (window, QoS 1)──▶ broker
//!                                        ▲                    │
//!                                        └──── mark acked ◀───┘ PUBACK(pkid) ↔ seq
//! ```
//!
//! See `docs/delivery.md` for topics, payloads, semantics and TLS setup.

mod broker;
pub mod cli;
mod handle;
pub mod outbox;
pub mod publisher;
pub mod status;
pub mod synthetic;
pub mod tls;
pub mod topics;
pub mod window;
pub mod wire;

pub use outbox::{FullReason, Outbox, OutboxConfig, OutboxError, OutboxRow, OutboxStats, Seq};
pub use publisher::{BrokerConfig, Publisher, PublisherConfig, PublisherHandle, ShutdownReport};
pub use status::{DeliveryStatus, LinkState};
pub use tls::TlsFiles;
pub use topics::Topics;
pub use wire::{EventKind, EventMessage, Severity, StatusMessage};

/// Errors setting delivery up (configuration, TLS material). Runtime trouble with the broker
/// is not an error: it is reported in [`DeliveryStatus`] and retried.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("delivery configuration: {0}")]
    Config(String),
    #[error("{path}: {detail}")]
    TlsFile { path: String, detail: String },
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}
