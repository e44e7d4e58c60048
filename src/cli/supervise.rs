//! `run`: a small supervisor that starts a command under the recovery policy.
//!
//! Before each start it asks the store; a refused key is not started. A crash (non-zero exit or
//! death by signal) is recorded; `Retry` waits and starts again, `Refuse` exits 75 (or waits,
//! with `--wait`). Exiting 0, or running past `--healthy-after`, records a success. SIGINT and
//! SIGTERM sent to `run` are forwarded to the child, and stop `run` once the child is gone.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitCode, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use recovery_store::{
    BackendKey, BackendRecoveryDecision, BackendStatus, RecoveryStore, Timestamp,
};

use super::args::RunArgs;
use super::sanitize::sanitize_lossy;
use super::view::{millis, span};
use super::{Ctx, TEMPFAIL, commands::decision_text, json};

/// How often the child and the signal flag are polled: a signal is forwarded within this.
const POLL: Duration = Duration::from_millis(50);
/// How often `run --wait` rechecks a refusal in the store.
const RECHECK: Duration = Duration::from_millis(200);

/// The last SIGINT/SIGTERM received: positive when it must be forwarded, negative when the
/// terminal already delivered it to the child (same process group), 0 when none.
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
    let code = if info.is_null() {
        0
    } else {
        unsafe { (*info).si_code }
    };
    let from_terminal = cfg!(target_os = "linux") && code == 0x80; // SI_KERNEL
    SIGNAL.store(if from_terminal { -sig } else { sig }, Ordering::SeqCst);
}

fn install_handlers() -> anyhow::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is valid; the handler only stores to an atomic.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("cannot install signal handlers");
        }
    }
    Ok(())
}

/// Takes the pending signal, if any: (signal, whether it still has to reach the child).
fn take_signal() -> Option<(i32, bool)> {
    match SIGNAL.swap(0, Ordering::SeqCst) {
        0 => None,
        s => Some((s.abs(), s > 0)),
    }
}

struct Supervisor {
    store: RecoveryStore,
    args: RunArgs,
    name: String,
    json: bool,
    starts: u32,
    crashes: u32,
}

enum Stop {
    /// The child exited (0, or after an interrupt) and `run` ends with this status.
    Exited(ExitStatus),
    /// `run` itself was interrupted while no child was running.
    Interrupted(i32),
    /// Refused, with this long to wait.
    Refused(Duration),
}

pub fn run(ctx: &Ctx, args: RunArgs, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let store = ctx.open_write()?;
    install_handlers()?;
    let name = sanitize_lossy(&args.command[0]);
    let mut sup = Supervisor {
        store,
        args,
        name,
        json: ctx.json,
        starts: 0,
        crashes: 0,
    };
    let stop = sup.supervise()?;
    let key = sup.args.key.to_string();
    let (outcome, code, retry_after) = match stop {
        Stop::Exited(status) => {
            let outcome = if status.success() {
                json::Outcome::Exited
            } else {
                json::Outcome::Interrupted
            };
            (outcome, exit_code(status), None)
        }
        Stop::Interrupted(sig) => (
            json::Outcome::Interrupted,
            128u8.saturating_add(sig as u8),
            None,
        ),
        Stop::Refused(wait) => (json::Outcome::Refused, TEMPFAIL, Some(millis(wait))),
    };
    if ctx.json {
        json::emit(
            out,
            &json::Run {
                key,
                outcome,
                exit_code: code,
                starts: sup.starts,
                crashes: sup.crashes,
                retry_after_ms: retry_after,
            },
        )?;
    }
    Ok(ExitCode::from(code))
}

impl Supervisor {
    fn key(&self) -> &BackendKey {
        &self.args.key
    }

    fn say(&self, message: std::fmt::Arguments<'_>) {
        eprintln!("recovery-store: run {}: {message}", self.key());
    }

    fn supervise(&mut self) -> anyhow::Result<Stop> {
        loop {
            // A signal that came while the store was being asked stops `run` before a start.
            if let Some((sig, _)) = take_signal() {
                return Ok(Stop::Interrupted(sig));
            }
            // Ask first: a key refused by an earlier run or a broker is not started.
            let status = self.store.status(self.key(), Timestamp::now())?;
            if let BackendStatus::Refused { retry_after, .. } = status {
                self.say(format_args!(
                    "refused (backend unavailable), retry after {}",
                    span(retry_after, true)
                ));
                if let Some(stop) = self.refused(retry_after)? {
                    return Ok(stop);
                }
                continue;
            }
            let status = match self.start_and_wait()? {
                Ok(status) => status,
                Err(stop) => return Ok(stop),
            };
            self.crashes += 1;
            let decision = self
                .store
                .record_crash(self.key(), Timestamp::now())
                .with_context(|| format!("cannot record a crash of {}", self.key()))?;
            self.say(format_args!(
                "{} {}: crash recorded: {}",
                self.name,
                describe(status),
                decision_text(&decision)
            ));
            match decision {
                BackendRecoveryDecision::Retry { retry_after, .. } => {
                    if let Some(sig) = self.pause(retry_after) {
                        return Ok(Stop::Interrupted(sig));
                    }
                }
                BackendRecoveryDecision::Refuse { retry_after, .. } => {
                    if let Some(stop) = self.refused(retry_after)? {
                        return Ok(stop);
                    }
                }
            }
        }
    }

