//! Training and evaluation data for the segmentation model: simulated acquisitions with
//! wide domain randomisation, run through the real processing chain, paired with their
//! truth on the detector's working grid.
//!
//! Owns: the randomised scenes (field of view, binning, exposure, sensor temperature,
//! background gradients, autoluminescence, light leaks, cosmic-ray rates, hot pixels the
//! calibration misses or mis-scales, one to five mice, tumours of chosen signal-to-noise
//! ratio, size, shape and elongation, touching pairs), [`generate_frame`] (one frame as a
//! value, reusable by an evaluation without files) and [`write_training_set`] (the files
//! the Python trainer reads). The model's input and target definitions are
//! `process::model_input`'s; this module only feeds them.
//!
//! Each tumour's flux is chosen to give it a drawn *true SNR*: the signal-to-noise ratio of
//! the best possible linear measurement of its flux (the matched filter:
//! `√(Σ sᵢ² / varᵢ)` over its own expected electrons `sᵢ`, with the frame's expected
//! per-pixel variance: its own and the background's photons, dark charge, read noise).
//! The classical detector's region SNR (aperture photometry with a background model) is
//! always below it.
//!
//! Files (`write_training_set`): `DIR/manifest.json`, and per frame `DIR/frames/NNNNN.input.npy`
//! (f32, the model input), `NNNNN.labels.npy` (u8: 0 background, k for the k-th tumour of
//! the frame's list; the binary target is `labels > 0`) and `NNNNN.json` (the frame's
//! settings and tumours).

use std::f64::consts::PI;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::instrument::{Instrument, ReadoutSpec};
use super::scene::{render_tumour, SceneSpec, SimulatedAcquisition, TrueMouse, TrueTumour, Truth};
use crate::acquisition::{AcquisitionMeta, AcquisitionSettings};
use crate::process::model_input::{model_input, truth_labels, working_block_for};
use crate::process::{quantify, FrameCalibration, FrameGeometry, ProcessingParams, Quantification};

/// Side of the full (unbinned) sensor the frames are cropped from, pixels.
const FULL_SENSOR_PX: usize = 2048;

/// Largest binned frame side simulated (frames at low binning are crops, for speed).
const MAX_FRAME_PX: usize = 1024;

/// Which parameter ranges to draw from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// The training ranges (see [`Ranges::for_profile`]).
    Train,
    /// Held out: ranges beyond training (fainter and brighter tumours, narrower and wider
    /// light, brighter and sharper light leaks, more cosmic rays, warmer sensor).
    Heldout,
}

/// The ranges a profile draws from. Lengths in cm at the object, radiances in
/// photons/s/cm²/sr.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ranges {
    /// True SNR of a tumour (log-uniform).
    pub snr: (f64, f64),
    /// Gaussian sigma of a tumour's light along its major axis (log-uniform), cm.
    pub sigma_cm: (f64, f64),
    /// Minor/major axis ratio (uniform).
    pub axis_ratio: (f64, f64),
    /// Tumours per mouse (inclusive).
    pub tumours_per_mouse: (usize, usize),
    /// Chance that a mouse's first tumour gets a touching partner.
    pub touching_probability: f64,
    /// Peak autoluminescence over a mouse (log-uniform).
    pub autoluminescence: (f64, f64),
    /// Amplitude of a linear gradient across the field (log-uniform).
    pub gradient: (f64, f64),
    /// Peak of a light leak glowing in from one edge (log-uniform).
    pub leak: (f64, f64),
    /// Decay length of the light leak, cm (uniform).
    pub leak_length_cm: (f64, f64),
    /// Exposure (log-uniform), s.
    pub exposure_s: (f64, f64),
    /// Sensor temperature (uniform), °C.
    pub sensor_temp_c: (f64, f64),
    /// Multiplier of the instrument's cosmic-ray rate (uniform).
    pub cosmic_rate_factor: (f64, f64),
    /// Fraction of hot pixels left out of the calibration's bad-pixel map (uniform).
    pub missed_hot_fraction: (f64, f64),
    /// Error of the calibration's sensor temperature for the dark (uniform), °C: hot
    /// pixels' dark charge is over- or under-subtracted.
    pub dark_temp_error_c: (f64, f64),
}

