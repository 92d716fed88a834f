//! Which raw frames make which master. Pure: metadata in, groups out; no file is read.
//!
//! Bias frames are grouped by binning; darks by binning, exposure (to 1 ms) and
//! temperature (a group holds the darks within [`DARK_GROUP_TEMPERATURE_SPAN_C`] of its
//! coldest); flats by binning, field of view (to 0.01 cm), filter (case-insensitive) and
//! f-number (to 0.01). Within a group, frames keep the order they were given in, except
//! darks, which are ordered by temperature.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::formats::acquisition_folder::{AcquisitionFile, FrameKind};

/// Darks of one binning and exposure whose temperatures lie within this of the coldest of
/// their group are combined into one master.
pub const DARK_GROUP_TEMPERATURE_SPAN_C: f64 = 1.0;

/// One raw calibration frame: its acquisition folder and metadata.
#[derive(Debug, Clone)]
pub(super) struct Input {
    pub dir: PathBuf,
    pub file: AcquisitionFile,
}

/// A flat group's key: binning, fov in 0.01 cm, filter in lower case, f-number in 0.01.
pub(super) type FlatKey = (u32, i64, String, i64);

/// The groups of one run, each the frames of one master.
#[derive(Debug, Default)]
pub(super) struct Groups {
    /// Bias frames by binning.
    pub bias: BTreeMap<u32, Vec<Input>>,
    /// Dark groups, by binning and exposure, then coldest first.
    pub dark: Vec<Vec<Input>>,
    pub flat: BTreeMap<FlatKey, Vec<Input>>,
}

impl Groups {
    /// Masters these groups make.
    pub fn masters(&self) -> usize {
        self.bias.len() + self.dark.len() + self.flat.len()
    }
}

/// Group bias, dark and flat frames. Luminescent frames are refused before this.
///
/// # Panics
/// On a luminescent frame.
pub(super) fn group(inputs: Vec<Input>) -> Groups {
    let mut groups = Groups::default();
    let mut dark_by_exposure: BTreeMap<(u32, i64), Vec<Input>> = BTreeMap::new();
    for inp in inputs {
        let f = &inp.file;
        match f.kind {
            FrameKind::Bias => groups.bias.entry(f.binning).or_default().push(inp),
            FrameKind::Dark => dark_by_exposure
                .entry((f.binning, (f.exposure_s * 1000.0).round() as i64))
                .or_default()
                .push(inp),
            FrameKind::Flat => {
                let key = (
                    f.binning,
                    (f.fov_cm * 100.0).round() as i64,
                    f.emission_filter.trim().to_ascii_lowercase(),
                    (f.f_number * 100.0).round() as i64,
                );
                groups.flat.entry(key).or_default().push(inp)
            }
            FrameKind::Luminescent => unreachable!("luminescent frames are refused before"),
        }
    }
    for (_, mut v) in dark_by_exposure {
        v.sort_by(|a, b| a.file.sensor_temp_c.total_cmp(&b.file.sensor_temp_c));
        let mut group: Vec<Input> = Vec::new();
        for inp in v {
            if let Some(first) = group.first() {
                if inp.file.sensor_temp_c - first.file.sensor_temp_c > DARK_GROUP_TEMPERATURE_SPAN_C
                {
                    groups.dark.push(std::mem::take(&mut group));
                }
            }
            group.push(inp);
        }
        groups.dark.push(group);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::calibration_frames::frame_meta;
    use chrono::{TimeZone, Utc};

    /// A frame named `name` (fov 22.4 cm, filter "open", f/1).
    fn input(name: &str, kind: FrameKind, binning: u32, exposure_s: f64, temp_c: f64) -> Input {
        let meta = frame_meta(
            "i",
            Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap(),
            binning,
            exposure_s,
            temp_c,
        );
        Input {
            dir: PathBuf::from(name),
            file: AcquisitionFile::from_meta(&meta, kind, false, vec![]),
        }
    }

    fn names(group: &[Input]) -> Vec<String> {
        group.iter().map(|i| i.dir.display().to_string()).collect()
    }

    fn dark(name: &str, binning: u32, exposure_s: f64, temp_c: f64) -> Input {
        input(name, FrameKind::Dark, binning, exposure_s, temp_c)
    }

    fn flat(name: &str, binning: u32, fov_cm: f64, filter: &str, f_number: f64) -> Input {
        let mut i = input(name, FrameKind::Flat, binning, 1.0, -90.0);
        i.file.fov_cm = fov_cm;
        i.file.emission_filter = filter.into();
        i.file.f_number = f_number;
        i
    }

    fn bias(name: &str, binning: u32) -> Input {
        input(name, FrameKind::Bias, binning, 0.0, -90.0)
    }

    #[test]
    fn darks_split_by_binning_exposure_and_a_one_degree_span() {
        let g = group(vec![
            dark("a", 4, 60.0, -89.2),
            dark("b", 4, 60.0, -90.0),
            dark("c", 4, 60.0004, -88.9), // same exposure to 1 ms, 1.1 °C above the coldest
            dark("d", 4, 30.0, -90.0),
            dark("e", 2, 60.0, -90.0),
            dark("f", 4, 60.0, -89.0), // exactly 1 °C above the coldest: same group
        ]);
        let got: Vec<Vec<String>> = g.dark.iter().map(|v| names(v)).collect();
        assert_eq!(
            got,
            vec![vec!["e"], vec!["d"], vec!["b", "a", "f"], vec!["c"]]
        );
        assert!(g.bias.is_empty() && g.flat.is_empty());
        assert_eq!(g.masters(), 4);
    }

    #[test]
    fn flats_split_by_binning_fov_filter_and_f_number() {
        let g = group(vec![
            flat("a", 4, 22.4, "open", 1.0),
            flat("b", 4, 22.401, " Open ", 1.0), // same to 0.01 cm, filter case and spaces
            flat("c", 4, 12.5, "open", 1.0),
            flat("d", 4, 22.4, "GFP", 1.0),
            flat("e", 4, 22.4, "open", 2.0),
            flat("f", 8, 22.4, "open", 1.0),
        ]);
        let got: Vec<(FlatKey, Vec<String>)> =
            g.flat.iter().map(|(k, v)| (k.clone(), names(v))).collect();
        let key = |b, fov, filter: &str, f| (b, fov, filter.to_string(), f);
        assert_eq!(
            got,
            vec![
                (key(4, 1250, "open", 100), vec!["c".to_string()]),
                (key(4, 2240, "gfp", 100), vec!["d".to_string()]),
                (
                    key(4, 2240, "open", 100),
                    vec!["a".to_string(), "b".to_string()]
                ),
                (key(4, 2240, "open", 200), vec!["e".to_string()]),
                (key(8, 2240, "open", 100), vec!["f".to_string()]),
            ]
        );
    }

    #[test]
    fn bias_frames_group_by_binning_in_input_order() {
        let g = group(vec![bias("x", 2), bias("y", 1), bias("z", 2)]);
        let got: Vec<(u32, Vec<String>)> = g.bias.iter().map(|(b, v)| (*b, names(v))).collect();
        assert_eq!(
            got,
            vec![
                (1, vec!["y".to_string()]),
                (2, vec!["x".to_string(), "z".to_string()])
            ]
        );
    }
}
