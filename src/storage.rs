//! The storage boundary: the only module that speaks redb.
//!
//! Everything above it deals in [`RecoveryEntry`], [`BackendKey`] and
//! [`BackendRecoveryPolicy`]. Every redb call runs under [`guarded`], so a damaged file that
//! trips an assertion inside the engine becomes [`StoreError::Corrupt`] instead of a panic.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::mem::ManuallyDrop;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use redb::{
    Builder, ConcurrencyMode, Database, Durability, ReadOnlyDatabase, ReadOnlyTable,
    ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table,
    TableDefinition, TableError, WriteTransaction,
};

use crate::error::StoreError;
use crate::key::BackendKey;
use crate::migrations::{self, CURRENT_VERSION, FORMAT_NAME, OLDEST_VERSION, current as schema};
use crate::policy::BackendRecoveryPolicy;
use crate::record::{self, RecoveryEntry};

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
    /// Open without ever writing to the file (a store that needs crash recovery is still
    /// repaired, which takes a writable handle).
    pub read_only: bool,
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
        match fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                return Err(StoreError::NotAStore {
                    path: path.to_owned(),
                    detail: "it is a directory".into(),
                });
            }
            // A FIFO or device would block or misbehave on open; only plain files are stores.
            Ok(meta) if !meta.is_file() => {
                return Err(StoreError::NotAStore {
                    path: path.to_owned(),
                    detail: "it is not a regular file".into(),
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if !config.create {
                    return Err(StoreError::NotFound {
                        path: path.to_owned(),
                    });
                }
                create_atomically(path, config)?;
            }
            Err(source) => return Err(io_err("cannot read", path, source)),
        }
        check_magic(path)?;
        match preflight(path, config.cache_size)? {
            Preflight::Ready(db) if config.read_only => return Ok(Self::read_only(db, path)),
            Preflight::Ready(_) => {}
            Preflight::NeedsRepair => {
                // The file's last writer died mid-write. Prove it is one of ours, of a schema we
                // read, on a private copy before redb's repair writes to the real file.
                validate_copy(path)?;
                if config.read_only {
                    drop(open_writable(path, config.cache_size)?);
                    return match preflight(path, config.cache_size)? {
                        Preflight::Ready(db) => Ok(Self::read_only(db, path)),
                        _ => Err(StoreError::Corrupt {
                            path: path.to_owned(),
                            detail: "still needs recovery after redb's repair".into(),
                        }),
                    };
                }
            }
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

/// Reads from one snapshot.
pub(crate) struct Reader<'a> {
    meta: ReadOnlyTable<&'static [u8], &'static [u8]>,
    entries: Option<ReadOnlyTable<&'static [u8], &'static [u8]>>,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn open(txn: &ReadTransaction, path: &'a Path) -> Result<Self, StoreError> {
        let meta = match txn.open_table(META) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Err(not_a_store(path)),
            Err(e) => return Err(engine_err(path, e)),
        };
        let entries = match txn.open_table(ENTRIES) {
            Ok(table) => Some(table),
            Err(TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(engine_err(path, e)),
        };
        Ok(Self {
            meta,
            entries,
            path,
        })
    }

    /// The schema version recorded in the file, after checking the format name.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        read_schema_version(&self.meta, self.path)
    }

    /// The store's policy.
    pub fn policy(&self) -> Result<BackendRecoveryPolicy, StoreError> {
        read_policy(&self.meta, self.path)
    }

    /// One backend's entry.
    pub fn get(&self, key: &BackendKey) -> Result<Option<RecoveryEntry>, StoreError> {
        match &self.entries {
            Some(table) => get_entry(table, key, self.path),
            None => Ok(None),
        }
    }

    /// Visits every entry whose key text starts with `prefix`, in key order. Each entry is
    /// decoded separately, so one damaged entry does not hide the others.
    pub fn scan(
        &self,
        prefix: &str,
        visit: impl FnMut(&[u8], Result<RecoveryEntry, StoreError>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        match &self.entries {
            Some(table) => scan_entries(table, prefix, self.path, visit),
            None => Ok(()),
        }
    }

    /// The number of entries.
    pub fn len(&self) -> Result<u64, StoreError> {
        match &self.entries {
            Some(table) => table.len().map_err(|e| engine_err(self.path, e)),
            None => Ok(0),
        }
    }
}

/// Reads and writes inside one write transaction.
pub(crate) struct Writer<'a> {
    meta: Table<'a, &'static [u8], &'static [u8]>,
    entries: Table<'a, &'static [u8], &'static [u8]>,
    path: &'a Path,
}

