//! Plain file-system helpers: durable copies, directory syncs, leftovers of dead creators.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::StoreError;

/// The name prefix of the temporary files that creators of the store at `path` use.
pub(super) fn creation_prefix(path: &Path) -> String {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    format!(".{name}.creating.")
}

// Removes temporary files left beside the store at `path` by creators that died mid-creation
// (their process no longer exists). Best effort: anything unexpected is left alone.
pub(super) fn remove_abandoned_creations(path: &Path) {
    let prefix = creation_prefix(path);
    let Ok(entries) = fs::read_dir(parent_dir(path)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix.as_str()))
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

pub(super) fn process_exists(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks whether the process exists; nothing is delivered.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
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
