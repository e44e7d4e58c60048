//! The command line, as clap derive types. Parsing only: nothing here opens a store.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use recovery_store::{BackendKey, BrokerInstanceKey};

const EXIT_CODES: &str = "\
Exit codes:
  0   ok (for `status`: the backend may start now)
  1   a negative answer: refused (`status`, `record-crash`), or `check` found problems
  2   error or bad usage
  75  `run` was refused (EX_TEMPFAIL)

The store is --db, else $RECOVERY_STORE_DB (an empty value counts as unset), else
$XDG_STATE_HOME/recovery-store/recovery.redb, else ~/.local/state/recovery-store/recovery.redb;
`recovery-store path` shows which one a command would use. Brokers run as services share
/var/lib/recovery-store/recovery.redb. Only record-crash, run, import and policy set create a
store; every other command exits 2 when it is missing.";

/// Help for a `KEY` that may omit its executable hash.
const KEY_MATCH_HELP: &str = "The backend: INSTANCE/SERVICE@VERSION[#EXE_HASH], where INSTANCE is \
shared, private:NAME or explicit:NAME; e.g. shared/zccache@1.11.20. Without #EXE_HASH it \
matches that version's entries under any executable hash";

/// Help for a `KEY` that names exactly one entry.
const KEY_EXACT_HELP: &str = "The backend: INSTANCE/SERVICE@VERSION[#EXE_HASH], where INSTANCE is \
shared, private:NAME or explicit:NAME; e.g. shared/zccache@1.11.20#98ea6e4f216f. Names exactly \
one entry: give the hash the broker uses";

const LIST_EXIT: &str = "Exit codes: 0 listed (also when nothing matches), 2 error or no store.";
const SHOW_EXIT: &str =
    "Exit codes: 0 shown (also for a key with no recorded state), 2 error or no store.";
const STATUS_EXIT: &str =
    "Exit codes: 0 the backend may start now, 1 refused, 2 error or no store.";
const RESET_EXIT: &str = "Exit codes: 0 done (each key that had no state is listed), 2 error, \
no store, a missing --yes, or a hash-less key matching several entries without --all-hashes.";
const RECORD_CRASH_EXIT: &str = "Exit codes: 0 retry allowed, 1 refused, 2 error. Creates the \
store when it is missing (and says so on stderr).";
const RECORD_SUCCESS_EXIT: &str =
    "Exit codes: 0 recorded, 2 error or no store (never creates one).";
const PRUNE_EXIT: &str = "Exit codes: 0 pruned, 2 error or no store (never creates one).";
const POLICY_EXIT: &str = "Exit codes: 0 shown or changed, 2 error, no store (`policy` alone), \
an invalid policy, or an extreme one without --yes. `policy set` creates the store when missing.";
const CHECK_EXIT: &str = "Exit codes: 0 no problems, 1 problems found (or the file cannot be \
opened; the report says what is wrong and what can be salvaged), 2 error or no file.";
const EXPORT_EXIT: &str = "Exit codes: 0 exported, 1 damaged entries were left out (named on \
stderr), 2 error or no store.";
const IMPORT_EXIT: &str = "Exit codes: 0 imported, 2 error: a bad document (nothing changes), a \
store holding state without --yes, or a key in both without --yes under --merge. Creates the \
store when it is missing.";
const AUDIT_EXIT: &str = "Exit codes: 0 listed (also when there is no event), 2 error or no store \
(never creates one; opens read-only).";
const PATH_EXIT: &str = "Exit codes: 0 printed (whether or not the file exists), 2 no path can \
be chosen.";

