//! Audit records of MCP requests, committed through the budget's group-commit writer.
//!
//! Every record goes through the writer: a tool call's record as the extra work of its charge,
//! so the two share one write transaction and a crash keeps both or neither; every other
//! record as extra work without a charge. Either way the caller answers only after the commit,
//! so no answer leaves without its record on disk.

use std::sync::{Arc, Mutex, PoisonError};

use ithil_audit::{AuditLog, AuditRecord, NewRecord, Outcome};
use ithil_budget::{BudgetError, Charge, ChargeHandle, ChargeOutcome};
use ithil_token::Clock;
use serde_json::Value;
use time::Date;

use crate::privacy::PrivacyFilter;

/// Receives every audit record once it is durably committed (the stdout JSON Lines sink).
pub type AuditSink = Arc<dyn Fn(&AuditRecord) + Send + Sync>;

/// The audit outcome of a tool call that ended without an answer because its client cancelled
/// it (`notifications/cancelled`) or went away while it waited for its downstream.
///
/// `ithil_audit::Outcome` does not list it yet; the record's outcome is a string, so queries
/// and exports carry it like any other.
pub(crate) const CANCELLED: &str = "cancelled";

/// The audit fields of one handled message; the recorder adds the time, ids and agent.
#[derive(Debug, Clone)]
pub(crate) struct Note {
    pub action: String,
    pub tool: Option<String>,
    /// One of `ithil_audit::Outcome`'s strings, or [`CANCELLED`].
    pub outcome: &'static str,
    pub downstream_status: Option<u16>,
    pub latency_ms: Option<u64>,
    /// The call's arguments, unfiltered; the recorder filters them.
    pub arguments: Option<Value>,
}

impl Note {
    pub fn new(action: impl Into<String>, outcome: Outcome) -> Note {
        Note {
            action: action.into(),
            tool: None,
            outcome: outcome.as_str(),
            downstream_status: None,
            latency_ms: None,
            arguments: None,
        }
    }
}

/// Writes audit records through the charge writer.
#[derive(Clone)]
pub(crate) struct Recorder {
    pub charges: ChargeHandle,
    pub audit: Arc<AuditLog>,
    pub privacy: Arc<PrivacyFilter>,
    pub sink: Option<AuditSink>,
    pub clock: Arc<dyn Clock>,
}

/// Where the writer's transaction leaves the stored record for the sink.
type Slot = Arc<Mutex<Option<AuditRecord>>>;

impl Recorder {
    /// Commits the record of a request that charges nothing.
    pub async fn record(
        &self,
        agent_id: &str,
        request_id: &str,
        note: Note,
    ) -> Result<(), BudgetError> {
        let rec = self.new_record(agent_id, request_id, note);
        let audit = Arc::clone(&self.audit);
        let slot = Slot::default();
        let slot_in = Arc::clone(&slot);
        let written = self
            .charges
            .write(Box::new(move |txn, _| {
                let stored = audit.append_in(txn, rec)?;
                *slot_in.lock().unwrap_or_else(PoisonError::into_inner) = Some(stored);
                Ok(())
            }))
            .await;
        if written.is_ok() {
            self.emit(&slot);
        }
        written
    }

    /// Charges `tokens` to the agent's `day` within `limit` and commits the call's record in
    /// the same transaction: with the tokens when they fit, as withheld with none when not.
    pub async fn charge(
        &self,
        agent_id: &str,
        request_id: &str,
        note: Note,
        (day, tokens, limit): (Date, u64, u64),
    ) -> Result<ChargeOutcome, BudgetError> {
        let rec = self.new_record(agent_id, request_id, note);
        let audit = Arc::clone(&self.audit);
        let slot = Slot::default();
        let slot_in = Arc::clone(&slot);
        let charge = Charge {
            agent_id: agent_id.to_owned(),
            day,
            tokens,
            limit,
            extra: Some(Box::new(move |txn, outcome| {
                let mut rec = rec;
                match outcome {
                    ChargeOutcome::Charged { .. } => rec.tokens = tokens,
                    _ => rec.outcome = Outcome::WithheldOverBudget.as_str().to_owned(),
                }
                let stored = audit.append_in(txn, rec)?;
                *slot_in.lock().unwrap_or_else(PoisonError::into_inner) = Some(stored);
                Ok(())
            })),
        };
        let charged = self.charges.charge(charge).await;
        if charged.is_ok() {
            self.emit(&slot);
        }
        charged
    }

