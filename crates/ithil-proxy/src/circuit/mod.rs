//! The circuit breaker that isolates a failing downstream.
//!
//! Every downstream has its own circuit. While it is closed, calls flow and their outcomes are
//! sampled over a sliding window; once enough calls were sampled and the share of failures reaches
//! the configured ratio, the circuit opens. An open circuit refuses every call at once, without
//! contacting the downstream, until the break is over; then exactly one call, the probe, goes
//! through while every other call is still refused. The probe's success closes the circuit with
//! an empty window; its failure opens it for a fresh break.
//!
//! A call asks [`CircuitBreakers::acquire`] for a [`Permit`] before it contacts the downstream,
//! and reports how the call went with [`Permit::record`]. Changes of state come back to the
//! caller as a [`Transition`], so that the server, not this library, decides how loudly to log
//! them.
//!
//! ```
//! use std::sync::Arc;
//!
//! use ithil_proxy::circuit::{CircuitBreakers, CircuitConfig, CircuitState, Outcome};
//! use ithil_token::SystemClock;
//!
//! let breakers = CircuitBreakers::new(CircuitConfig::default(), Arc::new(SystemClock))?;
//!
//! // Five failed calls in a row open the circuit with the default configuration.
//! let mut transitions = Vec::new();
//! for _ in 0..5 {
//!     let permit = breakers.acquire("posts").expect("the circuit is closed");
//!     // ... call the downstream; it answers 500 ...
//!     let status = http::StatusCode::INTERNAL_SERVER_ERROR;
//!     transitions.extend(permit.record(Outcome::from_status(status)));
//! }
//! assert_eq!(transitions.len(), 1);
//! assert_eq!(transitions[0].to, CircuitState::Open);
//!
//! // Now calls are refused without reaching the downstream.
//! let refused = breakers.acquire("posts").unwrap_err();
//! assert!(refused.retry_after.as_secs() <= 30);
//! # Ok::<(), ithil_proxy::circuit::CircuitConfigError>(())
//! ```

mod breaker;
mod window;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use http::StatusCode;
use ithil_token::Clock;
use serde::Serialize;
use time::OffsetDateTime;

use self::breaker::Breaker;

/// When a circuit opens and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CircuitConfig {
    /// How many calls must have been sampled within the window before the circuit may open, at
    /// least 1. Default is 5.
    pub minimum_throughput: u32,
    /// The share of sampled calls that failed at which the circuit opens, greater than 0 and at
    /// most 1. Default is 1.0: the circuit opens only when every sampled call failed.
    pub failure_ratio: f64,
    /// How far back outcomes are sampled, more than zero and at most 24 hours. Default is 30
    /// seconds.
    pub sampling_duration: Duration,
    /// How long an open circuit refuses calls before it lets one probe through, more than zero
    /// and at most 24 hours. Default is 30 seconds.
    pub break_duration: Duration,
}

impl CircuitConfig {
    /// The default minimum throughput.
    pub const DEFAULT_MINIMUM_THROUGHPUT: u32 = 5;
    /// The default failure ratio.
    pub const DEFAULT_FAILURE_RATIO: f64 = 1.0;
    /// The default sampling duration.
    pub const DEFAULT_SAMPLING_DURATION: Duration = Duration::from_secs(30);
    /// The default break duration.
    pub const DEFAULT_BREAK_DURATION: Duration = Duration::from_secs(30);
    /// The longest sampling or break duration accepted.
    pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

    /// Checks every field against its documented range.
    ///
    /// # Errors
    ///
    /// Returns the first field out of range, in declaration order.
    pub fn validate(&self) -> Result<(), CircuitConfigError> {
        if self.minimum_throughput == 0 {
            return Err(CircuitConfigError::MinimumThroughput);
        }

        // Written so that NaN fails too.
        if !(self.failure_ratio > 0.0 && self.failure_ratio <= 1.0) {
            return Err(CircuitConfigError::FailureRatio(self.failure_ratio));
        }

        if self.sampling_duration.is_zero() || self.sampling_duration > Self::MAX_DURATION {
            return Err(CircuitConfigError::SamplingDuration(self.sampling_duration));
        }
        if self.break_duration.is_zero() || self.break_duration > Self::MAX_DURATION {
            return Err(CircuitConfigError::BreakDuration(self.break_duration));
        }
        Ok(())
    }
}

impl Default for CircuitConfig {
    fn default() -> CircuitConfig {
        CircuitConfig {
            minimum_throughput: Self::DEFAULT_MINIMUM_THROUGHPUT,
            failure_ratio: Self::DEFAULT_FAILURE_RATIO,
            sampling_duration: Self::DEFAULT_SAMPLING_DURATION,
            break_duration: Self::DEFAULT_BREAK_DURATION,
        }
    }
}

