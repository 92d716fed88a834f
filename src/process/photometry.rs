//! Photometry of one region: total flux (net and gross), average and maximum radiance,
//! area, centroid and SNR, each with its uncertainty, and the mean, spread and range of its
//! pixels' gross radiance (Living Image's Avg/Stdev/Min/Max Radiance), per DESIGN.md:
//! `Φ = 4π · Σ L_i · A` over the pixels whose centres lie in the region.
//!
//! Owns: summing over a set of pixels and propagating the variance model. Which pixels
//! form a region is decided by `detect` or by an imported ROI.

use ndarray::Array2;

use super::background::SceneBackground;
use super::{RadianceStats, RegionMeasurement, RegionSource, Uncertain, UncertaintyComponents};

const FOUR_PI: f64 = 4.0 * std::f64::consts::PI;

/// Per-pixel maps the photometry reads.
pub struct PhotometryInputs<'a> {
    /// Corrected radiance, background still in.
    pub radiance: &'a Array2<f32>,
    pub background: &'a SceneBackground,
    pub background_map: &'a Array2<f32>,
    pub var_poisson: &'a Array2<f32>,
    pub var_read: &'a Array2<f32>,
    pub saturated: &'a Array2<bool>,
    pub pixel_size_cm: f64,
    pub coefficient_rel_uncertainty: f64,
    /// When no dark was subtracted: per pixel, the most radiance the dark can add
    /// (`dark_bound`); it becomes the gross flux's `dark` uncertainty component.
    pub dark_bound_radiance: Option<&'a Array2<f32>>,
}

/// Measure the region made of `pixels`.
pub fn measure(
    inp: &PhotometryInputs,
    pixels: &[(usize, usize)],
    source: RegionSource,
    label: String,
) -> RegionMeasurement {
    let area_px = inp.pixel_size_cm * inp.pixel_size_cm;
    let mut gross = 0.0f64;
    let mut bkg = 0.0f64;
    let mut var_p = 0.0f64;
    let mut var_r = 0.0f64;
    let mut max_net = f64::NEG_INFINITY;
    let mut wsum = 0.0f64;
    let mut wx = 0.0f64;
    let mut wy = 0.0f64;
    let mut saturated = false;
    let mut dark_bound = 0.0f64;
    let mut gross_stats = RunningStats::default();
    for &(r, c) in pixels {
        let l = inp.radiance[[r, c]] as f64;
        gross_stats.push(l);
        let b = inp.background_map[[r, c]] as f64;
        gross += l;
        bkg += b;
        var_p += inp.var_poisson[[r, c]] as f64;
        var_r += inp.var_read[[r, c]] as f64;
        let net = l - b;
        max_net = max_net.max(net);
        if net > 0.0 {
            wsum += net;
            wx += net * (c as f64 + 0.5);
            wy += net * (r as f64 + 0.5);
        }
        saturated |= inp.saturated[[r, c]];
        if let Some(d) = inp.dark_bound_radiance {
            dark_bound += f64::from(d[[r, c]]);
        }
    }
    let n = pixels.len();
    let scale = FOUR_PI * area_px;
    let bkg_err = inp.background.sum_error(pixels.iter().copied());
    let gross_flux = gross * scale;
    let net_flux = (gross - bkg) * scale;
    let cal = inp.coefficient_rel_uncertainty;
    let net_components = UncertaintyComponents {
        poisson: var_p.sqrt() * scale,
        read_noise: var_r.sqrt() * scale,
        background: bkg_err * scale,
        calibration: net_flux.abs() * cal,
        // A dark level common to the frame is in the background model, not the net flux.
        dark: 0.0,
    };
    let gross_components = UncertaintyComponents {
        background: 0.0,
        calibration: gross_flux.abs() * cal,
        // The unknown dark is fully correlated over the region's pixels: the bounds add.
        dark: dark_bound * scale,
        ..net_components
    };
    let centroid = if wsum > 0.0 {
        [wx / wsum, wy / wsum]
    } else {
        let (sr, sc) = pixels.iter().fold((0.0, 0.0), |(a, b), &(r, c)| {
            (a + r as f64 + 0.5, b + c as f64 + 0.5)
        });
        [sc / n.max(1) as f64, sr / n.max(1) as f64]
    };
    let n_f = n.max(1) as f64;
    let avg_scale = 1.0 / (scale * n_f);
    let avg_components = UncertaintyComponents {
        poisson: net_components.poisson * avg_scale,
        read_noise: net_components.read_noise * avg_scale,
        background: net_components.background * avg_scale,
        calibration: net_components.calibration * avg_scale,
        dark: 0.0,
    };
    let statistical = net_components.statistical();
    RegionMeasurement {
        source,
        label,
        centroid_px: centroid,
        centroid_cm: [
            centroid[0] * inp.pixel_size_cm,
            centroid[1] * inp.pixel_size_cm,
        ],
        n_pixels: n,
        area_cm2: n as f64 * area_px,
        total_flux: Uncertain {
            value: net_flux,
            uncertainty: net_components.total(),
            components: net_components,
        },
        gross_total_flux: Uncertain {
            value: gross_flux,
            uncertainty: gross_components.total(),
            components: gross_components,
        },
        average_radiance: Uncertain {
            value: net_flux * avg_scale,
            uncertainty: avg_components.total(),
            components: avg_components,
        },
        max_radiance: if n > 0 { max_net } else { 0.0 },
        snr: if statistical > 0.0 {
            net_flux / statistical
        } else {
            0.0
        },
        saturated,
        gross_radiance: gross_stats.finish(),
    }
}

