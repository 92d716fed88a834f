//! The simulated LED photograph: the mice on the stage as a real imager's photograph shows
//! them, with the apparatus around them.
//!
//! Owns: the photograph's reflectance layout (stage; the anaesthesia manifold across the top
//! with a bright nose cone over each mouse's nose, a lighter rim along its front edge and
//! bright screw heads; thin bright or dark dividers between animals; bodies shaded toward
//! their flanks, with a head behind a neck; tails down to the bottom edge; ear tags and
//! tail marks), the LED light
//! falling over it, and its read-out. Each feature's geometry is drawn from its own seeded
//! stream, so turning one on or off leaves the others (and every luminescent draw) as they
//! were. Pure: values in, values out.
//!
//! Does not own: where the mice and their tails are ([`super::scene`] places them), nor
//! finding them again (`process::subjects`).
//!
//! Layout facts, from real IVIS photographs: the manifold is dark plastic, the nose cones
//! bright; dividers are thin walls (bright or dark, one material per stage); tails hang to
//! the bottom edge; tags and marks are small bright (metal, paint) or dark (ink) spots;
//! now and then a mouse lies back with its nose short of its cone.
//! Sizes are a mouse's: cones 0.8–1.3 cm wide, narrower than a body (about 3 cm).

use ndarray::Array2;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::instrument::{Instrument, ReadoutSpec};
use super::scene::{feature_rng, tail_of, SceneSpec, Tail, TrueMouse};

/// Reflectances (fractions of the LED light returned to the lens).
const STAGE: f64 = 0.12;
const BODY: f64 = 0.8;
const TAIL: f64 = 0.55;
/// LED light at the brightest spot, photograph ADU per unit reflectance.
const LED_ADU: f64 = 30_000.0;

/// The anaesthesia manifold: a dark band from the top edge down to `bottom_cm` (at the
/// left edge; the band may be slightly tilted), with a lighter rim along its front edge
/// and bright screw heads on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifold {
    /// Front edge at x = 0, cm from the top.
    pub bottom_cm: f64,
    /// Rise of the front edge across the field, cm (positive: lower at the right).
    pub tilt_cm: f64,
    pub reflectance: f64,
    pub rim_width_cm: f64,
    pub rim_reflectance: f64,
    /// Screw heads: centre (cm), radius (cm), reflectance.
    pub screws: Vec<([f64; 2], f64, f64)>,
}

impl Manifold {
    /// The front edge's y at `x_cm`.
    pub fn bottom_at(&self, x_cm: f64, fov_cm: f64) -> f64 {
        self.bottom_cm + self.tilt_cm * x_cm / fov_cm
    }
}

/// A nose cone seen from above: a trapezoid from inside the manifold down over the nose.
#[derive(Debug, Clone, PartialEq)]
pub struct NoseCone {
    pub x_cm: f64,
    pub top_cm: f64,
    /// Lowest point: over the mouse's nose.
    pub bottom_cm: f64,
    pub half_width_top_cm: f64,
    pub half_width_bottom_cm: f64,
    pub reflectance: f64,
}

impl NoseCone {
    fn covers(&self, x: f64, y: f64) -> bool {
        if y < self.top_cm || y > self.bottom_cm {
            return false;
        }
        let t = (y - self.top_cm) / (self.bottom_cm - self.top_cm).max(1e-9);
        let half =
            self.half_width_top_cm + t * (self.half_width_bottom_cm - self.half_width_top_cm);
        (x - self.x_cm).abs() <= half
    }
}

/// A divider between two animals: a thin wall from the manifold to the bottom edge,
/// possibly slanted.
#[derive(Debug, Clone, PartialEq)]
pub struct Divider {
    /// x at the manifold's front edge and at the bottom edge, cm.
    pub x_top_cm: f64,
    pub x_bottom_cm: f64,
    pub top_cm: f64,
    pub half_width_cm: f64,
    pub reflectance: f64,
}

