//! Daily QC against a reference light source: what the source should emit on a given day
//! (its certified radiance, decayed from its reference date), what the instrument measured
//! of it, the instrument's response factor with its uncertainty, and the correction of a
//! measured flux by that factor.
//!
//! Owns: the arithmetic of QC, pure. Reading and writing the QC history, and acquiring the
//! source, live in `crate::qc`.
//!
//! The correction. A flux is `Φ = C · S` (S the corrected counts rate, C the calibration
//! coefficient). The source, imaged with the same coefficient, reads `R_meas = C · S_src`
//! against its certified `R_src`, so the response factor is `k = R_meas / R_src` and the
//! corrected flux `Φ / k = R_src · S / S_src`: the coefficient cancels. The corrected
//! flux's calibration uncertainty is therefore the source's certified uncertainty and the
//! QC measurement's own, not the coefficient's — as long as the QC and the measurement
//! used the same coefficient (same field of view and f-number). When they did not, the
//! ratio of the two coefficients is known only to the coefficient's uncertainty, which is
//! then kept as well.

use chrono::{DateTime, Utc};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::{Uncertain, UncertaintyComponents};

/// Seconds in a day.
const DAY_S: f64 = 86_400.0;

/// The reference light source, as its certificate describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceSource {
    /// The source's own id (serial number or the lab's name for it).
    pub id: String,
    /// Certified radiance at `reference_date`, photons/s/cm²/sr.
    pub radiance_p_s_cm2_sr: f64,
    /// Relative 1σ uncertainty of the certified radiance (NIST-traceable LED standards:
    /// about 0.0025).
    pub radiance_rel_uncertainty: f64,
    /// The date the certified radiance holds for.
    pub reference_date: DateTime<Utc>,
    /// Half-life of the source's light, days: 0 for an LED standard (no decay); tritium
    /// (betalight) sources 12.32 years, [`TRITIUM_HALF_LIFE_DAYS`].
    pub half_life_days: f64,
}

/// Tritium's half-life, 12.32 years, in days: a betalight gives about 5.5 % less light
/// each year.
pub const TRITIUM_HALF_LIFE_DAYS: f64 = 12.32 * 365.25;

impl ReferenceSource {
    /// The radiance the source emits at `at`, photons/s/cm²/sr:
    /// `R₀ · 2^(−Δt / T½)`, Δt the days since the reference date (no decay when T½ is 0).
    pub fn expected_radiance(&self, at: DateTime<Utc>) -> f64 {
        if self.half_life_days <= 0.0 {
            return self.radiance_p_s_cm2_sr;
        }
        let days = (at - self.reference_date).num_milliseconds() as f64 / 1000.0 / DAY_S;
        self.radiance_p_s_cm2_sr * (-days / self.half_life_days).exp2()
    }
}

/// Where the source sits in the field of view: a disc, centre and radius in cm from the
/// image's top-left corner (as the record's `centroid_cm`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SourcePlacement {
    pub centre_cm: [f64; 2],
    pub radius_cm: f64,
}

/// How QC is done on one instrument: the source, where it sits, and how a result is judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QcProcedure {
    pub source: ReferenceSource,
    pub placement: SourcePlacement,
    /// A response factor further than this from 1 (relative) is out of tolerance.
    pub tolerance: f64,
    /// Hours a QC stays current.
    pub valid_hours: f64,
}

/// Below this significance of the source over its surroundings, the source is not seen.
const MIN_SOURCE_SNR: f64 = 20.0;
/// Share of the source's radius measured (its edge is left out: the disc's rim blurs).
const INNER_FRACTION: f64 = 0.7;
/// The surroundings: an annulus from this many radii ...
const ANNULUS_INNER: f64 = 1.4;
/// ... to this many.
const ANNULUS_OUTER: f64 = 2.0;

/// What the instrument measured of the source.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SourceMeasurement {
    /// Mean radiance over the source's inner disc, its surroundings' median subtracted,
    /// photons/s/cm²/sr.
    pub radiance: f64,
    /// 1σ of `radiance`: the larger of the propagated pixel variance and the pixels'
    /// scatter over the disc (which includes the source's non-uniformity).
    pub radiance_sigma: f64,
    /// Pixels measured.
    pub n_pixels: usize,
    /// The surroundings' median radiance that was subtracted.
    pub surroundings_radiance: f64,
}

