//! `recovery-store metrics`: the Prometheus text output parsed with a text-format parser and
//! checked against the store; `promtool` on the output and on the shipped alert rules; the
//! series cap; and `--output`, which leaves nothing behind, failures included.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use prometheus_parse::{Scrape, Value};

use super::{Cli, T5, at, populated, stderr, with_now};

fn scrape(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses as Prometheus text")
}

/// `metric{key=KEY[,state=STATE]}` → value, for every sample.
fn values(scrape: &Scrape) -> HashMap<(String, String, String), f64> {
    scrape
        .samples
        .iter()
        .map(|s| {
            let value = match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                _ => panic!("unexpected sample type for {}", s.metric),
            };
            let label = |name: &str| s.labels.get(name).unwrap_or("").to_owned();
            ((s.metric.clone(), label("key"), label("state")), value)
        })
        .collect()
}

fn get(
    values: &HashMap<(String, String, String), f64>,
    metric: &str,
    key: &str,
    state: &str,
) -> f64 {
    *values
        .get(&(metric.to_owned(), key.to_owned(), state.to_owned()))
        .unwrap_or_else(|| panic!("no {metric}{{key={key:?},state={state:?}}}"))
}

#[test]
fn metrics_match_the_store_for_each_state() {
    let cli = populated();
    let now = at(T5);
    let text = cli.expect(0, &with_now(&now, &["metrics"]));
    let scrape = scrape(&text);
    let v = values(&scrape);

    let refused = "shared/demo@1.0.0";
    let recovering = "private:svc/svc@1.0.0#9f2c";
    let ended = "explicit:ci/old@1.0.0";
    let state = "recovery_store_backend_state";
    for (key, want) in [
        (refused, "refused"),
        (recovering, "recovering"),
        (ended, "healthy"),
    ] {
        for s in ["healthy", "recovering", "refused"] {
            assert_eq!(
                get(&v, state, key, s),
                f64::from(u8::from(s == want)),
                "{key} {s}"
            );
        }
    }
    let crashes = "recovery_store_crashes_total";
    assert_eq!(get(&v, crashes, refused, ""), 2.0);
    assert_eq!(get(&v, crashes, recovering, ""), 1.0);
    assert_eq!(get(&v, crashes, ended, ""), 1.0);
    let in_window = "recovery_store_crashes_in_window";
    assert_eq!(get(&v, in_window, refused, ""), 2.0);
    assert_eq!(get(&v, in_window, recovering, ""), 1.0);
    assert_eq!(
        get(&v, in_window, ended, ""),
        0.0,
        "an ended window counts no crash"
    );
    let retry = "recovery_store_backend_retry_after_seconds";
    assert_eq!(
        get(&v, retry, refused, ""),
        25.0,
        "window opened at T0, now T0+5 s"
    );
    assert_eq!(get(&v, retry, recovering, ""), 0.0);
    let last = "recovery_store_last_crash_timestamp_seconds";
    let t0 = 1_767_225_600.0; // 2026-01-01T00:00:00Z
    assert_eq!(get(&v, last, refused, ""), t0 + 1.0);
    assert_eq!(get(&v, last, recovering, ""), t0 + 2.0);

    // Labels split the key into its parts, the hash kept in `key`.
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == crashes && s.labels.get("key") == Some(recovering))
        .unwrap();
    assert_eq!(sample.labels.get("instance"), Some("private:svc"));
    assert_eq!(sample.labels.get("service"), Some("svc"));
    assert_eq!(sample.labels.get("version"), Some("1.0.0"));
    assert!(
        matches!(sample.value, Value::Counter(_)),
        "crashes is a counter"
    );

    for (s, n) in [("healthy", 1.0), ("recovering", 1.0), ("refused", 1.0)] {
        assert_eq!(get(&v, "recovery_store_backends", "", s), n);
    }
    assert_eq!(get(&v, "recovery_store_schema_version", "", ""), 2.0);
    let size = std::fs::metadata(cli.path()).unwrap().len() as f64;
    assert_eq!(get(&v, "recovery_store_file_size_bytes", "", ""), size);
    assert_eq!(
        get(&v, "recovery_store_policy_retry_backoff_seconds", "", ""),
        0.25
    );
    assert_eq!(
        get(&v, "recovery_store_policy_budget_window_seconds", "", ""),
        30.0
    );
    assert_eq!(
        get(&v, "recovery_store_series_omitted_backends", "", ""),
        0.0
    );
    assert_eq!(
        get(&v, "recovery_store_report_timestamp_seconds", "", ""),
        t0 + 5.0
    );

    // Every family has HELP and TYPE lines.
    for family in [
        state,
        crashes,
        in_window,
        retry,
        last,
        "recovery_store_backends",
    ] {
        assert!(text.contains(&format!("# HELP {family} ")), "{family}");
        assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
    }
}

