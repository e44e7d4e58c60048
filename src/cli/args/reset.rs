//! Arguments of `reset`: which entries to clear (keys, raw stored keys, a service, an instance,
//! refused backends, or everything) and the confirmations it needs.

use clap::{ArgGroup, Args};
use recovery_store::{BackendKey, BrokerInstanceKey};

use super::values::{parse_instance, parse_key, parse_reason};

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
