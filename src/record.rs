//! The measurement record: one standardized JSON object per acquisition, what `lumiq
//! process` prints and what the daemon will publish. Its JSON Schema is
//! `schemas/measurement.schema.json`; bump [`SCHEMA_VERSION`] with any change to it (the
//! schema's `$id`, `const` and the envelope's `$ref` follow). Version 2 added the
//! segmentation model's identity, the mice found in the photograph (`subjects`) and each
//! region's `subject_index`, `subject_id` and `flags`. Version 3 added each region's
//! `gross_radiance` (mean, standard deviation, minimum and maximum of its pixels' radiance,
//! background in: Living Image's Avg, Stdev, Min and Max Radiance). Version 4 added the
//! daily QC (`qc`: the reference-source check applied, its age and response factor), each
//! region's `qc_corrected_flux`, and the flags `qc_missing`, `qc_stale`,
//! `qc_out_of_tolerance`, `qc_failed`, `no_injection_time` and `before_expected_peak`.
//!
//! Owns: the record's shape and units (UCUM codes) and building it from a
//! [`Quantification`]. Pure: the id and the processing time are passed in by the caller.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::acquisition::{AcquisitionSettings, RawAcquisition, SourceFormat};
use crate::process::qc::{self as qc_core, QcSelection, QcVerdict, ResponseFactor};
use crate::process::subjects::{self, IdStatus, SubjectAssignment};
use crate::process::{
    kinetics, ProcessingParams, QualityFlag, Quantification, RegionMeasurement, RegionSource,
    Uncertain, UncertaintyComponents,
};

pub const SCHEMA: &str = "lumiq.measurement";
pub const SCHEMA_VERSION: u32 = 4;

/// UCUM codes of the record's units.
pub mod units {
    pub const FLUX: &str = "{photons}/s";
    pub const RADIANCE: &str = "{photons}/s/cm2/sr";
    pub const AREA: &str = "cm2";
    pub const LENGTH: &str = "cm";
    pub const SECOND: &str = "s";
    pub const CELSIUS: &str = "Cel";
}

/// One acquisition's measurement record (`schemas/measurement.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasurementRecord {
    /// Always `"lumiq.measurement"` ([`SCHEMA`]).
    pub schema: String,
    /// Version of the record's shape ([`SCHEMA_VERSION`]; `schemas/measurement.schema.json`
    /// is the same version).
    pub schema_version: u32,
    /// UUIDv7 of the acquisition, the LIMS's idempotency key: a record processed again
    /// (after a crash, a replay) keeps it.
    pub measurement_id: Uuid,
    /// The instrument that took the frames (its stable id, as in the MQTT topics).
    pub instrument_id: String,
    /// Start of the luminescent exposure: RFC 3339, UTC, milliseconds, `Z`.
    pub acquired_at: String,
    /// When lumiq built this record: RFC 3339, UTC, milliseconds, `Z`.
    pub processed_at: String,
    /// The program that built the record: `lumiq` and its version.
    pub software: Software,
    /// How the frames were taken and of what: settings, ids, frame geometry.
    pub acquisition: AcquisitionInfo,
    /// Which calibration turned counts into radiance, with a fingerprint of every input.
    pub calibration: CalibrationInfo,
    /// How the regions were found and what the corrections changed.
    pub processing: ProcessingInfo,
    /// Conditions of the whole acquisition (`dark_not_subtracted`, `saturated_pixels`,
    /// ...), sorted, each once; empty when nothing is to be said.
    pub flags: Vec<QualityFlag>,
    /// The mice found in the photograph and how the metadata's subject ids were applied.
    #[serde(default)]
    pub subjects: SubjectsRecord,
    /// The regions measured, detected and imported, numbered from 1 (`region_id`); empty
    /// when there is none. No detected region is flagged `no_detections`.
    pub regions: Vec<RegionRecord>,
    /// The daily QC applied to this record (see [`apply_qc`]); `not_configured` when the
    /// instrument has no QC procedure.
    #[serde(default)]
    pub qc: QcRecord,
}

