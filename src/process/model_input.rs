//! The segmentation model's contract with the processing chain: what the network sees
//! (its input image), what it was taught to find (the truth mask), and the size rules of
//! the grid it runs on.
//!
//! Owns: the input definition, shared by training (`lumiq simulate-training` writes it for
//! the Python trainer) and inference (the runtime computes it from the same arrays
//! `quantify` already has), so the two can never drift apart; the rasterisation of true
//! tumours into the target mask. Deliberately does not own running a model or reading one
//! from disk (that is `crate::segment`), nor the mice in the photograph (`subjects`). Pure:
//! arrays in, arrays out.
//!
//! # Input
//! On the detector's working grid (the frame averaged in `block × block` blocks, the same
//! block the classical detector uses, [`working_block_for`]), each pixel's significance
//! `z = net / σ` (σ from the propagated per-pixel variance of the block mean), compressed
//! as `x = asinh(z)`: linear with unit noise near zero (where faint tumours live),
//! logarithmic for bright ones (a tumour at SNR 1000 stays within single digits). The
//! working grid has a nearly fixed physical pixel (about 0.09 cm at the object whatever
//! the binning or field of view) and `z` carries no radiance unit, so the input is
//! independent of binning, exposure and calibration coefficient by construction; only
//! the signal-to-noise ratio reaches the network.
//!
//! # Size
//! The network halves the grid several times: height and width must be multiples of
//! [`PAD_MULTIPLE`]. [`pad_input`] pads with zeros (no signal, unit-noise free) at the
//! bottom and right; crop the output back to the input's size. A runtime that tiles large
//! grids overlaps tiles by [`TILE_OVERLAP_PX`] (the network's useful receptive half-width).
//!
//! # Target
//! A working-grid pixel belongs to a tumour when that tumour's own noise-free light
//! (block-averaged) is at least [`TRUTH_PEAK_FRACTION`] of its own peak on the working
//! grid: the full-width-at-half-maximum footprint, which for a Gaussian tumour is also its
//! half-light region. The 3 × 3 pixels around each tumour's peak always belong to it, so a
//! point-like tumour still has a core to find. Where two tumours' footprints overlap, the
//! pixel goes to the tumour whose own light is brighter there.

use ndarray::Array2;

use super::detect::working_block;
use super::detect::DetectionSettings;
use super::filters::block_mean;
use super::ProcessingParams;

/// Height and width of the network's input must be multiples of this (the network halves
/// its grid up to four times).
pub const PAD_MULTIPLE: usize = 16;

/// Overlap between tiles when a large working grid is run in pieces, working-grid pixels
/// on each side. Larger than the network's useful receptive half-width.
pub const TILE_OVERLAP_PX: usize = 32;

/// Name of the ONNX graph's input (`[1, 1, H, W]`, f32, the [`model_input`] image).
pub const INPUT_NAME: &str = "input";

/// Name of the ONNX graph's output (`[1, 1, H, W]`, f32 logits; sigmoid gives the tumour
/// probability of each working-grid pixel).
pub const OUTPUT_NAME: &str = "output";

/// A pixel is in a tumour's target footprint when its own light is at least this fraction
/// of its own peak (both on the working grid).
pub const TRUTH_PEAK_FRACTION: f32 = 0.5;

/// The working-grid block for a frame whose pixels are `pixel_cm` at the object: the block
/// the classical detector averages in (`detect::working_block`).
pub fn working_block_for(params: &ProcessingParams, pixel_cm: f64) -> usize {
    working_block(DetectionSettings::for_grid(params, pixel_cm).smoothing_sigma_px)
}

/// The compression applied to a significance `z` (see the module header).
pub fn compress_significance(z: f32) -> f32 {
    z.asinh()
}

/// The network's input for a background-subtracted frame: `asinh(z)` on the working grid,
/// `z` = block-mean net radiance over its propagated standard deviation. `net` and
/// `variance` are on the full grid (radiance and radiance², as in `Quantification`).
/// A pixel with no positive variance (cannot happen with a real noise model) gets 0.
pub fn model_input(net: &Array2<f32>, variance: &Array2<f32>, block: usize) -> Array2<f32> {
    assert_eq!(
        net.dim(),
        variance.dim(),
        "net radiance and variance must have one shape"
    );
    let block = block.max(1);
    let (mean, var) = if block == 1 {
        (net.clone(), variance.clone())
    } else {
        block_mean(net, variance, block)
    };
    let mut out = mean;
    ndarray::Zip::from(&mut out).and(&var).for_each(|m, &v| {
        *m = if v > 0.0 && v.is_finite() && m.is_finite() {
            compress_significance(*m / v.sqrt())
        } else {
            0.0
        };
    });
    out
}

