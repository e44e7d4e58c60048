//! The file format: the committed v1 and v2 fixtures still open with the same contents, the `meta`
//! table says what the file is, and files this build must not touch are refused untouched.

use std::path::{Path, PathBuf};
use std::time::Duration;

use recovery_store::{
    BackendRecoveryPolicy, BootTime, RecoveryEntry, RecoveryStore, SCHEMA_VERSION, StoreError,
    StoreOptions, Timestamp,
};
use sha2::{Digest, Sha256};

use crate::util::{TempStore, key, rewrite_meta};

const ENTRIES: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("entries");
const META: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("meta");

pub(crate) fn fixture_path() -> PathBuf {
    fixture_of(1)
}

/// The committed fixture written by schema `version`.
pub(crate) fn fixture_of(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("migrations/fixtures/v{version}.redb"))
}

pub(crate) fn fixture_policy() -> BackendRecoveryPolicy {
    BackendRecoveryPolicy::new(Duration::from_millis(400), Duration::from_secs(45))
}

/// The entries written into the v1 fixture, covering every field shape the schema holds.
pub(crate) fn fixture_entries() -> Vec<RecoveryEntry> {
    let boot = |id, secs| BootTime {
        boot_id: id,
        since_boot: Duration::from_secs(secs),
    };
    vec![
        RecoveryEntry {
            key: key("explicit:ci/gamma@0.0.1#00ff"),
            window_started_at: Timestamp::from_parts(-1_000_000_123, None),
            crashes_in_window: 1,
            last_crash: Timestamp::from_parts(-1_000_000_123, None),
            total_crashes: 1,
        },
        RecoveryEntry {
            key: key("private:beta/beta@2.1.0-rc.1"),
            window_started_at: Timestamp::from_parts(1_767_225_600_000_000_000, Some(boot(7, 10))),
            crashes_in_window: 2,
            last_crash: Timestamp::from_parts(1_767_225_605_000_000_000, Some(boot(7, 15))),
            total_crashes: 9,
        },
        RecoveryEntry {
            key: key("shared/zccache@1.11.20"),
            window_started_at: Timestamp::from_parts(
                i64::MAX,
                Some(BootTime {
                    boot_id: u128::MAX,
                    since_boot: Duration::from_nanos(u64::MAX),
                }),
            ),
            crashes_in_window: u32::MAX,
            last_crash: Timestamp::from_parts(i64::MAX, None),
            total_crashes: u64::MAX,
        },
    ]
}

// `migrations/fixtures/v1.redb` was written by a schema 1 build with `fixture_policy()` and
// `replace_all(None, &fixture_entries())`. The schema 2 fixture (same entries and policy, plus
// crash histories, overrides and audit events) is written by the ignored
// `storage::fixture::write_v2_fixture` unit test, which also checks every table of it.

fn sha256(path: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(path).unwrap()).to_vec()
}

fn copy_fixture() -> TempStore {
    let t = TempStore::new();
    std::fs::copy(fixture_path(), &t.path).unwrap();
    t
}

#[test]
fn v1_fixture_opens_with_its_contents() {
    assert_eq!(SCHEMA_VERSION, 2);
    let t = copy_fixture();
    let store = t.open();
    assert_eq!(store.policy().unwrap(), fixture_policy());
    assert_eq!(store.list().unwrap(), fixture_entries());
    let (good, bad) = store.scan_all().unwrap();
    assert_eq!(good.len(), 3);
    assert!(bad.is_empty());
}

#[test]
fn v2_fixture_opens_with_its_contents() {
    for read_only in [true, false] {
        let t = TempStore::new();
        std::fs::copy(fixture_of(2), &t.path).unwrap();
        let before = sha256(&t.path);
        let store = RecoveryStore::open_with(&t.path, StoreOptions::default().read_only(read_only))
            .unwrap();
        assert_eq!(store.policy().unwrap(), fixture_policy());
        assert_eq!(store.list().unwrap(), fixture_entries());
        drop(store);
        if read_only {
            assert_eq!(sha256(&t.path), before);
        }
        assert!(!crate::migration::backup_of(&t.path, 2).exists());
    }
}

#[test]
fn v1_fixture_keeps_deciding() {
    let t = copy_fixture();
    let store = t.open();
    let k = key("private:beta/beta@2.1.0-rc.1");
    // Same boot as the stored window, 20 s into its 45 s window, already refused once.
    let now = Timestamp::from_parts(
        1_767_225_620_000_000_000,
        Some(BootTime {
            boot_id: 7,
            since_boot: Duration::from_secs(30),
        }),
    );
    assert_eq!(
        store.record_crash(&k, now).unwrap(),
        recovery_store::BackendRecoveryDecision::Refuse {
            reason: recovery_store::BackendRecoveryRefusalReason::BackendUnavailable,
            retry_after: Duration::from_secs(25),
        }
    );
    assert_eq!(store.get(&k).unwrap().unwrap().total_crashes, 10);
}

