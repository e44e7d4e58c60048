//! `recovery-store metrics`: the store in the Prometheus text exposition format (version
//! 0.0.4), for node_exporter's textfile collector, built with `prometheus-client`.
//!
//! The whole report comes from one snapshot of the store, walked once per metric family, so
//! memory stays flat however many backends there are and every family agrees with the others.
//!
//! A backend whose policy override cannot be decoded (its key's, or its service's when the key
//! has none) has no per-backend series and counts in `recovery_store_damaged_entries`, as a
//! damaged entry does: its state depends on that policy, so it is never reported as judged by
//! another one. `recovery_store_damaged_policy_overrides` counts the damaged rows.

use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use super::exposition::{Escaped, PrometheusText};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use recovery_store::{
    BackendStatus, CrashRecord, RecoveryEntry, RecoveryStore, SCHEMA_VERSION, Snapshot, StoreError,
    StoredPolicies, Timestamp, status_under,
};

/// The three states a backend can be in, as the `state` label spells them.
const STATES: [&str; 3] = ["healthy", "recovering", "refused"];

/// What a `metrics` run reports besides the store itself.
pub struct Report {
    /// The time the states are judged at.
    pub now: Timestamp,
    /// Most backends given per-backend series; refused backends are kept first.
    pub max_series: u64,
    /// The store file's size in bytes.
    pub file_size: u64,
}

/// Writes the report for `store` to `out` in the Prometheus text format.
pub fn write(
    store: Arc<RecoveryStore>,
    report: Report,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let failure = Arc::new(Mutex::new(None));
    let mut registry = Registry::default();
    registry.register_collector(Box::new(StoreCollector {
        store,
        report,
        failure: Arc::clone(&failure),
    }));
    let mut text = PrometheusText::new(out);
    let encoded = prometheus_client::encoding::text::encode_registry(&mut text, &registry);
    if let Some(err) = failure
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
    {
        return Err(err.into());
    }
    if let Some(err) = text.error.take() {
        return Err(err.into());
    }
    encoded.map_err(|_| anyhow::anyhow!("cannot encode the metrics"))?;
    text.finish()?;
    Ok(())
}

#[derive(Debug)]
struct StoreCollector {
    store: Arc<RecoveryStore>,
    report: Report,
    /// The store error that stopped the encoding, which `fmt::Error` cannot carry.
    failure: Arc<Mutex<Option<StoreError>>>,
}

impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Report")
            .field("max_series", &self.max_series)
            .finish_non_exhaustive()
    }
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let result = self.store.snapshot(|snap| {
            let mut fmt_failed = false;
            let outcome = encode_snapshot(snap, &self.report, &mut encoder, &mut fmt_failed);
            if fmt_failed {
                return Ok(Err(fmt::Error));
            }
            outcome.map(Ok)
        });
        match result {
            Ok(inner) => inner,
            Err(err) => {
                *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(err);
                Err(fmt::Error)
            }
        }
    }
}

/// One backend as the per-backend series see it.
struct Backend {
    entry: RecoveryEntry,
    state: usize,
    crashes_in_window: u32,
    retry_after: Duration,
}

impl Backend {
    /// `entry` at `now`, judged by the policy that applies to its key; `None` when that
    /// policy is a damaged override.
    fn judged(entry: RecoveryEntry, now: Timestamp, policies: &StoredPolicies) -> Option<Self> {
        let policy = &policies.judge(&entry.key).ok()?.policy;
        // An ended window counts no crashes, as in `status`; the total is kept.
        let (state, crashes_in_window, retry_after) = match status_under(&entry, now, policy) {
            BackendStatus::Healthy => (0, 0, Duration::ZERO),
            BackendStatus::Recovering {
                crashes_in_window, ..
            } => (1, crashes_in_window, Duration::ZERO),
            BackendStatus::Refused { retry_after, .. } => (2, entry.crashes_in_window, retry_after),
        };
        Some(Self {
            entry,
            state,
            crashes_in_window,
            retry_after,
        })
    }

