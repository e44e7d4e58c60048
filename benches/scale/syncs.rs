//! The `fdatasync` and `fsync` calls each CLI write command makes, counted with `strace -f`
//! on the real binary. Skipped, with the reason, where strace is missing.

use std::process::Command;

use recovery_store::RecoveryStore;

use crate::Setup;
use crate::common::{key, populate_store};
use crate::measure::measure;

/// One line per command.
pub fn run(s: &Setup) -> Vec<String> {
    if Command::new("strace").arg("-V").output().is_err() {
        return vec!["skipped: strace not found (apt-get install strace)".into()];
    }
    let db = s.dir.join("syncs.redb");
    let store = RecoveryStore::open(&db).expect("open store");
    populate_store(&store, 1_000);
    drop(store);
    let (k1, k2, new1, new2, new3) = (key(1), key(2), key(5_001), key(5_002), key(5_003));
    let (k1, k2, new1, new2, new3) = (
        k1.to_string(),
        k2.to_string(),
        new1.to_string(),
        new2.to_string(),
        new3.to_string(),
    );
    // In this order: the prunes run last, on windows that all ended long ago.
    let commands: Vec<(&str, Vec<&str>)> = vec![
        ("list (a read, for reference)", vec!["list"]),
        (
            "record-crash, a key with no state",
            vec!["record-crash", &new1],
        ),
        (
            "record-crash, a key with state",
            vec!["record-crash", &new1],
        ),
        (
            "record-success, a key with state",
            vec!["record-success", &k1],
        ),
        (
            "record-success, a key with no state *",
            vec!["record-success", &new2],
        ),
        ("reset KEY, a key with state", vec!["reset", &k2]),
        ("reset KEY, a key with no state *", vec!["reset", &new3]),
        (
            "policy set, the stored policy *",
            vec![
                "policy",
                "set",
                "--budget-window",
                "30s",
                "--retry-backoff",
                "250ms",
            ],
        ),
        (
            "policy set, a different policy",
            vec!["policy", "set", "--budget-window", "31s"],
        ),
        ("prune, 1,000 windows ended", vec!["prune"]),
        ("prune, nothing ended *", vec!["prune"]),
        (
            "reset --all --yes, empty store",
            vec!["reset", "--all", "--yes"],
        ),
    ];
    let mut lines = vec![format!(
        "{:<38} {:>9} {:>6}  exit",
        "command", "fdatasync", "fsync"
    )];
    for (i, (what, args)) in commands.into_iter().enumerate() {
        let log = s.dir.join(format!("strace-{i}.log"));
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-qq", "-e", "trace=fdatasync,fsync", "-o"])
            .arg(&log)
            .arg(&s.cli)
            .arg("--db")
            .arg(&db)
            .args(&args);
        let m = measure(cmd);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        // A line per call: `PID CALL(FD) = 0`; a resumed call's second line names no `CALL(`.
        let count = |call: &str| {
            text.split_whitespace()
                .filter(|w| w.starts_with(call))
                .count()
        };
        let mut line = format!(
            "{what:<38} {:>9} {:>6}  {}",
            count("fdatasync("),
            count("fsync("),
            m.status.code().map_or("signal".into(), |c| c.to_string())
        );
        if m.status.code().is_none_or(|c| c > 1) {
            line += &format!("  ({})", m.stderr_line());
        }
        lines.push(line);
    }
    lines.push("* changes nothing".into());
    lines
}