impl Divider {
    /// The wall's centre line at `y_cm`.
    pub fn x_at(&self, y_cm: f64, fov_cm: f64) -> f64 {
        let t = ((y_cm - self.top_cm) / (fov_cm - self.top_cm).max(1e-9)).clamp(0.0, 1.0);
        self.x_top_cm + t * (self.x_bottom_cm - self.x_top_cm)
    }
}

/// A small spot on an animal: an ear tag (round) on a body.
#[derive(Debug, Clone, PartialEq)]
pub struct Spot {
    pub mouse: usize,
    pub centre_cm: [f64; 2],
    pub radius_cm: f64,
    pub reflectance: f64,
}

/// A mark across a tail between two positions along it (0 at the root, 1 at the tip).
#[derive(Debug, Clone, PartialEq)]
pub struct TailMark {
    pub mouse: usize,
    pub from: f64,
    pub to: f64,
    pub reflectance: f64,
}

/// Everything in the photograph besides the stage and the bodies.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Apparatus {
    pub manifold: Option<Manifold>,
    /// One per mouse, in the mice's order (empty without a manifold).
    pub cones: Vec<NoseCone>,
    pub dividers: Vec<Divider>,
    pub ear_tags: Vec<Spot>,
    pub tail_marks: Vec<TailMark>,
}

/// Stream numbers of the photograph's features (see `scene::feature_rng`).
const MANIFOLD_STREAM: u64 = 0x4D41_4E49;
const DIVIDER_STREAM: u64 = 0x4449_5649;
const MARK_STREAM: u64 = 0x4D41_524B;

/// The apparatus of a scene, drawn from its seed.
pub fn apparatus_of(spec: &SceneSpec, mice: &[TrueMouse]) -> Apparatus {
    let fov = spec.fov_cm;
    let mut out = Apparatus::default();
    if spec.manifold && !mice.is_empty() {
        let mut rng = feature_rng(spec.seed, MANIFOLD_STREAM);
        let head_top = |m: &TrueMouse| m.centre_cm[1] - m.half_length_cm;
        let highest = mice.iter().map(head_top).fold(f64::INFINITY, f64::min);
        let tilt_cm: f64 = rng.random_range(-0.3..=0.3);
        let clear: f64 = rng.random_range(0.9..=1.4);
        // The front edge stays `clear` above every head (tilt included), at least 0.8 cm
        // below the top.
        let bottom_cm = (highest - clear - tilt_cm.max(0.0)).max(0.8);
        let mut manifold = Manifold {
            bottom_cm,
            tilt_cm,
            reflectance: rng.random_range(0.03..=0.07),
            rim_width_cm: rng.random_range(0.06..=0.18),
            rim_reflectance: rng.random_range(0.25..=0.5),
            screws: Vec::new(),
        };
        for _ in 0..rng.random_range(2..=4usize) {
            let x = rng.random_range(0.5..fov - 0.5);
            let y = rng.random_range(0.3..(manifold.bottom_at(x, fov) - 0.3).max(0.4));
            manifold.screws.push((
                [x, y],
                rng.random_range(0.1..=0.2),
                rng.random_range(0.7..=1.0),
            ));
        }
        let cone_reflectance = rng.random_range(0.6..=0.95);
        for m in mice {
            let x_cm = m.centre_cm[0] + rng.random_range(-0.1..=0.1);
            out.cones.push(NoseCone {
                x_cm,
                top_cm: manifold.bottom_at(x_cm, fov) - 0.3,
                // The nose goes into the cone, which covers the head's tip; now and then
                // a mouse lies back, its nose short of the cone.
                bottom_cm: if rng.random_bool(0.15) {
                    head_top(m) - rng.random_range(0.1..=0.4)
                } else {
                    head_top(m) + rng.random_range(0.3..=0.6)
                },
                half_width_top_cm: rng.random_range(0.5..=0.65),
                half_width_bottom_cm: rng.random_range(0.4..=0.5),
                reflectance: cone_reflectance * rng.random_range(0.95..=1.05),
            });
        }
        out.manifold = Some(manifold);
    }
    if spec.dividers && mice.len() > 1 {
        let mut rng = feature_rng(spec.seed, DIVIDER_STREAM);
        let bright = rng.random_bool(0.5);
        let top_cm = out
            .manifold
            .as_ref()
            .map(|m| m.bottom_cm.min(m.bottom_at(fov, fov)))
            .unwrap_or(0.0);
        let mut order: Vec<&TrueMouse> = mice.iter().collect();
        order.sort_by(|a, b| a.centre_cm[0].total_cmp(&b.centre_cm[0]));
        for pair in order.windows(2) {
            let left = pair[0].centre_cm[0] + pair[0].half_width_cm;
            let right = pair[1].centre_cm[0] - pair[1].half_width_cm;
            let half_width_cm = rng.random_range(0.04..=0.16);
            let room = right - left - 2.0 * half_width_cm - 0.2;
            if room <= 0.0 {
                // Animals lying against each other: no wall between them.
                continue;
            }
            let mid = 0.5 * (left + right);
            let lean = 0.5 * room.min(0.6);
            out.dividers.push(Divider {
                x_top_cm: mid + rng.random_range(-lean..=lean),
                x_bottom_cm: mid + rng.random_range(-lean..=lean),
                top_cm,
                half_width_cm,
                reflectance: if bright {
                    rng.random_range(0.35..=0.7)
                } else {
                    rng.random_range(0.02..=0.05)
                },
            });
        }
    }
    if spec.marks {
        let mut rng = feature_rng(spec.seed, MARK_STREAM);
        for (i, m) in mice.iter().enumerate() {
            if rng.random_bool(0.75) {
                // An ear: a third of the way down the head, toward one flank, sometimes
                // right at the outline.
                let v = -0.62;
                let across = (1.0f64 - v * v).sqrt() * m.half_width_cm;
                let side = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
                out.ear_tags.push(Spot {
                    mouse: i,
                    centre_cm: [
                        m.centre_cm[0] + side * rng.random_range(0.5..=1.0) * across,
                        m.centre_cm[1] + v * m.half_length_cm,
                    ],
                    radius_cm: rng.random_range(0.1..=0.18),
                    reflectance: if rng.random_bool(0.6) {
                        rng.random_range(0.95..=1.1)
                    } else {
                        rng.random_range(0.03..=0.08)
                    },
                });
            }
            if spec.tails {
                for _ in 0..rng.random_range(0..=3usize) {
                    let from = rng.random_range(0.03..=0.35);
                    out.tail_marks.push(TailMark {
                        mouse: i,
                        from,
                        to: from + rng.random_range(0.02..=0.05),
                        reflectance: if rng.random_bool(0.5) {
                            rng.random_range(0.03..=0.08)
                        } else {
                            rng.random_range(0.85..=1.0)
                        },
                    });
                }
            }
        }
    }
    out
}

