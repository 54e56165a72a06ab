//! The one redb file of a gateway, and the server's own table in it.
//!
//! The libraries keep their own tables in the same database; the server keeps `ithil_meta`: a
//! schema version, the generated signing key (so tokens survive restarts) and the id of the
//! development agent.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};
use ring::digest;

/// The server's table: small values by name.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("ithil_meta");

const SCHEMA_KEY: &str = "schema_version";
const SCHEMA_VERSION: &[u8] = b"1";
const SIGNING_KEY: &str = "signing_key";
const DEV_AGENT_ID: &str = "dev_agent_id";

/// The name of the store file inside the data directory.
pub const FILE_NAME: &str = "ithil.redb";

/// The memory redb may use to cache the store's pages, in bytes: 16 MiB.
///
/// redb's default is 1 GiB, and its cache keeps the pages a gateway reads and writes until it
/// is full, so with the default the resident memory of a busy gateway grew with its store file
/// and stayed up after the load: from 77 MiB idle to 183 MiB after 60 s of load at 64 clients,
/// still rising. With 64 MiB it levelled off at 154 MiB, with 16 MiB at 103 MiB after a few
/// seconds, at the same CPU time per call (`docs/benchmarks.md`, "Per-call cost after tuning").
/// The pages a tool call touches (the right-hand edge of each audit index, the day's budget
/// rows, the registry) fit many times over; older audit pages come from the operating system's
/// page cache when a query reads them.
pub const CACHE_SIZE: usize = 16 * 1024 * 1024;

/// Why the store could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created.
    #[error("cannot create data directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// The database file could not be opened (another gateway may hold it).
    #[error("cannot open store {}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: redb::DatabaseError,
    },

    /// The store was written by a newer gateway.
    #[error("store schema version {found} is not supported (this build reads version 1)")]
    UnsupportedSchema {
        /// The version found.
        found: String,
    },

    /// A read or a write failed.
    #[error("store access failed")]
    Storage(#[source] redb::Error),
}

macro_rules! storage_from {
    ($($ty:ty),*) => {
        $(impl From<$ty> for StoreError {
            fn from(error: $ty) -> Self {
                StoreError::Storage(error.into())
            }
        })*
    };
}

storage_from!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The open database and the server's meta table in it.
pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) `<data_dir>/ithil.redb`, creating the directory when missing, with a
    /// page cache of [`CACHE_SIZE`].
    ///
    /// # Errors
    ///
    /// Fails when the directory cannot be created, the file cannot be opened, or it holds a
    /// schema this build does not read.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        create_private_dir(data_dir).map_err(|source| StoreError::CreateDir {
            path: data_dir.to_owned(),
            source,
        })?;

        let path = data_dir.join(FILE_NAME);
        let db = Database::builder()
            .set_cache_size(CACHE_SIZE)
            .create(&path)
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        let store = Store {
            db: Arc::new(db),
            path,
        };
        store.check_schema()?;
        Ok(store)
    }

    /// The shared database handle, for the libraries' own tables.
    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// The path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(META)?;
            let found = table.get(SCHEMA_KEY)?.map(|v| v.value().to_vec());
            match found {
                None => {
                    table.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
                }
                Some(version) if version == SCHEMA_VERSION => {}
                Some(version) => {
                    return Err(StoreError::UnsupportedSchema {
                        found: String::from_utf8_lossy(&version).into_owned(),
                    });
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// The stored signing key, or a new one from `generate`, stored before it is returned.
    ///
    /// The read and the insert run in one write transaction, so two starts racing on one file
    /// (which redb's lock prevents anyway) could not store two keys.
    ///
    /// # Errors
    ///
    /// Fails when the store cannot be read or written, or `generate` fails.
    pub fn signing_key<E>(
        &self,
        generate: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<Result<Vec<u8>, E>, StoreError> {
        let txn = self.db.begin_write()?;
        let key = {
            let mut table = txn.open_table(META)?;
            let stored = table.get(SIGNING_KEY)?.map(|v| v.value().to_vec());
            match stored {
                Some(key) => key,
                None => match generate() {
                    Ok(key) => {
                        table.insert(SIGNING_KEY, key.as_slice())?;
                        key
                    }
                    Err(error) => return Ok(Err(error)),
                },
            }
        };
        txn.commit()?;
        Ok(Ok(key))
    }

    /// The id of the development agent, once one was created.
    ///
    /// # Errors
    ///
    /// Fails when the store cannot be read.
    pub fn dev_agent_id(&self) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(META) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let id = table
            .get(DEV_AGENT_ID)?
            .map(|v| String::from_utf8_lossy(v.value()).into_owned());
        Ok(id)
    }

    /// Remembers the id of the development agent.
    ///
    /// # Errors
    ///
    /// Fails when the store cannot be written.
    pub fn set_dev_agent_id(&self, id: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.insert(DEV_AGENT_ID, id.as_bytes())?;
        txn.commit()?;
        Ok(())
    }
}

/// A stable key id: the first 8 hex digits of the SHA-256 of the key, so the same key always
/// has the same `kid` whether configured or generated.
pub fn key_id(key: &[u8]) -> String {
    let hash = digest::digest(&digest::SHA256, key);
    hash.as_ref()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Creates the directory (and its parents); a new directory is private to the owner, since the
/// store holds the signing key.
fn create_private_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_signing_key_is_kept_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("nested/data");

        let first = Store::open(&data)
            .unwrap()
            .signing_key(|| Ok::<_, ()>(vec![7; 32]))
            .unwrap()
            .unwrap();
        assert_eq!(first, vec![7; 32]);

        let store = Store::open(&data).unwrap();
        let second = store
            .signing_key(|| -> Result<Vec<u8>, ()> { panic!("must not generate again") })
            .unwrap()
            .unwrap();
        assert_eq!(second, first);
        assert_eq!(store.path(), data.join(FILE_NAME));
    }

    #[test]
    fn a_failed_generation_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();

        assert_eq!(
            store.signing_key(|| Err("no entropy")).unwrap(),
            Err("no entropy")
        );
        let key = store.signing_key(|| Ok::<_, ()>(vec![1; 32])).unwrap();
        assert_eq!(key, Ok(vec![1; 32]));
    }

    #[test]
    fn the_dev_agent_id_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.dev_agent_id().unwrap(), None);

        store.set_dev_agent_id("agt_0123abcd").unwrap();
        drop(store);

        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.dev_agent_id().unwrap().as_deref(),
            Some("agt_0123abcd")
        );
    }

    #[test]
    fn a_store_of_another_schema_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let txn = store.db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(SCHEMA_KEY, b"99".as_slice())
            .unwrap();
        txn.commit().unwrap();
        drop(store);

        let error = Store::open(dir.path()).err().unwrap();
        assert!(error.to_string().contains("99"), "{error}");
    }

    #[test]
    fn key_ids_are_stable_and_differ_between_keys() {
        assert_eq!(key_id(&[0; 32]), key_id(&[0; 32]));
        assert_ne!(key_id(&[0; 32]), key_id(&[1; 32]));
        assert_eq!(key_id(&[0; 32]).len(), 8);
        // SHA-256 of 32 zero bytes starts with 66687aad.
        assert_eq!(key_id(&[0; 32]), "66687aad");
    }

    #[cfg(unix)]
    #[test]
    fn a_new_data_directory_is_private() {
        use std::os::unix::fs::PermissionsExt as _;

        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Store::open(&data).unwrap();
        let mode = std::fs::metadata(&data).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
