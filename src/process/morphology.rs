//! Geometry kernels on images and masks, for finding the mice in a photograph: block means,
//! Otsu's threshold, the stage's quadratic surface, the Euclidean distance transform,
//! erosion, dilation, hole filling, growth of labels, and the watershed of a distance
//! transform from its significant maxima.
//!
//! Owns: the kernels only, each pure (arrays in, arrays out). What they are used for, and
//! with which lengths, is `subjects`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use ndarray::Array2;

use super::surface::{evaluate, least_squares, quadratic_terms};

/// Mean over `f × f` blocks (partial blocks at the right and bottom average what they have).
pub(super) fn block_average(img: &Array2<f32>, f: usize) -> Array2<f32> {
    if f <= 1 {
        return img.clone();
    }
    let (rows, cols) = img.dim();
    let (br, bc) = (rows.div_ceil(f), cols.div_ceil(f));
    let mut sum = Array2::<f64>::zeros((br, bc));
    let mut count = Array2::<u32>::zeros((br, bc));
    for ((r, c), &v) in img.indexed_iter() {
        sum[[r / f, c / f]] += v as f64;
        count[[r / f, c / f]] += 1;
    }
    Array2::from_shape_fn((br, bc), |p| (sum[p] / count[p] as f64) as f32)
}

/// 3 × 3 mean with the edge pixels averaging what they have.
pub(super) fn box3(img: &Array2<f32>) -> Array2<f32> {
    let (rows, cols) = img.dim();
    Array2::from_shape_fn((rows, cols), |(r, c)| {
        let mut acc = 0.0f64;
        let mut n = 0u32;
        for rr in r.saturating_sub(1)..=(r + 1).min(rows - 1) {
            for cc in c.saturating_sub(1)..=(c + 1).min(cols - 1) {
                acc += img[[rr, cc]] as f64;
                n += 1;
            }
        }
        (acc / n as f64) as f32
    })
}

/// Otsu's threshold over a 256-bin histogram spanning the 0.5th to 99.5th percentile.
pub(super) fn otsu(img: &Array2<f32>) -> Option<f32> {
    let mut v: Vec<f32> = img.iter().copied().filter(|x| x.is_finite()).collect();
    if v.len() < 16 {
        return None;
    }
    let (k_lo, k_hi) = (v.len() / 200, v.len() - 1 - v.len() / 200);
    let hi = *v.select_nth_unstable_by(k_hi, f32::total_cmp).1 as f64;
    let lo = *v[..k_hi].select_nth_unstable_by(k_lo, f32::total_cmp).1 as f64;
    if hi <= lo {
        return None;
    }
    const BINS: usize = 256;
    let width = (hi - lo) / BINS as f64;
    let mut hist = [0f64; BINS];
    for &x in &v {
        let b = (((x as f64 - lo) / width).floor().max(0.0) as usize).min(BINS - 1);
        hist[b] += 1.0;
    }
    let total: f64 = hist.iter().sum();
    let sum_all: f64 = hist.iter().enumerate().map(|(i, h)| i as f64 * h).sum();
    let (mut w0, mut sum0, mut best, mut best_t) = (0.0, 0.0, -1.0, 0usize);
    for (t, &h) in hist.iter().enumerate().take(BINS - 1) {
        w0 += h;
        sum0 += t as f64 * h;
        let w1 = total - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let m0 = sum0 / w0;
        let m1 = (sum_all - sum0) / w1;
        let between = w0 * w1 * (m0 - m1).powi(2);
        if between > best {
            best = between;
            best_t = t;
        }
    }
    (best >= 0.0).then(|| (lo + (best_t + 1) as f64 * width) as f32)
}

/// A quadratic surface through the stage (the pixels of `flat` below `threshold`), fitted
/// to `img` with one round of 3-sigma clipping; evaluated on the whole grid.
pub(super) fn fit_stage_surface(
    img: &Array2<f32>,
    flat: &Array2<f32>,
    threshold: f32,
) -> Option<Array2<f32>> {
    let (rows, cols) = img.dim();
    let norm = |r: usize, c: usize| {
        (
            2.0 * (c as f64 + 0.5) / cols as f64 - 1.0,
            2.0 * (r as f64 + 0.5) / rows as f64 - 1.0,
        )
    };
    let step = ((rows * cols) as f64 / 40_000.0).sqrt().floor().max(1.0) as usize;
    let mut samples: Vec<([f64; 6], f64)> = Vec::new();
    for r in (0..rows).step_by(step) {
        for c in (0..cols).step_by(step) {
            if flat[[r, c]] < threshold {
                let (x, y) = norm(r, c);
                samples.push((quadratic_terms(x, y), img[[r, c]] as f64));
            }
        }
    }
    let mut coef = least_squares(&samples)?;
    let residual =
        |t: &[f64; 6], v: f64, k: &[f64; 6]| v - t.iter().zip(k).map(|(a, b)| a * b).sum::<f64>();
    let var = samples
        .iter()
        .map(|(t, v)| residual(t, *v, &coef).powi(2))
        .sum::<f64>()
        / samples.len() as f64;
    let limit = 3.0 * var.sqrt();
    samples.retain(|(t, v)| residual(t, *v, &coef).abs() <= limit);
    coef = least_squares(&samples).unwrap_or(coef);
    Some(Array2::from_shape_fn((rows, cols), |(r, c)| {
        let (x, y) = norm(r, c);
        evaluate(&coef, x, y) as f32
    }))
}

