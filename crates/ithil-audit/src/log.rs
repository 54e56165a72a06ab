//! The audit store: records and their indexes in redb tables owned by this crate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table,
    TableDefinition, WriteTransaction,
};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::error::{AuditError, Result};
use crate::query::{self, Export, Page, Query};
use crate::record::{AuditRecord, MAX_ARGUMENT_BYTES, NewRecord};

/// The schema version this build reads and writes.
///
/// Version 2 keeps the next record id in memory: `next_id` in the metadata table is no longer
/// advanced by every append but is a lower bound, written at open and before retention deletes
/// records (see [`AuditLog`]). A build of version 1 would take it for the exact next id and
/// overwrite records, so it must refuse the file; this build upgrades a version 1 file at open.
pub const SCHEMA_VERSION: u64 = 2;

/// The versions [`AuditLog::open`] upgrades to [`SCHEMA_VERSION`]: version 1, whose `next_id`
/// was exact and so is a valid lower bound.
const UPGRADABLE_VERSIONS: [u64; 1] = [1];

/// Crate-owned metadata: the schema version and a lower bound of the next record id.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("ithil_audit_meta");
const SCHEMA_KEY: &str = "schema_version";
const NEXT_ID_KEY: &str = "next_id";

/// Record id to the record as compact JSON (the wire shape of [`AuditRecord`]).
pub(crate) const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("ithil_audit_records");

/// Every record by position: (time in Unix nanoseconds, id).
///
/// The indexes order by time first, so "newest first" follows the records' own times even
/// when several writers commit slightly out of time order; the id breaks ties and makes every
/// position unique.
pub(crate) const BY_TIME: TableDefinition<(i128, u64), ()> =
    TableDefinition::new("ithil_audit_by_time");

/// Records by (agent id, time, id).
pub(crate) const BY_AGENT: TableDefinition<(&str, i128, u64), ()> =
    TableDefinition::new("ithil_audit_by_agent");

/// Records that name a tool, by (tool, time, id).
pub(crate) const BY_TOOL: TableDefinition<(&str, i128, u64), ()> =
    TableDefinition::new("ithil_audit_by_tool");

/// Records by (outcome, time, id).
pub(crate) const BY_OUTCOME: TableDefinition<(&str, i128, u64), ()> =
    TableDefinition::new("ithil_audit_by_outcome");

/// The first id the log assigns.
const FIRST_ID: u64 = 1;

/// The next-id counter of every database a log is open on, so that two logs opened on one
/// [`Database`] (rather than cloned) still never assign the same id. Another process cannot
/// write the file meanwhile: redb locks it.
static NEXT_IDS: Mutex<Vec<(Weak<Database>, Arc<AtomicU64>)>> = Mutex::new(Vec::new());

/// The append-only audit trail of one gateway, in tables of a shared redb database.
///
/// Records are written either inside a caller's write transaction
/// ([`append_in`](Self::append_in), so that a tool call's record commits together with its
/// budget charge) or in a transaction of their own ([`append`](Self::append)). They are read
/// newest first through indexes by agent, tool, outcome and time ([`query`](Self::query),
/// [`export`](Self::export)), and removed only by retention ([`purge_before`](Self::purge_before)).
///
/// # Record ids
///
/// The next id is kept in memory, in one counter per database that every log opened on it
/// shares, and taken when a record is appended, so an append writes no metadata row. redb runs
/// one write transaction at a time, so the ids of each committed transaction are above those of
/// every transaction committed before it: ids increase in commit order. An id taken by a
/// transaction that is then aborted (or lost in a crash) is not taken again while the log is
/// open, so ids may have gaps; a gap is harmless, since ids only order and name records, while
/// an id used twice would overwrite a record. At open the counter starts above both the newest
/// stored record and the lower bound in the metadata table, which retention raises to the
/// counter before it deletes anything, so an id is never reused after a restart either, even
/// when retention has deleted every record.
///
/// Cloning is cheap and clones share the database and the counter. Records are never touched
/// when an agent is deleted: the trail of a deleted agent stays until retention removes it.
#[derive(Clone)]
pub struct AuditLog {
    db: Arc<Database>,
    next_id: Arc<AtomicU64>,
    max_argument_bytes: usize,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("max_argument_bytes", &self.max_argument_bytes)
            .finish_non_exhaustive()
    }
}

