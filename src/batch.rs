//! `lumiq batch`: a lab's archive in one table. Walks folders recursively, quantifies every
//! IVIS click folder and lumiq acquisition folder it finds through the same job as `lumiq
//! process` ([`crate::job`]), and writes one CSV row per region — Living Image's own ROI
//! columns first, then lumiq's — plus a second CSV listing every folder that failed.
//! Specified, column by column, in `docs/batch.md`.
//!
//! Owns: finding acquisitions in a tree ([`discover`]), turning a record into rows
//! ([`rows`]), the atomic writing of both files, and the count of what happened
//! ([`Summary`]). Does not own: reading folders or measuring (that is [`crate::job`] and the
//! core), flag parsing, the progress bar's look or the exit code (that is [`crate::cli`]).

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;

use crate::errors::{one_line, FileError};
use crate::formats::{acquisition_folder, ivis};
use crate::job::{self, JobError};
use crate::process::{ProcessingParams, QualityFlag, RegionSource, SegmentationModel};
use crate::record::{MeasurementRecord, RadianceStatsRecord};

/// The CSV's header. The first nine are Living Image's ROI measurement columns under
/// Living Image's names; the rest are lumiq's (record field names, units in the name).
pub const COLUMNS: [&str; 27] = [
    "Image Number",
    "ROI",
    "Image Layer",
    "Total Flux [p/s]",
    "Avg Radiance [p/s/cm²/sr]",
    "Stdev Radiance",
    "Min Radiance",
    "Max Radiance",
    "ROI Area [cm²]",
    "folder",
    "region_id",
    "region_source",
    "net_flux_p_s",
    "net_flux_sigma_p_s",
    "gross_flux_sigma_p_s",
    "snr",
    "saturated",
    "subject_id",
    "minutes_since_injection",
    "quality_flags",
    "measurement_id",
    "detector",
    "acquired_at",
    "qc_corrected_flux_p_s",
    "qc_corrected_flux_sigma_p_s",
    "qc_state",
    "qc_response_factor",
];

/// Header of the errors file.
pub const ERROR_COLUMNS: [&str; 2] = ["folder", "error"];

/// The `Image Layer` lumiq measures on: the luminescent image.
pub const IMAGE_LAYER: &str = "Luminescent";

/// A folder that could not be quantified, and why (one line).
#[derive(Debug, Clone, PartialEq)]
pub struct FolderError {
    pub folder: PathBuf,
    pub error: String,
}

