//! The imager controller's serial line protocol, sans-IO. Specified in
//! `firmware-interfaces/controller-serial.md`.
//!
//! ```text
//! $12,LED,40*3F1A\r\n          host command: sequence number, name, arguments
//! =12,LED,40*9C2B\r\n          reply: same sequence number
//! !12,E20,DOOR OPEN*1B7E\r\n   error reply: code and text
//! @7,DOOR,OPEN*5D21\r\n        unsolicited event: event counter, name, arguments
//! ```
//!
//! Owns: framing ([`LineDecoder`]: bytes in, lines out, with a length limit and resync),
//! the CRC-16 check, the generic [`Message`], and the typed layer ([`Request`],
//! [`Response`], [`Event`], [`DeviceError`]) both sides use. No I/O. Fuzzed
//! (`fuzz/fuzz_targets/serial_codec.rs`).

/// Longest line, CRLF included.
pub const MAX_LINE: usize = 96;
/// Largest sequence number and event counter (they wrap to 1 and 0).
pub const MAX_SEQ: u16 = 9999;

const CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_IBM_3740);

/// CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) of the bytes from the type character to
/// the last byte before `*`.
pub fn checksum(bytes: &[u8]) -> u16 {
    CRC.checksum(bytes)
}

/// A line that is not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("line longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("line does not start with $, =, ! or @")]
    BadStart,
    #[error("no *CRC16 at the end of the line")]
    NoChecksum,
    #[error("checksum {got:04X} does not match the line's {expected:04X}")]
    BadChecksum { expected: u16, got: u16 },
    #[error("malformed line: {0}")]
    Malformed(&'static str),
}

/// Kind of line, by its first character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Command,
    Reply,
    Error,
    Event,
}

impl Kind {
    fn start(self) -> u8 {
        match self {
            Kind::Command => b'$',
            Kind::Reply => b'=',
            Kind::Error => b'!',
            Kind::Event => b'@',
        }
    }
    fn from_start(b: u8) -> Option<Kind> {
        Some(match b {
            b'$' => Kind::Command,
            b'=' => Kind::Reply,
            b'!' => Kind::Error,
            b'@' => Kind::Event,
            _ => return None,
        })
    }
}

/// One line: kind, sequence number (event counter for events), name and arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub kind: Kind,
    pub seq: u16,
    pub name: String,
    pub args: Vec<String>,
}

fn field_ok(f: &str) -> bool {
    !f.is_empty()
        && f.bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && !b"$=!@*,".contains(&b))
}

impl Message {
    pub fn new(kind: Kind, seq: u16, name: &str, args: Vec<String>) -> Message {
        Message {
            kind,
            seq,
            name: name.to_string(),
            args,
        }
    }

    /// The line's bytes, CRLF included. Panics on a field the grammar forbids (a bug in
    /// the caller: every field lumiq writes comes from the typed layer).
    pub fn encode(&self) -> Vec<u8> {
        let mut body = vec![self.kind.start()];
        body.extend_from_slice(self.seq.to_string().as_bytes());
        for f in std::iter::once(&self.name).chain(self.args.iter()) {
            assert!(field_ok(f), "field {f:?} is not allowed on the serial line");
            body.push(b',');
            body.extend_from_slice(f.as_bytes());
        }
        let crc = checksum(&body);
        body.extend_from_slice(format!("*{crc:04X}\r\n").as_bytes());
        body
    }

    /// Parse one line (without or with its CR; no LF).
    pub fn parse(line: &[u8]) -> Result<Message, LineError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() + 2 > MAX_LINE {
            return Err(LineError::TooLong);
        }
        let kind = line
            .first()
            .and_then(|&b| Kind::from_start(b))
            .ok_or(LineError::BadStart)?;
        let star = line
            .iter()
            .rposition(|&b| b == b'*')
            .ok_or(LineError::NoChecksum)?;
        let (body, tail) = (&line[..star], &line[star + 1..]);
        if tail.len() != 4
            || !tail
                .iter()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase())
        {
            return Err(LineError::NoChecksum);
        }
        let expected = u16::from_str_radix(std::str::from_utf8(tail).expect("hex digits"), 16)
            .expect("four hex digits");
        let got = checksum(body);
        if got != expected {
            return Err(LineError::BadChecksum { expected, got });
        }
        let text =
            std::str::from_utf8(&body[1..]).map_err(|_| LineError::Malformed("not ASCII"))?;
        let mut fields = text.split(',');
        let seq_text = fields.next().unwrap_or("");
        if seq_text.is_empty()
            || seq_text.len() > 4
            || !seq_text.bytes().all(|b| b.is_ascii_digit())
            || (seq_text.len() > 1 && seq_text.starts_with('0'))
        {
            return Err(LineError::Malformed("sequence number is not 0-9999"));
        }
        let seq: u16 = seq_text
            .parse()
            .map_err(|_| LineError::Malformed("sequence number"))?;
        let name = fields.next().ok_or(LineError::Malformed("no name"))?;
        let args: Vec<String> = fields.map(str::to_string).collect();
        if !field_ok(name) || !args.iter().all(|a| field_ok(a)) {
            return Err(LineError::Malformed("empty field or forbidden character"));
        }
        Ok(Message {
            kind,
            seq,
            name: name.to_string(),
            args,
        })
    }
}