/// The fields that name a record's index rows; decoded on purge without the rest.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexedFields {
    agent_id: String,
    #[serde(default)]
    tool: Option<String>,
    outcome: String,
}

impl AuditLog {
    /// Opens the log's tables in `db`, creating them and recording the schema version on first
    /// use, upgrading a file of schema version 1, and loads the next record id.
    ///
    /// # Errors
    ///
    /// [`AuditError::UnsupportedSchema`] when the tables were written with another schema
    /// version, and [`AuditError::Storage`] when redb fails. Nothing is written in either case.
    pub fn open(db: Arc<Database>) -> Result<Self> {
        // Held until the counter is registered, so that two logs opening one database at once
        // cannot both load it.
        let mut counters = NEXT_IDS.lock().unwrap_or_else(PoisonError::into_inner);
        counters.retain(|(open, _)| open.strong_count() > 0);
        let shared = counters
            .iter()
            .find(|(open, _)| std::ptr::eq(open.as_ptr(), Arc::as_ptr(&db)))
            .map(|(_, counter)| Arc::clone(counter));

        // One write transaction, so that the tables, the schema version and the bound appear
        // together.
        let txn = db.begin_write()?;
        let stored_next = {
            let mut meta = txn.open_table(META)?;
            let found = meta.get(SCHEMA_KEY)?.map(|guard| guard.value());
            match found {
                Some(SCHEMA_VERSION) => {}
                None => {
                    meta.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
                }
                Some(old) if UPGRADABLE_VERSIONS.contains(&old) => {
                    meta.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
                    tracing::debug!(from = old, to = SCHEMA_VERSION, "audit schema upgraded");
                }
                Some(found) => {
                    return Err(AuditError::UnsupportedSchema {
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
            }
            let bound = meta
                .get(NEXT_ID_KEY)?
                .map_or(FIRST_ID, |guard| guard.value());
            let after_newest = txn
                .open_table(RECORDS)?
                .last()?
                .map_or(FIRST_ID, |(id, _)| id.value().saturating_add(1));
            let next = bound.max(after_newest).max(FIRST_ID);
            meta.insert(NEXT_ID_KEY, next)?;
            next
        };
        txn.open_table(BY_TIME)?;
        txn.open_table(BY_AGENT)?;
        txn.open_table(BY_TOOL)?;
        txn.open_table(BY_OUTCOME)?;
        txn.commit()?;

        let next_id = match shared {
            Some(counter) => {
                counter.fetch_max(stored_next, Ordering::Relaxed);
                counter
            }
            None => {
                let counter = Arc::new(AtomicU64::new(stored_next));
                counters.push((Arc::downgrade(&db), Arc::clone(&counter)));
                counter
            }
        };
        drop(counters);

        tracing::debug!(
            next_id = next_id.load(Ordering::Relaxed),
            "audit log opened"
        );
        Ok(Self {
            db,
            next_id,
            max_argument_bytes: MAX_ARGUMENT_BYTES,
        })
    }

    /// Sets the largest serialized size of a record's arguments that is stored as given;
    /// larger ones are replaced by a marker (see [`cap_arguments`](crate::cap_arguments)).
    /// Default is [`MAX_ARGUMENT_BYTES`] (4 KiB).
    pub fn with_max_argument_bytes(mut self, max: usize) -> Self {
        self.max_argument_bytes = max;
        self
    }

    /// The database the log's tables live in.
    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// Writes `rec` inside the caller's write transaction and returns it as stored.
    ///
    /// The record and its index rows become visible, and durable, only when the caller commits
    /// `txn`; if the caller aborts, nothing of it remains and its id is skipped (see
    /// [Record ids](AuditLog#record-ids)).
    ///
    /// The arguments are capped (see [`with_max_argument_bytes`](Self::with_max_argument_bytes))
    /// and the time moved to UTC before the record is written. Each call opens the log's tables
    /// in `txn` (four, five with a tool); for several records at once,
    /// [`append_all_in`](Self::append_all_in) opens them once.
    ///
    /// # Errors
    ///
    /// Returns redb's error when a table cannot be opened or written. The transaction may then
    /// hold part of the record: abort it, or restore a savepoint taken before the call.
    pub fn append_in(
        &self,
        txn: &WriteTransaction,
        rec: NewRecord,
    ) -> std::result::Result<AuditRecord, redb::Error> {
        Appender::open(txn)?.append(self, rec)
    }

    /// Writes every record of `recs`, in order, inside the caller's write transaction, opening
    /// each of the log's tables once, and returns them as stored.
    ///
    /// As [`append_in`](Self::append_in) for each record; the ids of one call are consecutive.
    ///
    /// # Errors
    ///
    /// As [`append_in`](Self::append_in); the transaction may then hold some of the records, or
    /// part of one.
    pub fn append_all_in(
        &self,
        txn: &WriteTransaction,
        recs: impl IntoIterator<Item = NewRecord>,
    ) -> std::result::Result<Vec<AuditRecord>, redb::Error> {
        let recs = recs.into_iter();
        let mut stored = Vec::with_capacity(recs.size_hint().0);
        let mut appender: Option<Appender<'_>> = None;
        for rec in recs {
            let appender = match &mut appender {
                Some(appender) => appender,
                None => appender.insert(Appender::open(txn)?),
            };
            stored.push(appender.append(self, rec)?);
        }
        Ok(stored)
    }

    /// Writes `rec` in a transaction of its own, committed with [`Durability::Immediate`], and
    /// returns it as stored.
    ///
    /// For records that go with no other write, such as management actions and refused calls.
    ///
    /// # Errors
    ///
    /// [`AuditError::Storage`] when redb fails; nothing is written then.
    pub fn append(&self, rec: NewRecord) -> Result<AuditRecord> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        let record = self.append_in(&txn, rec)?;
        txn.commit()?;
        Ok(record)
    }

    /// Returns one page of records that match `q`, newest first.
    ///
    /// See [`Query`] for the filters and how the index is chosen. The page is read from one
    /// snapshot; its `next_cursor` continues after its last record.
    ///
    /// # Errors
    ///
    /// [`AuditError::InvalidCursor`], [`AuditError::InvalidLimit`] or
    /// [`AuditError::InvalidTimeRange`] for a bad query, [`AuditError::Corrupt`] when a stored
    /// record cannot be decoded, and [`AuditError::Storage`] when redb fails.
    pub fn query(&self, q: &Query) -> Result<Page> {
        query::run(&self.db, q)
    }

    /// Returns every record that matches `q`, newest first, as an iterator of pages of
    /// `q.limit` records.
    ///
    /// Each page is read in its own read transaction, so a long export never pins an old
    /// snapshot; records appended meanwhile with a newer time are not included, and none is
    /// returned twice. The query is checked when the first page is read.
    pub fn export(&self, q: Query) -> Export {
        Export::new(self.clone(), q)
    }

    /// Counts the stored records.
    ///
    /// # Errors
    ///
    /// [`AuditError::Storage`] when redb fails.
    pub fn count(&self) -> Result<u64> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(RECORDS)?.len()?)
    }

