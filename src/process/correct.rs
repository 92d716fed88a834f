//! Instrument-signature removal: raw counts → radiance, with a per-pixel variance model.
//!
//! `L = C · (S − B − D) / (t · b²) / FF` (see DESIGN.md). Owns: the conversion, the noise
//! model (Poisson from electrons, read noise, master noise), saturation flags, bad-pixel
//! repair, and the radial flat-field model IVIS folders carry. Does not own selecting the
//! masters (the calibration-set reader does) nor cosmic rays (see `cosmic`).

use ndarray::Array2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::filters::window_median;
use super::{FrameCalibration, FrameGeometry};

/// Radial flat field `ff(r) = k0 + k1·r + k2·r² + k3·r³ + k4·r⁴`: the relative sensitivity
/// at distance `r` (cm, at the object plane) from the optical axis, which sits `(x0_cm,
/// y0_cm)` away from the image centre with **x to the right and y up** (toward row 0), as
/// Living Image's `FF5` coefficients are written: on a real IVIS click folder this reading
/// brings the bright ROIs' total flux 2–4 % closer to Living Image's own values than y down.
/// `ff(0) ≈ 1` and it usually falls toward the edges (vignetting); radiance is divided by it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RadialFlat {
    pub k: [f64; 5],
    pub x0_cm: f64,
    pub y0_cm: f64,
}

impl RadialFlat {
    pub fn at_radius(&self, r_cm: f64) -> f64 {
        self.k.iter().rev().fold(0.0, |acc, &k| acc * r_cm + k)
    }

    /// The relative sensitivity at a point given in cm from the image's top-left corner
    /// (`y_cm` grows downward, with the rows; the axis offset `y0_cm` grows upward).
    pub fn at(&self, x_cm: f64, y_cm: f64, width_cm: f64, height_cm: f64) -> f64 {
        let dx = x_cm - (width_cm / 2.0 + self.x0_cm);
        let dy = y_cm - (height_cm / 2.0 - self.y0_cm);
        self.at_radius((dx * dx + dy * dy).sqrt())
    }

    /// Evaluate at every pixel centre of a `rows × cols` frame of square pixels.
    pub fn to_frame(&self, rows: usize, cols: usize, pixel_size_cm: f64) -> Array2<f32> {
        let w = cols as f64 * pixel_size_cm;
        let h = rows as f64 * pixel_size_cm;
        Array2::from_shape_fn((rows, cols), |(r, c)| {
            self.at(
                (c as f64 + 0.5) * pixel_size_cm,
                (r as f64 + 0.5) * pixel_size_cm,
                w,
                h,
            ) as f32
        })
    }
}

/// A frame after bias, dark and flat correction, in radiance units.
#[derive(Debug, Clone)]
pub struct CorrectedFrame {
    /// Radiance, photons/s/cm²/sr (gross: background still in).
    pub radiance: Array2<f32>,
    /// Shot-noise variance (signal + dark electrons), radiance².
    pub var_poisson: Array2<f32>,
    /// Read-noise and master-frame variance, radiance².
    pub var_read: Array2<f32>,
    /// Raw value at or above the sensor's saturation level.
    pub saturated: Array2<bool>,
    /// Radiance per ADU at each pixel: `C / (t·b²·FF)`.
    pub radiance_per_adu: Array2<f32>,
}

/// Why a frame cannot be corrected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CorrectionError {
    #[error("{what} is {found_rows}x{found_cols} but the frame is {rows}x{cols}: use a calibration made at the frame's binning and size")]
    ShapeMismatch {
        what: &'static str,
        rows: usize,
        cols: usize,
        found_rows: usize,
        found_cols: usize,
    },
    #[error("flat field has {count} pixels that are zero, negative or not a number (first at row {row}, column {col}): rebuild the flat with `lumiq calibrate flat`")]
    BadFlat {
        count: usize,
        row: usize,
        col: usize,
    },
    #[error("exposure {exposure_s} s is not positive: the acquisition metadata is wrong")]
    BadExposure { exposure_s: f64 },
}

