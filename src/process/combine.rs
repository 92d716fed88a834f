//! Master-frame combination and the measurements made on raw calibration frames: the
//! per-pixel sigma-clipped median of a stack, the noise of a master, bad-pixel detection,
//! flat normalisation and the photon-transfer estimates of gain and read noise.
//!
//! Owns: the arithmetic of building a calibration set. Pure: it takes frames as arrays and
//! returns arrays and numbers; reading raw folders, grouping them and writing the set live
//! in [`crate::calibrate`] and [`crate::formats::calibration_set`].
//!
//! Robust scale everywhere is the MAD (`1.4826 · median |x − median|`), not the sample
//! standard deviation: with the 10–20 frames of a calibration stack one outlier inflates the
//! sample deviation so much that it can never be clipped (with n = 9 a single outlier sits
//! at most (n−1)/√n = 2.67 sample sigmas from the mean).

use ndarray::{Array2, ArrayView1, ArrayView2, Axis, Slice, Zip};
use rayon::prelude::*;

use crate::stats::{mad_std, median_in_place, sigma_clipped_stats};

/// Converts a median absolute deviation to a normal distribution's sigma.
const MAD_TO_SIGMA: f32 = 1.4826;

/// At most this many clipping rounds per pixel (the loop stops earlier when nothing moves).
pub const MAX_CLIP_ITERATIONS: usize = 5;

/// Clip level (in sigmas) used for the photon-transfer statistics: high enough that the
/// clipping does not shrink a Gaussian's variance (a 3σ clip shrinks it by 2.7 %, a 5σ clip
/// by 0.002 %), low enough to drop hot pixels and cosmic-ray hits.
pub const PHOTON_TRANSFER_CLIP_SIGMA: f64 = 5.0;

/// Per-pixel sigma-clipped median across a stack of frames of one shape.
///
/// For every pixel the finite values of the stack are sorted; the median and the MAD-based
/// sigma of the kept values are computed, values farther than `clip_sigma` sigmas from the
/// median are dropped, and this repeats (at most [`MAX_CLIP_ITERATIONS`] times) until
/// nothing changes. The result is the median of what is kept. A pixel with no finite value
/// is NaN. Parallel over rows.
///
/// # Panics
/// When `frames` is empty or the frames differ in shape (the caller checks both and
/// reports them against the files).
pub fn combine_sigma_clipped_median(frames: &[ArrayView2<f32>], clip_sigma: f64) -> Array2<f32> {
    assert!(!frames.is_empty(), "combine needs at least one frame");
    let dim = frames[0].dim();
    assert!(
        frames.iter().all(|f| f.dim() == dim),
        "every frame of a stack has one shape"
    );
    let n = frames.len();
    let mut out = Array2::<f32>::zeros(dim);
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(r, mut orow)| {
            let rows: Vec<ArrayView1<f32>> = frames.iter().map(|f| f.row(r)).collect();
            let mut buf = Vec::with_capacity(n);
            let mut scratch = Vec::with_capacity(n);
            for (c, o) in orow.iter_mut().enumerate() {
                buf.clear();
                buf.extend(rows.iter().map(|row| row[c]).filter(|x| x.is_finite()));
                *o = clipped_median(&mut buf, &mut scratch, clip_sigma as f32);
            }
        });
    out
}

/// Median of an already sorted, non-empty slice.
fn sorted_median(v: &[f32]) -> f32 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Sigma-clipped median of one pixel's stack. Sorting once makes every clipping round a
/// pair of binary searches: the kept values are always a contiguous run of the sorted stack
/// (the clip window is symmetric about its median, which it contains).
fn clipped_median(values: &mut [f32], scratch: &mut Vec<f32>, clip_sigma: f32) -> f32 {
    if values.is_empty() {
        return f32::NAN;
    }
    values.sort_unstable_by(f32::total_cmp);
    let (mut lo, mut hi) = (0, values.len());
    for _ in 0..MAX_CLIP_ITERATIONS {
        let w = &values[lo..hi];
        let med = sorted_median(w);
        if w.len() < 3 {
            return med;
        }
        scratch.clear();
        scratch.extend(w.iter().map(|x| (x - med).abs()));
        let sigma = MAD_TO_SIGMA * median_in_place(scratch).unwrap_or(0.0);
        if sigma.is_nan() || sigma <= 0.0 {
            return med;
        }
        let lim = clip_sigma * sigma;
        let new_lo = lo + w.partition_point(|&x| x < med - lim);
        let new_hi = lo + w.partition_point(|&x| x <= med + lim);
        if (new_lo, new_hi) == (lo, hi) || new_hi <= new_lo {
            return med;
        }
        lo = new_lo;
        hi = new_hi;
    }
    sorted_median(&values[lo..hi])
}

