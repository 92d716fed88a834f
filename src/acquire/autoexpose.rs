//! Auto-exposure of the luminescent frame: start short, measure the brightest source, aim
//! its peak at a target fraction of saturation, escalate the binning (within configured
//! bounds) when the longest allowed exposure is not enough, and retake shorter when the
//! final frame saturates and a shorter exposure is allowed.
//!
//! Owns: the decisions, as pure functions of frame statistics. No camera, no clock: the
//! sequence ([`super::sequence`]) takes the frames these functions ask for.

use ndarray::Array2;
use serde::{Deserialize, Serialize};

/// Bounds and targets of auto-exposure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoExposureConfig {
    /// Exposure of the first probe, s.
    pub start_exposure_s: f64,
    /// The brightest source's peak is aimed at this fraction of saturation.
    pub target_fraction: f64,
    /// Bounds of the final exposure, s.
    pub min_exposure_s: f64,
    pub max_exposure_s: f64,
    /// Allowed binnings, finest first; probes use the first.
    pub binnings: Vec<u32>,
    /// Raw level at which a pixel saturates, ADU.
    pub saturation_adu: f64,
    /// A probe whose peak rises less than this above the frame's median is too faint to
    /// extrapolate from: the next probe is ten times longer.
    pub min_probe_signal_adu: f64,
    pub max_probes: usize,
    /// Shorter retakes allowed when the final frame saturates.
    pub max_retakes: usize,
}

impl Default for AutoExposureConfig {
    fn default() -> Self {
        AutoExposureConfig {
            start_exposure_s: 1.0,
            target_fraction: 0.6,
            min_exposure_s: 15.0,
            max_exposure_s: 240.0,
            binnings: vec![4, 8],
            saturation_adu: 65000.0,
            min_probe_signal_adu: 200.0,
            max_probes: 4,
            max_retakes: 2,
        }
    }
}

/// A setting of [`AutoExposureConfig`] that cannot work; the message names it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AutoExposureConfigError {
    #[error("auto_exposure.{name} = {value}: must be a positive number")]
    NotPositive { name: &'static str, value: f64 },
    #[error("auto_exposure: min_exposure_s is above max_exposure_s")]
    MinAboveMax,
    #[error("auto_exposure.target_fraction = {0}: must be between 0 and 1")]
    TargetFraction(f64),
    #[error("auto_exposure.binnings: list at least one, finest first")]
    Binnings,
}

impl AutoExposureConfig {
    /// Check the configuration; the error names the setting.
    pub fn validate(&self) -> Result<(), AutoExposureConfigError> {
        let pos = |name: &'static str, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(AutoExposureConfigError::NotPositive { name, value })
            }
        };
        pos("start_exposure_s", self.start_exposure_s)?;
        pos("min_exposure_s", self.min_exposure_s)?;
        pos("max_exposure_s", self.max_exposure_s)?;
        pos("saturation_adu", self.saturation_adu)?;
        if self.min_exposure_s > self.max_exposure_s {
            return Err(AutoExposureConfigError::MinAboveMax);
        }
        if !(self.target_fraction > 0.0 && self.target_fraction < 1.0) {
            return Err(AutoExposureConfigError::TargetFraction(
                self.target_fraction,
            ));
        }
        if self.binnings.is_empty() || self.binnings.windows(2).any(|w| w[0] >= w[1]) {
            return Err(AutoExposureConfigError::Binnings);
        }
        Ok(())
    }
}

/// Robust statistics of one frame: cosmic rays, hot pixels and bad columns are removed by
/// a 3×3 median before the peak is taken.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FrameStats {
    /// Maximum of the 3×3-median-filtered frame, ADU.
    pub peak_adu: f64,
    /// Median of the frame (bias + dark + background), ADU.
    pub base_adu: f64,
    /// Pixels of the filtered frame at or above saturation.
    pub saturated_px: usize,
}

