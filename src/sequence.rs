//! The sequence record (`lumiq.sequence`): one kinetic series summarised per region —
//! peak flux and time to peak since the injection, area under the curve, and whether the
//! series covered the peak. Its JSON Schema is `schemas/sequence.schema.json`.
//!
//! Owns: following each region through the series' measurement records and summarising
//! it with `process::kinetics`. Pure: the id is passed in by the caller.
//!
//! Times are taken at mid-exposure (`minutes_since_injection` is the frame's start), since a
//! frame integrates the curve over its exposure.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::process::kinetics::{self, KineticPoint, KineticSummary};
use crate::record::{units, MeasurementRecord};

pub const SCHEMA: &str = "lumiq.sequence";
/// 2 added `frames_missing` (a series the daemon took, some of whose frames could not be
/// measured).
pub const SCHEMA_VERSION: u32 = 2;

/// Regions of successive frames closer than this are the same region, cm.
pub const MATCH_RADIUS_CM: f64 = 0.4;

/// A series' summary, per region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceRecord {
    pub schema: String,
    pub schema_version: u32,
    /// UUIDv7.
    pub sequence_id: Uuid,
    pub instrument_id: String,
    pub study_id: Option<String>,
    /// RFC 3339 UTC; absent when the frames carry none (flagged `no_injection_time`, and
    /// times count from the first frame instead).
    pub injection_time: Option<String>,
    /// The frames, in time order.
    pub frames: Vec<SequenceFrame>,
    pub regions: Vec<SequenceRegion>,
    /// Frames of the series that were taken but could not be measured (their raw frames
    /// are kept in the archive's `failed/` folder): ids of their acquisitions.
    pub frames_missing: Vec<Uuid>,
    pub flags: Vec<SequenceFlag>,
}

impl SequenceRecord {
    /// Note frames of the series that were taken but have no measurement record; flags
    /// the series `frames_missing` when there are any.
    pub fn mark_missing(&mut self, ids: &[Uuid]) {
        self.frames_missing.extend_from_slice(ids);
        self.frames_missing.sort();
        self.frames_missing.dedup();
        if !self.frames_missing.is_empty() {
            self.flags.push(SequenceFlag::FramesMissing);
            self.flags.sort();
            self.flags.dedup();
        }
    }

    /// When the series started: its first frame's `acquired_at`.
    pub fn acquired_at(&self) -> &str {
        self.frames
            .first()
            .map(|f| f.acquired_at.as_str())
            .unwrap_or_default()
    }
}

/// One frame of the series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceFrame {
    pub measurement_id: Uuid,
    pub acquired_at: String,
    /// Minutes from the injection (or the first frame) to the middle of the exposure.
    pub minutes: f64,
}

/// A value with its 1σ and UCUM unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Value {
    pub value: f64,
    pub uncertainty: f64,
    pub unit: String,
}

/// One region followed through the series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceRegion {
    /// 1-based, in order of first appearance.
    pub track_id: u32,
    pub subject_id: Option<String>,
    pub subject_index: Option<usize>,
    /// Mean centroid over the frames it was found in, cm.
    pub centroid_cm: [f64; 2],
    /// Frames it was found in, of the series' frames.
    pub frames_found: usize,
    /// Net total flux at the peak (calibrated; see `process::kinetics::summarise`).
    pub peak_flux: Value,
    /// The same on the QC's scale (present when every frame carried a QC-corrected flux).
    pub qc_corrected_peak_flux: Option<Value>,
    pub time_to_peak_min: f64,
    /// Area under the net flux curve over the series, photons.
    pub auc: Value,
    pub peak_covered: bool,
    /// The region held saturated pixels in at least one frame: those frames' fluxes, and
    /// so perhaps the peak, are lower bounds.
    pub saturated: bool,
    /// The curve: minutes, net flux and its frame-to-frame 1σ.
    pub points: Vec<KineticPoint>,
}

/// A kinetic series as the daemon took it, before its frames are measured: the sequence
/// record's id and its frames' acquisition ids, in time order. Written into the archive
/// when the series is taken, so the sequence record is made (once) after a restart too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesRef {
    /// The sequence record's id (UUIDv7), fixed when the series is taken.
    pub sequence_id: Uuid,
    /// The frames' acquisition ids (each its measurement record's `measurement_id`).
    pub measurement_ids: Vec<Uuid>,
}

/// One frame's place in its series, as the capture report (`capture.json`) states it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesFrameRef {
    pub sequence_id: Uuid,
    /// 1-based.
    pub frame: usize,
    pub frames: usize,
}

/// A condition of the whole series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SequenceFlag {
    /// The frames carry no injection time: times count from the first frame.
    NoInjectionTime,
    /// At least one region's series did not rise to a peak and fall from it.
    PeakNotCovered,
    /// A single frame: no curve.
    SingleFrame,
    /// Some frames of the series could not be measured (`frames_missing`).
    FramesMissing,
}

/// Why the records do not make a series.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SequenceError {
    #[error("a sequence needs at least one measurement record")]
    Empty,
    #[error(
        "the records come from different instruments ({0} and {1}): a series is one instrument's"
    )]
    MixedInstruments(String, String),
    #[error("record {0}: acquired_at {1:?} is not an RFC 3339 time")]
    BadTime(Uuid, String),
}

