//! `run`: the supervision policy. The OS plumbing is in [`super::process`], the store seam in
//! [`super::ledger`]. Here: the loop of starts and decisions; a command's run is watched in
//! `watch`, the waits between runs are in `waits`, and how `run` ends is in `end`.
//!
//! - Before each start `run` asks the store; a refused key is not started.
//! - A crash (non-zero exit, or death by a signal nobody asked for) is recorded: `Retry` waits
//!   the backoff and starts again, `Refuse` exits 75 (or waits, with `--wait`).
//! - Exiting 0, or running past `--healthy-after` (default: the budget window), records a
//!   success, announced once.
//! - A stop on request is never a crash: SIGINT or SIGTERM to `run` (or to its process group)
//!   is passed to the command's own process group once, `run` exits with the command's status
//!   (128 + N when it died of the signal, or when it had to be killed after `--stop-timeout`,
//!   or when no command was running), and nothing is recorded. The same holds for a command
//!   killed by a forwarded SIGHUP, SIGQUIT, SIGUSR1 or SIGUSR2.
//! - A stalled or broken store never stops supervision: decisions then come from the same
//!   policy in memory (see [`super::ledger`]).
//! - A key the store cannot judge (the override row that would decide it, or its entry, is
//!   damaged) is not supervised: `run` exits 2 with the store's error, before starting the
//!   command, or after a crash it could not record (the command is then not restarted).

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use recovery_store::{BackendRecoveryDecision, CrashReport, StoreOptions};

use super::args::RunArgs;
use super::ledger::{Ledger, Outcome, Standing};
use super::process::{self, Locked, Wakeups};
use super::sanitize::sanitize_lossy;
use super::view::span;
use super::{Ctx, commands::decision_text};

mod end;
mod waits;
mod watch;
use end::{End, finish};
use watch::{Run, describe, exit_code, signal_name};

/// How much longer than `--lock-timeout` `run` waits for the store before deciding from memory
/// itself: the store's own bound (`Busy`) normally answers first; this is the backstop for a
/// wait the lock bound does not cover (an open or a read stuck in the kernel).
const STORE_GRACE: Duration = Duration::from_secs(1);

/// `recovery-store run`: supervises `args.command` as `args.key` until it exits 0, is refused,
/// cannot be started, or is stopped on request; returns the exit status documented in
/// `run --help` (0, 75, 126, 127, or the command's status / 128+N after a stop). Errors are
/// those of `run` itself (signal handlers, the store thread) and a key the store cannot judge
/// (a damaged override row that would decide it, or its damaged entry); a store that fails is
/// not one.
pub fn run(ctx: &Ctx, args: RunArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    // First of all, so that a stop is answered at every moment from here on.
    let wake = Wakeups::install().context("cannot install signal handlers")?;
    let name = sanitize_lossy(&args.command[0]);
    let say = Say(args.key.to_string());
    let key = args.key.to_string();
    // The store's own options (--trust-owner, --mode), as every other command opens it with.
    let mut options = StoreOptions::default()
        .trust_any_owner(ctx.trust_owner)
        .lock_timeout(ctx.lock_timeout);
    if let Some(mode) = ctx.mode {
        options = options.mode(mode);
    }
    // The lock is as shared as the store: a group's store gets a lock its group can take.
    let lock_mode = std::fs::metadata(&ctx.path)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()))
        .ok()
        .or(ctx.mode)
        .map_or(0o600, |m| 0o600 | (m & 0o060));
    let lock = match process::lock_run(&ctx.path, &key, lock_mode) {
        Ok(Locked::Held(lock)) => Some(lock),
        Ok(Locked::Busy { pid, path }) => {
            let pid = pid.map_or("PID not yet written".into(), |p| format!("PID {p}"));
            say.line(format_args!(
                "already supervised by another run ({pid}, lock {}): {name} was not started; \
                 stop that run first",
                sanitize_lossy(&path)
            ));
            return finish(ctx, out, &key, End::Duplicate, 0, 0);
        }
        Err(e) => {
            say.line(format_args!(
                "warning: cannot take the run lock beside {} ({e}): supervising without the \
                 one-run-per-key guard",
                ctx.shown_path()
            ));
            None
        }
    };
    let ledger = Ledger::start(
        ctx.path.clone(),
        options,
        args.key.clone(),
        ctx.lock_timeout + STORE_GRACE,
        wake.waker()?,
    )
    .context("cannot start the store thread")?;
    let mut sup = Supervisor {
        lock,
        healthy_after: Duration::ZERO,
        args,
        name,
        json: ctx.json,
        store: ctx.shown_path(),
        wake,
        ledger,
        say,
        starts: 0,
        crashes: 0,
    };
    let end = sup.supervise()?;
    finish(ctx, out, &key, end, sup.starts, sup.crashes)
}