/// Statistics of a raw frame.
pub fn frame_stats(frame: &Array2<u16>, saturation_adu: f64) -> FrameStats {
    let (rows, cols) = frame.dim();
    let mut all: Vec<u16> = frame.iter().copied().collect();
    let mid = all.len() / 2;
    let base = if all.is_empty() {
        0.0
    } else {
        *all.select_nth_unstable(mid).1 as f64
    };
    let mut peak = 0u16;
    let mut saturated = 0usize;
    let mut w = [0u16; 9];
    for r in 1..rows.saturating_sub(1) {
        for c in 1..cols.saturating_sub(1) {
            let mut k = 0;
            for dr in 0..3 {
                for dc in 0..3 {
                    w[k] = frame[[r + dr - 1, c + dc - 1]];
                    k += 1;
                }
            }
            let m = *w.select_nth_unstable(4).1;
            peak = peak.max(m);
            if m as f64 >= saturation_adu {
                saturated += 1;
            }
        }
    }
    FrameStats {
        peak_adu: peak as f64,
        base_adu: base,
        saturated_px: saturated,
    }
}

/// What to take next.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "next", rename_all = "snake_case")]
pub enum Decision {
    Probe {
        exposure_s: f64,
        binning: u32,
    },
    Final {
        exposure_s: f64,
        binning: u32,
        /// Expected peak of the final frame, ADU.
        predicted_peak_adu: f64,
        /// Even the shortest exposure at the finest binning saturates the brightest source.
        saturation_unavoidable: bool,
    },
}

/// Round down to three significant digits (a readable exposure, never longer than asked).
pub fn round_exposure(t: f64) -> f64 {
    if t.is_nan() || t <= 0.0 {
        return t;
    }
    let mag = 10f64.powi(t.log10().floor() as i32 - 2);
    (t / mag).floor() * mag
}

/// The first probe.
pub fn first_probe(cfg: &AutoExposureConfig) -> Decision {
    Decision::Probe {
        exposure_s: cfg.start_exposure_s,
        binning: cfg.binnings[0],
    }
}

/// Decide after a probe of `exposure_s` at `binning`, the `probes`-th so far.
pub fn after_probe(
    cfg: &AutoExposureConfig,
    exposure_s: f64,
    binning: u32,
    stats: &FrameStats,
    probes: usize,
) -> Decision {
    let sat = cfg.saturation_adu;
    let finest = cfg.binnings[0];
    let can_probe = probes < cfg.max_probes;
    if stats.peak_adu >= 0.95 * sat {
        let shorter = exposure_s / 10.0;
        if can_probe && shorter >= 1e-3 {
            return Decision::Probe {
                exposure_s: shorter,
                binning,
            };
        }
        return Decision::Final {
            exposure_s: cfg.min_exposure_s,
            binning: finest,
            predicted_peak_adu: sat,
            saturation_unavoidable: true,
        };
    }
    let signal = stats.peak_adu - stats.base_adu;
    if signal < cfg.min_probe_signal_adu && can_probe && exposure_s < cfg.max_exposure_s {
        return Decision::Probe {
            exposure_s: (exposure_s * 10.0).min(cfg.max_exposure_s),
            binning,
        };
    }
    let rate = signal.max(1.0) / exposure_s;
    let target = (cfg.target_fraction * sat - stats.base_adu).max(1.0);
    let mut choice = None;
    for &b in &cfg.binnings {
        let r = rate * (b as f64 / binning as f64).powi(2);
        let t = target / r;
        if t <= cfg.max_exposure_s {
            choice = Some((b, r, t.max(cfg.min_exposure_s)));
            break;
        }
    }
    let (b, r, t) = choice.unwrap_or_else(|| {
        let b = *cfg.binnings.last().expect("validated: not empty");
        (
            b,
            rate * (b as f64 / binning as f64).powi(2),
            cfg.max_exposure_s,
        )
    });
    let t = round_exposure(t).clamp(cfg.min_exposure_s, cfg.max_exposure_s);
    let predicted = stats.base_adu + r * t;
    Decision::Final {
        exposure_s: t,
        binning: b,
        predicted_peak_adu: predicted,
        saturation_unavoidable: predicted >= sat && b == finest && t <= cfg.min_exposure_s,
    }
}

