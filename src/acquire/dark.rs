//! The dark for a luminescent frame: the matching master from the dark library (the
//! instrument's calibration set, which `lumiq process` calibrates with), or — when the
//! library has none within its own rules, or is older than the allowed age — darks
//! acquired with the shutter closed at the frame's binning, exposure and temperature and
//! added to the library with [`crate::calibrate::build_set`], so `lumiq process` finds them.
//!
//! Owns: the decision ([`check_library`], pure), the library update
//! ([`add_darks_to_library`]) and raw calibration frames written as acquisition folders
//! ([`write_calibration_frames`], also guided calibration's). The frames themselves are taken by the sequence.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::cooling::CoolingLock;
use crate::acquisition::{AcquisitionMeta, AcquisitionSettings, RawAcquisition, SourceFormat};
use crate::calibrate::{build_set, CalibrateError, CalibrateOptions};
use crate::camera::Frame;
use crate::formats::acquisition_folder::{self, FrameKind};
use crate::formats::calibration_set::{CalibrationIndex, DarkEntry};
use crate::formats::FormatError;

/// Why new darks could not be added to the library.
#[derive(Debug, thiserror::Error)]
pub enum DarkLibraryError {
    /// A dark's raw folder could not be written, or the library read back.
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    Calibrate(#[from] CalibrateError),
    #[error("the new darks are not selectable in the library: {0}")]
    NotSelectable(String),
}

/// Where the darks are and how old they may be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DarkPolicy {
    /// The calibration set holding the dark library (`calibration/<instrument>` by default).
    pub library: PathBuf,
    /// Darks from a set built longer ago than this are stale and taken again, days.
    pub max_age_days: f64,
    /// Dark frames to take when they are needed (combined by a sigma-clipped median).
    pub frames: usize,
    /// Darks taken before the cooling lock was last (re)gained, or at another setpoint,
    /// are taken again (`[acquisition] dark_retake_after_relock`).
    #[serde(default)]
    pub retake_after_relock: bool,
}

/// Where the dark came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DarkSource {
    /// The library's master was used as it is.
    Library,
    /// Darks were taken with the shutter closed and added to the library.
    Acquired,
}

/// What the capture report says about the dark.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DarkReport {
    pub source: DarkSource,
    /// Why darks were taken (missing or stale), when they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub library: String,
    pub library_id: String,
    /// The master `lumiq process` will select for the frame.
    pub file: String,
    pub binning: u32,
    pub exposure_s: f64,
    pub sensor_temp_c: f64,
    pub frames_acquired: usize,
}

/// The library's verdict for one frame.
#[derive(Debug, Clone, PartialEq)]
pub enum LibraryDark {
    Usable(DarkEntry),
    Needed { reason: String },
}

/// Apply the set's own selection rules (`docs/calibration-set.md`), the age limit (of the
/// dark itself: its `acquired_at`) and, when `lock` is given, the cooling lock: the dark
/// `lumiq process` would select is not used when it was taken before the lock was last
/// (re)gained or at another setpoint.
pub fn check_library(
    index: &CalibrationIndex,
    binning: u32,
    exposure_s: f64,
    sensor_temp_c: f64,
    now: DateTime<Utc>,
    max_age_days: f64,
    lock: Option<&CoolingLock>,
) -> LibraryDark {
    let rules = index.dark_rules;
    let ratio = |d: &DarkEntry| {
        if d.exposure_s >= exposure_s {
            d.exposure_s / exposure_s
        } else {
            exposure_s / d.exposure_s
        }
    };
    let best = index
        .dark
        .iter()
        .filter(|d| d.binning == binning)
        .filter(|d| (d.sensor_temp_c - sensor_temp_c).abs() <= rules.temperature_tolerance_c)
        .min_by(|a, b| {
            ratio(a).total_cmp(&ratio(b)).then(
                (a.sensor_temp_c - sensor_temp_c)
                    .abs()
                    .total_cmp(&(b.sensor_temp_c - sensor_temp_c).abs()),
            )
        });
    let Some(best) = best.filter(|d| ratio(d) <= rules.max_exposure_ratio) else {
        return LibraryDark::Needed {
            reason: format!(
                "the library has no dark for binning {binning}, {exposure_s} s at {sensor_temp_c:.1} °C \
                 (within {} °C and an exposure ratio of {})",
                rules.temperature_tolerance_c, rules.max_exposure_ratio
            ),
        };
    };
    let acquired_at = best.acquired_at_or(index.created_at);
    let age_days = (now - acquired_at).num_seconds() as f64 / 86400.0;
    if age_days > max_age_days {
        return LibraryDark::Needed {
            reason: format!(
                "the library's darks are {age_days:.0} days old (the limit is {max_age_days} days)"
            ),
        };
    }
    if let Some(reason) = lock.and_then(|l| l.dark_is_stale(acquired_at, best.setpoint_c)) {
        return LibraryDark::Needed { reason };
    }
    LibraryDark::Usable(best.clone())
}

