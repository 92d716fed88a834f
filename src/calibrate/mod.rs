//! Building a calibration set from raw calibration frames (`lumiq calibrate`).
//!
//! Owns the edge of calibration: reading lumiq acquisition folders of kind bias, dark and
//! flat, running the steps below, the progress bar, and writing the set. The parts:
//! `grouping` (pure: which frames make which master), `master` (pure: one `build_master`
//! for bias, dark and flat), `defects` (pure: the bad-pixel maps) and `writer` (merging
//! into an existing index, writing the set). The arithmetic —
//! combining, noise, bad pixels, flat normalisation, photon transfer — is
//! [`crate::process::combine`]; the file layout and the selection rules are
//! [`crate::formats::calibration_set`] (and `docs/calibration-set.md`). The simulated
//! instrument's raw calibration frames are [`crate::simulate::calibration_frames`]
//! (re-exported here).
//!
//! What [`build_set`] does, in order:
//! 1. Reads every input's `acquisition.json`; each must be of kind bias, dark or flat and
//!    come from `CalibrateOptions::instrument_id`.
//! 2. Groups: bias by binning; darks by binning, exposure (to 1 ms) and temperature (a
//!    group holds darks within 1 °C of its coldest); flats by binning, fov (to 0.01 cm),
//!    filter (case-insensitive) and f-number.
//! 3. Master bias = sigma-clipped median of the raw biases. Master dark = sigma-clipped
//!    median of (raw dark − master bias of its binning): dark charge in ADU for the group's
//!    exposure. Master flat = sigma-clipped median of (raw flat − bias − dark scaled to the
//!    flat's exposure), normalised to 1.0 on the optical axis. The bias (and the flats'
//!    dark) come from this run or, failing that, from the set already in `out`.
//! 4. Photon transfer (gain, read noise) from the first two raw flats of a flat group and
//!    the first two raw biases of the same binning, at every binning that has both; the
//!    set's values are the pixel-weighted means over binnings.
//! 5. Bad pixels per binning from the longest dark's dark current and every flat of that
//!    binning. At binning 1 they are unbinned coordinates (`[bad_pixels] pixels/columns`).
//!    At a binning b > 1 the position of a defect inside its b×b block is unknown, and
//!    expanding it to the whole block would flag good pixels once the map is used at a
//!    finer binning; so they are written in that binning's own grid
//!    (`[[bad_pixels.binned]] binning = b`), used for frames at b and at multiples of b,
//!    and never for finer binnings. A run with only darks (or only flats) at a binning
//!    keeps the existing set's defects there and adds its own.
//! 6. Writes the masters and the index (write to a temporary file, then rename), and loads
//!    the result with [`crate::formats::calibration_set::CalibrationSet::load`] as a final
//!    check.

mod defects;
mod error;
mod grouping;
mod master;
mod writer;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array2;

use crate::errors::FileError;
use crate::formats::acquisition_folder::{self, AcquisitionFile, FrameKind, METADATA_FILE};
use crate::formats::calibration_set::{
    BiasEntry, CoefficientEntry, DarkEntry, DarkRules, FlatEntry, INDEX_FILE,
};
use crate::formats::tiff_io::{read_f32, write_f32};
use crate::process::combine::{photon_transfer, BadPixelCriteria, PhotonTransfer};

use defects::bad_pixel_maps;
pub use error::CalibrateError;
use grouping::Input;
pub use grouping::DARK_GROUP_TEMPERATURE_SPAN_C;
use master::{build_master, finish_flat, nearest_dark, DarkMaster, Remove};
use writer::NewEntries;

/// Settings of [`build_set`].
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrateOptions {
    /// Id of the set (recorded in every measurement calibrated with it).
    pub id: String,
    /// Instrument the frames come from; every input must carry this id.
    pub instrument_id: String,
    /// Absolute coefficients to record (replacing entries of the same fov and f-number).
    pub coefficients: Vec<CoefficientEntry>,
    /// Raw level at or above which a pixel is saturated, ADU.
    pub saturation_adu: f64,
    /// Unbinned pixel pitch, µm.
    pub pixel_pitch_um: f64,
    /// Clip level of the per-pixel sigma-clipped median, in robust sigmas (3 is usual).
    pub clip_sigma: f64,
    /// Gain to record when photon transfer is impossible (needs two flats and two biases
    /// of one binning) and the existing set has none. A measured gain always wins.
    pub gain_e_per_adu: Option<f64>,
    /// Read noise to record in the same case, electrons.
    pub read_noise_e: Option<f64>,
    /// Rules written to `[dark_rules]`.
    pub dark_rules: DarkRules,
    pub bad_pixels: BadPixelCriteria,
    /// `created_at` of the index; `None` = now. Set it for byte-reproducible sets.
    pub created_at: Option<DateTime<Utc>>,
    /// The sensor's cooling setpoint the run's darks were taken at, °C: recorded as each
    /// new `[[dark]]`'s `setpoint_c` (`None`: not recorded).
    pub dark_setpoint_c: Option<f64>,
}

