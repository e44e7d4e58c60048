//! The storage boundary: the only module that speaks redb.
//!
//! Everything above it deals in [`RecoveryEntry`], [`BackendKey`] and
//! [`BackendRecoveryPolicy`]. Every redb call runs under [`guarded`], so a damaged file that
//! trips an assertion inside the engine becomes [`StoreError::Corrupt`] instead of a panic.

mod backend;
mod creation;
mod files;
#[cfg(test)]
mod fixture;
mod guard;
mod imports;
mod migration;
mod opening;
mod overlay;
mod tables;
mod trust;

use std::cell::Cell;
use std::fs;
use std::io::ErrorKind;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use redb::{
    Builder, ConcurrencyMode, Database, Durability, ReadOnlyDatabase, ReadTransaction,
    ReadableDatabase, TableDefinition,
};

use crate::error::StoreError;
use crate::migrations::{CURRENT_VERSION, current as schema};
use crate::policy::BackendRecoveryPolicy;

use backend::{
    DeadlineBackend, FileId, Opener, expired, quietly, with_deadline, with_fresh_deadline,
};
use files::{MigrationLock, io_err};
use guard::{engine_err, guarded};
use migration::back_up_old_schema;
use opening::{
    Preflight, check_magic, check_version, discard_unfinished_creation, open_writable, preflight,
    prepare, repaired_view, validate_copy,
};
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

/// One engine handle and what is known of it.
struct Engine {
    db: Option<Handle>,
    /// The file it has open, for a handle opened from a path.
    file: Option<FileId>,
    /// Set when a call failed in a way that may have latched an error inside the engine.
    poisoned: AtomicBool,
    timeout: Duration,
    /// Held from the backup of an older schema until `finish_open` migrated it.
    migrating: Mutex<Option<MigrationLock>>,
}

impl Engine {
    fn empty(timeout: Duration) -> Self {
        Self {
            db: None,
            file: None,
            poisoned: AtomicBool::new(false),
            timeout,
            migrating: Mutex::default(),
        }
    }

    fn new(db: Handle, file: Option<FileId>, timeout: Duration) -> Self {
        Self {
            db: Some(db),
            file,
            poisoned: AtomicBool::new(false),
            timeout,
            migrating: Mutex::default(),
        }
    }

    fn poison(&self) {
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

    // The engine handle for one call, reopened first when it is missing, poisoned, read-only
    // for a write, or open on a file the path no longer names.
    fn engine_for(&self, write: bool) -> Result<RwLockReadGuard<'_, Engine>, StoreError> {
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
    fn open_engine(&self, writable: bool) -> Result<Engine, StoreError> {
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

    // Validates the meta table, migrating an older schema and persisting a requested policy.
    fn finish_open(&self, config: &OpenConfig, may_initialize: bool) -> Result<(), StoreError> {
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