/// Why the source could not be measured.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QcError {
    #[error("the reference source's disc at ({x:.2}, {y:.2}) cm, radius {r:.2} cm, is not inside the {w:.2} × {h:.2} cm frame: set [qc] source_centre_cm and source_radius_cm to where the source sits")]
    OutsideFrame {
        x: f64,
        y: f64,
        r: f64,
        w: f64,
        h: f64,
    },
    #[error("the reference source's disc covers {0} pixels; at least 12 are needed: use a finer binning or check [qc] source_radius_cm")]
    TooFewPixels(usize),
    #[error("no reference source at ({x:.2}, {y:.2}) cm: its disc reads {snr:.1}σ over its surroundings (at least {MIN_SOURCE_SNR} needed); place the source there or correct [qc] source_centre_cm")]
    NotSeen { x: f64, y: f64, snr: f64 },
    #[error("the reference source is saturated in {0} pixels: shorten the QC exposure")]
    Saturated(usize),
}

/// Measure the source on a calibrated radiance map (`radiance`, photons/s/cm²/sr, with its
/// per-pixel `variance`), `pixel_cm` on a side; `saturated` marks pixels at the sensor's
/// saturation level.
pub fn measure_source(
    radiance: &Array2<f32>,
    variance: &Array2<f32>,
    saturated: Option<&Array2<bool>>,
    pixel_cm: f64,
    place: &SourcePlacement,
) -> Result<SourceMeasurement, QcError> {
    let (rows, cols) = radiance.dim();
    let [x, y] = place.centre_cm;
    let r = place.radius_cm;
    let (w, h) = (cols as f64 * pixel_cm, rows as f64 * pixel_cm);
    if !(r > 0.0 && x - r >= 0.0 && y - r >= 0.0 && x + r <= w && y + r <= h) {
        return Err(QcError::OutsideFrame { x, y, r, w, h });
    }
    let mut inner = Vec::new();
    let mut inner_var = 0.0;
    let mut around: Vec<f32> = Vec::new();
    let mut n_saturated = 0;
    for ((row, col), &v) in radiance.indexed_iter() {
        let px = (col as f64 + 0.5) * pixel_cm;
        let py = (row as f64 + 0.5) * pixel_cm;
        let d = ((px - x).powi(2) + (py - y).powi(2)).sqrt() / r;
        if d <= INNER_FRACTION {
            inner.push(v as f64);
            inner_var += variance[(row, col)] as f64;
            if saturated.is_some_and(|s| s[(row, col)]) {
                n_saturated += 1;
            }
        } else if (ANNULUS_INNER..=ANNULUS_OUTER).contains(&d) {
            around.push(v);
        }
    }
    if inner.len() < 12 {
        return Err(QcError::TooFewPixels(inner.len()));
    }
    if n_saturated > 0 {
        return Err(QcError::Saturated(n_saturated));
    }
    let n = inner.len() as f64;
    let mean = inner.iter().sum::<f64>() / n;
    let scatter = (inner.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let surroundings = crate::stats::median_in_place(&mut around).map_or(0.0, f64::from);
    let value = mean - surroundings;
    let sigma = (inner_var.max(0.0).sqrt() / n).max(scatter / n.sqrt());
    let snr = if sigma > 0.0 { value / sigma } else { 0.0 };
    if snr.is_nan() || snr < MIN_SOURCE_SNR {
        return Err(QcError::NotSeen { x, y, snr });
    }
    Ok(SourceMeasurement {
        radiance: value,
        radiance_sigma: sigma,
        n_pixels: inner.len(),
        surroundings_radiance: surroundings,
    })
}

/// The outcome of one QC, judged against the tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QcVerdict {
    /// The response factor is within tolerance of 1.
    Pass,
    /// The response factor is measured but further from 1 than the tolerance: the
    /// instrument needs a person's look. Records are still corrected by it.
    OutOfTolerance,
    /// The source could not be measured: this QC is kept in the history but never applied.
    Invalid,
}