/// Whether and how a QC was applied to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QcState {
    /// No reference source is configured: nothing to apply, nothing flagged.
    #[default]
    NotConfigured,
    /// A QC within its validity applied.
    Current,
    /// The newest usable QC is older than its validity: applied, and flagged `qc_stale`.
    Stale,
    /// QC is configured but none was usable before this acquisition: no corrected flux,
    /// flagged `qc_missing`.
    Missing,
}

/// The record's `qc`: the reference-source check applied to its fluxes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct QcRecord {
    pub state: QcState,
    /// The applied QC's id (UUIDv7), as in the QC history.
    pub qc_id: Option<String>,
    /// When the applied QC's source was imaged (RFC 3339 UTC).
    pub performed_at: Option<String>,
    /// Hours from that QC to this acquisition.
    pub age_hours: Option<f64>,
    /// The reference source's id.
    pub source_id: Option<String>,
    /// The instrument's response factor (measured over expected source radiance) the
    /// corrected fluxes were divided by; `uncertainty` is the QC measurement's alone.
    pub response_factor: Option<ResponseFactor>,
    /// The applied QC's verdict (`pass` or `out_of_tolerance`).
    pub verdict: Option<QcVerdict>,
    /// The newest QC before this acquisition could not measure its source (an older one
    /// was applied, if any).
    pub latest_failed: bool,
}

/// The mice of one acquisition, left to right, and the rule that named them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubjectsRecord {
    /// `applied` (as many mice as ids: named left to right), `no_ids`, `count_mismatch`
    /// (none applied) or `no_photograph` (mice not located).
    pub id_status: IdStatus,
    /// Mice found in the photograph.
    pub count: usize,
    /// Subject ids the metadata gave.
    pub ids_in_metadata: usize,
    /// The mice found, left to right (`count` of them); empty without a photograph.
    pub mice: Vec<SubjectRecord>,
}

impl Default for SubjectsRecord {
    fn default() -> Self {
        SubjectsRecord {
            id_status: IdStatus::NoPhotograph,
            count: 0,
            ids_in_metadata: 0,
            mice: Vec::new(),
        }
    }
}

/// One mouse found in the photograph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubjectRecord {
    /// 0-based, left to right.
    pub subject_index: usize,
    /// The metadata's id for it; null unless the ids were applied.
    pub subject_id: Option<String>,
    /// Centroid of the mouse's outline, cm from the image's top-left corner.
    pub centroid_cm: [f64; 2],
    /// Bounding box `[x_min, y_min, x_max, y_max]`, cm from the top-left corner.
    pub bbox_cm: [f64; 4],
    /// The same box in the luminescent image's pixel grid (pixel edges at integers).
    pub bbox_px: [f64; 4],
    /// Area of the mouse's outline, cm² (`unit` `cm2`).
    pub area: PlainValue,
}

/// The program that built a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Software {
    /// Always `"lumiq"`.
    pub name: String,
    /// lumiq's version (`CARGO_PKG_VERSION`), e.g. `"0.1.0"`.
    pub version: String,
}

/// The record's `acquisition`: how the frames were taken and of what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcquisitionInfo {
    /// What the frames were read from: `lumiq_folder` or `ivis_click_folder`.
    pub source_format: SourceFormat,
    /// Exposure (s), binning, f-number, field of view (cm), sensor temperature (°C),
    /// emission filter and shelf, as flat fields of `acquisition` (see
    /// [`AcquisitionSettings`]).
    #[serde(flatten)]
    pub settings: AcquisitionSettings,
    /// The study's id from the LIMS or the user's labels; null when none was given.
    pub study_id: Option<String>,
    /// The animals' ids as the metadata gives them, left to right on the stage; empty when
    /// none was given.
    pub subject_ids: Vec<String>,
    /// Luciferin injection time: RFC 3339, UTC, milliseconds, `Z`; null when not recorded.
    pub injection_time: Option<String>,
    /// Minutes from injection to the start of the exposure (the signal depends on it).
    pub minutes_since_injection: Option<f64>,
    /// Free-text view of the animals (`dorsal`, `ventral`, ...); null when not recorded.
    pub view: Option<String>,
    /// Width of the luminescent frame, pixels at its binning.
    pub frame_width_px: usize,
    /// Height of the luminescent frame, pixels at its binning.
    pub frame_height_px: usize,
    /// Side of one luminescent pixel at the object plane, cm (field of view over frame
    /// width).
    pub pixel_size_cm: f64,
    /// Whether a photograph came with the frame (without one, no mouse is located).
    pub has_photograph: bool,
}

