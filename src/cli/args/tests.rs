//! Parser tests through [`Cli::try_parse_from`](clap::Parser::try_parse_from), and clap's own
//! consistency check of the command.

use std::path::PathBuf;
use std::time::Duration;

use clap::CommandFactory;

use super::*;

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
        Command::Check(CheckArgs {
            salvage: Some(_),
            ..
        })
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
