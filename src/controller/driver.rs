//! The host's driver of the imager controller over a serial port (serialport crate).
//!
//! Owns: sending typed requests and matching replies by sequence number, per-command
//! timeouts (motion commands get longer), retries of transient failures (no reply, bad
//! checksum, busy) with a fresh sequence number each time — every command is idempotent —
//! and queueing the unsolicited events that arrive in between. Counts every fault.
//! Blocking, with short reads; [`Controller::poll_events`] never waits.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::protocol::{
    DeviceError, Event, Kind, LineDecoder, LineError, Message, Request, Response, Shelf, MAX_SEQ,
};

/// Where the controller is and how patient to be.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerConfig {
    /// Serial device, e.g. `/dev/ttyUSB0` (or a pseudo-terminal in tests).
    pub port: String,
    #[serde(default = "default_baud")]
    pub baud_rate: u32,
    /// Wait for a reply to a quick command, ms.
    #[serde(default = "default_reply_ms")]
    pub reply_timeout_ms: u64,
    /// Wait for a reply to a motion command (shelf, filter wheel), ms.
    #[serde(default = "default_motion_ms")]
    pub motion_timeout_ms: u64,
    /// Tries of one command (the first included).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
}

fn default_baud() -> u32 {
    115_200
}
fn default_reply_ms() -> u64 {
    1000
}
fn default_motion_ms() -> u64 {
    20_000
}
fn default_attempts() -> u32 {
    3
}

impl ControllerConfig {
    pub fn new(port: impl Into<String>) -> Self {
        ControllerConfig {
            port: port.into(),
            baud_rate: default_baud(),
            reply_timeout_ms: default_reply_ms(),
            motion_timeout_ms: default_motion_ms(),
            attempts: default_attempts(),
        }
    }
}

/// The controller layer's error. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("cannot open the imager controller's serial port {port}: {source}; check the cable, the port in the configuration, and that the service user is in group lumiq (systemd/99-lumiq.rules)")]
    Open {
        port: String,
        source: serialport::Error,
    },
    #[error("the imager controller's serial port failed: {0}; check the cable")]
    Io(#[from] std::io::Error),
    #[error("the imager controller did not answer {command} after {attempts} attempts; check that it is powered and cabled")]
    NoAnswer { command: String, attempts: u32 },
    #[error("the imager's door is open; close it and start again")]
    DoorOpen,
    #[error("the imager controller refused {command}: {code} {text}")]
    Refused {
        command: String,
        code: String,
        text: String,
    },
    #[error(
        "the imager controller answered {command} with {answer:?}, which lumiq does not understand"
    )]
    Unexpected { command: String, answer: String },
}

/// Fault and traffic counters of the serial line.
#[derive(Debug, Default)]
pub struct ControllerCounters {
    pub commands: AtomicU64,
    pub retries: AtomicU64,
    pub timeouts: AtomicU64,
    pub checksum_errors: AtomicU64,
    pub malformed_lines: AtomicU64,
    pub device_errors: AtomicU64,
    pub stale_replies: AtomicU64,
    pub events: AtomicU64,
    pub event_gaps: AtomicU64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ControllerCountersSnapshot {
    pub commands: u64,
    pub retries: u64,
    pub timeouts: u64,
    pub checksum_errors: u64,
    pub malformed_lines: u64,
    pub device_errors: u64,
    pub stale_replies: u64,
    pub events: u64,
    pub event_gaps: u64,
}

impl ControllerCounters {
    pub fn snapshot(&self) -> ControllerCountersSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ControllerCountersSnapshot {
            commands: g(&self.commands),
            retries: g(&self.retries),
            timeouts: g(&self.timeouts),
            checksum_errors: g(&self.checksum_errors),
            malformed_lines: g(&self.malformed_lines),
            device_errors: g(&self.device_errors),
            stale_replies: g(&self.stale_replies),
            events: g(&self.events),
            event_gaps: g(&self.event_gaps),
        }
    }
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Byte pipe to the controller: a serial port, or anything that reads with a timeout.
pub trait SerialLink: Read + Write + Send {
    /// Bytes waiting to be read (0 when none); must not block.
    fn available(&mut self) -> std::io::Result<usize>;
    fn set_read_timeout(&mut self, t: Duration) -> std::io::Result<()>;
}

impl SerialLink for Box<dyn serialport::SerialPort> {
    fn available(&mut self) -> std::io::Result<usize> {
        self.bytes_to_read()
            .map(|n| n as usize)
            .map_err(std::io::Error::from)
    }
    fn set_read_timeout(&mut self, t: Duration) -> std::io::Result<()> {
        self.set_timeout(t).map_err(std::io::Error::from)
    }
}

/// Identity of the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControllerInfo {
    pub model: String,
    pub serial: String,
    pub firmware: String,
}