/// Progress lines on stderr: `<RFC 3339 time> recovery-store: run <key>: <message>`.
struct Say(String);

impl Say {
    fn line(&self, message: std::fmt::Arguments<'_>) {
        let now = humantime::format_rfc3339_millis(SystemTime::now());
        // One write per line, so the command's own stderr output cannot land inside it.
        let line = format!("{now} recovery-store: run {}: {message}\n", self.0);
        // A closed stderr must not end supervision.
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}

struct Supervisor {
    /// The one-run-per-key lock, when it could be taken; it also names the command's group.
    lock: Option<process::RunLock>,
    args: RunArgs,
    name: String,
    json: bool,
    store: String,
    wake: Wakeups,
    ledger: Ledger,
    say: Say,
    healthy_after: Duration,
    starts: u32,
    crashes: u32,
}

impl Supervisor {
    fn supervise(&mut self) -> anyhow::Result<End> {
        let end = self.supervise_until_end()?;
        // Writes go through the store thread: see them into the store before exiting, within
        // the patience bound (a stop signal cuts this short).
        // After a stop, a store already known to be unavailable is not waited for.
        let stopped = matches!(end, End::Stopped(_));
        if self.ledger.unsaved() && !(stopped && self.ledger.degraded()) {
            let flush = self.ledger.flush();
            let _ = self.await_store(&flush)?;
        }
        if self.ledger.unsaved() {
            self.say.line(format_args!(
                "warning: exiting while the store at {} is unavailable: the crashes and \
                 successes kept in memory are not in it",
                self.store
            ));
        }
        Ok(end)
    }

    fn supervise_until_end(&mut self) -> anyhow::Result<End> {
        let pending = self.ledger.ask_policy();
        match self.await_store(&pending)? {
            Ok(outcome) => self.judged(&outcome, "not started")?,
            Err(sig) => return Ok(self.stopped_idle(sig)),
        }
        let window = self.ledger.policy().budget_window;
        self.healthy_after = match self.args.healthy_after {
            None => window,
            Some(d) => {
                if d < window {
                    self.say.line(format_args!(
                        "warning: --healthy-after {} is shorter than the budget window ({}): \
                         crash loops slower than {} are never refused",
                        span(d, false),
                        span(window, false),
                        span(d, false)
                    ));
                }
                d
            }
        };
        loop {
            // Ask first: a key refused by an earlier run or a broker is not started.
            let pending = self.ledger.ask_status();
            let outcome = match self.await_store(&pending)? {
                Ok(outcome) => outcome,
                Err(sig) => return Ok(self.stopped_idle(sig)),
            };
            self.judged(&outcome, "not started")?;
            if let Standing::Refused(retry_after) = self.ledger.standing(outcome) {
                self.say.line(format_args!(
                    "refused (backend unavailable), retry after {}: {}",
                    span(retry_after, true),
                    self.refusal_advice(false)
                ));
                if let Some(end) = self.refused(retry_after)? {
                    return Ok(end);
                }
                continue;
            }
            let mut child = match process::spawn(&self.args.command, self.json) {
                Ok(child) => {
                    if let Some(lock) = &mut self.lock {
                        lock.record_group(child.id());
                    }
                    child
                }
                Err(failure) => {
                    let cause = if failure.code == 127 {
                        "not found: check the command and PATH"
                    } else {
                        "not executable: check that it is a program and its permissions"
                    };
                    self.say.line(format_args!(
                        "cannot start {} ({}): {cause}; exiting {} (not recorded as a crash)",
                        self.name, failure.error, failure.code
                    ));
                    return Ok(End::ExecFailed(failure.code));
                }
            };
            self.starts += 1;
            let ran = self.watch(&mut child)?;
            drop(child);
            if let Some(end) = self.judge(&ran) {
                return Ok(end);
            }
            self.crashes += 1;
            let pending = self.ledger.record_crash(CrashReport {
                exit_code: ran.status.code(),
                signal: ran.status.signal(),
            });
            let outcome = match self.await_store(&pending)? {
                Ok(outcome) => outcome,
                Err(sig) => return Ok(self.stopped_idle(sig)),
            };
            self.judged(
                &outcome,
                &format!(
                    "{} {}: crash not recorded, not restarted",
                    self.name,
                    describe(ran.status)
                ),
            )?;
            let (decision, stored) = self.ledger.crash_decision(outcome);
            let recorded = if stored {
                "crash recorded"
            } else {
                "crash kept in memory (store unavailable)"
            };
            match decision {
                BackendRecoveryDecision::Retry { retry_after, .. } => {
                    self.say.line(format_args!(
                        "{} {}: {recorded}: {}",
                        self.name,
                        describe(ran.status),
                        decision_text(&decision)
                    ));
                    if let Some(sig) = self.pause(Instant::now() + retry_after)? {
                        return Ok(self.stopped_idle(sig));
                    }
                }
                BackendRecoveryDecision::Refuse { retry_after, .. } => {
                    self.say.line(format_args!(
                        "{} {}: {recorded}: {}: {}",
                        self.name,
                        describe(ran.status),
                        decision_text(&decision),
                        self.refusal_advice(true)
                    ));
                    if let Some(end) = self.refused(retry_after)? {
                        return Ok(end);
                    }
                }
            }
        }
    }

