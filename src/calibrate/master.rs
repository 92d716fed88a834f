//! Master frames: one [`build_master`] for bias, dark and flat. Pure: raw frames in (as
//! read by the caller), a master out; no file is read or written here.
//!
//! Every master is the per-pixel sigma-clipped median of its raw frames, each less the
//! master bias of its binning (darks and flats) and a master dark scaled to its exposure
//! (flats, when a dark exists). Bias and dark masters carry their noise; a flat is then
//! normalised to 1.0 on the optical axis and its unresponsive pixels filled
//! ([`finish_flat`]). Which dark a flat group uses is [`nearest_dark`].
//!
//! The arithmetic itself (combining, noise, normalisation) is
//! [`crate::process::combine`]'s.

use std::path::Path;

use ndarray::{Array2, ArrayView2};

use super::error::CalibrateError;
use super::grouping::Input;
use crate::formats::acquisition_folder::FrameKind;
use crate::process::combine::{
    combine_sigma_clipped_median, frame_noise_adu, master_noise_adu, normalise_flat,
};
use crate::stats::median_in_place;

/// What is taken off every raw frame of a group before the frames are combined.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Remove<'a> {
    /// The master bias of the group's binning, ADU.
    pub bias: Option<&'a Array2<f32>>,
    /// A master dark (dark charge, ADU) and its exposure, s; scaled to each frame's
    /// exposure.
    pub dark: Option<(&'a Array2<f32>, f64)>,
}

/// A master as combined, before anything kind-specific.
#[derive(Debug, Clone)]
pub(super) struct Master {
    pub data: Array2<f32>,
    pub frames_combined: usize,
    /// One-sigma noise of the master per pixel, ADU; `None` for flats (not measured).
    pub noise_adu: Option<f64>,
}

/// A dark master available to a run: built in it or read from the existing set.
#[derive(Debug, Clone)]
pub(super) struct DarkMaster {
    pub binning: u32,
    pub exposure_s: f64,
    pub sensor_temp_c: f64,
    /// Dark charge for `exposure_s`, ADU (bias removed).
    pub data: Array2<f32>,
}

fn views(frames: &[Array2<f32>]) -> Vec<ArrayView2<'_, f32>> {
    frames.iter().map(|f| f.view()).collect()
}

fn plural(kind: FrameKind) -> &'static str {
    match kind {
        FrameKind::Bias => "bias frames",
        FrameKind::Dark => "darks",
        FrameKind::Flat => "flats",
        FrameKind::Luminescent => "frames",
    }
}

fn name(kind: FrameKind) -> &'static str {
    match kind {
        FrameKind::Bias => "bias",
        FrameKind::Dark => "dark",
        FrameKind::Flat => "flat",
        FrameKind::Luminescent => "frame",
    }
}

/// The master of one group of `kind`: `frames` (the raw frames of `group`, in its order,
/// one shape) less what `remove` names, combined with a sigma-clipped median at
/// `clip_sigma`. The frames are changed in place (a bias group's stay raw: nothing is
/// removed from them). Fails, naming the group's first folder, when the frames and the
/// bias differ in shape.
pub(super) fn build_master(
    kind: FrameKind,
    group: &[Input],
    frames: &mut [Array2<f32>],
    remove: Remove<'_>,
    clip_sigma: f64,
) -> Result<Master, CalibrateError> {
    if let Some(bias) = remove.bias {
        if frames[0].dim() != bias.dim() {
            return Err(CalibrateError::BiasSize {
                path: group[0].dir.clone(),
                kind: name(kind),
                kinds: plural(kind),
                size: (frames[0].ncols(), frames[0].nrows()),
                binning: group[0].file.binning,
                bias_size: (bias.ncols(), bias.nrows()),
            });
        }
    }
    for (f, inp) in frames.iter_mut().zip(group) {
        if let Some(bias) = remove.bias {
            *f -= bias;
        }
        if let Some((d, t_dark)) = remove.dark {
            let k = (inp.file.exposure_s / t_dark) as f32;
            ndarray::Zip::from(&mut *f)
                .and(d)
                .for_each(|x, &dv| *x -= k * dv);
        }
    }
    let data = combine_sigma_clipped_median(&views(frames), clip_sigma);
    let noise_adu = (kind != FrameKind::Flat)
        .then(|| master_noise_adu(frame_noise_adu(&views(frames)).unwrap_or(0.0), frames.len()));
    Ok(Master {
        data,
        frames_combined: frames.len(),
        noise_adu,
    })
}

