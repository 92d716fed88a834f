//! The calibration set's index, `calibration.toml`, as written on disk: its schema (one
//! struct per table, unknown keys refused), parsing, the checks a parser cannot make
//! (schema, ranges, duplicates, bad-pixel coordinates) and the TOML text it is written as.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{feq, same_filter, FOV_TOLERANCE_CM, F_NUMBER_TOLERANCE, SCHEMA, SCHEMA_VERSION};
use crate::formats::FormatError;

/// `calibration.toml`, as written on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationIndex {
    pub schema: String,
    pub schema_version: u32,
    /// Identifier of this set (goes into every measurement record).
    pub id: String,
    /// The instrument whose frames this set calibrates.
    pub instrument_id: String,
    /// When the set was (last) built, RFC 3339 UTC.
    pub created_at: DateTime<Utc>,
    pub sensor: SensorSection,
    #[serde(default)]
    pub dark_rules: DarkRules,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bias: Vec<BiasEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dark: Vec<DarkEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flat: Vec<FlatEntry>,
    #[serde(default)]
    pub bad_pixels: BadPixelTable,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coefficient: Vec<CoefficientEntry>,
}

/// `[sensor]`: facts of the unbinned sensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorSection {
    /// Unbinned sensor width, pixels.
    pub width_px: u32,
    /// Unbinned sensor height, pixels.
    pub height_px: u32,
    pub pixel_pitch_um: f64,
    pub gain_e_per_adu: f64,
    /// Read noise of one read, electrons rms.
    pub read_noise_e: f64,
    /// Raw level at or above which a pixel is saturated, ADU.
    pub saturation_adu: f64,
    /// How gain and read noise were obtained (free text, e.g. "photon transfer at binning 4").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_source: Option<String>,
}

/// `[dark_rules]`: how far a dark master may be from the frame it corrects.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DarkRules {
    /// A dark is usable when |T_dark − T_frame| ≤ this, °C.
    pub temperature_tolerance_c: f64,
    /// A dark is scaled linearly in exposure only when max(t_f/t_d, t_d/t_f) ≤ this.
    pub max_exposure_ratio: f64,
}

impl Default for DarkRules {
    fn default() -> Self {
        DarkRules {
            temperature_tolerance_c: 2.0,
            max_exposure_ratio: 4.0,
        }
    }
}

/// `[[bias]]`: one master bias per binning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BiasEntry {
    pub binning: u32,
    pub file: String,
    pub frames_combined: u32,
    /// One-sigma noise of the master, per pixel, ADU.
    pub noise_adu: f64,
    /// Version of this entry: 1 when first made, one more each time `lumiq calibrate`
    /// replaces it (written only from 2 on).
    #[serde(default = "first_version", skip_serializing_if = "is_first_version")]
    pub version: u32,
}

/// `[[dark]]`: dark charge (bias removed) for one exposure, temperature and binning, ADU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DarkEntry {
    pub binning: u32,
    pub exposure_s: f64,
    pub sensor_temp_c: f64,
    pub file: String,
    pub frames_combined: u32,
    /// One-sigma noise of the master, per pixel, ADU (at its own exposure).
    pub noise_adu: f64,
    /// Version of this entry: 1 when first made, one more each time `lumiq calibrate`
    /// replaces it (written only from 2 on).
    #[serde(default = "first_version", skip_serializing_if = "is_first_version")]
    pub version: u32,
    /// When the darks were taken: the median of their frames' acquisition times, RFC 3339
    /// UTC. Absent in sets written before it was recorded; [`CalibrationIndex::parse`] then
    /// gives it the set's `created_at`, so after parsing it is always present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquired_at: Option<DateTime<Utc>>,
    /// The sensor's cooling setpoint the darks were taken at, °C (absent when unknown, as
    /// in older sets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setpoint_c: Option<f64>,
}

impl DarkEntry {
    /// When the darks were taken (`acquired_at`, else the set's `created_at`).
    pub fn acquired_at_or(&self, created_at: DateTime<Utc>) -> DateTime<Utc> {
        self.acquired_at.unwrap_or(created_at)
    }
}