impl CalibrateOptions {
    /// Options with the usual defaults: 3σ clipping, saturation 65 000 ADU, 13.5 µm
    /// pixels, default dark rules and bad-pixel criteria, no coefficients.
    pub fn new(id: impl Into<String>, instrument_id: impl Into<String>) -> Self {
        CalibrateOptions {
            id: id.into(),
            instrument_id: instrument_id.into(),
            coefficients: Vec::new(),
            saturation_adu: 65000.0,
            pixel_pitch_um: 13.5,
            clip_sigma: 3.0,
            gain_e_per_adu: None,
            read_noise_e: None,
            dark_rules: DarkRules::default(),
            bad_pixels: BadPixelCriteria::default(),
            created_at: None,
            dark_setpoint_c: None,
        }
    }
}

/// One master written by [`build_set`].
#[derive(Debug, Clone, PartialEq)]
pub struct MasterSummary {
    /// "bias", "dark" or "flat".
    pub kind: &'static str,
    /// File name inside the set.
    pub file: String,
    pub binning: u32,
    pub frames_combined: usize,
    /// One-sigma noise of the master per pixel, ADU (bias and dark); 0 for flats.
    pub noise_adu: f64,
    /// Human-readable settings, e.g. "60 s at -90.0 °C".
    pub settings: String,
}

/// Bad pixels found at one binning.
#[derive(Debug, Clone, PartialEq)]
pub struct BadPixelSummary {
    pub binning: u32,
    /// Bad pixels outside the bad columns.
    pub pixels: usize,
    /// Bad columns, in that binning's grid.
    pub columns: Vec<u32>,
}

/// What [`build_set`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationSummary {
    pub dir: PathBuf,
    pub index_path: PathBuf,
    pub masters: Vec<MasterSummary>,
    /// Photon-transfer measurements, by binning.
    pub photon_transfer: Vec<(u32, PhotonTransfer)>,
    /// Gain and read noise recorded in the set.
    pub gain_e_per_adu: f64,
    pub read_noise_e: f64,
    pub bad_pixels: Vec<BadPixelSummary>,
    /// Things a person should know (e.g. flats not dark-subtracted).
    pub warnings: Vec<String>,
}

fn read_metadata(dir: &Path) -> Result<AcquisitionFile, CalibrateError> {
    let p = dir.join(METADATA_FILE);
    let text = std::fs::read_to_string(&p).map_err(FileError::at(
        &p,
        "cannot read; pass lumiq acquisition folders of kind bias, dark or flat",
    ))?;
    serde_json::from_str(&text).map_err(|error| CalibrateError::Metadata { path: p, error })
}

