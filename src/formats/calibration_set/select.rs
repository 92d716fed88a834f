//! The selection rules that turn a calibration set into one frame's [`FrameCalibration`]:
//! bias, dark (temperature tolerance, exposure ratio, linear scaling), flat, the bad-pixel
//! map binned to the frame's grid and the coefficient, each with the provenance
//! ([`CalibrationItem`]) of what was used. Specified in `docs/calibration-set.md`.

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::{
    exposure_ratio, feq, list, same_filter, CalibrationSet, DarkEntry, FOV_TOLERANCE_CM,
    F_NUMBER_TOLERANCE, INDEX_FILE,
};
use crate::acquisition::AcquisitionMeta;
use crate::formats::FormatError;
use crate::process::FrameCalibration;

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
    /// The entry's version in the set (see `CalibrationIndex`); none for the index itself
    /// and the bad-pixel map.
    pub version: Option<u32>,
}

impl CalibrationSet {
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
            version: None,
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
            version: Some(bias_entry.version),
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
            version: Some(flat_entry.version),
        });

        // Bad pixels.
        let (bad_pixels, bp_detail) = self.bad_pixel_mask(b, rows, cols);
        items.push(CalibrationItem {
            kind: "bad_pixels".into(),
            id: format!("{INDEX_FILE} [bad_pixels]"),
            sha256: self.index_sha256.clone(),
            detail: bp_detail,
            version: None,
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
            version: Some(coef.version),
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
            version: Some(entry.version),
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
