//! Stores the binary must not harm: a newer schema, healthy stores under read commands, stores
//! left by a killed writer, damaged entries only `reset --raw` can name; and the shape of every
//! error line.

use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::util::{digest, rewrite_meta};

const KEY: &str = "shared/a@1.0.0";

/// Every command, read and write, in a form that would succeed on a healthy store.
fn every_command(import: &str) -> Vec<Vec<&str>> {
    vec![
        vec!["list"],
        vec!["show", KEY],
        vec!["status", KEY],
        vec!["policy"],
        vec!["check"],
        vec!["export"],
        vec!["record-crash", KEY],
        vec!["record-success", KEY],
        vec!["reset", KEY],
        vec!["reset", "--all", "--yes"],
        vec!["prune"],
        vec!["policy", "set", "--retry-backoff", "1s"],
        vec!["import", import],
        // Not `run`: it keeps its command supervised whatever the store (tests/cli/run*.rs).
    ]
}

#[test]
fn a_newer_schema_is_refused_by_every_command_and_left_untouched() {
    let cli = Cli::new();
    cli.ok(&["record-crash", KEY]);
    let export = cli.tmp.dir.path().join("export.json");
    std::fs::write(&export, cli.ok(&["export"])).unwrap();
    rewrite_meta(
        cli.path(),
        b"schema_version",
        &postcard::to_allocvec(&3u32).unwrap(),
    );
    let before = digest(cli.path());
    let shown = cli.path().display().to_string();
    for args in every_command(export.to_str().unwrap()) {
        let out = cli.run(&args);
        if args == ["check"] {
            // `check` diagnoses instead of failing with the error that sent the operator to it.
            assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("newer schema") && text.contains("upgrade"),
                "{text}"
            );
            assert_eq!(digest(cli.path()), before, "check modified the file");
            continue;
        }
        assert_error(&out, &shown);
        let err = stderr(&out);
        for needle in ["schema 3", "up to 2", "upgrade recovery-store"] {
            assert!(err.contains(needle), "{args:?}: {needle:?} not in {err}");
        }
        assert_eq!(digest(cli.path()), before, "{args:?} modified the file");
    }
}

#[test]
fn read_commands_leave_a_healthy_store_byte_identical() {
    let cli = populated();
    let before = digest(cli.path());
    let modified = || std::fs::metadata(cli.path()).unwrap().modified().unwrap();
    let mtime = modified();
    let reads: [&[&str]; 7] = [
        &["list"],
        &["list", "--refused"],
        &["show", "shared/demo@1.0.0"],
        &["status", "shared/demo@1.0.0"],
        &["status", "shared/never@1.0.0"],
        &["policy"],
        &["export"],
    ];
    for args in reads {
        for json in [false, true] {
            let mut all = Vec::from(args);
            if json {
                all.insert(0, "--json");
            }
            let out = cli.run(&all);
            assert!(
                matches!(out.status.code(), Some(0 | 1)),
                "{all:?}: {}",
                describe(&out)
            );
            assert_eq!(digest(cli.path()), before, "{all:?} wrote the file");
        }
    }
    assert_eq!(modified(), mtime);
}

/// The checks after a writer was killed: every command answers, none with a raw error.
fn assert_usable_after_a_kill(cli: &Cli, key: &str) {
    for (args, codes) in [
        (vec!["list"], &[0][..]),
        (vec!["status", key], &[0, 1]),
        (vec!["check"], &[0, 1]),
        (vec!["record-crash", key], &[0, 1]),
        (vec!["--json", "list"], &[0]),
    ] {
        let out = cli.run(&args);
        let err = stderr(&out);
        assert!(
            out.status.code().is_some_and(|c| codes.contains(&c)),
            "{args:?}: {}",
            describe(&out)
        );
        assert!(
            err.is_empty(),
            "{args:?} said something on stderr: {}",
            describe(&out)
        );
    }
    let doc: Check = cli.json(0, &["check"]);
    assert!(doc.ok, "{:?}", doc.problems);
    assert!(cli.json::<Show>(0, &["show", key]).entry.is_some());
}