    fn new_record(&self, agent_id: &str, request_id: &str, note: Note) -> NewRecord {
        // Only filtered values reach the trail.
        let arguments = note.arguments.map(|mut args| {
            let _changed = self.privacy.filter_json(&mut args);
            args
        });
        NewRecord {
            tool: note.tool,
            downstream_status: note.downstream_status,
            latency_ms: note.latency_ms,
            arguments,
            ..NewRecord::new(
                self.clock.now(),
                request_id,
                agent_id,
                note.action,
                note.outcome,
            )
        }
    }

    /// Hands a committed record to the sink. Callers call this only after the writer answered
    /// success, which it does only after the durable commit, so the sink never sees a record
    /// that a crash could still take back.
    fn emit(&self, slot: &Mutex<Option<AuditRecord>>) {
        let stored = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let (Some(sink), Some(rec)) = (&self.sink, stored) {
            sink(&rec);
        }
    }
}

/// The record of a tool call that waits for its downstream, committed as [`CANCELLED`] if the
/// call is dropped before it is disarmed (or as `internal_error` if it is dropped by a panic).
///
/// hyper drops a request's future when its client goes away (an HTTP/1.1 connection closed, an
/// HTTP/2 stream reset), and a dropped future runs no more code of its own; so this guard's
/// `Drop` spawns the record's commit on the runtime instead. The call disarms it on every way
/// out of the waiting phase, where its own code records what happened.
pub(crate) struct DropRecord {
    armed: Option<Armed>,
}

struct Armed {
    recorder: Arc<Recorder>,
    agent_id: String,
    request_id: String,
    note: Note,
}

impl DropRecord {
    /// Arms the guard with the record the call has so far.
    pub fn arm(recorder: &Arc<Recorder>, agent_id: &str, request_id: &str, note: Note) -> Self {
        DropRecord {
            armed: Some(Armed {
                recorder: Arc::clone(recorder),
                agent_id: agent_id.to_owned(),
                request_id: request_id.to_owned(),
                note,
            }),
        }
    }

    /// The record as it would be committed, for fields learned while waiting.
    pub fn note_mut(&mut self) -> Option<&mut Note> {
        self.armed.as_mut().map(|armed| &mut armed.note)
    }

    /// Leaves the record to the call.
    pub fn disarm(&mut self) {
        self.armed = None;
    }
}

impl Drop for DropRecord {
    fn drop(&mut self) {
        let Some(mut armed) = self.armed.take() else {
            return;
        };
        // A call that panicked was not cancelled; its record says the gateway failed.
        armed.note.outcome = if std::thread::panicking() {
            Outcome::InternalError.as_str()
        } else {
            CANCELLED
        };
        // Outside a runtime (a runtime that is shutting down drops its tasks from outside one)
        // there is nothing to run the commit on; the call then leaves no record.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(request.id = %armed.request_id, "cancelled call not recorded: no runtime");
            return;
        };
        runtime.spawn(async move {
            let Armed {
                recorder,
                agent_id,
                request_id,
                note,
            } = armed;
            tracing::debug!(request.id = %request_id, agent.id = %agent_id, outcome = note.outcome, "tool call dropped before its answer");
            if let Err(err) = recorder.record(&agent_id, &request_id, note).await {
                tracing::debug!(request.id = %request_id, error = %err, "cancelled call not recorded");
            }
        });
    }
}
