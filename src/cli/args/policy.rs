//! Subcommands of `policy`: `set` (the default, or a per-service or per-key override) and
//! `unset` (an override).

use std::time::Duration;

use clap::{ArgGroup, Subcommand};
use recovery_store::BackendKey;

use super::POLICY_EXIT;
use super::values::{parse_duration, parse_key, parse_reason, parse_retries};

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
