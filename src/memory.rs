//! In-memory recovery state keyed by [`Instant`]: a drop-in for the broker's own module.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::key::BackendKey;
use crate::policy::{self, BackendRecoveryDecision, BackendRecoveryPolicy};

/// Per-backend recovery state keyed by broker instance, service, and version.
///
/// It forgets everything when dropped; use [`RecoveryStore`](crate::RecoveryStore) for state
/// that must outlive the process.
///
/// ```
/// use std::time::{Duration, Instant};
/// use recovery_store::{BackendKey, BackendRecoveryDecision, BackendRecoveryState};
///
/// let key: BackendKey = "shared/zccache@1.11.20".parse()?;
/// let mut state = BackendRecoveryState::new();
/// let now = Instant::now();
/// assert!(matches!(state.record_crash(key.clone(), now), BackendRecoveryDecision::Retry { .. }));
/// assert!(matches!(
///     state.record_crash(key.clone(), now + Duration::from_secs(1)),
///     BackendRecoveryDecision::Refuse { .. }
/// ));
/// # Ok::<(), recovery_store::KeyError>(())
/// ```
#[derive(Debug)]
pub struct BackendRecoveryState {
    policy: BackendRecoveryPolicy,
    entries: HashMap<BackendKey, Window>,
}

#[derive(Clone, Debug)]
struct Window {
    started_at: Instant,
    crashes_in_window: u32,
}

impl BackendRecoveryState {
    /// Create empty recovery state with the default policy.
    pub fn new() -> Self {
        Self::with_policy(BackendRecoveryPolicy::default())
    }

    /// Create empty recovery state with explicit policy settings.
    pub fn with_policy(policy: BackendRecoveryPolicy) -> Self {
        Self {
            policy,
            entries: HashMap::new(),
        }
    }

    /// Record one observed backend crash and return the recovery decision.
    ///
    /// The first crash in a budget window permits one retry after the configured
    /// backoff. A second crash in the same window is treated as backend
    /// unavailable and returns a retry-after hint for the rest of the window.
    pub fn record_crash(&mut self, key: BackendKey, now: Instant) -> BackendRecoveryDecision {
        let window = self.entries.entry(key).or_insert(Window {
            started_at: now,
            crashes_in_window: 0,
        });
        let outcome = policy::on_crash(
            window.crashes_in_window,
            elapsed_since(window.started_at, now),
            &self.policy,
            1,
        );
        if outcome.restart_window {
            window.started_at = now;
        }
        window.crashes_in_window = outcome.crashes_in_window;
        outcome.decision
    }

    /// Reset crash recovery state after the backend is verified healthy again.
    pub fn record_success(&mut self, key: &BackendKey) {
        self.entries.remove(key);
    }
}

impl Default for BackendRecoveryState {
    fn default() -> Self {
        Self::new()
    }
}

// A `now` earlier than the window start counts as no time at all, as in the broker.
fn elapsed_since(started_at: Instant, now: Instant) -> Duration {
    now.checked_duration_since(started_at)
        .unwrap_or(Duration::ZERO)
}