fn check_shape<T>(
    what: &'static str,
    a: &Array2<T>,
    rows: usize,
    cols: usize,
) -> Result<(), CorrectionError> {
    let (fr, fc) = a.dim();
    if (fr, fc) != (rows, cols) {
        return Err(CorrectionError::ShapeMismatch {
            what,
            rows,
            cols,
            found_rows: fr,
            found_cols: fc,
        });
    }
    Ok(())
}

/// Check that every calibration array fits the frame and the flat is usable.
pub fn validate(
    raw_dim: (usize, usize),
    cal: &FrameCalibration,
    geom: &FrameGeometry,
) -> Result<(), CorrectionError> {
    let (rows, cols) = raw_dim;
    check_shape("master bias", &cal.bias_adu, rows, cols)?;
    if let Some(d) = &cal.dark_adu {
        check_shape("dark frame", d, rows, cols)?;
    }
    check_shape("flat field", &cal.flat, rows, cols)?;
    check_shape("bad-pixel map", &cal.bad_pixels, rows, cols)?;
    if geom.exposure_s.is_nan() || geom.exposure_s <= 0.0 {
        return Err(CorrectionError::BadExposure {
            exposure_s: geom.exposure_s,
        });
    }
    let mut bad = cal
        .flat
        .indexed_iter()
        .filter(|(_, v)| !(v.is_finite() && **v > 0.0));
    if let Some(((row, col), _)) = bad.next() {
        return Err(CorrectionError::BadFlat {
            count: 1 + bad.count(),
            row,
            col,
        });
    }
    Ok(())
}

/// Convert raw counts to radiance with its variance. The caller has run [`validate`].
pub fn correct(raw: &Array2<u16>, cal: &FrameCalibration, geom: &FrameGeometry) -> CorrectedFrame {
    let dim = raw.dim();
    let mut out = CorrectedFrame {
        radiance: Array2::zeros(dim),
        var_poisson: Array2::zeros(dim),
        var_read: Array2::zeros(dim),
        saturated: Array2::from_elem(dim, false),
        radiance_per_adu: Array2::zeros(dim),
    };
    correct_into(raw, cal, geom, &mut out);
    out
}

/// [`correct`] into a frame whose arrays already have the raw frame's shape (a caller
/// correcting frame after frame reuses one set of buffers).
pub fn correct_into(
    raw: &Array2<u16>,
    cal: &FrameCalibration,
    geom: &FrameGeometry,
    out: &mut CorrectedFrame,
) {
    let gain = cal.sensor.gain_e_per_adu as f32;
    let read_var_adu2 = (cal.sensor.read_noise_e as f32 / gain).powi(2)
        + cal.bias_var_adu2
        + if cal.dark_adu.is_some() {
            cal.dark_var_adu2
        } else {
            0.0
        };
    let saturation = cal.sensor.saturation_adu as f32;
    let base = (cal.coefficient / (geom.exposure_s * (geom.binning as f64).powi(2))) as f32;

    let raw_s = raw.as_standard_layout();
    let bias_s = cal.bias_adu.as_standard_layout();
    let flat_s = cal.flat.as_standard_layout();
    let dark_s = cal.dark_adu.as_ref().map(|d| d.as_standard_layout());
    let raw_v = raw_s.as_slice().expect("standard layout");
    let bias_v = bias_s.as_slice().expect("standard layout");
    let flat_v = flat_s.as_slice().expect("standard layout");
    let dark_v = dark_s
        .as_ref()
        .map(|d| d.as_slice().expect("standard layout"));
    let cols = raw.dim().1.max(1);
    let radiance = out.radiance.as_slice_mut().expect("standard layout");
    let var_poisson = out.var_poisson.as_slice_mut().expect("standard layout");
    let var_read = out.var_read.as_slice_mut().expect("standard layout");
    let saturated = out.saturated.as_slice_mut().expect("standard layout");
    let per_adu = out
        .radiance_per_adu
        .as_slice_mut()
        .expect("standard layout");
    radiance
        .par_chunks_mut(cols)
        .zip(var_poisson.par_chunks_mut(cols))
        .zip(var_read.par_chunks_mut(cols))
        .zip(saturated.par_chunks_mut(cols))
        .zip(per_adu.par_chunks_mut(cols))
        .enumerate()
        .for_each(|(row, ((((l, vp), vr), sat), k_out))| {
            let off = row * cols;
            for i in 0..l.len() {
                let j = off + i;
                let s = raw_v[j] as f32;
                let d = dark_v.map_or(0.0, |d| d[j]);
                let k = base / flat_v[j];
                let above_bias = s - bias_v[j];
                l[i] = k * (above_bias - d);
                vp[i] = k * k * above_bias.max(0.0) / gain;
                vr[i] = k * k * read_var_adu2;
                sat[i] = s >= saturation;
                k_out[i] = k;
            }
        });
}

