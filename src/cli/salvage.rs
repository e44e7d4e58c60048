//! What `check` says about a file it cannot open, and `check --salvage`: an export document
//! of every entry that can still be decoded. The store itself is never changed: a file that
//! cannot be opened is repaired on a private copy, which is then read and removed.

use std::fs::{self, DirBuilder, File};
use std::io::{Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use recovery_store::{RecoveryStore, StoreError, StoreOptions};

use super::sanitize::sanitize_lossy;
use super::{Ctx, transfer};

/// redb's magic number, the first bytes of every redb file.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];
/// redb's page size: an intact file is a whole number of pages.
const PAGE: u64 = 4096;

/// What is wrong with a file that cannot be opened as a store.
#[derive(Debug)]
pub struct Diagnosis {
    /// `truncated`, `bad_header`, `foreign`, `newer_schema` or `damaged`.
    pub problem: &'static str,
    /// What was found, in words.
    pub detail: String,
    /// Entries a salvage would recover (`None`: nothing can be decoded).
    pub salvageable: Option<usize>,
    /// What the operator can do now; never "run check".
    pub next_step: String,
}

/// Diagnoses a file the store refused with `err`; `None` for errors that are not about the
/// file's contents (permissions, locks), which are reported as they are.
pub fn diagnose(path: &Path, err: &StoreError) -> Option<Diagnosis> {
    let shown = sanitize_lossy(path);
    let salvage_step = |n: usize| {
        format!(
            "{n} entr{} can be saved: `recovery-store --db {shown} check --salvage saved.json`, \
             then move {shown} aside and `recovery-store --db {shown} import saved.json`",
            if n == 1 { "y" } else { "ies" }
        )
    };
    let nothing = format!(
        "nothing can be decoded: move {shown} aside, then restore your last `export` with \
         `recovery-store import` (or let record-crash create a new store)"
    );
    let (problem, detail) = match err {
        StoreError::NewerSchema {
            found, supported, ..
        } => {
            return Some(Diagnosis {
                problem: "newer_schema",
                detail: format!(
                    "written by schema {found}; this build reads up to schema {supported}"
                ),
                salvageable: None,
                next_step: "the file is intact: upgrade recovery-store to read it, and leave \
                            it as it is until then"
                    .into(),
            });
        }
        StoreError::NotAStore { detail, .. } => {
            let head = head(path);
            let (problem, detail) = if detail.contains("too short") {
                ("truncated", detail.clone())
            } else if head.starts_with(&REDB_MAGIC) {
                (
                    "foreign",
                    format!("{detail}: a redb database of another program"),
                )
            } else if head.is_empty()
                || head.starts_with(&REDB_MAGIC[..4])
                || head.iter().all(|b| *b == 0)
            {
                (
                    "bad_header",
                    format!("{detail}: its first bytes are not redb's magic number"),
                )
            } else {
                (
                    "foreign",
                    format!("{detail}: it holds some other program's data"),
                )
            };
            if problem == "foreign" {
                return Some(Diagnosis {
                    problem,
                    detail,
                    salvageable: None,
                    next_step: format!(
                        "this is not a recovery store, so nothing here is yours to salvage: \
                         point --db at the right file, or move {shown} aside"
                    ),
                });
            }
            (problem, detail)
        }
        StoreError::Corrupt { detail, .. } => {
            let head = head(path);
            let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            if !head.starts_with(&REDB_MAGIC) {
                (
                    "bad_header",
                    format!("{detail}; redb's magic number is damaged"),
                )
            } else if detail.to_lowercase().contains("truncated")
                || detail.contains("shorter than")
                || !len.is_multiple_of(PAGE)
            {
                let size = if detail.contains("file_len") {
                    String::new()
                } else {
                    format!(" ({len} bytes)")
                };
                ("truncated", format!("{detail}{size}"))
            } else {
                ("damaged", detail.clone())
            }
        }
        StoreError::CorruptEntry { .. } | StoreError::NeedsMigration { .. } => return None,
        _ => return None,
    };
    let salvageable = count_from_copy(path);
    Some(Diagnosis {
        problem,
        detail,
        next_step: match salvageable {
            Some(n) => salvage_step(n),
            None => nothing,
        },
        salvageable,
    })
}

/// The first bytes of the file (fewer if it is shorter or unreadable).
fn head(path: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Ok(file) = File::open(path) {
        let _ = file.take(REDB_MAGIC.len() as u64).read_to_end(&mut bytes);
    }
    bytes
}

/// A private directory for a copy of the store, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> std::io::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "recovery-store-salvage-{}-{nanos}",
            std::process::id()
        ));
        DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Opens a repaired copy of `path`; `None` when even the copy cannot be opened.
