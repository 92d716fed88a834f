//! Subjects: find the mice in the LED photograph, order them left to right, and say which
//! mouse each measured region lies on.
//!
//! Owns: segmenting the photograph (illumination flattened by dividing by a smooth surface
//! fitted to the stage, Otsu threshold, opening to cut tails and other thin parts off,
//! holes filled; body cores where a disk of a body's radius fits, so that the apparatus —
//! nose cones, dividers, the manifold's rim — and tags, tails and tail marks are never a
//! mouse; touching animals split by a watershed of the cores' distance transform from
//! markers whose depth is significant; small core pieces, such as a head cut off at a
//! narrow neck, given back to the mouse they join; each mouse grown a little into the thin
//! parts it touches), the left-to-right order, the placement of a point (a region's
//! centroid) on a mouse, and the rule for applying subject ids from the metadata. Pure:
//! arrays and values in, values out; no I/O.
//!
//! Does not own: reading the photograph or the ids (the formats do), nor the record's
//! shape (`record` turns a [`SubjectAssignment`] into fields and flags).
//!
//! Geometry: the photograph and the luminescent frame cover the same field of view, usually
//! at different binnings, so the common frame is cm from the image's top-left corner at the
//! object plane (x right, y down): a photograph pixel is `fov_cm / photo_width_px` wide.
//!
//! Assumes mice brighter than the stage under the LED (white or nude animals on the dark
//! stage of an imaging box, as in IVIS photographs). Dark, furred animals on a bright stage
//! are not found: the photograph is then taken to show the stage as the bright class, and
//! the count will not match the ids (`CountMismatch`), so no id is applied. The dark
//! manifold, dark dividers and dark tags are stage to this rule; bright cones, dividers
//! and tags are removed by their size.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::filters::label_components;

/// Tunable parameters of subject finding. Lengths are physical (cm at the object plane).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubjectSettings {
    /// The photograph is averaged in blocks to pixels of about this size, cm (finer detail
    /// does not change where a mouse is, and the work grows with pixels²).
    pub working_pixel_cm: f64,
    /// Radius of the opening that removes thin parts (tails, wisps of bedding, thin
    /// dividers), cm: a part narrower than twice this is cut off the body. A mouse is also
    /// grown back this far into the thin parts it touches (a snout under its nose cone).
    pub tail_cut_radius_cm: f64,
    /// Half the width of the narrowest mouse body, cm: only where a disk of this radius
    /// fits is there a body. Nose cones (0.8–1.3 cm wide), dividers, the manifold's rim,
    /// tails and tags are narrower; a mouse's body is 2.5–3 cm wide.
    pub body_radius_cm: f64,
    /// Two touching animals are split when each body's distance-transform ridge stands at
    /// least this far above the neck joining them, cm.
    pub split_depth_cm: f64,
    /// Components smaller than this are not mice (debris, a paw, a tail cut off), cm².
    pub min_subject_area_cm2: f64,
    /// A region whose centroid lies off every mouse but within this distance of one is
    /// placed on it (the outline is uncertain by a few pixels), cm.
    pub edge_tolerance_cm: f64,
    /// The bright class must be at least this many times the stage's level after
    /// flattening, or the photograph is taken to show no mice.
    pub min_contrast: f64,
}

impl Default for SubjectSettings {
    fn default() -> Self {
        SubjectSettings {
            working_pixel_cm: 0.04,
            tail_cut_radius_cm: 0.25,
            body_radius_cm: 0.7,
            split_depth_cm: 0.15,
            min_subject_area_cm2: 4.0,
            edge_tolerance_cm: 0.25,
            min_contrast: 1.5,
        }
    }
}

/// One mouse found in the photograph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    /// 0-based, left to right by centroid x.
    pub index: usize,
    /// Centroid of the mouse's mask, cm from the top-left corner.
    pub centroid_cm: [f64; 2],
    /// Bounding box of the mask `[x_min, y_min, x_max, y_max]`, pixel edges, cm.
    pub bbox_cm: [f64; 4],
    pub area_cm2: f64,
}

/// The mice of one photograph.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectMap {
    /// Per working-grid pixel: 0 off every mouse, else 1 + the subject's index.
    pub labels: Array2<u32>,
    /// Side of one working-grid pixel, cm.
    pub pixel_cm: f64,
    /// Left to right.
    pub subjects: Vec<Subject>,
}