/// A [`CircuitConfig`] field outside its range, named by its configuration key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CircuitConfigError {
    /// The minimum throughput is 0.
    #[error("circuitBreaker.minimumThroughput must be at least 1")]
    MinimumThroughput,
    /// The failure ratio is not in `(0, 1]`.
    #[error("circuitBreaker.failureRatio must be greater than 0 and at most 1, not {0}")]
    FailureRatio(f64),
    /// The sampling duration is zero or longer than [`CircuitConfig::MAX_DURATION`].
    #[error(
        "circuitBreaker.samplingDuration must be more than zero and at most 24 hours, not {0:?}"
    )]
    SamplingDuration(Duration),
    /// The break duration is zero or longer than [`CircuitConfig::MAX_DURATION`].
    #[error("circuitBreaker.breakDuration must be more than zero and at most 24 hours, not {0:?}")]
    BreakDuration(Duration),
}

impl CircuitConfigError {
    /// The configuration key of the field, in the camelCase form of Ithil's JSON file.
    pub fn key(&self) -> &'static str {
        match self {
            CircuitConfigError::MinimumThroughput => "circuitBreaker.minimumThroughput",
            CircuitConfigError::FailureRatio(_) => "circuitBreaker.failureRatio",
            CircuitConfigError::SamplingDuration(_) => "circuitBreaker.samplingDuration",
            CircuitConfigError::BreakDuration(_) => "circuitBreaker.breakDuration",
        }
    }
}

/// The state of one circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls flow and their outcomes are sampled.
    Closed,
    /// Calls are refused until the break is over.
    Open,
    /// The break is over; one probe call decides whether the circuit closes or opens again.
    HalfOpen,
}

impl CircuitState {
    /// The state's name as the management API writes it: `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a call through the circuit went, as far as the downstream's health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The downstream answered (a 1xx, 2xx or 3xx status).
    Success,
    /// The downstream failed: a 5xx status, a timeout, a refused or broken connection.
    Failure,
    /// The answer says nothing about the downstream's health, such as a 4xx status: that is the
    /// agent's mistake. It is never sampled; a probe that ends this way gives the probe slot
    /// back, so the next call probes instead.
    Ignored,
}

impl Outcome {
    /// Classifies a downstream's HTTP status: 5xx is a failure, 4xx is ignored, anything else is
    /// a success.
    pub fn from_status(status: StatusCode) -> Outcome {
        if status.is_server_error() {
            Outcome::Failure
        } else if status.is_client_error() {
            Outcome::Ignored
        } else {
            Outcome::Success
        }
    }
}

/// A change of one circuit's state, for the caller to log (the server logs these at warn).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The downstream whose circuit changed.
    pub downstream: Arc<str>,
    /// The state before.
    pub from: CircuitState,
    /// The state after.
    pub to: CircuitState,
    /// When the change happened, by the breakers' clock.
    pub at: OffsetDateTime,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "circuit of downstream {} changed from {} to {}",
            self.downstream, self.from, self.to
        )
    }
}

/// The refusal of a call because the downstream's circuit is open (HTTP 503, JSON-RPC -32003).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("circuit of downstream {downstream} is open")]
pub struct Open {
    /// The downstream whose circuit refused the call.
    pub downstream: Arc<str>,
    /// How long until the break is over. Zero while the circuit is half-open and its probe is in
    /// flight, since the probe's answer may close the circuit at any moment.
    pub retry_after: Duration,
}

impl Open {
    /// The value for a `Retry-After` header: [`Open::retry_after`] in whole seconds, rounded up,
    /// and at least 1 so that clients do not retry in a tight loop.
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        secs.max(1)
    }
}

/// One circuit's state and recent counts, as `GET /management/circuits` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CircuitSnapshot {
    /// The downstream's name.
    pub downstream: String,
    /// The circuit's state: `closed`, `open` or `half_open`. An open circuit whose break is over
    /// reads as open until the next call to it turns it half-open.
    pub state: CircuitState,
    /// When the circuit entered that state (for a circuit that never changed, when it was
    /// created).
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// Successful calls inside the sampling window now.
    pub recent_successes: u64,
    /// Failed calls inside the sampling window now.
    pub recent_failures: u64,
    /// How many times the circuit opened since it was created.
    pub opened_count: u64,
}

/// What every circuit of one [`CircuitBreakers`] shares.
struct Shared {
    config: CircuitConfig,
    clock: Arc<dyn Clock>,
    sampling_nanos: i128,
    break_duration: time::Duration,
}

/// The circuits of every downstream, one per name, created on first use.
///
/// Acquiring a permit through a closed circuit takes one read lock of the registry and one atomic
/// load; reporting its outcome locks that downstream's circuit for a few additions. Circuits of
/// different downstreams never wait for each other.
pub struct CircuitBreakers {
    shared: Arc<Shared>,
    breakers: RwLock<BTreeMap<Arc<str>, Arc<Breaker>>>,
}

