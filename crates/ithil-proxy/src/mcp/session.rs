//! MCP sessions: random ids bound to the agent that opened them, idle expiry, a cap per agent.
//!
//! Sessions live in memory only. A restart forgets them, and clients answer the resulting 404
//! by initializing again, as the specification requires of them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use ithil_token::Clock;
use ring::rand::{SecureRandom, SystemRandom};
use time::{Duration, OffsetDateTime};

use crate::mcp::version::ProtocolVersion;

/// The HTTP header that carries the session id.
pub const SESSION_HEADER: &str = "mcp-session-id";

/// How many random bytes a session id holds (128 bits, printed as 32 hex digits).
const SESSION_ID_BYTES: usize = 16;

/// Limits of the session store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// How long a session lives without a request. Default is 30 minutes.
    pub idle_timeout: Duration,
    /// How many sessions one agent may hold; at the cap, opening one more drops the least
    /// recently used. Default is 100.
    pub max_per_agent: usize,
}

impl Default for SessionLimits {
    fn default() -> SessionLimits {
        SessionLimits {
            idle_timeout: Duration::minutes(30),
            max_per_agent: 100,
        }
    }
}

/// What the gateway knows about one live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session id.
    pub id: String,
    /// The agent that opened the session.
    pub agent_id: String,
    /// The revision negotiated at `initialize`.
    pub version: ProtocolVersion,
}

/// Why a session id was not accepted. Every variant answers 404 alike, so a client cannot tell
/// an expired id from another agent's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// No session has this id (never existed, ended, or evicted).
    #[error("session not found")]
    NotFound,
    /// The session was idle for longer than the timeout.
    #[error("session expired")]
    Expired,
    /// The session belongs to another agent.
    #[error("session belongs to another agent")]
    WrongAgent,
    /// The system random number generator failed.
    #[error("random number generator failed")]
    Random,
}

#[derive(Debug)]
struct Entry {
    agent_id: String,
    version: ProtocolVersion,
    last_used: OffsetDateTime,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<String, Entry>,
    by_agent: HashMap<String, HashSet<String>>,
    last_sweep: Option<OffsetDateTime>,
}

impl Inner {
    fn remove(&mut self, id: &str) -> Option<Entry> {
        let entry = self.by_id.remove(id)?;
        if let Some(ids) = self.by_agent.get_mut(&entry.agent_id) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_agent.remove(&entry.agent_id);
            }
        }
        Some(entry)
    }
}

/// The live sessions of the gateway.
pub struct Sessions {
    limits: SessionLimits,
    clock: Arc<dyn Clock>,
    rng: SystemRandom,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Session ids are bearer secrets of a kind, so only the count is shown.
        f.debug_struct("Sessions")
            .field("limits", &self.limits)
            .field("len", &self.len())
            .finish()
    }
}

