//! IVIS (Living Image) click folders: reading the years of acquisitions labs already own,
//! and writing the same layout (for tests, the simulator and exports).
//!
//! ```text
//! <folder>/ClickInfo.txt           settings, camera calibration, user labels (Latin-1, CRLF)
//! <folder>/AnalyzedClickInfo.txt   the same plus `*** ROIs:` after analysis (preferred)
//! <folder>/luminescent.TIF         raw counts, 16-bit, binned
//! <folder>/photograph.TIF          optional, 16-bit, usually a finer binning
//! <folder>/readbias.TIF            read bias × its Data Multiplier
//! <folder>/background.TIF          dark charge × its Data Multiplier (may be unusable)
//! ```
//!
//! Specified, with every assumption lumiq makes, in `docs/ivis-click-folder.md`.
//!
//! Owns: parsing ClickInfo text ([`ClickInfo`]: `*** <section>:<TAB>value` lines,
//! `Key:<TAB>Value` fields, `#` comments), turning a folder into a [`RawAcquisition`] plus the
//! [`FrameCalibration`] its own files describe (bias, dark, radial flat-field polynomial,
//! C-ccd coefficient, defect map) with [`QualityFlag`]s for what is missing or assumed, and
//! writing a folder in the same layout ([`write_click_folder`]).
//!
//! Does not own: applying any of it (that is [`crate::process`]), nor Living Image's own
//! corrections: the luminescent frame is always the raw counts as stored, whatever the
//! `Cosmic/Flat Field/Background Corrected` flags say (those describe what Living Image
//! applies on display, not the file).

use std::fmt::Display;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};
use ndarray::Array2;

use super::tiff_io::{read_u16, write_u16};
use super::{sha256_file, FormatError};
use crate::acquisition::{AcquisitionMeta, PhotographMeta, RawAcquisition, SourceFormat};
use crate::process::correct::RadialFlat;
use crate::process::roi::{Roi, RoiShape};
use crate::process::{FrameCalibration, QualityFlag, SensorFacts};

const CLICK_INFO: &str = "ClickInfo.txt";
const ANALYZED_CLICK_INFO: &str = "AnalyzedClickInfo.txt";

const LUMINESCENT: &str = "luminescent image";
const PHOTOGRAPH: &str = "photographic image";
const READBIAS: &str = "readbias image";
const DARKCHARGE: &str = "darkcharge image";
const CAMERA: &str = "Camera System Info";
const USER_LABELS: &str = "User Label Name Set";
const ROIS: &str = "ROIs";

// Design: gain, read noise and pixel pitch are not in ClickInfo. These are typical of the
// deep-cooled 2048² back-thinned CCDs in IVIS systems (and are the simulated instrument's);
// every record read this way carries `QualityFlag::NoiseModelAssumed`.
const ASSUMED_GAIN_E_PER_ADU: f64 = 1.5;
const ASSUMED_READ_NOISE_E: f64 = 5.0;
const ASSUMED_PIXEL_PITCH_UM: f64 = 13.5;
/// Living Image states no uncertainty for C-ccd; 5 % (1σ) is an assumption of the order of
/// an absolute radiance calibration against a traceable source.
const ASSUMED_COEFFICIENT_REL_UNCERTAINTY: f64 = 0.05;
/// Used (with a warning) when `CCD Saturation Level` is absent: the 16-bit ceiling.
const FALLBACK_SATURATION_ADU: f64 = 65535.0;
/// A dark frame Living Image could not make is written with every pixel at this value.
const UNUSABLE_DARK_ADU: u16 = 65534;
const FOV_TOLERANCE_CM: f64 = 0.01;
const F_NUMBER_TOLERANCE: f64 = 0.01;
/// A flat-field polynomial is implausible (flagged, still used) when it rises more than this
/// (relative) above its on-axis value anywhere in the frame: vignetting only takes light away.
const FLAT_PEAK_TOLERANCE: f64 = 0.05;
/// ... or falls below this fraction of its on-axis value (real shelf D f/1 reaches 0.21 in
/// the corners of a 22.4 cm field) ...
const FLAT_MIN_RELATIVE: f64 = 0.1;
/// ... or its on-axis value k0 lies outside this range (real ones are 0.99–1.02).
const FLAT_AXIS_RANGE: (f64, f64) = (0.8, 1.25);

/// A click folder read from disk: the raw acquisition and the calibration its files carry.
#[derive(Debug, Clone)]
pub struct IvisFolder {
    pub path: PathBuf,
    /// `source` is [`SourceFormat::IvisClickFolder`].
    pub acquisition: RawAcquisition,
    pub calibration: FrameCalibration,
    pub flags: Vec<QualityFlag>,
    /// (file name, sha256) of every file used, for the record's provenance.
    pub files: Vec<(String, String)>,
    /// true when AnalyzedClickInfo.txt was read.
    pub analyzed: bool,
}

/// Whether `dir` holds a `ClickInfo.txt` or an `AnalyzedClickInfo.txt` (any letter case).
pub fn is_click_folder(dir: &Path) -> bool {
    locate(dir, ANALYZED_CLICK_INFO).is_file() || locate(dir, CLICK_INFO).is_file()
}

// ---------------------------------------------------------------------------------------
// ClickInfo text
// ---------------------------------------------------------------------------------------

/// A parsed `ClickInfo.txt` / `AnalyzedClickInfo.txt`: its sections in file order, each with
/// the value on its `***` line and its `Key: Value` fields. Lookups ignore ASCII case and the
/// whitespace around keys and values. Fields before the first `***` line belong to a section
/// with an empty name.
#[derive(Debug, Clone, PartialEq)]
pub struct ClickInfo {
    /// The first file read (ClickInfo.txt when the folder has one).
    path: PathBuf,
    sections: Vec<Section>,
    /// Files whose text ends in the middle of a line: cut short in a copy.
    truncated: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
struct Section {
    name: String,
    value: String,
    fields: Vec<(String, String)>,
    /// The file this section was read from (named in errors about its fields).
    file: PathBuf,
}

/// Sections that analysis in Living Image writes or edits: AnalyzedClickInfo.txt's copy wins
/// over ClickInfo.txt's. Every other section (the image sections, the camera block) describes
/// the acquisition itself, and ClickInfo.txt's copy, written when the image was taken, wins.
const ANALYSIS_SECTIONS: [&str; 7] = [
    USER_LABELS,
    "User Input",
    "Analysis User Input",
    ROIS,
    "Tags",
    "Comments",
    "saved luminescent corrected image",
];

/// Split `Key:<TAB>Value` (or `Key: Value`) at the colon; `None` when there is no colon.
/// A trailing `<TAB># comment` is dropped, and so is the second colon of the doubled
/// separator real files have (`Camera Info File Version Number:<TAB>:<TAB>3.0`).
fn split_field(line: &str) -> Option<(&str, &str)> {
    // Design: prefer ":\t", the real separator, so a key can never be cut at a colon that
    // sits in a value (`Acquisition Time:\t10:32:17`); fall back to the first colon.
    let i = line.find(":\t").or_else(|| line.find(':'))?;
    let rest = &line[i + 1..];
    let rest = rest.find("\t#").map_or(rest, |j| &rest[..j]).trim();
    let value = rest.strip_prefix(':').map_or(rest, str::trim);
    Some((line[..i].trim(), value))
}

fn same(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// Latin-1 decoding: every byte is the code point of the same value.
fn decode_latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

impl ClickInfo {
    /// Parse ClickInfo text (already decoded; CRLF or bare LF). `path` names the file in
    /// errors. Fails only when the text has no `***` section line at all.
    pub fn parse(text: &str, path: &Path) -> Result<ClickInfo, FormatError> {
        let mut sections = vec![Section {
            name: String::new(),
            value: String::new(),
            fields: Vec::new(),
            file: path.to_path_buf(),
        }];
        for raw in text.split('\n') {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if let Some(rest) = trimmed.strip_prefix("***") {
                let (name, value) = split_field(rest).unwrap_or((rest.trim(), ""));
                sections.push(Section {
                    name: name.to_string(),
                    value: value.to_string(),
                    fields: Vec::new(),
                    file: path.to_path_buf(),
                });
            } else if let Some((key, value)) = split_field(line) {
                let last = sections.last_mut().expect("at least the preamble section");
                last.fields.push((key.to_string(), value.to_string()));
            }
            // A line with no colon carries nothing lumiq reads; it is skipped.
        }
        if sections.len() == 1 {
            return Err(FormatError::invalid(
                path,
                "no section line (`*** <name>:`) found: this is not a Living Image ClickInfo file",
                "point lumiq at a click folder whose ClickInfo.txt or AnalyzedClickInfo.txt was written by Living Image",
            ));
        }
        let truncated = if text.is_empty() || text.ends_with('\n') {
            Vec::new()
        } else {
            vec![path.to_path_buf()]
        };
        Ok(ClickInfo {
            path: path.to_path_buf(),
            sections,
            truncated,
        })
    }

    /// One view of a click folder's two files. `acquisition` is ClickInfo.txt (camera block,
    /// image sections), `analysis` AnalyzedClickInfo.txt (labels, ROIs). A section both hold
    /// is taken from AnalyzedClickInfo.txt when it is one analysis writes
    /// ([`ANALYSIS_SECTIONS`]: labels, user input, ROIs, tags, comments), from ClickInfo.txt
    /// otherwise; a section only one holds is taken from it. Lookups then see one file.
    pub fn merge(acquisition: Option<ClickInfo>, analysis: Option<ClickInfo>) -> Option<ClickInfo> {
        let (acq, ana) = match (acquisition, analysis) {
            (Some(a), Some(n)) => (a, n),
            (one, other) => return one.or(other),
        };
        let analysis_owns = |name: &str| ANALYSIS_SECTIONS.iter().any(|s| same(s, name));
        let mut sections = Vec::with_capacity(acq.sections.len() + ana.sections.len());
        for s in &acq.sections {
            let theirs = ana.sections.iter().find(|n| same(&n.name, &s.name));
            match theirs {
                Some(n) if analysis_owns(&s.name) && !s.name.is_empty() => sections.push(n.clone()),
                _ => sections.push(s.clone()),
            }
        }
        for n in &ana.sections {
            if !sections.iter().any(|s| same(&s.name, &n.name)) {
                sections.push(n.clone());
            }
        }
        let mut truncated = acq.truncated;
        truncated.extend(ana.truncated);
        Some(ClickInfo {
            path: acq.path,
            sections,
            truncated,
        })
    }

    /// The file a section was read from (the first file when the section is absent).
    pub fn file_of(&self, section: &str) -> &Path {
        self.section(section).map_or(&self.path, |s| &s.file)
    }

    /// Whether `file` ends in the middle of a line (a copy cut short).
    fn is_truncated(&self, file: &Path) -> bool {
        self.truncated.iter().any(|t| t == file)
    }

    /// The fix for a field that is absent, mentioning truncation when the file looks cut.
    fn missing_fix(&self, file: &Path, usual: String) -> String {
        if self.is_truncated(file) {
            format!(
                "the file ends in the middle of a line, so it looks cut short: copy it again \
                 from the instrument PC or the lab's archive ({usual})"
            )
        } else {
            usual
        }
    }

    /// Read and parse a ClickInfo file from disk (Latin-1).
    pub fn read(path: &Path) -> Result<ClickInfo, FormatError> {
        let bytes = std::fs::read(path).map_err(|e| FormatError::io(path, e))?;
        ClickInfo::parse(&decode_latin1(&bytes), path)
    }

    /// The file this was parsed from (as given to [`ClickInfo::parse`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Names of the sections, in file order.
    pub fn section_names(&self) -> Vec<&str> {
        self.sections[1..].iter().map(|s| s.name.as_str()).collect()
    }

    fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| same(&s.name, name))
    }

    /// The value on a section's `***` line (`luminescent.TIF` for `*** luminescent image:`).
    pub fn section_value(&self, section: &str) -> Option<&str> {
        self.section(section).map(|s| s.value.as_str())
    }

