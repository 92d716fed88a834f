//! The local control socket: a Unix stream socket (mode 0660, never TCP) carrying
//! newline-delimited JSON, one request and one response per line.
//!
//! Requests: `{"cmd":"status"}` and `{"cmd":"acquire", "study_id":…, "subject_ids":[…],
//! "injection_time":"…Z", "kinetic":N, "interval_s":S}`. Responses: `{"ok":true,
//! "status":{…}}`, `{"ok":true,"acquisition_id":"…"}` or `{"ok":false,"error":"…"}`.
//!
//! Owns: the protocol types, the server (a thread accepting connections, one short-lived
//! thread per connection, the stale-socket check, the mode, removal at stop) and the client
//! `lumiq status` and `lumiq acquire` use. Does not own what a request does: the daemon
//! passes a handler.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::status::StatusReport;

/// Where `lumiq status` looks when neither `--socket` nor `$LUMIQ_SOCKET` is given.
pub const DEFAULT_SOCKET: &str = "/run/lumiq/lumiq.sock";
/// Environment variable naming the socket for `lumiq status` and `lumiq acquire`.
pub const SOCKET_ENV: &str = "LUMIQ_SOCKET";
/// The socket file's mode: owner and group (`lumiq`) may connect.
pub const SOCKET_MODE: u32 = 0o660;
/// Longest request line accepted, bytes.
const MAX_REQUEST_BYTES: u64 = 64 * 1024;

/// An acquisition asked for (by `lumiq acquire`, the LIMS, the start button, the timer).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcquireRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_ids: Vec<String>,
    /// Luciferin injection time, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injection_time: Option<DateTime<Utc>>,
    /// A kinetic series of this many luminescent frames (each its own record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinetic: Option<usize>,
    /// Kinetic series: seconds from the start of one frame to the next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_s: Option<f64>,
    /// Image the mounted reference source and run the daily QC on it (`[qc] mounted`):
    /// no record, a QC result in the history and a `qc` event.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub qc: bool,
}

/// What is wrong with an [`AcquireRequest`]: the field and the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("study_id is empty: give the study's id or leave it out")]
    EmptyStudy,
    #[error("subject_ids contains an empty id")]
    EmptySubject,
    #[error("subject_ids has {0} ids; the imager holds at most {MAX_SUBJECTS} animals")]
    TooManySubjects(usize),
    #[error("kinetic must be 1 or more frames")]
    NoKineticFrames,
    #[error("interval_s = {0}: give a positive number of seconds")]
    Interval(f64),
    #[error("interval_s is only meaningful with kinetic = N")]
    IntervalWithoutKinetic,
    #[error("a QC acquisition images the reference source alone: leave out study_id, subject_ids, injection_time and kinetic")]
    QcWithSubjects,
}

/// The most animals the imager holds.
const MAX_SUBJECTS: usize = 5;

impl AcquireRequest {
    /// Check the request's values; the error says which field and the fix.
    pub fn validate(&self) -> Result<(), RequestError> {
        if let Some(s) = &self.study_id {
            if s.trim().is_empty() {
                return Err(RequestError::EmptyStudy);
            }
        }
        if self.subject_ids.iter().any(|s| s.trim().is_empty()) {
            return Err(RequestError::EmptySubject);
        }
        if self.subject_ids.len() > MAX_SUBJECTS {
            return Err(RequestError::TooManySubjects(self.subject_ids.len()));
        }
        match (self.kinetic, self.interval_s) {
            (Some(0), _) => return Err(RequestError::NoKineticFrames),
            (Some(_), Some(s)) if !(s.is_finite() && s > 0.0) => {
                return Err(RequestError::Interval(s))
            }
            (None, Some(_)) => return Err(RequestError::IntervalWithoutKinetic),
            _ => {}
        }
        if self.qc
            && (self.study_id.is_some()
                || !self.subject_ids.is_empty()
                || self.injection_time.is_some()
                || self.kinetic.is_some())
        {
            return Err(RequestError::QcWithSubjects);
        }
        Ok(())
    }
}

/// Read one request line (surrounding whitespace ignored); the server answers an error with
/// a refusal naming it.
pub fn parse_request(line: &str) -> Result<Request, serde_json::Error> {
    serde_json::from_str(line.trim())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    Acquire(AcquireRequest),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Box<StatusReport>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquisition_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    pub fn status(r: StatusReport) -> Response {
        Response {
            ok: true,
            status: Some(Box::new(r)),
            acquisition_id: None,
            error: None,
        }
    }
    pub fn queued(id: String) -> Response {
        Response {
            ok: true,
            status: None,
            acquisition_id: Some(id),
            error: None,
        }
    }
    pub fn refused(error: impl std::fmt::Display) -> Response {
        Response {
            ok: false,
            status: None,
            acquisition_id: None,
            error: Some(error.to_string()),
        }
    }
}

/// Socket trouble, with the path and the fix.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another lumiq daemon already answers on {path}; stop it first (systemctl stop lumiq) or use another status.socket")]
    InUse { path: String },
    #[error("status socket {path}: {problem}")]
    Setup { path: String, problem: String },
    #[error("cannot reach the lumiq daemon at {path}: {source}; is the service running (systemctl status lumiq)? are you in group lumiq (id -nG), which may use the socket? (socket path: --socket, ${SOCKET_ENV}, or [status] socket of --config)")]
    Unreachable {
        path: String,
        source: std::io::Error,
    },
    #[error("the lumiq daemon at {path} answered badly: {problem}")]
    Protocol { path: String, problem: String },
}

