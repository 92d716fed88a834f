//! The camera's streaming channel: every frame is a block of three kinds of bulk transfer —
//! a leader, the payload (in transfers of `StreamTransferSize` bytes, the last one possibly
//! shorter) and a trailer — shaped like USB3 Vision's. Specified in
//! `firmware-interfaces/camera-usb.md`.
//!
//! Owns: the byte layout of leaders and trailers, the device-side encoder
//! ([`encode_block`]) and the host's sans-IO [`StreamDecoder`]: one completed transfer in,
//! at most one event out. The decoder only ever hands out a [`Block`] whose payload arrived
//! whole — every byte the leader announced, a trailer with success status, the same block
//! id and valid size, and a matching CRC-32 — so a partial or corrupt frame cannot reach
//! processing. Any other sequence is an error and the decoder waits for the next leader.

use crate::camera::control::MAX_SCD_LEN;

/// `"U3VL"` little-endian.
pub const LEADER_MAGIC: u32 = 0x4C56_3355;
/// `"U3VT"` little-endian.
pub const TRAILER_MAGIC: u32 = 0x5456_3355;
pub const LEADER_LEN: usize = 72;
pub const TRAILER_LEN: usize = 40;
/// Buffer the host offers for a leader or trailer transfer.
pub const MAX_LEADER_TRANSFER: usize = MAX_SCD_LEN;
pub const PAYLOAD_TYPE_IMAGE: u16 = 0x0001;
/// PFNC Mono16.
pub const PIXEL_FORMAT_MONO16: u32 = 0x0110_0007;

pub const FLAG_SHUTTER_OPEN: u16 = 1 << 0;
pub const FLAG_TEMPERATURE_LOCKED: u16 = 1 << 1;

/// Trailer status codes.
pub const TRAILER_SUCCESS: u16 = 0x0000;
pub const TRAILER_DATA_DISCARDED: u16 = 0xA101;
pub const TRAILER_DATA_OVERRUN: u16 = 0xA102;
pub const TRAILER_SENSOR_ERROR: u16 = 0xA103;

/// The leader of an image block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leader {
    pub block_id: u64,
    /// Device clock at the start of the exposure, ns.
    pub timestamp_ns: u64,
    pub pixel_format: u32,
    /// Binned frame size, pixels.
    pub width: u32,
    pub height: u32,
    pub offset_x: u32,
    pub offset_y: u32,
    pub padding_x: u16,
    pub binning_x: u8,
    pub binning_y: u8,
    /// Bytes of payload that follow.
    pub payload_size: u64,
    pub exposure_us: u64,
    /// Sensor temperature at read-out, 0.01 °C.
    pub sensor_temp_cc: i16,
    /// `FLAG_*` bits.
    pub flags: u16,
}

/// The trailer of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    pub block_id: u64,
    pub status: u16,
    pub valid_payload_size: u64,
    pub height: u32,
    /// CRC-32 (ISO-HDLC, as zlib) of the valid payload bytes.
    pub payload_crc32: u32,
}

/// A complete, verified block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub leader: Leader,
    pub trailer: Trailer,
    /// `width × height` pixels, row-major.
    pub pixels: Vec<u16>,
}

/// What one transfer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// A new block began.
    Leader(Leader),
    /// A block completed and verified.
    Block(Block),
}

/// Why a transfer (and the block it belonged to) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("transfer of {len} bytes is not a leader (expected a leader to start a block)")]
    ExpectedLeader { len: usize },
    #[error("malformed leader: {0}")]
    BadLeader(&'static str),
    #[error("leader announces {width}x{height} pixels ({payload_size} bytes), above the {limit}-byte limit")]
    TooLarge {
        width: u32,
        height: u32,
        payload_size: u64,
        limit: usize,
    },
    #[error("malformed trailer: {0}")]
    BadTrailer(&'static str),
    #[error("block {block_id}: payload truncated: {received} of {expected} bytes arrived (trailer says {valid} valid)")]
    Truncated {
        block_id: u64,
        expected: u64,
        received: u64,
        valid: u64,
    },
    #[error("block {block_id}: a {len}-byte payload transfer overruns the {remaining} bytes left")]
    Overrun {
        block_id: u64,
        len: usize,
        remaining: u64,
    },
    #[error("block {block_id}: trailer status {status:#06x} (the device discarded the frame)")]
    TrailerStatus { block_id: u64, status: u16 },
    #[error("trailer block id {trailer} does not match the leader's {leader}")]
    WrongBlockId { leader: u64, trailer: u64 },
    #[error("block {block_id}: payload CRC-32 {got:#010x}, trailer says {expected:#010x}")]
    Crc {
        block_id: u64,
        expected: u32,
        got: u32,
    },
    #[error("block {block_id} abandoned: a new leader arrived before its trailer")]
    Abandoned { block_id: u64 },
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}
fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}
fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(a)
}