/// One calibration input and its fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationItemRecord {
    /// What the input is: `index`, `bias`, `dark`, `flat`, `bad_pixels` or `coefficient`
    /// from a calibration set; `ivis_file` from a click folder.
    pub kind: String,
    /// Which one: the master's or the click folder's file name, or the index with the set's
    /// id.
    pub id: String,
    /// Lower-case hex SHA-256 of the file's bytes.
    pub sha256: String,
    /// How it was selected and used (binning, frames combined, scaling), in words; absent
    /// when there is nothing to add (IVIS files).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// The entry's version in the calibration set: 1 when first made, one more each time
    /// `lumiq calibrate` replaced it; absent for the index, the bad-pixel map and IVIS
    /// files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

/// The record's `calibration`: where the radiance scale and the masters came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationInfo {
    /// "calibration_set" or "ivis_click_folder".
    pub source: String,
    /// Identifier of the calibration set (or the click folder's name).
    pub id: String,
    /// The absolute coefficient that turned counts into radiance.
    pub coefficient: CoefficientRecord,
    /// Every calibration input used, with its fingerprint.
    pub items: Vec<CalibrationItemRecord>,
}

/// The absolute calibration coefficient used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoefficientRecord {
    /// Radiance per count per second per unbinned pixel, `{photons}/s/cm2/sr`.
    pub value: f64,
    /// One-sigma relative uncertainty of `value` (0.05 is 5 %): what every flux's and
    /// radiance's `calibration` uncertainty component comes from.
    pub rel_uncertainty: f64,
    /// Always `{photons}/s/cm2/sr` ([`units::RADIANCE`]).
    pub unit: String,
}

/// The record's `processing`: the detector, the settings and what the corrections changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessingInfo {
    /// Which detector found the regions: "classical", "model" or "combined".
    pub detector: String,
    /// The segmentation model behind the regions (name, sha256, opset, threshold); absent
    /// for the classical detector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<crate::process::ModelIdentity>,
    /// Every processing setting used (`ProcessingParams`, all fields, defaults included).
    pub params: ProcessingParams,
    /// Pixels of the frame replaced as bad (from the calibration's map).
    pub bad_pixels_replaced: usize,
    /// Pixels of the frame replaced as cosmic-ray hits.
    pub cosmic_ray_pixels_replaced: usize,
    /// Pixels of the frame at or above the sensor's saturation (flagged, never used
    /// silently).
    pub saturated_pixels: usize,
    /// Background mesh cells filled from their neighbours (under large sources).
    pub background_cells_filled: usize,
    /// Detection candidates dropped because the whole region's SNR was below
    /// `min_region_snr`.
    pub candidates_rejected: usize,
}

/// A value with its one-sigma uncertainty, unit and uncertainty budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasuredValue {
    /// The value, in `unit`.
    pub value: f64,
    /// One-sigma uncertainty, in `unit`: the components added in quadrature.
    pub uncertainty: f64,
    /// UCUM code ([`units`]): `{photons}/s` for a flux, `{photons}/s/cm2/sr` for a
    /// radiance.
    pub unit: String,
    /// The uncertainty's budget, each one sigma in `unit`: `poisson`, `read_noise`,
    /// `background`, `calibration`, and `dark` (only for the gross flux of a frame with no
    /// dark subtracted: the most its dark charge can add; 0 otherwise).
    pub uncertainty_components: UncertaintyComponents,
}

/// A value without an uncertainty, and its unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlainValue {
    /// The value, in `unit`.
    pub value: f64,
    /// UCUM code ([`units`]), e.g. `cm2` for an area.
    pub unit: String,
}

/// Mean, standard deviation (population: the pixels' spread, not an uncertainty), minimum
/// and maximum of a region's pixel radiances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RadianceStatsRecord {
    /// Mean of the region's pixel radiances, in `unit`.
    pub mean: f64,
    /// Population standard deviation of the pixel radiances (their spread, not an
    /// uncertainty), in `unit`.
    pub stdev: f64,
    /// Smallest pixel radiance, in `unit`.
    pub min: f64,
    /// Largest pixel radiance, in `unit`.
    pub max: f64,
    /// Always `{photons}/s/cm2/sr` ([`units::RADIANCE`]).
    pub unit: String,
}

