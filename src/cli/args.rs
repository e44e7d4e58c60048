//! The command line, as clap derive types. Parsing only: nothing here opens a store.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::{ArgGroup, Args, Parser, Subcommand};
use recovery_store::{BackendKey, BrokerInstanceKey};

const EXIT_CODES: &str = "\
Exit codes:
  0   ok (for `status`: the backend may start now)
  1   a negative answer: refused (`status`, `record-crash`), or `check` found problems
  2   error or bad usage
  75  `run` was refused (EX_TEMPFAIL)

The store is --db, else $RECOVERY_STORE_DB, else $XDG_STATE_HOME/recovery-store/recovery.redb,
else ~/.local/state/recovery-store/recovery.redb. Read commands (list, show, status, policy,
check, export) never create it.";

/// Durable crash-recovery windows: see which backends are crash-looping, reset them, and
/// supervise a command under the recovery policy.
#[derive(Debug, Parser)]
#[command(name = "recovery-store", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// The store file.
    #[arg(long, global = true, value_name = "PATH", env = "RECOVERY_STORE_DB")]
    pub db: Option<PathBuf>,

    /// Print one JSON document (durations in ms, times as RFC 3339 plus Unix ms).
    #[arg(long, global = true)]
    pub json: bool,

    /// For tests: take this RFC 3339 time as "now" (wall clock only). `run` ignores it. A flag
    /// only, never an environment variable, so a stray setting cannot skew a production store.
    #[arg(long, global = true, hide = true, value_name = "RFC3339", value_parser = parse_time)]
    pub now: Option<SystemTime>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List backends with recovery state, in key order.
    List(ListArgs),
    /// Show every field of one backend's state.
    Show {
        #[arg(value_parser = parse_key)]
        key: BackendKey,
    },
    /// One line: may the backend start now? Exit 0 yes, 1 refused.
    Status {
        #[arg(value_parser = parse_key)]
        key: BackendKey,
    },
    /// Clear recovery state: named keys, one service, or everything.
    Reset(ResetArgs),
    /// Record a crash as a broker would, and print the decision (exit 1 when refused).
    RecordCrash {
        #[arg(value_parser = parse_key)]
        key: BackendKey,
    },
    /// Record that a backend is healthy, clearing its state.
    RecordSuccess {
        #[arg(value_parser = parse_key)]
        key: BackendKey,
    },
    /// Remove entries whose window has ended.
    Prune,
    /// Show the policy, or change it with `policy set`.
    Policy {
        #[command(subcommand)]
        action: Option<PolicyAction>,
    },
    /// Check the file's integrity, its schema and every entry; exit 1 on any problem.
    Check,
    /// Write the whole state, policy included, as JSON to stdout.
    Export,
    /// Replace the whole state with an `export` document, in one transaction.
    Import {
        /// The document, or `-` for stdin.
        file: PathBuf,
    },
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
    /// Run a command under the recovery policy, restarting it after a crash.
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this broker instance: `shared`, `private:NAME` or `explicit:NAME`.
    #[arg(long, value_parser = parse_instance)]
    pub instance: Option<BrokerInstanceKey>,
    /// Only this service name.
    #[arg(long)]
    pub service: Option<String>,
    /// Only refused backends.
    #[arg(long)]
    pub refused: bool,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).multiple(true)
    .args(["keys", "raw", "service", "instance", "all"])))]
pub struct ResetArgs {
    /// Backend keys, e.g. shared/zccache@1.11.20.
    #[arg(value_parser = parse_key, conflicts_with_all = ["service", "instance", "all"])]
    pub keys: Vec<BackendKey>,
    /// A damaged entry's stored key, exactly as `list` or `check` shows it (escapes included),
    /// for keys that no longer parse.
    #[arg(long, value_name = "TEXT", conflicts_with_all = ["service", "instance", "all"])]
    pub raw: Vec<String>,
    /// Every version of this service.
    #[arg(long)]
    pub service: Option<String>,
    /// Only under this broker instance.
    #[arg(long, value_parser = parse_instance)]
    pub instance: Option<BrokerInstanceKey>,
    /// Every entry in the store (needs --yes).
    #[arg(long, conflicts_with_all = ["service", "instance"])]
    pub all: bool,
    /// Confirm --all.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum PolicyAction {
    /// Change the policy for every process sharing the store.
    #[command(group(ArgGroup::new("change").required(true).multiple(true)
        .args(["retry_backoff", "budget_window"])))]
    Set {
        /// Delay before the one retry, e.g. 250ms.
        #[arg(long, value_parser = parse_duration)]
        retry_backoff: Option<Duration>,
        /// The budget window, e.g. 30s.
        #[arg(long, value_parser = parse_duration)]
        budget_window: Option<Duration>,
    },
}

const RUN_EXIT_CODES: &str = "\
Exit codes of run:
  0      the command exited 0
  75     refused (EX_TEMPFAIL), or another run supervises KEY
  126    the command is not executable
  127    no such command
  128+N  stopped by signal N (130 SIGINT, 143 SIGTERM); after a stop, the command's own
         status when it exited by itself