/// Where a point lies relative to the mice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On the mouse with this index.
    On(usize),
    /// Off every mouse, but within the edge tolerance of this one.
    NearEdge(usize),
    /// Off every mouse.
    Outside,
}

impl SubjectMap {
    /// Per pixel of a frame of `rows` × `cols` pixels of `pixel_cm` over the same field
    /// (top-left origin), the fraction of the pixel's area on a mouse: sampled on a
    /// sub-grid fine enough to see this map's pixels, up to 4 × 4 per pixel.
    pub fn body_cover(&self, rows: usize, cols: usize, pixel_cm: f64) -> Array2<f32> {
        let (lr, lc) = self.labels.dim();
        let k = ((2.0 * pixel_cm / self.pixel_cm).round() as usize).clamp(1, 4);
        let step = pixel_cm / k as f64;
        let to_label =
            |cm: f64, n: usize| ((cm / self.pixel_cm).floor().max(0.0) as usize).min(n - 1);
        if lr == 0 || lc == 0 || self.subjects.is_empty() {
            return Array2::zeros((rows, cols));
        }
        let col_of: Vec<usize> = (0..cols * k)
            .map(|j| to_label((j as f64 + 0.5) * step, lc))
            .collect();
        let row_of: Vec<usize> = (0..rows * k)
            .map(|i| to_label((i as f64 + 0.5) * step, lr))
            .collect();
        let per_pixel = (k * k) as f32;
        Array2::from_shape_fn((rows, cols), |(r, c)| {
            let mut on = 0usize;
            for &lrow in &row_of[r * k..(r + 1) * k] {
                for &lcol in &col_of[c * k..(c + 1) * k] {
                    on += usize::from(self.labels[[lrow, lcol]] > 0);
                }
            }
            on as f32 / per_pixel
        })
    }

    /// Place a point (cm from the top-left corner) on a mouse, allowing `tolerance_cm`
    /// beyond its outline.
    pub fn place(&self, point_cm: [f64; 2], tolerance_cm: f64) -> Placement {
        let (rows, cols) = self.labels.dim();
        let x = point_cm[0] / self.pixel_cm;
        let y = point_cm[1] / self.pixel_cm;
        if !(x.is_finite() && y.is_finite()) {
            return Placement::Outside;
        }
        let (c, r) = (x.floor() as isize, y.floor() as isize);
        if r >= 0 && c >= 0 && (r as usize) < rows && (c as usize) < cols {
            let l = self.labels[[r as usize, c as usize]];
            if l > 0 {
                return Placement::On(l as usize - 1);
            }
        }
        let reach = (tolerance_cm / self.pixel_cm).ceil() as isize;
        let mut best: Option<(f64, usize)> = None;
        for rr in (r - reach).max(0)..=(r + reach).min(rows as isize - 1) {
            for cc in (c - reach).max(0)..=(c + reach).min(cols as isize - 1) {
                let l = self.labels[[rr as usize, cc as usize]];
                if l == 0 {
                    continue;
                }
                let dx = (cc as f64 + 0.5 - x) * self.pixel_cm;
                let dy = (rr as f64 + 0.5 - y) * self.pixel_cm;
                let d = (dx * dx + dy * dy).sqrt();
                if d <= tolerance_cm && best.is_none_or(|(bd, _)| d < bd) {
                    best = Some((d, l as usize - 1));
                }
            }
        }
        match best {
            Some((_, i)) => Placement::NearEdge(i),
            None => Placement::Outside,
        }
    }
}

