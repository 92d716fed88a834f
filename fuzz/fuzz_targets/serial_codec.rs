//! Fuzz the controller's serial line codec: arbitrary bytes through the line decoder, in
//! two pieces split where the input says. With the first byte odd, the harness appends a
//! valid `*CRC` to every line of the input first, so the fuzzer also reaches the grammar
//! and the typed layers behind the checksum. Invariants: no panic; every line that parses
//! re-encodes to the same bytes and parses back to the same message; the typed layers
//! accept or refuse it without panicking, and a request they accept round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lumiq::controller::protocol::{checksum, Event, LineDecoder, Message, Request, Response};

fn with_checksums(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 16);
    for line in body.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.extend_from_slice(line);
        out.extend_from_slice(format!("*{:04X}\r\n", checksum(line)).as_bytes());
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let owned;
    let input: &[u8] = if mode & 1 == 1 {
        owned = with_checksums(rest);
        &owned
    } else {
        rest
    };
    let cut = (mode as usize >> 1) % (input.len() + 1);
    let mut d = LineDecoder::new();
    let mut lines = d.push(&input[..cut]);
    lines.extend(d.push(&input[cut..]));
    for line in lines.into_iter().flatten() {
        let bytes = line.encode();
        let back = Message::parse(bytes.strip_suffix(b"\n").expect("CRLF")).expect("re-parses");
        assert_eq!(back, line);
        if let Ok(r) = Request::from_message(&line) {
            let m = r.to_message(line.seq);
            let again = Message::parse(m.encode().strip_suffix(b"\n").unwrap()).unwrap();
            assert_eq!(Request::from_message(&again), Ok(r));
        }
        if let Some(r) = Response::from_message(&line) {
            let m = r.to_message(line.seq);
            let _ = Message::parse(m.encode().strip_suffix(b"\n").unwrap()).unwrap();
        }
        let _ = Event::from_message(&line);
    }
});