A stop (SIGINT, SIGTERM) is passed to the command's process group once and is never recorded
as a crash. SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH are passed on. When the store is
damaged, unreadable or stalled, run supervises under the same policy in memory and writes its
state through once the store is back.";

#[derive(Debug, Args)]
#[command(after_help = RUN_EXIT_CODES)]
pub struct RunArgs {
    /// The backend key the command runs as.
    #[arg(value_parser = parse_key)]
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

fn parse_key(text: &str) -> Result<BackendKey, String> {
    text.parse().map_err(|e| format!("{e}"))
}

fn parse_instance(text: &str) -> Result<BrokerInstanceKey, String> {
    text.parse().map_err(|e| format!("{e}"))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{e}: expected a duration such as 250ms, 30s or 1m"))?;
    if d < Duration::from_millis(1) {
        return Err("must be at least 1ms".into());
    }
    Ok(d)
}

fn parse_time(text: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(text)
        .map_err(|e| format!("{e}: expected RFC 3339, e.g. 2026-01-01T00:00:00Z"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("recovery-store").chain(args.iter().copied()))
    }

    #[test]
    fn command_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn globals_work_after_the_subcommand() {
        let cli = parse(&["list", "--db", "/x", "--json", "--refused"]).unwrap();
        assert_eq!(cli.db, Some(PathBuf::from("/x")));
        assert!(cli.json);
        assert!(matches!(
            cli.command,
            Command::List(ListArgs { refused: true, .. })
        ));
    }

    #[test]
    fn keys_and_instances_are_validated() {
        let cli = parse(&["status", "private:svc/svc@1.0.0"]).unwrap();
        assert!(
            matches!(cli.command, Command::Status { key } if key.to_string() == "private:svc/svc@1.0.0")
        );
        let err = parse(&["status", "Shared/svc@1.0.0"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(parse(&["list", "--instance", "bogus"]).is_err());
        let cli = parse(&["list", "--instance", "explicit:ci"]).unwrap();
        assert!(
            matches!(cli.command, Command::List(ListArgs { instance: Some(i), .. })
            if i.to_string() == "explicit:ci")
        );
    }

    #[test]
    fn reset_forms() {
        assert!(parse(&["reset"]).is_err());
        assert!(parse(&["reset", "shared/a@1.0.0", "--all"]).is_err());
        assert!(parse(&["reset", "shared/a@1.0.0", "--service", "a"]).is_err());
        assert!(parse(&["reset", "--all", "--service", "a"]).is_err());
        let cli = parse(&["reset", "shared/a@1.0.0", "shared/b@1.0.0"]).unwrap();
        assert!(matches!(cli.command, Command::Reset(ResetArgs { keys, .. }) if keys.len() == 2));
        let cli = parse(&["reset", "--service", "a", "--instance", "shared"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Reset(ResetArgs {
                service: Some(_),
                instance: Some(_),
                ..
            })
        ));
        let cli = parse(&["reset", "--raw", "shared/x\x1b@1", "--raw", "y"]).unwrap();
        assert!(matches!(cli.command, Command::Reset(ResetArgs { raw, .. }) if raw.len() == 2));
        assert!(parse(&["reset", "--raw", "x", "--all"]).is_err());
        // --all without --yes parses; the command refuses it with a message.
        let cli = parse(&["reset", "--all"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Reset(ResetArgs {
                all: true,
                yes: false,
                ..
            })
        ));
    }

    #[test]
    fn policy_set_needs_a_valid_change() {
        assert!(parse(&["policy", "set"]).is_err());
        assert!(parse(&["policy", "set", "--retry-backoff", "soon"]).is_err());
        assert!(parse(&["policy", "set", "--budget-window", "0s"]).is_err());
        let cli = parse(&[
            "policy",
            "set",
            "--retry-backoff",
            "250ms",
            "--budget-window",
            "30s",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Policy { action: Some(PolicyAction::Set { retry_backoff: Some(r), budget_window: Some(w) }) }
                if r == Duration::from_millis(250) && w == Duration::from_secs(30)
        ));
        assert!(matches!(
            parse(&["policy"]).unwrap().command,
            Command::Policy { action: None }
        ));
    }

    #[test]
    fn run_takes_the_command_after_double_dash() {
        let cli = parse(&[
            "run",
            "shared/a@1.0.0",
            "--wait",
            "--",
            "sh",
            "-c",
            "exit 3",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert!(run.wait);
        assert_eq!(run.healthy_after, None);
        assert_eq!(run.stop_timeout, Duration::from_secs(10));
        assert_eq!(run.command, ["sh", "-c", "exit 3"]);
        assert!(parse(&["run", "shared/a@1.0.0"]).is_err());
        assert!(parse(&["run", "shared/a@1.0.0", "sh"]).is_err());
    }

    #[test]
    fn usage_errors_exit_2() {
        let err = parse(&["frobnicate"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = parse(&["--help"]).unwrap_err();
        assert_eq!(err.exit_code(), 0);
    }
}
