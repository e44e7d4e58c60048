//! The storage boundary: the only module that speaks redb.
//!
//! Everything above it deals in [`RecoveryEntry`], [`BackendKey`] and
//! [`BackendRecoveryPolicy`]. Every redb call runs under [`guarded`], so a damaged file that
//! trips an assertion inside the engine becomes [`StoreError::Corrupt`] instead of a panic.

mod creation;
mod files;
mod guard;
mod opening;
mod overlay;
mod tables;
mod trust;

use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use redb::{
    Builder, ConcurrencyMode, Database, Durability, ReadOnlyDatabase, ReadTransaction,
    ReadableDatabase, TableDefinition,
};

use crate::error::StoreError;
use crate::migrations::{self, CURRENT_VERSION, current as schema};
use crate::policy::BackendRecoveryPolicy;

use files::{backup_path, copy_durably};
use guard::{engine_err, guarded};
use opening::{
    Preflight, check_magic, check_version, discard_unfinished_creation, open_writable, preflight,
    prepare, repaired_view, validate_copy,
};
pub(crate) use tables::{Reader, Writer};

pub use redb::StorageBackend;

const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new(schema::ENTRIES_TABLE);
const META: TableDefinition<&[u8], &[u8]> = TableDefinition::new(schema::META_TABLE);

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
    /// Open without ever writing to the file (a store that needs crash recovery is read
    /// through a repaired in-memory view).
    pub read_only: bool,
    /// Permission bits of a new store (0600 by default, 0660 for a group).
    pub mode: u32,
    /// Skip the ownership checks, and follow a symlink at the store path.
    pub trust_any_owner: bool,
}

/// An open store file.
pub(crate) struct Storage {
    db: ManuallyDrop<Handle>,
    path: PathBuf,
}

impl Drop for Storage {
    // Closing commits redb's allocator state, which on a damaged file can trip an assertion
    // inside the engine; that must not escape as a panic either.
    fn drop(&mut self) {
        let db = &mut self.db;
        // SAFETY: `db` is dropped exactly once, here, and `self` is never used again.
        let _ = catch_unwind(AssertUnwindSafe(|| unsafe { ManuallyDrop::drop(db) }));
    }
}

enum Handle {
    Writable(Database),
    ReadOnly(ReadOnlyDatabase),
}

impl Handle {
    fn begin_read(&self) -> Result<ReadTransaction, redb::TransactionError> {
        match self {
            Self::Writable(db) => db.begin_read(),
            Self::ReadOnly(db) => db.begin_read(),
        }
    }
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("path", &self.path).finish()
    }
}

impl Storage {
    /// Opens the store at `path`, creating it (atomically) when allowed and missing.
    pub fn open_path(path: &Path, config: &OpenConfig) -> Result<Self, StoreError> {
        prepare(path, config)?;
        check_magic(path)?;
        match preflight(path, config.cache_size)? {
            Preflight::Ready(db) if config.read_only => return Ok(Self::read_only(db, path)),
            Preflight::Ready(_) => {}
            // The file's last writer died mid-write. A reader answers from a repaired view that
            // never writes the file; a writer first proves, on such a view, that it is one of
            // ours, of a schema we read, before redb's repair writes to the real file.
            Preflight::NeedsRepair if config.read_only => {
                return Ok(Self::read_only(
                    repaired_view(path, config.cache_size)?,
                    path,
                ));
            }
            Preflight::NeedsRepair => validate_copy(path)?,
            Preflight::NeedsMigration(found) if config.read_only => {
                return Err(StoreError::NeedsMigration {
                    path: path.to_owned(),
                    found,
                    current: CURRENT_VERSION,
                });
            }
            Preflight::NeedsMigration(_) => {}
        }
        let db = open_writable(path, config.cache_size)?;
        // A creator killed between linking the store into place and removing its temporary
        // file leaves that file behind; writable opens sweep it.
        files::remove_abandoned_creations(path);
        let storage = Self {
            db: ManuallyDrop::new(Handle::Writable(db)),
            path: path.to_owned(),
        };
        storage.finish_open(config, false)?;
        Ok(storage)
    }

