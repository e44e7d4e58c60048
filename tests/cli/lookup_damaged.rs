//! A key without its executable hash names every stored hash of its build; a match whose entry
//! is damaged, or whose deciding override is, cannot be judged. These tests guard that such a
//! match never reads as a healthy backend: `status` and `show` name it with its remedy,
//! `status` exits 2 ("unknown") unless a judged match is refused, and `reset` never reports a
//! damaged match as "no state".

use super::transfer::plant_damaged_entry;
use super::*;
use crate::cli::damaged_rows::crash;
use crate::damaged_rows::{GARBAGE, put_override};

const ENT: &str = "shared/ent@1.0.0";
const AA: &str = "shared/ent@1.0.0#aa";
const BB: &str = "shared/ent@1.0.0#bb";
const T1: &str = "2026-01-01T00:00:01Z";
const T2: &str = "2026-01-01T00:00:02Z";

/// `#aa` refused, then its entry row overwritten with bytes that do not decode.
fn damaged_aa() -> Cli {
    let cli = Cli::new();
    crash(&cli, T0, AA);
    crash(&cli, T1, AA);
    plant_damaged_entry(cli.path(), AA.as_bytes());
    cli
}

/// The remedy an unjudged damaged entry's error must name.
fn names_raw_reset(text: &str) {
    assert!(
        text.contains(&format!("recovery-store reset --raw '{AA}'")),
        "{text}"
    );
}

#[test]
fn status_of_a_damaged_match_is_an_error_never_healthy() {
    let cli = damaged_aa();
    let now = at(T2);
    for key in [ENT, AA] {
        let out = cli.run(&with_now(&now, &["status", key]));
        assert_error(&out, AA);
        names_raw_reset(&stderr(&out));
        let out = cli.run(&with_now(&now, &["--json", "status", key]));
        assert_error(&out, AA);
    }
    // `show` cannot answer either: its only match is unjudged.
    let out = cli.run(&with_now(&now, &["show", ENT]));
    assert_error(&out, AA);
    names_raw_reset(&stderr(&out));
}

#[test]
fn status_exits_2_when_the_judged_matches_may_start_but_one_is_unjudged() {
    // A readable, recovering #bb beside the damaged #aa.
    let cli = damaged_aa();
    crash(&cli, T1, BB);
    let now = at(T2);
    let out = cli.run(&with_now(&now, &["status", ENT]));
    assert_error(&out, AA);
    assert!(
        stderr(&out).contains("1 entry judged may start"),
        "{}",
        describe(&out)
    );
    names_raw_reset(&stderr(&out));
    assert_error(&cli.run(&with_now(&now, &["--json", "status", ENT])), AA);

    // The same for a match a damaged key override would judge.
    let cli = Cli::new();
    crash(&cli, T0, "shared/hashy@1.0.0#00ff");
    crash(&cli, T0, "shared/hashy@1.0.0#11aa");
    put_override(cli.path(), b"key:shared/hashy@1.0.0#00ff", GARBAGE);
    let out = cli.run(&with_now(&now, &["status", "shared/hashy@1.0.0"]));
    assert_error(&out, "\"key:shared/hashy@1.0.0#00ff\"");

    let help = cli.ok(&["status", "--help"]);
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(help.contains("a match cannot be judged"), "{help}");
}

#[test]
fn a_refused_judged_match_still_answers_and_names_the_damaged_one() {
    let cli = damaged_aa();
    crash(&cli, T0, BB);
    crash(&cli, T1, BB);
    let now = at(T2);
    let out = cli.run(&with_now(&now, &["status", ENT]));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(line.starts_with(&format!("{ENT}: refused")), "{line}");
    assert!(line.contains("#aa not judged (damaged entry)"), "{line}");
    names_raw_reset(&stderr(&out));

    let doc: Status = cli.json(1, &with_now(&now, &["status", ENT]));
    assert_eq!(doc.state, "refused");
    assert_eq!(doc.matches, [BB]);
    assert_eq!(doc.unjudged.len(), 1);
    assert_eq!(doc.unjudged[0].key, AA);
    names_raw_reset(&doc.unjudged[0].error);

    let text = cli.expect(0, &with_now(&now, &["show", ENT]));
    assert!(text.contains(&format!("key:    {AA}")), "{text}");
    assert!(text.contains("state:  unknown: entry"), "{text}");
    names_raw_reset(&text);
    let doc: Show = cli.json(0, &with_now(&now, &["show", ENT]));
    assert_eq!(doc.matches.len(), 1);
    assert_eq!(doc.unjudged.len(), 1);
    assert_eq!(doc.unjudged[0].key, AA);
}

#[test]
fn a_hash_less_reset_never_says_no_state_for_damaged_matches() {
    let cli = damaged_aa();
    // A damaged match whose stored key does not even parse.
    let bad = "shared/ent@1.0.0#not a hash";
    plant_damaged_entry(cli.path(), bad.as_bytes());

    let out = cli.run(&["reset", ENT]);
    assert_error(&out, "--all-hashes");
    assert!(
        stderr(&out).contains(&format!("{AA} (damaged)")),
        "{}",
        describe(&out)
    );
    let left: List = cli.json(0, &["list"]);
    assert_eq!(left.damaged.len(), 2, "{:?}", left.damaged);

    let doc: Reset = cli.json(0, &["reset", ENT, "--all-hashes"]);
    assert_eq!(doc.cleared, [AA, bad]);
    assert!(doc.no_state.is_empty(), "{doc:?}");
    let left: List = cli.json(0, &["list"]);
    assert!(
        left.damaged.is_empty() && left.entries.is_empty(),
        "{left:?}"
    );
    let line = cli.ok(&["status", ENT]);
    assert!(line.contains("healthy: may start now"), "{line}");
}

#[test]
fn every_match_a_damaged_service_override_blocks_is_named() {
    let cli = Cli::new();
    crash(&cli, T0, AA);
    crash(&cli, T0, BB);
    cli.ok(&["policy", "set", "--service", "ent", "--retries", "3"]);
    put_override(cli.path(), b"service:ent", GARBAGE);
    let now = at(T2);
    for command in ["status", "show"] {
        let out = cli.run(&with_now(&now, &[command, ENT]));
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        let err = stderr(&out);
        assert!(err.contains(AA) && err.contains(BB), "{command}: {err}");
    }
}

#[test]
fn a_hash_less_reset_names_its_own_damaged_entry_too() {
    let cli = Cli::new();
    crash(&cli, T0, ENT);
    crash(&cli, T0, BB);
    plant_damaged_entry(cli.path(), ENT.as_bytes());
    let out = cli.run(&["reset", ENT]);
    assert_error(&out, &format!("{ENT} itself is stored too, damaged"));
    assert!(stderr(&out).contains(BB), "{}", stderr(&out));
    let done: Reset = cli.json(0, &["reset", ENT, "--all-hashes"]);
    assert_eq!(done.cleared.len(), 2, "{:?}", done.cleared);
}
