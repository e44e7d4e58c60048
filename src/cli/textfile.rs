//! Writing a file for node_exporter's textfile collector atomically: a temporary file in the
//! same directory, fsync, mode 0644, rename, fsync of the directory. A reader sees the old file
//! or the new one, never a part; no temporary file is left behind, failures included.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Writes what `fill` produces to `path`, atomically.
///
/// # Errors
///
/// `fill`'s error, or an I/O error naming the file; in every case `path` keeps its old
/// contents and the temporary file is removed.
pub fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file: give a file path", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
        let mut out = BufWriter::new(file);
        fill(&mut out)?;
        let file = out
            .into_inner()
            .map_err(io::IntoInnerError::into_error)
            .and_then(|f| {
                f.sync_all()?;
                Ok(f)
            })
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        // The umask may have narrowed the mode; the collector may run as another user.
        file.set_permissions(fs::Permissions::from_mode(0o644))
            .with_context(|| format!("cannot make {} readable", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| {
            format!("cannot move the new file into place at {}", path.display())
        })?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot sync directory {}", dir.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

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
        assert!(err.to_string().contains("boom"));
        assert_eq!(fs::read_to_string(&path).unwrap(), "old\n");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        write_atomically(&path, |out| Ok(out.write_all(b"new\n")?)).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
