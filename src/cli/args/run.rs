//! Arguments of `run`: the key and command to supervise, its timing flags, and the exit codes
//! its help documents.

use std::ffi::OsString;
use std::time::Duration;

use clap::Args;
use recovery_store::BackendKey;

use super::KEY_EXACT_HELP;
use super::values::{parse_duration, parse_key};

const RUN_EXIT_CODES: &str = "\
Exit codes of run:
  0      the command exited 0
  2      error, e.g. the store cannot judge KEY (the policy override that would decide it, or
         its entry, is damaged): the error names it and the command that repairs it
  75     refused (EX_TEMPFAIL), or another run supervises KEY
  126    the command is not executable
  127    no such command
  128+N  stopped by signal N (130 SIGINT, 143 SIGTERM); after a stop, the command's own
         status when it exited by itself

A stop (SIGINT, SIGTERM) is passed to the command's process group once and is never recorded
as a crash. SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH are passed on. When the store is
damaged, unreadable or stalled, run supervises under the same policy in memory and writes its
state through once the store is back; a damaged override row that would judge KEY is no such
failure: run exits 2 rather than judge KEY by another policy.";

#[derive(Debug, Args)]
#[command(after_help = RUN_EXIT_CODES)]
pub struct RunArgs {
    #[arg(value_parser = parse_key, help = KEY_EXACT_HELP)]
    pub key: BackendKey,
    /// Record a success once the command has run this long [default: the store's budget
    /// window]. A shorter value warns: crash loops slower than it are never refused.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub healthy_after: Option<Duration>,
    /// After passing a stop (SIGINT, SIGTERM) to the command, wait this long for it to end,
    /// then kill its process group with SIGKILL.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub stop_timeout: Duration,
    /// When refused, sleep until the retry-after and try again instead of exiting 75.
    #[arg(long)]
    pub wait: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}
