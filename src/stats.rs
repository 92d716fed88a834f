//! Robust statistics on samples: medians, MAD, sigma clipping and quantiles of unsorted
//! pixel samples (processing, calibration), and percentiles of sorted samples for
//! summaries (the overlay's display range, the PUBACK latencies `lumiq status` shows).
//!
//! Owns: small numeric kernels on slices, used across the crate. Every function on
//! unsorted samples tolerates empty input by returning `None`; none allocates more than a
//! copy of its input.

/// Median of a slice, reordering it. `None` when empty. NaN sorts last.
pub fn median_in_place(values: &mut [f32]) -> Option<f32> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    let (lo, m, _) = values.select_nth_unstable_by(mid, f32::total_cmp);
    let upper = *m;
    if n % 2 == 1 {
        Some(upper)
    } else {
        let lower = lo.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        Some(0.5 * (lower + upper))
    }
}

/// The `q`-quantile (0..=1) of a slice by nearest rank, reordering it.
pub fn quantile_in_place(values: &mut [f32], q: f64) -> Option<f32> {
    if values.is_empty() {
        return None;
    }
    let k = ((values.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    let (_, v, _) = values.select_nth_unstable_by(k, f32::total_cmp);
    Some(*v)
}

/// Standard deviation estimated from the median absolute deviation (1.4826 · MAD).
pub fn mad_std(values: &[f32]) -> Option<f32> {
    let mut v = values.to_vec();
    let med = median_in_place(&mut v)?;
    for x in v.iter_mut() {
        *x = (*x - med).abs();
    }
    median_in_place(&mut v).map(|m| 1.4826 * m)
}

/// Statistics of a sample after iterative sigma clipping about the median.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClippedStats {
    pub mean: f64,
    pub median: f64,
    pub std: f64,
    /// Samples kept after clipping.
    pub n: usize,
}

impl ClippedStats {
    /// SExtractor's background mode estimate: `2.5·median − 1.5·mean` when the sample is
    /// mildly skewed, the median when it is strongly skewed (crowded field).
    pub fn mode(&self) -> f64 {
        if self.std > 0.0 && (self.mean - self.median).abs() / self.std > 0.3 {
            self.median
        } else {
            2.5 * self.median - 1.5 * self.mean
        }
    }
}

/// Iterative sigma clipping (at most `max_iter` rounds) of `values` about their median,
/// reordering the slice. `None` when nothing is left.
pub fn sigma_clipped_stats(
    values: &mut [f32],
    sigma: f64,
    max_iter: usize,
) -> Option<ClippedStats> {
    let mut len = values.len();
    let mut stats = None;
    for _ in 0..max_iter.max(1) {
        let sample = &mut values[..len];
        let median = median_in_place(sample)? as f64;
        let n = sample.len() as f64;
        let mean = sample.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = sample
            .iter()
            .map(|&x| (x as f64 - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0).max(1.0);
        let std = var.sqrt();
        stats = Some(ClippedStats {
            mean,
            median,
            std,
            n: len,
        });
        let lo = median - sigma * std;
        let hi = median + sigma * std;
        // Move kept samples to the front.
        let mut kept = 0;
        for i in 0..len {
            let x = values[i] as f64;
            if x >= lo && x <= hi {
                values.swap(kept, i);
                kept += 1;
            }
        }
        if kept == len || kept < 3 {
            break;
        }
        len = kept;
    }
    stats
}

/// The `percentile` (0–100) of `sorted` (ascending), interpolated linearly between the two
/// nearest ranks: 0 is the first value, 100 the last, 50 of an even count the mean of the
/// middle two.
///
/// # Panics
///
/// When `sorted` is empty.
pub fn percentile_sorted<T: Copy + Into<f64>>(sorted: &[T], percentile: f64) -> f64 {
    assert!(!sorted.is_empty(), "percentile of no values");
    let last = sorted.len() - 1;
    let position = percentile / 100.0 * last as f64;
    let below = position.floor() as usize;
    let above = (below + 1).min(last);
    let fraction = position - below as f64;
    sorted[below].into() * (1.0 - fraction) + sorted[above].into() * fraction
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median_in_place(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median_in_place(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median_in_place(&mut []), None);
    }

    #[test]
    fn clipping_ignores_outliers() {
        let mut v: Vec<f32> = (0..1000).map(|i| (i % 10) as f32).collect();
        v.extend(std::iter::repeat_n(1.0e6, 20));
        let s = sigma_clipped_stats(&mut v, 3.0, 10).unwrap();
        assert!((s.mean - 4.5).abs() < 0.01, "{s:?}");
        assert_eq!(s.n, 1000);
    }

    proptest! {
        #[test]
        fn median_lies_between_min_and_max(v in proptest::collection::vec(-1.0e6f32..1.0e6, 1..200)) {
            let lo = v.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let m = median_in_place(&mut v.clone()).unwrap();
            prop_assert!(m >= lo && m <= hi);
        }
    }

    #[test]
    fn percentiles_interpolate_between_ranks() {
        let v = [1.0, 2.0, 4.0, 8.0, 16.0];
        assert_eq!(percentile_sorted(&v, 0.0), 1.0);
        assert_eq!(percentile_sorted(&v, 100.0), 16.0);
        assert_eq!(percentile_sorted(&v, 50.0), 4.0);
        assert_eq!(percentile_sorted(&v, 25.0), 2.0);
        assert_eq!(percentile_sorted(&v, 87.5), 12.0);
        assert_eq!(percentile_sorted(&[1.0, 2.0, 3.0, 4.0], 50.0), 2.5);
        assert_eq!(percentile_sorted(&[7.0], 99.0), 7.0);
        let single: [f32; 3] = [0.5, 1.5, 2.5];
        assert_eq!(percentile_sorted(&single, 75.0), 2.0);
    }
}
