//! The QC history: every QC result of an instrument, one JSON object a line, appended and
//! fsync'd, never rewritten (default `<state.dir>/qc/history.jsonl`). Records are corrected
//! from it by acquisition time, so re-processing an old folder applies the QC of its day.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::process::qc::QcResult;

/// What went wrong with the history file.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}, line {line}: not a QC result ({message}); repair or remove that line (every other line is kept)")]
    BadLine {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// Append one result (creating the file and its folder), and fsync it.
pub fn append(path: &Path, result: &QcResult) -> Result<(), HistoryError> {
    let io = |source| HistoryError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut line = serde_json::to_string(result).expect("a QC result serialises");
    line.push('\n');
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    f.write_all(line.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Every result in the file, oldest first; an absent file is an empty history.
pub fn load(path: &Path) -> Result<Vec<QcResult>, HistoryError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(HistoryError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| HistoryError::BadLine {
                path: path.to_path_buf(),
                line: i + 1,
                message: e.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::qc::QcVerdict;
    use chrono::{TimeZone, Utc};

    fn result(id: &str) -> QcResult {
        let t = Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).single().unwrap();
        crate::process::qc::sample_result(id, "sim-ivis-01", t, QcVerdict::Invalid, 0.0)
    }

    #[test]
    fn results_are_appended_and_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qc/history.jsonl");
        assert!(load(&path).unwrap().is_empty());
        append(&path, &result("a")).unwrap();
        append(&path, &result("b")).unwrap();
        let h = load(&path).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0], result("a"));
        assert_eq!(h[1].qc_id, "b");
    }

    #[test]
    fn a_damaged_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        append(&path, &result("a")).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"qc_id\": 3\n")
            .unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("history.jsonl"), "{e}");
    }
}
