//! `run`: the supervisor against real child processes.

use super::*;

/// The progress lines of `run`'s stderr without their timestamps, after checking that each
/// starts with an RFC 3339 time.
pub(super) fn progress(err: &str) -> Vec<String> {
    err.lines()
        .map(|line| {
            let (stamp, rest) = line.split_once(' ').unwrap_or_else(|| panic!("{line}"));
            assert!(
                humantime::parse_rfc3339(stamp).is_ok(),
                "no RFC 3339 time first: {line}"
            );
            rest.to_owned()
        })
        .collect()
}

#[test]
fn run_catches_a_crash_loop() {
    let cli = Cli::new();
    let key = "shared/demo@1.0.0";
    let started = Instant::now();
    let out = cli.run(&["run", key, "--", "sh", "-c", "exit 3"]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    let err = stderr(&out);
    assert_eq!(
        progress(&err),
        [
            &format!(
                "recovery-store: run shared/demo@1.0.0: created a new store at {}",
                cli.path().display()
            ),
            "recovery-store: run shared/demo@1.0.0: sh exited with code 3: crash recorded: retry after 250ms (attempt 1)",
            "recovery-store: run shared/demo@1.0.0: sh exited with code 3: crash recorded: refused (backend unavailable), retry after 30s: \
             sh not restarted; after a repair clear it with `recovery-store reset shared/demo@1.0.0`, or pass --wait to start it when the window ends",
        ]
    );
    assert!(
        took >= Duration::from_millis(250),
        "the retry waited the backoff: {took:?}"
    );
    let status = cli.expect(1, &["status", key]);
    assert!(
        status.starts_with("shared/demo@1.0.0: refused (backend unavailable): retry after "),
        "{status}"
    );
    // A refused key is not started again.
    let marker = cli.tmp.dir.path().join("started");
    let out = cli.run(&[
        "--json",
        "run",
        key,
        "--",
        "touch",
        marker.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    assert!(!marker.exists());
    let line = &progress(&stderr(&out))[0];
    assert!(
        line.contains(": refused (backend unavailable), retry after ")
            && line.ends_with(": touch not started; after a repair clear it with `recovery-store reset shared/demo@1.0.0`, or pass --wait to start it when the window ends"),
        "{line}"
    );
    let doc: Run = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (doc.key.as_str(), doc.outcome.as_str(), doc.exit_code),
        (key, "refused", 75)
    );
    assert_eq!((doc.starts, doc.crashes), (0, 0));
    // Generous: a loaded machine may take seconds between the two runs.
    assert!(
        doc.retry_after_ms
            .is_some_and(|ms| ms > 5_000 && ms <= 30_000)
    );
}

#[test]
fn run_json_reports_starts_and_crashes() {
    let cli = Cli::new();
    cli.set_policy("10ms", "5s");
    let doc: Run = cli.json(75, &["run", "shared/a@1.0.0", "--", "sh", "-c", "exit 3"]);
    assert_eq!(
        (doc.outcome.as_str(), doc.exit_code, doc.starts, doc.crashes),
        ("refused", 75, 2, 2)
    );
    let show: Show = cli.json(0, &["show", "shared/a@1.0.0"]);
    assert_eq!(show.entry.unwrap().crashes_in_window, 2);
}

#[test]
fn run_of_a_command_that_succeeds_clears_the_state() {
    let cli = Cli::new();
    let key = "shared/ok@1.0.0";
    cli.ok(&["record-crash", key]);
    let doc: Run = cli.json(0, &["run", key, "--", "sh", "-c", "exit 0"]);
    assert_eq!(
        (doc.outcome.as_str(), doc.exit_code, doc.starts, doc.crashes),
        ("exited", 0, 1, 0)
    );
    let show: Show = cli.json(0, &["show", key]);
    assert!(show.entry.is_none(), "{show:?}");
    cli.ok(&["status", key]);
}

#[test]
fn run_records_a_success_once_the_command_has_run_long_enough() {
    let cli = Cli::new();
    cli.ok(&["policy", "set", "--retry-backoff", "10ms"]);
    let key = "shared/slow@1.0.0";
    cli.ok(&["record-crash", key]);
    // Crashes after 1 s the first time, succeeds the second. Without --healthy-after the
    // crash would be the second in the window, and refused. The margin over 100 ms is wide so
    // that a loaded machine still sees the command alive past it.
    let flag = cli.tmp.dir.path().join("flag");
    let script = format!(
        "sleep 1; test -e '{0}' && exit 0; touch '{0}'; exit 3",
        flag.display()
    );
    let out = cli.run(&[
        "run",
        key,
        "--healthy-after",
        "100ms",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("sh has run for 100ms: success recorded"),
        "{err}"
    );
    assert!(err.contains("retry after 10ms (attempt 1)"), "{err}");
}

#[test]
fn run_forwards_sigint_and_sigterm_and_exits_with_the_childs_status() {
    let cli = Cli::new();
    let ready = cli.tmp.dir.path().join("ready");
    let body = format!("touch '{}'; while :; do sleep 0.02; done", ready.display());
    let cases = [
        (libc::SIGTERM, "trap 'exit 7' TERM; ", 7),
        (libc::SIGINT, "trap 'exit 5' INT; ", 5),
        // No trap: the child dies of the signal, and `run` exits 128 + 15 as a shell would.
        (libc::SIGTERM, "", 143),
    ];
    for (i, (sig, trap, code)) in cases.into_iter().enumerate() {
        let key = format!("shared/sig{i}@1.0.0");
        let _ = std::fs::remove_file(&ready);
        let script = format!("{trap}{body}");
        let child = crate::util::Reaped::new(
            cli.cmd(&["run", &key, "--", "sh", "-c", &script])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        wait_for(|| ready.exists());
        // SAFETY: plain kill(2) on a child we started.
        unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        let out = child.into_inner().wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{}", describe(&out));
        assert!(
            stderr(&out).contains("stopped on request, not recorded as a crash"),
            "{}",
            stderr(&out)
        );
        let show: Show = cli.json(0, &["show", &key]);
        assert!(
            show.entry.is_none(),
            "an operator's stop is not a crash: {show:?}"
        );
    }
}

#[test]
fn run_records_a_crash_for_a_child_killed_by_a_signal() {
    let cli = Cli::new();
    cli.ok(&["policy", "set", "--retry-backoff", "10ms"]);
    let key = "shared/killed@1.0.0";
    let out = cli.run(&["run", key, "--", "sh", "-c", "kill -9 $$"]);
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("sh was killed by signal 9 (SIGKILL): crash recorded: retry after 10ms"),
        "{err}"
    );
    assert!(err.contains("crash recorded: refused"), "{err}");
    let entry = cli.json::<Show>(0, &["show", key]).entry.unwrap();
    assert_eq!(entry.crashes_in_window, 2);
}

#[test]
fn run_json_keeps_stdout_for_its_one_document() {
    let cli = Cli::new();
    let out = cli.run(&[
        "--json",
        "run",
        "shared/chatty@1.0.0",
        "--",
        "sh",
        "-c",
        "echo from the child",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let doc: Run = serde_json::from_slice(&out.stdout).expect("one JSON document on stdout");
    assert_eq!((doc.outcome.as_str(), doc.starts), ("exited", 1));
    assert!(stderr(&out).contains("from the child"), "{}", stderr(&out));
}

#[test]
fn a_run_killed_with_sigkill_and_restarted_continues_the_same_window() {
    let cli = Cli::new();
    cli.ok(&["policy", "set", "--retry-backoff", "20s"]);
    let key = "shared/k@1.0.0";
    let mut first = crate::util::Reaped::new(
        cli.cmd(&["run", key, "--", "sh", "-c", "exit 3"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The first crash is recorded; `run` now sleeps through its 20 s backoff.
    wait_for(|| cli.json::<Show>(0, &["show", key]).entry.is_some());
    first.kill().unwrap();
    assert_eq!(first.wait().unwrap().code(), None, "killed by SIGKILL");
    let before = cli.json::<Show>(0, &["show", key]).entry.unwrap();
    assert_eq!(before.crashes_in_window, 1);

    let started = Instant::now();
    let out = cli.run(&["run", key, "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "no fresh retry after the restart"
    );
    let after = cli.json::<Show>(0, &["show", key]).entry.unwrap();
    assert_eq!((after.crashes_in_window, after.total_crashes), (2, 2));
    assert_eq!(after.window_started_at, before.window_started_at);
}

#[test]
fn a_reset_takes_effect_while_another_run_holds_the_store() {
    let cli = Cli::new();
    cli.set_policy("10ms", "30s");
    let key = "shared/loop@1.0.0";
    let starts = cli.tmp.dir.path().join("starts");
    let script = format!("echo x >> '{}'; exit 3", starts.display());
    let count = || {
        std::fs::read_to_string(&starts)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    let waiting = crate::util::Reaped::new(
        cli.cmd(&["run", key, "--wait", "--", "sh", "-c", &script])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Two crashes: refused, and `run --wait` waits out a 30 s window with the store open.
    wait_for(|| cli.run(&["status", key]).status.code() == Some(1));
    assert_eq!(count(), 2);
    // Meanwhile a second writer keeps recording crashes of another key.
    let other = "shared/noisy@1.0.0";
    let noisy = format!(
        "for i in 1 2 3 4 5 6 7 8 9 10; do '{}' --db '{}' record-crash {other} >/dev/null; test $? -le 1 || exit 9; done",
        bin().display(),
        cli.path().display()
    );
    let mut writer =
        crate::util::Reaped::new(Command::new("sh").args(["-c", &noisy]).spawn().unwrap());

    assert_eq!(cli.ok(&["reset", key]), format!("cleared {key}\n"));
    // The waiting run notices, starts again, crashes twice in a fresh window.
    wait_for(|| count() == 4 && cli.run(&["status", key]).status.code() == Some(1));
    assert_eq!(
        writer.wait().unwrap().code(),
        Some(0),
        "every concurrent record-crash worked"
    );
    let entry = cli.json::<Show>(0, &["show", key]).entry.unwrap();
    assert_eq!((entry.crashes_in_window, entry.total_crashes), (2, 2));
    assert!(
        cli.json::<Show>(0, &["show", other])
            .entry
            .unwrap()
            .total_crashes
            >= 10
    );

    // SIGTERM while it waits (no child running) stops it with 128 + 15.
    // SAFETY: plain kill(2) on a child we started.
    unsafe { libc::kill(waiting.id() as libc::pid_t, libc::SIGTERM) };
    let out = waiting.into_inner().wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", describe(&out));
    assert!(
        stderr(&out).contains("no longer refused: trying again"),
        "{}",
        stderr(&out)
    );
}