/// Splits a byte stream into lines. Bytes of an over-long line are dropped up to its end.
#[derive(Debug, Default, Clone)]
pub struct LineDecoder {
    buf: Vec<u8>,
    overflowed: bool,
}

impl LineDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes; returns every complete line, parsed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Result<Message, LineError>> {
        let mut out = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                if self.overflowed {
                    out.push(Err(LineError::TooLong));
                } else if !(self.buf.is_empty() || self.buf == b"\r") {
                    out.push(Message::parse(&self.buf));
                }
                self.buf.clear();
                self.overflowed = false;
            } else if self.overflowed {
            } else if self.buf.len() + 1 >= MAX_LINE {
                self.overflowed = true;
                self.buf.clear();
            } else {
                self.buf.push(b);
            }
        }
        out
    }
}

/// Stage positions (shelves) of the imager, each with its field of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Shelf {
    A,
    B,
    C,
    D,
}

impl Shelf {
    pub fn letter(self) -> char {
        match self {
            Shelf::A => 'A',
            Shelf::B => 'B',
            Shelf::C => 'C',
            Shelf::D => 'D',
        }
    }
    pub fn from_letter(s: &str) -> Option<Shelf> {
        Some(match s {
            "A" => Shelf::A,
            "B" => Shelf::B,
            "C" => Shelf::C,
            "D" => Shelf::D,
            _ => return None,
        })
    }
    /// Field of view across the image at this shelf, cm.
    pub fn fov_cm(self) -> f64 {
        match self {
            Shelf::A => 4.0,
            Shelf::B => 6.5,
            Shelf::C => 12.5,
            Shelf::D => 22.4,
        }
    }
}

/// Emission filter names by wheel position (0 is the open position).
pub const FILTERS: [&str; 8] = ["open", "500", "540", "580", "620", "660", "700", "740"];

/// A command from the host.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Ping,
    Identify,
    Door,
    Lock(bool),
    SetLed(u8),
    Led,
    SetShelf(Shelf),
    Shelf,
    SetFilter(u8),
    Filter,
    /// Heated stage setpoint, °C; `None` turns the heater off.
    SetStage(Option<f64>),
    Stage,
}

fn on_off(b: bool) -> String {
    if b { "ON" } else { "OFF" }.into()
}

fn parse_temp(s: &str) -> Option<f64> {
    let v: f64 = s.parse().ok()?;
    (v.is_finite() && s.len() <= 6).then_some(v)
}

impl Request {
    pub fn to_message(&self, seq: u16) -> Message {
        let (name, args): (&str, Vec<String>) = match self {
            Request::Ping => ("PING", vec![]),
            Request::Identify => ("ID?", vec![]),
            Request::Door => ("DOOR?", vec![]),
            Request::Lock(b) => ("LOCK", vec![on_off(*b)]),
            Request::SetLed(l) => ("LED", vec![l.to_string()]),
            Request::Led => ("LED?", vec![]),
            Request::SetShelf(s) => ("SHELF", vec![s.letter().to_string()]),
            Request::Shelf => ("SHELF?", vec![]),
            Request::SetFilter(p) => ("FILTER", vec![p.to_string()]),
            Request::Filter => ("FILTER?", vec![]),
            Request::SetStage(Some(t)) => ("STAGE", vec![format!("{t:.1}")]),
            Request::SetStage(None) => ("STAGE", vec!["OFF".into()]),
            Request::Stage => ("STAGE?", vec![]),
        };
        Message::new(Kind::Command, seq, name, args)
    }