    /// The first value of `key` in `section`.
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.get_all(section, key).into_iter().next()
    }

    /// Every value of `key` in `section`, in file order.
    pub fn get_all(&self, section: &str, key: &str) -> Vec<&str> {
        self.section(section)
            .map(|s| {
                s.fields
                    .iter()
                    .filter(|(k, _)| same(k, key))
                    .map(|(_, v)| v.as_str())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The `(key, value)` fields of a section, in file order (empty when it is absent).
    pub fn fields(&self, section: &str) -> &[(String, String)] {
        self.section(section).map_or(&[], |s| s.fields.as_slice())
    }

    /// The first value of `key` in any section.
    pub fn find(&self, key: &str) -> Option<&str> {
        self.all_fields()
            .find(|(k, _)| same(k, key))
            .map(|(_, v)| v)
    }

    /// Every field of every section, in file order.
    fn all_fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.sections
            .iter()
            .flat_map(|s| s.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// A camera-block field: in `*** Camera System Info:` when there, else anywhere.
    fn camera(&self, key: &str) -> Option<&str> {
        self.get(CAMERA, key).or_else(|| self.find(key))
    }

    fn missing(&self, section: &str, key: &str) -> FormatError {
        let file = self.file_of(section);
        FormatError::missing(
            file,
            format!("{section} / {key}"),
            self.missing_fix(
                file,
                format!(
                    "add a `{key}:<TAB>value` line to the `*** {section}:` section, or re-export \
                     the click folder from Living Image (see docs/ivis-click-folder.md)"
                ),
            ),
        )
    }

    fn number_in(&self, section: &str, key: &str, value: &str) -> Result<f64, FormatError> {
        parse_number(value).ok_or_else(|| {
            FormatError::bad_field(
                self.file_of(section),
                format!("{section} / {key}"),
                format!("is {value:?}, not a number"),
                "write a plain decimal number such as 12.5 or 7.223E+05",
            )
        })
    }

    fn number(&self, section: &str, key: &str) -> Result<Option<f64>, FormatError> {
        self.get(section, key)
            .map(|v| self.number_in(section, key, v))
            .transpose()
    }

    fn required_number(&self, section: &str, key: &str) -> Result<f64, FormatError> {
        self.number(section, key)?
            .ok_or_else(|| self.missing(section, key))
    }

    fn required_positive(&self, section: &str, key: &str, unit: &str) -> Result<f64, FormatError> {
        let v = self.required_number(section, key)?;
        if v > 0.0 {
            Ok(v)
        } else {
            Err(FormatError::bad_field(
                self.file_of(section),
                format!("{section} / {key}"),
                format!("is {v}"),
                format!("must be a positive number of {unit}"),
            ))
        }
    }

    fn required_binning(&self, section: &str) -> Result<u32, FormatError> {
        let key = "Binning Factor";
        let v = self.required_number(section, key)?;
        if v.fract() == 0.0 && (1.0..=64.0).contains(&v) {
            Ok(v as u32)
        } else {
            Err(FormatError::bad_field(
                self.file_of(section),
                format!("{section} / {key}"),
                format!("is {v}"),
                "must be a whole number from 1 to 64 (the on-chip binning)",
            ))
        }
    }
}

/// A number at the start of a value (`12.5`, `7.223E+05`, `60 sec`); finite only.
fn parse_number(value: &str) -> Option<f64> {
    let token = value.split_whitespace().next()?;
    token.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// ASCII-case-insensitive `strip_prefix`.
fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `Shelf Position D FOV` → `'D'`.
fn shelf_fov_key(key: &str) -> Option<char> {
    let rest = strip_prefix_ci(key, "Shelf Position ")?;
    let mut words = rest.split_whitespace();
    let letter = single_letter(words.next()?)?;
    let fov = words.next()?;
    (fov.eq_ignore_ascii_case("FOV") && words.next().is_none()).then_some(letter)
}

/// `Shelf Position D FF5 f/1 Coefs` → `('D', 1.0)`.
fn flat_key(key: &str) -> Option<(char, f64)> {
    let rest = strip_prefix_ci(key, "Shelf Position ")?;
    let words: Vec<&str> = rest.split_whitespace().collect();
    let [letter, ff5, f, coefs] = words.as_slice() else {
        return None;
    };
    if !ff5.eq_ignore_ascii_case("FF5") || !coefs.eq_ignore_ascii_case("Coefs") {
        return None;
    }
    let f = strip_prefix_ci(f, "f/")?.parse::<f64>().ok()?;
    Some((single_letter(letter)?, f))
}

/// `Coef C-ccd at FOV 22.4, f1` → `(22.4, 1.0)`.
fn coefficient_key(key: &str) -> Option<(f64, f64)> {
    let rest = strip_prefix_ci(key, "Coef C-ccd at FOV ")?;
    let (fov, f) = rest.split_once(',')?;
    let f = f.trim();
    let f = strip_prefix_ci(f, "f/").or_else(|| strip_prefix_ci(f, "f"))?;
    Some((fov.trim().parse().ok()?, f.trim().parse().ok()?))
}

fn single_letter(word: &str) -> Option<char> {
    let mut chars = word.chars();
    let c = chars.next()?;
    (c.is_ascii_alphabetic() && chars.next().is_none()).then(|| c.to_ascii_uppercase())
}

/// How FOVs and f-numbers are printed in keys: `22.4`, `4`, `12.5`, `1`.
fn num(v: f64) -> String {
    format!("{v}")
}

/// IVIS-style scientific notation, exact (shortest round-trip mantissa): `7.223E+05`.
fn ivis_exp(v: f64) -> String {
    let s = format!("{v:E}");
    match s.split_once('E') {
        Some((mantissa, exp)) => {
            let e: i32 = exp.parse().unwrap_or(0);
            let sign = if e < 0 { '-' } else { '+' };
            format!("{mantissa}E{sign}{:02}", e.abs())
        }
        None => s,
    }
}

// ---------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------

/// The file named `name` in `dir`, matched without regard to letter case when the exact
/// name is absent (Living Image writes `.TIF`, copies through other systems may not).
/// A Windows path in a section line is reduced to its file name.
fn locate(dir: &Path, name: &str) -> PathBuf {
    let name = name.rsplit(['\\', '/']).next().unwrap_or(name).trim();
    let exact = dir.join(name);
    if exact.is_file() {
        return exact;
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
            {
                return entry.path();
            }
        }
    }
    exact
}

/// The image file a section names (its `***` line value), or `default`.
fn image_path(dir: &Path, info: &ClickInfo, section: &str, default: &str) -> PathBuf {
    let named = info.section_value(section).unwrap_or("").trim();
    locate(dir, if named.is_empty() { default } else { named })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn read_frame(path: &Path, files: &mut Vec<(String, String)>) -> Result<Array2<u16>, FormatError> {
    let frame = read_u16(path)?;
    files.push((file_name(path), sha256_file(path)?));
    Ok(frame)
}

fn check_shape(
    path: &Path,
    found: (usize, usize),
    luminescent: &Path,
    expected: (usize, usize),
) -> Result<(), FormatError> {
    if found == expected {
        return Ok(());
    }
    Err(FormatError::invalid(
        path,
        format!(
            "is {}x{} pixels but {} is {}x{}",
            found.0,
            found.1,
            file_name(luminescent),
            expected.0,
            expected.1
        ),
        "the bias and dark frames must come from the same click at the same binning; re-export \
         the click folder from Living Image",
    ))
}

/// The `Data Multiplier` of a calibration image section (required, positive).
fn data_multiplier(info: &ClickInfo, section: &str) -> Result<f64, FormatError> {
    info.required_positive(section, "Data Multiplier", "(stored value ÷ true ADU)")
}

/// A dark frame Living Image could not make: more than half its pixels at 65534 or 65535
/// (this includes "every pixel 65534").
fn dark_is_unusable(raw: &Array2<u16>) -> bool {
    let at_ceiling = raw.iter().filter(|&&v| v >= UNUSABLE_DARK_ADU).count();
    2 * at_ceiling > raw.len()
}

fn divided(raw: &Array2<u16>, multiplier: f64) -> Array2<f32> {
    raw.mapv(|v| (f64::from(v) / multiplier) as f32)
}

fn mac_epoch() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(1904, 1, 1)
        .expect("valid date")
        .and_hms_opt(0, 0, 0)
        .expect("valid time")
        .and_utc()
}

/// `Acquisition Seconds` (seconds since 1904-01-01 00:00:00, taken as UTC), to the ms.
fn from_mac_seconds(seconds: f64) -> Option<DateTime<Utc>> {
    let ms = (seconds * 1000.0).round();
    if ms.is_nan() || ms.abs() >= 1e15 {
        return None;
    }
    mac_epoch().checked_add_signed(TimeDelta::try_milliseconds(ms as i64)?)
}

fn to_mac_seconds(t: DateTime<Utc>) -> String {
    let ms = (t - mac_epoch()).num_milliseconds();
    if ms % 1000 == 0 {
        format!("{}", ms / 1000)
    } else {
        format!("{:.3}", ms as f64 / 1000.0)
    }
}

/// Start of the exposure: `Acquisition Seconds`, else `Acquisition Date` + `Acquisition
/// Time` read as UTC (with a warning: Living Image writes them in local time).
fn acquisition_time(info: &ClickInfo) -> Result<DateTime<Utc>, FormatError> {
    let key = "Acquisition Seconds";
    if let Some(s) = info.number(LUMINESCENT, key)? {
        return from_mac_seconds(s).ok_or_else(|| {
            FormatError::bad_field(
                info.file_of(LUMINESCENT),
                format!("{LUMINESCENT} / {key}"),
                format!("is {s}, outside any plausible date"),
                "it counts seconds since 1904-01-01 00:00:00; re-export the folder from Living Image",
            )
        });
    }
    let date = info.get(LUMINESCENT, "Acquisition Date");
    let time = info.get(LUMINESCENT, "Acquisition Time");
    if let (Some(date), Some(time)) = (date, time) {
        let date = NaiveDate::parse_from_str(date.trim(), "%A, %B %d, %Y");
        let time = NaiveTime::parse_from_str(time.trim(), "%H:%M:%S")
            .or_else(|_| NaiveTime::parse_from_str(time.trim(), "%I:%M:%S %p"));
        if let (Ok(date), Ok(time)) = (date, time) {
            tracing::warn!(
                path = %info.file_of(LUMINESCENT).display(),
                "no `Acquisition Seconds`: using Acquisition Date and Time as UTC"
            );
            return Ok(date.and_time(time).and_utc());
        }
    }
    Err(info.missing(LUMINESCENT, key))
}

/// `Luc Injection Time` when it can be read: a full date-time (RFC 3339, `2022-01-05
/// 10:05:00`, `Wednesday, January 5, 2022 10:05:00`), or a time of day on the acquisition's
/// date (the day before when that would fall after the acquisition). `None` otherwise.
fn parse_injection_time(text: &str, acquired_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%A, %B %d, %Y %H:%M:%S",
        "%A, %B %d, %Y %H:%M",
    ] {
        if let Ok(d) = NaiveDateTime::parse_from_str(t, f) {
            return Some(d.and_utc());
        }
    }
    for f in ["%H:%M:%S", "%H:%M", "%I:%M:%S %p", "%I:%M %p"] {
        if let Ok(time) = NaiveTime::parse_from_str(t, f) {
            let at = acquired_at.date_naive().and_time(time).and_utc();
            return Some(if at > acquired_at {
                at - TimeDelta::days(1)
            } else {
                at
            });
        }
    }
    None
}

/// Keep an id usable as an MQTT topic level: letters, digits, `.`, `_`, `-`.
fn topic_safe(id: &str) -> String {
    id.trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn non_empty(v: Option<&str>) -> Option<String> {
    v.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The shelf whose `Shelf Position X FOV` matches `fov_cm`.
fn shelf_for_fov(info: &ClickInfo, fov_cm: f64) -> Result<char, FormatError> {
    let mut shelves = Vec::new();
    for (key, value) in info.all_fields() {
        if let Some(letter) = shelf_fov_key(key) {
            shelves.push((letter, info.number_in(CAMERA, key, value)?));
        }
    }
    if shelves.is_empty() {
        return Err(info.missing(CAMERA, "Shelf Position D FOV"));
    }
    shelves
        .iter()
        .find(|(_, fov)| (fov - fov_cm).abs() <= FOV_TOLERANCE_CM)
        .map(|(l, _)| *l)
        .ok_or_else(|| {
            let listed: Vec<String> = shelves
                .iter()
                .map(|(l, f)| format!("{l} {}", num(*f)))
                .collect();
            FormatError::bad_field(
                info.file_of(LUMINESCENT),
                format!("{LUMINESCENT} / Field of View"),
                format!(
                    "is {} cm, which matches no `Shelf Position X FOV` line (shelves: {})",
                    num(fov_cm),
                    listed.join(", ")
                ),
                "the flat field is stored per shelf, so the shelf must be known; check the Field \
                 of View against the Camera System Info block, or re-export from Living Image",
            )
        })
}

/// The `Coef C-ccd` line for (fov, f-number).
fn coefficient_for(info: &ClickInfo, fov_cm: f64, f_number: f64) -> Result<f64, FormatError> {
    let mut available = Vec::new();
    for (key, value) in info.all_fields() {
        if let Some((fov, f)) = coefficient_key(key) {
            if (fov - fov_cm).abs() <= FOV_TOLERANCE_CM
                && (f - f_number).abs() <= F_NUMBER_TOLERANCE
            {
                let c = info.number_in(CAMERA, key, value)?;
                if c <= 0.0 {
                    return Err(FormatError::bad_field(
                        info.file_of(CAMERA),
                        format!("{CAMERA} / {key}"),
                        format!("is {c}"),
                        "a radiance coefficient must be positive (p/sec/cm2/sr per count/s)",
                    ));
                }
                return Ok(c);
            }
            available.push(format!("FOV {}, f{}", num(fov), num(f)));
        }
    }
    let wanted = format!("Coef C-ccd at FOV {}, f{}", num(fov_cm), num(f_number));
    Err(FormatError::missing(
        info.file_of(CAMERA),
        format!("{CAMERA} / {wanted}"),
        info.missing_fix(
            info.file_of(CAMERA),
            format!(
            "no absolute calibration for FOV {} cm at f/{}; the folder has {}; radiance cannot be \
             computed without it: re-export the folder from Living Image, or process the frames \
             with a lumiq calibration set",
            num(fov_cm),
            num(f_number),
            if available.is_empty() {
                "no `Coef C-ccd` lines at all".to_string()
            } else {
                format!("coefficients for {}", available.join("; "))
            }
        ),
        ),
    ))
}

/// The `Shelf Position X FF5 f/N Coefs` polynomial for (shelf, f-number), with its key.
fn flat_polynomial(
    info: &ClickInfo,
    shelf: char,
    f_number: f64,
) -> Result<(RadialFlat, String), FormatError> {
    let mut available = Vec::new();
    for (key, value) in info.all_fields() {
        let Some((letter, f)) = flat_key(key) else {
            continue;
        };
        if letter == shelf && (f - f_number).abs() <= F_NUMBER_TOLERANCE {
            let numbers: Option<Vec<f64>> = value.split(',').map(parse_number).collect();
            let coefs = numbers.and_then(|n| <[f64; 7]>::try_from(n).ok());
            let Some([k0, k1, k2, k3, k4, x0, y0]) = coefs else {
                return Err(FormatError::bad_field(
                    info.file_of(CAMERA),
                    format!("{CAMERA} / {key}"),
                    format!("is {value:?}"),
                    "expected seven comma-separated numbers k0,k1,k2,k3,k4,x0,y0 (r, x0, y0 in cm)",
                ));
            };
            let flat = RadialFlat {
                k: [k0, k1, k2, k3, k4],
                x0_cm: x0,
                y0_cm: y0,
            };
            return Ok((flat, key.to_string()));
        }
        available.push(format!("shelf {letter} f/{}", num(f)));
    }
    let wanted = format!("Shelf Position {shelf} FF5 f/{} Coefs", num(f_number));
    Err(FormatError::missing(
        info.file_of(CAMERA),
        format!("{CAMERA} / {wanted}"),
        info.missing_fix(
            info.file_of(CAMERA),
            format!(
            "no flat-field polynomial for shelf {shelf} at f/{}; the folder has {}; re-export the \
             folder from Living Image, or process the frames with a lumiq calibration set",
            num(f_number),
            if available.is_empty() {
                "none".to_string()
            } else {
                available.join(", ")
            }
        ),
        ),
    ))
}

/// Physics check of a flat-field polynomial over the frame. Real coefficients need not
/// fall monotonically, and a flat `1,0,0,0,0,0,0` is valid, so only a polynomial that is
/// zero, negative or not a number somewhere in the frame is an error (radiance is divided by
/// it). One that is positive but unlike any vignetting profile returns `Ok(Some(why))`: the
/// caller flags the record ([`QualityFlag::FlatImplausible`]) and warns.
fn check_flat(
    info: &ClickInfo,
    key: &str,
    poly: &RadialFlat,
    flat: &Array2<f32>,
) -> Result<Option<String>, FormatError> {
    if let Some(((r, c), v)) = flat
        .indexed_iter()
        .find(|(_, v)| !(v.is_finite() && **v > 0.0))
    {
        return Err(FormatError::bad_field(
            info.file_of(CAMERA),
            format!("{CAMERA} / {key}"),
            format!(
                "the flat-field polynomial is {v} at row {r}, column {c}: radiance is divided \
                 by it, so it must be > 0 everywhere in the frame"
            ),
            "check the seven numbers (k0..k4 of ff(r) = Σ kᵢ rⁱ with r in cm at the object \
             plane, then the axis offset x0, y0 in cm); re-export the folder from Living Image, \
             or process the frames with a lumiq calibration set",
        ));
    }
    let axis = poly.at_radius(0.0);
    let (lo, hi) = flat
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(f64::from(v)), hi.max(f64::from(v)))
        });
    let why = if !(FLAT_AXIS_RANGE.0..=FLAT_AXIS_RANGE.1).contains(&axis) {
        Some(format!(
            "its on-axis value k0 = {axis:.4} is far from 1 (expected {}..{})",
            FLAT_AXIS_RANGE.0, FLAT_AXIS_RANGE.1
        ))
    } else if hi > axis * (1.0 + FLAT_PEAK_TOLERANCE) {
        Some(format!(
            "it rises to {hi:.4} in the frame, more than {:.0} % above its on-axis value \
             {axis:.4}",
            FLAT_PEAK_TOLERANCE * 100.0
        ))
    } else if lo < axis * FLAT_MIN_RELATIVE {
        Some(format!(
            "it falls to {lo:.4} in the frame, below {:.0} % of its on-axis value {axis:.4}",
            FLAT_MIN_RELATIVE * 100.0
        ))
    } else {
        None
    };
    Ok(why)
}

/// Sensor defects from `CCDMap`, in unbinned sensor coordinates (x = column, y = row, from 0).
#[derive(Debug, Clone, Default, PartialEq)]
struct CcdMap {
    /// Bad column segments: (column, first row, last row), rows inclusive.
    columns: Vec<(usize, usize, usize)>,
    /// Bad row segments: (row, first column, last column), columns inclusive.
    rows: Vec<(usize, usize, usize)>,
    /// Bad pixels: (x, y) = (column, row).
    pixels: Vec<(usize, usize)>,
}

/// The first `CCDMap` line of the camera block, in Living Image's grammar (the file's own
/// comment): `col #, start row #, end row #, ... -1, row #, start col, end col, ... -1,
/// xVal1, yVal1, xVal2, yVal2 ... -1, substitute value, debug flag`. Bad columns come as
/// triples, then bad rows as triples, then bad pixels as pairs, each list closed by `-1`;
/// the substitute value and the debug flag are read and not used (lumiq repairs defects from
/// their neighbours). Later `CCDMap` lines are ignored, as Living Image ignores them.
fn ccd_map(info: &ClickInfo) -> Result<CcdMap, FormatError> {
    let value = if info.section(CAMERA).is_some() {
        info.get(CAMERA, "CCDMap")
    } else {
        info.find("CCDMap")
    };
    let Some(value) = value else {
        return Ok(CcdMap::default());
    };
    parse_ccd_map(value).map_err(|problem| {
        FormatError::bad_field(
            info.file_of(CAMERA),
            format!("{CAMERA} / CCDMap"),
            format!("{value:?}: {problem}"),
            "the line must read `bad columns as col,start row,end row triples, -1, bad rows as \
             row,start col,end col triples, -1, bad pixels as x,y pairs, -1, substitute value, \
             debug flag` in sensor pixels (e.g. `-1,-1,929,1211,1828,1069,-1, 0, 0`); re-export \
             the folder from Living Image, or delete the line to read it without a defect map",
        )
    })
}

/// The grammar of [`ccd_map`], on the value alone; the error says what is wrong.
fn parse_ccd_map(value: &str) -> Result<CcdMap, String> {
    let mut numbers = Vec::new();
    for item in value.split(',').map(str::trim) {
        if item.is_empty() {
            continue;
        }
        let n: i64 = item
            .parse()
            .map_err(|_| format!("item {item:?} is not a whole number"))?;
        numbers.push(n);
    }
    let mut rest = numbers.as_slice();
    let coordinate = |n: i64, what: &str| {
        usize::try_from(n).map_err(|_| format!("{what} {n} is negative (only -1 closes a list)"))
    };
    // One list: groups of `width` numbers until a group starts with -1.
    let mut list = |width: usize, what: &str| -> Result<Vec<Vec<usize>>, String> {
        let mut groups = Vec::new();
        loop {
            match rest.first() {
                None => return Err(format!("the list of {what} is not closed by -1")),
                Some(-1) => {
                    rest = &rest[1..];
                    return Ok(groups);
                }
                Some(_) if rest.len() < width => {
                    return Err(format!("the list of {what} ends inside a group of {width}"))
                }
                Some(_) => {
                    let group = rest[..width]
                        .iter()
                        .map(|&n| coordinate(n, what))
                        .collect::<Result<Vec<_>, _>>()?;
                    groups.push(group);
                    rest = &rest[width..];
                }
            }
        }
    };
    let span = |g: &[usize], what: &str| {
        if g[1] <= g[2] {
            Ok((g[0], g[1], g[2]))
        } else {
            Err(format!(
                "{what} {}: start {} is after end {}",
                g[0], g[1], g[2]
            ))
        }
    };
    let columns = list(3, "bad columns")?
        .iter()
        .map(|g| span(g, "bad column"))
        .collect::<Result<Vec<_>, _>>()?;
    let rows = list(3, "bad rows")?
        .iter()
        .map(|g| span(g, "bad row"))
        .collect::<Result<Vec<_>, _>>()?;
    let pixels = list(2, "bad pixels")?
        .iter()
        .map(|g| (g[0], g[1]))
        .collect();
    // What follows (substitute value, debug flag) carries nothing lumiq uses.
    Ok(CcdMap {
        columns,
        rows,
        pixels,
    })
}

/// Defects in unbinned sensor coordinates → mask in the binned grid: a binned pixel is bad
/// when any of the unbinned pixels it sums is. Defects outside the frame are ignored.
fn binned_bad_pixels(dim: (usize, usize), binning: u32, map: &CcdMap) -> Array2<bool> {
    let b = binning as usize;
    let (rows, cols) = dim;
    let mut mask = Array2::from_elem(dim, false);
    let mut mark = |y: usize, x: usize| {
        let (r, c) = (y / b, x / b);
        if r < rows && c < cols {
            mask[[r, c]] = true;
        }
    };
    for &(x, y) in &map.pixels {
        mark(y, x);
    }
    // Segments are walked in steps of one binned pixel (plus their end), not pixel by pixel.
    for &(x, first, last) in &map.columns {
        for y in (first..=last.min(rows * b)).step_by(b).chain([last]) {
            mark(y, x);
        }
    }
    for &(y, first, last) in &map.rows {
        for x in (first..=last.min(cols * b)).step_by(b).chain([last]) {
            mark(y, x);
        }
    }
    mask
}

/// `*** ROIs:` lines → regions in the luminescent grid. Living Image stores them in unbinned
/// continuous pixel coordinates (first pixel's top-left corner at 0, x right, y down), with
/// full widths and heights and `Angle` in degrees; dividing by the binning gives the binned
/// grid of [`crate::process::roi`]. Only measurement ROIs of a supported shape are imported.
fn read_rois(info: &ClickInfo, binning: u32) -> Result<Vec<Roi>, FormatError> {
    let mut rois = Vec::new();
    for (key, value) in info.fields(ROIS) {
        if strip_prefix_ci(key, "ROI").is_none() {
            continue;
        }
        let items: Vec<(&str, &str)> = value
            .split(';')
            .filter_map(|item| item.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let item = |name: &str| items.iter().find(|(k, _)| same(k, name)).map(|(_, v)| *v);
        if let Some(kind) = item("ROI Type") {
            if !same(kind, "Measurement") {
                tracing::warn!(roi = %key, kind, "skipping a non-measurement ROI");
                continue;
            }
        }
        let shape_name = item("Shape").unwrap_or("");
        let field = format!("{ROIS} / {key}");
        let number = |name: &str, required: bool| -> Result<f64, FormatError> {
            match item(name) {
                Some(v) => parse_number(v).ok_or_else(|| {
                    FormatError::bad_field(
                        info.file_of(ROIS),
                        field.clone(),
                        format!("{name}={v:?} is not a number"),
                        "fix or delete the ROI line (see docs/ivis-click-folder.md)",
                    )
                }),
                None if required => Err(FormatError::bad_field(
                    info.file_of(ROIS),
                    field.clone(),
                    format!("has no `{name}=`"),
                    "a Circle, Ellipse or Rectangle ROI needs Xc, Yc, Width and Height; fix or \
                     delete the ROI line",
                )),
                None => Ok(0.0),
            }
        };
        let is = |names: &[&str]| names.iter().any(|n| same(shape_name, n));
        let ellipse = is(&["Circle", "Ellipse", "Oval"]);
        if !ellipse && !is(&["Rectangle", "Square", "Rect"]) {
            tracing::warn!(roi = %key, shape = shape_name, "skipping an ROI of unsupported shape");
            continue;
        }
        let (xc, yc) = (number("Xc", true)?, number("Yc", true)?);
        let (width, height) = (number("Width", true)?, number("Height", true)?);
        let angle_deg = number("Angle", false)?;
        let unbinned = if ellipse {
            RoiShape::Ellipse {
                xc,
                yc,
                width,
                height,
                angle_deg,
            }
        } else {
            RoiShape::Rectangle {
                xc,
                yc,
                width,
                height,
                angle_deg,
            }
        };
        rois.push(Roi {
            label: non_empty(item("Label")).unwrap_or_else(|| key.clone()),
            shape: unbinned.scaled(f64::from(binning)),
        });
    }
    Ok(rois)
}

/// What reading a click folder may use besides the folder itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions<'a> {
    /// The lab's library of background (dark) clicks, one folder per click named as the
    /// darkcharge section's `Background Click` (`BKG20220105025931`). Used when the
    /// folder's own dark is unusable or absent.
    pub backgrounds_dir: Option<&'a Path>,
}

/// The text of a click folder.
struct ClickText {
    /// ClickInfo.txt and AnalyzedClickInfo.txt merged ([`ClickInfo::merge`]).
    info: ClickInfo,
    /// (name, sha256) of each file read.
    files: Vec<(String, String)>,
    /// Whether AnalyzedClickInfo.txt was among them.
    analyzed: bool,
}

/// Read a click folder's text; an error names the folder when neither file is there.
fn read_info(dir: &Path) -> Result<ClickText, FormatError> {
    let mut files = Vec::new();
    let mut read = |path: PathBuf| -> Result<Option<ClickInfo>, FormatError> {
        if !path.is_file() {
            return Ok(None);
        }
        let info = ClickInfo::read(&path)?;
        files.push((file_name(&path), sha256_file(&path)?));
        Ok(Some(info))
    };
    let acquisition = read(locate(dir, CLICK_INFO))?;
    let analysis = read(locate(dir, ANALYZED_CLICK_INFO))?;
    let analyzed = analysis.is_some();
    let info = ClickInfo::merge(acquisition, analysis).ok_or_else(|| {
        FormatError::invalid(
            dir,
            "neither ClickInfo.txt nor AnalyzedClickInfo.txt is here: not an IVIS click folder",
            "point lumiq at the click folder itself (the one holding luminescent.TIF)",
        )
    })?;
    Ok(ClickText {
        info,
        files,
        analyzed,
    })
}

/// The dark charge of the click the darkcharge section names (`Background Click`), from the
/// lab's background library: `<library>/<name>/` is a click folder whose darkcharge section
/// names its dark frame (default `background.TIF`) and `Data Multiplier`. It must have the
/// image's binning and size; a different exposure is scaled linearly (dark charge grows in
/// proportion to the exposure at a locked sensor temperature). `Ok(None)`, with a warning,
/// when the folder names no click, the library lacks it, or its dark is unusable: the record
/// is then flagged `dark_not_subtracted` as without a library.
fn library_dark(
    library: &Path,
    info: &ClickInfo,
    dim: (usize, usize),
    binning: u32,
    exposure_s: f64,
    files: &mut Vec<(String, String)>,
) -> Result<Option<Array2<f32>>, FormatError> {
    let Some(name) = non_empty(info.get(DARKCHARGE, "Background Click")) else {
        tracing::warn!(
            path = %info.file_of(DARKCHARGE).display(),
            "no `Background Click` in the darkcharge section: no dark from the library"
        );
        return Ok(None);
    };
    let click = locate(library, &name);
    if !click.is_dir() {
        tracing::warn!(
            library = %library.display(),
            click = %name,
            "the background click is not in the library: dark not subtracted"
        );
        return Ok(None);
    }
    let ClickText {
        info: bkg,
        files: bkg_files,
        ..
    } = read_info(&click)?;
    let fix = "point --ivis-backgrounds at the library holding the background click this folder \
               names, or leave it out to process without a dark (the record is then flagged)";
    let bkg_binning = bkg.required_binning(DARKCHARGE)?;
    if bkg_binning != binning {
        return Err(FormatError::bad_field(
            bkg.file_of(DARKCHARGE),
            format!("{DARKCHARGE} / Binning Factor"),
            format!("is {bkg_binning}, but the image it should correct is at binning {binning}"),
            fix,
        ));
    }
    let bkg_exposure_s = match bkg.number(DARKCHARGE, "Luminescent Exposure (Seconds)")? {
        Some(t) if t > 0.0 => t,
        _ => bkg.required_positive(LUMINESCENT, "Luminescent Exposure (Seconds)", "seconds")?,
    };
    let path = image_path(&click, &bkg, DARKCHARGE, "background.TIF");
    let multiplier = data_multiplier(&bkg, DARKCHARGE)?;
    let raw = read_u16(&path)?;
    if raw.dim() != dim {
        return Err(FormatError::invalid(
            &path,
            format!(
                "is {}x{} pixels but the luminescent image is {}x{}",
                raw.dim().0,
                raw.dim().1,
                dim.0,
                dim.1
            ),
            fix,
        ));
    }
    if dark_is_unusable(&raw) {
        tracing::warn!(path = %path.display(), "the library's dark is unusable too: not subtracted");
        return Ok(None);
    }
    let prefix = |n: &str| format!("{name}/{n}");
    files.extend(bkg_files.into_iter().map(|(n, h)| (prefix(&n), h)));
    files.push((prefix(&file_name(&path)), sha256_file(&path)?));
    let scale = exposure_s / bkg_exposure_s;
    if (scale - 1.0).abs() > 1e-6 {
        tracing::warn!(
            click = %name,
            bkg_exposure_s,
            exposure_s,
            "background click exposure differs: its dark charge is scaled by the exposure ratio"
        );
    }
    Ok(Some(
        raw.mapv(|v| (f64::from(v) / multiplier * scale) as f32),
    ))
}

/// Read a click folder: the raw frames as stored, the settings and labels, and the
/// calibration its own files describe. See `docs/ivis-click-folder.md`.
pub fn read_click_folder(dir: &Path) -> Result<IvisFolder, FormatError> {
    read_click_folder_with(dir, &ReadOptions::default())
}

/// [`read_click_folder`], with a background library (and whatever else `options` holds).
///
/// The camera block is in ClickInfo.txt only, the labels and ROIs in AnalyzedClickInfo.txt:
/// both are read and merged ([`ClickInfo::merge`] says which wins). Either alone is enough
/// when it holds what the measurement needs.
pub fn read_click_folder_with(
    dir: &Path,
    options: &ReadOptions,
) -> Result<IvisFolder, FormatError> {
    let ClickText {
        info,
        mut files,
        analyzed,
    } = read_info(dir)?;
    let info_path = info.path().to_path_buf();
    let mut flags = Vec::new();

    let has_camera = info.section(CAMERA).is_some()
        || info.all_fields().any(|(k, _)| coefficient_key(k).is_some());
    if !has_camera {
        let plain = locate(dir, CLICK_INFO);
        return Err(if plain.is_file() {
            FormatError::missing(
                &plain,
                format!("*** {CAMERA}:"),
                info.missing_fix(
                    &plain,
                    "the camera block (C-ccd coefficients, shelf fields of view, flat field, \
                     defect map) is missing; copy ClickInfo.txt again from the instrument PC"
                        .to_string(),
                ),
            )
        } else {
            FormatError::invalid(
                &plain,
                "is missing: the camera block (`*** Camera System Info:`, with the C-ccd \
                 coefficients, flat field and defect map) is only in ClickInfo.txt, and \
                 AnalyzedClickInfo.txt has none",
                "copy ClickInfo.txt back into the click folder from the instrument PC or the \
                 lab's archive",
            )
        });
    }

    // Settings first: fail on a bad ClickInfo before reading any frame.
    if info.section(LUMINESCENT).is_none() {
        return Err(FormatError::missing(
            &info_path,
            format!("*** {LUMINESCENT}:"),
            info.missing_fix(
                &info_path,
                "this click has no luminescent image (a photograph-only click?); lumiq \
                 quantifies luminescent clicks"
                    .to_string(),
            ),
        ));
    }
    let binning = info.required_binning(LUMINESCENT)?;
    let exposure_s =
        info.required_positive(LUMINESCENT, "Luminescent Exposure (Seconds)", "seconds")?;
    let f_number = info.required_positive(LUMINESCENT, "f Number", "f-stops")?;
    let fov_cm = info.required_positive(LUMINESCENT, "Field of View", "cm")?;
    let sensor_temp_c = match info.number(LUMINESCENT, "Measured Temperature")? {
        Some(t) => t,
        None => info
            .number(LUMINESCENT, "Demand Temperature")?
            .ok_or_else(|| info.missing(LUMINESCENT, "Measured Temperature"))?,
    };
    let acquired_at = acquisition_time(&info)?;
    let emission_filter = match non_empty(info.get(LUMINESCENT, "Emission filter")) {
        Some(f) if !same(&f, "open") => f,
        _ => "open".to_string(),
    };

    // Camera block.
    let shelf = shelf_for_fov(&info, fov_cm)?;
    let coefficient = coefficient_for(&info, fov_cm, f_number)?;
    let (poly, flat_key) = flat_polynomial(&info, shelf, f_number)?;
    let saturation_adu = match info.camera("CCD Saturation Level") {
        Some(v) => info.number_in(CAMERA, "CCD Saturation Level", v)?,
        None => {
            tracing::warn!(path = %info_path.display(), "no `CCD Saturation Level`: using 65535");
            FALLBACK_SATURATION_ADU
        }
    };
    let defects = ccd_map(&info)?;

    // Frames.
    let lum_path = image_path(dir, &info, LUMINESCENT, "luminescent.TIF");
    let luminescent_adu = read_frame(&lum_path, &mut files)?;
    let dim = luminescent_adu.dim();

    let bias_path = image_path(dir, &info, READBIAS, "readbias.TIF");
    let has_scalar_bias = info.get(LUMINESCENT, "Read Bias Level").is_some();
    let bias_adu = if info.section(READBIAS).is_some() && (bias_path.is_file() || !has_scalar_bias)
    {
        let multiplier = data_multiplier(&info, READBIAS)?;
        let raw = read_frame(&bias_path, &mut files)?;
        check_shape(&bias_path, raw.dim(), &lum_path, dim)?;
        divided(&raw, multiplier)
    } else {
        let level = info.required_number(LUMINESCENT, "Read Bias Level")?;
        Array2::from_elem(dim, level as f32)
    };

    let dark_path = image_path(dir, &info, DARKCHARGE, "background.TIF");
    let dark_adu = if info.section(DARKCHARGE).is_some() && dark_path.is_file() {
        let multiplier = data_multiplier(&info, DARKCHARGE)?;
        let raw = read_frame(&dark_path, &mut files)?;
        check_shape(&dark_path, raw.dim(), &lum_path, dim)?;
        if dark_is_unusable(&raw) {
            tracing::warn!(
                path = %dark_path.display(),
                "dark charge frame is unusable (saturated at 65534/65535): not subtracted"
            );
            None
        } else {
            Some(divided(&raw, multiplier))
        }
    } else {
        None
    };
    let dark_adu = match (dark_adu, options.backgrounds_dir) {
        (Some(own), _) => Some(own),
        (None, Some(library)) => {
            library_dark(library, &info, dim, binning, exposure_s, &mut files)?
        }
        (None, None) => None,
    };
    if dark_adu.is_none() {
        flags.push(QualityFlag::DarkNotSubtracted);
    }

    let photo_path = image_path(dir, &info, PHOTOGRAPH, "photograph.TIF");
    let (photograph_adu, photograph) = if info.section(PHOTOGRAPH).is_some() && photo_path.is_file()
    {
        let meta = PhotographMeta {
            exposure_s: info.required_positive(PHOTOGRAPH, "Exposure Time Sec", "seconds")?,
            binning: info.required_binning(PHOTOGRAPH)?,
        };
        (Some(read_frame(&photo_path, &mut files)?), Some(meta))
    } else {
        (None, None)
    };

    let flat = poly.to_frame(dim.0, dim.1, fov_cm / dim.1 as f64);
    if let Some(why) = check_flat(&info, &flat_key, &poly, &flat)? {
        tracing::warn!(
            path = %info.file_of(CAMERA).display(),
            key = %flat_key,
            "the flat-field polynomial is not like a vignetting profile ({why}); used as stored \
             and flagged"
        );
        flags.push(QualityFlag::FlatImplausible);
    }
    flags.push(QualityFlag::FlatFromPolynomial);
    flags.push(QualityFlag::NoiseModelAssumed);

    let meta = AcquisitionMeta {
        instrument_id: non_empty(
            info.camera("Camera ID")
                .or_else(|| info.camera("Camera Serial Number")),
        )
        .map(|id| topic_safe(&id))
        .unwrap_or_else(|| "ivis-unknown".to_string()),
        acquired_at,
        exposure_s,
        binning,
        f_number,
        fov_cm,
        sensor_temp_c,
        emission_filter,
        shelf: Some(shelf.to_string()),
        study_id: non_empty(info.find("Experiment")),
        subject_ids: info
            .find("Animal Number")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        injection_time: info
            .find("Luc Injection Time")
            .and_then(|t| parse_injection_time(t, acquired_at)),
        view: non_empty(info.find("View")),
        photograph,
    };
    let calibration = FrameCalibration {
        bias_adu,
        // Design: Living Image states no noise for its bias and dark frames; 0 until a
        // measured value exists (the read noise of the frame itself is in `sensor`).
        bias_var_adu2: 0.0,
        dark_adu,
        dark_var_adu2: 0.0,
        flat,
        bad_pixels: binned_bad_pixels(dim, binning, &defects),
        coefficient,
        coefficient_rel_uncertainty: ASSUMED_COEFFICIENT_REL_UNCERTAINTY,
        sensor: SensorFacts {
            gain_e_per_adu: ASSUMED_GAIN_E_PER_ADU,
            read_noise_e: ASSUMED_READ_NOISE_E,
            saturation_adu,
            pixel_pitch_um: ASSUMED_PIXEL_PITCH_UM,
        },
    };
    let acquisition = RawAcquisition {
        meta,
        luminescent_adu,
        photograph_adu,
        imported_rois: read_rois(&info, binning)?,
        source: SourceFormat::IvisClickFolder,
    };
    Ok(IvisFolder {
        path: dir.to_path_buf(),
        acquisition,
        calibration,
        flags,
        files,
        analyzed,
    })
}

// ---------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------

/// Everything needed to write a click folder.
#[derive(Debug, Clone)]
pub struct IvisFolderSpec<'a> {
    pub meta: &'a AcquisitionMeta,
    pub luminescent_adu: &'a Array2<u16>,
    pub photograph_adu: Option<&'a Array2<u16>>,
    /// Read bias, ADU; written ×`data_multiplier`, rounded, as `readbias.TIF` (u16).
    pub readbias_adu: &'a Array2<f32>,
    /// Dark charge, ADU; written ×`data_multiplier` as `background.TIF`; `None` writes an
    /// unusable dark (every pixel 65534), as Living Image does.
    pub dark_adu: Option<&'a Array2<f32>>,
    /// e.g. 10.
    pub data_multiplier: f64,
    /// (fov_cm, f_number, C) → `Coef C-ccd at FOV 22.4, f1:<TAB>7.223E+05`.
    pub coefficients: &'a [(f64, f64, f64)],
    /// ('A', 4.0) ... ('D', 22.4).
    pub shelf_fovs: &'a [(char, f64)],
    /// Written as `Shelf Position D FF5 f/1 Coefs:<TAB>k0,k1,k2,k3,k4,x0,y0` for the meta's
    /// shelf (or the shelf of its FOV) and f-number.
    pub flat: RadialFlat,
    pub saturation_adu: f64,
    /// CCDMap defect pixels (x, y), unbinned.
    pub defects_unbinned: &'a [(usize, usize)],
    pub bad_columns_unbinned: &'a [usize],
    /// Written into AnalyzedClickInfo.txt's `*** ROIs:` section, in unbinned pixel units.
    pub rois_unbinned: &'a [Roi],
    pub animal_numbers: &'a [String],
    pub camera_id: &'a str,
    /// The dark click of the lab's background library the darkcharge section names
    /// (`Background Click`), if any.
    pub background_click: Option<&'a str>,
}

