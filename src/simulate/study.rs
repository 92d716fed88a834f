//! A longitudinal study on a drifting instrument: the same mice imaged on several days,
//! each day a QC image of the reference light source and a kinetic series after a
//! D-luciferin injection, while the instrument's response, the sensor's temperature, the
//! background and the vignetting change from day to day.
//!
//! Owns: the study's truth (each tumour's emitted light against day and minutes since
//! injection, each day's drift) and its frames, as values. The study is what lumiq must
//! see through: constant tumours must read constant, growing ones at their true rate.
//!
//! The luciferin curve of a tumour is `Φ(t) = Φ_peak · (t/t_p)^a · e^{a(1 − t/t_p)}` with
//! `a` = [`CURVE_SHAPE`]: it rises to its peak at `t_p` and falls slowly after. `t_p` is drawn
//! per mouse and day between 6 and 10 min; it moves later as a growing tumour grows (as
//! reported for growing tumours, settling near 10 min).

use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::acquisition::{lay_out, render, Conditions, LightDisc};
use super::instrument::Instrument;
use super::scene::{SceneSpec, SimulatedAcquisition, TrueMouse, TrueTumour};
use crate::process::qc::{ReferenceSource, SourcePlacement};

/// Shape `a` of the luciferin curve (see the module's header).
pub const CURVE_SHAPE: f64 = 1.5;

/// The luciferin curve relative to its peak, at `t_min` minutes for a peak at `tp_min`.
pub fn luciferin_curve(t_min: f64, tp_min: f64) -> f64 {
    if t_min <= 0.0 {
        return 0.0;
    }
    let x = t_min / tp_min;
    x.powf(CURVE_SHAPE) * (CURVE_SHAPE * (1.0 - x)).exp()
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudySpec {
    pub seed: u64,
    pub days: usize,
    /// The scene: mice, tumours per mouse, flux range (each tumour's peak flux on day 0).
    pub scene: SceneSpec,
    /// The last this many mice carry growing tumours; the others' stay constant.
    pub growing_mice: usize,
    /// Growth rate of a growing tumour's light, per day (ln units: 0.2 is ×1.22 a day).
    pub growth_per_day: f64,
    /// Frames of each day's kinetic series, and minutes between their starts.
    pub frames_per_series: usize,
    pub frame_interval_min: f64,
    /// The first frame starts this many minutes after the injection (drawn per day).
    pub first_frame_min: (f64, f64),
    /// The instrument's response drifts within 1 ± this (drawn per day).
    pub response_amplitude: f64,
    /// The sensor's temperature drifts within ± this of the scene's, °C.
    pub temperature_amplitude_c: f64,
    /// The background (autoluminescence, leak) is scaled by a factor drawn in this range.
    pub background_scale: (f64, f64),
    /// The vignetting's r² term changes by up to ± this (relative) from the calibrated flat.
    pub vignetting_change: f64,
    /// The reference source, where it sits, and its QC image's exposure.
    pub source: ReferenceSource,
    pub placement: SourcePlacement,
    pub qc_exposure_s: f64,
    /// The first day, 09:00 UTC.
    pub start: DateTime<Utc>,
}

impl Default for StudySpec {
    fn default() -> Self {
        let start = Utc
            .with_ymd_and_hms(2026, 3, 2, 9, 0, 0)
            .single()
            .expect("valid date");
        StudySpec {
            seed: 7,
            days: 10,
            scene: SceneSpec {
                mice: 5,
                tumours_per_mouse: (1, 1),
                flux_range: (3.0e6, 2.0e7),
                exposure_s: 30.0,
                body_glow_radiance: 2000.0,
                ..SceneSpec::default()
            },
            growing_mice: 2,
            growth_per_day: 0.2,
            frames_per_series: 9,
            frame_interval_min: 2.0,
            first_frame_min: (3.0, 4.0),
            response_amplitude: 0.10,
            temperature_amplitude_c: 1.5,
            background_scale: (0.5, 2.0),
            vignetting_change: 0.10,
            source: ReferenceSource {
                id: "SIM-LED-1".into(),
                radiance_p_s_cm2_sr: 5.0e5,
                radiance_rel_uncertainty: 0.0025,
                reference_date: start - Duration::days(200),
                half_life_days: 0.0,
            },
            placement: SourcePlacement {
                centre_cm: [11.2, 11.2],
                radius_cm: 1.5,
            },
            qc_exposure_s: 30.0,
            start,
        }
    }
}

/// One day's drift and timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayTruth {
    pub day: usize,
    pub response: f64,
    pub sensor_temp_c: f64,
    pub background_scale: f64,
    /// Relative change of the vignetting's r² term.
    pub vignetting_change: f64,
    pub injection_time: DateTime<Utc>,
    /// Start of each frame of the series, minutes after the injection.
    pub frame_start_min: Vec<f64>,
    /// Time to peak of each mouse's tumours that day, minutes.
    pub time_to_peak_min: Vec<f64>,
}