/// Durable crash-recovery windows: see which backends are crash-looping, reset them, and
/// supervise a command under the recovery policy.
#[derive(Debug, Parser)]
#[command(name = "recovery-store", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// The store file [default: $RECOVERY_STORE_DB, else the XDG state directory; see
    /// `recovery-store path`].
    #[arg(long, global = true, value_name = "PATH", value_parser = parse_db)]
    pub db: Option<PathBuf>,

    /// Print one JSON document (durations in ms, times as RFC 3339 plus Unix ms).
    #[arg(long, global = true)]
    pub json: bool,

    /// For tests: take this RFC 3339 time as "now" (wall clock only). `run` ignores it. A flag
    /// only, never an environment variable, so a stray setting cannot skew a production store.
    #[arg(long, global = true, hide = true, value_name = "RFC3339", value_parser = parse_time)]
    pub now: Option<SystemTime>,

    /// Use the store even if it, or its directory, belongs to another user, can be written by
    /// others, or is reached through a symlink (normally refused).
    #[arg(long, global = true)]
    pub trust_owner: bool,

    /// Permission bits for a store this command creates, in octal: 0600 (the default), 0660
    /// for a store that the brokers of one group share, or 0640, 0604, 0644 for readers.
    #[arg(long, global = true, value_name = "OCTAL", value_parser = parse_mode)]
    pub mode: Option<u32>,

    /// Longest wait for another process's lock on the store, e.g. `5s`, `500ms`; past it the
    /// command fails with exit 2 ("busy") and changes nothing.
    #[arg(long, global = true, value_name = "DURATION", default_value = "5s", value_parser = parse_lock_timeout)]
    pub lock_timeout: std::time::Duration,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List backends with recovery state: refused first, then recovering, then healthy.
    #[command(after_help = LIST_EXIT)]
    List(ListArgs),
    /// Show every field of one backend's state.
    #[command(after_help = SHOW_EXIT)]
    Show {
        #[arg(value_parser = parse_key, value_name = "KEY", help = KEY_MATCH_HELP)]
        key: BackendKey,
    },
    /// One line: may the backend start now? Exit 0 yes, 1 refused.
    #[command(after_help = STATUS_EXIT)]
    Status {
        #[arg(value_parser = parse_key, value_name = "KEY", help = KEY_MATCH_HELP)]
        key: BackendKey,
    },
    /// Clear recovery state: named keys, refused backends, one service, or everything.
    #[command(after_help = RESET_EXIT)]
    Reset(ResetArgs),
    /// Record a crash as a broker would, and print the decision (exit 1 when refused).
    #[command(after_help = RECORD_CRASH_EXIT)]
    RecordCrash {
        #[arg(value_parser = parse_key, value_name = "KEY", help = KEY_EXACT_HELP)]
        key: BackendKey,
        /// The exit status the backend exited with (0-255), kept in its crash history.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(0..=255))]
        exit_code: Option<i32>,
        /// The signal that killed the backend (a number, e.g. 9), kept in its crash history.
        #[arg(long, value_name = "N", conflicts_with = "exit_code",
              value_parser = clap::value_parser!(i32).range(1..=64))]
        signal: Option<i32>,
    },
    /// Record that a backend is healthy, clearing its state.
    #[command(after_help = RECORD_SUCCESS_EXIT)]
    RecordSuccess {
        #[arg(value_parser = parse_key, value_name = "KEY", help = KEY_EXACT_HELP)]
        key: BackendKey,
    },
    /// Remove entries whose window has ended.
    #[command(after_help = PRUNE_EXIT)]
    Prune,
    /// Show the policy, or change it with `policy set`.
    #[command(after_help = POLICY_EXIT)]
    Policy {
        #[command(subcommand)]
        action: Option<PolicyAction>,
    },
    /// Check the file's integrity, its schema and every entry; exit 1 on any problem.
    #[command(after_help = CHECK_EXIT)]
    Check(CheckArgs),
    /// Write the whole state, policy included, as JSON to stdout.
    #[command(after_help = EXPORT_EXIT)]
    Export,
    /// Restore an `export` document: replace the whole state (or add to it with --merge), in
    /// one transaction.
    #[command(after_help = IMPORT_EXIT)]
    Import(ImportArgs),
    /// Print the store a command would use, and how it was chosen.
    #[command(after_help = PATH_EXIT)]
    Path,
    /// Print a shell completion script.
    #[command(after_help = "Exit codes: 0 printed, 2 bad usage. Never opens the store.")]
    Completions { shell: clap_complete::Shell },
    /// Run a command under the recovery policy, restarting it after a crash.
    Run(RunArgs),
    /// List the audit trail: who changed state, when, and why (oldest first).
    #[command(after_help = AUDIT_EXIT)]
    Audit {
        /// Only the events naming this key (resets and successes of it).
        #[arg(long, value_parser = parse_key, value_name = "KEY")]
        key: Option<BackendKey>,
    },
    /// Print the store's state as Prometheus metrics (text format 0.0.4), e.g. for
    /// node_exporter's textfile collector. Exit 0, or 2 when the store cannot be read.
    Metrics(MetricsArgs),
}

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Write the metrics to FILE atomically (temporary file in the same directory, fsync,
    /// mode 0644, rename) instead of stdout, e.g.
    /// /var/lib/node_exporter/textfile_collector/recovery-store.prom.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Most backends given per-backend series; refused backends are kept first, and
    /// recovery_store_series_omitted_backends counts the rest.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub max_series: u64,
}