fn starts_with_magic(b: &[u8], magic: u32) -> bool {
    b.len() >= 4 && u32_at(b, 0) == magic
}

impl Leader {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(LEADER_LEN);
        v.extend_from_slice(&LEADER_MAGIC.to_le_bytes());
        v.extend_from_slice(&0u16.to_le_bytes());
        v.extend_from_slice(&(LEADER_LEN as u16).to_le_bytes());
        v.extend_from_slice(&self.block_id.to_le_bytes());
        v.extend_from_slice(&0u16.to_le_bytes());
        v.extend_from_slice(&PAYLOAD_TYPE_IMAGE.to_le_bytes());
        v.extend_from_slice(&self.timestamp_ns.to_le_bytes());
        v.extend_from_slice(&self.pixel_format.to_le_bytes());
        v.extend_from_slice(&self.width.to_le_bytes());
        v.extend_from_slice(&self.height.to_le_bytes());
        v.extend_from_slice(&self.offset_x.to_le_bytes());
        v.extend_from_slice(&self.offset_y.to_le_bytes());
        v.extend_from_slice(&self.padding_x.to_le_bytes());
        v.push(self.binning_x);
        v.push(self.binning_y);
        v.extend_from_slice(&self.payload_size.to_le_bytes());
        v.extend_from_slice(&self.exposure_us.to_le_bytes());
        v.extend_from_slice(&self.sensor_temp_cc.to_le_bytes());
        v.extend_from_slice(&self.flags.to_le_bytes());
        debug_assert_eq!(v.len(), LEADER_LEN);
        v
    }

    pub fn decode(b: &[u8]) -> Result<Leader, StreamError> {
        if !starts_with_magic(b, LEADER_MAGIC) {
            return Err(StreamError::BadLeader("no U3VL magic"));
        }
        if b.len() < 8 || u16_at(b, 6) as usize != b.len() {
            return Err(StreamError::BadLeader(
                "leader size field does not match the transfer",
            ));
        }
        if b.len() != LEADER_LEN {
            return Err(StreamError::BadLeader("leader is not 72 bytes"));
        }
        if u16_at(b, 18) != PAYLOAD_TYPE_IMAGE {
            return Err(StreamError::BadLeader("payload type is not image"));
        }
        let l = Leader {
            block_id: u64_at(b, 8),
            timestamp_ns: u64_at(b, 20),
            pixel_format: u32_at(b, 28),
            width: u32_at(b, 32),
            height: u32_at(b, 36),
            offset_x: u32_at(b, 40),
            offset_y: u32_at(b, 44),
            padding_x: u16_at(b, 48),
            binning_x: b[50],
            binning_y: b[51],
            payload_size: u64_at(b, 52),
            exposure_us: u64_at(b, 60),
            sensor_temp_cc: u16_at(b, 68) as i16,
            flags: u16_at(b, 70),
        };
        if l.pixel_format != PIXEL_FORMAT_MONO16 {
            return Err(StreamError::BadLeader("pixel format is not Mono16"));
        }
        if l.width == 0 || l.height == 0 {
            return Err(StreamError::BadLeader("zero width or height"));
        }
        if l.padding_x != 0 {
            return Err(StreamError::BadLeader("row padding is not supported"));
        }
        if l.binning_x == 0 || l.binning_x != l.binning_y {
            return Err(StreamError::BadLeader("binning must be equal and non-zero"));
        }
        if (l.width as u64) * (l.height as u64) * 2 != l.payload_size {
            return Err(StreamError::BadLeader(
                "payload size is not width x height x 2",
            ));
        }
        Ok(l)
    }
}

