//! Subjects end to end: the simulator's five-mouse photographs (touching pairs, tails,
//! uneven LED light, binnings 4 and 8, several seeds) → every mouse found, in left-to-right
//! order, every tumour placed on its own mouse; IVIS click folders → `Animal Number` ids in
//! the record in that order; a source off every mouse → flagged; fewer ids than mice →
//! flagged and no id applied.

mod common;

use std::path::Path;
use std::process::Command;

use lumiq::job;
use lumiq::process::subjects::{assign_subjects, locate_subjects, IdStatus, SubjectSettings};
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

#[test]
fn new_scene_options_leave_the_luminescent_frame_unchanged() {
    // Touching mice move the bodies (and their tumours), but tails and uneven light only
    // touch the photograph: the luminescent frame of a seed stays what it was.
    let inst = Instrument {
        sensor_px: 512,
        ..Instrument::default()
    };
    let base = SceneSpec {
        binning: 4,
        ..SceneSpec::default()
    };
    let plain = simulate_acquisition(&inst, &base);
    let styled = simulate_acquisition(
        &inst,
        &SceneSpec {
            tails: true,
            photo_unevenness: 0.6,
            ..base.clone()
        },
    );
    assert_eq!(plain.luminescent_adu, styled.luminescent_adu);
    assert_eq!(plain.truth.tumours, styled.truth.tumours);
    assert_ne!(plain.photograph_adu, styled.photograph_adu);
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

        // Every detected tumour carries the number of the mouse it lies on.
        for (t, region) in sim.truth.tumours.iter().zip(regions_of_tumours(&out, &sim)) {
            let Some(i) = region else { continue };
            let r = &rec.regions[i];
            assert_eq!(r.subject_index, Some(t.mouse), "tumour {}: {r:?}", t.id);
            assert_eq!(
                r.subject_id.as_deref(),
                Some(numbers[t.mouse].as_str()),
                "tumour {}",
                t.id
            );
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