///
/// On the copy, a damaged magic number is written back, and a file cut short in its unused
/// tail (redb reports `layout_len=N`) is padded back to its length with zeros: every page that
/// holds data is still there.
fn open_copy(path: &Path) -> Option<(Scratch, RecoveryStore)> {
    let scratch = Scratch::new().ok()?;
    let copy = scratch.0.join("copy.redb");
    fs::copy(path, &copy).ok()?;
    let magic = head(&copy);
    if magic != REDB_MAGIC && (magic.starts_with(&REDB_MAGIC[..4]) || magic.iter().all(|b| *b == 0))
    {
        use std::os::unix::fs::FileExt as _;
        let file = fs::OpenOptions::new().write(true).open(&copy).ok()?;
        file.write_all_at(&REDB_MAGIC, 0).ok()?;
    }
    let open = || RecoveryStore::open_with(&copy, StoreOptions::default().create_if_missing(false));
    let store = match open() {
        Ok(store) => store,
        Err(StoreError::Corrupt { detail, .. }) => {
            let want = layout_len(&detail)?;
            let file = fs::OpenOptions::new().write(true).open(&copy).ok()?;
            if file.metadata().ok()?.len() >= want {
                return None;
            }
            file.set_len(want).ok()?;
            open().ok()?
        }
        Err(_) => return None,
    };
    Some((scratch, store))
}

/// The length redb's layout says the file has, from its error text.
fn layout_len(detail: &str) -> Option<u64> {
    let rest = &detail[detail.find("layout_len=")? + "layout_len=".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// How many entries a repaired copy still decodes.
fn count_from_copy(path: &Path) -> Option<usize> {
    let (_scratch, store) = open_copy(path)?;
    let mut n = 0usize;
    store
        .for_each_entry("", |entry| {
            if entry.is_ok() {
                n += 1;
            }
            Ok(())
        })
        .ok()?;
    Some(n)
}

/// `check --salvage FILE` on a store that opens: the export document of what decodes.
/// Returns how many entries were written.
pub fn write(ctx: &Ctx, store: &RecoveryStore, target: &Path) -> anyhow::Result<usize> {
    let mut written = 0;
    write_to(target, |mut out| {
        written = transfer::write_export(store, &ctx.now(), &mut out)?.written;
        Ok(())
    })?;
    Ok(written)
}

/// `check --salvage FILE` on a file that cannot be opened: the export document of what a
/// repaired copy decodes. Returns how many entries were written.
pub fn write_from_copy(ctx: &Ctx, target: &Path) -> anyhow::Result<usize> {
    let Some((_scratch, store)) = open_copy(&ctx.path) else {
        anyhow::bail!(
            "nothing in {} can be decoded, so no salvage was written: restore your last \
             `export` with `recovery-store import`",
            ctx.shown_path()
        );
    };
    let mut written = 0;
    write_to(target, |mut out| {
        written = transfer::write_export(&store, &ctx.now(), &mut out)?.written;
        Ok(())
    })?;
    Ok(written)
}

/// Writes a document to `target` (`-` for stdout) through a temporary file renamed into
/// place, so a failed salvage never leaves half a document.
fn write_to(
    target: &Path,
    body: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if target.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        return body(&mut out);
    }
    let shown = sanitize_lossy(target);
    let partial = target.with_extension("partial");
    let mut file = File::create(&partial)
        .with_context(|| format!("cannot write the salvage to {shown}: check the path"))?;
    let written = body(&mut file).and_then(|()| Ok(file.sync_all()?));
    if let Err(e) = written {
        let _ = fs::remove_file(&partial);
        return Err(e);
    }
    fs::rename(&partial, target)
        .with_context(|| format!("cannot write the salvage to {shown}: check the path"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_length_is_read_from_redbs_message() {
        assert_eq!(
            layout_len("File truncated below stored layout: file_len=73728, layout_len=81920"),
            Some(81_920)
        );
        assert_eq!(layout_len("failed to fill whole buffer"), None);
    }
}
