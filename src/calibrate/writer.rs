//! The set on disk: the existing index read and checked, the run's entries merged into it
//! (pure: [`sensor_section`], [`merge`]), the index written atomically, masters no entry
//! names any more removed, and the result loaded as a final check ([`write_set`]).
//!
//! Merging replaces entries of the same binning (bias), binning + exposure + temperature
//! within 0.5 °C (dark), binning + fov + filter + f-number (flat), binning (binned bad
//! pixels) and fov + f-number (coefficients), and keeps the others.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::defects::BadPixelMaps;
use super::error::CalibrateError;
use super::{round_to, CalibrateOptions};
use crate::errors::FileError;
use crate::formats::calibration_set::{
    BiasEntry, CalibrationIndex, CalibrationSet, CoefficientEntry, DarkEntry, FlatEntry,
    SensorSection, FOV_TOLERANCE_CM, F_NUMBER_TOLERANCE, INDEX_FILE, SCHEMA, SCHEMA_VERSION,
};
use crate::process::combine::PhotonTransfer;

/// The index already in the set's folder, if any; it must be for `instrument_id`.
pub(super) fn read_existing(
    index_path: &Path,
    instrument_id: &str,
) -> Result<Option<CalibrationIndex>, CalibrateError> {
    if !index_path.is_file() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(index_path).map_err(FileError::at(index_path, "cannot read"))?;
    let ix = CalibrationIndex::parse(&text, index_path)?;
    if ix.instrument_id != instrument_id {
        return Err(CalibrateError::SetOfAnotherInstrument {
            index: index_path.to_path_buf(),
            found: ix.instrument_id,
            expected: instrument_id.to_string(),
        });
    }
    Ok(Some(ix))
}

