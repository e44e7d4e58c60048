//! The storage boundary: the only module that speaks redb.
//!
//! Everything above it deals in [`RecoveryEntry`], [`BackendKey`] and
//! [`BackendRecoveryPolicy`]. Every redb call runs under [`guarded`], so a damaged file that
//! trips an assertion inside the engine becomes [`StoreError::Corrupt`] instead of a panic.

mod audit_rows;
mod backend;
mod creation;
mod engine;
mod files;
#[cfg(test)]
mod fixture;
mod guard;
mod imports;
mod migration;
mod opening;
mod overlay;
mod policy_rows;
mod repair;
mod tables;
mod trust;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use redb::{Database, Durability, TableDefinition};

use crate::error::StoreError;
use crate::migrations::current as schema;
use crate::policy::BackendRecoveryPolicy;

use backend::{expired, with_deadline, with_fresh_deadline};
use engine::{Engine, Handle};
use guard::{engine_err, guarded};
pub(crate) use tables::{Reader, Writer};

pub use redb::StorageBackend;

const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new(schema::ENTRIES_TABLE);
const META: TableDefinition<&[u8], &[u8]> = TableDefinition::new(schema::META_TABLE);
const OVERRIDES: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new(schema::POLICY_OVERRIDES_TABLE);
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new(schema::AUDIT_TABLE);

/// The first bytes of every redb file.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// How to open a store file.
#[derive(Clone, Debug)]
pub(crate) struct OpenConfig {
    /// redb page cache, in bytes.
    pub cache_size: usize,
    /// Create the file when it is missing; otherwise a missing file is [`StoreError::NotFound`].
    pub create: bool,
    /// Policy to persist, if the caller asked for one.
    pub policy: Option<BackendRecoveryPolicy>,
    /// Longest any call waits for another process's lock.
    pub lock_timeout: Duration,
    /// Open without ever writing to the file (a store that needs crash recovery is read
    /// through a repaired in-memory view).
    pub read_only: bool,
    /// Permission bits of a new store (0600 by default, 0660 for a group).
    pub mode: u32,
    /// Skip the ownership checks, and follow a symlink at the store path.
    pub trust_any_owner: bool,
}

/// An open store: the path (or backend) it stands for, and the engine handle underneath, which
/// it swaps for a fresh one when that handle has latched an I/O error, when the path names
/// another file than the one open, or when a write needs a writable handle.
pub(crate) struct Storage {
    path: PathBuf,
    config: OpenConfig,
    origin: Origin,
    syncs: Arc<AtomicU64>,
    engine: RwLock<Engine>,
}

/// What a fresh engine handle is opened from.
enum Origin {
    /// The file at the store's path, whatever file that is now.
    Path,
    /// A caller's backend; reopening reuses it.
    Backend(Arc<dyn StorageBackend>),
    /// A handle that is never reopened (a store under creation).
    Fixed,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("path", &self.path).finish()
    }
}

/// Errors after which the engine handle may have latched a failure: it is reopened before the
/// next call.
fn may_latch(err: &StoreError) -> bool {
    matches!(err, StoreError::Io { .. } | StoreError::Storage { .. })
}

impl Storage {
    fn new(path: &Path, config: &OpenConfig, origin: Origin) -> Self {
        Self {
            path: path.to_owned(),
            config: config.clone(),
            origin,
            syncs: Arc::default(),
            engine: RwLock::new(Engine::empty(config.lock_timeout)),
        }
    }

    /// Opens the store at `path`, creating it (atomically) when allowed and missing.
    ///
    /// A handle that may write still opens the file read-only when nothing needs writing; its
    /// first write opens it writable. So an open, and calls that find nothing to change, cost
    /// no sync.
    pub fn open_path(path: &Path, config: &OpenConfig) -> Result<Self, StoreError> {
        let storage = Self::new(path, config, Origin::Path);
        storage.open_first(false)?;
        Ok(storage)
    }

    /// Opens a store kept by `backend`, initializing it when the backend is empty or holds a
    /// database whose creation never committed.
    pub fn open_backend(
        backend: impl StorageBackend,
        label: PathBuf,
        config: &OpenConfig,
    ) -> Result<Self, StoreError> {
        let storage = Self::new(&label, config, Origin::Backend(Arc::new(backend)));
        storage.open_first(true)?;
        Ok(storage)
    }

