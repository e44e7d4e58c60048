//! The printed table, and the machine it was measured on.

use std::path::Path;
use std::time::Duration;

/// Lines of the report, printed at the end so that progress messages do not interleave.
#[derive(Default)]
pub struct Table {
    lines: Vec<String>,
}

impl Table {
    /// Starts a section: a blank line, then `title`.
    pub fn section(&mut self, title: &str) {
        self.lines.push(String::new());
        self.lines.push(title.to_string());
    }

    /// A free-form line, indented.
    pub fn text(&mut self, text: &str) {
        self.lines.push(format!("  {text}"));
    }

    /// A median, optionally with its ratio to `base` and a "<= Nx" target.
    pub fn row(&mut self, name: &str, value: Duration, against: Option<(&str, Duration, &str)>) {
        let mut line = format!("  {name:<46} {:>10}", fmt(value));
        if let Some((what, base, target)) = against {
            let ratio = value.as_secs_f64() / base.as_secs_f64();
            line += &format!("   {ratio:>6.2}x {what}");
            if let Some(limit) = target.strip_prefix("<= ").and_then(|t| t.strip_suffix('x')) {
                let limit: f64 = limit.parse().unwrap_or(f64::INFINITY);
                line += &format!("  (target {target}: {})", verdict(ratio <= limit));
            }
        }
        self.lines.push(line);
    }

    /// The ratio `a / b`, in the ratio column.
    pub fn row_ratio(&mut self, name: &str, a: Duration, b: Duration) {
        let ratio = a.as_secs_f64() / b.as_secs_f64();
        self.lines
            .push(format!("  {name:<46} {:>10}   {ratio:>6.2}x", ""));
    }

    /// Whether a target was met.
    pub fn target(&mut self, name: &str, met: bool) {
        self.lines.push(format!("  {name}: {}", verdict(met)));
    }

    /// Prints every line to stdout.
    pub fn print(&self) {
        for line in &self.lines {
            println!("{line}");
        }
    }
}

/// "met" or "MISSED".
pub fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// A duration with three significant digits, in µs below 10 ms.
pub fn fmt(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 10_000 {
        format!("{:.2} us", ns as f64 / 1e3)
    } else if ns < 10_000_000 {
        format!("{:.1} us", ns as f64 / 1e3)
    } else {
        format!("{:.2} ms", ns as f64 / 1e6)
    }
}

/// The CPU model from /proc/cpuinfo.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The file system type of the mount holding `dir`, from /proc/self/mountinfo.
pub fn fs_type(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut best: Option<(usize, String)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(mount), Some(sep)) = (fields.get(4), fields.iter().position(|f| *f == "-"))
        else {
            continue;
        };
        let fstype = fields.get(sep + 1).copied().unwrap_or("?");
        let device = fields.get(sep + 2).copied().unwrap_or("?");
        if dir.starts_with(mount) && best.as_ref().is_none_or(|(len, _)| mount.len() >= *len) {
            best = Some((
                mount.len(),
                format!("{fstype} on {device}, mounted at {mount}"),
            ));
        }
    }
    best.map_or_else(|| "unknown file system".into(), |(_, s)| s)
}
