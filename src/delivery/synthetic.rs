//! Synthetic measurement records for delivery load: `lumiq deliver-test`, the delivery tests
//! and the benchmark. Valid against `schemas/measurement.schema.json`, realistic in size (five
//! regions, full provenance: about 6 KB of JSON), cheap to make (no image processing).
//!
//! Owns nothing else; real records come from [`crate::record::build`].
//!
//! Synthetic, not simulated: these are made-up records, not a fake device (the fakes of
//! devices are the `sim` modules: `camera::sim`, `controller::sim`, `acquire::sim`) nor
//! the output of the simulated instrument (`simulate`), so they are named apart.

use chrono::{Duration, Utc};
use uuid::Uuid;

use crate::acquisition::{AcquisitionSettings, SourceFormat};
use crate::process::subjects::IdStatus;
use crate::process::{ProcessingParams, QualityFlag, RegionSource, UncertaintyComponents};
use crate::record::{
    units, AcquisitionInfo, CalibrationInfo, CalibrationItemRecord, CoefficientRecord,
    MeasuredValue, MeasurementRecord, PlainValue, ProcessingInfo, RadianceStatsRecord,
    RegionRecord, Software, SubjectRecord, SubjectsRecord, SCHEMA, SCHEMA_VERSION,
};

use super::wire::rfc3339;

/// Record number `n` of a synthetic series for `instrument_id`, with a fresh UUIDv7.
pub fn record(instrument_id: &str, n: u64) -> MeasurementRecord {
    let now = Utc::now();
    let acquired = now - Duration::seconds(2);
    let comps = |v: f64| UncertaintyComponents {
        poisson: 0.01 * v,
        read_noise: 0.002 * v,
        background: 0.005 * v,
        calibration: 0.05 * v,
        dark: 0.0,
    };
    let measured = |v: f64, unit: &str| {
        let c = comps(v);
        MeasuredValue {
            value: v,
            uncertainty: c.total(),
            unit: unit.into(),
            uncertainty_components: c,
        }
    };
    let regions = (0..5u32)
        .map(|i| {
            let flux = 1.0e6 * (1.0 + i as f64) * (1.0 + (n % 7) as f64 * 0.1);
            RegionRecord {
                region_id: i + 1,
                source: RegionSource::Detected,
                label: format!("mouse {} tumour", i + 1),
                centroid_px: [40.5 + 40.0 * i as f64, 128.5],
                centroid_cm: [3.5 + 3.5 * i as f64, 11.2],
                n_pixels: 120 + i as usize,
                area: PlainValue {
                    value: 0.42,
                    unit: units::AREA.into(),
                },
                total_flux: measured(flux, units::FLUX),
                gross_total_flux: measured(flux * 1.05, units::FLUX),
                average_radiance: measured(flux / 40.0, units::RADIANCE),
                max_radiance: PlainValue {
                    value: flux / 10.0,
                    unit: units::RADIANCE.into(),
                },
                snr: 120.0,
                saturated: false,
                gross_radiance: Some(RadianceStatsRecord {
                    mean: flux * 1.05 / 40.0,
                    stdev: flux / 80.0,
                    min: flux / 400.0,
                    max: flux / 9.0,
                    unit: units::RADIANCE.into(),
                }),
                subject_index: Some(i as usize),
                subject_id: Some(format!("M{n}-{}", i + 1)),
                flags: Vec::new(),
                qc_corrected_flux: None,
            }
        })
        .collect();
    let sha = |k: u8| format!("{:02x}", k).repeat(32);
    MeasurementRecord {
        schema: SCHEMA.into(),
        schema_version: SCHEMA_VERSION,
        measurement_id: Uuid::now_v7(),
        instrument_id: instrument_id.into(),
        acquired_at: rfc3339(acquired),
        processed_at: rfc3339(now),
        software: Software {
            name: "lumiq".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        acquisition: AcquisitionInfo {
            source_format: SourceFormat::LumiqFolder,
            settings: AcquisitionSettings {
                exposure_s: 60.0,
                binning: 8,
                f_number: 1.0,
                fov_cm: 22.4,
                sensor_temp_c: -90.0,
                emission_filter: "open".into(),
                shelf: Some("D".into()),
            },
            study_id: Some("synthetic".into()),
            subject_ids: (1..=5).map(|m| format!("M{n}-{m}")).collect(),
            injection_time: Some(rfc3339(acquired - Duration::minutes(10))),
            minutes_since_injection: Some(10.0),
            view: Some("dorsal".into()),
            frame_width_px: 256,
            frame_height_px: 256,
            pixel_size_cm: 0.0875,
            has_photograph: true,
        },
        calibration: CalibrationInfo {
            source: "calibration_set".into(),
            id: "sim-ivis-01".into(),
            coefficient: CoefficientRecord {
                value: 7.223e5,
                rel_uncertainty: 0.05,
                unit: units::RADIANCE.into(),
            },
            items: ["bias", "dark", "flat"]
                .iter()
                .enumerate()
                .map(|(k, kind)| CalibrationItemRecord {
                    kind: (*kind).into(),
                    id: format!("{kind}_b8"),
                    sha256: sha(k as u8 + 1),
                    detail: String::new(),
                    version: Some(1),
                })
                .collect(),
        },
        processing: ProcessingInfo {
            detector: "classical".into(),
            model: None,
            params: ProcessingParams::default(),
            bad_pixels_replaced: 3,
            cosmic_ray_pixels_replaced: 12,
            saturated_pixels: 0,
            background_cells_filled: 1,
            candidates_rejected: 0,
        },
        flags: vec![QualityFlag::CosmicRaysRemoved],
        subjects: SubjectsRecord {
            id_status: IdStatus::Applied,
            count: 5,
            ids_in_metadata: 5,
            mice: (0..5usize)
                .map(|i| {
                    let x = 1.5 + 4.0 * i as f64;
                    SubjectRecord {
                        subject_index: i,
                        subject_id: Some(format!("M{n}-{}", i + 1)),
                        centroid_cm: [x + 1.5, 11.2],
                        bbox_cm: [x, 6.7, x + 3.0, 15.7],
                        bbox_px: [x / 0.0875, 6.7 / 0.0875, (x + 3.0) / 0.0875, 15.7 / 0.0875],
                        area: PlainValue {
                            value: 21.2,
                            unit: units::AREA.into(),
                        },
                    }
                })
                .collect(),
        },
        regions,
        qc: Default::default(),
    }
}
