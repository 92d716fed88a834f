//! The camera's control channel: GenCP-style command and acknowledge packets, as USB3
//! Vision carries them over a pair of bulk endpoints. Specified in
//! `firmware-interfaces/camera-usb.md`.
//!
//! Owns: the byte layout of packets (encode and decode, both directions), the status
//! codes, and [`ControlClient`], the host's sans-IO state (request ids, the outstanding
//! request, pending acknowledges). No I/O: bytes in, events out; the driver moves the
//! bytes. Every decode path is fuzzed (`fuzz/fuzz_targets/usb_codec.rs`).

use std::time::Duration;

/// `"U3VC"` little-endian: the first four bytes of every control packet.
pub const PREFIX: u32 = 0x4356_3355;
/// Bytes of the header (prefix, flags/status, id, length, request id).
pub const HEADER_LEN: usize = 12;
/// Largest command-specific data a packet may carry.
pub const MAX_SCD_LEN: usize = 1024;
/// Largest read the host asks for in one READMEM.
pub const MAX_READ_LEN: u16 = 512;
/// Flags bit: the host asks for an acknowledge (always set by lumiq).
pub const FLAG_REQUEST_ACK: u16 = 0x4000;

pub const READMEM_CMD: u16 = 0x0800;
pub const READMEM_ACK: u16 = 0x0801;
pub const WRITEMEM_CMD: u16 = 0x0802;
pub const WRITEMEM_ACK: u16 = 0x0803;
pub const PENDING_ACK: u16 = 0x0805;

/// GenCP status codes of an acknowledge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    NotImplemented,
    InvalidParameter,
    InvalidAddress,
    WriteProtect,
    BadAlignment,
    AccessDenied,
    Busy,
    MsgTimeout,
    InvalidHeader,
    WrongConfig,
    Error,
    Other(u16),
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::Success => 0x0000,
            Status::NotImplemented => 0x8001,
            Status::InvalidParameter => 0x8002,
            Status::InvalidAddress => 0x8003,
            Status::WriteProtect => 0x8004,
            Status::BadAlignment => 0x8005,
            Status::AccessDenied => 0x8006,
            Status::Busy => 0x8007,
            Status::MsgTimeout => 0x800B,
            Status::InvalidHeader => 0x800E,
            Status::WrongConfig => 0x800F,
            Status::Error => 0x8FFF,
            Status::Other(c) => c,
        }
    }

    pub fn from_code(c: u16) -> Status {
        match c {
            0x0000 => Status::Success,
            0x8001 => Status::NotImplemented,
            0x8002 => Status::InvalidParameter,
            0x8003 => Status::InvalidAddress,
            0x8004 => Status::WriteProtect,
            0x8005 => Status::BadAlignment,
            0x8006 => Status::AccessDenied,
            0x8007 => Status::Busy,
            0x800B => Status::MsgTimeout,
            0x800E => Status::InvalidHeader,
            0x800F => Status::WrongConfig,
            0x8FFF => Status::Error,
            c => Status::Other(c),
        }
    }

    /// Worth retrying after a pause.
    pub fn is_transient(self) -> bool {
        matches!(self, Status::Busy | Status::MsgTimeout)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::NotImplemented => "command not implemented",
            Status::InvalidParameter => "invalid parameter (value out of range)",
            Status::InvalidAddress => "invalid address",
            Status::WriteProtect => "register is read-only",
            Status::BadAlignment => "bad alignment",
            Status::AccessDenied => "access denied",
            Status::Busy => "device busy",
            Status::MsgTimeout => "device message timeout",
            Status::InvalidHeader => "invalid packet header",
            Status::WrongConfig => "wrong configuration for this command",
            Status::Error => "device error",
            Status::Other(_) => "unknown status",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#06x} ({})", self.code(), self.describe())
    }
}

/// A malformed or unexpected packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("packet of {got} bytes is shorter than its {need}-byte header or declared length")]
    Truncated { need: usize, got: usize },
    #[error("packet prefix {0:#010x} is not U3VC")]
    BadPrefix(u32),
    #[error("packet declares {declared} bytes of data but carries {actual}")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("data length {0} exceeds the {MAX_SCD_LEN}-byte limit")]
    TooLong(usize),
    #[error("unknown command or acknowledge id {0:#06x}")]
    UnknownId(u16),
    #[error("malformed data for id {id:#06x}: {what}")]
    BadData { id: u16, what: &'static str },
    #[error("acknowledge id {got:#06x} does not answer the outstanding command (expected {expected:#06x})")]
    WrongAck { expected: u16, got: u16 },
    #[error("read acknowledge carries {got} bytes, {expected} were asked for")]
    WrongReadLength { expected: usize, got: usize },
    #[error("an acknowledge arrived with no command outstanding")]
    NothingOutstanding,
}

