//! The group-commit writer: one loop applies every waiting charge in one write transaction and
//! one durable commit.
//!
//! See [`ChargeWriter`] for how a group is applied and what happens when part of it fails.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use redb::{Durability, ReadableTable, ReadableTableMetadata, Table, WriteTransaction};
use time::Date;
use tokio::sync::{mpsc, oneshot};

use crate::budget::{BudgetConfig, CounterUpdate, Shared, USAGE};
use crate::error::{BudgetError, Result};

/// Work the caller adds to a charge's write transaction, such as an audit record.
///
/// It runs inside the same transaction once the check-and-add has decided, and receives the
/// outcome (for [`ChargeHandle::write`] and [`ChargeHandle::reset_with`] the outcome is
/// [`ChargeOutcome::NotCharged`]); the charge itself is written after it succeeded. It commits
/// durably together with the charge or not at all.
/// It must not touch this crate's tables (the usage table is open while it runs, so opening it
/// fails with `TableAlreadyOpen`), and it runs on the writer's thread, so it should be quick.
/// When it fails, the requests of its group whose extra work ran before it fail with it, unless
/// it answers [`Declined`] (see [`ChargeWriter`]).
pub type ExtraWork =
    Box<dyn FnOnce(&WriteTransaction, &ChargeOutcome) -> Result<(), redb::Error> + Send>;

/// The error of extra work that refuses its request before it has written anything, such as a
/// last check that finds the charge must not be made.
///
/// Return it as `Err(Declined.into())`, a `redb::Error::Io` that carries it. The writer then
/// fails that request alone, with [`BudgetError::ExtraWork`] (which [`Declined::is`] recognises),
/// and goes on with the rest of its group in the same transaction: the request's check-and-add
/// is written only after its extra work succeeded, so nothing of it remains. Any other error
/// makes the writer abort the group's transaction and apply the rest of the group again,
/// without the requests whose extra work had run (see [`ChargeWriter`]). Extra work that has
/// already written must not return it: those writes would commit without their request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("extra work declined its request")]
pub struct Declined;

impl Declined {
    /// Whether `error` carries a [`Declined`], as extra work returns it and as
    /// [`BudgetError::ExtraWork`] passes it on.
    pub fn is(error: &redb::Error) -> bool {
        match error {
            redb::Error::Io(io) => io.get_ref().is_some_and(|inner| inner.is::<Declined>()),
            _ => false,
        }
    }
}

impl From<Declined> for redb::Error {
    fn from(declined: Declined) -> Self {
        redb::Error::Io(std::io::Error::other(declined))
    }
}