impl<'a> Writer<'a> {
    fn open(txn: &'a WriteTransaction, path: &'a Path) -> Result<Self, StoreError> {
        Ok(Self {
            meta: txn.open_table(META).map_err(|e| engine_err(path, e))?,
            entries: txn.open_table(ENTRIES).map_err(|e| engine_err(path, e))?,
            path,
        })
    }

    /// The store's policy as of this transaction.
    pub fn policy(&self) -> Result<BackendRecoveryPolicy, StoreError> {
        read_policy(&self.meta, self.path)
    }

    /// Persists a new policy.
    pub fn set_policy(&mut self, policy: &BackendRecoveryPolicy) -> Result<(), StoreError> {
        let bytes = record::encode_policy(policy, self.path)?;
        self.meta
            .insert(schema::META_POLICY, bytes.as_slice())
            .map_err(|e| engine_err(self.path, e))?;
        Ok(())
    }

    /// One backend's entry.
    pub fn get(&self, key: &BackendKey) -> Result<Option<RecoveryEntry>, StoreError> {
        get_entry(&self.entries, key, self.path)
    }

    /// Stores an entry, replacing any earlier one for its key.
    pub fn put(&mut self, entry: &RecoveryEntry) -> Result<(), StoreError> {
        let key = entry.key.to_string();
        let value = record::encode_entry(entry).map_err(|e| encode_err(self.path, e))?;
        self.entries
            .insert(key.as_bytes(), value.as_slice())
            .map_err(|e| engine_err(self.path, e))?;
        Ok(())
    }

    /// Removes a backend's entry; true if there was one.
    pub fn remove(&mut self, key: &BackendKey) -> Result<bool, StoreError> {
        self.remove_raw(key.to_string().as_bytes())
    }

    /// Removes an entry by its stored key bytes, decodable or not; true if there was one.
    pub fn remove_raw(&mut self, raw_key: &[u8]) -> Result<bool, StoreError> {
        let removed = self
            .entries
            .remove(raw_key)
            .map_err(|e| engine_err(self.path, e))?;
        Ok(removed.is_some())
    }

    /// The stored key bytes under `prefix`, in order, without decoding any value.
    pub fn keys(&self, prefix: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        let range = self
            .entries
            .range::<&[u8]>(prefix.as_bytes()..)
            .map_err(|e| engine_err(self.path, e))?;
        let mut keys = Vec::new();
        for item in range {
            let (key, _) = item.map_err(|e| engine_err(self.path, e))?;
            if !key.value().starts_with(prefix.as_bytes()) {
                break;
            }
            keys.push(key.value().to_vec());
        }
        Ok(keys)
    }