    /// Deletes every record whose time is before `cutoff`, with its index rows, in
    /// transactions of at most `batch` records each, and returns how many were deleted.
    ///
    /// Each batch commits on its own (with [`Durability::Immediate`]), so other writers, such
    /// as the budget's group commit, wait at most for one small batch. A `batch` of 0 is read
    /// as 1. The call returns when no record older than `cutoff` is left; records appended
    /// meanwhile with an older time are deleted too.
    ///
    /// # Errors
    ///
    /// [`AuditError::Storage`] when redb fails. The batches committed before the failure stay
    /// deleted.
    pub fn purge_before(&self, cutoff: OffsetDateTime, batch: usize) -> Result<usize> {
        let batch = batch.max(1);
        let cutoff = cutoff.unix_timestamp_nanos();
        let mut total = 0;

        loop {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            // The bound first: once the newest records are gone, it is what keeps their ids
            // from being assigned again after a restart. Taken inside the write transaction,
            // the counter is above every id committed so far.
            raise_next_id_bound(&txn, self.next_id.load(Ordering::Relaxed))?;
            let deleted = purge_batch(&txn, cutoff, batch)?;
            if deleted == 0 {
                txn.abort()?;
                break;
            }
            txn.commit()?;
            total += deleted;
            tracing::debug!(deleted, total, "audit retention batch committed");
            if deleted < batch {
                break;
            }
        }
        Ok(total)
    }
}

