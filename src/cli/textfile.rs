//! Writing a file for node_exporter's textfile collector atomically: a temporary file in the
//! same directory, fsync, mode 0644, rename, fsync of the directory. A reader sees the old file
//! or the new one, never a part.
//!
//! No temporary file outlives its writer: failures remove it; SIGINT, SIGTERM and SIGHUP stop
//! the write, remove it and then end the process as the signal would have; and a writer killed
//! outright (SIGKILL, a power loss) leaves one that the next run removes. Each writer holds an
//! exclusive `flock` on its temporary file, so a file whose lock can be taken is abandoned,
//! whatever PID namespace its writer lived in.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context as _;
use rustix::fs::{FlockOperation, flock};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// The signals that stop a write and remove its temporary file.
const STOPS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// A writer into the temporary file that fails once a stop signal has arrived.
pub struct Output {
    file: BufWriter<File>,
    stop: Arc<AtomicUsize>,
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.stop.load(Ordering::Relaxed) != 0 {
            // Not `Interrupted`: `write_all` would retry that forever.
            return Err(io::Error::other("stopped by a signal"));
        }
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Writes what `fill` produces to `path`, atomically.
///
/// # Errors
///
/// `fill`'s error, or an I/O error naming the file and what to do; in every case `path` keeps
/// its old contents and the temporary file is removed. A stop signal received meanwhile ends
/// the process with that signal once the temporary file is gone.
pub fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut Output) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file: give a file path", path.display()))?
        .to_string_lossy()
        .into_owned();
    let prefix = format!(".{name}.tmp.");
    remove_abandoned(&dir, &prefix);
    let stop = Arc::new(AtomicUsize::new(0));
    let ids = STOPS
        .iter()
        .map(|&sig| signal_hook::flag::register_usize(sig, Arc::clone(&stop), sig as usize))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot install signal handlers")?;
    let tmp = dir.join(format!("{prefix}{}", std::process::id()));
    let result = write_to(&tmp, path, &dir, Arc::clone(&stop), fill);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    for id in ids {
        signal_hook::low_level::unregister(id);
    }
    match stop.load(Ordering::Relaxed) {
        0 => result,
        sig => {
            // The temporary file is gone: now end as the signal would have.
            let _ = fs::remove_file(&tmp);
            let _ = signal_hook::low_level::emulate_default_handler(sig as i32);
            result
        }
    }
}

fn write_to(
    tmp: &Path,
    path: &Path,
    dir: &Path,
    stop: Arc<AtomicUsize>,
    fill: impl FnOnce(&mut Output) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(tmp)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    flock(&file, FlockOperation::NonBlockingLockExclusive)
        .with_context(|| format!("cannot lock {}", tmp.display()))?;
    let mut out = Output {
        file: BufWriter::new(file),
        stop: Arc::clone(&stop),
    };
    fill(&mut out)
        .and_then(|()| Ok(out.flush()?))
        .with_context(|| format!("cannot write {}{}", tmp.display(), advice(dir)))?;
    let file = out
        .file
        .into_inner()
        .map_err(io::IntoInnerError::into_error)
        .and_then(|f| f.sync_all().map(|()| f))
        .with_context(|| format!("cannot write {}{}", tmp.display(), advice(dir)))?;
    if stop.load(Ordering::Relaxed) != 0 {
        anyhow::bail!("stopped by a signal before {} was replaced", path.display());
    }
    // The umask may have narrowed the mode; the collector may run as another user.
    file.set_permissions(fs::Permissions::from_mode(0o644))
        .with_context(|| format!("cannot make {} readable", tmp.display()))?;
    fs::rename(tmp, path)
        .with_context(|| format!("cannot move the new file into place at {}", path.display()))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync directory {}", dir.display()))
}

fn advice(dir: &Path) -> String {
    format!(
        " (the old file is kept): free space on the file system holding {}, or choose another --output",
        dir.display()
    )
}

// Removes the temporary files of writers that are gone: those whose lock can be taken.
fn remove_abandoned(dir: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(prefix) {
            continue;
        }
        let Ok(file) = File::open(entry.path()) else {
            continue;
        };
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_fill_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.prom");
        fs::write(&path, "old\n").unwrap();
        let err = write_atomically(&path, |out| {
            out.write_all(b"half")?;
            anyhow::bail!("boom")
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("boom"));
        assert_eq!(fs::read_to_string(&path).unwrap(), "old\n");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        write_atomically(&path, |out| Ok(out.write_all(b"new\n")?)).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn abandoned_temporaries_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.prom");
        let abandoned = dir.path().join(".m.prom.tmp.111");
        let live = dir.path().join(".m.prom.tmp.222");
        let other = dir.path().join(".other.prom.tmp.333");
        for f in [&abandoned, &live, &other] {
            fs::write(f, "x").unwrap();
        }
        let holder = File::open(&live).unwrap();
        flock(&holder, FlockOperation::NonBlockingLockExclusive).unwrap();
        write_atomically(&path, |out| Ok(out.write_all(b"new\n")?)).unwrap();
        assert!(!abandoned.exists());
        assert!(live.exists(), "a writer still holds it");
        assert!(other.exists(), "another file's temporaries are not ours");
    }
}
