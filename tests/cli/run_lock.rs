//! `run`'s one-run-per-key lock, with real processes: a second `run` of a live key, a live
//! `run` in another PID namespace, many `run`s at once, and the race that removing lock files
//! opens.

use super::run::progress;
use super::run_store::{counting, lines, sigterm, spawn_run};
use super::*;
use crate::util::{Reaped, env_flag};

#[test]
fn a_second_run_of_a_live_key_refuses_at_once_naming_the_live_one() {
    let cli = Cli::new();
    let key = "shared/once@1.0.0";
    let (script, starts) = counting(&cli, "exec sleep 60");
    let first = spawn_run(&cli, &["run", key, "--", "sh", "-c", &script]);
    wait_for(|| lines(&starts) == 1);
    let started = Instant::now();
    let out = cli.run(&["--json", "run", key, "--wait", "--", "sh", "-c", &script]);
    assert!(started.elapsed() < Duration::from_secs(10), "at once");
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    let doc: Run = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((doc.outcome.as_str(), doc.starts), ("duplicate", 0));
    let err = progress(&stderr(&out));
    assert_eq!(err.len(), 1, "{err:?}");
    assert!(
        err[0].contains(&format!(
            "already supervised by another run (PID {},",
            first.id()
        )) && err[0].ends_with("sh was not started; stop that run first"),
        "{err:?}"
    );
    assert_eq!(lines(&starts), 1, "the duplicate started nothing");
    assert!(
        cli.json::<Show>(0, &["show", key]).entry.is_none(),
        "nothing recorded"
    );
    // Another key, or the same key in another store, is not held.
    cli.ok(&["run", "shared/other@1.0.0", "--", "true"]);
    let elsewhere = TempStore::new();
    let out = command(&elsewhere.path, &["run", key, "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // A store whose directory does not exist yet gets the guard from the first run on.
    let fresh = cli.tmp.dir.path().join("new/dir/recovery.redb");
    let out = command(&fresh, &["run", key, "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    // Once the first is gone the key is free.
    sigterm(&first);
    first.into_inner().wait().unwrap();
    cli.ok(&["run", key, "--", "true"]);
}

/// The live `run` is in another PID namespace (as in another container sharing the store's
/// directory), where its PID means nothing here: the lock still tells.
#[test]
fn a_live_run_in_another_pid_namespace_holds_its_key() {
    let probe = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "--mount-proc", "true"])
        .output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        assert!(!env_flag("CI"), "unshare --pid is needed: {probe:?}");
        eprintln!("skipped: cannot create a PID namespace: {probe:?}");
        return;
    }
    let cli = Cli::new();
    let key = "shared/ns@1.0.0";
    let (script, starts) = counting(&cli, "exec sleep 60");
    let inside = Reaped::new(
        Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child", "--mount-proc"])
            .arg(bin())
            .arg("--db")
            .arg(cli.path())
            .args(["run", key, "--", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(|| lines(&starts) == 1);
    let out = cli.run(&["run", key, "--", "sh", "-c", &script]);
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    // PID 1 there: the first process of the new namespace.
    assert!(
        stderr(&out).contains("already supervised by another run (PID 1,"),
        "{}",
        stderr(&out)
    );
    assert_eq!(lines(&starts), 1);
    drop(inside);
    wait_for(|| cli.run(&["run", key, "--", "true"]).status.success());
}

/// Many `run`s of one key started at once, again and again: the command never runs twice at a
/// time, and no lock file is left behind (each `run` removes its own while holding it).
#[test]
fn concurrent_runs_of_one_key_never_overlap() {
    let cli = Cli::new();
    cli.ok(&["policy", "set", "--retry-backoff", "10ms"]);
    let log = cli.tmp.dir.path().join("log");
    let script = format!(
        "echo start >> '{0}'; sleep 0.2; echo end >> '{0}'",
        log.display()
    );
    for _ in 0..3 {
        let runs: Vec<Reaped> = (0..6)
            .map(|_| {
                Reaped::new(
                    cli.cmd(&["run", "shared/race@1.0.0", "--", "sh", "-c", &script])
                        .stderr(Stdio::null())
                        .spawn()
                        .unwrap(),
                )
            })
            .collect();
        for mut run in runs {
            let code = run.wait().unwrap().code();
            assert!(matches!(code, Some(0 | 75)), "{code:?}");
        }
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(!lines.is_empty());
    for pair in lines.chunks(2) {
        assert_eq!(pair, ["start", "end"], "overlapping runs:\n{text}");
    }
    let left: Vec<_> = std::fs::read_dir(cli.tmp.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// The race that removing lock files opens, made to happen: B opens the lock file of a live
/// run A, and is held (strace) before its flock; A ends and removes the file; C takes a new
/// one. B's flock then succeeds on the removed file, which must not let B run beside C.
#[test]
fn a_lock_taken_on_a_removed_file_is_taken_again() {
    if Command::new("strace").arg("-V").output().is_err() {
        assert!(
            !env_flag("CI"),
            "strace is needed to hold a run before its lock"
        );
        eprintln!("skipped: strace is not installed");
        return;
    }
    let cli = Cli::new();
    let key = "shared/relock@1.0.0";
    let dir = cli.tmp.dir.path();
    let (log, go, trace) = (dir.join("log"), dir.join("go"), dir.join("trace"));
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    let body = |name: &str, rest: &str| {
        format!(
            "echo {name}-start >> '{0}'; {rest}; echo {name}-end >> '{0}'",
            log.display()
        )
    };
    let wait_go = format!("while [ ! -e '{}' ]; do sleep 0.02; done", go.display());
    let a = Reaped::new(
        cli.cmd(&["run", key, "--", "sh", "-c", &body("a", &wait_go)])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(|| logged().contains("a-start"));
    let mut b = Reaped::new(
        Command::new("strace")
            .arg("-o")
            .arg(&trace)
            .args([
                "-e",
                "trace=flock",
                "-e",
                "inject=flock:delay_enter=1500000",
            ])
            .arg(bin())
            .arg("--db")
            .arg(cli.path())
            .args(["run", key, "--", "sh", "-c", &body("b", "true")])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(|| std::fs::read_to_string(&trace).is_ok_and(|t| t.contains("flock(")));
    std::fs::write(&go, "").unwrap();
    a.into_inner().wait().unwrap();
    let c = Reaped::new(
        cli.cmd(&["run", key, "--", "sh", "-c", &body("c", "sleep 3")])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(|| logged().contains("c-start"));
    assert_eq!(b.wait().unwrap().code(), Some(75), "{}", logged());
    c.into_inner().wait().unwrap();
    assert_eq!(
        logged().lines().collect::<Vec<_>>(),
        ["a-start", "a-end", "c-start", "c-end"]
    );
}

/// A symbolic or hard link planted at the lock's path (the directory may be writable by
/// others) is never followed or written: `run` warns, and supervises without the guard.
#[test]
fn a_planted_link_at_the_lock_path_is_not_written() {
    let cli = Cli::new();
    let key = "shared/planted@1.0.0";
    // Learn the lock's name from a live run.
    let (script, starts) = counting(&cli, "exec sleep 60");
    let first = spawn_run(&cli, &["run", key, "--", "sh", "-c", &script]);
    wait_for(|| lines(&starts) == 1);
    let lock = std::fs::read_dir(cli.tmp.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".lock"))
        .expect("a lock file beside the store");
    sigterm(&first);
    first.into_inner().wait().unwrap();
    let victim = cli.tmp.dir.path().join("victim");
    for hard in [false, true] {
        std::fs::write(&victim, "precious\n").unwrap();
        let _ = std::fs::remove_file(&lock);
        if hard {
            std::fs::hard_link(&victim, &lock).unwrap();
        } else {
            std::os::unix::fs::symlink(&victim, &lock).unwrap();
        }
        let out = cli.run(&["run", key, "--", "true"]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let err = progress(&stderr(&out));
        assert!(
            err[0].contains("warning: cannot take the run lock"),
            "{err:?}"
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    }
}