/// The log's tables, opened once in one write transaction.
struct Appender<'txn> {
    records: Table<'txn, u64, &'static [u8]>,
    by_time: Table<'txn, (i128, u64), ()>,
    by_agent: Table<'txn, (&'static str, i128, u64), ()>,
    /// Opened with the first record that names a tool.
    by_tool: Option<Table<'txn, (&'static str, i128, u64), ()>>,
    by_outcome: Table<'txn, (&'static str, i128, u64), ()>,
    txn: &'txn WriteTransaction,
}

impl<'txn> Appender<'txn> {
    fn open(txn: &'txn WriteTransaction) -> std::result::Result<Self, redb::Error> {
        Ok(Appender {
            records: txn.open_table(RECORDS)?,
            by_time: txn.open_table(BY_TIME)?,
            by_agent: txn.open_table(BY_AGENT)?,
            by_tool: None,
            by_outcome: txn.open_table(BY_OUTCOME)?,
            txn,
        })
    }

    /// Assigns `rec` the next id and writes it with its index rows.
    fn append(
        &mut self,
        log: &AuditLog,
        rec: NewRecord,
    ) -> std::result::Result<AuditRecord, redb::Error> {
        // The caller's transaction is the only writer while it lives, and the counter is taken
        // inside it, so this id is above every committed one.
        let id = log.next_id.fetch_add(1, Ordering::Relaxed);
        let record = rec.into_record(id, log.max_argument_bytes);
        let time = record.time.unix_timestamp_nanos();

        self.records.insert(id, record.to_json().as_bytes())?;
        self.by_time.insert((time, id), ())?;
        self.by_agent
            .insert((record.agent_id.as_str(), time, id), ())?;
        if let Some(tool) = &record.tool {
            let by_tool = match &mut self.by_tool {
                Some(table) => table,
                None => self.by_tool.insert(self.txn.open_table(BY_TOOL)?),
            };
            by_tool.insert((tool.as_str(), time, id), ())?;
        }
        self.by_outcome
            .insert((record.outcome.as_str(), time, id), ())?;

        tracing::trace!(id, action = %record.action, outcome = %record.outcome, "audit record appended");
        Ok(record)
    }
}

/// Raises the stored lower bound of the next id to `next`, if it is below.
fn raise_next_id_bound(txn: &WriteTransaction, next: u64) -> std::result::Result<(), redb::Error> {
    let mut meta = txn.open_table(META)?;
    let stored = meta
        .get(NEXT_ID_KEY)?
        .map_or(FIRST_ID, |guard| guard.value());
    if next > stored {
        meta.insert(NEXT_ID_KEY, next)?;
    }
    Ok(())
}

/// Deletes up to `batch` of the oldest records before `cutoff` (Unix nanoseconds) in `txn`.
fn purge_batch(txn: &WriteTransaction, cutoff: i128, batch: usize) -> Result<usize> {
    let mut by_time = txn.open_table(BY_TIME)?;
    let positions = by_time
        .range(..(cutoff, 0))?
        .take(batch)
        .map(|entry| entry.map(|(key, _)| key.value()))
        .collect::<std::result::Result<Vec<(i128, u64)>, _>>()?;

    let mut records = txn.open_table(RECORDS)?;
    let mut by_agent = txn.open_table(BY_AGENT)?;
    let mut by_tool = txn.open_table(BY_TOOL)?;
    let mut by_outcome = txn.open_table(BY_OUTCOME)?;
    for &(time, id) in &positions {
        by_time.remove((time, id))?;
        let Some(bytes) = records.remove(id)? else {
            continue;
        };

        // A record that cannot be decoded is still deleted; its other index rows, which cannot
        // be named without it, are skipped by queries as dangling.
        let Ok(fields) = serde_json::from_slice::<IndexedFields>(bytes.value()) else {
            tracing::debug!(id, "purged an unreadable audit record");
            continue;
        };
        drop(bytes);
        by_agent.remove((fields.agent_id.as_str(), time, id))?;
        if let Some(tool) = &fields.tool {
            by_tool.remove((tool.as_str(), time, id))?;
        }
        by_outcome.remove((fields.outcome.as_str(), time, id))?;
    }
    Ok(positions.len())
}

#[cfg(test)]
mod tests;