/// A command from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    ReadMem { address: u64, length: u16 },
    WriteMem { address: u64, data: Vec<u8> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandPacket {
    pub flags: u16,
    pub request_id: u16,
    pub command: Command,
}

/// The data of an acknowledge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckBody {
    ReadMem(Vec<u8>),
    WriteMem {
        length_written: u16,
    },
    Pending {
        timeout_ms: u16,
    },
    /// An error acknowledge (status other than success) carries no data.
    Empty,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckPacket {
    pub status: Status,
    /// READMEM_ACK, WRITEMEM_ACK or PENDING_ACK.
    pub ack_id: u16,
    pub request_id: u16,
    pub body: AckBody,
}

fn header(word1: u16, id: u16, scd_len: usize, request_id: u16) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + scd_len);
    v.extend_from_slice(&PREFIX.to_le_bytes());
    v.extend_from_slice(&word1.to_le_bytes());
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(&(scd_len as u16).to_le_bytes());
    v.extend_from_slice(&request_id.to_le_bytes());
    v
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(a)
}

/// Split a packet into (word1, id, request id, scd), checking prefix and lengths.
fn split(bytes: &[u8]) -> Result<(u16, u16, u16, &[u8]), ControlError> {
    if bytes.len() < HEADER_LEN {
        return Err(ControlError::Truncated {
            need: HEADER_LEN,
            got: bytes.len(),
        });
    }
    let prefix = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if prefix != PREFIX {
        return Err(ControlError::BadPrefix(prefix));
    }
    let word1 = u16_at(bytes, 4);
    let id = u16_at(bytes, 6);
    let len = u16_at(bytes, 8) as usize;
    let request_id = u16_at(bytes, 10);
    if len > MAX_SCD_LEN {
        return Err(ControlError::TooLong(len));
    }
    let scd = &bytes[HEADER_LEN..];
    if scd.len() != len {
        return Err(ControlError::LengthMismatch {
            declared: len,
            actual: scd.len(),
        });
    }
    Ok((word1, id, request_id, scd))
}

