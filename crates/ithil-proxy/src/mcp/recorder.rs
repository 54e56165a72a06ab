//! Audit records of MCP requests, committed through the budget's group-commit writer.
//!
//! Every record goes through the writer: a tool call's record as the extra work of its charge,
//! so the two share one write transaction and a crash keeps both or neither; every other
//! record as extra work without a charge. Either way the caller answers only after the commit,
//! so no answer leaves without its record on disk.

use std::sync::{Arc, Mutex, PoisonError};

use ithil_audit::{Action, AuditLog, AuditRecord, NewRecord, Outcome};
use ithil_budget::{BudgetError, Charge, ChargeHandle, ChargeOutcome, Declined, ExtraWork};
use ithil_token::Clock;
use serde_json::Value;
use time::Date;

use crate::gateway::Observer;
use crate::privacy::PrivacyFilter;

/// Receives every audit record once it is durably committed (the stdout JSON Lines sink).
pub type AuditSink = Arc<dyn Fn(&AuditRecord) + Send + Sync>;

/// The longest `action` or `tool` a record keeps, in characters.
///
/// Both may come from the agent (the method of an unknown request or notification, the name of
/// an unknown tool); the bound keeps one request from filling the trail, and the privacy filter
/// runs over them first, as over everything else the trail keeps.
pub(crate) const MAX_RECORDED_CHARS: usize = 128;

/// The audit fields of one handled message; the recorder adds the time, ids and agent.
#[derive(Debug, Clone)]
pub(crate) struct Note {
    /// What was asked for, as the agent wrote it; the recorder filters and bounds it.
    pub action: String,
    /// The tool named, as the agent wrote it; the recorder filters and bounds it.
    pub tool: Option<String>,
    /// Whether `tool` names a tool of the catalog the call ran with: only such names reach the
    /// [`Observer`], whose labels must stay few.
    pub known_tool: bool,
    pub outcome: Outcome,
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
            known_tool: false,
            outcome,
            downstream_status: None,
            latency_ms: None,
            arguments: None,
        }
    }
}

/// A last look at a charge from inside its write transaction, once its check-and-add decided:
/// `false` declines the charge, which is then written neither with nor without its record (see
/// [`Recorder::charge`]).
pub(crate) type ChargeCheck = Box<dyn FnOnce(&ChargeOutcome) -> bool + Send>;

/// Why [`Recorder::charge`] committed nothing.
#[derive(Debug)]
pub(crate) enum ChargeFailed {
    /// The [`ChargeCheck`] refused the charge; the caller looks again and charges anew.
    Vetoed,
    /// The writer failed; neither charge nor record exist.
    Budget(BudgetError),
}

/// Writes audit records through the charge writer.
#[derive(Clone)]
pub(crate) struct Recorder {
    pub charges: ChargeHandle,
    pub audit: Arc<AuditLog>,
    pub privacy: Arc<PrivacyFilter>,
    pub sink: Option<AuditSink>,
    pub clock: Arc<dyn Clock>,
    /// Benchmarks only: commit nothing, answer every charge as fitting (see
    /// `GatewayConfig::uncharged`).
    pub uncharged: bool,
    /// Hears every committed tool-call record.
    pub observer: Option<Arc<dyn Observer>>,
}

/// Where the writer's transaction leaves the stored record for the sink.
type Slot = Arc<Mutex<Option<AuditRecord>>>;

/// A tool call as the observer hears of it.
struct ToolCall {
    /// The tool's name, only when it is one of the catalog's.
    tool: Option<String>,
    outcome: Outcome,
}

impl Recorder {
    /// Commits the record of a request that charges nothing.
    pub async fn record(
        &self,
        agent_id: &str,
        request_id: &str,
        note: Note,
    ) -> Result<(), BudgetError> {
        let call = self.tool_call(&note);
        if self.uncharged {
            self.observe(call, None, 0);
            return Ok(());
        }
        let rec = self.new_record(agent_id, request_id, note);
        let audit = Arc::clone(&self.audit);
        let slot = Slot::default();
        let slot_in = Arc::clone(&slot);
        let charges = self.charges.clone();
        let work: ExtraWork = Box::new(move |txn, _| {
            let stored = audit.append_in(txn, rec)?;
            *slot_in.lock().unwrap_or_else(PoisonError::into_inner) = Some(stored);
            Ok(())
        });
        let this = self.clone();
        detached(async move { charges.write(work).await }, move |()| {
            this.emit(&slot);
            this.observe(call, None, 0);
        })
        .await
    }