/// Find the mice in a photograph (raw ADU or any linear brightness) whose width spans
/// `fov_cm` at the object plane.
pub fn locate_subjects(photo: &Array2<f32>, fov_cm: f64, s: &SubjectSettings) -> SubjectMap {
    let (rows, cols) = photo.dim();
    let empty = |pixel_cm: f64, dim: (usize, usize)| SubjectMap {
        labels: Array2::zeros(dim),
        pixel_cm,
        subjects: Vec::new(),
    };
    if rows < 8 || cols < 8 || fov_cm.is_nan() || fov_cm <= 0.0 {
        return empty(fov_cm.max(0.0) / cols.max(1) as f64, (rows, cols));
    }
    let photo_pixel_cm = fov_cm / cols as f64;
    let block = ((s.working_pixel_cm / photo_pixel_cm).round() as usize).max(1);
    let work = block_average(photo, block);
    let pixel_cm = photo_pixel_cm * block as f64;
    let dim = work.dim();

    // Flatten the illumination and threshold.
    let smooth = box3(&work);
    let Some(mask) = foreground(&smooth, s.min_contrast) else {
        return empty(pixel_cm, dim);
    };

    // Cut tails and other thin parts off, fill holes (dark fur patches, the eyes, dark tags).
    let r_open = s.tail_cut_radius_cm / pixel_cm;
    let opened = fill_holes(&dilate_by(&erode_by(&mask, r_open), r_open));
    // Body cores: where a body-sized disk fits. Nose cones, dividers, rims and tags go.
    // Design: the watershed below runs on the distance inside `opened`, not inside the
    // cores: the same map serves the erosion, and the two differ only next to what the
    // cores dropped.
    let inside = distance_to(&opened.mapv(|m| !m));
    let r_body = (s.body_radius_cm / pixel_cm).max(r_open);
    let cores = ndarray::Zip::from(&dilate_by(&inside.mapv(|d| d as f64 > r_body), r_body))
        .and(&opened)
        .map_collect(|&c, &o| c && o);

    // Split touching animals and drop what is too small to be a mouse.
    let min_area_px = (s.min_subject_area_cm2 / (pixel_cm * pixel_cm)).ceil() as usize;
    let (components, _) = label_components(&cores);
    let mut seeds = markers(&inside, &components, s.split_depth_cm / pixel_cm);
    let core_labels = loop {
        let labels = flood(&inside, &components, &seeds);
        let mut area = vec![0usize; seeds.len() + 1];
        for &l in labels.iter() {
            area[l as usize] += 1;
        }
        let keep: Vec<bool> = (1..=seeds.len()).map(|l| area[l] >= min_area_px).collect();
        if keep.iter().all(|&k| k) {
            break labels;
        }
        let before = seeds.len();
        let mut k = keep.iter();
        seeds.retain(|_| *k.next().expect("one flag per seed"));
        if seeds.len() == before || seeds.is_empty() {
            // Nothing left to split or merge: a whole component too small is dropped.
            let mut labels = labels;
            labels.mapv_inplace(|l| {
                if l > 0 && area[l as usize] < min_area_px {
                    0
                } else {
                    l
                }
            });
            break labels;
        }
    };

    // Core pieces too small to be a mouse (a head cut off at a narrow neck) join the mouse
    // they touch through the photograph's mask, when it is within a body radius; then each
    // mouse takes the thin parts within the tail-cut radius of its core.
    let joined = grow(&core_labels, &opened, Some(&cores), r_body);
    let joined_cores = ndarray::Zip::from(&joined)
        .and(&cores)
        .map_collect(|&l, &c| if c { l } else { 0 });
    let labels = grow(&joined_cores, &opened, None, r_open);

    // Order left to right by centroid x and renumber.
    let n = seeds.len();
    let mut sum = vec![
        (
            0usize,
            0.0f64,
            0.0f64,
            usize::MAX,
            usize::MAX,
            0usize,
            0usize
        );
        n + 1
    ];
    for ((r, c), &l) in labels.indexed_iter() {
        if l == 0 {
            continue;
        }
        let e = &mut sum[l as usize];
        e.0 += 1;
        e.1 += c as f64 + 0.5;
        e.2 += r as f64 + 0.5;
        e.3 = e.3.min(c);
        e.4 = e.4.min(r);
        e.5 = e.5.max(c);
        e.6 = e.6.max(r);
    }
    let mut found: Vec<(u32, Subject)> = (1..=n)
        .filter(|&l| sum[l].0 > 0)
        .map(|l| {
            let e = sum[l];
            let count = e.0 as f64;
            (
                l as u32,
                Subject {
                    index: 0,
                    centroid_cm: [e.1 / count * pixel_cm, e.2 / count * pixel_cm],
                    bbox_cm: [
                        e.3 as f64 * pixel_cm,
                        e.4 as f64 * pixel_cm,
                        (e.5 + 1) as f64 * pixel_cm,
                        (e.6 + 1) as f64 * pixel_cm,
                    ],
                    area_cm2: count * pixel_cm * pixel_cm,
                },
            )
        })
        .collect();
    found.sort_by(|a, b| a.1.centroid_cm[0].total_cmp(&b.1.centroid_cm[0]));
    let mut relabel = vec![0u32; n + 1];
    let subjects = found
        .into_iter()
        .enumerate()
        .map(|(i, (l, subject))| {
            relabel[l as usize] = i as u32 + 1;
            Subject {
                index: i,
                ..subject
            }
        })
        .collect();
    SubjectMap {
        labels: labels.mapv(|l| relabel[l as usize]),
        pixel_cm,
        subjects,
    }
}