/// One measured region: a detected tumour or an imported ROI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionRecord {
    /// 1, 2, ... in the record's order.
    pub region_id: u32,
    /// `detected` (found by lumiq) or `imported` (drawn by a person, e.g. an IVIS ROI).
    pub source: RegionSource,
    /// The region's name: `T1`, `T2`, ... for a detected region, the ROI's own name for an
    /// imported one.
    pub label: String,
    /// `[x, y]` in the luminescent image's pixel grid (x right, y down, first pixel centre
    /// at `[0.5, 0.5]`), weighted by the positive net radiance (the pixels' mean position
    /// when none is positive).
    pub centroid_px: [f64; 2],
    /// The same point in cm from the image's top-left corner at the object plane.
    pub centroid_cm: [f64; 2],
    /// Pixels in the region, at the frame's binning; 0 for an imported ROI with no pixel in
    /// the frame.
    pub n_pixels: usize,
    /// Area at the object plane, cm² (`unit` `cm2`).
    pub area: PlainValue,
    /// Net total flux: the region's own light after lumiq's background model,
    /// `{photons}/s`.
    pub total_flux: MeasuredValue,
    /// Gross total flux: all light in the region before the background model (Living
    /// Image's ROI total flux), `{photons}/s`.
    pub gross_total_flux: MeasuredValue,
    /// Mean net radiance over the region, `{photons}/s/cm2/sr`.
    pub average_radiance: MeasuredValue,
    /// Largest net radiance of a pixel of the region, `{photons}/s/cm2/sr`; 0 for a region
    /// with no pixel.
    pub max_radiance: PlainValue,
    /// Net flux over its statistical uncertainty (calibration excluded); 0 when that
    /// uncertainty is 0.
    pub snr: f64,
    /// Whether a pixel of the region is saturated (the record is then flagged
    /// `saturated_region`).
    pub saturated: bool,
    /// Statistics of the region's pixel radiances before the background model (Living
    /// Image's Avg, Stdev, Min and Max Radiance); null for a region with no pixel.
    pub gross_radiance: Option<RadianceStatsRecord>,
    /// Index (0-based, left to right) of the mouse the region's centroid lies on; null when
    /// it lies off every mouse or the mice were not located.
    #[serde(default)]
    pub subject_index: Option<usize>,
    /// That mouse's id from the metadata; null unless the ids were applied unambiguously.
    #[serde(default)]
    pub subject_id: Option<String>,
    /// Conditions of this region (`region_outside_subjects`).
    #[serde(default)]
    pub flags: Vec<QualityFlag>,
    /// `total_flux` divided by the applied QC's response factor (see [`apply_qc`]): the
    /// flux on the reference source's scale, comparable across days. Absent without a
    /// usable QC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qc_corrected_flux: Option<MeasuredValue>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn region_record(i: usize, r: &RegionMeasurement) -> RegionRecord {
    let measured = |u: &crate::process::Uncertain, unit: &str| MeasuredValue {
        value: u.value,
        uncertainty: u.uncertainty,
        unit: unit.into(),
        uncertainty_components: u.components,
    };
    RegionRecord {
        region_id: i as u32 + 1,
        source: r.source,
        label: r.label.clone(),
        centroid_px: r.centroid_px,
        centroid_cm: r.centroid_cm,
        n_pixels: r.n_pixels,
        area: PlainValue {
            value: r.area_cm2,
            unit: units::AREA.into(),
        },
        total_flux: measured(&r.total_flux, units::FLUX),
        gross_total_flux: measured(&r.gross_total_flux, units::FLUX),
        average_radiance: measured(&r.average_radiance, units::RADIANCE),
        max_radiance: PlainValue {
            value: r.max_radiance,
            unit: units::RADIANCE.into(),
        },
        snr: r.snr,
        saturated: r.saturated,
        gross_radiance: r.gross_radiance.map(|g| RadianceStatsRecord {
            mean: g.mean,
            stdev: g.stdev,
            min: g.min,
            max: g.max,
            unit: units::RADIANCE.into(),
        }),
        subject_index: None,
        subject_id: None,
        flags: Vec::new(),
        qc_corrected_flux: None,
    }
}