/// Write raw calibration frames of one `kind` as acquisition folders `<dir>/<prefix>_NN`
/// (for `lumiq calibrate`'s `build_set`): `meta` with each frame's time, exposure, binning
/// and temperature, without a photograph. Returns the folders, in frame order.
pub fn write_calibration_frames(
    dir: &Path,
    prefix: &str,
    meta: &AcquisitionMeta,
    frames: &[Frame],
    kind: FrameKind,
) -> Result<Vec<PathBuf>, FormatError> {
    let mut folders = Vec::with_capacity(frames.len());
    for (i, f) in frames.iter().enumerate() {
        let m = AcquisitionMeta {
            acquired_at: f.started_at,
            settings: AcquisitionSettings {
                exposure_s: f.exposure_s,
                binning: f.binning,
                sensor_temp_c: f.sensor_temp_c,
                ..meta.settings.clone()
            },
            photograph: None,
            ..meta.clone()
        };
        let acq = RawAcquisition {
            meta: m,
            luminescent_adu: (*f.pixels).clone(),
            photograph_adu: None,
            imported_rois: vec![],
            source: SourceFormat::LumiqFolder,
        };
        let folder = dir.join(format!("{prefix}_{i:02}"));
        acquisition_folder::write(&folder, &acq, kind)?;
        folders.push(folder);
    }
    Ok(folders)
}

