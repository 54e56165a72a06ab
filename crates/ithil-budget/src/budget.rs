//! The budget store: redb tables, the in-memory counters that the pre-check reads, and the read
//! side of the API.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use time::{Date, OffsetDateTime, UtcOffset};

use crate::error::{BudgetError, Result};
use crate::writer::{ChargeHandle, ChargeWriter};

/// Schema version of this crate's tables: `ithil_budget_meta["schema_version"]`.
pub(crate) const SCHEMA_VERSION: u64 = 1;
const SCHEMA_VERSION_KEY: &str = "schema_version";

/// Bookkeeping of the budget tables: the schema version.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("ithil_budget_meta");

/// Tokens charged per agent per UTC day: `(agent_id, julian day) -> tokens`. Ordered by agent,
/// then day, so one agent's history is one range.
pub(crate) const USAGE: TableDefinition<(&str, i32), u64> =
    TableDefinition::new("ithil_budget_usage");

/// The most rows [`Budget::history`] returns, whatever it is asked for: ten years.
pub const MAX_HISTORY_DAYS: u32 = 3660;

/// Settings of a [`Budget`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetConfig {
    /// How many days of usage [`ChargeHandle::purge`] keeps, today included. Zero keeps today
    /// only. Default is 90 days.
    pub retention_days: u32,
    /// The most requests one group commit takes; one gives a commit per request. Zero counts as
    /// one. Default is 1024.
    pub max_group: usize,
    /// How many requests may wait for the writer before [`ChargeHandle`] calls wait for room.
    /// Zero counts as one. Default is 4096.
    pub queue_capacity: usize,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            retention_days: 90,
            max_group: 1024,
            queue_capacity: 4096,
        }
    }
}

/// An agent's budget on one day, as the management API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetStatus {
    /// The effective daily limit the status was computed against.
    pub limit: u64,
    /// Tokens charged today. May exceed `limit` when the limit was lowered during the day.
    pub used: u64,
    /// Tokens left today: `limit - used`, or zero when nothing is left.
    pub remaining: u64,
    /// When today's usage stops counting: the next midnight UTC.
    pub resets_at: OffsetDateTime,
}

impl BudgetStatus {
    /// Usage as a percentage of the limit: 100 or more once the limit is reached, and 100 for a
    /// limit of zero.
    pub fn percentage_used(&self) -> f64 {
        if self.limit == 0 {
            return 100.0;
        }
        self.used as f64 * 100.0 / self.limit as f64
    }
}

/// Tokens charged to one agent on one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayUsage {
    /// The UTC day.
    pub day: Date,
    /// Tokens charged that day.
    pub tokens: u64,
}

/// The UTC calendar day that `now` falls on: the day part of every budget key.
pub fn utc_day(now: OffsetDateTime) -> Date {
    now.to_offset(UtcOffset::UTC).date()
}

/// The next midnight UTC after `now`, when a new budget day starts.
pub fn next_reset(now: OffsetDateTime) -> OffsetDateTime {
    let day = utc_day(now);
    // Only the last representable day has no successor; its own midnight is the best answer.
    day.next_day().unwrap_or(day).midnight().assume_utc()
}

/// Per-agent daily token usage on redb, with in-memory counters for the hot path.
///
/// `Budget` is the shared read side: [`used`](Budget::used) and [`status`](Budget::status) read
/// counters in memory and never touch the disk. Every change goes through the one writer that
/// [`writer`](Budget::writer) hands out, which commits to redb first and updates the counters
/// after the commit, so the counters only ever show durable usage.
///
/// The counters hold every `(agent, day)` row still in the table, loaded once at
/// [`open`](Budget::open); their size is bounded by agents times retained days (see
/// [`ChargeHandle::purge`]). Cloning a `Budget` is cheap and shares everything.
#[derive(Clone)]
pub struct Budget {
    pub(crate) shared: Arc<Shared>,
}

/// What the read side and the writers share.
pub(crate) struct Shared {
    pub(crate) db: Arc<Database>,
    pub(crate) config: BudgetConfig,
    counters: RwLock<Counters>,
    /// Held by a writer for a whole group, from the first transaction to the counter update, so
    /// that groups of different writers never interleave and counters change in commit order.
    pub(crate) write_lock: Mutex<()>,
    pub(crate) durable_commits: AtomicU64,
    pub(crate) transactions: AtomicU64,
}