/// Place every region on one of the mice: those the quantification was given, or else
/// those found in the acquisition's photograph (if any).
pub fn subject_assignment(
    acq: &RawAcquisition,
    q: &Quantification,
    params: &ProcessingParams,
) -> SubjectAssignment {
    let map = q.subjects.clone().or_else(|| {
        acq.photograph_adu.as_ref().map(|photo| {
            subjects::locate_subjects(&photo.mapv(f32::from), acq.meta.fov_cm, &params.subjects)
        })
    });
    let centroids: Vec<[f64; 2]> = q.regions.iter().map(|r| r.centroid_cm).collect();
    subjects::assign_subjects(
        map.as_ref(),
        &acq.meta.subject_ids,
        &centroids,
        &params.subjects,
    )
}

/// The record's view of a subject assignment; `pixel_size_cm` is the luminescent grid's.
pub fn subjects_record(a: &SubjectAssignment, pixel_size_cm: f64) -> SubjectsRecord {
    SubjectsRecord {
        id_status: a.status,
        count: a.subjects.len(),
        ids_in_metadata: a.ids_in_metadata,
        mice: a
            .subjects
            .iter()
            .zip(&a.subject_ids)
            .map(|(s, id)| SubjectRecord {
                subject_index: s.index,
                subject_id: id.clone(),
                centroid_cm: s.centroid_cm,
                bbox_cm: s.bbox_cm,
                bbox_px: s.bbox_cm.map(|v| v / pixel_size_cm),
                area: PlainValue {
                    value: s.area_cm2,
                    unit: units::AREA.into(),
                },
            })
            .collect(),
    }
}

/// Everything the record needs beyond the acquisition and its quantification.
pub struct RecordContext<'a> {
    /// The record's `measurement_id`: the acquisition's id.
    pub measurement_id: Uuid,
    /// The record's `processed_at`.
    pub processed_at: DateTime<Utc>,
    /// The record's `calibration`, as the loader found it.
    pub calibration: CalibrationInfo,
    /// The processing settings used, copied into `processing.params`.
    pub params: &'a ProcessingParams,
    /// Flags raised before processing (e.g. by a reader: unusable dark, assumed noise).
    pub input_flags: &'a [QualityFlag],
}