    /// Whether `run` ends after the command's run, and how; `None` for a crash.
    fn judge(&mut self, ran: &Run) -> Option<End> {
        if let Some(stop) = ran.stop {
            let code = if ran.killed {
                128 + stop as u8
            } else {
                exit_code(ran.status)
            };
            self.say.line(format_args!(
                "{} {} after {}: stopped on request, not recorded as a crash; exiting {code}",
                self.name,
                if ran.killed {
                    "was killed".into()
                } else {
                    describe(ran.status)
                },
                signal_name(stop)
            ));
            return Some(End::Stopped(code));
        }
        if let Some(sig) = ran.status.signal().filter(|s| ran.forwarded.contains(s)) {
            self.say.line(format_args!(
                "{} {} passed on by run: stopped on request, not recorded as a crash",
                self.name,
                describe(ran.status)
            ));
            return Some(End::Stopped(128 + sig as u8));
        }
        if ran.status.success() {
            if ran.healthy {
                self.say
                    .line(format_args!("{} exited with code 0", self.name));
            } else {
                self.ledger.record_success();
                self.say.line(format_args!(
                    "{} exited with code 0: success recorded",
                    self.name
                ));
            }
            return Some(End::Exited);
        }
        None
    }

    /// Ends `run` with an error (exit 2) when the store cannot judge the key: the override row
    /// that would decide it (or its entry) is damaged, and no other policy may judge it. The
    /// error names the row and the command that repairs it; `what` says what `run` did.
    pub(super) fn judged(&self, outcome: &Outcome, what: &str) -> anyhow::Result<()> {
        match outcome.unjudged() {
            None => Ok(()),
            Some(error) => Err(anyhow::anyhow!("run {}: {what}: {error}", self.args.key)),
        }
    }

    /// What a refusal tells the reader to do next.
    fn refusal_advice(&self, after_crash: bool) -> String {
        let verb = if after_crash {
            "not restarted"
        } else {
            "not started"
        };
        let key = &self.args.key;
        if self.args.wait {
            format!(
                "{} {verb} yet: --wait starts it when the window ends, or once `recovery-store reset {key}` clears it",
                self.name
            )
        } else {
            format!(
                "{} {verb}; after a repair clear it with `recovery-store reset {key}`, or pass --wait to start it when the window ends",
                self.name
            )
        }
    }

    fn stopped_idle(&self, sig: i32) -> End {
        self.say.line(format_args!(
            "received {}: stopping ({} is not running); exiting {}",
            signal_name(sig),
            self.name,
            128 + sig
        ));
        End::Stopped(128 + sig as u8)
    }
}
