//! `run` under signals, stops and its own death, with real processes: a pseudo-terminal's
//! Ctrl-C, GNU `timeout` signalling the whole process group, SIGKILL and SIGHUP to `run`, and a
//! command that ignores SIGTERM. The commands are small Python scripts that count the signals
//! they receive, so a signal delivered twice (or never) shows.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};

use super::run::progress;
use super::*;
use crate::util::Reaped;

/// A Python script that counts SIGNAL deliveries into COUNT (one line each), writes its PID to
/// READY once its handler is in place, and exits 0 a little after the first one (so a second
/// delivery still has time to land and be counted).
const COUNTER: &str = r#"
import os, signal, sys, time
sig = getattr(signal, os.environ["SIGNAL"])
got = []
def on(s, f):
    got.append(s)
    with open(os.environ["COUNT"], "a") as out:
        out.write("x\n")
signal.signal(sig, on)
with open(os.environ["READY"] + ".tmp", "w") as out:
    out.write(str(os.getpid()))
os.rename(os.environ["READY"] + ".tmp", os.environ["READY"])
while not got:
    time.sleep(0.01)
time.sleep(0.5)
sys.exit(int(os.environ.get("CODE", "0")))
"#;

/// Runs ARGV on a new pseudo-terminal (as its session leader and foreground process group),
/// types Ctrl-C once READY exists, and prints the terminal's output and `EXIT <status>`.
const PTY_DRIVER: &str = r#"
import os, pty, select, sys, time
ready = os.environ["READY"]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
out = b""
def pump(wait):
    global out
    r, _, _ = select.select([fd], [], [], wait)
    if r:
        try:
            data = os.read(fd, 4096)
        except OSError:
            return False
        out += data
        return bool(data)
    return True
deadline = time.time() + 30
while not os.path.exists(ready) and time.time() < deadline:
    pump(0.02)
os.write(fd, b"\x03")
status = None
while pump(0.1):
    done, st = os.waitpid(pid, os.WNOHANG)
    if done:
        status = st
        break
if status is None:
    status = os.waitpid(pid, 0)[1]
sys.stdout.write(out.decode(errors="replace"))
print("EXIT", os.waitstatus_to_exitcode(status))
"#;

/// python3, or a skip (a failure under CI).
fn python3() -> Option<&'static str> {
    let ok = Command::new("python3")
        .arg("-c")
        .arg("import pty")
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some("python3");
    }
    assert!(
        !crate::util::env_flag("CI"),
        "python3 is needed for the run signal tests"
    );
    eprintln!("skipped: python3 with the pty module is not installed");
    None
}

struct Counter {
    script: PathBuf,
    count: PathBuf,
    ready: PathBuf,
}

impl Counter {
    fn new(dir: &Path) -> Self {
        let script = dir.join("counter.py");
        std::fs::write(&script, COUNTER).unwrap();
        Self {
            script,
            count: dir.join("count"),
            ready: dir.join("ready"),
        }
    }

    fn reset(&self) {
        let _ = std::fs::remove_file(&self.count);
        let _ = std::fs::remove_file(&self.ready);
    }

    fn env(&self, cmd: &mut Command, signal: &str) {
        cmd.env("SIGNAL", signal)
            .env("COUNT", &self.count)
            .env("READY", &self.ready);
    }

