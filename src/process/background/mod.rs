//! The spatially varying background (autoluminescence, light leaks, residual dark): a
//! mesh of sigma-clipped estimates (a plane fitted in each cell, evaluated at its centre)
//! over cells wider than a tumour, with sources masked, interpolated by cubic convolution
//! between cell centres, with its rms and its own error.
//!
//! A mouse's skin glows on its own, and that glow ends sharply at the body's outline: a
//! smooth mesh across the edge would leave a ridge inside the outline and a trough outside
//! it, which a detector takes for tumours. When the photograph gives the bodies,
//! [`SceneBackground`] (in `scene`) fits one mesh on the bodies and one off them, each
//! from its own pixels only, and joins them at the outlines.
//!
//! Owns: the model and its uncertainty. A linear gradient is reproduced exactly away from
//! the frame's outer half-cells; structure narrower than a cell is not followed, by design,
//! so a tumour's wings never leak into the background.

use ndarray::Array2;
use rayon::prelude::*;

use super::surface::{evaluate, least_squares, quadratic_terms};
use crate::stats::median_in_place;

mod scene;

pub use scene::SceneBackground;

/// At most about this many pixels of a cell enter its plane fit.
const MAX_SAMPLES_PER_CELL: usize = 4096;

/// Least fraction of a cell's pixels (of its pixels inside the fit's domain, when it has
/// one) that must be usable for the cell to be estimated.
const MIN_USABLE_FRACTION: f64 = 0.4;

/// Least fraction of a cell that must lie inside the fit's domain for the cell to be
/// estimated at all; cells with less are filled from their neighbours without counting as
/// filled (they hold no pixel the model is used at, or only a sliver of its edge).
const MIN_DOMAIN_FRACTION: f64 = 0.2;

/// A fitted background: mesh values at cell centres and how to interpolate them.
#[derive(Debug, Clone)]
pub struct BackgroundModel {
    /// Cell height and width, pixels (the frame is tiled by whole cells of equal size).
    pub cell_h_px: f64,
    pub cell_w_px: f64,
    pub rows: usize,
    pub cols: usize,
    /// Background at each cell's centre (a clipped plane fit), in the frame's units.
    pub mesh: Array2<f32>,
    /// Clipped residual standard deviation of one pixel per cell.
    pub mesh_rms: Array2<f32>,
    /// One-sigma error of each cell's value.
    pub mesh_err: Array2<f32>,
    /// Cells inside the domain that had too few usable pixels (sources, saturation) and
    /// were filled from their neighbours.
    pub filled_cells: usize,
    /// Cells (almost) wholly outside the domain, filled from their neighbours.
    pub outside_domain_cells: usize,
}

impl BackgroundModel {
    /// Fit the background of `frame`, ignoring pixels where `exclude` is true.
    pub fn fit(
        frame: &Array2<f32>,
        exclude: &Array2<bool>,
        box_px: usize,
        clip_sigma: f64,
    ) -> BackgroundModel {
        Self::fit_within(frame, None, exclude, box_px, clip_sigma)
    }

