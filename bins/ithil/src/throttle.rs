//! Slowing down repeated wrong API keys from one address.
//!
//! The first few failures cost nothing; after that every failure blocks the address for twice as
//! long as the one before, up to a cap, and a blocked address gets 429 without its key being
//! checked, so guessing costs time however fast the client is. A success clears the address.
//!
//! An attempt is counted as a failure when it is reserved, before its key is compared, and the
//! reservation is one step with the check: however many requests from one address race, no more
//! keys are compared than the throttle allows, because each one has already counted against the
//! address by the time the next one is checked. A success releases the reservation.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use ithil_token::Clock;
use time::{Duration, OffsetDateTime};

/// Failures from one address that are not slowed down.
pub const FREE_FAILURES: u32 = 5;
/// The longest block.
const MAX_BLOCK: Duration = Duration::minutes(15);
/// An address whose last failure is older than this starts over.
const FORGET_AFTER: Duration = Duration::minutes(30);
/// At most this many addresses are tracked; see [`FailureThrottle::reserve`].
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

    /// `Err(retry_after)` while the address is blocked. A cheap early refusal that counts
    /// nothing: only [`FailureThrottle::reserve`] lets a key be compared.
    pub fn check(&self, peer: IpAddr) -> Result<(), std::time::Duration> {
        let now = self.clock.now();
        let entries = self.lock();
        match entries.get(&bucket(peer)) {
            Some(entry) if entry.blocked_until > now => Err(retry_after(entry.blocked_until - now)),
            _ => Ok(()),
        }
    }

    /// Reserves one attempt for the address, in one step with the check: `Err(retry_after)`
    /// while the address is blocked; otherwise the attempt counts as a failure from now on (and
    /// may block the address for the attempts after it) unless [`FailureThrottle::success`]
    /// releases it.
    ///
    /// When `MAX_TRACKED` addresses have failed recently, a new address is not tracked: the
    /// memory stays bounded, and the addresses already blocked stay blocked.
    pub fn reserve(&self, peer: IpAddr) -> Result<Reservation, std::time::Duration> {
        let now = self.clock.now();
        let key = bucket(peer);
        let mut entries = self.lock();

        if let Some(entry) = entries.get(&key)
            && entry.blocked_until > now
        {
            return Err(retry_after(entry.blocked_until - now));
        }

        if !entries.contains_key(&key) && entries.len() >= MAX_TRACKED {
            entries.retain(|_, e| now - e.last_failure < FORGET_AFTER);
            if entries.len() >= MAX_TRACKED {
                return Ok(Reservation { blocks_for: None });
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
            return Ok(Reservation { blocks_for: None });
        }
        let doublings = (entry.failures - FREE_FAILURES).min(20);
        let block = Duration::seconds(1i64 << doublings).min(MAX_BLOCK);
        entry.blocked_until = now + block;
        Ok(Reservation {
            blocks_for: Some(retry_after(block)),
        })
    }

    /// Releases the reservation of an attempt that succeeded, and with it every failure of the
    /// address.
    pub fn success(&self, peer: IpAddr) {
        self.lock().remove(&bucket(peer));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        // Every update leaves the map consistent, so a panic elsewhere cannot poison its data.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One reserved attempt: it counts as a failure unless [`FailureThrottle::success`] releases it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a reserved attempt is followed by the comparison it was reserved for"]
pub struct Reservation {
    /// How long the address is blocked for the attempts after this one, should it fail.
    pub blocks_for: Option<std::time::Duration>,
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

    fn secs(n: u64) -> std::time::Duration {
        std::time::Duration::from_secs(n)
    }

    /// One attempt that goes on to fail: how long it blocks the address for.
    fn fail(throttle: &FailureThrottle, peer: IpAddr) -> Option<std::time::Duration> {
        throttle.reserve(peer).expect("not blocked").blocks_for
    }

    #[test]
    fn the_first_failures_are_free() {
        let (_clock, throttle) = setup();
        for _ in 0..FREE_FAILURES - 1 {
            assert_eq!(fail(&throttle, ip("10.0.0.1")), None);
            assert!(throttle.check(ip("10.0.0.1")).is_ok());
        }
    }

    #[test]
    fn repeated_failures_block_for_doubling_times() {
        let (clock, throttle) = setup();
        let peer = ip("10.0.0.1");
        for _ in 0..FREE_FAILURES - 1 {
            let _ = fail(&throttle, peer);
        }

        assert_eq!(fail(&throttle, peer), Some(secs(1)));
        assert_eq!(throttle.check(peer), Err(secs(1)));
        assert_eq!(throttle.reserve(peer), Err(secs(1)));

        clock.advance(Duration::seconds(1));
        assert!(throttle.check(peer).is_ok());
        assert_eq!(fail(&throttle, peer), Some(secs(2)));

        clock.advance(Duration::milliseconds(500));
        assert_eq!(throttle.check(peer), Err(secs(2)));
        clock.advance(Duration::milliseconds(1500));
        assert_eq!(fail(&throttle, peer), Some(secs(4)));
    }

    #[test]
    fn a_refused_reservation_counts_nothing() {
        let (clock, throttle) = setup();
        let peer = ip("10.0.0.1");
        for _ in 0..FREE_FAILURES {
            let _ = fail(&throttle, peer);
        }
        for _ in 0..50 {
            assert_eq!(throttle.reserve(peer), Err(secs(1)));
        }

        // The sixth failure, not the fifty-sixth.
        clock.advance(Duration::seconds(1));
        assert_eq!(fail(&throttle, peer), Some(secs(2)));
    }

    #[test]
    fn blocks_are_capped() {
        let (clock, throttle) = setup();
        let peer = ip("10.0.0.1");
        let mut last = None;
        for _ in 0..40 {
            last = fail(&throttle, peer);
            if let Some(block) = last {
                clock.advance(Duration::try_from(block).unwrap());
            }
        }
        assert_eq!(last, Some(secs(15 * 60)));
    }

    #[test]
    fn a_success_releases_the_reservation_and_every_failure() {
        let (_clock, throttle) = setup();
        let peer = ip("10.0.0.1");
        for _ in 0..FREE_FAILURES - 1 {
            let _ = fail(&throttle, peer);
        }
        // This attempt would block the address if it failed; it succeeds instead.
        assert_eq!(throttle.reserve(peer).unwrap().blocks_for, Some(secs(1)));
        throttle.success(peer);

        assert!(throttle.check(peer).is_ok());
        for _ in 0..FREE_FAILURES - 1 {
            assert_eq!(fail(&throttle, peer), None);
        }
    }

    #[test]
    fn time_forgets_failures() {
        let (clock, throttle) = setup();
        let peer = ip("10.0.0.1");
        for _ in 0..FREE_FAILURES - 1 {
            let _ = fail(&throttle, peer);
        }
        clock.advance(FORGET_AFTER);
        for _ in 0..FREE_FAILURES - 1 {
            assert_eq!(fail(&throttle, peer), None);
        }
    }

    #[test]
    fn racing_attempts_reserve_no_more_than_the_free_failures() {
        // Bug: the throttle was checked before the body was read and the failure counted after
        // the comparison, so parallel wrong keys were all compared. Reservations are counted
        // under the lock that checks them.
        let (_clock, throttle) = setup();
        let peer = ip("10.0.0.1");
        let reserved = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|scope| {
            for _ in 0..16 {
                scope.spawn(|| {
                    for _ in 0..10 {
                        if throttle.reserve(peer).is_ok() {
                            reserved.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(reserved.into_inner(), FREE_FAILURES);
    }

    #[test]
    fn addresses_are_throttled_separately_and_ipv6_by_its_64_prefix() {
        let (_clock, throttle) = setup();
        for _ in 0..FREE_FAILURES {
            let _ = fail(&throttle, ip("2001:db8:1:2::1"));
        }
        assert!(throttle.check(ip("2001:db8:1:2::ffff")).is_err());
        assert!(throttle.reserve(ip("2001:db8:1:2::ffff")).is_err());
        assert!(throttle.check(ip("2001:db8:1:3::1")).is_ok());
        assert!(throttle.check(ip("10.0.0.1")).is_ok());

        for _ in 0..FREE_FAILURES {
            let _ = fail(&throttle, ip("::ffff:10.0.0.2"));
        }
        assert!(throttle.check(ip("10.0.0.2")).is_err());
    }
}
