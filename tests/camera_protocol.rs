//! The written interfaces in `firmware-interfaces/` against the code: every data file
//! loads and validates, and every test vector decodes to its listed fields and re-encodes
//! to the same bytes — for the camera's control and streaming channels and for the
//! controller's serial line.

use std::path::{Path, PathBuf};

use lumiq::camera::control::{AckBody, AckPacket, Command, CommandPacket, Status};
use lumiq::camera::regmap::RegisterMap;
use lumiq::camera::stream::{
    Leader, StreamDecoder, StreamError, StreamEvent, StreamLimits, Trailer,
};
use lumiq::controller::protocol::{Kind, Message};
use serde::Deserialize;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware-interfaces")
}

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Vectors {
    schema: String,
    schema_version: u32,
    control: Vec<ControlVector>,
    stream: Vec<StreamVector>,
    serial: Vec<SerialVector>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlVector {
    name: String,
    kind: String,
    hex: String,
    request_id: u16,
    id: u16,
    status: Option<u16>,
    address: Option<u64>,
    length: Option<u16>,
    data: Option<String>,
    timeout_ms: Option<u16>,
    length_written: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamVector {
    name: String,
    kind: String,
    hex: String,
    block_id: Option<u64>,
    timestamp_ns: Option<u64>,
    pixel_format: Option<u32>,
    width: Option<u32>,
    height: Option<u32>,
    binning: Option<u8>,
    payload_size: Option<u64>,
    exposure_us: Option<u64>,
    sensor_temp_cc: Option<i16>,
    flags: Option<u16>,
    pixels: Option<Vec<u16>>,
    status: Option<u16>,
    valid_payload_size: Option<u64>,
    payload_crc32: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SerialVector {
    name: String,
    line: String,
    kind: String,
    seq: u16,
    fields: Vec<String>,
}

fn vectors() -> Vectors {
    let text = std::fs::read_to_string(dir().join("test-vectors.toml")).unwrap();
    let v: Vectors = toml::from_str(&text).expect("test-vectors.toml parses");
    assert_eq!(
        (v.schema.as_str(), v.schema_version),
        ("lumiq.firmware-test-vectors", 1)
    );
    v
}

#[test]
fn every_file_in_firmware_interfaces_is_known_and_loads() {
    let mut seen = Vec::new();
    for e in std::fs::read_dir(dir()).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&p).unwrap();
        match name.as_str() {
            "camera-registers.toml" => {
                let m = RegisterMap::parse(&text, &name).unwrap_or_else(|e| panic!("{e}"));
                assert!(m.registers().len() >= 20);
            }
            "test-vectors.toml" => {
                vectors();
            }
            n if n.ends_with(".md") => {
                assert!(text.starts_with("# "), "{n} has a title");
                // Every file a document links to exists.
                for link in text.split("](").skip(1) {
                    let target = link.split(')').next().unwrap();
                    if !target.starts_with("http") && !target.starts_with('#') {
                        assert!(
                            dir().join(target).exists()
                                || Path::new(env!("CARGO_MANIFEST_DIR"))
                                    .join(target.trim_start_matches("../"))
                                    .exists(),
                            "{n} links to missing {target}"
                        );
                    }
                }
            }
            "make-test-vectors.py" => {}
            other => panic!("unexpected file firmware-interfaces/{other}: add it to this test"),
        }
        seen.push(name);
    }
    for needed in [
        "README.md",
        "camera-usb.md",
        "controller-serial.md",
        "camera-registers.toml",
        "test-vectors.toml",
    ] {
        assert!(seen.iter().any(|s| s == needed), "{needed} is missing");
    }
}

#[test]
fn control_vectors() {
    for v in vectors().control {
        let bytes = unhex(&v.hex);
        match v.kind.as_str() {
            "command" => {
                let p = CommandPacket::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", v.name));
                assert_eq!(p.request_id, v.request_id, "{}", v.name);
                match &p.command {
                    Command::ReadMem { address, length } => {
                        assert_eq!(v.id, 0x0800);
                        assert_eq!(
                            (Some(*address), Some(*length)),
                            (v.address, v.length),
                            "{}",
                            v.name
                        );
                    }
                    Command::WriteMem { address, data } => {
                        assert_eq!(v.id, 0x0802);
                        assert_eq!(Some(*address), v.address, "{}", v.name);
                        assert_eq!(
                            Some(data.clone()),
                            v.data.as_deref().map(unhex),
                            "{}",
                            v.name
                        );
                    }
                }
                assert_eq!(p.encode(), bytes, "{}", v.name);
            }
            "ack" => {
                let a = AckPacket::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", v.name));
                assert_eq!((a.request_id, a.ack_id), (v.request_id, v.id), "{}", v.name);
                assert_eq!(a.status, Status::from_code(v.status.unwrap()), "{}", v.name);
                match &a.body {
                    AckBody::ReadMem(d) => {
                        assert_eq!(Some(d.clone()), v.data.as_deref().map(unhex), "{}", v.name)
                    }
                    AckBody::WriteMem { length_written } => {
                        assert_eq!(Some(*length_written), v.length_written)
                    }
                    AckBody::Pending { timeout_ms } => assert_eq!(Some(*timeout_ms), v.timeout_ms),
                    AckBody::Empty => assert_ne!(a.status, Status::Success, "{}", v.name),
                }
                assert_eq!(a.encode(), bytes, "{}", v.name);
            }
            k => panic!("{}: unknown kind {k}", v.name),
        }
    }
}

#[test]
fn stream_vectors_decode_field_by_field_and_as_a_block() {
    let vs = vectors().stream;
    let mut leader_bytes = None;
    let mut payload_bytes = None;
    let mut expected_pixels = None;
    for v in &vs {
        let bytes = unhex(&v.hex);
        match v.kind.as_str() {
            "leader" => {
                let l = Leader::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", v.name));
                assert_eq!(Some(l.block_id), v.block_id);
                assert_eq!(Some(l.timestamp_ns), v.timestamp_ns);
                assert_eq!(Some(l.pixel_format), v.pixel_format);
                assert_eq!((Some(l.width), Some(l.height)), (v.width, v.height));
                assert_eq!(
                    (Some(l.binning_x), Some(l.binning_y)),
                    (v.binning, v.binning)
                );
                assert_eq!(Some(l.payload_size), v.payload_size);
                assert_eq!(Some(l.exposure_us), v.exposure_us);
                assert_eq!(Some(l.sensor_temp_cc), v.sensor_temp_cc);
                assert_eq!(Some(l.flags), v.flags);
                assert_eq!(l.encode(), bytes, "{}", v.name);
                leader_bytes = Some(bytes);
            }
            "payload" => {
                payload_bytes = Some(bytes);
                expected_pixels = v.pixels.clone();
            }
            "trailer" => {
                let t = Trailer::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", v.name));
                assert_eq!(Some(t.block_id), v.block_id);
                assert_eq!(Some(t.status), v.status);
                assert_eq!(Some(t.valid_payload_size), v.valid_payload_size);
                assert_eq!(Some(t.payload_crc32), v.payload_crc32);
                assert_eq!(Some(t.height), v.height);
                assert_eq!(t.encode(), bytes, "{}", v.name);
                // The whole block through the decoder: only the good trailer yields a frame.
                let mut d = StreamDecoder::new(StreamLimits::default());
                d.feed(leader_bytes.as_ref().unwrap()).unwrap();
                let payload = payload_bytes.as_ref().unwrap();
                let valid = t.valid_payload_size as usize;
                if valid < payload.len() {
                    d.feed(&payload[..valid]).unwrap();
                } else {
                    d.feed(payload).unwrap();
                }
                match (t.status, valid == payload.len(), d.feed(&bytes)) {
                    (0, true, Ok(Some(StreamEvent::Block(b)))) => {
                        assert_eq!(Some(b.pixels), expected_pixels.clone(), "{}", v.name)
                    }
                    (0, false, Err(StreamError::Truncated { .. })) => {}
                    (s, true, Err(StreamError::TrailerStatus { status, .. })) if s != 0 => {
                        assert_eq!(s, status)
                    }
                    (_, _, other) => panic!("{}: {other:?}", v.name),
                }
            }
            k => panic!("{}: unknown kind {k}", v.name),
        }
    }
}

#[test]
fn serial_vectors() {
    for v in vectors().serial {
        let m = Message::parse(v.line.as_bytes()).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        let kind = match v.kind.as_str() {
            "command" => Kind::Command,
            "reply" => Kind::Reply,
            "error" => Kind::Error,
            "event" => Kind::Event,
            k => panic!("{}: unknown kind {k}", v.name),
        };
        assert_eq!((m.kind, m.seq), (kind, v.seq), "{}", v.name);
        let mut fields = vec![m.name.clone()];
        fields.extend(m.args.iter().cloned());
        assert_eq!(fields, v.fields, "{}", v.name);
        let mut line = v.line.clone().into_bytes();
        line.extend_from_slice(b"\r\n");
        assert_eq!(m.encode(), line, "{}", v.name);
    }
}

#[test]
fn the_udev_rule_matches_the_camera_the_register_map_names() {
    let rules = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/99-lumiq.rules"),
    )
    .unwrap();
    let map = RegisterMap::builtin();
    let camera_rule = rules
        .lines()
        .find(|l| l.starts_with("SUBSYSTEM==\"usb\""))
        .expect("a rule for the camera");
    assert!(
        camera_rule.contains(&format!("ATTR{{idVendor}}==\"{:04x}\"", map.vendor_id)),
        "{camera_rule}"
    );
    assert!(
        camera_rule.contains(&format!("ATTR{{idProduct}}==\"{:04x}\"", map.product_id)),
        "{camera_rule}"
    );
    for rule in rules.lines().filter(|l| l.starts_with("SUBSYSTEM")) {
        assert!(
            rule.contains("MODE=\"0660\"") && rule.contains("GROUP=\"lumiq\""),
            "{rule}"
        );
    }
    assert!(
        rules.lines().any(|l| l.starts_with("SUBSYSTEM==\"tty\"")),
        "a rule for the controller's tty"
    );
}
