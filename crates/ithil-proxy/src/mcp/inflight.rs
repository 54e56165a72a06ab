//! Tool calls in flight, by session and request id, so that `notifications/cancelled` can stop
//! the one it names.
//!
//! A call registers itself while it waits for its downstream and gets a receiver that fires
//! when a cancellation for its id arrives in its session; the registration ends when the call
//! leaves that phase, whichever way. A session's ids are its own: another session, even of the
//! same agent, cannot cancel them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;
use tokio::sync::oneshot;

use crate::mcp::jsonrpc::Id;

/// A request id within one session. The id keeps its JSON type, so `1` and `"1"` differ.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CallKey {
    session: String,
    id: String,
}

impl CallKey {
    fn new(session: &str, id: &Value) -> Option<CallKey> {
        let id = match id {
            Value::Number(n) => format!("n{n}"),
            Value::String(s) => format!("s{s}"),
            _ => return None,
        };
        Some(CallKey {
            session: session.to_owned(),
            id,
        })
    }
}

/// One registered call: its ticket (to tell it from a later call reusing the id) and its signal.
type Waiter = (u64, oneshot::Sender<()>);

/// The registry of cancellable calls.
#[derive(Debug, Default)]
pub struct InFlightCalls {
    calls: Mutex<HashMap<CallKey, Vec<Waiter>>>,
    next_ticket: AtomicU64,
}

impl InFlightCalls {
    /// An empty registry.
    pub fn new() -> Arc<InFlightCalls> {
        Arc::default()
    }

    /// Registers the call `id` of `session` until the returned registration drops.
    pub fn register(self: &Arc<Self>, session: &str, id: &Id) -> Registration {
        let (tx, rx) = oneshot::channel();
        let key = CallKey::new(session, &id.to_value());
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        if let Some(key) = &key {
            self.lock()
                .entry(key.clone())
                .or_default()
                .push((ticket, tx));
        }
        Registration {
            calls: Arc::clone(self),
            key,
            ticket,
            cancelled: rx,
        }
    }

    /// Signals every call of `session` registered under `id` (a JSON string or number); returns
    /// how many there were. An id of another type names no call.
    pub fn cancel(&self, session: &str, id: &Value) -> usize {
        let Some(key) = CallKey::new(session, id) else {
            return 0;
        };
        let waiters = self.lock().remove(&key).unwrap_or_default();
        let count = waiters.len();
        for (_, tx) in waiters {
            // A call that finished meanwhile has dropped its receiver; nothing is lost.
            let _ = tx.send(());
        }
        count
    }

    /// How many calls are registered now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    /// Whether no call is registered.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CallKey, Vec<Waiter>>> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A call's place in [`InFlightCalls`]; dropping it unregisters the call.
#[derive(Debug)]
pub struct Registration {
    calls: Arc<InFlightCalls>,
    key: Option<CallKey>,
    ticket: u64,
    /// Fires with `Ok(())` when the call is cancelled. It never fires for a call whose id the
    /// registry could not key.
    pub cancelled: oneshot::Receiver<()>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let Some(key) = &self.key else {
            return;
        };
        let mut calls = self.calls.lock();
        if let Some(waiters) = calls.get_mut(key) {
            waiters.retain(|(ticket, _)| *ticket != self.ticket);
            if waiters.is_empty() {
                calls.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn number(n: u64) -> Id {
        Id::Number(n.into())
    }

    #[test]
    fn a_cancellation_reaches_the_call_of_its_session_and_id() {
        let calls = InFlightCalls::new();
        let mut call = calls.register("s1", &number(7));

        assert_eq!(calls.cancel("s1", &json!(7)), 1);
        assert_eq!(call.cancelled.try_recv(), Ok(()));
        assert!(calls.is_empty());
    }

    #[test]
    fn another_session_or_another_id_type_cancels_nothing() {
        let calls = InFlightCalls::new();
        let mut call = calls.register("s1", &number(7));

        assert_eq!(calls.cancel("s2", &json!(7)), 0);
        assert_eq!(calls.cancel("s1", &json!("7")), 0);
        assert_eq!(calls.cancel("s1", &json!(null)), 0);
        assert_eq!(calls.cancel("s1", &json!([7])), 0);
        assert!(call.cancelled.try_recv().is_err());
        assert_eq!(calls.len(), 1);
    }

    #[test]
    fn a_finished_call_unregisters_itself() {
        let calls = InFlightCalls::new();
        let call = calls.register("s1", &Id::String("a".into()));
        drop(call);
        assert!(calls.is_empty());
        assert_eq!(calls.cancel("s1", &json!("a")), 0);
    }

    #[test]
    fn calls_reusing_an_id_are_all_cancelled_and_unregister_separately() {
        let calls = InFlightCalls::new();
        let first = calls.register("s1", &number(1));
        let mut second = calls.register("s1", &number(1));
        drop(first);
        assert_eq!(calls.len(), 1);

        assert_eq!(calls.cancel("s1", &json!(1)), 1);
        assert_eq!(second.cancelled.try_recv(), Ok(()));
    }
}
