//! `tools list`, `tools reload` and `circuits`: the running gateway's catalog and the health of
//! its downstreams.

use http::Method;
use serde_json::Value;

use super::Failure;
use super::client::Gateway;
use super::render::{Table, cell, out};

/// `ithil tools list`: one row per tool, in name order.
///
/// # Errors
///
/// As [`super::run`].
pub async fn list(gateway: &Gateway, json: bool) -> Result<(), Failure> {
    let answer = gateway.get("/management/tools").await?;
    if json {
        return out(&answer.raw());
    }
    let tools: Vec<Value> = answer.json()?;
    let mut table = Table::new(&[
        "NAME",
        "DOWNSTREAM",
        "METHOD",
        "ROUTE",
        "WRITE",
        "SCOPES",
        "MAXTOKENS",
        "OVERLIMIT",
    ]);
    for tool in &tools {
        table.row(vec![
            cell(&tool["name"]),
            cell(&tool["downstream"]),
            cell(&tool["httpMethod"]),
            cell(&tool["routePattern"]),
            write(tool).to_owned(),
            cell(&tool["requiredScopes"]),
            cell(&tool["maxResponseTokens"]),
            cell(&tool["overLimit"]),
        ]);
    }
    out(&table.render())
}

/// `ithil tools reload`: how many tools the new catalog has.
///
/// # Errors
///
/// As [`super::run`]; a catalog the gateway refuses is a refusal (exit code 3).
pub async fn reload(gateway: &Gateway, json: bool) -> Result<(), Failure> {
    let answer = gateway
        .send(Method::POST, "/management/tools/reload", None)
        .await?;
    if json {
        return out(&answer.raw());
    }
    let body: Value = answer.json()?;
    out(&format!(
        "catalog reloaded: {} tools\n",
        cell(&body["tools"])
    ))
}

/// `ithil circuits`: one row per downstream circuit.
///
/// # Errors
///
/// As [`super::run`].
pub async fn circuits(gateway: &Gateway, json: bool) -> Result<(), Failure> {
    let answer = gateway.get("/management/circuits").await?;
    if json {
        return out(&answer.raw());
    }
    let body: Value = answer.json()?;
    // A list of circuits, or an object that holds one under `circuits`.
    let circuits = match &body {
        Value::Array(items) => items.as_slice(),
        other => other["circuits"].as_array().map_or(&[][..], Vec::as_slice),
    };
    let mut table = Table::new(&[
        "DOWNSTREAM",
        "STATE",
        "SINCE",
        "SUCCESSES",
        "FAILURES",
        "OPENED",
    ]);
    for circuit in circuits {
        table.row(vec![
            cell(&circuit["downstream"]),
            cell(&circuit["state"]),
            cell(&circuit["since"]),
            cell(&circuit["recentSuccesses"]),
            cell(&circuit["recentFailures"]),
            cell(&circuit["openedCount"]),
        ]);
    }
    out(&table.render())
}

/// Whether a tool may change state downstream: `-` for a read, else `allowed` or `blocked`.
fn write(tool: &Value) -> &'static str {
    match (tool["writes"].as_bool(), tool["allowWrite"].as_bool()) {
        (Some(true), Some(true)) => "allowed",
        (Some(true), _) => "blocked",
        _ => "-",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_write_tool_shows_whether_its_writes_are_allowed() {
        assert_eq!(write(&json!({"writes": false, "allowWrite": false})), "-");
        assert_eq!(
            write(&json!({"writes": true, "allowWrite": false})),
            "blocked"
        );
        assert_eq!(
            write(&json!({"writes": true, "allowWrite": true})),
            "allowed"
        );
    }
}
