//! Subjects end to end: the simulator's five-mouse photographs as real ones look (the
//! anaesthesia manifold with a bright nose cone over each nose, dividers between animals,
//! tails to the bottom edge, ear tags and tail marks; touching pairs, uneven LED light,
//! binnings 4 and 8, many seeds) → every mouse found, in left-to-right order, every tumour
//! placed on its own mouse; a photograph drawn here by hand from geometry (not by the
//! simulator: mice with distinct heads under the nose cones) → five mice, not six; IVIS
//! click folders → `Animal Number` ids in the record in that order, each tumour on the
//! mouse `truth.json` names; a source off every mouse → flagged; fewer ids than mice →
//! flagged and no id applied.

mod common;

use std::path::Path;

use ndarray::Array2;
use std::process::Command;

use lumiq::job;
use lumiq::process::subjects::{
    assign_subjects, locate_subjects, IdStatus, Placement, SubjectSettings,
};
use lumiq::process::{ProcessingParams, QualityFlag};
use lumiq::record::MeasurementRecord;
use lumiq::simulate::scene::stray_sources;
use lumiq::simulate::{simulate_acquisition, write, Instrument, SceneSpec, SimulatedAcquisition};

/// The hard case: two touching pairs and one mouse alone, tails, light falling to about a
/// third across the stage.
fn hard_scene(seed: u64, binning: u32) -> SceneSpec {
    SceneSpec {
        seed,
        binning,
        mice: 5,
        touching_mice: true,
        tails: true,
        photo_unevenness: 0.6,
        ..SceneSpec::default()
    }
}

/// Check the mice found in `sim`'s photograph against the truth, and place every true
/// tumour centre on a mouse; returns a description of every discrepancy.
fn check_photograph(sim: &SimulatedAcquisition) -> Vec<String> {
    let photo = sim.photograph_adu.as_ref().expect("a photograph");
    let s = SubjectSettings::default();
    let map = locate_subjects(&photo.mapv(f32::from), sim.meta.fov_cm, &s);
    let spec = &sim.truth.spec;
    let tag = format!("seed {} binning {}", spec.seed, spec.binning);
    let mut problems = Vec::new();
    if map.subjects.len() != sim.truth.mice.len() {
        problems.push(format!(
            "{tag}: {} mice found, {} true: {:?}",
            map.subjects.len(),
            sim.truth.mice.len(),
            map.subjects
        ));
        return problems;
    }
    for (found, truth) in map.subjects.iter().zip(&sim.truth.mice) {
        // Same order: each found mouse sits on the true mouse of the same rank (the centroid
        // moves only by what the tail cut and the shading take off the outline).
        let dx = found.centroid_cm[0] - truth.centre_cm[0];
        let dy = found.centroid_cm[1] - truth.centre_cm[1];
        if dx.abs() > 0.3 || dy.abs() > 0.5 {
            problems.push(format!(
                "{tag}: mouse {} found at {:?}, true centre {:?}",
                found.index, found.centroid_cm, truth.centre_cm
            ));
        }
    }
    let pixel_cm = sim.meta.fov_cm / sim.luminescent_adu.dim().1 as f64;
    let centres: Vec<[f64; 2]> = sim
        .truth
        .tumours
        .iter()
        .map(|t| [t.centre_px[0] * pixel_cm, t.centre_px[1] * pixel_cm])
        .collect();
    let a = assign_subjects(Some(&map), &sim.meta.subject_ids, &centres, &s);
    assert_eq!(a.status, IdStatus::Applied);
    for (t, placed) in sim.truth.tumours.iter().zip(&a.regions) {
        let want = &sim.meta.subject_ids[t.mouse];
        if placed.index != Some(t.mouse) || placed.id.as_ref() != Some(want) {
            problems.push(format!(
                "{tag}: tumour {} (on mouse {} = {want}) placed {:?}",
                t.id, t.mouse, placed
            ));
        }
    }
    problems
}

