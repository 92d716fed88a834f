//! The longitudinal view: every tumour's flux against day, across a study's imaging
//! sessions — raw (calibrated) and QC-corrected, at the peak of each session's kinetic
//! series — with its growth rate fitted, as `lumiq trend` writes it (CSV, PNG).
//!
//! Owns: grouping measurement records into sessions (one injection: one kinetic series or
//! one image), summarising each session with [`crate::sequence`], and joining a tumour's
//! sessions on study, subject id and its place on the mouse. Pure: records in, values out;
//! reading folders and writing files is [`cli`].
//!
//! Joining. Within a subject, a tumour is where it lies relative to the mouse's centroid
//! in the photograph: a session's region joins the subject's tumour whose mean offset is
//! nearest, within [`JOIN_RADIUS_CM`]; otherwise it starts a new tumour. A region with no
//! subject id joins on its absolute position.

pub mod cli;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::record::{MeasurementRecord, QcState};
use crate::sequence;

/// A region's offset from its mouse's centroid may move this much between sessions, cm
/// (the mouse lies a little differently each day).
pub const JOIN_RADIUS_CM: f64 = 0.8;

/// One tumour in one session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrendPoint {
    pub study_id: String,
    pub subject_id: String,
    /// `<subject>-T<n>`, numbered in order of first appearance.
    pub tumour: String,
    /// The session's injection time (or first frame without one), RFC 3339 UTC.
    pub session_at: String,
    /// Days since the study's first session.
    pub day: f64,
    pub frames: usize,
    /// Peak net flux, calibrated, photons/s, and its frame-to-frame 1σ.
    pub peak_flux: f64,
    pub peak_flux_sigma: f64,
    /// The same corrected by the session's QC (absent without a usable QC).
    pub corrected_peak_flux: Option<f64>,
    pub corrected_peak_flux_sigma: Option<f64>,
    pub time_to_peak_min: f64,
    pub peak_covered: bool,
    /// Saturated in the session: its peak is a lower bound, left out of the growth fit
    /// and the spread.
    pub saturated: bool,
    /// The QC state of the session's records (the worst of them).
    pub qc_state: String,
    pub qc_response_factor: Option<f64>,
}

/// A tumour's growth over the study: the least-squares line of ln(flux) against day,
/// weighted by each point's relative uncertainty.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TumourSummary {
    pub study_id: String,
    pub subject_id: String,
    pub tumour: String,
    pub sessions: usize,
    /// Sessions left out of the fit and the spread because the tumour was saturated.
    pub sessions_saturated: usize,
    /// Growth rate, per day (ln units), of the corrected peak flux (the calibrated one
    /// where a session has no QC), with its 1σ.
    pub growth_per_day: Option<f64>,
    pub growth_per_day_sigma: Option<f64>,
    /// Doubling time, days (ln 2 / growth), when growing.
    pub doubling_days: Option<f64>,
    /// Coefficient of variation of the corrected (else calibrated) peak across sessions.
    pub cv: Option<f64>,
}

/// Everything `lumiq trend` reports.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trend {
    pub points: Vec<TrendPoint>,
    pub tumours: Vec<TumourSummary>,
    /// Sessions that could not be summarised, with why.
    pub problems: Vec<String>,
}

/// A tumour being joined across sessions: its mean offset from its mouse (cm) and the
/// sessions it was seen in.
type Joined = ([f64; 2], usize);

struct Session<'a> {
    study: String,
    at: DateTime<Utc>,
    records: Vec<&'a MeasurementRecord>,
}