/// Which mouse one region lies on, and the id it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionSubject {
    /// Index of the mouse (left to right) the region lies on; `None` when off every mouse
    /// or when the mice were not located.
    pub index: Option<usize>,
    /// The subject id from the metadata; `None` unless the assignment is unambiguous.
    pub id: Option<String>,
    /// The region lies off every mouse found.
    pub outside: bool,
}

/// Why the ids were or were not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdStatus {
    /// As many mice found as ids in the metadata: applied left to right.
    Applied,
    /// The metadata names no subjects: mice are numbered, not named.
    NoIds,
    /// The number of mice found differs from the number of ids: none applied.
    CountMismatch,
    /// No photograph: the mice were not located and no region is placed.
    NoPhotograph,
}

/// The subjects of one acquisition and the placement of every region.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectAssignment {
    /// Left to right; empty without a photograph.
    pub subjects: Vec<Subject>,
    /// The id applied to each subject (same order); all `None` unless `Applied`.
    pub subject_ids: Vec<Option<String>>,
    /// How many ids the metadata gave.
    pub ids_in_metadata: usize,
    pub status: IdStatus,
    /// One entry per region, in the order given.
    pub regions: Vec<RegionSubject>,
}

impl SubjectAssignment {
    /// At least one region lies off every mouse.
    pub fn any_outside(&self) -> bool {
        self.regions.iter().any(|r| r.outside)
    }

    /// The metadata's ids could not be matched to the mice found.
    pub fn count_mismatch(&self) -> bool {
        self.status == IdStatus::CountMismatch
    }
}

/// Place every region (by its centroid, cm) on a mouse and apply the metadata's ids, left
/// to right, when exactly as many mice were found as there are ids. `map` is `None` when
/// the acquisition has no photograph.
pub fn assign_subjects(
    map: Option<&SubjectMap>,
    subject_ids: &[String],
    region_centroids_cm: &[[f64; 2]],
    s: &SubjectSettings,
) -> SubjectAssignment {
    let Some(map) = map else {
        return SubjectAssignment {
            subjects: Vec::new(),
            subject_ids: Vec::new(),
            ids_in_metadata: subject_ids.len(),
            status: IdStatus::NoPhotograph,
            regions: region_centroids_cm
                .iter()
                .map(|_| RegionSubject {
                    index: None,
                    id: None,
                    outside: false,
                })
                .collect(),
        };
    };
    let n = map.subjects.len();
    // Design: ids are applied only when the counts agree. With one mouse missing (or a
    // pair not split) any order-based labelling would shift every id after the gap, and a
    // wrong id is worse than none.
    let status = if subject_ids.is_empty() {
        IdStatus::NoIds
    } else if subject_ids.len() == n {
        IdStatus::Applied
    } else {
        IdStatus::CountMismatch
    };
    let ids: Vec<Option<String>> = (0..n)
        .map(|i| (status == IdStatus::Applied).then(|| subject_ids[i].clone()))
        .collect();
    let regions = region_centroids_cm
        .iter()
        .map(|&p| match map.place(p, s.edge_tolerance_cm) {
            Placement::On(i) | Placement::NearEdge(i) => RegionSubject {
                index: Some(i),
                id: ids[i].clone(),
                outside: false,
            },
            Placement::Outside => RegionSubject {
                index: None,
                id: None,
                outside: true,
            },
        })
        .collect();
    SubjectAssignment {
        subjects: map.subjects.clone(),
        subject_ids: ids,
        ids_in_metadata: subject_ids.len(),
        status,
        regions,
    }
}

