//! What the renderers show: an entry judged at one moment, and time formatting that never
//! panics, whatever the stored timestamps hold.

use std::time::Duration;

use recovery_store::{
    BackendStatus, BrokerInstanceKey, CrashRecord, RecoveryEntry, RecoveryPolicy, Timestamp,
    status_under,
};

/// The three states the CLI reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Healthy,
    Recovering,
    Refused,
}

impl State {
    pub fn of(status: &BackendStatus) -> Self {
        match status {
            BackendStatus::Healthy => Self::Healthy,
            BackendStatus::Recovering { .. } => Self::Recovering,
            BackendStatus::Refused { .. } => Self::Refused,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Recovering => "recovering",
            Self::Refused => "refused",
        }
    }

    pub fn may_start(self) -> bool {
        self != Self::Refused
    }

    /// How bad the state is: refused > recovering > healthy.
    pub fn severity(self) -> u8 {
        match self {
            Self::Healthy => 0,
            Self::Recovering => 1,
            Self::Refused => 2,
        }
    }
}

/// One entry as it stands at `now`.
#[derive(Clone, Debug)]
pub struct EntryView {
    pub entry: RecoveryEntry,
    pub state: State,
    /// Time left in the window (zero once it has ended).
    pub remaining: Duration,
    /// When the window ends (or ended).
    pub window_ends: Timestamp,
    /// The newest crash of its history, when the view was read with it (`list`).
    pub last: Option<CrashRecord>,
}

impl EntryView {
    /// `entry` at `now`, judged by `policy`.
    pub fn under(entry: RecoveryEntry, now: Timestamp, policy: &RecoveryPolicy) -> Self {
        let status = status_under(&entry, now, policy);
        // The library judges the window (clock steps included); an entry is healthy only once
        // its window has ended.
        let remaining = match status {
            BackendStatus::Healthy => Duration::ZERO,
            BackendStatus::Recovering {
                window_remaining, ..
            } => window_remaining,
            BackendStatus::Refused { retry_after, .. } => retry_after,
        };
        let window_ends = if remaining.is_zero() {
            entry.window_started_at + policy.recovery.budget_window
        } else {
            now + remaining
        };
        Self {
            entry,
            state: State::of(&status),
            remaining,
            window_ends,
            last: None,
        }
    }

    /// How long until a start may be tried again, when refused.
    pub fn retry_after(&self) -> Option<Duration> {
        (self.state == State::Refused).then_some(self.remaining)
    }

    /// Crashes in the live window: the ended-window rule, decided here once for every command.
    /// Once the window has ended (the state is healthy), no crash is in a window, so this is 0;
    /// `total_crashes` keeps the count until the state is cleared or pruned.
    pub fn crashes_in_window(&self) -> u32 {
        if self.state == State::Healthy {
            0
        } else {
            self.entry.crashes_in_window
        }
    }

    /// Orders views worst first: by state, then by the longer wait.
    pub fn worse_than(&self, other: &EntryView) -> bool {
        (self.state.severity(), self.remaining) > (other.state.severity(), other.remaining)
    }
}

/// The key-text prefix of one broker instance's entries (`""` for every instance).
pub fn instance_prefix(instance: Option<&BrokerInstanceKey>) -> String {
    instance.map(|i| format!("{i}/")).unwrap_or_default()
}

/// Whole milliseconds, rounded up so that a wait is never understated.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// A short span such as `250ms`, `12s`, `3m05s`, `2h10m` or `4d03h`.
pub fn span(d: Duration, round_up: bool) -> String {
    let round = |unit: u128| {
        let n = d.as_nanos();
        if round_up { n.div_ceil(unit) } else { n / unit }
    };
    let ms = round(1_000_000);
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = round(1_000_000_000);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// `then` relative to `now`: `12s ago`, `in 3m05s` or `now`.
pub fn relative(then: &Timestamp, now: &Timestamp) -> String {
    if let Some(ago) = now.duration_since(then) {
        if ago.is_zero() {
            "now".into()
        } else {
            format!("{} ago", span(ago, false))
        }
    } else {
        let ahead = then.duration_since(now).unwrap_or_default();
        format!("in {}", span(ahead, true))
    }
}

/// RFC 3339 in UTC, with milliseconds when `with_millis`. Covers every `i64` of nanoseconds.
pub fn rfc3339(ts: &Timestamp, with_millis: bool) -> String {
    let nanos = ts.unix_nanos();
    let secs = nanos.div_euclid(1_000_000_000);
    let ms = nanos.rem_euclid(1_000_000_000) / 1_000_000;
    let (days, tod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (tod / 3600, tod % 3600 / 60, tod % 60);
    if with_millis {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ms:03}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    }
}

// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(nanos: i64) -> Timestamp {
        Timestamp::from_parts(nanos, None)
    }

    #[test]
    fn rfc3339_matches_known_dates_and_never_panics() {
        assert_eq!(rfc3339(&at(0), false), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(&at(1_767_225_600_123_456_789), true),
            "2026-01-01T00:00:00.123Z"
        );
        assert_eq!(
            rfc3339(&at(951_782_400_000_000_000), false),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            rfc3339(&at(-1_500_000_000), true),
            "1969-12-31T23:59:58.500Z"
        );
        assert_eq!(rfc3339(&at(i64::MIN), false), "1677-09-21T00:12:43Z");
        assert_eq!(rfc3339(&at(i64::MAX), false), "2262-04-11T23:47:16Z");
    }

    #[test]
    fn spans_are_short_and_round_as_asked() {
        assert_eq!(span(Duration::from_millis(250), false), "250ms");
        assert_eq!(span(Duration::from_micros(1500), true), "2ms");
        assert_eq!(span(Duration::from_millis(29_001), true), "30s");
        assert_eq!(span(Duration::from_millis(29_999), false), "29s");
        assert_eq!(span(Duration::from_secs(185), false), "3m05s");
        assert_eq!(span(Duration::from_secs(7800), false), "2h10m");
        assert_eq!(span(Duration::from_secs(3 * 86_400 + 3600), false), "3d01h");
        assert!(span(Duration::MAX, true).ends_with('h'));
    }

    #[test]
    fn relative_times_read_naturally() {
        let now = at(100_000_000_000);
        assert_eq!(relative(&at(88_000_000_000), &now), "12s ago");
        assert_eq!(relative(&at(127_000_000_000), &now), "in 27s");
        assert_eq!(relative(&now, &now), "now");
    }

    #[test]
    fn millis_round_up() {
        assert_eq!(millis(Duration::from_nanos(1)), 1);
        assert_eq!(millis(Duration::from_millis(250)), 250);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }
}
