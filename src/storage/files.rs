//! Plain file-system helpers: durable copies, directory syncs, leftovers of dead creators.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, Mode, fchmod, flock};

use crate::error::StoreError;

/// The name prefix of the temporary files that creators of the store at `path` use.
pub(super) fn creation_prefix(path: &Path) -> String {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    format!(".{name}.creating.")
}

/// A creator's temporary file, exclusively `flock`ed for as long as the creator holds it, so a
/// sweeper can tell a live creator from an abandoned file in any PID namespace: the kernel
/// drops the lock when the creator's process dies, whatever its PID looked like.
#[derive(Debug)]
pub(super) struct Creation {
    /// Where the temporary file is.
    pub path: PathBuf,
    /// The locked file; dropping it releases the lock.
    pub file: File,
}

/// Creates and locks a new temporary file beside the store at `path`, with permissions `mode`
/// (exactly: the umask does not apply). Never follows a symlink. A file swept away between its
/// creation and its lock (by a sweeper that found it unlocked) is created again.
pub(super) fn start_creation(path: &Path, mode: u32) -> Result<Creation, StoreError> {
    let dir = parent_dir(path);
    for _ in 0..8 {
        let tmp = dir.join(format!(
            "{}{}.{}",
            creation_prefix(path),
            std::process::id(),
            unique_suffix()
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(|e| io_err("cannot create a store in the directory of", path, e))?;
        flock(&file, FlockOperation::LockExclusive)
            .map_err(|e| io_err("cannot lock", &tmp, e.into()))?;
        if names_file(&tmp, &file) {
            fchmod(&file, Mode::from_raw_mode(mode))
                .map_err(|e| io_err("cannot set the mode of", &tmp, e.into()))?;
            return Ok(Creation { path: tmp, file });
        }
    }
    Err(io_err(
        "cannot keep a temporary file beside",
        path,
        std::io::Error::other("it was removed each time it was created"),
    ))
}

/// True while `path` names the very file `file` has open (same device and inode).
pub(super) fn names_file(path: &Path, file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::symlink_metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

// Removes temporary files left beside the store at `path` by creators that died mid-creation:
// those whose lock can be taken. Best effort: anything unexpected is left alone.
pub(super) fn remove_abandoned_creations(path: &Path) {
    let prefix = creation_prefix(path);
    let Ok(entries) = fs::read_dir(parent_dir(path)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name
            .to_str()
            .is_some_and(|n| n.starts_with(prefix.as_str()))
        {
            continue;
        }
        let candidate = entry.path();
        let Ok(file) = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&candidate)
        else {
            continue;
        };
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            continue;
        }
        // A live creator holds the lock; a dead one's lock went with its process.
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok()
            && names_file(&candidate, &file)
        {
            let _ = fs::remove_file(&candidate);
        }
    }
}

// Copies `from` to a new file `to`. An existing `to` is an earlier backup of the same schema,
// taken before anything was migrated, so it is kept rather than overwritten.
pub(super) fn copy_durably(from: &Path, to: &Path) -> Result<(), StoreError> {
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

pub(super) fn backup_path(path: &Path, version: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".schema-v{version}-backup"));
    PathBuf::from(name)
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("cannot sync directory", dir, e))
}

pub(super) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

pub(super) fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

pub(super) fn io_err(action: &'static str, path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}
