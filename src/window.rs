//! One backend's window over stored time: the pure policy applied to a [`RecoveryEntry`].
//!
//! Shared by the durable store and by the in-memory fallback of
//! [`DurableRecoveryState`](crate::DurableRecoveryState); nothing here touches a file or a clock.

use std::time::Duration;

use crate::key::BackendKey;
use crate::policy::{
    self, BackendRecoveryDecision, BackendRecoveryPolicy, BackendStatus, RecoveryPolicy,
};
use crate::record::RecoveryEntry;
use crate::time::Timestamp;

/// Where an entry stands at `now` under `policy`.
///
/// A window whose start cannot be placed before `now` (the wall clock was stepped back since
/// it began, in another boot or clock view, or without a boot-clock reading) is reported as
/// healthy: nothing says how much of it is left, and holding the backend until the wall clock
/// catches up could trap it for as long as the step. Its crash count is kept, so the next crash re-anchors the
/// window at that moment and refuses for one window.
///
/// This is the reference's one retry per window; [`status_under`] takes a stored
/// [`RecoveryPolicy`] with its retries per window.
pub fn status_of(
    entry: &RecoveryEntry,
    now: Timestamp,
    policy: &BackendRecoveryPolicy,
) -> BackendStatus {
    status_under(entry, now, &RecoveryPolicy::from(*policy))
}

/// Where an entry stands at `now` under a stored policy with its retries per window: as
/// [`status_of`], with crashes 1..=`retries_per_window` reported as recovering.
pub fn status_under(
    entry: &RecoveryEntry,
    now: Timestamp,
    policy: &RecoveryPolicy,
) -> BackendStatus {
    match window_elapsed(&entry.window_started_at, now, &policy.recovery) {
        Some(elapsed) => policy::status(
            entry.crashes_in_window,
            elapsed,
            &policy.recovery,
            policy.retries_per_window,
        ),
        None => BackendStatus::Healthy,
    }
}

/// Applies one crash of `key` at `now` to its previous state, returning the new state and the
/// decision.
///
/// A window that cannot be placed before `now` is re-anchored at `now`, keeping its count, so a
/// refusal never outlasts one window from the moment it is observed.
pub(crate) fn crash(
    previous: Option<&RecoveryEntry>,
    key: &BackendKey,
    now: Timestamp,
    policy: &RecoveryPolicy,
) -> (RecoveryEntry, BackendRecoveryDecision) {
    let retries = policy.retries_per_window;
    let policy = &policy.recovery;
    let (crashes, total) = previous.map_or((0, 0), |e| (e.crashes_in_window, e.total_crashes));
    let (started, elapsed) = previous
        .and_then(|e| {
            Some((
                e.window_started_at,
                window_elapsed(&e.window_started_at, now, policy)?,
            ))
        })
        .unwrap_or((now, Duration::ZERO));
    let outcome = policy::on_crash(crashes, elapsed, policy, retries);
    let entry = RecoveryEntry {
        key: key.clone(),
        window_started_at: if outcome.restart_window { now } else { started },
        crashes_in_window: outcome.crashes_in_window,
        last_crash: now,
        total_crashes: total.saturating_add(1),
    };
    (entry, outcome.decision)
}

/// True when the window of `entry` has ended at `now`, so its state can be dropped.
pub(crate) fn ended(entry: &RecoveryEntry, now: Timestamp, policy: &BackendRecoveryPolicy) -> bool {
    window_elapsed(&entry.window_started_at, now, policy)
        .is_some_and(|e| policy::window_ended(e, policy))
}

/// How long a window that began at `start` has run at `now`.
///
/// In one clock view (one boot, one time namespace) the boot clock never steps, so a `now`
/// before `start` is a caller that reached the store late, by however much: as in the
/// reference, that counts as no time at all. Across views the comparison is on the wall clock,
/// where a `start` after `now` means the clock went back, and the answer is `None`: the window
/// cannot be placed.
pub(crate) fn window_elapsed(
    start: &Timestamp,
    now: Timestamp,
    _policy: &BackendRecoveryPolicy,
) -> Option<Duration> {
    if let Some(elapsed) = now.duration_since(start) {
        return Some(elapsed);
    }
    let same_view =
        matches!((start.boot(), now.boot()), (Some(a), Some(b)) if a.boot_id == b.boot_id);
    same_view.then_some(Duration::ZERO)
}