impl Ranges {
    pub fn for_profile(profile: Profile) -> Ranges {
        match profile {
            Profile::Train => Ranges {
                snr: (1.5, 1000.0),
                sigma_cm: (0.07, 0.45),
                axis_ratio: (0.5, 1.0),
                tumours_per_mouse: (0, 3),
                touching_probability: 0.3,
                autoluminescence: (1.0e2, 3.0e4),
                gradient: (1.0e2, 3.0e4),
                leak: (1.0e2, 3.0e4),
                leak_length_cm: (0.5, 4.0),
                exposure_s: (5.0, 300.0),
                sensor_temp_c: (-90.0, -80.0),
                cosmic_rate_factor: (1.0, 8.0),
                missed_hot_fraction: (0.0, 0.3),
                dark_temp_error_c: (-1.5, 1.5),
            },
            Profile::Heldout => Ranges {
                snr: (1.0, 2000.0),
                sigma_cm: (0.05, 0.7),
                axis_ratio: (0.35, 1.0),
                tumours_per_mouse: (0, 4),
                touching_probability: 0.4,
                autoluminescence: (1.0e2, 1.0e5),
                gradient: (1.0e2, 1.0e5),
                leak: (1.0e3, 3.0e5),
                leak_length_cm: (0.3, 4.0),
                exposure_s: (2.0, 600.0),
                sensor_temp_c: (-90.0, -70.0),
                cosmic_rate_factor: (1.0, 15.0),
                missed_hot_fraction: (0.0, 0.5),
                dark_temp_error_c: (-3.0, 3.0),
            },
        }
    }
}

/// Truth about one tumour of a training frame, as written to the frame's JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TumourRecord {
    /// 1-based; the value of this tumour's pixels in the label map.
    pub label: u32,
    pub mouse: usize,
    /// Centre of the light on the working grid, [x, y], pixels (first centre 0.5).
    pub centre_work_px: [f64; 2],
    /// Centre on the full (binned) grid, [x, y], pixels (first centre 0.5).
    pub centre_px: [f64; 2],
    /// Total flux as imaged, photons/s.
    pub total_flux: f64,
    /// True (matched-filter) SNR, see the module header.
    pub snr: f64,
    pub sigma_major_cm: f64,
    pub sigma_minor_cm: f64,
    pub shape: String,
    /// Placed touching another tumour of the frame.
    pub touching: bool,
    /// Working-grid pixels in its label.
    pub label_pixels: usize,
    /// The classical detector (`quantify`, default parameters) found it: one of its
    /// regions covers this tumour's centre pixel and no brighter tumour's ([`match_regions`]).
    pub classical_found: bool,
}

/// The settings and truth of one frame, as written to its JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameInfo {
    pub index: u64,
    pub seed: u64,
    pub profile: Profile,
    pub binning: u32,
    pub block: usize,
    pub fov_cm: f64,
    pub exposure_s: f64,
    pub sensor_temp_c: f64,
    /// Side of a full-grid pixel at the object, cm.
    pub pixel_cm: f64,
    /// Side of a working-grid pixel at the object, cm.
    pub working_pixel_cm: f64,
    /// Working-grid shape.
    pub rows: usize,
    pub cols: usize,
    pub mice: usize,
    pub tumours: Vec<TumourRecord>,
    /// Regions of the classical detector that found no tumour ([`match_regions`]).
    pub classical_false_positives: usize,
}

/// One generated frame: the raw acquisition with its calibration and truth, the chain's
/// result, and the model's input and target.
#[derive(Debug, Clone)]
pub struct TrainingFrame {
    pub info: FrameInfo,
    /// Raw counts, truth, noise-free tumour and background radiance.
    pub sim: SimulatedAcquisition,
    /// The calibration the frame is processed with (ideal, but for the misses drawn).
    pub calibration: FrameCalibration,
    pub geometry: FrameGeometry,
    /// `quantify`'s result with default parameters (the classical detector included).
    pub quantification: Quantification,
    /// Model input on the working grid (`model_input::model_input`).
    pub input: Array2<f32>,
    /// Per-tumour truth on the working grid (`model_input::truth_labels`).
    pub labels: Array2<u32>,
}

/// Why a training set could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TrainingError {
    #[error("cannot write {path}: {source}; check that the folder is writable and has space")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("frame {index} has {count} tumours, more than the 255 a u8 label map can hold")]
    TooManyTumours { index: u64, count: usize },
}

