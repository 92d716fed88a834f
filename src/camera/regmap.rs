//! The camera's register map, loaded from the data file
//! `firmware-interfaces/camera-registers.toml` (the map is data, not code).
//!
//! Owns: parsing and validating the map, value checks against a register's range, and the
//! byte encoding of register values (little-endian 32-bit words, fixed-length strings).
//! Both the host driver and the simulated camera use the same map, so the simulator
//! enforces exactly what the specification says.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use serde::Deserialize;

/// The map shipped in the repository, compiled in.
pub const BUILTIN_MAP: &str = include_str!("../../firmware-interfaces/camera-registers.toml");
pub const BUILTIN_MAP_NAME: &str = "firmware-interfaces/camera-registers.toml";
pub const SCHEMA: &str = "lumiq.camera-registers";
pub const SCHEMA_VERSION: u32 = 1;

/// Units a register may carry (see the data file's header).
pub const UNITS: &[&str] = &[
    "us", "px", "kHz", "x", "cdegC", "bytes", "bool", "enum", "bitfield", "text", "command",
];

/// Registers the driver uses, with the type and access it relies on.
pub const REQUIRED: &[(&str, RegType, Access)] = &[
    ("ModelName", RegType::String, Access::RO),
    ("SerialNumber", RegType::String, Access::RO),
    ("FirmwareVersion", RegType::String, Access::RO),
    ("SensorWidth", RegType::U32, Access::RO),
    ("SensorHeight", RegType::U32, Access::RO),
    ("PixelFormat", RegType::U32, Access::RO),
    ("ExposureTime", RegType::U32, Access::RW),
    ("Binning", RegType::U32, Access::RW),
    ("ReadoutSpeed", RegType::U32, Access::RW),
    ("Gain", RegType::U32, Access::RW),
    ("ShutterMode", RegType::U32, Access::RW),
    ("CoolerEnable", RegType::Bool, Access::RW),
    ("CoolingSetpoint", RegType::I32, Access::RW),
    ("SensorTemperature", RegType::I32, Access::RO),
    ("TemperatureLocked", RegType::Bool, Access::RO),
    ("AcquisitionStart", RegType::Command, Access::WO),
    ("AcquisitionStop", RegType::Command, Access::WO),
    ("Status", RegType::U32, Access::RO),
    ("PayloadSize", RegType::U32, Access::RO),
    ("StreamTransferSize", RegType::U32, Access::RW),
    ("StreamEnable", RegType::Bool, Access::RW),
    ("DeviceReset", RegType::Command, Access::WO),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegType {
    U32,
    I32,
    Bool,
    String,
    Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Access {
    RO,
    RW,
    WO,
}

impl Access {
    pub fn readable(self) -> bool {
        self != Access::WO
    }
    pub fn writable(self) -> bool {
        self != Access::RO
    }
}

/// One register as the data file describes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Register {
    pub name: String,
    pub address: u64,
    #[serde(rename = "type")]
    pub kind: RegType,
    /// Bytes of a string register.
    #[serde(default)]
    pub length: Option<u32>,
    pub access: Access,
    pub unit: String,
    #[serde(default)]
    pub min: Option<i64>,
    #[serde(default)]
    pub max: Option<i64>,
    #[serde(default)]
    pub step: Option<i64>,
    /// The only values allowed, when listed.
    #[serde(default)]
    pub values: Option<Vec<i64>>,
    /// Names of `values`, same order.
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    #[serde(default)]
    pub default: Option<i64>,
    /// The device may answer a write with PENDING_ACK and finish within this time.
    #[serde(default)]
    pub pending_ms: Option<u32>,
    pub description: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MapFile {
    schema: String,
    schema_version: u32,
    device: String,
    vendor_id: u16,
    product_id: u16,
    register: Vec<Register>,
}

/// A map that failed to load: names the file, the register and the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{source_name}: {problem}; fix the register map (the format is in firmware-interfaces/camera-usb.md)")]
pub struct RegMapError {
    pub source_name: String,
    pub problem: String,
}

/// A validated register map.
#[derive(Debug, Clone)]
pub struct RegisterMap {
    pub device: String,
    pub vendor_id: u16,
    pub product_id: u16,
    registers: Vec<Register>,
    by_name: HashMap<String, usize>,
}

/// Why a register refuses a value (the value, and the rule it breaks).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    #[error("is a string register")]
    StringRegister,
    #[error("{value} is outside the type's range {lo}..={hi}")]
    OutOfRange { value: i64, lo: i64, hi: i64 },
    #[error("{value} is not one of {allowed:?}")]
    NotAllowed { value: i64, allowed: Vec<i64> },
    #[error("{value} is below the minimum {min} {unit}")]
    BelowMinimum { value: i64, min: i64, unit: String },
    #[error("{value} is above the maximum {max} {unit}")]
    AboveMaximum { value: i64, max: i64, unit: String },
    #[error("{value} is not a multiple of {step}")]
    NotAMultiple { value: i64, step: i64 },
}

impl Register {
    /// Bytes the register occupies.
    pub fn byte_len(&self) -> usize {
        match self.kind {
            RegType::String => self.length.unwrap_or(0) as usize,
            _ => 4,
        }
    }

    /// Whether `v` is a value this register accepts (type range, min/max, step, values).
    pub fn check_value(&self, v: i64) -> Result<(), ValueError> {
        let (lo, hi) = match self.kind {
            RegType::U32 => (0, u32::MAX as i64),
            RegType::I32 => (i32::MIN as i64, i32::MAX as i64),
            RegType::Bool => (0, 1),
            RegType::Command => (1, 1),
            RegType::String => return Err(ValueError::StringRegister),
        };
        if v < lo || v > hi {
            return Err(ValueError::OutOfRange { value: v, lo, hi });
        }
        if let Some(values) = &self.values {
            if !values.contains(&v) {
                return Err(ValueError::NotAllowed {
                    value: v,
                    allowed: values.clone(),
                });
            }
        }
        if let Some(min) = self.min {
            if v < min {
                return Err(ValueError::BelowMinimum {
                    value: v,
                    min,
                    unit: self.unit.clone(),
                });
            }
        }
        if let Some(max) = self.max {
            if v > max {
                return Err(ValueError::AboveMaximum {
                    value: v,
                    max,
                    unit: self.unit.clone(),
                });
            }
        }
        if let Some(step) = self.step {
            if step > 0 && v % step != 0 {
                return Err(ValueError::NotAMultiple { value: v, step });
            }
        }
        Ok(())
    }

    /// The wire bytes of a numeric value.
    pub fn encode(&self, v: i64) -> Vec<u8> {
        match self.kind {
            RegType::I32 => (v as i32).to_le_bytes().to_vec(),
            _ => (v as u32).to_le_bytes().to_vec(),
        }
    }

    /// A numeric value from its wire bytes (`None` when the length is wrong).
    pub fn decode(&self, bytes: &[u8]) -> Option<i64> {
        let b: [u8; 4] = bytes.try_into().ok()?;
        Some(match self.kind {
            RegType::I32 => i32::from_le_bytes(b) as i64,
            _ => u32::from_le_bytes(b) as i64,
        })
    }

    /// The wire bytes of a string value, NUL-padded (`None` when too long or not ASCII).
    pub fn encode_str(&self, s: &str) -> Option<Vec<u8>> {
        let n = self.byte_len();
        if !s.is_ascii() || s.len() > n {
            return None;
        }
        let mut v = s.as_bytes().to_vec();
        v.resize(n, 0);
        Some(v)
    }

    /// A string value from its wire bytes: up to the first NUL, non-ASCII replaced.
    pub fn decode_str(bytes: &[u8]) -> String {
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        bytes[..end]
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '?'
                }
            })
            .collect()
    }

    /// Label of an enumerated value, if the map names it.
    pub fn label_of(&self, v: i64) -> Option<&str> {
        let values = self.values.as_ref()?;
        let labels = self.labels.as_ref()?;
        let i = values.iter().position(|&x| x == v)?;
        labels.get(i).map(|s| s.as_str())
    }
}

