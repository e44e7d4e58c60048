//! The committed schema 2 fixture (`migrations/fixtures/v2.redb`): what it holds, a by-hand
//! writer, and a test that every build decodes every table of it to exactly that. It covers
//! every field shape of schema 2, including the `policy_overrides` and `audit` tables whose
//! writing code comes later, so their encoding is frozen from the start.

use std::path::PathBuf;
use std::time::Duration;

use crate::migrations::v2::{AuditAction, AuditEvent, Boot, Policy, Stamp};
use crate::record::CrashRecord;
use crate::{
    BackendRecoveryPolicy, BootTime, RecoveryEntry, RecoveryStore, StoreOptions, Timestamp,
};

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("migrations/fixtures/v2.redb")
}

/// The default policy stored in the fixture (tests/format.rs states it again).
fn policy() -> BackendRecoveryPolicy {
    BackendRecoveryPolicy::new(Duration::from_millis(400), Duration::from_secs(45))
}

fn crash(
    at: i64,
    exit_code: Option<i32>,
    signal: Option<i32>,
    who: Option<(u32, u32)>,
) -> CrashRecord {
    CrashRecord {
        at: Timestamp::from_parts(at, None),
        exit_code,
        signal,
        pid: who.map(|w| w.0),
        uid: who.map(|w| w.1),
    }
}