    /// Charges `tokens` to the agent's `day` within `limit` and commits the call's record in
    /// the same transaction: with the tokens when they fit, as withheld with none when not.
    ///
    /// `check` runs inside that transaction after the check-and-add decided; when it answers
    /// `false` for a charge that fits, the request is declined before anything of it is written
    /// (the writer then writes neither the charge nor the record, and the rest of the group goes
    /// on), and the caller gets [`ChargeFailed::Vetoed`].
    pub async fn charge(
        &self,
        agent_id: &str,
        request_id: &str,
        note: Note,
        (day, tokens, limit): (Date, u64, u64),
        check: Option<ChargeCheck>,
    ) -> Result<ChargeOutcome, ChargeFailed> {
        let call = self.tool_call(&note);
        if self.uncharged {
            // Nothing was charged; the call is still heard of, so that metrics cost the same.
            self.observe(call, None, 0);
            return Ok(ChargeOutcome::Charged { used: tokens });
        }
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
                // Declined before anything is written, as `Declined` requires.
                if let Some(check) = check
                    && matches!(outcome, ChargeOutcome::Charged { .. })
                    && !check(outcome)
                {
                    return Err(Declined.into());
                }
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
        let charges = self.charges.clone();
        let this = self.clone();
        let charged = detached(
            async move { charges.charge(charge).await },
            move |outcome| {
                this.emit(&slot);
                match outcome {
                    ChargeOutcome::Charged { .. } => this.observe(call, None, tokens),
                    // Recorded as withheld, as the transaction above wrote it.
                    _ => this.observe(call, Some(Outcome::WithheldOverBudget), 0),
                }
            },
        );
        match charged.await {
            Ok(outcome) => Ok(outcome),
            Err(BudgetError::ExtraWork(err)) if Declined::is(&err) => Err(ChargeFailed::Vetoed),
            Err(err) => Err(ChargeFailed::Budget(err)),
        }
    }

    /// What the observer will hear of `note` once it is committed: `None` unless there is an
    /// observer and the note is a tool call's.
    fn tool_call(&self, note: &Note) -> Option<ToolCall> {
        self.observer.as_ref()?;
        (note.action == Action::ToolsCall.as_str()).then(|| ToolCall {
            tool: note.tool.clone().filter(|_| note.known_tool),
            outcome: note.outcome,
        })
    }

    /// Reports a committed tool call, with `outcome` instead of the note's when it changed at
    /// the commit.
    fn observe(&self, call: Option<ToolCall>, outcome: Option<Outcome>, tokens: u64) {
        if let (Some(observer), Some(call)) = (&self.observer, call) {
            observer.tool_call(
                call.tool.as_deref(),
                outcome.unwrap_or(call.outcome),
                tokens,
            );
        }
    }

    fn new_record(&self, agent_id: &str, request_id: &str, note: Note) -> NewRecord {
        // Only filtered values reach the trail.
        let arguments = note.arguments.map(|mut args| {
            let _changed = self.privacy.filter_json(&mut args);
            args
        });
        // The gateway's own action names need no filter; anything else came from the agent.
        let action = if note.action.parse::<Action>().is_ok() {
            note.action
        } else {
            self.agent_text(&note.action)
        };
        NewRecord {
            tool: note.tool.as_deref().map(|tool| self.agent_text(tool)),
            downstream_status: note.downstream_status,
            latency_ms: note.latency_ms,
            arguments,
            ..NewRecord::new(self.clock.now(), request_id, agent_id, action, note.outcome)
        }
    }