    /// See [`Reader::scan`].
    pub fn scan(
        &self,
        prefix: &str,
        visit: impl FnMut(&[u8], Result<RecoveryEntry, StoreError>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        scan_entries(&self.entries, prefix, self.path, visit)
    }

    fn initialize(&mut self, policy: BackendRecoveryPolicy) -> Result<(), StoreError> {
        let version =
            record::encode_version(CURRENT_VERSION).map_err(|e| encode_err(self.path, e))?;
        for (key, value) in [
            (schema::META_FORMAT, FORMAT_NAME),
            (schema::META_SCHEMA_VERSION, version.as_slice()),
        ] {
            self.meta
                .insert(key, value)
                .map_err(|e| engine_err(self.path, e))?;
        }
        self.set_policy(&policy)
    }

    fn apply_step(&mut self, step: &migrations::Step) -> Result<(), StoreError> {
        let path = self.path;
        // Another process may have run this step since we looked: then there is nothing to do.
        if read_schema_version(&self.meta, path)? != step.from {
            return Ok(());
        }
        let corrupt = |what: &str, e: postcard::Error| StoreError::Corrupt {
            path: path.to_owned(),
            detail: format!("migrating {what} from schema {}: {e}", step.from),
        };
        let mut converted = Vec::new();
        for item in self.entries.iter().map_err(|e| engine_err(path, e))? {
            let (key, value) = item.map_err(|e| engine_err(path, e))?;
            let new = (step.entry)(value.value()).map_err(|e| corrupt("an entry", e))?;
            converted.push((key.value().to_vec(), new));
        }
        for (key, value) in converted {
            self.entries
                .insert(key.as_slice(), value.as_slice())
                .map_err(|e| engine_err(path, e))?;
        }
        let policy = self
            .meta
            .get(schema::META_POLICY)
            .map_err(|e| engine_err(path, e))?
            .map(|v| v.value().to_vec())
            .ok_or_else(|| missing_meta(path, "policy"))?;
        let policy = (step.policy)(&policy).map_err(|e| corrupt("the policy", e))?;
        let version = record::encode_version(step.from + 1).map_err(|e| encode_err(path, e))?;
        for (key, value) in [
            (schema::META_POLICY, policy.as_slice()),
            (schema::META_SCHEMA_VERSION, version.as_slice()),
        ] {
            self.meta
                .insert(key, value)
                .map_err(|e| engine_err(path, e))?;
        }
        Ok(())
    }
}

fn read_schema_version(
    meta: &impl ReadableTable<&'static [u8], &'static [u8]>,
    path: &Path,
) -> Result<u32, StoreError> {
    let format = meta
        .get(schema::META_FORMAT)
        .map_err(|e| engine_err(path, e))?;
    if format.as_ref().map(|v| v.value()) != Some(FORMAT_NAME) {
        return Err(not_a_store(path));
    }
    let version = meta
        .get(schema::META_SCHEMA_VERSION)
        .map_err(|e| engine_err(path, e))?
        .ok_or_else(|| missing_meta(path, "schema_version"))?;
    record::decode_version(version.value()).map_err(|e| StoreError::Corrupt {
        path: path.to_owned(),
        detail: format!("meta schema_version: {e}"),
    })
}

fn read_policy(
    meta: &impl ReadableTable<&'static [u8], &'static [u8]>,
    path: &Path,
) -> Result<BackendRecoveryPolicy, StoreError> {
    let value = meta
        .get(schema::META_POLICY)
        .map_err(|e| engine_err(path, e))?
        .ok_or_else(|| missing_meta(path, "policy"))?;
    record::decode_policy(value.value()).map_err(|e| StoreError::Corrupt {
        path: path.to_owned(),
        detail: format!("meta policy: {e}"),
    })
}

fn get_entry(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &BackendKey,
    path: &Path,
) -> Result<Option<RecoveryEntry>, StoreError> {
    let text = key.to_string();
    let value = table
        .get(text.as_bytes())
        .map_err(|e| engine_err(path, e))?;
    value
        .map(|v| record::decode_entry_of(key.clone(), v.value(), path))
        .transpose()
}

fn scan_entries(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    prefix: &str,
    path: &Path,
    mut visit: impl FnMut(&[u8], Result<RecoveryEntry, StoreError>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let range = table
        .range::<&[u8]>(prefix.as_bytes()..)
        .map_err(|e| engine_err(path, e))?;
    for item in range {
        let (key, value) = item.map_err(|e| engine_err(path, e))?;
        let raw_key = key.value();
        if !raw_key.starts_with(prefix.as_bytes()) {
            break;
        }
        visit(raw_key, record::decode_entry(raw_key, value.value(), path))?;
    }
    Ok(())
}

fn check_version(path: &Path, found: u32) -> Result<(), StoreError> {
    if found > CURRENT_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_owned(),
            found,
            supported: CURRENT_VERSION,
        });
    }
    if found < OLDEST_VERSION {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            detail: format!("schema version {found} was never written by recovery-store"),
        });
    }
    Ok(())
}