/// Squared distance transform of a sampled function along one line (Felzenszwalb &
/// Huttenlocher): `d[q] = min_p (q − p)² + f[p]`.
pub(super) fn edt_line(f: &[f64], d: &mut [f64], v: &mut [usize], z: &mut [f64]) {
    let n = f.len();
    let mut k = 0usize;
    v[0] = 0;
    z[0] = f64::NEG_INFINITY;
    z[1] = f64::INFINITY;
    for q in 1..n {
        let parabola =
            |p: usize| ((f[q] + (q * q) as f64) - (f[p] + (p * p) as f64)) / (2.0 * (q - p) as f64);
        let mut s = parabola(v[k]);
        // z[0] = −∞, so this stops at k = 0 at the latest.
        while s <= z[k] {
            k -= 1;
            s = parabola(v[k]);
        }
        k += 1;
        v[k] = q;
        z[k] = s;
        z[k + 1] = f64::INFINITY;
    }
    k = 0;
    for (q, dq) in d.iter_mut().enumerate() {
        while z[k + 1] < q as f64 {
            k += 1;
        }
        let p = v[k];
        *dq = (q as f64 - p as f64).powi(2) + f[p];
    }
}

/// Euclidean distance (pixels) from every pixel to the nearest `true` pixel of `sources`;
/// `f32::INFINITY` where there is none. Pixels beyond the image are not sources.
pub(super) fn distance_to(sources: &Array2<bool>) -> Array2<f32> {
    let (rows, cols) = sources.dim();
    const FAR: f64 = 1e18;
    let n = rows.max(cols);
    let (mut f, mut d, mut v, mut z) = (
        vec![0.0; n],
        vec![0.0; n],
        vec![0usize; n],
        vec![0.0; n + 1],
    );
    let mut sq = Array2::<f64>::from_elem((rows, cols), FAR);
    for c in 0..cols {
        for r in 0..rows {
            f[r] = if sources[[r, c]] { 0.0 } else { FAR };
        }
        edt_line(&f[..rows], &mut d[..rows], &mut v, &mut z);
        for r in 0..rows {
            sq[[r, c]] = d[r];
        }
    }
    for r in 0..rows {
        for c in 0..cols {
            f[c] = sq[[r, c]];
        }
        edt_line(&f[..cols], &mut d[..cols], &mut v, &mut z);
        for c in 0..cols {
            sq[[r, c]] = d[c];
        }
    }
    sq.mapv(|s| {
        if s >= FAR / 2.0 {
            f32::INFINITY
        } else {
            s.sqrt() as f32
        }
    })
}

/// Erosion by a disk of radius `r` pixels: pixels farther than `r` from every pixel off the
/// mask. The image border does not erode.
pub(super) fn erode_by(mask: &Array2<bool>, r: f64) -> Array2<bool> {
    distance_to(&mask.mapv(|m| !m)).mapv(|d| d as f64 > r)
}

/// Dilation by a disk of radius `r` pixels.
pub(super) fn dilate_by(mask: &Array2<bool>, r: f64) -> Array2<bool> {
    distance_to(mask).mapv(|d| d as f64 <= r)
}

/// Fill the holes of a mask: off-mask pixels not connected (4-connected) to the border.
pub(super) fn fill_holes(mask: &Array2<bool>) -> Array2<bool> {
    let (rows, cols) = mask.dim();
    let mut outside = Array2::from_elem((rows, cols), false);
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for r in 0..rows {
        for c in [0, cols - 1] {
            stack.push((r, c));
        }
    }
    for c in 0..cols {
        for r in [0, rows - 1] {
            stack.push((r, c));
        }
    }
    while let Some((r, c)) = stack.pop() {
        if mask[[r, c]] || outside[[r, c]] {
            continue;
        }
        outside[[r, c]] = true;
        if r > 0 {
            stack.push((r - 1, c));
        }
        if r + 1 < rows {
            stack.push((r + 1, c));
        }
        if c > 0 {
            stack.push((r, c - 1));
        }
        if c + 1 < cols {
            stack.push((r, c + 1));
        }
    }
    outside.mapv(|o| !o)
}