    fn received(&self) -> usize {
        std::fs::read_to_string(&self.count)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    fn pid(&self) -> i32 {
        wait_for(|| self.ready.exists());
        std::fs::read_to_string(&self.ready)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

/// True once `pid` has ended: no such process, or a zombie nobody has reaped yet.
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

/// Kills `pid` if it is still there when the test ends, pass or fail.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if !gone(self.0) {
            // SAFETY: plain kill(2) on a PID this test started (through `run`).
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}

#[test]
fn ctrl_c_on_a_terminal_reaches_the_command_once_and_is_never_a_crash() {
    let Some(python) = python3() else { return };
    let cli = Cli::new();
    let counter = Counter::new(cli.tmp.dir.path());
    let driver = cli.tmp.dir.path().join("on_a_terminal.py");
    std::fs::write(&driver, PTY_DRIVER).unwrap();
    let key = "shared/tty@1.0.0";
    // Repeated: before the fix the second Ctrl-C got the backend refused (exit 75).
    for round in 0..3 {
        counter.reset();
        let mut cmd = Command::new(python);
        cmd.arg(&driver)
            .arg(bin())
            .args(["--db", cli.path().to_str().unwrap(), "run", key, "--"])
            .args([python, counter.script.to_str().unwrap()])
            .env("CODE", "130")
            .stdin(Stdio::null());
        counter.env(&mut cmd, "SIGINT");
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.trim_end().ends_with("EXIT 130"),
            "round {round}: {}",
            describe(&out)
        );
        assert_eq!(counter.received(), 1, "round {round}: SIGINT count\n{text}");
        assert!(
            text.contains("stopped on request, not recorded as a crash"),
            "{text}"
        );
        let show: Show = cli.json(0, &["show", key]);
        assert!(show.entry.is_none(), "round {round}: {show:?}");
    }
}

#[test]
fn a_sigterm_to_the_process_group_reaches_the_command_once() {
    let Some(python) = python3() else { return };
    let cli = Cli::new();
    let counter = Counter::new(cli.tmp.dir.path());
    // The issue's reproduction: `timeout` signals `run` and then its whole process group.
    let mut cmd = Command::new("timeout");
    cmd.args(["--preserve-status", "-s", "TERM", "1"])
        .arg(bin())
        .args([
            "--db",
            cli.path().to_str().unwrap(),
            "run",
            "shared/t@1.0.0",
        ])
        .args(["--", python, counter.script.to_str().unwrap()])
        .stdin(Stdio::null());
    counter.env(&mut cmd, "SIGTERM");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(counter.received(), 1);

    // `kill -- -PGID` on a `run` that leads its own group: the same, and 143 when the
    // command dies of the signal.
    counter.reset();
    let mut cmd = cli.cmd(&["run", "shared/g@1.0.0", "--", "sh", "-c"]);
    cmd.arg(format!(
        "trap 'echo x >> {0}; exit 0' TERM; echo $$ > {1}.tmp; mv {1}.tmp {1}; \
         while :; do sleep 0.02; done",
        counter.count.display(),
        counter.ready.display()
    ))
    .process_group(0)
    .stderr(Stdio::piped());
    let run = Reaped::new(cmd.spawn().unwrap());
    let _child = KillOnDrop(counter.pid());
    // SAFETY: kill(2) on the process group of a child we started.
    unsafe { libc::kill(-(run.id() as i32), libc::SIGTERM) };
    let out = run.into_inner().wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(counter.received(), 1);
    let show: Show = cli.json(0, &["show", "shared/g@1.0.0"]);
    assert!(show.entry.is_none(), "a stop is not a crash: {show:?}");
}

#[test]
fn the_command_never_outlives_run() {
    let cli = Cli::new();
    let ready = cli.tmp.dir.path().join("ready");
    let script = format!(
        "echo $$ > {0}.tmp; mv {0}.tmp {0}; exec sleep 60",
        ready.display()
    );
    for (i, sig) in [libc::SIGKILL, libc::SIGHUP].into_iter().enumerate() {
        let _ = std::fs::remove_file(&ready);
        let key = format!("shared/orphan{i}@1.0.0");
        let mut run = Reaped::new(
            cli.cmd(&["run", &key, "--", "sh", "-c", &script])
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for(|| ready.exists());
        let pid: i32 = std::fs::read_to_string(&ready)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let _child = KillOnDrop(pid);
        // SAFETY: kill(2) on a child we started.
        unsafe { libc::kill(run.id() as i32, sig) };
        let status = run.wait().unwrap();
        if sig == libc::SIGHUP {
            // Passed on; the command dies of it, which is a stop on request, not a crash.
            assert_eq!(status.code(), Some(129), "{status:?}");
            let show: Show = cli.json(0, &["show", &key]);
            assert!(show.entry.is_none(), "{show:?}");
        }
        wait_for(|| gone(pid));
        // And the key is free for the next run at once.
        cli.ok(&["run", &key, "--", "true"]);
    }
}

#[test]
fn a_command_that_ignores_sigterm_is_killed_after_the_stop_timeout() {
    let cli = Cli::new();
    let ready = cli.tmp.dir.path().join("ready");
    let script = format!(
        "trap '' TERM; echo $$ > {0}.tmp; mv {0}.tmp {0}; while :; do sleep 0.02; done",
        ready.display()
    );
    let run = Reaped::new(
        cli.cmd(&[
            "run",
            "shared/stubborn@1.0.0",
            "--stop-timeout",
            "1s",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    wait_for(|| ready.exists());
    let pid: i32 = std::fs::read_to_string(&ready)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _child = KillOnDrop(pid);
    let started = Instant::now();
    // SAFETY: kill(2) on a child we started.
    unsafe { libc::kill(run.id() as i32, libc::SIGTERM) };
    let out = run.into_inner().wait_with_output().unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(143), "{}", describe(&out));
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert!(gone(pid));
    let err = stderr(&out);
    assert!(
        err.contains("sh did not stop within 1s: killed its process group with SIGKILL"),
        "{err}"
    );
    assert!(
        cli.json::<Show>(0, &["show", "shared/stubborn@1.0.0"])
            .entry
            .is_none()
    );
}

#[test]
fn hup_usr1_usr2_and_winch_are_passed_on_and_leave_run_supervising() {
    let cli = Cli::new();
    let log = cli.tmp.dir.path().join("log");
    let ready = cli.tmp.dir.path().join("ready");
    let script = format!(
        "for s in HUP USR1 USR2 WINCH QUIT; do trap \"echo $s >> {0}\" $s; done; \
         trap 'exit 0' TERM; echo $$ > {1}.tmp; mv {1}.tmp {1}; while :; do sleep 0.02; done",
        log.display(),
        ready.display()
    );
    let run = Reaped::new(
        cli.cmd(&["run", "shared/fwd@1.0.0", "--", "sh", "-c", &script])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_for(|| ready.exists());
    let pid: i32 = std::fs::read_to_string(&ready)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _child = KillOnDrop(pid);
    let seen = || std::fs::read_to_string(&log).unwrap_or_default();
    for (sig, name) in [
        (libc::SIGHUP, "HUP"),
        (libc::SIGUSR1, "USR1"),
        (libc::SIGUSR2, "USR2"),
        (libc::SIGWINCH, "WINCH"),
        (libc::SIGQUIT, "QUIT"),
    ] {
        // SAFETY: kill(2) on a child we started.
        unsafe { libc::kill(run.id() as i32, sig) };
        wait_for(|| seen().lines().any(|l| l == name));
    }
    assert_eq!(seen().lines().count(), 5, "each once: {}", seen());
    // SAFETY: as above.
    unsafe { libc::kill(run.id() as i32, libc::SIGTERM) };
    let out = run.into_inner().wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // The command's own `sleep` dies of the HUP too (the whole group gets it), and sh says so.
    let err = stderr(&out);
    let ours: String = err
        .lines()
        .filter(|l| l.contains(" recovery-store: run "))
        .map(|l| format!("{l}\n"))
        .collect();
    for line in progress(&ours) {
        assert!(!line.contains("crash recorded"), "{line}");
    }
}

#[test]
fn what_the_command_leaves_in_its_process_group_ends_with_it() {
    let cli = Cli::new();
    let pids = cli.tmp.dir.path().join("pids");
    // Exits at once, leaving a background `sleep` behind in its process group, first on a
    // clean exit, then on a crash that is restarted (the leftover must not see the restart).
    let script = format!("sleep 60 & echo $! >> '{}'; exit \"$1\"", pids.display());
    let leftovers = || -> Vec<i32> {
        std::fs::read_to_string(&pids)
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect()
    };
    cli.ok(&[
        "run",
        "shared/leaves@1.0.0",
        "--",
        "sh",
        "-c",
        &script,
        "sh",
        "0",
    ]);
    cli.ok(&["policy", "set", "--retry-backoff", "10ms"]);
    let out = cli.run(&[
        "run",
        "shared/leaves2@1.0.0",
        "--",
        "sh",
        "-c",
        &script,
        "sh",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    let pids = leftovers();
    let _guards: Vec<KillOnDrop> = pids.iter().map(|&p| KillOnDrop(p)).collect();
    assert_eq!(pids.len(), 3);
    // Killed before `run` went on; allow the kernel a moment to finish them.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pids.iter().all(|&p| gone(p)) {
        assert!(Instant::now() < deadline, "left running: {pids:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// Guards the kind, not just the command: when `run` is killed outright, the parent-death
// signal ends the command, but not what the command started. The next `run` of the key ends
// those leftovers (recorded in its lock file: group, start time, boot, PID namespace) before it
// starts anything, so a service never runs twice.
#[test]
fn a_run_killed_outright_leaves_nothing_running_once_the_key_runs_again() {
    let cli = Cli::new();
    let ready = cli.tmp.dir.path().join("grandchild");
    // The command starts a grandchild, then waits: pdeathsig reaches only the command.
    let script = format!(
        "sleep 600 & echo $! > {0}.tmp; mv {0}.tmp {0}; wait",
        ready.display()
    );
    let key = "shared/wrapper@1.0.0";
    let mut run = Reaped::new(
        cli.cmd(&["run", key, "--", "sh", "-c", &script])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(|| ready.exists());
    let grandchild: i32 = std::fs::read_to_string(&ready)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _cleanup = KillOnDrop(grandchild);
    // SAFETY: kill(2) on a child we started.
    unsafe { libc::kill(run.id() as i32, libc::SIGKILL) };
    run.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !gone(grandchild),
        "the grandchild survives run and its command"
    );
    cli.ok(&["run", key, "--", "true"]);
    wait_for(|| gone(grandchild));
}
