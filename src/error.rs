//! The errors the library returns; each message says what to do next.

use std::path::PathBuf;

/// A backend key, or one part of it, that the broker's rules reject.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {part} {value:?}: {problem}")]
pub struct KeyError {
    part: &'static str,
    value: String,
    problem: String,
}

impl KeyError {
    pub(crate) fn new(part: &'static str, value: &str, problem: impl Into<String>) -> Self {
        // Keep hostile input from blowing up messages: show at most 80 characters of it.
        let value = match value.char_indices().nth(80) {
            Some((cut, _)) => format!("{}…", &value[..cut]),
            None => value.to_owned(),
        };
        Self {
            part,
            value,
            problem: problem.into(),
        }
    }

    /// Which part was rejected: `key`, `instance`, `service name`, `service version`, ….
    pub fn part(&self) -> &'static str {
        self.part
    }
}

/// Everything that can go wrong opening or using a [`RecoveryStore`](crate::RecoveryStore).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A key failed validation.
    #[error(transparent)]
    InvalidKey(#[from] KeyError),

    /// The store file does not exist and the operation may not create it.
    #[error("no recovery store at {path}: check the path, or record a crash to create one")]
    NotFound {
        /// The path that was looked up.
        path: PathBuf,
    },

    /// The file exists but is not a recovery store; it was left untouched.
    #[error(
        "{path} is not a recovery store ({detail}); it was left untouched: point at the right file or move this one aside"
    )]
    NotAStore {
        /// The file that was refused.
        path: PathBuf,
        /// What gave it away.
        detail: String,
    },

    /// The store was written by a newer schema than this build reads; it was left untouched.
    #[error(
        "store at {path} was written by schema {found}; this build reads up to {supported}: upgrade recovery-store"
    )]
    NewerSchema {
        /// The store file.
        path: PathBuf,
        /// The schema version recorded in the file.
        found: u32,
        /// The newest schema this build understands.
        supported: u32,
    },

    /// The file is a redb database whose contents are damaged.
    #[error(
        "store at {path} is damaged ({detail}): run `recovery-store check`, then restore from `export` output or move the file aside"
    )]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// What was found damaged.
        detail: String,
    },

    /// One stored entry could not be decoded.
    #[error(
        "entry {key:?} in {path} cannot be decoded ({detail}): clear it with `recovery-store reset --raw {}`",
        shell_quote(key)
    )]
    CorruptEntry {
        /// The store file.
        path: PathBuf,
        /// The raw stored key (sanitize before printing it to a terminal).
        key: String,
        /// Why decoding failed.
        detail: String,
    },

    /// One per-service or per-key policy override row could not be decoded. Only the keys it
    /// would judge (its key, or its service's keys without a key override) are affected: every
    /// call that judges one of them fails with this error rather than judging it by another
    /// policy. The message names the `policy unset` command that removes the row, or
    /// `check --drop-damaged` for a row whose scope cannot be typed.
    #[error(
        "policy override {scope:?} in {path} cannot be decoded ({detail}): {}",
        crate::overrides::remedy(scope)
    )]
    CorruptOverride {
        /// The store file.
        path: PathBuf,
        /// The stored scope text, `service:NAME` or `key:KEY` (lossy UTF-8; sanitize before
        /// printing it to a terminal).
        scope: String,
        /// Why decoding failed.
        detail: String,
    },

    /// One audit event could not be decoded. It changes no decision; the other events are
    /// still read.
    #[error(
        "audit event {seq} in {path} cannot be decoded ({detail}): it changes no decision and \
         the other events are still read; `recovery-store check --drop-damaged` removes it"
    )]
    CorruptAuditEvent {
        /// The store file.
        path: PathBuf,
        /// The event's sequence number.
        seq: u64,
        /// Why decoding failed.
        detail: String,
    },

    /// An I/O error on the store file or its directory. The call that met it changed nothing;
    /// the handle stays usable and works again once the condition clears. The message names the
    /// cause: a full filesystem (`ENOSPC`, `EDQUOT`), a read-only one (`EROFS`), a failing device
    /// (`EIO`), or anything else.
    #[error("{}", io_message(action, path, source))]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Another process holds the file with an incompatible redb locking mode or version.
    #[error(
        "store at {path} is held by another process that cannot share it ({detail}): stop that process or use the same recovery-store version"
    )]
    Locked {
        /// The store file.
        path: PathBuf,
        /// What redb reported.
        detail: String,
    },

    /// Another process held the store's lock for longer than the lock timeout (see
    /// [`StoreOptions::lock_timeout`](crate::StoreOptions::lock_timeout)): one stopped or stalled
    /// inside a transaction, say. Nothing was decided or changed; the call may be retried.
    #[error(
        "store at {path} is busy: gave up after {} waiting for {waited_for}; nothing was changed: retry, find the process that holds it (a stopped or stalled one, e.g. with `fuser -v {}`), or raise the lock timeout (--lock-timeout)",
        humantime::format_duration(std::time::Duration::from_millis(waited.as_millis() as u64)), path.display()
    )]
    Busy {
        /// The store file.
        path: PathBuf,
        /// Which lock was waited for.
        waited_for: &'static str,
        /// How long the call waited before giving up.
        waited: std::time::Duration,
    },

    /// An error from the storage engine.
    #[error(
        "storage error on {path}: {source}: retry, and run `recovery-store check` if it persists"
    )]
    Storage {
        /// The store file.
        path: PathBuf,
        /// The error the storage engine returned.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// A read-only open found a store of an older schema, which only a writable open migrates.
    /// No longer returned since schema 2 (read-only opens read an older schema as it is); kept
    /// so that matching code still compiles.
    #[error(
        "store at {path} uses schema {found}; this build writes schema {current}: open it once with a write command (e.g. `recovery-store prune`) to migrate it"
    )]
    NeedsMigration {
        /// The store file.
        path: PathBuf,
        /// The schema version recorded in the file.
        found: u32,
        /// The schema this build writes.
        current: u32,
    },

    /// A write was attempted through a handle opened read-only.
    #[error("store at {path} was opened read-only: open it without `read_only` to change it")]
    ReadOnly {
        /// The store file.
        path: PathBuf,
    },

    /// A policy the store cannot hold.
    #[error("invalid policy: {detail}")]
    InvalidPolicy {
        /// What was wrong with it.
        detail: String,
    },

    /// The store file or its directory belongs to someone the caller should not trust, can be
    /// written by others, or the store path is a symbolic link (see the README's ownership
    /// rules). Nothing was opened.
    #[error(
        "refusing {path} (owner uid {owner}, group gid {group}, mode {mode:04o}): {problem}: {remedy}"
    )]
    Untrusted {
        /// The file or directory refused.
        path: PathBuf,
        /// Its owner's uid.
        owner: u32,
        /// Its group's gid.
        group: u32,
        /// Its permission bits (with setuid, setgid and sticky).
        mode: u32,
        /// What is wrong with it.
        problem: String,
        /// What to do about it.
        remedy: String,
    },

    /// The store's last writer died mid-write, and its crash recovery needs a handle that can
    /// write the file, which this process cannot have. Read-only opens never need it.
    #[error(
        "store at {path} was left by a writer that died and needs crash recovery, which this process cannot write ({source}): run `recovery-store check` as a user who can write {path}, on a writable mount"
    )]
    NeedsRecovery {
        /// The store file.
        path: PathBuf,
        /// Why it cannot be written.
        #[source]
        source: std::io::Error,
    },

    /// Options the store cannot be opened with, such as a file mode outside 0600..=0660.
    #[error("invalid store options: {detail}")]
    InvalidOptions {
        /// What was wrong with them.
        detail: String,
    },

    /// An import document did not validate.
    #[error("cannot import: {detail}: fix the document and run the import again")]
    InvalidImport {
        /// What was wrong with it.
        detail: String,
    },

    /// A crash report no process could have ended with: an exit status outside 0..=255, a
    /// signal outside 1..=64, or both at once. Nothing was recorded.
    #[error(
        "invalid crash report: {detail}: pass the exit status (0-255) or the signal (1-64), or neither"
    )]
    InvalidCrashReport {
        /// What was wrong with it.
        detail: String,
    },

    /// An import would overwrite state the store holds (entries, or a policy or override other
    /// than the import's) and overwriting was not asked for. Checked inside the import's
    /// transaction, so state another process committed meanwhile is never lost unseen; nothing
    /// was written.
    #[error(
        "{detail}, and overwriting was not asked for: nothing was written; let the import \
         overwrite them (`import --yes`, or `overwrite: true`) or leave the store as it is"
    )]
    ImportConflict {
        /// What the store holds that the import would overwrite (the first few named).
        detail: String,
    },
}