/// Why a batch wrote nothing: its roots, or one of its two files. Messages name the
/// folder or file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("{}: not a folder; pass folders that hold IVIS click folders or lumiq acquisition folders", .0.display())]
    NotAFolder(PathBuf),
    /// The roots, joined by ", ".
    #[error("{0}: no IVIS click folder (ClickInfo.txt or AnalyzedClickInfo.txt) and no lumiq acquisition folder (acquisition.json) found below; point lumiq batch at the folders that hold them")]
    NothingFound(String),
    #[error("{}: not a file name", .0.display())]
    NotAFileName(PathBuf),
    #[error("{}: cannot create the output file (as {}); check that its folder exists and is writable", dest.display(), tmp.display())]
    Create {
        dest: PathBuf,
        tmp: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A step of writing a file failed, e.g. "cannot sync to disk".
    #[error(transparent)]
    Io(#[from] FileError),
    #[error("{}: cannot write", path.display())]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error(transparent)]
    Flush(std::io::Error),
    #[error("cannot rename {} to {}", tmp.display(), dest.display())]
    Rename {
        tmp: PathBuf,
        dest: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why one folder could not be quantified; listed in the errors file as one line.
#[derive(Debug, thiserror::Error)]
enum FolderFailure {
    #[error(transparent)]
    Load(JobError),
    /// The folder, then why.
    #[error("{}", .0.display())]
    Run(PathBuf, #[source] JobError),
    #[error("{}: internal error while quantifying ({what}); please report it with this folder", path.display())]
    Panic { path: PathBuf, what: String },
}

/// What a walk found: acquisitions to quantify and folders that are already known to fail.
#[derive(Debug, Default)]
pub struct Discovery {
    /// Click folders and lumiq acquisition folders, in walk order (names sorted).
    pub acquisitions: Vec<PathBuf>,
    /// Folders holding a luminescent frame without the metadata that makes it readable,
    /// and folders that could not be listed.
    pub problems: Vec<FolderError>,
}

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Acquisition folders found (quantified or failed) plus folders that failed on sight.
    pub folders: usize,
    pub processed: usize,
    pub failed: usize,
    pub rows: usize,
}

/// Walk `roots` and list every acquisition folder below them (a root may itself be one).
/// An acquisition folder is not searched further; folders whose names start with `.` are
/// skipped (the daemon's `archive/.staging`, system folders); each real folder is visited
/// once, however many links or overlapping roots lead to it.
pub fn discover(roots: &[PathBuf]) -> Discovery {
    let mut out = Discovery::default();
    let mut visited = HashSet::new();
    for root in roots {
        walk(root, &mut visited, &mut out);
    }
    out
}

fn walk(dir: &Path, visited: &mut HashSet<PathBuf>, out: &mut Discovery) {
    let real = match std::fs::canonicalize(dir) {
        Ok(p) => p,
        Err(e) => {
            out.problems.push(FolderError {
                folder: dir.to_path_buf(),
                error: format!("cannot open the folder: {e}; check that it exists and is readable"),
            });
            return;
        }
    };
    if !visited.insert(real) {
        return;
    }
    if acquisition_folder::is_qc_acquisition(dir) {
        // The reference source's image: its result is in the QC history, not a record.
        return;
    }
    if acquisition_folder::is_acquisition_folder(dir) || ivis::is_click_folder(dir) {
        out.acquisitions.push(dir.to_path_buf());
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            out.problems.push(FolderError {
                folder: dir.to_path_buf(),
                error: format!("cannot list the folder: {e}; check its permissions"),
            });
            return;
        }
    };
    let mut subdirs = Vec::new();
    let mut frame = None;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        // `metadata` follows links: a linked folder is walked (once, see `visited`).
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if !name.starts_with('.') {
                subdirs.push(path);
            }
        } else if name.eq_ignore_ascii_case("luminescent.tif")
            || name.eq_ignore_ascii_case("luminescent.tiff")
        {
            frame = Some(name.into_owned());
        }
    }
    if let Some(frame) = frame {
        // Raw frames without their metadata: an acquisition nobody can read. Say so rather
        // than pass over it.
        out.problems.push(FolderError {
            folder: dir.to_path_buf(),
            error: format!(
                "{}: holds {frame} but no ClickInfo.txt, AnalyzedClickInfo.txt or acquisition.json; \
                 copy the click folder's ClickInfo.txt (or the acquisition's acquisition.json) \
                 from the instrument again",
                dir.display()
            ),
        });
    }
    subdirs.sort();
    for sub in subdirs {
        walk(&sub, visited, out);
    }
}

/// A number as the CSV shows it: the shortest text that reads back as the same f64;
/// empty when it is not finite.
fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        String::new()
    }
}

fn flag_name(f: &QualityFlag) -> String {
    serde_json::to_value(f)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{f:?}"))
}

fn joined_flags<'a>(flags: impl Iterator<Item = &'a QualityFlag>) -> String {
    let mut names: Vec<String> = flags.map(flag_name).collect();
    names.sort();
    names.dedup();
    names.join(";")
}

/// One row of the table, by name; [`Row::cells`] puts it in [`COLUMNS`] order.
#[derive(Debug, Clone, Default)]
struct Row {
    image_number: String,
    roi: String,
    image_layer: String,
    total_flux_p_s: String,
    avg_radiance: String,
    stdev_radiance: String,
    min_radiance: String,
    max_radiance: String,
    area_cm2: String,
    folder: String,
    region_id: String,
    region_source: String,
    net_flux_p_s: String,
    net_flux_sigma_p_s: String,
    gross_flux_sigma_p_s: String,
    snr: String,
    saturated: String,
    subject_id: String,
    minutes_since_injection: String,
    quality_flags: String,
    measurement_id: String,
    detector: String,
    acquired_at: String,
    qc_corrected_flux_p_s: String,
    qc_corrected_flux_sigma_p_s: String,
    qc_state: String,
    qc_response_factor: String,
}