#[test]
fn meta_table_records_format_and_schema() {
    let t = TempStore::new();
    drop(t.open());
    let db = redb::Database::builder()
        .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
        .open(&t.path)
        .unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let meta = txn.open_table(META).unwrap();
    assert_eq!(
        meta.get(b"format".as_slice()).unwrap().unwrap().value(),
        b"recovery-store"
    );
    let version: u32 = postcard::from_bytes(
        meta.get(b"schema_version".as_slice())
            .unwrap()
            .unwrap()
            .value(),
    )
    .unwrap();
    assert_eq!(version, 2);
}

#[test]
fn newer_schema_is_refused_untouched() {
    let t = TempStore::new();
    t.open()
        .record_crash(&key("shared/a@1.0.0"), Timestamp::now())
        .unwrap();
    rewrite_meta(
        &t.path,
        b"schema_version",
        &postcard::to_allocvec(&3u32).unwrap(),
    );
    let before = sha256(&t.path);
    let err = RecoveryStore::open(&t.path).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NewerSchema {
                found: 3,
                supported: 2,
                ..
            }
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("schema 3") && message.contains("upgrade recovery-store"));
    assert_eq!(sha256(&t.path), before);
}

#[test]
fn foreign_redb_file_is_refused_untouched() {
    let t = TempStore::new();
    {
        let db = redb::Database::create(&t.path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(ENTRIES)
            .unwrap()
            .insert(b"x".as_slice(), b"y".as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let before = sha256(&t.path);
    let err = RecoveryStore::open(&t.path).unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
    assert!(err.to_string().contains(&t.path.display().to_string()));
    assert_eq!(sha256(&t.path), before);
}

#[test]
fn wrong_format_name_is_refused() {
    let t = TempStore::new();
    drop(t.open());
    rewrite_meta(&t.path, b"format", b"something-else");
    let before = sha256(&t.path);
    let err = RecoveryStore::open(&t.path).unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
    assert_eq!(sha256(&t.path), before);
}

#[test]
fn damaged_entry_is_an_error_naming_its_key() {
    let t = TempStore::new();
    let k = key("shared/a@1.0.0");
    t.open().record_crash(&k, Timestamp::now()).unwrap();
    {
        let db = redb::Database::builder()
            .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
            .open(&t.path)
            .unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(ENTRIES)
            .unwrap()
            .insert(b"shared/a@1.0.0".as_slice(), [0xFFu8; 3].as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let store = t.open();
    let err = store.get(&k).unwrap_err();
    assert!(
        matches!(&err, StoreError::CorruptEntry { key, .. } if key == "shared/a@1.0.0"),
        "{err}"
    );
    assert!(store.list().is_err());
    let (good, bad) = store.scan_all().unwrap();
    assert!(good.is_empty());
    assert_eq!(bad.len(), 1);
    // An operator can clear it, and the backend starts afresh.
    assert!(store.reset(&k).unwrap());
    assert!(store.get(&k).unwrap().is_none());
}

#[test]
fn special_files_are_refused_without_blocking() {
    let t = TempStore::new();
    let path = std::ffi::CString::new(t.path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `path` is a valid NUL-terminated string for the call.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let (tx, rx) = std::sync::mpsc::channel();
    let fifo = t.path.clone();
    std::thread::spawn(move || {
        let _ = tx.send(RecoveryStore::open(&fifo).map(|_| ()));
    });
    let err = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("open of a FIFO must not block")
        .unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
    assert!(err.to_string().contains("not a regular file"));
}

#[test]
fn plainly_foreign_files_are_named_for_what_they_are() {
    let t = TempStore::new();
    std::fs::write(&t.path, b"").unwrap();
    let read_only = recovery_store::StoreOptions::default().read_only(true);
    let err = RecoveryStore::open_with(&t.path, read_only).unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
    assert!(err.to_string().contains("(the file is empty;"), "{err}");
    for (bytes, detail) in [
        (&b"SQLite format 3\0"[..], "(it is not a redb database)"),
        (
            &b"redb"[..],
            "(the file is too short to be a redb database)",
        ),
    ] {
        std::fs::write(&t.path, bytes).unwrap();
        let err = RecoveryStore::open(&t.path).unwrap_err();
        assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
        assert!(err.to_string().contains(detail), "{err}");
        assert_eq!(std::fs::read(&t.path).unwrap(), bytes);
    }
}

#[test]
fn a_file_held_exclusively_by_another_program_is_reported_locked() {
    let t = TempStore::new();
    drop(t.open());
    let exclusive = redb::Database::open(&t.path).unwrap();
    let err = RecoveryStore::open(&t.path).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(err.to_string().contains(&t.path.display().to_string()));
    drop(exclusive);
    t.open();
}