/// The sensor facts of the set: its size (the largest of the masters, `(binning, rows,
/// cols)`, and the existing set), and gain and read noise from photon transfer (the
/// pixel-weighted means over binnings), else as given in `opts`, else the existing set's.
pub(super) fn sensor_section(
    master_dims: &[(u32, usize, usize)],
    ptc: &[(u32, PhotonTransfer)],
    existing: Option<&CalibrationIndex>,
    opts: &CalibrateOptions,
) -> Result<SensorSection, CalibrateError> {
    let mut width = master_dims
        .iter()
        .map(|&(b, _, c)| c as u32 * b)
        .max()
        .unwrap_or(0);
    let mut height = master_dims
        .iter()
        .map(|&(b, r, _)| r as u32 * b)
        .max()
        .unwrap_or(0);
    if let Some(ix) = existing {
        width = width.max(ix.sensor.width_px);
        height = height.max(ix.sensor.height_px);
    }
    let (gain, read_noise, noise_source) = if !ptc.is_empty() {
        let w: f64 = ptc.iter().map(|(_, p)| p.n_pixels as f64).sum();
        let g = ptc
            .iter()
            .map(|(_, p)| p.gain_e_per_adu * p.n_pixels as f64)
            .sum::<f64>()
            / w;
        let r = ptc
            .iter()
            .map(|(_, p)| p.read_noise_e * p.n_pixels as f64)
            .sum::<f64>()
            / w;
        let src = ptc
            .iter()
            .map(|(b, p)| {
                format!(
                    "binning {b}: {:.4} e-/ADU, {:.3} e-",
                    p.gain_e_per_adu, p.read_noise_e
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        (
            round_to(g, 4),
            round_to(r, 3),
            Some(format!("photon transfer ({src})")),
        )
    } else if let (Some(g), Some(r)) = (opts.gain_e_per_adu, opts.read_noise_e) {
        (g, r, Some("given to lumiq calibrate".to_string()))
    } else if let Some(ix) = existing {
        (
            ix.sensor.gain_e_per_adu,
            ix.sensor.read_noise_e,
            ix.sensor.noise_source.clone(),
        )
    } else {
        return Err(CalibrateError::NoGain);
    };
    Ok(SensorSection {
        width_px: width,
        height_px: height,
        pixel_pitch_um: opts.pixel_pitch_um,
        gain_e_per_adu: gain,
        read_noise_e: read_noise,
        saturation_adu: opts.saturation_adu,
        noise_source,
    })
}

/// The entries one run made.
#[derive(Debug, Clone, Default)]
pub(super) struct NewEntries {
    pub bias: Vec<BiasEntry>,
    pub dark: Vec<DarkEntry>,
    pub flat: Vec<FlatEntry>,
    pub bad_pixels: BadPixelMaps,
}

/// The index after this run: `existing` (or a new one) with `new` merged in, `opts`'s
/// id, rules and coefficients, `sensor`, created at `created_at`; entries sorted. Also
/// returns the files of the entries replaced.
pub(super) fn merge(
    existing: Option<&CalibrationIndex>,
    opts: &CalibrateOptions,
    sensor: SensorSection,
    created_at: DateTime<Utc>,
    new: NewEntries,
) -> (CalibrationIndex, Vec<String>) {
    let mut ix = existing.cloned().unwrap_or_else(|| CalibrationIndex {
        schema: SCHEMA.into(),
        schema_version: SCHEMA_VERSION,
        id: opts.id.clone(),
        instrument_id: opts.instrument_id.clone(),
        created_at,
        sensor: sensor.clone(),
        dark_rules: opts.dark_rules,
        bias: vec![],
        dark: vec![],
        flat: vec![],
        bad_pixels: Default::default(),
        coefficient: vec![],
    });
    ix.id = opts.id.clone();
    ix.created_at = created_at;
    ix.dark_rules = opts.dark_rules;
    ix.sensor = sensor;
    let mut replaced_files: Vec<String> = Vec::new();
    // A replaced entry's successor is its next version.
    for mut e in new.bias {
        let mut previous = 0;
        ix.bias.retain(|o| {
            let same = o.binning == e.binning;
            if same {
                replaced_files.push(o.file.clone());
                previous = previous.max(o.version);
            }
            !same
        });
        e.version = previous + 1;
        ix.bias.push(e);
    }
    for mut e in new.dark {
        let mut previous = 0;
        ix.dark.retain(|o| {
            let same = o.binning == e.binning
                && (o.exposure_s - e.exposure_s).abs() <= 1e-3
                && (o.sensor_temp_c - e.sensor_temp_c).abs() <= 0.5;
            if same {
                replaced_files.push(o.file.clone());
                previous = previous.max(o.version);
            }
            !same
        });
        e.version = previous + 1;
        ix.dark.push(e);
    }
    for mut e in new.flat {
        let mut previous = 0;
        ix.flat.retain(|o| {
            let same = o.binning == e.binning
                && (o.fov_cm - e.fov_cm).abs() <= FOV_TOLERANCE_CM
                && (o.f_number - e.f_number).abs() <= F_NUMBER_TOLERANCE
                && o.filter.trim().eq_ignore_ascii_case(e.filter.trim());
            if same {
                replaced_files.push(o.file.clone());
                previous = previous.max(o.version);
            }
            !same
        });
        e.version = previous + 1;
        ix.flat.push(e);
    }
    for e in new.bad_pixels.binned {
        ix.bad_pixels.binned.retain(|o| o.binning != e.binning);
        ix.bad_pixels.binned.push(e);
    }
    if let Some((pixels, columns)) = new.bad_pixels.unbinned {
        ix.bad_pixels.pixels = pixels;
        ix.bad_pixels.columns = columns;
    }
    // A coefficient given again with the same value keeps its version.
    for c in &opts.coefficients {
        let mut version = 1;
        ix.coefficient.retain(|o| {
            let same = (o.fov_cm - c.fov_cm).abs() <= FOV_TOLERANCE_CM
                && (o.f_number - c.f_number).abs() <= F_NUMBER_TOLERANCE;
            if same {
                let unchanged = o.c == c.c && o.rel_uncertainty == c.rel_uncertainty;
                version = version.max(if unchanged { o.version } else { o.version + 1 });
            }
            !same
        });
        ix.coefficient.push(CoefficientEntry { version, ..*c });
    }
    ix.bias.sort_by_key(|e| e.binning);
    ix.dark.sort_by(|a, b| {
        (a.binning, a.exposure_s, a.sensor_temp_c)
            .partial_cmp(&(b.binning, b.exposure_s, b.sensor_temp_c))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    ix.flat.sort_by(|a, b| {
        (a.binning, a.fov_cm, a.f_number, &a.filter)
            .partial_cmp(&(b.binning, b.fov_cm, b.f_number, &b.filter))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    ix.coefficient.sort_by(|a, b| {
        (a.fov_cm, a.f_number)
            .partial_cmp(&(b.fov_cm, b.f_number))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    ix.bad_pixels.binned.sort_by_key(|e| e.binning);
    (ix, replaced_files)
}

/// Check `ix`, write it to `out` atomically (a temporary file, then a rename), remove the
/// `replaced` masters no entry names any more, and load the set as a final check.
pub(super) fn write_set(
    out: &Path,
    ix: &CalibrationIndex,
    replaced: Vec<String>,
) -> Result<(), CalibrateError> {
    let index_path = out.join(INDEX_FILE);
    ix.validate(&index_path)?;
    let tmp = out.join(format!(".{INDEX_FILE}.tmp"));
    std::fs::write(&tmp, ix.to_toml()).map_err(FileError::at(
        &tmp,
        "cannot write; check free space and permissions",
    ))?;
    std::fs::rename(&tmp, &index_path).map_err(FileError::at(&index_path, "cannot replace"))?;
    let still_named: Vec<&str> = ix.files().into_iter().map(|(_, f)| f).collect();
    for f in replaced {
        if !still_named.contains(&f.as_str()) {
            let _ = std::fs::remove_file(out.join(&f));
        }
    }
    CalibrationSet::load(out).map_err(CalibrateError::WrittenSetDoesNotLoad)?;
    Ok(())
}
