//! The command line, as clap derive types. Parsing only: nothing here opens a store.
//!
//! [`Cli`] and [`Command`] are here, with the exit codes each command documents; the arguments
//! of each command group have a file of their own, and `values` parses flag values.

use std::path::PathBuf;
use std::time::SystemTime;

use clap::{Parser, Subcommand};
use recovery_store::BackendKey;

mod list;
mod policy;
mod reset;
mod run;
mod store;
#[cfg(test)]
mod tests;
mod values;

pub use list::{ListArgs, OutputArg, SortArg, StateArg};
pub use policy::PolicyAction;
pub use reset::ResetArgs;
pub use run::RunArgs;
pub use store::{CheckArgs, ImportArgs, MetricsArgs};
use values::{parse_db, parse_key, parse_lock_timeout, parse_mode, parse_time};

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
const SHOW_EXIT: &str = "Exit codes: 0 shown (also for a key with no recorded state), 2 error, \
no store, or no match that can be judged (a damaged entry or a damaged policy override; named).";
const STATUS_EXIT: &str = "Exit codes: 0 the backend may start now, 1 refused, 2 error or no \
store, or unknown: a match cannot be judged (a damaged entry or policy override) and no judged \
match is refused.";
const RESET_EXIT: &str = "Exit codes: 0 done (each key that had no state is listed), 1 --refused \
left keys a damaged policy override judges (named on stderr), 2 error, no store, a missing \
--yes, or a hash-less key matching entries under an executable hash without --all-hashes.";
const RECORD_CRASH_EXIT: &str = "Exit codes: 0 retry allowed, 1 refused, 2 error. Creates the \
store when it is missing (and says so on stderr).";
const RECORD_SUCCESS_EXIT: &str =
    "Exit codes: 0 recorded, 2 error or no store (never creates one).";
const PRUNE_EXIT: &str = "Exit codes: 0 pruned, 1 entries a damaged policy override would judge \
                          were left (named on stderr), 2 error or no store (never creates one).";
const POLICY_EXIT: &str = "Exit codes: 0 shown or changed, 1 `policy` shown with damaged \
override rows (named), 2 error, no store (`policy` alone), an invalid policy, or an extreme one \
without --yes. `policy set` creates the store when missing (unless it sets the reference \
policy a new store has anyway).";
const CHECK_EXIT: &str = "Exit codes: 0 no problems, 1 problems found (or the file cannot be \
opened; the report says what is wrong and what can be salvaged), 2 error or no file.";
const EXPORT_EXIT: &str = "Exit codes: 0 exported, 1 damaged entries, override rows or audit \
events were left out (named on stderr), 2 error or no store.";
const IMPORT_EXIT: &str = "Exit codes: 0 imported (or nothing to change), 2 error: a bad \
document (nothing changes), state the import would overwrite without --yes (entries, the \
default policy or overrides; under --merge, entries or overrides in both that differ), or a \
window over a day or a backoff over an hour without --yes. Creates the store when it is \
missing. The document's audit events are never written to the store's trail.";
const AUDIT_EXIT: &str = "Exit codes: 0 listed (also when there is no event), 1 damaged events \
were left out (named on stderr and in --json `damaged`), 2 error or no store (never creates \
one; opens read-only).";
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
    /// Write the whole store as JSON to stdout: policy, overrides, entries with their history,
    /// and the audit trail.
    #[command(after_help = EXPORT_EXIT)]
    Export,
    /// Restore an `export` document: replace the entries, policy and overrides (or add to them
    /// with --merge), in one transaction.
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
