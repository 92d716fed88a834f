//! The scene in front of the simulated camera: mice on the stage, luminescent tumours of
//! known total flux and varied shapes, a smooth background, and the acquisition itself.

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::acquisition::AcquisitionMeta;

/// What to simulate. Fluxes in photons/s, radiances in photons/s/cm²/sr, lengths in cm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SceneSpec {
    pub seed: u64,
    pub binning: u32,
    pub exposure_s: f64,
    pub f_number: f64,
    pub fov_cm: f64,
    pub sensor_temp_c: f64,
    pub mice: usize,
    /// Tumours per mouse, inclusive range.
    pub tumours_per_mouse: (usize, usize),
    /// Total flux range of a tumour, photons/s (drawn log-uniformly).
    pub flux_range: (f64, f64),
    /// Gaussian sigma range of a tumour's light distribution, cm.
    pub sigma_range_cm: (f64, f64),
    /// Place one pair of touching tumours on the first mouse.
    pub touching_pair: bool,
    /// Peak autoluminescence over each mouse body.
    pub autoluminescence_radiance: f64,
    /// Light leak: a linear gradient rising from 0 at the left edge to this at the right.
    pub light_leak_radiance: f64,
    /// The skin's own glow: on the body only, ending sharply at the outline the photograph
    /// shows (see [`body_glow`]). Mean level over a mouse; each mouse draws its own level
    /// within ±40 % of it, brighter over the belly. 0 (the default) turns it off; the
    /// real-scene tests use 2000.
    pub body_glow_radiance: f64,
    pub cosmic_rays: bool,
    pub photograph: bool,
    /// Lay the mice in touching pairs (first with second, third with fourth), flanks in
    /// contact or overlapping by up to 0.1 cm.
    pub touching_mice: bool,
    /// Give every mouse a tail in the photograph, down to the bottom edge (see [`tail_of`]).
    pub tails: bool,
    /// Photograph: the anaesthesia manifold across the top, a bright nose cone over each
    /// mouse's nose (see [`super::photo`]).
    pub manifold: bool,
    /// Photograph: thin walls (bright or dark) between animals that do not touch.
    pub dividers: bool,
    /// Photograph: ear tags and tail marks (small bright or dark spots on the animals).
    pub marks: bool,
    /// Photograph: each mouse's outline pinched in at the neck, a head ahead of the body.
    pub heads: bool,
    /// Unevenness of the photograph's LED light: 0 is the instrument's gentle left-to-right
    /// falloff alone; 0.6 dims the far corner to about a third of the brightest spot and
    /// shades each body toward its flanks.
    pub photo_unevenness: f64,
    /// Sources on the stage off every mouse (spilt substrate, a glove print): rendered with
    /// the tumours' light, listed by [`stray_sources`], on no mouse.
    pub stray_sources: usize,
}

impl Default for SceneSpec {
    fn default() -> Self {
        SceneSpec {
            seed: 1,
            binning: 8,
            exposure_s: 60.0,
            f_number: 1.0,
            fov_cm: 22.4,
            sensor_temp_c: -90.0,
            mice: 5,
            tumours_per_mouse: (1, 2),
            flux_range: (2.0e6, 2.0e8),
            sigma_range_cm: (0.12, 0.3),
            touching_pair: false,
            autoluminescence_radiance: 1.0e3,
            light_leak_radiance: 1.0e3,
            body_glow_radiance: 0.0,
            cosmic_rays: true,
            photograph: true,
            touching_mice: false,
            tails: true,
            manifold: true,
            dividers: true,
            marks: true,
            heads: true,
            photo_unevenness: 0.0,
            stray_sources: 0,
        }
    }
}

/// Extent (Gaussian sigma) of a mouse's autoluminescence across and along the body, cm.
pub(super) const AUTOLUMINESCENCE_SIGMA_X_CM: f64 = 2.5;
pub(super) const AUTOLUMINESCENCE_SIGMA_Y_CM: f64 = 4.0;

