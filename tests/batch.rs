//! `lumiq batch` end to end on a lab's archive as it is found on a disk: click folders at
//! several depths (one under a folder whose name holds a comma and quotes), lumiq
//! acquisition folders (one with a comma in an ROI label, one with nothing to measure),
//! broken folders and unrelated files. The table is read back with a CSV reader and checked
//! row by row against `lumiq process` on the same folders.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn lumiq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lumiq"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("LUMIQ_CALIBRATION_DIR")
        .env_remove("LUMIQ_MODEL")
        .output()
        .expect("run lumiq")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn simulate(dir: &Path, extra: &[&str]) -> PathBuf {
    let mut args = vec!["simulate", "--out", s(dir)];
    args.extend_from_slice(extra);
    let out = lumiq(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.to_path_buf()
}

/// The file in `dir` whose name is `name` in any letter case.
fn find_ci(dir: &Path, name: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .eq_ignore_ascii_case(name)
        })
}

fn process_record(folder: &Path) -> Value {
    let out = lumiq(&["process", s(folder), "--compact"]);
    assert!(
        out.status.success(),
        "lumiq process {}: {}",
        folder.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
    common::assert_valid_record(&rec);
    rec
}

fn read_csv(path: &Path) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = r
        .records()
        .map(|rec| {
            let rec = rec.expect("every row parses");
            assert_eq!(rec.len(), header.len(), "ragged row {rec:?}");
            header
                .iter()
                .cloned()
                .zip(rec.iter().map(str::to_owned))
                .collect()
        })
        .collect();
    (header, rows)
}

fn f(row: &BTreeMap<String, String>, col: &str) -> f64 {
    row[col]
        .parse()
        .unwrap_or_else(|_| panic!("{col} = {:?} is not a number", row[col]))
}

/// Living Image's ROI measurement columns, under its names, in its order.
const LIVING_IMAGE_COLUMNS: [&str; 9] = [
    "Image Number",
    "ROI",
    "Image Layer",
    "Total Flux [p/s]",
    "Avg Radiance [p/s/cm²/sr]",
    "Stdev Radiance",
    "Min Radiance",
    "Max Radiance",
    "ROI Area [cm²]",
];

const COMMA_LABEL: &str = "ROI 1, left flank \"big\"";