    /// Fit the background of `frame` from the pixels of `domain` (all when `None`) that
    /// `exclude` leaves. The model is meant to be used inside the domain only.
    pub fn fit_within(
        frame: &Array2<f32>,
        domain: Option<&Array2<bool>>,
        exclude: &Array2<bool>,
        box_px: usize,
        clip_sigma: f64,
    ) -> BackgroundModel {
        let (rows, cols) = frame.dim();
        let ny = ((rows as f64 / box_px.max(1) as f64).round() as usize).max(1);
        let nx = ((cols as f64 / box_px.max(1) as f64).round() as usize).max(1);
        let cell_h = rows as f64 / ny as f64;
        let cell_w = cols as f64 / nx as f64;
        let cells: Vec<(usize, usize)> =
            (0..ny).flat_map(|y| (0..nx).map(move |x| (y, x))).collect();
        // Per cell: Err(true) when it lies (almost) outside the domain, Err(false) when its
        // domain pixels are too few usable ones.
        let estimates: Vec<Result<(f32, f32, f32), bool>> = cells
            .par_iter()
            .map(|&(cy, cx)| {
                let r0 = (cy as f64 * cell_h).round() as usize;
                let c0 = (cx as f64 * cell_w).round() as usize;
                let r1 = (((cy + 1) as f64 * cell_h).round() as usize).min(rows);
                let c1 = (((cx + 1) as f64 * cell_w).round() as usize).min(cols);
                // Large cells (fine pixels) are sampled on a regular sub-grid: a few
                // thousand pixels pin a plane down as well as all of them, and the cell's
                // error below is computed from the pixels actually used.
                let n_cell = (r1 - r0) * (c1 - c0);
                let stride =
                    ((n_cell as f64 / MAX_SAMPLES_PER_CELL as f64).sqrt().floor() as usize).max(1);
                let mut sample: Vec<(f32, f32, f32)> =
                    Vec::with_capacity(n_cell / (stride * stride) + 1);
                // Offsets from the cell's nominal centre, where the mesh value is defined.
                let yc = (cy as f64 + 0.5) * cell_h - 0.5;
                let xc = (cx as f64 + 0.5) * cell_w - 0.5;
                let mut in_domain = 0usize;
                for r in (r0..r1).step_by(stride) {
                    for c in (c0..c1).step_by(stride) {
                        if domain.is_some_and(|d| !d[[r, c]]) {
                            continue;
                        }
                        in_domain += 1;
                        if !exclude[[r, c]] {
                            sample.push((
                                (c as f64 - xc) as f32,
                                (r as f64 - yc) as f32,
                                frame[[r, c]],
                            ));
                        }
                    }
                }
                let total = (r1 - r0).div_ceil(stride) * (c1 - c0).div_ceil(stride);
                if (in_domain as f64) < MIN_DOMAIN_FRACTION * total as f64 {
                    return Err(true);
                }
                if (sample.len() as f64) < MIN_USABLE_FRACTION * in_domain as f64 {
                    return Err(false);
                }
                clipped_plane(&mut sample, clip_sigma)
                    .map(|(v, rms, n)| (v as f32, rms as f32, (rms / (n as f64).sqrt()) as f32))
                    .ok_or(false)
            })
            .collect();
        let mut mesh = Array2::<f32>::zeros((ny, nx));
        let mut rms = Array2::<f32>::zeros((ny, nx));
        let mut err = Array2::<f32>::zeros((ny, nx));
        let mut valid = Array2::from_elem((ny, nx), false);
        let mut outside_domain = 0;
        for (&(cy, cx), e) in cells.iter().zip(&estimates) {
            match *e {
                Ok((m, s, e)) => {
                    mesh[[cy, cx]] = m;
                    rms[[cy, cx]] = s;
                    err[[cy, cx]] = e;
                    valid[[cy, cx]] = true;
                }
                Err(outside) => outside_domain += usize::from(outside),
            }
        }
        for (y, x) in source_dominated(&mesh, &rms, &valid) {
            valid[[y, x]] = false;
        }
        let filled = fill_invalid(&mut mesh, &mut rms, &mut err, &valid) - outside_domain;
        let mesh = unsmooth(&mesh);
        // The correction mixes in neighbours at 1/24 weight: about 9 % more error.
        err.mapv_inplace(|e| e * 1.09);
        BackgroundModel {
            cell_h_px: cell_h,
            cell_w_px: cell_w,
            rows,
            cols,
            mesh,
            mesh_rms: rms,
            mesh_err: err,
            filled_cells: filled,
            outside_domain_cells: outside_domain,
        }
    }

    /// Weights of the cells that make up the background at a pixel: a Catmull-Rom cubic
    /// through the cell centres along each axis (bilinear when an axis has fewer than four
    /// cells). Between the outer cell centres and the frame's edge the outermost cells are
    /// extrapolated linearly, so a gradient keeps rising to the edge; a linear gradient is
    /// reproduced exactly everywhere.
    pub fn weights(&self, r: usize, c: usize) -> Vec<((usize, usize), f32)> {
        let (ny, nx) = self.mesh.dim();
        let wy = axis_weights(r, ny, self.cell_h_px);
        let wx = axis_weights(c, nx, self.cell_w_px);
        let mut out = Vec::with_capacity(wy.len() * wx.len());
        for &(iy, a) in &wy {
            for &(ix, b) in &wx {
                out.push(((iy, ix), a * b));
            }
        }
        out
    }