impl StoreError {
    /// True for errors that say the file is not usable as a store as it stands (foreign,
    /// damaged, newer, missing), as opposed to a passing I/O or storage failure.
    pub fn is_bad_file(&self) -> bool {
        matches!(
            self,
            Self::NotFound { .. }
                | Self::NotAStore { .. }
                | Self::NewerSchema { .. }
                | Self::Corrupt { .. }
                | Self::CorruptEntry { .. }
                | Self::CorruptOverride { .. }
        )
    }
}

// The advice depends on the cause: a full disk wants space, not a permissions check.
fn io_message(action: &str, path: &std::path::Path, source: &std::io::Error) -> String {
    let path = path.display();
    let advice = match source.raw_os_error() {
        Some(libc::ENOSPC) => {
            return format!(
                "{action} {path}: no space left on the filesystem holding {path}: free space and retry"
            );
        }
        Some(libc::EDQUOT) => {
            return format!(
                "{action} {path}: disk quota exceeded on the filesystem holding {path}: free space or raise the quota, and retry"
            );
        }
        Some(libc::EROFS) => {
            return format!(
                "{action} {path}: the filesystem holding {path} is read-only: remount it read-write (or point --db at a writable one) and retry"
            );
        }
        Some(libc::EIO) => {
            return format!(
                "{action} {path}: the device holding {path} reported an I/O error: check the disk and the kernel log, then run `recovery-store check`"
            );
        }
        _ => "check the path and its permissions",
    };
    format!("{action} {path}: {source}: {advice}")
}

/// `text` in single quotes for a POSIX shell (`'` written as `'\''`), as the CLI quotes the
/// commands it suggests.
pub(crate) fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}
