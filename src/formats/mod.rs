//! Files other people's tools touch: 16-bit and float TIFF frames, lumiq acquisition
//! folders, IVIS (Living Image) click folders and calibration sets.
//!
//! Owns: parsing and writing, and turning every malformed input into a [`FormatError`]
//! that names the file or field and says how to fix it. Does not own any processing: a
//! reader returns raw values, [`crate::process`] interprets them.

pub mod acquisition_folder;
pub mod calibration_set;
pub mod ivis;
pub mod tiff_io;

use std::path::{Path, PathBuf};

use crate::errors::Fault;

/// Everything that can be wrong with an input file or folder. Each message names the file
/// (or field) and the fix.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{path}: cannot read: {source}; check that the file exists and is readable")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a readable TIFF: {detail}")]
    BadTiff { path: PathBuf, detail: String },
    #[error("{path}: expected {expected}, found {found}; {fix}")]
    WrongPixelType {
        path: PathBuf,
        expected: &'static str,
        found: String,
        fix: &'static str,
    },
    #[error("{path}: {field}: {problem}; {fix}")]
    BadField {
        path: PathBuf,
        field: String,
        problem: String,
        fix: String,
    },
    #[error("{path}: missing field `{field}`; {fix}")]
    MissingField {
        path: PathBuf,
        field: String,
        fix: String,
    },
    #[error("{path}: {problem}; {fix}")]
    Invalid {
        path: PathBuf,
        problem: String,
        fix: String,
    },
}

impl FormatError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        FormatError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn invalid(path: &Path, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        FormatError::Invalid {
            path: path.to_path_buf(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    pub fn bad_field(
        path: &Path,
        field: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        FormatError::BadField {
            path: path.to_path_buf(),
            field: field.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    pub fn missing(path: &Path, field: impl Into<String>, fix: impl Into<String>) -> Self {
        FormatError::MissingField {
            path: path.to_path_buf(),
            field: field.into(),
            fix: fix.into(),
        }
    }

    /// Whether the file is wrong ([`Fault::Input`]) or the disk failed to read or write it
    /// ([`Fault::Storage`]; see [`Fault::of_io`]).
    pub fn fault(&self) -> Fault {
        match self {
            FormatError::Io { source, .. } => Fault::of_io(source),
            _ => Fault::Input,
        }
    }
}

/// SHA-256 of a file's bytes, lower-case hex (provenance in every record).
pub fn sha256_file(path: &Path) -> Result<String, FormatError> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).map_err(|e| FormatError::io(path, e))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}
