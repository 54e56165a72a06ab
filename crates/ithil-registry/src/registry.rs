//! The agent store: redb for durability, an in-memory view for every read.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use redb::{Database, Durability, ReadableTable, TableDefinition};
use ring::rand::{SecureRandom, SystemRandom};
use time::{OffsetDateTime, UtcOffset};

use crate::agent::{Agent, AgentPatch, NewAgent};
use crate::error::{RegistryError, Result};
use crate::{record, validate};

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u64 = 1;

/// Crate-owned metadata; holds the schema version under [`SCHEMA_KEY`].
const META: TableDefinition<&str, u64> = TableDefinition::new("ithil_registry_meta");
const SCHEMA_KEY: &str = "schema_version";

/// Agent id to JSON-encoded record (see `record.rs`).
const AGENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("ithil_registry_agents");

const ID_PREFIX: &str = "agt_";

/// How many ids `create` draws before it gives up. With 2^32 ids, even a million agents make a
/// collision a one-in-four-thousand event per draw, so reaching this means the random source is
/// broken rather than the space full.
const ID_ATTEMPTS: u32 = 16;

/// The agents of one gateway: stored durably in redb, read from memory.
///
/// Every read ([`get`](Self::get), [`list`](Self::list), [`len`](Self::len)) is served from an
/// in-memory view loaded by [`open`](Self::open) and does no I/O. Every write validates its
/// input, commits to redb with [`Durability::Immediate`], and then updates the view before it
/// returns, so the next read, on any thread, sees it: a deactivated or deleted agent is refused
/// from the very next request on.
///
/// The registry assumes it is the only writer of its tables. Open one `Registry` per database
/// and share it (it is `Send + Sync`, typically behind an `Arc`); a second instance on the same
/// database would not see the first one's writes in its view.
pub struct Registry {
    db: Arc<Database>,
    view: RwLock<View>,
    /// Held across commit and view update, so the view changes in commit order.
    writer: Mutex<()>,
    random: SystemRandom,
}

/// The in-memory mirror of the agents table; both maps always hold the same agents.
#[derive(Default)]
struct View {
    /// The hot path: lookups by id.
    by_id: HashMap<String, Arc<Agent>>,
    /// Listing in id order, with `after` as a cursor.
    ordered: BTreeMap<String, Arc<Agent>>,
}

impl View {
    fn insert(&mut self, agent: Agent) {
        let agent = Arc::new(agent);
        self.by_id
            .insert(agent.agent_id.clone(), Arc::clone(&agent));
        self.ordered.insert(agent.agent_id.clone(), agent);
    }

    fn remove(&mut self, id: &str) {
        self.by_id.remove(id);
        self.ordered.remove(id);
    }
}