/// The host's driver of the imager controller.
pub struct Controller {
    link: Box<dyn SerialLink>,
    decoder: LineDecoder,
    seq: u16,
    events: VecDeque<Event>,
    last_event: Option<u16>,
    counters: Arc<ControllerCounters>,
    cfg: ControllerConfig,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("port", &self.cfg.port)
            .finish()
    }
}

impl Controller {
    /// Open the serial port named in the configuration.
    pub fn open(cfg: ControllerConfig) -> Result<Controller, ControllerError> {
        let port = serialport::new(&cfg.port, cfg.baud_rate)
            .timeout(Duration::from_millis(20))
            .open()
            .map_err(|source| ControllerError::Open {
                port: cfg.port.clone(),
                source,
            })?;
        Ok(Controller::with_link(Box::new(port), cfg))
    }

    /// Drive a controller over an already open link.
    pub fn with_link(link: Box<dyn SerialLink>, cfg: ControllerConfig) -> Controller {
        Controller {
            link,
            decoder: LineDecoder::new(),
            seq: 0,
            events: VecDeque::new(),
            last_event: None,
            counters: Arc::new(ControllerCounters::default()),
            cfg,
        }
    }

    pub fn counters(&self) -> Arc<ControllerCounters> {
        self.counters.clone()
    }

    fn next_seq(&mut self) -> u16 {
        self.seq = if self.seq >= MAX_SEQ { 1 } else { self.seq + 1 };
        self.seq
    }

    /// Sort one parsed line: events are queued; replies and errors are returned.
    fn sort(&mut self, line: Result<Message, LineError>) -> Option<Message> {
        match line {
            Ok(m) if m.kind == Kind::Event => {
                match Event::from_message(&m) {
                    Some(e) => {
                        inc(&self.counters.events);
                        if let Some(last) = self.last_event {
                            let expected = if last >= MAX_SEQ { 0 } else { last + 1 };
                            if m.seq != expected && !matches!(e, Event::Reset { .. }) {
                                inc(&self.counters.event_gaps);
                                tracing::warn!(
                                    "imager controller: event counter jumped from {last} to {} (events lost)",
                                    m.seq
                                );
                            }
                        }
                        self.last_event = Some(m.seq);
                        self.events.push_back(e);
                    }
                    None => inc(&self.counters.malformed_lines),
                }
                None
            }
            Ok(m) if m.kind == Kind::Command => {
                inc(&self.counters.malformed_lines);
                None
            }
            Ok(m) => Some(m),
            Err(LineError::BadChecksum { .. }) => {
                inc(&self.counters.checksum_errors);
                None
            }
            Err(_) => {
                inc(&self.counters.malformed_lines);
                None
            }
        }
    }

    /// Read what is waiting (never blocks) and return the events seen so far.
    pub fn poll_events(&mut self) -> Result<Vec<Event>, ControllerError> {
        let n = self.link.available()?;
        if n > 0 {
            let mut buf = vec![0u8; n];
            let got = self.link.read(&mut buf)?;
            for line in self.decoder.push(&buf[..got]) {
                // A reply with no command outstanding is stale.
                if self.sort(line).is_some() {
                    inc(&self.counters.stale_replies);
                }
            }
        }
        Ok(self.events.drain(..).collect())
    }