    /// Device side: a command line's request, or the error to answer.
    pub fn from_message(m: &Message) -> Result<Request, DeviceError> {
        let a: Vec<&str> = m.args.iter().map(|s| s.as_str()).collect();
        let bad = || DeviceError::BadArgument;
        Ok(match (m.name.as_str(), a.as_slice()) {
            ("PING", []) => Request::Ping,
            ("ID?", []) => Request::Identify,
            ("DOOR?", []) => Request::Door,
            ("LOCK", ["ON"]) => Request::Lock(true),
            ("LOCK", ["OFF"]) => Request::Lock(false),
            ("LED", [v]) => {
                let l: u8 = v.parse().map_err(|_| bad())?;
                if l > 100 || v.len() > 3 {
                    return Err(bad());
                }
                Request::SetLed(l)
            }
            ("LED?", []) => Request::Led,
            ("SHELF", [s]) => Request::SetShelf(Shelf::from_letter(s).ok_or_else(bad)?),
            ("SHELF?", []) => Request::Shelf,
            ("FILTER", [p]) => {
                let p: u8 = p.parse().map_err(|_| bad())?;
                if p as usize >= FILTERS.len() {
                    return Err(bad());
                }
                Request::SetFilter(p)
            }
            ("FILTER?", []) => Request::Filter,
            ("STAGE", ["OFF"]) => Request::SetStage(None),
            ("STAGE", [t]) => {
                let t = parse_temp(t).ok_or_else(bad)?;
                if !(20.0..=42.0).contains(&t) {
                    return Err(bad());
                }
                Request::SetStage(Some(t))
            }
            ("STAGE?", []) => Request::Stage,
            (
                "PING" | "ID?" | "DOOR?" | "LOCK" | "LED" | "LED?" | "SHELF" | "SHELF?" | "FILTER"
                | "FILTER?" | "STAGE" | "STAGE?",
                _,
            ) => return Err(bad()),
            _ => return Err(DeviceError::UnknownCommand),
        })
    }

    /// The name its reply carries.
    pub fn reply_name(&self) -> &'static str {
        match self {
            Request::Ping => "PING",
            Request::Identify => "ID",
            Request::Door => "DOOR",
            Request::Lock(_) => "LOCK",
            Request::SetLed(_) | Request::Led => "LED",
            Request::SetShelf(_) | Request::Shelf => "SHELF",
            Request::SetFilter(_) | Request::Filter => "FILTER",
            Request::SetStage(_) | Request::Stage => "STAGE",
        }
    }

    /// Moves something: the reply comes when the motion is done.
    pub fn is_motion(&self) -> bool {
        matches!(self, Request::SetShelf(_) | Request::SetFilter(_))
    }
}

/// A successful reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    Pong,
    Identity {
        model: String,
        serial: String,
        firmware: String,
    },
    Door {
        open: bool,
        locked: bool,
    },
    Lock(bool),
    Led(u8),
    Shelf {
        shelf: Shelf,
        fov_cm: f64,
    },
    Filter {
        position: u8,
        name: String,
    },
    Stage {
        setpoint_c: Option<f64>,
        temp_c: f64,
    },
}

impl Response {
    pub fn to_message(&self, seq: u16) -> Message {
        let (name, args): (&str, Vec<String>) = match self {
            Response::Pong => ("PING", vec![]),
            Response::Identity {
                model,
                serial,
                firmware,
            } => ("ID", vec![model.clone(), serial.clone(), firmware.clone()]),
            Response::Door { open, locked } => (
                "DOOR",
                vec![
                    if *open { "OPEN" } else { "CLOSED" }.into(),
                    if *locked { "LOCKED" } else { "UNLOCKED" }.into(),
                ],
            ),
            Response::Lock(b) => ("LOCK", vec![on_off(*b)]),
            Response::Led(l) => ("LED", vec![l.to_string()]),
            Response::Shelf { shelf, fov_cm } => (
                "SHELF",
                vec![shelf.letter().to_string(), format!("{fov_cm:.1}")],
            ),
            Response::Filter { position, name } => {
                ("FILTER", vec![position.to_string(), name.clone()])
            }
            Response::Stage { setpoint_c, temp_c } => (
                "STAGE",
                vec![
                    setpoint_c.map_or("OFF".to_string(), |t| format!("{t:.1}")),
                    format!("{temp_c:.1}"),
                ],
            ),
        };
        Message::new(Kind::Reply, seq, name, args)
    }

