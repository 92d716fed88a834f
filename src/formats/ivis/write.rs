//! Writing a click folder in Living Image's layout (the simulator, tests and exports use
//! it): the TIFFs, `ClickInfo.txt` with the camera block, `AnalyzedClickInfo.txt` with the
//! labels and ROIs, and background clicks of a lab's library.
//!
//! Owns: the layout written. Does not own: reading it back (`read`).

use super::*;

/// IVIS-style scientific notation, exact (shortest round-trip mantissa): `7.223E+05`.
pub(super) fn ivis_exp(v: f64) -> String {
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

pub(super) fn to_mac_seconds(t: DateTime<Utc>) -> String {
    let ms = (t - mac_epoch()).num_milliseconds();
    if ms % 1000 == 0 {
        format!("{}", ms / 1000)
    } else {
        format!("{:.3}", ms as f64 / 1000.0)
    }
}

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
pub(super) struct Text {
    pub(super) lines: Vec<String>,
}

impl Text {
    /// A line written exactly as given (real files have lines the field form cannot make).
    pub(super) fn raw(&mut self, line: &str) {
        self.lines.push(line.to_string());
    }

    pub(super) fn comment(&mut self, text: &str) {
        self.lines.push(format!("# {text}"));
    }

    pub(super) fn section(&mut self, name: &str, value: &str) {
        self.lines.push(if value.is_empty() {
            format!("*** {name}:")
        } else {
            format!("*** {name}:\t{}", one_line(value))
        });
    }

    pub(super) fn field(&mut self, key: &str, value: impl Display) {
        self.lines
            .push(format!("{key}:\t{}", one_line(&value.to_string())));
    }

    pub(super) fn to_latin1(&self, path: &Path) -> Result<Vec<u8>, FormatError> {
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
pub(super) fn one_line(value: &str) -> String {
    value.replace(['\r', '\n'], " ")
}

/// `frame × multiplier`, rounded, as u16; out-of-range values are an error naming the file.
pub(super) fn to_stored_u16(
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

pub(super) fn write_text(path: &Path, bytes: &[u8]) -> Result<(), FormatError> {
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