impl Trailer {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(TRAILER_LEN);
        v.extend_from_slice(&TRAILER_MAGIC.to_le_bytes());
        v.extend_from_slice(&0u16.to_le_bytes());
        v.extend_from_slice(&(TRAILER_LEN as u16).to_le_bytes());
        v.extend_from_slice(&self.block_id.to_le_bytes());
        v.extend_from_slice(&self.status.to_le_bytes());
        v.extend_from_slice(&0u16.to_le_bytes());
        v.extend_from_slice(&self.valid_payload_size.to_le_bytes());
        v.extend_from_slice(&self.height.to_le_bytes());
        v.extend_from_slice(&self.payload_crc32.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        debug_assert_eq!(v.len(), TRAILER_LEN);
        v
    }

    pub fn decode(b: &[u8]) -> Result<Trailer, StreamError> {
        if !starts_with_magic(b, TRAILER_MAGIC) {
            return Err(StreamError::BadTrailer("no U3VT magic"));
        }
        if b.len() != TRAILER_LEN || u16_at(b, 6) as usize != TRAILER_LEN {
            return Err(StreamError::BadTrailer(
                "trailer is not 40 bytes or its size field disagrees",
            ));
        }
        Ok(Trailer {
            block_id: u64_at(b, 8),
            status: u16_at(b, 16),
            valid_payload_size: u64_at(b, 20),
            height: u32_at(b, 28),
            payload_crc32: u32_at(b, 32),
        })
    }

    /// Whether a transfer looks like a trailer (used to spot a trailer arriving early).
    pub fn looks_like(b: &[u8]) -> bool {
        b.len() == TRAILER_LEN && starts_with_magic(b, TRAILER_MAGIC)
    }
}

/// Device side: the transfers of one block, payload cut in `transfer_size` pieces.
pub fn encode_block(
    leader: &Leader,
    payload: &[u8],
    transfer_size: usize,
    status: u16,
) -> Vec<Vec<u8>> {
    let transfer_size = transfer_size.max(2);
    let mut out = Vec::with_capacity(2 + payload.len() / transfer_size + 1);
    out.push(leader.encode());
    for chunk in payload.chunks(transfer_size) {
        out.push(chunk.to_vec());
    }
    out.push(
        Trailer {
            block_id: leader.block_id,
            status,
            valid_payload_size: payload.len() as u64,
            height: leader.height,
            payload_crc32: crc32fast::hash(payload),
        }
        .encode(),
    );
    out
}

/// Limits the decoder enforces before allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    pub max_payload_bytes: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            // A 4096² Mono16 frame: twice the largest sensor lumiq drives.
            max_payload_bytes: 4096 * 4096 * 2,
        }
    }
}

#[derive(Debug)]
enum State {
    AwaitLeader,
    Payload {
        leader: Leader,
        pixels: Vec<u16>,
        received: u64,
        crc: crc32fast::Hasher,
    },
}

/// The host's stream decoder: feed it each completed transfer.
#[derive(Debug)]
pub struct StreamDecoder {
    limits: StreamLimits,
    state: State,
}

impl StreamDecoder {
    pub fn new(limits: StreamLimits) -> Self {
        StreamDecoder {
            limits,
            state: State::AwaitLeader,
        }
    }

    /// Drop any block in progress.
    pub fn reset(&mut self) {
        self.state = State::AwaitLeader;
    }

    /// Whether a block is in progress.
    pub fn in_block(&self) -> bool {
        matches!(self.state, State::Payload { .. })
    }

    /// Bytes still expected for the payload of the block in progress (0 when waiting for a
    /// leader or a trailer).
    pub fn payload_remaining(&self) -> u64 {
        match &self.state {
            State::Payload {
                leader, received, ..
            } => leader.payload_size - received,
            State::AwaitLeader => 0,
        }
    }

