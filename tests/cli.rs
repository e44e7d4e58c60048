//! The `recovery-store` binary, run for real: every command, its `--json` schema (parsed into
//! `deny_unknown_fields` structs), pinned human output, every error path, and `run` against
//! real child processes. Times are pinned with the hidden `--now` option where output shows them.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::util::{TempStore, bin};

/// A temporary store and a way to run the CLI against it.
struct Cli {
    tmp: TempStore,
}

impl Cli {
    fn new() -> Self {
        Self {
            tmp: TempStore::new(),
        }
    }

    fn path(&self) -> &Path {
        &self.tmp.path
    }

    fn cmd(&self, args: &[&str]) -> Command {
        command(self.path(), args)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run recovery-store")
    }

    /// Runs and asserts the exit code; returns stdout.
    fn expect(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            describe(&out)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    fn ok(&self, args: &[&str]) -> String {
        self.expect(0, args)
    }

    /// Runs with `--json`, asserts the exit code, parses the one document on stdout.
    fn json<T: DeserializeOwned>(&self, code: i32, args: &[&str]) -> T {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let text = self.expect(code, &all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}\n{text}"))
    }
}

fn command(db: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("--db")
        .arg(db)
        .args(args)
        .env_remove("RECOVERY_STORE_DB")
        .env_remove("RECOVERY_STORE_NOW")
        .stdin(Stdio::null());
    cmd
}

fn describe(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a clean one-line error: exit 2, `recovery-store: ` prefix, no panic or debug dump.
fn assert_error(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{}", describe(out));
    assert!(err.starts_with("recovery-store: "), "{err}");
    assert!(err.contains(needle), "{needle:?} not in {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(out.stdout.is_empty(), "{}", describe(out));
}

const T0: &str = "2026-01-01T00:00:00Z";

fn at(rfc3339: &str) -> Vec<String> {
    vec!["--now".into(), rfc3339.into()]
}

/// `--now T record-crash KEY` and friends.
fn with_now<'a>(now: &'a [String], args: &[&'a str]) -> Vec<&'a str> {
    now.iter()
        .map(String::as_str)
        .chain(args.iter().copied())
        .collect()
}

// ---- The JSON schema, as a reader of the documentation would declare it. ----

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Time {
    rfc3339: String,
    unix_ms: i64,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Policy {
    retry_backoff_ms: u64,
    budget_window_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    key: String,
    instance: String,
    service: String,
    version: String,
    exe_hash: Option<String>,
    state: String,
    crashes_in_window: u32,
    total_crashes: u64,
    window_started_at: Time,
    last_crash: Time,
    window_ends_at: Time,
    window_remaining_ms: u64,
    retry_after_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Damaged {
    key: String,
    error: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct List {
    store: String,
    now: Time,
    entries: Vec<Entry>,
    damaged: Vec<Damaged>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Show {
    key: String,
    now: Time,
    state: String,
    policy: Policy,
    entry: Option<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Status {
    key: String,
    now: Time,
    state: String,
    may_start: bool,
    crashes_in_window: u32,
    window_remaining_ms: Option<u64>,
    retry_after_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Reset {
    cleared: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordCrash {
    key: String,
    at: Time,
    decision: String,
    retry_after_ms: u64,
    attempt: Option<u32>,
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordSuccess {
    key: String,
    cleared: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Prune {
    now: Time,
    pruned: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Check {
    store: String,
    ok: bool,
    integrity: String,
    schema_version: u32,
    policy: Option<Policy>,
    entries: usize,
    damaged: usize,
    problems: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Import {
    store: String,
    imported: usize,
    policy: Policy,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Run {
    key: String,
    outcome: String,
    exit_code: u8,
    starts: u32,
    crashes: u32,
    retry_after_ms: Option<u64>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Stamp {
    rfc3339: String,
    unix_ms: i64,
    unix_nanos: i64,
    boot: Option<Boot>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Boot {
    boot_id: String,
    since_boot_ns: u64,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct ExportEntry {
    key: String,
    window_started_at: Stamp,
    crashes_in_window: u32,
    last_crash: Stamp,
    total_crashes: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Export {
    format: String,
    version: u32,
    exported_at: Stamp,
    policy: Policy,
    entries: Vec<ExportEntry>,
}

/// Three backends at T0 + 5 s: one refused, one recovering, one whose window ended.
fn populated() -> Cli {
    let cli = Cli::new();
    let crash = |now: &str, key: &str, code: i32| {
        let now = at(now);
        cli.expect(code, &with_now(&now, &["record-crash", key]));
    };
    crash("2025-12-31T23:59:00Z", "explicit:ci/old@1.0.0", 0);
    crash(T0, "shared/demo@1.0.0", 0);
    crash("2026-01-01T00:00:01Z", "shared/demo@1.0.0", 1);
    crash("2026-01-01T00:00:02Z", "private:svc/svc@1.0.0#9f2c", 0);
    cli
}

const T5: &str = "2026-01-01T00:00:05Z";

// ---- Usage and help ----

#[test]
fn help_documents_exit_codes_and_bad_usage_exits_2() {
    let out = Command::new(bin()).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in ["Exit codes", "75", "RECOVERY_STORE_DB", "run"] {
        assert!(help.contains(needle), "{needle} not in help:\n{help}");
    }
    assert!(!help.contains("--now"), "the test clock stays hidden");
    let cli = Cli::new();
    for args in [
        &["frobnicate"][..],
        &["list", "--bogus"],
        &["run", "shared/a@1.0.0"],
    ] {
        let out = cli.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&out).starts_with("recovery-store: "),
            "{}",
            stderr(&out)
        );
    }
    assert!(!cli.path().exists());
}

#[test]
fn bad_keys_and_durations_exit_2_and_name_the_problem() {
    let cli = Cli::new();
    let out = cli.run(&["record-crash", "Shared/svc@1.0.0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid instance \"Shared\""),
        "{}",
        stderr(&out)
    );
    let out = cli.run(&["status", "shared/svc@1.0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("service version"), "{}", stderr(&out));
    let out = cli.run(&["policy", "set", "--retry-backoff", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("250ms"), "{}", stderr(&out));
    let out = cli.run(&[
        "run",
        "--healthy-after",
        "0s",
        "shared/a@1.0.0",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!cli.path().exists(), "bad usage never creates a store");
}

// ---- Missing, foreign and damaged files ----

#[test]
fn read_commands_never_create_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nested").join("recovery.redb");
    let key = "shared/a@1.0.0";
    let reads: [&[&str]; 6] = [
        &["list"],
        &["show", key],
        &["status", key],
        &["policy"],
        &["check"],
        &["export"],
    ];
    for args in reads {
        let out = command(&db, args).output().unwrap();
        assert_error(&out, &format!("no recovery store at {}", db.display()));
        assert!(
            stderr(&out).contains("RECOVERY_STORE_DB"),
            "hint: {}",
            stderr(&out)
        );
        assert!(!db.parent().unwrap().exists(), "{args:?} created something");
    }
}

#[test]
fn write_commands_create_a_private_store() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state").join("recovery.redb");
    let out = command(&db, &["record-crash", "shared/a@1.0.0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(db.parent().unwrap()), 0o700);
    assert_eq!(mode(&db), 0o600);
}

#[test]
fn the_store_path_falls_back_to_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let run = |envs: &[(&str, &Path)]| {
        let mut cmd = Command::new(bin());
        cmd.args(["record-crash", "shared/a@1.0.0"])
            .env_remove("RECOVERY_STORE_DB")
            .env_remove("XDG_STATE_HOME");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    };
    let explicit = dir.path().join("env.redb");
    run(&[("RECOVERY_STORE_DB", &explicit), ("HOME", dir.path())]);
    assert!(explicit.exists());
    let xdg = dir.path().join("xdg");
    run(&[("XDG_STATE_HOME", &xdg), ("HOME", dir.path())]);
    assert!(xdg.join("recovery-store/recovery.redb").exists());
    let home = dir.path().join("home");
    run(&[("HOME", &home)]);
    assert!(
        home.join(".local/state/recovery-store/recovery.redb")
            .exists()
    );
}

fn assert_refused_untouched(path: &Path, needle: &str) {
    let before = std::fs::read(path).unwrap();
    let key = "shared/a@1.0.0";
    let all: [&[&str]; 5] = [
        &["list"],
        &["status", key],
        &["check"],
        &["record-crash", key],
        &["reset", "--all", "--yes"],
    ];
    for args in all {
        let out = command(path, args).output().unwrap();
        assert_error(&out, needle);
        assert_eq!(
            std::fs::read(path).unwrap(),
            before,
            "{args:?} modified the file"
        );
    }
}

#[test]
fn foreign_files_are_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk");
    std::fs::write(
        &junk,
        b"not a database at all, just some text\n".repeat(100),
    )
    .unwrap();
    assert_refused_untouched(&junk, "is not a recovery store");

    let other = dir.path().join("other.redb");
    {
        let db = redb::Database::create(&other).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("things");
            let mut table = txn.open_table(def).unwrap();
            table.insert("a", "b").unwrap();
        }
        txn.commit().unwrap();
    }
    assert_refused_untouched(&other, "is not a recovery store");
}

#[test]
fn damaged_files_get_one_clean_line_and_are_left_untouched() {
    let cli = populated();
    let mut bytes = std::fs::read(cli.path()).unwrap();
    // The page after the header: redb's first data page.
    bytes[4096..8192].fill(0xff);
    std::fs::write(cli.path(), &bytes).unwrap();
    assert_refused_untouched(cli.path(), "is damaged");

    let truncated = Cli::new();
    let bytes = std::fs::read(populated().path()).unwrap();
    std::fs::write(truncated.path(), &bytes[..bytes.len() / 3]).unwrap();
    assert_refused_untouched(truncated.path(), "is damaged");
}

#[test]
fn names_are_sanitized_before_they_reach_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir
        .path()
        .join("evil\x1b[31m\u{202e}")
        .join("recovery.redb");
    let out = command(&db, &["list"]).output().unwrap();
    assert_error(&out, "evil\\x1b[31m\\u{202e}");
    assert!(!stderr(&out).contains('\x1b'));
}

// ---- list, show, status ----

#[test]
fn list_is_an_aligned_table_in_key_order() {
    let cli = populated();
    let now = at(T5);
    let table = cli.ok(&with_now(&now, &["list"]));
    assert_eq!(
        table,
        "\
KEY                         STATE       CRASHES  LAST CRASH  RETRY AFTER / WINDOW ENDS
explicit:ci/old@1.0.0       healthy     1/1      1m05s ago   window ended 35s ago
private:svc/svc@1.0.0#9f2c  recovering  1/1      3s ago      window ends in 27s
shared/demo@1.0.0           refused     2/2      4s ago      retry in 25s
"
    );
    let refused = cli.ok(&with_now(&now, &["list", "--refused"]));
    assert_eq!(refused.lines().count(), 2, "{refused}");
    assert!(refused.contains("shared/demo@1.0.0"));
    let shared = cli.ok(&with_now(&now, &["list", "--instance", "shared"]));
    assert_eq!(
        shared.lines().nth(1).unwrap().split_whitespace().next(),
        Some("shared/demo@1.0.0")
    );
    assert_eq!(shared.lines().count(), 2);
    let svc = cli.ok(&with_now(&now, &["list", "--service", "svc"]));
    assert!(
        svc.contains("private:svc/svc@1.0.0#9f2c") && svc.lines().count() == 2,
        "{svc}"
    );
    let none = cli.ok(&with_now(&now, &["list", "--service", "nothing"]));
    assert_eq!(none, "no backend matches\n");
}

#[test]
fn list_json_follows_the_schema() {
    let cli = populated();
    let now = at(T5);
    let doc: List = cli.json(0, &with_now(&now, &["list"]));
    assert_eq!(doc.store, cli.path().to_str().unwrap());
    assert_eq!(
        doc.now,
        Time {
            rfc3339: "2026-01-01T00:00:05.000Z".into(),
            unix_ms: 1_767_225_605_000
        }
    );
    assert!(doc.damaged.is_empty());
    let keys: Vec<&str> = doc.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "explicit:ci/old@1.0.0",
            "private:svc/svc@1.0.0#9f2c",
            "shared/demo@1.0.0"
        ]
    );
    let demo = &doc.entries[2];
    assert_eq!(
        (
            demo.instance.as_str(),
            demo.service.as_str(),
            demo.version.as_str()
        ),
        ("shared", "demo", "1.0.0")
    );
    assert_eq!(demo.state, "refused");
    assert_eq!((demo.crashes_in_window, demo.total_crashes), (2, 2));
    assert_eq!(demo.window_started_at.unix_ms, 1_767_225_600_000);
    assert_eq!(demo.last_crash.rfc3339, "2026-01-01T00:00:01.000Z");
    assert_eq!(demo.window_ends_at.rfc3339, "2026-01-01T00:00:30.000Z");
    assert_eq!(
        (demo.window_remaining_ms, demo.retry_after_ms),
        (25_000, Some(25_000))
    );
    assert_eq!(demo.exe_hash, None);
    let svc = &doc.entries[1];
    assert_eq!(
        (svc.state.as_str(), svc.retry_after_ms),
        ("recovering", None)
    );
    assert_eq!(svc.exe_hash.as_deref(), Some("9f2c"));
    assert_eq!(svc.instance, "private:svc");
    let old = &doc.entries[0];
    assert_eq!(
        (old.state.as_str(), old.window_remaining_ms),
        ("healthy", 0)
    );
    let refused: List = cli.json(0, &with_now(&now, &["list", "--refused"]));
    assert_eq!(refused.entries.len(), 1);
}

#[test]
fn show_prints_every_field() {
    let cli = populated();
    let now = at(T5);
    assert_eq!(
        cli.ok(&with_now(&now, &["show", "shared/demo@1.0.0"])),
        "\
key:               shared/demo@1.0.0
instance:          shared
service:           demo
version:           1.0.0
executable hash:   -
state:             refused
may start:         no, retry after 25s
crashes in window: 2
total crashes:     2
window started:    2026-01-01T00:00:00.000Z (5s ago)
last crash:        2026-01-01T00:00:01.000Z (4s ago)
window ends:       2026-01-01T00:00:30.000Z (in 25s)
policy:            retry backoff 250ms, budget window 30s
"
    );
    assert_eq!(
        cli.ok(&with_now(&now, &["show", "shared/never@2.0.0"])),
        "\
key:             shared/never@2.0.0
instance:        shared
service:         never
version:         2.0.0
executable hash: -
state:           healthy (no recorded crashes)
may start:       yes
policy:          retry backoff 250ms, budget window 30s
"
    );
    let doc: Show = cli.json(0, &with_now(&now, &["show", "private:svc/svc@1.0.0#9f2c"]));
    assert_eq!(
        (doc.key.as_str(), doc.state.as_str()),
        ("private:svc/svc@1.0.0#9f2c", "recovering")
    );
    assert_eq!(
        doc.policy,
        Policy {
            retry_backoff_ms: 250,
            budget_window_ms: 30_000
        }
    );
    assert_eq!(doc.now.unix_ms, 1_767_225_605_000);
    let entry = doc.entry.expect("entry");
    assert_eq!(
        (entry.window_remaining_ms, entry.crashes_in_window),
        (27_000, 1)
    );
    let none: Show = cli.json(0, &with_now(&now, &["show", "shared/never@2.0.0"]));
    assert!(none.entry.is_none() && none.state == "healthy");
}

#[test]
fn status_answers_in_one_line_and_its_exit_code() {
    let cli = populated();
    let now = at(T5);
    let run = |key: &str, code| cli.expect(code, &with_now(&now, &["status", key]));
    assert_eq!(
        run("shared/demo@1.0.0", 1),
        "shared/demo@1.0.0: refused (backend unavailable): retry after 25s\n"
    );
    assert_eq!(
        run("private:svc/svc@1.0.0#9f2c", 0),
        "private:svc/svc@1.0.0#9f2c: recovering (1 crash in the window, which ends in 27s): may start now\n"
    );
    assert_eq!(
        run("explicit:ci/old@1.0.0", 0),
        "explicit:ci/old@1.0.0: healthy: may start now\n"
    );
    assert_eq!(
        run("shared/never@1.0.0", 0),
        "shared/never@1.0.0: healthy: may start now\n"
    );
    let doc: Status = cli.json(1, &with_now(&now, &["status", "shared/demo@1.0.0"]));
    assert_eq!(
        (doc.key.as_str(), doc.state.as_str(), doc.may_start),
        ("shared/demo@1.0.0", "refused", false)
    );
    assert_eq!(
        (
            doc.crashes_in_window,
            doc.retry_after_ms,
            doc.window_remaining_ms
        ),
        (2, Some(25_000), Some(25_000))
    );
    assert_eq!(doc.now.rfc3339, "2026-01-01T00:00:05.000Z");
    let doc: Status = cli.json(0, &with_now(&now, &["status", "explicit:ci/old@1.0.0"]));
    assert_eq!(
        (doc.state.as_str(), doc.may_start, doc.crashes_in_window),
        ("healthy", true, 0)
    );
    assert_eq!((doc.retry_after_ms, doc.window_remaining_ms), (None, None));
}

// ---- Writes ----

#[test]
fn record_crash_and_success_print_the_decision() {
    let cli = Cli::new();
    let now = at(T0);
    let key = "shared/a@1.0.0";
    assert_eq!(
        cli.ok(&with_now(&now, &["record-crash", key])),
        "shared/a@1.0.0: crash recorded: retry after 250ms (attempt 1)\n"
    );
    let later = at("2026-01-01T00:00:10Z");
    let doc: RecordCrash = cli.json(1, &with_now(&later, &["record-crash", key]));
    assert_eq!((doc.key.as_str(), doc.decision.as_str()), (key, "refuse"));
    assert_eq!((doc.retry_after_ms, doc.attempt), (20_000, None));
    assert_eq!(doc.reason.as_deref(), Some("backend_unavailable"));
    assert_eq!(doc.at.rfc3339, "2026-01-01T00:00:10.000Z");
    let out = cli.expect(1, &with_now(&later, &["record-crash", key]));
    assert_eq!(
        out,
        "shared/a@1.0.0: crash recorded: refused (backend unavailable), retry after 20s\n"
    );

    let doc: RecordSuccess = cli.json(0, &["record-success", key]);
    assert!(doc.cleared && doc.key == key);
    assert_eq!(
        cli.ok(&["record-success", key]),
        "shared/a@1.0.0: success recorded: it had no recovery state\n"
    );
    let doc: RecordCrash = cli.json(0, &["record-crash", key]);
    assert_eq!(
        (doc.decision.as_str(), doc.attempt, doc.retry_after_ms),
        ("retry", Some(1), 250)
    );
    assert_eq!(doc.reason, None);
    assert_eq!(
        cli.ok(&["record-success", key]),
        "shared/a@1.0.0: success recorded: its recovery state was cleared\n"
    );
}

#[test]
fn reset_forms_say_what_they_cleared() {
    let cli = populated();
    let out = cli.run(&["reset", "--all"]);
    assert_error(&out, "without --yes");
    assert_eq!(
        cli.json::<List>(0, &["list"]).entries.len(),
        3,
        "--all without --yes cleared nothing"
    );

    assert_eq!(
        cli.ok(&["reset", "shared/demo@1.0.0", "shared/none@1.0.0"]),
        "cleared shared/demo@1.0.0\n"
    );
    assert_eq!(
        cli.ok(&["reset", "shared/demo@1.0.0"]),
        "nothing to reset: no state for shared/demo@1.0.0\n"
    );
    assert_eq!(
        cli.ok(&["reset", "--service", "svc", "--instance", "shared"]),
        "nothing to reset: no entry for service svc under shared\n"
    );
    let doc: Reset = cli.json(0, &["reset", "--service", "svc"]);
    assert_eq!(doc.cleared, ["private:svc/svc@1.0.0#9f2c"]);
    let doc: Reset = cli.json(0, &["reset", "--all", "--yes"]);
    assert_eq!(doc.cleared, ["explicit:ci/old@1.0.0"]);
    assert_eq!(
        cli.ok(&["reset", "--all", "--yes"]),
        "nothing to reset: the store is empty\n"
    );
    assert_eq!(
        cli.ok(&["list"]),
        format!(
            "no backend has recovery state in {}\n",
            cli.path().display()
        )
    );

    let fresh = Cli::new();
    assert_error(&fresh.run(&["reset", "--all"]), "--yes");
    assert!(!fresh.path().exists(), "a refused reset creates nothing");
}

#[test]
fn prune_drops_ended_windows() {
    let cli = populated();
    let now = at(T5);
    assert_eq!(
        cli.ok(&with_now(&now, &["prune"])),
        "pruned 1 entry whose window had ended\n"
    );
    let doc: Prune = cli.json(0, &with_now(&now, &["prune"]));
    assert_eq!(doc.pruned, 0);
    assert_eq!(doc.now.unix_ms, 1_767_225_605_000);
    let later = at("2026-01-01T00:01:00Z");
    let doc: Prune = cli.json(0, &with_now(&later, &["prune"]));
    assert_eq!(doc.pruned, 2);
    assert!(cli.json::<List>(0, &["list"]).entries.is_empty());
}

#[test]
fn policy_shows_and_sets() {
    let cli = Cli::new();
    assert_error(&cli.run(&["policy"]), "no recovery store");
    assert_eq!(
        cli.ok(&[
            "policy",
            "set",
            "--retry-backoff",
            "10ms",
            "--budget-window",
            "5s"
        ]),
        "retry backoff: 10ms\nbudget window: 5s\n"
    );
    assert_eq!(
        cli.ok(&["policy"]),
        "retry backoff: 10ms\nbudget window: 5s\n"
    );
    let doc: Policy = cli.json(0, &["policy", "set", "--budget-window", "1m"]);
    assert_eq!(
        doc,
        Policy {
            retry_backoff_ms: 10,
            budget_window_ms: 60_000
        }
    );
    let doc: Policy = cli.json(0, &["policy"]);
    assert_eq!(
        doc,
        Policy {
            retry_backoff_ms: 10,
            budget_window_ms: 60_000
        }
    );
    let doc: RecordCrash = cli.json(0, &["record-crash", "shared/a@1.0.0"]);
    assert_eq!(doc.retry_after_ms, 10, "the new policy decides");
}

// ---- check, export, import, completions ----

#[test]
fn check_reports_a_sound_store() {
    let cli = populated();
    let out = cli.ok(&["check"]);
    assert!(
        out.contains("integrity: ok\n") && out.contains("entries:   3 ok, 0 damaged\n"),
        "{out}"
    );
    assert!(out.ends_with("no problems found\n"), "{out}");
    let doc: Check = cli.json(0, &["check"]);
    assert!(doc.ok && doc.problems.is_empty());
    assert_eq!(
        (doc.integrity.as_str(), doc.schema_version),
        ("ok", recovery_store::SCHEMA_VERSION)
    );
    assert_eq!((doc.entries, doc.damaged), (3, 0));
    assert_eq!(doc.store, cli.path().to_str().unwrap());
    assert_eq!(
        doc.policy,
        Some(Policy {
            retry_backoff_ms: 250,
            budget_window_ms: 30_000
        })
    );
}

/// Writes a raw entry the library would never write: a hostile key and an undecodable value.
fn plant_damaged_entry(path: &Path, raw_key: &[u8]) {
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("entries");
        let mut table = txn.open_table(def).unwrap();
        table.insert(raw_key, &[0xffu8, 0xff, 0xff][..]).unwrap();
    }
    txn.commit().unwrap();
}

#[test]
fn check_reports_each_damaged_entry_and_exits_1() {
    let cli = populated();
    plant_damaged_entry(cli.path(), b"shared/evil\x1b[2J@1.0.0");
    let out = cli.run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("entries:   3 ok, 1 damaged"), "{text}");
    assert!(text.contains("problem:") && text.contains("[2J"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "escape sequence reached the terminal: {text:?}"
    );
    let doc: Check = cli.json(1, &["check"]);
    assert!(!doc.ok);
    assert_eq!((doc.entries, doc.damaged, doc.problems.len()), (3, 1, 1));

    // list still shows the readable entries and warns about the damaged one.
    let out = cli.run(&["list"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 4);
    assert!(
        stderr(&out).contains("cannot be decoded") && !stderr(&out).contains('\x1b'),
        "{}",
        stderr(&out)
    );
    let doc: List = cli.json(0, &["list"]);
    assert_eq!(doc.damaged.len(), 1);
    assert_eq!(doc.damaged[0].key, "shared/evil\x1b[2J@1.0.0");
    assert!(!doc.damaged[0].error.is_empty());

    // export leaves it out, says so and exits 1; a reset clears it.
    let out = cli.run(&["export"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        serde_json::from_slice::<Export>(&out.stdout)
            .unwrap()
            .entries
            .len(),
        3
    );
    assert!(stderr(&out).contains("left out of the export"));
    let doc: Reset = cli.json(0, &["reset", "--instance", "shared"]);
    assert_eq!(
        doc.cleared,
        ["shared/demo@1.0.0", "shared/evil\x1b[2J@1.0.0"]
    );
    assert!(cli.json::<Check>(0, &["check"]).ok);
}

#[test]
fn export_then_import_restores_everything() {
    let cli = populated();
    cli.ok(&["policy", "set", "--retry-backoff", "100ms"]);
    let text = cli.ok(&["export"]);
    let doc: Export = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (doc.format.as_str(), doc.version),
        ("recovery-store-export", 1)
    );
    assert_eq!(
        doc.policy,
        Policy {
            retry_backoff_ms: 100,
            budget_window_ms: 30_000
        }
    );
    assert_eq!(doc.entries.len(), 3);
    assert!(
        doc.exported_at.boot.is_some(),
        "a real clock reading carries the boot clock"
    );
    let demo = &doc.entries[2];
    assert_eq!(
        (
            demo.key.as_str(),
            demo.crashes_in_window,
            demo.total_crashes
        ),
        ("shared/demo@1.0.0", 2, 2)
    );
    assert_eq!(demo.window_started_at.unix_nanos, 1_767_225_600_000_000_000);
    assert_eq!(demo.window_started_at.rfc3339, "2026-01-01T00:00:00.000Z");

    let other = Cli::new();
    other.ok(&["record-crash", "shared/gone@1.0.0"]);
    let file = other.tmp.dir.path().join("export.json");
    std::fs::write(&file, &text).unwrap();
    let file_arg = file.to_str().unwrap();
    let done: Import = other.json(0, &["import", file_arg]);
    assert_eq!(
        (done.imported, done.store.as_str()),
        (3, other.path().to_str().unwrap())
    );
    assert_eq!(done.policy, doc.policy);
    let again: Export = serde_json::from_str(&other.ok(&["export"])).unwrap();
    assert_eq!(
        again.entries, doc.entries,
        "lossless, and the old state was replaced"
    );
    assert_eq!(
        other.ok(&["import", file_arg]),
        format!(
            "imported 3 entries and the policy (retry backoff 100ms, budget window 30s) into {}, replacing its previous state\n",
            other.path().display()
        )
    );
    // stdin works too.
    let third = Cli::new();
    let mut child = third
        .cmd(&["import", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(third.json::<List>(0, &["list"]).entries.len(), 3);
}

#[test]
fn bad_import_documents_change_nothing_and_say_what_is_wrong() {
    let cli = populated();
    let before = cli.ok(&["export"]);
    let good: serde_json::Value = serde_json::from_str(&before).unwrap();
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = good.clone();
        f(&mut v);
        v.to_string()
    };
    let cases: Vec<(String, &str)> = vec![
        ("{ not json".into(), "not a valid export document"),
        (
            edit(&|v| v["format"] = "sqlite".into()),
            "`format` is \"sqlite\"",
        ),
        (edit(&|v| v["version"] = 9.into()), "`version` is 9"),
        (
            edit(&|v| v["entries"][1]["key"] = "shared/Bad@1.0.0".into()),
            "`entries[1]`.key",
        ),
        (
            edit(&|v| v["entries"][0]["crashes_in_window"] = 0.into()),
            "crashes_in_window must be at least 1",
        ),
        (
            edit(&|v| v["entries"][0]["surprise"] = 1.into()),
            "unknown field `surprise`",
        ),
        (
            edit(&|v| v["entries"][2]["last_crash"]["unix_ms"] = 5.into()),
            "does not match",
        ),
        (
            edit(&|v| v["policy"]["budget_window_ms"] = 0.into()),
            "budget_window_ms",
        ),
        (
            edit(&|v| {
                let first = v["entries"][0].clone();
                v["entries"].as_array_mut().unwrap().push(first);
            }),
            "appears more than once",
        ),
    ];
    let file = cli.tmp.dir.path().join("bad.json");
    for (text, needle) in cases {
        std::fs::write(&file, &text).unwrap();
        let out = cli.run(&["import", file.to_str().unwrap()]);
        assert_error(&out, needle);
        assert!(
            stderr(&out).contains("fix the document"),
            "{}",
            stderr(&out)
        );
    }
    assert_error(
        &cli.run(&["import", "/nonexistent/export.json"]),
        "cannot read /nonexistent/export.json",
    );
    assert_eq!(
        cli.ok(&["export"]).lines().skip(12).collect::<Vec<_>>(),
        before.lines().skip(12).collect::<Vec<_>>()
    );
    let fresh = Cli::new();
    std::fs::write(&file, "{}").unwrap();
    assert_error(
        &fresh.run(&["import", file.to_str().unwrap()]),
        "missing field",
    );
    assert!(!fresh.path().exists(), "a rejected import creates nothing");
}

#[test]
fn completions_are_generated() {
    let cli = Cli::new();
    let bash = cli.ok(&["completions", "bash"]);
    assert!(
        bash.contains("record-crash") && bash.contains("complete"),
        "{bash}"
    );
    assert!(
        cli.ok(&["completions", "zsh"])
            .contains("#compdef recovery-store")
    );
    assert!(!cli.path().exists());
}

#[test]
fn a_closed_stdout_exits_quietly() {
    let cli = Cli::new();
    let entries: Vec<serde_json::Value> = (0..3000)
        .map(|i| {
            serde_json::json!({"key": format!("shared/s{i}@1.0.0"), "window_started_at": {"unix_ms": 1_767_225_600_000i64},
                "crashes_in_window": 1, "last_crash": {"unix_ms": 1_767_225_600_000i64}, "total_crashes": 1})
        })
        .collect();
    let doc = serde_json::json!({"format": "recovery-store-export", "version": 1,
        "policy": {"retry_backoff_ms": 250, "budget_window_ms": 30000}, "entries": entries});
    let file = cli.tmp.dir.path().join("many.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    cli.ok(&["import", file.to_str().unwrap()]);
    for args in [&["list"][..], &["export"]] {
        let mut child = cli
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", describe(&out));
        assert!(out.stderr.is_empty(), "{}", stderr(&out));
    }
}

// ---- run ----

#[test]
fn run_catches_a_crash_loop() {
    let cli = Cli::new();
    let key = "shared/demo@1.0.0";
    let started = Instant::now();
    let out = cli.run(&["run", key, "--", "sh", "-c", "exit 3"]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        [
            "recovery-store: run shared/demo@1.0.0: sh exited with code 3: crash recorded: retry after 250ms (attempt 1)",
            "recovery-store: run shared/demo@1.0.0: sh exited with code 3: crash recorded: refused (backend unavailable), retry after 30s",
        ]
    );
    assert!(
        took >= Duration::from_millis(250),
        "the retry waited the backoff: {took:?}"
    );
    let status = cli.expect(1, &["status", key]);
    assert!(
        status.starts_with("shared/demo@1.0.0: refused (backend unavailable): retry after "),
        "{status}"
    );
    // A refused key is not started again.
    let marker = cli.tmp.dir.path().join("started");
    let doc: Run = cli.json(75, &["run", key, "--", "touch", marker.to_str().unwrap()]);
    assert!(!marker.exists());
    assert_eq!(
        (doc.key.as_str(), doc.outcome.as_str(), doc.exit_code),
        (key, "refused", 75)
    );
    assert_eq!((doc.starts, doc.crashes), (0, 0));
    assert!(
        doc.retry_after_ms
            .is_some_and(|ms| ms > 25_000 && ms <= 30_000)
    );
}

#[test]
fn run_json_reports_starts_and_crashes() {
    let cli = Cli::new();
    cli.ok(&[
        "policy",
        "set",
        "--retry-backoff",
        "10ms",
        "--budget-window",
        "5s",
    ]);
    let doc: Run = cli.json(75, &["run", "shared/a@1.0.0", "--", "sh", "-c", "exit 3"]);
    assert_eq!(
        (doc.outcome.as_str(), doc.exit_code, doc.starts, doc.crashes),
        ("refused", 75, 2, 2)
    );
    let show: Show = cli.json(0, &["show", "shared/a@1.0.0"]);
    assert_eq!(show.entry.unwrap().crashes_in_window, 2);
}

#[test]
fn run_of_a_command_that_succeeds_clears_the_state() {
    let cli = Cli::new();
    let key = "shared/ok@1.0.0";
    cli.ok(&["record-crash", key]);
    let doc: Run = cli.json(0, &["run", key, "--", "sh", "-c", "exit 0"]);
    assert_eq!(
        (doc.outcome.as_str(), doc.exit_code, doc.starts, doc.crashes),
        ("exited", 0, 1, 0)
    );
    let show: Show = cli.json(0, &["show", key]);
    assert!(show.entry.is_none(), "{show:?}");
    cli.ok(&["status", key]);
}

#[test]
fn run_records_a_success_once_the_command_has_run_long_enough() {
    let cli = Cli::new();
    cli.ok(&["policy", "set", "--retry-backoff", "10ms"]);
    let key = "shared/slow@1.0.0";
    cli.ok(&["record-crash", key]);
    // Crashes after 300 ms the first time, succeeds the second. Without --healthy-after the
    // crash would be the second in the window, and refused.
    let flag = cli.tmp.dir.path().join("flag");
    let script = format!(
        "sleep 0.3; test -e '{0}' && exit 0; touch '{0}'; exit 3",
        flag.display()
    );
    let out = cli.run(&[
        "run",
        key,
        "--healthy-after",
        "100ms",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("sh has run for 100ms: success recorded"),
        "{err}"
    );
    assert!(err.contains("retry after 10ms (attempt 1)"), "{err}");
}

#[test]
fn run_forwards_sigterm_and_exits_with_the_childs_status() {
    let cli = Cli::new();
    let key = "shared/term@1.0.0";
    let ready = cli.tmp.dir.path().join("ready");
    let script = format!(
        "trap 'exit 7' TERM; touch '{}'; while :; do sleep 0.02; done",
        ready.display()
    );
    let mut child = cli
        .cmd(&["run", key, "--", "sh", "-c", &script])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(|| ready.exists());
    // SAFETY: plain kill(2) on a child we started.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(7));
    let show: Show = cli.json(0, &["show", key]);
    assert!(
        show.entry.is_none(),
        "an operator's stop is not a crash: {show:?}"
    );
}

fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_run_killed_with_sigkill_and_restarted_continues_the_same_window() {
    let cli = Cli::new();
    cli.ok(&["policy", "set", "--retry-backoff", "20s"]);
    let key = "shared/k@1.0.0";
    let mut first = cli
        .cmd(&["run", key, "--", "sh", "-c", "exit 3"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The first crash is recorded; `run` now sleeps through its 20 s backoff.
    wait_for(|| cli.json::<Show>(0, &["show", key]).entry.is_some());
    first.kill().unwrap();
    assert_eq!(first.wait().unwrap().code(), None, "killed by SIGKILL");
    let before = cli.json::<Show>(0, &["show", key]).entry.unwrap();
    assert_eq!(before.crashes_in_window, 1);

    let started = Instant::now();
    let out = cli.run(&["run", key, "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "no fresh retry after the restart"
    );
    let after = cli.json::<Show>(0, &["show", key]).entry.unwrap();
    assert_eq!((after.crashes_in_window, after.total_crashes), (2, 2));
    assert_eq!(after.window_started_at, before.window_started_at);
}

#[test]
fn a_reset_takes_effect_while_another_run_holds_the_store() {
    let cli = Cli::new();
    cli.ok(&[
        "policy",
        "set",
        "--retry-backoff",
        "10ms",
        "--budget-window",
        "30s",
    ]);
    let key = "shared/loop@1.0.0";
    let starts = cli.tmp.dir.path().join("starts");
    let script = format!("echo x >> '{}'; exit 3", starts.display());
    let count = || {
        std::fs::read_to_string(&starts)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    let waiting = cli
        .cmd(&["run", key, "--wait", "--", "sh", "-c", &script])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Two crashes: refused, and `run --wait` waits out a 30 s window with the store open.
    wait_for(|| cli.run(&["status", key]).status.code() == Some(1));
    assert_eq!(count(), 2);
    // Meanwhile a second writer keeps recording crashes of another key.
    let other = "shared/noisy@1.0.0";
    let noisy = format!(
        "for i in 1 2 3 4 5 6 7 8 9 10; do '{}' --db '{}' record-crash {other} >/dev/null; test $? -le 1 || exit 9; done",
        bin().display(),
        cli.path().display()
    );
    let mut writer = Command::new("sh").args(["-c", &noisy]).spawn().unwrap();

    assert_eq!(cli.ok(&["reset", key]), format!("cleared {key}\n"));
    // The waiting run notices, starts again, crashes twice in a fresh window.
    wait_for(|| count() == 4 && cli.run(&["status", key]).status.code() == Some(1));
    assert_eq!(
        writer.wait().unwrap().code(),
        Some(0),
        "every concurrent record-crash worked"
    );
    let entry = cli.json::<Show>(0, &["show", key]).entry.unwrap();
    assert_eq!((entry.crashes_in_window, entry.total_crashes), (2, 2));
    assert!(
        cli.json::<Show>(0, &["show", other])
            .entry
            .unwrap()
            .total_crashes
            >= 10
    );

    // SIGTERM while it waits (no child running) stops it with 128 + 15.
    // SAFETY: plain kill(2) on a child we started.
    unsafe { libc::kill(waiting.id() as libc::pid_t, libc::SIGTERM) };
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", describe(&out));
    assert!(
        stderr(&out).contains("no longer refused: trying again"),
        "{}",
        stderr(&out)
    );
}
