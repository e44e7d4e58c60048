//! The command's run under `run`: its signals passed on, its healthy point, its stop timeout,
//! and how its end is described.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Instant;

use anyhow::Context as _;

use super::Supervisor;
use crate::cli::process::{Child, FORWARDED_SIGNALS, STOP_SIGNALS};
use crate::cli::view::span;

/// What happened while a command ran.
pub(super) struct Run {
    pub status: ExitStatus,
    /// The first stop signal received, if any.
    pub stop: Option<i32>,
    /// The group was killed after `--stop-timeout`.
    pub killed: bool,
    /// Non-stop signals passed on to the command.
    pub forwarded: Vec<i32>,
    /// A success was recorded after `--healthy-after`.
    pub healthy: bool,
}

impl Supervisor {
    /// Waits for the command to end, passing signals on to its process group, recording a
    /// success once it has run for `--healthy-after`, and killing the group when a stop takes
    /// longer than `--stop-timeout`.
    pub(super) fn watch(&mut self, child: &mut Child) -> anyhow::Result<Run> {
        let healthy_at = Instant::now() + self.healthy_after;
        let mut ran = Run {
            status: ExitStatus::from_raw(0),
            stop: None,
            killed: false,
            forwarded: Vec::new(),
            healthy: false,
        };
        let mut passed_stops: Vec<i32> = Vec::new();
        let mut kill_at: Option<Instant> = None;
        loop {
            if let Some(status) = child.try_exit().context("cannot wait for the command")? {
                // A stop that raced with the end still makes it a stop: look before judging.
                let late = self.wake.wait(Some(Instant::now()))?;
                if ran.stop.is_none() {
                    ran.stop = late.into_iter().find(|s| STOP_SIGNALS.contains(s));
                }
                ran.status = status;
                return Ok(ran);
            }
            let now = Instant::now();
            // A command being stopped is not declared healthy on its way out.
            if !ran.healthy && ran.stop.is_none() && now >= healthy_at {
                ran.healthy = true;
                self.ledger.record_success();
                self.say.line(format_args!(
                    "{} has run for {}: success recorded",
                    self.name,
                    span(self.healthy_after, false)
                ));
            }
            if kill_at.is_some_and(|at| now >= at) && !ran.killed {
                ran.killed = true;
                child.signal_group(libc::SIGKILL);
                self.say.line(format_args!(
                    "{} did not stop within {}: killed its process group with SIGKILL",
                    self.name,
                    span(self.args.stop_timeout, false)
                ));
            }
            let (health, _) = self.ledger.settle(None);
            self.report(health);
            let deadline = [
                (!ran.healthy && ran.stop.is_none()).then_some(healthy_at),
                kill_at.filter(|_| !ran.killed),
            ]
            .into_iter()
            .flatten()
            .min();
            for sig in self.wake.wait(deadline)? {
                if STOP_SIGNALS.contains(&sig) {
                    // Once per signal: `timeout` sends its signal to `run` and again to the
                    // group `run` is in; the command must see it once.
                    if !passed_stops.contains(&sig) {
                        passed_stops.push(sig);
                        child.signal_group(sig);
                        self.say.line(format_args!(
                            "received {}: passed it to {} (process group {}); SIGKILL in {} if it has not stopped",
                            signal_name(sig),
                            self.name,
                            child.id(),
                            span(self.args.stop_timeout, false)
                        ));
                    }
                    ran.stop.get_or_insert(sig);
                    kill_at.get_or_insert(Instant::now() + self.args.stop_timeout);
                } else if FORWARDED_SIGNALS.contains(&sig) {
                    child.signal_group(sig);
                    if !ran.forwarded.contains(&sig) {
                        ran.forwarded.push(sig);
                    }
                }
            }
        }
    }
}

/// `exited with code 3`, `was killed by signal 9 (SIGKILL)`.
pub(super) fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig} ({})", signal_name(sig)),
        _ => "ended".into(),
    }
}

pub(super) fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGWINCH => "SIGWINCH",
        _ => return format!("signal {sig}"),
    };
    name.into()
}

/// The status `run` exits with for a command's: its code, or 128 + the signal that killed it.
pub(super) fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => (code & 0xff) as u8,
        (None, Some(sig)) => 128u8.saturating_add(sig as u8),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_have_their_conventional_names() {
        assert_eq!(signal_name(libc::SIGTERM), "SIGTERM");
        assert_eq!(signal_name(libc::SIGINT), "SIGINT");
        assert_eq!(signal_name(libc::SIGKILL), "SIGKILL");
        assert_eq!(signal_name(libc::SIGUSR1), "SIGUSR1");
        assert_eq!(signal_name(libc::SIGHUP), "SIGHUP");
    }
}