/// Mean over `f × f` blocks (partial blocks at the right and bottom average what they have).
fn block_average(img: &Array2<f32>, f: usize) -> Array2<f32> {
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
fn box3(img: &Array2<f32>) -> Array2<f32> {
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

/// Rounds of threshold → stage-surface fit → flatten.
const FLATTEN_ROUNDS: usize = 3;

/// The bright (mouse) pixels of a photograph lit unevenly: divide by a quadratic surface
/// fitted to the stage, threshold with Otsu, and repeat with the better stage. `None` when
/// the photograph shows no bright class.
fn foreground(img: &Array2<f32>, min_contrast: f64) -> Option<Array2<bool>> {
    let mut flat = img.clone();
    let mut threshold = otsu(&flat)?;
    for _ in 0..FLATTEN_ROUNDS {
        let surface = fit_stage_surface(img, &flat, threshold)?;
        flat = ndarray::Zip::from(img)
            .and(&surface)
            .map_collect(|&v, &s| if s > 0.0 { v / s } else { 0.0 });
        threshold = otsu(&flat)?;
    }
    // A real bright class stands well above the stage (≈ 1 after flattening).
    let (mut lo, mut nlo, mut hi, mut nhi) = (0.0f64, 0usize, 0.0f64, 0usize);
    for &v in flat.iter() {
        if v < threshold {
            lo += v as f64;
            nlo += 1;
        } else {
            hi += v as f64;
            nhi += 1;
        }
    }
    if nlo == 0 || nhi == 0 {
        return None;
    }
    let (lo, hi) = (lo / nlo as f64, hi / nhi as f64);
    if !(lo > 0.0 && hi >= min_contrast * lo) {
        return None;
    }
    Some(flat.mapv(|v| v >= threshold))
}

/// Otsu's threshold over a 256-bin histogram spanning the 0.5th to 99.5th percentile.
fn otsu(img: &Array2<f32>) -> Option<f32> {
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

/// Terms of the quadratic surface in normalised coordinates.
fn quadratic_terms(x: f64, y: f64) -> [f64; 6] {
    [1.0, x, y, x * x, x * y, y * y]
}

/// A quadratic surface through the stage (the pixels of `flat` below `threshold`), fitted
/// to `img` with one round of 3-sigma clipping; evaluated on the whole grid.
fn fit_stage_surface(img: &Array2<f32>, flat: &Array2<f32>, threshold: f32) -> Option<Array2<f32>> {
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
        quadratic_terms(x, y)
            .iter()
            .zip(&coef)
            .map(|(a, b)| a * b)
            .sum::<f64>() as f32
    }))
}