#[test]
fn the_series_cap_keeps_refused_backends_first_and_counts_the_rest() {
    let cli = Cli::new();
    let now = at(T5);
    for name in ["a", "b", "c", "d", "e"] {
        let key = format!("shared/{name}@1.0.0");
        cli.expect(0, &with_now(&now, &["record-crash", &key]));
        if name == "c" || name == "e" {
            cli.expect(1, &with_now(&now, &["record-crash", &key]));
        }
    }
    let keys_in = |cap: &str| {
        let text = cli.expect(0, &with_now(&now, &["metrics", "--max-series", cap]));
        let scrape = scrape(&text);
        let mut keys: Vec<String> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == "recovery_store_crashes_total")
            .map(|s| s.labels.get("key").unwrap().to_owned())
            .collect();
        keys.sort();
        let omitted = get(
            &values(&scrape),
            "recovery_store_series_omitted_backends",
            "",
            "",
        );
        (keys, omitted)
    };
    assert_eq!(
        keys_in("3"),
        (
            vec![
                "shared/a@1.0.0".into(),
                "shared/c@1.0.0".into(),
                "shared/e@1.0.0".into()
            ],
            2.0
        )
    );
    assert_eq!(keys_in("1"), (vec!["shared/c@1.0.0".into()], 4.0));
    assert_eq!(keys_in("0"), (vec![], 5.0));
    assert_eq!(keys_in("100").1, 0.0);
}

fn promtool() -> Option<PathBuf> {
    let found = ["/usr/bin/promtool", "/usr/local/bin/promtool"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have promtool (.ci/run installs the prometheus package)"
        );
        eprintln!("skipped: no promtool");
    }
    found
}

