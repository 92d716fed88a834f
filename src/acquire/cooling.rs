//! The camera's cooling lock as the acquire stage has seen it: when the sensor's
//! temperature lock was last gained and at which setpoint. Darks taken before the lock was
//! last (re)gained, or at another setpoint, no longer describe the sensor: the dark
//! decision ([`super::dark::check_library`]) asks [`CoolingLock::dark_is_stale`].
//!
//! Owns: the record and its update rule, pure (observations in, no I/O). The observations
//! come from the sequence's prepare step, which waits for the lock, and from the daemon's
//! device polling between acquisitions ([`super::Imager::poll_cooling`]).
//!
//! What it cannot know: a lock lost and regained between two observations is not seen
//! (polling every few seconds, a shorter loss goes unnoticed), and the lock found at the
//! first observation after a start counts as gained then — the first acquisition after a
//! start re-takes its darks.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Two setpoints closer than this are the same setpoint, °C.
pub const SETPOINT_TOLERANCE_C: f64 = 0.05;

/// The last observed state of the cooling lock.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct CoolingLock {
    /// Locked at the last observation.
    pub locked: bool,
    /// When the lock was last gained (first seen locked after being unlocked, unobserved,
    /// or at another setpoint).
    pub gained_at: Option<DateTime<Utc>>,
    /// The setpoint it was gained at, °C.
    pub setpoint_c: Option<f64>,
}

/// What an observation changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockChange {
    None,
    Gained,
    Lost,
}

fn same_setpoint(a: f64, b: f64) -> bool {
    (a - b).abs() <= SETPOINT_TOLERANCE_C
}

impl CoolingLock {
    /// Record one observation: the camera is (or is not) locked at `setpoint_c` at `now`.
    pub fn observe(
        &mut self,
        locked: bool,
        setpoint_c: Option<f64>,
        now: DateTime<Utc>,
    ) -> LockChange {
        if !locked {
            let was = self.locked;
            self.locked = false;
            return if was {
                LockChange::Lost
            } else {
                LockChange::None
            };
        }
        let same = match (self.setpoint_c, setpoint_c) {
            (Some(a), Some(b)) => same_setpoint(a, b),
            (None, None) => true,
            _ => false,
        };
        if self.locked && same && self.gained_at.is_some() {
            return LockChange::None;
        }
        self.locked = true;
        self.gained_at = Some(now);
        self.setpoint_c = setpoint_c;
        LockChange::Gained
    }

    /// Why a dark taken at `acquired_at` at setpoint `dark_setpoint_c` (when known) no
    /// longer describes the sensor, if it does not: taken before the lock was last gained,
    /// or at another setpoint. `None` when nothing has been observed yet.
    pub fn dark_is_stale(
        &self,
        acquired_at: DateTime<Utc>,
        dark_setpoint_c: Option<f64>,
    ) -> Option<String> {
        let gained_at = self.gained_at?;
        if let (Some(lock), Some(dark)) = (self.setpoint_c, dark_setpoint_c) {
            if !same_setpoint(lock, dark) {
                return Some(format!(
                    "the library's dark was taken at a setpoint of {dark:.1} °C, the camera is locked at {lock:.1} °C"
                ));
            }
        }
        if acquired_at < gained_at {
            return Some(format!(
                "the library's dark was taken at {}, before the cooling lock was last gained at {}",
                acquired_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                gained_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn the_lock_is_gained_at_first_sight_lost_and_gained_again() {
        let mut l = CoolingLock::default();
        assert_eq!(l.dark_is_stale(at("2026-01-01T00:00:00Z"), None), None);
        assert_eq!(
            l.observe(false, Some(-90.0), at("2026-03-02T09:00:00Z")),
            LockChange::None
        );
        assert_eq!(
            l.observe(true, Some(-90.0), at("2026-03-02T09:05:00Z")),
            LockChange::Gained
        );
        assert_eq!(
            l.observe(true, Some(-90.0), at("2026-03-02T09:06:00Z")),
            LockChange::None
        );
        assert_eq!(l.gained_at, Some(at("2026-03-02T09:05:00Z")));
        assert_eq!(
            l.observe(false, Some(-90.0), at("2026-03-02T10:00:00Z")),
            LockChange::Lost
        );
        assert_eq!(
            l.observe(true, Some(-90.0), at("2026-03-02T10:03:00Z")),
            LockChange::Gained
        );
        assert_eq!(l.gained_at, Some(at("2026-03-02T10:03:00Z")));
        // Locked throughout, but at a new setpoint: gained anew.
        assert_eq!(
            l.observe(true, Some(-80.0), at("2026-03-02T11:00:00Z")),
            LockChange::Gained
        );
        assert_eq!(l.setpoint_c, Some(-80.0));
    }
}