/// The known answer for one tumour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrueTumour {
    pub id: usize,
    /// Index of the mouse (left to right) it sits on.
    pub mouse: usize,
    /// Centre of the light distribution in the luminescent pixel grid (first centre 0.5).
    pub centre_px: [f64; 2],
    /// Total flux as imaged: 4π Σ L̄·A over the frame, photons/s.
    pub total_flux: f64,
    /// Peak mean-pixel radiance, photons/s/cm²/sr.
    pub peak_radiance: f64,
    pub sigma_major_cm: f64,
    pub sigma_minor_cm: f64,
    pub angle_deg: f64,
    /// "gaussian", "flat_top" or "two_lobed".
    pub shape: String,
}

/// A mouse on the stage: an ellipse in cm from the image's top-left corner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrueMouse {
    pub subject_id: String,
    pub centre_cm: [f64; 2],
    pub half_width_cm: f64,
    pub half_length_cm: f64,
}

/// Ground truth of one simulated acquisition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    pub spec: SceneSpec,
    pub coefficient: f64,
    pub pixel_area_cm2: f64,
    pub mice: Vec<TrueMouse>,
    pub tumours: Vec<TrueTumour>,
}

/// One simulated acquisition: what the camera produced and what was really there.
#[derive(Debug, Clone)]
pub struct SimulatedAcquisition {
    pub meta: AcquisitionMeta,
    pub luminescent_adu: Array2<u16>,
    pub photograph_adu: Option<Array2<u16>>,
    pub truth: Truth,
    /// Noise-free tumour radiance, mean over each pixel.
    pub tumour_radiance: Array2<f32>,
    /// Noise-free background radiance (autoluminescence, leak, and the body glow as a mean
    /// over each pixel) at each pixel centre.
    pub background_radiance: Array2<f32>,
}

/// Shape of one tumour's light: unit-integral density (1/cm²) at an offset (cm).
fn density(t: &TrueTumour, dx: f64, dy: f64) -> f64 {
    let a = t.angle_deg.to_radians();
    let (s, c) = a.sin_cos();
    let u = dx * c + dy * s;
    let v = -dx * s + dy * c;
    let (sa, sb) = (t.sigma_major_cm, t.sigma_minor_cm);
    let q = (u / sa).powi(2) + (v / sb).powi(2);
    match t.shape.as_str() {
        // exp(-(q/2)^2): integral = π·sa·sb·Γ(1/2)·... normalised numerically below.
        "flat_top" => (-(q / 2.0).powi(2)).exp(),
        "two_lobed" => {
            // Two lobes 1.4 lobe-sigmas apart: an elongated, lopsided tumour with one peak
            // (two Gaussians closer than 2σ never show a dip between them).
            let d = 0.5 * sa;
            let q1 = ((u - d) / (0.7 * sa)).powi(2) + (v / sb).powi(2);
            let q2 = ((u + d) / (0.7 * sa)).powi(2) + (v / sb).powi(2);
            (-q1 / 2.0).exp() + 0.6 * (-q2 / 2.0).exp()
        }
        _ => (-q / 2.0).exp(),
    }
}