/// Write the dark frames as raw calibration folders and merge them into the library.
/// Returns the dark entry `lumiq process` will now select.
pub fn add_darks_to_library(
    library: &Path,
    index: &CalibrationIndex,
    meta: &AcquisitionMeta,
    darks: &[Frame],
    setpoint_c: Option<f64>,
    now: DateTime<Utc>,
) -> Result<DarkEntry, DarkLibraryError> {
    let staging = library.join(format!(
        ".new-darks-{}-{}",
        std::process::id(),
        now.timestamp_nanos_opt().unwrap_or(0)
    ));
    let result = (|| -> Result<DarkEntry, DarkLibraryError> {
        let folders = write_calibration_frames(&staging, "dark", meta, darks, FrameKind::Dark)?;
        let mut opts = CalibrateOptions::new(index.id.clone(), index.instrument_id.clone());
        opts.saturation_adu = index.sensor.saturation_adu;
        opts.pixel_pitch_um = index.sensor.pixel_pitch_um;
        opts.dark_rules = index.dark_rules;
        opts.created_at = Some(now);
        opts.dark_setpoint_c = setpoint_c;
        build_set(&folders, library, &opts)?;
        let updated = crate::formats::calibration_set::CalibrationSet::load(library)?;
        let temp = darks.iter().map(|f| f.sensor_temp_c).sum::<f64>() / darks.len().max(1) as f64;
        match check_library(
            &updated.index,
            darks[0].binning,
            darks[0].exposure_s,
            temp,
            now,
            f64::INFINITY,
            None,
        ) {
            LibraryDark::Usable(e) => Ok(e),
            LibraryDark::Needed { reason } => Err(DarkLibraryError::NotSelectable(reason)),
        }
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> CalibrationIndex {
        let p = crate::simulate::calibration_frames::shipped_set_dir()
            .expect("the shipped calibration set")
            .join("calibration.toml");
        CalibrationIndex::parse(&std::fs::read_to_string(&p).unwrap(), &p).unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn library_dark_within_the_rules_is_used() {
        let ix = index();
        let now = at("2026-03-02T09:00:00Z");
        match check_library(&ix, 8, 200.0, -89.6, now, 90.0, None) {
            LibraryDark::Usable(d) => assert_eq!((d.binning, d.exposure_s), (8, 60.0)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_and_stale_darks_are_needed() {
        let ix = index();
        let now = at("2026-03-02T09:00:00Z");
        let need = |r: LibraryDark| match r {
            LibraryDark::Needed { reason } => reason,
            other => panic!("{other:?}"),
        };
        assert!(need(check_library(&ix, 8, 300.0, -90.0, now, 90.0, None)).contains("no dark"));
        assert!(need(check_library(&ix, 8, 60.0, -80.0, now, 90.0, None)).contains("no dark"));
        assert!(need(check_library(&ix, 2, 60.0, -90.0, now, 90.0, None)).contains("binning 2"));
        assert!(need(check_library(
            &ix,
            8,
            60.0,
            -90.0,
            at("2026-09-01T00:00:00Z"),
            90.0,
            None
        ))
        .contains("days old"));
    }

    /// A dark of the library against the cooling lock: taken before the lock was last
    /// regained → taken again; at another setpoint → taken again; after the lock at the
    /// same setpoint → the library's is used. The shipped set's darks carry neither time
    /// nor setpoint: they count as taken at its `created_at` (2026-01-05T12:00:00Z).
    #[test]
    fn darks_older_than_the_lock_or_at_another_setpoint_are_needed() {
        let mut ix = index();
        let now = at("2026-03-02T09:00:00Z");
        let lock_at = |t: &str, sp: f64| {
            let mut l = CoolingLock::default();
            l.observe(true, Some(sp), at(t));
            l
        };
        let check = |ix: &CalibrationIndex, l: &CoolingLock| {
            check_library(ix, 8, 60.0, -90.0, now, 90.0, Some(l))
        };
        // Re-locked after the dark was taken.
        let relocked = lock_at("2026-03-02T08:00:00Z", -90.0);
        match check(&ix, &relocked) {
            LibraryDark::Needed { reason } => {
                assert!(reason.contains("before the cooling lock"), "{reason}");
                assert!(reason.contains("2026-01-05T12:00:00Z"), "{reason}");
                assert!(reason.contains("2026-03-02T08:00:00Z"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // Not asked: the same library dark is used.
        assert!(matches!(
            check_library(&ix, 8, 60.0, -90.0, now, 90.0, None),
            LibraryDark::Usable(_)
        ));
        // Taken after the lock was gained, at the same setpoint: used.
        let early = lock_at("2026-01-05T11:00:00Z", -90.0);
        match check(&ix, &early) {
            LibraryDark::Usable(d) => assert_eq!(d.exposure_s, 60.0),
            other => panic!("{other:?}"),
        }
        // The same dark, recorded at another setpoint: needed.
        for d in &mut ix.dark {
            d.setpoint_c = Some(-80.0);
        }
        match check(&ix, &early) {
            LibraryDark::Needed { reason } => {
                assert!(reason.contains("setpoint of -80.0 °C"), "{reason}");
                assert!(reason.contains("locked at -90.0 °C"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // At the lock's setpoint and taken after it: used.
        for d in &mut ix.dark {
            d.setpoint_c = Some(-90.0);
            d.acquired_at = Some(at("2026-03-02T08:30:00Z"));
        }
        assert!(matches!(check(&ix, &relocked), LibraryDark::Usable(_)));
        // The age counts from the dark's own time, not the set's.
        assert!(matches!(
            check_library(&ix, 8, 60.0, -90.0, at("2026-05-25T00:00:00Z"), 90.0, None),
            LibraryDark::Usable(_)
        ));
    }
}