#[test]
fn a_store_left_by_a_killed_run_works_without_a_raw_error() {
    let cli = Cli::new();
    // A two-millisecond window: every crash opens a new window and earns a retry, so `run`
    // records crashes as fast as `sh` can fail.
    cli.set_policy("1ms", "2ms");
    let key = "shared/busy@1.0.0";
    let mut run = crate::util::Reaped::new(
        cli.cmd(&["run", key, "--wait", "--", "sh", "-c", "exit 3"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(|| {
        cli.json::<Show>(0, &["show", key])
            .entry
            .is_some_and(|e| e.total_crashes >= 5)
    });
    run.kill().unwrap();
    assert_eq!(run.wait().unwrap().code(), None, "killed by SIGKILL");
    assert_usable_after_a_kill(&cli, key);
}

#[test]
fn a_store_left_by_killed_record_crash_processes_works_without_a_raw_error() {
    let cli = Cli::new();
    let key = "shared/killed@1.0.0";
    cli.ok(&["record-crash", key]);
    // Kill writers at staggered moments: some before opening, some mid-commit, some after.
    for i in 0..20u64 {
        let mut child = cli
            .cmd(&["record-crash", key])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(500 * (i % 10)));
        let _ = child.kill();
        child.wait().unwrap();
    }
    assert_usable_after_a_kill(&cli, key);
}

#[test]
fn reset_raw_clears_a_damaged_entry_whose_key_does_not_parse() {
    let cli = populated();
    let raw = "shared/Evil\x1b[2J@1";
    super::transfer::plant_damaged_entry(cli.path(), raw.as_bytes());
    let doc: List = cli.json(0, &["list"]);
    assert_eq!(doc.damaged.len(), 1);
    // The hint names the command, with the key as the terminal shows it.
    let hint = "recovery-store reset --raw 'shared/Evil\\x1b[2J@1'";
    assert!(
        doc.damaged[0].error.contains(hint),
        "{}",
        doc.damaged[0].error
    );
    let out = cli.run(&["list"]);
    assert!(stderr(&out).contains(hint), "{}", stderr(&out));
    assert!(
        cli.run(&["reset", raw]).status.code() == Some(2),
        "the key does not parse"
    );

    assert_eq!(
        cli.ok(&["reset", "--raw", "shared/Evil"]),
        "no state for shared/Evil\n",
        "only a whole key matches"
    );
    // As the terminal shows it: the escape typed as text.
    assert_eq!(
        cli.ok(&["reset", "--raw", "shared/Evil\\x1b[2J@1"]),
        "cleared shared/Evil\\x1b[2J@1\n"
    );
    assert!(cli.json::<Check>(0, &["check"]).ok);
    assert_eq!(cli.json::<List>(0, &["list"]).entries.len(), 3);

    // As stored, together with a parsed key.
    super::transfer::plant_damaged_entry(cli.path(), raw.as_bytes());
    let doc: Reset = cli.json(0, &["reset", "shared/demo@1.0.0", "--raw", raw]);
    assert_eq!(doc.cleared, ["shared/Evil\x1b[2J@1", "shared/demo@1.0.0"]);
    assert!(cli.json::<Check>(0, &["check"]).ok);
}

/// One line: `recovery-store: <what> (<path or key>): <what to do>`, naming `subject` and
/// ending with `todo`.
fn assert_error_line(out: &Output, subject: &str, todo: &str) {
    assert_error(out, subject);
    let err = stderr(out);
    let line = err.trim_end();
    assert!(line.ends_with(todo), "{todo:?} does not end {line}");
    assert!(
        line.matches("(os error").count() <= 1,
        "a cause repeated: {line}"
    );
}

#[test]
fn errors_name_what_went_wrong_and_say_what_to_do() {
    let cli = Cli::new();
    let dir = cli.tmp.dir.path();
    let todo_help = ": see --help";
    let out = cli.run(&["record-crash", "shared/Bad@1.0.0"]);
    assert_error_line(&out, "'shared/Bad@1.0.0'", todo_help);
    assert!(stderr(&out).contains("invalid service name \"Bad\""));
    let out = cli.run(&["status", "shared/a@1"]);
    assert_error_line(&out, "invalid service version \"1\"", todo_help);
    let out = cli.run(&["policy", "set", "--budget-window", "soon"]);
    assert_error_line(&out, "'soon' for '--budget-window", todo_help);
    assert!(stderr(&out).contains("such as 250ms"));
    let out = cli.run(&["run", KEY, "--healthy-after", "0ms", "--", "true"]);
    assert_error_line(&out, "'0ms' for '--healthy-after", todo_help);
    let out = cli.run(&["show"]);
    assert_error_line(
        &out,
        "<KEY>",
        "(usage: recovery-store show <KEY>): see --help",
    );
    assert!(!cli.path().exists());

    // A directory where the store should be.
    for args in [&["list"][..], &["record-crash", KEY]] {
        let out = command(dir, args).output().unwrap();
        assert_error_line(
            &out,
            &format!(
                "{} is not a recovery store (it is a directory)",
                dir.display()
            ),
            "point at the right file or move this one aside",
        );
    }

    // A path through a regular file: fails for root too.
    let file = dir.join("plain");
    std::fs::write(&file, "x").unwrap();
    let db = file.join("recovery.redb");
    for args in [&["list"][..], &["record-crash", KEY]] {
        let out = command(&db, args).output().unwrap();
        assert_error_line(
            &out,
            &db.display().to_string(),
            "check the path and its permissions",
        );
        assert!(stderr(&out).contains("Not a directory"), "{}", stderr(&out));
    }
}

#[test]
fn a_store_in_a_read_only_directory_gets_a_clean_error() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let setpriv = Path::new("/usr/bin/setpriv");
    if root && !setpriv.exists() {
        skip("running as root without setpriv");
        return;
    }
    // Under /tmp, world-searchable, so that `nobody` can reach it.
    let base = tempfile::Builder::new().tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let locked = base.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    // A copy of the binary beside them, so `nobody` can run it wherever the checkout lives.
    let binary = base.path().join("recovery-store");
    std::fs::copy(bin(), &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |db: &Path| {
        let mut cmd = if root {
            let mut cmd = Command::new(setpriv);
            cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(&binary);
            cmd
        } else {
            Command::new(bin())
        };
        cmd.arg("--db")
            .arg(db)
            .args(["record-crash", KEY])
            .env_remove("RECOVERY_STORE_DB")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    // The probe's directory belongs to `nobody`: a world-writable one would be refused.
    let probe = base.path().join("probe");
    std::fs::create_dir(&probe).unwrap();
    if root {
        std::os::unix::fs::chown(&probe, Some(65534), Some(65534)).unwrap();
    }
    if root && run(&probe.join("probe.redb")).status.code() != Some(0) {
        skip("an unprivileged user cannot run the binary from /tmp");
        return;
    }
    for db in [
        locked.join("recovery.redb"),
        locked.join("sub/recovery.redb"),
    ] {
        let out = run(&db);
        assert_error_line(
            &out,
            &locked.display().to_string(),
            "check the path and its permissions",
        );
        assert!(
            stderr(&out).contains("Permission denied"),
            "{}",
            stderr(&out)
        );
        assert!(!db.exists());
    }
}

/// A check that cannot run here: allowed on a developer's machine, a failure in CI.
fn skip(why: &str) {
    assert!(std::env::var_os("CI").is_none(), "cannot run in CI: {why}");
    eprintln!("skipped: {why}");
}