fn log_uniform(rng: &mut ChaCha8Rng, (lo, hi): (f64, f64)) -> f64 {
    rng.random_range(lo.ln()..=hi.ln()).exp()
}

fn uniform(rng: &mut ChaCha8Rng, (lo, hi): (f64, f64)) -> f64 {
    if hi > lo {
        rng.random_range(lo..=hi)
    } else {
        lo
    }
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, weighted: &[(T, f64)]) -> T {
    let total: f64 = weighted.iter().map(|w| w.1).sum();
    let mut u = rng.random::<f64>() * total;
    for &(v, w) in weighted {
        if u < w {
            return v;
        }
        u -= w;
    }
    weighted[weighted.len() - 1].0
}

/// The flux that gives a tumour of unit-flux expected electrons `unit_e` (per pixel, on
/// a background of variance `bg_var_e2`) the matched-filter SNR `snr`.
fn flux_for_snr(unit_e: &[(f32, f32)], snr: f64) -> f64 {
    let snr_at = |f: f64| -> f64 {
        unit_e
            .iter()
            .map(|&(a, v)| {
                let s = f * a as f64;
                s * s / (v as f64 + s.max(0.0))
            })
            .sum::<f64>()
            .sqrt()
    };
    let (mut lo, mut hi) = (0.0f64, 40.0f64); // ln(flux)
    for _ in 0..80 {
        let mid = 0.5 * (lo + hi);
        if snr_at(mid.exp()) < snr {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (0.5 * (lo + hi)).exp()
}

/// Generate frame `index` of the set `(profile, seed)`. Deterministic: the same three
/// values give the same frame, whatever order or thread frames are generated in.
pub fn generate_frame(profile: Profile, seed: u64, index: u64) -> TrainingFrame {
    let ranges = Ranges::for_profile(profile);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    let params = ProcessingParams::default();

    // Optics and read-out: a crop of the sensor with the physical pixel scale of the
    // chosen field of view.
    let fov_full_cm = pick(&mut rng, &[(22.4, 0.55), (12.5, 0.3), (6.5, 0.15)]);
    let binning: u32 = pick(&mut rng, &[(8, 0.35), (4, 0.3), (2, 0.2), (1, 0.15)]);
    let pixel_cm = fov_full_cm * binning as f64 / FULL_SENSOR_PX as f64;
    let block = working_block_for(&params, pixel_cm);
    let full_work = FULL_SENSOR_PX / binning as usize / block;
    let max_work = (MAX_FRAME_PX / block).min(full_work).max(16);
    let work_side = rng.random_range((max_work / 2).max(16).min(max_work)..=max_work.min(256));
    let n = work_side * block;
    let sensor_px = n * binning as usize;
    let fov_cm = pixel_cm * n as f64;
    let exposure_s = log_uniform(&mut rng, ranges.exposure_s);
    let sensor_temp_c = uniform(&mut rng, ranges.sensor_temp_c);
    let f_number = 1.0;

    let reference = Instrument::default();
    let inst = Instrument {
        sensor_px,
        pattern_seed: rng.random(),
        hot_pixel_fraction: log_uniform(&mut rng, (5.0e-5, 1.0e-3)),
        bad_column: rng.random_bool(0.5).then(|| rng.random_range(0..sensor_px)),
        cosmic_rate_per_cm2_s: reference.cosmic_rate_per_cm2_s
            * uniform(&mut rng, ranges.cosmic_rate_factor),
        // The crop keeps the full field's radiometry: C(fov of the crop) = C(full fov).
        coefficient_fov22_f1: reference.coefficient(fov_full_cm, f_number)
            / (22.4 / fov_cm).powi(2),
        ..reference
    };
    let coefficient = inst.coefficient(fov_cm, f_number);
    let gain = inst.sensor.gain_e_per_adu;
    let b2 = (binning as f64).powi(2);
    let vig = inst.vignetting_frame(binning, fov_cm);
    // Expected electrons per binned pixel per unit radiance, on axis.
    let e_per_radiance = exposure_s * b2 / coefficient * gain;

    // Mice side by side.
    let height_cm = fov_cm;
    let max_mice = ((fov_cm / 4.0).floor() as usize).clamp(1, 5);
    let n_mice = rng.random_range(1..=max_mice);
    let spacing = fov_cm / n_mice as f64;
    let mice: Vec<TrueMouse> = (0..n_mice)
        .map(|m| TrueMouse {
            subject_id: format!("M{:03}", 101 + m),
            centre_cm: [
                spacing * (m as f64 + 0.5) + rng.random_range(-0.1..0.1) * spacing,
                height_cm * 0.5 + rng.random_range(-0.1..0.1) * height_cm,
            ],
            half_width_cm: (0.42 * spacing).min(1.5),
            half_length_cm: (0.4 * height_cm).min(4.5),
        })
        .collect();

    // Background: offset, gradient, autoluminescence of each mouse, a leak from one edge.
    let offset = log_uniform(&mut rng, ranges.gradient) * rng.random::<f64>();
    let gradient = log_uniform(&mut rng, ranges.gradient);
    let gradient_angle = rng.random_range(0.0..(2.0 * PI));
    let auto_peak = log_uniform(&mut rng, ranges.autoluminescence);
    let auto_sigma: Vec<(f64, f64)> = mice
        .iter()
        .map(|_| (rng.random_range(1.2..3.0), rng.random_range(2.0..5.0)))
        .collect();
    let leak = rng.random_bool(0.6).then(|| {
        (
            log_uniform(&mut rng, ranges.leak),
            uniform(&mut rng, ranges.leak_length_cm),
            rng.random_range(0..4u8),
        )
    });
    let background_radiance = Array2::from_shape_fn((n, n), |(r, c)| {
        let x = (c as f64 + 0.5) * pixel_cm;
        let y = (r as f64 + 0.5) * pixel_cm;
        let (gx, gy) = (gradient_angle.cos(), gradient_angle.sin());
        let g = ((x / fov_cm - 0.5) * gx + (y / height_cm - 0.5) * gy + 0.75) / 1.5;
        let mut v = offset + gradient * g.max(0.0);
        for (m, &(sx, sy)) in mice.iter().zip(&auto_sigma) {
            let u = (x - m.centre_cm[0]) / sx;
            let w = (y - m.centre_cm[1]) / sy;
            v += auto_peak * (-(u * u + w * w) / 2.0).exp();
        }
        if let Some((amp, len, edge)) = leak {
            let d = match edge {
                0 => x,
                1 => fov_cm - x,
                2 => y,
                _ => height_cm - y,
            };
            v += amp * (-d / len).exp();
        }
        v as f32
    });

    // Expected variance per binned pixel without tumours, electrons².
    let dark_e = inst.dark_current_at(sensor_temp_c) * exposure_s * b2;
    let read_e2 = inst.sensor.read_noise_e.powi(2);
    let bg_var_e2 = Array2::from_shape_fn((n, n), |p| {
        (background_radiance[p] as f64 * e_per_radiance * vig[p] as f64 + dark_e + read_e2) as f32
    });

    // Tumours on the mice.
    let shapes = ["gaussian", "gaussian", "flat_top", "two_lobed"];
    let mut tumours: Vec<TrueTumour> = Vec::new();
    let mut touching: Vec<bool> = Vec::new();
    let mut snrs: Vec<f64> = Vec::new();
    for (mi, mouse) in mice.iter().enumerate() {
        let count = rng.random_range(ranges.tumours_per_mouse.0..=ranges.tumours_per_mouse.1);
        let first_on_mouse = tumours.len();
        let mut attempts = 0;
        while tumours.len() - first_on_mouse < count && attempts < 100 {
            attempts += 1;
            let sa = log_uniform(&mut rng, ranges.sigma_cm);
            let sb = sa * uniform(&mut rng, ranges.axis_ratio);
            let x = mouse.centre_cm[0] + rng.random_range(-0.7..0.7) * mouse.half_width_cm;
            let y = mouse.centre_cm[1] + rng.random_range(-0.8..0.8) * mouse.half_length_cm;
            let clear = tumours.iter().all(|o| {
                let d = ((o.centre_px[0] * pixel_cm - x).powi(2)
                    + (o.centre_px[1] * pixel_cm - y).powi(2))
                .sqrt();
                d > 3.0 * (o.sigma_major_cm + sa) + 0.2
            });
            let inside = x > 0.0 && y > 0.0 && x < fov_cm && y < height_cm;
            if !clear || !inside {
                continue;
            }
            tumours.push(TrueTumour {
                id: tumours.len() + 1,
                mouse: mi,
                centre_px: [x / pixel_cm, y / pixel_cm],
                total_flux: 0.0,
                peak_radiance: 0.0,
                sigma_major_cm: sa,
                sigma_minor_cm: sb,
                angle_deg: rng.random_range(0.0..180.0),
                shape: shapes[rng.random_range(0..shapes.len())].to_string(),
            });
            touching.push(false);
            snrs.push(log_uniform(&mut rng, ranges.snr));
        }
        if tumours.len() > first_on_mouse && rng.random_bool(ranges.touching_probability) {
            let t = tumours[first_on_mouse].clone();
            let sep_cm = rng.random_range(1.2..3.0) * t.sigma_major_cm.max(0.1);
            let angle = rng.random_range(0.0..(2.0 * PI));
            let x = t.centre_px[0] * pixel_cm + sep_cm * angle.cos();
            let y = t.centre_px[1] * pixel_cm + sep_cm * angle.sin();
            if x > 0.0 && y > 0.0 && x < fov_cm && y < height_cm {
                let sa = t.sigma_major_cm * rng.random_range(0.6..1.4);
                tumours.push(TrueTumour {
                    id: tumours.len() + 1,
                    centre_px: [x / pixel_cm, y / pixel_cm],
                    sigma_major_cm: sa,
                    sigma_minor_cm: sa * uniform(&mut rng, ranges.axis_ratio),
                    angle_deg: rng.random_range(0.0..180.0),
                    shape: shapes[rng.random_range(0..shapes.len())].to_string(),
                    ..t
                });
                touching[first_on_mouse] = true;
                touching.push(true);
                snrs.push(log_uniform(&mut rng, ranges.snr));
            }
        }
    }

    // Render each tumour at the flux that gives it its drawn SNR.
    let area = pixel_cm * pixel_cm;
    let mut tumour_radiance = Array2::<f32>::zeros((n, n));
    let mut own_images: Vec<Array2<f32>> = Vec::with_capacity(tumours.len());
    for (t, &snr) in tumours.iter_mut().zip(&snrs) {
        let mut unit = Array2::<f32>::zeros((n, n));
        render_tumour(t, 1.0, pixel_cm, &mut unit);
        let unit_e: Vec<(f32, f32)> = unit
            .indexed_iter()
            .filter(|(_, &v)| v > 0.0)
            .map(|(p, &v)| {
                (
                    (v as f64 * e_per_radiance * vig[p] as f64) as f32,
                    bg_var_e2[p],
                )
            })
            .collect();
        let flux = flux_for_snr(&unit_e, snr);
        unit.mapv_inplace(|v| (v as f64 * flux) as f32);
        t.peak_radiance = unit.iter().fold(0.0f32, |m, &v| m.max(v)) as f64;
        t.total_flux = 4.0 * PI * unit.iter().map(|&v| v as f64).sum::<f64>() * area;
        tumour_radiance += &unit;
        own_images.push(unit);
    }

    // Read out.
    let mut signal_e = Array2::<f32>::zeros((n, n));
    ndarray::Zip::from(&mut signal_e)
        .and(&tumour_radiance)
        .and(&background_radiance)
        .and(&vig)
        .for_each(|s, &lt, &lb, &ff| {
            *s = ((lt as f64 + lb as f64) * e_per_radiance * ff as f64) as f32;
        });
    let readout = ReadoutSpec {
        binning,
        exposure_s,
        sensor_temp_c,
        cosmic_rays: true,
    };
    let luminescent_adu = inst.read_out(&readout, Some(&signal_e), &mut rng);

    // The calibration, with what real ones get wrong: some hot pixels missing from the
    // defect map, dark charge scaled for a slightly different temperature.
    let dark_temp_error = uniform(&mut rng, ranges.dark_temp_error_c);
    let mut calibration = inst.ideal_calibration(
        binning,
        exposure_s,
        sensor_temp_c + dark_temp_error,
        fov_cm,
        f_number,
    );
    let missed = uniform(&mut rng, ranges.missed_hot_fraction);
    let bad_cols: Vec<usize> = inst
        .bad_column
        .map(|c| c / binning as usize)
        .into_iter()
        .collect();
    for ((_, c), b) in calibration.bad_pixels.indexed_iter_mut() {
        if *b && !bad_cols.contains(&c) && rng.random::<f64>() < missed {
            *b = false;
        }
    }
    let geometry = FrameGeometry {
        exposure_s,
        binning,
        fov_cm,
    };
    let quantification = quantify(&luminescent_adu, &calibration, &geometry, &[], &params)
        .expect("a simulated frame matches its own calibration");

    let input = model_input(
        &quantification.net_radiance,
        &quantification.variance,
        block,
    );
    let labels = truth_labels(&own_images, (n, n), block);
    let (rows, cols) = input.dim();
    let centres: Vec<([f64; 2], f64)> = tumours
        .iter()
        .map(|t| (t.centre_px, t.total_flux))
        .collect();
    let (classical_found, classical_false_positives) =
        match_regions(&quantification.detection_labels, &centres);
    let records: Vec<TumourRecord> = tumours
        .iter()
        .enumerate()
        .map(|(i, t)| TumourRecord {
            label: i as u32 + 1,
            mouse: t.mouse,
            centre_work_px: [t.centre_px[0] / block as f64, t.centre_px[1] / block as f64],
            centre_px: t.centre_px,
            total_flux: t.total_flux,
            snr: snrs[i],
            sigma_major_cm: t.sigma_major_cm,
            sigma_minor_cm: t.sigma_minor_cm,
            shape: t.shape.clone(),
            touching: touching[i],
            label_pixels: labels.iter().filter(|&&l| l == i as u32 + 1).count(),
            classical_found: classical_found[i],
        })
        .collect();
    let info = FrameInfo {
        index,
        seed,
        profile,
        binning,
        block,
        fov_cm,
        exposure_s,
        sensor_temp_c,
        pixel_cm,
        working_pixel_cm: pixel_cm * block as f64,
        rows,
        cols,
        mice: n_mice,
        tumours: records,
        classical_false_positives,
    };

    let spec = SceneSpec {
        seed,
        binning,
        exposure_s,
        f_number,
        fov_cm,
        sensor_temp_c,
        mice: n_mice,
        tumours_per_mouse: ranges.tumours_per_mouse,
        sigma_range_cm: ranges.sigma_cm,
        touching_pair: touching.iter().any(|&t| t),
        autoluminescence_radiance: auto_peak,
        light_leak_radiance: leak.map_or(0.0, |l| l.0),
        cosmic_rays: true,
        photograph: false,
        // The training and held-out sets have no photograph to outline a body's glow with.
        body_glow_radiance: 0.0,
        ..SceneSpec::default()
    };
    let acquired_at = chrono::DateTime::from_timestamp(1_772_442_000 + index as i64 * 60, 0)
        .expect("a valid time");
    let meta = AcquisitionMeta {
        instrument_id: inst.instrument_id.clone(),
        acquired_at,
        settings: AcquisitionSettings {
            exposure_s,
            binning,
            f_number,
            fov_cm,
            sensor_temp_c,
            emission_filter: "open".into(),
            shelf: None,
        },
        study_id: Some(format!("TRAINING-{profile:?}-{seed}")),
        subject_ids: mice.iter().map(|m| m.subject_id.clone()).collect(),
        injection_time: None,
        view: Some("dorsal".into()),
        photograph: None,
    };
    let sim = SimulatedAcquisition {
        meta,
        luminescent_adu,
        photograph_adu: None,
        truth: Truth {
            spec,
            coefficient,
            pixel_area_cm2: area,
            mice,
            tumours,
        },
        tumour_radiance,
        background_radiance,
    };
    TrainingFrame {
        info,
        sim,
        calibration,
        geometry,
        quantification,
        input,
        labels,
    }
}

/// Match detected regions (full grid, 0 or a 1-based region label) with true tumours
/// (centres on the full grid, [x, y] pixels, and total fluxes): a region finds the
/// brightest tumour whose centre pixel it covers; a region that finds none is a false
/// positive (the rule `lumiq eval` uses). Returns (found per tumour, false positives).
pub fn match_regions(
    regions_full: &Array2<u32>,
    tumours: &[([f64; 2], f64)],
) -> (Vec<bool>, usize) {
    let (rows, cols) = regions_full.dim();
    let at: Vec<u32> = tumours
        .iter()
        .map(|&([x, y], _)| {
            let (c, r) = (x.floor(), y.floor());
            if r < 0.0 || c < 0.0 || r as usize >= rows || c as usize >= cols {
                0
            } else {
                regions_full[[r as usize, c as usize]]
            }
        })
        .collect();
    let mut credited: std::collections::BTreeMap<u32, usize> = std::collections::BTreeMap::new();
    for (i, &l) in at.iter().enumerate() {
        if l == 0 {
            continue;
        }
        let e = credited.entry(l).or_insert(i);
        if tumours[i].1 > tumours[*e].1 {
            *e = i;
        }
    }
    let mut found = vec![false; tumours.len()];
    for &i in credited.values() {
        found[i] = true;
    }
    let present: std::collections::BTreeSet<u32> =
        regions_full.iter().copied().filter(|&l| l > 0).collect();
    let false_positives = present.iter().filter(|l| !credited.contains_key(l)).count();
    (found, false_positives)
}

/// A `.npy` (format 1.0) file's bytes for a C-order 2-D array of `descr` (`<f4`, `|u1`).
fn npy_bytes(descr: &str, shape: (usize, usize), data: &[u8]) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': ({}, {}), }}",
        shape.0, shape.1
    );
    // Magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// `.npy` bytes of an f32 array.
pub fn npy_f32(a: &Array2<f32>) -> Vec<u8> {
    let data: Vec<u8> = a.iter().flat_map(|v| v.to_le_bytes()).collect();
    npy_bytes("<f4", a.dim(), &data)
}

/// `.npy` bytes of a u8 array.
pub fn npy_u8(a: &Array2<u8>) -> Vec<u8> {
    let data: Vec<u8> = a.iter().copied().collect();
    npy_bytes("|u1", a.dim(), &data)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TrainingError> {
    let io = |source| TrainingError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::create(path).map_err(io)?;
    f.write_all(bytes).map_err(io)
}

/// What [`write_training_set`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct SetManifest {
    pub generator: String,
    pub profile: Profile,
    pub seed: u64,
    pub frames: u64,
    pub ranges: Ranges,
    pub tumours: usize,
    pub input_definition: String,
}

/// Generate frames `0..frames` of `(profile, seed)` in parallel and write them under
/// `out` (see the module header for the layout).
pub fn write_training_set(
    out: &Path,
    profile: Profile,
    seed: u64,
    frames: u64,
) -> Result<SetManifest, TrainingError> {
    let dir = out.join("frames");
    std::fs::create_dir_all(&dir).map_err(|source| TrainingError::Write {
        path: dir.clone(),
        source,
    })?;
    let done = AtomicUsize::new(0);
    let counts: Vec<usize> = (0..frames)
        .into_par_iter()
        .map(|index| -> Result<usize, TrainingError> {
            let frame = generate_frame(profile, seed, index);
            let count = frame.info.tumours.len();
            if count > 255 {
                return Err(TrainingError::TooManyTumours { index, count });
            }
            let stem = dir.join(format!("{index:05}"));
            let with_ext = |ext: &str| PathBuf::from(format!("{}.{ext}", stem.display()));
            write_file(&with_ext("input.npy"), &npy_f32(&frame.input))?;
            write_file(
                &with_ext("labels.npy"),
                &npy_u8(&frame.labels.mapv(|l| l as u8)),
            )?;
            let json = serde_json::to_vec_pretty(&frame.info).expect("frame info serialises");
            write_file(&with_ext("json"), &json)?;
            let d = done.fetch_add(1, Ordering::Relaxed) + 1;
            if d % 100 == 0 {
                tracing::info!("{d}/{frames} frames");
            }
            Ok(count)
        })
        .collect::<Result<_, _>>()?;
    let manifest = SetManifest {
        generator: format!("lumiq {} simulate-training", env!("CARGO_PKG_VERSION")),
        profile,
        seed,
        frames,
        ranges: Ranges::for_profile(profile),
        tumours: counts.iter().sum(),
        // The contract's file under its old name (now `process/model_input.rs`): the set
        // manifests stay byte-identical to those the shipped model was trained from.
        input_definition: "src/process/segment_input.rs: asinh(z) on the working grid".into(),
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    write_file(&out.join("manifest.json"), &json)?;
    Ok(manifest)
}

#[cfg(test)]
mod tests;