/// Called with the duration of every durable commit the writer makes, on the writer's thread,
/// after the commit returned and before any request of its group is answered; see
/// [`ChargeWriter::on_commit`]. It should be quick (a metrics histogram, say).
pub type CommitObserver = Box<dyn Fn(Duration) + Send>;

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
///
/// # How a group is applied
///
/// The writer takes the first waiting request, then every request already queued (up to
/// [`BudgetConfig::max_group`](crate::BudgetConfig::max_group)), and applies them in order in
/// one write transaction, with the usage table opened once for all of them. For each request:
/// its check reads the row and decides (the check-and-add), its extra work runs with the
/// outcome, and then its own write is made. Each check reads the row inside the transaction,
/// so a charge sees every charge before it in the group and the day's total cannot pass the
/// limit however many race. The transaction ends with one commit with
/// `Durability::Immediate`. Until that commit returns, nothing is answered and the counters do
/// not move, so a result never leaves before its charge is on disk; a crash before it loses the
/// group as a whole.
///
/// # When extra work fails
///
/// Extra work that refuses its request before writing anything answers [`Declined`]: the
/// request fails, its own write is never made, and the transaction goes on with the next
/// request. Any other failure (or a panic) may have left some of the extra work's writes in the
/// transaction, and redb cannot roll back part of a transaction: an ephemeral savepoint can
/// only be taken before a transaction opens its first table (a test in this crate pins that).
/// Isolating every request with extra work in a transaction of its own would cost one more
/// commit per tool call, since every tool call brings its audit record as extra work. Instead
/// the writer aborts the group's transaction and applies the rest of the group again in a
/// fresh one:
///
/// - the request whose extra work failed fails with [`BudgetError::ExtraWork`] (or
///   [`BudgetError::ExtraWorkPanicked`]);
/// - a request whose extra work had already run in the aborted transaction fails with the same
///   error: its writes went with the abort, and an [`ExtraWork`] is `FnOnce`, so it cannot run
///   again;
/// - every other request (one without extra work, or one whose extra work had not run yet) is
///   applied again from its check, in the next transaction.
///
/// Each failed attempt fails at least the request that failed it, so the retries end. The cost
/// falls on requests that share a group with a failure: the gateway's extra work is an audit
/// record, which fails only when redb fails (and a storage error dooms the transaction anyway),
/// and a refusal that knows it wrote nothing uses [`Declined`], which costs no one else
/// anything.
///
/// Other failures: a storage error while a request is checked or written, or a failed durable
/// commit, fails every request still pending in the group, and the counters stay as they were.
/// redb then refuses every further write (`PreviousIo`) until the database is reopened, which
/// recovers the last durable commit, where the counters already are; so after an I/O failure
/// every charge fails, closed, until the process opens the file again.
pub struct ChargeWriter {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Request>,
    on_commit: Option<CommitObserver>,
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
            .field("on_commit", &self.on_commit.is_some())
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
    let writer = ChargeWriter {
        shared,
        rx,
        on_commit: None,
    };
    (ChargeHandle { tx }, writer)
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
    /// [`BudgetError::ExtraWork`] or [`BudgetError::ExtraWorkPanicked`] when this request's
    /// extra work failed, or when another request's extra work failed after this one's had run
    /// in the same transaction (nothing of this request was applied either way),
    /// [`BudgetError::Storage`] when redb failed, [`BudgetError::WriterStopped`] when no writer
    /// runs.
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

/// One request of a group while the group is applied.
struct Member {
    op: Op,
    /// Taken when it runs: an [`ExtraWork`] runs at most once.
    extra: Option<ExtraWork>,
    reply: oneshot::Sender<Result<Reply>>,
    /// Set once the request has failed; nothing of it will be committed.
    failed: Option<BudgetError>,
}

/// A request applied in a transaction that has not committed yet: its answer and the counter
/// updates that wait for the commit.
struct Applied {
    member: usize,
    reply: Reply,
    updates: Vec<CounterUpdate>,
    /// Whether its extra work ran in this transaction (and so cannot run again).
    ran_extra: bool,
}

/// How one attempt at a group's transaction ended.
enum Attempt {
    /// Committed durably, with what each request applied.
    Committed(Vec<Applied>),
    /// Aborted because the extra work of `member` failed with `error`; `applied` lists the
    /// requests applied before it.
    ExtraWorkFailed {
        member: usize,
        error: BudgetError,
        applied: Vec<Applied>,
    },
    /// Aborted, or not committed, because redb failed: every request of the attempt fails.
    Failed(BudgetError),
}

impl ChargeWriter {
    /// Reports the duration of every durable commit to `observer`: the time
    /// `WriteTransaction::commit` took with `Durability::Immediate`, one call per commit (so as
    /// many calls as [`Budget::commit_count`](crate::Budget::commit_count) counts). An aborted
    /// or failed transaction is not reported.
    #[must_use]
    pub fn on_commit(self, observer: CommitObserver) -> ChargeWriter {
        ChargeWriter {
            on_commit: Some(observer),
            ..self
        }
    }

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
        let mut members: Vec<Member> = group
            .into_iter()
            .map(|request| Member {
                op: request.op,
                extra: request.extra,
                reply: request.reply,
                failed: None,
            })
            .collect();

        // Attempt the group's transaction until one commits or nothing is left to apply. Every
        // failed attempt fails at least one more member, so this ends.
        let mut committed: Vec<Applied> = Vec::new();
        let mut attempts = 0u32;
        loop {
            let pending: Vec<usize> = (0..size).filter(|&i| members[i].failed.is_none()).collect();
            if pending.is_empty() {
                break;
            }
            attempts += 1;
            match self.attempt(&pending, &mut members) {
                Attempt::Committed(applied) => {
                    committed = applied;
                    break;
                }
                Attempt::ExtraWorkFailed {
                    member,
                    error,
                    applied,
                } => {
                    // Whose extra work ran went with the abort and cannot run again.
                    for lost in applied.iter().filter(|a| a.ran_extra) {
                        members[lost.member].failed = Some(error.clone());
                    }
                    members[member].failed = Some(error);
                }
                Attempt::Failed(error) => {
                    for &i in &pending {
                        members[i].failed.get_or_insert_with(|| error.clone());
                    }
                    break;
                }
            }
        }

        // Publish: counters first, in request order, then the answers.
        let mut results: Vec<Option<Result<Reply>>> = (0..size).map(|_| None).collect();
        let mut updates = Vec::new();
        for applied in committed {
            updates.extend(applied.updates);
            results[applied.member] = Some(Ok(applied.reply));
        }
        shared.apply(updates);
        drop(turn);

        tracing::trace!(size, attempts, "budget group applied");
        for (member, result) in members.into_iter().zip(results) {
            let result = match (result, member.failed) {
                (Some(result), _) => result,
                (None, Some(error)) => Err(error),
                // Every member is committed or failed above.
                (None, None) => Err(BudgetError::WriterStopped),
            };
            // The caller may have stopped waiting; what was committed stands all the same.
            let _ = member.reply.send(result);
        }
    }

