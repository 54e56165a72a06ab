//! The audit store: records and their indexes in redb tables owned by this crate.

use std::sync::Arc;

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::error::{AuditError, Result};
use crate::query::{self, Export, Page, Query};
use crate::record::{AuditRecord, MAX_ARGUMENT_BYTES, NewRecord};

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u64 = 1;

/// Crate-owned metadata: the schema version and the next record id.
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

/// The append-only audit trail of one gateway, in tables of a shared redb database.
///
/// Records are written either inside a caller's write transaction
/// ([`append_in`](Self::append_in), so that a tool call's record commits together with its
/// budget charge) or in a transaction of their own ([`append`](Self::append)). They are read
/// newest first through indexes by agent, tool, outcome and time ([`query`](Self::query),
/// [`export`](Self::export)), and removed only by retention ([`purge_before`](Self::purge_before)).
///
/// The log keeps no state in memory besides its settings: the next id lives in a table and is
/// assigned inside the appending transaction. Cloning is cheap and clones share the database.
/// Records are never touched when an agent is deleted: the trail of a deleted agent stays
/// until retention removes it.
#[derive(Clone)]
pub struct AuditLog {
    db: Arc<Database>,
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
    /// use.
    ///
    /// # Errors
    ///
    /// [`AuditError::UnsupportedSchema`] when the tables were written with another schema
    /// version, and [`AuditError::Storage`] when redb fails. Nothing is written in either case.
    pub fn open(db: Arc<Database>) -> Result<Self> {
        // One write transaction, so that the tables and the schema version appear together.
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta.get(SCHEMA_KEY)?.map(|guard| guard.value());
            match found {
                None => {
                    meta.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
                }
                Some(SCHEMA_VERSION) => {}
                Some(found) => {
                    return Err(AuditError::UnsupportedSchema {
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
            }
            txn.open_table(RECORDS)?;
            txn.open_table(BY_TIME)?;
            txn.open_table(BY_AGENT)?;
            txn.open_table(BY_TOOL)?;
            txn.open_table(BY_OUTCOME)?;
        }
        txn.commit()?;

        tracing::debug!("audit log opened");
        Ok(Self {
            db,
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
    /// The record, its id and its index rows become visible, and durable, only when the caller
    /// commits `txn`; if the caller aborts, nothing of it remains and its id will be assigned
    /// again. The id is read from and advanced in the log's metadata table within `txn`, so ids
    /// follow commit order across every writer of the database.
    ///
    /// The arguments are capped (see [`with_max_argument_bytes`](Self::with_max_argument_bytes))
    /// and the time moved to UTC before the record is written.
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
        // Assign the id first: the caller's transaction is the only writer while it lives, so
        // reading and advancing the counter here cannot race with another append.
        let id = {
            let mut meta = txn.open_table(META)?;
            let id = meta
                .get(NEXT_ID_KEY)?
                .map_or(FIRST_ID, |guard| guard.value());
            meta.insert(NEXT_ID_KEY, id + 1)?;
            id
        };

        let record = rec.into_record(id, self.max_argument_bytes);
        let time = record.time.unix_timestamp_nanos();

        txn.open_table(RECORDS)?
            .insert(id, record.to_json().as_bytes())?;
        txn.open_table(BY_TIME)?.insert((time, id), ())?;
        txn.open_table(BY_AGENT)?
            .insert((record.agent_id.as_str(), time, id), ())?;
        if let Some(tool) = &record.tool {
            txn.open_table(BY_TOOL)?
                .insert((tool.as_str(), time, id), ())?;
        }
        txn.open_table(BY_OUTCOME)?
            .insert((record.outcome.as_str(), time, id), ())?;

        tracing::trace!(id, action = %record.action, outcome = %record.outcome, "audit record appended");
        Ok(record)
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