#[test]
fn promtool_accepts_the_metrics_and_the_shipped_rules() {
    let Some(promtool) = promtool() else { return };
    let cli = populated();
    let now = at(T5);
    let file = cli.path().with_file_name("out.prom");
    cli.expect(
        0,
        &with_now(&now, &["metrics", "--output", file.to_str().unwrap()]),
    );
    let check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout) + String::from_utf8_lossy(&check.stderr)
    );

    let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/prometheus");
    for args in [
        ["check", "rules", "recovery-store.rules.yml"],
        ["test", "rules", "recovery-store.rules.test.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(&contrib)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}",
            String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn output_writes_a_readable_file_atomically_and_nothing_else() {
    let cli = populated();
    let now = at(T5);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("recovery-store.prom");
    let stdout = cli.expect(0, &with_now(&now, &["metrics"]));
    cli.expect(
        0,
        &with_now(&now, &["metrics", "--output", file.to_str().unwrap()]),
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), stdout);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert_eq!(names(dir.path()), ["recovery-store.prom"]);
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A directory under a mount made for one test, unmounted on drop.
struct Mounted {
    dir: tempfile::TempDir,
}

impl Mounted {
    fn run(args: &[&str]) -> bool {
        Command::new(args[0])
            .args(&args[1..])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// A tmpfs of `size`, or `None` (failing under CI) without the privilege.
    fn tmpfs(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().to_str().unwrap().to_owned();
        if Self::run(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "tmpfs",
            &target,
        ]) {
            return Some(Self { dir });
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to mount a tmpfs"
        );
        eprintln!("skipped: cannot mount a tmpfs (needs root)");
        None
    }

    fn remount_read_only(&self) {
        let target = self.dir.path().to_str().unwrap();
        assert!(
            Self::run(&["mount", "-o", "remount,ro", target]),
            "remount ro"
        );
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn output_leaves_nothing_behind_on_a_read_only_or_full_file_system() {
    let cli = populated();
    let now = at(T5);
    // Read-only: the old file stays, and no temporary file can have been made.
    let Some(ro) = Mounted::tmpfs("1m") else {
        return;
    };
    let file = ro.path().join("recovery-store.prom");
    std::fs::write(&file, "old\n").unwrap();
    ro.remount_read_only();
    let out = cli.run(&with_now(
        &now,
        &["metrics", "--output", file.to_str().unwrap()],
    ));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "old\n");
    assert_eq!(names(ro.path()), ["recovery-store.prom"]);

    // Full: many backends make the text larger than the disk.
    let Some(full) = Mounted::tmpfs("16k") else {
        return;
    };
    let file = full.path().join("recovery-store.prom");
    std::fs::write(&file, "old\n").unwrap();
    for i in 0..40 {
        cli.expect(
            0,
            &with_now(&now, &["record-crash", &format!("shared/svc{i}@1.0.0")]),
        );
    }
    let out = cli.run(&with_now(
        &now,
        &["metrics", "--output", file.to_str().unwrap()],
    ));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("No space left"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "old\n");
    assert_eq!(names(full.path()), ["recovery-store.prom"]);
}

// A stop (systemctl stop, shutdown, Ctrl-C) or a kill -9 while the textfile is being synced:
// a stop removes the temporary file before the process ends with the signal; a kill leaves it,
// and the next run removes it. The old file is kept either way.
#[test]
fn output_cleans_up_after_signals_and_kills() {
    if !Path::new("/usr/bin/strace").exists() {
        assert!(std::env::var_os("CI").is_none(), "CI needs strace");
        eprintln!("skipped: no strace");
        return;
    }
    let cli = populated();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("recovery-store.prom");
    std::fs::write(&file, "old\n").unwrap();
    for (signal, name) in [
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGKILL, "SIGKILL"),
    ] {
        // The temporary file's fsync stalls for 3 s: the signal lands while it exists.
        let mut strace = crate::util::Reaped::new(
            Command::new("/usr/bin/strace")
                .args([
                    "-f",
                    "-o",
                    "/dev/null",
                    "-e",
                    "inject=fsync:delay_enter=3000000",
                ])
                .arg(crate::util::bin())
                .arg("--db")
                .arg(cli.path())
                .args(["metrics", "--output"])
                .arg(&file)
                .spawn()
                .unwrap(),
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while names(dir.path()).len() < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "no temporary file appeared"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // The temporary file is named for its writer's pid.
        let temp = names(dir.path())
            .into_iter()
            .find(|n| n.starts_with(".recovery-store.prom.tmp."))
            .expect("the temporary file");
        let pid: i32 = temp.rsplit('.').next().unwrap().parse().unwrap();
        // SAFETY: signalling the CLI this test started, by its pid.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "{name} to {pid}");
        // Bounded: a writer that never finishes fails the test instead of hanging it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let status = loop {
            if let Some(status) = strace.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name}: the writer never ended"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "old\n", "{name}");
        if signal == libc::SIGKILL {
            assert_eq!(
                names(dir.path()).len(),
                2,
                "a killed writer cannot clean up"
            );
            // The next run takes the abandoned file's lock and removes it.
            cli.expect(0, &["metrics", "--output", file.to_str().unwrap()]);
            assert_eq!(names(dir.path()), ["recovery-store.prom"]);
            assert_ne!(std::fs::read_to_string(&file).unwrap(), "old\n");
        } else {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(
                status.signal(),
                Some(signal),
                "{name}: ends as the signal would"
            );
            assert_eq!(names(dir.path()), ["recovery-store.prom"], "{name}");
        }
    }
}

// Schema 2 keeps how each crash ended: the last one's exit code or signal is exported, and a
// backend whose last crash has no detail has no sample.
#[test]
fn the_last_exit_code_and_signal_are_exported() {
    let cli = Cli::new();
    let now = at(T5);
    cli.expect(
        0,
        &with_now(
            &now,
            &["record-crash", "shared/code@1.0.0", "--exit-code", "3"],
        ),
    );
    cli.expect(
        0,
        &with_now(&now, &["record-crash", "shared/sig@1.0.0", "--signal", "9"]),
    );
    cli.expect(0, &with_now(&now, &["record-crash", "shared/plain@1.0.0"]));
    let text = cli.expect(0, &with_now(&now, &["metrics"]));
    let v = values(&scrape(&text));
    assert_eq!(
        get(&v, "recovery_store_last_exit_code", "shared/code@1.0.0", ""),
        3.0
    );
    assert_eq!(
        get(
            &v,
            "recovery_store_last_exit_signal",
            "shared/sig@1.0.0",
            ""
        ),
        9.0
    );
    for (metric, key) in [
        ("recovery_store_last_exit_code", "shared/sig@1.0.0"),
        ("recovery_store_last_exit_code", "shared/plain@1.0.0"),
        ("recovery_store_last_exit_signal", "shared/code@1.0.0"),
    ] {
        assert!(
            !v.contains_key(&(metric.to_owned(), key.to_owned(), String::new())),
            "{metric} {key}"
        );
    }
    if let Some(promtool) = promtool() {
        let mut child = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
