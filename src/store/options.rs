//! [`StoreOptions`]: how [`RecoveryStore::open_with`](crate::RecoveryStore::open_with) opens a
//! store (cache, creation, read-only, file mode, ownership trust, lock timeout).

use std::time::Duration;

use crate::policy::BackendRecoveryPolicy;
use crate::storage::OpenConfig;

/// Default redb page cache: a few MiB, plenty for tens of thousands of backends.
pub const DEFAULT_CACHE_SIZE: usize = 4 << 20;

/// Options for [`RecoveryStore::open_with`](crate::RecoveryStore::open_with).
#[derive(Clone, Debug)]
pub struct StoreOptions {
    policy: Option<BackendRecoveryPolicy>,
    cache_size: usize,
    create: bool,
    read_only: bool,
    mode: u32,
    trust_any_owner: bool,
    lock_timeout: Duration,
}

/// Default bound on every wait for another process's lock: 5 s.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            policy: None,
            cache_size: DEFAULT_CACHE_SIZE,
            create: true,
            read_only: false,
            mode: 0o600,
            trust_any_owner: false,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }
}

impl StoreOptions {
    /// Sets the store's policy. It is persisted in the file and applies to every process that
    /// opens the store. Without this, the policy already in the file is kept (the default
    /// policy for a new file). Opening an existing store with another policy than it holds
    /// writes an [`AuditAction::PolicySet`](crate::AuditAction) event; creating one does not.
    pub fn policy(mut self, policy: BackendRecoveryPolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Sets the page cache size in bytes (default [`DEFAULT_CACHE_SIZE`]).
    pub fn cache_size(mut self, bytes: usize) -> Self {
        self.cache_size = bytes;
        self
    }

    /// Whether a missing file is created (the default) or reported as
    /// [`StoreError::NotFound`](crate::StoreError::NotFound). Inspection tools turn this off so they never create a store.
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// Opens without ever writing to the file: inspection leaves a store byte-for-byte as it
    /// was. Implies `create_if_missing(false)`; a policy set with [`policy`](Self::policy) is
    /// ignored, and writes return [`StoreError::ReadOnly`](crate::StoreError::ReadOnly). Needs only read access: a store
    /// whose last writer died is answered from a repaired in-memory view of the file (memory
    /// bounded by what the repair writes, a few MiB per million entries), which does not see
    /// later commits by other processes until it is reopened.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// True when opened with [`read_only`](Self::read_only).
    pub(crate) fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Permission bits of a store this open creates (default `0o600`, in a `0o700`
    /// directory). `0o660` makes a store that the brokers of one group share: a directory
    /// created for it is setgid `0o2770`. Allowed: 0600, 0640, 0660, 0604, 0644; anything
    /// else fails the open with [`StoreError::InvalidOptions`](crate::StoreError::InvalidOptions). An existing empty file keeps
    /// its own owner, group and mode when it is made a store.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Skips the ownership checks (default `false`): normally the store and its directory
    /// must belong to the caller or root, others may not write them (group write only where
    /// set up for a group), and a symlink at the store path is refused, each with
    /// [`StoreError::Untrusted`](crate::StoreError::Untrusted). With `true`, all of that is accepted and a symlink is followed.
    pub fn trust_any_owner(mut self, trust: bool) -> Self {
        self.trust_any_owner = trust;
        self
    }

    /// Bounds every wait for a lock another process holds (default [`DEFAULT_LOCK_TIMEOUT`],
    /// 5 s): the write lock a write transaction or a writable open takes, the file header lock
    /// that opens, reads, commits and closes take briefly. A call whose wait runs out fails with
    /// [`StoreError::Busy`](crate::StoreError::Busy) and changes nothing; one that already holds the write lock gets a
    /// fresh bound for its commit. Waits on other threads of this process are not counted here,
    /// but each of those is bounded the same way.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// The policy given with [`policy`](Self::policy), if any.
    pub(crate) fn requested_policy(&self) -> Option<BackendRecoveryPolicy> {
        self.policy
    }

    pub(super) fn config(&self) -> OpenConfig {
        OpenConfig {
            lock_timeout: self.lock_timeout,
            cache_size: self.cache_size,
            create: self.create && !self.read_only,
            policy: self.policy.filter(|_| !self.read_only),
            read_only: self.read_only,
            mode: self.mode,
            trust_any_owner: self.trust_any_owner,
        }
    }
}