// redb writes its magic number last when it creates a database, so a non-empty backend whose
// first bytes are all zero holds a creation that was cut short: start it over.
fn discard_unfinished_creation(
    backend: &impl StorageBackend,
    label: &Path,
) -> Result<(), StoreError> {
    let len = backend.len().map_err(|e| io_err("cannot read", label, e))?;
    // Creation writes well under this; a bigger image with a zeroed header is a damaged store,
    // which is reported, never wiped.
    const MAX_CREATION_IMAGE: u64 = 1 << 20;
    if len == 0 || len > MAX_CREATION_IMAGE {
        return Ok(());
    }
    let mut head = [0u8; REDB_MAGIC.len()];
    let n = head.len().min(usize::try_from(len).unwrap_or(usize::MAX));
    backend
        .read(0, &mut head[..n])
        .map_err(|e| io_err("cannot read", label, e))?;
    if head[..n].iter().all(|b| *b == 0) {
        backend
            .set_len(0)
            .map_err(|e| io_err("cannot reset", label, e))?;
    }
    Ok(())
}

// Refuses files that are plainly not redb before redb sees them: redb would initialize an
// empty file, and reports foreign bytes less clearly.
fn check_magic(path: &Path) -> Result<(), StoreError> {
    let mut file = File::open(path).map_err(|e| io_err("cannot open", path, e))?;
    let mut head = [0u8; REDB_MAGIC.len()];
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err("cannot read", path, e)),
        }
    }
    let detail = if filled == 0 {
        "the file is empty"
    } else if head[..filled] != REDB_MAGIC[..filled] {
        "it is not a redb database"
    } else if filled < head.len() {
        "the file is too short to be a redb database"
    } else {
        return Ok(());
    };
    Err(StoreError::NotAStore {
        path: path.to_owned(),
        detail: detail.into(),
    })
}

/// What a read-only look at a file found.
enum Preflight {
    /// A store of the current schema, open read-only.
    Ready(ReadOnlyDatabase),
    /// The last writer died mid-write and no writer is live: redb must repair it first.
    NeedsRepair,
    /// A store of an older schema (the version found).
    NeedsMigration(u32),
}

// Validates format and schema through a read-only handle, which never writes to the file, so a
// foreign or newer file is refused untouched.
fn preflight(path: &Path, cache_size: usize) -> Result<Preflight, StoreError> {
    let opened = guarded(path, "opening", || {
        match Builder::new()
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .set_cache_size(cache_size)
            .open_read_only(path)
        {
            Ok(db) => Ok(Some(db)),
            Err(redb::DatabaseError::RepairAborted) => Ok(None),
            Err(e) => Err(engine_err(path, e)),
        }
    })?;
    let Some(db) = opened else {
        return Ok(Preflight::NeedsRepair);
    };
    let version = guarded(path, "reading", || {
        let txn = db.begin_read().map_err(|e| engine_err(path, e))?;
        Reader::open(&txn, path)?.schema_version()
    })?;
    check_version(path, version)?;
    Ok(if version < CURRENT_VERSION {
        Preflight::NeedsMigration(version)
    } else {
        Preflight::Ready(db)
    })
}

// Checks format and schema on a repaired in-memory copy of a file that needs crash recovery,
// leaving the file itself untouched. Costs a read of the whole file, only after an unclean stop.
fn validate_copy(path: &Path) -> Result<(), StoreError> {
    let bytes = fs::read(path).map_err(|e| io_err("cannot read", path, e))?;
    let copy = redb::backends::InMemoryBackend::new();
    copy.set_len(bytes.len() as u64)
        .and_then(|()| copy.write(0, &bytes))
        .map_err(|e| io_err("cannot copy", path, e))?;
    drop(bytes);
    let version = guarded(path, "checking a copy of", || {
        let db = Builder::new()
            .set_cache_size(1 << 20)
            .create_with_backend(copy)
            .map_err(|e| engine_err(path, e))?;
        let txn = db.begin_read().map_err(|e| engine_err(path, e))?;
        Reader::open(&txn, path)?.schema_version()
    })?;
    check_version(path, version)
}

fn open_writable(path: &Path, cache_size: usize) -> Result<Database, StoreError> {
    guarded(path, "opening", || {
        Builder::new()
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .set_cache_size(cache_size)
            .open(path)
            .map_err(|e| engine_err(path, e))
    })
}

