//! Turning the storage engine's failures, panics included, into [`StoreError`]s.

use std::io::ErrorKind;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use crate::error::StoreError;

/// Runs a storage-engine call, turning a panic inside it into [`StoreError::Corrupt`].
pub(super) fn guarded<T>(
    path: &Path,
    action: &str,
    f: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown failure".into());
        Err(StoreError::Corrupt {
            path: path.to_owned(),
            detail: format!("the storage engine failed while {action}: {message}"),
        })
    })
}

pub(super) fn engine_err(path: &Path, e: impl Into<redb::Error>) -> StoreError {
    let path = path.to_owned();
    match e.into() {
        redb::Error::Corrupted(detail) => StoreError::Corrupt { path, detail },
        redb::Error::DatabaseAlreadyOpen => StoreError::Locked {
            path,
            detail: "opened exclusively by another program".into(),
        },
        redb::Error::LockProtocolMismatch => StoreError::Locked {
            path,
            detail: "another process uses a different redb locking protocol".into(),
        },
        redb::Error::UpgradeRequired(version) => StoreError::NotAStore {
            path,
            detail: format!("redb file format {version}, which this build does not read"),
        },
        redb::Error::Io(e) if e.kind() == ErrorKind::InvalidData => StoreError::NotAStore {
            path,
            detail: format!("not a redb database: {e}"),
        },
        redb::Error::Io(e) if e.kind() == ErrorKind::UnexpectedEof => StoreError::Corrupt {
            path,
            detail: format!("the file is shorter than its header says: {e}"),
        },
        redb::Error::Io(source) => StoreError::Io {
            action: "I/O failed on",
            path,
            source,
        },
        other => StoreError::Storage {
            path,
            source: Box::new(other),
        },
    }
}

pub(super) fn encode_err(path: &Path, e: postcard::Error) -> StoreError {
    StoreError::Storage {
        path: path.to_owned(),
        source: Box::new(e),
    }
}

pub(super) fn not_a_store(path: &Path) -> StoreError {
    StoreError::NotAStore {
        path: path.to_owned(),
        detail: "a redb database without recovery-store metadata".into(),
    }
}

pub(super) fn missing_meta(path: &Path, what: &str) -> StoreError {
    StoreError::Corrupt {
        path: path.to_owned(),
        detail: format!("meta table has no {what}"),
    }
}