const NECK_STREAM: u64 = 0x4E45_434B;

/// How far the outline of mouse `index` is pinched in at the neck, as a fraction of the
/// half-width there (0 when the scene draws no heads): 0.08–0.25.
pub fn neck_pinch(spec: &SceneSpec, index: usize) -> f64 {
    if !spec.heads {
        return 0.0;
    }
    feature_rng(spec.seed, NECK_STREAM + 16 * index as u64).random_range(0.08..=0.25)
}

/// Where the neck is, as a fraction of the half-length ahead of the centre.
const NECK_AT: f64 = 0.55;
/// Length scale (Gaussian sigma) of the neck's pinch along the body, cm.
const NECK_SIGMA_CM: f64 = 0.4;

/// Radial position of (x, y) on a mouse's outline: below 1 inside, 1 on it. The ellipse,
/// pinched in at the neck by `pinch`.
pub fn body_radius(m: &TrueMouse, pinch: f64, x: f64, y: f64) -> f64 {
    let neck_y = m.centre_cm[1] - NECK_AT * m.half_length_cm;
    let width =
        m.half_width_cm * (1.0 - pinch * (-0.5 * ((y - neck_y) / NECK_SIGMA_CM).powi(2)).exp());
    ((x - m.centre_cm[0]) / width).powi(2) + ((y - m.centre_cm[1]) / m.half_length_cm).powi(2)
}

