//! `RecoveryStore::import` (issue 12, export version 2): a whole image written in one
//! transaction; the overrides replaced or merged; the audit trail appended to, never erased,
//! never given an event twice, and bounded; a refused import writes nothing.

use std::time::Duration;

use recovery_store::{
    AUDIT_LIMIT, AuditAction, AuditEvent, BackendRecoveryPolicy, ImportMode, PolicyScope,
    RecoveryPolicy, StoreError, StoreImage,
};

use crate::util::{TempStore, at, entry, key};

fn policy(backoff_ms: u64, retries: u32) -> RecoveryPolicy {
    RecoveryPolicy::new(
        BackendRecoveryPolicy::new(Duration::from_millis(backoff_ms), Duration::from_secs(30)),
        retries,
    )
}

fn event(n: u64) -> AuditEvent {
    AuditEvent {
        seq: n,
        at: at(n as f64),
        action: AuditAction::Reset,
        key: Some("shared/a@1.0.0".into()),
        scope: None,
        uid: Some(1000),
        user: Some("ops".into()),
        pid: Some(7),
        reason: Some(format!("event {n}")),
    }
}

fn service(name: &str) -> PolicyScope {
    PolicyScope::service(name).unwrap()
}

#[test]
fn a_replace_sets_every_part_and_keeps_the_trail() {
    let t = TempStore::new();
    let store = t.open();
    store
        .set_override(&service("old"), policy(10, 2), Some("mine"))
        .unwrap();
    store
        .record_crash(&key("shared/gone@1.0.0"), at(1.0))
        .unwrap();
    let before = store.audit(None).unwrap();

    let image = StoreImage {
        policy: Some(policy(100, 3)),
        overrides: Some(vec![(service("web"), policy(5, 4))]),
        entries: vec![(entry("shared/a@1.0.0"), Vec::new())],
        audit: vec![event(1), event(2)],
    };
    let outcome = store.import(&image, ImportMode::Replace).unwrap();
    assert_eq!(outcome.overrides_replaced, 1);
    assert_eq!((outcome.audit_added, outcome.audit_already_held), (2, 0));
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
        "the store's own events stay first"
    );
    let restored = &after[before.len()..before.len() + 2];
    for (got, sent) in restored.iter().zip([event(1), event(2)]) {
        assert_eq!(
            AuditEvent {
                seq: sent.seq,
                ..got.clone()
            },
            sent,
            "every field kept but the number"
        );
        assert!(
            got.seq > before.last().unwrap().seq,
            "numbers are never reused"
        );
    }
    let last = after.last().unwrap();
    assert_eq!(
        (last.action, last.scope.as_deref()),
        (AuditAction::Import, Some("all"))
    );

    // The same image again adds no event twice; `None` parts keep the store's.
    let again = StoreImage {
        policy: None,
        overrides: None,
        ..image
    };
    let outcome = store.import(&again, ImportMode::Replace).unwrap();
    assert_eq!((outcome.audit_added, outcome.audit_already_held), (0, 2));
    assert_eq!(store.overrides().unwrap().len(), 1);
    assert_eq!(store.audit(None).unwrap().len(), after.len() + 1);
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
    let image = StoreImage {
        policy: None,
        overrides: Some(vec![
            (service("web"), policy(20, 2)),
            (service("same"), policy(10, 2)),
            (service("new"), policy(30, 1)),
        ]),
        entries: vec![(entry("shared/a@1.0.0"), Vec::new())],
        audit: vec![event(1)],
    };
    let err = store
        .import(&image, ImportMode::Merge { overwrite: false })
        .unwrap_err();
    let StoreError::InvalidImport { detail } = &err else {
        panic!("{err}")
    };
    assert!(
        detail.contains("shared/a@1.0.0") && detail.contains("service:web"),
        "{detail}"
    );
    assert!(
        !detail.contains("service:same"),
        "an equal override is no conflict: {detail}"
    );
    assert_eq!(store.audit(None).unwrap(), trail, "nothing written");
    assert_eq!(store.overrides().unwrap().len(), 2);

    let outcome = store
        .import(&image, ImportMode::Merge { overwrite: true })
        .unwrap();
    assert_eq!(outcome.overwritten, [key("shared/a@1.0.0")]);
    assert_eq!(outcome.overrides_overwritten, [service("web")]);
    assert_eq!(store.overrides().unwrap().len(), 3);
    assert_eq!(
        store.policy_for(&key("shared/web@1.0.0")).unwrap().policy,
        policy(20, 2)
    );
}

#[test]
fn the_trail_stays_bounded_and_keeps_the_newest() {
    let t = TempStore::new();
    let store = t.open();
    let extra = 5;
    let image = StoreImage {
        audit: (1..=AUDIT_LIMIT + extra).map(event).collect(),
        ..StoreImage::default()
    };
    let outcome = store
        .import(&image, ImportMode::Merge { overwrite: false })
        .unwrap();
    assert_eq!(
        outcome.audit_added as u64, AUDIT_LIMIT,
        "older events could never stay"
    );
    let trail = store.audit(None).unwrap();
    assert_eq!(trail.len() as u64, AUDIT_LIMIT);
    assert_eq!(trail.last().unwrap().action, AuditAction::Import);
    assert_eq!(
        trail[0].reason.as_deref(),
        Some(format!("event {}", extra + 2).as_str()),
        "the oldest made room for the import's own event"
    );
}

#[test]
fn images_the_store_could_not_hold_are_refused_before_writing() {
    let t = TempStore::new();
    let store = t.open();
    store
        .record_crash(&key("shared/keep@1.0.0"), at(1.0))
        .unwrap();
    let trail = store.audit(None).unwrap();
    let bad_key_event = AuditEvent {
        key: None,
        ..event(1)
    };
    let scoped_reset = AuditEvent {
        scope: Some("all".into()),
        ..event(1)
    };
    let long_user = AuditEvent {
        user: Some("u".repeat(recovery_store::MAX_AUDIT_TEXT + 1)),
        ..event(1)
    };
    let images = [
        StoreImage {
            audit: vec![bad_key_event],
            ..StoreImage::default()
        },
        StoreImage {
            audit: vec![scoped_reset],
            ..StoreImage::default()
        },
        StoreImage {
            audit: vec![long_user],
            ..StoreImage::default()
        },
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
    for image in &images {
        for mode in [ImportMode::Replace, ImportMode::Merge { overwrite: true }] {
            let err = store.import(image, mode).unwrap_err();
            assert!(
                matches!(
                    err,
                    StoreError::InvalidImport { .. }
                        | StoreError::InvalidKey { .. }
                        | StoreError::InvalidPolicy { .. }
                ),
                "{err:?}"
            );
            assert_eq!(store.len().unwrap(), 1, "{err}: nothing replaced");
            assert_eq!(store.audit(None).unwrap(), trail, "{err}: nothing written");
        }
    }
}