    /// A store on a database that is never reopened: one being created under a temporary name.
    pub(super) fn fixed(db: Database, path: &Path, config: &OpenConfig) -> Self {
        let storage = Self::new(path, config, Origin::Fixed);
        *storage
            .engine
            .write()
            .unwrap_or_else(PoisonError::into_inner) =
            Engine::new(Handle::Writable(db), None, config.lock_timeout);
        storage
    }

    fn open_first(&self, may_initialize: bool) -> Result<(), StoreError> {
        self.op(|| {
            let engine = self.open_engine(false)?;
            *self.engine.write().unwrap_or_else(PoisonError::into_inner) = engine;
            self.finish_open(&self.config, may_initialize)
        })
    }

    /// The file (or backend label) this store was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Syncs this handle has asked of its files so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Runs `f` over a consistent snapshot of the latest commit.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Reader<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.op(|| {
            let engine = self.engine_for(false)?;
            let Some(db) = &engine.db else {
                return Err(self.gone());
            };
            let result = guarded(&self.path, "reading", || {
                let txn = db.begin_read().map_err(|e| self.err(e))?;
                let reader = Reader::open(&txn, &self.path)?;
                f(&reader)
            });
            if result.as_ref().is_err_and(may_latch) {
                engine.poison();
            }
            result
        })
    }

    /// Runs `f` in one write transaction and commits it durably before returning.
    ///
    /// When `f` fails, nothing it wrote is committed.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&mut Writer<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.op(|| {
            let engine = self.engine_for(true)?;
            let db = match &engine.db {
                Some(Handle::Writable(db)) => db,
                Some(Handle::ReadOnly(_)) => {
                    return Err(StoreError::ReadOnly {
                        path: self.path.clone(),
                    });
                }
                None => return Err(self.gone()),
            };
            let result = guarded(&self.path, "writing", || {
                let mut txn = db.begin_write().map_err(|e| match self.err(e) {
                    // The engine refuses new transactions after a failed commit elsewhere.
                    e @ StoreError::Corrupt { .. } => {
                        engine.poison();
                        e
                    }
                    e => e,
                })?;
                txn.set_durability(Durability::Immediate)
                    .map_err(|e| self.err(e))?;
                let value = {
                    let mut writer = Writer::open(&txn, &self.path)?;
                    f(&mut writer)?
                };
                // Holding the write lock, the commit gets a bound of its own: a decision is not
                // abandoned half-way for the time spent waiting for the lock.
                with_fresh_deadline(self.config.lock_timeout, || txn.commit()).map_err(|e| {
                    engine.poison();
                    match expired() {
                        Some(wait) => StoreError::Storage {
                            path: self.path.clone(),
                            source: format!(
                                "gave up after {} waiting for {} while committing; the change \
                                 may or may not have been recorded: check the state, then retry",
                                humantime::format_duration(Duration::from_millis(
                                    wait.waited.as_millis() as u64
                                )),
                                wait.what
                            )
                            .into(),
                        },
                        None => self.err(e),
                    }
                })?;
                Ok(value)
            });
            if result.as_ref().is_err_and(may_latch) {
                engine.poison();
            }
            result
        })
    }

    // Every call: lock waits bounded by the lock timeout, and a wait that ran out is `Busy`.
    fn op<T>(&self, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        with_deadline(self.config.lock_timeout, f).map_err(|err| match expired() {
            Some(wait) if !matches!(err, StoreError::Storage { .. }) => StoreError::Busy {
                path: self.path.clone(),
                waited_for: wait.what,
                waited: wait.waited,
            },
            _ => err,
        })
    }

    fn gone(&self) -> StoreError {
        StoreError::Storage {
            path: self.path.clone(),
            source: "the store could not be reopened".into(),
        }
    }

    /// Runs redb's integrity check; true when the file needed no repair.
    pub fn check_integrity(&mut self) -> Result<bool, StoreError> {
        let path = self.path.clone();
        self.op(|| self.engine_for(true).map(drop))?;
        let engine = self
            .engine
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(Handle::Writable(db)) = &mut engine.db else {
            return Err(StoreError::ReadOnly { path });
        };
        let timeout = self.config.lock_timeout;
        let result = with_deadline(timeout, || {
            guarded(&path, "checking", || {
                db.check_integrity().map_err(|e| engine_err(&path, e))
            })
        });
        match (result, expired()) {
            (Err(_), Some(wait)) => Err(StoreError::Busy {
                path,
                waited_for: wait.what,
                waited: wait.waited,
            }),
            (result, _) => result,
        }
    }

    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        engine_err(&self.path, e)
    }
}
