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

use ndarray::Array2;
use rayon::prelude::*;

use super::filters::window_median;

/// Threshold for growing a hit into its neighbours, noise sigmas.
const GROW_SIGMA: f32 = 3.0;

/// Thresholds of the cosmic-ray search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosmicSettings {
    /// A hit stands this many noise sigmas above its 5×5 median.
    pub sigma: f32,
    /// "Dark" means at least this share of the pixel's excess below it.
    pub contrast: f32,
    /// The same for the line across a track; may be lower where no real source is
    /// narrower than `FINE_GRID_SOURCE_SIGMA_PX` (see [`CosmicSettings::for_grid`]).
    pub across_contrast: f32,
}

/// On a grid where the narrowest real source has a sigma of at least this many pixels, a
/// source's vertical and horizontal neighbours are within a few per cent of each pixel's
/// value, so a track crossing a pixel is recognised with a lower contrast.
pub const FINE_GRID_SOURCE_SIGMA_PX: f64 = 1.5;
/// The across-track contrast on such a grid.
const FINE_GRID_ACROSS_CONTRAST: f32 = 0.45;

impl CosmicSettings {
    /// Settings for a grid whose narrowest real source has `min_source_sigma_px`.
    pub fn for_grid(sigma: f64, contrast: f64, min_source_sigma_px: f64) -> CosmicSettings {
        let contrast = contrast as f32;
        CosmicSettings {
            sigma: sigma as f32,
            contrast,
            across_contrast: if min_source_sigma_px >= FINE_GRID_SOURCE_SIGMA_PX {
                FINE_GRID_ACROSS_CONTRAST.min(contrast)
            } else {
                contrast
            },
        }
    }
}

/// Find cosmic-ray pixels in `frame` (any units) with per-pixel `variance` (units²).
/// Pixels in `ignore` (saturated, known bad) are never reported and never used as
/// neighbours. With `only_near`, hits are sought only at those pixels (a later round looks
/// for the rest of the tracks found by the previous one, nowhere else).
pub fn find_cosmic_rays(
    frame: &Array2<f32>,
    variance: &Array2<f32>,
    ignore: &Array2<bool>,
    only_near: Option<&[(usize, usize)]>,
    settings: &CosmicSettings,
) -> Array2<bool> {
    let mut untrusted = ignore.clone();
    let mut mask = Array2::from_elem(frame.dim(), false);
    for p in find_hits(frame, variance, &mut untrusted, only_near, settings) {
        mask[p] = true;
    }
    mask
}