impl Row {
    fn cells(self) -> Vec<String> {
        vec![
            self.image_number,
            self.roi,
            self.image_layer,
            self.total_flux_p_s,
            self.avg_radiance,
            self.stdev_radiance,
            self.min_radiance,
            self.max_radiance,
            self.area_cm2,
            self.folder,
            self.region_id,
            self.region_source,
            self.net_flux_p_s,
            self.net_flux_sigma_p_s,
            self.gross_flux_sigma_p_s,
            self.snr,
            self.saturated,
            self.subject_id,
            self.minutes_since_injection,
            self.quality_flags,
            self.measurement_id,
            self.detector,
            self.acquired_at,
            self.qc_corrected_flux_p_s,
            self.qc_corrected_flux_sigma_p_s,
            self.qc_state,
            self.qc_response_factor,
        ]
    }
}

/// The rows of one acquisition, in [`COLUMNS`] order: one per region, or a single row with
/// every region column empty when it has none (so a processed folder always shows).
pub fn rows(folder: &Path, record: &MeasurementRecord) -> Vec<Vec<String>> {
    let acquisition = Row {
        image_number: folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| folder.display().to_string()),
        folder: folder.display().to_string(),
        minutes_since_injection: record
            .acquisition
            .minutes_since_injection
            .map(num)
            .unwrap_or_default(),
        quality_flags: joined_flags(record.flags.iter()),
        measurement_id: record.measurement_id.to_string(),
        detector: record.processing.detector.clone(),
        acquired_at: record.acquired_at.clone(),
        qc_state: serde_json::to_value(record.qc.state)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        qc_response_factor: record
            .qc
            .response_factor
            .map(|k| num(k.value))
            .unwrap_or_default(),
        ..Row::default()
    };
    if record.regions.is_empty() {
        return vec![acquisition.cells()];
    }
    record
        .regions
        .iter()
        .map(|g| {
            let stat = |f: fn(&RadianceStatsRecord) -> f64| {
                g.gross_radiance
                    .as_ref()
                    .map(|s| num(f(s)))
                    .unwrap_or_default()
            };
            Row {
                roi: g.label.clone(),
                image_layer: IMAGE_LAYER.into(),
                total_flux_p_s: num(g.gross_total_flux.value),
                avg_radiance: stat(|s| s.mean),
                stdev_radiance: stat(|s| s.stdev),
                min_radiance: stat(|s| s.min),
                max_radiance: stat(|s| s.max),
                area_cm2: num(g.area.value),
                region_id: g.region_id.to_string(),
                region_source: match g.source {
                    RegionSource::Detected => "detected",
                    RegionSource::Imported => "imported",
                }
                .into(),
                net_flux_p_s: num(g.total_flux.value),
                net_flux_sigma_p_s: num(g.total_flux.uncertainty),
                gross_flux_sigma_p_s: num(g.gross_total_flux.uncertainty),
                snr: num(g.snr),
                saturated: g.saturated.to_string(),
                subject_id: g.subject_id.clone().unwrap_or_default(),
                quality_flags: joined_flags(record.flags.iter().chain(&g.flags)),
                qc_corrected_flux_p_s: g
                    .qc_corrected_flux
                    .as_ref()
                    .map(|c| num(c.value))
                    .unwrap_or_default(),
                qc_corrected_flux_sigma_p_s: g
                    .qc_corrected_flux
                    .as_ref()
                    .map(|c| num(c.uncertainty))
                    .unwrap_or_default(),
                ..acquisition.clone()
            }
            .cells()
        })
        .collect()
}

/// Where the errors of a run are listed: `FILE.errors.csv` beside `FILE`.
pub fn errors_path(csv: &Path) -> PathBuf {
    let mut name = csv.file_name().unwrap_or_default().to_os_string();
    name.push(".errors.csv");
    csv.with_file_name(name)
}

/// A CSV written under a temporary name in the destination's folder and renamed into place
/// only when complete and synced: a reader never sees a half-written table under the
/// final name. Dropped unfinished, the temporary file is removed.
struct AtomicCsv {
    tmp: PathBuf,
    dest: PathBuf,
    writer: Option<csv::Writer<File>>,
}