/// A state, as `list --state` filters by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    Healthy,
    Recovering,
    Refused,
}

/// The order of `list`'s rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SortArg {
    /// Key order.
    Key,
    /// Refused, then recovering, then healthy; key order within each.
    State,
    /// Most recent crash first (holds the matching rows in memory).
    LastCrash,
}

/// How much of each key the table shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputArg {
    /// Executable hashes shortened to 12 digits.
    #[default]
    Normal,
    /// Full keys.
    Wide,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this broker instance: `shared`, `private:NAME` or `explicit:NAME`.
    #[arg(long, value_parser = parse_instance)]
    pub instance: Option<BrokerInstanceKey>,
    /// Only this service name, e.g. zccache.
    #[arg(long)]
    pub service: Option<String>,
    /// Only refused backends (same as --state refused).
    #[arg(long, conflicts_with = "state")]
    pub refused: bool,
    /// Only backends in this state.
    #[arg(long, value_enum)]
    pub state: Option<StateArg>,
    /// Row order [default: state for the table, key for --json].
    #[arg(long, value_enum)]
    pub sort: Option<SortArg>,
    /// Print only the keys, one a line (full keys).
    #[arg(short, long)]
    pub quiet: bool,
    /// `wide` shows full keys; the table shortens executable hashes to 12 digits.
    #[arg(short, long, value_enum, default_value_t, value_name = "FORMAT")]
    pub output: OutputArg,
}

impl ListArgs {
    /// The state filter, `--refused` included.
    pub fn state_filter(&self) -> Option<StateArg> {
        if self.refused {
            Some(StateArg::Refused)
        } else {
            self.state
        }
    }
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).multiple(true)
    .args(["keys", "raw", "service", "instance", "all", "refused"])))]
