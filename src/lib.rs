//! Durable crash-recovery windows for process brokers.
//!
//! A broker that restarts crashed backends follows a recovery policy: the first crash in a
//! budget window (30 s by default) earns one retry after a short backoff (250 ms); a second
//! crash in the same window refuses the backend as unavailable until the window ends; a healthy
//! backend clears its state. Kept in memory, that state dies with the broker, and a
//! crash-looping backend gets fresh retries after every broker restart.
//!
//! This crate keeps the policy as a pure state machine and stores its state in a
//! redb file:
//!
//! - [`RecoveryStore`] decides exactly as the in-memory policy does, and commits every decision
//!   durably before returning it. Several processes may share one file.
//! - [`Timestamp`] anchors windows to the wall clock and, within one boot, measures them on the
//!   boot clock, so windows survive restarts and reboots, and clock steps cannot trap a backend.
//! - [`BackendRecoveryState`] is the in-memory policy, a drop-in for the broker's own module.
//!
//! ```
//! use std::time::Duration;
//! use recovery_store::{
//!     BackendKey, BackendRecoveryDecision, BackendStatus, RecoveryStore, Timestamp,
//! };
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("recovery.redb");
//! let key: BackendKey = "shared/zccache@1.11.20".parse()?;
//! let now = Timestamp::now();
//!
//! let store = RecoveryStore::open(&path)?;
//! let first = store.record_crash(&key, now)?;
//! assert_eq!(
//!     first,
//!     BackendRecoveryDecision::Retry { retry_after: Duration::from_millis(250), attempt: 1 }
//! );
//! drop(store); // the broker restarts...
//!
//! let store = RecoveryStore::open(&path)?; // ...and the window is still there.
//! let second = store.record_crash(&key, now + Duration::from_secs(10))?;
//! assert!(matches!(second, BackendRecoveryDecision::Refuse { retry_after, .. }
//!     if retry_after == Duration::from_secs(20)));
//! assert!(matches!(
//!     store.status(&key, now + Duration::from_secs(10))?,
//!     BackendStatus::Refused { .. }
//! ));
//!
//! store.record_success(&key)?; // healthy again: the state is cleared
//! assert_eq!(store.status(&key, now)?, BackendStatus::Healthy);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod audit;
mod chunked;
mod durable;
mod error;
mod group;
mod key;
mod memory;
mod merge;
#[path = "../migrations/mod.rs"]
mod migrations;
mod overrides;
mod policy;
mod record;
mod restore;
mod snapshot;
mod storage;
mod store;
mod time;
mod window;

pub use audit::{AUDIT_LIMIT, AuditAction, AuditEvent};
pub use chunked::CHUNK;
pub use durable::{
    DurableRecoveryState, FIRST_RETRY_INTERVAL, MAX_PENDING, MAX_RETRY_INTERVAL, StoreHealth,
};
pub use error::{KeyError, StoreError};
pub use key::{
    BackendKey, BrokerInstanceKey, MAX_EXE_HASH_LEN, MAX_KEY_LEN, MAX_NAME_LEN, MAX_VERSION_LEN,
};
pub use memory::BackendRecoveryState;
pub use overrides::{AppliedPolicy, Policies, PolicyScope};
pub use overrides::{DamagedOverride, StoredPolicies};
pub use policy::{
    BackendRecoveryDecision, BackendRecoveryPolicy, BackendRecoveryRefusalReason, BackendStatus,
    DEFAULT_RECOVERY_BUDGET_WINDOW, DEFAULT_RECOVERY_RETRY_BACKOFF, DEFAULT_SPAWN_BUDGET_WINDOW,
};
pub use policy::{
    DEFAULT_RETRIES_PER_WINDOW, MAX_RETRIES_PER_WINDOW, RecoveryPolicy, validate_retries,
};
pub use record::{
    CrashRecord, CrashReport, HISTORY_LIMIT, MAX_POLICY_DURATION, MAX_SIGNAL, RecoveryEntry,
};
pub use restore::{ImportMode, ImportOutcome, StoreImage};
pub use snapshot::Snapshot;
pub use storage::StorageBackend;
pub use store::{
    DEFAULT_CACHE_SIZE, DEFAULT_LOCK_TIMEOUT, DroppedRows, RecoveryStore, StoreOptions, status_of,
};
pub use time::{BootTime, Timestamp};
pub use window::status_under;

/// The schema version this build writes (2); older files are migrated by the first writable
/// open (after a byte-identical backup beside them) and read as they are by read-only opens;
/// newer ones are refused untouched.
pub const SCHEMA_VERSION: u32 = migrations::CURRENT_VERSION;

// Runs the README's Rust examples as doctests, so the README cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