/// Grow labelled pixels over `allowed`, nearest first (8-connected steps of 1 or √2
/// pixels), to at most `limit_px` from where they started; pixels of `free` cost nothing to
/// cross. Each pixel takes the label that reaches it first.
pub(super) fn grow(
    labels: &Array2<u32>,
    allowed: &Array2<bool>,
    free: Option<&Array2<bool>>,
    limit_px: f64,
) -> Array2<u32> {
    let (rows, cols) = labels.dim();
    let mut out = labels.clone();
    let mut cost = Array2::from_elem((rows, cols), f64::INFINITY);
    // Keys: cost in 1/256 px (smallest first), then arrival order (FIFO).
    let key = |d: f64| Reverse((d * 256.0) as u64);
    let mut heap: BinaryHeap<(Reverse<u64>, Reverse<u64>, usize, usize)> = BinaryHeap::new();
    let mut tick = 0u64;
    for ((r, c), &l) in labels.indexed_iter() {
        if l > 0 {
            cost[[r, c]] = 0.0;
            // Only the edge of a labelled area can reach anything.
            if neighbours(r, c, rows, cols)
                .any(|(nr, nc)| allowed[[nr, nc]] && labels[[nr, nc]] == 0)
            {
                heap.push((key(0.0), Reverse(tick), r, c));
                tick += 1;
            }
        }
    }
    while let Some((Reverse(k), _, r, c)) = heap.pop() {
        let here = cost[[r, c]];
        if (k as f64) > here * 256.0 + 0.5 {
            continue; // a stale entry: reached more cheaply since
        }
        for (nr, nc) in neighbours(r, c, rows, cols) {
            if !allowed[[nr, nc]] || labels[[nr, nc]] > 0 {
                continue;
            }
            let step = if free.is_some_and(|f| f[[nr, nc]]) {
                0.0
            } else if nr != r && nc != c {
                std::f64::consts::SQRT_2
            } else {
                1.0
            };
            let next = here + step;
            if next <= limit_px && next < cost[[nr, nc]] {
                cost[[nr, nc]] = next;
                out[[nr, nc]] = out[[r, c]];
                heap.push((key(next), Reverse(tick), nr, nc));
                tick += 1;
            }
        }
    }
    out
}

const NEIGHBOURS: [(isize, isize); 8] = [
    (-1, -1),
    (-1, 0),
    (-1, 1),
    (0, -1),
    (0, 1),
    (1, -1),
    (1, 0),
    (1, 1),
];

pub(super) fn neighbours(
    r: usize,
    c: usize,
    rows: usize,
    cols: usize,
) -> impl Iterator<Item = (usize, usize)> {
    NEIGHBOURS.iter().filter_map(move |&(dr, dc)| {
        let (nr, nc) = (r as isize + dr, c as isize + dc);
        (nr >= 0 && nc >= 0 && (nr as usize) < rows && (nc as usize) < cols)
            .then_some((nr as usize, nc as usize))
    })
}

/// Seeds for the split: the peak of every distance-transform maximum whose dynamic (its
/// height above the saddle where it meets a higher one) is at least `depth_px`, plus the
/// highest peak of each component. Found by merging level sets from the top down.
pub(super) fn markers(
    dist: &Array2<f32>,
    components: &Array2<u32>,
    depth_px: f64,
) -> Vec<(usize, usize)> {
    let (rows, cols) = dist.dim();
    let idx = |r: usize, c: usize| r * cols + c;
    let mut order: Vec<(usize, usize)> = components
        .indexed_iter()
        .filter(|(_, &l)| l > 0)
        .map(|(p, _)| p)
        .collect();
    order.sort_by(|a, b| dist[*b].total_cmp(&dist[*a]).then(a.cmp(b)));
    let mut parent: Vec<usize> = (0..rows * cols).collect();
    let mut peak: Vec<(f32, (usize, usize))> = vec![(0.0, (0, 0)); rows * cols];
    let mut done = vec![false; rows * cols];
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut seeds = Vec::new();
    for &(r, c) in &order {
        let p = idx(r, c);
        let level = dist[[r, c]];
        peak[p] = (level, (r, c));
        done[p] = true;
        for (nr, nc) in neighbours(r, c, rows, cols) {
            let q = idx(nr, nc);
            if !done[q] {
                continue;
            }
            let (a, b) = (find(&mut parent, p), find(&mut parent, q));
            if a == b {
                continue;
            }
            // The lower peak ends here; it is a seed when it rose far enough above this saddle.
            let (hi, lo) = if peak[a].0 > peak[b].0 || (peak[a].0 == peak[b].0 && a < b) {
                (a, b)
            } else {
                (b, a)
            };
            if (peak[lo].0 - level) as f64 >= depth_px {
                seeds.push(peak[lo].1);
            }
            parent[lo] = hi;
        }
    }
    let mut roots: Vec<usize> = order
        .iter()
        .map(|&(r, c)| find(&mut parent, idx(r, c)))
        .collect();
    roots.sort_unstable();
    roots.dedup();
    seeds.extend(roots.into_iter().map(|root| peak[root].1));
    seeds.sort_unstable();
    seeds
}

