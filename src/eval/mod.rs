//! `lumiq eval`: the segmentation model against the classical detector on a held-out
//! simulated set (`simulate::training`'s `heldout` profile: another seed and parameter
//! ranges beyond training), for the classical detector, the model and their union, each
//! over a sweep of its decision threshold so they can be compared at the same
//! false-positive rate.
//!
//! Owns: matching detections to the truth and the metrics — completeness per true-SNR bin,
//! false positives per frame, flux error at SNR ≥ 20, mask and boundary IoU against
//! `model_input::truth_labels`. Does not own the detectors (`process::pipeline`) nor the
//! model runtime (`segment`): the model comes in as a [`SegmentationModel`] value.
//!
//! Matching: a detected region claims the true tumours whose centre pixel it covers; when
//! it covers several (touching tumours merged), only the brightest counts as found and the
//! others as missed. A region that claims no tumour is a false positive.

pub mod cli;

use ndarray::Array2;
use rayon::prelude::*;
use serde::Serialize;

use crate::process::filters::dilate;
use crate::process::pipeline::ProcessError;
use crate::process::{
    quantify_with, Detector, ModelIdentity, ProcessingParams, Quantification, RegionSource,
    SegmentationModel,
};
use crate::simulate::training::{generate_frame, Profile, TrainingFrame};

/// Edges of the true-SNR bins: [2, 3), [3, 5), [5, 10), [10, 20), [20, ∞).
pub const SNR_BINS: [(f64, f64); 5] = [
    (2.0, 3.0),
    (3.0, 5.0),
    (5.0, 10.0),
    (10.0, 20.0),
    (20.0, f64::INFINITY),
];

/// Width of the boundary band for boundary IoU, working-grid pixels.
pub const BOUNDARY_BAND_PX: usize = 1;

/// One operating point: a detector at one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OperatingPoint {
    pub detector: Detector,
    /// `detection_sigma` for the classical detector, the probability threshold otherwise;
    /// `Combined` uses the model's threshold and the default `detection_sigma`.
    pub threshold: f64,
}

/// The metrics of one operating point over the whole set.
#[derive(Debug, Clone, Serialize)]
pub struct PointMetrics {
    pub point: OperatingPoint,
    /// Per bin of [`SNR_BINS`]: (found, total).
    pub completeness: Vec<(usize, usize)>,
    pub false_positives: usize,
    pub frames: usize,
    /// Mean |measured − true| / true of the total flux, found tumours with SNR ≥ 20.
    pub flux_abs_error_snr20: f64,
    /// Mean (measured − true) / true, same tumours.
    pub flux_bias_snr20: f64,
    pub flux_n_snr20: usize,
    /// Pooled IoU of the candidate mask with the truth mask (working grid).
    pub mask_iou: f64,
    /// Pooled IoU of their boundary bands ([`BOUNDARY_BAND_PX`] wide).
    pub boundary_iou: f64,
}

impl PointMetrics {
    pub fn false_positives_per_frame(&self) -> f64 {
        self.false_positives as f64 / self.frames.max(1) as f64
    }

    /// Completeness of bin `i`, or NaN when it holds no tumour.
    pub fn completeness_of(&self, i: usize) -> f64 {
        let (f, n) = self.completeness[i];
        if n == 0 {
            f64::NAN
        } else {
            f as f64 / n as f64
        }
    }
}