/// Render a tumour's mean-pixel radiance into `out`, normalised so 4π Σ L̄·A = `flux`.
/// Returns the peak radiance added.
pub fn render_tumour(t: &TrueTumour, flux: f64, pixel_cm: f64, out: &mut Array2<f32>) -> f64 {
    let (rows, cols) = out.dim();
    const SUB: usize = 4;
    let reach_cm = 5.0 * t.sigma_major_cm.max(t.sigma_minor_cm) * 1.6;
    let cx = t.centre_px[0];
    let cy = t.centre_px[1];
    let reach_px = (reach_cm / pixel_cm).ceil() as isize;
    let r0 = ((cy as isize) - reach_px).max(0) as usize;
    let r1 = ((cy as isize) + reach_px).min(rows as isize - 1).max(0) as usize;
    let c0 = ((cx as isize) - reach_px).max(0) as usize;
    let c1 = ((cx as isize) + reach_px).min(cols as isize - 1).max(0) as usize;
    let mut patch = Array2::<f64>::zeros((r1 - r0 + 1, c1 - c0 + 1));
    let mut sum = 0.0;
    for r in r0..=r1 {
        for c in c0..=c1 {
            let mut acc = 0.0;
            for i in 0..SUB {
                for j in 0..SUB {
                    let x = c as f64 + (j as f64 + 0.5) / SUB as f64;
                    let y = r as f64 + (i as f64 + 0.5) / SUB as f64;
                    acc += density(t, (x - cx) * pixel_cm, (y - cy) * pixel_cm);
                }
            }
            let v = acc / (SUB * SUB) as f64;
            patch[[r - r0, c - c0]] = v;
            sum += v;
        }
    }
    let area = pixel_cm * pixel_cm;
    // Radiance scale so that 4π Σ L·A = flux.
    let scale = flux / (4.0 * std::f64::consts::PI * sum * area);
    let mut peak = 0.0f64;
    for ((pr, pc), v) in patch.indexed_iter() {
        let l = v * scale;
        peak = peak.max(l);
        out[[r0 + pr, c0 + pc]] += l as f32;
    }
    peak
}

/// A separate random stream for the scene's optional features (touching mice, tails,
/// strays), so turning them on leaves every other draw of a seed unchanged.
pub(super) fn feature_rng(seed: u64, feature: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ feature)
}

/// Move the mice of each pair (first and second, third and fourth) together about their
/// midpoint until their flanks touch or overlap by up to 0.1 cm.
pub(super) fn lay_in_touching_pairs(mice: &mut [TrueMouse], seed: u64) {
    let mut rng = feature_rng(seed, 1);
    for pair in mice.chunks_exact_mut(2).take(2) {
        let overlap_cm = rng.random_range(0.0..=0.1);
        let distance = pair[0].half_width_cm + pair[1].half_width_cm - overlap_cm;
        let mid = 0.5 * (pair[0].centre_cm[0] + pair[1].centre_cm[0]);
        pair[0].centre_cm[0] = mid - 0.5 * distance;
        pair[1].centre_cm[0] = mid + 0.5 * distance;
    }
}

/// A mouse's tail as the photograph shows it: from the middle of the rear end downward,
/// curving to one side, tapering from `base_width_cm` to 40 % of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tail {
    pub root_cm: [f64; 2],
    pub length_cm: f64,
    /// Sideways offset of the tip from the root, cm (negative: to the left).
    pub sweep_cm: f64,
    pub base_width_cm: f64,
}

impl Tail {
    const SAMPLES: usize = 48;

    /// Point and half-width at `t` ∈ [0, 1] down the tail (`length_cm` is its drop in y).
    pub fn at(&self, t: f64) -> (f64, f64, f64) {
        (
            self.root_cm[0] + self.sweep_cm * t * t,
            self.root_cm[1] + self.length_cm * t,
            0.5 * self.base_width_cm * (1.0 - 0.6 * t),
        )
    }

    /// Whether the point (cm) lies on the tail.
    pub fn covers(&self, x: f64, y: f64) -> bool {
        let reach = self.length_cm + self.base_width_cm;
        if (y - self.root_cm[1]) < -self.base_width_cm
            || (y - self.root_cm[1]) > reach
            || (x - self.root_cm[0]).abs() > self.sweep_cm.abs() + self.base_width_cm
        {
            return false;
        }
        (0..=Self::SAMPLES).any(|i| {
            let (tx, ty, half) = self.at(i as f64 / Self::SAMPLES as f64);
            (x - tx).powi(2) + (y - ty).powi(2) <= half * half
        })
    }
}

