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
/// Share of a track pixel's excess that must stand above the line through its neighbours.
const TRACK_KINK: f32 = 0.85;

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
    // Seeds: the brightest pixel of their 3×3 neighbourhood that pass the sharpness test.
    let seeds: Vec<(usize, usize)> = (0..rows)
        .into_par_iter()
        .flat_map_iter(|r| {
            let mut out = Vec::new();
            for c in 0..cols {
                if ignore[[r, c]] {
                    continue;
                }
                let v = frame[[r, c]];
                let (mut sum, mut n, mut local_max) = (0.0f32, 0usize, true);
                for (nr, nc) in neighbours8(r, c, rows, cols) {
                    let w = frame[[nr, nc]];
                    sum += w;
                    n += 1;
                    local_max &= w <= v;
                }
                // Cheap pre-test against the mean of the neighbours before any median.
                let mean8 = sum / n.max(1) as f32;
                if local_max
                    && v - mean8 > 0.5 * sigma * variance[[r, c]].max(0.0).sqrt()
                    && is_sharp(frame, variance, ignore, r, c, sigma, sharpness)
                {
                    out.push((r, c));
                }
            }
            out
        })
        .collect();
    let mut mask = Array2::from_elem((rows, cols), false);
    for &(r, c) in &seeds {
        mask[[r, c]] = true;
    }
    // Grow into the rest of a track: neighbours that are sharp too once the hit is left out.
    let mut excluded = ignore.clone();
    Zip::from(&mut excluded)
        .and(&mask)
        .for_each(|e, &m| *e |= m);
    let mut stack = seeds;
    while let Some((r, c)) = stack.pop() {
        for (nr, nc) in neighbours8(r, c, rows, cols) {
            if excluded[[nr, nc]] {
                continue;
            }
            if is_track_pixel(frame, variance, &excluded, nr, nc) {
                mask[[nr, nc]] = true;
                excluded[[nr, nc]] = true;
                stack.push((nr, nc));
            }
        }
    }
    mask
}

/// Whether a pixel next to a hit belongs to the same track: it stands `GROW_SIGMA` above
/// its 5×5 median, and across some pair of opposite trusted neighbours it rises well
/// above the straight line joining them (`TRACK_KINK` of its excess) — a kink no smooth
/// slope or blurred peak makes.
fn is_track_pixel(
    frame: &Array2<f32>,
    variance: &Array2<f32>,
    skip: &Array2<bool>,
    r: usize,
    c: usize,
) -> bool {
    let (rows, cols) = frame.dim();
    let mut buf = Vec::with_capacity(25);
    let v = frame[[r, c]];
    let (Some(m5), Some(var)) = (
        window_median(frame, Some(skip), r, c, 2, &mut buf),
        window_median(variance, Some(skip), r, c, 2, &mut buf),
    ) else {
        return false;
    };
    let noise = var.max(0.0).sqrt();
    let excess = v - m5;
    if excess <= GROW_SIGMA * noise {
        return false;
    }
    let trusted = |dr: isize, dc: isize| {
        let nr = r as isize + dr;
        let nc = c as isize + dc;
        (nr >= 0
            && nc >= 0
            && (nr as usize) < rows
            && (nc as usize) < cols
            && !skip[[nr as usize, nc as usize]])
        .then(|| frame[[nr as usize, nc as usize]])
    };
    [(0isize, 1isize), (1, 0), (1, 1), (1, -1)]
        .iter()
        .any(|&(dr, dc)| match (trusted(dr, dc), trusted(-dr, -dc)) {
            (Some(a), Some(b)) => {
                let kink = v - 0.5 * (a + b);
                kink > GROW_SIGMA * noise && kink > TRACK_KINK * excess
            }
            _ => false,
        })
}

/// The up-to-eight neighbours of a pixel inside the frame.
fn neighbours8(
    r: usize,
    c: usize,
    rows: usize,
    cols: usize,
) -> impl Iterator<Item = (usize, usize)> {
    (r.saturating_sub(1)..=(r + 1).min(rows - 1))
        .flat_map(move |nr| (c.saturating_sub(1)..=(c + 1).min(cols - 1)).map(move |nc| (nr, nc)))
        .filter(move |&p| p != (r, c))
}

/// Whether the pixel stands `sigma` noise sigmas above its 5×5 median, and `sharpness`
/// times above its dimmest trusted edge-neighbour (up, down, left, right). However bright,
/// an imaged source has light in every direction around its peak (the optics and the
/// tissue blur it over more than a pixel); a hit or a track leaves at least one side dark.
/// Medians and the noise skip pixels in `skip`.
fn is_sharp(
    frame: &Array2<f32>,
    variance: &Array2<f32>,
    skip: &Array2<bool>,
    r: usize,
    c: usize,
    sigma: f32,
    sharpness: f32,
) -> bool {
    let (rows, cols) = frame.dim();
    let mut buf = Vec::with_capacity(25);
    let v = frame[[r, c]];
    let (Some(m5), Some(var)) = (
        window_median(frame, Some(skip), r, c, 2, &mut buf),
        window_median(variance, Some(skip), r, c, 2, &mut buf),
    ) else {
        return false;
    };
    // Noise at the neighbourhood's level, not the (inflated) hit's own.
    let noise = var.max(0.0).sqrt();
    let excess = v - m5;
    if excess <= sigma * noise {
        return false;
    }
    let side = [(-1isize, 0isize), (1, 0), (0, -1), (0, 1)]
        .iter()
        .filter_map(|&(dr, dc)| {
            let nr = r as isize + dr;
            let nc = c as isize + dc;
            (nr >= 0
                && nc >= 0
                && (nr as usize) < rows
                && (nc as usize) < cols
                && !skip[[nr as usize, nc as usize]])
            .then(|| frame[[nr as usize, nc as usize]] - m5)
        })
        .fold(f32::INFINITY, f32::min);
    if !side.is_finite() {
        // No trusted edge-neighbour to compare with: leave the pixel alone.
        return false;
    }
    excess > sharpness * side.max(noise)
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
