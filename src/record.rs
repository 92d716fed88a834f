//! The measurement record: one standardized JSON object per acquisition, what `lumiq
//! process` prints and what the daemon will publish. Its JSON Schema is
//! `schemas/measurement.schema.json`; bump [`SCHEMA_VERSION`] with any change to it.
//!
//! Owns: the record's shape and units (UCUM codes) and building it from a
//! [`Quantification`]. Pure: the id and the processing time are passed in by the caller.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::acquisition::{RawAcquisition, SourceFormat};
use crate::process::{
    ProcessingParams, QualityFlag, Quantification, RegionMeasurement, RegionSource,
    UncertaintyComponents,
};

pub const SCHEMA: &str = "lumiq.measurement";
pub const SCHEMA_VERSION: u32 = 1;

/// UCUM codes of the record's units.
pub mod units {
    pub const FLUX: &str = "{photons}/s";
    pub const RADIANCE: &str = "{photons}/s/cm2/sr";
    pub const AREA: &str = "cm2";
    pub const LENGTH: &str = "cm";
    pub const SECOND: &str = "s";
    pub const CELSIUS: &str = "Cel";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasurementRecord {
    pub schema: String,
    pub schema_version: u32,
    pub measurement_id: Uuid,
    pub instrument_id: String,
    pub acquired_at: String,
    pub processed_at: String,
    pub software: Software,
    pub acquisition: AcquisitionInfo,
    pub calibration: CalibrationInfo,
    pub processing: ProcessingInfo,
    pub flags: Vec<QualityFlag>,
    pub regions: Vec<RegionRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Software {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcquisitionInfo {
    pub source_format: SourceFormat,
    pub exposure_s: f64,
    pub binning: u32,
    pub f_number: f64,
    pub fov_cm: f64,
    pub sensor_temp_c: f64,
    pub emission_filter: String,
    pub shelf: Option<String>,
    pub study_id: Option<String>,
    pub subject_ids: Vec<String>,
    pub injection_time: Option<String>,
    /// Minutes from injection to the start of the exposure (the signal depends on it).
    pub minutes_since_injection: Option<f64>,
    pub view: Option<String>,
    pub frame_width_px: usize,
    pub frame_height_px: usize,
    pub pixel_size_cm: f64,
    pub has_photograph: bool,
}

/// One calibration input and its fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationItemRecord {
    pub kind: String,
    pub id: String,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationInfo {
    /// "calibration_set" or "ivis_click_folder".
    pub source: String,
    /// Identifier of the calibration set (or the click folder's name).
    pub id: String,
    pub coefficient: CoefficientRecord,
    pub items: Vec<CalibrationItemRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoefficientRecord {
    pub value: f64,
    pub rel_uncertainty: f64,
    pub unit: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessingInfo {
    /// Which detector found the regions ("classical").
    pub detector: String,
    pub params: ProcessingParams,
    pub bad_pixels_replaced: usize,
    pub cosmic_ray_pixels_replaced: usize,
    pub saturated_pixels: usize,
    pub background_cells_filled: usize,
    pub candidates_rejected: usize,
}

/// A value with its one-sigma uncertainty, unit and uncertainty budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasuredValue {
    pub value: f64,
    pub uncertainty: f64,
    pub unit: String,
    pub uncertainty_components: UncertaintyComponents,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlainValue {
    pub value: f64,
    pub unit: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionRecord {
    pub region_id: u32,
    pub source: RegionSource,
    pub label: String,
    pub centroid_px: [f64; 2],
    pub centroid_cm: [f64; 2],
    pub n_pixels: usize,
    pub area: PlainValue,
    pub total_flux: MeasuredValue,
    pub gross_total_flux: MeasuredValue,
    pub average_radiance: MeasuredValue,
    pub max_radiance: PlainValue,
    pub snr: f64,
    pub saturated: bool,
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
    }
}

/// Everything the record needs beyond the acquisition and its quantification.
pub struct RecordContext<'a> {
    pub measurement_id: Uuid,
    pub processed_at: DateTime<Utc>,
    pub calibration: CalibrationInfo,
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
    flags.sort();
    flags.dedup();
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
            exposure_s: m.exposure_s,
            binning: m.binning,
            f_number: m.f_number,
            fov_cm: m.fov_cm,
            sensor_temp_c: m.sensor_temp_c,
            emission_filter: m.emission_filter.clone(),
            shelf: m.shelf.clone(),
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
            detector: "classical".into(),
            params: ctx.params.clone(),
            bad_pixels_replaced: q.counts.bad_pixels_replaced,
            cosmic_ray_pixels_replaced: q.counts.cosmic_ray_pixels_replaced,
            saturated_pixels: q.counts.saturated_pixels,
            background_cells_filled: q.counts.background_cells_filled,
            candidates_rejected: q.counts.candidates_rejected,
        },
        flags,
        regions: q
            .regions
            .iter()
            .enumerate()
            .map(|(i, r)| region_record(i, r))
            .collect(),
    }
}
