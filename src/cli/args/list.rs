//! Arguments of `list`: which backends it shows, in what order, and how much of each key.

use clap::{Args, ValueEnum};
use recovery_store::BrokerInstanceKey;

use super::values::parse_instance;

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