impl AtomicCsv {
    fn create(dest: &Path, header: &[&str]) -> Result<AtomicCsv, BatchError> {
        let name = dest
            .file_name()
            .ok_or_else(|| BatchError::NotAFileName(dest.to_path_buf()))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".partial-{}", std::process::id()));
        let tmp = dest.with_file_name(tmp_name);
        let file = File::create(&tmp).map_err(|source| BatchError::Create {
            dest: dest.to_path_buf(),
            tmp: tmp.clone(),
            source,
        })?;
        let mut out = AtomicCsv {
            tmp,
            dest: dest.to_path_buf(),
            writer: Some(csv::Writer::from_writer(file)),
        };
        out.write(header)?;
        Ok(out)
    }

    fn write<S: AsRef<[u8]>>(&mut self, row: &[S]) -> Result<(), BatchError> {
        let w = self.writer.as_mut().expect("written before commit");
        w.write_record(row).map_err(|source| BatchError::Csv {
            path: self.tmp.clone(),
            source,
        })
    }

    fn commit(mut self) -> Result<(), BatchError> {
        let w = self.writer.take().expect("committed once");
        let mut file = w
            .into_inner()
            .map_err(|e| e.into_error())
            .map_err(FileError::at(&self.tmp, "cannot write"))?;
        file.flush().map_err(BatchError::Flush)?;
        file.sync_all()
            .map_err(FileError::at(&self.tmp, "cannot sync to disk"))?;
        std::fs::rename(&self.tmp, &self.dest).map_err(|source| BatchError::Rename {
            tmp: self.tmp.clone(),
            dest: self.dest.clone(),
            source,
        })?;
        if let Some(parent) = self.dest.parent() {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            // The rename is durable once the folder's entry is on disk.
            if let Ok(d) = File::open(parent) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for AtomicCsv {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// What a batch run needs.
pub struct BatchOptions<'a> {
    pub roots: &'a [PathBuf],
    pub csv: &'a Path,
    /// Calibration set for lumiq folders (as `lumiq process --calibration`).
    pub calibration: Option<&'a Path>,
    /// The lab's background-click library for IVIS folders (as `lumiq process
    /// --ivis-backgrounds`).
    pub ivis_backgrounds: Option<&'a Path>,
    pub params: &'a ProcessingParams,
    pub model: Option<&'a dyn SegmentationModel>,
    /// The QC history (as `lumiq process --qc-history`): each record corrected by the QC
    /// of its acquisition time.
    pub qc_history: Option<&'a [crate::process::qc::QcResult]>,
}

/// Quantify one folder as `lumiq process` does; the error, on one line, is what `lumiq
/// process` would print.
fn quantify_folder(path: &Path, opts: &BatchOptions) -> Result<MeasurementRecord, FolderFailure> {
    let result = panic::catch_unwind(AssertUnwindSafe(
        || -> Result<MeasurementRecord, FolderFailure> {
            // Design: `--calibration` concerns lumiq folders only; handing it to the reader of a
            // click folder would only repeat, folder after folder, that it is ignored there.
            let calibration = opts
                .calibration
                .filter(|_| acquisition_folder::is_acquisition_folder(path));
            let input = job::load_with(
                path,
                &job::Sources {
                    calibration_dir: calibration,
                    ivis_backgrounds: opts.ivis_backgrounds,
                },
            )
            .map_err(FolderFailure::Load)?;
            let acquired_at = input.acquisition.meta.acquired_at;
            let mut out = job::run_with_model(input, opts.params, opts.model)
                .map_err(|e| FolderFailure::Run(path.to_path_buf(), e))?;
            if let Some(history) = opts.qc_history {
                let selection =
                    crate::process::qc::select(history, &out.record.instrument_id, acquired_at);
                crate::record::apply_qc(&mut out.record, &selection);
            }
            Ok(out.record)
        },
    ));
    match result {
        Ok(Ok(record)) => Ok(record),
        Ok(Err(e)) => Err(e),
        Err(p) => {
            let what = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            Err(FolderFailure::Panic {
                path: path.to_path_buf(),
                what,
            })
        }
    }
}

/// Run a batch: discover, quantify every folder, write `opts.csv` and its errors file.
/// Failures of single folders are listed (and shown on stderr through `progress`), not
/// returned; an `Err` means no result was written (no folder found, a root that is not a
/// folder, an output that cannot be written).
pub fn run(opts: &BatchOptions, progress: &ProgressBar) -> Result<Summary, BatchError> {
    for root in opts.roots {
        if !root.is_dir() {
            return Err(BatchError::NotAFolder(root.clone()));
        }
    }
    let found = discover(opts.roots);
    if found.acquisitions.is_empty() && found.problems.is_empty() {
        let roots: Vec<String> = opts.roots.iter().map(|r| r.display().to_string()).collect();
        return Err(BatchError::NothingFound(roots.join(", ")));
    }
    let errors_file = errors_path(opts.csv);
    let mut table = AtomicCsv::create(opts.csv, &COLUMNS)?;
    let mut errors = AtomicCsv::create(&errors_file, &ERROR_COLUMNS)?;
    let mut summary = Summary {
        folders: found.acquisitions.len() + found.problems.len(),
        ..Summary::default()
    };
    let fail = |e: FolderError, errors: &mut AtomicCsv| -> Result<(), BatchError> {
        progress.suspend(|| eprintln!("lumiq: failed: {}", e.error));
        errors.write(&[e.folder.display().to_string(), e.error])
    };
    for problem in found.problems {
        summary.failed += 1;
        fail(problem, &mut errors)?;
    }
    progress.set_length(found.acquisitions.len() as u64);
    for path in &found.acquisitions {
        progress.set_message(path.display().to_string());
        match quantify_folder(path, opts) {
            Ok(record) => {
                for row in rows(path, &record) {
                    table.write(&row)?;
                    summary.rows += 1;
                }
                summary.processed += 1;
            }
            Err(e) => {
                summary.failed += 1;
                fail(
                    FolderError {
                        folder: path.clone(),
                        error: one_line(&e),
                    },
                    &mut errors,
                )?;
            }
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    // The errors file first: once the table is in place, the list beside it is this run's.
    errors.commit()?;
    table.commit()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    #[test]
    fn discovery_finds_click_and_lumiq_folders_and_lists_unreadable_frames() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        touch(&r.join("2022/study a/SK20220105_001/ClickInfo.txt"));
        touch(&r.join("2022/study a/SK20220105_002/analyzedclickinfo.txt"));
        touch(&r.join("2022/study a/SK20220105_002/nested/ClickInfo.txt"));
        touch(&r.join("lumiq/acq1/acquisition.json"));
        touch(&r.join("orphan/luminescent.TIF"));
        touch(&r.join("notes/readme.txt"));
        touch(&r.join(".staging/x/acquisition.json"));
        touch(&r.join("lumiq/qc1/acquisition.json"));
        touch(&r.join("lumiq/qc1/.qc-acquisition"));
        let found = discover(&[r.to_path_buf(), r.join("lumiq")]);
        let rel: Vec<String> = found
            .acquisitions
            .iter()
            .map(|p| p.strip_prefix(r).unwrap().display().to_string())
            .collect();
        // Sorted, not searched below an acquisition, hidden folders skipped, each once.
        assert_eq!(
            rel,
            [
                "2022/study a/SK20220105_001",
                "2022/study a/SK20220105_002",
                "lumiq/acq1"
            ]
        );
        assert_eq!(found.problems.len(), 1);
        assert_eq!(found.problems[0].folder, r.join("orphan"));
        assert!(found.problems[0].error.contains("luminescent.TIF"));
        assert!(found.problems[0].error.contains("ClickInfo.txt"));
    }

    #[test]
    fn one_row_per_region_living_image_columns_gross() {
        let mut rec = crate::delivery::synthetic::record("sim", 3);
        rec.regions[1].label = "ROI 2, left flank \"a\"".into();
        let folder = Path::new("/archive/SK20220105_001");
        let rows = rows(folder, &rec);
        assert_eq!(rows.len(), rec.regions.len());
        let col = |name: &str| COLUMNS.iter().position(|c| *c == name).unwrap();
        for (row, region) in rows.iter().zip(&rec.regions) {
            assert_eq!(row.len(), COLUMNS.len());
            assert_eq!(row[col("Image Number")], "SK20220105_001");
            assert_eq!(row[col("ROI")], region.label);
            let total: f64 = row[col("Total Flux [p/s]")].parse().unwrap();
            assert_eq!(total, region.gross_total_flux.value);
            let net: f64 = row[col("net_flux_p_s")].parse().unwrap();
            assert_eq!(net, region.total_flux.value);
            let max: f64 = row[col("Max Radiance")].parse().unwrap();
            assert_eq!(max, region.gross_radiance.as_ref().unwrap().max);
            assert_eq!(row[col("minutes_since_injection")], "10");
            assert_eq!(row[col("measurement_id")], rec.measurement_id.to_string());
        }
        // A label with a comma and quotes survives a CSV round trip.
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&rows[1]).unwrap();
        let bytes = w.into_inner().unwrap();
        let back = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(bytes.as_slice())
            .records()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(&back[col("ROI")], "ROI 2, left flank \"a\"");
    }

    #[test]
    fn qc_columns_carry_the_corrected_flux_of_the_applied_qc() {
        let mut rec = crate::delivery::synthetic::record("sim", 3);
        let col = |name: &str| COLUMNS.iter().position(|c| *c == name).unwrap();
        let plain = rows(Path::new("/a/1"), &rec);
        assert_eq!(plain[0][col("qc_state")], "not_configured");
        assert_eq!(plain[0][col("qc_corrected_flux_p_s")], "");
        let at = chrono::DateTime::parse_from_rfc3339(&rec.acquired_at)
            .unwrap()
            .with_timezone(&chrono::Utc);
        let history = [crate::process::qc::sample_result(
            "qc-1",
            &rec.instrument_id,
            at - chrono::Duration::hours(1),
            crate::process::qc::QcVerdict::Pass,
            0.8,
        )];
        let id = rec.instrument_id.clone();
        crate::record::apply_qc(&mut rec, &crate::process::qc::select(&history, &id, at));
        for (row, region) in rows(Path::new("/a/1"), &rec).iter().zip(&rec.regions) {
            assert_eq!(row[col("qc_state")], "current");
            assert_eq!(row[col("qc_response_factor")], "0.8");
            let c: f64 = row[col("qc_corrected_flux_p_s")].parse().unwrap();
            assert!((c - region.total_flux.value / 0.8).abs() < 1e-6 * c);
        }
    }

    #[test]
    fn an_acquisition_without_regions_still_gets_one_row() {
        let mut rec = crate::delivery::synthetic::record("sim", 1);
        rec.regions.clear();
        rec.flags = vec![QualityFlag::NoDetections, QualityFlag::CosmicRaysRemoved];
        rec.acquisition.minutes_since_injection = None;
        let rows = rows(Path::new("acq"), &rec);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        let col = |name: &str| COLUMNS.iter().position(|c| *c == name).unwrap();
        assert_eq!(r[col("Image Number")], "acq");
        for empty in ["ROI", "Image Layer", "Total Flux [p/s]", "region_id", "snr"] {
            assert_eq!(r[col(empty)], "", "{empty}");
        }
        assert_eq!(r[col("minutes_since_injection")], "");
        assert_eq!(r[col("quality_flags")], "cosmic_rays_removed;no_detections");
        assert_eq!(r[col("detector")], rec.processing.detector);
    }

    #[test]
    fn errors_file_sits_beside_the_table() {
        assert_eq!(
            errors_path(Path::new("/data/out/archive.csv")),
            Path::new("/data/out/archive.csv.errors.csv")
        );
    }

    #[test]
    fn numbers_read_back_exactly_and_non_finite_is_empty() {
        for x in [1.0e6, 123456.789, 2.5e-7, -3.0, 6.02214076e23] {
            assert_eq!(num(x).parse::<f64>().unwrap(), x);
        }
        assert_eq!(num(f64::NAN), "");
        assert_eq!(num(f64::INFINITY), "");
    }

    #[test]
    fn an_unfinished_table_leaves_no_file_behind() {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("out.csv");
        {
            let mut w = AtomicCsv::create(&dest, &COLUMNS).unwrap();
            w.write(&["a"; COLUMNS.len()]).unwrap();
        }
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
        let w = AtomicCsv::create(&dest, &ERROR_COLUMNS).unwrap();
        assert!(!dest.exists(), "nothing under the final name before commit");
        w.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "folder,error\n");
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1);
    }
}
