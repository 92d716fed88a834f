//! `[qc] schedule`: when the daemon images its mounted reference source by itself.
//!
//! Two forms, both read by [`QcSchedule::parse`]:
//! - `"07:30"`: every day at that local time (the machine's time zone, as a technician reads
//!   the clock on the wall). A time a daylight-saving change skips runs at the next day's;
//!   a time it repeats runs once, at its first occurrence.
//! - `"every 30 m"`: at a fixed period from the daemon's start (`s`, `m` or `h`; at least
//!   1 s), for test benches and instruments used around the clock.
//!
//! Owns: the schedule's text form and the next time it is due. Pure: the caller passes `now`.

use std::time::Duration;

use chrono::{DateTime, Days, NaiveTime, TimeZone};

/// When the daemon runs its QC by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QcSchedule {
    /// Every day at this local time.
    Daily(NaiveTime),
    /// Every this long from the daemon's start.
    Every(Duration),
}

impl QcSchedule {
    /// Read `"HH:MM"` or `"every N s|m|h"`. The error says what was expected.
    pub fn parse(text: &str) -> Result<QcSchedule, String> {
        let t = text.trim();
        if let Some(rest) = t.strip_prefix("every") {
            let rest = rest.trim();
            let split = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            let (number, unit) = rest.split_at(split);
            let n: f64 = number.trim().parse().map_err(|_| {
                format!("{text:?}: expected a number after \"every\", e.g. \"every 30 m\"")
            })?;
            let seconds = match unit.trim() {
                "s" => n,
                "m" => n * 60.0,
                "h" => n * 3600.0,
                u => {
                    return Err(format!(
                        "{text:?}: unit {u:?} is not one of s, m, h, e.g. \"every 12 h\""
                    ))
                }
            };
            if !(seconds.is_finite() && seconds >= 1.0) {
                return Err(format!("{text:?}: the period must be at least 1 s"));
            }
            return Ok(QcSchedule::Every(Duration::from_secs_f64(seconds)));
        }
        NaiveTime::parse_from_str(t, "%H:%M")
            .map(QcSchedule::Daily)
            .map_err(|_| {
                format!("{text:?}: expected a local time of day \"HH:MM\" (e.g. \"07:30\") or a period \"every N s|m|h\"")
            })
    }

    /// How long after `now` the schedule is next due; `started` is when the daemon started
    /// (the origin of an `Every` period). Never zero: a time equal to `now` is tomorrow's.
    pub fn wait_after<Tz: TimeZone>(&self, now: &DateTime<Tz>, started: &DateTime<Tz>) -> Duration {
        match *self {
            QcSchedule::Every(period) => {
                let since = (now.clone() - started.clone()).to_std().unwrap_or_default();
                let p = period.as_secs_f64();
                let done = (since.as_secs_f64() / p).floor() + 1.0;
                Duration::from_secs_f64((done * p - since.as_secs_f64()).max(1e-3))
            }
            QcSchedule::Daily(at) => {
                let tz = now.timezone();
                let today = now.date_naive();
                (0..=2u64)
                    .filter_map(|d| today.checked_add_days(Days::new(d)))
                    .filter_map(|day| tz.from_local_datetime(&day.and_time(at)).earliest())
                    .find(|t| t > now)
                    .and_then(|t| (t - now.clone()).to_std().ok())
                    .unwrap_or(Duration::from_secs(86_400))
            }
        }
    }
}

impl std::fmt::Display for QcSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QcSchedule::Daily(t) => write!(f, "daily at {} local time", t.format("%H:%M")),
            QcSchedule::Every(d) => write!(f, "every {} s", d.as_secs_f64()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, Utc};

    #[test]
    fn both_forms_are_read_and_nonsense_is_refused_with_the_expected_form() {
        assert_eq!(
            QcSchedule::parse("07:30"),
            Ok(QcSchedule::Daily(
                NaiveTime::from_hms_opt(7, 30, 0).unwrap()
            ))
        );
        assert_eq!(
            QcSchedule::parse(" every 4 s "),
            Ok(QcSchedule::Every(Duration::from_secs(4)))
        );
        assert_eq!(
            QcSchedule::parse("every 1.5h"),
            Ok(QcSchedule::Every(Duration::from_secs(5400)))
        );
        assert_eq!(
            QcSchedule::parse("every 30 m"),
            Ok(QcSchedule::Every(Duration::from_secs(1800)))
        );
        for bad in [
            "25:00",
            "7h30",
            "every",
            "every 5 d",
            "every 0 s",
            "every x m",
            "",
        ] {
            let e = QcSchedule::parse(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }

    #[test]
    fn a_daily_time_is_today_when_still_ahead_and_tomorrow_when_passed() {
        let paris = FixedOffset::east_opt(3600).unwrap();
        let s = QcSchedule::parse("07:30").unwrap();
        let at = |h, m| paris.with_ymd_and_hms(2026, 12, 6, h, m, 0).unwrap();
        assert_eq!(
            s.wait_after(&at(6, 0), &at(0, 0)),
            Duration::from_secs(90 * 60)
        );
        // Exactly at the time: the run that is due now has been made; the next is tomorrow.
        assert_eq!(
            s.wait_after(&at(7, 30), &at(0, 0)),
            Duration::from_secs(86_400)
        );
        assert_eq!(
            s.wait_after(&at(23, 0), &at(0, 0)),
            Duration::from_secs(8 * 3600 + 30 * 60)
        );
    }

    #[test]
    fn a_period_counts_from_the_start_whatever_time_it_is_now() {
        let s = QcSchedule::parse("every 10 s").unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 12, 6, 3, 0, 0).unwrap();
        assert_eq!(s.wait_after(&t0, &t0), Duration::from_secs(10));
        let later = t0 + chrono::Duration::milliseconds(23_500);
        assert_eq!(s.wait_after(&later, &t0), Duration::from_millis(6_500));
    }

    #[test]
    fn the_printed_form_says_what_it_means() {
        assert_eq!(
            QcSchedule::parse("07:05").unwrap().to_string(),
            "daily at 07:05 local time"
        );
        assert_eq!(
            QcSchedule::parse("every 2 m").unwrap().to_string(),
            "every 120 s"
        );
    }
}
