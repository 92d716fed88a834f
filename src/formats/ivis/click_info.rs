//! ClickInfo text: `ClickInfo.txt` and `AnalyzedClickInfo.txt` as sections of `Key: Value`
//! fields (Latin-1, CRLF), merged into one view of a click folder, and the parsers of the
//! camera block's keys (`Shelf Position D FOV`, `Coef C-ccd at FOV 22.4, f1`,
//! `Shelf Position D FF5 f/1 Coefs`).
//!
//! Owns: the text grammar (sections, fields, comments, the trailing `<TAB># comment`, the
//! doubled colon) and which file wins in a merge. Does not own: what any field means for a
//! measurement (that is `read` and `camera`).

use super::*;

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
pub(super) struct Section {
    name: String,
    value: String,
    fields: Vec<(String, String)>,
    /// The file this section was read from (named in errors about its fields).
    file: PathBuf,
}

/// Sections that analysis in Living Image writes or edits: AnalyzedClickInfo.txt's copy wins
/// over ClickInfo.txt's. Every other section (the image sections, the camera block) describes
/// the acquisition itself, and ClickInfo.txt's copy, written when the image was taken, wins.
pub(super) const ANALYSIS_SECTIONS: [&str; 7] = [
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
pub(super) fn split_field(line: &str) -> Option<(&str, &str)> {
    // Design: prefer ":\t", the real separator, so a key can never be cut at a colon that
    // sits in a value (`Acquisition Time:\t10:32:17`); fall back to the first colon.
    let i = line.find(":\t").or_else(|| line.find(':'))?;
    let rest = &line[i + 1..];
    let rest = rest.find("\t#").map_or(rest, |j| &rest[..j]).trim();
    let value = rest.strip_prefix(':').map_or(rest, str::trim);
    Some((line[..i].trim(), value))
}

pub(super) fn same(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// Latin-1 decoding: every byte is the code point of the same value.
pub(super) fn decode_latin1(bytes: &[u8]) -> String {
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
    pub(super) fn is_truncated(&self, file: &Path) -> bool {
        self.truncated.iter().any(|t| t == file)
    }

    /// The fix for a field that is absent, mentioning truncation when the file looks cut.
    pub(super) fn missing_fix(&self, file: &Path, usual: String) -> String {
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

    pub(super) fn section(&self, name: &str) -> Option<&Section> {
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
    pub(super) fn all_fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.sections
            .iter()
            .flat_map(|s| s.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// A camera-block field: in `*** Camera System Info:` when there, else anywhere.
    pub(super) fn camera(&self, key: &str) -> Option<&str> {
        self.get(CAMERA, key).or_else(|| self.find(key))
    }

    pub(super) fn missing(&self, section: &str, key: &str) -> FormatError {
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

    pub(super) fn number_in(
        &self,
        section: &str,
        key: &str,
        value: &str,
    ) -> Result<f64, FormatError> {
        parse_number(value).ok_or_else(|| {
            FormatError::bad_field(
                self.file_of(section),
                format!("{section} / {key}"),
                format!("is {value:?}, not a number"),
                "write a plain decimal number such as 12.5 or 7.223E+05",
            )
        })
    }

    pub(super) fn number(&self, section: &str, key: &str) -> Result<Option<f64>, FormatError> {
        self.get(section, key)
            .map(|v| self.number_in(section, key, v))
            .transpose()
    }

    pub(super) fn required_number(&self, section: &str, key: &str) -> Result<f64, FormatError> {
        self.number(section, key)?
            .ok_or_else(|| self.missing(section, key))
    }

    pub(super) fn required_positive(
        &self,
        section: &str,
        key: &str,
        unit: &str,
    ) -> Result<f64, FormatError> {
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

    pub(super) fn required_binning(&self, section: &str) -> Result<u32, FormatError> {
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
pub(super) fn parse_number(value: &str) -> Option<f64> {
    let token = value.split_whitespace().next()?;
    token.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// ASCII-case-insensitive `strip_prefix`.
pub(super) fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `Shelf Position D FOV` → `'D'`.
pub(super) fn shelf_fov_key(key: &str) -> Option<char> {
    let rest = strip_prefix_ci(key, "Shelf Position ")?;
    let mut words = rest.split_whitespace();
    let letter = single_letter(words.next()?)?;
    let fov = words.next()?;
    (fov.eq_ignore_ascii_case("FOV") && words.next().is_none()).then_some(letter)
}

/// `Shelf Position D FF5 f/1 Coefs` → `('D', 1.0)`.
pub(super) fn flat_key(key: &str) -> Option<(char, f64)> {
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
pub(super) fn coefficient_key(key: &str) -> Option<(f64, f64)> {
    let rest = strip_prefix_ci(key, "Coef C-ccd at FOV ")?;
    let (fov, f) = rest.split_once(',')?;
    let f = f.trim();
    let f = strip_prefix_ci(f, "f/").or_else(|| strip_prefix_ci(f, "f"))?;
    Some((fov.trim().parse().ok()?, f.trim().parse().ok()?))
}

pub(super) fn single_letter(word: &str) -> Option<char> {
    let mut chars = word.chars();
    let c = chars.next()?;
    (c.is_ascii_alphabetic() && chars.next().is_none()).then(|| c.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;
    use chrono::TimeZone;

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
}
