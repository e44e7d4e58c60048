//! The waits of `run` while no command runs: for the store's answer, through a backoff, and
//! through a refusal (rechecked, with `--wait`). A stop signal cuts each short, and each reports
//! the store's health as it changes.

use std::time::{Duration, Instant};

use super::{End, Supervisor};
use crate::cli::ledger::{Health, Outcome, Pending, Standing};
use crate::cli::process::STOP_SIGNALS;
use crate::cli::sanitize::sanitize_lossy;
use crate::cli::view::span;

/// How often `run --wait` rechecks a refusal in the store, so an operator's `reset` starts the
/// command at once. The store sends no notice of changes, so this one wait is a recheck.
const RECHECK: Duration = Duration::from_millis(250);

impl Supervisor {
    /// Prints a change in the store's health: the first failure once, and its return.
    pub(super) fn report(&self, health: Health) {
        match health {
            Health::Same => {}
            Health::Lost(cause) => {
                let policy = self.ledger.policy();
                self.say.line(format_args!(
                    "warning: the store at {} is unavailable ({}): supervising with the policy \
                     in memory (retry after {}, budget window {}); its state is written to the \
                     store once it is back",
                    self.store,
                    sanitize_lossy(cause.as_str()),
                    span(policy.retry_backoff, false),
                    span(policy.budget_window, false)
                ));
            }
            Health::Back => self.say.line(format_args!(
                "the store at {} is back: state written through",
                self.store
            )),
        }
    }

    /// Waits for the store's answer to `pending` (or the patience bound, after which memory
    /// decides). `Err(signal)` when a stop arrives first.
    pub(super) fn await_store(
        &mut self,
        pending: &Pending,
    ) -> anyhow::Result<Result<Outcome, i32>> {
        loop {
            let (health, outcome) = self.ledger.settle(Some(pending));
            self.report(health);
            if let Some(outcome) = outcome {
                return Ok(Ok(outcome));
            }
            let arrived = self.wake.wait(Some(pending.deadline()))?;
            if let Some(sig) = arrived.into_iter().find(|s| STOP_SIGNALS.contains(s)) {
                return Ok(Err(sig));
            }
        }
    }

    /// Sleeps until `until` while no command runs: a stop signal ends it.
    pub(super) fn pause(&mut self, until: Instant) -> anyhow::Result<Option<i32>> {
        loop {
            let (health, _) = self.ledger.settle(None);
            self.report(health);
            if Instant::now() >= until {
                return Ok(None);
            }
            let arrived = self.wake.wait(Some(until))?;
            if let Some(sig) = arrived.into_iter().find(|s| STOP_SIGNALS.contains(s)) {
                return Ok(Some(sig));
            }
        }
    }

    /// Exits 75, or with `--wait` sleeps through the refusal (`None`: try again), rechecking
    /// the store so that an operator's `reset` starts the command at once.
    pub(super) fn refused(&mut self, retry_after: Duration) -> anyhow::Result<Option<End>> {
        if !self.args.wait {
            return Ok(Some(End::Refused(retry_after)));
        }
        let until = Instant::now() + retry_after;
        loop {
            let next = (Instant::now() + RECHECK).min(until);
            if let Some(sig) = self.pause(next)? {
                return Ok(Some(self.stopped_idle(sig)));
            }
            if next >= until {
                return Ok(None);
            }
            let pending = self.ledger.ask_status();
            let outcome = match self.await_store(&pending)? {
                Ok(outcome) => outcome,
                Err(sig) => return Ok(Some(self.stopped_idle(sig))),
            };
            self.judged(&outcome, "not started")?;
            if let Standing::Free = self.ledger.standing(outcome) {
                self.say
                    .line(format_args!("no longer refused: trying again"));
                return Ok(None);
            }
        }
    }
}
