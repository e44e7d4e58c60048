//! The `recovery-store` command; see `recovery-store --help`.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::install_panic_hook();
    // A panic escaping `run` becomes one clean error line instead of a dump.
    let result = std::panic::catch_unwind(cli::run).unwrap_or_else(|_| Err(cli::internal_error()));
    cli::exit(result)
}
