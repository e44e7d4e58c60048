//! How long a broker in another process waits for one `record_crash` while a long CLI
//! command runs on the same store.
//!
//! A writer child (`--child writer PATH`) records a crash every 2 ms and reports the longest
//! single call; the parent runs the command in the middle of the writer's life. The same
//! writer with no command running is the control.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use recovery_store::{RecoveryStore, Timestamp};

use crate::Setup;
use crate::common::key;
use crate::measure::measure;
use crate::table::{fmt, verdict};

/// The writer's key: never in the template.
const WRITER_KEY: usize = 99_999_999;

/// One line per command: its own time, and the writer's calls, longest and 99th-percentile
/// wait, and errors.
pub fn run(s: &Setup) -> Vec<String> {
    // `import` replaces the whole state in one transaction: the one long write by design.
    let document = s.dir.join("export.json");
    let exported = s
        .cli(&s.template, &["export"])
        .stdout(std::fs::File::create(&document).expect("export file"))
        .status()
        .expect("export");
    assert!(exported.success(), "export failed");
    let document = document.to_str().expect("utf-8 path").to_owned();
    let import = ["import", "--yes", document.as_str()];
    let commands: [(&str, Option<&[&str]>); 4] = [
        ("no command (control, 1 s)", None),
        ("prune (every window ended)", Some(&["prune"])),
        ("reset --all --yes", Some(&["reset", "--all", "--yes"])),
        ("import --yes (one transaction)", Some(&import)),
    ];
    let mut lines = vec![format!(
        "{:<28} {:>10}   {:>6} {:>10} {:>10} {:>10}  writer errors",
        "while running", "command", "calls", "longest", "p99", "median"
    )];
    let mut control = None;
    for (i, (what, args)) in commands.into_iter().enumerate() {
        let db = s.copy(&format!("stall-{i}.redb"));
        let exe = std::env::current_exe().expect("current exe");
        let mut writer = Command::new(exe)
            .args(["--child", "writer"])
            .arg(&db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn writer");
        let mut out = BufReader::new(writer.stdout.take().expect("stdout"));
        let mut ready = String::new();
        out.read_line(&mut ready).expect("writer ready");
        assert_eq!(ready.trim(), "ready", "writer failed to start");
        std::thread::sleep(Duration::from_millis(300));
        let command = match args {
            None => {
                std::thread::sleep(Duration::from_secs(1));
                None
            }
            Some(args) => Some(measure(s.cli(&db, args))),
        };
        std::thread::sleep(Duration::from_millis(300));
        drop(writer.stdin.take()); // EOF: the writer stops and reports
        let mut report = String::new();
        out.read_to_string(&mut report).expect("writer report");
        let status = writer.wait().expect("wait writer");
        assert!(status.success(), "writer failed: {status}");
        let field = |name: &str| -> u64 {
            report
                .split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.parse().ok())
                .unwrap_or(0)
        };
        let longest = Duration::from_nanos(field("max_ns="));
        let command_text = match &command {
            None => "-".to_string(),
            Some(m) if m.ok() => fmt(m.elapsed),
            Some(m) => format!("FAILED ({}): {}", m.status, m.stderr_line()),
        };
        let mut line = format!(
            "{what:<28} {command_text:>10}   {:>6} {:>10} {:>10} {:>10}  {}",
            field("calls="),
            fmt(longest),
            fmt(Duration::from_nanos(field("p99_ns="))),
            fmt(Duration::from_nanos(field("p50_ns="))),
            field("errors="),
        );
        if let Some(error) = report.split_once("error=").map(|(_, e)| e.trim()) {
            line += &format!(" (first: {error})");
        }
        match control {
            None => control = Some(longest),
            Some(base) if what.starts_with("import") => {
                line += &format!(
                    "   longest {:.1}x the control's; all-or-nothing by design: no target",
                    ratio(longest, base)
                )
            }
            Some(base) => {
                line += &format!(
                    "   longest {:.1}x the control's; target <= 100 ms: {}",
                    ratio(longest, base),
                    verdict(longest <= Duration::from_millis(100))
                )
            }
        }
        lines.push(line);
    }
    lines
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// The writer child: records a crash of its own key every 2 ms until stdin closes, then prints
/// `calls= max_ns= p99_ns= p50_ns= errors=` and, after a failure, `error=` and the first one.
pub fn writer(path: &Path) {
    let store = RecoveryStore::open(path).expect("open store");
    let key = key(WRITER_KEY);
    store
        .record_crash(&key, Timestamp::now())
        .expect("first record_crash");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        flag.store(true, Ordering::SeqCst);
    });
    println!("ready");
    std::io::stdout().flush().expect("flush");
    let (mut waits, mut errors, mut first_error) = (Vec::new(), 0u64, None);
    while !stop.load(Ordering::SeqCst) {
        let start = Instant::now();
        if let Err(e) = store.record_crash(&key, Timestamp::now()) {
            errors += 1;
            first_error.get_or_insert(e.to_string());
        }
        waits.push(start.elapsed());
        std::thread::sleep(Duration::from_millis(2));
    }
    waits.sort_unstable();
    let at = |q: f64| waits[((waits.len() - 1) as f64 * q) as usize].as_nanos();
    print!(
        "calls={} max_ns={} p99_ns={} p50_ns={} errors={errors}",
        waits.len(),
        at(1.0),
        at(0.99),
        at(0.5)
    );
    if let Some(e) = first_error {
        print!(" error={}", e.replace('\n', " "));
    }
    println!();
}
