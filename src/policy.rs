//! The recovery policy as a pure state machine.
//!
//! Nothing here touches a clock, a file or a database: callers measure how long the current
//! window has run and hand that in, so the same transition serves the in-memory
//! [`BackendRecoveryState`](crate::BackendRecoveryState) and the durable
//! [`RecoveryStore`](crate::RecoveryStore).

use std::time::Duration;

use crate::error::StoreError;

/// Default window bounding spawn retries in the broker.
pub const DEFAULT_SPAWN_BUDGET_WINDOW: Duration = Duration::from_secs(30);

/// Default delay before the broker retries a crashed backend once.
pub const DEFAULT_RECOVERY_RETRY_BACKOFF: Duration = Duration::from_millis(250);

/// Default window before a backend-unavailable refusal can retry recovery.
pub const DEFAULT_RECOVERY_BUDGET_WINDOW: Duration = DEFAULT_SPAWN_BUDGET_WINDOW;

/// Retries a stored policy allows in one budget window unless told otherwise: one, as in the
/// reference policy.
pub const DEFAULT_RETRIES_PER_WINDOW: u32 = 1;

/// The most retries per window a stored policy may allow: more would let a crash loop run
/// unrefused for most of any sensible window.
pub const MAX_RETRIES_PER_WINDOW: u32 = 100;

/// The floor that zero durations are clamped to.
const MIN_DURATION: Duration = Duration::from_millis(1);

/// Recovery tuning for one backend key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BackendRecoveryPolicy {
    /// Delay reported before the one allowed retry should begin.
    pub retry_backoff: Duration,
    /// Window bounding crash retries and backend-unavailable retry-after hints.
    pub budget_window: Duration,
}

impl BackendRecoveryPolicy {
    /// Build a policy, clamping zero durations to a non-zero floor.
    pub fn new(retry_backoff: Duration, budget_window: Duration) -> Self {
        Self {
            retry_backoff: non_zero(retry_backoff),
            budget_window: non_zero(budget_window),
        }
    }
}

impl BackendRecoveryPolicy {
    /// Checks that the policy can refuse a backend: the retry backoff must be shorter than the
    /// budget window, or the retry would always start after the window has ended and a
    /// crash loop would never be refused.
    ///
    /// The in-memory [`BackendRecoveryState`](crate::BackendRecoveryState) takes any policy, as
    /// the broker does; every path that stores a policy checks it.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidPolicy`] naming both durations, or the one longer than
    /// [`MAX_POLICY_DURATION`](crate::MAX_POLICY_DURATION).
    pub fn validate(&self) -> Result<(), StoreError> {
        let longest = crate::record::MAX_POLICY_DURATION;
        for (what, d) in [
            ("retry backoff", self.retry_backoff),
            ("budget window", self.budget_window),
        ] {
            if d > longest {
                return Err(StoreError::InvalidPolicy {
                    detail: format!(
                        "the {what} ({}) is longer than the {} a store can hold: choose a \
                         shorter one",
                        humantime::format_duration(d),
                        humantime::format_duration(Duration::from_secs(longest.as_secs()))
                    ),
                });
            }
        }
        if self.retry_backoff >= self.budget_window {
            return Err(StoreError::InvalidPolicy {
                detail: format!(
                    "the retry backoff ({:?}) is not shorter than the budget window ({:?}), so \
                     a crash loop could never be refused: choose a backoff shorter than the window",
                    self.retry_backoff, self.budget_window
                ),
            });
        }
        Ok(())
    }
}

impl Default for BackendRecoveryPolicy {
    fn default() -> Self {
        Self {
            retry_backoff: DEFAULT_RECOVERY_RETRY_BACKOFF,
            budget_window: DEFAULT_RECOVERY_BUDGET_WINDOW,
        }
    }
}

