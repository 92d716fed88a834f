//! The whole processing chain for one luminescent frame, in order:
//! correct (bias, dark, flat → radiance and variance) → repair known bad pixels → flag
//! saturation → remove cosmic rays → fit the background with sources masked (two passes)
//! → detect, deblend and grow regions → measure detected regions and imported ROIs.
//!
//! Owns: the order of the steps and the flags they raise. Pure: arrays in, values out.

use std::borrow::Cow;
use std::collections::BTreeSet;

use ndarray::{Array2, ArrayView2, Zip};

use super::background::SceneBackground;
use super::correct::{correct, repair_list, repair_pixels, validate, CorrectionError, Repair};
use super::cosmic::{find_hits, CosmicSettings};
use super::dark_bound::unsubtracted_dark_bound_adu;
use super::detect::{
    detect, regions_from_mask, smoothed_snr, source_mask as source_mask_of, working_block,
    DetectionSettings,
};
use super::filters::{block_mean, dilate, expand_blocks};
use super::model_input::model_input;
use super::photometry::{measure, PhotometryInputs};
use super::roi::Roi;
use super::subjects::SubjectMap;
use super::{
    Detector, FrameCalibration, FrameGeometry, ProcessingParams, QualityFlag, RegionMeasurement,
    RegionSource,
};

/// Rounds of cosmic-ray search and repair (after the first, only around earlier hits: a
/// long track at low binning is taken from its ends inward).
const COSMIC_ROUNDS: usize = 4;

/// The working grid of a frame: `net` and `variance` averaged in blocks of `block`, and the
/// detection settings in its pixels.
struct WorkingGrid<'a> {
    net: Cow<'a, Array2<f32>>,
    variance: Cow<'a, Array2<f32>>,
    settings: DetectionSettings,
    block: usize,
}

fn working_grid<'a>(
    net: &'a Array2<f32>,
    variance: &'a Array2<f32>,
    settings: &DetectionSettings,
) -> WorkingGrid<'a> {
    let f = working_block(settings.smoothing_sigma_px);
    if f == 1 {
        return WorkingGrid {
            net: Cow::Borrowed(net),
            variance: Cow::Borrowed(variance),
            settings: *settings,
            block: 1,
        };
    }
    let (work, work_var) = block_mean(net, variance, f);
    let fs = f as f64;
    WorkingGrid {
        net: Cow::Owned(work),
        variance: Cow::Owned(work_var),
        settings: DetectionSettings {
            smoothing_sigma_px: settings.smoothing_sigma_px / fs,
            min_area_px: ((settings.min_area_px as f64 / (fs * fs)).ceil() as usize).max(3),
            max_growth_px: (settings.max_growth_px as f64 / fs).ceil() as usize,
            ..*settings
        },
        block: f,
    }
}

/// Detect on the working grid: the apertures there and the block size.
fn detect_working(
    net: &Array2<f32>,
    variance: &Array2<f32>,
    settings: &DetectionSettings,
) -> (Array2<u32>, usize, usize) {
    let g = working_grid(net, variance, settings);
    let d = detect(&g.net, &g.variance, &g.settings);
    (d.aperture, d.count, g.block)
}

/// A segmentation model as the core sees it: the model input on the working grid in, the
/// probability that each pixel of that grid belongs to a tumour out. Implementations do
/// their own I/O-free inference (the tract runtime in `crate::segment`, a closure in tests).
pub trait SegmentationModel: Sync {
    /// Probability map, same shape as `input` (`model_input::model_input`).
    fn probability(&self, input: ArrayView2<f32>) -> Result<Array2<f32>, ModelFailure>;
    /// Which model this is, and its decision threshold.
    fn identity(&self) -> &ModelIdentity;
}

/// Why a segmentation model gave no usable probability map, in the words of its runtime
/// (whose error types the core does not know) or of the core's check of its output.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}")]
pub struct ModelFailure {
    pub reason: String,
}

impl ModelFailure {
    /// The failure `e` describes.
    pub fn new(e: impl std::fmt::Display) -> Self {
        ModelFailure {
            reason: e.to_string(),
        }
    }
}

/// What a record says about the model that found its regions.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelIdentity {
    pub name: String,
    /// Lowercase hex sha256 of the model file (checked against its manifest at load).
    pub sha256: String,
    /// ONNX opset the file was exported with.
    pub opset: u32,
    /// Pixels whose probability is at or above this are tumour.
    pub threshold: f32,
}

/// What a detector found: the apertures on the full grid, their count, and the candidate
/// mask on the working grid (before deblending and growth) with that grid's block size.
struct Found {
    apertures: Array2<u32>,
    count: usize,
    /// Per label (index 0 unused): the matched filter's peak SNR over the aperture.
    significance: Vec<f32>,
    mask: Array2<bool>,
    block: usize,
}