/// After the final frame: a shorter retake when it saturated and a shorter exposure is
/// allowed, else `None`.
pub fn retake(
    cfg: &AutoExposureConfig,
    exposure_s: f64,
    stats: &FrameStats,
    retakes: usize,
) -> Option<f64> {
    if stats.saturated_px == 0 || retakes >= cfg.max_retakes || exposure_s <= cfg.min_exposure_s {
        return None;
    }
    Some(round_exposure((exposure_s * 0.4).max(cfg.min_exposure_s)).max(cfg.min_exposure_s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(peak: f64, base: f64) -> FrameStats {
        FrameStats {
            peak_adu: peak,
            base_adu: base,
            saturated_px: 0,
        }
    }

    #[test]
    fn bright_source_gets_a_short_exposure_at_the_finest_binning() {
        let cfg = AutoExposureConfig::default();
        // 1000 ADU/s above a 500 ADU base at binning 4: 0.6·65000 − 500 = 38500 ADU → 38.5 s.
        match after_probe(&cfg, 1.0, 4, &stats(1500.0, 500.0), 1) {
            Decision::Final {
                exposure_s,
                binning,
                saturation_unavoidable,
                ..
            } => {
                assert_eq!(binning, 4);
                assert!((exposure_s - 38.5).abs() < 1e-9, "{exposure_s}");
                assert!(!saturation_unavoidable);
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn faint_source_escalates_binning_then_exposure() {
        let cfg = AutoExposureConfig::default();
        // 50 ADU/s at b4 needs 770 s; at b8 200 ADU/s needs 192.5 s.
        let d = after_probe(&cfg, 10.0, 4, &stats(1000.0, 500.0), 2);
        assert!(
            matches!(d, Decision::Final { binning: 8, exposure_s, .. } if (exposure_s - 192.0).abs() < 1e-9),
            "{d:?}"
        );
        // 5 ADU/s at b4: even b8 needs more than 240 s → b8 at 240 s.
        let d = after_probe(&cfg, 100.0, 4, &stats(1000.0, 500.0), 3);
        assert!(
            matches!(d, Decision::Final { binning: 8, exposure_s, .. } if exposure_s == 240.0),
            "{d:?}"
        );
    }

    #[test]
    fn a_weak_probe_is_repeated_longer_and_a_saturated_one_shorter() {
        let cfg = AutoExposureConfig::default();
        assert_eq!(
            after_probe(&cfg, 1.0, 4, &stats(550.0, 500.0), 1),
            Decision::Probe {
                exposure_s: 10.0,
                binning: 4
            }
        );
        assert_eq!(
            after_probe(&cfg, 1.0, 4, &stats(65535.0, 500.0), 1),
            Decision::Probe {
                exposure_s: 0.1,
                binning: 4
            }
        );
        let d = after_probe(&cfg, 0.001, 4, &stats(65535.0, 500.0), 4);
        assert!(matches!(
            d,
            Decision::Final {
                saturation_unavoidable: true,
                ..
            }
        ));
    }

    #[test]
    fn saturated_final_frames_are_retaken_shorter_within_bounds() {
        let cfg = AutoExposureConfig::default();
        let s = FrameStats {
            saturated_px: 3,
            ..stats(65535.0, 500.0)
        };
        assert_eq!(retake(&cfg, 100.0, &s, 0), Some(40.0));
        assert_eq!(retake(&cfg, 15.0, &s, 0), None);
        assert_eq!(retake(&cfg, 100.0, &s, 2), None);
        assert_eq!(retake(&cfg, 100.0, &stats(30000.0, 500.0), 0), None);
    }

    #[test]
    fn stats_ignore_isolated_hot_pixels() {
        let mut f = Array2::from_elem((32, 32), 500u16);
        f[[10, 10]] = 65535;
        f[[20, 5]] = 65535;
        let s = frame_stats(&f, 65000.0);
        assert_eq!(s.peak_adu, 500.0);
        assert_eq!(s.saturated_px, 0);
        for r in 14..18 {
            for c in 14..18 {
                f[[r, c]] = 65535;
            }
        }
        let s = frame_stats(&f, 65000.0);
        assert_eq!(s.peak_adu, 65535.0);
        assert!(s.saturated_px > 0);
    }

    #[test]
    fn exposures_round_down_to_three_digits() {
        assert_eq!(round_exposure(38.57), 38.5);
        assert_eq!(round_exposure(192.5), 192.0);
        assert!((round_exposure(0.12345) - 0.123).abs() < 1e-12);
    }
}
