//! The sliding window of call outcomes a closed circuit samples.
//!
//! The window is a ring of [`BUCKETS`] buckets, each a tenth of the sampling duration wide, so
//! its memory stays fixed however many calls arrive. A sample counts while its bucket is one of
//! the newest ten: for between nine tenths of the sampling duration and all of it, never longer.

use time::OffsetDateTime;

/// The number of buckets the sampling duration is divided into.
pub(super) const BUCKETS: usize = 10;

/// Successes and failures sampled over the last sampling duration.
#[derive(Debug, Clone)]
pub(super) struct Window {
    /// The width of one bucket in nanoseconds, at least 1.
    width: i128,
    slots: [Slot; BUCKETS],
}

/// One bucket of the ring: the counts of the bucket numbered `index` since the Unix epoch.
#[derive(Debug, Clone, Copy)]
struct Slot {
    index: i128,
    successes: u32,
    failures: u32,
}

impl Slot {
    /// A slot that holds no bucket; its index is older than any instant `time` can represent.
    const EMPTY: Slot = Slot {
        index: i128::MIN,
        successes: 0,
        failures: 0,
    };
}

/// The counts of a window at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Totals {
    pub(super) successes: u64,
    pub(super) failures: u64,
}

impl Totals {
    /// Every sampled call, successful or not.
    pub(super) fn samples(self) -> u64 {
        self.successes + self.failures
    }
}

impl Window {
    /// Creates an empty window over `sampling_nanos` nanoseconds.
    pub(super) fn new(sampling_nanos: i128) -> Window {
        Window {
            width: (sampling_nanos / BUCKETS as i128).max(1),
            slots: [Slot::EMPTY; BUCKETS],
        }
    }

    /// Forgets every sample.
    pub(super) fn clear(&mut self) {
        self.slots = [Slot::EMPTY; BUCKETS];
    }

    /// Adds one outcome sampled at `now`.
    pub(super) fn add(&mut self, now: OffsetDateTime, failed: bool) {
        let index = self.index_of(now);
        let slot = &mut self.slots[ring_position(index)];

        // A slot holding a newer bucket than the sample's is at least ten buckets ahead of it,
        // so the sample is already outside the window (the clock stepped back, or a caller read
        // the time long before it reported). Dropping it keeps the newer counts intact.
        if slot.index > index {
            return;
        }
        if slot.index < index {
            *slot = Slot {
                index,
                ..Slot::EMPTY
            };
        }

        if failed {
            slot.failures = slot.failures.saturating_add(1);
        } else {
            slot.successes = slot.successes.saturating_add(1);
        }
    }

    /// The counts of the buckets that are inside the window at `now`.
    pub(super) fn totals(&self, now: OffsetDateTime) -> Totals {
        let newest = self.index_of(now);
        let oldest = newest - (BUCKETS as i128 - 1);
        self.slots
            .iter()
            .filter(|slot| (oldest..=newest).contains(&slot.index))
            .fold(Totals::default(), |sum, slot| Totals {
                successes: sum.successes + u64::from(slot.successes),
                failures: sum.failures + u64::from(slot.failures),
            })
    }

    fn index_of(&self, instant: OffsetDateTime) -> i128 {
        instant.unix_timestamp_nanos().div_euclid(self.width)
    }
}

fn ring_position(index: i128) -> usize {
    // rem_euclid with a positive modulus is in 0..BUCKETS, so the cast cannot truncate.
    index.rem_euclid(BUCKETS as i128) as usize
}

#[cfg(test)]
mod tests {
    use time::Duration;
    use time::macros::datetime;

    use super::*;

    const THIRTY_SECONDS: i128 = 30_000_000_000;

    #[test]
    fn an_empty_window_counts_nothing() {
        let window = Window::new(THIRTY_SECONDS);
        assert_eq!(window.totals(datetime!(2025-03-01 12:00 UTC)).samples(), 0);
    }

    #[test]
    fn samples_within_the_window_are_summed_across_buckets() {
        let start = datetime!(2025-03-01 12:00 UTC);
        let mut window = Window::new(THIRTY_SECONDS);

        window.add(start, true);
        window.add(start + Duration::seconds(5), false);
        window.add(start + Duration::seconds(20), true);

        let totals = window.totals(start + Duration::seconds(26));
        assert_eq!(totals.failures, 2);
        assert_eq!(totals.successes, 1);
    }

    #[test]
    fn a_sample_leaves_the_window_within_the_sampling_duration() {
        let start = datetime!(2025-03-01 12:00:00.5 UTC);
        let mut window = Window::new(THIRTY_SECONDS);
        window.add(start, true);

        // Counted for at least nine tenths of the window, and gone once all of it has passed.
        assert_eq!(window.totals(start + Duration::seconds(27)).failures, 1);
        assert_eq!(window.totals(start + Duration::seconds(30)).failures, 0);
    }

    #[test]
    fn a_reused_slot_starts_from_zero() {
        let start = datetime!(2025-03-01 12:00 UTC);
        let mut window = Window::new(THIRTY_SECONDS);
        window.add(start, true);
        window.add(start, true);

        // Thirty seconds later the same ring position holds a new bucket.
        window.add(start + Duration::seconds(30), false);

        let totals = window.totals(start + Duration::seconds(30));
        assert_eq!(
            totals,
            Totals {
                successes: 1,
                failures: 0
            }
        );
    }

    #[test]
    fn a_sample_older_than_the_slots_bucket_is_dropped() {
        let start = datetime!(2025-03-01 12:00 UTC);
        let mut window = Window::new(THIRTY_SECONDS);
        window.add(start + Duration::seconds(30), true);

        window.add(start, true);

        assert_eq!(window.totals(start + Duration::seconds(30)).failures, 1);
    }

    #[test]
    fn clear_forgets_every_sample() {
        let start = datetime!(2025-03-01 12:00 UTC);
        let mut window = Window::new(THIRTY_SECONDS);
        window.add(start, true);
        window.add(start, false);

        window.clear();

        assert_eq!(window.totals(start).samples(), 0);
    }

    #[test]
    fn a_window_shorter_than_ten_nanoseconds_still_has_buckets() {
        let start = datetime!(2025-03-01 12:00 UTC);
        let mut window = Window::new(3);
        window.add(start, true);

        assert_eq!(window.totals(start).failures, 1);
        assert_eq!(window.totals(start + Duration::nanoseconds(10)).failures, 0);
    }

    #[test]
    fn instants_before_the_epoch_fall_into_buckets_too() {
        let start = datetime!(1960-01-01 00:00 UTC);
        let mut window = Window::new(THIRTY_SECONDS);
        window.add(start, true);
        window.add(start + Duration::seconds(1), true);

        assert_eq!(window.totals(start + Duration::seconds(2)).failures, 2);
    }
}
