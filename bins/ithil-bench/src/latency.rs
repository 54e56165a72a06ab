//! Latency samples and their percentiles.
//!
//! Every call's latency is kept (8 bytes each, a few hundred thousand per measurement), so
//! percentiles are exact rather than read from histogram buckets.

use std::time::Duration;

/// The latencies of one measurement, in nanoseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    nanos: Vec<u64>,
    sorted: bool,
}

impl Samples {
    /// Adds one latency.
    pub fn push(&mut self, latency: Duration) {
        self.nanos
            .push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
        self.sorted = false;
    }

    /// Adds every latency of `other`.
    pub fn extend(&mut self, other: Samples) {
        self.nanos.extend(other.nanos);
        self.sorted = false;
    }

    /// The latency that `q` (0 to 1) of the calls did not exceed (nearest rank); zero when
    /// there are none.
    pub fn quantile(&mut self, q: f64) -> Duration {
        if self.nanos.is_empty() {
            return Duration::ZERO;
        }
        if !self.sorted {
            self.nanos.sort_unstable();
            self.sorted = true;
        }
        let n = self.nanos.len();
        // Nearest rank: the smallest value with at least q·n values at or below it.
        let rank = (q.clamp(0.0, 1.0) * n as f64).ceil() as usize;
        Duration::from_nanos(self.nanos[rank.clamp(1, n) - 1])
    }
}

/// A duration as milliseconds with two decimals, the unit of the report's tables.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank_values() {
        let mut samples = Samples::default();
        for micros in (1..=100).rev() {
            samples.push(Duration::from_micros(micros));
        }
        assert_eq!(samples.quantile(0.5), Duration::from_micros(50));
        assert_eq!(samples.quantile(0.99), Duration::from_micros(99));
        assert_eq!(samples.quantile(1.0), Duration::from_micros(100));
        assert_eq!(samples.quantile(0.0), Duration::from_micros(1));
    }

    #[test]
    fn no_samples_give_zero() {
        assert_eq!(Samples::default().quantile(0.99), Duration::ZERO);
    }

    #[test]
    fn merged_samples_are_sorted_again() {
        let mut a = Samples::default();
        a.push(Duration::from_micros(5));
        assert_eq!(a.quantile(1.0), Duration::from_micros(5));
        let mut b = Samples::default();
        b.push(Duration::from_micros(9));
        b.push(Duration::from_micros(1));
        a.extend(b);
        assert_eq!(a.quantile(0.0), Duration::from_micros(1));
        assert_eq!(a.quantile(1.0), Duration::from_micros(9));
    }

    #[test]
    fn milliseconds_print_with_two_decimals() {
        assert_eq!(ms(Duration::from_micros(1234)), "1.23");
        assert_eq!(ms(Duration::ZERO), "0.00");
    }
}
