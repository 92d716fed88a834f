//! The calibration set: one folder holding a TOML index (`calibration.toml`) and 32-bit
//! float TIFF masters — bias, dark and flat per binning — plus the bad-pixel map, the
//! radiance coefficients per (field of view, f-number) and the sensor's facts. Specified in
//! `docs/calibration-set.md`.
//!
//! ```text
//! <set>/calibration.toml             index (schema "lumiq.calibration", version 1)
//! <set>/bias_b8.tiff                 master bias, ADU
//! <set>/dark_b8_60s_-90.0C.tiff      dark charge for 60 s with the bias removed, ADU
//! <set>/flat_b8_fov22.4_f1_open.tiff flat field, 1.0 on the optical axis
//! ```
//!
//! Owns: parsing and validating the index (unknown keys are errors naming the key), and
//! the selection rules that turn the set into one frame's [`FrameCalibration`] with the
//! provenance of every file used. [`CalibrationSet::load`] checks the index and that every
//! file it names exists; the masters themselves are read lazily, on the first frame that
//! needs them, and kept (with their SHA-256) for the life of the `CalibrationSet`: load the
//! set again to pick up a rebuilt one. Does not own building masters (see
//! [`crate::calibrate`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::tiff_io::read_f32_and_sha256;
use super::FormatError;
use crate::acquisition::AcquisitionMeta;
use crate::process::{FrameCalibration, SensorFacts};

pub const INDEX_FILE: &str = "calibration.toml";
pub const SCHEMA: &str = "lumiq.calibration";
pub const SCHEMA_VERSION: u32 = 1;
/// A flat or coefficient matches a frame's field of view within this many cm.
pub const FOV_TOLERANCE_CM: f64 = 0.05;
/// A flat or coefficient matches a frame's f-number within this many f-stops.
pub const F_NUMBER_TOLERANCE: f64 = 0.01;

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
}

/// One file (or part of the index) used to calibrate a frame, for the record's provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationItem {
    /// "bias", "dark", "flat", "bad_pixels", "coefficient" or "index".
    pub kind: String,
    /// File name (relative to the set) or description of the index entry.
    pub id: String,
    /// SHA-256 of the file; for index entries, of `calibration.toml`.
    pub sha256: String,
    /// What was selected and how it was scaled.
    pub detail: String,
}

#[derive(Debug, Clone)]
struct Master {
    data: Arc<Array2<f32>>,
    sha256: String,
}

/// A loaded calibration set.
#[derive(Debug, Clone)]
pub struct CalibrationSet {
    pub dir: PathBuf,
    pub index: CalibrationIndex,
    /// SHA-256 of `calibration.toml`.
    pub index_sha256: String,
    cache: Arc<Mutex<HashMap<String, Master>>>,
}

