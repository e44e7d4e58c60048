//! Parsing export documents: what each version means, and that each problem is named.

use super::*;

fn doc(entries: &str) -> String {
    format!(
        r#"{{"format":"{FORMAT}","version":1,"policy":{{"retry_backoff_ms":250,"budget_window_ms":30000}},"entries":[{entries}]}}"#
    )
}

/// A version 2 document with `overrides` and `audit` spliced in.
fn doc2(overrides: &str, audit: &str) -> String {
    format!(
        r#"{{"format":"{FORMAT}","version":2,"policy":{{"retry_backoff_ms":250,"budget_window_ms":30000,"retries_per_window":3}},"overrides":[{overrides}],"entries":[{GOOD}],"audit":[{audit}]}}"#
    )
}

const GOOD: &str = r#"{"key":"shared/a@1.0.0","window_started_at":{"unix_ms":1000},"crashes_in_window":1,"last_crash":{"rfc3339":"1970-01-01T00:00:02Z","unix_ms":2000},"total_crashes":3}"#;
const OVERRIDE: &str = r#"{"scope":"service:web","retry_backoff_ms":100,"budget_window_ms":60000,"retries_per_window":2}"#;
const EVENT: &str = r#"{"seq":7,"at":{"unix_ms":5000},"action":"reset","key":"shared/a@1.0.0","scope":null,"uid":0,"user":"root","pid":42,"reason":"hotfix"}"#;

#[test]
fn a_version_1_document_means_the_reference_retries_and_no_overrides_or_audit() {
    let image = parse_document(&doc(GOOD)).unwrap();
    assert_eq!(image.policy, Some(RecoveryPolicy::default()));
    assert_eq!(image.overrides, Some(Vec::new()), "v1 had no overrides");
    assert!(image.audit.is_empty());
    assert_eq!(image.entries.len(), 1);
    assert_eq!(image.entries[0].0.last_crash.unix_nanos(), 2_000_000_000);
    assert_eq!(image.entries[0].0.total_crashes, 3);
    assert!(
        image.entries[0].1.is_empty(),
        "a document without history imports none"
    );
}

#[test]
fn a_version_2_document_carries_retries_overrides_and_audit() {
    let image = parse_document(&doc2(OVERRIDE, EVENT)).unwrap();
    assert_eq!(image.policy.unwrap().retries_per_window, 3);
    let overrides = image.overrides.unwrap();
    assert_eq!(overrides.len(), 1);
    assert_eq!(overrides[0].0, PolicyScope::service("web").unwrap());
    assert_eq!(overrides[0].1.retries_per_window, 2);
    assert_eq!(
        overrides[0].1.recovery.budget_window,
        Duration::from_secs(60)
    );
    assert_eq!(image.audit.len(), 1);
    let event = &image.audit[0];
    assert_eq!(event.action, AuditAction::Reset);
    assert_eq!(event.key.as_deref(), Some("shared/a@1.0.0"));
    assert_eq!(event.reason.as_deref(), Some("hotfix"));
    assert_eq!(event.at.unix_millis(), 5000);
}

#[test]
fn export_stamps_round_trip() {
    let ts = Timestamp::from_parts(
        -1_234_567_891,
        Some(BootTime {
            boot_id: u128::MAX - 5,
            since_boot: Duration::from_nanos(77),
        }),
    );
    assert_eq!(timestamp(&stamp(&ts)).unwrap(), ts);
}

#[test]
fn problems_are_named() {
    let long = "x".repeat(MAX_REASON_LEN + 1);
    let cases = [
        (doc(&format!("{GOOD},{GOOD}")), "appears more than once"),
        (
            doc(&GOOD.replace("shared/a", "Shared/a")),
            "entries[0]`.key",
        ),
        (
            doc(&GOOD.replace(r#""crashes_in_window":1"#, r#""crashes_in_window":0"#)),
            "at least 1",
        ),
        (
            doc(&GOOD.replace("00:00:02Z", "00:00:03Z")),
            "does not match",
        ),
        (doc(&GOOD.replace("total_crashes", "totl")), "unknown field"),
        (
            doc("").replace("recovery-store-export", "other"),
            "`format`",
        ),
        (
            doc("").replace(r#""version":1"#, r#""version":3"#),
            "`version` is 3",
        ),
        (doc("").replace("250", "0"), "policy.retry_backoff_ms"),
        (
            doc2("", "").replace(r#""retries_per_window":3"#, r#""retries_per_window":0"#),
            "`policy.retries_per_window`",
        ),
        (
            doc2(&OVERRIDE.replace("service:web", "svc:web"), ""),
            "`overrides[0]`.scope",
        ),
        (
            doc2(&OVERRIDE.replace("service:web", "service:Web"), ""),
            "`overrides[0]`.scope",
        ),
        (
            doc2(&format!("{OVERRIDE},{OVERRIDE}"), ""),
            "service:web appears more than once",
        ),
        (
            doc2(
                &OVERRIDE.replace(r#""retry_backoff_ms":100"#, r#""retry_backoff_ms":60000"#),
                "",
            ),
            "the override for service:web",
        ),
        (
            doc2("", &EVENT.replace(r#""reset""#, r#""wipe""#)),
            "`audit[0]`",
        ),
        (
            doc2(
                "",
                &EVENT.replace(r#""key":"shared/a@1.0.0""#, r#""key":null"#),
            ),
            "names its key",
        ),
        (
            doc2("", &EVENT.replace(r#""scope":null"#, r#""scope":"all""#)),
            "not a scope",
        ),
        (
            doc2(
                "",
                &EVENT.replace(r#""action":"reset""#, r#""action":"prune""#),
            ),
            "names its scope",
        ),
        (
            doc2("", &EVENT.replace("hotfix", &long)),
            ".reason is 1025 bytes",
        ),
        (doc2("", &EVENT.replace("unix_ms", "unix")), "unknown field"),
    ];
    for (text, needle) in cases {
        let Err(err) = parse_document(&text) else {
            panic!("{needle:?}: {text} parsed");
        };
        let err = format!("{err:#}");
        assert!(err.contains(needle), "{needle:?} not in {err:?}");
    }
}