/// Brightness of the LED light relative to its brightest spot (x, y as fractions of the
/// field): a spot near the top left, falling off quadratically by `unevenness` at unit
/// distance from it. Exactly 1 when `unevenness` is 0.
fn uneven_light(unevenness: f64, x: f64, y: f64) -> f64 {
    let rho2 = (x - 0.3).powi(2) + (y - 0.3).powi(2);
    1.0 - unevenness * rho2
}

/// Where along a tail (0 root, 1 tip) the point lies, if it lies on it.
fn on_tail(tail: &Tail, x: f64, y: f64) -> Option<f64> {
    if !tail.covers(x, y) {
        return None;
    }
    const SAMPLES: usize = 96;
    (0..=SAMPLES)
        .map(|i| {
            let t = i as f64 / SAMPLES as f64;
            let (tx, ty, _) = tail.at(t);
            ((x - tx).powi(2) + (y - ty).powi(2), t)
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, t)| t)
}

/// The reflectance at a point (cm) of the stage, the apparatus and the mice.
fn reflectance_at(
    spec: &SceneSpec,
    mice: &[TrueMouse],
    pinches: &[f64],
    tails: &[(usize, Tail)],
    app: &Apparatus,
    x: f64,
    y: f64,
) -> f64 {
    let fov = spec.fov_cm;
    // Nose cones sit over everything.
    if let Some(cone) = app.cones.iter().find(|c| c.covers(x, y)) {
        return cone.reflectance;
    }
    // Radial position on the nearest body (0 at its centre, 1 at its outline).
    let body = mice
        .iter()
        .zip(pinches)
        .map(|(m, &pinch)| body_radius(m, pinch, x, y))
        .fold(f64::INFINITY, f64::min);
    if let Some(tag) = app.ear_tags.iter().find(|t| {
        (x - t.centre_cm[0]).powi(2) + (y - t.centre_cm[1]).powi(2) <= t.radius_cm.powi(2)
    }) {
        return tag.reflectance;
    }
    if body <= 1.0 {
        // Rounded backs catch less light toward the flanks.
        return BODY * (1.0 - 0.5 * spec.photo_unevenness * body);
    }
    for (i, tail) in tails {
        if let Some(t) = on_tail(tail, x, y) {
            return app
                .tail_marks
                .iter()
                .find(|m| m.mouse == *i && (m.from..=m.to).contains(&t))
                .map_or(TAIL, |m| m.reflectance);
        }
    }
    if let Some(d) = app
        .dividers
        .iter()
        .find(|d| y >= d.top_cm && (x - d.x_at(y, fov)).abs() <= d.half_width_cm)
    {
        return d.reflectance;
    }
    if let Some(m) = &app.manifold {
        let edge = m.bottom_at(x, fov);
        if y <= edge {
            if let Some(s) = m
                .screws
                .iter()
                .find(|s| (x - s.0[0]).powi(2) + (y - s.0[1]).powi(2) <= s.1 * s.1)
            {
                return s.2;
            }
            return if y > edge - m.rim_width_cm {
                m.rim_reflectance
            } else {
                m.reflectance
            };
        }
    }
    STAGE
}

/// The expected photograph signal (ADU before read-out) on an `n × n` grid.
pub fn photograph_signal(spec: &SceneSpec, mice: &[TrueMouse], n: usize) -> Array2<f32> {
    let pixel_cm = spec.fov_cm / n as f64;
    let tails: Vec<(usize, Tail)> = mice
        .iter()
        .enumerate()
        .filter_map(|(i, m)| tail_of(spec, i, m).map(|t| (i, t)))
        .collect();
    let app = apparatus_of(spec, mice);
    let pinches: Vec<f64> = (0..mice.len()).map(|i| neck_pinch(spec, i)).collect();
    Array2::from_shape_fn((n, n), |(r, c)| {
        let x = (c as f64 + 0.5) * pixel_cm;
        let y = (r as f64 + 0.5) * pixel_cm;
        let light = (0.75 + 0.25 * (1.0 - x / spec.fov_cm))
            * uneven_light(spec.photo_unevenness, x / spec.fov_cm, y / spec.fov_cm);
        (LED_ADU * light * reflectance_at(spec, mice, &pinches, &tails, &app, x, y)) as f32
    })
}

