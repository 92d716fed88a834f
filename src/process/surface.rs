//! Quadratic surfaces `a + b·x + c·y + d·x² + e·xy + f·y²` fitted by least squares: the
//! stage under a photograph's uneven light (`morphology`) and the background under a
//! masked source, from the cells around it (`background`).
//!
//! Owns: the terms and the fit (normal equations solved by Gaussian elimination with
//! partial pivoting). Pure.

/// Terms of the quadratic surface in normalised coordinates.
pub fn quadratic_terms(x: f64, y: f64) -> [f64; 6] {
    [1.0, x, y, x * x, x * y, y * y]
}

/// Least-squares coefficients by the normal equations (Gaussian elimination with partial
/// pivoting); `None` when the samples do not determine them.
pub fn least_squares(samples: &[([f64; 6], f64)]) -> Option<[f64; 6]> {
    if samples.len() < 12 {
        return None;
    }
    let mut a = [[0.0f64; 7]; 6];
    for (t, v) in samples {
        for i in 0..6 {
            for j in 0..6 {
                a[i][j] += t[i] * t[j];
            }
            a[i][6] += t[i] * v;
        }
    }
    for col in 0..6 {
        let pivot = (col..6).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 * samples.len() as f64 {
            return None;
        }
        a.swap(col, pivot);
        let pivot_row = a[col];
        for (row, line) in a.iter_mut().enumerate() {
            if row != col {
                let f = line[col] / pivot_row[col];
                for (k, v) in line.iter_mut().enumerate().skip(col) {
                    *v -= f * pivot_row[k];
                }
            }
        }
    }
    let mut out = [0.0; 6];
    for i in 0..6 {
        out[i] = a[i][6] / a[i][i];
    }
    Some(out)
}

/// The surface of coefficients `coef` at (x, y).
pub fn evaluate(coef: &[f64; 6], x: f64, y: f64) -> f64 {
    quadratic_terms(x, y)
        .iter()
        .zip(coef)
        .map(|(t, k)| t * k)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quadratic_is_recovered_and_too_few_samples_are_refused() {
        let truth = [3.0, -1.0, 0.5, 0.25, -0.75, 2.0];
        let samples: Vec<([f64; 6], f64)> = (0..5)
            .flat_map(|i| (0..5).map(move |j| (i as f64 - 2.0, j as f64 - 2.0)))
            .map(|(x, y)| (quadratic_terms(x, y), evaluate(&truth, x, y)))
            .collect();
        let coef = least_squares(&samples).unwrap();
        for (c, t) in coef.iter().zip(&truth) {
            assert!((c - t).abs() < 1e-9, "{coef:?}");
        }
        assert!(least_squares(&samples[..11]).is_none());
        // Points on one line do not determine a surface.
        let line: Vec<([f64; 6], f64)> = (0..20)
            .map(|i| (quadratic_terms(i as f64, 0.0), i as f64))
            .collect();
        assert!(least_squares(&line).is_none());
    }
}