impl CircuitBreakers {
    /// Creates a registry with no circuits yet, every one of which will follow `config` and read
    /// the time from `clock`.
    ///
    /// # Errors
    ///
    /// Returns the first field of `config` out of range, as [`CircuitConfig::validate`] does.
    pub fn new(
        config: CircuitConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<CircuitBreakers, CircuitConfigError> {
        config.validate()?;

        // Both durations are at most a day, so neither conversion can fail.
        let sampling_nanos = config.sampling_duration.as_nanos() as i128;
        let break_duration =
            time::Duration::try_from(config.break_duration).unwrap_or(time::Duration::DAY);

        Ok(CircuitBreakers {
            shared: Arc::new(Shared {
                config,
                clock,
                sampling_nanos,
                break_duration,
            }),
            breakers: RwLock::new(BTreeMap::new()),
        })
    }

    /// The configuration every circuit follows.
    pub fn config(&self) -> &CircuitConfig {
        &self.shared.config
    }

    /// Asks `downstream`'s circuit for permission to call it, creating a closed circuit on first
    /// use.
    ///
    /// The caller contacts the downstream only with a permit, then reports the outcome with
    /// [`Permit::record`]. When the break of an open circuit is over, the first call gets the
    /// probe permit, and [`Permit::transition`] carries the change from open to half-open.
    ///
    /// # Errors
    ///
    /// Returns [`Open`] while the circuit is open, or half-open with its probe in flight.
    pub fn acquire(&self, downstream: &str) -> Result<Permit, Open> {
        self.breaker(downstream).acquire()
    }

    /// Makes the set of circuits match the catalog's downstream names: creates a closed circuit
    /// for each new name, keeps the state of names already known, and forgets the rest.
    ///
    /// Permits of a forgotten circuit stay valid; their outcomes are counted by a circuit no
    /// longer in the registry.
    pub fn sync_downstreams<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let names: BTreeSet<&str> = names.into_iter().collect();
        let now = self.shared.clock.now();
        let mut breakers = self.write();

        breakers.retain(|name, _| names.contains(&**name));
        for name in names {
            if !breakers.contains_key(name) {
                let name: Arc<str> = Arc::from(name);
                let breaker = Breaker::new(name.clone(), self.shared.clone(), now);
                breakers.insert(name, Arc::new(breaker));
            }
        }
    }

    /// The state of `downstream`'s circuit, if it has one yet.
    pub fn state(&self, downstream: &str) -> Option<CircuitState> {
        self.read().get(downstream).map(|breaker| breaker.state())
    }

    /// Every circuit's state and recent counts, ordered by downstream name.
    pub fn snapshot(&self) -> Vec<CircuitSnapshot> {
        let now = self.shared.clock.now();
        let breakers: Vec<Arc<Breaker>> = self.read().values().cloned().collect();
        breakers
            .iter()
            .map(|breaker| breaker.snapshot(now))
            .collect()
    }

    fn breaker(&self, downstream: &str) -> Arc<Breaker> {
        if let Some(breaker) = self.read().get(downstream) {
            return breaker.clone();
        }

        // Another call may have created it between the two locks; the entry keeps the first.
        let now = self.shared.clock.now();
        let mut breakers = self.write();
        let breaker = breakers
            .entry(Arc::from(downstream))
            .or_insert_with_key(|name| {
                Arc::new(Breaker::new(name.clone(), self.shared.clone(), now))
            });
        breaker.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Arc<str>, Arc<Breaker>>> {
        // Nothing panics while the registry is locked, so a poisoned lock guards a whole map.
        self.breakers.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<Arc<str>, Arc<Breaker>>> {
        self.breakers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for CircuitBreakers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<Arc<str>> = self.read().keys().cloned().collect();
        f.debug_struct("CircuitBreakers")
            .field("config", &self.shared.config)
            .field("downstreams", &names)
            .finish_non_exhaustive()
    }
}

/// Permission to make one call to a downstream, to be settled with [`Permit::record`].
///
/// Dropping a permit without recording it (the call was cancelled) counts nothing. If it was the
/// probe of a half-open circuit, dropping it gives the probe slot back, so the next call probes
/// instead and the circuit cannot stay half-open with no probe in flight.
#[must_use = "a permit must be settled with `record`; dropping it counts nothing"]
pub struct Permit {
    breaker: Arc<Breaker>,
    generation: u64,
    probe: bool,
    transition: Option<Transition>,
    settled: bool,
}

impl Permit {
    fn new(
        breaker: Arc<Breaker>,
        generation: u64,
        probe: bool,
        transition: Option<Transition>,
    ) -> Permit {
        Permit {
            breaker,
            generation,
            probe,
            transition,
            settled: false,
        }
    }

    /// The downstream this permit is for.
    pub fn downstream(&self) -> &str {
        &self.breaker.name
    }

    /// Whether this is the single probe of a half-open circuit.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The change from open to half-open that granting this probe caused, if it did.
    pub fn transition(&self) -> Option<&Transition> {
        self.transition.as_ref()
    }

    /// Reports how the call went and returns the change of state it caused, if any.
    ///
    /// In a closed circuit a failure may open it; for the probe, success closes the circuit and
    /// failure opens it for a fresh break. An outcome reported after the circuit changed state
    /// since this permit was granted is not counted.
    pub fn record(mut self, outcome: Outcome) -> Option<Transition> {
        self.settled = true;
        self.breaker.record(self.generation, self.probe, outcome)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.probe && !self.settled {
            self.breaker.release_probe(self.generation);
        }
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("downstream", &self.breaker.name)
            .field("probe", &self.probe)
            .field("transition", &self.transition)
            .finish_non_exhaustive()
    }
}
