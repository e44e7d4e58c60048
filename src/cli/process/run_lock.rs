//! The per-key run lock: at most one `run` supervises a key, seen from every PID namespace that
//! sees the store's directory, and a lock file left by a `run` killed outright names what to end.

use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use super::leftovers::Group;

/// Held for as long as `run` supervises a key: an exclusive `flock` on a small file beside the
/// store. The kernel drops it when `run` dies in any way, and it is seen from every PID
/// namespace that sees the file, unlike a PID checked with `kill(pid, 0)`.
///
/// Dropping it removes the file while the lock is still held, so lock files do not pile up; a
/// `run` that locked the file just before it was removed notices that the path no longer names
/// its file and takes the lock again on a new one.
pub struct RunLock {
    /// Closed (and so unlocked) after `drop` has removed the path.
    _file: File,
    path: PathBuf,
    key: String,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl RunLock {
    /// Notes in the lock file the process group of the command just started, so that if this
    /// `run` is killed outright, the next `run` of the key ends what the command left behind
    /// (processes it started, which the parent-death signal does not reach).
    pub fn record_group(&mut self, pgid: u32) {
        let Some(group) = Group::of(pgid) else {
            return;
        };
        let key = self.key.clone();
        let _ = self
            ._file
            .set_len(0)
            .and_then(|()| std::io::Seek::rewind(&mut self._file))
            .and_then(|()| writeln!(self._file, "{}\n{key}\n{group}", std::process::id()));
    }
}

/// The answer of [`lock_run`].
pub enum Locked {
    /// This `run` now supervises the key.
    Held(RunLock),
    /// Another live `run` holds it: its PID (as it wrote it, in its own PID namespace) if it
    /// has written it yet, and the lock file.
    Busy { pid: Option<u32>, path: PathBuf },
}

/// Takes the run lock of `key` for the store at `store`, without waiting: the file
/// `.<store file name>.run.<16 hex digits>.lock` in the store's directory, the digits a hash
/// (FNV-1a, stable across builds) of the store's file name and the key.
///
/// A lock file this creates gets `mode` (0600, or 0660 beside a group's store), less the umask.
pub fn lock_run(store: &Path, key: &str, mode: u32) -> io::Result<Locked> {
    let path = lock_path(store, key);
    if let Some(dir) = path.parent() {
        // The store's own directory, made as the store would make it: the lock comes first.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    loop {
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(mode)
            // Never through a symbolic link, nor on anything but a plain file of its own: the
            // lock is truncated and written, perhaps by root in a directory others can write.
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)?;
        let meta = file.metadata()?;
        // (No links at all is a file just removed by the `run` that held it: see below.)
        if !meta.is_file() || meta.nlink() > 1 {
            return Err(io::Error::other(format!(
                "{} is not a plain file with one link: remove it",
                path.display()
            )));
        }
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                // Removed (by the `run` that held it) between our open and our lock: the lock
                // is on a file nobody else will find. Take it again on the one at the path.
                let here = file.metadata()?;
                match std::fs::metadata(&path) {
                    Ok(there) if (there.dev(), there.ino()) == (here.dev(), here.ino()) => {}
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                // A file left by a `run` killed outright may name its command's group, and
                // whatever that command started may still run: end it before starting anew.
                let mut previous = String::new();
                let _ = file.read_to_string(&mut previous);
                if let Some(group) = Group::parse(&previous) {
                    group.end_leftovers();
                }
                file.set_len(0)?;
                std::io::Seek::rewind(&mut file)?;
                writeln!(file, "{}\n{key}", std::process::id())?;
                return Ok(Locked::Held(RunLock {
                    _file: file,
                    path,
                    key: key.to_owned(),
                }));
            }
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let pid = text.lines().next().and_then(|l| l.trim().parse().ok());
                return Ok(Locked::Busy { pid, path });
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn lock_path(store: &Path, key: &str) -> PathBuf {
    let name = store.file_name().unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = name
        .as_encoded_bytes()
        .iter()
        .chain(b"\0")
        .chain(key.as_bytes());
    for &b in bytes {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Keep the name within NAME_MAX whatever the store is called; the hash covers all of it.
    let shown: String = name.to_string_lossy().chars().take(100).collect();
    let dir = store.parent().unwrap_or(Path::new(""));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    dir.join(format!(".{shown}.run.{hash:016x}.lock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_paths_sit_beside_the_store_and_differ_per_key_and_store() {
        let a = lock_path(Path::new("/s/recovery.redb"), "shared/a@1.0.0");
        assert!(a.starts_with("/s"));
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(".recovery.redb.run.") && name.ends_with(".lock"));
        assert_ne!(
            a,
            lock_path(Path::new("/s/recovery.redb"), "shared/b@1.0.0")
        );
        assert_ne!(a, lock_path(Path::new("/s/other.redb"), "shared/a@1.0.0"));
        // FNV-1a is fixed: the same key maps to the same file in every build.
        assert_eq!(
            a,
            lock_path(Path::new("/s/recovery.redb"), "shared/a@1.0.0")
        );
        let long = "x".repeat(250);
        let p = lock_path(&Path::new("/s").join(&long), "shared/a@1.0.0");
        assert!(p.file_name().unwrap().len() < 255);
        assert_eq!(
            lock_path(Path::new("r.redb"), "k").parent(),
            Some(Path::new("."))
        );
    }
}
