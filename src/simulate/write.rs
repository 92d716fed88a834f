//! Writing simulated acquisitions to disk: as lumiq acquisition folders or IVIS click
//! folders, each with `truth.json` beside the frames.
//!
//! Owns: the edge between the pure simulator and the file formats. The truth file holds
//! the scene (every tumour's total flux, centre and shape) and, for folders with ROIs, the
//! noise-free gross flux each ROI should measure.

use std::path::Path;

use serde::Serialize;

use super::scene::{stray_sources, StraySource};
use super::{Instrument, SimulatedAcquisition, Truth};
use crate::acquisition::{RawAcquisition, SourceFormat};
use crate::formats::acquisition_folder::{self, FrameKind};
use crate::formats::ivis::{write_background_click, write_click_folder, IvisFolderSpec};
use crate::formats::FormatError;
use crate::process::roi::{Roi, RoiShape};

pub const TRUTH_FILE: &str = "truth.json";

/// The expected result for one ROI: what an ideal measurement of the noise-free scene gives.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoiTruth {
    pub label: String,
    /// 4π Σ L·A over the pixels whose centres lie inside, tumour light and background.
    pub expected_gross_flux: f64,
    /// The same for the tumour light alone.
    pub expected_tumour_flux: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct TruthFile<'a> {
    #[serde(flatten)]
    truth: &'a Truth,
    rois: Vec<RoiTruth>,
    /// The subject ids the folder's metadata carries, one per mouse, left to right.
    subject_ids: Vec<String>,
    /// The subject each tumour lies on: what `lumiq process` should assign its region.
    tumour_subjects: Vec<TumourSubject>,
    /// Sources on the stage off every mouse: their regions should be flagged.
    stray_sources: Vec<StraySource>,
}

/// Which mouse one tumour lies on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TumourSubject {
    pub tumour: usize,
    /// Index of the mouse, left to right.
    pub mouse: usize,
    pub subject_id: String,
}

/// A circular ROI around every tumour, 3.5 sigma in radius, in the luminescent grid.
pub fn rois_around_tumours(sim: &SimulatedAcquisition) -> Vec<Roi> {
    let pixel_cm = sim.meta.fov_cm / sim.luminescent_adu.dim().1 as f64;
    sim.truth
        .tumours
        .iter()
        .map(|t| {
            let d = 2.0 * 3.5 * t.sigma_major_cm / pixel_cm;
            Roi {
                label: format!("ROI {}", t.id),
                shape: RoiShape::Ellipse {
                    xc: t.centre_px[0],
                    yc: t.centre_px[1],
                    width: d,
                    height: d,
                    angle_deg: 0.0,
                },
            }
        })
        .collect()
}

/// The noise-free fluxes each ROI should measure.
pub fn roi_truth(sim: &SimulatedAcquisition, rois: &[Roi]) -> Vec<RoiTruth> {
    let (rows, cols) = sim.luminescent_adu.dim();
    let scale = 4.0 * std::f64::consts::PI * sim.truth.pixel_area_cm2;
    rois.iter()
        .map(|roi| {
            let mask = roi.shape.mask(rows, cols);
            let (mut gross, mut tumour) = (0.0f64, 0.0f64);
            for ((r, c), &inside) in mask.indexed_iter() {
                if inside {
                    tumour += sim.tumour_radiance[[r, c]] as f64;
                    gross +=
                        sim.tumour_radiance[[r, c]] as f64 + sim.background_radiance[[r, c]] as f64;
                }
            }
            RoiTruth {
                label: roi.label.clone(),
                expected_gross_flux: gross * scale,
                expected_tumour_flux: tumour * scale,
            }
        })
        .collect()
}

