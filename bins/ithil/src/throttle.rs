//! Slowing down repeated wrong API keys from one address.
//!
//! The first few failures cost nothing; after that every failure blocks the address for twice as
//! long as the one before, up to a cap, and a blocked address gets 429 without its key being
//! checked, so guessing costs time however fast the client is. A success clears the address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use ithil_token::Clock;
use time::{Duration, OffsetDateTime};

/// Failures from one address that are not slowed down.
const FREE_FAILURES: u32 = 5;
/// The longest block.
const MAX_BLOCK: Duration = Duration::minutes(15);
/// An address whose last failure is older than this starts over.
const FORGET_AFTER: Duration = Duration::minutes(30);
/// At most this many addresses are tracked; see [`FailureThrottle::failure`].
const MAX_TRACKED: usize = 100_000;

/// Per-address failure counts with exponential blocking, on an injected clock.
pub struct FailureThrottle {
    clock: Arc<dyn Clock>,
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: OffsetDateTime,
    blocked_until: OffsetDateTime,
}

impl FailureThrottle {
    /// A throttle that reads the time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> FailureThrottle {
        FailureThrottle {
            clock,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` while the address is blocked.
    pub fn check(&self, peer: IpAddr) -> Result<(), std::time::Duration> {
        let now = self.clock.now();
        let entries = self.lock();
        match entries.get(&bucket(peer)) {
            Some(entry) if entry.blocked_until > now => Err(retry_after(entry.blocked_until - now)),
            _ => Ok(()),
        }
    }

    /// Records a failure; returns how long the address is now blocked, if it is.
    ///
    /// When `MAX_TRACKED` addresses have failed recently, a new address is not tracked: the
    /// memory stays bounded, and the addresses already blocked stay blocked.
    pub fn failure(&self, peer: IpAddr) -> Option<std::time::Duration> {
        let now = self.clock.now();
        let key = bucket(peer);
        let mut entries = self.lock();

        if !entries.contains_key(&key) && entries.len() >= MAX_TRACKED {
            entries.retain(|_, e| now - e.last_failure < FORGET_AFTER);
            if entries.len() >= MAX_TRACKED {
                return None;
            }
        }

        let entry = entries.entry(key).or_insert(Entry {
            failures: 0,
            last_failure: now,
            blocked_until: now,
        });
        if now - entry.last_failure >= FORGET_AFTER {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;

        if entry.failures < FREE_FAILURES {
            return None;
        }
        let doublings = (entry.failures - FREE_FAILURES).min(20);
        let block = Duration::seconds(1i64 << doublings).min(MAX_BLOCK);
        entry.blocked_until = now + block;
        Some(retry_after(block))
    }

    /// Forgets the address's failures.
    pub fn success(&self, peer: IpAddr) {
        self.lock().remove(&bucket(peer));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        // Every update leaves the map consistent, so a panic elsewhere cannot poison its data.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The unit an address is throttled by: an IPv4 address, or an IPv6 /64 (one customer's
/// network, which can hold more addresses than anyone could track one by one).
fn bucket(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Whole seconds, rounded up, at least one: the value of a `Retry-After` header.
fn retry_after(remaining: Duration) -> std::time::Duration {
    let millis = remaining.whole_milliseconds().max(1);
    let seconds = (millis + 999) / 1000;
    std::time::Duration::from_secs(u64::try_from(seconds).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use ithil_token::ManualClock;
    use time::macros::datetime;

    use super::*;

    fn setup() -> (ManualClock, FailureThrottle) {
        let clock = ManualClock::new(datetime!(2026-05-06 12:00 UTC));
        let throttle = FailureThrottle::new(Arc::new(clock.clone()));
        (clock, throttle)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_first_failures_are_free() {
        let (_clock, throttle) = setup();
        for _ in 0..FREE_FAILURES - 1 {
            assert_eq!(throttle.failure(ip("10.0.0.1")), None);
            assert!(throttle.check(ip("10.0.0.1")).is_ok());
        }
    }

    #[test]
    fn repeated_failures_block_for_doubling_times() {
        let (clock, throttle) = setup();
        let peer = ip("10.0.0.1");
        for _ in 0..FREE_FAILURES - 1 {
            throttle.failure(peer);
        }

        assert_eq!(
            throttle.failure(peer),
            Some(std::time::Duration::from_secs(1))
        );
        assert_eq!(throttle.check(peer), Err(std::time::Duration::from_secs(1)));

        clock.advance(Duration::seconds(1));
        assert!(throttle.check(peer).is_ok());
        assert_eq!(
            throttle.failure(peer),
            Some(std::time::Duration::from_secs(2))
        );

        clock.advance(Duration::milliseconds(500));
        assert_eq!(throttle.check(peer), Err(std::time::Duration::from_secs(2)));
        clock.advance(Duration::milliseconds(1500));
        assert_eq!(
            throttle.failure(peer),
            Some(std::time::Duration::from_secs(4))
        );
    }

    #[test]
    fn blocks_are_capped() {
        let (_clock, throttle) = setup();
        let peer = ip("10.0.0.1");
        let mut last = None;
        for _ in 0..100 {
            last = throttle.failure(peer);
        }
        assert_eq!(last, Some(std::time::Duration::from_secs(15 * 60)));
    }

    #[test]
    fn success_and_time_forget_failures() {
        let (clock, throttle) = setup();
        let peer = ip("10.0.0.1");
        for _ in 0..FREE_FAILURES {
            throttle.failure(peer);
        }
        throttle.success(peer);
        assert!(throttle.check(peer).is_ok());
        assert_eq!(throttle.failure(peer), None);

        for _ in 0..FREE_FAILURES {
            throttle.failure(peer);
        }
        clock.advance(FORGET_AFTER);
        assert_eq!(throttle.failure(peer), None);
    }

    #[test]
    fn addresses_are_throttled_separately_and_ipv6_by_its_64_prefix() {
        let (_clock, throttle) = setup();
        for _ in 0..FREE_FAILURES {
            throttle.failure(ip("2001:db8:1:2::1"));
        }
        assert!(throttle.check(ip("2001:db8:1:2::ffff")).is_err());
        assert!(throttle.check(ip("2001:db8:1:3::1")).is_ok());
        assert!(throttle.check(ip("10.0.0.1")).is_ok());

        for _ in 0..FREE_FAILURES {
            throttle.failure(ip("::ffff:10.0.0.2"));
        }
        assert!(throttle.check(ip("10.0.0.2")).is_err());
    }
}