    /// Host side: the typed reply of a reply line.
    pub fn from_message(m: &Message) -> Option<Response> {
        let a: Vec<&str> = m.args.iter().map(|s| s.as_str()).collect();
        Some(match (m.name.as_str(), a.as_slice()) {
            ("PING", []) => Response::Pong,
            ("ID", [model, serial, fw]) => Response::Identity {
                model: model.to_string(),
                serial: serial.to_string(),
                firmware: fw.to_string(),
            },
            ("DOOR", [o, l]) => Response::Door {
                open: match *o {
                    "OPEN" => true,
                    "CLOSED" => false,
                    _ => return None,
                },
                locked: match *l {
                    "LOCKED" => true,
                    "UNLOCKED" => false,
                    _ => return None,
                },
            },
            ("LOCK", ["ON"]) => Response::Lock(true),
            ("LOCK", ["OFF"]) => Response::Lock(false),
            ("LED", [l]) => Response::Led(l.parse().ok().filter(|l| *l <= 100)?),
            ("SHELF", [s, f]) => Response::Shelf {
                shelf: Shelf::from_letter(s)?,
                fov_cm: parse_temp(f).filter(|f| *f > 0.0)?,
            },
            ("FILTER", [p, n]) => Response::Filter {
                position: p
                    .parse()
                    .ok()
                    .filter(|p: &u8| (*p as usize) < FILTERS.len())?,
                name: n.to_string(),
            },
            ("STAGE", [sp, t]) => Response::Stage {
                setpoint_c: if *sp == "OFF" {
                    None
                } else {
                    Some(parse_temp(sp)?)
                },
                temp_c: parse_temp(t)?,
            },
            _ => return None,
        })
    }
}

/// Error codes of `!` replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceError {
    BadChecksum,
    UnknownCommand,
    BadArgument,
    Malformed,
    DoorOpen,
    MotionFault,
    Busy,
    HardwareFault,
    Other(u8),
}

impl DeviceError {
    pub fn code(self) -> String {
        let n = match self {
            DeviceError::BadChecksum => 1,
            DeviceError::UnknownCommand => 2,
            DeviceError::BadArgument => 3,
            DeviceError::Malformed => 4,
            DeviceError::DoorOpen => 20,
            DeviceError::MotionFault => 21,
            DeviceError::Busy => 22,
            DeviceError::HardwareFault => 30,
            DeviceError::Other(n) => n,
        };
        format!("E{n:02}")
    }

    pub fn from_code(s: &str) -> Option<DeviceError> {
        let n: u8 = s.strip_prefix('E')?.parse().ok()?;
        (s.len() == 3).then_some(())?;
        Some(match n {
            1 => DeviceError::BadChecksum,
            2 => DeviceError::UnknownCommand,
            3 => DeviceError::BadArgument,
            4 => DeviceError::Malformed,
            20 => DeviceError::DoorOpen,
            21 => DeviceError::MotionFault,
            22 => DeviceError::Busy,
            30 => DeviceError::HardwareFault,
            n => DeviceError::Other(n),
        })
    }

    pub fn text(self) -> &'static str {
        match self {
            DeviceError::BadChecksum => "BAD CHECKSUM",
            DeviceError::UnknownCommand => "UNKNOWN COMMAND",
            DeviceError::BadArgument => "BAD ARGUMENT",
            DeviceError::Malformed => "MALFORMED LINE",
            DeviceError::DoorOpen => "DOOR OPEN",
            DeviceError::MotionFault => "MOTION FAULT",
            DeviceError::Busy => "BUSY",
            DeviceError::HardwareFault => "HARDWARE FAULT",
            DeviceError::Other(_) => "ERROR",
        }
    }

    /// Worth sending the command again.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            DeviceError::BadChecksum | DeviceError::Busy | DeviceError::Malformed
        )
    }

    pub fn to_message(self, seq: u16) -> Message {
        Message::new(Kind::Error, seq, &self.code(), vec![self.text().into()])
    }
}

/// An unsolicited event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Event {
    DoorOpened,
    DoorClosed,
    StartButton,
    /// The controller (re)booted.
    Reset {
        firmware: String,
    },
}

