//! Damaged rows of schema 2's `policy_overrides` and `audit` tables, through the library: a
//! damaged override stops only the keys it would judge, with an error naming its scope and the
//! command that removes it; the strict readers name the row; the snapshot readers read past it;
//! a damaged audit event is named by its sequence number. A broker's `DurableRecoveryState`
//! keeps every other key durable, holds the judged key's decisions apart (judged by the policy
//! it last read, else with no retry) and writes them through once the row is repaired. Rows are
//! damaged by writing raw bytes beside the library, as a bit flip or a foreign writer would.

use std::path::Path;
use std::time::Instant;

use recovery_store::{
    BackendKey, BackendRecoveryDecision, BackendRecoveryPolicy, BackendStatus,
    DurableRecoveryState, PolicyScope, RecoveryPolicy, StoreError, StoreHealth, StoreOptions,
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

/// Stores garbage as the entry of `key`, bypassing the library.
fn damage_entry(path: &Path, key: &BackendKey) {
    const ENTRIES: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("entries");
    raw_write(path, |txn| {
        txn.open_table(ENTRIES)
            .unwrap()
            .insert(key.to_string().as_bytes(), GARBAGE)
            .unwrap();
    });
}

fn assert_degraded_naming(health: StoreHealth, scope: &str, held: usize) {
    match health {
        StoreHealth::Degraded { cause, pending, .. } => {
            assert!(cause.contains(scope), "{cause}");
            assert!(cause.contains("recovery-store policy unset"), "{cause}");
            assert_eq!(pending, held, "{cause}");
        }
        other => panic!("a key judged by a damaged override was decided durably: {other:?}"),
    }
}

// The reviewer's repro: a broker whose store holds one damaged override kept writing every
// other key to its queue, behind the judged key's crash, forever.
#[test]
fn a_broker_stays_durable_for_keys_the_damaged_override_does_not_judge() {
    let (t, judged, other) = damaged_store();
    let fresh = key("shared/fresh@1.0.0");
    let mut state = DurableRecoveryState::open(&t.path).unwrap();
    state.record_crash(other.clone(), Instant::now());
    assert_eq!(state.health(), StoreHealth::Durable);
    // The judged key still gets a decision, from memory, and the store says why.
    state.record_crash(judged.clone(), Instant::now());
    state.record_crash(judged.clone(), Instant::now());
    assert_degraded_naming(state.health(), "service:zc", 2);
    assert!(names_scope(state.unjudged(&judged).unwrap(), "service:zc"));
    // Every other key is written through at once, whatever the retry schedule.
    for round in 1..=3 {
        state.record_crash(fresh.clone(), Instant::now());
        assert_eq!(state.health_of(&fresh), StoreHealth::Durable);
        assert!(state.unjudged(&fresh).is_none());
        assert_eq!(
            t.open().get(&fresh).unwrap().unwrap().total_crashes,
            round,
            "written through before the call returned"
        );
        // Only the judged key's decisions wait, and flush says whose and why.
        assert_degraded_naming(state.health(), "service:zc", 2);
        let err = state.flush().unwrap_err();
        assert!(names_scope(&err, "service:zc"), "{err}");
    }
    // A read-only question about the judged key degrades nothing either.
    state.policy_for(&judged);
    state.record_success(&other);
    assert!(t.open().get(&other).unwrap().is_none());
    drop(state);
    let store = t.open();
    assert_eq!(store.get(&fresh).unwrap().unwrap().total_crashes, 3);
    assert_eq!(
        store.get(&judged).unwrap().unwrap().total_crashes,
        1,
        "the judged key's crashes were never judged by another policy"
    );
}

// A store that could not be opened: every decision is queued, the judged key's first. Once the
// file is there, the write-through goes past the judged key's crash, which moves to its own
// hold, and writes every other key.
#[test]
fn a_write_through_after_an_outage_skips_the_key_the_damaged_override_judges() {
    let (t, judged, _) = damaged_store();
    let fresh = key("shared/fresh@1.0.0");
    let elsewhere = t.dir.path().join("elsewhere.redb");
    std::fs::rename(&t.path, &elsewhere).unwrap();
    let options = StoreOptions::default().create_if_missing(false);
    let mut state =
        DurableRecoveryState::open_or_degraded(&t.path, options, BackendRecoveryPolicy::default());
    state.record_crash(judged.clone(), Instant::now());
    state.record_crash(fresh.clone(), Instant::now());
    assert!(matches!(
        state.health(),
        StoreHealth::Degraded { pending: 2, .. }
    ));
    std::fs::rename(&elsewhere, &t.path).unwrap();
    let err = state.flush().unwrap_err();
    assert!(names_scope(&err, "service:zc"), "{err}");
    assert_degraded_naming(state.health(), "service:zc", 1);
    assert_eq!(state.health_of(&fresh), StoreHealth::Durable);
    assert_eq!(t.open().get(&fresh).unwrap().unwrap().total_crashes, 1);
    assert_eq!(t.open().get(&judged).unwrap().unwrap().total_crashes, 1);
}

// A fresh handle never read the policy the damaged row held: it gives no retry rather than the
// default's, and says why.
#[test]
fn a_key_judged_by_a_damaged_override_never_read_gets_no_retry() {
    let (t, judged, other) = damaged_store();
    let mut state = DurableRecoveryState::open(&t.path).unwrap();
    let policy = state.policy_for(&judged);
    assert_eq!(policy.retries_per_window, 0, "never the default's retry");
    assert_eq!(state.policy_of(&judged), policy);
    assert_eq!(
        state.policy_for(&other).retries_per_window,
        3,
        "its intact override"
    );
    assert_degraded_naming(state.health(), "service:zc", 0);
    let window = policy.recovery.budget_window;
    // Its stored crash opened a window: refused for the rest of it.
    let first = state.record_crash_at(&judged, Timestamp::now());
    assert!(
        matches!(first, BackendRecoveryDecision::Refuse { retry_after, .. }
            if retry_after <= window && retry_after > window / 2),
        "{first:?}"
    );
    assert!(matches!(
        state.status(&judged, Timestamp::now()),
        BackendStatus::Refused { .. }
    ));
    // A success clears the key in the file at once: clearing state needs no policy.
    state.record_success(&judged);
    assert!(t.open().get(&judged).unwrap().is_none());
    assert_degraded_naming(state.health(), "service:zc", 0);
    assert!(state.flush().is_ok(), "nothing waits");
}

// A handle that read the key's override before the row was damaged keeps judging by it, and
// writes its decisions through once the row is replaced.
#[test]
fn a_key_is_judged_by_its_last_read_override_and_written_through_after_a_repair() {
    let t = TempStore::new();
    let judged = key("shared/zc@1.0.0");
    let scope = PolicyScope::service("zc").unwrap();
    let five = RecoveryPolicy {
        retries_per_window: 5,
        ..RecoveryPolicy::default()
    };
    t.open().set_override(&scope, five, None).unwrap();
    let mut state = DurableRecoveryState::open(&t.path).unwrap();
    assert_eq!(state.policy_for(&judged), five);
    put_override(&t.path, b"service:zc", GARBAGE);
    let now = Timestamp::now();
    for attempt in 1..=5 {
        let decision = state.record_crash_at(&judged, now);
        assert!(
            matches!(decision, BackendRecoveryDecision::Retry { attempt: a, .. } if a == attempt),
            "crash {attempt}: {decision:?}"
        );
    }
    assert!(matches!(
        state.record_crash_at(&judged, now),
        BackendRecoveryDecision::Refuse { .. }
    ));
    assert_degraded_naming(state.health(), "service:zc", 6);
    assert!(t.open().get(&judged).unwrap().is_none(), "nothing judged");
    // The operator replaces the row: the held crashes are judged by it and written.
    t.open().set_override(&scope, five, None).unwrap();
    state.flush().unwrap();
    assert_eq!(state.health(), StoreHealth::Durable);
    assert!(state.unjudged(&judged).is_none());
    assert_eq!(t.open().get(&judged).unwrap().unwrap().total_crashes, 6);
}

// The same kind of failure, one key's own damaged entry, stops only that key too.
#[test]
fn a_damaged_entry_stops_only_its_key() {
    let t = TempStore::new();
    let (broken, fresh) = (key("shared/broken@1.0.0"), key("shared/fresh@1.0.0"));
    t.open().record_crash(&broken, Timestamp::now()).unwrap();
    damage_entry(&t.path, &broken);
    let mut state = DurableRecoveryState::open(&t.path).unwrap();
    state.record_crash(broken.clone(), Instant::now());
    assert!(
        matches!(
            state.unjudged(&broken),
            Some(StoreError::CorruptEntry { .. })
        ),
        "{:?}",
        state.health()
    );
    state.record_crash(fresh.clone(), Instant::now());
    assert_eq!(state.health_of(&fresh), StoreHealth::Durable);
    assert!(matches!(
        state.flush(),
        Err(StoreError::CorruptEntry { .. })
    ));
    drop(state);
    assert_eq!(t.open().get(&fresh).unwrap().unwrap().total_crashes, 1);
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