fn time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Build the trend of `records` (any order, any mix of studies and instruments).
pub fn build(records: &[MeasurementRecord]) -> Trend {
    let mut trend = Trend::default();
    // Sessions: one injection of one study on one instrument.
    let mut sessions: BTreeMap<(String, String, String), Session> = BTreeMap::new();
    for r in records {
        let study = r.acquisition.study_id.clone().unwrap_or_default();
        let key_time = r
            .acquisition
            .injection_time
            .clone()
            .unwrap_or_else(|| r.acquired_at.clone());
        let Some(at) = time(&key_time) else {
            trend.problems.push(format!(
                "measurement {}: time {key_time:?} is not RFC 3339",
                r.measurement_id
            ));
            continue;
        };
        sessions
            .entry((study.clone(), r.instrument_id.clone(), key_time))
            .or_insert_with(|| Session {
                study,
                at,
                records: Vec::new(),
            })
            .records
            .push(r);
    }
    let mut sessions: Vec<Session> = sessions.into_values().collect();
    sessions.sort_by_key(|s| s.at);
    let mut first_of_study: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    // Per (study, subject): each tumour's running mean offset and count.
    let mut tumours: BTreeMap<(String, String), Vec<Joined>> = BTreeMap::new();
    for s in &sessions {
        let owned: Vec<MeasurementRecord> = s.records.iter().map(|r| (*r).clone()).collect();
        let seq = match sequence::build(&owned, Uuid::nil()) {
            Ok(q) => q,
            Err(e) => {
                trend.problems.push(format!("session of {}: {e}", s.at));
                continue;
            }
        };
        let start = *first_of_study.entry(s.study.clone()).or_insert(s.at);
        let day = (s.at - start).num_milliseconds() as f64 / 86_400_000.0;
        let qc_state = s
            .records
            .iter()
            .map(|r| r.qc.state)
            .max_by_key(|st| match st {
                QcState::Current => 0,
                QcState::NotConfigured => 1,
                QcState::Stale => 2,
                QcState::Missing => 3,
            })
            .unwrap_or_default();
        let qc_factor = s
            .records
            .iter()
            .find_map(|r| r.qc.response_factor.map(|k| k.value));
        for g in &seq.regions {
            let (subject, offset) = match (&g.subject_id, g.subject_index) {
                (Some(id), Some(i)) => {
                    let mouse = s
                        .records
                        .iter()
                        .flat_map(|r| r.subjects.mice.iter())
                        .find(|m| m.subject_index == i);
                    let c = mouse.map_or([0.0, 0.0], |m| m.centroid_cm);
                    (
                        id.clone(),
                        [g.centroid_cm[0] - c[0], g.centroid_cm[1] - c[1]],
                    )
                }
                _ => (String::new(), g.centroid_cm),
            };
            let list = tumours
                .entry((s.study.clone(), subject.clone()))
                .or_default();
            let nearest = list
                .iter()
                .enumerate()
                .map(|(i, (o, _))| {
                    (
                        i,
                        ((o[0] - offset[0]).powi(2) + (o[1] - offset[1]).powi(2)).sqrt(),
                    )
                })
                .filter(|(_, d)| *d <= JOIN_RADIUS_CM)
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(i, _)| i);
            let index = match nearest {
                Some(i) => {
                    let (o, n) = &mut list[i];
                    let w = *n as f64;
                    *o = [
                        (o[0] * w + offset[0]) / (w + 1.0),
                        (o[1] * w + offset[1]) / (w + 1.0),
                    ];
                    *n += 1;
                    i
                }
                None => {
                    list.push((offset, 1));
                    list.len() - 1
                }
            };
            let name = if subject.is_empty() {
                format!("T{}", index + 1)
            } else {
                format!("{subject}-T{}", index + 1)
            };
            trend.points.push(TrendPoint {
                study_id: s.study.clone(),
                subject_id: subject,
                tumour: name,
                session_at: s.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                day,
                frames: g.frames_found,
                peak_flux: g.peak_flux.value,
                peak_flux_sigma: g.peak_flux.uncertainty,
                corrected_peak_flux: g.qc_corrected_peak_flux.as_ref().map(|v| v.value),
                corrected_peak_flux_sigma: g.qc_corrected_peak_flux.as_ref().map(|v| v.uncertainty),
                time_to_peak_min: g.time_to_peak_min,
                peak_covered: g.peak_covered,
                saturated: g.saturated,
                qc_state: serde_json::to_value(qc_state)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                qc_response_factor: qc_factor,
            });
        }
    }
    trend.tumours = summarise(&trend.points);
    trend
}

