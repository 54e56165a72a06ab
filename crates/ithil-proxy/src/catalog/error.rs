//! The one error type of catalog loading and validation.

use std::path::PathBuf;

/// Why a catalog file, a discovery answer or a merged catalog was refused.
///
/// Every variant names where the problem is: the origin (a file path, or `discovery from NAME`)
/// and, where there is one, the tool or downstream. Header values and environment values never
/// appear in a message; an environment variable is named, never printed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// A catalog file could not be read.
    #[error("cannot read catalog file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        error: std::io::Error,
    },

    /// A document is not valid JSON, or does not have the expected shape.
    #[error("{origin}: invalid catalog document")]
    Parse {
        /// Where the document came from.
        origin: String,
        /// The JSON error, with line and column.
        #[source]
        error: serde_json::Error,
    },

    /// A tool's definition does not have the expected shape: a misspelled or unknown member, a
    /// value of the wrong type.
    #[error("{origin}: tool {tool}: invalid definition")]
    ToolDefinition {
        /// Where the tool was defined.
        origin: String,
        /// The tool's name, or `#N` (its position) when it has none.
        tool: String,
        /// What serde found wrong.
        #[source]
        error: serde_json::Error,
    },

    /// A downstream's definition does not have the expected shape.
    #[error("{origin}: downstream {downstream}: invalid definition")]
    DownstreamDefinition {
        /// Where the downstream was defined.
        origin: String,
        /// The downstream's name.
        downstream: String,
        /// What serde found wrong.
        #[source]
        error: serde_json::Error,
    },

    /// A document is of a kind or version that is not supported (Swagger 2.0, say).
    #[error("{origin}: unsupported document: {reason}")]
    Unsupported {
        /// Where the document came from.
        origin: String,
        /// What is unsupported.
        reason: String,
    },

    /// One tool's definition is invalid.
    #[error("{origin}: tool {tool}: {reason}")]
    Tool {
        /// Where the tool was defined.
        origin: String,
        /// The tool's name (or, for an OpenAPI operation without a usable name, its method and
        /// path).
        tool: String,
        /// What is wrong.
        reason: String,
    },

    /// One tool's input schema cannot be compiled.
    #[error("{origin}: tool {tool}: invalid input schema")]
    Schema {
        /// Where the tool was defined.
        origin: String,
        /// The tool's name.
        tool: String,
        /// What is wrong with the schema.
        #[source]
        error: crate::schema::SchemaError,
    },

    /// A `$ref` in an OpenAPI document cannot be resolved.
    #[error("{origin}: tool {tool}: cannot resolve reference {reference}: {reason}")]
    Reference {
        /// The document.
        origin: String,
        /// The tool whose definition uses the reference.
        tool: String,
        /// The reference as written.
        reference: String,
        /// Why it cannot be resolved (missing target, cycle, too deep, external).
        reason: String,
    },

    /// One downstream's definition is invalid.
    #[error("{origin}: downstream {downstream}: {reason}")]
    Downstream {
        /// Where the downstream was defined.
        origin: String,
        /// The downstream's name.
        downstream: String,
        /// What is wrong.
        reason: String,
    },

    /// A header of a downstream refers to an environment variable that is not set.
    #[error("{origin}: downstream {downstream}: environment variable {variable} is not set")]
    MissingEnv {
        /// Where the downstream was defined.
        origin: String,
        /// The downstream's name.
        downstream: String,
        /// The variable's name (its value is never shown).
        variable: String,
    },

    /// A tool refers to a downstream that no part of the catalog defines.
    #[error("{origin}: tool {tool}: unknown downstream {downstream}")]
    UnknownDownstream {
        /// Where the tool was defined.
        origin: String,
        /// The tool's name.
        tool: String,
        /// The downstream it names.
        downstream: String,
    },

    /// Two tools have the same name.
    #[error("tool {tool} is defined twice: in {first} and in {second}")]
    DuplicateTool {
        /// The name.
        tool: String,
        /// The origin of the first definition.
        first: String,
        /// The origin of the second definition.
        second: String,
    },

    /// Two downstreams have the same name.
    #[error("downstream {downstream} is defined twice: in {first} and in {second}")]
    DuplicateDownstream {
        /// The name.
        downstream: String,
        /// The origin of the first definition.
        first: String,
        /// The origin of the second definition.
        second: String,
    },
}

/// The result type of catalog operations.
pub type Result<T, E = CatalogError> = std::result::Result<T, E>;
