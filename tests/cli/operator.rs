//! An operator's day (issue 11): typos get no confident answers, one slip cannot lock or wipe a
//! host, and every answer says what to do next.

use super::*;

/// A 64-digit executable hash, as brokers store it.
pub(super) fn hash() -> String {
    "98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4".into()
}

pub(super) fn hashed() -> String {
    format!("shared/zccache@1.11.20#{}", hash())
}

/// `shared/zccache@1.11.20#<hash>` refused at T0 + 1 s, plus another build recovering.
fn zccache() -> Cli {
    let cli = Cli::new();
    let key = hashed();
    cli.expect(0, &with_now(&at(T0), &["record-crash", &key]));
    cli.expect(
        1,
        &with_now(&at("2026-01-01T00:00:01Z"), &["record-crash", &key]),
    );
    let other = "shared/zccache@1.11.20#0badc0de";
    cli.expect(
        0,
        &with_now(&at("2026-01-01T00:00:02Z"), &["record-crash", other]),
    );
    cli
}

#[test]
fn commands_that_only_clear_never_create_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("recovery-stor").join("recovery.redb");
    let clears: [&[&str]; 8] = [
        &["reset", "shared/zccache@1.11.20"],
        &["reset", "--all", "--yes"],
        &["reset", "--refused", "--yes"],
        &["reset", "--service", "zccache"],
        &["reset", "--raw", "x"],
        &["prune"],
        &["record-success", "shared/zccache@1.11.20"],
        &["check", "--salvage", "/dev/null"],
    ];
    for args in clears {
        let out = command(&db, args).output().unwrap();
        assert_error(&out, &format!("no recovery store at {}", db.display()));
        let err = stderr(&out);
        assert!(
            err.contains("(from --db)")
                && err.contains("only record-crash, run, import and policy set create a store"),
            "{args:?}: {err}"
        );
        assert!(!db.parent().unwrap().exists(), "{args:?} created something");
    }
}