type Handler = dyn Fn(Request) -> Response + Send + Sync;

/// The running server; [`SocketServer::stop`] (or drop) closes it and removes the file.
pub struct SocketServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SocketServer {
    /// Bind `path` (removing a stale socket nobody answers on), set mode 0660 before
    /// accepting, and serve `handler` on a thread.
    pub fn start(path: &Path, handler: Arc<Handler>) -> Result<SocketServer, SocketError> {
        let setup = |problem: String| SocketError::Setup {
            path: path.display().to_string(),
            problem,
        };
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(SocketError::InUse {
                    path: path.display().to_string(),
                });
            }
            std::fs::remove_file(path).map_err(|e| {
                setup(format!(
                    "a stale socket is in the way and cannot be removed: {e}"
                ))
            })?;
            tracing::info!("removed a stale socket at {}", path.display());
        }
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| setup(format!("cannot create its folder: {e}")))?;
            }
        }
        let listener = UnixListener::bind(path).map_err(|e| setup(format!("cannot bind: {e}")))?;
        // Design: no connection is accepted before the mode is set (the accept thread
        // starts below), so nobody outside the group slips in.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
            .map_err(|e| setup(format!("cannot set mode 0660: {e}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("lumiq-socket".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.load(Ordering::SeqCst) {
                        break;
                    }
                    match conn {
                        Ok(stream) => {
                            let h = handler.clone();
                            let _ = std::thread::Builder::new()
                                .name("lumiq-socket-conn".into())
                                .spawn(move || serve(stream, &*h));
                        }
                        Err(e) => {
                            tracing::warn!("status socket: accept failed: {e}");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })
            .map_err(|e| setup(format!("cannot start its thread: {e}")))?;
        Ok(SocketServer {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stop accepting and remove the socket file.
    pub fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.store(true, Ordering::SeqCst);
            // Wake the accept loop.
            let _ = UnixStream::connect(&self.path);
            let _ = t.join();
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for SocketServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(stream: UnixStream, handler: &Handler) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(std::io::Read::take(stream, MAX_REQUEST_BYTES));
    let mut writer = write_half;
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.trim().is_empty() {
            continue;
        }
        let resp = match parse_request(&line) {
            Ok(req) => handler(req),
            Err(e) => Response::refused(format!(
                "not a request: {e}; send one JSON object per line, e.g. {{\"cmd\":\"status\"}}"
            )),
        };
        let mut text = serde_json::to_string(&resp).unwrap_or_else(|e| {
            format!("{{\"ok\":false,\"error\":\"cannot encode the response: {e}\"}}")
        });
        text.push('\n');
        if writer.write_all(text.as_bytes()).is_err() {
            return;
        }
    }
}

/// Send one request to the daemon at `path` and read its response.
pub fn request(path: &Path, req: &Request, timeout: Duration) -> Result<Response, SocketError> {
    let shown = path.display().to_string();
    let unreachable = |source: std::io::Error| SocketError::Unreachable {
        path: shown.clone(),
        source,
    };
    let stream = UnixStream::connect(path).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(unreachable)?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(unreachable)?;
    let mut w = stream.try_clone().map_err(unreachable)?;
    let mut text = serde_json::to_string(req).expect("requests serialise");
    text.push('\n');
    w.write_all(text.as_bytes()).map_err(unreachable)?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(unreachable)?;
    if line.is_empty() {
        return Err(SocketError::Protocol {
            path: shown,
            problem: "it closed the connection without an answer".into(),
        });
    }
    serde_json::from_str(&line).map_err(|e| SocketError::Protocol {
        path: shown,
        problem: e.to_string(),
    })
}

/// The socket path for `lumiq status`/`acquire`: `--socket`, else `$LUMIQ_SOCKET`, else the
/// default.
pub fn resolve_socket(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match std::env::var_os(SOCKET_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_SOCKET),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn serves_requests_with_mode_0660_and_removes_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("run/lumiq.sock");
        let handler: Arc<Handler> = Arc::new(|req| match req {
            Request::Status => Response::refused("no status in this test"),
            Request::Acquire(a) => match a.validate() {
                Ok(()) => Response::queued(format!("{}", a.subject_ids.len())),
                Err(e) => Response::refused(e),
            },
        });
        let mut server = SocketServer::start(&path, handler.clone()).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        let r = request(
            &path,
            &Request::Acquire(AcquireRequest {
                subject_ids: vec!["M1".into(), "M2".into()],
                ..Default::default()
            }),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(r.acquisition_id.as_deref(), Some("2"));
        let r = request(
            &path,
            &Request::Acquire(AcquireRequest {
                kinetic: Some(0),
                ..Default::default()
            }),
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(!r.ok && r.error.unwrap().contains("kinetic"));
        // A second server on a live socket is refused; the first keeps its file.
        assert!(matches!(
            SocketServer::start(&path, handler.clone()),
            Err(SocketError::InUse { .. })
        ));
        server.stop();
        assert!(!path.exists());
        let e = request(&path, &Request::Status, Duration::from_secs(1)).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(path.to_str().unwrap()) && msg.contains("group lumiq"),
            "{msg}"
        );
    }

    #[test]
    fn a_stale_socket_is_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("lumiq.sock");
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let handler: Arc<Handler> = Arc::new(|_| Response::refused("x"));
        let server = SocketServer::start(&path, handler).unwrap();
        assert!(request(&path, &Request::Status, Duration::from_secs(5)).is_ok());
        drop(server);
        assert!(!path.exists());
    }
}