/// `[[flat]]`: relative sensitivity, 1.0 on the optical axis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlatEntry {
    pub fov_cm: f64,
    pub binning: u32,
    pub filter: String,
    pub f_number: f64,
    pub file: String,
    #[serde(default)]
    pub frames_combined: u32,
    /// Version of this entry: 1 when first made, one more each time `lumiq calibrate`
    /// replaces it (written only from 2 on).
    #[serde(default = "first_version", skip_serializing_if = "is_first_version")]
    pub version: u32,
}

/// `[bad_pixels]`: known-defective pixels. `pixels` and `columns` are unbinned sensor
/// coordinates (exact position known: found at binning 1 or from a defect list); each
/// `[[bad_pixels.binned]]` entry holds defects found at a coarser binning, in that
/// binning's grid, whose position inside the binned block is unknown.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BadPixelTable {
    /// Unbinned `[x, y]` (column, row).
    #[serde(default)]
    pub pixels: Vec<[u32; 2]>,
    /// Unbinned columns.
    #[serde(default)]
    pub columns: Vec<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub binned: Vec<BinnedBadPixels>,
}

/// `[[bad_pixels.binned]]`: defects in the grid of one binning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinnedBadPixels {
    pub binning: u32,
    /// Binned `[x, y]` (column, row).
    #[serde(default)]
    pub pixels: Vec<[u32; 2]>,
    /// Binned columns.
    #[serde(default)]
    pub columns: Vec<u32>,
}

/// `[[coefficient]]`: the absolute calibration for one field of view and f-number.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoefficientEntry {
    pub fov_cm: f64,
    pub f_number: f64,
    /// Radiance (photons/s/cm²/sr) per count/s per unbinned pixel.
    pub c: f64,
    /// One-sigma relative uncertainty of `c`.
    pub rel_uncertainty: f64,
    /// Version of this entry: 1 when first made, one more each time `lumiq calibrate`
    /// replaces it (written only from 2 on).
    #[serde(default = "first_version", skip_serializing_if = "is_first_version")]
    pub version: u32,
}

fn first_version() -> u32 {
    1
}

fn is_first_version(v: &u32) -> bool {
    *v == 1
}

impl CalibrationIndex {
    /// Parse the index text (no file checks). `path` names the file in errors.
    /// A `[[dark]]` without `acquired_at` (a set written before it was recorded) is given
    /// the set's `created_at`: its darks were taken no later than the set was built.
    pub fn parse(text: &str, path: &Path) -> Result<CalibrationIndex, FormatError> {
        let mut ix: CalibrationIndex = toml::from_str(text).map_err(|e| {
            FormatError::invalid(
                path,
                format!("invalid calibration index: {}", e.to_string().trim_end()),
                "fix or remove the key named above (the layout is in docs/calibration-set.md)",
            )
        })?;
        let created_at = ix.created_at;
        for d in &mut ix.dark {
            d.acquired_at.get_or_insert(created_at);
        }
        Ok(ix)
    }