/// Usage by agent, then day.
type Counters = HashMap<String, BTreeMap<Date, u64>>;

/// One change to the counters, applied after the commit that made it durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CounterUpdate {
    /// The row now holds this value.
    Set {
        agent_id: String,
        day: Date,
        tokens: u64,
    },
    /// The row was removed.
    Remove { agent_id: String, day: Date },
    /// Every row before this day was removed.
    PurgeBefore(Date),
}

impl fmt::Debug for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budget")
            .field("config", &self.shared.config)
            .field("commits", &self.commit_count())
            .finish_non_exhaustive()
    }
}

impl Budget {
    /// Opens the budget tables in `db` with the default [`BudgetConfig`], creating them on first
    /// use, and loads the counters.
    ///
    /// # Errors
    ///
    /// [`BudgetError::Storage`] when redb fails, [`BudgetError::UnsupportedSchema`] when the
    /// tables carry a schema version this build does not know.
    pub fn open(db: Arc<Database>) -> Result<Budget> {
        Budget::open_with(db, BudgetConfig::default())
    }

    /// Opens the budget tables in `db` with `config`, creating them on first use, and loads the
    /// counters.
    ///
    /// # Errors
    ///
    /// As [`Budget::open`].
    pub fn open_with(db: Arc<Database>, config: BudgetConfig) -> Result<Budget> {
        ensure_schema(&db)?;
        let counters = load_counters(&db)?;
        tracing::debug!(
            agents = counters.len(),
            rows = counters.values().map(BTreeMap::len).sum::<usize>(),
            "budget counters loaded"
        );
        Ok(Budget {
            shared: Arc::new(Shared {
                db,
                config,
                counters: RwLock::new(counters),
                write_lock: Mutex::new(()),
                durable_commits: AtomicU64::new(0),
                transactions: AtomicU64::new(0),
            }),
        })
    }

    /// Tokens charged to `agent_id` on `day`, from memory.
    pub fn used(&self, agent_id: &str, day: Date) -> u64 {
        self.shared.used(agent_id, day)
    }

    /// Tokens `agent_id` may still be charged on `day` under `limit`, from memory.
    pub fn remaining(&self, agent_id: &str, limit: u64, day: Date) -> u64 {
        limit.saturating_sub(self.used(agent_id, day))
    }

    /// The budget of `agent_id` under `limit` on the UTC day of `now`, from memory.
    pub fn status(&self, agent_id: &str, limit: u64, now: OffsetDateTime) -> BudgetStatus {
        let used = self.used(agent_id, utc_day(now));
        BudgetStatus {
            limit,
            used,
            remaining: limit.saturating_sub(used),
            resets_at: next_reset(now),
        }
    }

    /// Usage of `agent_id` on each of the `days` days up to and including `today`, oldest first,
    /// with zero for days without usage. At most [`MAX_HISTORY_DAYS`] rows.
    ///
    /// # Errors
    ///
    /// [`BudgetError::Storage`] when redb fails.
    pub fn history(&self, agent_id: &str, days: u32, today: Date) -> Result<Vec<DayUsage>> {
        let days = days.min(MAX_HISTORY_DAYS);
        if days == 0 {
            return Ok(Vec::new());
        }
        let last = today.to_julian_day();
        // Julian days of representable dates are far from i32::MIN; the clamp only matters for
        // dates at the very start of the calendar.
        let first = last.saturating_sub(i32::try_from(days - 1).unwrap_or(i32::MAX));

        let read = self.shared.db.begin_read().map_err(BudgetError::storage)?;
        let table = read.open_table(USAGE).map_err(BudgetError::storage)?;
        let mut stored = HashMap::new();
        for row in table
            .range((agent_id, first)..=(agent_id, last))
            .map_err(BudgetError::storage)?
        {
            let (key, value) = row.map_err(BudgetError::storage)?;
            stored.insert(key.value().1, value.value());
        }

        Ok((first..=last)
            .filter_map(|j| Date::from_julian_day(j).ok().map(|day| (j, day)))
            .map(|(j, day)| DayUsage {
                day,
                tokens: stored.get(&j).copied().unwrap_or(0),
            })
            .collect())
    }

