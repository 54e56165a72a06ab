//! The agent registry of the Ithil gateway, stored in redb and served from memory.
//!
//! Every AI client that talks to the gateway is a named agent with its own daily token budget,
//! tool allowlist and scopes. [`Registry`] keeps those agents in tables of a redb database that
//! the caller opens and shares, and answers every read from an in-memory view that each write
//! updates before it returns, so that deactivating or deleting an agent takes effect on the
//! very next request. The [`credentials`] module issues and verifies the gateway's admin and
//! agent tokens on top of `ithil-token`, and checks agent tokens against the registry.
//!
//! ```
//! use std::sync::Arc;
//!
//! use ithil_registry::{AgentPatch, AuthError, Credentials, NewAgent, Registry};
//! use ithil_token::{Clock, KeyRing, SigningKey, SystemClock};
//! use time::Duration;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let db = Arc::new(redb::Database::create(dir.path().join("ithil.redb"))?);
//! let registry = Registry::open(db)?;
//! let keys = KeyRing::new("k1", SigningKey::generate()?);
//! let credentials = Credentials::new(keys, "ithil-dev", "ithil-gateway", Arc::new(SystemClock));
//! let now = credentials.clock().now();
//!
//! let agent = registry.create(
//!     NewAgent { daily_token_budget: Some(50_000), ..NewAgent::new("My Claude Agent") },
//!     now,
//! )?;
//! assert!(agent.agent_id.starts_with("agt_"));
//!
//! let issued = credentials.issue_agent(&agent, Duration::days(30))?;
//! let principal = credentials.verify_agent(&issued.token, &registry)?;
//! assert_eq!(principal.agent.agent_id, agent.agent_id);
//!
//! // Deactivation takes effect on the very next verification.
//! let patch = AgentPatch { is_active: Some(false), ..AgentPatch::default() };
//! registry.update(&agent.agent_id, patch, now)?;
//! assert_eq!(
//!     credentials.verify_agent(&issued.token, &registry).unwrap_err(),
//!     AuthError::InactiveAgent,
//! );
//! # Ok(())
//! # }
//! ```

pub use agent::{Agent, AgentPatch, NewAgent};
pub use credentials::{
    AdminPrincipal, AgentPrincipal, AuthError, CredentialError, Credentials, GatewayClaims,
    IssuedToken, Role,
};
pub use error::{RegistryError, Result};
pub use registry::{Registry, SCHEMA_VERSION, is_agent_id};
pub use validate::{
    MAX_ALLOWED_TOOLS, MAX_DAILY_TOKEN_BUDGET, MAX_LABEL_CHARS, MAX_NAME_CHARS, MAX_SCOPES,
};

pub mod credentials;

mod agent;
mod error;
mod record;
mod registry;
mod validate;
