//! The simulated instrument's hardware: sensor, fixed-pattern signatures, optics, and the
//! raw-frame forward model (bias, dark, flat and scene frames).

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Poisson};
use serde::{Deserialize, Serialize};

use crate::process::correct::RadialFlat;
use crate::process::{FrameCalibration, SensorFacts};

/// The simulated imager. Its fixed patterns (bias structure, hot pixels, PRNU) are a pure
/// function of `pattern_seed`, so every frame from one instrument shares them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Instrument {
    pub instrument_id: String,
    /// Unbinned sensor side, pixels (square sensor).
    pub sensor_px: usize,
    pub sensor: SensorFacts,
    /// Mean bias level of a read, ADU.
    pub bias_level_adu: f64,
    /// Amplitude of the bias's column structure, ADU.
    pub bias_column_ripple_adu: f64,
    /// Dark current of an unbinned pixel at `dark_ref_temp_c`, e-/s.
    pub dark_current_e_per_s: f64,
    pub dark_ref_temp_c: f64,
    /// Dark current doubles every this many °C.
    pub dark_doubling_c: f64,
    /// Fraction of unbinned pixels that are hot.
    pub hot_pixel_fraction: f64,
    /// A hot pixel's dark current relative to a normal one.
    pub hot_pixel_factor: f64,
    /// Unbinned column that is defective (reads high), if any.
    pub bad_column: Option<usize>,
    /// Pixel response non-uniformity, rms relative.
    pub prnu_rel: f64,
    /// Cosmic-ray hits per cm² of sensor per second.
    pub cosmic_rate_per_cm2_s: f64,
    /// Vignetting of the lens at f/1, with r in cm at the object plane.
    pub vignetting: RadialFlat,
    /// C at FOV 22.4 cm and f/1; other (FOV, f) scale as (22.4/FOV)² · f².
    pub coefficient_fov22_f1: f64,
    /// Relative 1σ uncertainty of the absolute calibration.
    pub coefficient_rel_uncertainty: f64,
    pub pattern_seed: u64,
}

impl Default for Instrument {
    fn default() -> Self {
        Instrument {
            instrument_id: "sim-ivis-01".into(),
            sensor_px: 2048,
            sensor: SensorFacts {
                gain_e_per_adu: 1.5,
                read_noise_e: 5.0,
                saturation_adu: 65000.0,
                pixel_pitch_um: 13.5,
            },
            bias_level_adu: 500.0,
            bias_column_ripple_adu: 3.0,
            dark_current_e_per_s: 0.002,
            dark_ref_temp_c: -90.0,
            dark_doubling_c: 6.3,
            hot_pixel_fraction: 2.0e-4,
            hot_pixel_factor: 3000.0,
            bad_column: Some(1337),
            prnu_rel: 0.01,
            cosmic_rate_per_cm2_s: 0.03,
            // The optical axis 0.3 cm right of and 0.2 cm above the image centre (y0 points
            // up the image, as in Living Image's FF5 coefficients).
            vignetting: RadialFlat {
                k: [1.0, 0.0, -1.6e-3, 0.0, 1.2e-6],
                x0_cm: 0.3,
                y0_cm: 0.2,
            },
            coefficient_fov22_f1: 7.223e5,
            coefficient_rel_uncertainty: 0.03,
            pattern_seed: 20_26_11_27,
        }
    }
}

