//! Audit records of management actions: who (the admin token's `jti`) did what to which agent.
//!
//! Management records carry `agentId: "admin"` and the token id in `operator`, as the audit
//! trail's vocabulary says; the agent acted upon is in `arguments.agentId`. They commit through
//! the budget writer, in its next group, before the answer leaves; the registry write they
//! describe has already committed in its own transaction.

use std::sync::{Arc, Mutex, PoisonError};

use ithil_audit::{ADMIN_AGENT_ID, Action, NewRecord, Outcome};
use ithil_budget::ExtraWork;
use ithil_registry::{AdminPrincipal, IssuedToken};
use serde_json::{Value, json};
use tracing::error;

use crate::state::AppState;

/// Records an issued admin token; `via` says how (`api_key` or `dev`).
pub async fn admin_token_issued(state: &AppState, issued: &IssuedToken, via: &str) {
    let rec = NewRecord {
        operator: Some(issued.jti.clone()),
        arguments: Some(json!({ "via": via })),
        ..base(state, Action::AdminTokenIssue, Outcome::Ok)
    };
    commit(state, rec).await;
}

/// Records a management action by `admin` with its outcome and arguments.
pub async fn action(
    state: &AppState,
    admin: Option<&AdminPrincipal>,
    action: impl Into<String>,
    outcome: Outcome,
    arguments: Value,
) {
    let rec = NewRecord {
        operator: Some(admin.map_or_else(|| "dev".to_owned(), |a| a.jti.clone())),
        arguments: Some(arguments),
        ..base(state, action, outcome)
    };
    commit(state, rec).await;
}

fn base(state: &AppState, action: impl Into<String>, outcome: Outcome) -> NewRecord {
    NewRecord::new(
        state.clock.now(),
        state.request_id(),
        ADMIN_AGENT_ID,
        action,
        outcome,
    )
}

/// The extra work that appends `rec` inside the writer's transaction, and where the stored
/// record lands for the stdout sink.
pub fn append_work(
    state: &AppState,
    rec: NewRecord,
) -> (ExtraWork, Arc<Mutex<Option<ithil_audit::AuditRecord>>>) {
    let audit = Arc::clone(&state.audit);
    let slot = Arc::new(Mutex::new(None));
    let out = Arc::clone(&slot);
    let work: ExtraWork = Box::new(move |txn, _| {
        let stored = audit.append_in(txn, rec)?;
        *out.lock().unwrap_or_else(PoisonError::into_inner) = Some(stored);
        Ok(())
    });
    (work, slot)
}

/// Hands a committed record to the stdout sink.
pub fn publish(state: &AppState, slot: &Mutex<Option<ithil_audit::AuditRecord>>) {
    let stored = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
    if let (Some(sink), Some(stored)) = (&state.audit_sink, stored) {
        sink(&stored);
    }
}

async fn commit(state: &AppState, rec: NewRecord) {
    let action = rec.action.clone();
    let (work, slot) = append_work(state, rec);
    match state.charges.write(work).await {
        Ok(()) => publish(state, &slot),
        // The action itself has happened; a lost record is logged loudly instead of turning a
        // done change into an error answer.
        Err(e) => error!(error = %e, action = %action, "audit record of a management action lost"),
    }
}
