//! Image filters used by the core: separable Gaussian convolution, local medians,
//! morphological dilation and connected-component labelling.
//!
//! Owns: neighbourhood operations on `Array2` frames. Edges are handled by mirroring, so a
//! uniform frame stays uniform under every filter here.

use ndarray::{Array2, Axis};
use rayon::prelude::*;

use crate::stats::median_in_place;

/// A normalised Gaussian kernel of standard deviation `sigma_px`, truncated at 4σ.
pub fn gaussian_kernel(sigma_px: f64) -> Vec<f32> {
    if sigma_px <= 0.0 {
        return vec![1.0];
    }
    let half = (4.0 * sigma_px).ceil() as isize;
    let mut k: Vec<f64> = (-half..=half)
        .map(|i| (-(i as f64).powi(2) / (2.0 * sigma_px * sigma_px)).exp())
        .collect();
    let s: f64 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= s);
    k.into_iter().map(|v| v as f32).collect()
}

/// Mirror an index into `0..n` (…, 2, 1, 0, 1, 2, …, n-1, n-2, …).
#[inline]
pub fn mirror(i: isize, n: usize) -> usize {
    let n = n as isize;
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let mut j = i.rem_euclid(period);
    if j >= n {
        j = period - j;
    }
    j as usize
}

fn convolve_rows(src: &Array2<f32>, kernel: &[f32]) -> Array2<f32> {
    let (rows, cols) = src.dim();
    let half = (kernel.len() / 2) as isize;
    let mut out = Array2::<f32>::zeros((rows, cols));
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(src.axis_iter(Axis(0)).into_par_iter())
        .for_each(|(mut o, s)| {
            let s = s
                .as_slice()
                .map(|x| x.to_vec())
                .unwrap_or_else(|| s.to_vec());
            for c in 0..cols {
                let mut acc = 0.0f32;
                let start = c as isize - half;
                if start >= 0 && (c as isize + half) < cols as isize {
                    let window = &s[start as usize..start as usize + kernel.len()];
                    for (w, k) in window.iter().zip(kernel) {
                        acc += w * k;
                    }
                } else {
                    for (j, k) in kernel.iter().enumerate() {
                        acc += s[mirror(start + j as isize, cols)] * k;
                    }
                }
                o[c] = acc;
            }
        });
    out
}

/// Separable 2-D convolution with the same 1-D kernel along both axes (mirrored edges).
pub fn convolve_separable(src: &Array2<f32>, kernel: &[f32]) -> Array2<f32> {
    let horizontal = convolve_rows(src, kernel);
    let transposed = horizontal.t().as_standard_layout().to_owned();
    let vertical = convolve_rows(&transposed, kernel);
    vertical.t().as_standard_layout().to_owned()
}

/// Median of the `(2·half+1)²` window around (r, c), skipping pixels where `skip` is true.
/// `None` when every pixel of the window is skipped.
pub fn window_median(
    img: &Array2<f32>,
    skip: Option<&Array2<bool>>,
    r: usize,
    c: usize,
    half: usize,
    buf: &mut Vec<f32>,
) -> Option<f32> {
    let (rows, cols) = img.dim();
    buf.clear();
    let r0 = r.saturating_sub(half);
    let r1 = (r + half).min(rows - 1);
    let c0 = c.saturating_sub(half);
    let c1 = (c + half).min(cols - 1);
    for rr in r0..=r1 {
        for cc in c0..=c1 {
            if skip.is_some_and(|m| m[[rr, cc]]) {
                continue;
            }
            buf.push(img[[rr, cc]]);
        }
    }
    median_in_place(buf)
}

