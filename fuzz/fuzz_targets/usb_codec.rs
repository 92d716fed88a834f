//! Fuzz the camera's USB codec: control packets (both directions and the host's
//! acknowledge handling) and the stream decoder, fed raw transfers or a valid block
//! mutated in place. Invariants: no panic; whatever decodes re-encodes to the same value;
//! a block the decoder hands out is whole and matches its trailer's CRC.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lumiq::camera::control::{AckPacket, CommandPacket, ControlClient};
use lumiq::camera::stream::{
    encode_block, Leader, StreamDecoder, StreamEvent, StreamLimits, PIXEL_FORMAT_MONO16,
    TRAILER_SUCCESS,
};

fn check_block(ev: Option<StreamEvent>) {
    if let Some(StreamEvent::Block(b)) = ev {
        let l = b.leader;
        assert_eq!(b.pixels.len() as u64, l.width as u64 * l.height as u64);
        assert_eq!(b.trailer.valid_payload_size, l.payload_size);
        assert_eq!(b.trailer.block_id, l.block_id);
        let bytes: Vec<u8> = b.pixels.iter().flat_map(|p| p.to_le_bytes()).collect();
        assert_eq!(crc32fast::hash(&bytes), b.trailer.payload_crc32);
    }
}

fn transfers(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 <= data.len() {
        let want = u16::from_le_bytes([data[i], data[i + 1]]) as usize;
        let rest = &data[i + 2..];
        let n = want % (rest.len() + 1);
        out.push(&rest[..n]);
        i += 2 + n;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            if let Ok(p) = CommandPacket::decode(rest) {
                assert_eq!(CommandPacket::decode(&p.encode()), Ok(p));
            }
            if let Ok(a) = AckPacket::decode(rest) {
                assert_eq!(AckPacket::decode(&a.encode()), Ok(a));
            }
            let mut c = ControlClient::new();
            let _ = c.handle_ack(rest);
            let _ = c.read_mem(0x208, 4);
            let _ = c.handle_ack(rest);
            let _ = c.write_mem(0x104, &[8, 0, 0, 0]);
            let _ = c.handle_ack(rest);
        }
        1 => {
            let mut d = StreamDecoder::new(StreamLimits {
                max_payload_bytes: 1 << 20,
            });
            for t in transfers(rest) {
                if let Ok(ev) = d.feed(t) {
                    check_block(ev);
                }
            }
        }
        _ => {
            // A valid block, then mutations chosen by the input.
            if rest.len() < 4 {
                return;
            }
            let w = 1 + (rest[0] % 16) as u32;
            let h = 1 + (rest[1] % 16) as u32;
            let transfer = 2 + (rest[2] as usize % 64);
            let payload: Vec<u8> = (0..w * h * 2)
                .map(|i| (i as u8).wrapping_mul(rest[3] | 1))
                .collect();
            let leader = Leader {
                block_id: 9,
                timestamp_ns: 1,
                pixel_format: PIXEL_FORMAT_MONO16,
                width: w,
                height: h,
                offset_x: 0,
                offset_y: 0,
                padding_x: 0,
                binning_x: 4,
                binning_y: 4,
                payload_size: (w * h * 2) as u64,
                exposure_us: 1000,
                sensor_temp_cc: -9000,
                flags: 1,
            };
            let mut ts = encode_block(&leader, &payload, transfer, TRAILER_SUCCESS);
            for op in rest[4..].chunks(3) {
                if ts.is_empty() || op.len() < 3 {
                    break;
                }
                let k = op[1] as usize % ts.len();
                match op[0] % 5 {
                    0 => {
                        let t = &mut ts[k];
                        if !t.is_empty() {
                            let j = op[2] as usize % t.len();
                            t[j] ^= 1 << (op[2] % 8);
                        }
                    }
                    1 => {
                        let t = &mut ts[k];
                        let n = op[2] as usize % (t.len() + 1);
                        t.truncate(n);
                    }
                    2 => {
                        ts.remove(k);
                    }
                    3 => {
                        let t = ts[k].clone();
                        ts.insert(op[2] as usize % (ts.len() + 1), t);
                    }
                    _ => {
                        let j = op[2] as usize % ts.len();
                        ts.swap(k, j);
                    }
                }
            }
            let mut d = StreamDecoder::new(StreamLimits::default());
            for t in &ts {
                if let Ok(ev) = d.feed(t) {
                    if let Some(StreamEvent::Block(b)) = &ev {
                        // Whatever got through must be exactly what was sent.
                        let bytes: Vec<u8> =
                            b.pixels.iter().flat_map(|p| p.to_le_bytes()).collect();
                        if b.leader == leader {
                            assert_eq!(bytes, payload, "a corrupted payload got through");
                        }
                    }
                    check_block(ev);
                }
            }
        }
    }
});
