//! Reading the trail: filters, index choice, pages and cursors.

use std::ops::Bound;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use redb::{Database, ReadOnlyTable, ReadableDatabase, ReadableTable, StorageError};
use time::OffsetDateTime;

use crate::error::{AuditError, Result};
use crate::log::{AuditLog, BY_AGENT, BY_OUTCOME, BY_TIME, BY_TOOL, RECORDS};
use crate::record::AuditRecord;

/// The page size of a [`Query`] that does not set one.
pub const DEFAULT_LIMIT: usize = 100;

/// The largest page size a [`Query`] accepts.
pub const MAX_LIMIT: usize = 1000;

/// The first byte of every cursor, so that a later format can tell its own cursors apart.
const CURSOR_VERSION: u8 = 1;

/// The decoded length of a cursor: version, time (16 bytes) and id (8 bytes), big-endian.
const CURSOR_LEN: usize = 1 + 16 + 8;

/// Which records to read: every filter that is set must match.
///
/// Records come newest first, ordered by their time and then by id. The most selective
/// index that the filters allow is read in reverse and the other filters are checked on each
/// record it yields: `agent_id` first, else `tool`, else `outcome`, else the time index. The
/// time bounds always narrow the index range, so a page of one agent's records costs about
/// `limit` lookups however long the trail is; a combination such as agent and outcome skips
/// the agent's records of other outcomes one by one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// Only records of this agent (or `admin`). Default is any agent.
    pub agent_id: Option<String>,
    /// Only records that name this tool. Default is any record, with or without a tool.
    pub tool: Option<String>,
    /// Only records with this outcome. Default is any outcome.
    pub outcome: Option<String>,
    /// Only records at or after this time (inclusive). Default is no lower bound.
    pub since: Option<OffsetDateTime>,
    /// Only records before this time (exclusive). Default is no upper bound.
    pub until: Option<OffsetDateTime>,
    /// The page size, `1..=MAX_LIMIT`. Default is [`DEFAULT_LIMIT`] (100).
    pub limit: usize,
    /// Continue after the last record of an earlier page: its [`Page::next_cursor`]. Default
    /// is to start with the newest record.
    pub cursor: Option<String>,
}

impl Default for Query {
    fn default() -> Self {
        Self {
            agent_id: None,
            tool: None,
            outcome: None,
            since: None,
            until: None,
            limit: DEFAULT_LIMIT,
            cursor: None,
        }
    }
}

impl Query {
    /// A query for the records of one agent, with every other setting at its default.
    pub fn for_agent(agent_id: impl Into<String>) -> Self {
        Self {
            agent_id: Some(agent_id.into()),
            ..Self::default()
        }
    }
}

/// One page of query results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The matching records, newest first, at most the query's `limit`.
    pub records: Vec<AuditRecord>,
    /// Set when more records match: pass it as [`Query::cursor`] (with the same filters) for
    /// the next page. It is opaque text, safe in a URL query string.
    pub next_cursor: Option<String>,
}

/// A record's place in every index: its time in Unix nanoseconds, then its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Position {
    time: i128,
    id: u64,
}

impl Position {
    /// The first position at `time`: every record at that time comes at or after it.
    fn at(time: OffsetDateTime) -> Self {
        Self {
            time: time.unix_timestamp_nanos(),
            id: 0,
        }
    }

    fn encode(self) -> String {
        let mut bytes = [0u8; CURSOR_LEN];
        bytes[0] = CURSOR_VERSION;
        bytes[1..17].copy_from_slice(&self.time.to_be_bytes());
        bytes[17..].copy_from_slice(&self.id.to_be_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn decode(cursor: &str) -> Result<Self> {
        let bytes = URL_SAFE_NO_PAD
            .decode(cursor)
            .map_err(|_| AuditError::InvalidCursor)?;
        let bytes: [u8; CURSOR_LEN] = bytes.try_into().map_err(|_| AuditError::InvalidCursor)?;
        if bytes[0] != CURSOR_VERSION {
            return Err(AuditError::InvalidCursor);
        }
        let mut time = [0u8; 16];
        time.copy_from_slice(&bytes[1..17]);
        let mut id = [0u8; 8];
        id.copy_from_slice(&bytes[17..]);
        Ok(Self {
            time: i128::from_be_bytes(time),
            id: u64::from_be_bytes(id),
        })
    }
}

/// A checked query: the positions it may return lie in `lower..upper`.
struct Plan<'q> {
    q: &'q Query,
    lower: Position,
    /// Exclusive; `None` is "after every position".
    upper: Option<Position>,
}

impl<'q> Plan<'q> {
    fn new(q: &'q Query) -> Result<Self> {
        if !(1..=MAX_LIMIT).contains(&q.limit) {
            return Err(AuditError::InvalidLimit { limit: q.limit });
        }
        if let (Some(since), Some(until)) = (q.since, q.until)
            && since > until
        {
            return Err(AuditError::InvalidTimeRange);
        }
        let cursor = q.cursor.as_deref().map(Position::decode).transpose()?;

        let lower = q.since.map_or(
            Position {
                time: i128::MIN,
                id: 0,
            },
            Position::at,
        );
        let upper = match (q.until.map(Position::at), cursor) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(Self { q, lower, upper })
    }

    fn is_empty(&self) -> bool {
        self.upper.is_some_and(|upper| upper <= self.lower)
    }