/// Dilate a mask with a square structuring element of the given radius (Chebyshev).
pub fn dilate(mask: &Array2<bool>, radius: usize) -> Array2<bool> {
    if radius == 0 {
        return mask.clone();
    }
    let (rows, cols) = mask.dim();
    // Separable: rows, then columns.
    let mut tmp = Array2::from_elem((rows, cols), false);
    for r in 0..rows {
        let mut last_true: Option<usize> = None;
        // Forward pass computes "any true within radius to the left", backward to the right.
        for c in 0..cols {
            if mask[[r, c]] {
                last_true = Some(c);
            }
            if last_true.is_some_and(|l| c - l <= radius) {
                tmp[[r, c]] = true;
            }
        }
        let mut next_true: Option<usize> = None;
        for c in (0..cols).rev() {
            if mask[[r, c]] {
                next_true = Some(c);
            }
            if next_true.is_some_and(|n| n - c <= radius) {
                tmp[[r, c]] = true;
            }
        }
    }
    let mut out = Array2::from_elem((rows, cols), false);
    for c in 0..cols {
        let mut last: Option<usize> = None;
        for r in 0..rows {
            if tmp[[r, c]] {
                last = Some(r);
            }
            if last.is_some_and(|l| r - l <= radius) {
                out[[r, c]] = true;
            }
        }
        let mut next: Option<usize> = None;
        for r in (0..rows).rev() {
            if tmp[[r, c]] {
                next = Some(r);
            }
            if next.is_some_and(|n| n - r <= radius) {
                out[[r, c]] = true;
            }
        }
    }
    out
}

/// Label the 8-connected components of `mask`: 0 is background, components are 1..=n in
/// raster order of their first pixel. Returns the label map and n.
pub fn label_components(mask: &Array2<bool>) -> (Array2<u32>, u32) {
    let (rows, cols) = mask.dim();
    let mut labels = Array2::<u32>::zeros((rows, cols));
    let mut next = 0u32;
    let mut stack = Vec::new();
    for r in 0..rows {
        for c in 0..cols {
            if !mask[[r, c]] || labels[[r, c]] != 0 {
                continue;
            }
            next += 1;
            labels[[r, c]] = next;
            stack.push((r, c));
            while let Some((pr, pc)) = stack.pop() {
                for dr in -1isize..=1 {
                    for dc in -1isize..=1 {
                        let nr = pr as isize + dr;
                        let nc = pc as isize + dc;
                        if nr < 0 || nc < 0 || nr >= rows as isize || nc >= cols as isize {
                            continue;
                        }
                        let (nr, nc) = (nr as usize, nc as usize);
                        if mask[[nr, nc]] && labels[[nr, nc]] == 0 {
                            labels[[nr, nc]] = next;
                            stack.push((nr, nc));
                        }
                    }
                }
            }
        }
    }
    (labels, next)
}

/// Mean over `f × f` blocks (partial blocks at the right and bottom edges average what
/// they have), and the variance of that mean from per-pixel variances.
pub fn block_mean(
    img: &Array2<f32>,
    variance: &Array2<f32>,
    f: usize,
) -> (Array2<f32>, Array2<f32>) {
    let (rows, cols) = img.dim();
    let (br, bc) = (rows.div_ceil(f), cols.div_ceil(f));
    let img = img.as_standard_layout();
    let variance = variance.as_standard_layout();
    let (iv, vv) = (
        img.as_slice().expect("standard layout"),
        variance.as_slice().expect("standard layout"),
    );
    // One block row at a time, in parallel: sums over the block's rows, then per block.
    let rows_out: Vec<(Vec<f32>, Vec<f32>)> = (0..br)
        .into_par_iter()
        .map(|by| {
            let (mut sum, mut var) = (vec![0.0f64; bc], vec![0.0f64; bc]);
            let r1 = ((by + 1) * f).min(rows);
            for r in by * f..r1 {
                let (ir, vr) = (&iv[r * cols..(r + 1) * cols], &vv[r * cols..(r + 1) * cols]);
                for (c, (&x, &w)) in ir.iter().zip(vr).enumerate() {
                    sum[c / f] += x as f64;
                    var[c / f] += w as f64;
                }
            }
            let h = (r1 - by * f) as f64;
            let mean = (0..bc)
                .map(|bx| (sum[bx] / (h * (((bx + 1) * f).min(cols) - bx * f) as f64)) as f32)
                .collect();
            let var_mean = (0..bc)
                .map(|bx| {
                    let n = h * (((bx + 1) * f).min(cols) - bx * f) as f64;
                    (var[bx] / (n * n)) as f32
                })
                .collect();
            (mean, var_mean)
        })
        .collect();
    let mean = Array2::from_shape_fn((br, bc), |(y, x)| rows_out[y].0[x]);
    let var_mean = Array2::from_shape_fn((br, bc), |(y, x)| rows_out[y].1[x]);
    (mean, var_mean)
}