    /// Exits 75, or with `--wait` sleeps through the refusal (`None`: try again). While it
    /// waits it rechecks the store, so an operator's `reset` starts the command at once.
    fn refused(&self, retry_after: Duration) -> anyhow::Result<Option<Stop>> {
        if !self.args.wait {
            return Ok(Some(Stop::Refused(retry_after)));
        }
        self.say(format_args!(
            "waiting {} before trying again",
            span(retry_after, true)
        ));
        let until = Instant::now() + retry_after;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if let Some(sig) = self.pause(left.min(RECHECK)) {
                return Ok(Some(Stop::Interrupted(sig)));
            }
            if left <= RECHECK {
                return Ok(None);
            }
            let status = self.store.status(self.key(), Timestamp::now())?;
            if !matches!(status, BackendStatus::Refused { .. }) {
                self.say(format_args!("no longer refused: trying again"));
                return Ok(None);
            }
        }
    }

    /// Sleeps for `d`, or until SIGINT/SIGTERM: returns the signal if one came.
    fn pause(&self, d: Duration) -> Option<i32> {
        let until = Instant::now() + d;
        loop {
            if let Some((sig, _)) = take_signal() {
                return Some(sig);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            sleep(left.min(POLL));
        }
    }

    /// Starts the command once. `Ok(status)` is a crash to record; `Err(stop)` ends `run`.
    fn start_and_wait(&mut self) -> anyhow::Result<Result<ExitStatus, Stop>> {
        let mut child = self.spawn()?;
        self.starts += 1;
        let (status, watch) = self.watch(&mut child)?;
        if status.success() {
            if !watch.healthy {
                self.store
                    .record_success(self.key())
                    .with_context(|| format!("cannot record a success of {}", self.key()))?;
            }
            self.say(format_args!("{} exited 0: success recorded", self.name));
            return Ok(Err(Stop::Exited(status)));
        }
        if watch.interrupted {
            // Stopped on request: not a crash.
            self.say(format_args!(
                "{} {} after an interrupt: stopping",
                self.name,
                describe(status)
            ));
            return Ok(Err(Stop::Exited(status)));
        }
        Ok(Ok(status))
    }

    fn spawn(&self) -> anyhow::Result<Running> {
        let args = &self.args.command;
        let mut command = Command::new(&args[0]);
        command.args(&args[1..]);
        if self.json {
            // stdout carries `run`'s one JSON document; the child's output goes to stderr.
            let stderr = std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .context("cannot duplicate stderr for the command")?;
            command.stdout(stderr);
        }
        let child = command.spawn().with_context(|| {
            format!(
                "cannot start {} ({}): check the command and PATH",
                self.name,
                self.key()
            )
        })?;
        Ok(Running(child))
    }

    /// Waits for the child, forwarding signals and recording a success once it has run for
    /// `--healthy-after`.
    fn watch(&self, child: &mut Running) -> anyhow::Result<(ExitStatus, Watch)> {
        let started = Instant::now();
        let mut watch = Watch::default();
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok((status, watch));
            }
            if let Some((sig, forward)) = take_signal() {
                watch.interrupted = true;
                if forward {
                    child.signal(sig);
                }
            }
            if !watch.healthy && started.elapsed() >= self.args.healthy_after {
                watch.healthy = true;
                // The child keeps running whatever happens here, so a failure only warns.
                match self.store.record_success(self.key()) {
                    Ok(_) => self.say(format_args!(
                        "{} has run for {}: success recorded",
                        self.name,
                        span(self.args.healthy_after, false)
                    )),
                    Err(e) => self.say(format_args!("cannot record a success: {e}")),
                }
            }
            sleep(POLL);
        }
    }
}

/// What happened while a child ran.
#[derive(Default)]
struct Watch {
    /// A success was recorded after `--healthy-after`.
    healthy: bool,
    /// SIGINT or SIGTERM arrived: the child's end is a stop, not a crash.
    interrupted: bool,
}

/// A running child. If `run` leaves early (an error, a panic) the child is killed and reaped
/// rather than left running unsupervised.
struct Running(Child);

impl Running {
    /// The child's status once it has exited; after that, dropping this does nothing.
    fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        self.0.try_wait().context("cannot wait for the command")
    }

    fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child, which has not been reaped (so the pid is
        // still ours).
        unsafe { libc::kill(self.0.id() as libc::pid_t, sig) };
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Ok(Some) means it was reaped already; kill() on a reaped child is a no-op error.
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `exited with code 3`, `was killed by signal 9 (SIGKILL)`.
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}{}", signal_name(sig)),
        _ => "ended".into(),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => " (SIGHUP)",
        libc::SIGINT => " (SIGINT)",
        libc::SIGQUIT => " (SIGQUIT)",
        libc::SIGILL => " (SIGILL)",
        libc::SIGABRT => " (SIGABRT)",
        libc::SIGBUS => " (SIGBUS)",
        libc::SIGFPE => " (SIGFPE)",
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGPIPE => " (SIGPIPE)",
        libc::SIGTERM => " (SIGTERM)",
        _ => "",
    }
}

/// The status `run` exits with for a child's: its code, or 128 + the signal that killed it.
fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => (code & 0xff) as u8,
        (None, Some(sig)) => 128u8.saturating_add(sig as u8),
        _ => 1,
    }
}