impl CommandPacket {
    pub fn encode(&self) -> Vec<u8> {
        match &self.command {
            Command::ReadMem { address, length } => {
                let mut v = header(self.flags, READMEM_CMD, 12, self.request_id);
                v.extend_from_slice(&address.to_le_bytes());
                v.extend_from_slice(&0u16.to_le_bytes());
                v.extend_from_slice(&length.to_le_bytes());
                v
            }
            Command::WriteMem { address, data } => {
                let mut v = header(self.flags, WRITEMEM_CMD, 8 + data.len(), self.request_id);
                v.extend_from_slice(&address.to_le_bytes());
                v.extend_from_slice(data);
                v
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<CommandPacket, ControlError> {
        let (flags, id, request_id, scd) = split(bytes)?;
        let command = match id {
            READMEM_CMD => {
                if scd.len() != 12 {
                    return Err(ControlError::BadData {
                        id,
                        what:
                            "READMEM needs an 8-byte address, 2 reserved bytes and a 2-byte length",
                    });
                }
                Command::ReadMem {
                    address: u64_at(scd, 0),
                    length: u16_at(scd, 10),
                }
            }
            WRITEMEM_CMD => {
                if scd.len() < 8 {
                    return Err(ControlError::BadData {
                        id,
                        what: "WRITEMEM needs an 8-byte address",
                    });
                }
                Command::WriteMem {
                    address: u64_at(scd, 0),
                    data: scd[8..].to_vec(),
                }
            }
            other => return Err(ControlError::UnknownId(other)),
        };
        Ok(CommandPacket {
            flags,
            request_id,
            command,
        })
    }
}

impl AckPacket {
    pub fn encode(&self) -> Vec<u8> {
        let scd: Vec<u8> = match &self.body {
            AckBody::ReadMem(d) => d.clone(),
            AckBody::WriteMem { length_written } => {
                let mut v = 0u16.to_le_bytes().to_vec();
                v.extend_from_slice(&length_written.to_le_bytes());
                v
            }
            AckBody::Pending { timeout_ms } => {
                let mut v = 0u16.to_le_bytes().to_vec();
                v.extend_from_slice(&timeout_ms.to_le_bytes());
                v
            }
            AckBody::Empty => Vec::new(),
        };
        let mut v = header(self.status.code(), self.ack_id, scd.len(), self.request_id);
        v.extend_from_slice(&scd);
        v
    }

    pub fn decode(bytes: &[u8]) -> Result<AckPacket, ControlError> {
        let (status, id, request_id, scd) = split(bytes)?;
        let status = Status::from_code(status);
        let body = match id {
            _ if status != Status::Success && id != PENDING_ACK => {
                if !matches!(id, READMEM_ACK | WRITEMEM_ACK) {
                    return Err(ControlError::UnknownId(id));
                }
                AckBody::Empty
            }
            READMEM_ACK => AckBody::ReadMem(scd.to_vec()),
            WRITEMEM_ACK => {
                if scd.len() != 4 {
                    return Err(ControlError::BadData {
                        id,
                        what: "WRITEMEM_ACK carries 2 reserved bytes and a 2-byte length",
                    });
                }
                AckBody::WriteMem {
                    length_written: u16_at(scd, 2),
                }
            }
            PENDING_ACK => {
                if scd.len() != 4 {
                    return Err(ControlError::BadData {
                        id,
                        what: "PENDING_ACK carries 2 reserved bytes and a 2-byte timeout",
                    });
                }
                AckBody::Pending {
                    timeout_ms: u16_at(scd, 2),
                }
            }
            other => return Err(ControlError::UnknownId(other)),
        };
        Ok(AckPacket {
            status,
            ack_id: id,
            request_id,
            body,
        })
    }
}

/// What an acknowledge meant for the outstanding command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckEvent {
    /// A read completed with the data asked for.
    ReadDone(Vec<u8>),
    /// A write completed.
    WriteDone,
    /// The device needs more time: wait up to this long for the final acknowledge.
    Pending(Duration),
    /// An acknowledge of an older request (a late answer to a retried command): ignore it.
    Stale { request_id: u16 },
    /// The device refused the command.
    Failed(Status),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Outstanding {
    request_id: u16,
    ack_id: u16,
    /// Bytes of a read, bytes of a write.
    length: usize,
}

/// The host's side of the control channel, sans-IO.
#[derive(Debug, Clone, Default)]
pub struct ControlClient {
    next_request_id: u16,
    outstanding: Option<Outstanding>,
}

impl ControlClient {
    pub fn new() -> Self {
        Self::default()
    }

    fn next_id(&mut self) -> u16 {
        self.next_request_id = self.next_request_id.wrapping_add(1);
        if self.next_request_id == 0 {
            self.next_request_id = 1;
        }
        self.next_request_id
    }

    /// Bytes of a READMEM command; it becomes the outstanding command.
    pub fn read_mem(&mut self, address: u64, length: u16) -> Vec<u8> {
        let request_id = self.next_id();
        self.outstanding = Some(Outstanding {
            request_id,
            ack_id: READMEM_ACK,
            length: length as usize,
        });
        CommandPacket {
            flags: FLAG_REQUEST_ACK,
            request_id,
            command: Command::ReadMem { address, length },
        }
        .encode()
    }

    /// Bytes of a WRITEMEM command; it becomes the outstanding command.
    pub fn write_mem(&mut self, address: u64, data: &[u8]) -> Vec<u8> {
        let request_id = self.next_id();
        self.outstanding = Some(Outstanding {
            request_id,
            ack_id: WRITEMEM_ACK,
            length: data.len(),
        });
        CommandPacket {
            flags: FLAG_REQUEST_ACK,
            request_id,
            command: Command::WriteMem {
                address,
                data: data.to_vec(),
            },
        }
        .encode()
    }

    /// Interpret one acknowledge transfer. Completing acknowledges clear the outstanding
    /// command; a stale one leaves it in place.
    pub fn handle_ack(&mut self, bytes: &[u8]) -> Result<AckEvent, ControlError> {
        let ack = AckPacket::decode(bytes)?;
        let Some(out) = self.outstanding else {
            return Err(ControlError::NothingOutstanding);
        };
        if ack.request_id != out.request_id {
            return Ok(AckEvent::Stale {
                request_id: ack.request_id,
            });
        }
        if let AckBody::Pending { timeout_ms } = ack.body {
            return Ok(AckEvent::Pending(Duration::from_millis(timeout_ms as u64)));
        }
        if ack.ack_id != out.ack_id {
            self.outstanding = None;
            return Err(ControlError::WrongAck {
                expected: out.ack_id,
                got: ack.ack_id,
            });
        }
        self.outstanding = None;
        if ack.status != Status::Success {
            return Ok(AckEvent::Failed(ack.status));
        }
        match ack.body {
            AckBody::ReadMem(d) => {
                if d.len() != out.length {
                    return Err(ControlError::WrongReadLength {
                        expected: out.length,
                        got: d.len(),
                    });
                }
                Ok(AckEvent::ReadDone(d))
            }
            AckBody::WriteMem { .. } => Ok(AckEvent::WriteDone),
            AckBody::Pending { .. } | AckBody::Empty => unreachable!("handled above"),
        }
    }

    /// Forget the outstanding command (after a reconnect).
    pub fn reset(&mut self) {
        self.outstanding = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn readmem_command_layout() {
        let p = CommandPacket {
            flags: FLAG_REQUEST_ACK,
            request_id: 1,
            command: Command::ReadMem {
                address: 0x208,
                length: 4,
            },
        };
        let b = p.encode();
        assert_eq!(
            b,
            hex("55335643 0040 0008 0c00 0100  0802000000000000 0000 0400")
        );
        assert_eq!(CommandPacket::decode(&b).unwrap(), p);
    }

    #[test]
    fn client_follows_pending_then_completion() {
        let mut c = ControlClient::new();
        let cmd = CommandPacket::decode(&c.write_mem(0x104, &8u32.to_le_bytes())).unwrap();
        let ack = |body, status| {
            AckPacket {
                status,
                ack_id: match body {
                    AckBody::Pending { .. } => PENDING_ACK,
                    _ => WRITEMEM_ACK,
                },
                request_id: cmd.request_id,
                body,
            }
            .encode()
        };
        assert_eq!(
            c.handle_ack(&ack(AckBody::Pending { timeout_ms: 50 }, Status::Success)),
            Ok(AckEvent::Pending(Duration::from_millis(50)))
        );
        assert_eq!(
            c.handle_ack(&ack(
                AckBody::WriteMem { length_written: 4 },
                Status::Success
            )),
            Ok(AckEvent::WriteDone)
        );
        assert_eq!(
            c.handle_ack(&ack(AckBody::Empty, Status::Busy)),
            Err(ControlError::NothingOutstanding)
        );
    }

    #[test]
    fn stale_and_refused_acknowledges() {
        let mut c = ControlClient::new();
        let first = CommandPacket::decode(&c.read_mem(0x208, 4)).unwrap();
        let second = CommandPacket::decode(&c.read_mem(0x208, 4)).unwrap();
        let late = AckPacket {
            status: Status::Success,
            ack_id: READMEM_ACK,
            request_id: first.request_id,
            body: AckBody::ReadMem(vec![0; 4]),
        };
        assert_eq!(
            c.handle_ack(&late.encode()),
            Ok(AckEvent::Stale {
                request_id: first.request_id
            })
        );
        let refused = AckPacket {
            status: Status::InvalidAddress,
            ack_id: READMEM_ACK,
            request_id: second.request_id,
            body: AckBody::Empty,
        };
        assert_eq!(
            c.handle_ack(&refused.encode()),
            Ok(AckEvent::Failed(Status::InvalidAddress))
        );
    }

    #[test]
    fn malformed_packets_are_errors() {
        assert!(matches!(
            AckPacket::decode(&[0x55, 0x33]),
            Err(ControlError::Truncated { .. })
        ));
        let mut b = AckPacket {
            status: Status::Success,
            ack_id: READMEM_ACK,
            request_id: 3,
            body: AckBody::ReadMem(vec![1, 2, 3, 4]),
        }
        .encode();
        b.pop();
        assert!(matches!(
            AckPacket::decode(&b),
            Err(ControlError::LengthMismatch { .. })
        ));
        b[0] = 0;
        assert!(matches!(
            AckPacket::decode(&b),
            Err(ControlError::BadPrefix(_))
        ));
    }
}
