//! One simulated acquisition: the scene ([`super::scene`]) rendered through the instrument
//! ([`super::instrument`]) into a luminescent frame and, when asked, a photograph
//! ([`super::photo`]), with the background (autoluminescence, a light leak, the skin's
//! glow ending at each body's outline) and the truth.
//!
//! Owns: composing the parts into a [`SimulatedAcquisition`] and its metadata.

use chrono::{DateTime, Duration, TimeZone, Utc};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::instrument::{Instrument, ReadoutSpec};
use super::scene::{
    feature_rng, lay_in_touching_pairs, render_tumour, stray_sources, SceneSpec,
    SimulatedAcquisition, TrueMouse, TrueTumour, Truth, AUTOLUMINESCENCE_SIGMA_X_CM,
    AUTOLUMINESCENCE_SIGMA_Y_CM,
};
use crate::acquisition::{AcquisitionMeta, AcquisitionSettings, PhotographMeta};

fn base_time(seed: u64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0)
        .single()
        .expect("valid date")
        + Duration::minutes((seed % 10_000) as i64 * 7)
}

/// What changes from one acquisition of a scene to the next on one instrument: the time,
/// the injection, the instrument's response, and light that is not the mice's.
#[derive(Debug, Clone, PartialEq)]
pub struct Conditions {
    pub acquired_at: DateTime<Utc>,
    pub injection_time: Option<DateTime<Utc>>,
    /// The instrument's response relative to its calibration: 1 as calibrated, 0.9 when
    /// it gives 10 % fewer counts for the same light (optics, filters, sensor ageing).
    pub response: f64,
    /// Uniform discs of light on the stage (a reference light source).
    pub discs: Vec<LightDisc>,
}

impl Conditions {
    /// An acquisition at `acquired_at`, injection 12 min before, response 1, no disc.
    pub fn at(acquired_at: DateTime<Utc>) -> Self {
        Conditions {
            acquired_at,
            injection_time: Some(acquired_at - Duration::minutes(12)),
            response: 1.0,
            discs: Vec::new(),
        }
    }
}

/// A uniform disc of light: centre and radius in cm from the image's top-left corner.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LightDisc {
    pub centre_cm: [f64; 2],
    pub radius_cm: f64,
    /// Photons/s/cm²/sr.
    pub radiance: f64,
}

/// Simulate one acquisition: photograph (if asked) and luminescent frame, with truth.
pub fn simulate_acquisition(inst: &Instrument, spec: &SceneSpec) -> SimulatedAcquisition {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let (mice, tumours) = lay_out(inst, spec, &mut rng);
    render(
        inst,
        spec,
        mice,
        tumours,
        &Conditions::at(base_time(spec.seed)),
        &mut rng,
    )
}

