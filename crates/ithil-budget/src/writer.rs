//! The group-commit writer: one loop applies every waiting charge in one durable commit.
//!
//! # How a group is applied
//!
//! The writer takes the first waiting request, then every request already queued (up to
//! [`BudgetConfig::max_group`](crate::BudgetConfig::max_group)), and applies them in order.
//! Requests without extra work share one write transaction. Each check-and-add reads the row
//! inside the transaction, so a charge sees every charge before it in the group and the day's
//! total cannot pass the limit however many race.
//!
//! Extra work is the caller's code and may fail halfway, leaving writes that must not be kept.
//! redb cannot roll back part of a transaction: an ephemeral savepoint can only be taken before a
//! transaction opens its first table (`ephemeral_savepoint` answers `InvalidSavepoint` after
//! that, which a test in this crate pins). So a request with extra work gets a transaction of its
//! own: the open transaction is first committed with `Durability::None` (no fsync), then the
//! request's charge and extra work run in a fresh transaction, which is aborted if the extra work
//! fails and otherwise stays open for the requests after it. The group ends with one commit with
//! `Durability::Immediate`, which makes the whole group durable at once; an empty one is made if
//! the group's last transaction was aborted. Until that commit returns, nothing is answered and
//! the counters do not move, so a result never leaves before its charge is on disk. A crash
//! before it loses the group as a whole: its non-durable commits are not on disk either.
//!
//! Failures: extra work that fails (or panics) fails its own request only. A storage error fails
//! the requests of the transaction it happened in. A failed durable commit fails every request
//! still pending in the group, and the counters stay as they were. redb then refuses every
//! further write (`PreviousIo`) until the database is reopened, which recovers the last durable
//! commit, where the counters already are; so after an I/O failure every charge fails, closed,
//! until the process opens the file again.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use redb::{Durability, ReadableTable, ReadableTableMetadata, WriteTransaction};
use time::Date;
use tokio::sync::{mpsc, oneshot};

use crate::budget::{BudgetConfig, CounterUpdate, Shared, USAGE};
use crate::error::{BudgetError, Result};

/// Work the caller adds to a charge's write transaction, such as an audit record.
///
/// It runs after the check-and-add, inside the same transaction, and receives the outcome (for
/// [`ChargeHandle::write`] and [`ChargeHandle::reset_with`] the outcome is
/// [`ChargeOutcome::NotCharged`]). It commits durably together with the charge or not at all. It
/// must not touch this crate's tables, and it runs on the writer's thread, so it should be quick.
pub type ExtraWork =
    Box<dyn FnOnce(&WriteTransaction, &ChargeOutcome) -> Result<(), redb::Error> + Send>;

/// A request to charge tokens to an agent's day.
pub struct Charge {
    /// The agent to charge.
    pub agent_id: String,
    /// The UTC day to charge; see [`utc_day`](crate::utc_day).
    pub day: Date,
    /// Tokens to add.
    pub tokens: u64,
    /// The agent's effective daily limit: the charge fits only if the day's total stays at or
    /// below it.
    pub limit: u64,
    /// Work for the same write transaction, if any.
    pub extra: Option<ExtraWork>,
}

impl fmt::Debug for Charge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Charge")
            .field("agent_id", &self.agent_id)
            .field("day", &self.day)
            .field("tokens", &self.tokens)
            .field("limit", &self.limit)
            .field("extra", &self.extra.is_some())
            .finish()
    }
}

/// What a charge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// The tokens fit and were charged; `used` is the day's total after the charge.
    Charged {
        /// The day's total including this charge.
        used: u64,
    },
    /// The tokens did not fit; nothing was charged.
    OverLimit {
        /// The day's total, unchanged.
        used: u64,
        /// The limit the charge was checked against.
        limit: u64,
    },
    /// No charge was asked for (extra work alone, or a reset).
    NotCharged,
}

/// The sending side of the writer: cheap to clone, one per task if need be.
#[derive(Clone)]
pub struct ChargeHandle {
    tx: mpsc::Sender<Request>,
}

/// The loop that applies charges; see [`Budget::writer`](crate::Budget::writer).
pub struct ChargeWriter {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Request>,
}

impl fmt::Debug for ChargeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChargeHandle")
            .field("closed", &self.tx.is_closed())
            .finish()
    }
}

impl fmt::Debug for ChargeWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChargeWriter")
            .field("queued", &self.rx.len())
            .finish_non_exhaustive()
    }
}

