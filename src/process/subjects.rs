//! Subjects (a subject is one mouse): find the mice in the LED photograph, order them left
//! to right, and say which mouse each measured region lies on. Not the tumour model
//! (`crate::segment`) nor its input (`model_input`).
//!
//! Owns: outlining the mice in the photograph (illumination flattened by dividing by a
//! smooth surface fitted to the stage, Otsu threshold, opening to cut tails and other thin
//! parts off,
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

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::filters::label_components;
use super::morphology::{
    block_average, box3, dilate_by, distance_to, erode_by, fill_holes, fit_stage_surface, flood,
    grow, markers, otsu,
};

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