/// The central region used for whole-frame statistics: the middle half of the rows and of
/// the columns (a quarter of the pixels), where vignetting is mild and edge effects absent.
fn central<'a>(a: &'a ArrayView2<'a, f32>) -> ArrayView2<'a, f32> {
    let (rows, cols) = a.dim();
    let (r0, r1) = (rows / 4, rows - rows / 4);
    let (c0, c1) = (cols / 4, cols - cols / 4);
    window(a.view(), r0..r1.max(r0 + 1), c0..c1.max(c0 + 1))
}

/// A rectangular window of a frame (ndarray's `s!` macro cannot be used under
/// `forbid(unsafe_code)`).
fn window<'a>(
    a: ArrayView2<'a, f32>,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) -> ArrayView2<'a, f32> {
    let mut v = a;
    v.slice_axis_inplace(Axis(0), Slice::from(rows));
    v.slice_axis_inplace(Axis(1), Slice::from(cols));
    v
}

/// Noise of one raw frame of a stack, ADU rms, from frame-to-frame differences: the
/// 5σ-clipped standard deviation of `(f₀ − f₁)/√2, (f₂ − f₃)/√2, …` pooled over the
/// central region of up to four pairs. The differences cancel every fixed pattern (bias
/// structure, hot pixels, vignetting, PRNU); the clipping drops cosmic-ray hits. (A MAD
/// would be quantised by the integer raw counts: with a 3.3 ADU read noise it can only
/// take values a few tenths of an ADU apart.) `None` with fewer than two frames.
pub fn frame_noise_adu(frames: &[ArrayView2<f32>]) -> Option<f64> {
    if frames.len() < 2 {
        return None;
    }
    let mut diffs = Vec::new();
    for pair in frames.chunks_exact(2).take(4) {
        let (a, b) = (central(&pair[0]), central(&pair[1]));
        Zip::from(&a).and(&b).for_each(|&x, &y| {
            let d = (x - y) * std::f32::consts::FRAC_1_SQRT_2;
            if d.is_finite() {
                diffs.push(d);
            }
        });
    }
    sigma_clipped_stats(&mut diffs, PHOTON_TRANSFER_CLIP_SIGMA, 10).map(|s| s.std)
}

/// One-sigma noise of a median-combined master, ADU, from the noise of one frame: the
/// median of `n` normal samples has variance `π/2 · σ²/n` (asymptotically; for 10–20 frames
/// the exact value is up to 10 % lower, so this is conservative). One or two frames: `σ/√n`.
pub fn master_noise_adu(frame_noise_adu: f64, n_frames: usize) -> f64 {
    let n = n_frames.max(1) as f64;
    if n_frames <= 2 {
        frame_noise_adu / n.sqrt()
    } else {
        frame_noise_adu * (std::f64::consts::FRAC_PI_2 / n).sqrt()
    }
}

/// Thresholds of [`find_bad_pixels`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BadPixelCriteria {
    /// Hot: dark current more than this many robust sigmas (MAD of the whole master dark)
    /// above the median dark current. Default 5: a normal pixel of a 512² frame crosses it
    /// with probability 3·10⁻⁷, every hot pixel of the simulated sensor is far above it.
    pub hot_sigma: f64,
    /// Dead or low: flat response below this fraction of the median of its neighbourhood.
    /// Default 0.5.
    pub low_flat_fraction: f32,
    /// Half side of the neighbourhood for the flat's local median: a (2h+1)² window.
    /// Default 3 (7×7): the vignetting is smooth on that scale and a bad column or a cluster
    /// up to 4×4 pixels is still a minority of the window.
    pub flat_window_half: usize,
    /// A column is reported as a bad column when at least this fraction of its pixels are
    /// bad. Default 0.5.
    pub column_fraction: f64,
}

impl Default for BadPixelCriteria {
    fn default() -> Self {
        BadPixelCriteria {
            hot_sigma: 5.0,
            low_flat_fraction: 0.5,
            flat_window_half: 3,
            column_fraction: 0.5,
        }
    }
}