    /// The index as TOML text, with a header comment.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).expect("the calibration index serialises");
        format!(
            "# lumiq calibration set: index of the masters in this folder.\n\
             # Layout and selection rules: docs/calibration-set.md\n\n{}",
            wrap_long_arrays(&body, 8)
        )
    }

    /// Check the values a parser cannot: schema, ranges, duplicates, bad-pixel coordinates.
    pub fn validate(&self, path: &Path) -> Result<(), FormatError> {
        if self.schema != SCHEMA {
            return Err(FormatError::bad_field(
                path,
                "schema",
                format!("is {:?}", self.schema),
                format!("expected {SCHEMA:?}: is this a lumiq calibration set?"),
            ));
        }
        if self.schema_version != SCHEMA_VERSION {
            return Err(FormatError::bad_field(
                path,
                "schema_version",
                format!("is {}", self.schema_version),
                format!("this lumiq reads version {SCHEMA_VERSION}; upgrade lumiq or rebuild the set with `lumiq calibrate`"),
            ));
        }
        let positive = |key: String, v: f64, what: &str| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(FormatError::bad_field(
                    path,
                    key,
                    format!("is {v}"),
                    format!("must be a positive number ({what})"),
                ))
            }
        };
        let binning = |key: String, b: u32| {
            if (1..=64).contains(&b) {
                Ok(())
            } else {
                Err(FormatError::bad_field(
                    path,
                    key,
                    format!("is {b}"),
                    "must be an integer from 1 to 64",
                ))
            }
        };
        let s = &self.sensor;
        positive("sensor.width_px".into(), s.width_px as f64, "pixels")?;
        positive("sensor.height_px".into(), s.height_px as f64, "pixels")?;
        positive("sensor.pixel_pitch_um".into(), s.pixel_pitch_um, "µm")?;
        positive("sensor.gain_e_per_adu".into(), s.gain_e_per_adu, "e-/ADU")?;
        positive(
            "sensor.read_noise_e".into(),
            s.read_noise_e,
            "electrons rms",
        )?;
        positive("sensor.saturation_adu".into(), s.saturation_adu, "ADU")?;
        positive(
            "dark_rules.temperature_tolerance_c".into(),
            self.dark_rules.temperature_tolerance_c,
            "°C",
        )?;
        if self.dark_rules.max_exposure_ratio.is_nan() || self.dark_rules.max_exposure_ratio < 1.0 {
            return Err(FormatError::bad_field(
                path,
                "dark_rules.max_exposure_ratio",
                format!("is {}", self.dark_rules.max_exposure_ratio),
                "must be at least 1 (1 = only darks of the frame's exposure)",
            ));
        }
        let non_negative = |key: String, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(FormatError::bad_field(
                    path,
                    key,
                    format!("is {v}"),
                    "must be a non-negative number of ADU",
                ))
            }
        };
        for (i, b) in self.bias.iter().enumerate() {
            binning(format!("bias[{i}].binning"), b.binning)?;
            non_negative(format!("bias[{i}].noise_adu"), b.noise_adu)?;
            if let Some(j) = self.bias[..i].iter().position(|o| o.binning == b.binning) {
                return Err(FormatError::bad_field(
                    path,
                    format!("bias[{i}]"),
                    format!("a second bias for binning {} (bias[{j}] is one)", b.binning),
                    "keep one [[bias]] entry per binning",
                ));
            }
        }
        for (i, d) in self.dark.iter().enumerate() {
            binning(format!("dark[{i}].binning"), d.binning)?;
            positive(format!("dark[{i}].exposure_s"), d.exposure_s, "seconds")?;
            non_negative(format!("dark[{i}].noise_adu"), d.noise_adu)?;
            if let Some(sp) = d.setpoint_c.filter(|sp| !sp.is_finite()) {
                return Err(FormatError::bad_field(
                    path,
                    format!("dark[{i}].setpoint_c"),
                    format!("is {sp}"),
                    "record the cooling setpoint of the darks in °C, or leave the key out",
                ));
            }
            if !d.sensor_temp_c.is_finite() {
                return Err(FormatError::bad_field(
                    path,
                    format!("dark[{i}].sensor_temp_c"),
                    "is not a number",
                    "record the CCD temperature of the darks in °C",
                ));
            }
        }
        for (i, f) in self.flat.iter().enumerate() {
            binning(format!("flat[{i}].binning"), f.binning)?;
            positive(format!("flat[{i}].fov_cm"), f.fov_cm, "cm")?;
            positive(format!("flat[{i}].f_number"), f.f_number, "f-stops")?;
            if let Some(j) = self.flat[..i].iter().position(|o| {
                o.binning == f.binning
                    && feq(o.fov_cm, f.fov_cm, FOV_TOLERANCE_CM)
                    && feq(o.f_number, f.f_number, F_NUMBER_TOLERANCE)
                    && same_filter(&o.filter, &f.filter)
            }) {
                return Err(FormatError::bad_field(
                    path,
                    format!("flat[{i}]"),
                    format!("duplicates flat[{j}] (same binning, fov, filter and f-number)"),
                    "keep one [[flat]] entry per binning, fov, filter and f-number",
                ));
            }
        }
        for (i, c) in self.coefficient.iter().enumerate() {
            positive(format!("coefficient[{i}].fov_cm"), c.fov_cm, "cm")?;
            positive(format!("coefficient[{i}].f_number"), c.f_number, "f-stops")?;
            positive(
                format!("coefficient[{i}].c"),
                c.c,
                "photons/s/cm²/sr per count/s",
            )?;
            non_negative(
                format!("coefficient[{i}].rel_uncertainty"),
                c.rel_uncertainty,
            )?;
            if let Some(j) = self.coefficient[..i].iter().position(|o| {
                feq(o.fov_cm, c.fov_cm, FOV_TOLERANCE_CM)
                    && feq(o.f_number, c.f_number, F_NUMBER_TOLERANCE)
            }) {
                return Err(FormatError::bad_field(
                    path,
                    format!("coefficient[{i}]"),
                    format!("duplicates coefficient[{j}] (same fov and f-number)"),
                    "keep one [[coefficient]] entry per fov and f-number",
                ));
            }
        }
        let bp = &self.bad_pixels;
        for (i, [x, y]) in bp.pixels.iter().enumerate() {
            if *x >= s.width_px || *y >= s.height_px {
                return Err(FormatError::bad_field(
                    path,
                    format!("bad_pixels.pixels[{i}]"),
                    format!(
                        "[{x}, {y}] is outside the {}x{} sensor",
                        s.width_px, s.height_px
                    ),
                    "bad_pixels.pixels are unbinned [x, y] sensor coordinates",
                ));
            }
        }
        for (i, x) in bp.columns.iter().enumerate() {
            if *x >= s.width_px {
                return Err(FormatError::bad_field(
                    path,
                    format!("bad_pixels.columns[{i}]"),
                    format!("{x} is outside the {}-pixel-wide sensor", s.width_px),
                    "bad_pixels.columns are unbinned sensor columns",
                ));
            }
        }
        for (i, e) in bp.binned.iter().enumerate() {
            binning(format!("bad_pixels.binned[{i}].binning"), e.binning)?;
            let (w, h) = (s.width_px / e.binning, s.height_px / e.binning);
            if let Some([x, y]) = e.pixels.iter().find(|[x, y]| *x >= w || *y >= h) {
                return Err(FormatError::bad_field(
                    path,
                    format!("bad_pixels.binned[{i}].pixels"),
                    format!(
                        "[{x}, {y}] is outside the {w}x{h} grid of binning {}",
                        e.binning
                    ),
                    "binned bad pixels are [x, y] in that binning's grid",
                ));
            }
            if let Some(x) = e.columns.iter().find(|x| **x >= w) {
                return Err(FormatError::bad_field(
                    path,
                    format!("bad_pixels.binned[{i}].columns"),
                    format!(
                        "{x} is outside the {w}-column grid of binning {}",
                        e.binning
                    ),
                    "binned bad columns are in that binning's grid",
                ));
            }
        }
        Ok(())
    }

    /// Every master file named by the index, with the key naming it.
    pub fn files(&self) -> Vec<(String, &str)> {
        let mut v = Vec::new();
        for (i, b) in self.bias.iter().enumerate() {
            v.push((format!("bias[{i}].file"), b.file.as_str()));
        }
        for (i, d) in self.dark.iter().enumerate() {
            v.push((format!("dark[{i}].file"), d.file.as_str()));
        }
        for (i, f) in self.flat.iter().enumerate() {
            v.push((format!("flat[{i}].file"), f.file.as_str()));
        }
        v
    }
}

