//! How an error reads, and whose fault it is: the one place that turns an error and its
//! sources into the one line users see, and the line between a bad input and broken
//! storage.
//!
//! Owns: [`one_line`], [`Fault`] and [`FileError`], the failed file operation the error
//! types of several modules carry. Every module keeps its own error type (see
//! ARCHITECTURE.md, "Errors"); this module knows none of them.

use std::path::{Path, PathBuf};

/// Whose fault a failure is, for callers that act differently on each: the daemon keeps
/// a bad acquisition in `archive/failed/`, and leaves one the disk failed to read or write
/// in staging for the next start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The input cannot be used as it is (a folder, frame, metadata or calibration that is
    /// missing, malformed or inconsistent): trying again gives the same answer.
    Input,
    /// The storage failed (the disk could not be read or written, or is full): the input
    /// may be fine.
    Storage,
}

impl Fault {
    /// The fault of a failed file operation: a missing file, or content that is not what
    /// it should be, is the input's; anything else (EIO, a full disk, permissions, a
    /// read-only file system) is the storage's.
    pub fn of_io(e: &std::io::Error) -> Fault {
        use std::io::ErrorKind::*;
        match e.kind() {
            NotFound | InvalidData | InvalidInput | UnexpectedEof => Fault::Input,
            _ => Fault::Storage,
        }
    }
}

/// A file operation that failed: the path, what could not be done (with the fix, where
/// there is one), and the system's error as its source.
#[derive(Debug, thiserror::Error)]
#[error("{}: {what}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    /// E.g. "cannot write; check free space and permissions".
    pub what: &'static str,
    #[source]
    pub source: std::io::Error,
}

impl FileError {
    /// The error of `what` on `path`, for `map_err`:
    /// `std::fs::read(&p).map_err(FileError::at(&p, "cannot read"))`.
    pub fn at(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> FileError {
        let path = path.to_path_buf();
        move |source| FileError { path, what, source }
    }

    /// Whether the file or the storage is at fault ([`Fault::of_io`]).
    pub fn fault(&self) -> Fault {
        Fault::of_io(&self.source)
    }
}

/// An error and its sources on one line, joined by ": " (as the command line prints an
/// error with its context), line breaks replaced by spaces.
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ").replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}: cannot read")]
    struct Outer(&'static str, #[source] std::io::Error);

    #[test]
    fn one_line_joins_the_sources() {
        let e = Outer("a.tiff", std::io::Error::other("disk\nfailed"));
        assert_eq!(one_line(&e), "a.tiff: cannot read: disk failed");
    }

    #[test]
    fn missing_files_are_the_input_and_failing_disks_the_storage() {
        let io = |k| std::io::Error::from(k);
        assert_eq!(
            Fault::of_io(&io(std::io::ErrorKind::NotFound)),
            Fault::Input
        );
        assert_eq!(
            Fault::of_io(&io(std::io::ErrorKind::UnexpectedEof)),
            Fault::Input
        );
        assert_eq!(
            Fault::of_io(&std::io::Error::from_raw_os_error(5)),
            Fault::Storage
        );
        assert_eq!(
            Fault::of_io(&io(std::io::ErrorKind::StorageFull)),
            Fault::Storage
        );
    }
}
