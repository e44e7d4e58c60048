//! Arguments of the commands that take in the whole store: `check` (and its salvage),
//! `import`, and `metrics`.

use std::path::PathBuf;

use clap::Args;

use super::values::parse_reason;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Write an export document of every entry that can still be decoded to FILE (`-` for
    /// stdout), even from a file that cannot be opened as it stands. The store is never
    /// changed by this.
    #[arg(long, value_name = "FILE")]
    pub salvage: Option<PathBuf>,
    /// First remove every policy override row and audit event that cannot be decoded (they
    /// hold nothing usable; keys a removed override judged fall back to the next most specific
    /// policy), with one audit event naming them; then check. Damaged entries stay: `reset
    /// --raw KEY` clears one.
    #[arg(long, conflicts_with = "salvage")]
    pub drop_damaged: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The document, or `-` for stdin.
    pub file: PathBuf,
    /// Add the document's entries and overrides and keep the others (and the store's default
    /// policy); an entry or override in both that differs is an error unless --yes is given,
    /// when the document's wins.
    #[arg(long)]
    pub merge: bool,
    /// Confirm overwriting state the store holds (entries, the default policy, overrides;
    /// under --merge, those in both that differ), and a window over a day or a backoff over
    /// an hour.
    #[arg(long)]
    pub yes: bool,
    /// Why, kept in the import's audit event (`recovery-store audit`), e.g. "restore after
    /// disk replacement".
    #[arg(long, value_name = "TEXT", value_parser = parse_reason)]
    pub reason: Option<String>,
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