/// Mean, spread and range of a stream of values (Welford's update: no cancellation when the
/// spread is small beside the mean).
#[derive(Default)]
struct RunningStats {
    n: usize,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
}

impl RunningStats {
    fn push(&mut self, x: f64) {
        if self.n == 0 {
            self.min = x;
            self.max = x;
        }
        self.n += 1;
        let d = x - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x - self.mean);
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    fn finish(&self) -> Option<RadianceStats> {
        (self.n > 0).then(|| RadianceStats {
            mean: self.mean,
            stdev: (self.m2 / self.n as f64).max(0.0).sqrt(),
            min: self.min,
            max: self.max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn inputs_with(
        radiance: Array2<f32>,
    ) -> (
        Array2<f32>,
        SceneBackground,
        Array2<f32>,
        Array2<f32>,
        Array2<bool>,
    ) {
        let dim = radiance.dim();
        let none = Array2::from_elem(dim, false);
        let bm = SceneBackground::fit(&Array2::zeros(dim), None, &none, 8, 3.0);
        let map = bm.map();
        (radiance, bm, map, Array2::from_elem(dim, 1.0), none)
    }

    proptest! {
        #[test]
        fn flux_is_additive_over_disjoint_regions(vals in proptest::collection::vec(-50.0f32..1000.0, 64), split in 1usize..63) {
            let (rad, bm, map, var, sat) = inputs_with(Array2::from_shape_vec((8, 8), vals).unwrap());
            let inp = PhotometryInputs { radiance: &rad, background: &bm, background_map: &map, var_poisson: &var, var_read: &var, saturated: &sat, pixel_size_cm: 0.1, coefficient_rel_uncertainty: 0.0, dark_bound_radiance: None };
            let all: Vec<(usize, usize)> = (0..64).map(|i| (i / 8, i % 8)).collect();
            let whole = measure(&inp, &all, RegionSource::Imported, "a".into()).gross_total_flux.value;
            let a = measure(&inp, &all[..split], RegionSource::Imported, "a".into()).gross_total_flux.value;
            let b = measure(&inp, &all[split..], RegionSource::Imported, "b".into()).gross_total_flux.value;
            prop_assert!((whole - a - b).abs() <= 1e-6 * whole.abs().max(1.0));
        }
    }

    #[test]
    fn uniform_region_follows_the_living_image_formula() {
        let (rad, bm, map, var, sat) = inputs_with(Array2::from_elem((10, 10), 1000.0));
        let inp = PhotometryInputs {
            radiance: &rad,
            background: &bm,
            background_map: &map,
            var_poisson: &var,
            var_read: &var,
            saturated: &sat,
            pixel_size_cm: 0.1,
            coefficient_rel_uncertainty: 0.05,
            dark_bound_radiance: None,
        };
        let px: Vec<(usize, usize)> = (0..100).map(|i| (i / 10, i % 10)).collect();
        let m = measure(&inp, &px, RegionSource::Imported, "roi".into());
        let expected = 4.0 * std::f64::consts::PI * 1000.0 * 100.0 * 0.01;
        assert!((m.gross_total_flux.value - expected).abs() < 1e-6 * expected);
        assert!((m.area_cm2 - 1.0).abs() < 1e-12);
        assert!(
            (m.gross_total_flux.components.calibration - 0.05 * expected).abs() < 1e-6 * expected
        );
        assert!((m.average_radiance.value - 1000.0).abs() < 1e-3);
        assert_eq!(m.centroid_px, [5.0, 5.0]);
    }

    #[test]
    fn gross_radiance_stats_are_the_pixel_values_statistics() {
        // Pixels 1..=10 over a zero background: mean 5.5, population σ √8.25, range 1–10.
        let vals: Vec<f32> = (1..=10).map(|v| v as f32).collect();
        let (rad, bm, map, var, sat) = inputs_with(Array2::from_shape_vec((2, 5), vals).unwrap());
        let inp = PhotometryInputs {
            radiance: &rad,
            background: &bm,
            background_map: &map,
            var_poisson: &var,
            var_read: &var,
            saturated: &sat,
            pixel_size_cm: 0.1,
            coefficient_rel_uncertainty: 0.0,
            dark_bound_radiance: None,
        };
        let px: Vec<(usize, usize)> = (0..10).map(|i| (i / 5, i % 5)).collect();
        let s = measure(&inp, &px, RegionSource::Imported, "roi".into())
            .gross_radiance
            .expect("a region with pixels has statistics");
        assert!((s.mean - 5.5).abs() < 1e-12);
        assert!((s.stdev - 8.25f64.sqrt()).abs() < 1e-12);
        assert_eq!((s.min, s.max), (1.0, 10.0));
        let empty = measure(&inp, &[], RegionSource::Imported, "off".into());
        assert!(empty.gross_radiance.is_none());
    }
}