/// Accumulated counts of one operating point.
#[derive(Debug, Clone, Default)]
struct Tally {
    found: [usize; 5],
    total: [usize; 5],
    false_positives: usize,
    frames: usize,
    flux_abs: f64,
    flux_signed: f64,
    flux_n: usize,
    mask_inter: usize,
    mask_union: usize,
    band_inter: usize,
    band_union: usize,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        for i in 0..5 {
            self.found[i] += o.found[i];
            self.total[i] += o.total[i];
        }
        self.false_positives += o.false_positives;
        self.frames += o.frames;
        self.flux_abs += o.flux_abs;
        self.flux_signed += o.flux_signed;
        self.flux_n += o.flux_n;
        self.mask_inter += o.mask_inter;
        self.mask_union += o.mask_union;
        self.band_inter += o.band_inter;
        self.band_union += o.band_union;
    }

    fn metrics(&self, point: OperatingPoint) -> PointMetrics {
        let ratio = |a: usize, b: usize| {
            if b == 0 {
                f64::NAN
            } else {
                a as f64 / b as f64
            }
        };
        PointMetrics {
            point,
            completeness: (0..5).map(|i| (self.found[i], self.total[i])).collect(),
            false_positives: self.false_positives,
            frames: self.frames,
            flux_abs_error_snr20: self.flux_abs / self.flux_n.max(1) as f64,
            flux_bias_snr20: self.flux_signed / self.flux_n.max(1) as f64,
            flux_n_snr20: self.flux_n,
            mask_iou: ratio(self.mask_inter, self.mask_union),
            boundary_iou: ratio(self.band_inter, self.band_union),
        }
    }
}

/// For each true tumour of `frame`, the index in `q.regions` of the region that found it.
pub fn match_regions(frame: &TrainingFrame, q: &Quantification) -> Vec<Option<usize>> {
    let (rows, cols) = q.detection_labels.dim();
    let tumours = &frame.info.tumours;
    // Region label at each tumour's centre.
    let at: Vec<Option<usize>> = tumours
        .iter()
        .map(|t| {
            let (c, r) = (t.centre_px[0].floor(), t.centre_px[1].floor());
            if r < 0.0 || c < 0.0 || r as usize >= rows || c as usize >= cols {
                return None;
            }
            let l = q.detection_labels[[r as usize, c as usize]];
            (l > 0).then(|| l as usize - 1)
        })
        .collect();
    // A region found only the brightest tumour whose centre it covers.
    at.iter()
        .enumerate()
        .map(|(i, &region)| {
            let region = region?;
            let brightest = at
                .iter()
                .enumerate()
                .filter(|(_, &r)| r == Some(region))
                .max_by(|a, b| tumours[a.0].total_flux.total_cmp(&tumours[b.0].total_flux))
                .map(|(j, _)| j);
            (brightest == Some(i)).then_some(region)
        })
        .collect()
}

fn boundary_band(mask: &Array2<bool>) -> Array2<bool> {
    // Pixels of the mask within BOUNDARY_BAND_PX of a pixel outside it.
    let outside = mask.mapv(|m| !m);
    let near_outside = dilate(&outside, BOUNDARY_BAND_PX);
    let mut band = mask.clone();
    ndarray::Zip::from(&mut band)
        .and(&near_outside)
        .for_each(|b, &n| *b &= n);
    band
}

fn overlap(a: &Array2<bool>, b: &Array2<bool>) -> (usize, usize) {
    let mut inter = 0;
    let mut union = 0;
    ndarray::Zip::from(a).and(b).for_each(|&x, &y| {
        inter += (x && y) as usize;
        union += (x || y) as usize;
    });
    (inter, union)
}

/// Score one quantification of `frame` against its truth.
fn score(frame: &TrainingFrame, q: &Quantification) -> Tally {
    let mut t = Tally {
        frames: 1,
        ..Tally::default()
    };
    let matches = match_regions(frame, q);
    for (truth, m) in frame.info.tumours.iter().zip(&matches) {
        if let Some(bin) = SNR_BINS
            .iter()
            .position(|&(lo, hi)| truth.snr >= lo && truth.snr < hi)
        {
            t.total[bin] += 1;
            if m.is_some() {
                t.found[bin] += 1;
            }
        }
        if let (Some(i), true) = (m, truth.snr >= 20.0) {
            let err = (q.regions[*i].total_flux.value - truth.total_flux) / truth.total_flux;
            t.flux_abs += err.abs();
            t.flux_signed += err;
            t.flux_n += 1;
        }
    }
    t.false_positives = q
        .regions
        .iter()
        .enumerate()
        .filter(|(i, r)| r.source == RegionSource::Detected && !matches.contains(&Some(*i)))
        .count();
    let truth_mask = frame.labels.mapv(|l| l > 0);
    if q.detection_mask.dim() == truth_mask.dim() {
        let (i, u) = overlap(&q.detection_mask, &truth_mask);
        t.mask_inter = i;
        t.mask_union = u;
        let (i, u) = overlap(
            &boundary_band(&q.detection_mask),
            &boundary_band(&truth_mask),
        );
        t.band_inter = i;
        t.band_union = u;
    }
    t
}