    /// Send a request and wait for its reply.
    pub fn request(&mut self, req: &Request) -> Result<Response, ControllerError> {
        let timeout = Duration::from_millis(if req.is_motion() {
            self.cfg.motion_timeout_ms
        } else {
            self.cfg.reply_timeout_ms
        });
        let attempts = self.cfg.attempts.max(1);
        let command = req.to_message(0).name;
        for attempt in 0..attempts {
            if attempt > 0 {
                inc(&self.counters.retries);
            }
            let seq = self.next_seq();
            inc(&self.counters.commands);
            self.link.write_all(&req.to_message(seq).encode())?;
            self.link.flush()?;
            match self.wait_reply(seq, timeout)? {
                None => {
                    inc(&self.counters.timeouts);
                    tracing::warn!(
                        "imager controller: no reply to {command} (attempt {})",
                        attempt + 1
                    );
                }
                Some(m) if m.kind == Kind::Error => {
                    inc(&self.counters.device_errors);
                    let code = DeviceError::from_code(&m.name);
                    match code {
                        Some(DeviceError::DoorOpen) => return Err(ControllerError::DoorOpen),
                        Some(c) if c.is_transient() => {
                            tracing::warn!(
                                "imager controller: {command}: {} {}",
                                m.name,
                                m.args.join(",")
                            );
                        }
                        _ => {
                            return Err(ControllerError::Refused {
                                command,
                                code: m.name,
                                text: m.args.join(","),
                            })
                        }
                    }
                }
                Some(m) => {
                    if m.name != req.reply_name() {
                        return Err(ControllerError::Unexpected {
                            command,
                            answer: m.name,
                        });
                    }
                    return Response::from_message(&m).ok_or_else(|| ControllerError::Unexpected {
                        command,
                        answer: format!("{} {}", m.name, m.args.join(",")),
                    });
                }
            }
        }
        Err(ControllerError::NoAnswer { command, attempts })
    }

    /// Read until the reply (or error) with `seq` arrives, or `timeout` passes.
    fn wait_reply(
        &mut self,
        seq: u16,
        timeout: Duration,
    ) -> Result<Option<Message>, ControllerError> {
        let start = Instant::now();
        let mut buf = [0u8; 256];
        self.link.set_read_timeout(Duration::from_millis(20))?;
        while start.elapsed() < timeout {
            let n = match self.link.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => 0,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
                Err(e) => return Err(e.into()),
            };
            for line in self.decoder.push(&buf[..n]) {
                if let Some(m) = self.sort(line) {
                    // An error for seq 0 answers a line the controller could not read.
                    if m.seq == seq || (m.kind == Kind::Error && m.seq == 0) {
                        return Ok(Some(m));
                    }
                    inc(&self.counters.stale_replies);
                }
            }
        }
        Ok(None)
    }

    pub fn identify(&mut self) -> Result<ControllerInfo, ControllerError> {
        match self.request(&Request::Identify)? {
            Response::Identity {
                model,
                serial,
                firmware,
            } => Ok(ControllerInfo {
                model,
                serial,
                firmware,
            }),
            other => Err(self.unexpected("ID?", other)),
        }
    }

    fn unexpected(&self, command: &str, r: Response) -> ControllerError {
        ControllerError::Unexpected {
            command: command.into(),
            answer: format!("{r:?}"),
        }
    }

    /// (open, locked).
    pub fn door(&mut self) -> Result<(bool, bool), ControllerError> {
        match self.request(&Request::Door)? {
            Response::Door { open, locked } => Ok((open, locked)),
            other => Err(self.unexpected("DOOR?", other)),
        }
    }

    /// Engage or release the door lock (engaging fails while the door is open).
    pub fn set_lock(&mut self, on: bool) -> Result<(), ControllerError> {
        self.request(&Request::Lock(on)).map(|_| ())
    }

    pub fn set_led(&mut self, percent: u8) -> Result<(), ControllerError> {
        self.request(&Request::SetLed(percent)).map(|_| ())
    }

    /// Move the stage; returns the field of view there, cm.
    pub fn set_shelf(&mut self, shelf: Shelf) -> Result<f64, ControllerError> {
        match self.request(&Request::SetShelf(shelf))? {
            Response::Shelf { fov_cm, .. } => Ok(fov_cm),
            other => Err(self.unexpected("SHELF", other)),
        }
    }

    /// Turn the filter wheel; returns the filter's name.
    pub fn set_filter(&mut self, position: u8) -> Result<String, ControllerError> {
        match self.request(&Request::SetFilter(position))? {
            Response::Filter { name, .. } => Ok(name),
            other => Err(self.unexpected("FILTER", other)),
        }
    }

    /// Heated stage setpoint (`None`: heater off); returns the stage temperature, °C.
    pub fn set_stage(&mut self, setpoint_c: Option<f64>) -> Result<f64, ControllerError> {
        match self.request(&Request::SetStage(setpoint_c))? {
            Response::Stage { temp_c, .. } => Ok(temp_c),
            other => Err(self.unexpected("STAGE", other)),
        }
    }
}
