//! sd_notify: `READY=1`, `WATCHDOG=1`, `STATUS=…` and `STOPPING=1` to systemd, as one
//! datagram each to `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).
//!
//! Owns: the wire format and the socket; when to send is the daemon's business. Without
//! `$NOTIFY_SOCKET` (not under systemd, or `Type=simple`) every call does nothing.
//! Also [`Heartbeat`]s: each loop of the daemon bumps its own, and the watchdog is pinged
//! only while all of them are fresh.

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A connection to systemd's notification socket.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, String)>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; a notifier that does nothing when it is unset.
    pub fn from_env() -> Notifier {
        match std::env::var("NOTIFY_SOCKET") {
            Ok(path) if !path.is_empty() => Notifier::to(&path),
            _ => Notifier { target: None },
        }
    }

    /// To a given socket (`@name`: abstract namespace).
    pub fn to(path: &str) -> Notifier {
        match UnixDatagram::unbound() {
            Ok(sock) => Notifier {
                target: Some((sock, path.to_string())),
            },
            Err(e) => {
                tracing::warn!("cannot create a socket to notify systemd: {e}");
                Notifier { target: None }
            }
        }
    }

    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Send one notification (lines `KEY=value`); failures are logged, never fatal.
    pub fn send(&self, state: &str) {
        let Some((sock, path)) = &self.target else {
            return;
        };
        let r = if let Some(name) = path.strip_prefix('@') {
            abstract_send(sock, name.as_bytes(), state.as_bytes())
        } else {
            sock.send_to(state.as_bytes(), path).map(|_| ())
        };
        if let Err(e) = r {
            tracing::warn!("cannot notify systemd at {path}: {e}");
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", one_line(status)));
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    pub fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
    }
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

#[cfg(target_os = "linux")]
fn abstract_send(sock: &UnixDatagram, name: &[u8], msg: &[u8]) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    sock.send_to_addr(msg, &addr).map(|_| ())
}

#[cfg(not(target_os = "linux"))]
fn abstract_send(_: &UnixDatagram, _: &[u8], _: &[u8]) -> std::io::Result<()> {
    Err(std::io::Error::other(
        "abstract sockets exist only on Linux",
    ))
}

/// The watchdog period systemd asks for (`$WATCHDOG_USEC`, for this process), if any.
pub fn watchdog_period() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
}

/// Progress of one loop. The loop calls [`Heartbeat::beat`] on every turn; while it waits
/// for work on a channel it calls [`Heartbeat::idle`]; while it works on one item it calls
/// [`Heartbeat::busy`]. It is fresh when it beat recently, is idle, or has been busy for
/// less than its work limit.
#[derive(Debug)]
pub struct Heartbeat {
    pub name: &'static str,
    origin: Instant,
    /// ms since `origin` of the last beat.
    last_ms: AtomicU64,
    /// 0: beating; 1: idle (waiting for work); else ms since `origin` (+2) when work began.
    mode: AtomicU64,
    /// Longest one item of work may take.
    work_limit: Duration,
    /// Longest between beats.
    beat_limit: Duration,
}

impl Heartbeat {
    pub fn new(name: &'static str, beat_limit: Duration, work_limit: Duration) -> Heartbeat {
        Heartbeat {
            name,
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
            mode: AtomicU64::new(0),
            work_limit,
            beat_limit,
        }
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    pub fn beat(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
        self.mode.store(0, Ordering::Relaxed);
    }

    pub fn idle(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
        self.mode.store(1, Ordering::Relaxed);
    }

    pub fn busy(&self) {
        let now = self.now_ms();
        self.last_ms.store(now, Ordering::Relaxed);
        self.mode.store(now + 2, Ordering::Relaxed);
    }

    /// `None` when fresh, else why not.
    pub fn stale(&self) -> Option<String> {
        let now = self.now_ms();
        match self.mode.load(Ordering::Relaxed) {
            1 => None,
            0 => {
                let since = now.saturating_sub(self.last_ms.load(Ordering::Relaxed));
                (since > self.beat_limit.as_millis() as u64)
                    .then(|| format!("{} loop silent for {} ms", self.name, since))
            }
            started => {
                let since = now.saturating_sub(started - 2);
                (since > self.work_limit.as_millis() as u64)
                    .then(|| format!("{} loop busy on one item for {} s", self.name, since / 1000))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_reach_a_path_socket_and_an_abstract_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::to(path.to_str().unwrap());
        n.ready("idle; 0 unacked");
        let mut buf = [0u8; 256];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=idle; 0 unacked");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("lumiq-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        Notifier::to(&format!("@{name}")).watchdog();
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }

    #[test]
    fn a_silent_or_stuck_loop_is_stale_an_idle_one_is_not() {
        let h = Heartbeat::new("test", Duration::from_millis(30), Duration::from_millis(30));
        h.beat();
        assert!(h.stale().is_none());
        std::thread::sleep(Duration::from_millis(60));
        assert!(h.stale().unwrap().contains("silent"));
        h.idle();
        std::thread::sleep(Duration::from_millis(60));
        assert!(h.stale().is_none());
        h.busy();
        assert!(h.stale().is_none());
        std::thread::sleep(Duration::from_millis(60));
        assert!(h.stale().unwrap().contains("busy"));
    }
}