/// The hits of [`find_cosmic_rays`] as a list; each hit is also marked in `untrusted` (which
/// plays the part of `ignore` and must cover it). Touches only the pixels it looks at, so a
/// round limited by `only_near` costs nothing per frame pixel.
pub fn find_hits(
    frame: &Array2<f32>,
    variance: &Array2<f32>,
    untrusted: &mut Array2<bool>,
    only_near: Option<&[(usize, usize)]>,
    settings: &CosmicSettings,
) -> Vec<(usize, usize)> {
    let (rows, cols) = frame.dim();
    let sigma = settings.sigma;
    let ignore: &Array2<bool> = untrusted;
    // Seeds: the brightest pixel of their 3×3 neighbourhood that pass the sharpness test.
    let is_seed = |r: usize, c: usize| -> bool {
        if ignore[[r, c]] {
            return false;
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
        local_max
            && v - mean8 > 0.5 * sigma * variance[[r, c]].max(0.0).sqrt()
            && is_sharp(
                frame,
                variance,
                ignore,
                r,
                c,
                settings,
                settings.sigma,
                true,
            )
    };
    let seeds: Vec<(usize, usize)> = match only_near {
        Some(list) => list
            .par_iter()
            .copied()
            .filter(|&(r, c)| is_seed(r, c))
            .collect(),
        None => {
            let frame_s = frame.as_standard_layout();
            let fs = frame_s.as_slice().expect("standard layout");
            // Fast path over raw rows: only a pixel brighter than all eight neighbours can
            // be a seed...
            let mut seeds: Vec<(usize, usize)> = (1..rows.saturating_sub(1))
                .into_par_iter()
                .flat_map_iter(|r| {
                    let mut out = Vec::new();
                    for c in 1..cols.saturating_sub(1) {
                        let v = fs[r * cols + c];
                        let up = &fs[(r - 1) * cols + c - 1..(r - 1) * cols + c + 2];
                        let down = &fs[(r + 1) * cols + c - 1..(r + 1) * cols + c + 2];
                        let brightest = fs[r * cols + c - 1] <= v
                            && fs[r * cols + c + 1] <= v
                            && up.iter().all(|&w| w <= v)
                            && down.iter().all(|&w| w <= v);
                        if brightest && is_seed(r, c) {
                            out.push((r, c));
                        }
                    }
                    out
                })
                .collect();
            // ...except next to an untrusted pixel (which does not count as a neighbour) and
            // on the frame's border: those few are judged in full.
            let mut special: Vec<(usize, usize)> = ignore
                .indexed_iter()
                .filter(|(_, &u)| u)
                .flat_map(|((r, c), _)| neighbours8(r, c, rows, cols))
                .chain((0..cols).flat_map(|c| [(0, c), (rows - 1, c)]))
                .chain((0..rows).flat_map(|r| [(r, 0), (r, cols - 1)]))
                .collect();
            special.sort_unstable();
            special.dedup();
            seeds.extend(special.into_iter().filter(|&(r, c)| is_seed(r, c)));
            seeds.sort_unstable();
            seeds.dedup();
            seeds
        }
    };
    for &p in &seeds {
        untrusted[p] = true;
    }
    // Grow one pixel into the rest of a track: neighbours of a hit that are sharp too once
    // the hits are left out, judged only on complete pairs of trusted neighbours (a pixel
    // surrounded by hits is not judged at all). One step only: a longer track's remaining
    // pixels become seeds of the next round, so growth can never creep across a source.
    let mut grown: Vec<(usize, usize)> = seeds
        .iter()
        .flat_map(|&(r, c)| neighbours8(r, c, rows, cols))
        .filter(|&(nr, nc)| {
            !untrusted[[nr, nc]]
                && is_sharp(
                    frame, variance, untrusted, nr, nc, settings, GROW_SIGMA, false,
                )
        })
        .collect();
    grown.sort_unstable();
    grown.dedup();
    for &p in &grown {
        untrusted[p] = true;
    }
    let mut hits = seeds;
    hits.extend(grown);
    hits
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

/// Whether the pixel stands `sigma` noise sigmas above its 5×5 median and is sharper than
/// anything the optics can image. "Dark" below means at least `contrast` of the pixel's
/// excess (and `sigma` noise sigmas) below it. The pixel is a hit when either
/// - every line through it (vertical, horizontal, both diagonals) has a dark side — an
///   isolated hit, a track's end, the corner of an L; or
/// - the vertical or the horizontal line through it is dark on both sides — the middle of
///   a track, lit along the track but dark across it.
///
/// However bright, an imaged source is blurred over more than a pixel: some line through
/// each of its pixels is lit on both sides (a peak in every direction, a plateau's edge
/// along the edge), and the vertical and horizontal lines through it always have a lit
/// side. Medians and the noise skip pixels in `skip`.
#[allow(clippy::too_many_arguments)]
fn is_sharp(
    frame: &Array2<f32>,
    variance: &Array2<f32>,
    skip: &Array2<bool>,
    r: usize,
    c: usize,
    settings: &CosmicSettings,
    sigma: f32,
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
    // For each line through the pixel (vertical, horizontal, both diagonals): the dimmer
    // and the brighter of its two neighbours.
    let mut support = f32::NEG_INFINITY; // brightest "dimmer side": light on both sides
    let mut across = f32::INFINITY; // dimmest "brighter side" of the vertical/horizontal lines
    let mut single = f32::NEG_INFINITY;
    for (i, (dr, dc)) in [(1isize, 0isize), (0, 1), (1, 1), (1, -1)]
        .into_iter()
        .enumerate()
    {
        match (trusted(dr, dc), trusted(-dr, -dc)) {
            (Some(a), Some(b)) => {
                support = support.max(a.min(b));
                if i < 2 {
                    across = across.min(a.max(b));
                }
            }
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
    let stands_out = |drop: f32, contrast: f32| drop > sigma * noise && drop > contrast * excess;
    // A hit: no line through it has light on both sides, or a track crosses it and the
    // line across the track (vertical or horizontal) is dark on both sides.
    stands_out(v - support, settings.contrast)
        || (across.is_finite() && stands_out(v - across, settings.across_contrast))
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
        let m = find_cosmic_rays(
            &f,
            &var,
            &ignore,
            None,
            &CosmicSettings::for_grid(6.0, 0.7, 1.0),
        );
        assert!(m[[10, 10]] && m[[20, 20]] && m[[20, 21]]);
        assert_eq!(m.iter().filter(|&&b| b).count(), 3);
    }

    #[test]
    fn bright_narrow_tumour_peak_is_never_eaten() {
        // A peak with sigma one pixel at SNR in the thousands.
        let f = gaussian(41, 41, 20.5, 20.5, 1.0, 1.0e6, 100.0);
        let var = f.mapv(|v| v.max(1.0));
        let ignore = Array2::from_elem(f.dim(), false);
        let m = find_cosmic_rays(
            &f,
            &var,
            &ignore,
            None,
            &CosmicSettings::for_grid(6.0, 0.7, 1.0),
        );
        assert!(!m.iter().any(|&b| b));
    }

    #[test]
    fn hit_on_top_of_a_tumour_is_found() {
        let mut f = gaussian(41, 41, 20.5, 20.5, 3.0, 1.0e4, 100.0);
        f[[17, 22]] += 8000.0;
        let var = f.mapv(|v| v.max(1.0));
        let ignore = Array2::from_elem(f.dim(), false);
        let m = find_cosmic_rays(
            &f,
            &var,
            &ignore,
            None,
            &CosmicSettings::for_grid(6.0, 0.7, 1.0),
        );
        assert!(m[[17, 22]]);
        assert!(!m[[20, 20]]);
    }
}
