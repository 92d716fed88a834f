//! The whole processing chain for one luminescent frame, in order:
//! correct (bias, dark, flat → radiance and variance) → repair known bad pixels → flag
//! saturation → remove cosmic rays → fit the background with sources masked (two passes)
//! → detect, deblend and grow regions → measure detected regions and imported ROIs.
//!
//! Owns: the order of the steps and the flags they raise. Pure: arrays in, values out.

use std::collections::BTreeSet;

use ndarray::{Array2, Zip};

use super::background::BackgroundModel;
use super::correct::{correct, repair_pixels, validate, CorrectionError, Repair};
use super::cosmic::find_cosmic_rays;
use super::detect::{detect, DetectionSettings};
use super::filters::dilate;
use super::photometry::{measure, PhotometryInputs};
use super::roi::Roi;
use super::{
    FrameCalibration, FrameGeometry, ProcessingParams, QualityFlag, RegionMeasurement, RegionSource,
};

/// Rounds of cosmic-ray search and repair.
const COSMIC_ROUNDS: usize = 2;

/// Why a frame could not be processed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Correction(#[from] CorrectionError),
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
}

/// Run the whole chain.
pub fn quantify(
    raw: &Array2<u16>,
    cal: &FrameCalibration,
    geom: &FrameGeometry,
    rois: &[Roi],
    params: &ProcessingParams,
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
    // Two rounds: a track's fainter pixels stand out once its core is gone; the second
    // round looks only around the first round's hits.
    let mut near: Option<Array2<bool>> = None;
    for _ in 0..COSMIC_ROUNDS {
        let cosmic = find_cosmic_rays(
            &frame.radiance,
            &variance,
            &untrusted,
            near.as_ref(),
            params.cosmic_sigma,
            params.cosmic_sharpness,
        );
        Zip::from(&mut untrusted)
            .and(&cosmic)
            .for_each(|u, &c| *u |= c);
        let found = repair_pixels(&mut frame, &cosmic, &untrusted, Repair::Median);
        if found == 0 {
            break;
        }
        counts.cosmic_ray_pixels_replaced += found;
        flags.insert(QualityFlag::CosmicRaysRemoved);
        variance = &frame.var_poisson + &frame.var_read;
        near = Some(dilate(&cosmic, 2));
    }
    counts.bad_pixels_replaced =
        repair_pixels(&mut frame, &cal.bad_pixels, &untrusted, Repair::Interpolate);
    if counts.bad_pixels_replaced > 0 {
        flags.insert(QualityFlag::BadPixelsReplaced);
        variance = &frame.var_poisson + &frame.var_read;
    }

    let settings = DetectionSettings {
        smoothing_sigma_px: params.detection_smoothing_cm / pixel_cm,
        threshold_sigma: params.detection_sigma,
        min_area_px: ((params.min_area_cm2 / (pixel_cm * pixel_cm)).ceil() as usize).max(3),
        deblend_contrast: params.deblend_contrast,
        max_growth_px: (params.max_wing_growth_cm / pixel_cm).ceil() as usize,
    };
    let box_px = (params.background_box_cm / pixel_cm).round().max(4.0) as usize;

    // Pass 1: background of everything, to find the sources.
    let first = BackgroundModel::fit(
        &frame.radiance,
        &frame.saturated,
        box_px,
        params.background_clip_sigma,
    );
    let net1 = &frame.radiance - &first.map();
    // Mask each source out to where its light fades into the noise (its grown aperture),
    // plus a margin, so its wings do not lift the background.
    let sources = detect(&net1, &variance, &settings).aperture.mapv(|l| l > 0);
    let mut exclude = dilate(&sources, 2);
    Zip::from(&mut exclude)
        .and(&frame.saturated)
        .for_each(|e, &s| *e |= s);
    // Pass 2: the background under the sources comes from around them.
    let model = BackgroundModel::fit(
        &frame.radiance,
        &exclude,
        box_px,
        params.background_clip_sigma,
    );
    counts.background_cells_filled = model.filled_cells;
    if model.filled_cells > 0 {
        flags.insert(QualityFlag::BackgroundCellsInterpolated);
    }
    let background = model.map();
    let net = &frame.radiance - &background;
    let detections = detect(&net, &variance, &settings);

    let inputs = PhotometryInputs {
        radiance: &frame.radiance,
        background: &model,
        background_map: &background,
        var_poisson: &frame.var_poisson,
        var_read: &frame.var_read,
        saturated: &frame.saturated,
        pixel_size_cm: pixel_cm,
        coefficient_rel_uncertainty: cal.coefficient_rel_uncertainty,
    };
    let mut pixels_of: Vec<Vec<(usize, usize)>> = vec![Vec::new(); detections.count + 1];
    for ((r, c), &l) in detections.aperture.indexed_iter() {
        if l > 0 {
            pixels_of[l as usize].push((r, c));
        }
    }
    // A candidate whose whole-region measurement is not significant (its net flux over its
    // statistical uncertainty, background model included) is a fluctuation that happened to
    // cross the threshold in the smoothed map: drop it (counted) and renumber the rest.
    let mut regions: Vec<RegionMeasurement> = Vec::new();
    let mut new_label = vec![0u32; pixels_of.len()];
    for (i, px) in pixels_of.iter().enumerate().skip(1) {
        let m = measure(&inputs, px, RegionSource::Detected, String::new());
        if m.snr < params.min_region_snr {
            counts.candidates_rejected += 1;
            continue;
        }
        new_label[i] = regions.len() as u32 + 1;
        regions.push(RegionMeasurement {
            label: format!("T{}", regions.len() + 1),
            ..m
        });
    }
    let detection_labels = detections.aperture.mapv(|l| new_label[l as usize]);
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
        net_radiance: net,
        variance,
        detection_labels,
        regions,
        roi_masks,
        flags,
        counts,
        pixel_size_cm: pixel_cm,
    })
}