/// Least-squares coefficients by the normal equations (Gaussian elimination with partial
/// pivoting); `None` when the samples do not determine them.
fn least_squares(samples: &[([f64; 6], f64)]) -> Option<[f64; 6]> {
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

/// Squared distance transform of a sampled function along one line (Felzenszwalb &
/// Huttenlocher): `d[q] = min_p (q − p)² + f[p]`.
fn edt_line(f: &[f64], d: &mut [f64], v: &mut [usize], z: &mut [f64]) {
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
pub fn distance_to(sources: &Array2<bool>) -> Array2<f32> {
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
fn erode_by(mask: &Array2<bool>, r: f64) -> Array2<bool> {
    distance_to(&mask.mapv(|m| !m)).mapv(|d| d as f64 > r)
}

/// Dilation by a disk of radius `r` pixels.
fn dilate_by(mask: &Array2<bool>, r: f64) -> Array2<bool> {
    distance_to(mask).mapv(|d| d as f64 <= r)
}

/// Fill the holes of a mask: off-mask pixels not connected (4-connected) to the border.
fn fill_holes(mask: &Array2<bool>) -> Array2<bool> {
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
fn grow(
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

fn neighbours(
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
fn markers(dist: &Array2<f32>, components: &Array2<u32>, depth_px: f64) -> Vec<(usize, usize)> {
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
fn flood(dist: &Array2<f32>, components: &Array2<u32>, seeds: &[(usize, usize)]) -> Array2<u32> {
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

    /// A photograph of a dark stage with bright ellipses (cm), lit by `light(x_cm, y_cm)`.
    fn photo(
        n: usize,
        fov_cm: f64,
        mice: &[([f64; 2], f64, f64)],
        light: impl Fn(f64, f64) -> f64,
    ) -> Array2<f32> {
        let px = fov_cm / n as f64;
        Array2::from_shape_fn((n, n), |(r, c)| {
            let (x, y) = ((c as f64 + 0.5) * px, (r as f64 + 0.5) * px);
            let on = mice
                .iter()
                .any(|&(m, a, b)| ((x - m[0]) / a).powi(2) + ((y - m[1]) / b).powi(2) <= 1.0);
            ((if on { 0.8 } else { 0.12 }) * 30_000.0 * light(x, y)) as f32
        })
    }

    fn five_mice(gap_cm: f64) -> Vec<([f64; 2], f64, f64)> {
        // Two touching pairs (their outlines `gap_cm` apart, negative = overlapping) and one
        // mouse alone.
        let (a, b) = (1.4, 4.2);
        let x0 = 2.0;
        let pair = 2.0 * a + gap_cm;
        vec![
            ([x0, 11.0], a, b),
            ([x0 + pair, 11.5], a, b),
            ([x0 + pair + 4.0, 10.5], a, b),
            ([x0 + 2.0 * pair + 4.0, 11.0], a, b),
            ([x0 + 2.0 * pair + 8.0, 11.2], a, b),
        ]
    }

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
    fn a_nose_cone_over_the_head_is_not_part_of_the_mouse() {
        // One mouse with a 1.1 cm wide bright cone reaching 2 cm up from over its nose.
        let mice = vec![([8.0, 11.0], 1.4, 4.2)];
        let mut img = photo(448, 22.4, &mice, |_, _| 1.0);
        let px = 22.4 / 448.0;
        for ((r, c), v) in img.indexed_iter_mut() {
            let (x, y) = ((c as f64 + 0.5) * px, (r as f64 + 0.5) * px);
            if (4.8..=7.3).contains(&y) && (x - 8.0).abs() <= 0.55 {
                *v = 0.85 * 30_000.0;
            }
        }
        let map = locate_subjects(&img, 22.4, &SubjectSettings::default());
        assert_eq!(map.subjects.len(), 1);
        let s = &map.subjects[0];
        // The head's tip is at 6.8 cm; the cone's top at 4.8 cm.
        assert!(s.bbox_cm[1] > 6.2 && s.bbox_cm[1] < 7.0, "{s:?}");
        assert!((s.centroid_cm[1] - 11.0).abs() < 0.15, "{s:?}");
        assert_eq!(map.place([8.0, 5.5], 0.25), Placement::Outside);
        assert_eq!(map.place([8.0, 7.2], 0.25), Placement::On(0));
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

    #[test]
    fn five_separate_mice_under_even_light_are_found_left_to_right() {
        let mice = five_mice(1.0);
        let img = photo(448, 22.4, &mice, |_, _| 1.0);
        let map = locate_subjects(&img, 22.4, &SubjectSettings::default());
        assert_eq!(map.subjects.len(), 5);
        for (s, m) in map.subjects.iter().zip(&mice) {
            assert!((s.centroid_cm[0] - m.0[0]).abs() < 0.1, "{s:?} vs {m:?}");
            assert!((s.centroid_cm[1] - m.0[1]).abs() < 0.1, "{s:?} vs {m:?}");
        }
    }

    #[test]
    fn touching_pairs_are_split_under_uneven_light() {
        // Light falls to 40 % across the field and toward the bottom: no global threshold
        // separates the dim mice from the bright stage.
        let light = |x: f64, y: f64| (1.0 - 0.6 * x / 22.4) * (1.0 - 0.3 * y / 22.4);
        for gap in [0.0, -0.05, -0.1] {
            let mice = five_mice(gap);
            let img = photo(512, 22.4, &mice, light);
            let map = locate_subjects(&img, 22.4, &SubjectSettings::default());
            assert_eq!(map.subjects.len(), 5, "gap {gap} cm: {:?}", map.subjects);
            for (s, m) in map.subjects.iter().zip(&mice) {
                assert!(
                    (s.centroid_cm[0] - m.0[0]).abs() < 0.2,
                    "gap {gap}: {s:?} vs {m:?}"
                );
            }
        }
    }

    #[test]
    fn a_tail_is_cut_off_the_body() {
        let mice = vec![([8.0, 9.0], 1.4, 4.2)];
        let mut img = photo(448, 22.4, &mice, |_, _| 1.0);
        // A 0.3 cm wide tail hanging 5 cm below the body.
        let px = 22.4 / 448.0;
        for r in 0..448 {
            for c in 0..448 {
                let (x, y) = ((c as f64 + 0.5) * px, (r as f64 + 0.5) * px);
                if (13.0..18.2).contains(&y) && (x - 8.0).abs() < 0.15 {
                    img[[r, c]] = 0.8 * 30_000.0;
                }
            }
        }
        let map = locate_subjects(&img, 22.4, &SubjectSettings::default());
        assert_eq!(map.subjects.len(), 1);
        let s = &map.subjects[0];
        assert!(s.bbox_cm[3] < 13.6, "the tail was kept: {s:?}");
        assert!((s.centroid_cm[1] - 9.0).abs() < 0.15, "{s:?}");
        assert_eq!(map.place([8.0, 16.0], 0.25), Placement::Outside);
    }

    #[test]
    fn an_empty_stage_has_no_mice() {
        let img = photo(256, 22.4, &[], |x, _| 1.0 - 0.3 * x / 22.4);
        let map = locate_subjects(&img, 22.4, &SubjectSettings::default());
        assert!(map.subjects.is_empty());
    }

    #[test]
    fn placement_allows_the_edge_tolerance_only() {
        let mice = vec![([5.0, 10.0], 1.0, 3.0), ([12.0, 10.0], 1.0, 3.0)];
        let img = photo(448, 22.4, &mice, |_, _| 1.0);
        let map = locate_subjects(&img, 22.4, &SubjectSettings::default());
        assert_eq!(map.subjects.len(), 2);
        assert_eq!(map.place([5.0, 10.0], 0.25), Placement::On(0));
        assert_eq!(map.place([12.3, 11.0], 0.25), Placement::On(1));
        assert_eq!(map.place([6.15, 10.0], 0.25), Placement::NearEdge(0));
        assert_eq!(map.place([8.5, 10.0], 0.25), Placement::Outside);
        assert_eq!(map.place([-3.0, 50.0], 0.25), Placement::Outside);
    }

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| (3466 + i).to_string()).collect()
    }

    #[test]
    fn ids_are_applied_left_to_right_only_when_the_counts_agree() {
        let mice = vec![([5.0, 10.0], 1.0, 3.0), ([12.0, 10.0], 1.0, 3.0)];
        let img = photo(448, 22.4, &mice, |_, _| 1.0);
        let s = SubjectSettings::default();
        let map = locate_subjects(&img, 22.4, &s);
        let regions = [[12.0, 9.0], [5.2, 11.0], [18.0, 3.0]];

        let a = assign_subjects(Some(&map), &ids(2), &regions, &s);
        assert_eq!(a.status, IdStatus::Applied);
        assert_eq!(a.regions[0].id.as_deref(), Some("3467"));
        assert_eq!(a.regions[1].id.as_deref(), Some("3466"));
        assert_eq!(a.regions[0].index, Some(1));
        assert!(a.regions[2].outside && a.regions[2].index.is_none());
        assert!(a.any_outside() && !a.count_mismatch());

        let m = assign_subjects(Some(&map), &ids(3), &regions, &s);
        assert!(m.count_mismatch());
        assert!(m.regions.iter().all(|r| r.id.is_none()));
        assert_eq!(m.regions[1].index, Some(0), "the index is still given");

        let none = assign_subjects(Some(&map), &[], &regions, &s);
        assert_eq!(none.status, IdStatus::NoIds);
        assert!(!none.count_mismatch());

        let blind = assign_subjects(None, &ids(2), &regions, &s);
        assert_eq!(blind.status, IdStatus::NoPhotograph);
        assert!(blind
            .regions
            .iter()
            .all(|r| r.index.is_none() && !r.outside));
    }
}
