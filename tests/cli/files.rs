//! Usage, bad input, and missing, foreign and damaged store files.

use super::*;

#[test]
fn help_documents_exit_codes_and_bad_usage_exits_2() {
    let out = Command::new(bin()).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in ["Exit codes", "75", "RECOVERY_STORE_DB", "run"] {
        assert!(help.contains(needle), "{needle} not in help:\n{help}");
    }
    assert!(!help.contains("--now"), "the test clock stays hidden");
    let cli = Cli::new();
    for args in [
        &["frobnicate"][..],
        &["list", "--bogus"],
        &["run", "shared/a@1.0.0"],
    ] {
        let out = cli.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&out).starts_with("recovery-store: "),
            "{}",
            stderr(&out)
        );
    }
    assert!(!cli.path().exists());
}

#[test]
fn bad_keys_and_durations_exit_2_and_name_the_problem() {
    let cli = Cli::new();
    let out = cli.run(&["record-crash", "Shared/svc@1.0.0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid instance \"Shared\""),
        "{}",
        stderr(&out)
    );
    let out = cli.run(&["status", "shared/svc@1.0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("service version"), "{}", stderr(&out));
    let out = cli.run(&["policy", "set", "--retry-backoff", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("250ms"), "{}", stderr(&out));
    let out = cli.run(&[
        "run",
        "--healthy-after",
        "0s",
        "shared/a@1.0.0",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!cli.path().exists(), "bad usage never creates a store");
}

// ---- Missing, foreign and damaged files ----

#[test]
fn read_commands_never_create_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nested").join("recovery.redb");
    let key = "shared/a@1.0.0";
    let reads: [&[&str]; 6] = [
        &["list"],
        &["show", key],
        &["status", key],
        &["policy"],
        &["check"],
        &["export"],
    ];
    for args in reads {
        let out = command(&db, args).output().unwrap();
        assert_error(&out, &format!("no recovery store at {}", db.display()));
        assert!(
            stderr(&out).contains("RECOVERY_STORE_DB"),
            "hint: {}",
            stderr(&out)
        );
        assert!(!db.parent().unwrap().exists(), "{args:?} created something");
    }
}

#[test]
fn write_commands_create_a_private_store() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state").join("recovery.redb");
    let out = command(&db, &["record-crash", "shared/a@1.0.0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(db.parent().unwrap()), 0o700);
    assert_eq!(mode(&db), 0o600);
}

#[test]
fn the_store_path_falls_back_to_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let run = |envs: &[(&str, &Path)]| {
        let mut cmd = Command::new(bin());
        cmd.args(["record-crash", "shared/a@1.0.0"])
            .env_remove("RECOVERY_STORE_DB")
            .env_remove("XDG_STATE_HOME");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    };
    let explicit = dir.path().join("env.redb");
    run(&[("RECOVERY_STORE_DB", &explicit), ("HOME", dir.path())]);
    assert!(explicit.exists());
    let xdg = dir.path().join("xdg");
    run(&[("XDG_STATE_HOME", &xdg), ("HOME", dir.path())]);
    assert!(xdg.join("recovery-store/recovery.redb").exists());
    let home = dir.path().join("home");
    run(&[("HOME", &home)]);
    assert!(
        home.join(".local/state/recovery-store/recovery.redb")
            .exists()
    );
}

fn assert_refused_untouched(path: &Path, needle: &str) {
    let before = std::fs::read(path).unwrap();
    let key = "shared/a@1.0.0";
    let all: [&[&str]; 4] = [
        &["list"],
        &["status", key],
        &["record-crash", key],
        &["reset", "--all", "--yes"],
    ];
    for args in all {
        let out = command(path, args).output().unwrap();
        assert_error(&out, needle);
        assert_eq!(
            std::fs::read(path).unwrap(),
            before,
            "{args:?} modified the file"
        );
    }
    assert_check_diagnoses(path);
    assert_eq!(
        std::fs::read(path).unwrap(),
        before,
        "check modified the file"
    );
}

/// `check` on a file it cannot open: exit 1, a diagnosis with a next step that is not `check`.
fn assert_check_diagnoses(path: &Path) -> Diagnosis {
    let out = command(path, &["check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("problem:") && text.contains("next:"),
        "{text}"
    );
    assert!(
        !text.contains("recovery-store check`"),
        "points back at itself: {text}"
    );
    let out = command(path, &["--json", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let doc: Check = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!doc.ok && doc.integrity == "unreadable");
    let diagnosis = doc.diagnosis.expect("a diagnosis");
    assert!(!diagnosis.next_step.contains("recovery-store check`"));
    diagnosis
}

#[test]
fn foreign_files_are_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk");
    std::fs::write(
        &junk,
        b"not a database at all, just some text\n".repeat(100),
    )
    .unwrap();
    assert_refused_untouched(&junk, "is not a recovery store");

    let other = dir.path().join("other.redb");
    {
        let db = redb::Database::create(&other).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("things");
            let mut table = txn.open_table(def).unwrap();
            table.insert("a", "b").unwrap();
        }
        txn.commit().unwrap();
    }
    assert_refused_untouched(&other, "is not a recovery store");
}

#[test]
fn damaged_files_get_one_clean_line_and_are_left_untouched() {
    let cli = populated();
    let mut bytes = std::fs::read(cli.path()).unwrap();
    // The page after the header: redb's first data page.
    bytes[4096..8192].fill(0xff);
    std::fs::write(cli.path(), &bytes).unwrap();
    assert_refused_untouched(cli.path(), "is damaged");

    let truncated = Cli::new();
    let bytes = std::fs::read(populated().path()).unwrap();
    std::fs::write(truncated.path(), &bytes[..bytes.len() / 3]).unwrap();
    assert_refused_untouched(truncated.path(), "is damaged");
}

#[test]
fn names_are_sanitized_before_they_reach_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir
        .path()
        .join("evil\x1b[31m\u{202e}")
        .join("recovery.redb");
    let out = command(&db, &["list"]).output().unwrap();
    assert_error(&out, "evil\\x1b[31m\\u{202e}");
    assert!(!stderr(&out).contains('\x1b'));
}
