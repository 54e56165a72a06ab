//! The on-disk form of an agent, kept apart from the wire form so either can change alone.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::agent::Agent;
use crate::error::{RegistryError, Result};

/// The value stored under an agent's id in the agents table, encoded as JSON.
///
/// The id is the table key, so it is not repeated here. Times are whole Unix seconds, which is
/// the precision the registry keeps, so a record decodes to exactly the agent that was written.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    label: String,
    daily_token_budget: Option<u64>,
    allowed_tools: Option<Vec<String>>,
    scopes: Vec<String>,
    is_active: bool,
    #[serde(with = "time::serde::timestamp")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::timestamp")]
    updated_at: OffsetDateTime,
}

/// Encodes an agent for the agents table.
pub(crate) fn encode(agent: &Agent) -> Result<Vec<u8>> {
    let record = Record {
        label: agent.label.clone(),
        daily_token_budget: agent.daily_token_budget,
        allowed_tools: agent.allowed_tools.clone(),
        scopes: agent.scopes.clone(),
        is_active: agent.is_active,
        created_at: agent.created_at,
        updated_at: agent.updated_at,
    };
    serde_json::to_vec(&record).map_err(|source| RegistryError::Encode {
        id: agent.agent_id.clone(),
        source,
    })
}

/// Decodes the record stored under `id`.
pub(crate) fn decode(id: &str, bytes: &[u8]) -> Result<Agent> {
    let record: Record =
        serde_json::from_slice(bytes).map_err(|source| RegistryError::Corrupt {
            id: id.to_owned(),
            source,
        })?;

    Ok(Agent {
        agent_id: id.to_owned(),
        label: record.label,
        daily_token_budget: record.daily_token_budget,
        allowed_tools: record.allowed_tools,
        scopes: record.scopes,
        is_active: record.is_active,
        created_at: record.created_at,
        updated_at: record.updated_at,
    })
}
