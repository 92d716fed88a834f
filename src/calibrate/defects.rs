//! The bad-pixel map of every binning a run has darks or flats for. Pure: masters in,
//! map entries out.
//!
//! At a binning: hot pixels from the dark current per second of the run's longest dark,
//! dead or low pixels from every flat of the run ([`find_bad_pixels`]), and bad columns
//! where at least `column_fraction` of a column is bad. At binning 1 the map is in
//! unbinned coordinates; at a binning b > 1 in that binning's own grid (where inside its
//! b×b block a defect lies is unknown).
//!
//! A run with darks and flats at a binning replaces the map there. A run with only one of
//! them (darks merged into a set, or flats) cannot see the other's defects: the existing
//! set's map at that binning is kept, and what the run finds is added to it.

use ndarray::Array2;

use super::error::CalibrateError;
use super::master::DarkMaster;
use super::BadPixelSummary;
use crate::formats::calibration_set::{BadPixelTable, BinnedBadPixels};
use crate::process::combine::{bad_columns, find_bad_pixels, BadPixelCriteria};

/// The maps of one run, ready to be merged into the index.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct BadPixelMaps {
    pub summary: Vec<BadPixelSummary>,
    /// Binning 1: unbinned `[x, y]` pixels (outside the bad columns) and columns.
    pub unbinned: Option<(Vec<[u32; 2]>, Vec<u32>)>,
    /// Coarser binnings, in their own grids.
    pub binned: Vec<BinnedBadPixels>,
}

/// The maps at every binning of `darks` and `flats` (normalised, unrepaired flats),
/// keeping `existing`'s defects at a binning where the run has only darks or only flats.
pub(super) fn bad_pixel_maps(
    darks: &[DarkMaster],
    flats: &[(u32, Array2<f32>)],
    existing: Option<&BadPixelTable>,
    criteria: &BadPixelCriteria,
) -> Result<BadPixelMaps, CalibrateError> {
    let mut maps = BadPixelMaps::default();
    let mut binnings: Vec<u32> = darks
        .iter()
        .map(|d| d.binning)
        .chain(flats.iter().map(|f| f.0))
        .collect();
    binnings.sort_unstable();
    binnings.dedup();
    for b in binnings {
        let dark_per_s = darks
            .iter()
            .filter(|d| d.binning == b)
            .max_by(|x, y| x.exposure_s.total_cmp(&y.exposure_s))
            .map(|d| d.data.mapv(|v| v / d.exposure_s as f32));
        let flats: Vec<&Array2<f32>> = flats
            .iter()
            .filter(|(fb, _)| *fb == b)
            .map(|(_, f)| f)
            .collect();
        let dim = dark_per_s
            .as_ref()
            .map(|d| d.dim())
            .or_else(|| flats.first().map(|f| f.dim()))
            .expect("a dark or a flat at this binning");
        // One side only: the existing map holds what the other side found.
        let partial = dark_per_s.is_none() || flats.is_empty();
        let dark = dark_per_s.unwrap_or_else(|| Array2::zeros(dim));
        let ones = Array2::from_elem(dim, 1.0f32);
        let mut mask = match existing.filter(|_| partial) {
            Some(table) => existing_mask(table, b, dim),
            None => Array2::from_elem(dim, false),
        };
        let flat_list: Vec<&Array2<f32>> = if flats.is_empty() { vec![&ones] } else { flats };
        for f in flat_list {
            if f.dim() != dim {
                return Err(CalibrateError::FlatDarkSize {
                    binning: b,
                    flat: (f.ncols(), f.nrows()),
                    dark: (dim.1, dim.0),
                });
            }
            mask |= &find_bad_pixels(&dark, f, criteria);
        }
        let cols = bad_columns(&mask, criteria.column_fraction);
        let pixels: Vec<[u32; 2]> = mask
            .indexed_iter()
            .filter(|((_, c), &v)| v && !cols.contains(c))
            .map(|((r, c), _)| [c as u32, r as u32])
            .collect();
        let cols: Vec<u32> = cols.into_iter().map(|c| c as u32).collect();
        maps.summary.push(BadPixelSummary {
            binning: b,
            pixels: pixels.len(),
            columns: cols.clone(),
        });
        if b == 1 {
            maps.unbinned = Some((pixels, cols));
        } else {
            maps.binned.push(BinnedBadPixels {
                binning: b,
                pixels,
                columns: cols,
            });
        }
    }
    Ok(maps)
}