    /// A string the agent wrote, as the trail may keep it: filtered, then cut to
    /// [`MAX_RECORDED_CHARS`].
    ///
    /// The filter runs over the whole string before the cut, so that a cut cannot leave part of
    /// an address or number unrecognised; the string is at most a request body long.
    fn agent_text(&self, text: &str) -> String {
        let filtered = self.privacy.filter_text(text);
        match filtered.char_indices().nth(MAX_RECORDED_CHARS) {
            Some((end, _)) => filtered[..end].to_owned(),
            None => filtered.into_owned(),
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

/// Sends a request to the writer and, once it succeeded, runs `after` (the sink and the
/// observer), on a task of its own.
///
/// The writer commits a request it has taken even when its caller is dropped (hyper drops a
/// request's future when its client hangs up); on a task of its own, what follows the commit
/// still happens then, so the sink and the metrics never miss a committed record.
async fn detached<T: Send + 'static>(
    write: impl Future<Output = Result<T, BudgetError>> + Send + 'static,
    after: impl FnOnce(&T) + Send + 'static,
) -> Result<T, BudgetError> {
    let task = tokio::spawn(async move {
        let result = write.await;
        if let Ok(value) = &result {
            after(value);
        }
        result
    });
    match task.await {
        Ok(result) => result,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        // The runtime is shutting down and dropped the task.
        Err(_) => Err(BudgetError::WriterStopped),
    }
}

/// The record of a tool call that waits for its downstream, committed as `cancelled` if the
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
            Outcome::InternalError
        } else {
            Outcome::Cancelled
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
            tracing::debug!(request.id = %request_id, agent.id = %agent_id, outcome = %note.outcome, "tool call dropped before its answer");
            if let Err(err) = recorder.record(&agent_id, &request_id, note).await {
                tracing::debug!(request.id = %request_id, error = %err, "cancelled call not recorded");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use ithil_audit::Query;
    use ithil_budget::Budget;
    use ithil_token::ManualClock;
    use time::macros::datetime;

    use super::*;

    fn recorder() -> (Recorder, Arc<Budget>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(redb::Database::create(dir.path().join("t.redb")).unwrap());
        let budget = Arc::new(Budget::open(Arc::clone(&db)).unwrap());
        let (charges, writer) = budget.writer();
        std::thread::spawn(move || writer.run());
        let recorder = Recorder {
            charges,
            audit: Arc::new(AuditLog::open(db).unwrap()),
            privacy: Arc::new(PrivacyFilter::new(&[]).unwrap()),
            sink: None,
            clock: Arc::new(ManualClock::new(datetime!(2026-05-06 12:00 UTC))),
            uncharged: false,
            observer: None,
        };
        (recorder, budget, dir)
    }

    /// The tool calls an observer heard: (tool, outcome, tokens).
    #[derive(Default)]
    struct Heard(Mutex<Vec<(Option<String>, Outcome, u64)>>);

    impl Observer for Heard {
        fn tool_call(&self, tool: Option<&str>, outcome: Outcome, tokens: u64) {
            let call = (tool.map(str::to_owned), outcome, tokens);
            self.0.lock().unwrap().push(call);
        }

        fn downstream_request(&self, _downstream: &str, _elapsed: std::time::Duration) {}
    }

    #[tokio::test]
    async fn the_observer_hears_committed_tool_calls_with_only_known_tool_names() {
        let (recorder, _budget, _dir) = recorder();
        let heard = Arc::new(Heard::default());
        let recorder = Recorder {
            observer: Some(Arc::clone(&heard) as Arc<dyn Observer>),
            ..recorder
        };
        let day = time::macros::date!(2026 - 05 - 06);
        let call = |tool: &str, known: bool, outcome: Outcome| Note {
            tool: Some(tool.to_owned()),
            known_tool: known,
            ..Note::new(Action::ToolsCall.as_str(), outcome)
        };

        // Charged, then withheld over the limit, then refused, then not a tool call at all.
        let fits = call("get_order", true, Outcome::Ok);
        recorder
            .charge("agt_1", "r1", fits, (day, 60, 100), None)
            .await
            .unwrap();
        let over = call("get_order", true, Outcome::Ok);
        recorder
            .charge("agt_1", "r2", over, (day, 60, 100), None)
            .await
            .unwrap();
        let unknown = call("made-up-name", false, Outcome::UnknownTool);
        recorder.record("agt_1", "r3", unknown).await.unwrap();
        let ping = Note::new(Action::Ping.as_str(), Outcome::Ok);
        recorder.record("agt_1", "r4", ping).await.unwrap();
        // A vetoed charge commits nothing, so it is not heard of.
        let vetoed = call("get_order", true, Outcome::Ok);
        let check: ChargeCheck = Box::new(|_| false);
        let _ = recorder
            .charge("agt_1", "r5", vetoed, (day, 1, 100), Some(check))
            .await;

        let heard = heard.0.lock().unwrap().clone();
        assert_eq!(
            heard,
            vec![
                (Some("get_order".to_owned()), Outcome::Ok, 60),
                (Some("get_order".to_owned()), Outcome::WithheldOverBudget, 0),
                (None, Outcome::UnknownTool, 0),
            ]
        );
    }

    fn records(recorder: &Recorder) -> Vec<AuditRecord> {
        recorder
            .audit
            .query(&Query::for_agent("agt_1"))
            .unwrap()
            .records
    }

    #[tokio::test]
    async fn a_vetoed_charge_commits_neither_the_charge_nor_the_record() {
        let (recorder, budget, _dir) = recorder();
        let day = time::macros::date!(2026 - 05 - 06);
        let note = Note::new(Action::ToolsCall.as_str(), Outcome::Ok);

        let vetoed = recorder
            .charge(
                "agt_1",
                "r1",
                note.clone(),
                (day, 10, 100),
                Some(Box::new(|_| false)),
            )
            .await;
        assert!(matches!(vetoed, Err(ChargeFailed::Vetoed)), "{vetoed:?}");
        assert_eq!(budget.used("agt_1", day), 0);
        assert!(records(&recorder).is_empty());

        let charged = recorder
            .charge(
                "agt_1",
                "r2",
                note,
                (day, 10, 100),
                Some(Box::new(|_| true)),
            )
            .await
            .unwrap();
        assert_eq!(charged, ChargeOutcome::Charged { used: 10 });
        assert_eq!(budget.used("agt_1", day), 10);
        assert_eq!(records(&recorder).len(), 1);
    }

    #[tokio::test]
    async fn the_check_is_not_asked_about_a_charge_that_did_not_fit() {
        let (recorder, _budget, _dir) = recorder();
        let day = time::macros::date!(2026 - 05 - 06);
        let note = Note::new(Action::ToolsCall.as_str(), Outcome::Ok);
        let outcome = recorder
            .charge(
                "agt_1",
                "r1",
                note,
                (day, 200, 100),
                Some(Box::new(|_| false)),
            )
            .await
            .unwrap();
        assert!(matches!(outcome, ChargeOutcome::OverLimit { .. }));
        assert_eq!(records(&recorder)[0].outcome, "withheld_over_budget");
    }

    #[tokio::test]
    async fn a_charge_whose_caller_is_dropped_still_reaches_the_sink_and_the_observer() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(redb::Database::create(dir.path().join("t.redb")).unwrap());
        let budget = Budget::open(Arc::clone(&db)).unwrap();
        // The writer is not running yet, so the charge waits for it.
        let (charges, writer) = budget.writer();
        let (sunk, mut sunk_rx) = tokio::sync::mpsc::unbounded_channel();
        let heard = Arc::new(Heard::default());
        let recorder = Recorder {
            charges,
            audit: Arc::new(AuditLog::open(db).unwrap()),
            privacy: Arc::new(PrivacyFilter::new(&[]).unwrap()),
            sink: Some(Arc::new(move |rec: &AuditRecord| {
                let _ = sunk.send(rec.request_id.clone());
            })),
            clock: Arc::new(ManualClock::new(datetime!(2026-05-06 12:00 UTC))),
            uncharged: false,
            observer: Some(Arc::clone(&heard) as Arc<dyn Observer>),
        };
        let day = time::macros::date!(2026 - 05 - 06);
        let note = Note {
            tool: Some("get_order".to_owned()),
            known_tool: true,
            ..Note::new(Action::ToolsCall.as_str(), Outcome::Ok)
        };

        // The call is dropped while its charge waits, as hyper drops the future of a request
        // whose client hung up.
        let call = recorder.charge("agt_1", "r1", note, (day, 10, 100), None);
        tokio::select! {
            biased;
            _ = call => panic!("the charge cannot finish without the writer"),
            () = tokio::task::yield_now() => {}
        }
        std::thread::spawn(move || writer.run());

        let sunk = tokio::time::timeout(std::time::Duration::from_secs(60), sunk_rx.recv())
            .await
            .expect("the committed record never reached the sink");
        assert_eq!(sunk.as_deref(), Some("r1"));
        assert_eq!(budget.used("agt_1", day), 10);
        let heard = heard.0.lock().unwrap().clone();
        assert_eq!(heard, vec![(Some("get_order".to_owned()), Outcome::Ok, 10)]);
    }

    #[tokio::test]
    async fn an_uncharged_recorder_writes_neither_charges_nor_records() {
        let (mut recorder, budget, _dir) = recorder();
        recorder.uncharged = true;
        let day = time::macros::date!(2026 - 05 - 06);
        let note = Note::new(Action::ToolsCall.as_str(), Outcome::Ok);

        // Over the limit, and still answered as fitting: the benchmark's agent never runs out.
        let outcome = recorder
            .charge("agt_1", "r1", note.clone(), (day, 200, 100), None)
            .await
            .unwrap();
        assert_eq!(outcome, ChargeOutcome::Charged { used: 200 });
        recorder.record("agt_1", "r2", note).await.unwrap();

        assert_eq!(budget.used("agt_1", day), 0);
        assert!(records(&recorder).is_empty());
        assert_eq!(budget.commit_count(), 0);
    }

    #[tokio::test]
    async fn agent_text_is_filtered_then_cut() {
        let (recorder, _budget, _dir) = recorder();
        let long = format!("{} jane@example.com", "a".repeat(120));
        let kept = recorder.agent_text(&long);
        assert_eq!(kept.chars().count(), MAX_RECORDED_CHARS);
        assert!(kept.starts_with(&"a".repeat(120)));
        assert!(kept.ends_with(" [EMAIL "), "{kept}");
        assert_eq!(recorder.agent_text("getPost"), "getPost");
        // Multi-byte characters are cut on a character boundary.
        assert_eq!(
            recorder.agent_text(&"é".repeat(500)).chars().count(),
            MAX_RECORDED_CHARS
        );
    }
}
