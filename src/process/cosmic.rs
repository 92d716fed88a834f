//! Single-frame cosmic-ray removal.
//!
//! A cosmic ray deposits charge in one to a few pixels with no spread: it is sharper than
//! anything the optics can image. A pixel is a hit when (1) it stands `cosmic_sigma` noise
//! sigmas above the median of its 5×5 neighbourhood and (2) that excess is more than
//! `cosmic_sharpness` times the fine structure (3×3 median minus 5×5 median) around it.
//! The second test is what keeps a tumour's peak: however bright, a blurred peak has
//! neighbours nearly as bright, so its 3×3 median rises with it. Hits are grown into
//! adjacent pixels that stand out by a lower threshold (tracks), and replaced by the
//! median of the good pixels around them.
//!
//! Owns: finding the hits. Replacing them is `correct::repair_pixels`.

use ndarray::{Array2, Zip};
use rayon::prelude::*;

use super::filters::window_median;

/// Threshold for growing a hit into its neighbours, noise sigmas.
const GROW_SIGMA: f32 = 3.0;

/// Find cosmic-ray pixels in `frame` (any units) with per-pixel `variance` (units²).
/// Pixels in `ignore` (saturated, known bad) are never reported and never used as
/// neighbours.
pub fn find_cosmic_rays(
    frame: &Array2<f32>,
    variance: &Array2<f32>,
    ignore: &Array2<bool>,
    sigma: f64,
    sharpness: f64,
) -> Array2<bool> {
    let (rows, cols) = frame.dim();
    let sigma = sigma as f32;
    let sharpness = sharpness as f32;
    // Candidates: a cheap test against the mean of the 8 neighbours.
    let candidates: Vec<(usize, usize)> = (1..rows.saturating_sub(1))
        .into_par_iter()
        .flat_map_iter(|r| {
            let mut out = Vec::new();
            for c in 1..cols.saturating_sub(1) {
                if ignore[[r, c]] {
                    continue;
                }
                let v = frame[[r, c]];
                let mut sum = 0.0;
                for dr in 0..3 {
                    for dc in 0..3 {
                        sum += frame[[r + dr - 1, c + dc - 1]];
                    }
                }
                let mean8 = (sum - v) / 8.0;
                if v - mean8 > 0.5 * sigma * variance[[r, c]].max(0.0).sqrt() {
                    out.push((r, c));
                }
            }
            out
        })
        .collect();
    let hits: Vec<(usize, usize)> = candidates
        .par_iter()
        .filter(|&&(r, c)| {
            // A seed is the brightest pixel of its 3×3 neighbourhood.
            let v = frame[[r, c]];
            let local_max =
                (r - 1..=r + 1).all(|rr| (c - 1..=c + 1).all(|cc| frame[[rr, cc]] <= v));
            local_max && is_sharp(frame, variance, ignore, r, c, sigma as f32, sharpness)
        })
        .copied()
        .collect();
    let mut mask = Array2::from_elem((rows, cols), false);
    for &(r, c) in &hits {
        mask[[r, c]] = true;
    }
    // Grow into the rest of a track: neighbours that are sharp too once the hit is left out.
    let mut excluded = ignore.clone();
    Zip::from(&mut excluded)
        .and(&mask)
        .for_each(|e, &m| *e |= m);
    let mut stack = hits;
    while let Some((r, c)) = stack.pop() {
        for nr in r.saturating_sub(1)..=(r + 1).min(rows - 1) {
            for nc in c.saturating_sub(1)..=(c + 1).min(cols - 1) {
                if excluded[[nr, nc]] {
                    continue;
                }
                if is_sharp(frame, variance, &excluded, nr, nc, GROW_SIGMA, sharpness) {
                    mask[[nr, nc]] = true;
                    excluded[[nr, nc]] = true;
                    stack.push((nr, nc));
                }
            }
        }
    }
    mask
}

/// Whether the pixel stands `sigma` noise sigmas above its 5×5 median and that excess is
/// `sharpness` times the fine structure (3×3 median − 5×5 median) around it. Medians and
/// the noise skip pixels in `skip`.
fn is_sharp(
    frame: &Array2<f32>,
    variance: &Array2<f32>,
    skip: &Array2<bool>,
    r: usize,
    c: usize,
    sigma: f32,
    sharpness: f32,
) -> bool {
    let mut buf = Vec::with_capacity(25);
    let v = frame[[r, c]];
    let (Some(m5), Some(m3), Some(var)) = (
        window_median(frame, Some(skip), r, c, 2, &mut buf),
        window_median(frame, Some(skip), r, c, 1, &mut buf),
        window_median(variance, Some(skip), r, c, 2, &mut buf),
    ) else {
        return false;
    };
    // Noise at the neighbourhood's level, not the (inflated) hit's own.
    let noise = var.max(0.0).sqrt();
    let excess = v - m5;
    let fine = (m3 - m5).max(noise);
    excess > sigma * noise && excess > sharpness * fine
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaussian(
        rows: usize,
        cols: usize,
        cx: f32,
        cy: f32,
        sigma: f32,
        amp: f32,
        floor: f32,
    ) -> Array2<f32> {
        Array2::from_shape_fn((rows, cols), |(r, c)| {
            let dx = c as f32 + 0.5 - cx;
            let dy = r as f32 + 0.5 - cy;
            floor + amp * (-(dx * dx + dy * dy) / (2.0 * sigma * sigma)).exp()
        })
    }

    #[test]
    fn single_hit_and_short_track_are_found() {
        let mut f = Array2::from_elem((40, 40), 100.0f32);
        f[[10, 10]] = 5000.0;
        f[[20, 20]] = 3000.0;
        f[[20, 21]] = 2500.0;
        let var = Array2::from_elem(f.dim(), 100.0f32);
        let ignore = Array2::from_elem(f.dim(), false);
        let m = find_cosmic_rays(&f, &var, &ignore, 6.0, 3.0);
        assert!(m[[10, 10]] && m[[20, 20]] && m[[20, 21]]);
        assert_eq!(m.iter().filter(|&&b| b).count(), 3);
    }

    #[test]
    fn bright_narrow_tumour_peak_is_never_eaten() {
        // A peak with sigma one pixel at SNR in the thousands.
        let f = gaussian(41, 41, 20.5, 20.5, 1.0, 1.0e6, 100.0);
        let var = f.mapv(|v| v.max(1.0));
        let ignore = Array2::from_elem(f.dim(), false);
        let m = find_cosmic_rays(&f, &var, &ignore, 6.0, 3.0);
        assert!(!m.iter().any(|&b| b));
    }

    #[test]
    fn hit_on_top_of_a_tumour_is_found() {
        let mut f = gaussian(41, 41, 20.5, 20.5, 3.0, 1.0e4, 100.0);
        f[[17, 22]] += 8000.0;
        let var = f.mapv(|v| v.max(1.0));
        let ignore = Array2::from_elem(f.dim(), false);
        let m = find_cosmic_rays(&f, &var, &ignore, 6.0, 3.0);
        assert!(m[[17, 22]]);
        assert!(!m[[20, 20]]);
    }
}
