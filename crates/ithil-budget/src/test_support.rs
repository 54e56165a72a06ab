//! Helpers shared by the unit tests: a store in a temp dir, a running writer, a storage backend
//! whose fsync can be made to fail.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::backends::InMemoryBackend;
use redb::{BackendError, Database, StorageBackend, TableDefinition};
use time::Date;
use time::macros::date;

use crate::{Budget, BudgetConfig, Charge, ChargeHandle, ExtraWork};

/// A table the tests' extra work writes into, standing in for the audit log.
pub(crate) const AUDIT: TableDefinition<u64, &str> = TableDefinition::new("test_audit");

pub(crate) const DAY: Date = date!(2026 - 05 - 06);

/// A budget on a redb file in a fresh temp dir.
pub(crate) struct Store {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) budget: Budget,
}

impl Store {
    pub(crate) fn new() -> Store {
        Store::with_config(BudgetConfig::default())
    }

    pub(crate) fn with_config(config: BudgetConfig) -> Store {
        let dir = tempfile::tempdir().expect("temp dir");
        let budget = open_at(&db_path(dir.path()), config);
        Store { dir, budget }
    }

    pub(crate) fn path(&self) -> PathBuf {
        db_path(self.dir.path())
    }

    /// Drops this budget and its database and opens the file again.
    pub(crate) fn reopen(self) -> Store {
        let Store { dir, budget } = self;
        let config = budget.config().clone();
        drop(budget);
        let budget = open_at(&db_path(dir.path()), config);
        Store { dir, budget }
    }
}

fn db_path(dir: &Path) -> PathBuf {
    dir.join("ithil.redb")
}

pub(crate) fn open_at(path: &Path, config: BudgetConfig) -> Budget {
    let db = Database::create(path).expect("create database");
    Budget::open_with(Arc::new(db), config).expect("open budget")
}

/// A writer running on its own thread.
pub(crate) struct Running {
    pub(crate) handle: ChargeHandle,
    thread: JoinHandle<()>,
}

impl Running {
    pub(crate) fn start(budget: &Budget) -> Running {
        let (handle, writer) = budget.writer();
        let thread = std::thread::spawn(move || writer.run());
        Running { handle, thread }
    }

    /// Drops the handle and waits for the writer to end.
    pub(crate) fn stop(self) {
        drop(self.handle);
        self.thread.join().expect("writer thread");
    }
}

pub(crate) fn charge(agent_id: &str, day: Date, tokens: u64, limit: u64) -> Charge {
    Charge {
        agent_id: agent_id.to_owned(),
        day,
        tokens,
        limit,
        extra: None,
    }
}

/// Extra work that records `text` under `key` in [`AUDIT`], with the outcome it was given.
pub(crate) fn audit(key: u64, text: &'static str) -> ExtraWork {
    Box::new(move |txn, outcome| {
        let mut table = txn.open_table(AUDIT)?;
        let row = format!("{text} {outcome:?}");
        table.insert(key, row.as_str())?;
        Ok(())
    })
}

/// Extra work that writes a row and then fails, as a half-done audit append would.
pub(crate) fn failing_audit(key: u64) -> ExtraWork {
    Box::new(move |txn, _| {
        let mut table = txn.open_table(AUDIT)?;
        table.insert(key, "half written")?;
        Err(redb::Error::Corrupted(
            "injected extra-work failure".to_owned(),
        ))
    })
}

/// Every row of [`AUDIT`].
pub(crate) fn audit_rows(budget: &Budget) -> Vec<(u64, String)> {
    use redb::{ReadableDatabase, ReadableTable};
    let read = budget.shared.db.begin_read().expect("read");
    let Ok(table) = read.open_table(AUDIT) else {
        return Vec::new();
    };
    table
        .iter()
        .expect("iter")
        .map(|row| {
            let (k, v) = row.expect("row");
            (k.value(), v.value().to_owned())
        })
        .collect()
}

/// Waits until `n` requests wait in the writer's queue, so a writer started now takes them all
/// as one group.
pub(crate) async fn queued(handle: &ChargeHandle, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while handle.queued() < n {
        assert!(
            Instant::now() < deadline,
            "requests never reached the queue"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// An in-memory redb backend whose fsync fails while `fail_sync` is set.
#[derive(Debug, Default)]
pub(crate) struct FlakyBackend {
    inner: InMemoryBackend,
    pub(crate) fail_sync: Arc<AtomicBool>,
}

impl StorageBackend for FlakyBackend {
    fn len(&self) -> Result<u64, BackendError> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendError> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), BackendError> {
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), BackendError> {
        if self.fail_sync.load(Ordering::SeqCst) {
            return Err(BackendError::Io(std::io::Error::other(
                "injected fsync failure",
            )));
        }
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendError> {
        self.inner.write(offset, data)
    }
}
