//! The pure processing core: raw counts in, calibrated radiance and tumour measurements
//! with uncertainties out.
//!
//! Owns: instrument-signature removal (bias, dark, flat, bad pixels, cosmic rays,
//! saturation), the spatially varying background, detection, photometry and master-frame
//! combination. Deliberately does not own any I/O: nothing here reads a file, a clock, a
//! device or the network; every function takes arrays and returns values, so every test of
//! it runs on in-memory data.
//!
//! Conventions: frames are `Array2<f32>` indexed `[row (y), column (x)]`; radiance is in
//! photons/s/cm²/sr, flux in photons/s, areas in cm²; variances carry the square of their
//! value's unit. Signed floats throughout: nothing is clipped before it is summed.

pub mod background;
pub mod combine;
pub mod correct;
pub mod cosmic;
pub mod dark_bound;
pub mod detect;
pub mod filters;
pub mod kinetics;
pub mod model_input;
mod morphology;
pub mod photometry;
pub mod pipeline;
pub mod qc;
pub mod roi;
pub mod subjects;
mod surface;

// The old name of `model_input`, kept for callers.
#[doc(hidden)]
pub use model_input as segment_input;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

pub use pipeline::{
    quantify, quantify_with, ModelFailure, ModelIdentity, ProcessError, Quantification,
    SegmentationModel,
};

/// Facts about the sensor that the noise model needs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SensorFacts {
    /// Electrons per ADU.
    pub gain_e_per_adu: f64,
    /// Read noise of one (binned) read, in electrons rms.
    pub read_noise_e: f64,
    /// Raw level at or above which a pixel is saturated, in ADU.
    pub saturation_adu: f64,
    /// Physical pixel pitch of the unbinned sensor, µm.
    pub pixel_pitch_um: f64,
}

/// Everything needed to turn one raw luminescent frame into radiance: the calibration
/// masters already selected (and scaled) for this frame's binning, exposure and temperature.
#[derive(Debug, Clone)]
pub struct FrameCalibration {
    /// Read bias per pixel, ADU, same shape as the frame.
    pub bias_adu: Array2<f32>,
    /// Variance of the master bias per pixel, ADU².
    pub bias_var_adu2: f32,
    /// Dark charge for this exposure, ADU; `None` when no usable dark exists (flagged).
    pub dark_adu: Option<Array2<f32>>,
    /// Variance of the dark estimate per pixel, ADU².
    pub dark_var_adu2: f32,
    /// Relative sensitivity, 1.0 on the optical axis, falling toward the edges.
    pub flat: Array2<f32>,
    /// Known defective pixels (hot, dead, bad columns) in this frame's binned grid.
    pub bad_pixels: Array2<bool>,
    /// Absolute coefficient C: radiance (photons/s/cm²/sr) per count/s per unbinned pixel.
    pub coefficient: f64,
    /// One-sigma relative uncertainty of `coefficient`.
    pub coefficient_rel_uncertainty: f64,
    pub sensor: SensorFacts,
}

/// Geometry and exposure of the frame being processed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameGeometry {
    pub exposure_s: f64,
    pub binning: u32,
    /// Field of view across the image width at the object plane, cm.
    pub fov_cm: f64,
}

impl FrameGeometry {
    /// Side of one binned pixel at the object plane, cm (`fov_cm / n_px`).
    pub fn pixel_size_cm(&self, width_px: usize) -> f64 {
        self.fov_cm / width_px as f64
    }
}