impl RegisterMap {
    /// Parse and validate a map. `source_name` names the file in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<RegisterMap, RegMapError> {
        let err = |problem: String| RegMapError {
            source_name: source_name.to_string(),
            problem,
        };
        let file: MapFile =
            toml::from_str(text).map_err(|e| err(e.to_string().trim_end().to_string()))?;
        if file.schema != SCHEMA {
            return Err(err(format!(
                "schema is {:?}, expected {SCHEMA:?}",
                file.schema
            )));
        }
        if file.schema_version != SCHEMA_VERSION {
            return Err(err(format!(
                "schema_version is {}, this lumiq reads {SCHEMA_VERSION}",
                file.schema_version
            )));
        }
        let mut by_name = HashMap::new();
        let mut spans: Vec<(u64, u64, &str)> = Vec::new();
        for (i, r) in file.register.iter().enumerate() {
            let at = format!("register[{i}] {:?}", r.name);
            if r.name.is_empty() || !r.name.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(err(format!(
                    "{at}: the name must be ASCII letters and digits"
                )));
            }
            if by_name.insert(r.name.clone(), i).is_some() {
                return Err(err(format!("{at}: the name is used twice")));
            }
            if r.address % 4 != 0 {
                return Err(err(format!(
                    "{at}: address {:#x} is not 4-byte aligned",
                    r.address
                )));
            }
            if !UNITS.contains(&r.unit.as_str()) {
                return Err(err(format!(
                    "{at}: unit {:?} is not one of {UNITS:?}",
                    r.unit
                )));
            }
            if r.description.trim().is_empty() {
                return Err(err(format!("{at}: give a description")));
            }
            match r.kind {
                RegType::String => {
                    let n = r.length.unwrap_or(0);
                    if n == 0 || n % 4 != 0 || n > 256 {
                        return Err(err(format!(
                            "{at}: a string register needs a length that is a multiple of 4, at most 256"
                        )));
                    }
                    if r.access != Access::RO {
                        return Err(err(format!("{at}: string registers are read-only")));
                    }
                    if r.min.is_some()
                        || r.max.is_some()
                        || r.values.is_some()
                        || r.default.is_some()
                    {
                        return Err(err(format!(
                            "{at}: a string register has no min, max, values or default"
                        )));
                    }
                }
                RegType::Command => {
                    if r.access != Access::WO {
                        return Err(err(format!("{at}: a command register is write-only (WO)")));
                    }
                }
                _ => {
                    if r.length.is_some() {
                        return Err(err(format!("{at}: only string registers have a length")));
                    }
                }
            }
            if let (Some(lo), Some(hi)) = (r.min, r.max) {
                if lo > hi {
                    return Err(err(format!("{at}: min {lo} is above max {hi}")));
                }
            }
            if let Some(labels) = &r.labels {
                let n = r.values.as_ref().map_or(0, |v| v.len());
                if labels.len() != n {
                    return Err(err(format!("{at}: {} labels for {n} values", labels.len())));
                }
            }
            if let Some(values) = &r.values {
                if values.is_empty() {
                    return Err(err(format!("{at}: values is empty")));
                }
                for &v in values {
                    let mut probe = r.clone();
                    probe.values = None;
                    probe
                        .check_value(v)
                        .map_err(|e| err(format!("{at}: value {e}")))?;
                }
            }
            if let Some(d) = r.default {
                if !r.access.writable() {
                    return Err(err(format!("{at}: a read-only register has no default")));
                }
                r.check_value(d)
                    .map_err(|e| err(format!("{at}: default {e}")))?;
            } else if r.access == Access::RW {
                return Err(err(format!("{at}: a read-write register needs a default")));
            }
            let end = r.address + r.byte_len() as u64;
            if let Some((_, _, other)) = spans.iter().find(|(a, e, _)| r.address < *e && *a < end) {
                return Err(err(format!("{at}: overlaps register {other:?}")));
            }
            spans.push((r.address, end, &r.name));
        }
        for (name, kind, access) in REQUIRED {
            let Some(&i) = by_name.get(*name) else {
                return Err(err(format!(
                    "register {name:?} is missing (lumiq needs it)"
                )));
            };
            let r = &file.register[i];
            if r.kind != *kind || r.access != *access {
                return Err(err(format!(
                    "register {name:?} is {:?} {:?}, lumiq needs {kind:?} {access:?}",
                    r.kind, r.access
                )));
            }
        }
        Ok(RegisterMap {
            device: file.device,
            vendor_id: file.vendor_id,
            product_id: file.product_id,
            registers: file.register,
            by_name,
        })
    }

    /// The map shipped in the repository.
    pub fn builtin() -> Arc<RegisterMap> {
        static MAP: OnceLock<Arc<RegisterMap>> = OnceLock::new();
        MAP.get_or_init(|| {
            Arc::new(
                RegisterMap::parse(BUILTIN_MAP, BUILTIN_MAP_NAME)
                    .expect("the built-in register map is validated by tests"),
            )
        })
        .clone()
    }

    pub fn get(&self, name: &str) -> Option<&Register> {
        self.by_name.get(name).map(|&i| &self.registers[i])
    }

    /// The register starting at `address`.
    pub fn at(&self, address: u64) -> Option<&Register> {
        self.registers.iter().find(|r| r.address == address)
    }

    pub fn registers(&self) -> &[Register] {
        &self.registers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_map_loads() {
        let m = RegisterMap::builtin();
        assert_eq!(
            m.get("Binning").unwrap().values.as_ref().unwrap(),
            &vec![1, 2, 4, 8, 16]
        );
        assert_eq!(m.at(0x0100).unwrap().name, "ExposureTime");
    }

    fn with(replace: (&str, &str)) -> Result<RegisterMap, RegMapError> {
        assert!(BUILTIN_MAP.contains(replace.0), "{}", replace.0);
        RegisterMap::parse(&BUILTIN_MAP.replacen(replace.0, replace.1, 1), "test.toml")
    }

    #[test]
    fn bad_maps_are_refused_with_the_register_named() {
        let cases = [
            (
                ("address = 0x0104", "address = 0x0102"),
                "not 4-byte aligned",
            ),
            (("address = 0x0104", "address = 0x0100"), "overlaps"),
            (("default = 1000000", "default = 50"), "below the minimum"),
            (
                (
                    "values = [1, 2, 4, 8, 16]\ndefault = 1",
                    "values = [1, 2, 4, 8, 16]\ndefault = 3",
                ),
                "not one of",
            ),
            (("unit = \"us\"", "unit = \"seconds\""), "unit"),
            (
                ("name = \"Binning\"", "name = \"Binnning\""),
                "\"Binning\" is missing",
            ),
            (
                ("schema_version = 1", "schema_version = 2"),
                "schema_version",
            ),
            (
                (
                    "description = \"Pre-amplifier",
                    "colour = 1\ndescription = \"Pre-amplifier",
                ),
                "unknown field",
            ),
        ];
        for ((from, to), expected) in cases {
            let e = with((from, to)).expect_err(expected).to_string();
            assert!(e.contains(expected), "{e} should mention {expected}");
            assert!(e.starts_with("test.toml: "), "{e}");
        }
    }

    #[test]
    fn values_are_checked_and_encoded() {
        let m = RegisterMap::builtin();
        let sp = m.get("CoolingSetpoint").unwrap();
        assert!(sp.check_value(-9000).is_ok());
        assert!(sp.check_value(-13000).is_err());
        assert_eq!(sp.decode(&sp.encode(-9000)), Some(-9000));
        let ts = m.get("StreamTransferSize").unwrap();
        assert!(ts.check_value(1 << 20).is_ok());
        assert!(ts
            .check_value(4097)
            .unwrap_err()
            .to_string()
            .contains("multiple"));
        let sn = m.get("SerialNumber").unwrap();
        let b = sn.encode_str("SIM-0001").unwrap();
        assert_eq!(b.len(), 16);
        assert_eq!(Register::decode_str(&b), "SIM-0001");
        assert_eq!(m.get("ShutterMode").unwrap().label_of(0), Some("closed"));
    }
}
