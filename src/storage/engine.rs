//! The engine handle underneath a [`Storage`]: what one is, when it is swapped for a fresh one
//! (missing, poisoned by an error it may have latched, read-only for a write, or open on a file
//! the path no longer names), how a fresh one is opened, and the checks it gets before use
//! (schema version, migration, the requested policy).

use std::cell::Cell;
use std::fs;
use std::io::ErrorKind;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError, RwLockReadGuard};
use std::time::Duration;

use redb::{
    Builder, ConcurrencyMode, Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase,
};

use crate::error::StoreError;
use crate::migrations::CURRENT_VERSION;

use super::backend::{DeadlineBackend, FileId, Opener, quietly};
use super::files::{self, MigrationLock, io_err};
use super::guard::{engine_err, guarded};
use super::migration::back_up_old_schema;
use super::opening::{
    Preflight, check_magic, check_version, discard_unfinished_creation, open_writable, preflight,
    prepare, repaired_view, validate_copy,
};
use super::{OpenConfig, Origin, Reader, Storage};

/// One engine handle and what is known of it.
pub(super) struct Engine {
    pub(super) db: Option<Handle>,
    /// The file it has open, for a handle opened from a path.
    file: Option<FileId>,
    /// Set when a call failed in a way that may have latched an error inside the engine.
    poisoned: AtomicBool,
    timeout: Duration,
    /// Held from the backup of an older schema until `finish_open` migrated it.
    pub(super) migrating: Mutex<Option<MigrationLock>>,
}

impl Engine {
    pub(super) fn empty(timeout: Duration) -> Self {
        Self {
            db: None,
            file: None,
            poisoned: AtomicBool::new(false),
            timeout,
            migrating: Mutex::default(),
        }
    }

    pub(super) fn new(db: Handle, file: Option<FileId>, timeout: Duration) -> Self {
        Self {
            db: Some(db),
            file,
            poisoned: AtomicBool::new(false),
            timeout,
            migrating: Mutex::default(),
        }
    }

    pub(super) fn poison(&self) {
        self.poisoned.store(true, Ordering::Release);
    }
}

impl Drop for Engine {
    // Closing commits redb's allocator state, which on a damaged file can trip an assertion
    // inside the engine; that must not escape as a panic either. Its lock waits are bounded.
    fn drop(&mut self) {
        let db = self.db.take();
        let _ = quietly(self.timeout, || {
            catch_unwind(AssertUnwindSafe(move || drop(db)))
        });
    }
}

pub(super) enum Handle {
    Writable(Database),
    ReadOnly(ReadOnlyDatabase),
}

impl Handle {
    pub(super) fn begin_read(&self) -> Result<ReadTransaction, redb::TransactionError> {
        match self {
            Self::Writable(db) => db.begin_read(),
            Self::ReadOnly(db) => db.begin_read(),
        }
    }
}

