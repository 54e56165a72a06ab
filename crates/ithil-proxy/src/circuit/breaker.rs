//! The state machine of one downstream's circuit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use time::OffsetDateTime;

use super::window::Window;
use super::{CircuitSnapshot, CircuitState, Open, Outcome, Permit, Shared, Transition};

/// One downstream's circuit.
///
/// All state lives behind one mutex, held only for a few comparisons and additions and never
/// while a call is in flight. `word` mirrors the state and its generation so that the common
/// case, a call through a closed circuit, is granted with one atomic load and no lock.
pub(super) struct Breaker {
    pub(super) name: Arc<str>,
    shared: Arc<Shared>,
    /// `generation << 2 | state code`, written only while `inner` is locked.
    word: AtomicU64,
    inner: Mutex<Inner>,
}

struct Inner {
    state: State,
    since: OffsetDateTime,
    /// Increases with every change of state, so an outcome reported by a permit granted before
    /// the change is recognised and not counted against the new state.
    generation: u64,
    window: Window,
    opened_count: u64,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed,
    Open { until: OffsetDateTime },
    HalfOpen { probe_out: bool },
}

impl State {
    fn public(self) -> CircuitState {
        match self {
            State::Closed => CircuitState::Closed,
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

const STATE_BITS: u32 = 2;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;
const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;
/// Generations wrap within the bits left above the state code.
const GENERATION_MASK: u64 = u64::MAX >> STATE_BITS;

fn pack(generation: u64, state: State) -> u64 {
    let code = match state {
        State::Closed => CLOSED,
        State::Open { .. } => OPEN,
        State::HalfOpen { .. } => HALF_OPEN,
    };
    generation << STATE_BITS | code
}

impl Breaker {
    /// Creates a closed circuit for `name`, closed since `now`.
    pub(super) fn new(name: Arc<str>, shared: Arc<Shared>, now: OffsetDateTime) -> Breaker {
        Breaker {
            name,
            word: AtomicU64::new(pack(0, State::Closed)),
            inner: Mutex::new(Inner {
                state: State::Closed,
                since: now,
                generation: 0,
                window: Window::new(shared.sampling_nanos),
                opened_count: 0,
            }),
            shared,
        }
    }

    /// Grants a permit for one call, or refuses it while the circuit is open.
    pub(super) fn acquire(self: &Arc<Self>) -> Result<Permit, Open> {
        // The lock-free path. A call that loads "closed" just before another thread opens the
        // circuit goes through as if it had arrived a moment earlier; its outcome carries the old
        // generation and is not counted.
        let word = self.word.load(Ordering::Acquire);
        if word & STATE_MASK == CLOSED {
            return Ok(Permit::new(self.clone(), word >> STATE_BITS, false, None));
        }

        let now = self.shared.clock.now();
        let mut inner = self.lock();
        match inner.state {
            State::Closed => {
                let generation = inner.generation;
                Ok(Permit::new(self.clone(), generation, false, None))
            }
            State::Open { until } if now < until => Err(self.refusal(until - now)),
            State::Open { .. } => {
                let transition = self.change(&mut inner, State::HalfOpen { probe_out: true }, now);
                let generation = inner.generation;
                Ok(Permit::new(
                    self.clone(),
                    generation,
                    true,
                    Some(transition),
                ))
            }
            State::HalfOpen { probe_out: true } => Err(self.refusal(time::Duration::ZERO)),
            State::HalfOpen { probe_out: false } => {
                inner.state = State::HalfOpen { probe_out: true };
                let generation = inner.generation;
                Ok(Permit::new(self.clone(), generation, true, None))
            }
        }
    }

    /// Counts the outcome of a call granted at `generation`, changing state if it must.
    pub(super) fn record(
        &self,
        generation: u64,
        probe: bool,
        outcome: Outcome,
    ) -> Option<Transition> {
        let now = self.shared.clock.now();
        let mut inner = self.lock();
        if inner.generation != generation {
            return None;
        }

        match (probe, inner.state) {
            (false, State::Closed) => {
                let failed = match outcome {
                    Outcome::Ignored => return None,
                    Outcome::Success => false,
                    Outcome::Failure => true,
                };
                inner.window.add(now, failed);

                // Only a failure can push the share of failures up, so only a failure is checked.
                if failed && self.should_open(&inner, now) {
                    let until = now.saturating_add(self.shared.break_duration);
                    return Some(self.change(&mut inner, State::Open { until }, now));
                }
                None
            }
            (true, State::HalfOpen { probe_out: true }) => match outcome {
                Outcome::Success => Some(self.change(&mut inner, State::Closed, now)),
                Outcome::Failure => {
                    let until = now.saturating_add(self.shared.break_duration);
                    Some(self.change(&mut inner, State::Open { until }, now))
                }
                Outcome::Ignored => {
                    inner.state = State::HalfOpen { probe_out: false };
                    None
                }
            },
            // Every change of state increases the generation, so a permit of the current
            // generation always finds the state it was granted in.
            _ => None,
        }
    }

    /// Gives the probe slot back without a verdict, for a probe permit dropped unrecorded.
    pub(super) fn release_probe(&self, generation: u64) {
        let mut inner = self.lock();
        if inner.generation == generation
            && matches!(inner.state, State::HalfOpen { probe_out: true })
        {
            inner.state = State::HalfOpen { probe_out: false };
        }
    }

    /// The circuit's state and recent counts at `now`.
    pub(super) fn snapshot(&self, now: OffsetDateTime) -> CircuitSnapshot {
        let inner = self.lock();
        let totals = inner.window.totals(now);
        CircuitSnapshot {
            downstream: self.name.to_string(),
            state: inner.state.public(),
            since: inner.since,
            recent_successes: totals.successes,
            recent_failures: totals.failures,
            opened_count: inner.opened_count,
        }
    }

    /// The circuit's state, as stored: an open circuit whose break is over reads as open until
    /// the next call turns it half-open.
    pub(super) fn state(&self) -> CircuitState {
        self.lock().state.public()
    }

    fn should_open(&self, inner: &Inner, now: OffsetDateTime) -> bool {
        let totals = inner.window.totals(now);
        let samples = totals.samples();
        samples >= u64::from(self.shared.config.minimum_throughput)
            && totals.failures as f64 / samples as f64 >= self.shared.config.failure_ratio
    }

    fn change(&self, inner: &mut Inner, to: State, now: OffsetDateTime) -> Transition {
        let from = inner.state.public();
        inner.state = to;
        inner.since = now;
        inner.generation = inner.generation.wrapping_add(1) & GENERATION_MASK;
        match to {
            State::Closed => inner.window.clear(),
            State::Open { .. } => inner.opened_count += 1,
            State::HalfOpen { .. } => {}
        }
        self.word
            .store(pack(inner.generation, to), Ordering::Release);

        tracing::debug!(downstream = %self.name, %from, to = %to.public(), "circuit changed state");
        Transition {
            downstream: self.name.clone(),
            from,
            to: to.public(),
            at: now,
        }
    }

    fn refusal(&self, left: time::Duration) -> Open {
        Open {
            downstream: self.name.clone(),
            retry_after: std::time::Duration::try_from(left).unwrap_or_default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // No code panics while holding this lock, and every update leaves the state whole, so a
        // poisoned lock still guards consistent data.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