/// Inputs as acquisition folders: a folder without `acquisition.json` whose
/// subfolders have one stands for those subfolders (sorted by name).
fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, CalibrateError> {
    let mut out = Vec::with_capacity(inputs.len());
    for dir in inputs {
        if acquisition_folder::is_acquisition_folder(dir) || !dir.is_dir() {
            out.push(dir.clone());
            continue;
        }
        let mut subs: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(FileError::at(dir, "cannot list; check permissions"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| acquisition_folder::is_acquisition_folder(p))
            .collect();
        if subs.is_empty() {
            return Err(CalibrateError::NotAcquisitionFolders(dir.clone()));
        }
        subs.sort();
        out.extend(subs);
    }
    Ok(out)
}

/// Read the frames of a group as f32, checking they share one shape.
fn read_group(inputs: &[Input], bar: &ProgressBar) -> Result<Vec<Array2<f32>>, CalibrateError> {
    let mut frames: Vec<Array2<f32>> = Vec::with_capacity(inputs.len());
    for inp in inputs {
        let folder = acquisition_folder::read(&inp.dir)?;
        let f = folder.acquisition.luminescent_adu.mapv(f32::from);
        if let Some(first) = frames.first() {
            if first.dim() != f.dim() {
                return Err(CalibrateError::FrameSize {
                    path: inp.dir.clone(),
                    size: (f.ncols(), f.nrows()),
                    first: inputs[0].dir.clone(),
                    first_size: (first.ncols(), first.nrows()),
                });
            }
        }
        frames.push(f);
        bar.inc(1);
    }
    Ok(frames)
}

/// A number for a file name: up to 3 decimals, trailing zeros dropped.
fn num(x: f64) -> String {
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

fn safe_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `x` rounded to `digits` decimals (keeps the index readable; far below every error).
fn round_to(x: f64, digits: i32) -> f64 {
    let k = 10f64.powi(digits);
    (x * k).round() / k
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    s / n.max(1) as f64
}

/// The median of some times (of an even count, the midpoint of the middle two), to the
/// second. `UNIX_EPOCH` when there are none.
fn median_time(times: impl Iterator<Item = DateTime<Utc>>) -> DateTime<Utc> {
    let mut v: Vec<DateTime<Utc>> = times.collect();
    v.sort();
    let n = v.len();
    let t = match n {
        0 => DateTime::<Utc>::UNIX_EPOCH,
        _ if n % 2 == 1 => v[n / 2],
        _ => v[n / 2 - 1] + (v[n / 2] - v[n / 2 - 1]) / 2,
    };
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// Every input's metadata, checked: calibration frames of `instrument_id` only.
fn read_inputs(dirs: &[PathBuf], instrument_id: &str) -> Result<Vec<Input>, CalibrateError> {
    let mut all = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let file = read_metadata(dir)?;
        if file.kind == FrameKind::Luminescent {
            return Err(CalibrateError::Luminescent(dir.clone()));
        }
        if file.instrument_id != instrument_id {
            return Err(CalibrateError::FramesOfAnotherInstrument {
                path: dir.clone(),
                found: file.instrument_id,
                expected: instrument_id.to_string(),
            });
        }
        all.push(Input {
            dir: dir.clone(),
            file,
        });
    }
    Ok(all)
}

fn progress_bar(len: u64) -> ProgressBar {
    if std::io::stderr().is_terminal() {
        let b = ProgressBar::new(len);
        b.set_style(
            ProgressStyle::with_template("{msg:>32} [{bar:30}] {pos}/{len} {elapsed}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        b
    } else {
        ProgressBar::hidden()
    }
}

/// Build (or extend) the calibration set in `out` from lumiq acquisition folders of kind
/// bias, dark and flat (or folders holding such folders, one level down). See the module
/// docs for the steps and `docs/calibration-set.md` for the result. An index already in
/// `out` is merged: entries of the same binning (bias), binning + exposure + temperature
/// within 0.5 °C (dark), binning + fov + filter + f-number (flat), binning (binned bad
/// pixels) and fov + f-number (coefficients) are replaced, others kept; its instrument
/// must be `opts.instrument_id`. This signature is what the CLI calls; keep it stable.
pub fn build_set(
    inputs: &[PathBuf],
    out: &Path,
    opts: &CalibrateOptions,
) -> Result<CalibrationSummary, CalibrateError> {
    if inputs.is_empty() {
        return Err(CalibrateError::NoInputs);
    }
    if opts.clip_sigma.is_nan() || opts.clip_sigma <= 0.0 {
        return Err(CalibrateError::ClipSigma(opts.clip_sigma));
    }

    // 1. Metadata. 2. Groups.
    let inputs = expand_inputs(inputs)?;
    let groups = grouping::group(read_inputs(&inputs, &opts.instrument_id)?);

    // 3. Existing index.
    std::fs::create_dir_all(out).map_err(FileError::at(
        out,
        "cannot create the set's folder; check permissions",
    ))?;
    let index_path = out.join(INDEX_FILE);
    let existing = writer::read_existing(&index_path, &opts.instrument_id)?;

    let bar = progress_bar(inputs.len() as u64 + groups.masters() as u64);
    let mut masters = Vec::new();
    let mut warnings = Vec::new();
    let mut new = NewEntries::default();
    let mut bias_masters: BTreeMap<u32, Array2<f32>> = BTreeMap::new();
    let mut raw_bias_pairs: BTreeMap<u32, (Array2<f32>, Array2<f32>)> = BTreeMap::new();
    let mut ptc: Vec<(u32, PhotonTransfer)> = Vec::new();
    let mut master_dims: Vec<(u32, usize, usize)> = Vec::new();

    // Bias.
    for (&b, group) in &groups.bias {
        bar.set_message(format!("bias, binning {b}"));
        let mut frames = read_group(group, &bar)?;
        let m = build_master(
            FrameKind::Bias,
            group,
            &mut frames,
            Remove::default(),
            opts.clip_sigma,
        )?;
        let noise = m.noise_adu.unwrap_or(0.0);
        let file = format!("bias_b{b}.tiff");
        write_f32(&out.join(&file), &m.data)?;
        bar.inc(1);
        if m.frames_combined < 2 {
            warnings.push(format!(
                "bias at binning {b}: one frame only, its noise is unknown (recorded as 0); \
                 use 10 or more"
            ));
        }
        new.bias.push(BiasEntry {
            version: 1,
            binning: b,
            file: file.clone(),
            frames_combined: m.frames_combined as u32,
            noise_adu: round_to(noise, 4),
        });
        masters.push(MasterSummary {
            kind: "bias",
            file,
            binning: b,
            frames_combined: m.frames_combined,
            noise_adu: noise,
            settings: format!("binning {b}"),
        });
        master_dims.push((b, m.data.nrows(), m.data.ncols()));
        let mut it = frames.into_iter();
        if let (Some(b1), Some(b2)) = (it.next(), it.next()) {
            raw_bias_pairs.insert(b, (b1, b2));
        }
        bias_masters.insert(b, m.data);
    }
    let bias_for = |b: u32,
                    bias_masters: &BTreeMap<u32, Array2<f32>>,
                    what: &'static str|
     -> Result<Array2<f32>, CalibrateError> {
        if let Some(m) = bias_masters.get(&b) {
            return Ok(m.clone());
        }
        if let Some(e) = existing
            .as_ref()
            .and_then(|ix| ix.bias.iter().find(|e| e.binning == b))
        {
            return Ok(read_f32(&out.join(&e.file))?);
        }
        Err(CalibrateError::NoBias {
            what,
            binning: b,
            out: out.to_path_buf(),
        })
    };

    // Darks.
    let mut dark_masters: Vec<DarkMaster> = Vec::new();
    for group in &groups.dark {
        let b = group[0].file.binning;
        let exposure = mean(group.iter().map(|i| i.file.exposure_s));
        let temp = mean(group.iter().map(|i| i.file.sensor_temp_c));
        bar.set_message(format!("dark, binning {b}, {} s", num(exposure)));
        let bias = bias_for(b, &bias_masters, "darks")?;
        let mut frames = read_group(group, &bar)?;
        let remove = Remove {
            bias: Some(&bias),
            dark: None,
        };
        let m = build_master(FrameKind::Dark, group, &mut frames, remove, opts.clip_sigma)?;
        let noise = m.noise_adu.unwrap_or(0.0);
        let file = format!("dark_b{b}_{}s_{temp:.1}C.tiff", num(exposure));
        write_f32(&out.join(&file), &m.data)?;
        bar.inc(1);
        new.dark.push(DarkEntry {
            version: 1,
            binning: b,
            exposure_s: exposure,
            sensor_temp_c: (temp * 100.0).round() / 100.0,
            file: file.clone(),
            frames_combined: m.frames_combined as u32,
            noise_adu: round_to(noise, 4),
            acquired_at: Some(median_time(group.iter().map(|i| i.file.acquired_at))),
            setpoint_c: opts.dark_setpoint_c,
        });
        masters.push(MasterSummary {
            kind: "dark",
            file,
            binning: b,
            frames_combined: m.frames_combined,
            noise_adu: noise,
            settings: format!("{} s at {temp:.1} °C", num(exposure)),
        });
        master_dims.push((b, m.data.nrows(), m.data.ncols()));
        dark_masters.push(DarkMaster {
            binning: b,
            exposure_s: exposure,
            sensor_temp_c: temp,
            data: m.data,
        });
    }

    // Flats.
    let mut flat_masters: Vec<(u32, Array2<f32>)> = Vec::new();
    for ((b, _, _, _), group) in &groups.flat {
        let b = *b;
        let g0 = &group[0].file;
        bar.set_message(format!("flat, binning {b}, fov {} cm", g0.fov_cm));
        let bias = bias_for(b, &bias_masters, "flats")?;
        let mut frames = read_group(group, &bar)?;
        if frames[0].dim() == bias.dim() && frames.len() >= 2 {
            if let Some((b1, b2)) = raw_bias_pairs.get(&b) {
                if ptc.iter().all(|(pb, _)| *pb != b) {
                    if let Some(pt) = photon_transfer(
                        &frames[0].view(),
                        &frames[1].view(),
                        &b1.view(),
                        &b2.view(),
                    ) {
                        ptc.push((b, pt));
                    }
                }
            }
        }
        // The dark for the flats: nearest temperature, then nearest exposure, same binning;
        // from this run, else from the existing set.
        let t_flat = mean(group.iter().map(|i| i.file.exposure_s));
        let temp = mean(group.iter().map(|i| i.file.sensor_temp_c));
        let existing_dark;
        let dark: Option<(&Array2<f32>, f64)> =
            match nearest_dark(&dark_masters, b, bias.dim(), temp, t_flat) {
                Some(d) => Some((&d.data, d.exposure_s)),
                None => {
                    let e = existing.as_ref().and_then(|ix| {
                        ix.dark
                            .iter()
                            .filter(|d| d.binning == b)
                            .min_by(|x, y| {
                                (x.sensor_temp_c - temp)
                                    .abs()
                                    .total_cmp(&(y.sensor_temp_c - temp).abs())
                            })
                            .cloned()
                    });
                    match e {
                        Some(e) => {
                            existing_dark = read_f32(&out.join(&e.file))?;
                            Some((&existing_dark, e.exposure_s))
                        }
                        None => None,
                    }
                }
            };
        if dark.is_none() {
            warnings.push(format!(
                "flats at binning {b}: no dark of that binning, so they are not \
                 dark-subtracted (negligible for short flats on a cooled CCD)"
            ));
        }
        let remove = Remove {
            bias: Some(&bias),
            dark,
        };
        let m = build_master(FrameKind::Flat, group, &mut frames, remove, opts.clip_sigma)?;
        let flat = finish_flat(&group[0].dir, &m.data)?;
        if flat.filled > 0 {
            warnings.push(format!(
                "flat at binning {b}: {} pixels with no response were set to their \
                 neighbours' median (they are in the bad-pixel map)",
                flat.filled
            ));
        }
        let file = format!(
            "flat_b{b}_fov{}_f{}_{}.tiff",
            num(g0.fov_cm),
            num(g0.f_number),
            safe_name(g0.emission_filter.trim())
        );
        write_f32(&out.join(&file), &flat.stored)?;
        bar.inc(1);
        new.flat.push(FlatEntry {
            version: 1,
            fov_cm: g0.fov_cm,
            binning: b,
            filter: g0.emission_filter.trim().to_string(),
            f_number: g0.f_number,
            file: file.clone(),
            frames_combined: m.frames_combined as u32,
        });
        masters.push(MasterSummary {
            kind: "flat",
            file,
            binning: b,
            frames_combined: m.frames_combined,
            noise_adu: 0.0,
            settings: format!(
                "fov {} cm, filter {}, f/{}",
                g0.fov_cm, g0.emission_filter, g0.f_number
            ),
        });
        master_dims.push((b, flat.stored.nrows(), flat.stored.ncols()));
        flat_masters.push((b, flat.for_defects));
    }

    // 5. Bad pixels per binning. 4. Sensor facts.
    let existing_bad = existing.as_ref().map(|ix| &ix.bad_pixels);
    new.bad_pixels = bad_pixel_maps(&dark_masters, &flat_masters, existing_bad, &opts.bad_pixels)?;
    let bad_summary = new.bad_pixels.summary.clone();
    let sensor = writer::sensor_section(&master_dims, &ptc, existing.as_ref(), opts)?;
    let (gain, read_noise) = (sensor.gain_e_per_adu, sensor.read_noise_e);

    // 6. Merge, write the index atomically, drop masters no entry names, check the set.
    let created_at = opts.created_at.unwrap_or_else(Utc::now);
    let (ix, replaced) = writer::merge(existing.as_ref(), opts, sensor, created_at, new);
    writer::write_set(out, &ix, replaced)?;
    bar.finish_and_clear();

    Ok(CalibrationSummary {
        dir: out.to_path_buf(),
        index_path,
        masters,
        photon_transfer: ptc,
        gain_e_per_adu: gain,
        read_noise_e: read_noise,
        bad_pixels: bad_summary,
        warnings,
    })
}

#[cfg(test)]
mod tests;