#[test]
fn a_command_that_creates_a_store_says_so_once() {
    let cli = Cli::new();
    let out = cli.run(&["record-crash", "shared/a@1.0.0"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "recovery-store: created a new store at {}\n",
            cli.path().display()
        )
    );
    let again = cli.run(&["record-crash", "shared/b@1.0.0"]);
    assert!(again.stderr.is_empty(), "{}", describe(&again));

    let other = Cli::new();
    let out = other.run(&["policy", "set", "--budget-window", "1m"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(stderr(&out).contains("created a new store at"));
}

#[test]
fn a_key_without_its_hash_reports_the_worst_of_its_entries() {
    let cli = zccache();
    let now = at(T5);
    let line = cli.expect(1, &with_now(&now, &["status", "shared/zccache@1.11.20"]));
    assert!(
        line.starts_with("shared/zccache@1.11.20: refused (backend unavailable): retry after 25s"),
        "{line}"
    );
    assert!(
        line.contains(&format!("{} refused", hashed()))
            && line.contains("shared/zccache@1.11.20#0badc0de recovering")
            && line.contains(&format!("`recovery-store reset {}`", hashed())),
        "names them and the way out: {line}"
    );
    let doc: Status = cli.json(1, &with_now(&now, &["status", "shared/zccache@1.11.20"]));
    assert_eq!((doc.state.as_str(), doc.recorded), ("refused", true));
    assert_eq!(
        doc.matches,
        ["shared/zccache@1.11.20#0badc0de".to_owned(), hashed()]
    );
    assert_eq!(
        (doc.crashes_in_window, doc.retry_after_ms),
        (2, Some(25_000))
    );

    let show: Show = cli.json(0, &with_now(&now, &["show", "shared/zccache@1.11.20"]));
    assert_eq!(show.matches.len(), 2);
    assert_eq!(show.entry.unwrap().key, hashed(), "the worst");
    let text = cli.ok(&with_now(&now, &["show", "shared/zccache@1.11.20"]));
    assert!(
        text.starts_with("shared/zccache@1.11.20 has no executable hash: it matches 2 entries"),
        "{text}"
    );
}

#[test]
fn reset_of_a_key_without_its_hash_needs_all_hashes() {
    let cli = zccache();
    let before = cli.json::<List>(0, &["list"]).entries.len();
    let out = cli.run(&["reset", "shared/zccache@1.11.20"]);
    assert_error(
        &out,
        "has no executable hash and matches 2 entries with one",
    );
    assert!(
        stderr(&out).contains(&hashed()) && stderr(&out).contains("--all-hashes"),
        "{}",
        stderr(&out)
    );
    assert_eq!(cli.json::<List>(0, &["list"]).entries.len(), before);
    let doc: Reset = cli.json(0, &["reset", "shared/zccache@1.11.20", "--all-hashes"]);
    assert_eq!(
        doc.cleared,
        ["shared/zccache@1.11.20#0badc0de".to_owned(), hashed()]
    );
    assert!(doc.no_state.is_empty());
    assert!(cli.json::<List>(0, &["list"]).entries.is_empty());
}

#[test]
fn unknown_keys_say_so_and_suggest_near_keys() {
    let cli = zccache();
    let now = at(T5);
    for typo in ["shared/zccache@1.11.2", "private:x/zccache@1.11.20"] {
        let line = cli.expect(0, &with_now(&now, &["status", typo]));
        assert!(
            line.contains("no recorded state for this key") && line.contains(&hashed()),
            "{line}"
        );
        let show = cli.ok(&with_now(&now, &["show", typo]));
        assert!(
            show.contains("no recorded state") && show.contains("similar keys:"),
            "{show}"
        );
        let doc: Show = cli.json(0, &with_now(&now, &["show", typo]));
        assert!(!doc.recorded && doc.entry.is_none() && doc.similar.len() == 2);
        let reset = cli.ok(&["reset", typo]);
        assert!(
            reset.starts_with(&format!("no state for {typo} (similar keys with state: ")),
            "{reset}"
        );
        let doc: Reset = cli.json(0, &["reset", typo]);
        assert_eq!(
            (doc.cleared.len(), doc.no_state),
            (0, vec![typo.to_owned()])
        );
    }
}

#[test]
fn reset_refused_clears_only_refused_backends() {
    let cli = populated();
    let now = at(T5);
    let doc: Reset = cli.json(0, &with_now(&now, &["reset", "--refused"]));
    assert_eq!(doc.cleared, ["shared/demo@1.0.0"]);
    assert_eq!(cli.json::<List>(0, &["list"]).entries.len(), 2);
    assert_eq!(
        cli.ok(&with_now(&now, &["reset", "--refused"])),
        "nothing to reset: no backend is refused now\n"
    );
    // Two refused: --yes is needed, and nothing is cleared without it.
    for key in ["shared/a@1.0.0", "shared/b@1.0.0"] {
        cli.expect(0, &with_now(&at(T0), &["record-crash", key]));
        cli.expect(1, &with_now(&at(T0), &["record-crash", key]));
    }
    let out = cli.run(&with_now(&now, &["reset", "--refused"]));
    assert_error(
        &out,
        "2 backends are refused now (shared/a@1.0.0, shared/b@1.0.0)",
    );
    assert!(stderr(&out).contains("--yes"));
    let only_a: Reset = cli.json(
        0,
        &with_now(&now, &["reset", "--refused", "--service", "a"]),
    );
    assert_eq!(only_a.cleared, ["shared/a@1.0.0"]);
    let rest: Reset = cli.json(0, &with_now(&now, &["reset", "--refused", "--yes"]));
    assert_eq!(rest.cleared, ["shared/b@1.0.0"]);
}

#[test]
fn policy_set_checks_the_change_and_says_what_it_did() {
    let cli = Cli::new();
    // A backoff not shorter than the window is refused, and creates no store.
    let out = cli.run(&["policy", "set", "--retry-backoff", "30s"]);
    assert_error(
        &out,
        "the retry backoff (30s) is not shorter than the budget window (30s)",
    );
    assert!(stderr(&out).contains("could never be refused"));
    assert!(!cli.path().exists());
    // One slip (1y for 1m) needs --yes; the store keeps its policy.
    cli.ok(&["record-crash", "shared/a@1.0.0"]);
    let out = cli.run(&["policy", "set", "--budget-window", "1y"]);
    assert_error(&out, "is over 1 day");
    assert!(stderr(&out).contains("--yes"));
    let out = cli.run(&[
        "policy",
        "set",
        "--retry-backoff",
        "2h",
        "--budget-window",
        "1y",
    ]);
    assert_error(&out, "over 1 day");
    let out = cli.run(&[
        "policy",
        "set",
        "--retry-backoff",
        "2h",
        "--budget-window",
        "1d",
    ]);
    assert_error(&out, "a retry backoff of 2h is over 1 hour");
    assert_eq!(
        cli.json::<PolicyDoc>(0, &["policy"]),
        PolicyDoc {
            retry_backoff_ms: 250,
            budget_window_ms: 30_000,
            retries_per_window: 1,
            overrides: vec![],
            damaged: vec![],
        }
    );
    let doc: PolicySet = cli.json(0, &["policy", "set", "--budget-window", "2d", "--yes"]);
    assert_eq!(doc.budget_window_ms, 2 * 86_400_000);
    assert_eq!(doc.previous.budget_window_ms, 30_000);
    let text = cli.ok(&["policy", "set", "--budget-window", "1m"]);
    assert_eq!(
        text,
        "retry backoff: 250ms (unchanged)\nbudget window: 2days → 1m\n\
         retries per window: 1 (unchanged)\n\
         windows already running are judged by the new policy from their next decision\n"
    );
}

#[test]
fn import_merge_adds_entries_and_refuses_keys_in_both_without_yes() {
    let source = populated();
    let doc = source.ok(&["export"]);
    let cli = Cli::new();
    cli.ok(&["record-crash", "shared/mine@1.0.0"]);
    cli.ok(&["policy", "set", "--retry-backoff", "100ms"]);
    let file = cli.tmp.dir.path().join("doc.json");
    std::fs::write(&file, &doc).unwrap();
    let file = file.to_str().unwrap();
    let done: Import = cli.json(0, &["import", "--merge", file]);
    assert!(done.merged && done.overwritten.is_empty());
    assert_eq!(
        done.policy.retry_backoff_ms, 100,
        "merge keeps the store's policy"
    );
    assert_eq!(cli.json::<List>(0, &["list"]).entries.len(), 4);
    // The same document again adds nothing; once the store's entries moved on, it conflicts.
    let again: Import = cli.json(0, &["import", "--merge", file]);
    assert!(!again.changed);
    for key in [
        "explicit:ci/old@1.0.0",
        "shared/demo@1.0.0",
        "private:svc/svc@1.0.0#9f2c",
    ] {
        cli.run(&["record-crash", key]);
    }
    let out = cli.run(&["import", "--merge", file]);
    assert_error(&out, "3 entries the store holds otherwise");
    assert!(stderr(&out).contains("--yes"));
    let done: Import = cli.json(0, &["import", "--merge", "--yes", file]);
    assert_eq!(done.overwritten.len(), 3);
    assert_eq!(cli.json::<List>(0, &["list"]).entries.len(), 4);
}

/// At one `now`, `status`, `show` and `list` agree on every field of every backend.
#[test]
fn status_show_and_list_agree_at_the_same_now() {
    let cli = populated();
    let now = at(T5);
    let list: List = cli.json(0, &with_now(&now, &["list"]));
    assert_eq!(list.evaluated_at, list.now);
    for entry in &list.entries {
        let show: Show = cli.json(0, &with_now(&now, &["show", &entry.key]));
        assert_eq!(show.evaluated_at, list.evaluated_at);
        let mut shown = show.entry.expect("entry");
        // Only `show` carries the crash history.
        assert_eq!(
            shown.history.take().map(|h| h.len() as u64),
            Some(entry.total_crashes)
        );
        assert_eq!(
            format!("{shown:?}"),
            format!("{entry:?}"),
            "show and list differ for {}",
            entry.key
        );
        assert_eq!(shown.last_crash_at, shown.last_crash);
        let code = if entry.state == "refused" { 1 } else { 0 };
        let status: Status = cli.json(code, &with_now(&now, &["status", &entry.key]));
        assert_eq!(status.evaluated_at, list.evaluated_at);
        assert_eq!(status.state, entry.state);
        assert_eq!(status.crashes_in_window, entry.crashes_in_window);
        assert_eq!(status.total_crashes, entry.total_crashes);
        assert_eq!(status.window_remaining_ms, Some(entry.window_remaining_ms));
        assert_eq!(status.retry_after_ms, entry.retry_after_ms);
    }
    // The ended-window rule: no crash in a window that has ended; the total is kept.
    let old = &list.entries.iter().find(|e| e.state == "healthy").unwrap();
    assert_eq!((old.crashes_in_window, old.total_crashes), (0, 1));
    let text = cli.ok(&with_now(&now, &["show", &old.key]));
    assert!(
        text.contains("crashes in window: 0 (the window has ended)"),
        "{text}"
    );
}

#[test]
fn every_key_argument_and_subcommand_explains_itself() {
    let help = |args: &[&str]| {
        let out = Command::new(bin())
            .args(args)
            .arg("--help")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8(out.stdout).unwrap()
    };
    for sub in ["show", "status", "record-crash", "record-success", "reset"] {
        let text = help(&[sub]);
        assert!(
            text.contains("INSTANCE/SERVICE@VERSION[#EXE_HASH]")
                && text.contains("e.g. shared/zccache@1.11.20"),
            "{sub}: {text}"
        );
    }
    for sub in [
        &["list"][..],
        &["show"],
        &["status"],
        &["reset"],
        &["record-crash"],
        &["record-success"],
        &["prune"],
        &["policy"],
        &["policy", "set"],
        &["check"],
        &["export"],
        &["import"],
        &["path"],
    ] {
        let text = help(sub);
        assert!(text.contains("Exit codes: 0 "), "{sub:?}: {text}");
    }
    assert!(help(&["status"]).contains("1 refused"));
}

#[test]
fn path_prints_the_store_and_how_it_was_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let run = |flag: Option<&str>, envs: &[(&str, &str)]| -> StorePath {
        let mut cmd = Command::new(bin());
        cmd.arg("--json")
            .arg("path")
            .env_remove("RECOVERY_STORE_DB")
            .env_remove("XDG_STATE_HOME")
            .env("HOME", dir.path());
        if let Some(db) = flag {
            cmd.args(["--db", db]);
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let doc = run(Some("/srv/x.redb"), &[("RECOVERY_STORE_DB", "/v.redb")]);
    assert_eq!(
        (doc.store.as_str(), doc.source.as_str()),
        ("/srv/x.redb", "flag")
    );
    assert!(!doc.exists);
    let doc = run(None, &[("RECOVERY_STORE_DB", "/v.redb")]);
    assert_eq!(
        (doc.store.as_str(), doc.source.as_str()),
        ("/v.redb", "variable")
    );
    let doc = run(
        None,
        &[("RECOVERY_STORE_DB", ""), ("XDG_STATE_HOME", "/xdg")],
    );
    assert_eq!(
        (doc.store.as_str(), doc.source.as_str()),
        ("/xdg/recovery-store/recovery.redb", "xdg"),
        "an empty variable counts as unset"
    );
    let doc = run(None, &[]);
    assert_eq!(doc.source, "default");
    assert!(
        doc.store
            .ends_with(".local/state/recovery-store/recovery.redb")
    );

    let cli = Cli::new();
    cli.ok(&["record-crash", "shared/a@1.0.0"]);
    assert_eq!(
        cli.ok(&["path"]),
        format!(
            "{}\nchosen by --db (the file exists)\n",
            cli.path().display()
        )
    );
    // An empty variable is not a missing --db value: the command runs on the default store.
    let out = Command::new(bin())
        .args(["list"])
        .env("RECOVERY_STORE_DB", "")
        .env("HOME", dir.path())
        .env_remove("XDG_STATE_HOME")
        .output()
        .unwrap();
    assert_error(&out, "from the default under $HOME");
}
