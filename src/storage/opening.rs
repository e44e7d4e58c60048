//! Getting a file open: refusing what is not ours untouched, and creating stores atomically.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use redb::{
    Builder, ConcurrencyMode, Database, ReadOnlyDatabase, ReadableDatabase, StorageBackend,
};

use super::backend::Opener;
use super::files::{
    creation_prefix, io_err, parent_dir, remove_abandoned_creations, sync_dir, unique_suffix,
};
use super::guard::{engine_err, guarded};
use super::{OpenConfig, REDB_MAGIC, Reader, Storage};
use crate::error::StoreError;
use crate::migrations::{CURRENT_VERSION, OLDEST_VERSION};

pub(super) fn check_version(path: &Path, found: u32) -> Result<(), StoreError> {
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
pub(super) fn discard_unfinished_creation(
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
pub(super) fn check_magic(path: &Path) -> Result<(), StoreError> {
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
pub(super) enum Preflight {
    /// A store of the current schema, open read-only.
    Ready(ReadOnlyDatabase),
    /// The last writer died mid-write and no writer is live: redb must repair it first.
    NeedsRepair,
    /// A store of an older schema (the version found).
    NeedsMigration(u32),
}

// Validates format and schema through a read-only handle, which never writes to the file, so a
// foreign or newer file is refused untouched.
pub(super) fn preflight(
    path: &Path,
    cache_size: usize,
    opener: &Opener,
) -> Result<Preflight, StoreError> {
    let backend = opener
        .file(path, true)
        .map_err(|e| io_err("cannot open", path, e))?;
    let opened = guarded(path, "opening", || {
        match Builder::new()
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .set_cache_size(cache_size)
            .open_read_only_with_backend(backend)
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
pub(super) fn validate_copy(path: &Path) -> Result<(), StoreError> {
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

pub(super) fn open_writable(
    path: &Path,
    cache_size: usize,
    opener: &Opener,
) -> Result<Database, StoreError> {
    let backend = opener
        .file(path, false)
        .map_err(|e| io_err("cannot open", path, e))?;
    guarded(path, "opening", || {
        Builder::new()
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .set_cache_size(cache_size)
            .create_with_backend(backend)
            .map_err(|e| engine_err(path, e))
    })
}

// Builds the store under a temporary name beside `path`, then links it into place, so `path`
// never names a half-initialized file. Linking (unlike renaming) fails if another process
// created `path` first, and then that process's store is used.
pub(super) fn create_atomically(path: &Path, config: &OpenConfig) -> Result<(), StoreError> {
    let dir = parent_dir(path);
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| io_err("cannot create directory", &dir, e))?;
    }
    remove_abandoned_creations(path);
    let tmp = dir.join(format!(
        "{}{}.{}",
        creation_prefix(path),
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
        let storage = Storage::fixed(db, &tmp, config);
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