/// ClickInfo text being built; lines are joined with CRLF.
#[derive(Default)]
struct Text {
    lines: Vec<String>,
}

impl Text {
    /// A line written exactly as given (real files have lines the field form cannot make).
    fn raw(&mut self, line: &str) {
        self.lines.push(line.to_string());
    }

    fn comment(&mut self, text: &str) {
        self.lines.push(format!("# {text}"));
    }

    fn section(&mut self, name: &str, value: &str) {
        self.lines.push(if value.is_empty() {
            format!("*** {name}:")
        } else {
            format!("*** {name}:\t{}", one_line(value))
        });
    }

    fn field(&mut self, key: &str, value: impl Display) {
        self.lines
            .push(format!("{key}:\t{}", one_line(&value.to_string())));
    }

    fn to_latin1(&self, path: &Path) -> Result<Vec<u8>, FormatError> {
        let mut text = self.lines.join("\r\n");
        text.push_str("\r\n");
        text.chars()
            .map(|c| {
                u8::try_from(u32::from(c)).map_err(|_| {
                    FormatError::invalid(
                        path,
                        format!("the text contains {c:?}, which Latin-1 (the ClickInfo encoding) cannot represent"),
                        "use only Latin-1 characters in ids and labels (accented Latin letters, µ and ° are fine)",
                    )
                })
            })
            .collect()
    }
}