/// Candidate regions of `detector` on the working grid, deblended, grown, and returned on
/// the full grid. The classical mask is the matched filter's `detection_sigma` threshold
/// (what `detect` thresholds); the model's is its probability at or above its threshold.
fn detect_with(
    net: &Array2<f32>,
    variance: &Array2<f32>,
    settings: &DetectionSettings,
    detector: Detector,
    model: Option<&dyn SegmentationModel>,
) -> Result<Found, ProcessError> {
    let g = working_grid(net, variance, settings);
    let mask = match (detector, model) {
        (Detector::Classical, _) => source_mask_of(&g.net, &g.variance, &g.settings),
        (_, None) => return Err(ProcessError::NoModel(detector)),
        (_, Some(model)) => {
            let input = model_input(net, variance, g.block);
            let probability = model
                .probability(input.view())
                .map_err(ProcessError::Segmentation)?;
            if probability.dim() != g.net.dim() {
                return Err(ProcessError::Segmentation(ModelFailure::new(format!(
                    "the model returned a {:?} map for a {:?} working grid",
                    probability.dim(),
                    g.net.dim()
                ))));
            }
            let threshold = model.identity().threshold;
            let mut mask = probability.mapv(|p| p >= threshold);
            if detector == Detector::Combined {
                let classical = source_mask_of(&g.net, &g.variance, &g.settings);
                Zip::from(&mut mask)
                    .and(&classical)
                    .for_each(|m, &c| *m |= c);
            }
            mask
        }
    };
    let d = regions_from_mask(&mask, &g.net, &g.variance, &g.settings);
    // Each candidate's significance: the matched filter's peak SNR over its aperture.
    let (_, snr) = smoothed_snr(&g.net, &g.variance, g.settings.smoothing_sigma_px);
    let mut significance = vec![f32::NEG_INFINITY; d.count + 1];
    Zip::from(&d.aperture).and(&snr).for_each(|&l, &s| {
        let peak = &mut significance[l as usize];
        *peak = peak.max(s);
    });
    let apertures = if g.block == 1 {
        d.aperture
    } else {
        let (rows, cols) = net.dim();
        expand_blocks(&d.aperture, g.block, rows, cols)
    };
    Ok(Found {
        apertures,
        count: d.count,
        significance,
        mask,
        block: g.block,
    })
}

/// Pixels covered by a source's aperture plus `margin_px`, on the full grid.
fn source_mask(
    net: &Array2<f32>,
    variance: &Array2<f32>,
    settings: &DetectionSettings,
    margin_px: usize,
) -> Array2<bool> {
    let (labels, _, f) = detect_working(net, variance, settings);
    let grown = dilate(&labels.mapv(|l| l > 0), margin_px.div_ceil(f));
    let (rows, cols) = net.dim();
    Array2::from_shape_fn((rows, cols), |(r, c)| grown[[r / f, c / f]])
}

