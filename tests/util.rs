//! Shared helpers: temporary stores, keys and time.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use recovery_store::{BackendKey, RecoveryStore, Timestamp};

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
