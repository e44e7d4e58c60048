//! Plain file-system helpers: durable copies, directory syncs, leftovers of dead creators.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use rustix::fs::{Mode, fchmod};

use crate::error::StoreError;

/// The name prefix of the temporary files that creators of the store at `path` use.
pub(super) fn creation_prefix(path: &Path) -> String {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    format!(".{name}.creating.")
}

/// A creator's temporary file, locked (see [`lock_creation_byte`]) for as long as the creator
/// holds it, so a sweeper can tell a live creator from an abandoned file in any PID namespace:
/// the kernel drops the lock when the creator's process dies, whatever its PID looked like.
#[derive(Debug)]
pub(super) struct Creation {
    /// Where the temporary file is.
    pub path: PathBuf,
    /// The locked file; dropping the `Creation` releases the lock.
    pub file: File,
}

impl Drop for Creation {
    fn drop(&mut self) {
        unlock_creation_byte(&self.file);
    }
}

/// How long to wait for a creation lock another process holds: it is held only while a store
/// of a few hundred KiB is built or copied in.
pub(super) const CREATION_LOCK_WAIT: Duration = Duration::from_secs(10);

/// Takes an open-file-description lock on byte 0 of `file`, shared or exclusive, waiting up to
/// `wait`; false when it is still held elsewhere then. Creators and initializers hold it
/// exclusively while they make a store, sweepers and openers probe it. redb never locks byte 0
/// of a store it shares between processes (its locks lie past 2^62, plus a shared `flock`), so
/// this lock and redb's never meet.
pub(super) fn lock_creation_byte(
    file: &File,
    exclusive: bool,
    wait: Duration,
) -> std::io::Result<bool> {
    let kind = if exclusive {
        libc::F_WRLCK
    } else {
        libc::F_RDLCK
    };
    let deadline = Instant::now() + wait;
    loop {
        if set_byte_lock(file, kind as libc::c_short)? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Releases the lock of [`lock_creation_byte`] now, whoever else still holds a copy of the
/// descriptor (a child forked by another thread keeps one until it execs, and with it the lock).
pub(super) fn unlock_creation_byte(file: &File) {
    let _ = set_byte_lock(file, libc::F_UNLCK as libc::c_short);
}

/// True while another open file description holds the exclusive creation lock of
/// [`lock_creation_byte`] (exactly byte 0) on `file`; a lock over more of the file belongs to
/// someone else, such as another program's exclusive redb handle, and is not waited for.
pub(super) fn creation_byte_held(file: &File) -> bool {
    // SAFETY: an all-zero `flock` is valid; the fields that matter are set below.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_RDLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_len = 1;
    // SAFETY: `lock` is a valid flock for the duration of the call, on our own descriptor.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut lock) };
    rc == 0 && lock.l_type == libc::F_WRLCK as libc::c_short && lock.l_start == 0 && lock.l_len == 1
}

fn set_byte_lock(file: &File, kind: libc::c_short) -> std::io::Result<bool> {
    set_lock_at(file, kind, 0)
}

fn set_lock_at(file: &File, kind: libc::c_short, start: i64) -> std::io::Result<bool> {
    // SAFETY: an all-zero `flock` is valid; the fields that matter are set below.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = start;
    lock.l_len = 1;
    // SAFETY: `lock` is a valid flock for the duration of the call, on our own descriptor.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut lock) };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN | libc::EACCES) => Ok(false),
        Some(libc::EINTR) => set_lock_at(file, kind, start),
        _ => Err(err),
    }
}

/// The byte of a store file locked (as an open-file-description lock) by a process migrating
/// it: just below every lock redb takes (its header lock covers the first bytes, its process
/// locks start at 2^62), so only migrators meet it.
const MIGRATION_BYTE: i64 = (1 << 62) - 1;

/// The exclusive migration lock on a store file, held by the process migrating it from its
/// backup to its commit: other openers that find the old schema wait for it, then find the
/// store migrated. Released when dropped, or by the kernel when the process dies.
pub(super) struct MigrationLock(File);

impl MigrationLock {
    /// Takes the lock on the store at `path`, waiting up to `wait`.
    pub fn take(path: &Path, wait: Duration) -> Result<Self, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| io_err("cannot open", path, e))?;
        let deadline = Instant::now() + wait;
        let started = Instant::now();
        loop {
            let locked = set_lock_at(&file, libc::F_WRLCK as libc::c_short, MIGRATION_BYTE)
                .map_err(|e| io_err("cannot lock", path, e))?;
            if locked {
                return Ok(Self(file));
            }
            if Instant::now() >= deadline {
                return Err(StoreError::Busy {
                    path: path.to_owned(),
                    waited_for: "another process migrating the store",
                    waited: started.elapsed(),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for MigrationLock {
    fn drop(&mut self) {
        let _ = set_lock_at(&self.0, libc::F_UNLCK as libc::c_short, MIGRATION_BYTE);
    }
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
        let locked = lock_creation_byte(&file, true, CREATION_LOCK_WAIT)
            .map_err(|e| io_err("cannot lock", &tmp, e))?;
        if locked && names_file(&tmp, &file) {
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
        if lock_creation_byte(&file, false, Duration::ZERO).unwrap_or(false) {
            if names_file(&candidate, &file) {
                let _ = fs::remove_file(&candidate);
            }
            unlock_creation_byte(&file);
        }
    }
}

// Makes `to` a durable, byte-identical copy of `from`, with its permission bits: the copy is
// written under a temporary name, synced, then renamed over `to`, so `to` never holds half a
// copy. An existing `to` (left by a migration that never committed, or by a roll-back) is
// replaced: the backup is the file as it was just before the migration that ran.
pub(super) fn copy_durably(from: &Path, to: &Path) -> Result<(), StoreError> {
    let err = |e| io_err("cannot back up to", to, e);
    let mut source = File::open(from).map_err(|e| io_err("cannot read", from, e))?;
    let mode = source
        .metadata()
        .map_err(|e| io_err("cannot read", from, e))?
        .permissions()
        .mode()
        & 0o777;
    let mut temp = to.as_os_str().to_owned();
    temp.push(format!(".{}.tmp", std::process::id()));
    let temp = PathBuf::from(temp);
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut target| {
            fchmod(&target, Mode::from_raw_mode(mode)).map_err(std::io::Error::from)?;
            std::io::copy(&mut source, &mut target)?;
            target.sync_all()
        })
        .and_then(|()| fs::rename(&temp, to));
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(err(e));
    }
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
