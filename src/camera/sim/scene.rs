//! What the simulated camera sees: the scene of `lumiq simulate` (mice, tumours,
//! autoluminescence, a light leak) rendered for whatever exposure, binning, shutter,
//! photograph LED, filter, door, flat-field panel and reference light source a frame is taken with, and read out by the
//! simulated instrument's sensor (bias, read noise, temperature-dependent dark current and
//! hot pixels, PRNU, vignetting, Poisson noise, cosmic rays).
//!
//! Owns: turning light into electrons for one frame. Pure: no clock, no I/O. The noise-free
//! radiance and the truth come from [`crate::simulate::simulate_acquisition`] (once per
//! binning and field of view, cached); the forward model is the simulator's
//! (`S = B + D + L·t·b²·FF/C`), so frames from the camera quantify like `lumiq simulate`'s.

use std::collections::HashMap;
use std::sync::Arc;

use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::simulate::acquisition::{render_disc, LightDisc};
use crate::simulate::instrument::ReadoutSpec;
use crate::simulate::photo::{body_radius, neck_pinch};
use crate::simulate::scene::TrueMouse;
use crate::simulate::{simulate_acquisition, Instrument, SceneSpec, Truth};

/// Light reaching the sensor during one exposure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Light {
    pub shutter_open: bool,
    /// Photograph LED level, percent.
    pub led_percent: u8,
    /// Room light floods the box.
    pub door_open: bool,
    /// Transmission of the emission filter in the beam (1 = open).
    pub filter_transmission: f64,
    /// The evenly lit flat-field panel covers the stage (and hides the scene).
    pub flat_panel: bool,
    /// A reference light source alone on the stage (the scene's mice are out of the box).
    pub reference_source: Option<LightDisc>,
}

impl Light {
    pub fn dark() -> Self {
        Light {
            shutter_open: false,
            led_percent: 0,
            door_open: false,
            filter_transmission: 1.0,
            flat_panel: false,
            reference_source: None,
        }
    }
}

/// How a frame's pixels are made.
#[derive(Debug, Clone, PartialEq)]
pub enum FramePhysics {
    /// The simulated instrument looking at a simulated scene.
    Scene(SceneSpec),
    /// A cheap deterministic pattern (bias plus a ramp; no noise): for codec benchmarks and
    /// transport tests where physics would only cost time.
    Pattern,
}

/// LED-lit photograph level at 100 %, 0.2 s and binning 4, electrons per binned pixel (the
/// level `lumiq simulate` uses).
pub const PHOTO_E_AT_FULL_LED: f64 = 30_000.0;
/// Room light through an open door, electrons per unbinned pixel per second.
pub const ROOM_LIGHT_E_PER_S: f64 = 2.0e5;
/// The flat-field panel's light on the optical axis, open filter, electrons per unbinned
/// pixel per second (even across the panel; the lens vignettes it like any light).
pub const FLAT_PANEL_E_PER_S: f64 = 400.0;

struct Rendered {
    /// Tumour plus background radiance, photons/s/cm²/sr, per binned pixel.
    radiance: Array2<f32>,
    vignetting: Array2<f32>,
    mice: Vec<TrueMouse>,
    truth: Truth,
}

/// The scene and sensor of the simulated camera.
pub struct SimScene {
    pub instrument: Instrument,
    pub physics: FramePhysics,
    /// The instrument's response relative to its calibration: light from the stage gives
    /// this times the counts the calibration expects (1 as calibrated).
    pub response: f64,
    cache: HashMap<(u32, i64), Arc<Rendered>>,
}

impl std::fmt::Debug for SimScene {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimScene")
            .field("physics", &self.physics)
            .finish()
    }
}

impl SimScene {
    pub fn new(instrument: Instrument, physics: FramePhysics) -> Self {
        SimScene {
            instrument,
            physics,
            response: 1.0,
            cache: HashMap::new(),
        }
    }