pub struct ResetArgs {
    /// Backend keys: INSTANCE/SERVICE@VERSION[#EXE_HASH], e.g. shared/zccache@1.11.20. A key
    /// without #EXE_HASH that matches entries with a hash needs --all-hashes.
    #[arg(value_parser = parse_key, value_name = "KEY",
        conflicts_with_all = ["service", "instance", "all", "refused"])]
    pub keys: Vec<BackendKey>,
    /// A damaged entry's stored key, exactly as `list` or `check` shows it (escapes included),
    /// for keys that no longer parse.
    #[arg(long, value_name = "TEXT", conflicts_with_all = ["service", "instance", "all", "refused"])]
    pub raw: Vec<String>,
    /// Every version of this service.
    #[arg(long)]
    pub service: Option<String>,
    /// Only under this broker instance.
    #[arg(long, value_parser = parse_instance)]
    pub instance: Option<BrokerInstanceKey>,
    /// Every entry in the store (needs --yes).
    #[arg(long, conflicts_with_all = ["service", "instance", "refused"])]
    pub all: bool,
    /// Only backends refused now, like `systemctl reset-failed` (needs --yes to clear more
    /// than one); narrow it with --service and --instance.
    #[arg(long)]
    pub refused: bool,
    /// Let a KEY without #EXE_HASH clear its entries under every executable hash.
    #[arg(long)]
    pub all_hashes: bool,
    /// Confirm --all, or a --refused that clears more than one backend.
    #[arg(long)]
    pub yes: bool,
    /// Why, kept in the audit trail (`recovery-store audit`), e.g. "hotfix deployed".
    #[arg(long, value_name = "TEXT", value_parser = parse_reason)]
    pub reason: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PolicyAction {
    /// Change the policy for every process sharing the store; windows already running are
    /// judged by the new policy from their next decision.
    #[command(group(ArgGroup::new("change").required(true).multiple(true)
        .args(["retry_backoff", "budget_window", "retries"])), after_help = POLICY_EXIT)]
    Set {
        /// Delay before each retry, e.g. 250ms; over 1h needs --yes.
        #[arg(long, value_parser = parse_duration)]
        retry_backoff: Option<Duration>,
        /// The budget window, e.g. 30s; over 1 day needs --yes.
        #[arg(long, value_parser = parse_duration)]
        budget_window: Option<Duration>,
        /// Confirm a budget window over 1 day or a retry backoff over 1 hour.
        #[arg(long)]
        yes: bool,
        /// Why, kept in the audit trail (`recovery-store audit`), e.g. "flaky disk".
        #[arg(long, value_name = "TEXT", value_parser = parse_reason)]
        reason: Option<String>,
        /// Retries allowed in one budget window before the next crash is refused (1..=100;
        /// 1 is the reference policy).
        #[arg(long, value_name = "N", value_parser = parse_retries)]
        retries: Option<u32>,
        /// Set an override for every key of this service instead of the default; fields not
        /// given are taken from the policy that applies to the service now.
        #[arg(long, value_name = "NAME", conflicts_with = "key")]
        service: Option<String>,
        /// Set an override for this one key (exactly, hash included) instead of the default.
        #[arg(long, value_parser = parse_key, value_name = "KEY")]
        key: Option<BackendKey>,
    },
    /// Remove a per-service or per-key override: its keys fall back to the next most specific
    /// policy (the service's, then the default).
    #[command(group(ArgGroup::new("scope").required(true).args(["service", "key"])))]
    Unset {
        /// The service whose override to remove.
        #[arg(long, value_name = "NAME")]
        service: Option<String>,
        /// The key whose override to remove.
        #[arg(long, value_parser = parse_key, value_name = "KEY")]
        key: Option<BackendKey>,
        /// Why, kept in the audit trail (`recovery-store audit`).
        #[arg(long, value_name = "TEXT", value_parser = parse_reason)]
        reason: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Write an export document of every entry that can still be decoded to FILE (`-` for
    /// stdout), even from a file that cannot be opened as it stands. The store is never
    /// changed by this.
    #[arg(long, value_name = "FILE")]
    pub salvage: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The document, or `-` for stdin.
    pub file: PathBuf,
    /// Add the document's entries and keep the others (and the store's policy); a key in both
    /// is an error unless --yes is given, when the document's entry wins.
    #[arg(long)]
    pub merge: bool,
    /// Confirm replacing a store that holds state (or, with --merge, overwriting keys in both).
    #[arg(long)]
    pub yes: bool,
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

fn parse_db(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err(
            "the store path is empty: give a file, e.g. --db /var/lib/recovery-store/recovery.redb"
                .into(),
        );
    }
    Ok(PathBuf::from(text))
}

fn parse_key(text: &str) -> Result<BackendKey, String> {
    text.parse().map_err(|e| format!("{e}"))
}

/// The longest `--reason`, in bytes: a sentence or two, not a document.
pub const MAX_REASON_LEN: usize = 1024;

fn parse_retries(text: &str) -> Result<u32, String> {
    let n: u32 = text.trim().parse().map_err(|_| {
        format!(
            "{text:?} is not a count of retries: give a whole number from 1 to {}",
            recovery_store::MAX_RETRIES_PER_WINDOW
        )
    })?;
    recovery_store::validate_retries(n).map_err(|e| e.to_string())?;
    Ok(n)
}

fn parse_reason(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("the reason is empty: say why, e.g. --reason \"hotfix deployed\"".into());
    }
    if text.len() > MAX_REASON_LEN {
        return Err(format!(
            "the reason is {} bytes, over the {MAX_REASON_LEN}-byte limit: shorten it",
            text.len()
        ));
    }
    Ok(text.to_owned())
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

fn parse_mode(text: &str) -> Result<u32, String> {
    let mode = u32::from_str_radix(text, 8)
        .map_err(|_| format!("{text:?} is not an octal mode: expected e.g. 0600 or 0660"))?;
    if !matches!(mode, 0o600 | 0o640 | 0o660 | 0o604 | 0o644) {
        return Err(format!(
            "{mode:04o} cannot be a store's mode: use 0600 (private) or 0660 (a group's store)"
        ));
    }
    Ok(mode)
}

fn parse_lock_timeout(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (e.g. 5s, 500ms)"))
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
            Command::Policy { action: Some(PolicyAction::Set { retry_backoff: Some(r), budget_window: Some(w), .. }) }
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
    fn store_mode_and_trust_are_global_flags() {
        let cli = parse(&[
            "record-crash",
            "shared/a@1.0.0",
            "--mode",
            "0660",
            "--trust-owner",
        ])
        .unwrap();
        assert_eq!(cli.mode, Some(0o660));
        assert!(cli.trust_owner);
        assert!(parse(&["list", "--mode", "0666"]).is_err());
        assert!(parse(&["list", "--mode", "rw"]).is_err());
        let cli = parse(&["list"]).unwrap();
        assert_eq!((cli.mode, cli.trust_owner), (None, false));
    }

    #[test]
    fn list_and_reset_options() {
        let cli = parse(&[
            "list",
            "--state",
            "recovering",
            "--sort",
            "last-crash",
            "-q",
            "-o",
            "wide",
        ])
        .unwrap();
        let Command::List(list) = cli.command else {
            panic!("not list")
        };
        assert_eq!(list.state_filter(), Some(StateArg::Recovering));
        assert_eq!(list.sort, Some(SortArg::LastCrash));
        assert!(list.quiet && list.output == OutputArg::Wide);
        assert!(parse(&["list", "--refused", "--state", "healthy"]).is_err());
        assert!(parse(&["list", "--state", "broken"]).is_err());
        assert!(parse(&["reset", "--refused", "shared/a@1.0.0"]).is_err());
        assert!(parse(&["reset", "--refused", "--all"]).is_err());
        let cli = parse(&["reset", "--refused", "--service", "a", "--yes"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Reset(ResetArgs {
                refused: true,
                yes: true,
                service: Some(_),
                ..
            })
        ));
        let cli = parse(&["reset", "shared/a@1.0.0", "--all-hashes"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Reset(ResetArgs {
                all_hashes: true,
                ..
            })
        ));
    }

    #[test]
    fn import_check_path_and_db() {
        let cli = parse(&["import", "--merge", "--yes", "-"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Import(ImportArgs {
                merge: true,
                yes: true,
                ..
            })
        ));
        let cli = parse(&["check", "--salvage", "out.json"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Check(CheckArgs { salvage: Some(_) })
        ));
        assert!(matches!(parse(&["path"]).unwrap().command, Command::Path));
        let err = parse(&["--db", "", "list"]).unwrap_err();
        assert!(err.to_string().contains("the store path is empty"), "{err}");
        let cli = parse(&["policy", "set", "--budget-window", "2d", "--yes"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Policy {
                action: Some(PolicyAction::Set { yes: true, .. })
            }
        ));
    }

    #[test]
    fn usage_errors_exit_2() {
        let err = parse(&["frobnicate"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = parse(&["--help"]).unwrap_err();
        assert_eq!(err.exit_code(), 0);
    }
}
