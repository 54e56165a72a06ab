//! The agent record and the two inputs that make and change one.

use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;

/// One registered agent, as the registry holds it and the management API shows it.
///
/// It serializes as camelCase JSON with RFC 3339 times; `dailyTokenBudget` and `allowedTools`
/// are `null` when unset:
///
/// ```json
/// {"agentId": "agt_3f9a1c2b", "label": "My Claude Agent", "dailyTokenBudget": 50000,
///  "allowedTools": null, "scopes": [], "isActive": true,
///  "createdAt": "2026-05-06T12:00:00Z", "updatedAt": "2026-05-06T12:00:00Z"}
/// ```
///
/// Only the registry makes agents, so every `Agent` a caller sees has passed validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Agent {
    /// `agt_` followed by 8 lowercase hexadecimal digits.
    pub agent_id: String,
    /// A human-readable name, trimmed, 1 to 200 characters.
    pub label: String,
    /// The agent's own daily token limit; `None` means the configured default applies.
    pub daily_token_budget: Option<u64>,
    /// The tools the agent may call; `None` means every tool, `Some` (even empty) is exact.
    pub allowed_tools: Option<Vec<String>>,
    /// Scopes copied into the agent's tokens, in the order given, without duplicates.
    pub scopes: Vec<String>,
    /// Whether the agent's tokens are accepted.
    pub is_active: bool,
    /// When the agent was created, UTC, whole seconds.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the agent was last changed, UTC, whole seconds.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Agent {
    /// Tells whether the agent may call the tool with this exact name.
    pub fn allows_tool(&self, name: &str) -> bool {
        match &self.allowed_tools {
            None => true,
            Some(tools) => tools.iter().any(|tool| tool == name),
        }
    }

    /// The daily token limit that applies to the agent: its own, else `default`.
    pub fn daily_limit(&self, default: u64) -> u64 {
        self.daily_token_budget.unwrap_or(default)
    }
}

/// What a caller gives to create an agent.
///
/// It deserializes from the body of `POST /management/agents`: camelCase, unknown fields are
/// refused, and every field but `label` may be left out (`isActive` then defaults to `true`).
/// Values are validated by [`Registry::create`](crate::Registry::create), not here.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewAgent {
    /// The label; trimmed before it is checked. Required.
    pub label: String,
    /// The agent's own daily token limit. Default is `None`, the configured default.
    #[serde(default)]
    pub daily_token_budget: Option<u64>,
    /// The tools the agent may call. Default is `None`, every tool.
    #[serde(default)]
    pub allowed_tools: Option<Vec<String>>,
    /// Scopes for the agent's tokens. Default is none.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Whether the agent starts active. Default is `true`.
    #[serde(default = "active_by_default")]
    pub is_active: bool,
}

fn active_by_default() -> bool {
    true
}

impl NewAgent {
    /// An active agent with this label, the default budget, every tool and no scopes.
    pub fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            daily_token_budget: None,
            allowed_tools: None,
            scopes: Vec::new(),
            is_active: true,
        }
    }
}

/// A partial update: every `Some` field replaces the agent's value, every `None` keeps it.
///
/// `daily_token_budget: Some(None)` returns the agent to the configured default and
/// `allowed_tools: Some(None)` to every tool. It deserializes from the body of
/// `PUT /management/agents/{agentId}`: a missing field means "keep", `null` for
/// `dailyTokenBudget` or `allowedTools` means "unset", `null` for any other field is refused,
/// and unknown fields are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentPatch {
    /// A new label. Default is `None`, keep.
    #[serde(default, deserialize_with = "present")]
    pub label: Option<String>,
    /// A new budget, or `Some(None)` for the default. Default is `None`, keep.
    #[serde(default, deserialize_with = "nullable")]
    pub daily_token_budget: Option<Option<u64>>,
    /// A new allowlist, or `Some(None)` for every tool. Default is `None`, keep.
    #[serde(default, deserialize_with = "nullable")]
    pub allowed_tools: Option<Option<Vec<String>>>,
    /// New scopes. Default is `None`, keep.
    #[serde(default, deserialize_with = "present")]
    pub scopes: Option<Vec<String>>,
    /// A new active flag. Default is `None`, keep.
    #[serde(default, deserialize_with = "present")]
    pub is_active: Option<bool>,
}

impl AgentPatch {
    /// Tells whether the patch names no field at all.
    pub fn is_empty(&self) -> bool {
        self.label.is_none()
            && self.daily_token_budget.is_none()
            && self.allowed_tools.is_none()
            && self.scopes.is_none()
            && self.is_active.is_none()
    }
}