impl Event {
    pub fn to_message(&self, counter: u16) -> Message {
        let (name, args): (&str, Vec<String>) = match self {
            Event::DoorOpened => ("DOOR", vec!["OPEN".into()]),
            Event::DoorClosed => ("DOOR", vec!["CLOSED".into()]),
            Event::StartButton => ("BUTTON", vec!["START".into()]),
            Event::Reset { firmware } => ("RESET", vec![firmware.clone()]),
        };
        Message::new(Kind::Event, counter, name, args)
    }

    pub fn from_message(m: &Message) -> Option<Event> {
        let a: Vec<&str> = m.args.iter().map(|s| s.as_str()).collect();
        Some(match (m.name.as_str(), a.as_slice()) {
            ("DOOR", ["OPEN"]) => Event::DoorOpened,
            ("DOOR", ["CLOSED"]) => Event::DoorClosed,
            ("BUTTON", ["START"]) => Event::StartButton,
            ("RESET", [fw]) => Event::Reset {
                firmware: fw.to_string(),
            },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_is_ccitt_false() {
        assert_eq!(checksum(b"123456789"), 0x29B1);
    }

    #[test]
    fn lines_round_trip() {
        let m = Request::SetLed(40).to_message(12);
        let bytes = m.encode();
        assert!(bytes.starts_with(b"$12,LED,40*"));
        assert!(bytes.ends_with(b"\r\n"));
        let mut d = LineDecoder::new();
        let out = d.push(&bytes[..5]);
        assert!(out.is_empty());
        let out = d.push(&bytes[5..]);
        assert_eq!(out, vec![Ok(m)]);
    }

    #[test]
    fn a_flipped_bit_is_a_checksum_error() {
        let mut bytes = Request::Door.to_message(3).encode();
        bytes[2] ^= 0x01; // "3" -> "2"
        let out = LineDecoder::new().push(&bytes);
        assert!(
            matches!(out[0], Err(LineError::BadChecksum { .. })),
            "{out:?}"
        );
    }

    #[test]
    fn over_long_lines_are_dropped_and_the_next_line_parses() {
        let mut d = LineDecoder::new();
        let mut bytes = vec![b'x'; 300];
        bytes.push(b'\n');
        bytes.extend(Event::StartButton.to_message(1).encode());
        let out = d.push(&bytes);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], Err(LineError::TooLong));
        assert_eq!(
            Event::from_message(out[1].as_ref().unwrap()),
            Some(Event::StartButton)
        );
    }

    #[test]
    fn requests_and_replies_round_trip_through_lines() {
        let reqs = [
            Request::Ping,
            Request::Identify,
            Request::Door,
            Request::Lock(true),
            Request::SetLed(100),
            Request::Led,
            Request::SetShelf(Shelf::D),
            Request::Shelf,
            Request::SetFilter(3),
            Request::Filter,
            Request::SetStage(Some(37.0)),
            Request::SetStage(None),
            Request::Stage,
        ];
        for r in reqs {
            let m =
                Message::parse(r.to_message(9999).encode().strip_suffix(b"\n").unwrap()).unwrap();
            assert_eq!(Request::from_message(&m), Ok(r.clone()));
        }
        let resps = [
            Response::Pong,
            Response::Door {
                open: true,
                locked: false,
            },
            Response::Shelf {
                shelf: Shelf::C,
                fov_cm: 12.5,
            },
            Response::Filter {
                position: 0,
                name: "open".into(),
            },
            Response::Stage {
                setpoint_c: Some(37.0),
                temp_c: 36.2,
            },
            Response::Stage {
                setpoint_c: None,
                temp_c: 21.0,
            },
        ];
        for r in resps {
            let m = Message::parse(r.to_message(1).encode().strip_suffix(b"\n").unwrap()).unwrap();
            assert_eq!(Response::from_message(&m), Some(r.clone()));
        }
    }

    #[test]
    fn device_rejects_bad_commands() {
        let m = |name: &str, args: &[&str]| {
            Message::new(
                Kind::Command,
                1,
                name,
                args.iter().map(|s| s.to_string()).collect(),
            )
        };
        assert_eq!(
            Request::from_message(&m("LED", &["101"])),
            Err(DeviceError::BadArgument)
        );
        assert_eq!(
            Request::from_message(&m("SHELF", &["E"])),
            Err(DeviceError::BadArgument)
        );
        assert_eq!(
            Request::from_message(&m("FLY", &[])),
            Err(DeviceError::UnknownCommand)
        );
        assert_eq!(DeviceError::from_code("E20"), Some(DeviceError::DoorOpen));
    }
}