/// The mice and their tumours (fluxes as drawn, before the frame's edge cuts any) of a
/// scene, drawn from `rng`.
pub fn lay_out(
    inst: &Instrument,
    spec: &SceneSpec,
    rng: &mut ChaCha8Rng,
) -> (Vec<TrueMouse>, Vec<TrueTumour>) {
    let n = inst.frame_px(spec.binning);
    let pixel_cm = spec.fov_cm / n as f64;

    // Mice side by side, heads up, evenly spaced across the field.
    let spacing = spec.fov_cm / spec.mice.max(1) as f64;
    let mut mice: Vec<TrueMouse> = (0..spec.mice)
        .map(|m| TrueMouse {
            subject_id: format!("M{:03}", 101 + m),
            centre_cm: [
                spacing * (m as f64 + 0.5) + rng.random_range(-0.15..0.15) * spacing,
                spec.fov_cm * 0.5 + rng.random_range(-0.5..0.5),
            ],
            half_width_cm: (0.42 * spacing).min(1.5),
            half_length_cm: (0.3 * spec.fov_cm).min(4.5),
        })
        .collect();
    if spec.touching_mice {
        lay_in_touching_pairs(&mut mice, spec.seed);
    }

    // Tumours on the mice, kept apart unless a touching pair is wanted.
    let mut tumours: Vec<TrueTumour> = Vec::new();
    let shapes = ["gaussian", "gaussian", "flat_top", "two_lobed"];
    for (mi, mouse) in mice.iter().enumerate() {
        let count = rng.random_range(spec.tumours_per_mouse.0..=spec.tumours_per_mouse.1);
        let mut placed = 0;
        let mut attempts = 0;
        while placed < count && attempts < 200 {
            attempts += 1;
            let sa = rng.random_range(spec.sigma_range_cm.0..=spec.sigma_range_cm.1);
            let sb = sa * rng.random_range(0.6..=1.0);
            let x = mouse.centre_cm[0] + rng.random_range(-0.6..0.6) * mouse.half_width_cm;
            let y = mouse.centre_cm[1] + rng.random_range(-0.7..0.7) * mouse.half_length_cm;
            let clear = tumours.iter().all(|o| {
                let d = ((o.centre_px[0] * pixel_cm - x).powi(2)
                    + (o.centre_px[1] * pixel_cm - y).powi(2))
                .sqrt();
                d > 5.0 * (o.sigma_major_cm + sa) + 0.3
            });
            if !clear {
                continue;
            }
            let flux = (rng.random_range(spec.flux_range.0.ln()..=spec.flux_range.1.ln())).exp();
            tumours.push(TrueTumour {
                id: tumours.len() + 1,
                mouse: mi,
                centre_px: [x / pixel_cm, y / pixel_cm],
                total_flux: flux,
                peak_radiance: 0.0,
                sigma_major_cm: sa,
                sigma_minor_cm: sb,
                angle_deg: rng.random_range(0.0..180.0),
                shape: shapes[rng.random_range(0..shapes.len())].to_string(),
            });
            placed += 1;
        }
    }
    if spec.touching_pair {
        if let Some(first) = tumours.iter().position(|t| t.mouse == 0) {
            let t = tumours[first].clone();
            let sep_cm = 2.6 * t.sigma_major_cm.max(0.15);
            let flux = t.total_flux * rng.random_range(0.5..1.0);
            tumours.push(TrueTumour {
                id: tumours.len() + 1,
                centre_px: [
                    t.centre_px[0] + sep_cm / pixel_cm,
                    t.centre_px[1] + 0.3 * sep_cm / pixel_cm,
                ],
                total_flux: flux,
                shape: "gaussian".into(),
                angle_deg: 0.0,
                sigma_minor_cm: t.sigma_major_cm,
                ..t
            });
        }
    }

    (mice, tumours)
}

