//! Making new stores: atomically at a missing path, or in place in an existing empty file.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use redb::Builder;

use super::files::{
    CREATION_LOCK_WAIT, Creation, creation_byte_held, io_err, lock_creation_byte, names_file,
    parent_dir, remove_abandoned_creations, start_creation, sync_dir, unlock_creation_byte,
};
use super::guard::{engine_err, guarded};
use super::overlay::{Overlay, PrivateFile};
use super::{OpenConfig, Storage};
use crate::error::StoreError;

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

// Creation writes well under this; a bigger image with a zeroed header is a damaged store,
// which is reported, never wiped.
pub(super) const MAX_CREATION_IMAGE: u64 = 1 << 20;
/// Waits (up to [`CREATION_LOCK_WAIT`]) for a process initializing the small store at `path`
/// in place to finish, so its file is never read half-copied. Best effort: a store that cannot
/// be opened here is reported by the open that follows.
pub(super) fn wait_for_initializer(path: &Path) {
    let Ok(file) = File::open(path) else {
        return;
    };
    let deadline = std::time::Instant::now() + CREATION_LOCK_WAIT;
    while creation_byte_held(&file) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// The header page, which initialization writes last.
const HEADER: usize = 4096;

// An empty file, or one whose initialization was cut short: small, with a header page that is
// still all zeros (initialization writes it last).
pub(super) fn unfinished(path: &Path, len: u64) -> bool {
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
// memory and copied in, header page last, under the exclusive creation lock on the file, which
// concurrent initializers and openers wait for.
pub(super) fn initialize_in_place(path: &Path, config: &OpenConfig) -> Result<(), StoreError> {
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
    if !lock_creation_byte(&file, true, CREATION_LOCK_WAIT)
        .map_err(|e| io_err("cannot lock", path, e))?
    {
        return Err(StoreError::Locked {
            path: path.to_owned(),
            detail: "another process has been initializing it for 10 s".into(),
        });
    }
    let initialized = initialize_locked(&file, path, config);
    unlock_creation_byte(&file);
    initialized
}

fn initialize_locked(file: &File, path: &Path, config: &OpenConfig) -> Result<(), StoreError> {
    let len = file
        .metadata()
        .map_err(|e| io_err("cannot read", path, e))?
        .len();
    if len != 0 && (len > MAX_CREATION_IMAGE || !header_is_blank(file, len)) {
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
    let storage = Storage::fixed(db, path, config);
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
        let storage = Storage::fixed(db, &creation.path, config);
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
