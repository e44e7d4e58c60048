//! Parsing export documents: what each version means, and that each problem is named.

use super::*;
use recovery_store::{BackendRecoveryPolicy, CrashReport};

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

fn parse(text: &str) -> anyhow::Result<Parsed> {
    parse_document(text)
}

#[test]
fn a_version_1_document_keeps_what_it_does_not_carry() {
    let parsed = parse(&doc(GOOD)).unwrap();
    assert_eq!(parsed.policy, (BackendRecoveryPolicy::default(), None));
    assert_eq!(parsed.image.policy, None, "no retries: the store's stay");
    assert_eq!(
        parsed.image.overrides, None,
        "no overrides: the store's stay"
    );
    assert_eq!(parsed.audit_events, 0);
    let entries = &parsed.image.entries;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0.last_crash.unix_nanos(), 2_000_000_000);
    assert_eq!(entries[0].0.total_crashes, 3);
    assert!(
        entries[0].1.is_empty(),
        "a document without history imports none"
    );
}

#[test]
fn a_version_2_document_carries_retries_and_overrides_and_its_audit_is_only_counted() {
    let parsed = parse(&doc2(OVERRIDE, EVENT)).unwrap();
    assert_eq!(parsed.image.policy.unwrap().retries_per_window, 3);
    let overrides = parsed.image.overrides.unwrap();
    assert_eq!(overrides.len(), 1);
    assert_eq!(overrides[0].0, PolicyScope::service("web").unwrap());
    assert_eq!(overrides[0].1.retries_per_window, 2);
    assert_eq!(
        overrides[0].1.recovery.budget_window,
        Duration::from_secs(60)
    );
    assert_eq!(parsed.audit_events, 1);
}

#[test]
fn a_byte_order_mark_is_skipped() {
    assert!(parse(&format!("\u{feff}{}", doc(GOOD))).is_ok());
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
    let cases = [
        (String::new(), "the document is empty"),
        ("[]".into(), "an export document is a JSON object"),
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
            doc(&GOOD.replace(r#""crashes_in_window":1"#, r#""crashes_in_window":1.5"#)),
            "`entries[0].crashes_in_window`: invalid type",
        ),
        (
            doc(&GOOD.replace("00:00:02Z", "00:00:03Z")),
            "does not match",
        ),
        (doc(&GOOD.replace("total_crashes", "totl")), "unknown field"),
        (
            doc("").replace("recovery-store-export", &"x".repeat(500)),
            "xxx…\"",
        ),
        (
            doc("").replace(r#""version":1"#, r#""version":3"#),
            "`version` is 3",
        ),
        (doc("").replace("250", "0"), "policy.retry_backoff_ms"),
        (
            doc("").replace("30000", "18446744073709551615"),
            "longer than the",
        ),
        (
            doc(&GOOD.replace(r#""total_crashes":3"#, r#""total_crashes":3,"history":[]"#)),
            "a version 1 document has no `history`",
        ),
        (
            doc2("", "").replace(r#""version":2"#, r#""version":1"#),
            "a version 1 document has no `overrides`",
        ),
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
            doc2("", &EVENT.replace("unix_ms", "unix")),
            "`audit[0].at.unix`: unknown field",
        ),
    ];
    for (text, needle) in cases {
        let Err(err) = parse(&text) else {
            panic!("{needle:?}: {text} parsed");
        };
        let err = format!("{err:#}");
        assert!(err.contains(needle), "{needle:?} not in {err:?}");
    }
}

#[test]
fn crash_details_no_process_could_have_are_dropped_and_counted() {
    let with = |crash: &str| {
        doc2("", "").replace(
            r#""total_crashes":3}"#,
            &format!(r#""total_crashes":3,"history":[{{"at":{{"unix_ms":1500}},{crash}}}]}}"#),
        )
    };
    for crash in [
        r#""exit_code":-7,"signal":null,"pid":1,"uid":0"#,
        r#""exit_code":null,"signal":99,"pid":1,"uid":0"#,
        r#""exit_code":1,"signal":9,"pid":1,"uid":0"#,
    ] {
        let parsed = parse(&with(crash)).unwrap();
        assert_eq!(parsed.details_dropped, 1, "{crash}");
        let record = &parsed.image.entries[0].1[0];
        assert_eq!(record.report(), CrashReport::default(), "{crash}");
        assert_eq!(record.pid, Some(1), "the rest is kept");
    }
    let parsed = parse(&with(r#""exit_code":1,"signal":null,"pid":0,"uid":0"#)).unwrap();
    assert_eq!(parsed.details_dropped, 1);
    assert_eq!(parsed.image.entries[0].1[0].pid, None);
    let parsed = parse(&with(r#""exit_code":3,"signal":null,"pid":1,"uid":0"#)).unwrap();
    assert_eq!(parsed.details_dropped, 0);
    assert_eq!(parsed.image.entries[0].1[0].exit_code, Some(3));
}