/// Render a laid-out scene through the instrument under `cond`: each tumour's
/// `total_flux` is the light it emits; the truth's is what lands on the frame.
pub fn render(
    inst: &Instrument,
    spec: &SceneSpec,
    mice: Vec<TrueMouse>,
    mut tumours: Vec<TrueTumour>,
    cond: &Conditions,
    rng: &mut ChaCha8Rng,
) -> SimulatedAcquisition {
    let n = inst.frame_px(spec.binning);
    let pixel_cm = spec.fov_cm / n as f64;
    let area = pixel_cm * pixel_cm;
    // Render tumour light and background.
    let mut tumour_radiance = Array2::<f32>::zeros((n, n));
    for t in tumours.iter_mut() {
        let mut own = Array2::<f32>::zeros((n, n));
        let peak = render_tumour(t, t.total_flux, pixel_cm, &mut own);
        t.peak_radiance = peak;
        // The imaged flux is what lands on the frame (a tumour cut by the edge loses light).
        t.total_flux =
            4.0 * std::f64::consts::PI * own.iter().map(|&v| v as f64).sum::<f64>() * area;
        tumour_radiance += &own;
    }
    for stray in stray_sources(spec, &mice, n) {
        render_tumour(
            &stray.as_tumour(),
            stray.total_flux,
            pixel_cm,
            &mut tumour_radiance,
        );
    }
    let background_radiance = Array2::from_shape_fn((n, n), |(r, c)| {
        let x = (c as f64 + 0.5) * pixel_cm;
        let y = (r as f64 + 0.5) * pixel_cm;
        let leak = spec.light_leak_radiance * x / spec.fov_cm;
        let auto: f64 = mice
            .iter()
            .map(|m| {
                // Diffuse glow of the body, broader than the mouse (light scatters in tissue).
                let u = (x - m.centre_cm[0]) / AUTOLUMINESCENCE_SIGMA_X_CM;
                let v = (y - m.centre_cm[1]) / AUTOLUMINESCENCE_SIGMA_Y_CM;
                spec.autoluminescence_radiance * (-(u * u + v * v) / 2.0).exp()
            })
            .sum();
        (leak + auto) as f32
    });
    let mut background_radiance = background_radiance;
    if spec.body_glow_radiance > 0.0 {
        background_radiance += &body_glow(spec, &mice, n);
    }

    let mut disc_radiance = Array2::<f32>::zeros((n, n));
    for d in &cond.discs {
        render_disc(d, pixel_cm, &mut disc_radiance);
    }

    // Forward model: radiance → expected photo-electrons per binned pixel.
    let coefficient = inst.coefficient(spec.fov_cm, spec.f_number) / cond.response;
    let vig = inst.vignetting_frame(spec.binning, spec.fov_cm);
    let b2 = (spec.binning as f64).powi(2);
    let gain = inst.sensor.gain_e_per_adu;
    let mut signal_e = Array2::<f32>::zeros((n, n));
    ndarray::Zip::from(&mut signal_e)
        .and(&tumour_radiance)
        .and(&background_radiance)
        .and(&disc_radiance)
        .and(&vig)
        .for_each(|s, &lt, &lb, &ld, &ff| {
            let light = lt as f64 + lb as f64 + ld as f64;
            let adu = light * spec.exposure_s * b2 * ff as f64 / coefficient;
            *s = (adu * gain) as f32;
        });
    let readout = ReadoutSpec {
        binning: spec.binning,
        exposure_s: spec.exposure_s,
        sensor_temp_c: spec.sensor_temp_c,
        cosmic_rays: spec.cosmic_rays,
    };
    let luminescent_adu = inst.read_out(&readout, Some(&signal_e), rng);

    let photo_binning = (spec.binning / 2).max(1);
    let photograph_adu = spec
        .photograph
        .then(|| super::photo::photograph(inst, spec, &mice, photo_binning, rng));

    let acquired_at = cond.acquired_at;
    let meta = AcquisitionMeta {
        instrument_id: inst.instrument_id.clone(),
        acquired_at,
        settings: AcquisitionSettings {
            exposure_s: spec.exposure_s,
            binning: spec.binning,
            f_number: spec.f_number,
            fov_cm: spec.fov_cm,
            sensor_temp_c: spec.sensor_temp_c,
            emission_filter: "open".into(),
            shelf: Some("D".into()),
        },
        study_id: Some("SIM-STUDY-1".into()),
        subject_ids: mice.iter().map(|m| m.subject_id.clone()).collect(),
        injection_time: cond.injection_time,
        view: Some("dorsal".into()),
        photograph: spec.photograph.then_some(PhotographMeta {
            exposure_s: 0.2,
            binning: photo_binning,
        }),
    };
    SimulatedAcquisition {
        meta,
        luminescent_adu,
        photograph_adu,
        truth: Truth {
            spec: spec.clone(),
            coefficient: inst.coefficient(spec.fov_cm, spec.f_number),
            pixel_area_cm2: area,
            mice,
            tumours,
        },
        tumour_radiance,
        background_radiance,
    }
}

/// Add a uniform disc's mean-pixel radiance to `out` (edge pixels supersampled 4×4).
pub fn render_disc(d: &LightDisc, pixel_cm: f64, out: &mut Array2<f32>) {
    let sub = 4;
    for ((r, c), v) in out.indexed_iter_mut() {
        let mut inside = 0;
        for i in 0..sub {
            for j in 0..sub {
                let x = (c as f64 + (j as f64 + 0.5) / sub as f64) * pixel_cm;
                let y = (r as f64 + (i as f64 + 0.5) / sub as f64) * pixel_cm;
                if (x - d.centre_cm[0]).powi(2) + (y - d.centre_cm[1]).powi(2)
                    <= d.radius_cm.powi(2)
                {
                    inside += 1;
                }
            }
        }
        *v += (d.radiance * inside as f64 / (sub * sub) as f64) as f32;
    }
}

