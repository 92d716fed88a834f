//! Luciferin kinetics of a series: one region's flux against minutes since the injection,
//! summarised as peak flux, time to peak, area under the curve, and whether the series
//! covered the peak; and the tracking that follows a region from frame to frame.
//!
//! Owns: the arithmetic, pure. The sequence record that carries it is `crate::sequence`.
//!
//! After D-luciferin the signal rises to a peak (about 6 min after a subcutaneous and about
//! 8 min after an intraperitoneal injection, later as tumours grow) and then falls slowly.
//! The peak is the comparable quantity across days; an image at a fixed delay is not, since
//! the time to peak moves.

use serde::{Deserialize, Serialize};

/// Typical time to peak after an intraperitoneal injection, minutes: an image taken earlier
/// is on the rising edge.
pub const IP_PEAK_MIN: f64 = 8.0;
/// Typical time to peak after a subcutaneous injection, minutes.
pub const SC_PEAK_MIN: f64 = 6.0;

/// One frame of a region's series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KineticPoint {
    /// Minutes since the injection (at the frame's start).
    pub minutes: f64,
    /// Flux, photons/s.
    pub flux: f64,
    /// 1σ of `flux` that varies from frame to frame, photons/s.
    pub sigma: f64,
}

/// A region's series, summarised.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KineticSummary {
    /// Peak flux, photons/s: the vertex of the parabola through the highest frame and its
    /// two neighbours when the peak lies inside the series, else the highest frame.
    pub peak_flux: f64,
    /// 1σ of `peak_flux` (the highest frame's).
    pub peak_flux_sigma: f64,
    /// Minutes from the injection to the peak.
    pub time_to_peak_min: f64,
    /// Area under the curve over the series (trapezoids), photons (photons/s × s).
    pub auc_photons: f64,
    /// 1σ of `auc_photons`.
    pub auc_sigma: f64,
    /// The series rose to its peak and fell from it: the highest frame is neither the first
    /// nor the last, and the last lies below it by more than twice their combined noise. The
    /// curve is flat near its peak (2 % below it 1.5 min early), so a first frame within
    /// the noise of the peak cannot be told from one just after it: a series that starts
    /// just after the peak can still read as covering it, with its peak flux then low by
    /// that flatness.
    pub peak_covered: bool,
    pub n_frames: usize,
    /// Minutes since injection of the first and last frames.
    pub first_min: f64,
    pub last_min: f64,
}

/// Why a series cannot be summarised.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KineticsError {
    #[error("a kinetic series needs at least one frame")]
    Empty,
    #[error("frame {0} of the series has no finite time since injection or flux")]
    NotFinite(usize),
}

/// Summarise a series (frames in any order).
pub fn summarise(points: &[KineticPoint]) -> Result<KineticSummary, KineticsError> {
    if points.is_empty() {
        return Err(KineticsError::Empty);
    }
    if let Some(i) = points
        .iter()
        .position(|p| !(p.minutes.is_finite() && p.flux.is_finite() && p.sigma.is_finite()))
    {
        return Err(KineticsError::NotFinite(i));
    }
    let mut pts = points.to_vec();
    pts.sort_by(|a, b| a.minutes.total_cmp(&b.minutes));
    let n = pts.len();
    let i = (0..n)
        .max_by(|&a, &b| pts[a].flux.total_cmp(&pts[b].flux))
        .expect("not empty");
    let top = pts[i];
    let (mut peak_flux, mut time_to_peak) = (top.flux, top.minutes);
    if i > 0 && i + 1 < n {
        if let Some((t, f)) = parabola_vertex(pts[i - 1], top, pts[i + 1]) {
            if t >= pts[i - 1].minutes && t <= pts[i + 1].minutes && f >= top.flux {
                peak_flux = f;
                time_to_peak = t;
            }
        }
    }
    let (first, last) = (pts[0], pts[n - 1]);
    let fell = top.flux - last.flux > 2.0 * (top.sigma.powi(2) + last.sigma.powi(2)).sqrt();
    let peak_covered = i > 0 && i + 1 < n && fell;
    // Trapezoids: each frame's weight is half the span to its neighbours, in seconds.
    let mut auc = 0.0;
    let mut auc_var = 0.0;
    for k in 0..n {
        let left = if k > 0 {
            pts[k].minutes - pts[k - 1].minutes
        } else {
            0.0
        };
        let right = if k + 1 < n {
            pts[k + 1].minutes - pts[k].minutes
        } else {
            0.0
        };
        let w_s = 0.5 * (left + right) * 60.0;
        auc += w_s * pts[k].flux;
        auc_var += (w_s * pts[k].sigma).powi(2);
    }
    Ok(KineticSummary {
        peak_flux,
        peak_flux_sigma: top.sigma,
        time_to_peak_min: time_to_peak,
        auc_photons: auc,
        auc_sigma: auc_var.sqrt(),
        peak_covered,
        n_frames: n,
        first_min: first.minutes,
        last_min: last.minutes,
    })
}