/// The LED-lit photograph at `binning`, read out by the instrument.
pub fn photograph(
    inst: &Instrument,
    spec: &SceneSpec,
    mice: &[TrueMouse],
    binning: u32,
    rng: &mut ChaCha8Rng,
) -> Array2<u16> {
    let signal = photograph_signal(spec, mice, inst.frame_px(binning));
    let readout = ReadoutSpec {
        binning,
        exposure_s: 0.2,
        sensor_temp_c: spec.sensor_temp_c,
        cosmic_rays: false,
    };
    inst.read_out(&readout, Some(&signal), rng)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::{simulate_acquisition, Instrument};

    fn mice_of(seed: u64, touching: bool) -> (SceneSpec, Vec<TrueMouse>) {
        let spec = SceneSpec {
            seed,
            touching_mice: touching,
            ..SceneSpec::default()
        };
        let inst = Instrument {
            sensor_px: 256,
            ..Instrument::default()
        };
        let sim = simulate_acquisition(
            &inst,
            &SceneSpec {
                photograph: false,
                binning: 4,
                ..spec.clone()
            },
        );
        (spec, sim.truth.mice)
    }

    fn inside(m: &TrueMouse, x: f64, y: f64) -> bool {
        ((x - m.centre_cm[0]) / m.half_width_cm).powi(2)
            + ((y - m.centre_cm[1]) / m.half_length_cm).powi(2)
            <= 1.0
    }

    #[test]
    fn the_real_scene_is_the_default() {
        let s = SceneSpec::default();
        assert!(s.manifold && s.dividers && s.marks && s.tails && s.heads);
    }

    #[test]
    fn every_cone_sits_over_its_mouse_nose_below_the_manifold() {
        let (mut in_cone, mut short) = (0, 0);
        for seed in 1..=30 {
            for touching in [false, true] {
                let (spec, mice) = mice_of(seed, touching);
                let app = apparatus_of(&spec, &mice);
                let manifold = app.manifold.as_ref().expect("a manifold");
                assert_eq!(app.cones.len(), mice.len());
                for (cone, m) in app.cones.iter().zip(&mice) {
                    let nose = [m.centre_cm[0], m.centre_cm[1] - m.half_length_cm];
                    assert!((cone.x_cm - nose[0]).abs() <= 0.1 + 1e-12, "seed {seed}");
                    if cone.covers(nose[0], nose[1] + 0.05) {
                        in_cone += 1;
                    } else {
                        // Lying back: the nose is short of the cone by at most 0.4 cm.
                        assert!(cone.bottom_cm >= nose[1] - 0.4 - 1e-12, "seed {seed}");
                        short += 1;
                    }
                    // The cone reaches up into the manifold, and the manifold clears the head.
                    assert!(cone.top_cm < manifold.bottom_at(cone.x_cm, spec.fov_cm));
                    assert!(manifold.bottom_at(nose[0], spec.fov_cm) <= nose[1] - 0.6);
                    assert!(2.0 * cone.half_width_top_cm <= 1.3);
                }
            }
        }
        // Most noses are in their cones; some mice lie back.
        assert!(
            in_cone > 5 * short && short > 0,
            "{in_cone} in, {short} short"
        );
    }

    #[test]
    fn heads_are_narrower_than_bodies_behind_a_neck() {
        let (spec, mice) = mice_of(5, false);
        for (i, m) in mice.iter().enumerate() {
            let pinch = neck_pinch(&spec, i);
            assert!((0.08..=0.25).contains(&pinch));
            let neck_y = m.centre_cm[1] - NECK_AT * m.half_length_cm;
            let at_neck = m.centre_cm[0] + 0.99 * m.half_width_cm * (1.0 - NECK_AT.powi(2)).sqrt();
            // On the plain ellipse's outline at the neck, outside the pinched one.
            assert!(body_radius(m, 0.0, at_neck, neck_y) < 1.0);
            assert!(body_radius(m, pinch, at_neck, neck_y) > 1.0);
            // Far from the neck the outline is the ellipse's.
            let flank = m.centre_cm[0] + 0.99 * m.half_width_cm;
            assert!(body_radius(m, pinch, flank, m.centre_cm[1]) < 1.0);
        }
        let plain = SceneSpec {
            heads: false,
            ..spec
        };
        assert_eq!(neck_pinch(&plain, 0), 0.0);
    }

    #[test]
    fn dividers_stand_between_animals_and_never_cross_a_body() {
        let mut walls = 0;
        for seed in 1..=30 {
            for touching in [false, true] {
                let (spec, mice) = mice_of(seed, touching);
                let app = apparatus_of(&spec, &mice);
                walls += app.dividers.len();
                if touching {
                    // Two pairs lie flank to flank: at most the two gaps beside the pairs.
                    assert!(app.dividers.len() <= 2, "seed {seed}");
                }
                for d in &app.dividers {
                    for k in 0..=100 {
                        let y = d.top_cm + (spec.fov_cm - d.top_cm) * k as f64 / 100.0;
                        let x = d.x_at(y, spec.fov_cm);
                        for m in &mice {
                            assert!(
                                !inside(m, x - d.half_width_cm, y)
                                    && !inside(m, x + d.half_width_cm, y),
                                "seed {seed}: {d:?} crosses {m:?}"
                            );
                        }
                    }
                }
            }
        }
        assert!(walls >= 30 * 4, "{walls} walls");
    }

    #[test]
    fn tails_reach_the_bottom_edge() {
        for seed in 1..=20 {
            let (spec, mice) = mice_of(seed, false);
            for (i, m) in mice.iter().enumerate() {
                let tail = tail_of(&spec, i, m).expect("tails by default");
                assert!(tail.at(1.0).1 >= spec.fov_cm, "seed {seed} mouse {i}");
            }
        }
    }

    #[test]
    fn the_photograph_shows_each_feature_at_its_place() {
        let (spec, mice) = mice_of(3, false);
        let app = apparatus_of(&spec, &mice);
        let n = 448;
        let px = spec.fov_cm / n as f64;
        let signal = photograph_signal(&spec, &mice, n);
        let at = |x: f64, y: f64| signal[[(y / px) as usize, (x / px) as usize]] as f64;
        let stage = at(0.3, spec.fov_cm - 0.3);
        let manifold = app.manifold.as_ref().unwrap();
        let cone = &app.cones[2];
        // The dark manifold between two cones, the bright cone, the body.
        let between = 0.5 * (app.cones[1].x_cm + app.cones[2].x_cm);
        assert!(at(between, 0.5 * manifold.bottom_at(between, spec.fov_cm)) < 0.7 * stage);
        assert!(at(cone.x_cm, 0.5 * (cone.top_cm + cone.bottom_cm) + 0.3) > 4.0 * stage);
        assert!(at(mice[2].centre_cm[0], mice[2].centre_cm[1]) > 5.0 * stage);
        let d = &app.dividers[0];
        let y = spec.fov_cm - 1.0;
        let wall = at(d.x_at(y, spec.fov_cm), y);
        assert!(
            (wall - stage).abs() > 0.5 * stage,
            "{wall} vs stage {stage}"
        );
        // Turning the apparatus off leaves the stage, bodies and tails only.
        let plain = photograph_signal(
            &SceneSpec {
                manifold: false,
                dividers: false,
                marks: false,
                ..spec.clone()
            },
            &mice,
            n,
        );
        let plain_at = |x: f64, y: f64| plain[[(y / px) as usize, (x / px) as usize]] as f64;
        let c = ((between / px) as usize as f64 + 0.5) * px;
        let led = LED_ADU * (0.75 + 0.25 * (1.0 - c / spec.fov_cm));
        assert!((plain_at(between, 0.5) - led * STAGE).abs() < 1.0);
        assert_eq!(
            plain_at(mice[2].centre_cm[0], mice[2].centre_cm[1]),
            at(mice[2].centre_cm[0], mice[2].centre_cm[1])
        );
    }
}
