//! Getting a file open: refusing what is not ours untouched, and creating stores atomically.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::mem::ManuallyDrop;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, flock};

use redb::{
    Builder, ConcurrencyMode, Database, ReadOnlyDatabase, ReadableDatabase, StorageBackend,
};

use super::files::{
    Creation, io_err, names_file, parent_dir, remove_abandoned_creations, start_creation, sync_dir,
};
use super::guard::{engine_err, guarded};
use super::overlay::{Overlay, PrivateFile};
use super::trust;
use super::{Handle, OpenConfig, REDB_MAGIC, Reader, Storage};
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
    /// A store of an older schema (the version found).
    NeedsMigration(u32),
}

// Validates format and schema through a read-only handle, which never writes to the file, so a
// foreign or newer file is refused untouched.
pub(super) fn preflight(path: &Path, cache_size: usize) -> Result<Preflight, StoreError> {
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

// Opens a repaired view of a file whose last writer died: redb's crash recovery runs on a
// copy-on-write overlay (`Overlay`) of the file opened read-only, so the file is never written
// and memory holds only the pages the repair writes. Checks format and schema on the view, so a
// foreign or newer file is refused untouched. A later commit by a writer at the path is not
// seen through the view: reopen to see it.
pub(super) fn repaired_view(
    path: &Path,
    cache_size: usize,
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
        Err(e) => match preflight(path, cache_size) {
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
        check_version(path, version)?;
        if version < CURRENT_VERSION {
            return Err(StoreError::NeedsMigration {
                path: path.to_owned(),
                found: version,
                current: CURRENT_VERSION,
            });
        }
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
pub(super) fn validate_copy(path: &Path) -> Result<(), StoreError> {
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
    match repaired_view(path, 1 << 20) {
        Ok(_) | Err(StoreError::NeedsMigration { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

pub(super) fn open_writable(path: &Path, cache_size: usize) -> Result<Database, StoreError> {
    guarded(path, "opening", || {
        Builder::new()
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .set_cache_size(cache_size)
            .open(path)
            .map_err(|e| engine_err(path, e))
    })
}

/// Modes a store may be created with: owner read-write, group read or read-write, others at
/// most read, and never group write with any access for others (the ownership check would
/// refuse that store).
pub(super) fn check_mode(mode: u32) -> Result<(), StoreError> {
    let problem = if mode & !0o666 != 0 {
        "only read and write bits may be set"
    } else if mode & 0o600 != 0o600 {
        "the owner must be able to read and write"
    } else if mode & 0o002 != 0 {
        "others may never write a store"
    } else if mode & 0o020 != 0 && mode & 0o007 != 0 {
        "a store its group can write must give others no access (0660)"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidOptions {
        detail: format!("file mode {mode:04o}: {problem}; use 0600 (the default) or 0660"),
    })
}

// The mode of a directory made for a store of `mode`: private, or setgid and open to the
// group as far as the file is, so the ownership check accepts its group write.
fn dir_mode(mode: u32) -> u32 {
    let group = mode & 0o060;
    if group == 0 { 0o700 } else { 0o2710 | group }
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

// Creation writes well under this; a bigger image with a zeroed header is a damaged store,
// which is reported, never wiped.
const MAX_CREATION_IMAGE: u64 = 1 << 20;
/// The header page, which initialization writes last.
const HEADER: usize = 4096;

// An empty file, or one whose initialization was cut short: small, with a header page that is
// still all zeros (initialization writes it last).
fn unfinished(path: &Path, len: u64) -> bool {
    if len == 0 {
        return true;
    }
    if len > MAX_CREATION_IMAGE {
        return false;
    }
    let Ok(file) = File::open(path) else {
        return false;
    };
    header_is_blank(&file, len)
}

fn header_is_blank(file: &File, len: u64) -> bool {
    let mut head = vec![0u8; HEADER.min(len as usize)];
    file.read_exact_at(&mut head, 0).is_ok() && head.iter().all(|b| *b == 0)
}

// Makes an existing empty file a new store in place, so it keeps the owner, group and mode an
// administrator gave it (`install -m 660 -g brokers /dev/null PATH`). The store is built in
// memory and copied in, header page last, under an exclusive `flock` on the file that
// concurrent initializers wait for.
fn initialize_in_place(path: &Path, config: &OpenConfig) -> Result<(), StoreError> {
    let nofollow = if config.trust_any_owner {
        0
    } else {
        libc::O_NOFOLLOW
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nofollow | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io_err("cannot initialize", path, e))?;
    lock_for_initialization(&file, path)?;
    let len = file
        .metadata()
        .map_err(|e| io_err("cannot read", path, e))?
        .len();
    if len != 0 && (len > MAX_CREATION_IMAGE || !header_is_blank(&file, len)) {
        return Ok(()); // another process initialized it first
    }
    let image = build_image(path, config)?;
    let split = HEADER.min(image.len());
    file.set_len(image.len() as u64)
        .and_then(|()| file.write_all_at(&image[split..], split as u64))
        .and_then(|()| file.sync_data())
        .and_then(|()| file.write_all_at(&image[..split], 0))
        .and_then(|()| file.sync_data())
        .map_err(|e| io_err("cannot initialize", path, e))
}

fn lock_for_initialization(file: &File, path: &Path) -> Result<(), StoreError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match flock(file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(()),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                return Err(StoreError::Locked {
                    path: path.to_owned(),
                    detail: "another process has held it for 10 s while initializing it".into(),
                });
            }
            Err(e) => return Err(io_err("cannot lock", path, e.into())),
        }
    }
}

// Builds a new store's bytes in memory: no temporary file, so initializing an existing file
// needs no write access to its directory.
fn build_image(path: &Path, config: &OpenConfig) -> Result<Vec<u8>, StoreError> {
    let image = Overlay::empty();
    let db = guarded(path, "creating", || {
        Builder::new()
            .set_cache_size(1 << 20)
            .create_with_backend(image.clone())
            .map_err(|e| engine_err(path, e))
    })?;
    let storage = Storage {
        db: ManuallyDrop::new(Handle::Writable(db)),
        path: path.to_owned(),
    };
    storage.write(|w| w.initialize(config.policy.unwrap_or_default()))?;
    drop(storage);
    image
        .to_vec()
        .map_err(|e| io_err("cannot build a store for", path, e))
}

// Builds a complete, synced store in a new locked temporary file beside `path`.
fn build_store(path: &Path, config: &OpenConfig) -> Result<Creation, StoreError> {
    let creation = start_creation(path, config.mode)?;
    let built = (|| {
        let backend = creation
            .file
            .try_clone()
            .map_err(|e| io_err("cannot open", &creation.path, e))?;
        let db = guarded(&creation.path, "creating", || {
            Builder::new()
                .set_cache_size(1 << 20)
                .create_with_backend(PrivateFile(backend))
                .map_err(|e| engine_err(&creation.path, e))
        })?;
        let storage = Storage {
            db: ManuallyDrop::new(Handle::Writable(db)),
            path: creation.path.clone(),
        };
        storage.write(|w| w.initialize(config.policy.unwrap_or_default()))?;
        drop(storage);
        creation
            .file
            .sync_all()
            .map_err(|e| io_err("cannot sync", &creation.path, e))
    })();
    match built {
        Ok(()) => Ok(creation),
        Err(e) => {
            let _ = fs::remove_file(&creation.path);
            Err(e)
        }
    }
}

// Builds the store under a temporary name beside `path`, then links it into place, so `path`
// never names a half-initialized file. Linking (unlike renaming) fails if another process
// created `path` first, and then that process's store is used; it never follows a symlink at
// `path`. A creator whose temporary file vanished before it was linked starts over.
pub(super) fn create_atomically(path: &Path, config: &OpenConfig) -> Result<(), StoreError> {
    let dir = parent_dir(path);
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| io_err("cannot create directory", &dir, e))?;
        // Exactly, whatever the umask.
        fs::set_permissions(&dir, fs::Permissions::from_mode(dir_mode(config.mode)))
            .map_err(|e| io_err("cannot set the mode of", &dir, e))?;
    }
    remove_abandoned_creations(path);
    for _ in 0..3 {
        let creation = build_store(path, config)?;
        let linked = if names_file(&creation.path, &creation.file) {
            fs::hard_link(&creation.path, path)
        } else {
            Err(ErrorKind::NotFound.into())
        };
        let _ = fs::remove_file(&creation.path);
        drop(creation);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            // Swept away, or the directory was replaced: build it again.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("cannot create", path, e)),
        }
        return sync_dir(&dir);
    }
    Err(io_err(
        "cannot create",
        path,
        std::io::Error::other("its temporary file was removed three times before it was linked"),
    ))
}