fn write_truth(
    dir: &Path,
    sim: &SimulatedAcquisition,
    rois: Vec<RoiTruth>,
    subject_ids: &[String],
) -> Result<(), FormatError> {
    let path = dir.join(TRUTH_FILE);
    let truth = &sim.truth;
    let tumour_subjects = truth
        .tumours
        .iter()
        .map(|t| TumourSubject {
            tumour: t.id,
            mouse: t.mouse,
            subject_id: subject_ids.get(t.mouse).cloned().unwrap_or_default(),
        })
        .collect();
    let file = TruthFile {
        truth,
        rois,
        subject_ids: subject_ids.to_vec(),
        tumour_subjects,
        stray_sources: stray_sources(&truth.spec, &truth.mice, sim.luminescent_adu.dim().1),
    };
    let json = serde_json::to_string_pretty(&file).expect("truth serialises");
    std::fs::write(&path, json).map_err(|e| FormatError::io(&path, e))
}

/// Write a lumiq acquisition folder (with the given ROIs, possibly none) and its truth.
pub fn write_lumiq(
    dir: &Path,
    sim: &SimulatedAcquisition,
    rois: Vec<Roi>,
) -> Result<(), FormatError> {
    let raw = RawAcquisition {
        meta: sim.meta.clone(),
        luminescent_adu: sim.luminescent_adu.clone(),
        photograph_adu: sim.photograph_adu.clone(),
        imported_rois: rois.clone(),
        source: SourceFormat::LumiqFolder,
    };
    acquisition_folder::write(dir, &raw, FrameKind::Luminescent)?;
    write_truth(dir, sim, roi_truth(sim, &rois), &sim.meta.subject_ids)
}

/// Where the dark of a simulated click folder goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IvisDark<'a> {
    /// In the folder's own `background.TIF`.
    Own,
    /// Nowhere usable: the folder's dark is saturated everywhere, as some real folders have.
    Unusable,
    /// The folder's own dark is saturated; the true one is a background click in this
    /// library folder, which the darkcharge section names (`Background Click`), as Living
    /// Image keeps it.
    Library(&'a Path),
}

/// Write an IVIS click folder as Living Image would (raw luminescent counts, read bias and
/// dark charge ×10, the camera block in ClickInfo.txt, ROIs in AnalyzedClickInfo.txt) and
/// its truth. `usable_dark = false` writes a dark saturated everywhere.
pub fn write_ivis(
    dir: &Path,
    inst: &Instrument,
    sim: &SimulatedAcquisition,
    usable_dark: bool,
) -> Result<(), FormatError> {
    let dark = if usable_dark {
        IvisDark::Own
    } else {
        IvisDark::Unusable
    };
    write_ivis_with(dir, inst, sim, dark)
}

/// [`write_ivis`], with the dark where `dark` says.
pub fn write_ivis_with(
    dir: &Path,
    inst: &Instrument,
    sim: &SimulatedAcquisition,
    dark: IvisDark,
) -> Result<(), FormatError> {
    let m = &sim.meta;
    let cal = inst.ideal_calibration(
        m.binning,
        m.exposure_s,
        m.sensor_temp_c,
        m.fov_cm,
        m.f_number,
    );
    let rois = rois_around_tumours(sim);
    let b = m.binning as f64;
    let rois_unbinned: Vec<Roi> = rois
        .iter()
        .map(|r| Roi {
            label: r.label.clone(),
            shape: r.shape.scaled(1.0 / b),
        })
        .collect();
    let coefficients: Vec<(f64, f64, f64)> = [4.0, 6.5, 12.5, 22.4]
        .iter()
        .flat_map(|&fov| [1.0, 2.0, 4.0, 8.0, 16.0].map(|f| (fov, f, inst.coefficient(fov, f))))
        .collect();
    let (hot, columns) = inst.defects();
    let animal_numbers: Vec<String> = (0..sim.truth.mice.len())
        .map(|i| (3466 + i).to_string())
        .collect();
    std::fs::create_dir_all(dir).map_err(|e| FormatError::io(dir, e))?;
    // Living Image's library darks are taken hours before (here nine) and named by time.
    let background_click = format!(
        "BKG{}",
        (m.acquired_at - chrono::TimeDelta::hours(9)).format("%Y%m%d%H%M%S")
    );
    if let (IvisDark::Library(library), Some(true_dark)) = (dark, cal.dark_adu.as_ref()) {
        write_background_click(
            &library.join(&background_click),
            true_dark,
            m.binning,
            m.exposure_s,
            10.0,
        )?;
    }
    write_click_folder(
        dir,
        &IvisFolderSpec {
            meta: m,
            luminescent_adu: &sim.luminescent_adu,
            photograph_adu: sim.photograph_adu.as_ref(),
            readbias_adu: &cal.bias_adu,
            dark_adu: match dark {
                IvisDark::Own => cal.dark_adu.as_ref(),
                IvisDark::Unusable | IvisDark::Library(_) => None,
            },
            data_multiplier: 10.0,
            coefficients: &coefficients,
            shelf_fovs: &[('A', 4.0), ('B', 6.5), ('C', 12.5), ('D', 22.4)],
            flat: inst.vignetting,
            saturation_adu: inst.sensor.saturation_adu,
            defects_unbinned: &hot,
            bad_columns_unbinned: &columns,
            rois_unbinned: &rois_unbinned,
            animal_numbers: &animal_numbers,
            camera_id: &inst.instrument_id,
            background_click: Some(&background_click),
        },
    )?;
    write_truth(dir, sim, roi_truth(sim, &rois), &animal_numbers)
}