    /// Applies the members `pending`, in order, in one write transaction, and commits it
    /// durably unless one of them fails.
    fn attempt(&self, pending: &[usize], members: &mut [Member]) -> Attempt {
        let shared = &*self.shared;
        let mut txn = match shared.db.begin_write() {
            Ok(txn) => txn,
            Err(e) => return Attempt::Failed(BudgetError::storage(e)),
        };
        shared.transactions.fetch_add(1, Ordering::Relaxed);

        let mut applied = Vec::with_capacity(pending.len());
        let mut stopped = None;
        {
            // Opened once for the whole transaction and open while extra work runs, which must
            // not touch it (see `ExtraWork`).
            let mut usage = None;
            for &index in pending {
                match apply_member(&txn, &mut usage, index, &mut members[index], &shared.config) {
                    Ok(Some(done)) => applied.push(done),
                    // Declined: it failed, and nothing of it is in the transaction.
                    Ok(None) => {}
                    Err(stop) => {
                        stopped = Some((index, stop));
                        break;
                    }
                }
            }
        }

        match stopped {
            Some((member, Stop::ExtraWork(error))) => {
                abort(txn);
                Attempt::ExtraWorkFailed {
                    member,
                    error,
                    applied,
                }
            }
            Some((_, Stop::Storage(error))) => {
                abort(txn);
                Attempt::Failed(error)
            }
            // Every member declined: there is nothing to make durable.
            None if applied.is_empty() => {
                abort(txn);
                Attempt::Committed(applied)
            }
            None => {
                // One durable commit makes the whole group durable.
                let committed = txn
                    .set_durability(Durability::Immediate)
                    .map_err(BudgetError::storage)
                    .and_then(|()| {
                        let started = Instant::now();
                        txn.commit().map_err(BudgetError::storage)?;
                        Ok(started.elapsed())
                    });
                match committed {
                    Ok(took) => {
                        shared.durable_commits.fetch_add(1, Ordering::Relaxed);
                        if let Some(observer) = &self.on_commit {
                            observer(took);
                        }
                        Attempt::Committed(applied)
                    }
                    Err(e) => Attempt::Failed(e),
                }
            }
        }
    }
}

/// Why a member stopped its transaction, which is lost.
enum Stop {
    /// redb failed.
    Storage(BudgetError),
    /// The member's extra work failed or panicked, maybe halfway through its writes.
    ExtraWork(BudgetError),
}

/// Applies member `index` in `txn`: its check, its extra work if it has one, then its own
/// write, which is left out when the extra work fails.
///
/// Answers `None` when the extra work answered [`Declined`]: the member has failed, and nothing
/// of it is in the transaction, which goes on.
fn apply_member<'txn>(
    txn: &'txn WriteTransaction,
    usage: &mut Option<UsageTable<'txn>>,
    index: usize,
    member: &mut Member,
    config: &BudgetConfig,
) -> Result<Option<Applied>, Stop> {
    let storage = |e: redb::Error| Stop::Storage(BudgetError::storage(e));
    let mut checked = check_op(txn, usage, &member.op, config).map_err(storage)?;

    let ran_extra = match member.extra.take() {
        None => false,
        Some(extra) => {
            let outcome = match &checked.reply {
                Reply::Outcome(outcome) => *outcome,
                Reply::Purged(_) => ChargeOutcome::NotCharged,
            };
            // A panic in the caller's code fails its request, not the writer.
            match catch_unwind(AssertUnwindSafe(|| extra(txn, &outcome))) {
                Ok(Ok(())) => true,
                Ok(Err(e)) if Declined::is(&e) => {
                    member.failed = Some(BudgetError::ExtraWork(Arc::new(e)));
                    return Ok(None);
                }
                Ok(Err(e)) => return Err(Stop::ExtraWork(BudgetError::ExtraWork(Arc::new(e)))),
                Err(_) => return Err(Stop::ExtraWork(BudgetError::ExtraWorkPanicked)),
            }
        }
    };

    write_op(txn, usage, &mut checked).map_err(storage)?;
    Ok(Some(Applied {
        member: index,
        reply: checked.reply,
        updates: checked.updates,
        ran_extra,
    }))
}

fn abort(txn: WriteTransaction) {
    if let Err(e) = txn.abort() {
        tracing::debug!(error = %e, "aborting a budget transaction failed");
    }
}

/// The usage table, opened in a group's transaction by the first request that needs it.
type UsageTable<'txn> = Table<'txn, UsageKey<'static>, u64>;