/// A deterministic uniform number in [0, 1) from a seed and a pixel index (SplitMix64).
fn hash01(seed: u64, i: u64) -> f64 {
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

impl Instrument {
    /// Radiance calibration coefficient for a field of view and f-number.
    pub fn coefficient(&self, fov_cm: f64, f_number: f64) -> f64 {
        self.coefficient_fov22_f1 * (22.4 / fov_cm).powi(2) * f_number.powi(2)
    }

    /// Binned frame side for a binning factor.
    pub fn frame_px(&self, binning: u32) -> usize {
        self.sensor_px / binning as usize
    }

    /// Dark current of a normal unbinned pixel at a temperature, e-/s.
    pub fn dark_current_at(&self, temp_c: f64) -> f64 {
        self.dark_current_e_per_s
            * 2f64.powf((temp_c - self.dark_ref_temp_c) / self.dark_doubling_c)
    }

    /// Per unbinned pixel: (PRNU gain, dark-current multiplier) — the fixed pattern.
    fn pixel_pattern(&self, r: usize, c: usize) -> (f64, f64) {
        let i = (r * self.sensor_px + c) as u64;
        let u1 = hash01(self.pattern_seed, 2 * i);
        let u2 = hash01(self.pattern_seed, 2 * i + 1);
        // PRNU: uniform with the requested rms (uniform of half-width a has rms a/√3).
        let prnu = 1.0 + (u1 - 0.5) * 2.0 * self.prnu_rel * 3f64.sqrt();
        let dark = if u2 < self.hot_pixel_fraction {
            self.hot_pixel_factor * (0.3 + u2 / self.hot_pixel_fraction)
        } else if Some(c) == self.bad_column {
            200.0
        } else {
            1.0
        };
        (prnu, dark)
    }

    /// Unbinned defects a calibration should know about: hot pixels and the bad column.
    pub fn defects(&self) -> (Vec<(usize, usize)>, Vec<usize>) {
        let mut hot = Vec::new();
        for r in 0..self.sensor_px {
            for c in 0..self.sensor_px {
                let (_, d) = self.pixel_pattern(r, c);
                if d > 100.0 && Some(c) != self.bad_column {
                    hot.push((c, r));
                }
            }
        }
        (hot, self.bad_column.into_iter().collect())
    }

    /// Binned fixed patterns: (sum of PRNU gains / b², summed dark multiplier, bias ADU).
    pub fn binned_patterns(&self, binning: u32) -> (Array2<f32>, Array2<f32>, Array2<f32>) {
        let b = binning as usize;
        let n = self.frame_px(binning);
        let mut prnu = Array2::<f32>::zeros((n, n));
        let mut dark = Array2::<f32>::zeros((n, n));
        for r in 0..n * b {
            for c in 0..n * b {
                let (p, d) = self.pixel_pattern(r, c);
                prnu[[r / b, c / b]] += p as f32;
                dark[[r / b, c / b]] += d as f32;
            }
        }
        prnu.mapv_inplace(|v| v / (b * b) as f32);
        let bias = Array2::from_shape_fn((n, n), |(_, c)| {
            let x = (c * b) as f64 / self.sensor_px as f64;
            (self.bias_level_adu
                + self.bias_column_ripple_adu * (2.0 * std::f64::consts::PI * 3.0 * x).sin())
                as f32
        });
        (prnu, dark, bias)
    }

    /// Vignetting at every binned pixel centre for a field of view.
    pub fn vignetting_frame(&self, binning: u32, fov_cm: f64) -> Array2<f32> {
        let n = self.frame_px(binning);
        self.vignetting.to_frame(n, n, fov_cm / n as f64)
    }

    /// Read out a binned frame whose expected photo-electrons per binned pixel are given
    /// (before PRNU): adds PRNU, dark current, cosmic rays, Poisson noise, read noise, bias,
    /// quantisation and the ADC's ceiling. Returns the raw counts.
    pub fn read_out(
        &self,
        spec: &ReadoutSpec,
        signal_e: Option<&Array2<f32>>,
        rng: &mut ChaCha8Rng,
    ) -> Array2<u16> {
        let b = spec.binning;
        let n = self.frame_px(b);
        let (prnu, dark_mult, bias) = self.binned_patterns(b);
        let dark_e_per_px = self.dark_current_at(spec.sensor_temp_c) * spec.exposure_s;
        let mut electrons = Array2::<f32>::zeros((n, n));
        let gain = self.sensor.gain_e_per_adu;
        let read = Normal::new(0.0, self.sensor.read_noise_e).expect("read noise is finite");
        for r in 0..n {
            for c in 0..n {
                let sig = signal_e.map_or(0.0, |s| s[[r, c]] as f64) * prnu[[r, c]] as f64;
                let mean = sig + dark_e_per_px * dark_mult[[r, c]] as f64;
                electrons[[r, c]] = poisson(mean, rng) as f32;
            }
        }
        if spec.cosmic_rays {
            self.add_cosmic_rays(&mut electrons, b, spec.exposure_s, rng);
        }
        let full_well_adu = 65535.0;
        Array2::from_shape_fn((n, n), |(r, c)| {
            let adu = bias[[r, c]] as f64 + (electrons[[r, c]] as f64 + read.sample(rng)) / gain;
            adu.round().clamp(0.0, full_well_adu) as u16
        })
    }

    /// Deposit cosmic-ray tracks (a few unbinned pixels long) into a binned electron frame.
    fn add_cosmic_rays(
        &self,
        electrons: &mut Array2<f32>,
        binning: u32,
        exposure_s: f64,
        rng: &mut ChaCha8Rng,
    ) {
        let side_cm = self.sensor_px as f64 * self.sensor.pixel_pitch_um * 1e-4;
        let expected = self.cosmic_rate_per_cm2_s * side_cm * side_cm * exposure_s;
        let hits = poisson(expected, rng) as usize;
        let b = binning as f64;
        let n = electrons.dim().0;
        for _ in 0..hits {
            let x0 = rng.random::<f64>() * self.sensor_px as f64;
            let y0 = rng.random::<f64>() * self.sensor_px as f64;
            let len = 1.0 + rng.random::<f64>() * 6.0;
            let angle = rng.random::<f64>() * std::f64::consts::TAU;
            let e_per_px = 800.0 + rng.random::<f64>() * 4000.0;
            let steps = (len * 2.0).ceil() as usize;
            for s in 0..=steps {
                let t = s as f64 / steps.max(1) as f64 * len;
                let x = x0 + t * angle.cos();
                let y = y0 + t * angle.sin();
                let (c, r) = ((x / b) as usize, (y / b) as usize);
                if r < n && c < n {
                    electrons[[r, c]] += (e_per_px * len / (steps + 1) as f64) as f32;
                }
            }
        }
    }

    /// A bias frame (zero-second, shutter closed).
    pub fn bias_frame(&self, binning: u32, seed: u64) -> Array2<u16> {
        let spec = ReadoutSpec {
            binning,
            exposure_s: 0.0,
            sensor_temp_c: self.dark_ref_temp_c,
            cosmic_rays: false,
        };
        self.read_out(&spec, None, &mut ChaCha8Rng::seed_from_u64(seed))
    }

    /// A dark frame (shutter closed) — cosmic rays included, as on a real sensor.
    pub fn dark_frame(
        &self,
        binning: u32,
        exposure_s: f64,
        sensor_temp_c: f64,
        seed: u64,
    ) -> Array2<u16> {
        let spec = ReadoutSpec {
            binning,
            exposure_s,
            sensor_temp_c,
            cosmic_rays: true,
        };
        self.read_out(&spec, None, &mut ChaCha8Rng::seed_from_u64(seed))
    }

    /// A flat frame: a uniform source filling the field, `level_e` electrons per binned
    /// pixel on axis, vignetted by the lens.
    pub fn flat_frame(&self, binning: u32, fov_cm: f64, level_e: f64, seed: u64) -> Array2<u16> {
        let vig = self.vignetting_frame(binning, fov_cm);
        let signal = vig.mapv(|v| (v as f64 * level_e) as f32);
        let spec = ReadoutSpec {
            binning,
            exposure_s: 1.0,
            sensor_temp_c: self.dark_ref_temp_c,
            cosmic_rays: false,
        };
        self.read_out(&spec, Some(&signal), &mut ChaCha8Rng::seed_from_u64(seed))
    }
}

impl Instrument {
    /// The calibration a perfect calibration procedure would produce for one frame: the
    /// true bias pattern, dark charge, flat (vignetting × PRNU) and defects, with noiseless
    /// masters. Lets tests judge the processing alone, apart from calibration noise.
    pub fn ideal_calibration(
        &self,
        binning: u32,
        exposure_s: f64,
        sensor_temp_c: f64,
        fov_cm: f64,
        f_number: f64,
    ) -> FrameCalibration {
        let (prnu, dark_mult, bias) = self.binned_patterns(binning);
        let dark_e = self.dark_current_at(sensor_temp_c) * exposure_s;
        let gain = self.sensor.gain_e_per_adu;
        let dark = dark_mult.mapv(|m| (m as f64 * dark_e / gain) as f32);
        let flat = &self.vignetting_frame(binning, fov_cm) * &prnu;
        let n = self.frame_px(binning);
        let b = binning as usize;
        let mut bad = Array2::from_elem((n, n), false);
        let (hot, cols) = self.defects();
        for (x, y) in hot {
            bad[[y / b, x / b]] = true;
        }
        for c in cols {
            bad.column_mut(c / b).fill(true);
        }
        FrameCalibration {
            bias_adu: bias,
            bias_var_adu2: 0.0,
            dark_adu: Some(dark),
            dark_var_adu2: 0.0,
            flat,
            bad_pixels: bad,
            coefficient: self.coefficient(fov_cm, f_number),
            coefficient_rel_uncertainty: self.coefficient_rel_uncertainty,
            sensor: self.sensor,
        }
    }
}

/// How one frame is read out.
#[derive(Debug, Clone, Copy)]
pub struct ReadoutSpec {
    pub binning: u32,
    pub exposure_s: f64,
    pub sensor_temp_c: f64,
    pub cosmic_rays: bool,
}

/// Poisson sample; a normal approximation above 1e5 where the two are indistinguishable.
pub fn poisson(mean: f64, rng: &mut ChaCha8Rng) -> f64 {
    if mean <= 0.0 {
        0.0
    } else if mean > 1.0e5 {
        (mean + mean.sqrt() * rng.sample::<f64, _>(rand_distr::StandardNormal))
            .round()
            .max(0.0)
    } else {
        Poisson::new(mean).expect("positive mean").sample(rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Instrument {
        Instrument {
            sensor_px: 256,
            bad_column: Some(100),
            ..Instrument::default()
        }
    }

    #[test]
    fn dark_current_doubles_per_doubling_temperature() {
        let i = small();
        let r = i.dark_current_at(i.dark_ref_temp_c + i.dark_doubling_c)
            / i.dark_current_at(i.dark_ref_temp_c);
        assert!((r - 2.0).abs() < 1e-12);
    }

    #[test]
    fn bias_frame_sits_at_bias_with_read_noise() {
        let i = small();
        let f = i.bias_frame(4, 1);
        let mean = f.iter().map(|&v| v as f64).sum::<f64>() / f.len() as f64;
        assert!((mean - i.bias_level_adu).abs() < 1.0, "{mean}");
        let (_, _, pattern) = i.binned_patterns(4);
        let resid: Vec<f64> = f
            .iter()
            .zip(pattern.iter())
            .map(|(&v, &p)| v as f64 - p as f64)
            .collect();
        let sd = (resid.iter().map(|v| v * v).sum::<f64>() / resid.len() as f64).sqrt();
        let expected = i.sensor.read_noise_e / i.sensor.gain_e_per_adu;
        assert!((sd - expected).abs() < 0.6, "{sd} vs {expected}");
    }

    #[test]
    fn flat_frame_is_vignetted() {
        let i = small();
        let f = i.flat_frame(4, 22.4, 20000.0, 3);
        assert!(f[[32, 32]] > f[[0, 0]] + 1000);
    }

    #[test]
    fn defects_include_the_bad_column() {
        let (hot, cols) = small().defects();
        assert_eq!(cols, vec![100]);
        assert!(!hot.is_empty());
    }
}