/// The instrument's response factor: measured over expected radiance of the source.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ResponseFactor {
    pub value: f64,
    /// 1σ from the QC measurement alone (the source's certified uncertainty is apart, in
    /// `source_rel_uncertainty`: it is common to every QC made with the same source).
    pub uncertainty: f64,
    /// The source's certified relative uncertainty.
    pub source_rel_uncertainty: f64,
}

/// `k = R_meas / R_expected(at)` and its verdict against `tolerance` (relative, e.g. 0.1
/// for ±10 %).
pub fn response_factor(
    source: &ReferenceSource,
    measured: &SourceMeasurement,
    at: DateTime<Utc>,
    tolerance: f64,
) -> (ResponseFactor, QcVerdict) {
    let expected = source.expected_radiance(at);
    let k = measured.radiance / expected;
    let factor = ResponseFactor {
        value: k,
        uncertainty: measured.radiance_sigma / expected,
        source_rel_uncertainty: source.radiance_rel_uncertainty,
    };
    let verdict = if (k - 1.0).abs() <= tolerance {
        QcVerdict::Pass
    } else {
        QcVerdict::OutOfTolerance
    };
    (factor, verdict)
}

/// Correct a calibrated value by a response factor: `value / k`, its statistical components
/// scaled alike; the calibration component becomes the source's and the QC's relative
/// uncertainty (see the module's header), plus the coefficient's when `same_coefficient`
/// is false (QC and measurement at different field of view or f-number).
pub fn correct(value: &Uncertain, k: &ResponseFactor, same_coefficient: bool) -> Uncertain {
    let v = value.value / k.value;
    let c = &value.components;
    let scale = 1.0 / k.value;
    let coefficient_rel = if value.value != 0.0 {
        (c.calibration / value.value).abs()
    } else {
        0.0
    };
    let mut rel2 = k.source_rel_uncertainty.powi(2) + (k.uncertainty / k.value).powi(2);
    if !same_coefficient {
        rel2 += coefficient_rel.powi(2);
    }
    let components = UncertaintyComponents {
        poisson: c.poisson * scale,
        read_noise: c.read_noise * scale,
        background: c.background * scale,
        calibration: v.abs() * rel2.sqrt(),
        dark: c.dark * scale,
    };
    Uncertain {
        value: v,
        uncertainty: components.total(),
        components,
    }
}

/// One QC as the history keeps it: what was imaged, what it read, and the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QcResult {
    /// UUIDv7.
    pub qc_id: String,
    pub instrument_id: String,
    /// When the source was imaged (the QC image's acquisition time).
    pub performed_at: DateTime<Utc>,
    pub processed_at: DateTime<Utc>,
    pub source: ReferenceSource,
    pub placement: SourcePlacement,
    /// What the source emitted when imaged (decay applied), photons/s/cm²/sr.
    pub expected_radiance: f64,
    /// Absent when the source could not be measured (`error` says why).
    pub measurement: Option<SourceMeasurement>,
    pub response_factor: Option<ResponseFactor>,
    pub verdict: QcVerdict,
    /// Relative tolerance the factor was judged against.
    pub tolerance: f64,
    /// Hours after `performed_at` for which this QC is current; records made later are
    /// flagged `qc_stale`.
    pub valid_hours: f64,
    /// Field of view (cm) and f-number of the QC image: a measurement at the same pair
    /// shares its calibration coefficient.
    pub fov_cm: f64,
    pub f_number: f64,
    pub error: Option<String>,
    /// The QC image's folder.
    pub input: String,
}

/// Which QC applies to a measurement made at a given time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QcSelection<'a> {
    /// The newest usable QC (pass or out of tolerance) of the instrument made at or before
    /// the measurement.
    pub applied: Option<&'a QcResult>,
    /// Hours from the applied QC to the measurement.
    pub age_hours: Option<f64>,
    /// The applied QC is older than its `valid_hours`.
    pub stale: bool,
    /// The newest QC at or before the measurement could not measure the source.
    pub latest_failed: bool,
}