/// Known-defective pixels of one binning: hot (dark current `> median + hot_sigma · σ`,
/// σ the MAD-based sigma of `master_dark_per_s`, ADU/s with the bias removed), dead or low
/// (flat response `< low_flat_fraction` of the median of its neighbourhood, or not a
/// finite number). Pass a master flat of ones when no flat exists (finds no low pixels),
/// and a dark of zeros when no dark exists (finds no hot pixels).
///
/// # Panics
/// When the two masters differ in shape.
pub fn find_bad_pixels(
    master_dark_per_s: &Array2<f32>,
    master_flat: &Array2<f32>,
    criteria: &BadPixelCriteria,
) -> Array2<bool> {
    assert_eq!(
        master_dark_per_s.dim(),
        master_flat.dim(),
        "dark and flat masters of one binning share a shape"
    );
    let (rows, cols) = master_flat.dim();
    let finite: Vec<f32> = master_dark_per_s
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let med = median_in_place(&mut finite.clone()).unwrap_or(0.0) as f64;
    let sigma = mad_std(&finite).unwrap_or(0.0) as f64;
    // With a zero spread (a synthetic or all-zero dark), anything above the median is hot.
    let hot_limit = med + criteria.hot_sigma * sigma;

    let mut mask = Array2::from_elem((rows, cols), false);
    let half = criteria.flat_window_half;
    mask.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(r, mut mrow)| {
            let mut buf = Vec::with_capacity((2 * half + 1).pow(2));
            for (c, m) in mrow.iter_mut().enumerate() {
                let d = master_dark_per_s[[r, c]];
                let hot = d.is_finite() && d as f64 > hot_limit;
                let f = master_flat[[r, c]];
                let low = if !f.is_finite() {
                    true
                } else {
                    let r0 = r.saturating_sub(half);
                    let r1 = (r + half).min(rows - 1);
                    let c0 = c.saturating_sub(half);
                    let c1 = (c + half).min(cols - 1);
                    buf.clear();
                    buf.extend(
                        window(master_flat.view(), r0..r1 + 1, c0..c1 + 1)
                            .iter()
                            .copied()
                            .filter(|v| v.is_finite()),
                    );
                    let local = median_in_place(&mut buf).unwrap_or(f32::NAN);
                    local.is_finite() && f < criteria.low_flat_fraction * local
                };
                *m = hot || low || !d.is_finite();
            }
        });
    mask
}

/// Columns of a mask in which at least `fraction` of the pixels are set.
pub fn bad_columns(mask: &Array2<bool>, fraction: f64) -> Vec<usize> {
    let rows = mask.nrows().max(1) as f64;
    mask.axis_iter(Axis(1))
        .enumerate()
        .filter(|(_, col)| col.iter().filter(|&&b| b).count() as f64 >= fraction * rows)
        .map(|(c, _)| c)
        .collect()
}

/// Side of the central box a flat is normalised on: `max(3, min(rows, cols) / 32)` pixels
/// (8 px at 256², 16 px at 512², 64 px at 2048²; 0.7 cm at a 22.4 cm field of view, over
/// which the simulated lens's vignetting changes by less than 0.1 %).
pub fn central_box_side(rows: usize, cols: usize) -> usize {
    (rows.min(cols) / 32).max(3).min(rows.min(cols))
}

/// Normalise a flat to 1.0 on the optical axis: divide by the 3σ-clipped mean of the
/// central box ([`central_box_side`]), taken as the optical axis (a lens axis within a few
/// millimetres of the image centre changes the result by well under 0.1 %). Returns the
/// normalised flat and the divisor; `None` when the box has no positive finite level.
pub fn normalise_flat(flat: &Array2<f32>) -> Option<(Array2<f32>, f32)> {
    let (rows, cols) = flat.dim();
    if rows == 0 || cols == 0 {
        return None;
    }
    let side = central_box_side(rows, cols);
    let r0 = (rows - side) / 2;
    let c0 = (cols - side) / 2;
    let mut v: Vec<f32> = window(flat.view(), r0..r0 + side, c0..c0 + side)
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    let level = sigma_clipped_stats(&mut v, 3.0, MAX_CLIP_ITERATIONS)?.mean as f32;
    if !(level.is_finite() && level > 0.0) {
        return None;
    }
    Some((flat.mapv(|x| x / level), level))
}