/// Write a simulated study (see [`super::study`]) under `dir`: `qc/dayNN` (the reference
/// source's image of each day), `frames/dayNN/frame-NNN` (each day's kinetic series, with
/// `truth.json`), `study.json` (the study's truth) and `lumiq.toml` (a configuration whose
/// `[qc]` describes the simulated source, state in `dir/state`, calibration set
/// `calibration_dir`), so that `lumiq qc --config dir/lumiq.toml dir/qc/*` and
/// `lumiq trend dir/frames --qc-history dir/state/qc/history.jsonl` run on it.
pub fn write_study(
    inst: &Instrument,
    truth: &super::study::StudyTruth,
    dir: &Path,
    calibration_dir: &Path,
) -> Result<(), FormatError> {
    for day in 0..truth.days.len() {
        let d = super::study::simulate_day(inst, truth, day);
        write_lumiq(
            &dir.join(format!("qc/day{day:02}")),
            &d.qc_image,
            Vec::new(),
        )?;
        for (k, sim) in d.series.iter().enumerate() {
            let f = dir.join(format!("frames/day{day:02}/frame-{:03}", k + 1));
            write_lumiq(&f, sim, Vec::new())?;
        }
    }
    let path = dir.join("study.json");
    let json = serde_json::to_string_pretty(truth).expect("the study's truth serialises");
    std::fs::write(&path, json).map_err(|e| FormatError::io(&path, e))?;
    let s = &truth.spec;
    let config = format!(
        "# The simulated study's instrument: `lumiq qc --config {cfg} {qc}/day*`.\n\
         [instrument]\nid = {id:?}\nsite = \"simulated-lab\"\n\n\
         [state]\ndir = {state:?}\n\n\
         [calibration]\ndir = {cal:?}\n\n\
         [qc]\nsource_id = {src:?}\nsource_kind = \"{kind}\"\nradiance = {rad:e}\n\
         radiance_rel_uncertainty = {unc}\nreference_date = {date:?}\nhalf_life_days = {half}\n\
         source_centre_cm = [{cx}, {cy}]\nsource_radius_cm = {r}\ntolerance = 0.1\nvalid_hours = 26\n",
        cfg = dir.join("lumiq.toml").display(),
        qc = dir.join("qc").display(),
        id = inst.instrument_id,
        state = dir.join("state").display().to_string(),
        cal = calibration_dir.display().to_string(),
        src = s.source.id,
        kind = if s.source.half_life_days > 0.0 { "tritium" } else { "led" },
        rad = s.source.radiance_p_s_cm2_sr,
        unc = s.source.radiance_rel_uncertainty,
        date = s.source.reference_date.to_rfc3339(),
        half = s.source.half_life_days,
        cx = s.placement.centre_cm[0],
        cy = s.placement.centre_cm[1],
        r = s.placement.radius_cm,
    );
    let path = dir.join("lumiq.toml");
    std::fs::write(&path, config).map_err(|e| FormatError::io(&path, e))
}