/// Vertex (time, flux) of the parabola through three points, if it opens downward.
fn parabola_vertex(a: KineticPoint, b: KineticPoint, c: KineticPoint) -> Option<(f64, f64)> {
    let (x0, x1, x2) = (a.minutes, b.minutes, c.minutes);
    let (y0, y1, y2) = (a.flux, b.flux, c.flux);
    let d0 = (x0 - x1) * (x0 - x2);
    let d1 = (x1 - x0) * (x1 - x2);
    let d2 = (x2 - x0) * (x2 - x1);
    if d0 == 0.0 || d1 == 0.0 || d2 == 0.0 {
        return None;
    }
    // y = A x² + B x + C from the Lagrange form.
    let qa = y0 / d0 + y1 / d1 + y2 / d2;
    let qb = -(y0 * (x1 + x2) / d0 + y1 * (x0 + x2) / d1 + y2 * (x0 + x1) / d2);
    let qc = y0 * x1 * x2 / d0 + y1 * x0 * x2 / d1 + y2 * x0 * x1 / d2;
    if qa >= 0.0 {
        return None;
    }
    let t = -qb / (2.0 * qa);
    Some((t, qa * t * t + qb * t + qc))
}

/// Follow regions from frame to frame: `frames[f]` holds the centroids (cm) of frame `f`'s
/// regions. A region joins the track whose latest centroid is nearest, within `radius_cm`
/// (each track takes at most one region a frame, nearest pairs first); otherwise it starts
/// a track. Returns, per track, the region index in each frame (or `None`).
pub fn track(frames: &[Vec<[f64; 2]>], radius_cm: f64) -> Vec<Vec<Option<usize>>> {
    let n_frames = frames.len();
    let mut tracks: Vec<Vec<Option<usize>>> = Vec::new();
    let mut last_pos: Vec<[f64; 2]> = Vec::new();
    for (f, centroids) in frames.iter().enumerate() {
        let mut pairs: Vec<(f64, usize, usize)> = Vec::new();
        for (r, c) in centroids.iter().enumerate() {
            for (t, p) in last_pos.iter().enumerate() {
                let d = ((c[0] - p[0]).powi(2) + (c[1] - p[1]).powi(2)).sqrt();
                if d <= radius_cm {
                    pairs.push((d, r, t));
                }
            }
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut region_taken = vec![false; centroids.len()];
        let mut track_taken = vec![false; tracks.len()];
        for (_, r, t) in pairs {
            if region_taken[r] || track_taken[t] {
                continue;
            }
            region_taken[r] = true;
            track_taken[t] = true;
            tracks[t][f] = Some(r);
            last_pos[t] = centroids[r];
        }
        for (r, taken) in region_taken.iter().enumerate() {
            if !taken {
                let mut t = vec![None; n_frames];
                t[f] = Some(r);
                tracks.push(t);
                last_pos.push(centroids[r]);
            }
        }
    }
    tracks
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A luciferin curve: rises to `peak` at `tp` minutes, falls slowly after.
    fn curve(t: f64, peak: f64, tp: f64) -> f64 {
        let a = 2.0;
        let x = t / tp;
        peak * x.powf(a) * (a * (1.0 - x)).exp()
    }

    fn series(times: &[f64], peak: f64, tp: f64) -> Vec<KineticPoint> {
        times
            .iter()
            .map(|&t| KineticPoint {
                minutes: t,
                flux: curve(t, peak, tp),
                sigma: peak * 0.002,
            })
            .collect()
    }

    #[test]
    fn the_peak_between_frames_is_found_within_half_a_percent() {
        let times: Vec<f64> = (0..11).map(|k| 5.0 + 1.5 * k as f64).collect();
        for tp in [6.0, 7.3, 8.0, 9.4, 10.0] {
            let s = summarise(&series(&times, 1.0e7, tp)).unwrap();
            let err = s.peak_flux / 1.0e7 - 1.0;
            assert!(err.abs() < 0.005, "tp {tp}: peak error {err}");
            assert!(
                (s.time_to_peak_min - tp).abs() < 0.5,
                "tp {tp}: {}",
                s.time_to_peak_min
            );
            assert!(s.peak_covered, "tp {tp}");
        }
    }

    #[test]
    fn a_series_that_starts_after_the_peak_or_ends_before_it_does_not_cover_it() {
        let late: Vec<f64> = (0..6).map(|k| 12.0 + 2.0 * k as f64).collect();
        let s = summarise(&series(&late, 1.0e7, 8.0)).unwrap();
        assert!(!s.peak_covered);
        assert_eq!(s.time_to_peak_min, 12.0);
        assert!(s.peak_flux < 0.95e7);
        let early: Vec<f64> = (0..4).map(|k| 1.0 + 1.5 * k as f64).collect();
        assert!(!summarise(&series(&early, 1.0e7, 8.0)).unwrap().peak_covered);
    }

    #[test]
    fn the_area_under_a_constant_series_is_flux_times_duration() {
        let pts: Vec<KineticPoint> = (0..5)
            .map(|k| KineticPoint {
                minutes: 10.0 + 2.0 * k as f64,
                flux: 1.0e6,
                sigma: 1.0e3,
            })
            .collect();
        let s = summarise(&pts).unwrap();
        assert!((s.auc_photons - 1.0e6 * 8.0 * 60.0).abs() < 1e-3);
        // Weights 60, 120, 120, 120, 60 s.
        let expect = 1.0e3 * (2.0 * 60.0f64.powi(2) + 3.0 * 120.0f64.powi(2)).sqrt();
        assert!((s.auc_sigma - expect).abs() < 1e-6);
        assert!(!s.peak_covered, "a flat series has no peak");
    }

    #[test]
    fn bad_series_are_errors() {
        assert_eq!(summarise(&[]), Err(KineticsError::Empty));
        let p = KineticPoint {
            minutes: f64::NAN,
            flux: 1.0,
            sigma: 0.0,
        };
        assert_eq!(summarise(&[p]), Err(KineticsError::NotFinite(0)));
    }

    #[test]
    fn tracks_follow_regions_and_start_new_ones() {
        let frames = vec![
            vec![[1.0, 1.0], [5.0, 5.0]],
            vec![[5.1, 5.0], [1.05, 1.0], [9.0, 9.0]],
            vec![[1.1, 1.0]],
        ];
        let t = track(&frames, 0.3);
        assert_eq!(t.len(), 3);
        assert_eq!(t[0], vec![Some(0), Some(1), Some(0)]);
        assert_eq!(t[1], vec![Some(1), Some(0), None]);
        assert_eq!(t[2], vec![None, Some(2), None]);
    }
}