    fn labels(&self) -> [(&'static str, Escaped); 4] {
        let key = &self.entry.key;
        [
            ("key", Escaped(key.to_string())),
            ("instance", Escaped(key.instance.to_string())),
            ("service", Escaped(key.service_name.clone())),
            ("version", Escaped(key.service_version.clone())),
        ]
    }
}

/// Counts per state, and which backends get per-backend series under the cap.
struct Census {
    by_state: [u64; 3],
    damaged: u64,
    /// Non-refused backends that fit under the cap after every refused one.
    other_quota: u64,
    refused_quota: u64,
}

impl Census {
    fn omitted(&self) -> u64 {
        let refused = self.by_state[2];
        let others = self.by_state[0] + self.by_state[1];
        refused.saturating_sub(self.refused_quota) + others.saturating_sub(self.other_quota)
    }
}

fn encode_snapshot(
    snap: &Snapshot<'_, '_>,
    report: &Report,
    encoder: &mut DescriptorEncoder,
    fmt_failed: &mut bool,
) -> Result<(), StoreError> {
    let policy = snap.stored_policies()?;
    let census = census(snap, report, &policy)?;
    // A formatting error is the writer's (stdout closed, disk full): stop walking at once. The
    // walk can only be stopped with a `StoreError`; this one never leaves this module.
    let fmt_err = |fmt_failed: &mut bool| {
        *fmt_failed = true;
        StoreError::InvalidImport {
            detail: "stopped by the writer".into(),
        }
    };
    let families: [(&str, &str, Family); 7] = [
        (
            "recovery_store_backend_state",
            "1 for the backend's current state (healthy, recovering, refused), 0 for the others.",
            Family::State,
        ),
        (
            "recovery_store_crashes",
            "Crashes recorded for the backend since its state was last cleared.",
            Family::Crashes,
        ),
        (
            "recovery_store_crashes_in_window",
            "Crashes in the backend's current budget window (0 once the window has ended).",
            Family::InWindow,
        ),
        (
            "recovery_store_backend_retry_after_seconds",
            "Seconds until a refused backend may be started again; 0 unless refused.",
            Family::RetryAfter,
        ),
        (
            "recovery_store_last_crash_timestamp_seconds",
            "When the backend's last crash was recorded, in Unix seconds.",
            Family::LastCrash,
        ),
        (
            "recovery_store_last_exit_code",
            "The exit code of the backend's last crash, when it exited with one.",
            Family::LastExitCode,
        ),
        (
            "recovery_store_last_exit_signal",
            "The signal that ended the backend's last crash, when one did.",
            Family::LastExitSignal,
        ),
    ];
    for (name, help, family) in families {
        let metric_type = match family {
            Family::Crashes => ConstCounter::new(0u64).metric_type(),
            _ => ConstGauge::new(0i64).metric_type(),
        };
        let mut metric = encoder
            .encode_descriptor(name, help, None, metric_type)
            .map_err(|_| fmt_err(fmt_failed))?;
        let mut seen = [0u64; 2]; // others, refused
        snap.for_each_entry("", |entry| {
            let Some(backend) = entry
                .ok()
                .and_then(|e| Backend::judged(e, report.now, &policy))
            else {
                return Ok(());
            };
            let refused = usize::from(backend.state == 2);
            let quota = [census.other_quota, census.refused_quota][refused];
            if seen[refused] >= quota {
                return Ok(());
            }
            seen[refused] += 1;
            let last = match family {
                Family::LastExitCode | Family::LastExitSignal => {
                    snap.history(&backend.entry.key)?.pop()
                }
                _ => None,
            };
            encode_backend(&mut metric, &backend, family, last.as_ref())
                .map_err(|_| fmt_err(fmt_failed))
        })?;
    }
    encode_store_gauges(encoder, snap, report, &policy, &census).map_err(|_| fmt_err(fmt_failed))
}

#[derive(Clone, Copy)]
enum Family {
    State,
    Crashes,
    InWindow,
    RetryAfter,
    LastCrash,
    LastExitCode,
    LastExitSignal,
}

// `last`: the backend's last crash record, for the exit families (no sample when unknown).
fn encode_backend(
    metric: &mut prometheus_client::encoding::MetricEncoder<'_>,
    backend: &Backend,
    family: Family,
    last: Option<&CrashRecord>,
) -> Result<(), fmt::Error> {
    let labels = backend.labels();
    match family {
        Family::State => {
            for (i, state) in STATES.iter().enumerate() {
                let [a, b, c, d] = labels.clone();
                let with_state = [a, b, c, d, ("state", Escaped((*state).to_owned()))];
                let value = i64::from(i == backend.state);
                ConstGauge::new(value).encode(metric.encode_family(&with_state)?)?;
            }
            Ok(())
        }
        Family::Crashes => {
            ConstCounter::new(backend.entry.total_crashes).encode(metric.encode_family(&labels)?)
        }
        Family::InWindow => ConstGauge::new(i64::from(backend.crashes_in_window))
            .encode(metric.encode_family(&labels)?),
        Family::RetryAfter => ConstGauge::new(backend.retry_after.as_secs_f64())
            .encode(metric.encode_family(&labels)?),
        Family::LastCrash => ConstGauge::new(unix_seconds(&backend.entry.last_crash))
            .encode(metric.encode_family(&labels)?),
        Family::LastExitCode => match last.and_then(|c| c.exit_code) {
            Some(code) => ConstGauge::new(i64::from(code)).encode(metric.encode_family(&labels)?),
            None => Ok(()),
        },
        Family::LastExitSignal => match last.and_then(|c| c.signal) {
            Some(signal) => {
                ConstGauge::new(i64::from(signal)).encode(metric.encode_family(&labels)?)
            }
            None => Ok(()),
        },
    }
}

fn census(
    snap: &Snapshot<'_, '_>,
    report: &Report,
    policy: &StoredPolicies,
) -> Result<Census, StoreError> {
    let mut by_state = [0u64; 3];
    let mut damaged = 0;
    snap.for_each_entry("", |entry| {
        match entry {
            Ok(entry) => match Backend::judged(entry, report.now, policy) {
                Some(backend) => by_state[backend.state] += 1,
                None => damaged += 1,
            },
            Err(_) => damaged += 1,
        }
        Ok(())
    })?;
    let refused_quota = by_state[2].min(report.max_series);
    Ok(Census {
        by_state,
        damaged,
        refused_quota,
        other_quota: report.max_series - refused_quota,
    })
}

fn encode_store_gauges(
    encoder: &mut DescriptorEncoder,
    snap: &Snapshot<'_, '_>,
    report: &Report,
    policy: &StoredPolicies,
    census: &Census,
) -> Result<(), fmt::Error> {
    let gauge = ConstGauge::new(0i64).metric_type();
    let mut backends = encoder.encode_descriptor(
        "recovery_store_backends",
        "Backends with recovery state, by their current state.",
        None,
        gauge,
    )?;
    for (i, state) in STATES.iter().enumerate() {
        let labels = [("state", Escaped((*state).to_owned()))];
        ConstGauge::new(saturating_i64(census.by_state[i]))
            .encode(backends.encode_family(&labels)?)?;
    }
    let schema = snap.schema_version().unwrap_or(SCHEMA_VERSION);
    let plain: [(&str, &str, f64); 8] = [
        (
            "recovery_store_damaged_entries",
            "Entries that cannot be decoded, or whose policy override cannot be; `recovery-store check` names them.",
            census.damaged as f64,
        ),
        (
            "recovery_store_damaged_policy_overrides",
            "Policy override rows that cannot be decoded; `recovery-store check` names them.",
            policy.damaged().len() as f64,
        ),
        (
            "recovery_store_series_omitted_backends",
            "Backends left out of the per-backend series by --max-series.",
            census.omitted() as f64,
        ),
        (
            "recovery_store_schema_version",
            "Schema version of the store file.",
            f64::from(schema),
        ),
        (
            "recovery_store_file_size_bytes",
            "Size of the store file in bytes.",
            report.file_size as f64,
        ),
        (
            "recovery_store_policy_retry_backoff_seconds",
            "The store's default retry backoff, in seconds.",
            policy.default_policy().recovery.retry_backoff.as_secs_f64(),
        ),
        (
            "recovery_store_policy_budget_window_seconds",
            "The store's default budget window, in seconds.",
            policy.default_policy().recovery.budget_window.as_secs_f64(),
        ),
        (
            "recovery_store_report_timestamp_seconds",
            "When this report was generated, in Unix seconds.",
            unix_seconds(&report.now),
        ),
    ];
    for (name, help, value) in plain {
        let gauge = ConstGauge::new(value);
        let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
        gauge.encode(metric)?;
    }
    Ok(())
}

fn unix_seconds(ts: &Timestamp) -> f64 {
    match ts.wall().duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
