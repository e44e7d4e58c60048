//! `RecoveryStore::import` (issue 12, export version 2): a whole image written in one
//! transaction; the overrides replaced or merged; every check against what the store holds
//! made inside the transaction; the audit trail given only the import's own event; a refused
//! or empty import writes nothing.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use recovery_store::{
    AuditAction, BackendRecoveryPolicy, CrashRecord, CrashReport, ImportMode, PolicyScope,
    RecoveryEntry, RecoveryPolicy, StoreError, StoreImage,
};

use crate::util::{TempStore, at, entry, key};

const REPLACE: ImportMode = ImportMode::Replace { overwrite: false };
const REPLACE_ALL: ImportMode = ImportMode::Replace { overwrite: true };
const MERGE: ImportMode = ImportMode::Merge { overwrite: false };
const MERGE_ALL: ImportMode = ImportMode::Merge { overwrite: true };

fn policy(backoff_ms: u64, retries: u32) -> RecoveryPolicy {
    RecoveryPolicy::new(
        BackendRecoveryPolicy::new(Duration::from_millis(backoff_ms), Duration::from_secs(30)),
        retries,
    )
}

fn service(name: &str) -> PolicyScope {
    PolicyScope::service(name).unwrap()
}

fn image(entries: &[&str]) -> StoreImage {
    StoreImage {
        entries: entries.iter().map(|k| (entry(k), Vec::new())).collect(),
        ..StoreImage::default()
    }
}

#[test]
fn a_replace_sets_every_part_and_adds_only_its_own_event() {
    let t = TempStore::new();
    let store = t.open();
    store
        .set_override(&service("old"), policy(10, 2), Some("mine"))
        .unwrap();
    store.set_recovery_policy(policy(50, 2), None).unwrap();
    store
        .record_crash(&key("shared/gone@1.0.0"), at(1.0))
        .unwrap();
    let before = store.audit(None).unwrap();

    let wanted = StoreImage {
        policy: Some(policy(100, 3)),
        overrides: Some(vec![(service("web"), policy(5, 4))]),
        ..image(&["shared/a@1.0.0"])
    };
    let err = store.import(&wanted, REPLACE).unwrap_err();
    let StoreError::ImportConflict { detail } = &err else {
        panic!("{err}")
    };
    assert!(
        detail.contains("1 entry (shared/gone@1.0.0)")
            && detail.contains("another default policy")
            && detail.contains("1 override (service:old)"),
        "{detail}"
    );
    assert_eq!(
        store.audit(None).unwrap(),
        before,
        "a refused replace writes nothing"
    );

    let outcome = store
        .import_with_reason(&wanted, REPLACE_ALL, Some("new host"))
        .unwrap();
    assert!(outcome.changed);
    assert_eq!(outcome.overrides_replaced, 1);
    assert_eq!(store.recovery_policy().unwrap(), policy(100, 3));
    assert_eq!(store.overrides().unwrap(), [(service("web"), policy(5, 4))]);
    let keys: Vec<String> = store
        .list()
        .unwrap()
        .iter()
        .map(|e| e.key.to_string())
        .collect();
    assert_eq!(keys, ["shared/a@1.0.0"]);
    let after = store.audit(None).unwrap();
    assert_eq!(
        after[..before.len()],
        before[..],
        "the trail is only added to"
    );
    assert_eq!(after.len(), before.len() + 1, "one event: the import's");
    let last = after.last().unwrap();
    assert_eq!(
        (last.action, last.scope.as_deref(), last.reason.as_deref()),
        (AuditAction::Import, Some("all"), Some("new host"))
    );

    // The same image again: nothing to refuse and nothing to change, so nothing committed.
    let syncs = store.sync_count();
    let outcome = store.import(&wanted, REPLACE).unwrap();
    assert!(!outcome.changed);
    assert_eq!(store.sync_count(), syncs, "a no-op replace takes no write");
    assert_eq!(store.audit(None).unwrap(), after, "no event for no change");
    // `None` parts keep the store's.
    let keep = StoreImage {
        policy: None,
        overrides: None,
        ..image(&[])
    };
    store.import(&keep, REPLACE_ALL).unwrap();
    assert_eq!(store.overrides().unwrap().len(), 1);
    assert_eq!(store.recovery_policy().unwrap(), policy(100, 3));
    assert!(store.is_empty().unwrap());
}

#[test]
fn overrides_in_another_order_are_the_same_overrides() {
    let t = TempStore::new();
    let store = t.open();
    store
        .set_override(&service("a"), policy(10, 1), None)
        .unwrap();
    store
        .set_override(&service("z"), policy(20, 1), None)
        .unwrap();
    let same = StoreImage {
        overrides: Some(vec![
            (service("z"), policy(20, 1)),
            (service("a"), policy(10, 1)),
        ]),
        ..image(&[])
    };
    let outcome = store.import(&same, REPLACE).unwrap();
    assert!(!outcome.changed, "{outcome:?}");
}