/// A finished flat.
#[derive(Debug, Clone)]
pub(super) struct Flat {
    /// Normalised to 1.0 on the optical axis, unresponsive pixels filled: what the set
    /// stores.
    pub stored: Array2<f32>,
    /// Normalised, unfilled (zeros and NaN are bad pixels): what the bad-pixel search
    /// needs.
    pub for_defects: Array2<f32>,
    /// Pixels filled from their neighbours.
    pub filled: usize,
}

/// Normalise a combined flat to 1.0 on the optical axis and fill its unresponsive pixels.
/// Fails, naming the group's first folder, when there is no signal on the axis.
pub(super) fn finish_flat(
    first_dir: &Path,
    combined: &Array2<f32>,
) -> Result<Flat, CalibrateError> {
    let Some((mut stored, level)) = normalise_flat(combined) else {
        return Err(CalibrateError::NoFlatSignal(first_dir.to_path_buf()));
    };
    let filled = repair_flat(&mut stored);
    Ok(Flat {
        stored,
        for_defects: combined.mapv(|v| v / level),
        filled,
    })
}

/// The dark for a flat group of binning `b`, shape `dim`, temperature `temp_c` and
/// exposure `exposure_s`: same binning and shape, nearest temperature, then nearest
/// exposure.
pub(super) fn nearest_dark(
    darks: &[DarkMaster],
    b: u32,
    dim: (usize, usize),
    temp_c: f64,
    exposure_s: f64,
) -> Option<&DarkMaster> {
    darks
        .iter()
        .filter(|d| d.binning == b && d.data.dim() == dim)
        .min_by(|x, y| {
            (x.sensor_temp_c - temp_c)
                .abs()
                .total_cmp(&(y.sensor_temp_c - temp_c).abs())
                .then(
                    (x.exposure_s - exposure_s)
                        .abs()
                        .total_cmp(&(y.exposure_s - exposure_s).abs()),
                )
        })
}