/// Expand a label map made on `f × f` blocks back to the full `rows × cols` grid.
pub fn expand_blocks(labels: &Array2<u32>, f: usize, rows: usize, cols: usize) -> Array2<u32> {
    Array2::from_shape_fn((rows, cols), |(r, c)| labels[[r / f, c / f]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mirror_reflects_about_edges() {
        assert_eq!(mirror(-1, 5), 1);
        assert_eq!(mirror(5, 5), 3);
        assert_eq!(mirror(2, 5), 2);
    }

    #[test]
    fn labels_two_blobs() {
        let mut m = Array2::from_elem((6, 6), false);
        m[[0, 0]] = true;
        m[[1, 1]] = true; // diagonal: same component
        m[[4, 4]] = true;
        let (l, n) = label_components(&m);
        assert_eq!(n, 2);
        assert_eq!(l[[0, 0]], l[[1, 1]]);
        assert_ne!(l[[0, 0]], l[[4, 4]]);
    }

    #[test]
    fn block_mean_averages_and_scales_variance() {
        let img = Array2::from_shape_fn((5, 4), |(r, c)| (r * 4 + c) as f32);
        let var = Array2::from_elem((5, 4), 4.0f32);
        let (m, v) = block_mean(&img, &var, 2);
        assert_eq!(m.dim(), (3, 2));
        assert_eq!(m[[0, 0]], (0.0 + 1.0 + 4.0 + 5.0) / 4.0);
        assert_eq!(v[[0, 0]], 1.0); // 4 pixels of variance 4: mean has variance 16/16
        assert_eq!(m[[2, 1]], (18.0 + 19.0) / 2.0); // partial block of the last row
        assert_eq!(v[[2, 1]], 2.0);
        let e = expand_blocks(
            &Array2::from_shape_fn((3, 2), |(r, c)| (r * 2 + c) as u32),
            2,
            5,
            4,
        );
        assert_eq!(e[[4, 3]], 5);
        assert_eq!(e[[1, 1]], 0);
    }

    #[test]
    fn dilation_grows_by_radius() {
        let mut m = Array2::from_elem((9, 9), false);
        m[[4, 4]] = true;
        let d = dilate(&m, 2);
        assert_eq!(d.iter().filter(|&&b| b).count(), 25);
    }

    proptest! {
        #[test]
        fn smoothing_keeps_uniform_frames_uniform(level in -1000.0f32..1000.0, sigma in 0.5f64..4.0, rows in 3usize..30, cols in 3usize..30) {
            let f = Array2::from_elem((rows, cols), level);
            let s = convolve_separable(&f, &gaussian_kernel(sigma));
            for v in s.iter() {
                prop_assert!((v - level).abs() <= 1e-3 * level.abs().max(1.0));
            }
        }

        #[test]
        fn smoothing_conserves_the_sum_away_from_edges(amp in 1.0f32..1e5, sigma in 0.5f64..3.0) {
            let mut f = Array2::<f32>::zeros((41, 41));
            f[[20, 20]] = amp;
            let s = convolve_separable(&f, &gaussian_kernel(sigma));
            let total: f64 = s.iter().map(|&v| v as f64).sum();
            prop_assert!((total - amp as f64).abs() < 1e-4 * amp as f64);
        }
    }
}
