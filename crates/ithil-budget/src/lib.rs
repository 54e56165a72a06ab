//! Daily token budgets for Ithil agents: exact counting, an atomic check-and-charge, and durable
//! group commit on redb.
//!
//! Each agent may put at most its daily token budget of tool output into its model's context.
//! This crate counts what the agent receives (the response body after the privacy filter: the
//! caller passes that text to [`TokenCounter::count`]), keeps per-agent per-UTC-day totals in
//! redb with in-memory counters for the pre-check, and charges through one writer that groups
//! every waiting charge into one durable commit. The day is part of the key, so midnight UTC
//! starts a new budget with no job to run. Time is an input everywhere: the caller passes the
//! day or the instant, read from its clock.
//!
//! ```
//! use std::sync::Arc;
//!
//! use ithil_budget::{Budget, Charge, ChargeOutcome, TokenCounter, utc_day};
//! use time::macros::datetime;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let db = Arc::new(redb::Database::create(dir.path().join("ithil.redb"))?);
//! let budget = Budget::open(db)?;
//!
//! // The library starts no thread: the caller runs the writer.
//! let (charges, writer) = budget.writer();
//! let writer = std::thread::spawn(move || writer.run());
//!
//! let tokens = TokenCounter::default().count(r#"{"id": 1, "title": "hello world"}"#);
//! let now = datetime!(2026-05-06 23:59:59.999 UTC);
//! let charge = Charge {
//!     agent_id: "agt_3f9a1c2b".into(),
//!     day: utc_day(now),
//!     tokens,
//!     limit: 100_000,
//!     extra: None,
//! };
//! let rt = tokio::runtime::Builder::new_current_thread().build()?;
//! let outcome = rt.block_on(charges.charge(charge))?;
//! assert_eq!(outcome, ChargeOutcome::Charged { used: tokens });
//! assert_eq!(budget.status("agt_3f9a1c2b", 100_000, now).remaining, 100_000 - tokens);
//!
//! drop(charges); // the writer ends when every handle is gone
//! writer.join().expect("writer thread");
//! # Ok(())
//! # }
//! ```

pub use budget::{
    Budget, BudgetConfig, BudgetStatus, DayUsage, MAX_HISTORY_DAYS, next_reset, utc_day,
};
pub use counter::{Encoding, TokenCounter, Truncated, UnknownEncoding};
pub use error::{BudgetError, Result};
pub use writer::{
    Charge, ChargeHandle, ChargeOutcome, ChargeWriter, CommitObserver, Declined, ExtraWork,
};

mod budget;
mod counter;
mod error;
#[cfg(test)]
mod test_support;
mod writer;