#[test]
fn an_archive_gives_one_row_per_region_and_lists_the_broken_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("archive");
    let clicks = [
        simulate(
            &root.join("2022-01-05/SK20220105101500_001"),
            &["--format", "ivis", "--seed", "11", "--mice", "3"],
        ),
        simulate(
            &root.join("2022-01-07/plate 2/SK20220107093000_001"),
            &["--format", "ivis", "--seed", "12", "--mice", "2"],
        ),
        simulate(
            &root.join("study B, cage \"3\"/SK20220109110000_002"),
            &["--format", "ivis", "--seed", "13", "--mice", "1"],
        ),
    ];
    let with_rois = simulate(
        &root.join("lumiq/acq-rois"),
        &["--seed", "14", "--mice", "2", "--rois"],
    );
    // An ROI label with a comma and quotes, as labs write them.
    let meta_path = with_rois.join("acquisition.json");
    let mut meta: Value = serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap())
        .expect("acquisition.json");
    meta["rois"][0]["label"] = Value::from(COMMA_LABEL);
    std::fs::write(&meta_path, serde_json::to_string_pretty(&meta).unwrap()).unwrap();
    let empty = simulate(
        &root.join("lumiq/acq-empty"),
        &["--seed", "15", "--mice", "0", "--no-cosmic-rays"],
    );

    // Broken: a truncated luminescent frame; a click folder without its ClickInfo files.
    let truncated = simulate(
        &root.join("broken/SK20220111_truncated"),
        &["--format", "ivis", "--seed", "16", "--mice", "1"],
    );
    let frame = find_ci(&truncated, "luminescent.TIF").expect("a luminescent frame");
    let bytes = std::fs::read(&frame).unwrap();
    std::fs::write(&frame, &bytes[..bytes.len() / 3]).unwrap();
    let no_info = simulate(
        &root.join("broken/SK20220111_noinfo"),
        &["--format", "ivis", "--seed", "17", "--mice", "1"],
    );
    for name in ["ClickInfo.txt", "AnalyzedClickInfo.txt"] {
        if let Some(p) = find_ci(&no_info, name) {
            std::fs::remove_file(p).unwrap();
        }
    }
    // Unrelated files and folders.
    std::fs::create_dir_all(root.join("notes/plots")).unwrap();
    std::fs::write(
        root.join("notes/readme.txt"),
        "mouse 3466: day 2, weight 21 g",
    )
    .unwrap();
    std::fs::write(
        root.join("notes/plots/figure.png"),
        [0x89, b'P', b'N', b'G'],
    )
    .unwrap();

    let out_dir = tmp.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let table = out_dir.join("archive.csv");
    let out = lumiq(&["batch", s(&root), "--csv", s(&table)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "some folders failed: exit 1; stderr: {stderr}"
    );
    assert!(out.stdout.is_empty(), "batch prints nothing on stdout");

    // Only the two results are left in the output folder: no temporary file.
    let mut names: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["archive.csv", "archive.csv.errors.csv"]);

    // The errors: each broken folder once, its message naming the file at fault.
    let (err_header, errors) = read_csv(&out_dir.join("archive.csv.errors.csv"));
    assert_eq!(err_header, ["folder", "error"]);
    assert_eq!(errors.len(), 2, "{errors:?}");
    let error_of = |dir: &Path| -> String {
        errors
            .iter()
            .find(|e| Path::new(&e["folder"]) == dir)
            .unwrap_or_else(|| panic!("{} not listed in {errors:?}", dir.display()))["error"]
            .clone()
    };
    let truncated_error = error_of(&truncated);
    assert!(
        truncated_error.contains(&frame.file_name().unwrap().to_string_lossy().to_string()),
        "{truncated_error}"
    );
    assert!(truncated_error.contains("truncated"), "{truncated_error}");
    assert!(error_of(&no_info).contains("ClickInfo.txt"));
    // ... and each is shown on stderr as it happens.
    assert!(stderr.contains("SK20220111_truncated") && stderr.contains("SK20220111_noinfo"));

    // The table: Living Image's columns first, under its names.
    let (header, rows) = read_csv(&table);
    assert_eq!(header[..9], LIVING_IMAGE_COLUMNS);
    let good: Vec<&PathBuf> = clicks.iter().chain([&with_rois, &empty]).collect();
    let mut expected_rows = 0;
    for folder in &good {
        let rec = process_record(folder);
        let regions = rec["regions"].as_array().unwrap();
        let mine: Vec<&BTreeMap<String, String>> = rows
            .iter()
            .filter(|r| Path::new(&r["folder"]) == folder.as_path())
            .collect();
        assert_eq!(
            mine.len(),
            regions.len().max(1),
            "{}: one row per region, or one for none",
            folder.display()
        );
        expected_rows += mine.len();
        if *folder == &empty {
            assert!(regions.is_empty(), "no mouse, no ROI: nothing to measure");
        } else {
            assert!(!regions.is_empty(), "{}", folder.display());
        }
        let name = folder.file_name().unwrap().to_string_lossy();
        assert!(mine.iter().all(|r| r["Image Number"] == name));
        assert!(mine
            .iter()
            .all(|r| r["detector"] == rec["processing"]["detector"]));
        assert!(mine
            .iter()
            .all(|r| r["acquired_at"] == rec["acquired_at"].as_str().unwrap()));
        if regions.is_empty() {
            let r = mine[0];
            assert_eq!(r["region_id"], "");
            assert_eq!(r["ROI"], "");
            assert_eq!(r["Total Flux [p/s]"], "");
            assert!(r["quality_flags"].split(';').any(|f| f == "no_detections"));
            continue;
        }
        for region in regions {
            let id = region["region_id"].as_u64().unwrap().to_string();
            let row = mine
                .iter()
                .find(|r| r["region_id"] == id)
                .unwrap_or_else(|| panic!("{}: no row for region {id}", folder.display()));
            assert_eq!(row["ROI"], region["label"].as_str().unwrap());
            assert_eq!(row["Image Layer"], "Luminescent");
            // Living Image's Total Flux is the gross flux: the same number `lumiq process`
            // prints for the same folder.
            let gross = region["gross_total_flux"]["value"].as_f64().unwrap();
            assert_eq!(f(row, "Total Flux [p/s]"), gross, "{}", folder.display());
            assert_eq!(
                f(row, "net_flux_p_s"),
                region["total_flux"]["value"].as_f64().unwrap()
            );
            assert_eq!(
                f(row, "net_flux_sigma_p_s"),
                region["total_flux"]["uncertainty"].as_f64().unwrap()
            );
            assert_eq!(
                f(row, "ROI Area [cm²]"),
                region["area"]["value"].as_f64().unwrap()
            );
            let stats = &region["gross_radiance"];
            for (col, key) in [
                ("Avg Radiance [p/s/cm²/sr]", "mean"),
                ("Stdev Radiance", "stdev"),
                ("Min Radiance", "min"),
                ("Max Radiance", "max"),
            ] {
                assert_eq!(f(row, col), stats[key].as_f64().unwrap(), "{col}");
            }
            // The average radiance is the gross flux spread over the area and 4π sr.
            let avg =
                gross / (4.0 * std::f64::consts::PI * region["area"]["value"].as_f64().unwrap());
            assert!((f(row, "Avg Radiance [p/s/cm²/sr]") - avg).abs() <= 1e-6 * avg.abs());
            assert!(f(row, "Min Radiance") <= f(row, "Max Radiance"));
        }
    }
    assert_eq!(
        rows.len(),
        expected_rows,
        "no row from the broken or unrelated folders"
    );
    // Detected tumours and imported ROIs alike.
    for source in ["detected", "imported"] {
        assert!(
            rows.iter().any(|r| r["region_source"] == source),
            "{source}"
        );
    }
    // Quoting: a label and a folder name with commas and quotes read back whole.
    assert!(rows.iter().any(|r| r["ROI"] == COMMA_LABEL));
    assert!(rows
        .iter()
        .any(|r| r["folder"].contains("study B, cage \"3\"")));
    // Click folders carry the simulated Animal Numbers: the subject ids reach the table.
    assert!(rows.iter().any(|r| r["subject_id"] == "3466"));
}