// A writable open checks the file's length against the layout its header records; the
// read-only handle a lazy open keeps does not. This does the same check from the header's
// fixed fields (redb's file format 3: page size, region header pages, region data pages, full
// regions, trailing region pages, little-endian u32s from byte 12), so a file cut short is still
// met by the writable open that reports it. Anything unexpected counts as "not sure": open
// writable.
fn length_matches_header(path: &Path) -> Result<bool, StoreError> {
    use std::io::Read;
    let mut head = [0u8; 32];
    let mut file = fs::File::open(path).map_err(|e| io_err("cannot open", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| io_err("cannot read", path, e))?
        .len();
    if file.read_exact(&mut head).is_err() {
        return Ok(false);
    }
    let field = |at: usize| {
        u64::from(u32::from_le_bytes([
            head[at],
            head[at + 1],
            head[at + 2],
            head[at + 3],
        ]))
    };
    let (page, region_header, region_data, full, trailing) =
        (field(12), field(16), field(20), field(24), field(28));
    let expected = page
        + full * (region_header + region_data) * page
        + if trailing > 0 {
            (region_header + trailing) * page
        } else {
            0
        };
    Ok(page > 0 && len >= expected)
}

impl Storage {
    // The engine handle for one call, reopened first when it is missing, poisoned, read-only
    // for a write, or open on a file the path no longer names.
    pub(super) fn engine_for(
        &self,
        write: bool,
    ) -> Result<RwLockReadGuard<'_, Engine>, StoreError> {
        for _ in 0..3 {
            {
                let engine = self.engine.read().unwrap_or_else(PoisonError::into_inner);
                if self.is_current(&engine, write) {
                    return Ok(engine);
                }
            }
            let mut engine = self.engine.write().unwrap_or_else(PoisonError::into_inner);
            if self.is_current(&engine, write) {
                continue;
            }
            if matches!(self.origin, Origin::Fixed) {
                return Err(self.gone());
            }
            // The old handle closes before the new one opens: a caller's backend must not see
            // the old handle release locks the new one holds.
            let writable = write || matches!(engine.db, Some(Handle::Writable(_)));
            *engine = Engine::empty(self.config.lock_timeout);
            *engine = self.open_engine(writable)?;
            drop(engine);
            // A file met for the first time is checked like any open; its policy is its own.
            self.finish_open(
                &OpenConfig {
                    policy: None,
                    ..self.config.clone()
                },
                !matches!(self.origin, Origin::Path),
            )?;
        }
        Ok(self.engine.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn is_current(&self, engine: &Engine, write: bool) -> bool {
        if engine.db.is_none() || engine.poisoned.load(Ordering::Acquire) {
            return false;
        }
        if write && !self.config.read_only && matches!(engine.db, Some(Handle::ReadOnly(_))) {
            return false;
        }
        match (&self.origin, engine.file) {
            // One stat per call: the path must still name the file open.
            (Origin::Path, Some(open)) => match FileId::of_path(&self.path) {
                Ok(now) => now == open,
                Err(e) => e.kind() != ErrorKind::NotFound,
            },
            _ => true,
        }
    }

    // Opens a fresh engine handle, writable when asked (or when the file needs a writer).
    pub(super) fn open_engine(&self, writable: bool) -> Result<Engine, StoreError> {
        let (path, config) = (&self.path, &self.config);
        let timeout = config.lock_timeout;
        if let Origin::Backend(backend) = &self.origin {
            let backend = DeadlineBackend::new(backend.clone(), timeout, self.syncs.clone());
            discard_unfinished_creation(&backend, path)?;
            let db = guarded(path, "opening", || {
                Builder::new()
                    .set_concurrency_mode(ConcurrencyMode::MultiWriter)
                    .set_cache_size(config.cache_size)
                    .create_with_backend(backend)
                    .map_err(|e| engine_err(path, e))
            })?;
            return Ok(Engine::new(Handle::Writable(db), None, timeout));
        }
        // Ownership, file type, creating a missing store, initializing an empty file.
        prepare(path, config)?;
        check_magic(path)?;
        let opener = Opener {
            timeout,
            syncs: self.syncs.clone(),
            opened: Cell::new(None),
        };
        let mut migrating = None;
        let read_only = |db, opener: &Opener| {
            Ok(Engine::new(
                Handle::ReadOnly(db),
                opener.opened.get(),
                timeout,
            ))
        };
        match preflight(path, config.cache_size, &opener)? {
            Preflight::Ready(db) if config.read_only => return read_only(db, &opener),
            // Nothing to write yet, unless a policy must be stored: the first write reopens.
            Preflight::Ready(db)
                if !writable
                    && length_matches_header(path)?
                    && self.policy_stored(&db, config)? =>
            {
                return read_only(db, &opener);
            }
            Preflight::Ready(_) => {}
            // The file's last writer died mid-write. A reader answers from a repaired view that
            // never writes the file; a writer first proves, on such a view, that it is one of
            // ours, of a schema we read, before redb's repair writes to the real file.
            Preflight::NeedsRepair if config.read_only => {
                let view = repaired_view(path, config.cache_size, &opener)?;
                return Ok(Engine::new(Handle::ReadOnly(view), None, timeout));
            }
            // Of an older schema, the file is backed up as the dead writer left it, before
            // redb's recovery writes to it.
            Preflight::NeedsRepair => {
                if validate_copy(path, &opener)? < CURRENT_VERSION {
                    migrating = Some(back_up_old_schema(path, config, &opener)?);
                }
            }
            // A reader reads an older schema as it is and leaves the file untouched.
            Preflight::NeedsMigration(db, _) if config.read_only => return read_only(db, &opener),
            // A writer backs the file up before redb first opens it writable (which writes to
            // it), under a lock that keeps other openers of this build from migrating too; the
            // lock is held until `finish_open` has committed the migration.
            Preflight::NeedsMigration(db, _) => {
                drop(db);
                migrating = Some(back_up_old_schema(path, config, &opener)?);
            }
        }
        let db = open_writable(path, config.cache_size, &opener)?;
        // A creator killed between linking the store into place and removing its temporary
        // file leaves that file behind; writable opens sweep it.
        files::remove_abandoned_creations(path);
        let engine = Engine::new(Handle::Writable(db), opener.opened.get(), timeout);
        *engine
            .migrating
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = migrating;
        Ok(engine)
    }

    // True when the open asks for no policy, or for the one the file holds.
    fn policy_stored(
        &self,
        db: &ReadOnlyDatabase,
        config: &OpenConfig,
    ) -> Result<bool, StoreError> {
        let Some(wanted) = config.policy else {
            return Ok(true);
        };
        let stored = guarded(&self.path, "reading", || {
            let txn = db.begin_read().map_err(|e| self.err(e))?;
            Reader::open(&txn, &self.path)?.policy()
        });
        Ok(stored.ok() == Some(wanted))
    }

    // Validates the meta table, migrating an older schema and persisting a requested policy.
    pub(super) fn finish_open(
        &self,
        config: &OpenConfig,
        may_initialize: bool,
    ) -> Result<(), StoreError> {
        let checked = self.check_and_migrate(config, may_initialize);
        // The migration lock goes once the migration committed, or failed.
        self.engine
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .migrating
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        checked?;
        // Most opens ask for the policy already stored: check before paying for a commit.
        if let Some(policy) = config
            .policy
            .filter(|p| self.read(|r| r.policy()).ok() != Some(*p))
        {
            self.write(|w| {
                if w.policy()? != policy {
                    w.set_policy(&policy)?;
                    w.append_audit(&crate::audit::Change::scope(
                        crate::audit::AuditAction::PolicySet,
                        "default".into(),
                        None,
                    ))?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    fn check_and_migrate(
        &self,
        config: &OpenConfig,
        may_initialize: bool,
    ) -> Result<(), StoreError> {
        let version = self.read(|r| r.schema_version()).or_else(|err| match err {
            StoreError::NotAStore { .. } if may_initialize && self.is_blank()? => {
                self.write(|w| w.initialize(config.policy.unwrap_or_default()))?;
                Ok(CURRENT_VERSION)
            }
            other => Err(other),
        })?;
        check_version(&self.path, version)?;
        if version < CURRENT_VERSION && !config.read_only {
            self.migrate()?;
        }
        Ok(())
    }

    // A database with no tables at all: a creation that was cut short before its first commit.
    fn is_blank(&self) -> Result<bool, StoreError> {
        let engine = self.engine.read().unwrap_or_else(PoisonError::into_inner);
        let Some(db) = &engine.db else {
            return Err(self.gone());
        };
        guarded(&self.path, "reading", || {
            let txn = db.begin_read().map_err(|e| self.err(e))?;
            let mut tables = txn.list_tables().map_err(|e| self.err(e))?;
            Ok(tables.next().is_none())
        })
    }
}