/// `n` rounded up to a multiple of [`PAD_MULTIPLE`].
pub fn padded_len(n: usize) -> usize {
    n.div_ceil(PAD_MULTIPLE).max(1) * PAD_MULTIPLE
}

/// The input padded with zeros at the bottom and right to multiples of [`PAD_MULTIPLE`].
pub fn pad_input(input: &Array2<f32>) -> Array2<f32> {
    let (rows, cols) = input.dim();
    let mut out = Array2::<f32>::zeros((padded_len(rows), padded_len(cols)));
    for ((r, c), &v) in input.indexed_iter() {
        out[[r, c]] = v;
    }
    out
}

/// Average of `img` over `block × block` blocks (partial blocks average what they have).
fn block_average(img: &Array2<f32>, block: usize) -> Array2<f32> {
    if block <= 1 {
        return img.clone();
    }
    let (rows, cols) = img.dim();
    let (br, bc) = (rows.div_ceil(block), cols.div_ceil(block));
    let mut sum = Array2::<f64>::zeros((br, bc));
    let mut n = Array2::<u32>::zeros((br, bc));
    for ((r, c), &v) in img.indexed_iter() {
        sum[[r / block, c / block]] += v as f64;
        n[[r / block, c / block]] += 1;
    }
    Array2::from_shape_fn((br, bc), |p| (sum[p] / n[p].max(1) as f64) as f32)
}

/// Per-tumour truth on the working grid: 0 for background, `k` (1-based) where the `k`-th
/// tumour's footprint lies (see the module header for the definition). `own_radiance`
/// holds each tumour's own noise-free radiance on the full grid of shape `full_dim`, in
/// the order of the labels.
pub fn truth_labels(
    own_radiance: &[Array2<f32>],
    full_dim: (usize, usize),
    block: usize,
) -> Array2<u32> {
    let block = block.max(1);
    let (rows, cols) = full_dim;
    let dim = (rows.div_ceil(block), cols.div_ceil(block));
    let mut labels = Array2::<u32>::zeros(dim);
    let mut owner_light = Array2::<f32>::zeros(dim);
    for (i, own) in own_radiance.iter().enumerate() {
        assert_eq!(own.dim(), (rows, cols), "every tumour image has one shape");
        let light = block_average(own, block);
        let Some((peak_at, &peak)) = light
            .indexed_iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .filter(|(_, &v)| v > 0.0)
        else {
            continue;
        };
        let level = TRUTH_PEAK_FRACTION * peak;
        let (pr, pc) = peak_at;
        for ((r, c), &v) in light.indexed_iter() {
            let core = r.abs_diff(pr) <= 1 && c.abs_diff(pc) <= 1;
            if (v >= level || core) && v > owner_light[[r, c]] {
                labels[[r, c]] = i as u32 + 1;
                owner_light[[r, c]] = v;
            }
        }
    }
    labels
}