enum Op {
    Charge {
        agent_id: String,
        day: Date,
        tokens: u64,
        limit: u64,
    },
    Reset {
        agent_id: String,
        day: Date,
    },
    Purge {
        today: Date,
    },
    Write,
}

enum Reply {
    Outcome(ChargeOutcome),
    Purged(u64),
}

struct Request {
    op: Op,
    extra: Option<ExtraWork>,
    reply: oneshot::Sender<Result<Reply>>,
}

/// A connected handle and writer for `shared`.
pub(crate) fn pair(shared: Arc<Shared>) -> (ChargeHandle, ChargeWriter) {
    let (tx, rx) = mpsc::channel(shared.config.queue_capacity.max(1));
    (ChargeHandle { tx }, ChargeWriter { shared, rx })
}

impl ChargeHandle {
    /// Charges `c.tokens` to `c.agent_id` on `c.day` if the day's total stays within `c.limit`,
    /// durably, together with `c.extra`.
    ///
    /// The answer comes after the commit. Dropping the future does not cancel a charge that the
    /// writer has already taken.
    ///
    /// # Errors
    ///
    /// [`BudgetError::ExtraWork`] when the extra work failed (nothing of this request was
    /// applied), [`BudgetError::Storage`] when redb failed, [`BudgetError::WriterStopped`] when
    /// no writer runs.
    pub async fn charge(&self, c: Charge) -> Result<ChargeOutcome> {
        let op = Op::Charge {
            agent_id: c.agent_id,
            day: c.day,
            tokens: c.tokens,
            limit: c.limit,
        };
        match self.request(op, c.extra).await? {
            Reply::Outcome(outcome) => Ok(outcome),
            Reply::Purged(_) => unreachable!("a charge is answered with its outcome"),
        }
    }

    /// Commits `work` durably in the writer's next group, with no charge.
    ///
    /// # Errors
    ///
    /// As [`ChargeHandle::charge`].
    pub async fn write(&self, work: ExtraWork) -> Result<()> {
        self.request(Op::Write, Some(work)).await.map(drop)
    }

    /// Sets the usage of `agent_id` on `day` to zero, durably.
    ///
    /// # Errors
    ///
    /// [`BudgetError::Storage`] or [`BudgetError::WriterStopped`].
    pub async fn reset(&self, agent_id: &str, day: Date) -> Result<()> {
        self.reset_inner(agent_id, day, None).await
    }

    /// Sets the usage of `agent_id` on `day` to zero and runs `extra` (say, the audit record of
    /// who reset it) in the same durable commit.
    ///
    /// # Errors
    ///
    /// As [`ChargeHandle::charge`].
    pub async fn reset_with(&self, agent_id: &str, day: Date, extra: ExtraWork) -> Result<()> {
        self.reset_inner(agent_id, day, Some(extra)).await
    }

    /// Removes usage older than the configured retention (see
    /// [`BudgetConfig::retention_days`](crate::BudgetConfig::retention_days)), counted back
    /// from `today`, and answers how many day rows were removed.
    ///
    /// # Errors
    ///
    /// [`BudgetError::Storage`] or [`BudgetError::WriterStopped`].
    pub async fn purge(&self, today: Date) -> Result<u64> {
        match self.request(Op::Purge { today }, None).await? {
            Reply::Purged(n) => Ok(n),
            Reply::Outcome(_) => unreachable!("a purge is answered with its count"),
        }
    }

    /// How many requests wait for the writer right now: the queue depth, for metrics.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    async fn reset_inner(&self, agent_id: &str, day: Date, extra: Option<ExtraWork>) -> Result<()> {
        let op = Op::Reset {
            agent_id: agent_id.to_owned(),
            day,
        };
        self.request(op, extra).await.map(drop)
    }

    async fn request(&self, op: Op, extra: Option<ExtraWork>) -> Result<Reply> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request { op, extra, reply })
            .await
            .map_err(|_| BudgetError::WriterStopped)?;
        answer.await.map_err(|_| BudgetError::WriterStopped)?
    }
}

/// A request's state within a group.
enum State {
    /// Not applied yet.
    Waiting,
    /// Applied; its answer and counter updates wait for the group's durable commit.
    Pending(Reply, Vec<CounterUpdate>),
    /// Failed; nothing of it will be committed.
    Failed(BudgetError),
}

/// The open write transaction and the requests whose work it holds.
struct Open {
    txn: WriteTransaction,
    members: Vec<usize>,
}