/// One tumour over the study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyTumour {
    pub tumour: TrueTumour,
    pub subject_id: String,
    /// Peak flux on day 0, photons/s.
    pub peak_flux_day0: f64,
    /// 0 for a constant tumour.
    pub growth_per_day: f64,
}

impl StudyTumour {
    /// The true peak flux on `day`, photons/s.
    pub fn peak_flux(&self, day: usize) -> f64 {
        self.peak_flux_day0 * (self.growth_per_day * day as f64).exp()
    }
}

/// The study's truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyTruth {
    pub spec: StudySpec,
    pub mice: Vec<TrueMouse>,
    pub tumours: Vec<StudyTumour>,
    pub days: Vec<DayTruth>,
}

/// One day's frames.
pub struct StudyDay {
    pub truth: DayTruth,
    /// The reference source on the stage, nothing else.
    pub qc_image: SimulatedAcquisition,
    /// The kinetic series, one acquisition a frame.
    pub series: Vec<SimulatedAcquisition>,
}

/// Lay out the study: its mice and tumours, and each day's drift and timing.
pub fn plan(inst: &Instrument, spec: &StudySpec) -> StudyTruth {
    let mut scene = spec.scene.clone();
    scene.seed = spec.seed;
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let (mice, tumours) = lay_out(inst, &scene, &mut rng);
    let first_growing = mice.len().saturating_sub(spec.growing_mice);
    let tumours = tumours
        .into_iter()
        .map(|t| StudyTumour {
            subject_id: mice[t.mouse].subject_id.clone(),
            peak_flux_day0: t.total_flux,
            growth_per_day: if t.mouse >= first_growing {
                spec.growth_per_day
            } else {
                0.0
            },
            tumour: t,
        })
        .collect();
    let mut day_rng = ChaCha8Rng::seed_from_u64(spec.seed ^ 0x0053_5455_4459);
    let days = (0..spec.days)
        .map(|day| {
            let a = spec.response_amplitude;
            let t = spec.temperature_amplitude_c;
            let first = day_rng.random_range(spec.first_frame_min.0..=spec.first_frame_min.1);
            let progress = day as f64 / spec.days.max(2).saturating_sub(1) as f64;
            DayTruth {
                day,
                response: 1.0 + day_rng.random_range(-a..=a),
                sensor_temp_c: spec.scene.sensor_temp_c + day_rng.random_range(-t..=t),
                background_scale: day_rng
                    .random_range(spec.background_scale.0..=spec.background_scale.1),
                vignetting_change: day_rng
                    .random_range(-spec.vignetting_change..=spec.vignetting_change),
                injection_time: spec.start + Duration::days(day as i64) + Duration::minutes(30),
                frame_start_min: (0..spec.frames_per_series)
                    .map(|k| first + k as f64 * spec.frame_interval_min)
                    .collect(),
                time_to_peak_min: (0..mice.len())
                    .map(|m| {
                        let jitter = day_rng.random_range(-1.0..=1.0);
                        if m >= first_growing {
                            // Later as the tumour grows: from about 7 toward 9.5 min.
                            7.0 + 2.5 * progress + 0.5 * jitter
                        } else {
                            8.0 + 1.5 * jitter
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    StudyTruth {
        spec: spec.clone(),
        mice,
        tumours,
        days,
    }
}

/// The instrument as it is on one day: its vignetting changed by the day's drift (its
/// response is the acquisition's `Conditions::response`).
pub fn instrument_on(inst: &Instrument, day: &DayTruth) -> Instrument {
    let mut i = inst.clone();
    i.vignetting.k[2] *= 1.0 + day.vignetting_change;
    i
}

/// Render one day of the study.
pub fn simulate_day(inst: &Instrument, truth: &StudyTruth, day: usize) -> StudyDay {
    let spec = &truth.spec;
    let d = &truth.days[day];
    let inst = instrument_on(inst, d);
    let mut scene = spec.scene.clone();
    scene.sensor_temp_c = d.sensor_temp_c;
    scene.autoluminescence_radiance *= d.background_scale;
    scene.light_leak_radiance *= d.background_scale;
    scene.body_glow_radiance *= d.background_scale;

    // The QC image: the source alone on the stage, before the injection.
    let qc_at = d.injection_time - Duration::minutes(20);
    let qc_scene = SceneSpec {
        seed: spec
            .seed
            .wrapping_mul(1000)
            .wrapping_add(day as u64 * 100 + 99),
        mice: 0,
        photograph: false,
        exposure_s: spec.qc_exposure_s,
        ..scene.clone()
    };
    let qc_cond = Conditions {
        acquired_at: qc_at,
        injection_time: None,
        response: d.response,
        discs: vec![LightDisc {
            centre_cm: spec.placement.centre_cm,
            radius_cm: spec.placement.radius_cm,
            radiance: spec.source.expected_radiance(qc_at),
        }],
    };
    let mut rng = ChaCha8Rng::seed_from_u64(qc_scene.seed);
    let mut qc_image = render(&inst, &qc_scene, vec![], vec![], &qc_cond, &mut rng);
    qc_image.meta.subject_ids.clear();
    qc_image.meta.study_id = None;

    // The exposure shortens as the tumours grow (as auto-exposure would), within the
    // range the calibration set's 60 s darks scale to (15 s and up).
    let growth = truth
        .tumours
        .iter()
        .map(|t| t.growth_per_day)
        .fold(0.0f64, f64::max);
    let exposure_s = (2.0 * scene.exposure_s * (-growth * day as f64).exp())
        .clamp(15.0_f64.min(scene.exposure_s), scene.exposure_s);
    let series = d
        .frame_start_min
        .iter()
        .enumerate()
        .map(|(k, &start_min)| {
            let mid_min = start_min + exposure_s / 120.0;
            let tumours: Vec<TrueTumour> = truth
                .tumours
                .iter()
                .map(|st| TrueTumour {
                    total_flux: st.peak_flux(day)
                        * luciferin_curve(mid_min, d.time_to_peak_min[st.tumour.mouse]),
                    ..st.tumour.clone()
                })
                .collect();
            let frame_scene = SceneSpec {
                seed: spec
                    .seed
                    .wrapping_mul(1000)
                    .wrapping_add(day as u64 * 100 + k as u64),
                exposure_s,
                ..scene.clone()
            };
            let at = d.injection_time + Duration::milliseconds((start_min * 60_000.0) as i64);
            let cond = Conditions {
                acquired_at: at,
                injection_time: Some(d.injection_time),
                response: d.response,
                discs: vec![],
            };
            let mut rng = ChaCha8Rng::seed_from_u64(frame_scene.seed);
            let mut sim = render(
                &inst,
                &frame_scene,
                truth.mice.clone(),
                tumours,
                &cond,
                &mut rng,
            );
            sim.meta.study_id = Some(format!("SIM-STUDY-{}", spec.seed));
            sim
        })
        .collect();
    StudyDay {
        truth: d.clone(),
        qc_image,
        series,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curve_peaks_at_its_time_to_peak() {
        assert!((luciferin_curve(8.0, 8.0) - 1.0).abs() < 1e-12);
        assert!(luciferin_curve(7.5, 8.0) < 1.0 && luciferin_curve(8.5, 8.0) < 1.0);
        // Slow fall: still about half the peak at 20 min.
        let late = luciferin_curve(20.0, 8.0);
        assert!(late > 0.35 && late < 0.5, "{late}");
        assert_eq!(luciferin_curve(0.0, 8.0), 0.0);
    }

    #[test]
    fn the_plan_drifts_within_its_bounds_and_keeps_constant_tumours_constant() {
        let inst = Instrument {
            sensor_px: 1920,
            ..Instrument::default()
        };
        let spec = StudySpec::default();
        let t = plan(&inst, &spec);
        assert_eq!(t.days.len(), 10);
        assert_eq!(t.mice.len(), 5);
        for d in &t.days {
            assert!((d.response - 1.0).abs() <= 0.10);
            assert!((d.sensor_temp_c + 90.0).abs() <= 1.5);
            assert!(d.frame_start_min[0] >= 3.0 && *d.frame_start_min.last().unwrap() <= 20.0);
        }
        let spread = t
            .days
            .iter()
            .map(|d| d.response)
            .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(r), hi.max(r)));
        assert!(
            spread.1 - spread.0 > 0.08,
            "the response must really drift: {spread:?}"
        );
        for st in &t.tumours {
            if st.tumour.mouse < 3 {
                assert_eq!(st.peak_flux(9), st.peak_flux_day0);
            } else {
                assert!((st.peak_flux(9) / st.peak_flux_day0 - (1.8f64).exp()).abs() < 1e-9);
            }
        }
    }
}
