//! What a dark that could not be subtracted can add to a region's gross flux.
//!
//! When a frame has no usable dark (an IVIS folder whose `background.TIF` is saturated and
//! no background library), its dark charge D stays in every pixel and so in every gross
//! flux. lumiq never guesses D (ARCHITECTURE.md), but it can bound it from what the frame
//! itself holds: light is never negative, so in expectation every pixel's bias-subtracted
//! counts are S − B = D + light ≥ D. The darkest parts of the frame therefore give an upper
//! bound on a dark level common to the frame:
//!
//! ```text
//! D_max = max(0, 5th percentile over blocks of median_block(S − B))
//! ```
//!
//! The frame is cut into blocks of about 1/16 of its side; a block's median is immune to
//! hot pixels and cosmic-ray hits and averages read noise down; the 5th percentile of the
//! block medians (not the minimum) keeps one odd block (a dead region, a cut edge) from
//! deciding. Stage light and autoluminescence only make the bound larger (safer). The
//! unknown dark then lies in [0, D_max], and a region's gross flux lies within
//! `4π · A · Σᵢ D_max · Cᵢ/(t·b²·FFᵢ)` above what a subtracted dark would have given: the
//! photometry reports that as the gross flux's `dark` uncertainty component (a bound,
//! carried as one sigma: conservative). The net flux is not affected by a dark level common
//! to the frame: the background model removes it with the rest of the smooth background.
//!
//! Owns: the bound. Does not own: deciding whether a dark is usable (the readers do), nor
//! the photometry.

use ndarray::Array2;

/// Blocks per side of the frame.
const BLOCKS_PER_SIDE: usize = 16;
/// Smallest block side, pixels: enough pixels for a median to mean something.
const MIN_BLOCK_PX: usize = 4;
/// The percentile of block medians taken as the bound.
const PERCENTILE: f64 = 0.05;

/// Upper bound on the dark charge common to a frame with no dark subtracted, ADU (≥ 0):
/// see the module header. `bad` marks pixels not to use (known defects, saturation).
pub fn unsubtracted_dark_bound_adu(
    raw: &Array2<u16>,
    bias_adu: &Array2<f32>,
    bad: &Array2<bool>,
) -> f64 {
    let (rows, cols) = raw.dim();
    let side = (rows.min(cols) / BLOCKS_PER_SIDE).max(MIN_BLOCK_PX);
    let mut medians = Vec::new();
    let mut values = Vec::with_capacity(side * side);
    for r0 in (0..rows.saturating_sub(side - 1)).step_by(side) {
        for c0 in (0..cols.saturating_sub(side - 1)).step_by(side) {
            values.clear();
            for r in r0..r0 + side {
                for c in c0..c0 + side {
                    if !bad[[r, c]] {
                        values.push(f64::from(raw[[r, c]]) - f64::from(bias_adu[[r, c]]));
                    }
                }
            }
            // A block mostly made of bad pixels says nothing.
            if 2 * values.len() > side * side {
                values.sort_by(f64::total_cmp);
                medians.push(values[values.len() / 2]);
            }
        }
    }
    if medians.is_empty() {
        return 0.0;
    }
    medians.sort_by(f64::total_cmp);
    let i = ((medians.len() - 1) as f64 * PERCENTILE).round() as usize;
    medians[i].max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, Normal};

    fn frame(dark: f64, light: impl Fn(usize, usize) -> f64, seed: u64) -> Array2<u16> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let noise = Normal::new(0.0, 3.0).unwrap();
        Array2::from_shape_fn((240, 240), |(r, c)| {
            (600.0 + dark + light(r, c) + noise.sample(&mut rng)).round() as u16
        })
    }

    #[test]
    fn bound_covers_the_dark_and_is_tight_on_a_dark_stage() {
        let bias = Array2::from_elem((240, 240), 600.0f32);
        let bad = Array2::from_elem((240, 240), false);
        // A bright mouse in the middle, a dark stage around it.
        let mouse = |r: usize, c: usize| {
            if (80..160).contains(&r) && (90..150).contains(&c) {
                400.0
            } else {
                0.0
            }
        };
        for (seed, dark) in [(1, 0.0), (2, 3.1), (3, 25.0)] {
            let b = unsubtracted_dark_bound_adu(&frame(dark, mouse, seed), &bias, &bad);
            assert!(b >= dark - 0.5, "dark {dark}: bound {b}");
            assert!(b <= dark + 1.0, "dark {dark}: bound {b} is not tight");
        }
    }

    #[test]
    fn light_everywhere_only_raises_the_bound() {
        let bias = Array2::from_elem((240, 240), 600.0f32);
        let bad = Array2::from_elem((240, 240), false);
        let glow = |r: usize, _c: usize| 5.0 + r as f64 * 0.1;
        let b = unsubtracted_dark_bound_adu(&frame(3.0, glow, 4), &bias, &bad);
        assert!(b >= 3.0 + 5.0 - 0.5, "{b}");
    }

    #[test]
    fn hot_pixels_and_bad_pixels_do_not_decide() {
        let bias = Array2::from_elem((240, 240), 600.0f32);
        let mut raw = frame(2.0, |_, _| 0.0, 5);
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        for _ in 0..2000 {
            let (r, c) = (rng.random_range(0..240), rng.random_range(0..240));
            raw[[r, c]] = 65000;
        }
        // A dead band, known as bad: without the mask it would pull the bound to 0.
        let mut bad = Array2::from_elem((240, 240), false);
        for r in 0..240 {
            for c in 0..60 {
                raw[[r, c]] = 0;
                bad[[r, c]] = true;
            }
        }
        let b = unsubtracted_dark_bound_adu(&raw, &bias, &bad);
        assert!((b - 2.0).abs() < 1.0, "{b}");
    }

    #[test]
    fn negative_counts_give_zero_not_a_negative_bound() {
        let bias = Array2::from_elem((64, 64), 610.0f32);
        let bad = Array2::from_elem((64, 64), false);
        let raw = Array2::from_elem((64, 64), 600u16);
        assert_eq!(unsubtracted_dark_bound_adu(&raw, &bias, &bad), 0.0);
    }
}