impl ChargeWriter {
    /// Applies requests until every [`ChargeHandle`] has been dropped.
    ///
    /// This blocks its thread: run it on a thread of its own or with
    /// `tokio::task::spawn_blocking`.
    ///
    /// # Panics
    ///
    /// When called from inside an async context (a tokio runtime's worker), which it would
    /// block.
    pub fn run(mut self) {
        let max_group = self.shared.config.max_group.max(1);
        while let Some(first) = self.rx.blocking_recv() {
            let mut group = vec![first];
            while group.len() < max_group {
                match self.rx.try_recv() {
                    Ok(request) => group.push(request),
                    Err(_) => break,
                }
            }
            self.apply_group(group);
        }
        tracing::debug!("budget writer stopped: every handle was dropped");
    }

    fn apply_group(&self, group: Vec<Request>) {
        let shared = &*self.shared;
        let turn = shared
            .write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let size = group.len();
        let mut replies = Vec::with_capacity(size);
        let mut states: Vec<State> = Vec::with_capacity(size);
        let mut work = Vec::with_capacity(size);
        for request in group {
            replies.push(request.reply);
            states.push(State::Waiting);
            work.push((request.op, request.extra));
        }

        // Apply each request in order. Invariant: the writes of every `Pending` request are in
        // `open` or in a transaction committed non-durably before it.
        let mut open: Option<Open> = None;
        let mut committed_non_durably = false;
        for (index, (op, extra)) in work.into_iter().enumerate() {
            if let Some(extra) = extra {
                // Isolate the extra work: what came before must survive if it fails.
                if let Some(previous) = open.take() {
                    committed_non_durably |= self.commit_non_durably(previous, &mut states);
                }
                open = self.apply_with_extra(index, &op, extra, &mut states);
                continue;
            }

            let current = match open.take() {
                Some(current) => current,
                None => match shared.db.begin_write() {
                    Ok(txn) => Open {
                        txn,
                        members: Vec::new(),
                    },
                    Err(e) => {
                        states[index] = State::Failed(BudgetError::storage(e));
                        continue;
                    }
                },
            };
            let mut current = current;
            match apply_op(&current.txn, &op, &shared.config) {
                Ok((reply, updates)) => {
                    states[index] = State::Pending(reply, updates);
                    current.members.push(index);
                    open = Some(current);
                }
                Err(e) => {
                    // The transaction may hold part of this request; it goes, with everything
                    // in it.
                    let error = BudgetError::storage(e);
                    fail_members(&current.members, &mut states, &error);
                    states[index] = State::Failed(error);
                    abort(current.txn);
                }
            }
        }

        // One durable commit makes the whole group durable.
        let durable = match open {
            Some(last) => self.commit_durably(last.txn),
            None if committed_non_durably => shared
                .db
                .begin_write()
                .map_err(BudgetError::storage)
                .and_then(|txn| self.commit_durably(txn)),
            None => Ok(()),
        };

        // Publish: counters first, in request order, then the answers.
        let mut updates = Vec::new();
        let results: Vec<Result<Reply>> = states
            .into_iter()
            .map(|state| match state {
                State::Pending(reply, slot_updates) => match &durable {
                    Ok(()) => {
                        updates.extend(slot_updates);
                        Ok(reply)
                    }
                    Err(e) => Err(e.clone()),
                },
                State::Failed(e) => Err(e),
                // Every request is applied or failed above.
                State::Waiting => Err(BudgetError::WriterStopped),
            })
            .collect();
        shared.apply(updates);
        drop(turn);

        tracing::trace!(size, durable = durable.is_ok(), "budget group applied");
        for (reply, result) in replies.into_iter().zip(results) {
            // The caller may have stopped waiting; what was committed stands all the same.
            let _ = reply.send(result);
        }
    }

    /// Runs one request with extra work in a transaction of its own; answers the transaction to
    /// keep open, or `None` when the request failed.
    fn apply_with_extra(
        &self,
        index: usize,
        op: &Op,
        extra: ExtraWork,
        states: &mut [State],
    ) -> Option<Open> {
        let txn = match self.shared.db.begin_write() {
            Ok(txn) => txn,
            Err(e) => {
                states[index] = State::Failed(BudgetError::storage(e));
                return None;
            }
        };
        let (reply, updates) = match apply_op(&txn, op, &self.shared.config) {
            Ok(applied) => applied,
            Err(e) => {
                states[index] = State::Failed(BudgetError::storage(e));
                abort(txn);
                return None;
            }
        };
        let outcome = match &reply {
            Reply::Outcome(outcome) => *outcome,
            Reply::Purged(_) => ChargeOutcome::NotCharged,
        };

        // A panic in the caller's code fails its request, not the writer.
        match catch_unwind(AssertUnwindSafe(|| extra(&txn, &outcome))) {
            Ok(Ok(())) => {
                states[index] = State::Pending(reply, updates);
                Some(Open {
                    txn,
                    members: vec![index],
                })
            }
            Ok(Err(e)) => {
                states[index] = State::Failed(BudgetError::ExtraWork(Arc::new(e)));
                abort(txn);
                None
            }
            Err(_) => {
                states[index] = State::Failed(BudgetError::ExtraWorkPanicked);
                abort(txn);
                None
            }
        }
    }