#[test]
fn a_clean_archive_exits_zero_and_replaces_an_old_error_list() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("archive");
    simulate(
        &root.join("SK20220105101500_001"),
        &["--format", "ivis", "--seed", "21", "--mice", "1"],
    );
    simulate(&root.join("acq"), &["--seed", "22", "--mice", "1"]);
    let table = tmp.path().join("t.csv");
    let errors = tmp.path().join("t.csv.errors.csv");
    std::fs::write(&errors, "folder,error\nold,stale failure\n").unwrap();
    let set = Path::new(env!("CARGO_MANIFEST_DIR")).join("calibration/sim-ivis-01");
    // Run from elsewhere than the repository: the lumiq folder's calibration set comes from
    // --calibration alone.
    let batch = |extra: &[&str]| -> Output {
        let mut args = vec![
            "batch",
            s(&root),
            "--csv",
            s(&table),
            "--detector",
            "classical",
        ];
        args.extend_from_slice(extra);
        Command::new(env!("CARGO_BIN_EXE_lumiq"))
            .args(&args)
            .current_dir(tmp.path())
            .env_remove("LUMIQ_CALIBRATION_DIR")
            .output()
            .expect("run lumiq")
    };
    let out = batch(&["--calibration", s(&set)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("ignored"), "{stderr}");
    let (_, rows) = read_csv(&table);
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r["detector"] == "classical"));
    assert!(rows.iter().any(|r| r["Image Number"] == "acq"));
    assert!(rows
        .iter()
        .any(|r| r["Image Number"] == "SK20220105101500_001"));
    assert_eq!(std::fs::read_to_string(&errors).unwrap(), "folder,error\n");

    // Without it, the lumiq folder fails (named, with the fix) and the click folder is
    // still quantified.
    let out = batch(&[]);
    assert_eq!(out.status.code(), Some(1));
    let (_, failed) = read_csv(&errors);
    assert_eq!(failed.len(), 1);
    assert_eq!(Path::new(&failed[0]["folder"]), root.join("acq"));
    assert!(failed[0]["error"].contains("--calibration"), "{failed:?}");
    let (_, rows) = read_csv(&table);
    assert!(rows
        .iter()
        .all(|r| r["Image Number"] == "SK20220105101500_001"));
    assert!(!rows.is_empty());
}

#[test]
fn nothing_found_or_no_such_folder_exits_two_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let bare = tmp.path().join("bare");
    std::fs::create_dir_all(bare.join("notes")).unwrap();
    std::fs::write(bare.join("notes/readme.txt"), "nothing here").unwrap();
    let table = tmp.path().join("t.csv");
    for (dir, needle) in [
        (bare.clone(), "no IVIS click folder"),
        (tmp.path().join("missing"), "not a folder"),
    ] {
        let out = lumiq(&[
            "batch",
            s(&dir),
            "--csv",
            s(&table),
            "--detector",
            "classical",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        let line = stderr
            .lines()
            .find(|l| l.starts_with("lumiq: error"))
            .unwrap_or_else(|| panic!("an error line: {stderr}"));
        assert!(line.contains(s(&dir)) && line.contains(needle), "{line}");
        assert!(!table.exists());
        assert!(!tmp.path().join("t.csv.errors.csv").exists());
    }
}