/// Values must stay on their line.
fn one_line(value: &str) -> String {
    value.replace(['\r', '\n'], " ")
}

/// `frame × multiplier`, rounded, as u16; out-of-range values are an error naming the file.
fn to_stored_u16(
    frame: &Array2<f32>,
    multiplier: f64,
    path: &Path,
) -> Result<Array2<u16>, FormatError> {
    if let Some(((r, c), v)) = frame.indexed_iter().find(|(_, v)| {
        let s = (f64::from(**v) * multiplier).round();
        !(0.0..=65535.0).contains(&s)
    }) {
        return Err(FormatError::invalid(
            path,
            format!(
                "value {v} ADU at row {r}, column {c} times the data multiplier {} does not fit in 16 bits",
                num(multiplier)
            ),
            "use a smaller data multiplier, or check the frame (it must be ≥ 0)",
        ));
    }
    Ok(frame.mapv(|v| (f64::from(v) * multiplier).round() as u16))
}

fn write_text(path: &Path, bytes: &[u8]) -> Result<(), FormatError> {
    // Write then rename, so a reader never sees half a ClickInfo.
    let tmp = path.with_extension("txt.partial");
    std::fs::write(&tmp, bytes).map_err(|e| FormatError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| FormatError::io(path, e))
}

/// Write a click folder in Living Image's layout: the TIFFs first, then `ClickInfo.txt`
/// (Latin-1, CRLF; sections in the real order, the camera block only here), then, when there
/// are ROIs, `AnalyzedClickInfo.txt` (image sections, labels, `*** ROIs:`, no camera block).
/// The result reads back with [`read_click_folder`] to the same meta, frames, coefficient
/// and flat.
pub fn write_click_folder(dir: &Path, spec: &IvisFolderSpec) -> Result<(), FormatError> {
    let meta = spec.meta;
    let dim = spec.luminescent_adu.dim();
    let (rows, cols) = dim;
    if !(spec.data_multiplier.is_finite() && spec.data_multiplier > 0.0) {
        return Err(FormatError::invalid(
            dir,
            format!("data multiplier {} is not positive", spec.data_multiplier),
            "use a positive data multiplier such as 10",
        ));
    }
    if !(1..=64).contains(&meta.binning) {
        return Err(FormatError::invalid(
            dir,
            format!("binning {} is outside 1..=64", meta.binning),
            "set the acquisition's binning",
        ));
    }
    let check = |name: &str, found: (usize, usize)| {
        if found == dim {
            Ok(())
        } else {
            Err(FormatError::invalid(
                &dir.join(name),
                format!(
                    "is {}x{} but the luminescent frame is {rows}x{cols}",
                    found.0, found.1
                ),
                "give bias and dark frames of the luminescent frame's size",
            ))
        }
    };
    check("readbias.TIF", spec.readbias_adu.dim())?;
    if let Some(d) = spec.dark_adu {
        check("background.TIF", d.dim())?;
    }
    let photo_meta = match (spec.photograph_adu, &meta.photograph) {
        (Some(_), None) => {
            return Err(FormatError::invalid(
                &dir.join("photograph.TIF"),
                "a photograph was given without its settings",
                "set meta.photograph (exposure and binning)",
            ))
        }
        (Some(_), Some(p)) => Some(p),
        (None, _) => None,
    };
    let shelf = match &meta.shelf {
        Some(s) => single_letter(s),
        None => spec
            .shelf_fovs
            .iter()
            .find(|(_, f)| (f - meta.fov_cm).abs() <= FOV_TOLERANCE_CM)
            .map(|(l, _)| l.to_ascii_uppercase()),
    }
    .ok_or_else(|| {
        FormatError::invalid(
            dir,
            format!("no shelf for FOV {} cm", num(meta.fov_cm)),
            "set meta.shelf to a letter, or list the FOV in shelf_fovs",
        )
    })?;

    std::fs::create_dir_all(dir).map_err(|e| FormatError::io(dir, e))?;
    let m = spec.data_multiplier;
    let bias_path = dir.join("readbias.TIF");
    let dark_path = dir.join("background.TIF");
    let bias_stored = to_stored_u16(spec.readbias_adu, m, &bias_path)?;
    let dark_stored = match spec.dark_adu {
        Some(d) => to_stored_u16(d, m, &dark_path)?,
        None => Array2::from_elem(dim, UNUSABLE_DARK_ADU),
    };
    write_u16(&dir.join("luminescent.TIF"), spec.luminescent_adu)?;
    if let Some(p) = spec.photograph_adu {
        write_u16(&dir.join("photograph.TIF"), p)?;
    }
    write_u16(&bias_path, &bias_stored)?;
    write_u16(&dark_path, &dark_stored)?;

    let click = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let labels = |t: &mut Text| {
        t.section(USER_LABELS, "Living Image Universal");
        t.field("Experiment", meta.study_id.as_deref().unwrap_or(""));
        t.field("Animal Number", spec.animal_numbers.join(", "));
        t.field("View", meta.view.as_deref().unwrap_or(""));
        t.field(
            "Luc Injection Time",
            meta.injection_time
                .map(|i| i.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_default(),
        );
        t.section("User Input", "");
    };
    let images = |t: &mut Text| {
        if let Some(p) = photo_meta {
            t.section(PHOTOGRAPH, "photograph.TIF");
            t.field("Binning Factor", p.binning);
            t.field("Exposure Time Sec", num(p.exposure_s));
            t.field("f Number", num(meta.f_number));
            t.field("Field of View", num(meta.fov_cm));
        }
        t.section("readbiasonly image", "");
        t.field("Binning Factor", meta.binning);
        t.section(DARKCHARGE, "background.TIF");
        t.field("Binning Factor", meta.binning);
        t.field("Luminescent Exposure (Seconds)", num(meta.exposure_s));
        t.field("Data Multiplier", num(m));
        if let Some(bkg) = spec.background_click {
            t.field("Background Click", bkg);
        }
        t.section(READBIAS, "readbias.TIF");
        t.field("Binning Factor", meta.binning);
        t.field("Data Multiplier", num(m));
        t.section(LUMINESCENT, "luminescent.TIF");
        t.field(
            "Acquisition Date",
            meta.acquired_at.format("%A, %B %-d, %Y"),
        );
        t.field("Acquisition Time", meta.acquired_at.format("%H:%M:%S"));
        t.field("Acquisition Seconds", to_mac_seconds(meta.acquired_at));
        t.field("Binning Factor", meta.binning);
        t.field("Luminescent Exposure (Seconds)", num(meta.exposure_s));
        t.field("f Number", num(meta.f_number));
        t.field("Field of View", num(meta.fov_cm));
        let mean_bias = spec.readbias_adu.mean().unwrap_or(0.0);
        t.field("Read Bias Level", format!("{mean_bias:.2}"));
        t.field("Emission filter", &meta.emission_filter);
        t.field("Measured Temperature", num(meta.sensor_temp_c));
        // The file holds raw counts: Living Image applies these corrections on display.
        for flag in [
            "Cosmic Corrected",
            "Flat Field Corrected",
            "Background Corrected",
        ] {
            t.field(flag, "No");
        }
    };

    // ClickInfo.txt: what the instrument wrote at acquisition, camera block included.
    let mut t = Text::default();
    t.section("ClickNumber", &click);
    labels(&mut t);
    t.section("Analysis User Input", "");
    images(&mut t);
    t.section(CAMERA, "");
    t.raw("Camera Info File Version Number:\t:\t3.0");
    t.comment(&format!(
        "Written by lumiq {} in Living Image's layout (see docs/ivis-click-folder.md)",
        env!("CARGO_PKG_VERSION")
    ));
    t.field("Camera ID", spec.camera_id);
    t.raw(&format!(
        "CCD Saturation Level:\t{}\t# ADU",
        num(spec.saturation_adu)
    ));
    for (letter, fov) in spec.shelf_fovs {
        t.field(
            &format!("Shelf Position {} FOV", letter.to_ascii_uppercase()),
            num(*fov),
        );
    }
    for (fov, f, c) in spec.coefficients {
        t.field(
            &format!("Coef C-ccd at FOV {}, f{}", num(*fov), num(*f)),
            ivis_exp(*c),
        );
    }
    let k = &spec.flat.k;
    t.field(
        &format!("Shelf Position {shelf} FF5 f/{} Coefs", num(meta.f_number)),
        [
            k[0],
            k[1],
            k[2],
            k[3],
            k[4],
            spec.flat.x0_cm,
            spec.flat.y0_cm,
        ]
        .map(num)
        .join(","),
    );
    t.comment(
        "CCDMap: col #, start row #, end row #, col #, start row, end row ... -1, row #, start \
         col, end col, ... -1, xVal1, yVal1, xVal2, yVal2 ... -1, substitute value, debug flag",
    );
    let last_row = rows * meta.binning as usize - 1;
    let map: Vec<String> = spec
        .bad_columns_unbinned
        .iter()
        .map(|x| format!("{x},0,{last_row}"))
        .chain(["-1".to_string(), "-1".to_string()])
        .chain(
            spec.defects_unbinned
                .iter()
                .map(|(x, y)| format!("{x},{y}")),
        )
        .chain(["-1, 0, 0".to_string()])
        .collect();
    t.field("CCDMap", map.join(","));
    t.section("Graph Controls", "");
    let click_path = dir.join(CLICK_INFO);
    write_text(&click_path, &t.to_latin1(&click_path)?)?;

    // AnalyzedClickInfo.txt: what analysis wrote; no camera block.
    if !spec.rois_unbinned.is_empty() {
        let mut t = Text::default();
        t.section("ClickNumber", &click);
        t.field("ClickInfoType", "SingleClickAnalysis");
        images(&mut t);
        labels(&mut t);
        let cm_per_px = meta.fov_cm / (cols as f64 * f64::from(meta.binning));
        t.section(
            ROIS,
            &format!("{} ROIs for this Click", spec.rois_unbinned.len()),
        );
        for (i, roi) in spec.rois_unbinned.iter().enumerate() {
            let (shape, xc, yc, w, h, a) = match roi.shape {
                RoiShape::Ellipse {
                    xc,
                    yc,
                    width,
                    height,
                    angle_deg,
                } => {
                    let name = if width == height { "Circle" } else { "Ellipse" };
                    (name, xc, yc, width, height, angle_deg)
                }
                RoiShape::Rectangle {
                    xc,
                    yc,
                    width,
                    height,
                    angle_deg,
                } => ("Rectangle", xc, yc, width, height, angle_deg),
            };
            t.field(
                &format!("ROI {}", i + 1),
                format!(
                    "zColorIndex={};ROI Type=Measurement;Shape={shape};Xc={xc};Yc={yc};\
                     Width={w};Height={h};Angle={a};Label={};cm per pixel={cm_per_px:.12};",
                    i + 1,
                    roi.label.replace(';', ",")
                ),
            );
        }
        t.section("Tags", "");
        t.section("Comments", "");
        t.section("saved luminescent corrected image", "");
        t.field("Cosmic Corrected", "Yes");
        t.field("Flat Field Corrected", "Yes");
        t.field("Background Corrected", "Yes");
        t.field("Intensity Calibration", "Radiance (Photons)");
        let analyzed_path = dir.join(ANALYZED_CLICK_INFO);
        write_text(&analyzed_path, &t.to_latin1(&analyzed_path)?)?;
    }
    Ok(())
}

/// Write a background (dark) click as a lab's library holds it: `<dir>/ClickInfo.txt` with
/// its darkcharge section and `<dir>/background.TIF` (the dark charge × `data_multiplier`).
/// `dir`'s name is the click's name (`BKG20220105025931`), which folders name in
/// `Background Click`.
pub fn write_background_click(
    dir: &Path,
    dark_adu: &Array2<f32>,
    binning: u32,
    exposure_s: f64,
    data_multiplier: f64,
) -> Result<(), FormatError> {
    std::fs::create_dir_all(dir).map_err(|e| FormatError::io(dir, e))?;
    let tiff = dir.join("background.TIF");
    write_u16(&tiff, &to_stored_u16(dark_adu, data_multiplier, &tiff)?)?;
    let mut t = Text::default();
    let click = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    t.section("ClickNumber", &click);
    t.section(DARKCHARGE, "background.TIF");
    t.field("Binning Factor", binning);
    t.field("Luminescent Exposure (Seconds)", num(exposure_s));
    t.field("Data Multiplier", num(data_multiplier));
    let path = dir.join(CLICK_INFO);
    write_text(&path, &t.to_latin1(&path)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// Owned data behind an [`IvisFolderSpec`].
    struct Fixture {
        meta: AcquisitionMeta,
        lum: Array2<u16>,
        photo: Array2<u16>,
        bias: Array2<f32>,
        dark: Option<Array2<f32>>,
        coefficients: Vec<(f64, f64, f64)>,
        shelves: Vec<(char, f64)>,
        flat: RadialFlat,
        defects: Vec<(usize, usize)>,
        columns: Vec<usize>,
        rois: Vec<Roi>,
        animals: Vec<String>,
    }

    const ROWS: usize = 32;
    const COLS: usize = 48;

    fn fixture() -> Fixture {
        let animals: Vec<String> = ["3466", "3467", "3468"].map(String::from).to_vec();
        Fixture {
            meta: AcquisitionMeta {
                instrument_id: "IS1234N5678".into(),
                acquired_at: Utc.with_ymd_and_hms(2022, 1, 5, 10, 32, 17).unwrap(),
                exposure_s: 60.0,
                binning: 8,
                f_number: 1.0,
                fov_cm: 22.4,
                sensor_temp_c: -89.9,
                emission_filter: "open".into(),
                shelf: Some("D".into()),
                study_id: Some("Étude µ-CT 12".into()),
                subject_ids: animals.clone(),
                injection_time: Some(Utc.with_ymd_and_hms(2022, 1, 5, 10, 5, 0).unwrap()),
                view: Some("Dorsal".into()),
                photograph: Some(PhotographMeta {
                    exposure_s: 0.2,
                    binning: 2,
                }),
            },
            lum: Array2::from_shape_fn((ROWS, COLS), |(r, c)| {
                if (r, c) == (3, 4) {
                    65535
                } else {
                    (600 + r * 37 + c * 11) as u16
                }
            }),
            photo: Array2::from_shape_fn((ROWS * 4, COLS * 4), |(r, c)| (r * 300 + c) as u16),
            bias: Array2::from_shape_fn((ROWS, COLS), |(r, c)| {
                500.0 + (c % 3) as f32 * 0.37 + r as f32 * 0.01
            }),
            dark: Some(Array2::from_shape_fn((ROWS, COLS), |(r, c)| {
                2.0 + ((r + c) % 5) as f32 * 0.13
            })),
            coefficients: vec![
                (22.4, 1.0, 7.223e5),
                (22.4, 2.0, 2.8892e6),
                (12.5, 1.0, 2.319e6),
            ],
            shelves: vec![('A', 4.0), ('B', 6.5), ('C', 12.5), ('D', 22.4)],
            flat: RadialFlat {
                k: [1.0, 0.0, -1.6e-3, 0.0, 1.2e-6],
                x0_cm: 0.3,
                y0_cm: -0.2,
            },
            defects: vec![(120, 45), (7, 7)],
            columns: vec![337],
            rois: vec![
                Roi {
                    label: "ROI 1".into(),
                    shape: RoiShape::Ellipse {
                        xc: 100.0,
                        yc: 80.0,
                        width: 40.0,
                        height: 40.0,
                        angle_deg: 0.0,
                    },
                },
                Roi {
                    label: "mouse 2; flank".into(),
                    shape: RoiShape::Ellipse {
                        xc: 200.5,
                        yc: 120.25,
                        width: 64.0,
                        height: 24.0,
                        angle_deg: 30.0,
                    },
                },
                Roi {
                    label: "ROI 3".into(),
                    shape: RoiShape::Rectangle {
                        xc: 300.0,
                        yc: 200.0,
                        width: 48.0,
                        height: 16.0,
                        angle_deg: -12.5,
                    },
                },
            ],
            animals,
        }
    }

    impl Fixture {
        fn spec(&self) -> IvisFolderSpec<'_> {
            IvisFolderSpec {
                meta: &self.meta,
                luminescent_adu: &self.lum,
                photograph_adu: Some(&self.photo),
                readbias_adu: &self.bias,
                dark_adu: self.dark.as_ref(),
                data_multiplier: 10.0,
                coefficients: &self.coefficients,
                shelf_fovs: &self.shelves,
                flat: self.flat,
                saturation_adu: 65000.0,
                defects_unbinned: &self.defects,
                bad_columns_unbinned: &self.columns,
                rois_unbinned: &self.rois,
                animal_numbers: &self.animals,
                camera_id: "IS1234N5678",
                background_click: None,
            }
        }

        fn write(&self) -> tempfile::TempDir {
            let dir = tempfile::tempdir().unwrap();
            write_click_folder(dir.path(), &self.spec()).unwrap();
            dir
        }
    }

    fn read_err(dir: &Path) -> String {
        read_click_folder(dir).unwrap_err().to_string()
    }

    /// Replace `from` by `to` (once) in a folder's ClickInfo.txt, keeping Latin-1 bytes.
    fn edit_click_info(dir: &Path, from: &str, to: &str) {
        let p = dir.join(CLICK_INFO);
        let text = decode_latin1(&std::fs::read(&p).unwrap());
        assert!(text.contains(from), "{from:?} not in ClickInfo.txt");
        let t = Text {
            lines: vec![text
                .replacen(from, to, 1)
                .trim_end_matches("\r\n")
                .to_string()],
        };
        std::fs::write(&p, t.to_latin1(&p).unwrap()).unwrap();
    }

    #[test]
    fn round_trip_keeps_meta_frames_and_calibration() {
        let fx = fixture();
        let dir = fx.write();
        assert!(is_click_folder(dir.path()));
        let f = read_click_folder(dir.path()).unwrap();
        let a = &f.acquisition;
        assert!(f.analyzed);
        assert_eq!(a.source, SourceFormat::IvisClickFolder);
        assert_eq!(a.meta, fx.meta);
        assert_eq!(a.luminescent_adu, fx.lum);
        assert_eq!(a.photograph_adu.as_ref(), Some(&fx.photo));
        assert_eq!(a.meta.subject_ids, ["3466", "3467", "3468"]);

        let cal = &f.calibration;
        assert_eq!(cal.coefficient, 7.223e5);
        assert_eq!(cal.coefficient_rel_uncertainty, 0.05);
        assert_eq!(cal.sensor.saturation_adu, 65000.0);
        assert_eq!(cal.sensor.gain_e_per_adu, 1.5);
        // Bias and dark: stored ×10 and rounded, read back ÷10.
        let expect = |v: f32| ((f64::from(v) * 10.0).round() / 10.0) as f32;
        assert_eq!(cal.bias_adu, fx.bias.mapv(expect));
        assert_eq!(
            cal.dark_adu.as_ref().unwrap(),
            &fx.dark.as_ref().unwrap().mapv(expect)
        );
        assert!((cal.bias_adu[[0, 1]] - 500.4).abs() < 1e-4);

        // Flat: the polynomial at the pixel centres, with r in cm (pixel = 22.4/48 cm).
        let px = 22.4 / COLS as f64;
        let expected_flat = fx.flat.to_frame(ROWS, COLS, px);
        assert_eq!(cal.flat, expected_flat);
        let centre = fx.flat.at(24.5 * px, 16.5 * px, 22.4, ROWS as f64 * px);
        assert!((f64::from(cal.flat[[16, 24]]) - centre).abs() < 1e-6);
        // Corner (0, 0): dx = 0.5 px − (11.2 + 0.3), dy = 0.5 px − (7.467 − (−0.2)): the
        // axis offset's y points up the image, so y0 = −0.2 puts the axis below the centre.
        let (dx, dy) = (0.5 * px - 11.5, 0.5 * px - (ROWS as f64 * px / 2.0 + 0.2));
        let r = (dx * dx + dy * dy).sqrt();
        let corner = 1.0 - 1.6e-3 * r * r + 1.2e-6 * r.powi(4);
        assert!((f64::from(cal.flat[[0, 0]]) - corner).abs() < 1e-6);
        assert!(cal.flat[[0, 0]] < cal.flat[[16, 24]] && (cal.flat[[16, 24]] - 1.0).abs() < 0.01);

        // Bad pixels: (x 120, y 45) → (row 5, col 15); (7, 7) → (0, 0); column 337, rows
        // 0..=255 (written as the triple `337,0,255`) → column 42.
        let bad = &cal.bad_pixels;
        assert!(bad[[5, 15]] && bad[[0, 0]]);
        assert!((0..ROWS).all(|r| bad[[r, 42]]));
        assert_eq!(bad.iter().filter(|&&b| b).count(), 2 + ROWS);

        // ROIs: unbinned → luminescent grid, ÷ binning 8; labels kept (`;` becomes `,`).
        let rois = &a.imported_rois;
        assert_eq!(rois.len(), 3);
        assert_eq!(rois[0].shape, fx.rois[0].shape.scaled(8.0));
        assert_eq!(rois[1].shape, fx.rois[1].shape.scaled(8.0));
        assert_eq!(rois[1].label, "mouse 2, flank");
        assert_eq!(
            rois[2].shape,
            RoiShape::Rectangle {
                xc: 37.5,
                yc: 25.0,
                width: 6.0,
                height: 2.0,
                angle_deg: -12.5
            }
        );

        assert_eq!(
            a.meta.acquired_at,
            Utc.with_ymd_and_hms(2022, 1, 5, 10, 32, 17).unwrap()
        );
        assert_eq!(
            f.flags,
            [
                QualityFlag::FlatFromPolynomial,
                QualityFlag::NoiseModelAssumed
            ]
        );
        let names: Vec<&str> = f.files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "ClickInfo.txt",
                "AnalyzedClickInfo.txt",
                "luminescent.TIF",
                "readbias.TIF",
                "background.TIF",
                "photograph.TIF"
            ]
        );
        assert!(f.files.iter().all(|(_, h)| h.len() == 64));
    }

    #[test]
    fn acquired_at_comes_from_acquisition_seconds_since_1904() {
        let fx = fixture();
        let dir = fx.write();
        // 2022-01-05T10:32:17Z is Unix 1641378737; 1904 → 1970 is 2082844800 s.
        let text = decode_latin1(&std::fs::read(dir.path().join(CLICK_INFO)).unwrap());
        assert!(
            text.contains("Acquisition Seconds:\t3724223537\r\n"),
            "{text}"
        );
        assert!(text.contains("Acquisition Date:\tWednesday, January 5, 2022\r\n"));
        // Seconds win over a contradicting date; the written date is only for people.
        std::fs::remove_file(dir.path().join(ANALYZED_CLICK_INFO)).unwrap();
        edit_click_info(dir.path(), "3724223537", "3724223537.25");
        edit_click_info(dir.path(), "January 5, 2022", "March 1, 2023");
        let f = read_click_folder(dir.path()).unwrap();
        assert!(!f.analyzed);
        assert_eq!(
            f.acquisition.meta.acquired_at,
            Utc.with_ymd_and_hms(2022, 1, 5, 10, 32, 17).unwrap() + TimeDelta::milliseconds(250)
        );
    }

    #[test]
    fn crlf_latin1_round_trip_and_bare_lf_parses() {
        let fx = fixture();
        let dir = fx.write();
        let p = dir.path().join(CLICK_INFO);
        let bytes = std::fs::read(&p).unwrap();
        // Latin-1: µ is the single byte 0xB5, É is 0xC9 (never UTF-8's 0xC2 0xB5).
        assert!(
            bytes.windows(2).any(|w| w == [b' ', 0xB5]),
            "µ not stored as Latin-1"
        );
        assert!(bytes.contains(&0xC9));
        assert!(!bytes.windows(2).any(|w| w == [0xC2, 0xB5]));
        // CRLF everywhere: every LF follows a CR.
        assert!(bytes
            .iter()
            .enumerate()
            .all(|(i, &b)| b != b'\n' || (i > 0 && bytes[i - 1] == b'\r')));
        assert!(bytes.ends_with(b"\r\n"));

        std::fs::remove_file(dir.path().join(ANALYZED_CLICK_INFO)).unwrap();
        // A Latin-1 comment with é, and a field value with °.
        let mut edited = b"# r\xE9sum\xE9 de l'exp\xE9rience\r\n".to_vec();
        edited.extend_from_slice(&bytes);
        std::fs::write(&p, &edited).unwrap();
        let f = read_click_folder(dir.path()).unwrap();
        assert_eq!(
            f.acquisition.meta.study_id.as_deref(),
            Some("Étude µ-CT 12")
        );
        assert_eq!(f.acquisition.meta, fx.meta);

        // Bare LF (a file that went through a Unix tool) parses to the same thing.
        let lf: Vec<u8> = edited.iter().copied().filter(|&b| b != b'\r').collect();
        std::fs::write(&p, &lf).unwrap();
        let g = read_click_folder(dir.path()).unwrap();
        assert_eq!(g.acquisition.meta, fx.meta);
        assert_eq!(g.calibration.coefficient, 7.223e5);
    }

    #[test]
    fn text_outside_latin1_is_refused_on_write() {
        let mut fx = fixture();
        fx.meta.study_id = Some("study → 2".into());
        let dir = tempfile::tempdir().unwrap();
        let e = write_click_folder(dir.path(), &fx.spec())
            .unwrap_err()
            .to_string();
        assert!(e.contains("ClickInfo.txt") && e.contains("Latin-1"), "{e}");
    }

    #[test]
    fn unusable_dark_is_flagged_and_never_subtracted() {
        let mut fx = fixture();
        fx.dark = None;
        let dir = fx.write();
        let raw = read_u16(&dir.path().join("background.TIF")).unwrap();
        assert!(raw.iter().all(|&v| v == 65534));
        let f = read_click_folder(dir.path()).unwrap();
        assert!(f.calibration.dark_adu.is_none());
        assert!(f.flags.contains(&QualityFlag::DarkNotSubtracted));

        // More than half the pixels at the ceiling is unusable too; less than half is not.
        let mut half = Array2::from_elem((4, 4), 30u16);
        half.rows_mut()
            .into_iter()
            .take(2)
            .for_each(|mut r| r.fill(65535));
        assert!(!dark_is_unusable(&half));
        half[[2, 0]] = 65534;
        assert!(dark_is_unusable(&half));
    }

    #[test]
    fn missing_binning_factor_names_file_section_and_field() {
        let mut fx = fixture();
        fx.rois.clear();
        let dir = fx.write();
        assert!(!dir.path().join(ANALYZED_CLICK_INFO).exists());
        // The luminescent section's Binning Factor follows its Acquisition Seconds.
        edit_click_info(
            dir.path(),
            "Acquisition Seconds:\t3724223537\r\nBinning Factor:\t8\r\n",
            "Acquisition Seconds:\t3724223537\r\n",
        );
        let err = read_click_folder(dir.path()).unwrap_err();
        assert!(matches!(err, FormatError::MissingField { .. }), "{err:?}");
        let e = err.to_string();
        assert!(e.contains("ClickInfo.txt"), "{e}");
        assert!(e.contains("Binning Factor"), "{e}");
        assert!(e.contains("luminescent image"), "{e}");
    }

    #[test]
    fn missing_coefficient_names_fov_and_f_number() {
        let mut fx = fixture();
        fx.meta.f_number = 4.0;
        let dir = fx.write();
        let e = read_err(dir.path());
        assert!(e.contains("Coef C-ccd at FOV 22.4, f4"), "{e}");
        assert!(e.contains("FOV 22.4 cm at f/4"), "{e}");
        // It lists what the folder has.
        assert!(
            e.contains("FOV 22.4, f2") && e.contains("FOV 12.5, f1"),
            "{e}"
        );
    }

    /// Regression: a flat `1,0,0,0,0,0,0` and real, non-monotonic coefficients were
    /// refused. Any polynomial positive over the frame is used; an implausible one is
    /// flagged; one that reaches zero is an error naming the line.
    #[test]
    fn flat_polynomials_positive_are_used_implausible_flagged_non_positive_refused() {
        let mut fx = fixture();
        let flags_for = |fx: &Fixture| {
            let dir = fx.write();
            read_click_folder(dir.path()).map(|f| (f.flags, f.calibration.flat))
        };
        // Flat: no vignetting at all. Valid, not flagged, FF = 1 everywhere.
        fx.flat = RadialFlat {
            k: [1.0, 0.0, 0.0, 0.0, 0.0],
            x0_cm: 0.0,
            y0_cm: 0.0,
        };
        let (flags, flat) = flags_for(&fx).unwrap();
        assert!(!flags.contains(&QualityFlag::FlatImplausible), "{flags:?}");
        assert!(flat.iter().all(|&v| v == 1.0));
        // Real shelf D f/1 at 22.4 cm (falls to ~0.21 in the corners) and shelf A f/1 at
        // 4 cm (not monotonic), each on its own field of view.
        for (shelf, fov_cm, k) in [
            (
                "D",
                22.4,
                [
                    0.993171, 0.001630, -0.005467, 0.000520, -0.000023, -0.013469, 0.602904,
                ],
            ),
            (
                "A",
                4.0,
                [
                    1.020414, -0.189043, 0.298781, -0.180408, 0.028754, -0.046228, 0.133962,
                ],
            ),
        ] {
            let mut fx = fixture();
            fx.meta.shelf = Some(shelf.into());
            fx.meta.fov_cm = fov_cm;
            fx.coefficients.push((4.0, 1.0, 2.263e7));
            fx.flat = RadialFlat {
                k: [k[0], k[1], k[2], k[3], k[4]],
                x0_cm: k[5],
                y0_cm: k[6],
            };
            let (flags, _) = flags_for(&fx).unwrap();
            assert!(
                !flags.contains(&QualityFlag::FlatImplausible),
                "{k:?}: {flags:?}"
            );
        }
        // Rising toward the corners: used as stored, flagged.
        fx.flat = RadialFlat {
            k: [1.0, 0.0, 2.0e-3, 0.0, 0.0],
            x0_cm: 0.0,
            y0_cm: 0.0,
        };
        let (flags, _) = flags_for(&fx).unwrap();
        assert!(flags.contains(&QualityFlag::FlatImplausible), "{flags:?}");
        // Falling through zero inside the frame is an error naming the line.
        fx.flat.k = [1.0, 0.0, -2.0e-2, 0.0, 0.0];
        let dir = fx.write();
        let e = read_err(dir.path());
        assert!(e.contains("Shelf Position D FF5 f/1 Coefs"), "{e}");
        assert!(e.contains("> 0 everywhere"), "{e}");
    }

    #[test]
    fn truncated_luminescent_tiff_is_an_error_naming_it() {
        let fx = fixture();
        let dir = fx.write();
        let p = dir.path().join("luminescent.TIF");
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let e = read_err(dir.path());
        assert!(e.contains("luminescent.TIF"), "{e}");
    }

    #[test]
    fn clickinfo_parse_sections_fields_and_comments() {
        let text = "# comment: with colon\n*** luminescent image:\tlum.TIF\nAcquisition Time:\t10:32:17\nbinning factor: 4\nfree text line\n*** Camera System Info:\r\nCamera Info File Version Number:\t:\t3.0\r\n# CCDMap: col #, start row #, end row #\r\nCCD Saturation Level:\t60000\t# ADU\r\nCCDMap:\t9,0,99,-1,-1,1,2,-1, 0, 0\r\nCCDMap:\t-1,-1,5,5,-1, 0, 0\r\n";
        let ci = ClickInfo::parse(text, Path::new("ClickInfo.txt")).unwrap();
        assert_eq!(
            ci.section_names(),
            ["luminescent image", "Camera System Info"]
        );
        assert_eq!(ci.section_value("Luminescent Image"), Some("lum.TIF"));
        assert_eq!(ci.get(LUMINESCENT, "Acquisition Time"), Some("10:32:17"));
        assert_eq!(ci.get(LUMINESCENT, "Binning Factor"), Some("4"));
        assert_eq!(ci.get(CAMERA, "Acquisition Time"), None);
        // The doubled colon and the trailing `<TAB># comment` are not part of the value.
        assert_eq!(
            ci.get(CAMERA, "Camera Info File Version Number"),
            Some("3.0")
        );
        assert_eq!(ci.get(CAMERA, "CCD Saturation Level"), Some("60000"));
        assert_eq!(ci.get_all(CAMERA, "CCDMap").len(), 2);
        // Only the first CCDMap line counts.
        assert_eq!(
            ccd_map(&ci).unwrap(),
            CcdMap {
                columns: vec![(9, 0, 99)],
                rows: vec![],
                pixels: vec![(1, 2)],
            }
        );
        let e = ClickInfo::parse("just: text\n", Path::new("x/ClickInfo.txt"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ClickInfo.txt"), "{e}");
    }

    #[test]
    fn key_parsers_and_injection_times() {
        assert_eq!(
            coefficient_key("Coef C-ccd at FOV 22.4, f1"),
            Some((22.4, 1.0))
        );
        assert_eq!(
            coefficient_key("Coef C-ccd at FOV 4, f/8"),
            Some((4.0, 8.0))
        );
        assert_eq!(flat_key("Shelf Position D FF5 f/2 Coefs"), Some(('D', 2.0)));
        assert_eq!(shelf_fov_key("Shelf Position a FOV"), Some('A'));
        assert_eq!(shelf_fov_key("Shelf Position A FF5 f/1 Coefs"), None);
        assert_eq!(ivis_exp(7.223e5), "7.223E+05");
        assert_eq!(ivis_exp(-1.6e-3), "-1.6E-03");
        assert_eq!(parse_number("7.223E+05"), Some(7.223e5));
        let at = Utc.with_ymd_and_hms(2022, 1, 5, 0, 20, 0).unwrap();
        let day_before = Utc.with_ymd_and_hms(2022, 1, 4, 23, 50, 0).unwrap();
        assert_eq!(parse_injection_time("23:50", at), Some(day_before));
        assert_eq!(
            parse_injection_time("2022-01-04 23:50:00", at),
            Some(day_before)
        );
        assert_eq!(parse_injection_time("about ten minutes before", at), None);
    }

    /// A hand-written AnalyzedClickInfo.txt that carries the camera block itself (not
    /// lumiq's writer), read alone: section and key spellings, `Shape=Square`, a background
    /// ROI, `Open`.
    #[test]
    fn analyzed_click_info_alone_with_a_camera_block_reads() {
        let dir = tempfile::tempdir().unwrap();
        let golden = include_bytes!(
            "../../tests/data/ivis/analyzed-with-camera-block/AnalyzedClickInfo.txt"
        );
        assert!(golden.windows(2).any(|w| w == b"\r\n"));
        std::fs::write(dir.path().join(ANALYZED_CLICK_INFO), golden).unwrap();
        let (rows, cols) = (64, 64);
        write_u16(
            &dir.path().join("luminescent.TIF"),
            &Array2::from_elem((rows, cols), 700),
        )
        .unwrap();
        write_u16(
            &dir.path().join("photograph.TIF"),
            &Array2::from_elem((128, 128), 9000),
        )
        .unwrap();
        write_u16(
            &dir.path().join("readbias.TIF"),
            &Array2::from_elem((rows, cols), 6085),
        )
        .unwrap();
        write_u16(
            &dir.path().join("background.TIF"),
            &Array2::from_elem((rows, cols), 31),
        )
        .unwrap();
        let f = read_click_folder(dir.path()).unwrap();
        let m = &f.acquisition.meta;
        assert!(f.analyzed);
        assert_eq!(m.instrument_id, "IS1234N5678");
        assert_eq!(
            (m.binning, m.fov_cm, m.f_number, m.exposure_s),
            (4, 12.5, 1.0, 60.0)
        );
        assert_eq!(m.shelf.as_deref(), Some("C"));
        assert_eq!(m.emission_filter, "open");
        assert_eq!(m.sensor_temp_c, -89.8);
        assert_eq!(m.study_id.as_deref(), Some("Orthotopic 4T1, µCT follow-up"));
        assert_eq!(m.subject_ids, ["3466", "3467", "3468"]);
        assert_eq!(m.view.as_deref(), Some("Dorsal"));
        assert_eq!(
            m.acquired_at,
            Utc.with_ymd_and_hms(2022, 1, 5, 10, 32, 17).unwrap()
        );
        assert_eq!(
            m.injection_time,
            Some(Utc.with_ymd_and_hms(2022, 1, 5, 10, 20, 0).unwrap())
        );
        assert_eq!(
            m.photograph,
            Some(PhotographMeta {
                exposure_s: 0.2,
                binning: 2
            })
        );
        let cal = &f.calibration;
        assert_eq!(cal.coefficient, 2.319e6);
        assert_eq!(cal.sensor.saturation_adu, 60000.0);
        assert!((cal.bias_adu[[10, 10]] - 608.5).abs() < 1e-4);
        assert!((cal.dark_adu.as_ref().unwrap()[[0, 0]] - 3.1).abs() < 1e-6);
        assert!(cal.bad_pixels[[5, 2]] && cal.bad_pixels[[40, 25]]);
        let rois = &f.acquisition.imported_rois;
        assert_eq!(rois.len(), 2, "the background ROI is not imported");
        assert_eq!(
            rois[0].shape,
            RoiShape::Ellipse {
                xc: 225.9 / 4.0,
                yc: 424.3 / 4.0,
                width: 225.9 / 4.0,
                height: 225.9 / 4.0,
                angle_deg: 0.0
            }
        );
        assert_eq!(rois[1].label, "Mouse 2 flank");
        assert!(
            matches!(rois[1].shape, RoiShape::Rectangle { angle_deg, .. } if angle_deg == 15.0)
        );
    }

    /// The hand-written pair in tests/data/ivis/real-layout, with frames of the real sizes
    /// (luminescent 240² at binning 8, photograph 960² at binning 2: a 1920-pixel sensor).
    fn real_layout_folder(own_dark: u16) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for name in [CLICK_INFO, ANALYZED_CLICK_INFO] {
            std::fs::copy(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/data/ivis/real-layout")
                    .join(name),
                dir.path().join(name),
            )
            .unwrap();
        }
        let n = 240;
        write_u16(
            &dir.path().join("luminescent.TIF"),
            &Array2::from_elem((n, n), 640),
        )
        .unwrap();
        write_u16(
            &dir.path().join("photograph.TIF"),
            &Array2::from_elem((4 * n, 4 * n), 9000),
        )
        .unwrap();
        write_u16(
            &dir.path().join("readbias.TIF"),
            &Array2::from_elem((n, n), 6085),
        )
        .unwrap();
        write_u16(
            &dir.path().join("background.TIF"),
            &Array2::from_elem((n, n), own_dark),
        )
        .unwrap();
        dir
    }

    /// Regression: real folders put the camera block in ClickInfo.txt only, and lumiq
    /// refused them (`missing field Camera System Info / Shelf Position D FOV`), then refused
    /// their CCDMap (`-1,-1,929,1211,1828,1069,-1, 0, 0`).
    #[test]
    fn real_layout_pair_reads_camera_from_clickinfo_and_labels_from_analysis() {
        let dir = real_layout_folder(UNUSABLE_DARK_ADU);
        let f = read_click_folder(dir.path()).unwrap();
        let m = &f.acquisition.meta;
        assert!(f.analyzed);
        assert_eq!(m.instrument_id, "IS1234N5678");
        assert_eq!(
            (m.binning, m.fov_cm, m.f_number, m.exposure_s),
            (8, 22.4, 1.0, 40.0)
        );
        assert_eq!(m.shelf.as_deref(), Some("D"));
        assert_eq!(m.sensor_temp_c, -90.1);
        assert_eq!(m.subject_ids, ["3466", "3467", "3468", "3469", "3470"]);
        // Labels: AnalyzedClickInfo.txt's copy wins (re-labelled during analysis).
        assert_eq!(
            m.study_id.as_deref(),
            Some("GL261 brain, cohort 2 (réanalyse)")
        );
        assert_eq!(
            m.injection_time,
            Some(Utc.with_ymd_and_hms(2022, 1, 5, 11, 40, 0).unwrap())
        );
        let cal = &f.calibration;
        assert_eq!(cal.coefficient, 7.223e5);
        assert_eq!(cal.sensor.saturation_adu, 60000.0);
        // The real shelf D f/1 polynomial, not flagged; pixel 22.4/240 cm.
        assert!(
            !f.flags.contains(&QualityFlag::FlatImplausible),
            "{:?}",
            f.flags
        );
        let real_d = RadialFlat {
            k: [0.993171, 0.001630, -0.005467, 0.000520, -0.000023],
            x0_cm: -0.013469,
            y0_cm: 0.602904,
        };
        assert_eq!(cal.flat, real_d.to_frame(240, 240, 22.4 / 240.0));
        // y0 = +0.6 cm points up: the top corners are brighter than the bottom ones.
        assert!(cal.flat[[0, 0]] > cal.flat[[239, 0]] + 0.1);
        // CCDMap: bad pixels (929, 1211) and (1828, 1069) → binned (151, 116), (133, 228);
        // the second CCDMap line (column 5) does not count.
        let bad: Vec<(usize, usize)> = cal
            .bad_pixels
            .indexed_iter()
            .filter(|(_, &b)| b)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(bad, [(133, 228), (151, 116)]);
        // The folder's own dark is saturated: not subtracted, flagged.
        assert!(cal.dark_adu.is_none());
        assert!(f.flags.contains(&QualityFlag::DarkNotSubtracted));
        // ROIs in sensor (unbinned) pixels ÷ 8.
        let rois = &f.acquisition.imported_rois;
        assert_eq!(rois.len(), 5);
        assert_eq!(
            rois[0].shape,
            RoiShape::Ellipse {
                xc: 225.9 / 8.0,
                yc: 424.3 / 8.0,
                width: 225.9 / 8.0,
                height: 225.9 / 8.0,
                angle_deg: 0.0
            }
        );
        let names: Vec<&str> = f.files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(&names[..2], [CLICK_INFO, ANALYZED_CLICK_INFO]);
    }

    /// Which file wins when both hold a field: acquisition facts from ClickInfo.txt, labels
    /// from AnalyzedClickInfo.txt; a section only one file has comes from it.
    #[test]
    fn merge_takes_acquisition_from_clickinfo_and_labels_from_analysis() {
        let acq = ClickInfo::parse(
            "*** User Label Name Set:\tx\r\nAnimal Number:\t1, 2\r\nView:\tDorsal\r\n\
             *** luminescent image:\tl.TIF\r\nBinning Factor:\t8\r\n\
             *** Camera System Info:\r\nCamera ID:\tA\r\n",
            Path::new("ClickInfo.txt"),
        )
        .unwrap();
        let ana = ClickInfo::parse(
            "*** luminescent image:\tl.TIF\r\nBinning Factor:\t4\r\n\
             *** User Label Name Set:\tx\r\nAnimal Number:\t3, 4\r\n\
             *** ROIs:\t1 ROIs for this Click\r\nROI 1:\tShape=Circle\r\n",
            Path::new("AnalyzedClickInfo.txt"),
        )
        .unwrap();
        let m = ClickInfo::merge(Some(acq), Some(ana)).unwrap();
        assert_eq!(m.get(LUMINESCENT, "Binning Factor"), Some("8"));
        assert_eq!(m.file_of(LUMINESCENT), Path::new("ClickInfo.txt"));
        assert_eq!(m.get(USER_LABELS, "Animal Number"), Some("3, 4"));
        assert_eq!(m.find("Animal Number"), Some("3, 4"));
        // The analysis' section replaces the acquisition's as a whole.
        assert_eq!(m.get(USER_LABELS, "View"), None);
        assert_eq!(m.file_of(ROIS), Path::new("AnalyzedClickInfo.txt"));
        assert_eq!(m.get(CAMERA, "Camera ID"), Some("A"));
        assert_eq!(m.section_names(), [USER_LABELS, LUMINESCENT, CAMERA, ROIS]);
    }

    /// AnalyzedClickInfo.txt alone has no camera block: the error names the missing file.
    #[test]
    fn analyzed_alone_without_camera_block_names_the_missing_clickinfo() {
        let dir = real_layout_folder(31);
        std::fs::remove_file(dir.path().join(CLICK_INFO)).unwrap();
        let e = read_err(dir.path());
        assert!(e.contains("ClickInfo.txt: is missing"), "{e}");
        assert!(e.contains("camera block"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
        // ClickInfo.txt alone is enough: everything but the ROIs.
        let dir = real_layout_folder(31);
        std::fs::remove_file(dir.path().join(ANALYZED_CLICK_INFO)).unwrap();
        let f = read_click_folder(dir.path()).unwrap();
        assert!(!f.analyzed && f.acquisition.imported_rois.is_empty());
        assert_eq!(f.calibration.coefficient, 7.223e5);
        assert!((f.calibration.dark_adu.as_ref().unwrap()[[0, 0]] - 3.1).abs() < 1e-6);
    }

    /// A ClickInfo.txt cut short in a copy: one error line naming the file and saying so.
    #[test]
    fn truncated_clickinfo_gives_one_clear_error() {
        let dir = real_layout_folder(31);
        let p = dir.path().join(CLICK_INFO);
        let bytes = std::fs::read(&p).unwrap();
        let cut = bytes.windows(9).position(|w| w == b"Coef C-cc").unwrap();
        std::fs::write(&p, &bytes[..cut + 12]).unwrap();
        let e = read_err(dir.path());
        assert!(e.contains("ClickInfo.txt"), "{e}");
        assert!(e.contains("cut short"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
        // Cut before the camera block: same.
        let cut = bytes
            .windows(22)
            .position(|w| w == b"*** Camera System Info")
            .unwrap();
        std::fs::write(&p, &bytes[..cut - 5]).unwrap();
        let e = read_err(dir.path());
        assert!(
            e.contains("ClickInfo.txt") && e.contains("cut short"),
            "{e}"
        );
    }

    #[test]
    fn ccd_map_grammar() {
        let ok = |v: &str| parse_ccd_map(v).unwrap();
        assert_eq!(
            ok("-1,-1,929,1211,1828,1069,-1, 0, 0"),
            CcdMap {
                columns: vec![],
                rows: vec![],
                pixels: vec![(929, 1211), (1828, 1069)],
            }
        );
        assert_eq!(
            ok("12, 0, 1919, 40, 100, 200, -1, 7, 3, 9, -1, -1, 0, 0"),
            CcdMap {
                columns: vec![(12, 0, 1919), (40, 100, 200)],
                rows: vec![(7, 3, 9)],
                pixels: vec![],
            }
        );
        // Nothing bad at all; the substitute value and debug flag may be absent.
        assert_eq!(ok("-1,-1,-1"), CcdMap::default());
        for (bad, says) in [
            ("-1,-1,929,1211", "not closed"),
            ("-1,-1,929", "inside a group"),
            ("-1,-1,929,x,-1,0,0", "not a whole number"),
            ("-1,-1,929,-5,-1,0,0", "negative"),
            ("5,10,2,-1,-1,-1,0,0", "after end"),
            ("pixel 120,455; column 1337", "not a whole number"),
        ] {
            let e = parse_ccd_map(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        // Bad column and row segments mark every binned pixel they touch.
        let map = ok("3,8,23,-1,17,0,15,-1,-1,0,0");
        let mask = binned_bad_pixels((4, 4), 8, &map);
        let marked: Vec<(usize, usize)> = mask
            .indexed_iter()
            .filter(|(_, &b)| b)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(marked, [(1, 0), (2, 0), (2, 1)]);
    }

    /// `--ivis-backgrounds`: the folder's own dark is saturated; the click it names in
    /// `Background Click` is taken from the library, scaled to the exposure.
    #[test]
    fn library_dark_replaces_an_unusable_own_dark() {
        let dir = real_layout_folder(UNUSABLE_DARK_ADU);
        let library = tempfile::tempdir().unwrap();
        let options = ReadOptions {
            backgrounds_dir: Some(library.path()),
        };
        // Not in the library: read, flagged, as without one.
        let f = read_click_folder_with(dir.path(), &options).unwrap();
        assert!(f.calibration.dark_adu.is_none());
        assert!(f.flags.contains(&QualityFlag::DarkNotSubtracted));
        // In the library, taken at 20 s: doubled for the 40 s image.
        let dark = Array2::from_elem((240, 240), 1.5f32);
        write_background_click(
            &library.path().join("BKG20220105025931"),
            &dark,
            8,
            20.0,
            10.0,
        )
        .unwrap();
        let f = read_click_folder_with(dir.path(), &options).unwrap();
        let used = f.calibration.dark_adu.as_ref().unwrap();
        assert!(used.iter().all(|&v| (v - 3.0).abs() < 1e-6));
        assert!(!f.flags.contains(&QualityFlag::DarkNotSubtracted));
        assert!(f
            .files
            .iter()
            .any(|(n, _)| n == "BKG20220105025931/background.TIF"));
        // A library click at another binning is an error naming it.
        write_background_click(
            &library.path().join("BKG20220105025931"),
            &Array2::from_elem((480, 480), 1.5f32),
            4,
            40.0,
            10.0,
        )
        .unwrap();
        let e = read_click_folder_with(dir.path(), &options)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("BKG20220105025931") && e.contains("binning 8"),
            "{e}"
        );
        // The folder's own usable dark always wins over the library.
        let dir = real_layout_folder(31);
        let f = read_click_folder_with(dir.path(), &options).unwrap();
        assert!((f.calibration.dark_adu.as_ref().unwrap()[[0, 0]] - 3.1).abs() < 1e-6);
    }
}
