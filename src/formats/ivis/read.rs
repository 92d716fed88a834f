//! Reading a click folder: the two text files merged, the frames as stored, the dark (the
//! folder's own, or the lab's background library's), the labels, the ROIs, and the
//! [`RawAcquisition`] plus [`FrameCalibration`] they make, with the quality flags for what is
//! missing or assumed.
//!
//! Owns: which file and field each part of the measurement comes from, and the errors that
//! name them. Does not own: the text grammar (`click_info`) nor the camera block's numbers
//! (`camera`).

use super::*;

/// The image file a section names (its `***` line value), or `default`.
pub(super) fn image_path(dir: &Path, info: &ClickInfo, section: &str, default: &str) -> PathBuf {
    let named = info.section_value(section).unwrap_or("").trim();
    locate(dir, if named.is_empty() { default } else { named })
}

pub(super) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

pub(super) fn read_frame(
    path: &Path,
    files: &mut Vec<(String, String)>,
) -> Result<Array2<u16>, FormatError> {
    let frame = read_u16(path)?;
    files.push((file_name(path), sha256_file(path)?));
    Ok(frame)
}

pub(super) fn check_shape(
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
pub(super) fn data_multiplier(info: &ClickInfo, section: &str) -> Result<f64, FormatError> {
    info.required_positive(section, "Data Multiplier", "(stored value ÷ true ADU)")
}

/// A dark frame Living Image could not make: more than half its pixels at 65534 or 65535
/// (this includes "every pixel 65534").
pub(super) fn dark_is_unusable(raw: &Array2<u16>) -> bool {
    let at_ceiling = raw.iter().filter(|&&v| v >= UNUSABLE_DARK_ADU).count();
    2 * at_ceiling > raw.len()
}

pub(super) fn divided(raw: &Array2<u16>, multiplier: f64) -> Array2<f32> {
    raw.mapv(|v| (f64::from(v) / multiplier) as f32)
}

pub(super) fn mac_epoch() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(1904, 1, 1)
        .expect("valid date")
        .and_hms_opt(0, 0, 0)
        .expect("valid time")
        .and_utc()
}

/// `Acquisition Seconds` (seconds since 1904-01-01 00:00:00, taken as UTC), to the ms.
pub(super) fn from_mac_seconds(seconds: f64) -> Option<DateTime<Utc>> {
    let ms = (seconds * 1000.0).round();
    if ms.is_nan() || ms.abs() >= 1e15 {
        return None;
    }
    mac_epoch().checked_add_signed(TimeDelta::try_milliseconds(ms as i64)?)
}

/// Start of the exposure: `Acquisition Seconds`, else `Acquisition Date` + `Acquisition
/// Time` read as UTC (with a warning: Living Image writes them in local time).
pub(super) fn acquisition_time(info: &ClickInfo) -> Result<DateTime<Utc>, FormatError> {
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
pub(super) fn parse_injection_time(
    text: &str,
    acquired_at: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
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
pub(super) fn topic_safe(id: &str) -> String {
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

pub(super) fn non_empty(v: Option<&str>) -> Option<String> {
    v.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// `*** ROIs:` lines → regions in the luminescent grid. Living Image stores them in unbinned
/// continuous pixel coordinates (first pixel's top-left corner at 0, x right, y down), with
/// full widths and heights and `Angle` in degrees; dividing by the binning gives the binned
/// grid of [`crate::process::roi`]. Only measurement ROIs of a supported shape are imported.
pub(super) fn read_rois(info: &ClickInfo, binning: u32) -> Result<Vec<Roi>, FormatError> {
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
pub(super) struct ClickText {
    /// ClickInfo.txt and AnalyzedClickInfo.txt merged ([`ClickInfo::merge`]).
    info: ClickInfo,
    /// (name, sha256) of each file read.
    files: Vec<(String, String)>,
    /// Whether AnalyzedClickInfo.txt was among them.
    analyzed: bool,
}

/// Read a click folder's text; an error names the folder when neither file is there.
pub(super) fn read_info(dir: &Path) -> Result<ClickText, FormatError> {
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
pub(super) fn library_dark(
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
        settings: AcquisitionSettings {
            exposure_s,
            binning,
            f_number,
            fov_cm,
            sensor_temp_c,
            emission_filter,
            shelf: Some(shelf.to_string()),
        },
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
