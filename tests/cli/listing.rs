//! `list`'s filters, orders, key-only and wide output, colour on a terminal, and its order
//! past the rows it keeps in memory.

use super::operator::{hash, hashed};
use super::*;

#[test]
fn list_filters_sorts_and_prints_keys_only() {
    let cli = populated();
    cli.expect(0, &with_now(&at(T0), &["record-crash", &hashed()]));
    let now = at(T5);
    let keys = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["list", "-q"];
        all.extend_from_slice(args);
        cli.ok(&with_now(&now, &all))
            .lines()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(keys(&["--state", "refused"]), ["shared/demo@1.0.0"]);
    assert_eq!(keys(&["--state", "healthy"]), ["explicit:ci/old@1.0.0"]);
    assert_eq!(
        keys(&["--state", "recovering"]),
        ["private:svc/svc@1.0.0#9f2c".to_owned(), hashed()]
    );
    assert_eq!(
        keys(&[]),
        [
            "shared/demo@1.0.0".to_owned(),
            "private:svc/svc@1.0.0#9f2c".into(),
            hashed(),
            "explicit:ci/old@1.0.0".into()
        ],
        "refused first, full keys"
    );
    assert_eq!(
        keys(&["--sort", "last-crash"])[..2],
        [
            "private:svc/svc@1.0.0#9f2c".to_owned(),
            "shared/demo@1.0.0".into()
        ]
    );
    let table = cli.ok(&with_now(&now, &["list", "--state", "recovering"]));
    assert!(
        table.contains("shared/zccache@1.11.20#98ea6e4f216f…  "),
        "{table}"
    );
    assert!(!table.contains(&hashed()));
    let wide = cli.ok(&with_now(&now, &["list", "-o", "wide"]));
    assert!(wide.contains(&hashed()), "{wide}");
    let doc: List = cli.json(0, &with_now(&now, &["list", "--state", "recovering"]));
    assert_eq!(doc.entries[1].key, hashed(), "JSON keeps full keys");
    assert_eq!(doc.entries[1].exe_hash.as_deref(), Some(hash().as_str()));
}

/// Runs `list` on a pseudo-terminal and returns what the terminal got.
fn list_on_a_terminal(cli: &Cli, no_color: bool) -> String {
    let script = "import os, pty, sys\n\
                  pid, fd = pty.fork()\n\
                  if pid == 0:\n    os.execv(sys.argv[1], sys.argv[1:])\n\
                  out = b''\n\
                  while True:\n    try:\n        chunk = os.read(fd, 4096)\n    except OSError:\n        break\n    if not chunk:\n        break\n    out += chunk\n\
                  os.waitpid(pid, 0)\n\
                  sys.stdout.buffer.write(out)\n";
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(script)
        .arg(bin())
        .args(["--db", cli.path().to_str().unwrap(), "--now", T5, "list"])
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("CLICOLOR")
        .env("TERM", "xterm-256color");
    if no_color {
        cmd.env("NO_COLOR", "1");
    }
    let out = cmd.output().expect("python3 runs");
    assert!(out.status.success(), "{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn refused_rows_are_coloured_on_a_terminal_only() {
    if Command::new("python3")
        .arg("-c")
        .arg("import pty")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs python3 for a pty"
        );
        eprintln!("skipped: no python3 for a pseudo-terminal");
        return;
    }
    let cli = populated();
    let tty = list_on_a_terminal(&cli, false);
    let refused = tty
        .lines()
        .find(|l| l.contains("shared/demo@1.0.0"))
        .unwrap();
    assert!(refused.starts_with("\x1b[1;31m"), "{tty:?}");
    let healthy = tty.lines().find(|l| l.contains("explicit:ci")).unwrap();
    assert!(!healthy.contains('\x1b'), "{tty:?}");
    assert!(!list_on_a_terminal(&cli, true).contains('\x1b'), "NO_COLOR");
    assert!(!cli.ok(&["list"]).contains('\x1b'), "a pipe gets no colour");
}

/// Past the rows the first walk keeps in memory, `list` walks once per state: still every row
/// once, refused first, key order within each state.
#[test]
fn list_orders_many_refused_rows_without_holding_them() {
    let cli = Cli::new();
    let entry = |i: usize, crashes: u32| {
        serde_json::json!({"key": format!("shared/s{i:05}@1.0.0"),
            "window_started_at": {"unix_ms": 1_767_225_600_000i64},
            "crashes_in_window": crashes, "last_crash": {"unix_ms": 1_767_225_600_000i64},
            "total_crashes": 2})
    };
    // 5000 refused (two crashes in a live window), interleaved with 1000 healthy ones.
    let entries: Vec<serde_json::Value> = (0..6000)
        .map(|i| entry(i, if i % 6 == 0 { 1 } else { 2 }))
        .collect();
    let doc = serde_json::json!({"format": "recovery-store-export", "version": 1,
        "policy": {"retry_backoff_ms": 250, "budget_window_ms": 30000}, "entries": entries});
    let file = cli.tmp.dir.path().join("many.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    cli.ok(&["import", file.to_str().unwrap()]);
    let late = at("2026-01-01T00:00:20Z");
    let keys: Vec<String> = cli
        .ok(&with_now(&late, &["list", "-q"]))
        .lines()
        .map(str::to_owned)
        .collect();
    let refused: Vec<String> = (0..6000)
        .filter(|i| i % 6 != 0)
        .map(|i| format!("shared/s{i:05}@1.0.0"))
        .collect();
    let recovering: Vec<String> = (0..6000)
        .filter(|i| i % 6 == 0)
        .map(|i| format!("shared/s{i:05}@1.0.0"))
        .collect();
    assert_eq!(keys.len(), 6000);
    assert_eq!(keys[..5000], refused[..]);
    assert_eq!(keys[5000..], recovering[..]);
    let table = cli.ok(&with_now(&late, &["list"]));
    assert_eq!(table.lines().count(), 6001);
    assert!(
        table
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("shared/s00001@1.0.0  refused")
    );
}
