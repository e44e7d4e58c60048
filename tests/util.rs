//! Shared helpers: temporary stores, keys and time.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use recovery_store::{BackendKey, RecoveryEntry, RecoveryStore, Timestamp};

/// A temporary directory holding a store path (the file is not created).
pub struct TempStore {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl TempStore {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("recovery.redb");
        Self { dir, path }
    }

    pub fn open(&self) -> RecoveryStore {
        RecoveryStore::open(&self.path).expect("open store")
    }
}

pub fn key(text: &str) -> BackendKey {
    text.parse().expect("valid key")
}

/// An entry of `text` with one crash, its window opened at [`at`]`(0.0)`.
pub fn entry(text: &str) -> RecoveryEntry {
    RecoveryEntry {
        key: key(text),
        window_started_at: at(0.0),
        crashes_in_window: 1,
        last_crash: at(0.0),
        total_crashes: 1,
    }
}

/// A wall-clock-only timestamp `secs` seconds after a fixed base (2026-01-01).
pub fn at(secs: f64) -> Timestamp {
    let offset = Duration::from_secs_f64(secs.abs());
    Timestamp::from_wall(if secs < 0.0 {
        base() - offset
    } else {
        base() + offset
    })
}

pub fn base() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

/// The path of the built CLI binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_recovery-store"))
}

/// A small deterministic generator (SplitMix64) for seeded test randomness.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

/// True when the named environment variable is set to something other than `0` or empty.
pub fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The SHA-256 of a file's bytes, to show that something left it untouched.
pub fn digest(path: &std::path::Path) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(std::fs::read(path).expect("read file")).to_vec()
}

/// Rewrites one `meta` key of a store the way a future schema (or damage) would, bypassing the
/// library.
pub fn rewrite_meta(path: &std::path::Path, key: &[u8], value: &[u8]) {
    let db = redb::Database::builder()
        .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
        .open(path)
        .unwrap();
    let txn = db.begin_write().unwrap();
    {
        let meta: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("meta");
        txn.open_table(meta).unwrap().insert(key, value).unwrap();
    }
    txn.commit().unwrap();
}

/// A child process that is killed and reaped when dropped, so a failing test never leaves a
/// `run --wait` (or any endless child) behind holding the test harness's output open.
pub struct Reaped(Option<std::process::Child>);

impl Reaped {
    pub fn new(child: std::process::Child) -> Self {
        Self(Some(child))
    }

    /// Takes the child back, for `wait_with_output` and the like.
    pub fn into_inner(mut self) -> std::process::Child {
        self.0.take().expect("child present until dropped")
    }
}

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;

    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("child present until dropped")
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.0.as_mut().expect("child present until dropped")
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
