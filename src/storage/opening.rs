//! Getting a file open: refusing what is not ours untouched, before and after redb's crash
//! recovery, and deciding when a store must be made (see `creation.rs`).

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::path::Path;

use redb::{
    Builder, ConcurrencyMode, Database, ReadOnlyDatabase, ReadableDatabase, StorageBackend,
};

use super::backend::Opener;
use super::creation::{
    MAX_CREATION_IMAGE, check_mode, create_atomically, initialize_in_place, unfinished,
    wait_for_initializer,
};
use super::files::{io_err, parent_dir};
use super::guard::{engine_err, guarded};
use super::overlay::Overlay;
use super::trust;
use super::{OpenConfig, REDB_MAGIC, Reader};
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
        "the file is empty; a write command (e.g. `recovery-store prune`) makes it a new store"
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
    /// A store of an older schema (the version found), open read-only: readers read it as it
    /// is, a writer migrates it.
    NeedsMigration(ReadOnlyDatabase, u32),
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
        Preflight::NeedsMigration(db, version)
    } else {
        Preflight::Ready(db)
    })
}

// Opens a repaired view of a file whose last writer died: redb's crash recovery runs on a
// copy-on-write overlay (`Overlay`) of the file opened read-only, so the file is never written
// and memory holds only the pages the repair writes. Checks format and schema on the view, so a
// foreign or newer file is refused untouched. A later commit by a writer at the path is not
// seen through the view: reopen to see it.
pub(super) fn repaired_view(
    path: &Path,
    cache_size: usize,
    opener: &Opener,
) -> Result<ReadOnlyDatabase, StoreError> {
    match view_of(path, cache_size) {
        Ok(db) => Ok(db),
        Err(
            e @ (StoreError::NotAStore { .. }
            | StoreError::NewerSchema { .. }
            | StoreError::NeedsMigration { .. }),
        ) => Err(e),
        // A writer may have recovered the file under the view, tearing what it read: then the
        // file itself is ready to read.
        Err(e) => match preflight(path, cache_size, opener) {
            Ok(Preflight::Ready(db)) => Ok(db),
            _ => Err(e),
        },
    }
}

fn view_of(path: &Path, cache_size: usize) -> Result<ReadOnlyDatabase, StoreError> {
    let file = File::open(path).map_err(|e| io_err("cannot open", path, e))?;
    let view = Overlay::new(file).map_err(|e| io_err("cannot read", path, e))?;
    guarded(path, "checking a repaired view of", || {
        let db = Builder::new()
            .set_cache_size(cache_size)
            .create_with_backend(view.clone())
            .map_err(|e| engine_err(path, e))?;
        let version = {
            let txn = db.begin_read().map_err(|e| engine_err(path, e))?;
            Reader::open(&txn, path)?.schema_version()?
        };
        // An older schema reads as it is; only a writer migrates it.
        check_version(path, version)?;
        drop(db);
        Builder::new()
            .set_cache_size(cache_size)
            .open_read_only_with_backend(view)
            .map_err(|e| engine_err(path, e))
    })
}

// Before a writable open runs redb's crash recovery on the file itself: checks format and
// schema on a repaired view (in bounded memory, the file untouched), and that this process can
// write the file at all, so a reader-only user or a read-only mount gets `NeedsRecovery`.
// Returns the schema version the repaired view holds.
pub(super) fn validate_copy(path: &Path, opener: &Opener) -> Result<u32, StoreError> {
    if let Err(source) = OpenOptions::new().write(true).open(path) {
        let cannot_write = source.kind() == ErrorKind::PermissionDenied
            || source.raw_os_error() == Some(libc::EROFS);
        return Err(if cannot_write {
            StoreError::NeedsRecovery {
                path: path.to_owned(),
                source,
            }
        } else {
            io_err("cannot open", path, source)
        });
    }
    let view = repaired_view(path, 1 << 20, opener)?;
    guarded(path, "reading", || {
        let txn = view.begin_read().map_err(|e| engine_err(path, e))?;
        Reader::open(&txn, path)?.schema_version()
    })
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

// Everything before redb sees the path: ownership, file type, creating a missing store and
// initializing an existing empty file. Never follows a symlink at `path` unless the caller
// trusts any owner.
pub(super) fn prepare(path: &Path, config: &OpenConfig) -> Result<(), StoreError> {
    check_mode(config.mode)?;
    let trusting = config.trust_any_owner;
    let link = match fs::symlink_metadata(path) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(source) => return Err(io_err("cannot read", path, source)),
    };
    match &link {
        Some(meta) => not_a_plain_file(path, meta)?,
        // Nothing to trust or refuse: nothing will be opened or created.
        None if !config.create => {
            return Err(StoreError::NotFound {
                path: path.to_owned(),
            });
        }
        None => {}
    }
    if !trusting {
        let dir = parent_dir(path);
        match fs::metadata(&dir) {
            Ok(meta) if meta.is_dir() => trust::check_dir(&dir, &meta)?,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(source) => return Err(io_err("cannot read", &dir, source)),
        }
        if let Some(meta) = link.as_ref().filter(|m| !m.is_dir()) {
            trust::check_file(path, meta)?;
        }
    }
    match fs::metadata(path) {
        Ok(meta) => {
            not_a_plain_file(path, &meta)?;
            if config.create && !config.read_only && unfinished(path, meta.len()) {
                initialize_in_place(path, config)?;
            } else if meta.len() <= MAX_CREATION_IMAGE {
                wait_for_initializer(path);
            }
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if !config.create {
                return Err(StoreError::NotFound {
                    path: path.to_owned(),
                });
            }
            create_atomically(path, config)
        }
        Err(source) => Err(io_err("cannot read", path, source)),
    }
}

// Refuses a directory, FIFO or device (a symlink passes: it is judged by where it leads). A
// FIFO or device would block or misbehave on open; only plain files are stores.
fn not_a_plain_file(path: &Path, meta: &fs::Metadata) -> Result<(), StoreError> {
    let kind = meta.file_type();
    let detail = if kind.is_dir() {
        "it is a directory"
    } else if !kind.is_file() && !kind.is_symlink() {
        "it is not a regular file"
    } else {
        return Ok(());
    };
    Err(StoreError::NotAStore {
        path: path.to_owned(),
        detail: detail.into(),
    })
}