/// How to replace a pixel that cannot be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// Cubic along a row or column where possible (known defects: their neighbours are
    /// sound, and a bad column must not cut a tumour's peak).
    Interpolate,
    /// Median of the good neighbours (cosmic rays: robust to a neighbour the hit grazed).
    Median,
}

/// Replace every pixel in `mask` in the radiance and both variance maps: by cubic
/// interpolation along the row (or else the column) when two good pixels lie on each side —
/// which keeps a tumour's peak when a bad column crosses it — and otherwise by the median
/// of the good pixels around it, growing the window until some are found. Returns how many
/// pixels were replaced.
///
/// `untrusted` marks every pixel that must not be used as a neighbour (a superset of
/// `mask`: e.g. known defects and cosmic-ray hits together).
pub fn repair_pixels(
    frame: &mut CorrectedFrame,
    mask: &Array2<bool>,
    untrusted: &Array2<bool>,
    method: Repair,
) -> usize {
    let targets: Vec<(usize, usize)> = mask
        .indexed_iter()
        .filter(|(_, &b)| b)
        .map(|(i, _)| i)
        .collect();
    repair_list(frame, &targets, untrusted, method)
}

/// [`repair_pixels`] for a list of pixels.
pub fn repair_list(
    frame: &mut CorrectedFrame,
    targets: &[(usize, usize)],
    untrusted: &Array2<bool>,
    method: Repair,
) -> usize {
    let (rows, cols) = untrusted.dim();
    let mut buf = Vec::with_capacity(49);
    let mut n = 0;
    let good = |r: isize, c: isize| {
        r >= 0
            && c >= 0
            && (r as usize) < rows
            && (c as usize) < cols
            && !untrusted[[r as usize, c as usize]]
    };
    for &(r, c) in targets {
        let (ri, ci) = (r as isize, c as isize);
        let line: Option<[(usize, usize); 4]> = if method == Repair::Median {
            None
        } else if good(ri, ci - 2) && good(ri, ci - 1) && good(ri, ci + 1) && good(ri, ci + 2) {
            Some([(r, c - 2), (r, c - 1), (r, c + 1), (r, c + 2)])
        } else if good(ri - 2, ci) && good(ri - 1, ci) && good(ri + 1, ci) && good(ri + 2, ci) {
            Some([(r - 2, c), (r - 1, c), (r + 1, c), (r + 2, c)])
        } else {
            None
        };
        if let Some(p) = line {
            // Cubic through four equally spaced samples, evaluated at the middle.
            let cubic =
                |a: &Array2<f32>| (-a[p[0]] + 4.0 * a[p[1]] + 4.0 * a[p[2]] - a[p[3]]) / 6.0;
            let near_var = |a: &Array2<f32>| 0.5 * (a[p[1]] + a[p[2]]);
            frame.radiance[[r, c]] = cubic(&frame.radiance);
            // The interpolated value stands in for a pixel never seen: keep one pixel's variance.
            frame.var_poisson[[r, c]] = near_var(&frame.var_poisson);
            frame.var_read[[r, c]] = near_var(&frame.var_read);
            n += 1;
            continue;
        }
        for half in [1usize, 2, 3, 5, 8] {
            let Some(v) = window_median(&frame.radiance, Some(untrusted), r, c, half, &mut buf)
            else {
                continue;
            };
            let vp = window_median(&frame.var_poisson, Some(untrusted), r, c, half, &mut buf)
                .unwrap_or(0.0);
            let vr = window_median(&frame.var_read, Some(untrusted), r, c, half, &mut buf)
                .unwrap_or(0.0);
            frame.radiance[[r, c]] = v;
            frame.var_poisson[[r, c]] = vp;
            frame.var_read[[r, c]] = vr;
            n += 1;
            break;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::SensorFacts;

    fn cal(rows: usize, cols: usize) -> FrameCalibration {
        FrameCalibration {
            bias_adu: Array2::from_elem((rows, cols), 500.0),
            bias_var_adu2: 0.0,
            dark_adu: Some(Array2::from_elem((rows, cols), 20.0)),
            dark_var_adu2: 0.0,
            flat: Array2::from_elem((rows, cols), 0.5),
            bad_pixels: Array2::from_elem((rows, cols), false),
            coefficient: 1.0e6,
            coefficient_rel_uncertainty: 0.0,
            sensor: SensorFacts {
                gain_e_per_adu: 2.0,
                read_noise_e: 4.0,
                saturation_adu: 60000.0,
                pixel_pitch_um: 13.5,
            },
        }
    }

    #[test]
    fn follows_the_design_formula() {
        let raw = Array2::from_elem((4, 4), 1520u16);
        let geom = FrameGeometry {
            exposure_s: 10.0,
            binning: 2,
            fov_cm: 10.0,
        };
        let c = cal(4, 4);
        validate(raw.dim(), &c, &geom).unwrap();
        let f = correct(&raw, &c, &geom);
        // L = C (S - B - D) / (t b^2) / FF = 1e6 * 1000 / 40 / 0.5
        assert!((f.radiance[[1, 1]] - 5.0e7).abs() < 1.0);
        // Poisson variance: (S-B)/g ADU² = 510 → times k² with k = 1e6/40/0.5 = 5e4
        let k = 5.0e4f32;
        assert!((f.var_poisson[[0, 0]] / (k * k) - 510.0).abs() < 0.01);
        assert!((f.var_read[[0, 0]] / (k * k) - 4.0).abs() < 0.01);
    }

    #[test]
    fn flat_with_zero_or_nan_is_refused() {
        let geom = FrameGeometry {
            exposure_s: 1.0,
            binning: 1,
            fov_cm: 10.0,
        };
        let mut c = cal(3, 3);
        c.flat[[1, 2]] = 0.0;
        c.flat[[2, 2]] = f32::NAN;
        let e = validate((3, 3), &c, &geom).unwrap_err();
        assert_eq!(
            e,
            CorrectionError::BadFlat {
                count: 2,
                row: 1,
                col: 2
            }
        );
    }

    #[test]
    fn calibration_of_another_size_is_refused() {
        let geom = FrameGeometry {
            exposure_s: 1.0,
            binning: 1,
            fov_cm: 10.0,
        };
        let e = validate((6, 6), &cal(3, 3), &geom).unwrap_err();
        assert!(e.to_string().contains("binning"));
    }

    proptest::proptest! {
        /// Inverting the forward model: a frame made from a known radiance through any flat,
        /// bias and dark comes back as that radiance (a uniform scene stays uniform).
        #[test]
        fn correction_inverts_the_forward_model(
            radiance in 1.0e3f64..1.0e7,
            exposure_s in 0.5f64..300.0,
            binning in proptest::sample::select(vec![1u32, 2, 4, 8]),
            flat_seed in 0u64..1000,
        ) {
            let (rows, cols) = (6, 7);
            let mut c = cal(rows, cols);
            c.flat = Array2::from_shape_fn((rows, cols), |(r, k)| 0.5 + 0.5 * (((r * 7 + k) as u64 * 2654435761 + flat_seed) % 1000) as f32 / 1000.0);
            let geom = FrameGeometry { exposure_s, binning, fov_cm: 10.0 };
            let b2 = (binning as f64).powi(2);
            let raw = Array2::from_shape_fn((rows, cols), |(r, k)| {
                let signal = radiance * exposure_s * b2 * c.flat[[r, k]] as f64 / c.coefficient;
                (500.0 + 20.0 + signal).round().min(65535.0) as u16
            });
            proptest::prop_assume!(raw.iter().all(|&v| v < 65535));
            let f = correct(&raw, &c, &geom);
            for ((r, k), &l) in f.radiance.indexed_iter() {
                // Rounding the raw count to an integer is the only error: half an ADU.
                let per_adu = c.coefficient / (exposure_s * b2 * c.flat[[r, k]] as f64);
                proptest::prop_assert!((l as f64 - radiance).abs() <= 0.5 * per_adu + 1e-4 * radiance);
            }
        }
    }

    #[test]
    fn radial_flat_darkens_edges() {
        let f = RadialFlat {
            k: [1.0, 0.0, -0.002, 0.0, 0.0],
            x0_cm: 0.0,
            y0_cm: 0.0,
        };
        let m = f.to_frame(64, 64, 0.35);
        assert!(m[[32, 32]] > m[[0, 0]]);
        assert!((m[[31, 31]] - 1.0).abs() < 0.01);
    }

    /// Living Image's FF5 offset: x0 to the right, y0 **up** (toward row 0). An axis moved
    /// up and to the right makes the top-right corner the brightest and the bottom-left the
    /// dimmest, and the peak sits above the centre row.
    #[test]
    fn flat_axis_offset_y0_points_up_the_image() {
        let f = RadialFlat {
            k: [1.0, 0.0, -0.002, 0.0, 0.0],
            x0_cm: 2.0,
            y0_cm: 3.0,
        };
        let (n, px) = (64, 0.35);
        let m = f.to_frame(n, n, px);
        let (top_right, bottom_left) = (m[[0, n - 1]], m[[n - 1, 0]]);
        assert!(top_right > m[[0, 0]] && top_right > m[[n - 1, n - 1]]);
        assert!(bottom_left < m[[0, 0]] && bottom_left < m[[n - 1, n - 1]]);
        let ((peak_r, peak_c), _) = m.indexed_iter().max_by(|a, b| a.1.total_cmp(b.1)).unwrap();
        // Centre (32, 32) px; the axis is 3 cm (≈ 8.6 px) up and 2 cm (≈ 5.7 px) right.
        assert_eq!((peak_r, peak_c), (23, 37));
    }

    #[test]
    fn repaired_pixel_takes_neighbour_median() {
        let raw =
            Array2::from_shape_fn((5, 5), |(r, c)| if (r, c) == (2, 2) { 60000 } else { 1520 });
        let geom = FrameGeometry {
            exposure_s: 10.0,
            binning: 2,
            fov_cm: 10.0,
        };
        let c = cal(5, 5);
        let mut f = correct(&raw, &c, &geom);
        let mut m = Array2::from_elem((5, 5), false);
        m[[2, 2]] = true;
        assert_eq!(repair_pixels(&mut f, &m, &m, Repair::Median), 1);
        assert!((f.radiance[[2, 2]] - 5.0e7).abs() < 1.0);
    }
}