/// Each tumour's growth and spread over its sessions.
pub fn summarise(points: &[TrendPoint]) -> Vec<TumourSummary> {
    let mut by: BTreeMap<(String, String), Vec<&TrendPoint>> = BTreeMap::new();
    for p in points {
        by.entry((p.study_id.clone(), p.tumour.clone()))
            .or_default()
            .push(p);
    }
    by.into_iter()
        .map(|((study, tumour), ps)| {
            let ys: Vec<(f64, f64, f64)> = ps
                .iter()
                .filter(|p| !p.saturated)
                .filter_map(|p| {
                    let (v, s) = match (p.corrected_peak_flux, p.corrected_peak_flux_sigma) {
                        (Some(v), Some(s)) => (v, s),
                        _ => (p.peak_flux, p.peak_flux_sigma),
                    };
                    (v > 0.0).then_some((p.day, v, s))
                })
                .collect();
            let fit = log_linear_fit(&ys);
            let cv = (ys.len() >= 2).then(|| {
                let n = ys.len() as f64;
                let m = ys.iter().map(|y| y.1).sum::<f64>() / n;
                (ys.iter().map(|y| (y.1 - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() / m
            });
            TumourSummary {
                study_id: study,
                subject_id: ps[0].subject_id.clone(),
                tumour,
                sessions: ps.len(),
                sessions_saturated: ps.iter().filter(|p| p.saturated).count(),
                growth_per_day: fit.map(|f| f.0),
                growth_per_day_sigma: fit.map(|f| f.1),
                doubling_days: fit.and_then(|f| (f.0 > 0.0).then(|| std::f64::consts::LN_2 / f.0)),
                cv,
            }
        })
        .collect()
}

/// Weighted least squares of ln(y) = a + r·day, weights 1/(σ/y)²; returns (r, σ_r), the
/// σ scaled by the fit's reduced χ² when that is above 1 (scatter beyond the error bars).
fn log_linear_fit(points: &[(f64, f64, f64)]) -> Option<(f64, f64)> {
    if points.len() < 2 {
        return None;
    }
    let w: Vec<f64> = points
        .iter()
        .map(|&(_, y, s)| {
            let rel = (s / y).max(1e-4);
            1.0 / (rel * rel)
        })
        .collect();
    let sw: f64 = w.iter().sum();
    let mx = points.iter().zip(&w).map(|(p, w)| w * p.0).sum::<f64>() / sw;
    let my = points
        .iter()
        .zip(&w)
        .map(|(p, w)| w * p.1.ln())
        .sum::<f64>()
        / sw;
    let sxx: f64 = points
        .iter()
        .zip(&w)
        .map(|(p, w)| w * (p.0 - mx).powi(2))
        .sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = points
        .iter()
        .zip(&w)
        .map(|(p, w)| w * (p.0 - mx) * (p.1.ln() - my))
        .sum();
    let r = sxy / sxx;
    let a = my - r * mx;
    let dof = points.len().saturating_sub(2);
    let chi2: f64 = points
        .iter()
        .zip(&w)
        .map(|(p, w)| w * (p.1.ln() - a - r * p.0).powi(2))
        .sum();
    let scale = if dof > 0 {
        (chi2 / dof as f64).max(1.0)
    } else {
        1.0
    };
    Some((r, (scale / sxx).sqrt()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_linear_fit_recovers_a_growth_rate() {
        let pts: Vec<(f64, f64, f64)> = (0..10)
            .map(|d| {
                let y = 1e6 * (0.25 * d as f64).exp();
                (d as f64, y, 0.01 * y)
            })
            .collect();
        let (r, s) = log_linear_fit(&pts).unwrap();
        assert!((r - 0.25).abs() < 1e-9 && s < 0.01, "{r} ± {s}");
        assert!(log_linear_fit(&pts[..1]).is_none());
    }

    fn point(tumour: &str, day: f64, v: f64) -> TrendPoint {
        TrendPoint {
            study_id: "S".into(),
            subject_id: "M1".into(),
            tumour: tumour.into(),
            session_at: String::new(),
            day,
            frames: 5,
            peak_flux: v * 1.1,
            peak_flux_sigma: 0.01 * v,
            corrected_peak_flux: Some(v),
            corrected_peak_flux_sigma: Some(0.01 * v),
            time_to_peak_min: 8.0,
            peak_covered: true,
            saturated: false,
            qc_state: "current".into(),
            qc_response_factor: Some(1.1),
        }
    }

    #[test]
    fn a_constant_tumour_has_no_growth_and_its_spread_is_its_cv() {
        let pts = vec![
            point("M1-T1", 0.0, 1.0e6),
            point("M1-T1", 1.0, 1.02e6),
            point("M1-T1", 2.0, 0.98e6),
            point("M1-T2", 0.0, 1.0e6),
            point("M1-T2", 2.0, 4.0e6),
        ];
        let s = summarise(&pts);
        assert_eq!(s.len(), 2);
        assert!((s[0].cv.unwrap() - 0.02).abs() < 1e-9, "{:?}", s[0].cv);
        assert!(s[0].growth_per_day.unwrap().abs() < 0.02);
        assert!(s[0].doubling_days.is_none() || s[0].growth_per_day.unwrap() > 0.0);
        assert!((s[1].growth_per_day.unwrap() - 4f64.ln() / 2.0).abs() < 1e-9);
        assert!((s[1].doubling_days.unwrap() - 1.0).abs() < 1e-9);
    }
}