/// Tunable parameters of the processing chain. Lengths are physical (cm at the object) so
/// the same settings work at every binning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessingParams {
    /// Side of a background mesh cell, cm. Several tumour diameters, so tumour wings are
    /// not absorbed into the background.
    pub background_box_cm: f64,
    /// Sigma for clipping inside a background cell.
    pub background_clip_sigma: f64,
    /// Gaussian sigma of the matched detection filter, cm.
    pub detection_smoothing_cm: f64,
    /// Detection threshold, in noise sigmas of the matched filter: the classical footprint
    /// is the pixels above it, and a candidate (any detector's) is kept when its peak
    /// significance reaches it.
    pub detection_sigma: f64,
    /// A candidate is kept only if, besides its significance, its measured net flux is
    /// at least this many times its statistical uncertainty (background model included):
    /// a peak the matched filter finds where the background model errs is wide and
    /// faint in the aperture.
    pub min_region_snr: f64,
    /// Minimum footprint area, cm².
    pub min_area_cm2: f64,
    /// A secondary peak splits a region when it stands this fraction of its height above
    /// the saddle joining it to a brighter peak.
    pub deblend_contrast: f64,
    /// Cosmic-ray detection threshold, in noise sigmas above the local median.
    pub cosmic_sigma: f64,
    /// A cosmic ray is sharper than any real source: it must stand above its
    /// second-brightest edge-neighbour by at least this share of its excess over the local
    /// median (a blurred peak has light on at least two sides).
    pub cosmic_sharpness: f64,
    /// Gaussian sigma of the narrowest light distribution a real source can have at the
    /// object, cm (tissue scatters a tumour's light over at least this).
    pub min_source_sigma_cm: f64,
    /// Maximum growth of a detection footprint to collect a tumour's faint wings, cm.
    pub max_wing_growth_cm: f64,
    /// Finding the mice in the photograph and placing regions on them.
    pub subjects: subjects::SubjectSettings,
    /// Which pixels become candidate regions: the classical threshold, a segmentation
    /// model's mask, or both. The core's default is the classical detector (it needs no
    /// model); `lumiq process` and the daemon default to `segment::DEFAULT_DETECTOR`.
    pub detector: Detector,
}

/// How candidate regions are found. Every method then deblends, grows and measures them
/// with the same functions, and keeps those whose matched-filter significance reaches
/// `detection_sigma`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// Matched filter and a `detection_sigma` threshold on the working grid.
    #[default]
    Classical,
    /// A segmentation model's probability above its decision threshold.
    Model,
    /// The union of both masks.
    Combined,
}

impl Detector {
    /// The name used on the command line and in the record.
    pub fn as_str(self) -> &'static str {
        match self {
            Detector::Classical => "classical",
            Detector::Model => "model",
            Detector::Combined => "combined",
        }
    }
}

impl ProcessingParams {
    /// Side of a background mesh cell in pixels of a grid of `pixel_cm` (at least 4).
    pub fn background_box_px(&self, pixel_cm: f64) -> usize {
        (self.background_box_cm / pixel_cm).round().max(4.0) as usize
    }
}

impl Default for ProcessingParams {
    fn default() -> Self {
        ProcessingParams {
            background_box_cm: 1.5,
            background_clip_sigma: 3.0,
            detection_smoothing_cm: 0.12,
            detection_sigma: 5.0,
            min_region_snr: 5.0,
            min_area_cm2: 0.01,
            deblend_contrast: 0.15,
            cosmic_sigma: 6.0,
            cosmic_sharpness: 0.7,
            min_source_sigma_cm: 0.07,
            max_wing_growth_cm: 1.2,
            subjects: subjects::SubjectSettings::default(),
            detector: Detector::Classical,
        }
    }
}

/// A condition a person should know about; carried into the record's `flags`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QualityFlag {
    /// No usable dark frame: dark charge was not subtracted (left to the background model).
    DarkNotSubtracted,
    /// At least one pixel at or above the saturation level.
    SaturatedPixels,
    /// At least one region contains saturated pixels: its flux is a lower bound.
    SaturatedRegion,
    /// Cosmic-ray hits were found and replaced.
    CosmicRaysRemoved,
    /// Known bad pixels were replaced by the median of good neighbours.
    BadPixelsReplaced,
    /// The flat field came from a fitted radial polynomial, not a measured master.
    FlatFromPolynomial,
    /// The flat-field polynomial is positive over the frame but unlike a vignetting profile
    /// (rises above its on-axis value, falls below a tenth of it, or k0 far from 1): used
    /// as stored; check the instrument's coefficients.
    FlatImplausible,
    /// The sensor noise model used defaults, not measured values.
    NoiseModelAssumed,
    /// The background could not be estimated in some mesh cells (too much masked).
    BackgroundCellsInterpolated,
    /// No region was detected.
    NoDetections,
    /// At least one region lies off every mouse found in the photograph (its
    /// `subject_index` is null).
    RegionOutsideSubjects,
    /// The number of mice found in the photograph differs from the number of subject ids
    /// in the metadata: no id was applied to any region.
    SubjectCountMismatch,
    /// A reference-source QC is configured, but none usable was made before this
    /// acquisition: fluxes are calibrated but not QC-corrected.
    QcMissing,
    /// The QC applied is older than its validity.
    QcStale,
    /// The QC applied found the instrument's response further from nominal than the
    /// tolerance: corrected by it, but the instrument needs a person's look.
    QcOutOfTolerance,
    /// The newest QC before this acquisition could not measure its source.
    QcFailed,
    /// The acquisition has no injection time: its place on the luciferin curve is unknown.
    NoInjectionTime,
    /// Taken earlier after the injection than the signal's typical peak (8 min after an
    /// intraperitoneal injection): on the rising edge, not comparable with a peak image.
    BeforeExpectedPeak,
}

