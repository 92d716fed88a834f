//! The daily-QC workflow end to end, as a lab runs it with the `lumiq` binary: a simulated
//! study (`lumiq simulate --study`), `lumiq qc` on each day's image of the reference source,
//! `lumiq process --qc-history` on one frame, and `lumiq trend` over the study; and a QC
//! that cannot see its source.

mod common;

use std::path::Path;

use serde_json::Value;

use common::lumiq;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn simulate_study(dir: &Path, days: &str) {
    let out = lumiq(&[
        "simulate",
        "--study",
        "--days",
        days,
        "--seed",
        "3",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn qc_process_and_trend_on_a_simulated_study() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("study");
    simulate_study(&dir, "3");
    let config = dir.join("lumiq.toml");
    let qc_dirs: Vec<String> = (0..3)
        .map(|d| dir.join(format!("qc/day{d:02}")).display().to_string())
        .collect();
    let mut args = vec!["qc", "--config", config.to_str().unwrap()];
    args.extend(qc_dirs.iter().map(String::as_str));
    let out = lumiq(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let results: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 3);
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("study.json")).unwrap()).unwrap();
    for (d, r) in results.iter().enumerate() {
        assert_eq!(r["verdict"], "pass");
        let k = r["response_factor"]["value"].as_f64().unwrap();
        let truth_k = truth["days"][d]["response"].as_f64().unwrap();
        assert!(
            (k / truth_k - 1.0).abs() < 0.01,
            "day {d}: {k} vs {truth_k}"
        );
    }
    assert!(text(&out.stderr).contains("QC pass: response factor"));
    let history = dir.join("state/qc/history.jsonl");
    assert_eq!(
        std::fs::read_to_string(&history).unwrap().lines().count(),
        3
    );

    // One frame of day 1, processed with the history: corrected by day 1's QC.
    let frame = dir.join("frames/day01/frame-004");
    let out = lumiq(&[
        "process",
        frame.to_str().unwrap(),
        "--compact",
        "--qc-history",
        history.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rec: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(rec["qc"]["state"], "current");
    assert_eq!(rec["qc"]["qc_id"], results[1]["qc_id"]);
    let k = rec["qc"]["response_factor"]["value"].as_f64().unwrap();
    let region = &rec["regions"][0];
    let raw = region["total_flux"]["value"].as_f64().unwrap();
    let corrected = region["qc_corrected_flux"]["value"].as_f64().unwrap();
    assert!((corrected * k / raw - 1.0).abs() < 1e-9);
    // Without the history: nothing configured, nothing corrected.
    let out = lumiq(&["process", frame.to_str().unwrap(), "--compact"]);
    let plain: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(plain["qc"]["state"], "not_configured");
    assert!(plain["regions"][0].get("qc_corrected_flux").is_none());

    // Day 2's series as one sequence record: every mouse's tumour rose and fell.
    let out = lumiq(&[
        "kinetics",
        dir.join("frames/day02").to_str().unwrap(),
        "--qc-history",
        history.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let seq: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(seq["schema"], "lumiq.sequence");
    assert_eq!(seq["frames"].as_array().unwrap().len(), 9);
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/sequence.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(&seq).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let tumours: Vec<&Value> = seq["regions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["frames_found"] == 9 && !g["subject_id"].is_null())
        .collect();
    assert_eq!(tumours.len(), 5, "{seq}");
    for g in tumours {
        assert_eq!(g["peak_covered"], true, "{g}");
        assert!(!g["qc_corrected_peak_flux"].is_null());
        let tp = g["time_to_peak_min"].as_f64().unwrap();
        assert!((5.0..=11.0).contains(&tp), "{tp}");
    }

    // The trend over the three days: constant tumours steady, growing ones at 0.2/day.
    let report = tmp.path().join("report");
    let out = lumiq(&[
        "trend",
        dir.join("frames").to_str().unwrap(),
        "--qc-history",
        history.to_str().unwrap(),
        "--out",
        report.to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("27 acquisitions"), "{stderr}");
    assert!(report.join("trend.png").is_file());
    let mut rd = csv::Reader::from_path(report.join("tumours.csv")).unwrap();
    let headers = rd.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let mut growing = 0;
    let mut constant = 0;
    for row in rd.records() {
        let row = row.unwrap();
        if row[col("sessions")] != *"3" {
            continue;
        }
        let g: f64 = row[col("growth_per_day")].parse().unwrap();
        let subject = &row[col("subject_id")];
        // The last two of five mice grow (StudySpec's default).
        if subject == "M104" || subject == "M105" {
            assert!((g / 0.2 - 1.0).abs() < 0.1, "{subject}: {g}");
            growing += 1;
        } else {
            assert!(g.abs() < 0.02, "{subject}: {g}");
            constant += 1;
        }
    }
    assert_eq!((growing, constant), (2, 3));
}

#[test]
fn a_qc_that_cannot_see_its_source_is_kept_as_invalid_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("study");
    simulate_study(&dir, "1");
    // The source is described 6 cm away from where it sits.
    let config = dir.join("lumiq.toml");
    let text_cfg = std::fs::read_to_string(&config).unwrap().replace(
        "source_centre_cm = [11.2, 11.2]",
        "source_centre_cm = [5.2, 11.2]",
    );
    std::fs::write(&config, text_cfg).unwrap();
    let out = lumiq(&[
        "qc",
        "--config",
        config.to_str().unwrap(),
        dir.join("qc/day00").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("QC invalid") && stderr.contains("source_centre_cm"),
        "{stderr}"
    );
    let history = std::fs::read_to_string(dir.join("state/qc/history.jsonl")).unwrap();
    let r: Value = serde_json::from_str(history.lines().next().unwrap()).unwrap();
    assert_eq!(r["verdict"], "invalid");
    assert!(r["response_factor"].is_null());
}