/// Result of a photon-transfer measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhotonTransfer {
    /// Electrons per ADU.
    pub gain_e_per_adu: f64,
    /// Read noise of one read, ADU rms.
    pub read_noise_adu: f64,
    /// Read noise of one read, electrons rms (`gain · read_noise_adu`).
    pub read_noise_e: f64,
    /// Mean flat signal above bias in the central region, ADU (one frame).
    pub signal_adu: f64,
    /// Pixels that entered the variance estimate.
    pub n_pixels: usize,
}

/// Read noise of one read, ADU rms, from two bias frames: the standard deviation of
/// `B₁ − B₂` over the central region, 5σ-clipped, divided by √2. `None` when too few
/// pixels are left or the frames differ in shape.
pub fn read_noise_adu(bias1: &ArrayView2<f32>, bias2: &ArrayView2<f32>) -> Option<f64> {
    if bias1.dim() != bias2.dim() {
        return None;
    }
    let mut d: Vec<f32> = Vec::new();
    Zip::from(&central(bias1))
        .and(&central(bias2))
        .for_each(|&a, &b| {
            if (a - b).is_finite() {
                d.push(a - b)
            }
        });
    let st = sigma_clipped_stats(&mut d, PHOTON_TRANSFER_CLIP_SIGMA, 10)?;
    (st.n >= 16).then(|| st.std / std::f64::consts::SQRT_2)
}