/// Break `key = [e1, e2, ...]` lines longer than 100 characters into lines of `per_line`
/// elements (bad-pixel lists hold hundreds of `[x, y]` pairs). Lines with strings are left
/// alone, so a bracket or comma inside a string can never be mistaken for structure.
fn wrap_long_arrays(text: &str, per_line: usize) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for line in text.lines() {
        let Some((key, value)) = line.split_once(" = ") else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let v = value.trim();
        if line.len() <= 100 || v.contains('"') || !(v.starts_with('[') && v.ends_with(']')) {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        // Split the outer array's elements at depth-1 commas.
        let inner = &v[1..v.len() - 1];
        let mut elems = Vec::new();
        let (mut depth, mut start) = (0i32, 0usize);
        for (i, ch) in inner.char_indices() {
            match ch {
                '[' | '{' => depth += 1,
                ']' | '}' => depth -= 1,
                ',' if depth == 0 => {
                    elems.push(inner[start..i].trim());
                    start = i + 1;
                }
                _ => {}
            }
        }
        if !inner[start..].trim().is_empty() {
            elems.push(inner[start..].trim());
        }
        out.push_str(key);
        out.push_str(" = [\n");
        for chunk in elems.chunks(per_line.max(1)) {
            out.push_str("    ");
            out.push_str(&chunk.join(", "));
            out.push_str(",\n");
        }
        out.push_str("]\n");
    }
    out
}