/// The QC of `history` that applies to a measurement of `instrument_id` made at `at`.
pub fn select<'a>(
    history: &'a [QcResult],
    instrument_id: &str,
    at: DateTime<Utc>,
) -> QcSelection<'a> {
    let mut before: Vec<&QcResult> = history
        .iter()
        .filter(|q| q.instrument_id == instrument_id && q.performed_at <= at)
        .collect();
    before.sort_by_key(|q| q.performed_at);
    let latest_failed = before
        .last()
        .is_some_and(|q| q.verdict == QcVerdict::Invalid);
    let applied = before
        .iter()
        .rev()
        .find(|q| q.verdict != QcVerdict::Invalid && q.response_factor.is_some())
        .copied();
    let age_hours = applied.map(|q| (at - q.performed_at).num_milliseconds() as f64 / 3.6e6);
    let stale = applied
        .zip(age_hours)
        .is_some_and(|(q, age)| age > q.valid_hours);
    QcSelection {
        applied,
        age_hours,
        stale,
        latest_failed,
    }
}

/// A QC result for tests: an LED source at the frame's centre, measured at `at` with
/// `factor` (no factor when `verdict` is invalid).
#[cfg(test)]
pub(crate) fn sample_result(
    id: &str,
    instrument_id: &str,
    at: DateTime<Utc>,
    verdict: QcVerdict,
    factor: f64,
) -> QcResult {
    QcResult {
        qc_id: id.into(),
        instrument_id: instrument_id.into(),
        performed_at: at,
        processed_at: at,
        source: ReferenceSource {
            id: "LED-1".into(),
            radiance_p_s_cm2_sr: 5e5,
            radiance_rel_uncertainty: 0.0025,
            reference_date: at,
            half_life_days: 0.0,
        },
        placement: SourcePlacement {
            centre_cm: [11.2, 11.2],
            radius_cm: 1.5,
        },
        expected_radiance: 5e5,
        measurement: None,
        response_factor: (verdict != QcVerdict::Invalid).then_some(ResponseFactor {
            value: factor,
            uncertainty: 0.002,
            source_rel_uncertainty: 0.0025,
        }),
        verdict,
        tolerance: 0.1,
        valid_hours: 26.0,
        fov_cm: 22.4,
        f_number: 1.0,
        error: (verdict == QcVerdict::Invalid)
            .then(|| "no reference source at (11.2, 11.2) cm".into()),
        input: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).single().unwrap()
    }

    fn tritium() -> ReferenceSource {
        ReferenceSource {
            id: "H3-1".into(),
            radiance_p_s_cm2_sr: 1.0e6,
            radiance_rel_uncertainty: 0.01,
            reference_date: day(2025, 1, 1),
            half_life_days: TRITIUM_HALF_LIFE_DAYS,
        }
    }

    #[test]
    fn tritium_loses_about_five_and_a_half_percent_a_year() {
        let s = tritium();
        let after_year = s.expected_radiance(day(2026, 1, 1));
        let loss = 1.0 - after_year / 1.0e6;
        assert!((loss - 0.0547).abs() < 0.001, "loss {loss}");
        let half = s.expected_radiance(s.reference_date + chrono::Duration::days(4500));
        assert!((half / 1.0e6 - 0.5).abs() < 0.001);
    }

    #[test]
    fn an_led_does_not_decay() {
        let s = ReferenceSource {
            half_life_days: 0.0,
            ..tritium()
        };
        assert_eq!(s.expected_radiance(day(2030, 6, 1)), 1.0e6);
    }

    #[test]
    fn a_year_old_tritium_source_on_a_steady_instrument_reads_a_factor_of_one() {
        let s = tritium();
        let at = day(2026, 1, 1);
        // The steady instrument sees exactly what the source emits that day.
        let m = SourceMeasurement {
            radiance: s.expected_radiance(at),
            radiance_sigma: 1e3,
            n_pixels: 100,
            surroundings_radiance: 0.0,
        };
        let (k, verdict) = response_factor(&s, &m, at, 0.03);
        assert!((k.value - 1.0).abs() < 1e-12);
        assert_eq!(verdict, QcVerdict::Pass);
        // Ignoring the decay would read as a 5.5 % drift, out of a 3 % tolerance.
        let undecayed = ReferenceSource {
            half_life_days: 0.0,
            ..s
        };
        let (k, verdict) = response_factor(&undecayed, &m, at, 0.03);
        assert!((k.value - 0.9453).abs() < 0.001, "{}", k.value);
        assert_eq!(verdict, QcVerdict::OutOfTolerance);
    }

    fn disc_frame(level: f32, bg: f32) -> (Array2<f32>, Array2<f32>) {
        let n = 80;
        let pixel = 0.1;
        let img = Array2::from_shape_fn((n, n), |(r, c)| {
            let x = (c as f64 + 0.5) * pixel - 4.0;
            let y = (r as f64 + 0.5) * pixel - 3.0;
            if (x * x + y * y).sqrt() <= 1.0 {
                level + bg
            } else {
                bg
            }
        });
        let var = Array2::from_elem((n, n), 100.0f32);
        (img, var)
    }

    #[test]
    fn the_source_is_measured_over_its_surroundings() {
        let (img, var) = disc_frame(5.0e4, 300.0);
        let place = SourcePlacement {
            centre_cm: [4.0, 3.0],
            radius_cm: 1.0,
        };
        let m = measure_source(&img, &var, None, 0.1, &place).unwrap();
        assert!((m.radiance - 5.0e4).abs() < 1.0, "{}", m.radiance);
        assert!((m.surroundings_radiance - 300.0).abs() < 1.0);
        assert!(m.n_pixels > 140 && m.n_pixels < 170, "{}", m.n_pixels);
        // √(100 n)/n: the propagated variance (the disc is perfectly flat here).
        assert!((m.radiance_sigma - (100.0 / m.n_pixels as f64).sqrt()).abs() < 1e-6);
    }

    #[test]
    fn a_missing_or_misplaced_source_is_an_error_not_a_factor() {
        let (img, var) = disc_frame(0.0, 300.0);
        let place = SourcePlacement {
            centre_cm: [4.0, 3.0],
            radius_cm: 1.0,
        };
        let e = measure_source(&img, &var, None, 0.1, &place).unwrap_err();
        assert!(matches!(e, QcError::NotSeen { .. }), "{e}");
        assert!(e.to_string().contains("source_centre_cm"));
        let off = SourcePlacement {
            centre_cm: [7.5, 3.0],
            radius_cm: 1.0,
        };
        let e = measure_source(&img, &var, None, 0.1, &off).unwrap_err();
        assert!(matches!(e, QcError::OutsideFrame { .. }), "{e}");
        let sat = Array2::from_elem(img.dim(), true);
        let (img, var) = disc_frame(5.0e4, 300.0);
        let e = measure_source(&img, &var, Some(&sat), 0.1, &place).unwrap_err();
        assert!(matches!(e, QcError::Saturated(_)), "{e}");
    }

    #[test]
    fn correction_replaces_the_coefficient_error_by_the_source_and_qc_errors() {
        let v = Uncertain {
            value: 1.0e6,
            uncertainty: 0.0,
            components: UncertaintyComponents {
                poisson: 1.0e3,
                read_noise: 0.0,
                background: 2.0e3,
                calibration: 3.0e4,
                dark: 0.0,
            },
        };
        let k = ResponseFactor {
            value: 0.8,
            uncertainty: 0.004,
            source_rel_uncertainty: 0.0025,
        };
        let c = correct(&v, &k, true);
        assert!((c.value - 1.25e6).abs() < 1e-6);
        assert!((c.components.poisson - 1.25e3).abs() < 1e-9);
        assert!((c.components.background - 2.5e3).abs() < 1e-9);
        let rel = (0.0025f64.powi(2) + 0.005f64.powi(2)).sqrt();
        assert!((c.components.calibration - 1.25e6 * rel).abs() < 1e-6);
        // Another field of view: the coefficients' ratio adds its 3 %.
        let c2 = correct(&v, &k, false);
        let rel2 = (rel * rel + 0.03f64.powi(2)).sqrt();
        assert!((c2.components.calibration - 1.25e6 * rel2).abs() < 1e-6);
        assert!(c2.uncertainty > c.uncertainty);
    }
}
