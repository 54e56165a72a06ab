//! The source of the current instant, injected so that tests step time instead of sleeping.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use time::{Duration, OffsetDateTime};

/// A source of the current instant.
///
/// Token validation asks its clock for the time instead of reading the wall clock, so tests and
/// embedders decide what "now" means.
pub trait Clock: Send + Sync + 'static {
    /// Returns the current instant.
    fn now(&self) -> OffsetDateTime;

    /// Returns the current instant in whole seconds since the Unix epoch, rounded down.
    ///
    /// This is what token validation reads. The default takes it from [`Clock::now`]; an
    /// implementation that can count seconds more cheaply than it builds an `OffsetDateTime`
    /// overrides it, as [`SystemClock`] does.
    fn unix_timestamp(&self) -> i64 {
        self.now().unix_timestamp()
    }
}

/// The wall clock; the only implementation of [`Clock`] in this crate that reads system time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    /// Reads the system time without converting it to a calendar date and back.
    fn unix_timestamp(&self) -> i64 {
        let secs = |secs: u64| i64::try_from(secs).unwrap_or(i64::MAX);
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(since) => secs(since.as_secs()),
            // Before the epoch: round towards the past, as `OffsetDateTime::unix_timestamp` does.
            Err(err) => {
                let before = err.duration();
                -secs(before.as_secs()) - i64::from(before.subsec_nanos() > 0)
            }
        }
    }
}

/// A clock that moves only when told to, for tests.
///
/// Clones share one instant: advancing any clone advances them all, so a test can keep one handle
/// and give another to the code under test.
#[derive(Clone, Debug)]
pub struct ManualClock {
    now: Arc<Mutex<OffsetDateTime>>,
}

impl ManualClock {
    /// Creates a clock that reads `now` until it is set or advanced.
    pub fn new(now: OffsetDateTime) -> ManualClock {
        ManualClock {
            now: Arc::new(Mutex::new(now)),
        }
    }

    /// Sets the instant this clock (and every clone of it) reads.
    pub fn set(&self, now: OffsetDateTime) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = now;
    }

    /// Moves this clock (and every clone of it) by `by`, which may be negative.
    ///
    /// # Panics
    ///
    /// Panics if the result is outside the range `time::OffsetDateTime` can represent.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        // A panic while holding the lock cannot leave the instant half-written, so a poisoned
        // lock still holds a valid value.
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn manual_clock_reads_the_instant_it_was_given() {
        let clock = ManualClock::new(datetime!(2025-01-02 03:04:05 UTC));
        assert_eq!(clock.now(), datetime!(2025-01-02 03:04:05 UTC));
    }

    #[test]
    fn manual_clock_clones_share_one_instant() {
        let clock = ManualClock::new(datetime!(2025-01-01 00:00 UTC));
        let other = clock.clone();

        clock.advance(Duration::hours(2));
        assert_eq!(other.now(), datetime!(2025-01-01 02:00 UTC));

        other.set(datetime!(2030-06-01 12:00 UTC));
        assert_eq!(clock.now(), datetime!(2030-06-01 12:00 UTC));
    }

    #[test]
    fn manual_clock_can_move_backwards() {
        let clock = ManualClock::new(datetime!(2025-01-01 00:00 UTC));
        clock.advance(Duration::seconds(-30));
        assert_eq!(clock.now(), datetime!(2024-12-31 23:59:30 UTC));
    }

    #[test]
    fn system_clock_reads_a_time_after_this_code_was_written() {
        assert!(SystemClock.now() > datetime!(2025-01-01 00:00 UTC));
    }

    #[test]
    fn system_clock_counts_the_same_seconds_as_its_instant() {
        let before = SystemClock.now().unix_timestamp();
        let secs = SystemClock.unix_timestamp();
        let after = SystemClock.now().unix_timestamp();
        assert!(
            (before..=after).contains(&secs),
            "{before} <= {secs} <= {after}"
        );
    }

    #[test]
    fn manual_clock_counts_seconds_rounded_down() {
        let clock = ManualClock::new(datetime!(1970-01-01 00:00:10.9 UTC));
        assert_eq!(clock.unix_timestamp(), 10);
        clock.set(datetime!(1969-12-31 23:59:59.5 UTC));
        assert_eq!(clock.unix_timestamp(), -1);
    }
}