/// A field that, when present, must hold a value: `null` is a type error.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A field where absence (via `#[serde(default)]`) and `null` mean different things.
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn sample() -> Agent {
        Agent {
            agent_id: "agt_3f9a1c2b".into(),
            label: "My Claude Agent".into(),
            daily_token_budget: Some(50_000),
            allowed_tools: None,
            scopes: vec!["read".into()],
            is_active: true,
            created_at: datetime!(2026-05-06 12:00:00 UTC),
            updated_at: datetime!(2026-05-07 08:30:00 UTC),
        }
    }

    #[test]
    fn agent_serializes_as_camel_case_with_rfc3339_times_and_nulls() {
        let json = serde_json::to_value(sample()).unwrap();

        assert_eq!(
            json,
            serde_json::json!({
                "agentId": "agt_3f9a1c2b",
                "label": "My Claude Agent",
                "dailyTokenBudget": 50000,
                "allowedTools": null,
                "scopes": ["read"],
                "isActive": true,
                "createdAt": "2026-05-06T12:00:00Z",
                "updatedAt": "2026-05-07T08:30:00Z",
            })
        );
    }

    #[test]
    fn missing_allowlist_allows_every_tool_and_empty_allowlist_allows_none() {
        let mut agent = sample();
        assert!(agent.allows_tool("anything"));

        agent.allowed_tools = Some(Vec::new());
        assert!(!agent.allows_tool("anything"));

        agent.allowed_tools = Some(vec!["get_post".into()]);
        assert!(agent.allows_tool("get_post"));
        assert!(!agent.allows_tool("get_posts"));
        assert!(!agent.allows_tool("GET_POST"));
    }

    #[test]
    fn own_budget_takes_precedence_over_the_default() {
        let mut agent = sample();
        assert_eq!(agent.daily_limit(100_000), 50_000);

        agent.daily_token_budget = None;
        assert_eq!(agent.daily_limit(100_000), 100_000);
    }

    #[test]
    fn new_agent_from_the_spec_example_defaults_to_active() {
        let new: NewAgent =
            serde_json::from_str(r#"{"label": "My Claude Agent", "dailyTokenBudget": 50000}"#)
                .unwrap();

        assert_eq!(
            new,
            NewAgent {
                daily_token_budget: Some(50_000),
                ..NewAgent::new("My Claude Agent")
            }
        );
    }

    #[test]
    fn new_agent_refuses_unknown_fields_and_hostile_numbers() {
        let unknown = serde_json::from_str::<NewAgent>(r#"{"label": "a", "budget": 5}"#);
        assert!(unknown.unwrap_err().to_string().contains("budget"));

        for body in [
            r#"{"label": "a", "dailyTokenBudget": -1}"#,
            r#"{"label": "a", "dailyTokenBudget": 1.5}"#,
            r#"{"label": "a", "dailyTokenBudget": 100000000000000000000000}"#,
            r#"{"label": "a", "dailyTokenBudget": "5"}"#,
            r#"{"label": 5}"#,
            r#"{"dailyTokenBudget": 5}"#,
        ] {
            assert!(serde_json::from_str::<NewAgent>(body).is_err(), "{body}");
        }
    }

    #[test]
    fn patch_tells_absent_from_null() {
        let patch: AgentPatch = serde_json::from_str(r#"{"dailyTokenBudget": null}"#).unwrap();
        assert_eq!(patch.daily_token_budget, Some(None));
        assert_eq!(patch.allowed_tools, None);

        let patch: AgentPatch =
            serde_json::from_str(r#"{"allowedTools": null, "isActive": false}"#).unwrap();
        assert_eq!(patch.allowed_tools, Some(None));
        assert_eq!(patch.is_active, Some(false));
        assert_eq!(patch.daily_token_budget, None);

        let patch: AgentPatch = serde_json::from_str("{}").unwrap();
        assert!(patch.is_empty());
    }

    #[test]
    fn patch_refuses_null_for_fields_that_cannot_be_unset() {
        for body in [
            r#"{"label": null}"#,
            r#"{"scopes": null}"#,
            r#"{"isActive": null}"#,
            r#"{"isActive": "false"}"#,
            r#"{"agentId": "agt_00000000"}"#,
        ] {
            assert!(serde_json::from_str::<AgentPatch>(body).is_err(), "{body}");
        }
    }
}