/// A stored recovery policy: the timing of [`BackendRecoveryPolicy`] and how many retries one
/// budget window allows before the next crash is refused (systemd's `StartLimitBurst`).
///
/// With `retries_per_window` 1 (the default) every decision is the reference policy's. Crashes
/// 1..=N in a window get `Retry { attempt: k }`; crash N+1 is refused for the rest of the
/// window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecoveryPolicy {
    /// Retry backoff and budget window.
    pub recovery: BackendRecoveryPolicy,
    /// Retries allowed in one budget window, 1..=[`MAX_RETRIES_PER_WINDOW`].
    pub retries_per_window: u32,
}

impl RecoveryPolicy {
    /// A policy allowing `retries_per_window` retries (0 is taken as 1) under `recovery`.
    pub fn new(recovery: BackendRecoveryPolicy, retries_per_window: u32) -> Self {
        Self {
            recovery,
            retries_per_window: retries_per_window.max(1),
        }
    }

    /// Checks the timing ([`BackendRecoveryPolicy::validate`]) and that `retries_per_window` is
    /// within 1..=[`MAX_RETRIES_PER_WINDOW`].
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidPolicy`] naming what is wrong and the allowed range.
    pub fn validate(&self) -> Result<(), StoreError> {
        self.recovery.validate()?;
        validate_retries(self.retries_per_window)
    }
}

impl Default for RecoveryPolicy {
    fn default() -> Self {
        Self::new(BackendRecoveryPolicy::default(), DEFAULT_RETRIES_PER_WINDOW)
    }
}

impl From<BackendRecoveryPolicy> for RecoveryPolicy {
    fn from(recovery: BackendRecoveryPolicy) -> Self {
        Self::new(recovery, DEFAULT_RETRIES_PER_WINDOW)
    }
}

/// Checks a retries-per-window count: 1..=[`MAX_RETRIES_PER_WINDOW`].
///
/// # Errors
///
/// [`StoreError::InvalidPolicy`] naming the count and the allowed range.
pub fn validate_retries(retries_per_window: u32) -> Result<(), StoreError> {
    if (1..=MAX_RETRIES_PER_WINDOW).contains(&retries_per_window) {
        Ok(())
    } else {
        Err(StoreError::InvalidPolicy {
            detail: format!(
                "{retries_per_window} retries per window is outside 1..={MAX_RETRIES_PER_WINDOW}: \
                 choose at least 1 (the reference policy) and at most {MAX_RETRIES_PER_WINDOW}"
            ),
        })
    }
}

/// Decision returned after an observed backend crash.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BackendRecoveryDecision {
    /// The broker may retry this backend once after `retry_after`.
    Retry {
        /// Delay before the retry should begin.
        retry_after: Duration,
        /// 1-based recovery attempt number.
        attempt: u32,
    },
    /// The backend should be refused as unavailable.
    Refuse {
        /// Refusal reason suitable for mapping to a Hello `Refused` reason.
        reason: BackendRecoveryRefusalReason,
        /// Retry-after hint for clients.
        retry_after: Duration,
    },
}

/// Refusal reason emitted by backend recovery state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendRecoveryRefusalReason {
    /// The backend crashed again after its one retry.
    BackendUnavailable,
}

/// Where a backend stands at one moment, as seen by [`status`](crate::RecoveryStore::status).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BackendStatus {
    /// No crash in a live window: the backend may be started.
    Healthy,
    /// Crashes in the current window that each got a retry; the next crash beyond the policy's
    /// retries per window (one in the reference) refuses.
    Recovering {
        /// Crashes recorded in the current window.
        crashes_in_window: u32,
        /// Time until the window ends and the backend is healthy again.
        window_remaining: Duration,
    },
    /// Crashed more often than the policy's retries per window allow: refused until the window
    /// ends.
    Refused {
        /// Why the backend is refused.
        reason: BackendRecoveryRefusalReason,
        /// Time until the window ends and a start may be tried again.
        retry_after: Duration,
    },
}

/// The outcome of one crash applied to a window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CrashOutcome {
    /// True when the crash opened a new window, starting at the crash's time.
    pub restart_window: bool,
    /// Crashes counted in the window after this one.
    pub crashes_in_window: u32,
    /// What the broker should do.
    pub decision: BackendRecoveryDecision,
}

/// Applies one crash to a window that has run for `elapsed` and holds `crashes_in_window`
/// earlier crashes (0 for a backend with no state, whose window opens now); crashes
/// 1..=`retries` in a window retry (0 is taken as 1, the reference).
pub(crate) fn on_crash(
    crashes_in_window: u32,
    elapsed: Duration,
    policy: &BackendRecoveryPolicy,
    retries: u32,
) -> CrashOutcome {
    let restart_window = crashes_in_window == 0 || window_ended(elapsed, policy);
    let (before, elapsed) = if restart_window {
        (0, Duration::ZERO)
    } else {
        (crashes_in_window, elapsed)
    };
    let crashes_in_window = before.saturating_add(1);
    let decision = if crashes_in_window <= retries.max(1) {
        BackendRecoveryDecision::Retry {
            retry_after: policy.retry_backoff,
            attempt: crashes_in_window,
        }
    } else {
        BackendRecoveryDecision::Refuse {
            reason: BackendRecoveryRefusalReason::BackendUnavailable,
            retry_after: policy.budget_window.saturating_sub(elapsed),
        }
    };
    CrashOutcome {
        restart_window,
        crashes_in_window,
        decision,
    }
}

/// The status of a window that has run for `elapsed` and holds `crashes_in_window` crashes,
/// under a policy allowing `retries` retries per window (0 is taken as 1).
pub(crate) fn status(
    crashes_in_window: u32,
    elapsed: Duration,
    policy: &BackendRecoveryPolicy,
    retries: u32,
) -> BackendStatus {
    let remaining = policy.budget_window.saturating_sub(elapsed);
    if crashes_in_window == 0 || remaining.is_zero() {
        BackendStatus::Healthy
    } else if crashes_in_window <= retries.max(1) {
        BackendStatus::Recovering {
            crashes_in_window,
            window_remaining: remaining,
        }
    } else {
        BackendStatus::Refused {
            reason: BackendRecoveryRefusalReason::BackendUnavailable,
            retry_after: remaining,
        }
    }
}

/// True when a window that has run for `elapsed` is over, so its state can be dropped.
pub(crate) fn window_ended(elapsed: Duration, policy: &BackendRecoveryPolicy) -> bool {
    elapsed >= policy.budget_window
}

fn non_zero(duration: Duration) -> Duration {
    if duration.is_zero() {
        MIN_DURATION
    } else {
        duration
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn policy() -> BackendRecoveryPolicy {
        BackendRecoveryPolicy::default()
    }

    #[test]
    fn zero_durations_clamp_to_one_millisecond() {
        let p = BackendRecoveryPolicy::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(p.retry_backoff, MS);
        assert_eq!(p.budget_window, MS);
        let p = BackendRecoveryPolicy::new(2 * MS, 3 * MS);
        assert_eq!((p.retry_backoff, p.budget_window), (2 * MS, 3 * MS));
    }

    #[test]
    fn validation_refuses_a_backoff_not_shorter_than_the_window() {
        assert!(policy().validate().is_ok());
        let p = BackendRecoveryPolicy::new(Duration::from_secs(29), Duration::from_secs(30));
        assert!(p.validate().is_ok());
        for backoff in [30, 31, 3600] {
            let p =
                BackendRecoveryPolicy::new(Duration::from_secs(backoff), Duration::from_secs(30));
            assert!(matches!(
                p.validate(),
                Err(StoreError::InvalidPolicy { detail }) if detail.contains("not shorter")
            ));
        }
    }

    #[test]
    fn defaults_match_the_broker() {
        assert_eq!(policy().retry_backoff, Duration::from_millis(250));
        assert_eq!(policy().budget_window, Duration::from_secs(30));
    }

    #[test]
    fn first_crash_retries_after_backoff() {
        let out = on_crash(0, Duration::from_secs(999), &policy(), 1);
        assert!(out.restart_window);
        assert_eq!(out.crashes_in_window, 1);
        assert_eq!(
            out.decision,
            BackendRecoveryDecision::Retry {
                retry_after: DEFAULT_RECOVERY_RETRY_BACKOFF,
                attempt: 1
            }
        );
    }

    #[test]
    fn second_crash_in_window_refuses_for_the_rest_of_it() {
        let out = on_crash(1, Duration::from_secs(10), &policy(), 1);
        assert!(!out.restart_window);
        assert_eq!(out.crashes_in_window, 2);
        assert_eq!(
            out.decision,
            BackendRecoveryDecision::Refuse {
                reason: BackendRecoveryRefusalReason::BackendUnavailable,
                retry_after: Duration::from_secs(20)
            }
        );
    }

    #[test]
    fn window_boundary_is_exclusive() {
        let just_inside = on_crash(1, Duration::from_secs(30) - MS, &policy(), 1);
        assert_eq!(just_inside.crashes_in_window, 2);
        assert!(matches!(
            just_inside.decision,
            BackendRecoveryDecision::Refuse { retry_after, .. } if retry_after == MS
        ));
        let at_end = on_crash(5, Duration::from_secs(30), &policy(), 1);
        assert!(at_end.restart_window);
        assert_eq!(at_end.crashes_in_window, 1);
    }

    #[test]
    fn crash_count_saturates() {
        let out = on_crash(u32::MAX, Duration::ZERO, &policy(), 1);
        assert_eq!(out.crashes_in_window, u32::MAX);
        assert!(matches!(
            out.decision,
            BackendRecoveryDecision::Refuse { .. }
        ));
    }

    #[test]
    fn n_retries_per_window_retry_crashes_one_to_n_and_refuse_the_next() {
        let p = policy();
        for n in [1, 2, 5] {
            for k in 1..=n {
                let out = on_crash(k - 1, Duration::from_secs(1), &p, n);
                assert_eq!(
                    out.decision,
                    BackendRecoveryDecision::Retry {
                        retry_after: p.retry_backoff,
                        attempt: k
                    }
                );
                assert!(matches!(
                    status(k, Duration::from_secs(1), &p, n),
                    BackendStatus::Recovering { crashes_in_window, .. } if crashes_in_window == k
                ));
            }
            let out = on_crash(n, Duration::from_secs(1), &p, n);
            assert!(matches!(
                out.decision,
                BackendRecoveryDecision::Refuse { retry_after, .. } if retry_after == Duration::from_secs(29)
            ));
            assert!(matches!(
                status(n + 1, Duration::from_secs(1), &p, n),
                BackendStatus::Refused { .. }
            ));
        }
        // Zero is the reference's one.
        assert_eq!(
            on_crash(1, Duration::ZERO, &p, 0),
            on_crash(1, Duration::ZERO, &p, 1)
        );
    }

    #[test]
    fn retries_are_validated() {
        assert!(RecoveryPolicy::default().validate().is_ok());
        assert_eq!(RecoveryPolicy::default().retries_per_window, 1);
        for bad in [0, MAX_RETRIES_PER_WINDOW + 1] {
            assert!(matches!(
                validate_retries(bad),
                Err(StoreError::InvalidPolicy { detail }) if detail.contains("retries per window")
            ));
        }
        assert!(validate_retries(MAX_RETRIES_PER_WINDOW).is_ok());
    }

    #[test]
    fn status_follows_the_window() {
        let p = policy();
        assert_eq!(status(0, Duration::ZERO, &p, 1), BackendStatus::Healthy);
        assert_eq!(
            status(1, Duration::from_secs(5), &p, 1),
            BackendStatus::Recovering {
                crashes_in_window: 1,
                window_remaining: Duration::from_secs(25)
            }
        );
        assert_eq!(
            status(2, Duration::from_secs(5), &p, 1),
            BackendStatus::Refused {
                reason: BackendRecoveryRefusalReason::BackendUnavailable,
                retry_after: Duration::from_secs(25)
            }
        );
        assert_eq!(
            status(2, Duration::from_secs(30), &p, 1),
            BackendStatus::Healthy
        );
        assert!(window_ended(Duration::from_secs(30), &p));
        assert!(!window_ended(Duration::from_secs(30) - MS, &p));
    }
}
