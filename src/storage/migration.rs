//! Migrating a store of an older schema: the byte-identical backup under the migration lock,
//! then every step in one write transaction (see `migrations/README.md`).

use std::path::Path;
use std::sync::PoisonError;

use super::backend::Opener;
use super::files::{CREATION_LOCK_WAIT, MigrationLock, backup_path, copy_durably};
use super::opening::{Preflight, preflight, validate_copy};
use super::{OpenConfig, Origin, Storage};
use crate::error::StoreError;
use crate::migrations::{self, CURRENT_VERSION};

// Takes the migration lock on a file of an older schema and, unless another opener migrated it
// meanwhile, copies it byte for byte to its backup before redb first opens it writable.
pub(super) fn back_up_old_schema(
    path: &Path,
    config: &OpenConfig,
    opener: &Opener,
) -> Result<MigrationLock, StoreError> {
    let lock = MigrationLock::take(path, config.lock_timeout.max(CREATION_LOCK_WAIT))?;
    let found = match preflight(path, config.cache_size, opener)? {
        Preflight::NeedsMigration(db, found) => {
            drop(db);
            Some(found)
        }
        Preflight::NeedsRepair => {
            Some(validate_copy(path, opener)?).filter(|v| *v < CURRENT_VERSION)
        }
        Preflight::Ready(_) => None,
    };
    if let Some(found) = found {
        copy_durably(path, &backup_path(path, found))?;
    }
    Ok(lock)
}

impl Storage {
    // Runs every step in one write transaction, after reading the version again under the write
    // lock: of several handles migrating at once, the first migrates and the others find
    // nothing to do. A file is normally backed up by `open_engine` before redb first opens it
    // writable; one that needed redb's crash recovery first (its last writer died) is backed up
    // here, as recovered, under the migration lock and inside the write transaction, so no
    // commit can come between the copy and the migration. A caller's backend is not a file, so
    // it gets no backup.
    pub(super) fn migrate(&self) -> Result<(), StoreError> {
        let backed_up = self
            .engine
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .migrating
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        let back_up_here = matches!(self.origin, Origin::Path) && !backed_up;
        let _lock = if back_up_here {
            let wait = self.config.lock_timeout.max(CREATION_LOCK_WAIT);
            Some(MigrationLock::take(&self.path, wait)?)
        } else {
            None
        };
        self.write(|w| {
            let from = w.schema_version()?;
            if from >= CURRENT_VERSION {
                return Ok(());
            }
            if back_up_here {
                copy_durably(&self.path, &backup_path(&self.path, from))?;
            }
            for step in migrations::steps_from(from) {
                w.apply_step(step)?;
            }
            Ok(())
        })
    }
}