fn feq(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

/// Exposure ratio ≥ 1 between two exposures.
fn exposure_ratio(a: f64, b: f64) -> f64 {
    if a >= b {
        a / b
    } else {
        b / a
    }
}

fn list<T: std::fmt::Display>(v: impl IntoIterator<Item = T>) -> String {
    let s: Vec<String> = v.into_iter().map(|x| x.to_string()).collect();
    if s.is_empty() {
        "none".into()
    } else {
        s.join(", ")
    }
}

impl CalibrationIndex {
    /// Parse the index text (no file checks). `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<CalibrationIndex, FormatError> {
        toml::from_str(text).map_err(|e| {
            FormatError::invalid(
                path,
                format!("invalid calibration index: {}", e.to_string().trim_end()),
                "fix or remove the key named above (the layout is in docs/calibration-set.md)",
            )
        })
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

/// Filter names compare case-insensitively, ignoring surrounding blanks.
fn same_filter(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

impl CalibrationSet {
    /// Parse and validate `<dir>/calibration.toml` and check that every master it names
    /// exists as a file inside `dir`. Masters are read lazily (see the module docs).
    pub fn load(dir: &Path) -> Result<CalibrationSet, FormatError> {
        let path = dir.join(INDEX_FILE);
        let bytes = std::fs::read(&path).map_err(|e| FormatError::io(&path, e))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            FormatError::invalid(&path, "is not UTF-8 text", "save the index as UTF-8")
        })?;
        let index = CalibrationIndex::parse(&text, &path)?;
        index.validate(&path)?;
        for (key, file) in index.files() {
            let rel = Path::new(file);
            if file.is_empty()
                || rel.is_absolute()
                || rel
                    .components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(FormatError::bad_field(
                    &path,
                    key,
                    format!("{file:?} is not a plain file name inside the set"),
                    "name the master by its path relative to the set's folder",
                ));
            }
            let full = dir.join(rel);
            if !full.is_file() {
                return Err(FormatError::bad_field(
                    &path,
                    key,
                    format!("{} does not exist", full.display()),
                    "copy the whole calibration set folder, or rebuild it with `lumiq calibrate`",
                ));
            }
        }
        let index_sha256 = {
            use sha2::{Digest, Sha256};
            format!("{:x}", Sha256::digest(text.as_bytes()))
        };
        Ok(CalibrationSet {
            dir: dir.to_path_buf(),
            index,
            index_sha256,
            cache: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Path of the index file.
    pub fn index_path(&self) -> PathBuf {
        self.dir.join(INDEX_FILE)
    }

    /// The sensor facts of the set.
    pub fn sensor_facts(&self) -> SensorFacts {
        let s = &self.index.sensor;
        SensorFacts {
            gain_e_per_adu: s.gain_e_per_adu,
            read_noise_e: s.read_noise_e,
            saturation_adu: s.saturation_adu,
            pixel_pitch_um: s.pixel_pitch_um,
        }
    }

    /// Read (once) a master and its SHA-256.
    fn master(&self, file: &str) -> Result<Master, FormatError> {
        if let Some(m) = self.cache.lock().expect("cache lock").get(file) {
            return Ok(m.clone());
        }
        let path = self.dir.join(file);
        let (data, sha256) = read_f32_and_sha256(&path)?;
        let m = Master {
            data: Arc::new(data),
            sha256,
        };
        self.cache
            .lock()
            .expect("cache lock")
            .insert(file.to_string(), m.clone());
        Ok(m)
    }

    fn check_size(
        &self,
        what: &str,
        file: &str,
        binning: u32,
        master: &Array2<f32>,
        rows: usize,
        cols: usize,
    ) -> Result<(), FormatError> {
        let (mr, mc) = master.dim();
        if (mr, mc) != (rows, cols) {
            return Err(FormatError::invalid(
                &self.dir.join(file),
                format!(
                    "{what} calibration is for binning {binning} / size {mc}x{mr}, \
                     frame is binning {binning} / size {cols}x{rows}"
                ),
                "use a set made at the frame's binning and sensor size \
                 (`lumiq calibrate` with bias, dark and flat frames taken like this frame)",
            ));
        }
        Ok(())
    }

    /// Select and scale the masters for one frame (`frame_rows × frame_cols` binned
    /// pixels taken with `meta`'s settings). The rules are in docs/calibration-set.md:
    /// bias of the frame's binning and size; dark of that binning within the temperature
    /// tolerance and the exposure ratio, scaled linearly; flat of that binning, fov,
    /// filter and f-number; the bad-pixel map binned to the frame's grid; the coefficient
    /// of the fov and f-number. Anything missing is an error that says what was asked,
    /// what the set has and how to fix it — never a guess.
    pub fn frame_calibration(
        &self,
        meta: &AcquisitionMeta,
        frame_rows: usize,
        frame_cols: usize,
    ) -> Result<(FrameCalibration, Vec<CalibrationItem>), FormatError> {
        let index_path = self.index_path();
        let ix = &self.index;
        let b = meta.binning;
        let (rows, cols) = (frame_rows, frame_cols);
        let mut items = vec![CalibrationItem {
            kind: "index".into(),
            id: format!("{INDEX_FILE} (set {})", ix.id),
            sha256: self.index_sha256.clone(),
            detail: format!(
                "calibration set {} for instrument {}, created {}",
                ix.id,
                ix.instrument_id,
                ix.created_at.to_rfc3339()
            ),
        }];

        if meta.instrument_id != ix.instrument_id {
            return Err(FormatError::bad_field(
                &index_path,
                "instrument_id",
                format!(
                    "the set calibrates instrument {:?}, the frame comes from {:?}",
                    ix.instrument_id, meta.instrument_id
                ),
                "use the calibration set of the instrument that took the frame",
            ));
        }

        // Bias.
        let Some(bias_entry) = ix.bias.iter().find(|e| e.binning == b) else {
            return Err(FormatError::invalid(
                &index_path,
                format!(
                    "calibration is for binning {} (no [[bias]] at binning {b}), \
                     frame is binning {b} / size {cols}x{rows}",
                    list(ix.bias.iter().map(|e| e.binning))
                ),
                format!(
                    "use a set made at the frame's binning \
                     (`lumiq calibrate` with bias frames at binning {b})"
                ),
            ));
        };
        let bias = self.master(&bias_entry.file)?;
        self.check_size("bias", &bias_entry.file, b, &bias.data, rows, cols)?;
        if let Some(((r, c), v)) = bias.data.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(FormatError::invalid(
                &self.dir.join(&bias_entry.file),
                format!("master bias has a non-finite value ({v}) at row {r}, column {c}"),
                "rebuild the bias master with `lumiq calibrate`",
            ));
        }
        items.push(CalibrationItem {
            kind: "bias".into(),
            id: bias_entry.file.clone(),
            sha256: bias.sha256.clone(),
            detail: format!(
                "binning {b}, {} frames combined, noise {:.3} ADU",
                bias_entry.frames_combined, bias_entry.noise_adu
            ),
        });

        // Dark.
        let (dark, dark_var, dark_item) = self.select_dark(meta, &bias.data, rows, cols)?;
        items.push(dark_item);

        // Flat.
        let flat_entry = ix.flat.iter().find(|e| {
            e.binning == b
                && feq(e.fov_cm, meta.fov_cm, FOV_TOLERANCE_CM)
                && feq(e.f_number, meta.f_number, F_NUMBER_TOLERANCE)
                && same_filter(&e.filter, &meta.emission_filter)
        });
        let Some(flat_entry) = flat_entry else {
            return Err(FormatError::invalid(
                &index_path,
                format!(
                    "no [[flat]] for binning {b}, fov {} cm, filter {:?}, f/{} (the set has: {})",
                    meta.fov_cm,
                    meta.emission_filter,
                    meta.f_number,
                    list(ix.flat.iter().map(|e| format!(
                        "binning {} fov {} cm filter {:?} f/{}",
                        e.binning, e.fov_cm, e.filter, e.f_number
                    )))
                ),
                format!(
                    "take flat frames at binning {b}, fov {} cm, filter {:?}, f/{} and add them \
                     with `lumiq calibrate flat ...`",
                    meta.fov_cm, meta.emission_filter, meta.f_number
                ),
            ));
        };
        let flat = self.master(&flat_entry.file)?;
        self.check_size("flat", &flat_entry.file, b, &flat.data, rows, cols)?;
        let mut bad = flat
            .data
            .indexed_iter()
            .filter(|(_, v)| !(v.is_finite() && **v > 0.0));
        if let Some(((r, c), v)) = bad.next() {
            let count = 1 + bad.count();
            return Err(FormatError::invalid(
                &self.dir.join(&flat_entry.file),
                format!(
                    "flat field has {count} pixels that are zero, negative or not a number \
                     (first: {v} at row {r}, column {c})"
                ),
                "rebuild the flat with `lumiq calibrate flat ...` from well-exposed flat frames",
            ));
        }
        items.push(CalibrationItem {
            kind: "flat".into(),
            id: flat_entry.file.clone(),
            sha256: flat.sha256.clone(),
            detail: format!(
                "binning {b}, fov {} cm, filter {}, f/{}, {} frames combined",
                flat_entry.fov_cm,
                flat_entry.filter,
                flat_entry.f_number,
                flat_entry.frames_combined
            ),
        });

        // Bad pixels.
        let (bad_pixels, bp_detail) = self.bad_pixel_mask(b, rows, cols);
        items.push(CalibrationItem {
            kind: "bad_pixels".into(),
            id: format!("{INDEX_FILE} [bad_pixels]"),
            sha256: self.index_sha256.clone(),
            detail: bp_detail,
        });

        // Coefficient.
        let coef = ix.coefficient.iter().find(|e| {
            feq(e.fov_cm, meta.fov_cm, FOV_TOLERANCE_CM)
                && feq(e.f_number, meta.f_number, F_NUMBER_TOLERANCE)
        });
        let Some(coef) = coef else {
            return Err(FormatError::missing(
                &index_path,
                format!(
                    "[[coefficient]] for fov {} cm, f/{} (the set has: {})",
                    meta.fov_cm,
                    meta.f_number,
                    list(
                        ix.coefficient
                            .iter()
                            .map(|e| format!("fov {} cm f/{}", e.fov_cm, e.f_number))
                    )
                ),
                format!(
                    "add a [[coefficient]] entry with fov_cm = {}, f_number = {}, c and \
                     rel_uncertainty from the instrument's absolute calibration",
                    meta.fov_cm, meta.f_number
                ),
            ));
        };
        items.push(CalibrationItem {
            kind: "coefficient".into(),
            id: format!(
                "{INDEX_FILE} [[coefficient]] fov {} f/{}",
                coef.fov_cm, coef.f_number
            ),
            sha256: self.index_sha256.clone(),
            detail: format!(
                "C = {:e} photons/s/cm²/sr per count/s, ±{:.1} %",
                coef.c,
                100.0 * coef.rel_uncertainty
            ),
        });

        let cal = FrameCalibration {
            bias_adu: (*bias.data).clone(),
            bias_var_adu2: (bias_entry.noise_adu * bias_entry.noise_adu) as f32,
            dark_adu: Some(dark),
            dark_var_adu2: dark_var,
            flat: (*flat.data).clone(),
            bad_pixels,
            coefficient: coef.c,
            coefficient_rel_uncertainty: coef.rel_uncertainty,
            sensor: self.sensor_facts(),
        };
        Ok((cal, items))
    }

    /// The dark rule: same binning, |ΔT| within tolerance, nearest exposure by ratio, ratio
    /// within the limit, scaled linearly; a master saturated everywhere is refused.
    fn select_dark(
        &self,
        meta: &AcquisitionMeta,
        bias: &Array2<f32>,
        rows: usize,
        cols: usize,
    ) -> Result<(Array2<f32>, f32, CalibrationItem), FormatError> {
        let ix = &self.index;
        let index_path = self.index_path();
        let rules = ix.dark_rules;
        let b = meta.binning;
        let (t, temp) = (meta.exposure_s, meta.sensor_temp_c);
        let describe = |e: &DarkEntry| {
            format!(
                "binning {} {} s at {:.1} °C",
                e.binning, e.exposure_s, e.sensor_temp_c
            )
        };
        let fix = format!(
            "take dark frames (shutter closed) at binning {b}, {t} s, {temp:.1} °C and add them \
             to the set with `lumiq calibrate dark ...`"
        );
        if !(t.is_finite() && t > 0.0) {
            return Err(FormatError::invalid(
                &index_path,
                format!("the frame's exposure is {t} s, no dark can be scaled to it"),
                "fix the acquisition metadata's exposure_s",
            ));
        }
        let same_binning: Vec<&DarkEntry> = ix.dark.iter().filter(|e| e.binning == b).collect();
        let in_tolerance: Vec<&DarkEntry> = same_binning
            .iter()
            .copied()
            .filter(|e| (e.sensor_temp_c - temp).abs() <= rules.temperature_tolerance_c)
            .collect();
        if in_tolerance.is_empty() {
            return Err(FormatError::invalid(
                &index_path,
                format!(
                    "no [[dark]] at binning {b} within ±{} °C of the frame's {temp:.1} °C \
                     (the set has: {})",
                    rules.temperature_tolerance_c,
                    list(ix.dark.iter().map(describe))
                ),
                fix,
            ));
        }
        let entry = in_tolerance
            .iter()
            .copied()
            .min_by(|a, b| {
                exposure_ratio(a.exposure_s, t)
                    .total_cmp(&exposure_ratio(b.exposure_s, t))
                    .then(
                        (a.sensor_temp_c - temp)
                            .abs()
                            .total_cmp(&(b.sensor_temp_c - temp).abs()),
                    )
            })
            .expect("not empty");
        let ratio = exposure_ratio(entry.exposure_s, t);
        if ratio > rules.max_exposure_ratio {
            return Err(FormatError::invalid(
                &index_path,
                format!(
                    "the nearest dark for {t} s at binning {b}, {temp:.1} °C is {} \
                     (exposure ratio {ratio:.2} > dark_rules.max_exposure_ratio {}); \
                     the set has: {}",
                    describe(entry),
                    rules.max_exposure_ratio,
                    list(ix.dark.iter().map(describe))
                ),
                fix,
            ));
        }
        let master = self.master(&entry.file)?;
        self.check_size("dark", &entry.file, b, &master.data, rows, cols)?;
        let file_path = self.dir.join(&entry.file);
        if let Some(((r, c), v)) = master.data.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(FormatError::invalid(
                &file_path,
                format!("master dark has a non-finite value ({v}) at row {r}, column {c}"),
                "rebuild the dark master with `lumiq calibrate dark ...`",
            ));
        }
        let sat = ix.sensor.saturation_adu as f32;
        if master
            .data
            .iter()
            .zip(bias.iter())
            .all(|(&d, &bi)| d + bi >= sat)
        {
            return Err(FormatError::invalid(
                &file_path,
                format!(
                    "the dark master is saturated in every pixel (bias + dark ≥ {sat} ADU): \
                     its raw darks were unusable"
                ),
                format!(
                    "delete this [[dark]] entry and take new darks (shutter closed, camera \
                     cooled) at binning {b}, {} s with `lumiq calibrate dark ...`",
                    entry.exposure_s
                ),
            ));
        }
        let scale = t / entry.exposure_s;
        let dark = master.data.mapv(|v| v * scale as f32);
        let var = (entry.noise_adu * scale).powi(2) as f32;
        let item = CalibrationItem {
            kind: "dark".into(),
            id: entry.file.clone(),
            sha256: master.sha256.clone(),
            detail: format!(
                "library entry {} ({} frames combined), frame {t} s at {temp:.1} °C, \
                 scaled by {scale:.6}",
                describe(entry),
                entry.frames_combined
            ),
        };
        Ok((dark, var, item))
    }

    /// The bad-pixel map in a frame's grid: a binned pixel is bad when any of its unbinned
    /// pixels is listed (or lies in a listed column), or when an entry of
    /// `[[bad_pixels.binned]]` at a binning `b'` dividing the frame's binning `b` marks the
    /// binned pixel containing it. Entries at binnings that do not divide `b` (finer frames
    /// than the entry) are not used: their position inside the block is unknown.
    fn bad_pixel_mask(&self, b: u32, rows: usize, cols: usize) -> (Array2<bool>, String) {
        let bp = &self.index.bad_pixels;
        let mut mask = Array2::from_elem((rows, cols), false);
        let bu = b as usize;
        let mut mark = |x: usize, y: usize, f: usize| {
            let (r, c) = (y / f, x / f);
            if r < rows && c < cols {
                mask[[r, c]] = true;
            }
        };
        for [x, y] in &bp.pixels {
            mark(*x as usize, *y as usize, bu);
        }
        let col_mark = |x: usize, f: usize, mask: &mut Array2<bool>| {
            let c = x / f;
            if c < cols {
                mask.column_mut(c).fill(true);
            }
        };
        let mut used = Vec::new();
        for e in bp.binned.iter().filter(|e| b % e.binning == 0) {
            let f = (b / e.binning) as usize;
            for [x, y] in &e.pixels {
                mark(*x as usize, *y as usize, f);
            }
            used.push(e.binning);
        }
        for x in &bp.columns {
            col_mark(*x as usize, bu, &mut mask);
        }
        for e in bp.binned.iter().filter(|e| b % e.binning == 0) {
            for x in &e.columns {
                col_mark(*x as usize, (b / e.binning) as usize, &mut mask);
            }
        }
        let n = mask.iter().filter(|&&v| v).count();
        let detail = format!(
            "{} unbinned pixels and {} unbinned columns, plus binned lists at binning(s) {}, \
             mapped to binning {b}: {n} of {} pixels flagged",
            bp.pixels.len(),
            bp.columns.len(),
            list(used),
            rows * cols
        );
        (mask, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::tiff_io::write_f32;
    use chrono::TimeZone;

    const B: u32 = 4;
    const N: usize = 16; // binned side; the sensor is 64².

    fn index() -> CalibrationIndex {
        CalibrationIndex {
            schema: SCHEMA.into(),
            schema_version: SCHEMA_VERSION,
            id: "test-set".into(),
            instrument_id: "sim-ivis-01".into(),
            created_at: Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap(),
            sensor: SensorSection {
                width_px: 64,
                height_px: 64,
                pixel_pitch_um: 13.5,
                gain_e_per_adu: 1.5,
                read_noise_e: 5.0,
                saturation_adu: 65000.0,
                noise_source: None,
            },
            dark_rules: DarkRules::default(),
            bias: vec![BiasEntry {
                binning: B,
                file: "bias_b4.tiff".into(),
                frames_combined: 10,
                noise_adu: 1.25,
            }],
            dark: vec![
                DarkEntry {
                    binning: B,
                    exposure_s: 60.0,
                    sensor_temp_c: -90.0,
                    file: "dark_b4_60s.tiff".into(),
                    frames_combined: 10,
                    noise_adu: 1.5,
                },
                DarkEntry {
                    binning: B,
                    exposure_s: 600.0,
                    sensor_temp_c: -90.0,
                    file: "dark_b4_600s.tiff".into(),
                    frames_combined: 10,
                    noise_adu: 2.0,
                },
            ],
            flat: vec![FlatEntry {
                fov_cm: 22.4,
                binning: B,
                filter: "open".into(),
                f_number: 1.0,
                file: "flat_b4.tiff".into(),
                frames_combined: 10,
            }],
            bad_pixels: BadPixelTable {
                pixels: vec![[5, 9]],
                columns: vec![37],
                binned: vec![
                    BinnedBadPixels {
                        binning: 2,
                        pixels: vec![[20, 30]],
                        columns: vec![],
                    },
                    BinnedBadPixels {
                        binning: 8,
                        pixels: vec![[1, 1]],
                        columns: vec![],
                    },
                ],
            },
            coefficient: vec![CoefficientEntry {
                fov_cm: 22.4,
                f_number: 1.0,
                c: 7.223e5,
                rel_uncertainty: 0.03,
            }],
        }
    }

    /// A set in a temporary folder; `edit` changes the index, `frames` the masters.
    fn make_set(
        edit: impl FnOnce(&mut CalibrationIndex),
        frames: impl FnOnce(&mut HashMap<&'static str, Array2<f32>>),
    ) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = index();
        edit(&mut ix);
        let mut m: HashMap<&'static str, Array2<f32>> = HashMap::new();
        m.insert("bias_b4.tiff", Array2::from_elem((N, N), 500.0));
        m.insert("dark_b4_60s.tiff", Array2::from_elem((N, N), 10.0));
        m.insert("dark_b4_600s.tiff", Array2::from_elem((N, N), 100.0));
        m.insert(
            "flat_b4.tiff",
            Array2::from_shape_fn((N, N), |(r, c)| {
                1.0 - 0.001 * ((r as f32 - 7.5).powi(2) + (c as f32 - 7.5).powi(2))
            }),
        );
        frames(&mut m);
        for (name, a) in &m {
            write_f32(&dir.path().join(name), a).unwrap();
        }
        std::fs::write(dir.path().join(INDEX_FILE), ix.to_toml()).unwrap();
        dir
    }

    fn meta(binning: u32, exposure_s: f64, temp: f64) -> AcquisitionMeta {
        AcquisitionMeta {
            instrument_id: "sim-ivis-01".into(),
            acquired_at: Utc.with_ymd_and_hms(2026, 1, 6, 9, 0, 0).unwrap(),
            exposure_s,
            binning,
            f_number: 1.0,
            fov_cm: 22.4,
            sensor_temp_c: temp,
            emission_filter: "open".into(),
            shelf: None,
            study_id: None,
            subject_ids: vec![],
            injection_time: None,
            view: None,
            photograph: None,
        }
    }

    fn err_of(dir: &Path, m: &AcquisitionMeta, rows: usize, cols: usize) -> String {
        let set = CalibrationSet::load(dir).unwrap();
        set.frame_calibration(m, rows, cols)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn selects_and_scales_the_dark() {
        let dir = make_set(|_| {}, |_| {});
        let set = CalibrationSet::load(dir.path()).unwrap();
        // 120 s: the 60 s dark (ratio 2) beats the 600 s one (ratio 5); scale 2.
        let (cal, items) = set.frame_calibration(&meta(B, 120.0, -89.0), N, N).unwrap();
        let d = cal.dark_adu.as_ref().unwrap();
        assert!(d.iter().all(|&v| (v - 20.0).abs() < 1e-4), "{d:?}");
        assert!((cal.dark_var_adu2 - 9.0).abs() < 1e-4);
        assert!((cal.bias_var_adu2 - 1.5625).abs() < 1e-6);
        assert_eq!(cal.bias_adu[[3, 3]], 500.0);
        assert_eq!(cal.coefficient, 7.223e5);
        let kinds: Vec<&str> = items.iter().map(|i| i.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["index", "bias", "dark", "flat", "bad_pixels", "coefficient"]
        );
        let dark = &items[2];
        assert_eq!(dark.id, "dark_b4_60s.tiff");
        assert!(dark.detail.contains("scaled by 2.0"), "{}", dark.detail);
        assert_eq!(
            dark.sha256,
            crate::formats::sha256_file(&dir.path().join("dark_b4_60s.tiff")).unwrap()
        );
        assert!(items.iter().all(|i| i.sha256.len() == 64));

        // 400 s: the 600 s dark is nearer (ratio 1.5), scaled by 2/3.
        let (cal, _) = set.frame_calibration(&meta(B, 400.0, -91.5), N, N).unwrap();
        let v = cal.dark_adu.unwrap()[[0, 0]];
        assert!((v - 100.0 * 400.0 / 600.0).abs() < 1e-3, "{v}");

        // Bad pixels: unbinned (5, 9) → binned (1, 2); column 37 → 9; binning-2 (20, 30)
        // → (10, 15); the binning-8 entry cannot be placed at binning 4.
        let bp = &cal.bad_pixels;
        assert!(bp[[2, 1]]);
        assert!(bp.column(9).iter().all(|&b| b));
        assert!(bp[[15, 10]]);
        assert_eq!(bp.iter().filter(|&&b| b).count(), N + 2);
    }

    #[test]
    fn another_binning_is_refused() {
        let dir = make_set(|_| {}, |_| {});
        let e = err_of(dir.path(), &meta(2, 60.0, -90.0), 32, 32);
        assert!(e.contains("calibration.toml"), "{e}");
        assert!(
            e.contains("binning 4") && e.contains("frame is binning 2"),
            "{e}"
        );
        assert!(e.contains("use a set made at the frame's binning"), "{e}");
    }

    #[test]
    fn another_size_is_refused() {
        let dir = make_set(|_| {}, |_| {});
        let e = err_of(dir.path(), &meta(B, 60.0, -90.0), 20, 24);
        assert!(e.contains("bias_b4.tiff"), "{e}");
        assert!(e.contains("size 16x16") && e.contains("size 24x20"), "{e}");
        assert!(e.contains("use a set made at the frame's binning"), "{e}");
    }

    #[test]
    fn dark_temperature_out_of_tolerance_is_refused() {
        let dir = make_set(|_| {}, |_| {});
        let e = err_of(dir.path(), &meta(B, 60.0, -85.0), N, N);
        assert!(e.contains("calibration.toml"), "{e}");
        assert!(
            e.contains("-85.0 °C") && e.contains("60 s at -90.0 °C"),
            "{e}"
        );
        assert!(e.contains("lumiq calibrate dark"), "{e}");
    }

    #[test]
    fn dark_exposure_ratio_too_large_is_refused() {
        let dir = make_set(|_| {}, |_| {});
        let e = err_of(dir.path(), &meta(B, 5.0, -90.0), N, N);
        assert!(e.contains("exposure ratio 12.00"), "{e}");
        assert!(e.contains("max_exposure_ratio 4"), "{e}");
        assert!(e.contains("lumiq calibrate dark"), "{e}");
    }

    #[test]
    fn dark_saturated_everywhere_is_refused() {
        let dir = make_set(
            |_| {},
            |m| {
                m.insert("dark_b4_60s.tiff", Array2::from_elem((N, N), 65034.0));
            },
        );
        let e = err_of(dir.path(), &meta(B, 60.0, -90.0), N, N);
        assert!(e.contains("dark_b4_60s.tiff"), "{e}");
        assert!(e.contains("saturated in every pixel"), "{e}");
        assert!(e.contains("take new darks"), "{e}");
    }

    #[test]
    fn flat_with_zero_or_nan_is_refused() {
        for bad in [0.0f32, f32::NAN] {
            let dir = make_set(
                |_| {},
                |m| {
                    m.get_mut("flat_b4.tiff").unwrap()[[3, 4]] = bad;
                },
            );
            let e = err_of(dir.path(), &meta(B, 60.0, -90.0), N, N);
            assert!(e.contains("flat_b4.tiff"), "{e}");
            assert!(e.contains("row 3, column 4"), "{e}");
            assert!(e.contains("rebuild the flat"), "{e}");
        }
    }

    #[test]
    fn missing_coefficient_is_refused() {
        let dir = make_set(
            |ix| {
                ix.flat.push(FlatEntry {
                    fov_cm: 12.5,
                    ..ix.flat[0].clone()
                });
                ix.flat[1].file = "flat_b4.tiff".into();
            },
            |_| {},
        );
        let mut m = meta(B, 60.0, -90.0);
        m.fov_cm = 12.5;
        let e = err_of(dir.path(), &m, N, N);
        assert!(e.contains("calibration.toml"), "{e}");
        assert!(e.contains("[[coefficient]] for fov 12.5 cm, f/1"), "{e}");
        assert!(e.contains("add a [[coefficient]] entry"), "{e}");
    }

    #[test]
    fn missing_flat_names_what_exists() {
        let dir = make_set(|_| {}, |_| {});
        let mut m = meta(B, 60.0, -90.0);
        m.emission_filter = "GFP".into();
        let e = err_of(dir.path(), &m, N, N);
        assert!(
            e.contains("filter \"GFP\"") && e.contains("filter \"open\""),
            "{e}"
        );
        assert!(e.contains("lumiq calibrate flat"), "{e}");
    }

    #[test]
    fn unknown_key_is_refused_by_name() {
        let dir = make_set(|_| {}, |_| {});
        let p = dir.path().join(INDEX_FILE);
        let text = std::fs::read_to_string(&p).unwrap();
        let text = text.replace("[sensor]\n", "[sensor]\ngain_e_per_adu_typo = 1.5\n");
        std::fs::write(&p, text).unwrap();
        let e = CalibrationSet::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("calibration.toml"), "{e}");
        assert!(e.contains("gain_e_per_adu_typo"), "{e}");
        assert!(e.contains("fix or remove the key"), "{e}");
    }

    #[test]
    fn missing_master_file_and_other_instrument_are_refused() {
        let dir = make_set(|_| {}, |_| {});
        let mut m = meta(B, 60.0, -90.0);
        m.instrument_id = "other".into();
        let e = err_of(dir.path(), &m, N, N);
        assert!(
            e.contains("instrument_id") && e.contains("\"other\""),
            "{e}"
        );

        std::fs::remove_file(dir.path().join("flat_b4.tiff")).unwrap();
        let e = CalibrationSet::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("flat[0].file") && e.contains("flat_b4.tiff"),
            "{e}"
        );
    }

    #[test]
    fn index_round_trips_through_toml() {
        let mut ix = index();
        ix.bad_pixels.binned[0].pixels = (0..200).map(|i| [i % 32, i / 7]).collect();
        let text = ix.to_toml();
        assert!(text.lines().all(|l| l.len() <= 100), "{text}");
        let back = CalibrationIndex::parse(&text, Path::new("x.toml")).unwrap();
        assert_eq!(back, ix);
        assert!(text.contains("schema = \"lumiq.calibration\""), "{text}");
        assert!(text.contains("[[bad_pixels.binned]]"), "{text}");
    }
}
