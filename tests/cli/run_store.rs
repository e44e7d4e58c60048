//! `run` and its store, with real processes: one `run` per key, exec failures, the default
//! `--healthy-after`, and a store that is damaged, unreadable or stalled by another writer,
//! under which `run` keeps its command supervised and still answers SIGTERM.

use super::run::progress;
use super::*;
use crate::util::{Reaped, digest, env_flag, rewrite_meta};

/// Spawns `run` with stderr piped, killed and reaped if the test fails.
fn spawn_run(cli: &Cli, args: &[&str]) -> Reaped {
    Reaped::new(cli.cmd(args).stderr(Stdio::piped()).spawn().unwrap())
}

fn sigterm(child: &Reaped) {
    // SAFETY: kill(2) on a child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

/// A command that appends a line to `starts` each time it starts, then runs `rest`.
fn counting(cli: &Cli, rest: &str) -> (String, std::path::PathBuf) {
    let starts = cli.tmp.dir.path().join("starts");
    (format!("echo x >> '{}'; {rest}", starts.display()), starts)
}

fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

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

#[test]
fn exec_failures_exit_127_or_126_in_one_line_and_record_nothing() {
    let cli = Cli::new();
    let key = "shared/exec@1.0.0";
    let not_exec = cli.tmp.dir.path().join("not-executable");
    std::fs::write(&not_exec, "#!/bin/sh\n").unwrap();
    let dir = cli.tmp.dir.path().to_str().unwrap().to_owned();
    for (cmd, code, cause) in [
        (
            "/nonexistent/cmd",
            127,
            "not found: check the command and PATH",
        ),
        ("no-such-command-anywhere", 127, "not found"),
        (not_exec.to_str().unwrap(), 126, "not executable"),
        (dir.as_str(), 126, "not executable"),
    ] {
        let out = cli.run(&["run", key, "--", cmd, "arg"]);
        assert_eq!(out.status.code(), Some(code), "{cmd}: {}", describe(&out));
        let err = progress(&stderr(&out));
        assert_eq!(err.len(), 1, "{err:?}");
        assert!(
            err[0].contains(&format!("cannot start {cmd} (")) && err[0].contains(cause),
            "{err:?}"
        );
        assert!(err[0].contains("not recorded as a crash"), "{err:?}");
        let doc: Run = cli.json(code, &["run", key, "--", cmd]);
        assert_eq!((doc.outcome.as_str(), doc.starts), ("exec_failed", 0));
    }
    assert!(cli.json::<Show>(0, &["show", key]).entry.is_none());
}

#[test]
fn healthy_after_defaults_to_the_budget_window() {
    let cli = Cli::new();
    cli.set_policy("10ms", "2s");
    let key = "shared/slowloop@1.0.0";
    // A crash loop slower than a short --healthy-after but inside the window: with the
    // default it is caught (refused on the second crash)...
    let (script, starts) = counting(&cli, "sleep 1.2; exit 3");
    let out = cli.run(&["run", key, "--", "sh", "-c", &script]);
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    assert_eq!(lines(&starts), 2);
    assert!(
        !stderr(&out).contains("success recorded"),
        "{}",
        stderr(&out)
    );
    // ...while a shorter --healthy-after says what it gives up.
    cli.ok(&["reset", key]);
    let out = cli.run(&[
        "run",
        key,
        "--healthy-after",
        "1s",
        "--",
        "sh",
        "-c",
        "exit 0",
    ]);
    let err = progress(&stderr(&out));
    assert_eq!(
        err[0],
        format!(
            "recovery-store: run {key}: warning: --healthy-after 1s is shorter than the budget \
             window (2s): crash loops slower than 1s are never refused"
        )
    );
    // A command that outlives the window is healthy at the window's end, announced once.
    let flag = cli.tmp.dir.path().join("flag");
    let script = format!(
        "test -e '{0}' && exit 0; touch '{0}'; sleep 2.5; exit 3",
        flag.display()
    );
    let out = cli.run(&["run", key, "--", "sh", "-c", &script]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let err = stderr(&out);
    assert_eq!(err.matches("success recorded").count(), 2, "{err}");
    assert!(err.contains("sh has run for 2s: success recorded"), "{err}");
    assert!(err.contains("retry after 10ms (attempt 1)"), "{err}");
}

/// A damaged file, a newer schema and a directory in the store's place: `run` warns once,
/// supervises under the default policy in memory (one retry, then refused), and answers
/// SIGTERM while its command runs.
#[test]
fn a_broken_store_keeps_the_command_supervised() {
    let cli = Cli::new();
    let key = "shared/broken@1.0.0";
    cli.ok(&["record-crash", "shared/x@1.0.0"]);
    let newer = cli.tmp.dir.path().join("newer.redb");
    std::fs::copy(cli.path(), &newer).unwrap();
    rewrite_meta(
        &newer,
        b"schema_version",
        &postcard::to_allocvec(&99u32).unwrap(),
    );
    let damaged = cli.tmp.dir.path().join("damaged.redb");
    let mut bytes = std::fs::read(cli.path()).unwrap();
    bytes[..64].fill(0xA5);
    std::fs::write(&damaged, bytes).unwrap();
    let dir = cli.tmp.dir.path().join("a-directory.redb");
    std::fs::create_dir(&dir).unwrap();
    for store in [&newer, &damaged, &dir] {
        let before = store.is_file().then(|| digest(store));
        let (script, starts) = counting(&cli, "exit 3");
        let _ = std::fs::remove_file(&starts);
        let out = command(store, &["run", key, "--", "sh", "-c", &script])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
        assert_eq!(lines(&starts), 2, "started, retried once, refused");
        let err = progress(&stderr(&out));
        let warnings = err
            .iter()
            .filter(|l| l.contains("is unavailable ("))
            .count();
        assert_eq!(warnings, 1, "{err:?}");
        assert!(
            err.iter().any(|l| l.contains(
                "crash kept in memory (store unavailable): retry after 250ms (attempt 1)"
            )),
            "{err:?}"
        );
        if let Some(before) = before {
            assert_eq!(digest(store), before, "left untouched");
        }

        // A long-running command is started and stopped on request as usual.
        let (script, starts) = counting(&cli, "exec sleep 60");
        let _ = std::fs::remove_file(&starts);
        let mut cmd = command(store, &["run", key, "--", "sh", "-c", &script]);
        let run = Reaped::new(cmd.stderr(Stdio::piped()).spawn().unwrap());
        wait_for(|| lines(&starts) == 1);
        sigterm(&run);
        let out = run.into_inner().wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(143), "{}", describe(&out));
    }
}

/// Another writer stalls inside a commit (strace holds it in fdatasync). `run` does not wait
/// for it past its bound: it starts the command under the policy in memory, answers SIGTERM
/// while it waits and while the command runs, and writes its crashes through once the store
/// answers again.
#[test]
fn a_store_stalled_by_another_writer_keeps_the_command_supervised() {
    if Command::new("strace").arg("-V").output().is_err() {
        assert!(!env_flag("CI"), "strace is needed to stall a writer");
        eprintln!("skipped: strace is not installed");
        return;
    }
    let cli = Cli::new();
    cli.set_policy("10ms", "60s");
    let trace = cli.tmp.dir.path().join("trace");
    let stall = || {
        let writer = Reaped::new(
            Command::new("strace")
                .arg("-f")
                .arg("-o")
                .arg(&trace)
                .args(["-e", "trace=fdatasync", "-e"])
                .arg("inject=fdatasync:delay_enter=60000000")
                .arg(bin())
                .arg("--db")
                .arg(cli.path())
                .args(["record-crash", "shared/stalled@1.0.0"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for(|| std::fs::read_to_string(&trace).is_ok_and(|t| t.contains("fdatasync(")));
        writer
    };

    // SIGTERM while `run` waits for the store: answered at once.
    let writer = stall();
    let run = spawn_run(&cli, &["run", "shared/a@1.0.0", "--", "true"]);
    std::thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    sigterm(&run);
    let out = run.into_inner().wait_with_output().unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(out.status.code(), Some(143), "{}", describe(&out));

    // Past its bound `run` supervises from memory: the default policy (it could not read the
    // store's), one retry, then `--wait` through the refusal.
    let key = "shared/b@1.0.0";
    let (script, starts) = counting(&cli, "exit 3");
    let log = cli.tmp.dir.path().join("run.log");
    let run = Reaped::new(
        cli.cmd(&["run", key, "--wait", "--", "sh", "-c", &script])
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let logged = || std::fs::read_to_string(&log).unwrap();
    wait_for(|| logged().contains("refused (backend unavailable)"));
    assert_eq!(lines(&starts), 2);
    // The stall ends: the queued crashes go into the store with their own times.
    drop(writer);
    wait_for(|| {
        cli.run(&["--json", "show", key]).status.success()
            && cli
                .json::<Show>(0, &["show", key])
                .entry
                .is_some_and(|e| e.total_crashes == 2)
    });
    wait_for(|| logged().contains("is back: state written through"));
    sigterm(&run);
    let status = run.into_inner().wait().unwrap();
    assert_eq!(status.code(), Some(143), "{}", logged());
    let err = progress(&logged());
    let has = |needle: &str| err.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(has("is unavailable ("), 1, "{err:?}");
    assert_eq!(
        has("crash kept in memory (store unavailable)"),
        2,
        "{err:?}"
    );
    assert_eq!(has("is back: state written through"), 1, "{err:?}");
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