    /// Opens a store kept by `backend`, initializing it when the backend is empty or holds a
    /// database whose creation never committed.
    pub fn open_backend(
        backend: impl StorageBackend,
        label: PathBuf,
        config: &OpenConfig,
    ) -> Result<Self, StoreError> {
        discard_unfinished_creation(&backend, &label)?;
        let db = guarded(&label, "opening", || {
            Builder::new()
                .set_concurrency_mode(ConcurrencyMode::MultiWriter)
                .set_cache_size(config.cache_size)
                .create_with_backend(backend)
                .map_err(|e| engine_err(&label, e))
        })?;
        let storage = Self {
            db: ManuallyDrop::new(Handle::Writable(db)),
            path: label,
        };
        storage.finish_open(config, true)?;
        Ok(storage)
    }

    fn read_only(db: ReadOnlyDatabase, path: &Path) -> Self {
        Self {
            db: ManuallyDrop::new(Handle::ReadOnly(db)),
            path: path.to_owned(),
        }
    }

    /// The file (or backend label) this store was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` over a consistent snapshot of the latest commit.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Reader<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        guarded(&self.path, "reading", || {
            let txn = self.db.begin_read().map_err(|e| self.err(e))?;
            let reader = Reader::open(&txn, &self.path)?;
            f(&reader)
        })
    }

    /// Runs `f` in one write transaction and commits it durably before returning.
    ///
    /// When `f` fails, nothing it wrote is committed.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&mut Writer<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        guarded(&self.path, "writing", || {
            let mut txn = self.writable()?.begin_write().map_err(|e| self.err(e))?;
            txn.set_durability(Durability::Immediate)
                .map_err(|e| self.err(e))?;
            let value = {
                let mut writer = Writer::open(&txn, &self.path)?;
                f(&mut writer)?
            };
            txn.commit().map_err(|e| self.err(e))?;
            Ok(value)
        })
    }

    /// Runs redb's integrity check; true when the file needed no repair.
    pub fn check_integrity(&mut self) -> Result<bool, StoreError> {
        let path = self.path.clone();
        let Handle::Writable(db) = &mut *self.db else {
            return Err(StoreError::ReadOnly { path });
        };
        guarded(&path, "checking", || {
            db.check_integrity().map_err(|e| engine_err(&path, e))
        })
    }

    fn writable(&self) -> Result<&Database, StoreError> {
        match &*self.db {
            Handle::Writable(db) => Ok(db),
            Handle::ReadOnly(_) => Err(StoreError::ReadOnly {
                path: self.path.clone(),
            }),
        }
    }

    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        engine_err(&self.path, e)
    }

    // Validates the meta table, migrating an older schema and persisting a requested policy.
    fn finish_open(&self, config: &OpenConfig, may_initialize: bool) -> Result<(), StoreError> {
        let version = self.read(|r| r.schema_version()).or_else(|err| match err {
            StoreError::NotAStore { .. } if may_initialize && self.is_blank()? => {
                self.write(|w| w.initialize(config.policy.unwrap_or_default()))?;
                Ok(CURRENT_VERSION)
            }
            other => Err(other),
        })?;
        check_version(&self.path, version)?;
        if version < CURRENT_VERSION {
            self.migrate(version)?;
        }
        // Most opens ask for the policy already stored: check before paying for a commit.
        if let Some(policy) = config
            .policy
            .filter(|p| self.read(|r| r.policy()).ok() != Some(*p))
        {
            self.write(|w| {
                if w.policy()? != policy {
                    w.set_policy(&policy)?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    // A database with no tables at all: a creation that was cut short before its first commit.
    fn is_blank(&self) -> Result<bool, StoreError> {
        guarded(&self.path, "reading", || {
            let txn = self.db.begin_read().map_err(|e| self.err(e))?;
            let mut tables = txn.list_tables().map_err(|e| self.err(e))?;
            Ok(tables.next().is_none())
        })
    }

    fn migrate(&self, from: u32) -> Result<(), StoreError> {
        let backup = backup_path(&self.path, from);
        copy_durably(&self.path, &backup)?;
        for step in migrations::steps_from(from) {
            self.write(|w| w.apply_step(step))?;
        }
        Ok(())
    }
}
