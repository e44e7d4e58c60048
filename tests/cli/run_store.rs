//! `run` and its store, with real processes: exec failures, the default
//! `--healthy-after`, and a store that is damaged, unreadable or stalled by another writer,
//! under which `run` keeps its command supervised and still answers SIGTERM.

use super::run::progress;
use super::*;
use crate::util::{Reaped, digest, env_flag, rewrite_meta};

/// Spawns `run` with stderr piped, killed and reaped if the test fails.
pub(super) fn spawn_run(cli: &Cli, args: &[&str]) -> Reaped {
    Reaped::new(cli.cmd(args).stderr(Stdio::piped()).spawn().unwrap())
}

pub(super) fn sigterm(child: &Reaped) {
    // SAFETY: kill(2) on a child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

/// A command that appends a line to `starts` each time it starts, then runs `rest`.
pub(super) fn counting(cli: &Cli, rest: &str) -> (String, std::path::PathBuf) {
    let starts = cli.tmp.dir.path().join("starts");
    (format!("echo x >> '{}'; {rest}", starts.display()), starts)
}

pub(super) fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[test]
fn exec_failures_exit_127_or_126_in_one_line_and_record_nothing() {
    let cli = Cli::new();
    let key = "shared/exec@1.0.0";
    let not_exec = cli.tmp.dir.path().join("not-executable");
    std::fs::write(&not_exec, "#!/bin/sh\n").unwrap();
    let dir = cli.tmp.dir.path().to_str().unwrap().to_owned();
    // The store exists first, so stderr holds the one line about the command. (Setting the
    // reference policy would create none: it records nothing.)
    cli.set_policy("250ms", "29s");
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

    // Past the lock bound `run` supervises from memory: the default policy (it could not read
    // the store's), one retry, then `--wait` through the refusal.
    let key = "shared/b@1.0.0";
    let (script, starts) = counting(&cli, "exit 3");
    let log = cli.tmp.dir.path().join("run.log");
    let run = Reaped::new(
        cli.cmd(&[
            "--lock-timeout",
            "1s",
            "run",
            key,
            "--wait",
            "--",
            "sh",
            "-c",
            &script,
        ])
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
    // The store's own bound spoke, with --lock-timeout passed through to it.
    assert_eq!(has("is busy: gave up after 1s"), 1, "{err:?}");
    assert_eq!(
        has("crash kept in memory (store unavailable)"),
        2,
        "{err:?}"
    );
    assert_eq!(has("is back: state written through"), 1, "{err:?}");
}

/// `run` opens the store as every command does: an untrusted place degrades it (with the
/// store's own reason), and `--trust-owner` is honoured.
#[test]
fn run_opens_the_store_with_the_global_options() {
    use std::os::unix::fs::PermissionsExt as _;
    let cli = Cli::new();
    // Reachable by others (a 0700 parent would make the open directory below harmless).
    std::fs::set_permissions(cli.tmp.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let open_dir = cli.tmp.dir.path().join("open");
    std::fs::create_dir(&open_dir).unwrap();
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let store = open_dir.join("recovery.redb");
    let key = "shared/opts@1.0.0";
    let out = command(&store, &["run", key, "--", "sh", "-c", "exit 3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    assert!(
        stderr(&out).contains("is unavailable (refusing"),
        "{}",
        stderr(&out)
    );
    let out = command(
        &store,
        &["--trust-owner", "run", key, "--", "sh", "-c", "exit 3"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    assert!(
        !stderr(&out).contains("is unavailable ("),
        "{}",
        stderr(&out)
    );
    let out = command(&store, &["--trust-owner", "--json", "show", key])
        .output()
        .unwrap();
    let show: Show = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(show.entry.unwrap().crashes_in_window, 2);
}