/// Gain (e⁻/ADU) and read noise by photon transfer (Janesick's two-flat, two-bias method)
/// over the central region of raw frames of one binning:
///
/// `gain = mean(F₁ + F₂ − B₁ − B₂) / (var(F₁ − F₂) − var(B₁ − B₂))`
///
/// The differences cancel every fixed pattern (PRNU, vignetting, bias structure, hot
/// pixels); subtracting `var(B₁ − B₂)` removes the read noise the flat difference carries
/// (the variant `var(F₁ − F₂ − (B₁ − B₂))` in the denominator would count it twice, a
/// bias of `2σ_read² / var` — 0.25 % at 13 000 ADU, more on faint flats). Variances are
/// 5σ-clipped ([`PHOTON_TRANSFER_CLIP_SIGMA`]). Flats should be bright (well above the
/// read noise, well below saturation) and taken at one level. `None` when the frames differ
/// in shape, the flats carry no signal or the variance difference is not positive.
pub fn photon_transfer(
    flat1: &ArrayView2<f32>,
    flat2: &ArrayView2<f32>,
    bias1: &ArrayView2<f32>,
    bias2: &ArrayView2<f32>,
) -> Option<PhotonTransfer> {
    let dim = flat1.dim();
    if flat2.dim() != dim || bias1.dim() != dim || bias2.dim() != dim {
        return None;
    }
    let (f1, f2, b1, b2) = (
        central(flat1),
        central(flat2),
        central(bias1),
        central(bias2),
    );
    let mut sum = Vec::with_capacity(f1.len());
    let mut fdiff = Vec::with_capacity(f1.len());
    Zip::from(&f1)
        .and(&f2)
        .and(&b1)
        .and(&b2)
        .for_each(|&a, &b, &c, &d| {
            let s = a + b - c - d;
            if s.is_finite() {
                sum.push(s);
                fdiff.push(a - b);
            }
        });
    let mean_sum = sigma_clipped_stats(&mut sum, PHOTON_TRANSFER_CLIP_SIGMA, 10)?.mean;
    let fd = sigma_clipped_stats(&mut fdiff, PHOTON_TRANSFER_CLIP_SIGMA, 10)?;
    let read_adu = read_noise_adu(bias1, bias2)?;
    let var_signal = fd.std * fd.std - 2.0 * read_adu * read_adu;
    if !(mean_sum > 0.0 && var_signal > 0.0) {
        return None;
    }
    let gain = mean_sum / var_signal;
    Some(PhotonTransfer {
        gain_e_per_adu: gain,
        read_noise_adu: read_adu,
        read_noise_e: gain * read_adu,
        signal_adu: mean_sum / 2.0,
        n_pixels: fd.n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::Instrument;
    use proptest::prelude::*;

    fn views(frames: &[Array2<f32>]) -> Vec<ArrayView2<'_, f32>> {
        frames.iter().map(|f| f.view()).collect()
    }

    fn noisy_stack(n: usize, rows: usize, cols: usize, seed: u64) -> Vec<Array2<f32>> {
        // Deterministic pseudo-normal noise (sum of uniforms) around a structured level.
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f32 / (1u64 << 53) as f32
        };
        (0..n)
            .map(|_| {
                Array2::from_shape_fn((rows, cols), |(r, c)| {
                    let g: f32 = (0..12).map(|_| next()).sum::<f32>() - 6.0;
                    500.0 + (r + 2 * c) as f32 * 0.1 + 3.0 * g
                })
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn combining_identical_frames_returns_the_frame(
            vals in proptest::collection::vec(-1.0e4f32..7.0e4, 12),
            n in 1usize..12,
            sigma in 1.5f64..6.0,
        ) {
            let frame = Array2::from_shape_vec((3, 4), vals).unwrap();
            let frames = vec![frame.clone(); n];
            let m = combine_sigma_clipped_median(&views(&frames), sigma);
            prop_assert_eq!(m, frame);
        }

        #[test]
        fn master_lies_within_the_stack(
            vals in proptest::collection::vec(-100.0f32..100.0, 2 * 2 * 7),
        ) {
            let frames: Vec<Array2<f32>> = vals
                .chunks(4)
                .map(|c| Array2::from_shape_vec((2, 2), c.to_vec()).unwrap())
                .collect();
            let m = combine_sigma_clipped_median(&views(&frames), 3.0);
            for ((r, c), &v) in m.indexed_iter() {
                let lo = frames.iter().map(|f| f[[r, c]]).fold(f32::INFINITY, f32::min);
                let hi = frames.iter().map(|f| f[[r, c]]).fold(f32::NEG_INFINITY, f32::max);
                prop_assert!(v >= lo && v <= hi);
            }
        }
    }

    #[test]
    fn one_outlier_frame_among_nine_does_not_move_the_master() {
        let good = noisy_stack(8, 64, 64, 7);
        let reference = combine_sigma_clipped_median(&views(&good), 3.0);
        for outlier_level in [30.0f32, 1.0e4] {
            let mut all = good.clone();
            // A frame with a light leak: far off in every pixel.
            all.insert(4, good[0].mapv(|v| v + outlier_level));
            let m = combine_sigma_clipped_median(&views(&all), 3.0);
            let diff: Vec<f32> = (&m - &reference).iter().map(|d| d.abs()).collect();
            let mean_abs = diff.iter().sum::<f32>() / diff.len() as f32;
            let max_abs = diff.iter().copied().fold(0.0, f32::max);
            // The noise of one frame is 3 ADU; the master's about 1.3 ADU.
            assert!(
                mean_abs < 0.05,
                "level {outlier_level}: mean shift {mean_abs}"
            );
            assert!(max_abs < 3.0, "level {outlier_level}: max shift {max_abs}");
        }
    }

    #[test]
    fn nan_samples_are_ignored_and_all_nan_is_nan() {
        let a = Array2::from_elem((1, 2), 1.0f32);
        let mut b = Array2::from_elem((1, 2), 3.0f32);
        b[[0, 1]] = f32::NAN;
        let mut c = Array2::from_elem((1, 2), 2.0f32);
        c[[0, 1]] = f32::NAN;
        let m = combine_sigma_clipped_median(&[a.view(), b.view(), c.view()], 3.0);
        assert_eq!(m[[0, 0]], 2.0);
        assert_eq!(m[[0, 1]], 1.0);
        let nan = Array2::from_elem((1, 1), f32::NAN);
        assert!(combine_sigma_clipped_median(&[nan.view()], 3.0)[[0, 0]].is_nan());
    }

    #[test]
    fn frame_noise_is_measured_from_differences() {
        let stack = noisy_stack(6, 128, 128, 3);
        let s = frame_noise_adu(&views(&stack)).unwrap();
        assert!((s - 3.0).abs() < 0.1, "{s}");
        // Integer raw counts: rounding adds 1/12 ADU², no quantisation of the estimate.
        let rounded: Vec<Array2<f32>> = stack.iter().map(|f| f.mapv(f32::round)).collect();
        let s = frame_noise_adu(&views(&rounded)).unwrap();
        let expected = (9.0f64 + 1.0 / 12.0).sqrt();
        assert!((s - expected).abs() < 0.1, "{s} vs {expected}");
        assert!(
            (master_noise_adu(3.0, 10) - 3.0 * (std::f64::consts::PI / 20.0).sqrt()).abs() < 1e-12
        );
    }

    #[test]
    fn bad_pixels_hot_low_and_columns() {
        let mut dark = Array2::from_shape_fn((40, 50), |(r, c)| {
            0.01 + 0.001 * ((r * 7 + c * 3) % 5) as f32
        });
        dark[[5, 6]] = 2.0;
        dark.column_mut(30).fill(0.5);
        let mut flat = Array2::from_shape_fn((40, 50), |(r, c)| {
            1.0 - 0.0002 * ((r as f32 - 20.0).powi(2) + (c as f32 - 25.0).powi(2))
        });
        flat[[10, 12]] = 0.3;
        flat[[0, 0]] = 0.1; // a corner pixel: the window is clipped at the edge
        flat[[20, 20]] = f32::NAN;
        let m = find_bad_pixels(&dark, &flat, &BadPixelCriteria::default());
        assert!(m[[5, 6]] && m[[10, 12]] && m[[0, 0]] && m[[20, 20]]);
        assert!(m.column(30).iter().all(|&b| b));
        assert_eq!(m.iter().filter(|&&b| b).count(), 40 + 4);
        assert_eq!(bad_columns(&m, 0.5), vec![30]);
    }

    #[test]
    fn flat_is_normalised_on_the_central_box() {
        let flat = Array2::from_shape_fn((64, 64), |(r, c)| {
            2000.0 * (1.0 - 0.0001 * ((r as f32 - 31.5).powi(2) + (c as f32 - 31.5).powi(2)))
        });
        let (n, level) = normalise_flat(&flat).unwrap();
        assert!((level - 2000.0).abs() < 1.0, "{level}");
        assert!((n[[32, 32]] - 1.0).abs() < 1e-3);
        assert!(n[[0, 0]] < 0.85);
        assert!(normalise_flat(&Array2::zeros((8, 8))).is_none());
    }

    fn to_f32(a: &Array2<u16>) -> Array2<f32> {
        a.mapv(f32::from)
    }

    #[test]
    fn photon_transfer_recovers_the_simulated_gain_and_read_noise() {
        // 512² binned pixels: 65 536 in the central region, so the variance (and the gain)
        // carries a 0.6 % statistical error; the 5 % bound is 9 of those.
        let inst = Instrument {
            sensor_px: 1024,
            ..Instrument::default()
        };
        let b = 2;
        let f1 = to_f32(&inst.flat_frame(b, 22.4, 20_000.0, 11));
        let f2 = to_f32(&inst.flat_frame(b, 22.4, 20_000.0, 12));
        let b1 = to_f32(&inst.bias_frame(b, 13));
        let b2 = to_f32(&inst.bias_frame(b, 14));
        let pt = photon_transfer(&f1.view(), &f2.view(), &b1.view(), &b2.view()).unwrap();
        let g = inst.sensor.gain_e_per_adu;
        let rn = inst.sensor.read_noise_e;
        assert!(
            (pt.gain_e_per_adu - g).abs() / g < 0.05,
            "gain {} vs {g}",
            pt.gain_e_per_adu
        );
        assert!(
            (pt.read_noise_e - rn).abs() / rn < 0.05,
            "read noise {} vs {rn}",
            pt.read_noise_e
        );
        eprintln!(
            "photon transfer: gain {:.4} e/ADU (true {g}), read noise {:.3} e (true {rn}), signal {:.0} ADU",
            pt.gain_e_per_adu, pt.read_noise_e, pt.signal_adu
        );
    }

    #[test]
    fn combine_is_fast_on_real_sized_stacks() {
        // 20 frames of 2048² must combine in seconds, not minutes. Run with --release for
        // the real figure; the dev profile (opt-level 1) is a few times slower.
        let frames: Vec<Array2<f32>> = noisy_stack(2, 256, 256, 5)
            .into_iter()
            .cycle()
            .take(20)
            .collect();
        let t = std::time::Instant::now();
        let m = combine_sigma_clipped_median(&views(&frames), 3.0);
        let per_pixel = t.elapsed().as_secs_f64() / m.len() as f64;
        let projected = per_pixel * 2048.0 * 2048.0;
        eprintln!("combine: {projected:.2} s projected for 20 × 2048²");
        assert!(projected < 60.0, "{projected} s");
    }
}
