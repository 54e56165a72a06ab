//! The crate's error type.

use std::sync::Arc;

/// What can go wrong while opening, reading or charging a budget.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetError {
    /// The redb store failed: opening a table, reading, writing or committing.
    ///
    /// One failed commit fails every request of its group, so the cause is shared.
    #[error("budget storage failed")]
    Storage(#[source] Arc<redb::Error>),

    /// The caller's extra work for the write transaction failed; its request was not applied.
    #[error("extra work in the budget transaction failed")]
    ExtraWork(#[source] Arc<redb::Error>),

    /// The caller's extra work panicked; its request was not applied and the writer goes on.
    #[error("extra work in the budget transaction panicked")]
    ExtraWorkPanicked,

    /// The budget tables were written by a newer or unknown schema version.
    #[error("budget schema version {found} is not supported (expected {expected})")]
    UnsupportedSchema {
        /// The version found in the store.
        found: u64,
        /// The version this build reads and writes.
        expected: u64,
    },

    /// The charge writer is not running (it was never started, or it ended).
    #[error("budget writer is not running")]
    WriterStopped,
}

/// The crate's result type.
pub type Result<T, E = BudgetError> = std::result::Result<T, E>;

impl BudgetError {
    /// A storage error from any redb error family.
    pub(crate) fn storage(e: impl Into<redb::Error>) -> BudgetError {
        BudgetError::Storage(Arc::new(e.into()))
    }
}