/// The distinct pixels within `radius` (Chebyshev) of any of `points`.
fn pixels_within(
    points: &[(usize, usize)],
    radius: usize,
    rows: usize,
    cols: usize,
) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = points
        .iter()
        .flat_map(|&(r, c)| {
            (r.saturating_sub(radius)..=(r + radius).min(rows - 1)).flat_map(move |rr| {
                (c.saturating_sub(radius)..=(c + radius).min(cols - 1)).map(move |cc| (rr, cc))
            })
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Why a frame could not be processed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Correction(#[from] CorrectionError),
    #[error("the {} detector needs a segmentation model and none was loaded; load one (lumiq process --model PATH, or $LUMIQ_MODEL) or choose --detector classical", .0.as_str())]
    NoModel(Detector),
    #[error("the segmentation model failed: {0}")]
    Segmentation(ModelFailure),
}

/// Counters of what the chain changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PipelineCounts {
    pub bad_pixels_replaced: usize,
    pub cosmic_ray_pixels_replaced: usize,
    pub saturated_pixels: usize,
    pub background_cells_filled: usize,
    /// Detection candidates dropped because the whole region's SNR was below the threshold.
    pub candidates_rejected: usize,
}

/// Everything the chain produced for one frame.
#[derive(Debug, Clone)]
pub struct Quantification {
    /// Corrected radiance (gross), photons/s/cm²/sr.
    pub radiance: Array2<f32>,
    /// Background model, photons/s/cm²/sr.
    pub background: Array2<f32>,
    /// The fitted model behind `background` (its meshes and errors).
    pub background_model: SceneBackground,
    /// The mice found in the photograph, whose bodies the background was fitted on apart.
    pub subjects: Option<SubjectMap>,
    /// Net radiance (radiance − background).
    pub net_radiance: Array2<f32>,
    /// Statistical variance per pixel (Poisson + read + masters), radiance².
    pub variance: Array2<f32>,
    /// Detected-region map: 0 or the 1-based index of the detected region in `regions`.
    pub detection_labels: Array2<u32>,
    /// Detected regions first (in label order), then imported ROIs in input order.
    pub regions: Vec<RegionMeasurement>,
    /// Pixel masks of the imported ROIs, in the same order as they appear in `regions`.
    pub roi_masks: Vec<Array2<bool>>,
    pub flags: BTreeSet<QualityFlag>,
    pub counts: PipelineCounts,
    pub pixel_size_cm: f64,
    /// The method that found the detected regions.
    pub detector: Detector,
    /// The detector's candidate pixels on the working grid (before deblending and growth);
    /// `working_block` × `working_block` frame pixels each.
    pub detection_mask: Array2<bool>,
    pub working_block: usize,
    /// The model behind them (`Model` and `Combined` detectors).
    pub model: Option<ModelIdentity>,
}

/// Run the whole chain with the classical detector, or fail with
/// [`ProcessError::NoModel`] when `params.detector` asks for a model: see [`quantify_with`].
pub fn quantify(
    raw: &Array2<u16>,
    cal: &FrameCalibration,
    geom: &FrameGeometry,
    rois: &[Roi],
    params: &ProcessingParams,
) -> Result<Quantification, ProcessError> {
    quantify_with(raw, cal, geom, rois, params, None, None)
}

/// Run the whole chain; `segmenter` finds the candidate regions when `params.detector` is
/// `Model` or `Combined` (the background is always fitted with the classical source mask).
/// `subjects`, the mice found in the acquisition's photograph, lets the background follow
/// the bodies' own glow up to their outline.
pub fn quantify_with(
    raw: &Array2<u16>,
    cal: &FrameCalibration,
    geom: &FrameGeometry,
    rois: &[Roi],
    params: &ProcessingParams,
    segmenter: Option<&dyn SegmentationModel>,
    subjects: Option<&SubjectMap>,
) -> Result<Quantification, ProcessError> {
    validate(raw.dim(), cal, geom)?;
    let (rows, cols) = raw.dim();
    let pixel_cm = geom.pixel_size_cm(cols);
    let mut flags = BTreeSet::new();
    let mut counts = PipelineCounts::default();
    if cal.dark_adu.is_none() {
        flags.insert(QualityFlag::DarkNotSubtracted);
    }

    let mut frame = correct(raw, cal, geom);
    counts.saturated_pixels = frame.saturated.iter().filter(|&&s| s).count();
    if counts.saturated_pixels > 0 {
        flags.insert(QualityFlag::SaturatedPixels);
    }

    // Cosmic rays first, with known defects left out of every neighbourhood; then the
    // defects, interpolated from neighbours that are neither defects nor hits.
    let mut untrusted = frame.saturated.clone();
    Zip::from(&mut untrusted)
        .and(&cal.bad_pixels)
        .for_each(|u, &b| *u |= b);
    let mut variance = &frame.var_poisson + &frame.var_read;
    // Several rounds: a track's other pixels stand out once its brightest are gone; later
    // rounds look only around the previous round's hits.
    let cosmic_settings = CosmicSettings::for_grid(
        params.cosmic_sigma,
        params.cosmic_sharpness,
        params.min_source_sigma_cm / pixel_cm,
    );
    let mut near: Option<Vec<(usize, usize)>> = None;
    for _ in 0..COSMIC_ROUNDS {
        let hits = find_hits(
            &frame.radiance,
            &variance,
            &mut untrusted,
            near.as_deref(),
            &cosmic_settings,
        );
        if hits.is_empty() {
            break;
        }
        counts.cosmic_ray_pixels_replaced +=
            repair_list(&mut frame, &hits, &untrusted, Repair::Median);
        flags.insert(QualityFlag::CosmicRaysRemoved);
        for &p in &hits {
            variance[p] = frame.var_poisson[p] + frame.var_read[p];
        }
        near = Some(pixels_within(&hits, 2, rows, cols));
    }
    counts.bad_pixels_replaced =
        repair_pixels(&mut frame, &cal.bad_pixels, &untrusted, Repair::Interpolate);
    if counts.bad_pixels_replaced > 0 {
        flags.insert(QualityFlag::BadPixelsReplaced);
        variance = &frame.var_poisson + &frame.var_read;
    }

    let settings = DetectionSettings::for_grid(params, pixel_cm);
    let box_px = params.background_box_px(pixel_cm);

    let body_cover = subjects.map(|s| s.body_cover(rows, cols, pixel_cm));

    // Pass 1: background of everything, to find the sources.
    let first = SceneBackground::fit(
        &frame.radiance,
        body_cover.as_ref(),
        &frame.saturated,
        box_px,
        params.background_clip_sigma,
    );
    let net1 = &frame.radiance - &first.map();
    // Mask each source out to where its light fades into the noise (its grown aperture),
    // plus a margin, so its wings do not lift the background.
    let mut exclude = source_mask(&net1, &variance, &settings, 2);
    Zip::from(&mut exclude)
        .and(&frame.saturated)
        .for_each(|e, &s| *e |= s);
    // Pass 2: the background under the sources comes from around them.
    let model = SceneBackground::fit(
        &frame.radiance,
        body_cover.as_ref(),
        &exclude,
        box_px,
        params.background_clip_sigma,
    );
    counts.background_cells_filled = model.filled_cells();
    if counts.background_cells_filled > 0 {
        flags.insert(QualityFlag::BackgroundCellsInterpolated);
    }
    let background = model.map();
    let net = &frame.radiance - &background;
    let found = detect_with(&net, &variance, &settings, params.detector, segmenter)?;
    let Found {
        apertures,
        count: detected_candidates,
        significance,
        mask: detection_mask,
        block: working_block,
    } = found;

    // No dark subtracted: bound what it can add to every gross flux (see `dark_bound`).
    let dark_bound_radiance = cal.dark_adu.is_none().then(|| {
        let bound_adu = unsubtracted_dark_bound_adu(raw, &cal.bias_adu, &cal.bad_pixels) as f32;
        frame.radiance_per_adu.mapv(|k| k * bound_adu)
    });
    let inputs = PhotometryInputs {
        radiance: &frame.radiance,
        background: &model,
        background_map: &background,
        var_poisson: &frame.var_poisson,
        var_read: &frame.var_read,
        saturated: &frame.saturated,
        pixel_size_cm: pixel_cm,
        coefficient_rel_uncertainty: cal.coefficient_rel_uncertainty,
        dark_bound_radiance: dark_bound_radiance.as_ref(),
    };
    let mut pixels_of: Vec<Vec<(usize, usize)>> = vec![Vec::new(); detected_candidates + 1];
    for ((r, c), &l) in apertures.indexed_iter() {
        if l > 0 {
            pixels_of[l as usize].push((r, c));
        }
    }
    // Detection is decided on the matched filter's significance, the best SNR any
    // position of the source can have: a candidate whose peak stays below
    // `detection_sigma` (a model's mask can reach below it) is dropped (counted) and the
    // rest renumbered. The measured region's own SNR is lower for a faint source (its
    // aperture takes in the wings' noise too) and decides nothing.
    let mut regions: Vec<RegionMeasurement> = Vec::new();
    let mut new_label = vec![0u32; pixels_of.len()];
    for (i, px) in pixels_of.iter().enumerate().skip(1) {
        let m = measure(&inputs, px, RegionSource::Detected, String::new());
        if f64::from(significance[i]) < params.detection_sigma || m.snr < params.min_region_snr {
            counts.candidates_rejected += 1;
            continue;
        }
        new_label[i] = regions.len() as u32 + 1;
        regions.push(RegionMeasurement {
            label: format!("T{}", regions.len() + 1),
            ..m
        });
    }
    let detection_labels = apertures.mapv(|l| new_label[l as usize]);
    let detected_count = regions.len();
    let mut roi_masks = Vec::with_capacity(rois.len());
    for roi in rois {
        let mask = roi.shape.mask(rows, cols);
        let px: Vec<(usize, usize)> = mask
            .indexed_iter()
            .filter(|(_, &m)| m)
            .map(|(p, _)| p)
            .collect();
        regions.push(measure(
            &inputs,
            &px,
            RegionSource::Imported,
            roi.label.clone(),
        ));
        roi_masks.push(mask);
    }
    if regions.iter().any(|r| r.saturated) {
        flags.insert(QualityFlag::SaturatedRegion);
    }
    if detected_count == 0 {
        flags.insert(QualityFlag::NoDetections);
    }
    Ok(Quantification {
        radiance: frame.radiance,
        background,
        background_model: model,
        subjects: subjects.cloned(),
        net_radiance: net,
        variance,
        detection_labels,
        regions,
        roi_masks,
        flags,
        counts,
        pixel_size_cm: pixel_cm,
        detector: params.detector,
        detection_mask,
        working_block,
        model: match params.detector {
            Detector::Classical => None,
            _ => segmenter.map(|m| m.identity().clone()),
        },
    })
}
