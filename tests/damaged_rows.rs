//! Damaged rows of schema 2's `policy_overrides` and `audit` tables, through the library: a
//! damaged override stops only the keys it would judge, with an error naming its scope and the
//! command that removes it; the strict readers name the row; the snapshot readers read past it;
//! a damaged audit event is named by its sequence number. Rows are damaged by writing raw bytes
//! beside the library, as a bit flip or a foreign writer would.

use std::path::Path;
use std::time::Instant;

use recovery_store::{
    BackendKey, DurableRecoveryState, PolicyScope, RecoveryPolicy, StoreError, StoreHealth,
    Timestamp,
};

use crate::util::{TempStore, key};

const OVERRIDES: redb::TableDefinition<&[u8], &[u8]> =
    redb::TableDefinition::new("policy_overrides");
const AUDIT: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("audit");

/// Bytes no stored policy or audit event decodes from.
pub const GARBAGE: &[u8] = &[0xFF, 0xFF, 0xFF];

fn raw_write(path: &Path, write: impl FnOnce(&redb::WriteTransaction)) {
    let db = redb::Database::builder()
        .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
        .open(path)
        .unwrap();
    let txn = db.begin_write().unwrap();
    write(&txn);
    txn.commit().unwrap();
}

/// Stores `value` under the override scope text `scope`, bypassing the library.
pub fn put_override(path: &Path, scope: &[u8], value: &[u8]) {
    raw_write(path, |txn| {
        txn.open_table(OVERRIDES)
            .unwrap()
            .insert(scope, value)
            .unwrap();
    });
}

/// Overwrites the first audit event with bytes that do not decode; returns its number.
pub fn damage_first_audit_event(path: &Path) -> u64 {
    let mut seq = 0;
    raw_write(path, |txn| {
        let mut table = txn.open_table(AUDIT).unwrap();
        seq = redb::ReadableTable::first(&table)
            .unwrap()
            .unwrap()
            .0
            .value();
        table.insert(seq, GARBAGE).unwrap();
    });
    seq
}

fn names_scope(err: &StoreError, scope: &str) -> bool {
    matches!(err, StoreError::CorruptOverride { scope: s, .. } if s == scope)
}

/// A store with overrides for `zc` (then damaged) and `good`, and one crash of the key the
/// first judges (returned first; the second is judged by `good`).
fn damaged_store() -> (TempStore, BackendKey, BackendKey) {
    let t = TempStore::new();
    let store = t.open();
    store
        .record_crash(&key("shared/zc@1.0.0"), Timestamp::now())
        .unwrap();
    let policy = RecoveryPolicy {
        retries_per_window: 3,
        ..RecoveryPolicy::default()
    };
    for name in ["zc", "good"] {
        let scope = PolicyScope::service(name).unwrap();
        store.set_override(&scope, policy, None).unwrap();
    }
    drop(store);
    put_override(&t.path, b"service:zc", GARBAGE);
    (t, key("shared/zc@1.0.0"), key("shared/good@1.0.0"))
}

#[test]
fn a_damaged_override_stops_only_the_keys_it_would_judge() {
    let (t, judged, other) = damaged_store();
    let store = t.open();
    let now = Timestamp::now();
    for err in [
        store.record_crash(&judged, now).unwrap_err(),
        store.policy_for(&judged).unwrap_err(),
        store.status(&judged, now).unwrap_err(),
    ] {
        assert!(names_scope(&err, "service:zc"), "{err}");
        assert!(
            err.to_string()
                .contains("`recovery-store policy unset --service zc`"),
            "{err}"
        );
    }
    assert_eq!(
        store.get(&judged).unwrap().unwrap().total_crashes,
        1,
        "nothing was recorded"
    );
    // Other keys are decided by their own policy, the intact override included.
    assert_eq!(
        store.policy_for(&other).unwrap().policy.retries_per_window,
        3
    );
    store.record_crash(&other, now).unwrap();
    // The strict reader names the row; the snapshot reader reads past it.
    assert!(names_scope(&store.policies().unwrap_err(), "service:zc"));
    let stored = store.snapshot(|s| s.stored_policies()).unwrap();
    assert_eq!(stored.overrides().len(), 1);
    assert_eq!(stored.damaged().len(), 1);
    assert_eq!(stored.damaged()[0].scope, "service:zc");
    // Removing the row (what `policy unset` does) repairs the store.
    let scope = PolicyScope::service("zc").unwrap();
    assert!(store.remove_override(&scope, None).unwrap());
    assert!(store.policies().unwrap().overrides.len() == 1);
    store.record_crash(&judged, now).unwrap();
}

#[test]
fn replacing_a_damaged_override_repairs_it() {
    let (t, judged, _) = damaged_store();
    let store = t.open();
    let scope = PolicyScope::service("zc").unwrap();
    let policy = RecoveryPolicy {
        retries_per_window: 2,
        ..RecoveryPolicy::default()
    };
    assert!(store.set_override(&scope, policy, None).unwrap());
    assert_eq!(store.policy_for(&judged).unwrap().policy, policy);
}

#[test]
fn a_broker_stays_durable_for_keys_the_damaged_override_does_not_judge() {
    let (t, judged, other) = damaged_store();
    let mut state = DurableRecoveryState::open(&t.path).unwrap();
    state.record_crash(other.clone(), Instant::now());
    assert_eq!(state.health(), StoreHealth::Durable);
    // The judged key still gets a decision, from memory, and the store says why.
    state.record_crash(judged, Instant::now());
    match state.health() {
        StoreHealth::Degraded { cause, .. } => {
            assert!(cause.contains("service:zc"), "{cause}")
        }
        other => panic!("a key judged by a damaged override was decided durably: {other:?}"),
    }
}

#[test]
fn a_damaged_audit_event_is_named_and_the_others_still_read() {
    let (t, _, _) = damaged_store();
    let seq = damage_first_audit_event(&t.path);
    let store = t.open();
    let err = store.audit(None).unwrap_err();
    assert!(
        matches!(err, StoreError::CorruptAuditEvent { seq: s, .. } if s == seq),
        "{err}"
    );
    let (mut good, mut bad) = (0, Vec::new());
    store
        .snapshot(|s| {
            s.for_each_audit_event(|event| {
                match event {
                    Ok(_) => good += 1,
                    Err(StoreError::CorruptAuditEvent { seq, .. }) => bad.push(seq),
                    Err(other) => return Err(other),
                }
                Ok(())
            })
        })
        .unwrap();
    assert_eq!((good, bad), (1, vec![seq]));
}
