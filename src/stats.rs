//! Percentiles of sorted samples, for summaries: the overlay's automatic display range
//! (the noise's median and MAD, the top of the colour map) and the PUBACK latencies
//! `lumiq status` shows.
//!
//! Owns: [`percentile_sorted`]. Does not own the pixel statistics of processing
//! ([`crate::process::stats`]: medians, MAD, sigma clipping on unsorted samples).

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