/// Build the record of one quantified acquisition.
pub fn build(acq: &RawAcquisition, q: &Quantification, ctx: RecordContext) -> MeasurementRecord {
    let m = &acq.meta;
    let (rows, cols) = acq.luminescent_adu.dim();
    let mut flags: Vec<QualityFlag> = q
        .flags
        .iter()
        .cloned()
        .chain(ctx.input_flags.iter().cloned())
        .collect();
    let assignment = subject_assignment(acq, q, ctx.params);
    if assignment.any_outside() {
        flags.push(QualityFlag::RegionOutsideSubjects);
    }
    if assignment.count_mismatch() {
        flags.push(QualityFlag::SubjectCountMismatch);
    }
    match m.injection_time {
        None => flags.push(QualityFlag::NoInjectionTime),
        Some(t) => {
            let minutes = (m.acquired_at - t).num_milliseconds() as f64 / 60_000.0;
            if minutes < kinetics::IP_PEAK_MIN {
                flags.push(QualityFlag::BeforeExpectedPeak);
            }
        }
    }
    flags.sort();
    flags.dedup();
    let mut regions: Vec<RegionRecord> = q
        .regions
        .iter()
        .enumerate()
        .map(|(i, r)| region_record(i, r))
        .collect();
    for (region, placed) in regions.iter_mut().zip(&assignment.regions) {
        region.subject_index = placed.index;
        region.subject_id = placed.id.clone();
        if placed.outside {
            region.flags.push(QualityFlag::RegionOutsideSubjects);
        }
    }
    MeasurementRecord {
        schema: SCHEMA.into(),
        schema_version: SCHEMA_VERSION,
        measurement_id: ctx.measurement_id,
        instrument_id: m.instrument_id.clone(),
        acquired_at: rfc3339(m.acquired_at),
        processed_at: rfc3339(ctx.processed_at),
        software: Software {
            name: "lumiq".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        acquisition: AcquisitionInfo {
            source_format: acq.source,
            settings: m.settings.clone(),
            study_id: m.study_id.clone(),
            subject_ids: m.subject_ids.clone(),
            injection_time: m.injection_time.map(rfc3339),
            minutes_since_injection: m
                .injection_time
                .map(|t| (m.acquired_at - t).num_milliseconds() as f64 / 60_000.0),
            view: m.view.clone(),
            frame_width_px: cols,
            frame_height_px: rows,
            pixel_size_cm: q.pixel_size_cm,
            has_photograph: acq.photograph_adu.is_some(),
        },
        calibration: ctx.calibration,
        processing: ProcessingInfo {
            detector: q.detector.as_str().into(),
            model: q.model.clone(),
            params: ctx.params.clone(),
            bad_pixels_replaced: q.counts.bad_pixels_replaced,
            cosmic_ray_pixels_replaced: q.counts.cosmic_ray_pixels_replaced,
            saturated_pixels: q.counts.saturated_pixels,
            background_cells_filled: q.counts.background_cells_filled,
            candidates_rejected: q.counts.candidates_rejected,
        },
        flags,
        subjects: subjects_record(&assignment, q.pixel_size_cm),
        regions,
        qc: QcRecord::default(),
    }
}

/// Apply the QC selected for this record (see [`qc_core::select`]): fill `qc`, give every
/// region its `qc_corrected_flux`, and raise the QC flags. The correction keeps the
/// calibration coefficient's uncertainty only when the QC image was taken at another
/// field of view or f-number (see [`qc_core::correct`]).
pub fn apply_qc(record: &mut MeasurementRecord, selection: &QcSelection) {
    let mut flags = Vec::new();
    if selection.latest_failed {
        flags.push(QualityFlag::QcFailed);
    }
    record.qc = match selection.applied {
        None => {
            flags.push(QualityFlag::QcMissing);
            QcRecord {
                state: QcState::Missing,
                latest_failed: selection.latest_failed,
                ..QcRecord::default()
            }
        }
        Some(qc) => {
            let k = qc
                .response_factor
                .expect("a usable QC has a response factor");
            if selection.stale {
                flags.push(QualityFlag::QcStale);
            }
            if qc.verdict == QcVerdict::OutOfTolerance {
                flags.push(QualityFlag::QcOutOfTolerance);
            }
            let same_coefficient = (qc.fov_cm - record.acquisition.settings.fov_cm).abs() < 1e-6
                && (qc.f_number - record.acquisition.settings.f_number).abs() < 1e-6;
            for region in record.regions.iter_mut() {
                let f = &region.total_flux;
                let c = qc_core::correct(
                    &Uncertain {
                        value: f.value,
                        uncertainty: f.uncertainty,
                        components: f.uncertainty_components,
                    },
                    &k,
                    same_coefficient,
                );
                region.qc_corrected_flux = Some(MeasuredValue {
                    value: c.value,
                    uncertainty: c.uncertainty,
                    unit: f.unit.clone(),
                    uncertainty_components: c.components,
                });
            }
            QcRecord {
                state: if selection.stale {
                    QcState::Stale
                } else {
                    QcState::Current
                },
                qc_id: Some(qc.qc_id.clone()),
                performed_at: Some(rfc3339(qc.performed_at)),
                age_hours: selection.age_hours,
                source_id: Some(qc.source.id.clone()),
                response_factor: Some(k),
                verdict: Some(qc.verdict),
                latest_failed: selection.latest_failed,
            }
        }
    };
    record.flags.extend(flags);
    record.flags.sort();
    record.flags.dedup();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::qc::QcResult;
    use chrono::TimeZone;

    fn qc_at(hour: u32, verdict: QcVerdict, factor: f64) -> QcResult {
        let t = Utc
            .with_ymd_and_hms(2026, 3, 2, hour, 0, 0)
            .single()
            .unwrap();
        crate::process::qc::sample_result(&format!("qc-{hour}"), "sim-ivis-01", t, verdict, factor)
    }

    fn record_at(hour: u32) -> (MeasurementRecord, DateTime<Utc>) {
        let mut r = crate::delivery::synthetic::record("sim-ivis-01", 1);
        r.acquisition.settings.fov_cm = 22.4;
        r.acquisition.settings.f_number = 1.0;
        let t = Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).single().unwrap()
            + chrono::Duration::hours(hour as i64);
        (r, t)
    }

    #[test]
    fn a_current_qc_corrects_every_region_and_names_itself() {
        let history = vec![qc_at(8, QcVerdict::Pass, 0.9)];
        let (mut r, t) = record_at(10);
        apply_qc(&mut r, &qc_core::select(&history, "sim-ivis-01", t));
        assert_eq!(r.qc.state, QcState::Current);
        assert_eq!(r.qc.qc_id.as_deref(), Some("qc-8"));
        assert!((r.qc.age_hours.unwrap() - 2.0).abs() < 1e-9);
        for g in &r.regions {
            let c = g.qc_corrected_flux.as_ref().unwrap();
            assert!((c.value - g.total_flux.value / 0.9).abs() < 1e-6 * c.value);
        }
        assert!(!r.flags.iter().any(|f| matches!(
            f,
            QualityFlag::QcMissing | QualityFlag::QcStale | QualityFlag::QcFailed
        )));
    }

    #[test]
    fn stale_failed_out_of_tolerance_and_missing_qc_are_flagged() {
        // A QC 2 days old: stale.
        let history = vec![qc_at(8, QcVerdict::OutOfTolerance, 0.8)];
        let (mut r, t) = record_at(8 + 48);
        apply_qc(&mut r, &qc_core::select(&history, "sim-ivis-01", t));
        assert_eq!(r.qc.state, QcState::Stale);
        assert!(r.flags.contains(&QualityFlag::QcStale));
        assert!(r.flags.contains(&QualityFlag::QcOutOfTolerance));
        // The newest QC failed: the older one applies, and the failure is said.
        let history = vec![
            qc_at(8, QcVerdict::Pass, 0.95),
            qc_at(9, QcVerdict::Invalid, 0.0),
        ];
        let (mut r, t) = record_at(10);
        apply_qc(&mut r, &qc_core::select(&history, "sim-ivis-01", t));
        assert_eq!(r.qc.qc_id.as_deref(), Some("qc-8"));
        assert!(r.qc.latest_failed && r.flags.contains(&QualityFlag::QcFailed));
        // Only a QC made after the acquisition, or another instrument's: missing.
        let (mut r, t) = record_at(7);
        apply_qc(&mut r, &qc_core::select(&history, "sim-ivis-01", t));
        assert_eq!(r.qc.state, QcState::Missing);
        assert!(r.flags.contains(&QualityFlag::QcMissing));
        assert!(r.regions.iter().all(|g| g.qc_corrected_flux.is_none()));
        let (mut r, t) = record_at(10);
        apply_qc(&mut r, &qc_core::select(&history, "other-imager", t));
        assert_eq!(r.qc.state, QcState::Missing);
    }
}