impl Sessions {
    /// Creates an empty store that reads the time from `clock`.
    pub fn new(limits: SessionLimits, clock: Arc<dyn Clock>) -> Sessions {
        Sessions {
            limits,
            clock,
            rng: SystemRandom::new(),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The store's limits.
    pub fn limits(&self) -> SessionLimits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every mutation below leaves the maps consistent before it can panic, so a poisoned
        // lock still guards valid state.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens a session for `agent_id` and returns its id.
    ///
    /// When the agent already holds `max_per_agent` live sessions, the least recently used one
    /// is dropped first.
    ///
    /// # Errors
    ///
    /// Returns [`SessionError::Random`] when the system random number generator fails.
    pub fn create(&self, agent_id: &str, version: ProtocolVersion) -> Result<String, SessionError> {
        let mut bytes = [0u8; SESSION_ID_BYTES];
        self.rng
            .fill(&mut bytes)
            .map_err(|_| SessionError::Random)?;
        let id = hex(&bytes);
        let now = self.clock.now();

        let mut inner = self.lock();
        self.maybe_sweep(&mut inner, now);

        // Expired sessions of this agent do not count against its cap.
        let own: Vec<String> = inner
            .by_agent
            .get(agent_id)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default();
        for old in &own {
            if inner
                .by_id
                .get(old)
                .is_some_and(|e| self.is_expired(e, now))
            {
                inner.remove(old);
            }
        }
        while inner.by_agent.get(agent_id).map_or(0, HashSet::len) >= self.limits.max_per_agent {
            let Some(lru) = inner.by_agent.get(agent_id).and_then(|ids| {
                ids.iter()
                    .min_by_key(|id| inner.by_id.get(*id).map(|e| e.last_used))
                    .cloned()
            }) else {
                break;
            };
            tracing::debug!(
                agent.id = agent_id,
                "session cap reached, dropping the least recently used"
            );
            inner.remove(&lru);
        }

        inner.by_id.insert(
            id.clone(),
            Entry {
                agent_id: agent_id.to_owned(),
                version,
                last_used: now,
            },
        );
        inner
            .by_agent
            .entry(agent_id.to_owned())
            .or_default()
            .insert(id.clone());
        Ok(id)
    }

    /// Looks a session up for a request of `agent_id` and marks it used.
    ///
    /// # Errors
    ///
    /// Returns [`SessionError::NotFound`], [`SessionError::Expired`] (the session is removed)
    /// or [`SessionError::WrongAgent`] (the session is left alone, so that a stolen id cannot be
    /// used to end another agent's session).
    pub fn touch(&self, id: &str, agent_id: &str) -> Result<SessionInfo, SessionError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        self.maybe_sweep(&mut inner, now);

        let entry = inner.by_id.get_mut(id).ok_or(SessionError::NotFound)?;
        if entry.agent_id != agent_id {
            return Err(SessionError::WrongAgent);
        }
        if now - entry.last_used > self.limits.idle_timeout {
            inner.remove(id);
            return Err(SessionError::Expired);
        }
        entry.last_used = now;
        Ok(SessionInfo {
            id: id.to_owned(),
            agent_id: entry.agent_id.clone(),
            version: entry.version,
        })
    }

    /// Ends a session of `agent_id` (`DELETE /mcp`).
    ///
    /// # Errors
    ///
    /// The same as [`Sessions::touch`].
    pub fn end(&self, id: &str, agent_id: &str) -> Result<(), SessionError> {
        self.touch(id, agent_id)?;
        self.lock().remove(id);
        Ok(())
    }

    /// Drops every expired session and returns how many went.
    ///
    /// Lookups and creations already sweep now and then; this is for callers that want the
    /// memory back sooner.
    pub fn sweep(&self) -> usize {
        let now = self.clock.now();
        let mut inner = self.lock();
        self.sweep_locked(&mut inner, now)
    }

    /// The number of sessions held, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of sessions `agent_id` holds, expired ones not yet swept included.
    pub fn count_for(&self, agent_id: &str) -> usize {
        self.lock().by_agent.get(agent_id).map_or(0, HashSet::len)
    }

    fn is_expired(&self, e: &Entry, now: OffsetDateTime) -> bool {
        now - e.last_used > self.limits.idle_timeout
    }

    /// Sweeps at most once a minute, so that a full pass costs nothing noticeable per request.
    fn maybe_sweep(&self, inner: &mut Inner, now: OffsetDateTime) {
        let due = inner
            .last_sweep
            .is_none_or(|last| now - last >= Duration::minutes(1) || now < last);
        if due {
            self.sweep_locked(inner, now);
        }
    }

    fn sweep_locked(&self, inner: &mut Inner, now: OffsetDateTime) -> usize {
        inner.last_sweep = Some(now);
        let expired: Vec<String> = inner
            .by_id
            .iter()
            .filter(|(_, e)| self.is_expired(e, now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            inner.remove(id);
        }
        expired.len()
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    s
}

/// Returns `len` random bytes from the system generator as lowercase hex.
///
/// # Errors
///
/// Returns [`SessionError::Random`] when the generator fails.
pub(crate) fn random_hex(rng: &SystemRandom, len: usize) -> Result<String, SessionError> {
    let mut bytes = vec![0u8; len];
    rng.fill(&mut bytes).map_err(|_| SessionError::Random)?;
    Ok(hex(&bytes))
}

#[cfg(test)]
mod tests {
    use ithil_token::ManualClock;
    use time::macros::datetime;

    use super::*;

    fn store(max: usize) -> (Sessions, ManualClock) {
        let clock = ManualClock::new(datetime!(2025-05-01 12:00 UTC));
        let limits = SessionLimits {
            idle_timeout: Duration::minutes(30),
            max_per_agent: max,
        };
        (Sessions::new(limits, Arc::new(clock.clone())), clock)
    }

    #[test]
    fn session_ids_are_32_hex_digits_and_distinct() {
        let (s, _) = store(10);
        let a = s.create("agt_a", ProtocolVersion::LATEST).unwrap();
        let b = s.create("agt_a", ProtocolVersion::LATEST).unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn a_session_answers_its_own_agent_with_its_version() {
        let (s, _) = store(10);
        let id = s.create("agt_a", ProtocolVersion::V2025_03_26).unwrap();
        let info = s.touch(&id, "agt_a").unwrap();
        assert_eq!(info.agent_id, "agt_a");
        assert_eq!(info.version, ProtocolVersion::V2025_03_26);
    }

    #[test]
    fn another_agent_cannot_use_or_end_a_session() {
        let (s, _) = store(10);
        let id = s.create("agt_a", ProtocolVersion::LATEST).unwrap();
        assert_eq!(s.touch(&id, "agt_b"), Err(SessionError::WrongAgent));
        assert_eq!(s.end(&id, "agt_b"), Err(SessionError::WrongAgent));
        assert!(s.touch(&id, "agt_a").is_ok());
    }

    #[test]
    fn an_idle_session_expires_and_a_used_one_does_not() {
        let (s, clock) = store(10);
        let idle = s.create("agt_a", ProtocolVersion::LATEST).unwrap();
        let busy = s.create("agt_a", ProtocolVersion::LATEST).unwrap();

        clock.advance(Duration::minutes(20));
        s.touch(&busy, "agt_a").unwrap();
        clock.advance(Duration::minutes(20));

        // The periodic sweep may have removed it already; both answer 404.
        assert!(matches!(
            s.touch(&idle, "agt_a"),
            Err(SessionError::Expired | SessionError::NotFound)
        ));
        assert!(s.touch(&busy, "agt_a").is_ok());
        assert_eq!(s.touch(&idle, "agt_a"), Err(SessionError::NotFound));
    }

    #[test]
    fn a_session_that_expired_since_the_last_sweep_is_reported_expired() {
        let (s, clock) = store(10);
        let id = s.create("agt_a", ProtocolVersion::LATEST).unwrap();
        clock.advance(Duration::seconds(29 * 60 + 30));
        s.sweep();
        clock.advance(Duration::seconds(45));
        assert_eq!(s.touch(&id, "agt_a"), Err(SessionError::Expired));
        assert_eq!(s.touch(&id, "agt_a"), Err(SessionError::NotFound));
    }

    #[test]
    fn a_session_idle_exactly_the_timeout_is_still_live() {
        let (s, clock) = store(10);
        let id = s.create("agt_a", ProtocolVersion::LATEST).unwrap();
        clock.advance(Duration::minutes(30));
        assert!(s.touch(&id, "agt_a").is_ok());
    }

    #[test]
    fn at_the_cap_the_least_recently_used_session_is_dropped() {
        let (s, clock) = store(3);
        let first = s.create("agt_a", ProtocolVersion::LATEST).unwrap();
        clock.advance(Duration::seconds(1));
        let second = s.create("agt_a", ProtocolVersion::LATEST).unwrap();
        clock.advance(Duration::seconds(1));
        let third = s.create("agt_a", ProtocolVersion::LATEST).unwrap();
        clock.advance(Duration::seconds(1));
        // Using the oldest makes the second the least recently used.
        s.touch(&first, "agt_a").unwrap();
        clock.advance(Duration::seconds(1));

        let fourth = s.create("agt_a", ProtocolVersion::LATEST).unwrap();
        assert_eq!(s.count_for("agt_a"), 3);
        assert_eq!(s.touch(&second, "agt_a"), Err(SessionError::NotFound));
        for id in [&first, &third, &fourth] {
            assert!(s.touch(id, "agt_a").is_ok());
        }
    }

    #[test]
    fn the_cap_is_per_agent() {
        let (s, _) = store(1);
        let a = s.create("agt_a", ProtocolVersion::LATEST).unwrap();
        let b = s.create("agt_b", ProtocolVersion::LATEST).unwrap();
        assert!(s.touch(&a, "agt_a").is_ok());
        assert!(s.touch(&b, "agt_b").is_ok());
    }

    #[test]
    fn ending_a_session_removes_it() {
        let (s, _) = store(10);
        let id = s.create("agt_a", ProtocolVersion::LATEST).unwrap();
        s.end(&id, "agt_a").unwrap();
        assert_eq!(s.touch(&id, "agt_a"), Err(SessionError::NotFound));
        assert!(s.is_empty());
    }

    #[test]
    fn sweep_drops_only_expired_sessions() {
        let (s, clock) = store(10);
        s.create("agt_a", ProtocolVersion::LATEST).unwrap();
        clock.advance(Duration::minutes(31));
        let fresh = s.create("agt_b", ProtocolVersion::LATEST).unwrap();
        s.sweep();
        assert_eq!(s.len(), 1);
        assert!(s.touch(&fresh, "agt_b").is_ok());
    }

    #[test]
    fn debug_output_holds_no_session_id() {
        let (s, _) = store(10);
        let id = s.create("agt_a", ProtocolVersion::LATEST).unwrap();
        assert!(!format!("{s:?}").contains(&id));
    }
}