    /// Feed one completed transfer. On an error the block in progress is dropped and the
    /// decoder waits for the next leader (except that a leader always starts a new block).
    pub fn feed(&mut self, t: &[u8]) -> Result<Option<StreamEvent>, StreamError> {
        // A leader starts a new block whatever the state.
        if starts_with_magic(t, LEADER_MAGIC)
            && t.len() == LEADER_LEN
            && !self.expects_payload_of(t.len())
        {
            let abandoned = match &self.state {
                State::Payload { leader, .. } => Some(leader.block_id),
                State::AwaitLeader => None,
            };
            self.state = State::AwaitLeader;
            let leader = Leader::decode(t)?;
            if leader.payload_size > self.limits.max_payload_bytes as u64 {
                return Err(StreamError::TooLarge {
                    width: leader.width,
                    height: leader.height,
                    payload_size: leader.payload_size,
                    limit: self.limits.max_payload_bytes,
                });
            }
            let n = (leader.width as usize) * (leader.height as usize);
            self.state = State::Payload {
                leader,
                pixels: vec![0u16; n],
                received: 0,
                crc: crc32fast::Hasher::new(),
            };
            if let Some(block_id) = abandoned {
                // The new block is kept; the old one is reported.
                return Err(StreamError::Abandoned { block_id });
            }
            return Ok(Some(StreamEvent::Leader(leader)));
        }
        let state = std::mem::replace(&mut self.state, State::AwaitLeader);
        match state {
            State::AwaitLeader => Err(StreamError::ExpectedLeader { len: t.len() }),
            State::Payload {
                leader,
                mut pixels,
                received,
                mut crc,
            } => {
                let remaining = leader.payload_size - received;
                if remaining > 0 {
                    if Trailer::looks_like(t) && t.len() as u64 != remaining {
                        // The block's trailer came early: the payload is short. (A payload
                        // piece exactly as long as what is left is payload, whatever it holds.)
                        if let Ok(tr) = Trailer::decode(t) {
                            if tr.block_id == leader.block_id {
                                return Err(StreamError::Truncated {
                                    block_id: leader.block_id,
                                    expected: leader.payload_size,
                                    received,
                                    valid: tr.valid_payload_size,
                                });
                            }
                        }
                    }
                    if t.len() as u64 > remaining {
                        return Err(StreamError::Overrun {
                            block_id: leader.block_id,
                            len: t.len(),
                            remaining,
                        });
                    }
                    crc.update(t);
                    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut pixels);
                    let start = received as usize;
                    bytes[start..start + t.len()].copy_from_slice(t);
                    self.state = State::Payload {
                        leader,
                        pixels,
                        received: received + t.len() as u64,
                        crc,
                    };
                    return Ok(None);
                }
                // Payload complete: this must be the trailer.
                let tr = Trailer::decode(t)?;
                if tr.block_id != leader.block_id {
                    return Err(StreamError::WrongBlockId {
                        leader: leader.block_id,
                        trailer: tr.block_id,
                    });
                }
                if tr.status != TRAILER_SUCCESS {
                    return Err(StreamError::TrailerStatus {
                        block_id: leader.block_id,
                        status: tr.status,
                    });
                }
                if tr.valid_payload_size != leader.payload_size {
                    return Err(StreamError::Truncated {
                        block_id: leader.block_id,
                        expected: leader.payload_size,
                        received,
                        valid: tr.valid_payload_size,
                    });
                }
                if tr.height != leader.height {
                    return Err(StreamError::BadTrailer("height differs from the leader's"));
                }
                let got = crc.finalize();
                if got != tr.payload_crc32 {
                    return Err(StreamError::Crc {
                        block_id: leader.block_id,
                        expected: tr.payload_crc32,
                        got,
                    });
                }
                if cfg!(target_endian = "big") {
                    pixels.iter_mut().for_each(|p| *p = u16::from_le(*p));
                }
                Ok(Some(StreamEvent::Block(Block {
                    leader,
                    trailer: tr,
                    pixels,
                })))
            }
        }
    }

    /// A leader-sized transfer in the middle of a payload whose next piece is exactly that
    /// long is payload, not a leader.
    fn expects_payload_of(&self, len: usize) -> bool {
        match &self.state {
            State::Payload {
                leader, received, ..
            } => leader.payload_size - received == len as u64,
            State::AwaitLeader => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader(block_id: u64, w: u32, h: u32) -> Leader {
        Leader {
            block_id,
            timestamp_ns: 5,
            pixel_format: PIXEL_FORMAT_MONO16,
            width: w,
            height: h,
            offset_x: 0,
            offset_y: 0,
            padding_x: 0,
            binning_x: 8,
            binning_y: 8,
            payload_size: w as u64 * h as u64 * 2,
            exposure_us: 1_000_000,
            sensor_temp_cc: -9000,
            flags: FLAG_SHUTTER_OPEN,
        }
    }

    fn payload(w: u32, h: u32) -> (Vec<u16>, Vec<u8>) {
        let px: Vec<u16> = (0..w * h).map(|i| (i * 7 % 65521) as u16).collect();
        let bytes = px.iter().flat_map(|p| p.to_le_bytes()).collect();
        (px, bytes)
    }

    fn run(transfers: &[Vec<u8>]) -> Vec<Result<Option<StreamEvent>, StreamError>> {
        let mut d = StreamDecoder::new(StreamLimits::default());
        transfers.iter().map(|t| d.feed(t)).collect()
    }

    #[test]
    fn a_whole_block_decodes() {
        let (px, bytes) = payload(16, 8);
        let l = leader(7, 16, 8);
        let out = run(&encode_block(&l, &bytes, 60, TRAILER_SUCCESS));
        assert_eq!(out[0], Ok(Some(StreamEvent::Leader(l))));
        match out.last().unwrap() {
            Ok(Some(StreamEvent::Block(b))) => {
                assert_eq!(b.pixels, px);
                assert_eq!(b.leader, l);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn early_trailer_is_a_truncated_payload() {
        let (_, bytes) = payload(16, 8);
        let l = leader(7, 16, 8);
        let mut t = encode_block(&l, &bytes[..100], 60, TRAILER_SUCCESS);
        t[0] = l.encode();
        let out = run(&t);
        assert!(
            matches!(
                out.last().unwrap(),
                Err(StreamError::Truncated { received: 100, .. })
            ),
            "{out:?}"
        );
    }

    #[test]
    fn bad_trailer_status_wrong_block_and_crc_are_refused() {
        let (_, bytes) = payload(16, 8);
        let l = leader(7, 16, 8);
        let t = encode_block(&l, &bytes, 64, TRAILER_DATA_DISCARDED);
        assert!(matches!(
            run(&t).last().unwrap(),
            Err(StreamError::TrailerStatus { .. })
        ));
        let mut t = encode_block(&l, &bytes, 64, TRAILER_SUCCESS);
        let mut tr = Trailer::decode(t.last().unwrap()).unwrap();
        tr.block_id = 8;
        *t.last_mut().unwrap() = tr.encode();
        assert!(matches!(
            run(&t).last().unwrap(),
            Err(StreamError::WrongBlockId {
                leader: 7,
                trailer: 8
            })
        ));
        let mut t = encode_block(&l, &bytes, 64, TRAILER_SUCCESS);
        t[1][3] ^= 1;
        assert!(matches!(
            run(&t).last().unwrap(),
            Err(StreamError::Crc { .. })
        ));
    }

    #[test]
    fn a_new_leader_abandons_the_block_and_starts_the_next() {
        let (_, bytes) = payload(16, 8);
        let a = encode_block(&leader(1, 16, 8), &bytes, 64, TRAILER_SUCCESS);
        let b = encode_block(&leader(2, 16, 8), &bytes, 64, TRAILER_SUCCESS);
        let mut t = vec![a[0].clone(), a[1].clone()];
        t.extend(b.iter().cloned());
        let out = run(&t);
        assert_eq!(out[2], Err(StreamError::Abandoned { block_id: 1 }));
        assert!(
            matches!(out.last().unwrap(), Ok(Some(StreamEvent::Block(b))) if b.leader.block_id == 2)
        );
    }

    #[test]
    fn oversized_leaders_are_refused_before_allocating() {
        let mut l = leader(1, 60000, 60000);
        l.payload_size = 60000 * 60000 * 2;
        assert!(matches!(
            run(&[l.encode()])[0],
            Err(StreamError::TooLarge { .. })
        ));
    }
}
