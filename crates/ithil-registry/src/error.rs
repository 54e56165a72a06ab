//! The error type of registry operations.

/// A result whose error is a [`RegistryError`].
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Why a registry operation failed.
///
/// The validation variants (see [`RegistryError::is_invalid_input`]) are raised before anything
/// is written, so a failed call leaves the store and the in-memory view exactly as they were.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// No agent has this id.
    #[error("agent {0} not found")]
    NotFound(String),

    /// The label is empty after trimming, too long, or holds a control character.
    #[error("invalid label: {reason}")]
    InvalidLabel {
        /// What is wrong with the label, in a few lowercase words.
        reason: &'static str,
    },

    /// The daily token budget is outside `1..=MAX_DAILY_TOKEN_BUDGET`.
    #[error("daily token budget {value} is out of range 1 to {max}", max = crate::MAX_DAILY_TOKEN_BUDGET)]
    InvalidBudget {
        /// The refused value.
        value: u64,
    },

    /// One entry of `allowedTools` is not a usable tool name.
    #[error("allowed tool at index {index} is invalid: {reason}")]
    InvalidToolName {
        /// The position of the entry in the list as given.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// `allowedTools` has more entries than `MAX_ALLOWED_TOOLS`.
    #[error("allowed tools has {count} entries, at most {max} are accepted", max = crate::MAX_ALLOWED_TOOLS)]
    TooManyTools {
        /// The number of entries given.
        count: usize,
    },

    /// One entry of `scopes` is not a usable scope.
    #[error("scope at index {index} is invalid: {reason}")]
    InvalidScope {
        /// The position of the entry in the list as given.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// `scopes` has more entries than `MAX_SCOPES`.
    #[error("scopes has {count} entries, at most {max} are accepted", max = crate::MAX_SCOPES)]
    TooManyScopes {
        /// The number of entries given.
        count: usize,
    },

    /// Every freshly drawn agent id was already taken.
    #[error("no free agent id found after {attempts} attempts")]
    IdSpaceExhausted {
        /// How many ids were drawn.
        attempts: u32,
    },

    /// The operating system's random source failed.
    #[error("the system random source failed")]
    Random,

    /// The store was written by a version of this crate with another schema.
    #[error(
        "registry schema version {found} is not supported (this build reads version {supported})"
    )]
    UnsupportedSchema {
        /// The version recorded in the store.
        found: u64,
        /// The version this build reads and writes.
        supported: u64,
    },

    /// A stored agent record could not be decoded.
    #[error("stored agent record {id} is unreadable")]
    Corrupt {
        /// The key of the unreadable record.
        id: String,
        /// Why decoding failed.
        #[source]
        source: serde_json::Error,
    },

    /// An agent record could not be encoded.
    #[error("agent record {id} could not be encoded")]
    Encode {
        /// The id of the agent.
        id: String,
        /// Why encoding failed.
        #[source]
        source: serde_json::Error,
    },

    /// redb failed to read or write.
    #[error("registry storage failed")]
    Storage(#[source] redb::Error),
}

impl RegistryError {
    /// Tells whether the error is about the caller's input (answer 400), rather than a missing
    /// agent or a failure of the gateway itself.
    pub fn is_invalid_input(&self) -> bool {
        self.field().is_some()
    }

    /// Names the wire field (camelCase) that a validation error is about, if it is one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::InvalidLabel { .. } => Some("label"),
            Self::InvalidBudget { .. } => Some("dailyTokenBudget"),
            Self::InvalidToolName { .. } | Self::TooManyTools { .. } => Some("allowedTools"),
            Self::InvalidScope { .. } | Self::TooManyScopes { .. } => Some("scopes"),
            _ => None,
        }
    }
}

macro_rules! storage_from {
    ($($ty:ty),* $(,)?) => {
        $(
            impl From<$ty> for RegistryError {
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