    /// Interpolate a mesh-sized grid to every pixel. The weights are separable, so it runs
    /// along x for every mesh row first, then along y for every output row.
    fn interpolate(&self, grid: &Array2<f32>) -> Array2<f32> {
        let (ny, _) = grid.dim();
        let wx: Vec<Vec<(usize, f32)>> = (0..self.cols)
            .map(|c| axis_weights(c, grid.dim().1, self.cell_w_px))
            .collect();
        let wy: Vec<Vec<(usize, f32)>> = (0..self.rows)
            .map(|r| axis_weights(r, ny, self.cell_h_px))
            .collect();
        // Along x: one full-width row per mesh row.
        let mut along_x = Array2::<f32>::zeros((ny, self.cols));
        for (iy, mut row) in along_x.axis_iter_mut(ndarray::Axis(0)).enumerate() {
            for (c, w) in wx.iter().enumerate() {
                row[c] = w.iter().map(|&(ix, a)| a * grid[[iy, ix]]).sum();
            }
        }
        let mut out = Array2::<f32>::zeros((self.rows, self.cols));
        out.axis_iter_mut(ndarray::Axis(0))
            .into_par_iter()
            .zip(wy.par_iter())
            .for_each(|(mut row, w)| {
                let row = row.as_slice_mut().expect("standard layout");
                row.fill(0.0);
                for &(iy, a) in w {
                    let src = along_x.row(iy);
                    let src = src.as_slice().expect("standard layout");
                    for (o, &v) in row.iter_mut().zip(src) {
                        *o += a * v;
                    }
                }
            });
        out
    }

    /// The background at every pixel.
    pub fn map(&self) -> Array2<f32> {
        self.interpolate(&self.mesh)
    }

    /// The background rms (one pixel's noise) at every pixel.
    pub fn rms_map(&self) -> Array2<f32> {
        self.interpolate(&self.mesh_rms)
    }

    /// One-sigma error of the background summed over a set of pixels, treating each cell's
    /// error as independent and fully correlated within the cell.
    pub fn sum_error(&self, pixels: impl Iterator<Item = (usize, usize)>) -> f64 {
        let (ny, nx) = self.mesh.dim();
        // The weights are separable: sum the column weights row by row, then spread each
        // row's sums over the mesh rows with that row's weights.
        let wx: Vec<Vec<(usize, f32)>> = (0..self.cols)
            .map(|c| axis_weights(c, nx, self.cell_w_px))
            .collect();
        let mut per_row: std::collections::BTreeMap<usize, Vec<f64>> =
            std::collections::BTreeMap::new();
        for (r, c) in pixels {
            let v = per_row.entry(r).or_insert_with(|| vec![0.0; nx]);
            for &(ix, a) in &wx[c] {
                v[ix] += a as f64;
            }
        }
        let mut weight_per_cell = Array2::<f64>::zeros((ny, nx));
        for (r, v) in per_row {
            for (iy, b) in axis_weights(r, ny, self.cell_h_px) {
                for (ix, w) in v.iter().enumerate() {
                    weight_per_cell[[iy, ix]] += b as f64 * w;
                }
            }
        }
        weight_per_cell
            .iter()
            .zip(self.mesh_err.iter())
            .map(|(w, e)| (w * *e as f64).powi(2))
            .sum::<f64>()
            .sqrt()
    }
}

