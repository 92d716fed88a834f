//! Where and how the publisher reaches the broker, and how it sends: [`BrokerConfig`]
//! (address, TLS, credentials, keep-alive) and [`PublisherConfig`] (topics, send window,
//! timeouts, limits); and a failed connection in words that say what to check
//! ([`explain`]).
//!
//! Does not own: the connection itself or the TLS material's parsing ([`super::publisher`],
//! [`super::tls`]).

use std::time::Duration;

use rumqttc::v5::{ConnectionError, StateError};

use super::tls::TlsFiles;
use super::topics::Topics;

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

/// A connection failure in words that say what to check.
pub(super) fn explain(e: &ConnectionError, b: &BrokerConfig) -> String {
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
