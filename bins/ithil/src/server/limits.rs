//! What one client may hold of the server: connections per peer, time for a request body, and
//! time without a request.
//!
//! hyper bounds the request head itself (its size and, for HTTP/1.1, the time it may take);
//! these three bounds are the ones it leaves to the server.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Open connections by peer, each peer held to the same cap.
#[derive(Debug)]
pub struct PeerSlots {
    max: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

impl PeerSlots {
    /// Slots for at most `max` connections per peer (at least one).
    pub fn new(max: usize) -> Arc<PeerSlots> {
        Arc::new(PeerSlots {
            max: max.max(1),
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a slot for a new connection from `peer`, or `None` when the peer holds the cap.
    ///
    /// The slot is given back when the returned guard drops, so a connection task that ends in
    /// any way (closed, failed, or dropped with the runtime) frees its slot.
    pub fn acquire(self: &Arc<Self>, peer: IpAddr) -> Option<PeerSlot> {
        let key = bucket(peer);
        let mut counts = self.lock();
        let count = counts.entry(key).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            slots: Arc::clone(self),
            key,
        })
    }

    /// How many connections `peer` holds now.
    #[cfg(test)]
    pub fn held(&self, peer: IpAddr) -> usize {
        self.lock().get(&bucket(peer)).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One connection's place in [`PeerSlots`], given back on drop.
#[derive(Debug)]
pub struct PeerSlot {
    slots: Arc<PeerSlots>,
    key: IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut counts = self.slots.lock();
        if let Some(count) = counts.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                // Peers come and go; the map holds only those with a connection open.
                counts.remove(&self.key);
            }
        }
    }
}

/// The address a peer is counted under: an IPv4 address as it is (also when it arrives mapped
/// into IPv6), an IPv6 address by its /64, the smallest block a single host is usually given.
fn bucket(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The whole body did not arrive before its deadline.
    #[error("the request body did not arrive in time")]
    TimedOut,
    /// The connection failed while the body was read.
    #[error("the request body could not be read")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A request body that fails once its deadline passes, and says so in a flag the server reads
/// after the handler answered.
///
/// The handlers read bodies with their own size limit and map any read error to 400; the flag
/// lets the server turn that answer into 408 without the handlers knowing about the deadline.
#[derive(Debug)]
pub struct TimedBody<B> {
    inner: B,
    deadline: Instant,
    /// Made on the first poll that has to wait, so bodiless requests never start a timer.
    sleep: Option<Pin<Box<Sleep>>>,
    expired: Arc<AtomicBool>,
}

impl<B> TimedBody<B> {
    /// Wraps `inner`, which must arrive whole by `deadline`; `expired` is set when it did not.
    pub fn new(inner: B, deadline: Instant, expired: Arc<AtomicBool>) -> TimedBody<B> {
        TimedBody {
            inner,
            deadline,
            sleep: None,
            expired,
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.expired.load(Ordering::Acquire) {
            return Poll::Ready(Some(Err(BodyError::TimedOut)));
        }

        // Data that has arrived is taken even at the deadline; only waiting is bounded.
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(|e| BodyError::Read(e.into()))));
        }

        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.expired.store(true, Ordering::Release);
                Poll::Ready(Some(Err(BodyError::TimedOut)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a connection is busy, and since when it has not been: what the idle bound reads.
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` of the last request's start or end.
    last_ms: AtomicU64,
    served: AtomicBool,
}

impl Activity {
    /// The activity of a connection opened now.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            served: AtomicBool::new(false),
        })
    }

    /// Marks a request in flight until the returned guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.served.store(true, Ordering::Release);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        InFlight {
            activity: Arc::clone(self),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::AcqRel);
    }

    /// Resolves once the connection has been without a request for too long: `first` after it
    /// opened when no request has started yet, `idle` after the last request otherwise.
    ///
    /// The timer is re-armed only when it fires, not on every request, so a busy connection
    /// costs one timer wake-up per `idle`.
    pub async fn idle(&self, first: Duration, idle: Duration) {
        loop {
            let now = Instant::now();
            let deadline = if self.in_flight.load(Ordering::Acquire) > 0 {
                now + idle
            } else if !self.served.load(Ordering::Acquire) {
                self.opened + first
            } else {
                self.opened + Duration::from_millis(self.last_ms.load(Ordering::Acquire)) + idle
            };
            if deadline <= now {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// One request in flight on a connection; see [`Activity::begin`].
#[derive(Debug)]
pub struct InFlight {
    activity: Arc<Activity>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity.touch();
        self.activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::BodyExt as _;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_peer_gets_no_more_slots_than_the_cap_and_a_closed_one_comes_back() {
        let slots = PeerSlots::new(2);
        let a = slots.acquire(ip("127.0.0.1")).unwrap();
        let _b = slots.acquire(ip("127.0.0.1")).unwrap();
        assert!(slots.acquire(ip("127.0.0.1")).is_none());

        // Another peer has its own slots.
        let _other = slots.acquire(ip("127.0.0.2")).unwrap();

        drop(a);
        assert_eq!(slots.held(ip("127.0.0.1")), 1);
        assert!(slots.acquire(ip("127.0.0.1")).is_some());
    }

    #[test]
    fn a_peer_without_connections_leaves_no_entry() {
        let slots = PeerSlots::new(1);
        drop(slots.acquire(ip("10.0.0.1")).unwrap());
        assert!(slots.lock().is_empty());
    }

    #[test]
    fn ipv6_peers_are_counted_by_their_64_and_mapped_ipv4_as_ipv4() {
        let slots = PeerSlots::new(1);
        let _a = slots.acquire(ip("2001:db8:1:2::1")).unwrap();
        assert!(slots.acquire(ip("2001:db8:1:2:ffff::9")).is_none());
        assert!(slots.acquire(ip("2001:db8:1:3::1")).is_some());

        let _v4 = slots.acquire(ip("192.0.2.7")).unwrap();
        assert!(slots.acquire(ip("::ffff:192.0.2.7")).is_none());
    }

    /// A body fed from a channel, so a test decides when (and whether) each chunk arrives.
    struct Chunks(tokio::sync::mpsc::Receiver<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            self.0
                .poll_recv(cx)
                .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
        }
    }

    fn chunks() -> (tokio::sync::mpsc::Sender<Bytes>, Chunks) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        (tx, Chunks(rx))
    }

    #[tokio::test]
    async fn a_body_that_stops_arriving_fails_at_its_deadline_and_sets_the_flag() {
        let (tx, body) = chunks();
        let expired = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + Duration::from_millis(50);
        let timed = TimedBody::new(body, deadline, Arc::clone(&expired));

        // One chunk arrives, then nothing more, and the sender stays open.
        tx.send(Bytes::from_static(b"a")).await.unwrap();
        let error = timed.collect().await.unwrap_err();

        assert!(matches!(error, BodyError::TimedOut));
        assert!(expired.load(Ordering::Acquire));
        assert!(Instant::now() >= deadline);
        drop(tx);
    }

    #[tokio::test]
    async fn a_body_that_arrives_in_time_is_read_whole() {
        let (tx, body) = chunks();
        let expired = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + Duration::from_secs(60);
        let timed = TimedBody::new(body, deadline, Arc::clone(&expired));
        tokio::spawn(async move {
            for chunk in [&b"ab"[..], b"cd"] {
                tokio::task::yield_now().await;
                tx.send(Bytes::from_static(chunk)).await.unwrap();
            }
        });

        let bytes = timed.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"abcd");
        assert!(!expired.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn a_connection_without_a_first_request_becomes_idle_after_the_first_bound() {
        let activity = Activity::new();
        let first = Duration::from_millis(30);
        activity.idle(first, Duration::from_secs(3600)).await;
        assert!(activity.opened.elapsed() >= first);
    }

    #[tokio::test]
    async fn a_request_in_flight_keeps_the_connection_busy_and_its_end_restarts_the_bound() {
        let activity = Activity::new();
        let idle = Duration::from_millis(30);
        let request = activity.begin();

        // However long the request takes, the connection is not idle while it runs.
        let busy = tokio::time::timeout(idle * 5, activity.idle(idle, idle)).await;
        assert!(
            busy.is_err(),
            "a connection with a request in flight was idle"
        );

        drop(request);
        let ended = Instant::now();
        activity.idle(idle, idle).await;
        assert!(ended.elapsed() >= idle - Duration::from_millis(1));
    }
}
