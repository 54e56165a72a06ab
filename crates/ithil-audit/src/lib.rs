//! The append-only audit trail of the Ithil gateway, on redb.
//!
//! Every MCP request that reaches the gateway with a token, and every management action, leaves
//! one [`AuditRecord`]: who asked, what for, which tool with which (privacy-filtered, size-capped)
//! arguments, what came of it, and how many tokens it cost. [`AuditLog`] keeps the records in
//! tables of a redb database that the caller opens and shares, with indexes by agent, tool,
//! outcome and time, so that a page of one agent's newest records costs about as many lookups as
//! it has records, however long the trail grows.
//!
//! A tool call's record is written with [`AuditLog::append_in`] inside the budget's write
//! transaction, so the charge and the record commit together or not at all; records of refused
//! calls and management actions use [`AuditLog::append`]. Retention deletes old records in small
//! transactions ([`AuditLog::purge_before`]). Deleting an agent never touches its records.
//!
//! ```
//! use std::sync::Arc;
//!
//! use ithil_audit::{Action, AuditLog, NewRecord, Outcome, Query};
//! use time::macros::datetime;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let db = Arc::new(redb::Database::create(dir.path().join("ithil.redb"))?);
//! let log = AuditLog::open(db)?;
//!
//! let rec = NewRecord {
//!     tool: Some("getUser".into()),
//!     arguments: Some(serde_json::json!({ "id": 3 })),
//!     tokens: 120,
//!     ..NewRecord::new(
//!         datetime!(2026-05-06 12:00:00 UTC),
//!         "req-1",
//!         "agt_3f9a1c2b",
//!         Action::ToolsCall,
//!         Outcome::Ok,
//!     )
//! };
//! let stored = log.append(rec)?;
//! assert_eq!(stored.id, 1);
//!
//! let page = log.query(&Query::for_agent("agt_3f9a1c2b"))?;
//! assert_eq!(page.records, vec![stored.clone()]);
//! assert!(page.next_cursor.is_none());
//! print!("{}", stored.to_json_line());
//! # Ok(())
//! # }
//! ```

pub use error::{AuditError, Result};
pub use log::{AuditLog, SCHEMA_VERSION};
pub use query::{DEFAULT_LIMIT, Export, MAX_LIMIT, Page, Query};
pub use record::{
    ADMIN_AGENT_ID, Action, AuditRecord, MAX_ARGUMENT_BYTES, NewRecord, ORIGINAL_BYTES_KEY,
    Outcome, TRUNCATED_KEY, UnknownAction, UnknownOutcome, cap_arguments, serialized_len,
};

mod error;
mod log;
mod query;
mod record;