/// The binary target: working-grid pixels that belong to any tumour ([`truth_labels`]).
pub fn truth_mask(
    own_radiance: &[Array2<f32>],
    full_dim: (usize, usize),
    block: usize,
) -> Array2<bool> {
    truth_labels(own_radiance, full_dim, block).mapv(|l| l > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, Normal};

    /// A Gaussian spot of `peak` at (`cy`, `cx`) (pixel centres at +0.5) on an `n × n` grid.
    fn spot(n: usize, cy: f64, cx: f64, sigma_px: f64, peak: f64) -> Array2<f32> {
        Array2::from_shape_fn((n, n), |(r, c)| {
            let dy = r as f64 + 0.5 - cy;
            let dx = c as f64 + 0.5 - cx;
            (peak * (-(dx * dx + dy * dy) / (2.0 * sigma_px * sigma_px)).exp()) as f32
        })
    }

    #[test]
    fn input_is_binning_independent_in_expectation() {
        // The same scene (a spot and a flat noise level per cm²) seen at binning b and 2b:
        // binned radiance is the same mean radiance, variance per binned pixel falls by 4
        // (four times the photons). The working grid for the finer frame uses block 2.
        let fine_n = 128;
        let sigma_fine_px = 6.0;
        let var_fine = 4.0f32;
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut mean_fine = Array2::<f32>::zeros((64, 64));
        let mut mean_coarse = Array2::<f32>::zeros((64, 64));
        let trials = 200;
        for _ in 0..trials {
            let clean_f = spot(fine_n, 64.0, 64.0, sigma_fine_px, 3.0);
            let nf = Normal::new(0.0, var_fine.sqrt()).unwrap();
            let net_f = clean_f.mapv(|v| v + nf.sample(&mut rng));
            let x_f = model_input(&net_f, &Array2::from_elem((fine_n, fine_n), var_fine), 2);
            let clean_c = spot(64, 32.0, 32.0, sigma_fine_px / 2.0, 3.0);
            let nc = Normal::new(0.0, (var_fine / 4.0).sqrt()).unwrap();
            let net_c = clean_c.mapv(|v| v + nc.sample(&mut rng));
            let x_c = model_input(&net_c, &Array2::from_elem((64, 64), var_fine / 4.0), 1);
            mean_fine += &x_f;
            mean_coarse += &x_c;
        }
        mean_fine /= trials as f32;
        mean_coarse /= trials as f32;
        let peak = mean_coarse[[32, 32]];
        assert!(peak > 1.5, "the spot stands out: {peak}");
        // Pixel noise of a 200-frame mean of asinh(z) is ~0.06 in each map: compare
        // averages, over the frame and over the spot's 3 × 3 core.
        let diff = &mean_fine - &mean_coarse;
        let mean_abs = diff.iter().map(|v| v.abs()).sum::<f32>() / diff.len() as f32;
        assert!(mean_abs < 0.09, "mean |difference| {mean_abs}");
        let core: f32 = (31..34)
            .flat_map(|r| (31..34).map(move |c| (r, c)))
            .map(|p| diff[p])
            .sum::<f32>()
            / 9.0;
        assert!(
            core.abs() < 0.1,
            "difference at the spot {core} (peak {peak})"
        );
    }

    #[test]
    fn input_is_asinh_of_significance() {
        let net = Array2::from_shape_vec((1, 3), vec![0.0f32, 6.0, -6.0]).unwrap();
        let var = Array2::from_shape_vec((1, 3), vec![4.0f32, 4.0, 0.0]).unwrap();
        let x = model_input(&net, &var, 1);
        assert_eq!(x[[0, 0]], 0.0);
        assert!((x[[0, 1]] - 3.0f32.asinh()).abs() < 1e-6);
        assert_eq!(x[[0, 2]], 0.0, "no variance, no claim");
    }

    #[test]
    fn padding_reaches_the_multiple_and_keeps_the_data() {
        assert_eq!(padded_len(1), PAD_MULTIPLE);
        assert_eq!(padded_len(PAD_MULTIPLE), PAD_MULTIPLE);
        assert_eq!(padded_len(PAD_MULTIPLE + 1), 2 * PAD_MULTIPLE);
        let x = Array2::from_shape_fn((37, 50), |(r, c)| (r * 100 + c) as f32);
        let p = pad_input(&x);
        assert_eq!(p.dim(), (48, 64));
        assert!(x.indexed_iter().all(|(i, &v)| p[i] == v));
        assert_eq!(p[[40, 60]], 0.0);
    }

    #[test]
    fn truth_covers_each_peak_and_splits_touching_tumours() {
        let n = 96;
        let a = spot(n, 40.0, 30.0, 4.0, 10.0);
        let b = spot(n, 44.0, 44.0, 4.0, 5.0);
        let point = spot(n, 80.0, 80.0, 0.3, 1.0);
        let labels = truth_labels(&[a.clone(), b.clone(), point], (n, n), 2);
        assert_eq!(labels.dim(), (48, 48));
        assert_eq!(labels[[20, 15]], 1, "peak of the first");
        assert_eq!(labels[[22, 22]], 2, "peak of the second");
        // The point source keeps a 3 × 3 core although its light fills one fine pixel.
        assert_eq!(labels[[40, 40]], 3);
        assert_eq!(labels[[39, 39]], 3);
        assert_eq!(labels[[41, 41]], 3);
        assert_eq!(labels[[0, 0]], 0);
        // Half-maximum footprint: radius √(2 ln 2)·σ = 4.7 fine px = 2.35 working px.
        let count1 = labels.iter().filter(|&&l| l == 1).count();
        assert!(
            (12..=24).contains(&count1),
            "footprint of the first: {count1}"
        );
        let mask = truth_mask(&[a, b], (n, n), 2);
        assert!(mask[[20, 15]] && mask[[22, 22]] && !mask[[0, 0]]);
        // No tumour: an empty mask of the working grid's shape.
        let empty = truth_mask(&[], (n + 1, n), 2);
        assert_eq!(empty.dim(), (49, 48));
        assert!(empty.iter().all(|&m| !m));
    }

    #[test]
    fn working_block_matches_the_detector() {
        let params = ProcessingParams::default();
        // IVIS field of view 22.4 cm on a 2048-pixel sensor: binning 8 needs no block,
        // binning 1 averages 8 × 8.
        assert_eq!(working_block_for(&params, 22.4 / 256.0), 1);
        assert_eq!(working_block_for(&params, 22.4 / 512.0), 2);
        assert_eq!(working_block_for(&params, 22.4 / 2048.0), 8);
    }
}
