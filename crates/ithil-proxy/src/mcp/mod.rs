//! MCP over Streamable HTTP: JSON-RPC messages, protocol revisions and sessions.

pub(crate) mod call;
pub(crate) mod inflight;
pub mod jsonrpc;
pub(crate) mod policy;
pub(crate) mod recorder;
pub mod session;
pub mod tools;
pub mod transport;
pub mod version;

pub use jsonrpc::{ErrorObject, Id, Message, Payload, Reply};
pub use session::{SessionError, SessionInfo, SessionLimits, Sessions};
pub use transport::{OriginPolicy, ResponseFormat};
pub use version::{ProtocolVersion, VersionError};