/// A model whose decision threshold is replaced (the sweep), same probabilities.
struct AtThreshold<'a> {
    inner: &'a dyn SegmentationModel,
    identity: ModelIdentity,
}

impl SegmentationModel for AtThreshold<'_> {
    fn probability(
        &self,
        input: ndarray::ArrayView2<f32>,
    ) -> Result<Array2<f32>, crate::process::ModelFailure> {
        self.inner.probability(input)
    }
    fn identity(&self) -> &ModelIdentity {
        &self.identity
    }
}

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvalSpec {
    pub profile: Profile,
    pub seed: u64,
    pub frames: u64,
    /// Classical `detection_sigma` values.
    pub classical_sigmas: Vec<f64>,
    /// Model probability thresholds (used for `Model` and `Combined`).
    pub model_thresholds: Vec<f64>,
}

/// Every operating point of `spec` on frames `0..spec.frames` of `(profile, seed)`.
/// Frames are generated and scored in parallel; `model` is needed for the model and
/// combined points (without it only the classical sweep is run).
pub fn evaluate(
    spec: &EvalSpec,
    model: Option<&dyn SegmentationModel>,
) -> Result<Vec<PointMetrics>, ProcessError> {
    let mut points: Vec<OperatingPoint> = spec
        .classical_sigmas
        .iter()
        .map(|&s| OperatingPoint {
            detector: Detector::Classical,
            threshold: s,
        })
        .collect();
    if model.is_some() {
        for detector in [Detector::Model, Detector::Combined] {
            points.extend(spec.model_thresholds.iter().map(|&t| OperatingPoint {
                detector,
                threshold: t,
            }));
        }
    }
    let per_frame: Vec<Vec<Tally>> = (0..spec.frames)
        .into_par_iter()
        .map(|index| {
            let frame = generate_frame(spec.profile, spec.seed, index);
            points
                .iter()
                .map(|p| {
                    let mut params = ProcessingParams {
                        detector: p.detector,
                        ..ProcessingParams::default()
                    };
                    let wrapped = model.map(|m| AtThreshold {
                        inner: m,
                        identity: ModelIdentity {
                            threshold: p.threshold as f32,
                            ..m.identity().clone()
                        },
                    });
                    if p.detector == Detector::Classical {
                        params.detection_sigma = p.threshold;
                    }
                    let q = quantify_with(
                        &frame.sim.luminescent_adu,
                        &frame.calibration,
                        &frame.geometry,
                        &[],
                        &params,
                        wrapped.as_ref().map(|w| w as &dyn SegmentationModel),
                        None,
                    )?;
                    Ok::<Tally, ProcessError>(score(&frame, &q))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<_, _>>()?;
    Ok(points
        .iter()
        .enumerate()
        .map(|(k, &p)| {
            let mut total = Tally::default();
            for f in &per_frame {
                total.add(&f[k]);
            }
            total.metrics(p)
        })
        .collect())
}

/// The best completeness in bin `bin` among `candidates` whose false positives per frame
/// do not exceed `max_fp_per_frame`.
pub fn best_at_fp<'a>(
    candidates: impl Iterator<Item = &'a PointMetrics>,
    bin: usize,
    max_fp_per_frame: f64,
) -> Option<&'a PointMetrics> {
    candidates
        .filter(|m| m.false_positives_per_frame() <= max_fp_per_frame + 1e-12)
        .max_by(|a, b| a.completeness_of(bin).total_cmp(&b.completeness_of(bin)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_band_of_a_square_is_its_rim() {
        let mut m = Array2::from_elem((7, 7), false);
        for r in 1..6 {
            for c in 1..6 {
                m[[r, c]] = true;
            }
        }
        let band = boundary_band(&m);
        assert_eq!(band.iter().filter(|&&b| b).count(), 16);
        assert!(!band[[3, 3]] && band[[1, 1]] && band[[1, 3]]);
        let (i, u) = overlap(&band, &m);
        assert_eq!((i, u), (16, 25));
    }
}