/// Fit `v = a + b·x + c·y` to the samples by least squares with iterative sigma clipping of
/// the residuals. Returns (a: the value at the origin, residual rms, samples kept). A plane,
/// not a mean: a steep gradient across a cell with some pixels masked still gives the value
/// at the cell's centre.
fn clipped_plane(sample: &mut Vec<(f32, f32, f32)>, clip_sigma: f64) -> Option<(f64, f64, usize)> {
    // A bright source's core tilts a least-squares plane so far that clipping about it
    // keeps the source: first clip about the median, by the median absolute deviation (a
    // gradient across the cell spreads the values evenly and loses nothing to this).
    if sample.len() >= 6 {
        let mut v: Vec<f32> = sample.iter().map(|p| p.2).collect();
        let median = median_in_place(&mut v).unwrap_or(0.0);
        let mut dev: Vec<f32> = v.iter().map(|&x| (x - median).abs()).collect();
        let mad = median_in_place(&mut dev).unwrap_or(0.0);
        let limit = clip_sigma as f32 * 1.4826 * mad;
        if limit > 0.0 {
            sample.retain(|p| (p.2 - median).abs() <= limit);
        }
    }
    let mut fit = None;
    for _ in 0..5 {
        let n = sample.len();
        if n < 6 {
            break;
        }
        let (mut sx, mut sy, mut sv, mut sxx, mut syy, mut sxy, mut sxv, mut syv) =
            (0.0f64, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        for &(x, y, v) in sample.iter() {
            let (x, y, v) = (x as f64, y as f64, v as f64);
            sx += x;
            sy += y;
            sv += v;
            sxx += x * x;
            syy += y * y;
            sxy += x * y;
            sxv += x * v;
            syv += y * v;
        }
        let nf = n as f64;
        // Solve the 3×3 normal equations by Cramer's rule.
        let m = [[nf, sx, sy], [sx, sxx, sxy], [sy, sxy, syy]];
        let rhs = [sv, sxv, syv];
        let det3 = |m: [[f64; 3]; 3]| {
            m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
                - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
                + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
        };
        let d = det3(m);
        if d.abs() < 1e-12 {
            break;
        }
        let mut coef = [0.0; 3];
        for (k, c) in coef.iter_mut().enumerate() {
            let mut mk = m;
            for (row, &r) in mk.iter_mut().zip(rhs.iter()) {
                row[k] = r;
            }
            *c = det3(mk) / d;
        }
        let resid = |&(x, y, v): &(f32, f32, f32)| {
            v as f64 - (coef[0] + coef[1] * x as f64 + coef[2] * y as f64)
        };
        let var = sample.iter().map(|p| resid(p).powi(2)).sum::<f64>() / (nf - 3.0);
        let rms = var.sqrt();
        fit = Some((coef[0], rms, n));
        let before = sample.len();
        sample.retain(|p| resid(p).abs() <= clip_sigma * rms);
        if sample.len() == before {
            break;
        }
    }
    fit
}

/// Least-squares quadratic surface through the points (x, y, value); returns its value at
/// the origin and the points' rms scatter about it. A filled cell under a large masked
/// source sits where the background may curve (the middle of a mouse's glow): a plane would
/// cut under the peak.
fn quadratic_at_origin(pts: &[(f32, f32, f32)]) -> Option<(f64, f64)> {
    let samples: Vec<([f64; 6], f64)> = pts
        .iter()
        .map(|&(x, y, v)| (quadratic_terms(x as f64, y as f64), v as f64))
        .collect();
    let coef = least_squares(&samples)?;
    let dof = (pts.len() as f64 - 6.0).max(1.0);
    let misfit = (samples
        .iter()
        .zip(pts)
        .map(|((_, v), &(x, y, _))| (v - evaluate(&coef, x as f64, y as f64)).powi(2))
        .sum::<f64>()
        / dof)
        .sqrt();
    Some((coef[0], misfit))
}

/// Interpolation weights along one axis for pixel `p` with `n` cells of size `cell` px.
fn axis_weights(p: usize, n: usize, cell: f64) -> Vec<(usize, f32)> {
    if n == 1 {
        return vec![(0, 1.0)];
    }
    // Cell centres sit at (k + 0.5)·cell; f is the position in cell-centre units.
    let f = (p as f64 + 0.5) / cell - 0.5;
    let i = (f.floor().max(0.0) as usize).min(n - 2);
    let t = f - i as f64;
    if n < 4 || !(0.0..=1.0).contains(&t) {
        // Linear between (or beyond) the two nearest centres.
        return vec![(i, (1.0 - t) as f32), (i + 1, t as f32)];
    }
    let t2 = t * t;
    let t3 = t2 * t;
    let w = [
        0.5 * (-t3 + 2.0 * t2 - t),
        0.5 * (3.0 * t3 - 5.0 * t2 + 2.0),
        0.5 * (-3.0 * t3 + 4.0 * t2 + t),
        0.5 * (t3 - t2),
    ];
    let mut out: Vec<(usize, f32)> = Vec::with_capacity(4);
    let mut add = |k: usize, v: f64| match out.iter_mut().find(|(j, _)| *j == k) {
        Some(e) => e.1 += v as f32,
        None => out.push((k, v as f32)),
    };
    // Cells beyond either end are extrapolated linearly from the two outermost ones.
    if i == 0 {
        add(0, 2.0 * w[0]);
        add(1, -w[0]);
    } else {
        add(i - 1, w[0]);
    }
    add(i, w[1]);
    add(i + 1, w[2]);
    if i + 2 >= n {
        add(n - 1, 2.0 * w[3]);
        add(n - 2, -w[3]);
    } else {
        add(i + 2, w[3]);
    }
    out
}

/// A cell's fitted value is the background averaged over the cell, which sits below a
/// peak and above a trough by `h²/24 · f''` along each axis. Undo that with the second
/// difference of the neighbouring cells (which is `h² · f''`), where both neighbours exist.
fn unsmooth(mesh: &Array2<f32>) -> Array2<f32> {
    let (ny, nx) = mesh.dim();
    let mut out = mesh.clone();
    for y in 0..ny {
        for x in 0..nx {
            let mut correction = 0.0f32;
            if y > 0 && y + 1 < ny {
                correction += (mesh[[y - 1, x]] - 2.0 * mesh[[y, x]] + mesh[[y + 1, x]]) / 24.0;
            }
            if x > 0 && x + 1 < nx {
                correction += (mesh[[y, x - 1]] - 2.0 * mesh[[y, x]] + mesh[[y, x + 1]]) / 24.0;
            }
            out[[y, x]] -= correction;
        }
    }
    out
}

/// A cell stands this many times its neighbours' pixel scatter above their median value:
/// a source covers it.
const SOURCE_CELL_RMS: f32 = 3.0;

/// Cells a source fills so wholly that no clipping inside the cell can find the background
/// under it (the cell's value stands far above all its neighbours', by more than the
/// pixels' scatter): filled from the neighbours like a masked cell, as a mesh filter does
/// in other background estimators. Only upward: sources add light. A cell needs two valid
/// neighbours to be judged.
fn source_dominated(
    mesh: &Array2<f32>,
    rms: &Array2<f32>,
    valid: &Array2<bool>,
) -> Vec<(usize, usize)> {
    let (ny, nx) = mesh.dim();
    let mut out = Vec::new();
    for y in 0..ny {
        for x in 0..nx {
            if !valid[[y, x]] {
                continue;
            }
            let mut values = Vec::with_capacity(8);
            let mut scatter = Vec::with_capacity(8);
            for yy in y.saturating_sub(1)..=(y + 1).min(ny - 1) {
                for xx in x.saturating_sub(1)..=(x + 1).min(nx - 1) {
                    if (yy, xx) != (y, x) && valid[[yy, xx]] {
                        values.push(mesh[[yy, xx]]);
                        scatter.push(rms[[yy, xx]]);
                    }
                }
            }
            if values.len() < 2 {
                continue;
            }
            let level = median_in_place(&mut values).unwrap_or(0.0);
            let spread = median_in_place(&mut scatter).unwrap_or(0.0);
            if mesh[[y, x]] - level > SOURCE_CELL_RMS * spread {
                out.push((y, x));
            }
        }
    }
    out
}

/// Fill invalid cells from the valid cells around them: a plane fitted (least squares, in
/// cell units) to the valid cells of the smallest surrounding square that holds at least
/// six, so a gradient carries on under a large masked source instead of flattening. The
/// filled cell's error is twice the largest error among the cells it came from, and the
/// cells' scatter about the plane.
fn fill_invalid(
    mesh: &mut Array2<f32>,
    rms: &mut Array2<f32>,
    err: &mut Array2<f32>,
    valid: &Array2<bool>,
) -> usize {
    let (ny, nx) = mesh.dim();
    let mut filled = 0;
    if !valid.iter().any(|&v| v) {
        // Nothing usable anywhere: a zero background with a huge error.
        err.fill(f32::MAX.sqrt());
        return ny * nx;
    }
    let snapshot = (mesh.clone(), rms.clone(), err.clone());
    let total_valid = valid.iter().filter(|&&v| v).count();
    for y in 0..ny {
        for x in 0..nx {
            if valid[[y, x]] {
                continue;
            }
            filled += 1;
            for ring in 1..=ny.max(nx) {
                let mut pts: Vec<(f32, f32, f32)> = Vec::new();
                let (mut rms_sum, mut err_max) = (0.0f64, 0.0f32);
                for yy in y.saturating_sub(ring)..=(y + ring).min(ny - 1) {
                    for xx in x.saturating_sub(ring)..=(x + ring).min(nx - 1) {
                        if valid[[yy, xx]] {
                            pts.push((
                                (xx as f32 - x as f32),
                                (yy as f32 - y as f32),
                                snapshot.0[[yy, xx]],
                            ));
                            rms_sum += snapshot.1[[yy, xx]] as f64;
                            err_max = err_max.max(snapshot.2[[yy, xx]]);
                        }
                    }
                }
                if pts.len() < 6.min(total_valid) {
                    continue;
                }
                let n = pts.len();
                let mean = pts.iter().map(|p| p.2 as f64).sum::<f64>() / n as f64;
                // A plane through the cells (no clipping: each cell is already robust).
                // The scatter of the cells about that plane says how far the background
                // departs from a plane here: the filled value is no better than that.
                let fit = if pts.len() >= 12 {
                    quadratic_at_origin(&pts)
                } else {
                    None
                };
                let (value, misfit) = fit
                    .or_else(|| clipped_plane(&mut pts, f64::INFINITY).map(|(v, m, _)| (v, m)))
                    .unwrap_or((mean, 0.0));
                mesh[[y, x]] = value as f32;
                rms[[y, x]] = (rms_sum / n as f64) as f32;
                err[[y, x]] = ((2.0 * err_max as f64).powi(2) + misfit.powi(2)).sqrt() as f32;
                break;
            }
        }
    }
    filled
}

#[cfg(test)]
mod tests;