#[cfg(test)]
mod qc_tests {
    use super::*;

    #[test]
    fn the_acquisition_settings_stay_flat_fields_of_the_record() {
        let info = AcquisitionInfo {
            source_format: SourceFormat::IvisClickFolder,
            // The synthetic record's settings: 60 s, binning 8, f/1, 22.4 cm, shelf D.
            settings: crate::delivery::synthetic::record("sim", 1)
                .acquisition
                .settings,
            study_id: None,
            subject_ids: vec![],
            injection_time: None,
            minutes_since_injection: None,
            view: None,
            frame_width_px: 256,
            frame_height_px: 256,
            pixel_size_cm: 0.0875,
            has_photograph: false,
        };
        let json = serde_json::to_string(&info).unwrap();
        assert_eq!(
            json,
            r#"{"source_format":"ivis_click_folder","exposure_s":60.0,"binning":8,"f_number":1.0,"fov_cm":22.4,"sensor_temp_c":-90.0,"emission_filter":"open","shelf":"D","study_id":null,"subject_ids":[],"injection_time":null,"minutes_since_injection":null,"view":null,"frame_width_px":256,"frame_height_px":256,"pixel_size_cm":0.0875,"has_photograph":false}"#
        );
        assert_eq!(
            serde_json::from_str::<AcquisitionInfo>(&json).unwrap(),
            info
        );
    }
}
