//! `GET /management/audit`, `GET /management/agents/{agentId}/audit` and
//! `GET /management/audit/export`: the audit trail, newest first.
//!
//! Filters are query parameters: `agentId`, `tool`, `outcome`, `since` and `until` (RFC 3339;
//! `since` inclusive, `until` exclusive), `limit` (1 to 1000, default 100) and the opaque
//! `cursor` of the previous page. A deleted agent's records stay, so an unknown agent id is not
//! an error: it has no records, or only old ones.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Frame;
use ithil_audit::{Action, AuditError, MAX_LIMIT, Outcome, Query};
use ithil_registry::AdminPrincipal;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::{error, warn};

use super::error::{ApiError, Body, json};
use super::record;
use crate::state::AppState;

/// How many pages of the export may wait for a slow client.
const EXPORT_BUFFER: usize = 4;

/// One page of records and the cursor of the next, `{"records": [...], "nextCursor": ...}`.
pub fn query(
    state: &AppState,
    agent: Option<&str>,
    params: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let query = parse(params, agent)?;
    let page = state.audit.query(&query).map_err(query_error)?;
    Ok(json(
        StatusCode::OK,
        &json!({"records": page.records, "nextCursor": page.next_cursor}),
    ))
}

/// Every matching record as JSON Lines (`application/x-ndjson`), streamed page by page.
///
/// If reading fails part way, the stream ends early and the failure is logged.
pub async fn export(
    state: &AppState,
    admin: &AdminPrincipal,
    params: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let mut query = parse(params, None)?;
    query.limit = MAX_LIMIT;
    let arguments = json!({
        "agentId": query.agent_id, "tool": query.tool, "outcome": query.outcome,
    });
    record::action(
        state,
        Some(admin),
        Action::AuditExport,
        Outcome::Ok,
        arguments,
    )
    .await;

    // The first page is read before the answer starts, so that a malformed cursor or a
    // reversed time range is a 400 rather than a 200 with an empty body.
    let mut pages = state.audit.export(query);
    let first = pages.next().transpose().map_err(query_error)?;

    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(EXPORT_BUFFER);
    tokio::task::spawn_blocking(move || {
        for page in first.into_iter().map(Ok).chain(pages) {
            let records = match page {
                Ok(records) => records,
                Err(e) => {
                    warn!(error = %e, "audit export ended early");
                    return;
                }
            };
            let mut chunk = String::new();
            for rec in &records {
                chunk.push_str(&rec.to_json_line());
            }
            // A client that went away ends the export.
            if tx.blocking_send(Bytes::from(chunk)).is_err() {
                return;
            }
        }
    });

    let mut response = Response::new(ChannelBody { rx }.boxed());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

/// A body whose chunks arrive over a channel; it ends when the sender is dropped.
struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// A query the audit store refused: the caller's mistake (400) or the store's failure (500).
fn query_error(e: AuditError) -> ApiError {
    if e.is_invalid_input() {
        ApiError::bad_request("invalid_query", e.to_string())
    } else {
        error!(error = %e, "audit query failed");
        ApiError::internal()
    }
}

fn parse(params: Option<&str>, agent: Option<&str>) -> Result<Query, ApiError> {
    let bad = |message: String| ApiError::bad_request("invalid_query", message);
    let mut query = Query {
        agent_id: agent.map(str::to_owned),
        ..Query::default()
    };

    for pair in params.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, raw) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(raw).ok_or_else(|| bad(format!("{name} is not valid")))?;
        match name {
            "agentId" if agent.is_none() => query.agent_id = Some(value),
            "tool" => query.tool = Some(value),
            "outcome" => query.outcome = Some(value),
            "since" => query.since = Some(time(&value).ok_or_else(|| bad(rfc3339(name)))?),
            "until" => query.until = Some(time(&value).ok_or_else(|| bad(rfc3339(name)))?),
            "limit" => {
                query.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        bad(format!(
                            "limit must be a whole number from 1 to {MAX_LIMIT}"
                        ))
                    })?;
            }
            "cursor" => query.cursor = Some(value),
            _ => {
                return Err(bad(
                    "accepted query parameters are agentId, tool, outcome, since, until, limit \
                     and cursor"
                        .to_owned(),
                ));
            }
        }
    }
    Ok(query)
}

fn rfc3339(name: &str) -> String {
    format!("{name} must be an RFC 3339 time such as 2026-05-06T12:00:00Z")
}

fn time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// Decodes `%XX` escapes; `+` stays `+`, since RFC 3339 offsets use it.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_become_a_query() {
        let query = parse(
            Some("tool=getPost&outcome=ok&since=2026-05-06T00%3A00%3A00Z&until=2026-05-07T00:00:00%2B00:00&limit=5&cursor=abc"),
            Some("agt_00000001"),
        )
        .unwrap();
        assert_eq!(query.agent_id.as_deref(), Some("agt_00000001"));
        assert_eq!(query.tool.as_deref(), Some("getPost"));
        assert_eq!(query.outcome.as_deref(), Some("ok"));
        assert_eq!(query.limit, 5);
        assert_eq!(query.cursor.as_deref(), Some("abc"));
        assert_eq!(
            query.since,
            Some(time::macros::datetime!(2026-05-06 00:00 UTC))
        );
        assert_eq!(
            query.until,
            Some(time::macros::datetime!(2026-05-07 00:00 UTC))
        );
    }

    #[test]
    fn bad_query_parameters_are_refused() {
        for params in [
            "limit=0",
            "limit=1001",
            "since=yesterday",
            "until=2026-13-01T00:00:00Z",
            "colour=red",
            "tool=%zz",
            "tool=%ff",
        ] {
            assert!(parse(Some(params), None).is_err(), "{params}");
        }
        // The agent of the path cannot be overridden by the query.
        assert!(parse(Some("agentId=agt_00000002"), Some("agt_00000001")).is_err());
    }
}