/// The existing map at binning `b` (binning 1: the unbinned pixels and columns; b > 1:
/// its `[[bad_pixels.binned]]` entry, if any) as a mask of shape `dim`. Defects outside
/// the shape are left out.
fn existing_mask(table: &BadPixelTable, b: u32, dim: (usize, usize)) -> Array2<bool> {
    let mut mask = Array2::from_elem(dim, false);
    let (pixels, columns) = if b == 1 {
        (&table.pixels, &table.columns)
    } else {
        match table.binned.iter().find(|e| e.binning == b) {
            Some(e) => (&e.pixels, &e.columns),
            None => return mask,
        }
    };
    for &[x, y] in pixels {
        if let Some(m) = mask.get_mut([y as usize, x as usize]) {
            *m = true;
        }
    }
    for &c in columns {
        if (c as usize) < dim.1 {
            mask.column_mut(c as usize).fill(true);
        }
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIDE: usize = 16;

    /// A dark master of binning `b`: 60 s, 10 ADU everywhere, 5000 at each hot pixel
    /// `[x, y]`.
    fn dark(b: u32, hot: &[[usize; 2]]) -> DarkMaster {
        let mut data = Array2::from_elem((SIDE, SIDE), 10.0f32);
        for &[x, y] in hot {
            data[[y, x]] = 5000.0;
        }
        DarkMaster {
            binning: b,
            exposure_s: 60.0,
            sensor_temp_c: -90.0,
            data,
        }
    }

    /// A normalised flat of binning `b`: 1.0 everywhere, 0 at each dead pixel `[x, y]`.
    fn flat(b: u32, dead: &[[usize; 2]]) -> (u32, Array2<f32>) {
        let mut f = Array2::from_elem((SIDE, SIDE), 1.0f32);
        for &[x, y] in dead {
            f[[y, x]] = 0.0;
        }
        (b, f)
    }

    /// One binned entry: binning, `[x, y]` pixels, columns.
    type Entry<'a> = (u32, &'a [[u32; 2]], &'a [u32]);

    fn table(binned: &[Entry<'_>]) -> BadPixelTable {
        BadPixelTable {
            pixels: vec![],
            columns: vec![],
            binned: binned
                .iter()
                .map(|&(binning, pixels, columns)| BinnedBadPixels {
                    binning,
                    pixels: pixels.to_vec(),
                    columns: columns.to_vec(),
                })
                .collect(),
        }
    }

    fn maps(
        darks: &[DarkMaster],
        flats: &[(u32, Array2<f32>)],
        existing: Option<&BadPixelTable>,
    ) -> BadPixelMaps {
        bad_pixel_maps(darks, flats, existing, &BadPixelCriteria::default()).unwrap()
    }

    #[test]
    fn darks_and_flats_together_replace_the_map() {
        let old = table(&[(4, &[[1, 1], [9, 9]], &[])]);
        let m = maps(&[dark(4, &[[3, 2]])], &[flat(4, &[[7, 5]])], Some(&old));
        assert_eq!(
            m.binned,
            vec![BinnedBadPixels {
                binning: 4,
                pixels: vec![[3, 2], [7, 5]],
                columns: vec![]
            }]
        );
        assert_eq!(m.unbinned, None);
    }

    /// Darks merged alone into a set used to rebuild the map from the darks only, losing
    /// the dead pixels the set's flats had found.
    #[test]
    fn darks_merged_alone_keep_the_defects_found_from_flats() {
        // The set's map at binning 4: a dead pixel [7, 5] (from its flat), a hot pixel
        // [3, 2] and a bad column 12.
        let old = table(&[(4, &[[3, 2], [7, 5]], &[12]), (8, &[[0, 0]], &[])]);
        let m = maps(&[dark(4, &[[3, 2], [10, 14]])], &[], Some(&old));
        assert_eq!(
            m.binned,
            vec![BinnedBadPixels {
                binning: 4,
                pixels: vec![[3, 2], [7, 5], [10, 14]],
                columns: vec![12]
            }]
        );
        assert_eq!(
            m.summary,
            vec![BadPixelSummary {
                binning: 4,
                pixels: 3,
                columns: vec![12]
            }]
        );
    }

    #[test]
    fn flats_merged_alone_keep_the_hot_pixels_found_from_darks() {
        let old = BadPixelTable {
            pixels: vec![[3, 2]],
            columns: vec![],
            binned: vec![],
        };
        let m = maps(&[], &[flat(1, &[[7, 5]])], Some(&old));
        assert_eq!(m.unbinned, Some((vec![[3, 2], [7, 5]], vec![])));
        assert!(m.binned.is_empty());
    }

    #[test]
    fn without_an_existing_map_one_side_finds_its_own_defects_only() {
        let m = maps(&[dark(2, &[[4, 4]])], &[], None);
        assert_eq!(m.binned[0].pixels, vec![[4, 4]]);
        // An existing map of another binning is not used.
        let old = table(&[(8, &[[1, 1]], &[])]);
        let m = maps(&[dark(2, &[[4, 4]])], &[], Some(&old));
        assert_eq!(m.binned[0].pixels, vec![[4, 4]]);
    }

    #[test]
    fn a_flat_of_another_shape_is_refused() {
        let small = (4, Array2::from_elem((8, 8), 1.0f32));
        let e = bad_pixel_maps(
            &[dark(4, &[])],
            &[small],
            None,
            &BadPixelCriteria::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("binning 4: the flat is 8x8 but the dark is 16x16"),
            "{e}"
        );
    }
}
