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
/// neighbours. With `only_near`, hits are sought only where it is true (a second round
/// looks for the rest of the tracks found by the first, nowhere else).
pub fn find_cosmic_rays(
    frame: &Array2<f32>,
    variance: &Array2<f32>,
    ignore: &Array2<bool>,
    only_near: Option<&Array2<bool>>,
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
                if ignore[[r, c]] || only_near.is_some_and(|m| !m[[r, c]]) {
                    continue;
                }
                let v = frame[[r, c]];
                let (mut sum, mut n, mut local_max) = (0.0f32, 0usize, true);
                for (nr, nc) in neighbours8(r, c, rows, cols) {
                    if ignore[[nr, nc]] {
                        continue;
                    }
                    let w = frame[[nr, nc]];
                    sum += w;
                    n += 1;
                    local_max &= w <= v;
                }
                // Cheap pre-test against the mean of the neighbours before any median.
                let mean8 = sum / n.max(1) as f32;
                if local_max
                    && v - mean8 > 0.5 * sigma * variance[[r, c]].max(0.0).sqrt()
                    && is_sharp(frame, variance, ignore, r, c, sigma, sharpness, true)
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
    // Grow one pixel into the rest of a track: neighbours of a hit that are sharp too once
    // the hits are left out, judged only on complete pairs of trusted neighbours (a pixel
    // surrounded by hits is not judged at all). One step only: a longer track's remaining
    // pixels become seeds of the next round, so growth can never creep across a source.
    let mut excluded = ignore.clone();
    Zip::from(&mut excluded)
        .and(&mask)
        .for_each(|e, &m| *e |= m);
    let grown: Vec<(usize, usize)> = seeds
        .iter()
        .flat_map(|&(r, c)| neighbours8(r, c, rows, cols))
        .filter(|&(nr, nc)| {
            !excluded[[nr, nc]]
                && is_sharp(
                    frame, variance, &excluded, nr, nc, GROW_SIGMA, sharpness, false,
                )
        })
        .collect();
    for (r, c) in grown {
        mask[[r, c]] = true;
    }
    mask
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

/// Whether the pixel stands `sigma` noise sigmas above its 5×5 median, and above its
/// "support" — the brighter of the dimmer neighbours of each opposite pair (up/down,
/// left/right and both diagonals) — by `sigma` noise sigmas and by `contrast` of that
/// excess. However bright, an imaged source is blurred over more than a pixel, so some
/// line through every pixel of it has light on both sides (a peak in every direction, a
/// plateau's edge along the edge); a cosmic-ray hit or track has, on every line through
/// it, at least one dark side — except along the track, where both sides may be lit, but
/// then it also has a line across the track with both sides dark, and that pixel is only
/// reached by growth from the track's end. Medians and the noise skip pixels in `skip`.
#[allow(clippy::too_many_arguments)]
fn is_sharp(
    frame: &Array2<f32>,
    variance: &Array2<f32>,
    skip: &Array2<bool>,
    r: usize,
    c: usize,
    sigma: f32,
    contrast: f32,
    allow_single: bool,
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
    // Light on two opposite sides: the dimmer of each opposite pair, the brighter pair kept.
    let mut support = f32::NEG_INFINITY;
    let mut single = f32::NEG_INFINITY;
    for (dr, dc) in [(1isize, 0isize), (0, 1), (1, 1), (1, -1)] {
        match (trusted(dr, dc), trusted(-dr, -dc)) {
            (Some(a), Some(b)) => support = support.max(a.min(b)),
            (Some(a), None) | (None, Some(a)) => single = single.max(a),
            (None, None) => {}
        }
    }
    if support == f32::NEG_INFINITY && allow_single {
        // No complete pair of trusted neighbours: compare with the brightest single one.
        support = single;
    }
    if support == f32::NEG_INFINITY {
        return false;
    }
    let drop = v - support;
    drop > sigma * noise && drop > contrast * excess
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
        let m = find_cosmic_rays(&f, &var, &ignore, None, 6.0, 0.7);
        assert!(m[[10, 10]] && m[[20, 20]] && m[[20, 21]]);
        assert_eq!(m.iter().filter(|&&b| b).count(), 3);
    }

    #[test]
    fn bright_narrow_tumour_peak_is_never_eaten() {
        // A peak with sigma one pixel at SNR in the thousands.
        let f = gaussian(41, 41, 20.5, 20.5, 1.0, 1.0e6, 100.0);
        let var = f.mapv(|v| v.max(1.0));
        let ignore = Array2::from_elem(f.dim(), false);
        let m = find_cosmic_rays(&f, &var, &ignore, None, 6.0, 0.7);
        assert!(!m.iter().any(|&b| b));
    }

    #[test]
    fn hit_on_top_of_a_tumour_is_found() {
        let mut f = gaussian(41, 41, 20.5, 20.5, 3.0, 1.0e4, 100.0);
        f[[17, 22]] += 8000.0;
        let var = f.mapv(|v| v.max(1.0));
        let ignore = Array2::from_elem(f.dim(), false);
        let m = find_cosmic_rays(&f, &var, &ignore, None, 6.0, 0.7);
        assert!(m[[17, 22]]);
        assert!(!m[[20, 20]]);
    }
}
