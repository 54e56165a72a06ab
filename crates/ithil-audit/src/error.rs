//! The error type of audit operations.

/// A result whose error is an [`AuditError`].
pub type Result<T, E = AuditError> = std::result::Result<T, E>;

/// Why an audit operation failed.
///
/// The query variants ([`InvalidCursor`](Self::InvalidCursor),
/// [`InvalidLimit`](Self::InvalidLimit), [`InvalidTimeRange`](Self::InvalidTimeRange)) are
/// about the caller's input (see [`AuditError::is_invalid_input`]); the others are failures of
/// the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The cursor was not produced by this crate: bad base64, wrong length or version.
    #[error("malformed audit cursor")]
    InvalidCursor,

    /// The page size is outside `1..=MAX_LIMIT`.
    #[error("limit {limit} is out of range 1 to {max}", max = crate::MAX_LIMIT)]
    InvalidLimit {
        /// The refused value.
        limit: usize,
    },

    /// `since` is later than `until`.
    #[error("since is later than until")]
    InvalidTimeRange,

    /// The store was written by a version of this crate with another schema.
    #[error("audit schema version {found} is not supported (this build reads version {supported})")]
    UnsupportedSchema {
        /// The version recorded in the store.
        found: u64,
        /// The version this build reads and writes.
        supported: u64,
    },

    /// A stored record could not be decoded.
    #[error("stored audit record {id} is unreadable")]
    Corrupt {
        /// The id of the unreadable record.
        id: u64,
        /// Why decoding failed.
        #[source]
        source: serde_json::Error,
    },

    /// redb failed to read or write.
    #[error("audit storage failed")]
    Storage(#[source] redb::Error),
}

impl AuditError {
    /// Tells whether the error is about the caller's query (answer 400) rather than a failure
    /// of the store.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Self::InvalidCursor | Self::InvalidLimit { .. } | Self::InvalidTimeRange
        )
    }
}

macro_rules! storage_from {
    ($($ty:ty),* $(,)?) => {
        $(
            impl From<$ty> for AuditError {
                fn from(error: $ty) -> Self {
                    Self::Storage(redb::Error::from(error))
                }
            }
        )*
    };
}

storage_from!(
    redb::Error,
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::SetDurabilityError,
);