impl Registry {
    /// Opens the registry's tables in `db`, creating them on first use, and loads every agent
    /// into memory.
    ///
    /// # Errors
    ///
    /// [`RegistryError::UnsupportedSchema`] when the tables were written with another schema
    /// version, [`RegistryError::Corrupt`] when a stored record cannot be decoded, and
    /// [`RegistryError::Storage`] when redb fails. Nothing is written in any of these cases.
    pub fn open(db: Arc<Database>) -> Result<Self> {
        // A write transaction, so that creating the tables and recording the schema version
        // happen together or not at all.
        let txn = db.begin_write()?;

        let mut view = View::default();
        {
            let mut meta = txn.open_table(META)?;
            let found = meta.get(SCHEMA_KEY)?.map(|guard| guard.value());
            match found {
                None => {
                    meta.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
                }
                Some(SCHEMA_VERSION) => {}
                Some(found) => {
                    return Err(RegistryError::UnsupportedSchema {
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
            }

            let agents = txn.open_table(AGENTS)?;
            for entry in agents.iter()? {
                let (id, bytes) = entry?;
                view.insert(record::decode(id.value(), bytes.value())?);
            }
        }
        txn.commit()?;

        tracing::debug!(agents = view.by_id.len(), "agent registry opened");
        Ok(Self {
            db,
            view: RwLock::new(view),
            writer: Mutex::new(()),
            random: SystemRandom::new(),
        })
    }

    /// Creates an agent with a fresh random id and returns it.
    ///
    /// The label is trimmed; repeated tools and scopes are dropped, keeping the first
    /// occurrence's position. `now` becomes both `created_at` and `updated_at`, converted to
    /// UTC and cut to whole seconds.
    ///
    /// # Errors
    ///
    /// A validation error (see [`RegistryError::is_invalid_input`]) when a field breaks the
    /// rules, [`RegistryError::IdSpaceExhausted`] or [`RegistryError::Random`] when no id could
    /// be drawn, and [`RegistryError::Storage`] when redb fails. Nothing is stored then.
    pub fn create(&self, new: NewAgent, now: OffsetDateTime) -> Result<Agent> {
        let label = validate::label(&new.label)?;
        let daily_token_budget = validate::budget(new.daily_token_budget)?;
        let allowed_tools = validate::allowed_tools(new.allowed_tools)?;
        let scopes = validate::scopes(new.scopes)?;
        let now = normalise(now);

        let _writer = self.lock_writer();
        let txn = self.begin_write()?;
        let agent = {
            let mut table = txn.open_table(AGENTS)?;

            // The view mirrors the table while the writer lock is held; the table is asked
            // too so that a broken mirror can never make an insert overwrite an agent.
            let mut agent_id = None;
            for _ in 0..ID_ATTEMPTS {
                let candidate = self.draw_id()?;
                if !self.read_view().by_id.contains_key(&candidate)
                    && table.get(candidate.as_str())?.is_none()
                {
                    agent_id = Some(candidate);
                    break;
                }
            }
            let agent_id = agent_id.ok_or(RegistryError::IdSpaceExhausted {
                attempts: ID_ATTEMPTS,
            })?;

            let agent = Agent {
                agent_id,
                label,
                daily_token_budget,
                allowed_tools,
                scopes,
                is_active: new.is_active,
                created_at: now,
                updated_at: now,
            };
            table.insert(agent.agent_id.as_str(), record::encode(&agent)?.as_slice())?;
            agent
        };
        txn.commit()?;

        self.write_view().insert(agent.clone());
        tracing::debug!(agent.id = %agent.agent_id, "agent created");
        Ok(agent)
    }

    /// Returns the agent with this id, from memory.
    ///
    /// This is the request path's lookup: no I/O, one read lock, one reference count.
    pub fn get(&self, id: &str) -> Option<Arc<Agent>> {
        self.read_view().by_id.get(id).cloned()
    }

    /// Returns up to `limit` agents in ascending id order, starting after the id `after`.
    ///
    /// `after` need not be the id of an existing agent, so a page cursor stays valid when that
    /// agent is deleted. A page shorter than `limit` is the last one.
    pub fn list(&self, after: Option<&str>, limit: usize) -> Vec<Arc<Agent>> {
        let start = match after {
            Some(after) => Bound::Excluded(after),
            None => Bound::Unbounded,
        };
        self.read_view()
            .ordered
            .range::<str, _>((start, Bound::Unbounded))
            .take(limit)
            .map(|(_, agent)| Arc::clone(agent))
            .collect()
    }

    /// Changes the fields the patch names and returns the whole updated agent.
    ///
    /// A patch that names at least one field sets `updated_at` to `now` (UTC, whole seconds),
    /// even when the values it names are the current ones; an empty patch writes nothing and
    /// returns the agent unchanged.
    ///
    /// # Errors
    ///
    /// A validation error (see [`RegistryError::is_invalid_input`]) when a named field breaks
    /// the rules, [`RegistryError::NotFound`] when no agent has this id, and
    /// [`RegistryError::Storage`] when redb fails. Nothing changes then.
    pub fn update(&self, id: &str, patch: AgentPatch, now: OffsetDateTime) -> Result<Agent> {
        let empty = patch.is_empty();
        let label = patch.label.as_deref().map(validate::label).transpose()?;
        let daily_token_budget = patch.daily_token_budget.map(validate::budget).transpose()?;
        let allowed_tools = patch
            .allowed_tools
            .map(validate::allowed_tools)
            .transpose()?;
        let scopes = patch.scopes.map(validate::scopes).transpose()?;

        let _writer = self.lock_writer();
        let current = self
            .get(id)
            .ok_or_else(|| RegistryError::NotFound(id.to_owned()))?;
        if empty {
            return Ok(Agent::clone(&current));
        }

        let mut agent = Agent::clone(&current);
        if let Some(label) = label {
            agent.label = label;
        }
        if let Some(budget) = daily_token_budget {
            agent.daily_token_budget = budget;
        }
        if let Some(tools) = allowed_tools {
            agent.allowed_tools = tools;
        }
        if let Some(scopes) = scopes {
            agent.scopes = scopes;
        }
        if let Some(is_active) = patch.is_active {
            agent.is_active = is_active;
        }
        agent.updated_at = normalise(now);

        let txn = self.begin_write()?;
        txn.open_table(AGENTS)?
            .insert(id, record::encode(&agent)?.as_slice())?;
        txn.commit()?;

        self.write_view().insert(agent.clone());
        tracing::debug!(agent.id = %id, active = agent.is_active, "agent updated");
        Ok(agent)
    }

    /// Deletes the agent with this id.
    ///
    /// # Errors
    ///
    /// [`RegistryError::NotFound`] when no agent has this id, and [`RegistryError::Storage`]
    /// when redb fails (the agent then stays).
    pub fn delete(&self, id: &str) -> Result<()> {
        let _writer = self.lock_writer();
        if !self.read_view().by_id.contains_key(id) {
            return Err(RegistryError::NotFound(id.to_owned()));
        }

        let txn = self.begin_write()?;
        txn.open_table(AGENTS)?.remove(id)?;
        txn.commit()?;

        self.write_view().remove(id);
        tracing::debug!(agent.id = %id, "agent deleted");
        Ok(())
    }

    /// The number of agents.
    pub fn len(&self) -> usize {
        self.read_view().by_id.len()
    }

    /// Tells whether there are no agents.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn begin_write(&self) -> Result<redb::WriteTransaction> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        Ok(txn)
    }

    fn draw_id(&self) -> Result<String> {
        let mut bytes = [0u8; 4];
        self.random
            .fill(&mut bytes)
            .map_err(|_| RegistryError::Random)?;
        Ok(format!("{ID_PREFIX}{:08x}", u32::from_be_bytes(bytes)))
    }

    // The locks guard no invariant that a panicking holder could break halfway (the view is
    // changed by single map operations after the commit), so a poisoned lock is still usable.
    fn lock_writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read_view(&self) -> RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_view(&self) -> RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("agents", &self.len())
            .finish_non_exhaustive()
    }
}

/// Tells whether `id` has the form of an agent id: `agt_` and 8 lowercase hexadecimal digits.
pub fn is_agent_id(id: &str) -> bool {
    id.strip_prefix(ID_PREFIX).is_some_and(|hex| {
        hex.len() == 8
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The precision the registry keeps: UTC, whole seconds (what RFC 3339 output shows and the
/// record stores).
fn normalise(now: OffsetDateTime) -> OffsetDateTime {
    let utc = now.checked_to_offset(UtcOffset::UTC).unwrap_or(now);
    utc.replace_nanosecond(0).unwrap_or(utc)
}

#[cfg(test)]
mod tests;