fn parse(r: &MeasurementRecord, s: &str) -> Result<chrono::DateTime<chrono::Utc>, SequenceError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| SequenceError::BadTime(r.measurement_id, s.to_string()))
}

/// Summarise the records of one kinetic series (any order).
pub fn build(
    records: &[MeasurementRecord],
    sequence_id: Uuid,
) -> Result<SequenceRecord, SequenceError> {
    let first = records.first().ok_or(SequenceError::Empty)?;
    if let Some(other) = records
        .iter()
        .find(|r| r.instrument_id != first.instrument_id)
    {
        return Err(SequenceError::MixedInstruments(
            first.instrument_id.clone(),
            other.instrument_id.clone(),
        ));
    }
    let mut timed = Vec::with_capacity(records.len());
    for r in records {
        timed.push((parse(r, &r.acquired_at)?, r));
    }
    timed.sort_by_key(|(t, _)| *t);
    let t0 = timed[0].0;
    let injection = timed
        .iter()
        .find_map(|(_, r)| r.acquisition.injection_time.clone());
    let mut flags = Vec::new();
    let origin = match &injection {
        Some(s) => parse(first, s)?,
        None => {
            flags.push(SequenceFlag::NoInjectionTime);
            t0
        }
    };
    let frames: Vec<SequenceFrame> = timed
        .iter()
        .map(|(t, r)| SequenceFrame {
            measurement_id: r.measurement_id,
            acquired_at: r.acquired_at.clone(),
            minutes: (*t - origin).num_milliseconds() as f64 / 60_000.0
                + r.acquisition.settings.exposure_s / 120.0,
        })
        .collect();
    if frames.len() == 1 {
        flags.push(SequenceFlag::SingleFrame);
    }
    let centroids: Vec<Vec<[f64; 2]>> = timed
        .iter()
        .map(|(_, r)| r.regions.iter().map(|g| g.centroid_cm).collect())
        .collect();
    let tracks = kinetics::track(&centroids, MATCH_RADIUS_CM);
    let mut regions = Vec::new();
    for (ti, track) in tracks.iter().enumerate() {
        let found: Vec<(usize, usize)> = track
            .iter()
            .enumerate()
            .filter_map(|(f, r)| r.map(|r| (f, r)))
            .collect();
        let region = |f: usize, r: usize| &timed[f].1.regions[r];
        let points: Vec<KineticPoint> = found
            .iter()
            .map(|&(f, r)| {
                let g = region(f, r);
                KineticPoint {
                    minutes: frames[f].minutes,
                    flux: g.total_flux.value,
                    sigma: g.total_flux.uncertainty_components.statistical(),
                }
            })
            .collect();
        let summary = kinetics::summarise(&points).expect("a track has a finite frame");
        let corrected: Option<Vec<KineticPoint>> = found
            .iter()
            .map(|&(f, r)| {
                region(f, r)
                    .qc_corrected_flux
                    .as_ref()
                    .map(|c| KineticPoint {
                        minutes: frames[f].minutes,
                        flux: c.value,
                        sigma: c.uncertainty_components.statistical(),
                    })
            })
            .collect();
        let corrected_summary = corrected
            .as_deref()
            .map(|p| kinetics::summarise(p).expect("same frames"));
        let n = found.len() as f64;
        let centroid = found.iter().fold([0.0, 0.0], |acc, &(f, r)| {
            let c = region(f, r).centroid_cm;
            [acc[0] + c[0] / n, acc[1] + c[1] / n]
        });
        let (lf, lr) = *found.last().expect("a track has a frame");
        let last = region(lf, lr);
        if !summary.peak_covered && frames.len() > 1 {
            flags.push(SequenceFlag::PeakNotCovered);
        }
        regions.push(SequenceRegion {
            track_id: ti as u32 + 1,
            subject_id: last.subject_id.clone(),
            subject_index: last.subject_index,
            centroid_cm: centroid,
            frames_found: found.len(),
            peak_flux: peak_value(&summary),
            qc_corrected_peak_flux: corrected_summary.as_ref().map(peak_value),
            time_to_peak_min: summary.time_to_peak_min,
            auc: Value {
                value: summary.auc_photons,
                uncertainty: summary.auc_sigma,
                unit: "{photons}".into(),
            },
            peak_covered: summary.peak_covered,
            saturated: found.iter().any(|&(f, r)| region(f, r).saturated),
            points,
        });
    }
    flags.sort();
    flags.dedup();
    Ok(SequenceRecord {
        schema: SCHEMA.into(),
        schema_version: SCHEMA_VERSION,
        sequence_id,
        instrument_id: first.instrument_id.clone(),
        study_id: timed
            .iter()
            .find_map(|(_, r)| r.acquisition.study_id.clone()),
        injection_time: injection,
        frames,
        regions,
        frames_missing: Vec::new(),
        flags,
    })
}

fn peak_value(s: &KineticSummary) -> Value {
    Value {
        value: s.peak_flux,
        uncertainty: s.peak_flux_sigma,
        unit: units::FLUX.into(),
    }
}