/// A value with its one-sigma uncertainty and the parts that make it up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Uncertain {
    pub value: f64,
    /// Total one-sigma uncertainty (components added in quadrature).
    pub uncertainty: f64,
    pub components: UncertaintyComponents,
}

/// One-sigma uncertainty components, in the unit of their value.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct UncertaintyComponents {
    /// Photon and dark-current shot noise (Poisson, from electrons).
    pub poisson: f64,
    /// Read noise, and the noise of the bias and dark masters.
    pub read_noise: f64,
    /// Error of the background model under the region.
    pub background: f64,
    /// Error of the absolute calibration coefficient.
    pub calibration: f64,
    /// Gross flux of a frame with no dark subtracted only: the most its dark charge can
    /// add (`dark_bound`; a bound, carried as one sigma). 0 otherwise.
    #[serde(default)]
    pub dark: f64,
}

impl UncertaintyComponents {
    pub fn total(&self) -> f64 {
        (self.poisson.powi(2)
            + self.read_noise.powi(2)
            + self.background.powi(2)
            + self.calibration.powi(2)
            + self.dark.powi(2))
        .sqrt()
    }

    /// The part that varies from frame to frame on one instrument (everything but the
    /// calibration coefficient, which is common to every frame calibrated with it).
    pub fn statistical(&self) -> f64 {
        (self.poisson.powi(2) + self.read_noise.powi(2) + self.background.powi(2)).sqrt()
    }
}

/// Whether a region was found by lumiq or drawn by a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionSource {
    Detected,
    Imported,
}

/// The measurement of one region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionMeasurement {
    pub source: RegionSource,
    pub label: String,
    /// Flux-weighted centroid in the luminescent frame's pixel grid (first centre at 0.5).
    pub centroid_px: [f64; 2],
    /// The same centroid in cm from the image's top-left corner at the object plane.
    pub centroid_cm: [f64; 2],
    pub n_pixels: usize,
    pub area_cm2: f64,
    /// Net flux: the tumour's own light after the background model, photons/s.
    pub total_flux: Uncertain,
    /// Gross flux: all light in the region (Living Image's ROI total flux), photons/s.
    pub gross_total_flux: Uncertain,
    /// Mean net radiance over the region, photons/s/cm²/sr.
    pub average_radiance: Uncertain,
    /// Maximum net radiance in the region, photons/s/cm²/sr.
    pub max_radiance: f64,
    /// Net flux over its statistical uncertainty.
    pub snr: f64,
    pub saturated: bool,
    /// Pixel statistics of the gross radiance (background still in) over the region: what
    /// Living Image lists as Avg, Stdev, Min and Max Radiance. `None` for a region with no
    /// pixel (an ROI wholly off the frame).
    pub gross_radiance: Option<RadianceStats>,
}

/// Statistics of the radiance values of a region's pixels, photons/s/cm²/sr.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RadianceStats {
    pub mean: f64,
    /// Population standard deviation of the pixel values (divided by n, not n − 1): their
    /// spread across the region, not an uncertainty.
    pub stdev: f64,
    pub min: f64,
    pub max: f64,
}