const GLOW_STREAM: u64 = 0x474C_4F57;

/// Supersampling of a pixel that the body outline crosses, per axis.
const GLOW_SUPERSAMPLE: usize = 4;

/// The skin's glow, mean radiance over each pixel of an `n`-pixel frame: on each mouse's
/// outline (the photograph's, neck included; tails excluded, their glow being far below the
/// body's) and nothing outside it, so the edge is as sharp as the pixel grid allows. Each
/// mouse's level is drawn within ±40 % of `spec.body_glow_radiance`; inside, it rises by
/// half toward the belly (a broad bump behind the body's centre), as the gut's glow does.
pub fn body_glow(spec: &SceneSpec, mice: &[TrueMouse], n: usize) -> Array2<f32> {
    let pixel_cm = spec.fov_cm / n as f64;
    let levels: Vec<f64> = (0..mice.len())
        .map(|i| {
            spec.body_glow_radiance
                * feature_rng(spec.seed, GLOW_STREAM + 16 * i as u64).random_range(0.6..=1.4)
        })
        .collect();
    let pinches: Vec<f64> = (0..mice.len())
        .map(|i| super::photo::neck_pinch(spec, i))
        .collect();
    let glow_at = |x: f64, y: f64| -> f64 {
        mice.iter()
            .zip(&levels)
            .zip(&pinches)
            .find(|((m, _), &pinch)| super::photo::body_radius(m, pinch, x, y) < 1.0)
            .map(|((m, &level), _)| {
                let belly_y = m.centre_cm[1] + 0.25 * m.half_length_cm;
                let v = (y - belly_y) / (0.45 * m.half_length_cm);
                level * (0.8 + 0.4 * (-0.5 * v * v).exp())
            })
            .unwrap_or(0.0)
    };
    let k = GLOW_SUPERSAMPLE;
    Array2::from_shape_fn((n, n), |(r, c)| {
        let corners = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)]
            .map(|(dx, dy)| glow_at((c as f64 + dx) * pixel_cm, (r as f64 + dy) * pixel_cm));
        if corners.iter().all(|&g| g == 0.0) {
            return 0.0;
        }
        if corners.iter().all(|&g| g > 0.0) {
            // Wholly inside: the glow is smooth there.
            return glow_at((c as f64 + 0.5) * pixel_cm, (r as f64 + 0.5) * pixel_cm) as f32;
        }
        let mut sum = 0.0;
        for i in 0..k {
            for j in 0..k {
                let x = (c as f64 + (j as f64 + 0.5) / k as f64) * pixel_cm;
                let y = (r as f64 + (i as f64 + 0.5) / k as f64) * pixel_cm;
                sum += glow_at(x, y);
            }
        }
        (sum / (k * k) as f64) as f32
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truth_flux_matches_the_rendered_radiance() {
        let inst = Instrument {
            sensor_px: 512,
            ..Instrument::default()
        };
        let spec = SceneSpec {
            binning: 4,
            mice: 2,
            photograph: false,
            ..SceneSpec::default()
        };
        let sim = simulate_acquisition(&inst, &spec);
        assert!(!sim.truth.tumours.is_empty());
        let total: f64 = sim.truth.tumours.iter().map(|t| t.total_flux).sum();
        let rendered = 4.0
            * std::f64::consts::PI
            * sim.tumour_radiance.iter().map(|&v| v as f64).sum::<f64>()
            * sim.truth.pixel_area_cm2;
        assert!((total - rendered).abs() / total < 1e-4);
    }

    #[test]
    fn same_seed_same_frame() {
        let inst = Instrument {
            sensor_px: 256,
            ..Instrument::default()
        };
        let spec = SceneSpec {
            binning: 4,
            mice: 1,
            ..SceneSpec::default()
        };
        let a = simulate_acquisition(&inst, &spec);
        let b = simulate_acquisition(&inst, &spec);
        assert_eq!(a.luminescent_adu, b.luminescent_adu);
        assert_eq!(a.truth, b.truth);
    }
}