#[test]
fn a_refused_merge_writes_nothing_and_names_every_conflict() {
    let t = TempStore::new();
    let store = t.open();
    store.record_crash(&key("shared/a@1.0.0"), at(1.0)).unwrap();
    store
        .set_override(&service("web"), policy(10, 2), None)
        .unwrap();
    store
        .set_override(&service("same"), policy(10, 2), None)
        .unwrap();
    let trail = store.audit(None).unwrap();
    let wanted = StoreImage {
        overrides: Some(vec![
            (service("web"), policy(20, 2)),
            (service("same"), policy(10, 2)),
            (service("new"), policy(30, 1)),
        ]),
        ..image(&["shared/a@1.0.0"])
    };
    let err = store.import(&wanted, MERGE).unwrap_err();
    let StoreError::ImportConflict { detail } = &err else {
        panic!("{err}")
    };
    assert!(
        detail.contains("1 entry the store holds otherwise (shared/a@1.0.0)")
            && detail.contains("1 override stored with another policy (service:web)"),
        "{detail}"
    );
    assert!(
        !detail.contains("service:same"),
        "an equal override is no conflict: {detail}"
    );
    assert_eq!(store.audit(None).unwrap(), trail, "nothing written");
    assert_eq!(store.overrides().unwrap().len(), 2);

    let outcome = store.import(&wanted, MERGE_ALL).unwrap();
    assert_eq!(outcome.overwritten, [key("shared/a@1.0.0")]);
    assert_eq!(outcome.overrides_overwritten, [service("web")]);
    assert_eq!(store.overrides().unwrap().len(), 3);
    assert_eq!(
        store.policy_for(&key("shared/web@1.0.0")).unwrap().policy,
        policy(20, 2)
    );
}

#[test]
fn a_merge_that_changes_nothing_commits_nothing() {
    let t = TempStore::new();
    let store = t.open();
    store
        .set_override(&service("web"), policy(10, 2), None)
        .unwrap();
    let (syncs, trail) = (store.sync_count(), store.audit(None).unwrap());
    let same = StoreImage {
        overrides: Some(vec![(service("web"), policy(10, 2))]),
        ..image(&[])
    };
    let outcome = store.import(&same, MERGE).unwrap();
    assert!(!outcome.changed);
    assert_eq!(store.sync_count(), syncs, "no transaction committed");
    assert_eq!(store.audit(None).unwrap(), trail);
}

#[test]
fn the_conflict_check_sees_what_another_process_committed_during_the_import() {
    // A replace that found the store empty before it began must not wipe an entry committed
    // between that look and its transaction: the check runs inside the transaction.
    for round in 0..20 {
        let t = TempStore::new();
        let first = t.open();
        let second = t.open();
        let start = Arc::new(Barrier::new(2));
        let wanted = image(&["shared/doc@1.0.0"]);
        std::thread::scope(|s| {
            let go = Arc::clone(&start);
            s.spawn(move || {
                go.wait();
                second
                    .record_crash(&key("shared/precious@1.0.0"), at(1.0))
                    .unwrap();
            });
            start.wait();
            let result = first.import(&wanted, REPLACE);
            let keys: Vec<String> = first
                .list()
                .unwrap()
                .iter()
                .map(|e| e.key.to_string())
                .collect();
            match result {
                // The import committed first; the crash came after it.
                Ok(_) => assert!(
                    keys.contains(&"shared/doc@1.0.0".to_owned()),
                    "round {round}: {keys:?}"
                ),
                Err(StoreError::ImportConflict { .. }) => {
                    assert_eq!(keys, ["shared/precious@1.0.0"], "round {round}");
                }
                Err(e) => panic!("round {round}: {e}"),
            }
        });
        let store = t.open();
        assert!(
            store.get(&key("shared/precious@1.0.0")).unwrap().is_some(),
            "round {round}: a crash recorded by another handle is never lost"
        );
    }
}

#[test]
fn images_the_store_could_not_hold_are_refused_before_writing() {
    let t = TempStore::new();
    let store = t.open();
    store
        .record_crash(&key("shared/keep@1.0.0"), at(1.0))
        .unwrap();
    let (trail, syncs) = (store.audit(None).unwrap(), store.sync_count());
    let with_history = |history: Vec<CrashRecord>, total: u64| StoreImage {
        entries: vec![(
            RecoveryEntry {
                total_crashes: total,
                ..entry("shared/a@1.0.0")
            },
            history,
        )],
        ..StoreImage::default()
    };
    let crash =
        |report: CrashReport, pid: Option<u32>| CrashRecord::new(at(0.0), report, pid, None);
    let images = [
        with_history(vec![crash(CrashReport::default(), Some(1)); 2], 1),
        with_history(
            vec![crash(
                CrashReport {
                    exit_code: Some(256),
                    signal: None,
                },
                Some(1),
            )],
            1,
        ),
        with_history(
            vec![crash(
                CrashReport {
                    exit_code: Some(1),
                    signal: Some(9),
                },
                Some(1),
            )],
            1,
        ),
        with_history(vec![crash(CrashReport::default(), Some(0))], 1),
        StoreImage {
            overrides: Some(vec![(
                PolicyScope::Service("Bad Name".into()),
                policy(10, 1),
            )]),
            ..StoreImage::default()
        },
        StoreImage {
            overrides: Some(vec![
                (service("web"), policy(10, 1)),
                (service("web"), policy(20, 1)),
            ]),
            ..StoreImage::default()
        },
        StoreImage {
            policy: Some(RecoveryPolicy {
                retries_per_window: 0,
                ..policy(10, 1)
            }),
            ..StoreImage::default()
        },
    ];
    for (i, image) in images.iter().enumerate() {
        assert!(image.validate().is_err(), "image {i} validates");
        for mode in [REPLACE_ALL, MERGE_ALL] {
            let err = store.import(image, mode).unwrap_err();
            assert!(
                matches!(
                    err,
                    StoreError::InvalidImport { .. }
                        | StoreError::InvalidKey { .. }
                        | StoreError::InvalidPolicy { .. }
                ),
                "image {i}: {err:?}"
            );
        }
    }
    assert_eq!(store.len().unwrap(), 1, "nothing replaced");
    assert_eq!(store.audit(None).unwrap(), trail, "nothing written");
    assert_eq!(store.sync_count(), syncs, "nothing committed");
}
