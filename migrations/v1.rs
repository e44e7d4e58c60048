//! Schema 1: frozen record types. Never change them; add a `v2` instead.

use serde::{Deserialize, Serialize};

/// Name of the table holding one [`Entry`] per backend, keyed by canonical key text.
pub(crate) const ENTRIES_TABLE: &str = "entries";
/// Name of the table holding the format name, schema version and policy.
pub(crate) const META_TABLE: &str = "meta";
/// `meta` key: the bytes of [`FORMAT_NAME`](super::FORMAT_NAME).
pub(crate) const META_FORMAT: &[u8] = b"format";
/// `meta` key: the schema version, a postcard `u32`.
pub(crate) const META_SCHEMA_VERSION: &[u8] = b"schema_version";
/// `meta` key: the store's [`Policy`].
pub(crate) const META_POLICY: &[u8] = b"policy";

/// A boot-clock reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Boot {
    pub boot_id: u128,
    pub since_boot_nanos: u64,
}

/// A point in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stamp {
    pub unix_nanos: i64,
    pub boot: Option<Boot>,
}

/// One backend's recovery window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub window_started_at: Stamp,
    pub crashes_in_window: u32,
    pub last_crash: Stamp,
    pub total_crashes: u64,
}

/// The recovery policy, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Policy {
    pub retry_backoff_nanos: u64,
    pub budget_window_nanos: u64,
}