#[test]
fn five_mice_with_touching_pairs_tails_and_uneven_light_at_binning_8() {
    let inst = Instrument::default();
    let mut problems = Vec::new();
    let mut tumours = 0;
    for seed in 1..=8 {
        let sim = simulate_acquisition(&inst, &hard_scene(seed, 8));
        tumours += sim.truth.tumours.len();
        problems.extend(check_photograph(&sim));
    }
    assert!(tumours >= 40);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn five_mice_with_touching_pairs_tails_and_uneven_light_at_binning_4() {
    let inst = Instrument::default();
    let mut problems = Vec::new();
    for seed in 21..=23 {
        problems.extend(check_photograph(&simulate_acquisition(
            &inst,
            &hard_scene(seed, 4),
        )));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_default_scene_and_each_difficulty_alone() {
    let inst = Instrument::default();
    let variants = [
        SceneSpec::default(),
        SceneSpec {
            touching_mice: true,
            ..SceneSpec::default()
        },
        SceneSpec {
            tails: true,
            ..SceneSpec::default()
        },
        SceneSpec {
            photo_unevenness: 0.9,
            ..SceneSpec::default()
        },
    ];
    let mut problems = Vec::new();
    for (i, v) in variants.iter().enumerate() {
        for seed in [3, 4] {
            let spec = SceneSpec {
                seed: seed + 10 * i as u64,
                ..v.clone()
            };
            problems.extend(check_photograph(&simulate_acquisition(&inst, &spec)));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Scenes right, ids right and tumours placed right over a set of scenes.
#[derive(Debug, Default)]
struct Tally {
    scenes: usize,
    counts_right: usize,
    ids_right: usize,
    mice: usize,
    outlines_right: usize,
    tumours: usize,
    tumours_right: usize,
    problems: Vec<String>,
}

impl Tally {
    /// Judge one scene: the count, each mouse's rank (so its id) and each tumour's mouse.
    fn add(&mut self, sim: &SimulatedAcquisition) {
        let photo = sim.photograph_adu.as_ref().expect("a photograph");
        let s = SubjectSettings::default();
        let map = locate_subjects(&photo.mapv(f32::from), sim.meta.fov_cm, &s);
        let spec = &sim.truth.spec;
        let tag = format!("seed {} binning {}", spec.seed, spec.binning);
        self.scenes += 1;
        self.mice += sim.truth.mice.len();
        self.tumours += sim.truth.tumours.len();
        if map.subjects.len() != sim.truth.mice.len() {
            self.problems.push(format!(
                "{tag}: {} mice found, {} true",
                map.subjects.len(),
                sim.truth.mice.len()
            ));
            return;
        }
        self.counts_right += 1;
        // The id of rank i is right when true mouse i's centre lies on the mouse found at
        // rank i.
        let ranks_right = sim
            .truth
            .mice
            .iter()
            .enumerate()
            .all(|(i, t)| map.place(t.centre_cm, 0.0) == Placement::On(i));
        // The outline is right when the centroid moved only by what the shading, the tail
        // cut and the cone take off or add.
        for (f, t) in map.subjects.iter().zip(&sim.truth.mice) {
            if (f.centroid_cm[0] - t.centre_cm[0]).abs() <= 0.3
                && (f.centroid_cm[1] - t.centre_cm[1]).abs() <= 0.5
            {
                self.outlines_right += 1;
            } else {
                self.problems.push(format!(
                    "{tag}: mouse {} found at {:?}, true centre {:?}",
                    f.index, f.centroid_cm, t.centre_cm
                ));
            }
        }
        let pixel_cm = sim.meta.fov_cm / sim.luminescent_adu.dim().1 as f64;
        let centres: Vec<[f64; 2]> = sim
            .truth
            .tumours
            .iter()
            .map(|t| [t.centre_px[0] * pixel_cm, t.centre_px[1] * pixel_cm])
            .collect();
        let a = assign_subjects(Some(&map), &sim.meta.subject_ids, &centres, &s);
        if ranks_right && a.status == IdStatus::Applied {
            self.ids_right += 1;
        } else {
            self.problems
                .push(format!("{tag}: ranks wrong: {:?}", map.subjects));
        }
        for (t, placed) in sim.truth.tumours.iter().zip(&a.regions) {
            let want = &sim.meta.subject_ids[t.mouse];
            if placed.index == Some(t.mouse) && placed.id.as_ref() == Some(want) {
                self.tumours_right += 1;
            } else {
                self.problems.push(format!(
                    "{tag}: tumour {} (on mouse {} = {want}) placed {placed:?}",
                    t.id, t.mouse
                ));
            }
        }
    }

    fn summary(&self, name: &str) -> String {
        format!(
            "{name}: subjects right {}/{} scenes, ids right {}/{}, outlines right {}/{} mice, \
             tumours attributed right {}/{}",
            self.counts_right,
            self.scenes,
            self.ids_right,
            self.scenes,
            self.outlines_right,
            self.mice,
            self.tumours_right,
            self.tumours
        )
    }
}

#[test]
fn real_scenes_over_many_seeds_give_every_mouse_id_and_tumour() {
    // The default scene is the real one: manifold and nose cones, dividers, heads behind a
    // neck, tails to the bottom edge, ear tags and tail marks; then touching pairs, uneven
    // light, both, and fewer mice.
    let inst = Instrument::default();
    let variants: [(&str, SceneSpec, std::ops::RangeInclusive<u64>); 6] = [
        ("real scene", SceneSpec::default(), 101..=124),
        (
            "touching mice",
            SceneSpec {
                touching_mice: true,
                ..SceneSpec::default()
            },
            201..=210,
        ),
        (
            "uneven light 0.6",
            SceneSpec {
                photo_unevenness: 0.6,
                ..SceneSpec::default()
            },
            301..=310,
        ),
        ("touching and uneven", hard_scene(0, 8), 401..=410),
        (
            "three mice",
            SceneSpec {
                mice: 3,
                ..SceneSpec::default()
            },
            501..=504,
        ),
        (
            "one mouse",
            SceneSpec {
                mice: 1,
                ..SceneSpec::default()
            },
            601..=602,
        ),
    ];
    let mut all = Tally::default();
    let mut lines = Vec::new();
    for (name, spec, seeds) in variants {
        let mut tally = Tally::default();
        for seed in seeds {
            let sim = simulate_acquisition(
                &inst,
                &SceneSpec {
                    seed,
                    ..spec.clone()
                },
            );
            assert!(sim.truth.spec.manifold && sim.truth.spec.dividers && sim.truth.spec.marks);
            tally.add(&sim);
        }
        lines.push(tally.summary(name));
        all.scenes += tally.scenes;
        all.counts_right += tally.counts_right;
        all.ids_right += tally.ids_right;
        all.mice += tally.mice;
        all.outlines_right += tally.outlines_right;
        all.tumours += tally.tumours;
        all.tumours_right += tally.tumours_right;
        all.problems.extend(tally.problems);
    }
    lines.push(all.summary("all"));
    eprintln!("{}", lines.join("\n"));
    assert_eq!(all.scenes, 60);
    assert!(all.tumours >= 250, "{} tumours", all.tumours);
    assert!(all.problems.is_empty(), "{}", all.problems.join("\n"));
}

// ---- A photograph drawn here by hand ------------------------------------------------

/// One mouse of a hand-drawn photograph, heads up: a body ellipse, a narrower head
/// ellipse above it joined by a neck, a tail from the rump to the bottom edge.
struct DrawnMouse {
    x_cm: f64,
    /// Top of the head (the nose), cm.
    nose_cm: f64,
    body_half_width_cm: f64,
    /// The mouse's head lies in its nose cone by this much, cm (negative: a gap).
    in_cone_cm: f64,
    /// Sideways reach of the tail's tip, cm.
    tail_sweep_cm: f64,
}

impl DrawnMouse {
    const HEAD: (f64, f64) = (0.9, 1.15);
    const BODY_HALF_LENGTH_CM: f64 = 3.1;

    fn head_centre(&self) -> [f64; 2] {
        [self.x_cm, self.nose_cm + Self::HEAD.1]
    }
    fn body_centre(&self) -> [f64; 2] {
        // The body overlaps the back of the head by 0.55 cm: a neck narrower than both.
        [
            self.x_cm,
            self.nose_cm + 2.0 * Self::HEAD.1 - 0.55 + Self::BODY_HALF_LENGTH_CM,
        ]
    }
    fn rump_cm(&self) -> f64 {
        self.body_centre()[1] + Self::BODY_HALF_LENGTH_CM
    }
    fn on_body(&self, x: f64, y: f64) -> bool {
        let (h, b) = (self.head_centre(), self.body_centre());
        ((x - h[0]) / Self::HEAD.0).powi(2) + ((y - h[1]) / Self::HEAD.1).powi(2) <= 1.0
            || ((x - b[0]) / self.body_half_width_cm).powi(2)
                + ((y - b[1]) / Self::BODY_HALF_LENGTH_CM).powi(2)
                <= 1.0
    }
    /// The tail: 0.42 cm wide at the rump, 0.18 cm at the bottom edge, bending sideways.
    fn on_tail(&self, x: f64, y: f64, fov_cm: f64) -> Option<f64> {
        let y0 = self.rump_cm() - 0.2;
        if y < y0 {
            return None;
        }
        let t = (y - y0) / (fov_cm - y0);
        let centre = self.x_cm + self.tail_sweep_cm * t * t;
        ((x - centre).abs() <= 0.5 * (0.42 - 0.24 * t)).then_some(t)
    }
}

/// A hand-drawn five-mouse photograph at the real folder's geometry (960 px over 22.4 cm):
/// a dark manifold with a lighter front rim across the top, a bright nose cone over each
/// nose, thin bright dividers, tails to the bottom edge with dark marks, bright and dark
/// ear tags, light falling off to one side, and a little noise. Values in ADU.
fn drawn_photograph(mice: &[DrawnMouse], manifold_bottom_cm: f64) -> Array2<f32> {
    const N: usize = 960;
    const FOV: f64 = 22.4;
    let px = FOV / N as f64;
    Array2::from_shape_fn((N, N), |(r, c)| {
        let (x, y) = ((c as f64 + 0.5) * px, (r as f64 + 0.5) * px);
        let mut level = 0.11; // the stage
        if y < manifold_bottom_cm {
            level = if y > manifold_bottom_cm - 0.25 {
                0.3
            } else {
                0.04
            };
        }
        // Dividers halfway between neighbours, 0.24 cm wide, bright plastic.
        for w in mice.windows(2) {
            let mid = 0.5 * (w[0].x_cm + w[1].x_cm);
            if y >= manifold_bottom_cm && (x - mid).abs() <= 0.12 {
                level = 0.5;
            }
        }
        for (i, m) in mice.iter().enumerate() {
            if let Some(t) = m.on_tail(x, y, FOV) {
                // Two dark rings of marker pen near the tail's root.
                let mark = (0.08..0.11).contains(&t) || (0.16..0.19).contains(&t);
                level = if mark { 0.05 } else { 0.5 };
            }
            if m.on_body(x, y) {
                level = 0.78;
                // An ear tag at the head's flank: metal (bright) on even mice, ink on odd.
                let ear = [m.x_cm + 0.75 * DrawnMouse::HEAD.0, m.head_centre()[1] + 0.3];
                if (x - ear[0]).powi(2) + (y - ear[1]).powi(2) <= 0.15f64.powi(2) {
                    level = if i % 2 == 0 { 1.05 } else { 0.05 };
                }
            }
            // The nose cone: 1.2 cm wide at the manifold, 0.9 cm at the nose.
            let (top, bottom) = (manifold_bottom_cm - 0.4, m.nose_cm + m.in_cone_cm);
            if (top..=bottom).contains(&y) {
                let t = (y - top) / (bottom - top);
                if (x - m.x_cm).abs() <= 0.6 - 0.15 * t {
                    level = 0.85;
                }
            }
        }
        let light = 1.0 - 0.35 * x / FOV;
        // Deterministic noise of about 1 %.
        let h = ((r * 7919 + c * 104_729) % 1009) as f64 / 1009.0 - 0.5;
        (30_000.0 * light * level * (1.0 + 0.02 * h)) as f32
    })
}

fn drawn_mice() -> Vec<DrawnMouse> {
    let xs = [2.3, 6.6, 11.2, 15.6, 20.0];
    let noses = [4.6, 4.9, 4.5, 5.2, 4.7];
    let widths = [1.35, 1.45, 1.3, 1.4, 1.5];
    let sweeps = [-1.2, 0.8, 1.5, -0.6, -1.4];
    (0..5)
        .map(|i| DrawnMouse {
            x_cm: xs[i],
            nose_cm: noses[i],
            body_half_width_cm: widths[i],
            in_cone_cm: if i == 3 { -0.2 } else { 0.45 },
            tail_sweep_cm: sweeps[i],
        })
        .collect()
}

#[test]
fn a_hand_drawn_five_mouse_photograph_gives_five_mice_in_order() {
    let mice = drawn_mice();
    let img = drawn_photograph(&mice, 3.4);
    let s = SubjectSettings::default();
    let map = locate_subjects(&img, 22.4, &s);
    assert_eq!(map.subjects.len(), 5, "{:#?}", map.subjects);
    for (found, m) in map.subjects.iter().zip(&mice) {
        assert!((found.centroid_cm[0] - m.x_cm).abs() < 0.2, "{found:?}");
        // The mouse spans head to rump: neither the cone nor the tail is part of it, and
        // the head is not lost.
        assert!(found.bbox_cm[1] < m.nose_cm + 0.5, "head lost: {found:?}");
        assert!(found.bbox_cm[1] > m.nose_cm - 0.4, "cone kept: {found:?}");
        assert!(found.bbox_cm[3] < m.rump_cm() + 0.5, "tail kept: {found:?}");
        assert!(found.bbox_cm[3] > m.rump_cm() - 0.5, "rump lost: {found:?}");
    }
    // Points on each mouse: on the head just below the cone, the neck, the back, the
    // rump; each is placed on its mouse and named by the Animal Numbers left to right.
    let numbers: Vec<String> = (3466..3471).map(|n| n.to_string()).collect();
    let mut points = Vec::new();
    let mut owners = Vec::new();
    for (i, m) in mice.iter().enumerate() {
        let b = m.body_centre();
        for p in [
            [m.x_cm + 0.3, m.nose_cm + m.in_cone_cm.max(0.0) + 0.25],
            [m.x_cm, m.head_centre()[1] + 0.9],
            [b[0] - 0.7, b[1]],
            [b[0] + 0.4, m.rump_cm() - 0.4],
        ] {
            points.push(p);
            owners.push(i);
        }
    }
    // Off every mouse: on a divider, on the manifold, on a tail near the bottom edge.
    let offs = [
        [0.5 * (mice[1].x_cm + mice[2].x_cm), 12.0],
        [0.5 * (mice[2].x_cm + mice[3].x_cm), 1.5],
        [mice[0].x_cm + mice[0].tail_sweep_cm, 22.0],
    ];
    points.extend(offs);
    let a = assign_subjects(Some(&map), &numbers, &points, &s);
    assert_eq!(a.status, IdStatus::Applied);
    for (k, owner) in owners.iter().enumerate() {
        assert_eq!(a.regions[k].index, Some(*owner), "point {:?}", points[k]);
        assert_eq!(a.regions[k].id.as_deref(), Some(numbers[*owner].as_str()));
    }
    for (k, p) in offs.iter().enumerate() {
        assert!(
            a.regions[owners.len() + k].outside,
            "{p:?}: {:?}",
            a.regions[owners.len() + k]
        );
    }
}

#[test]
fn nose_cones_and_heads_do_not_make_a_sixth_mouse() {
    // Regression: five mice with distinct heads under their nose cones were counted as more
    // than five (heads with their cones split off as mice of their own), so no
    // Animal Number was applied. Each head, each head-and-cone, must stay with its body.
    let s = SubjectSettings::default();
    for manifold_bottom_cm in [3.0, 3.4, 3.8] {
        let map = locate_subjects(
            &drawn_photograph(&drawn_mice(), manifold_bottom_cm),
            22.4,
            &s,
        );
        assert_eq!(
            map.subjects.len(),
            5,
            "manifold to {manifold_bottom_cm} cm: {:#?}",
            map.subjects
        );
        let numbers: Vec<String> = (3466..3471).map(|n| n.to_string()).collect();
        assert_eq!(
            assign_subjects(Some(&map), &numbers, &[], &s).status,
            IdStatus::Applied
        );
    }
}

#[test]
fn new_scene_options_leave_the_luminescent_frame_unchanged() {
    // Touching mice move the bodies (and their tumours), but everything else the
    // photograph shows — tails, uneven light, the manifold and cones, dividers, heads,
    // tags and marks — touches the photograph only: the luminescent frame of a seed stays
    // what it was.
    let inst = Instrument {
        sensor_px: 512,
        ..Instrument::default()
    };
    let plain = SceneSpec {
        binning: 4,
        tails: false,
        manifold: false,
        dividers: false,
        marks: false,
        heads: false,
        ..SceneSpec::default()
    };
    let real = SceneSpec {
        binning: 4,
        photo_unevenness: 0.6,
        ..SceneSpec::default()
    };
    let a = simulate_acquisition(&inst, &plain);
    let b = simulate_acquisition(&inst, &real);
    assert_eq!(a.luminescent_adu, b.luminescent_adu);
    assert_eq!(a.truth.tumours, b.truth.tumours);
    assert_eq!(a.truth.mice, b.truth.mice);
    assert_ne!(a.photograph_adu, b.photograph_adu);
}

fn process(dir: &Path) -> (job::JobOutput, serde_json::Value) {
    let input = job::load(dir, None).expect("the folder loads");
    let out = job::run(input, &ProcessingParams::default()).expect("it quantifies");
    let json = serde_json::to_value(&out.record).unwrap();
    common::assert_valid_record(&json);
    (out, json)
}

/// The record's region for each true tumour (the detected region covering its centre).
fn regions_of_tumours(out: &job::JobOutput, sim: &SimulatedAcquisition) -> Vec<Option<usize>> {
    common::match_truth(&out.quantification, &sim.truth)
}

#[test]
fn an_ivis_folder_gets_its_animal_numbers_left_to_right() {
    let inst = Instrument::default();
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for seed in [5u64, 6] {
        let sim = simulate_acquisition(&inst, &hard_scene(seed, 8));
        let dir = tmp.path().join(format!("click-{seed}"));
        write::write_ivis(&dir, &inst, &sim, true).unwrap();
        let (out, json) = process(&dir);
        let rec: &MeasurementRecord = &out.record;
        let numbers: Vec<String> = (3466..3471).map(|n| n.to_string()).collect();
        assert_eq!(rec.acquisition.subject_ids, numbers);
        assert_eq!(rec.subjects.id_status, IdStatus::Applied);
        assert_eq!(rec.subjects.count, 5);
        let ids: Vec<Option<String>> = rec
            .subjects
            .mice
            .iter()
            .map(|m| m.subject_id.clone())
            .collect();
        assert_eq!(ids, numbers.iter().cloned().map(Some).collect::<Vec<_>>());
        // Boxes left to right, in cm and in the luminescent grid (256 px over 22.4 cm).
        for w in rec.subjects.mice.windows(2) {
            assert!(w[0].centroid_cm[0] < w[1].centroid_cm[0]);
        }
        for m in &rec.subjects.mice {
            assert!((m.bbox_px[2] * 22.4 / 256.0 - m.bbox_cm[2]).abs() < 1e-9);
        }
        assert!(!rec.flags.contains(&QualityFlag::SubjectCountMismatch));
        assert!(!rec.flags.contains(&QualityFlag::RegionOutsideSubjects));

        // Every detected tumour carries the number of the mouse truth.json says it lies on.
        let truth: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("truth.json")).unwrap())
                .unwrap();
        let named = truth["tumour_subjects"].as_array().unwrap();
        assert_eq!(named.len(), sim.truth.tumours.len());
        for (t, region) in sim.truth.tumours.iter().zip(regions_of_tumours(&out, &sim)) {
            let Some(i) = region else { continue };
            let r = &rec.regions[i];
            let want = named
                .iter()
                .find(|n| n["tumour"] == t.id)
                .expect("truth.json names every tumour's subject");
            assert_eq!(
                r.subject_index,
                Some(want["mouse"].as_u64().unwrap() as usize),
                "tumour {}: {r:?}",
                t.id
            );
            assert_eq!(
                r.subject_id.as_deref(),
                want["subject_id"].as_str(),
                "tumour {}",
                t.id
            );
            assert_eq!(want["subject_id"], numbers[t.mouse]);
            assert!(r.flags.is_empty());
            checked += 1;
        }
        // The imported ROIs (one per tumour, drawn around it) are placed too.
        let roi_ids: Vec<&Option<String>> = rec
            .regions
            .iter()
            .filter(|r| r.label.starts_with("ROI"))
            .map(|r| &r.subject_id)
            .collect();
        assert_eq!(roi_ids.len(), sim.truth.tumours.len());
        assert!(roi_ids.iter().all(|id| id.is_some()));
        assert_eq!(json["subjects"]["mice"][0]["subject_id"], "3466");
    }
    assert!(checked >= 8, "only {checked} tumours detected and checked");
}

#[test]
fn a_source_off_every_mouse_is_flagged() {
    let inst = Instrument::default();
    let spec = SceneSpec {
        seed: 9,
        stray_sources: 1,
        flux_range: (2.0e6, 2.0e7),
        ..hard_scene(9, 8)
    };
    let sim = simulate_acquisition(&inst, &spec);
    let strays = stray_sources(&spec, &sim.truth.mice, sim.luminescent_adu.dim().1);
    assert_eq!(strays.len(), 1, "the stage has room for a stray source");
    let tmp = tempfile::tempdir().unwrap();
    write::write_ivis(tmp.path(), &inst, &sim, true).unwrap();
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("truth.json")).unwrap())
            .unwrap();
    assert_eq!(truth["stray_sources"].as_array().unwrap().len(), 1);
    assert_eq!(
        truth["tumour_subjects"].as_array().unwrap().len(),
        sim.truth.tumours.len()
    );

    let (out, json) = process(tmp.path());
    let rec = &out.record;
    let s = &strays[0];
    let stray_region = rec
        .regions
        .iter()
        .filter(|r| !r.label.starts_with("ROI"))
        .min_by(|a, b| {
            let d = |r: &lumiq::record::RegionRecord| {
                (r.centroid_px[0] - s.centre_px[0]).hypot(r.centroid_px[1] - s.centre_px[1])
            };
            d(a).total_cmp(&d(b))
        })
        .expect("regions");
    assert!(
        (stray_region.centroid_px[0] - s.centre_px[0])
            .hypot(stray_region.centroid_px[1] - s.centre_px[1])
            < 2.0,
        "the stray source was detected: {stray_region:?} vs {s:?}"
    );
    assert_eq!(stray_region.subject_index, None);
    assert_eq!(stray_region.subject_id, None);
    assert_eq!(stray_region.flags, [QualityFlag::RegionOutsideSubjects]);
    assert!(rec.flags.contains(&QualityFlag::RegionOutsideSubjects));
    assert!(json["flags"]
        .as_array()
        .unwrap()
        .contains(&"region_outside_subjects".into()));
    // Only the stray is flagged: the tumours still carry their mouse's number.
    let flagged = rec.regions.iter().filter(|r| !r.flags.is_empty()).count();
    assert_eq!(flagged, 1);
    assert_eq!(rec.subjects.id_status, IdStatus::Applied);
}

#[test]
fn fewer_ids_than_mice_is_flagged_and_no_id_is_applied() {
    let inst = Instrument::default();
    let sim = simulate_acquisition(&inst, &hard_scene(12, 8));
    let tmp = tempfile::tempdir().unwrap();
    write::write_ivis(tmp.path(), &inst, &sim, true).unwrap();
    // The technician typed four animal numbers for five mice (the labels are in both
    // ClickInfo.txt and AnalyzedClickInfo.txt).
    let needle = b"3466, 3467, 3468, 3469, 3470";
    let mut edited_files = 0;
    for name in ["ClickInfo.txt", "AnalyzedClickInfo.txt"] {
        let path = tmp.path().join(name);
        let Ok(text) = std::fs::read(&path) else {
            continue;
        };
        let Some(at) = text.windows(needle.len()).position(|w| w == needle) else {
            continue;
        };
        let mut edited = text[..at].to_vec();
        edited.extend_from_slice(b"3466, 3467, 3468, 3469");
        edited.extend_from_slice(&text[at + needle.len()..]);
        std::fs::write(&path, edited).unwrap();
        edited_files += 1;
    }
    assert!(
        edited_files >= 1,
        "the animal numbers are in the click folder"
    );

    let (out, _) = process(tmp.path());
    let rec = &out.record;
    assert_eq!(rec.acquisition.subject_ids.len(), 4);
    assert_eq!(rec.subjects.count, 5);
    assert_eq!(rec.subjects.ids_in_metadata, 4);
    assert_eq!(rec.subjects.id_status, IdStatus::CountMismatch);
    assert!(rec.flags.contains(&QualityFlag::SubjectCountMismatch));
    assert!(rec.regions.iter().all(|r| r.subject_id.is_none()));
    assert!(rec.subjects.mice.iter().all(|m| m.subject_id.is_none()));
    // Where each region lies is still said.
    assert!(rec.regions.iter().any(|r| r.subject_index.is_some()));
}

#[test]
fn no_photograph_places_nothing_and_flags_nothing() {
    let inst = Instrument::default();
    let sim = simulate_acquisition(
        &inst,
        &SceneSpec {
            photograph: false,
            ..hard_scene(2, 8)
        },
    );
    let tmp = tempfile::tempdir().unwrap();
    write::write_ivis(tmp.path(), &inst, &sim, true).unwrap();
    let (out, _) = process(tmp.path());
    let rec = &out.record;
    assert_eq!(rec.subjects.id_status, IdStatus::NoPhotograph);
    assert_eq!(rec.subjects.count, 0);
    assert!(rec
        .regions
        .iter()
        .all(|r| r.subject_index.is_none() && r.flags.is_empty()));
    assert!(!rec.flags.contains(&QualityFlag::RegionOutsideSubjects));
    assert!(!rec.flags.contains(&QualityFlag::SubjectCountMismatch));
}

#[test]
fn the_simulate_command_writes_the_hard_scene() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("click");
    let out = Command::new(env!("CARGO_BIN_EXE_lumiq"))
        .args(["simulate", "--format", "ivis", "--seed", "4"])
        .args(["--touching-mice", "--tails", "--uneven-light", "0.6"])
        .args(["--stray-sources", "1", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("truth.json")).unwrap()).unwrap();
    assert_eq!(truth["spec"]["touching_mice"], true);
    assert_eq!(truth["spec"]["tails"], true);
    for feature in ["manifold", "dividers", "marks", "heads"] {
        assert_eq!(truth["spec"][feature], true, "{feature} is on by default");
    }
    assert_eq!(truth["subject_ids"][0], "3466");
    assert_eq!(truth["stray_sources"].as_array().unwrap().len(), 1);
    for ts in truth["tumour_subjects"].as_array().unwrap() {
        let mouse = ts["mouse"].as_u64().unwrap();
        assert_eq!(ts["subject_id"], (3466 + mouse).to_string());
    }

    let bad = Command::new(env!("CARGO_BIN_EXE_lumiq"))
        .args(["simulate", "--uneven-light", "1.5", "--out"])
        .arg(tmp.path().join("bad"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--uneven-light 1.5"));
}

#[test]
fn the_simulate_command_can_leave_the_apparatus_and_tails_out() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plain");
    let out = Command::new(env!("CARGO_BIN_EXE_lumiq"))
        .args([
            "simulate",
            "--seed",
            "4",
            "--plain-photo",
            "--no-tails",
            "--out",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("truth.json")).unwrap()).unwrap();
    for feature in ["manifold", "dividers", "marks", "heads", "tails"] {
        assert_eq!(truth["spec"][feature], false, "{feature}");
    }
    let both = Command::new(env!("CARGO_BIN_EXE_lumiq"))
        .args(["simulate", "--tails", "--no-tails", "--out"])
        .arg(tmp.path().join("both"))
        .output()
        .unwrap();
    assert!(!both.status.success(), "--tails and --no-tails conflict");
}