/// What a request's check decided: its answer, the counter updates that wait for the commit,
/// and the row write still to make.
struct Checked<'op> {
    reply: Reply,
    updates: Vec<CounterUpdate>,
    write: RowWrite<'op>,
}

/// The usage table's key: agent id and Julian day.
type UsageKey<'a> = (&'a str, i32);

/// A request's own write to the usage table.
enum RowWrite<'op> {
    Nothing,
    /// The day's new total.
    Set(UsageKey<'op>, u64),
    Remove(UsageKey<'op>),
    /// Every row before this day goes.
    PurgeBefore(Date),
}

/// Checks one request inside `txn` without writing: the check-and-add reads the row and decides.
/// `usage` is the usage table of `txn`, opened here on first use.
fn check_op<'txn, 'op>(
    txn: &'txn WriteTransaction,
    usage: &mut Option<UsageTable<'txn>>,
    op: &'op Op,
    config: &BudgetConfig,
) -> Result<Checked<'op>, redb::Error> {
    let checked = match op {
        Op::Charge {
            agent_id,
            day,
            tokens,
            limit,
        } => {
            let key = (agent_id.as_str(), day.to_julian_day());
            let used = usage_table(txn, usage)?.get(key)?.map_or(0, |v| v.value());
            match used.checked_add(*tokens) {
                // A charge of nothing fits and changes nothing.
                Some(total) if total <= *limit && *tokens == 0 => Checked {
                    reply: Reply::Outcome(ChargeOutcome::Charged { used: total }),
                    updates: Vec::new(),
                    write: RowWrite::Nothing,
                },
                Some(total) if total <= *limit => Checked {
                    reply: Reply::Outcome(ChargeOutcome::Charged { used: total }),
                    updates: vec![CounterUpdate::Set {
                        agent_id: agent_id.clone(),
                        day: *day,
                        tokens: total,
                    }],
                    write: RowWrite::Set(key, total),
                },
                _ => Checked {
                    reply: Reply::Outcome(ChargeOutcome::OverLimit {
                        used,
                        limit: *limit,
                    }),
                    updates: Vec::new(),
                    write: RowWrite::Nothing,
                },
            }
        }
        Op::Reset { agent_id, day } => Checked {
            reply: Reply::Outcome(ChargeOutcome::NotCharged),
            updates: vec![CounterUpdate::Remove {
                agent_id: agent_id.clone(),
                day: *day,
            }],
            write: RowWrite::Remove((agent_id.as_str(), day.to_julian_day())),
        },
        Op::Purge { today } => {
            let cutoff = retention_cutoff(*today, config.retention_days);
            Checked {
                // The count is known once the rows are gone; see `write_op`.
                reply: Reply::Purged(0),
                updates: vec![CounterUpdate::PurgeBefore(cutoff)],
                write: RowWrite::PurgeBefore(cutoff),
            }
        }
        Op::Write => Checked {
            reply: Reply::Outcome(ChargeOutcome::NotCharged),
            updates: Vec::new(),
            write: RowWrite::Nothing,
        },
    };
    Ok(checked)
}

/// Makes the write that [`check_op`] decided.
fn write_op<'txn>(
    txn: &'txn WriteTransaction,
    usage: &mut Option<UsageTable<'txn>>,
    checked: &mut Checked<'_>,
) -> Result<(), redb::Error> {
    match checked.write {
        RowWrite::Nothing => {}
        RowWrite::Set(key, total) => {
            usage_table(txn, usage)?.insert(key, total)?;
        }
        RowWrite::Remove(key) => {
            usage_table(txn, usage)?.remove(key)?;
        }
        RowWrite::PurgeBefore(cutoff) => {
            let table = usage_table(txn, usage)?;
            let before = table.len()?;
            let cutoff_julian = cutoff.to_julian_day();
            table.retain(|(_, julian), _| julian >= cutoff_julian)?;
            checked.reply = Reply::Purged(before - table.len()?);
        }
    }
    Ok(())
}

/// The usage table of `txn`, opened on first use.
fn usage_table<'u, 'txn>(
    txn: &'txn WriteTransaction,
    usage: &'u mut Option<UsageTable<'txn>>,
) -> Result<&'u mut UsageTable<'txn>, redb::TableError> {
    Ok(match usage {
        Some(table) => table,
        None => usage.insert(txn.open_table(USAGE)?),
    })
}

/// The first day that [`ChargeHandle::purge`] keeps: `retention_days` days up to and including
/// `today`, at least today.
pub(crate) fn retention_cutoff(today: Date, retention_days: u32) -> Date {
    let back = i32::try_from(retention_days.max(1) - 1).unwrap_or(i32::MAX);
    Date::from_julian_day(today.to_julian_day().saturating_sub(back)).unwrap_or(Date::MIN)
}

#[cfg(test)]
mod tests;