    /// Tells whether `rec` passes the filters; the index already guarantees its own filter
    /// and the time bounds, so checking them again costs only a comparison.
    fn matches(&self, rec: &AuditRecord) -> bool {
        self.q.agent_id.as_ref().is_none_or(|a| *a == rec.agent_id)
            && self
                .q
                .tool
                .as_ref()
                .is_none_or(|t| rec.tool.as_ref() == Some(t))
            && self.q.outcome.as_ref().is_none_or(|o| *o == rec.outcome)
    }
}

/// Runs `q` against a fresh snapshot of `db`.
pub(crate) fn run(db: &Database, q: &Query) -> Result<Page> {
    let plan = Plan::new(q)?;
    if plan.is_empty() {
        return Ok(Page {
            records: Vec::new(),
            next_cursor: None,
        });
    }

    let txn = db.begin_read()?;
    let records = txn.open_table(RECORDS)?;
    let mut collector = Collector::new(&plan, &records);

    // The most selective index the filters allow; see `Query`.
    let keyed = [
        (q.agent_id.as_deref(), BY_AGENT),
        (q.tool.as_deref(), BY_TOOL),
        (q.outcome.as_deref(), BY_OUTCOME),
    ]
    .into_iter()
    .find_map(|(value, table)| value.map(|value| (value, table)));

    match keyed {
        Some((value, table)) => {
            let index = txn.open_table(table)?;
            let lower = Bound::Included((value, plan.lower.time, plan.lower.id));
            let upper = match plan.upper {
                Some(p) => Bound::Excluded((value, p.time, p.id)),
                None => Bound::Included((value, i128::MAX, u64::MAX)),
            };
            let positions = index.range((lower, upper))?.rev().map(|entry| {
                entry.map(|(key, _)| {
                    let (_, time, id) = key.value();
                    Position { time, id }
                })
            });
            collector.collect(positions)?;
        }
        None => {
            let index = txn.open_table(BY_TIME)?;
            let lower = Bound::Included((plan.lower.time, plan.lower.id));
            let upper = match plan.upper {
                Some(p) => Bound::Excluded((p.time, p.id)),
                None => Bound::Unbounded,
            };
            let positions = index.range((lower, upper))?.rev().map(|entry| {
                entry.map(|(key, _)| {
                    let (time, id) = key.value();
                    Position { time, id }
                })
            });
            collector.collect(positions)?;
        }
    }

    Ok(collector.finish())
}

/// Gathers up to `limit + 1` matching records; the extra one only tells that a next page
/// exists.
struct Collector<'a> {
    plan: &'a Plan<'a>,
    records: &'a ReadOnlyTable<u64, &'static [u8]>,
    found: Vec<(Position, AuditRecord)>,
}

impl<'a> Collector<'a> {
    fn new(plan: &'a Plan<'a>, records: &'a ReadOnlyTable<u64, &'static [u8]>) -> Self {
        Self {
            plan,
            records,
            found: Vec::with_capacity(plan.q.limit + 1),
        }
    }

    fn collect(
        &mut self,
        positions: impl Iterator<Item = std::result::Result<Position, StorageError>>,
    ) -> Result<()> {
        for position in positions {
            let position = position?;
            let Some(bytes) = self.records.get(position.id)? else {
                // Left behind by purging a record that could not be decoded.
                tracing::trace!(id = position.id, "skipped a dangling audit index row");
                continue;
            };
            let record: AuditRecord =
                serde_json::from_slice(bytes.value()).map_err(|source| AuditError::Corrupt {
                    id: position.id,
                    source,
                })?;
            if self.plan.matches(&record) {
                self.found.push((position, record));
                if self.found.len() > self.plan.q.limit {
                    break;
                }
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Page {
        let limit = self.plan.q.limit;
        let next_cursor = if self.found.len() > limit {
            self.found.truncate(limit);
            self.found.last().map(|(position, _)| position.encode())
        } else {
            None
        };
        Page {
            records: self.found.into_iter().map(|(_, record)| record).collect(),
            next_cursor,
        }
    }
}

/// The pages of an export, newest first; see [`AuditLog::export`].
///
/// Yields `Ok` pages until no record is left, or one `Err` after which it ends.
#[derive(Debug)]
pub struct Export {
    log: AuditLog,
    query: Query,
    done: bool,
}

impl Export {
    pub(crate) fn new(log: AuditLog, query: Query) -> Self {
        Self {
            log,
            query,
            done: false,
        }
    }
}

impl Iterator for Export {
    type Item = Result<Vec<AuditRecord>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.log.query(&self.query) {
            Ok(page) => {
                self.query.cursor = page.next_cursor;
                self.done = self.query.cursor.is_none();
                if page.records.is_empty() {
                    None
                } else {
                    Some(Ok(page.records))
                }
            }
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_decodes_to_the_position_it_encodes() {
        let position = Position {
            time: -5_000_000_123,
            id: 42,
        };
        assert_eq!(Position::decode(&position.encode()).unwrap(), position);
    }

    #[test]
    fn malformed_cursors_are_rejected() {
        let good = Position { time: 1, id: 2 }.encode();
        let mut wrong_version = URL_SAFE_NO_PAD.decode(&good).unwrap();
        wrong_version[0] = 2;
        for cursor in [
            "",
            "not base64!",
            "AAAA",
            &good[..good.len() - 2],
            &format!("{good}AA"),
            &URL_SAFE_NO_PAD.encode(wrong_version),
        ] {
            assert!(
                matches!(Position::decode(cursor), Err(AuditError::InvalidCursor)),
                "{cursor:?} was accepted"
            );
        }
    }
}