// Builds the store under a temporary name beside `path`, then links it into place, so `path`
// never names a half-initialized file. Linking (unlike renaming) fails if another process
// created `path` first, and then that process's store is used.
fn create_atomically(path: &Path, config: &OpenConfig) -> Result<(), StoreError> {
    let dir = parent_dir(path);
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| io_err("cannot create directory", &dir, e))?;
    }
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let prefix = format!(".{name}.creating.");
    remove_abandoned_creations(&dir, &prefix);
    let tmp = dir.join(format!(
        "{prefix}{}.{}",
        std::process::id(),
        unique_suffix()
    ));
    let result = (|| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io_err("cannot create a store in the directory of", path, e))?;
        let db = guarded(&tmp, "creating", || {
            Builder::new()
                .set_cache_size(1 << 20)
                .create(&tmp)
                .map_err(|e| engine_err(&tmp, e))
        })?;
        let storage = Storage {
            db: ManuallyDrop::new(Handle::Writable(db)),
            path: tmp.clone(),
        };
        storage.write(|w| w.initialize(config.policy.unwrap_or_default()))?;
        drop(storage);
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_err("cannot sync", &tmp, e))?;
        match fs::hard_link(&tmp, path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("cannot create", path, e)),
        }
        sync_dir(&dir)
    })();
    let _ = fs::remove_file(&tmp);
    result
}

// Removes temporary files left beside the store by creators that died mid-creation (their
// process no longer exists). Best effort: anything unexpected is left alone.
fn remove_abandoned_creations(dir: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|rest| rest.split('.').next())
            .and_then(|pid| pid.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        if pid > 0 && !process_exists(pid) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn process_exists(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks whether the process exists; nothing is delivered.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

// Copies `from` to a new file `to`. An existing `to` is an earlier backup of the same schema,
// taken before anything was migrated, so it is kept rather than overwritten.
fn copy_durably(from: &Path, to: &Path) -> Result<(), StoreError> {
    let mut target = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
    {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(io_err("cannot back up to", to, e)),
    };
    File::open(from)
        .and_then(|mut source| std::io::copy(&mut source, &mut target))
        .and_then(|_| target.sync_all())
        .map_err(|e| io_err("cannot back up to", to, e))?;
    sync_dir(&parent_dir(to))
}

fn backup_path(path: &Path, version: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".schema-v{version}-backup"));
    PathBuf::from(name)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("cannot sync directory", dir, e))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// Runs a storage-engine call, turning a panic inside it into [`StoreError::Corrupt`].
fn guarded<T>(
    path: &Path,
    action: &str,
    f: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown failure".into());
        Err(StoreError::Corrupt {
            path: path.to_owned(),
            detail: format!("the storage engine failed while {action}: {message}"),
        })
    })
}

fn engine_err(path: &Path, e: impl Into<redb::Error>) -> StoreError {
    let path = path.to_owned();
    match e.into() {
        redb::Error::Corrupted(detail) => StoreError::Corrupt { path, detail },
        redb::Error::DatabaseAlreadyOpen => StoreError::Locked {
            path,
            detail: "opened exclusively by another program".into(),
        },
        redb::Error::LockProtocolMismatch => StoreError::Locked {
            path,
            detail: "another process uses a different redb locking protocol".into(),
        },
        redb::Error::UpgradeRequired(version) => StoreError::NotAStore {
            path,
            detail: format!("redb file format {version}, which this build does not read"),
        },
        redb::Error::Io(e) if e.kind() == ErrorKind::InvalidData => StoreError::NotAStore {
            path,
            detail: format!("not a redb database: {e}"),
        },
        redb::Error::Io(e) if e.kind() == ErrorKind::UnexpectedEof => StoreError::Corrupt {
            path,
            detail: format!("the file is shorter than its header says: {e}"),
        },
        redb::Error::Io(source) => StoreError::Io {
            action: "I/O failed on",
            path,
            source,
        },
        other => StoreError::Storage {
            path,
            source: Box::new(other),
        },
    }
}

fn encode_err(path: &Path, e: postcard::Error) -> StoreError {
    StoreError::Storage {
        path: path.to_owned(),
        source: Box::new(e),
    }
}

fn io_err(action: &'static str, path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

fn not_a_store(path: &Path) -> StoreError {
    StoreError::NotAStore {
        path: path.to_owned(),
        detail: "a redb database without recovery-store metadata".into(),
    }
}

fn missing_meta(path: &Path, what: &str) -> StoreError {
    StoreError::Corrupt {
        path: path.to_owned(),
        detail: format!("meta table has no {what}"),
    }
}