    /// A handle for charges and the writer that applies them.
    ///
    /// The library starts no thread: run the writer with `std::thread::spawn(move ||
    /// writer.run())` or `tokio::task::spawn_blocking`. It ends when every clone of the handle
    /// has been dropped. One writer per `Budget` is the intended setup; more are safe (their
    /// groups take turns) but share nothing and gain nothing.
    pub fn writer(&self) -> (ChargeHandle, ChargeWriter) {
        crate::writer::pair(Arc::clone(&self.shared))
    }

    /// The number of durable redb commits the writers have made: one per group, whatever its
    /// size. For tests and metrics.
    pub fn commit_count(&self) -> u64 {
        self.shared.durable_commits.load(Ordering::Relaxed)
    }

    /// The number of redb write transactions the writers have begun, whether they committed or
    /// were aborted. A group takes one, whatever its size and however many of its requests
    /// bring extra work, plus one more each time an extra work's failure made the writer apply
    /// the rest of the group again (see [`ChargeWriter`](crate::ChargeWriter)). For tests and
    /// metrics.
    pub fn transaction_count(&self) -> u64 {
        self.shared.transactions.load(Ordering::Relaxed)
    }

    /// The configuration this budget was opened with.
    pub fn config(&self) -> &BudgetConfig {
        &self.shared.config
    }
}

impl Shared {
    pub(crate) fn used(&self, agent_id: &str, day: Date) -> u64 {
        let counters = self.counters.read().unwrap_or_else(PoisonError::into_inner);
        counters
            .get(agent_id)
            .and_then(|days| days.get(&day))
            .copied()
            .unwrap_or(0)
    }

    /// Applies updates whose commit has succeeded, in commit order.
    pub(crate) fn apply(&self, updates: impl IntoIterator<Item = CounterUpdate>) {
        let mut counters = self
            .counters
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for update in updates {
            match update {
                CounterUpdate::Set {
                    agent_id,
                    day,
                    tokens,
                } => {
                    counters.entry(agent_id).or_default().insert(day, tokens);
                }
                CounterUpdate::Remove { agent_id, day } => {
                    if let Some(days) = counters.get_mut(&agent_id) {
                        days.remove(&day);
                        if days.is_empty() {
                            counters.remove(&agent_id);
                        }
                    }
                }
                CounterUpdate::PurgeBefore(cutoff) => {
                    counters.retain(|_, days| {
                        days.retain(|day, _| *day >= cutoff);
                        !days.is_empty()
                    });
                }
            }
        }
    }
}

/// Creates the tables on first use and checks the schema version.
fn ensure_schema(db: &Database) -> Result<()> {
    let txn = db.begin_write().map_err(BudgetError::storage)?;
    {
        let mut meta = txn.open_table(META).map_err(BudgetError::storage)?;
        let found = meta
            .get(SCHEMA_VERSION_KEY)
            .map_err(BudgetError::storage)?
            .map(|v| v.value());
        match found {
            Some(SCHEMA_VERSION) => {}
            Some(found) => {
                return Err(BudgetError::UnsupportedSchema {
                    found,
                    expected: SCHEMA_VERSION,
                });
            }
            None => {
                meta.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION)
                    .map_err(BudgetError::storage)?;
            }
        }
        txn.open_table(USAGE).map_err(BudgetError::storage)?;
    }
    txn.commit().map_err(BudgetError::storage)
}

/// Reads every usage row into memory.
fn load_counters(db: &Database) -> Result<Counters> {
    let read = db.begin_read().map_err(BudgetError::storage)?;
    let table = read.open_table(USAGE).map_err(BudgetError::storage)?;
    let mut counters = Counters::new();
    for row in table.iter().map_err(BudgetError::storage)? {
        let (key, value) = row.map_err(BudgetError::storage)?;
        let (agent_id, julian) = key.value();
        match Date::from_julian_day(julian) {
            Ok(day) => {
                counters
                    .entry(agent_id.to_owned())
                    .or_default()
                    .insert(day, value.value());
            }
            // This crate writes only representable days; anything else is not a budget row.
            Err(_) => tracing::debug!(agent.id = agent_id, julian, "skipping invalid budget day"),
        }
    }
    Ok(counters)
}

#[cfg(test)]
mod tests;