/// Replace flat pixels that are not positive finite numbers (dead pixels: they are in the
/// bad-pixel map and repaired from neighbours anyway) by the median of the valid pixels of
/// their 7×7 neighbourhood (1.0 if none), so the flat passes the reader's check. Returns
/// how many were replaced.
fn repair_flat(flat: &mut Array2<f32>) -> usize {
    let (rows, cols) = flat.dim();
    let bad: Vec<(usize, usize)> = flat
        .indexed_iter()
        .filter(|(_, v)| !(v.is_finite() && **v > 0.0))
        .map(|(i, _)| i)
        .collect();
    let mut buf = Vec::with_capacity(49);
    let fills: Vec<f32> = bad
        .iter()
        .map(|&(r, c)| {
            buf.clear();
            for rr in r.saturating_sub(3)..=(r + 3).min(rows - 1) {
                for cc in c.saturating_sub(3)..=(c + 3).min(cols - 1) {
                    let v = flat[[rr, cc]];
                    if v.is_finite() && v > 0.0 {
                        buf.push(v);
                    }
                }
            }
            median_in_place(&mut buf).unwrap_or(1.0)
        })
        .collect();
    for (&(r, c), v) in bad.iter().zip(fills) {
        flat[[r, c]] = v;
    }
    bad.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::acquisition_folder::AcquisitionFile;
    use crate::simulate::calibration_frames::frame_meta;
    use chrono::{TimeZone, Utc};
    use std::path::PathBuf;

    fn input(kind: FrameKind, exposure_s: f64) -> Input {
        let meta = frame_meta(
            "i",
            Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap(),
            2,
            exposure_s,
            -90.0,
        );
        Input {
            dir: PathBuf::from(format!("{kind:?}_{exposure_s}")),
            file: AcquisitionFile::from_meta(&meta, kind, false, vec![]),
        }
    }

    fn fill(v: f32) -> Array2<f32> {
        Array2::from_elem((4, 4), v)
    }

    #[test]
    fn a_flat_loses_the_bias_and_the_dark_scaled_to_its_exposure() {
        let group = [input(FrameKind::Flat, 2.0), input(FrameKind::Flat, 4.0)];
        let bias = fill(100.0);
        // 30 ADU of dark charge in 60 s.
        let dark = fill(30.0);
        // 100 bias + 1 or 2 ADU of dark + 1000 light.
        let mut frames = vec![fill(1101.0), fill(1102.0)];
        let remove = Remove {
            bias: Some(&bias),
            dark: Some((&dark, 60.0)),
        };
        let m = build_master(FrameKind::Flat, &group, &mut frames, remove, 3.0).unwrap();
        assert!(
            m.data.iter().all(|&v| (v - 1000.0).abs() < 1e-3),
            "{}",
            m.data
        );
        assert_eq!(m.frames_combined, 2);
        assert_eq!(m.noise_adu, None);
    }

    #[test]
    fn a_dark_loses_the_bias_and_carries_its_noise() {
        let group = [input(FrameKind::Dark, 60.0), input(FrameKind::Dark, 60.0)];
        let bias = fill(100.0);
        let mut frames = vec![fill(130.0), fill(130.0)];
        let remove = Remove {
            bias: Some(&bias),
            dark: None,
        };
        let m = build_master(FrameKind::Dark, &group, &mut frames, remove, 3.0).unwrap();
        assert!(m.data.iter().all(|&v| v == 30.0));
        assert_eq!(m.noise_adu, Some(0.0));
        // A bias group's frames stay raw.
        let group = [input(FrameKind::Bias, 0.0)];
        let mut frames = vec![fill(100.0)];
        let m = build_master(FrameKind::Bias, &group, &mut frames, Remove::default(), 3.0).unwrap();
        assert!(m.data.iter().all(|&v| v == 100.0) && frames[0][[0, 0]] == 100.0);
    }

    #[test]
    fn a_shape_other_than_the_bias_is_refused_with_the_folder_named() {
        let group = [input(FrameKind::Dark, 60.0)];
        let bias = Array2::from_elem((8, 8), 100.0f32);
        let mut frames = vec![fill(130.0)];
        let remove = Remove {
            bias: Some(&bias),
            dark: None,
        };
        let e = build_master(FrameKind::Dark, &group, &mut frames, remove, 3.0)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "Dark_60: dark is 4x4 but the bias of binning 2 is 8x8; take bias and darks with \
             the same camera settings"
        );
    }

    #[test]
    fn the_flats_dark_is_the_nearest_in_temperature_then_exposure() {
        let dark = |binning, exposure_s, sensor_temp_c, side| DarkMaster {
            binning,
            exposure_s,
            sensor_temp_c,
            data: Array2::zeros((side, side)),
        };
        let darks = [
            dark(2, 60.0, -90.0, 4),
            dark(2, 10.0, -90.0, 4),
            dark(2, 1.0, -80.0, 4),
            dark(4, 1.0, -90.0, 4),
            dark(2, 1.0, -90.0, 8),
        ];
        let pick = |temp_c, exposure_s| {
            nearest_dark(&darks, 2, (4, 4), temp_c, exposure_s)
                .map(|d| (d.exposure_s, d.sensor_temp_c))
        };
        assert_eq!(pick(-90.0, 1.0), Some((10.0, -90.0)));
        assert_eq!(pick(-81.0, 1.0), Some((1.0, -80.0)));
        assert_eq!(pick(-90.0, 100.0), Some((60.0, -90.0)));
        assert_eq!(
            nearest_dark(&darks, 8, (4, 4), -90.0, 1.0).map(|d| d.binning),
            None
        );
    }

    #[test]
    fn a_flat_is_normalised_on_axis_and_dead_pixels_filled() {
        let mut combined = Array2::from_elem((16, 16), 2000.0f32);
        combined[[2, 3]] = 0.0;
        combined[[5, 5]] = f32::NAN;
        let f = finish_flat(Path::new("flat_00"), &combined).unwrap();
        assert_eq!(f.filled, 2);
        assert!(f.stored.iter().all(|&v| (v - 1.0).abs() < 1e-6));
        assert_eq!(f.for_defects[[2, 3]], 0.0);
        assert!(f.for_defects[[5, 5]].is_nan());
        let e = finish_flat(Path::new("flat_00"), &Array2::zeros((16, 16)))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("flat_00: the flat frames carry no signal"),
            "{e}"
        );
    }
}