/// Grow the seeds over their components, highest distance first (a watershed of the
/// inverted distance transform): each pixel joins the seed that reaches it first.
/// Labels are 1 + the seed's index.
pub(super) fn flood(
    dist: &Array2<f32>,
    components: &Array2<u32>,
    seeds: &[(usize, usize)],
) -> Array2<u32> {
    let (rows, cols) = dist.dim();
    let mut labels = Array2::<u32>::zeros((rows, cols));
    // Keys: distance in 1/256 px (finite inside a component), then arrival order (FIFO).
    let key = |d: f32| (d.min(1.0e6) * 256.0) as u64;
    let mut heap: BinaryHeap<(u64, Reverse<u64>, usize, usize)> = BinaryHeap::new();
    let mut tick = 0u64;
    for (i, &(r, c)) in seeds.iter().enumerate() {
        if components[[r, c]] > 0 && labels[[r, c]] == 0 {
            labels[[r, c]] = i as u32 + 1;
            heap.push((key(dist[[r, c]]), Reverse(tick), r, c));
            tick += 1;
        }
    }
    while let Some((_, _, r, c)) = heap.pop() {
        let l = labels[[r, c]];
        let comp = components[[r, c]];
        for (nr, nc) in neighbours(r, c, rows, cols) {
            if components[[nr, nc]] == comp && labels[[nr, nc]] == 0 {
                labels[[nr, nc]] = l;
                heap.push((key(dist[[nr, nc]]), Reverse(tick), nr, nc));
                tick += 1;
            }
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_transform_matches_brute_force() {
        let mask = Array2::from_shape_fn((17, 23), |(r, c)| (r * 7 + c * 3) % 11 == 0);
        let d = distance_to(&mask);
        for ((r, c), &v) in d.indexed_iter() {
            let brute = mask
                .indexed_iter()
                .filter(|(_, &m)| m)
                .map(|((rr, cc), _)| {
                    ((r as f64 - rr as f64).powi(2) + (c as f64 - cc as f64).powi(2)).sqrt()
                })
                .fold(f64::INFINITY, f64::min);
            assert!((v as f64 - brute).abs() < 1e-4, "({r},{c}): {v} vs {brute}");
        }
        assert!(distance_to(&Array2::from_elem((4, 4), false))
            .iter()
            .all(|d| d.is_infinite()));
    }

    #[test]
    fn growth_stops_at_its_limit_and_crosses_free_pixels_for_nothing() {
        // A row: label 1 at column 0, allowed pixels 0..=9 except column 5.
        let mut labels = Array2::<u32>::zeros((1, 12));
        labels[[0, 0]] = 1;
        let allowed = Array2::from_shape_fn((1, 12), |(_, c)| c <= 9 && c != 5);
        let grown = grow(&labels, &allowed, None, 3.0);
        let row: Vec<u32> = grown.iter().copied().collect();
        assert_eq!(row, [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        // Free pixels (columns 1..=3) cost nothing: the limit counts from column 4.
        let free = Array2::from_shape_fn((1, 12), |(_, c)| (1..=3).contains(&c));
        let grown = grow(&labels, &allowed, Some(&free), 1.0);
        let row: Vec<u32> = grown.iter().copied().collect();
        assert_eq!(row, [1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]);
        // Two labels meet halfway; a gap (column 5) is never crossed.
        labels[[0, 9]] = 2;
        let grown = grow(&labels, &allowed, None, 10.0);
        let row: Vec<u32> = grown.iter().copied().collect();
        assert_eq!(row, [1, 1, 1, 1, 1, 0, 2, 2, 2, 2, 0, 0]);
    }

    #[test]
    fn otsu_splits_two_levels() {
        let img = Array2::from_shape_fn((40, 40), |(r, _)| if r < 10 { 900.0 } else { 100.0 });
        let t = otsu(&img).unwrap();
        assert!(t > 100.0 && t <= 900.0, "{t}");
        assert!(otsu(&Array2::from_elem((40, 40), 5.0)).is_none());
    }

    #[test]
    fn holes_are_filled_and_the_outside_is_not() {
        let mut mask = Array2::from_elem((9, 9), false);
        for r in 2..7 {
            for c in 2..7 {
                mask[[r, c]] = !(r == 4 && c == 4);
            }
        }
        let filled = fill_holes(&mask);
        assert!(filled[[4, 4]]);
        assert!(!filled[[0, 0]] && !filled[[1, 4]]);
        assert_eq!(filled.iter().filter(|&&m| m).count(), 25);
    }
}
