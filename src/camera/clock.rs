//! Time and cancellation for device code: a [`Clock`] seam (the system clock in production,
//! a [`SimClock`] that only moves when someone waits, for the simulated instrument and the
//! tests) and a [`CancelToken`] that long loops look at between transfers.
//!
//! Owns: nothing but time. Design: a simulated camera's 240 s exposure must not take 240 s
//! of a test, and a cooling wait must be deterministic, so every wait in the camera, the
//! sequences and the simulators goes through `Clock::sleep`; the simulated clock advances
//! instead of sleeping, and the simulated device computes its state from the clock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// A source of time that can also wait.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Monotonic time since the clock's origin.
    fn elapsed(&self) -> Duration;
    /// Wall-clock time now.
    fn utc_now(&self) -> DateTime<Utc>;
    /// Wait for `d` (a simulated clock advances by `d` instead).
    fn sleep(&self, d: Duration);
    /// Whether waits are simulated (no real time passes).
    fn is_simulated(&self) -> bool;
}

/// The real clock.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn elapsed(&self) -> Duration {
        self.origin.elapsed()
    }
    fn utc_now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d)
    }
    fn is_simulated(&self) -> bool {
        false
    }
}

/// A manual clock: time stands still until [`Clock::sleep`] or [`SimClock::advance`]
/// moves it. Shared (`Arc`) between the host code and the simulated devices.
#[derive(Debug)]
pub struct SimClock {
    elapsed: Mutex<Duration>,
    epoch: DateTime<Utc>,
}

impl SimClock {
    /// A clock whose wall time starts at `epoch`.
    pub fn new(epoch: DateTime<Utc>) -> Self {
        SimClock {
            elapsed: Mutex::new(Duration::ZERO),
            epoch,
        }
    }

    /// Move time forward.
    pub fn advance(&self, d: Duration) {
        *self.elapsed.lock().expect("clock lock") += d;
    }
}

impl Clock for SimClock {
    fn elapsed(&self) -> Duration {
        *self.elapsed.lock().expect("clock lock")
    }
    fn utc_now(&self) -> DateTime<Utc> {
        self.epoch + chrono::Duration::from_std(self.elapsed()).unwrap_or(chrono::Duration::zero())
    }
    fn sleep(&self, d: Duration) {
        self.advance(d)
    }
    fn is_simulated(&self) -> bool {
        true
    }
}

/// Cooperative cancellation: set once, seen by every loop that holds a clone.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst)
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn sim_clock_moves_only_when_asked() {
        let epoch = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
        let c = SimClock::new(epoch);
        assert_eq!(c.elapsed(), Duration::ZERO);
        c.sleep(Duration::from_secs(90));
        assert_eq!(c.elapsed(), Duration::from_secs(90));
        assert_eq!(c.utc_now(), epoch + chrono::Duration::seconds(90));
    }

    #[test]
    fn cancel_token_is_shared() {
        let a = CancelToken::new();
        let b = a.clone();
        assert!(!b.is_cancelled());
        a.cancel();
        assert!(b.is_cancelled());
    }
}