/// The fixture's entries and their histories (tests/format.rs states the entries again).
fn entries() -> Vec<(RecoveryEntry, Vec<CrashRecord>)> {
    let boot = |id, secs| BootTime {
        boot_id: id,
        since_boot: Duration::from_secs(secs),
    };
    let full: Vec<CrashRecord> = (0..16)
        .map(|i| {
            crash(
                1_767_225_000_000_000_000 + i,
                Some(i as i32 - 8),
                None,
                Some((u32::MAX, u32::MAX)),
            )
        })
        .collect();
    vec![
        (
            RecoveryEntry {
                key: "explicit:ci/gamma@0.0.1#00ff".parse().unwrap(),
                window_started_at: Timestamp::from_parts(-1_000_000_123, None),
                crashes_in_window: 1,
                last_crash: Timestamp::from_parts(-1_000_000_123, None),
                total_crashes: 1,
            },
            vec![crash(-1_000_000_123, None, None, None)],
        ),
        (
            RecoveryEntry {
                key: "private:beta/beta@2.1.0-rc.1".parse().unwrap(),
                window_started_at: Timestamp::from_parts(
                    1_767_225_600_000_000_000,
                    Some(boot(7, 10)),
                ),
                crashes_in_window: 2,
                last_crash: Timestamp::from_parts(1_767_225_605_000_000_000, Some(boot(7, 15))),
                total_crashes: 9,
            },
            vec![
                CrashRecord {
                    at: Timestamp::from_parts(1_767_225_600_000_000_000, Some(boot(7, 10))),
                    exit_code: Some(3),
                    signal: None,
                    pid: Some(4242),
                    uid: Some(0),
                },
                CrashRecord {
                    at: Timestamp::from_parts(1_767_225_605_000_000_000, Some(boot(7, 15))),
                    exit_code: None,
                    signal: Some(9),
                    pid: Some(1),
                    uid: Some(65534),
                },
            ],
        ),
        (
            RecoveryEntry {
                key: "shared/zccache@1.11.20".parse().unwrap(),
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
            full,
        ),
    ]
}

fn overrides() -> Vec<(&'static str, Policy)> {
    vec![
        (
            "key:shared/zccache@1.11.20",
            Policy {
                retry_backoff_nanos: 0,
                budget_window_nanos: u64::MAX,
                retries_per_window: u32::MAX,
            },
        ),
        (
            "service:zccache",
            Policy {
                retry_backoff_nanos: 1_000_000_000,
                budget_window_nanos: 60_000_000_000,
                retries_per_window: 3,
            },
        ),
    ]
}

fn audit() -> Vec<(u64, AuditEvent)> {
    let at = |n| Stamp {
        unix_nanos: n,
        boot: Some(Boot {
            boot_id: 7,
            since_boot_nanos: 99,
        }),
    };
    let event = |action, key: Option<&str>, scope: Option<&str>, reason: Option<&str>| AuditEvent {
        at: at(1_767_225_700_000_000_000),
        action,
        key: key.map(str::to_owned),
        scope: scope.map(str::to_owned),
        uid: Some(1000),
        user: Some("op".into()),
        pid: Some(77),
        reason: reason.map(str::to_owned),
    };
    vec![
        (
            1,
            event(
                AuditAction::Reset,
                Some("shared/a@1.0.0"),
                None,
                Some("hotfix deployed"),
            ),
        ),
        (
            2,
            event(AuditAction::ResetScope, None, Some("prefix:shared/"), None),
        ),
        (
            3,
            event(AuditAction::Success, Some("shared/a@1.0.0"), None, None),
        ),
        (
            4,
            event(
                AuditAction::PolicySet,
                None,
                Some("service:zccache"),
                Some("flaky disk"),
            ),
        ),
        (
            5,
            event(
                AuditAction::PolicyUnset,
                None,
                Some("key:shared/a@1.0.0"),
                None,
            ),
        ),
        (6, event(AuditAction::Import, None, Some("all"), None)),
        (
            u64::MAX,
            AuditEvent {
                at: Stamp {
                    unix_nanos: i64::MIN,
                    boot: None,
                },
                action: AuditAction::Prune,
                key: None,
                scope: Some("all".into()),
                uid: None,
                user: None,
                pid: None,
                reason: None,
            },
        ),
    ]
}

/// Writes `migrations/fixtures/v2.redb`. Run once, by hand, when schema 2 was made:
/// `cargo test --lib storage::fixture::write_v2_fixture -- --ignored`.
#[test]
#[ignore = "writes the committed fixture; run by hand when creating a schema version"]
fn write_v2_fixture() {
    let path = fixture_path();
    let _ = std::fs::remove_file(&path);
    let store = RecoveryStore::open_with(&path, StoreOptions::default().policy(policy())).unwrap();
    store
        .storage()
        .write(|w| {
            for (entry, history) in entries() {
                w.put_with_history(&entry, &history)?;
            }
            let overrides: Vec<_> = overrides()
                .into_iter()
                .map(|(scope, p)| (scope, postcard::to_allocvec(&p).unwrap()))
                .collect();
            let audit: Vec<_> = audit()
                .into_iter()
                .map(|(seq, e)| (seq, postcard::to_allocvec(&e).unwrap()))
                .collect();
            w.put_raw_extras(&overrides, &audit)
        })
        .unwrap();
}

// Guards the schema 2 format: the committed fixture decodes, table by table, to exactly what
// was written, with every field in place.
#[test]
fn v2_fixture_decodes_to_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.redb");
    std::fs::copy(fixture_path(), &path).unwrap();
    let store = RecoveryStore::open(&path).unwrap();
    assert_eq!(store.policy().unwrap(), policy());
    let (entries_found, (overrides_found, audit_found)) = store
        .storage()
        .write(|w| {
            let mut found = Vec::new();
            for (entry, _) in entries() {
                let key = entry.key.to_string();
                found.push((w.get(&entry.key)?.unwrap(), w.history(&key)?));
            }
            Ok((found, w.raw_extras()?))
        })
        .unwrap();
    assert_eq!(entries_found, entries());
    let overrides_found: Vec<(String, Policy)> = overrides_found
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8(k.clone()).unwrap(),
                postcard::from_bytes(v).unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, Policy)> = overrides()
        .into_iter()
        .map(|(k, p)| (k.to_owned(), p))
        .collect();
    assert_eq!(overrides_found, expected);
    let audit_found: Vec<(u64, AuditEvent)> = audit_found
        .iter()
        .map(|(k, v)| (*k, postcard::from_bytes(v).unwrap()))
        .collect();
    assert_eq!(audit_found, audit());
}