    fn rendered(&mut self, binning: u32, fov_cm: f64) -> Option<Arc<Rendered>> {
        let FramePhysics::Scene(spec) = &self.physics else {
            return None;
        };
        let key = (binning, (fov_cm * 100.0).round() as i64);
        if let Some(r) = self.cache.get(&key) {
            return Some(r.clone());
        }
        let spec = SceneSpec {
            binning,
            fov_cm,
            photograph: false,
            cosmic_rays: false,
            ..spec.clone()
        };
        let sim = simulate_acquisition(&self.instrument, &spec);
        let radiance = &sim.tumour_radiance + &sim.background_radiance;
        let r = Arc::new(Rendered {
            radiance,
            vignetting: self.instrument.vignetting_frame(binning, fov_cm),
            mice: sim.truth.mice.clone(),
            truth: sim.truth,
        });
        self.cache.insert(key, r.clone());
        Some(r)
    }

    /// The ground truth of the scene at a binning and field of view (`None` for patterns).
    pub fn truth(&mut self, binning: u32, fov_cm: f64) -> Option<Truth> {
        self.rendered(binning, fov_cm).map(|r| r.truth.clone())
    }

    /// Raw counts of one frame. `gain_factor` divides the e-/ADU (the `Gain` register),
    /// `read_noise_factor` scales the read noise (the `ReadoutSpeed` register).
    #[allow(clippy::too_many_arguments)]
    pub fn frame(
        &mut self,
        binning: u32,
        exposure_s: f64,
        fov_cm: f64,
        sensor_temp_c: f64,
        light: Light,
        gain_factor: f64,
        read_noise_factor: f64,
        seed: u64,
    ) -> Array2<u16> {
        let n = self.instrument.frame_px(binning);
        let Some(r) = self.rendered(binning, fov_cm) else {
            // Pattern: bias plus a ramp, exposure-independent.
            let bias = self.instrument.bias_level_adu as u32;
            return Array2::from_shape_fn((n, n), |(y, x)| {
                (bias + ((x * 7 + y * 13 + seed as usize) % 1024) as u32) as u16
            });
        };
        let FramePhysics::Scene(spec) = &self.physics else {
            unreachable!("rendered() returned a scene")
        };
        let cosmic_rays = spec.cosmic_rays;
        let mut inst = self.instrument.clone();
        inst.sensor.gain_e_per_adu /= gain_factor.max(1e-6);
        inst.sensor.read_noise_e *= read_noise_factor;
        let b = binning as f64;
        let coefficient = inst.coefficient(fov_cm, 1.0);
        let gain = self.instrument.sensor.gain_e_per_adu;
        let pixel_cm = fov_cm / n as f64;
        let source = light.reference_source.map(|d| {
            let mut out = Array2::<f32>::zeros((n, n));
            render_disc(&d, pixel_cm, &mut out);
            out
        });
        let stage = source.as_ref().unwrap_or(&r.radiance);
        let response = self.response;
        let signal = if light.shutter_open {
            let photo = PHOTO_E_AT_FULL_LED * light.led_percent as f64 / 100.0
                * (exposure_s / 0.2)
                * (b / 4.0).powi(2);
            let room = if light.door_open {
                ROOM_LIGHT_E_PER_S * b * b * exposure_s
            } else {
                0.0
            };
            Array2::from_shape_fn((n, n), |(row, col)| {
                let lum = stage[[row, col]] as f64
                    * response
                    * exposure_s
                    * b
                    * b
                    * r.vignetting[[row, col]] as f64
                    / coefficient
                    * gain
                    * light.filter_transmission;
                let lum = if light.flat_panel {
                    FLAT_PANEL_E_PER_S
                        * b
                        * b
                        * exposure_s
                        * r.vignetting[[row, col]] as f64
                        * light.filter_transmission
                } else {
                    lum
                };
                let led = if photo > 0.0 {
                    let x = (col as f64 + 0.5) * pixel_cm;
                    let y = (row as f64 + 0.5) * pixel_cm;
                    let falloff = 0.75 + 0.25 * (1.0 - x / fov_cm);
                    // The outline the scene's glow follows (neck included).
                    let on_mouse = r
                        .mice
                        .iter()
                        .enumerate()
                        .any(|(i, m)| body_radius(m, neck_pinch(spec, i), x, y) <= 1.0);
                    photo * falloff * if on_mouse { 0.8 } else { 0.12 }
                } else {
                    0.0
                };
                (lum + led + room) as f32
            })
        } else {
            Array2::zeros((n, n))
        };
        let spec = ReadoutSpec {
            binning,
            exposure_s,
            sensor_temp_c,
            cosmic_rays,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        inst.read_out(&spec, Some(&signal), &mut rng)
    }
}