/// The tail of mouse `index` when the scene has tails (drawn from the seed and the index).
pub fn tail_of(spec: &SceneSpec, index: usize, mouse: &TrueMouse) -> Option<Tail> {
    if !spec.tails {
        return None;
    }
    let mut rng = feature_rng(spec.seed, 2 + 16 * index as u64);
    let root_cm = [
        mouse.centre_cm[0],
        mouse.centre_cm[1] + 0.95 * mouse.half_length_cm,
    ];
    // Tails hang off the stage: each reaches past the bottom edge.
    let length_cm = (spec.fov_cm - root_cm[1] + rng.random_range(0.2..1.0f64)).max(0.0);
    let side = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
    Some(Tail {
        root_cm,
        length_cm,
        sweep_cm: side * rng.random_range(0.5..2.5),
        base_width_cm: rng.random_range(0.28..0.38),
    })
}

/// A source of light on the stage, off every mouse and its tail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StraySource {
    pub id: usize,
    /// Centre in the luminescent pixel grid (first centre 0.5).
    pub centre_px: [f64; 2],
    /// Total flux, photons/s (Gaussian, well inside the frame: all of it is imaged).
    pub total_flux: f64,
    pub sigma_cm: f64,
}

impl StraySource {
    /// The same light as a round Gaussian tumour (for rendering).
    pub fn as_tumour(&self) -> TrueTumour {
        TrueTumour {
            id: 0,
            mouse: 0,
            centre_px: self.centre_px,
            total_flux: self.total_flux,
            peak_radiance: 0.0,
            sigma_major_cm: self.sigma_cm,
            sigma_minor_cm: self.sigma_cm,
            angle_deg: 0.0,
            shape: "gaussian".into(),
        }
    }
}

/// The scene's stray sources: at least 1 cm from every mouse and tail and 1.5 cm from the
/// frame's edges, as bright as the upper half of the tumours' flux range. Fewer than asked
/// when the stage has no room. `frame_px` is the luminescent frame's width.
pub fn stray_sources(spec: &SceneSpec, mice: &[TrueMouse], frame_px: usize) -> Vec<StraySource> {
    let pixel_cm = spec.fov_cm / frame_px.max(1) as f64;
    let tails: Vec<Tail> = mice
        .iter()
        .enumerate()
        .filter_map(|(i, m)| tail_of(spec, i, m))
        .collect();
    let mut rng = feature_rng(spec.seed, 3);
    let mut out: Vec<StraySource> = Vec::new();
    let mut attempts = 0;
    while out.len() < spec.stray_sources && attempts < 2000 {
        attempts += 1;
        let x = rng.random_range(1.5..(spec.fov_cm - 1.5).max(1.6));
        let y = rng.random_range(1.5..(spec.fov_cm - 1.5).max(1.6));
        let clear_of_mice = mice.iter().all(|m| {
            ((x - m.centre_cm[0]) / (m.half_width_cm + 1.0)).powi(2)
                + ((y - m.centre_cm[1]) / (m.half_length_cm + 1.0)).powi(2)
                > 1.0
        });
        let clear_of_tails = tails.iter().all(|t| {
            (0..=8).all(|i| {
                let (tx, ty, _) = t.at(i as f64 / 8.0);
                (x - tx).powi(2) + (y - ty).powi(2) > 1.0
            })
        });
        let clear_of_others = out.iter().all(|o| {
            (o.centre_px[0] * pixel_cm - x).powi(2) + (o.centre_px[1] * pixel_cm - y).powi(2) > 4.0
        });
        if !(clear_of_mice && clear_of_tails && clear_of_others) {
            continue;
        }
        let (lo, hi) = spec.flux_range;
        let flux = rng.random_range((lo * hi).sqrt().ln()..=hi.ln()).exp();
        out.push(StraySource {
            id: out.len() + 1,
            centre_px: [x / pixel_cm, y / pixel_cm],
            total_flux: flux,
            sigma_cm: rng.random_range(0.15..0.25),
        });
    }
    out
}