    /// Commits `open` without fsync; answers whether it committed. On failure its members fail.
    fn commit_non_durably(&self, mut open: Open, states: &mut [State]) -> bool {
        let result = open
            .txn
            .set_durability(Durability::None)
            .map_err(BudgetError::storage)
            .and_then(|()| open.txn.commit().map_err(BudgetError::storage));
        match result {
            Ok(()) => {
                self.shared.transactions.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(e) => {
                fail_members(&open.members, states, &e);
                false
            }
        }
    }

    fn commit_durably(&self, mut txn: WriteTransaction) -> Result<()> {
        txn.set_durability(Durability::Immediate)
            .map_err(BudgetError::storage)?;
        txn.commit().map_err(BudgetError::storage)?;
        self.shared.transactions.fetch_add(1, Ordering::Relaxed);
        self.shared.durable_commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Fails every member of a transaction that will not commit.
fn fail_members(members: &[usize], states: &mut [State], error: &BudgetError) {
    for &member in members {
        states[member] = State::Failed(error.clone());
    }
}

fn abort(txn: WriteTransaction) {
    if let Err(e) = txn.abort() {
        tracing::debug!(error = %e, "aborting a budget transaction failed");
    }
}

/// Applies one request's own writes; the check-and-add reads the row inside `txn`.
fn apply_op(
    txn: &WriteTransaction,
    op: &Op,
    config: &BudgetConfig,
) -> Result<(Reply, Vec<CounterUpdate>), redb::Error> {
    match op {
        Op::Charge {
            agent_id,
            day,
            tokens,
            limit,
        } => {
            let key = (agent_id.as_str(), day.to_julian_day());
            let mut table = txn.open_table(USAGE)?;
            let used = table.get(key)?.map_or(0, |v| v.value());
            match used.checked_add(*tokens) {
                Some(total) if total <= *limit => {
                    let mut updates = Vec::new();
                    if *tokens > 0 {
                        table.insert(key, total)?;
                        updates.push(CounterUpdate::Set {
                            agent_id: agent_id.clone(),
                            day: *day,
                            tokens: total,
                        });
                    }
                    Ok((
                        Reply::Outcome(ChargeOutcome::Charged { used: total }),
                        updates,
                    ))
                }
                _ => Ok((
                    Reply::Outcome(ChargeOutcome::OverLimit {
                        used,
                        limit: *limit,
                    }),
                    Vec::new(),
                )),
            }
        }
        Op::Reset { agent_id, day } => {
            let mut table = txn.open_table(USAGE)?;
            table.remove((agent_id.as_str(), day.to_julian_day()))?;
            Ok((
                Reply::Outcome(ChargeOutcome::NotCharged),
                vec![CounterUpdate::Remove {
                    agent_id: agent_id.clone(),
                    day: *day,
                }],
            ))
        }
        Op::Purge { today } => {
            let cutoff = retention_cutoff(*today, config.retention_days);
            let mut table = txn.open_table(USAGE)?;
            let before = table.len()?;
            let cutoff_julian = cutoff.to_julian_day();
            table.retain(|(_, julian), _| julian >= cutoff_julian)?;
            let removed = before - table.len()?;
            Ok((
                Reply::Purged(removed),
                vec![CounterUpdate::PurgeBefore(cutoff)],
            ))
        }
        Op::Write => Ok((Reply::Outcome(ChargeOutcome::NotCharged), Vec::new())),
    }
}

/// The first day that [`ChargeHandle::purge`] keeps: `retention_days` days up to and including
/// `today`, at least today.
pub(crate) fn retention_cutoff(today: Date, retention_days: u32) -> Date {
    let back = i32::try_from(retention_days.max(1) - 1).unwrap_or(i32::MAX);
    Date::from_julian_day(today.to_julian_day().saturating_sub(back)).unwrap_or(Date::MIN)
}

#[cfg(test)]
mod tests;
