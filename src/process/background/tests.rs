//! Unit tests of the background mesh.

use super::*;

#[test]
fn linear_gradient_is_reproduced_inside() {
    let f = Array2::from_shape_fn((128, 160), |(r, c)| 100.0 + 2.0 * c as f32 + 0.5 * r as f32);
    let none = Array2::from_elem(f.dim(), false);
    let m = BackgroundModel::fit(&f, &none, 32, 3.0);
    let map = m.map();
    for r in 16..112 {
        for c in 16..144 {
            assert!((map[[r, c]] - f[[r, c]]).abs() < 1e-2, "{r} {c}");
        }
    }
}

#[test]
fn masked_source_does_not_leak_into_the_background() {
    let mut f = Array2::from_elem((96, 96), 10.0f32);
    let mut mask = Array2::from_elem(f.dim(), false);
    for r in 40..56 {
        for c in 40..56 {
            f[[r, c]] = 1.0e4;
            mask[[r, c]] = true;
        }
    }
    let m = BackgroundModel::fit(&f, &mask, 32, 3.0);
    assert!(m.map().iter().all(|&v| (v - 10.0).abs() < 1e-3));
}

#[test]
fn fully_masked_cell_is_filled_and_counted() {
    let f = Array2::from_elem((64, 64), 5.0f32);
    let mut mask = Array2::from_elem(f.dim(), false);
    for r in 0..32 {
        for c in 0..32 {
            mask[[r, c]] = true;
        }
    }
    let m = BackgroundModel::fit(&f, &mask, 32, 3.0);
    assert_eq!(m.filled_cells, 1);
    assert!((m.map()[[5, 5]] - 5.0).abs() < 1e-4);
}

/// A flat noisy background of `level` with pixel noise `sd` (a fixed pseudo-random
/// sequence).
fn noisy(dim: (usize, usize), level: f32, sd: f32) -> Array2<f32> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f32 / (1u64 << 53) as f32
    };
    // Sum of 12 uniforms − 6: unit variance, near enough Gaussian.
    Array2::from_shape_fn(dim, |_| {
        level + sd * ((0..12).map(|_| uniform()).sum::<f32>() - 6.0)
    })
}

#[test]
fn bright_source_over_a_third_of_a_cell_is_clipped_away() {
    // An unmasked source whose core covers a third of one cell: a plane fitted before
    // clipping tilts toward it and keeps it; clipping about the median first does not.
    let mut f = noisy((96, 96), 1000.0, 50.0);
    for r in 32..64 {
        for c in 32..64 {
            let d2 = ((r as f32 - 47.5).powi(2) + (c as f32 - 47.5).powi(2)) / 36.0;
            f[[r, c]] += 2.0e5 * (-0.5 * d2).exp();
        }
    }
    let none = Array2::from_elem(f.dim(), false);
    let m = BackgroundModel::fit(&f, &none, 32, 3.0);
    let centre = m.mesh[[1, 1]];
    assert!(
        (centre - 1000.0).abs() < 60.0,
        "cell under the source: {centre}"
    );
}

#[test]
fn cell_a_source_fills_is_taken_from_its_neighbours_and_counted() {
    // A source broad and bright enough to cover a whole cell: no clipping inside the cell
    // finds the background, so the cell is judged against its neighbours.
    let mut f = noisy((160, 160), 1000.0, 50.0);
    for r in 64..96 {
        for c in 64..96 {
            f[[r, c]] += 5.0e4;
        }
    }
    let none = Array2::from_elem(f.dim(), false);
    let m = BackgroundModel::fit(&f, &none, 32, 3.0);
    assert_eq!(m.filled_cells, 1);
    let v = m.map()[[80, 80]];
    assert!(
        (v - 1000.0).abs() < 60.0,
        "background under the source: {v}"
    );
    // A smooth rise of the background itself (a mouse's glow, a few hundred above its
    // surroundings over a cell) is not mistaken for a source.
    let glow = Array2::from_shape_fn((160, 160), |(r, c)| {
        let d2 = ((r as f32 - 80.0).powi(2) + (c as f32 - 80.0).powi(2)) / (2.0 * 40.0f32.powi(2));
        400.0 * (-d2).exp()
    });
    let g = noisy((160, 160), 1000.0, 100.0) + &glow;
    assert_eq!(BackgroundModel::fit(&g, &none, 32, 3.0).filled_cells, 0);
}
