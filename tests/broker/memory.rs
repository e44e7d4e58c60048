// The broker's recovery tests, written the way the broker writes them: keys from
// `BackendKey::new`, `Instant` arithmetic, `record_crash` and `record_success`. This copy runs
// against the in-memory drop-in; `durable.rs` is the same file with the `use` line and the
// constructors swapped, and `one_line_migration` proves that is the only difference.

use std::time::{Duration, Instant};

use recovery_store::BackendRecoveryState;
use recovery_store::{
    BackendKey, BackendRecoveryDecision, BackendRecoveryPolicy, BackendRecoveryRefusalReason,
    BrokerInstanceKey,
};

fn key(service: &str) -> BackendKey {
    BackendKey::new(
        BrokerInstanceKey::Shared,
        service.to_string(),
        "1.0.0".to_string(),
        String::new(),
    )
}

#[test]
fn first_crash_allows_one_retry_after_backoff() {
    let mut state = BackendRecoveryState::new();
    let now = Instant::now();

    let decision = state.record_crash(key("zccache"), now);

    assert_eq!(
        decision,
        BackendRecoveryDecision::Retry {
            retry_after: Duration::from_millis(250),
            attempt: 1,
        }
    );
}

#[test]
fn second_crash_in_window_refuses_backend_unavailable() {
    let mut state = BackendRecoveryState::with_policy(BackendRecoveryPolicy::new(
        Duration::from_millis(10),
        Duration::from_secs(30),
    ));
    let now = Instant::now();

    let first = state.record_crash(key("zccache"), now);
    let second = state.record_crash(key("zccache"), now + Duration::from_secs(5));

    assert!(matches!(
        first,
        BackendRecoveryDecision::Retry { attempt: 1, .. }
    ));
    assert_eq!(
        second,
        BackendRecoveryDecision::Refuse {
            reason: BackendRecoveryRefusalReason::BackendUnavailable,
            retry_after: Duration::from_secs(25),
        }
    );
}

#[test]
fn success_or_window_expiry_resets_recovery_budget() {
    let mut state = BackendRecoveryState::new();
    let now = Instant::now();
    let zccache = key("zccache");

    state.record_crash(zccache.clone(), now);
    state.record_success(&zccache);
    assert!(matches!(
        state.record_crash(zccache.clone(), now + Duration::from_secs(1)),
        BackendRecoveryDecision::Retry { attempt: 1, .. }
    ));

    assert!(matches!(
        state.record_crash(zccache.clone(), now + Duration::from_secs(2)),
        BackendRecoveryDecision::Refuse { .. }
    ));
    assert!(matches!(
        state.record_crash(zccache.clone(), now + Duration::from_secs(31)),
        BackendRecoveryDecision::Retry { attempt: 1, .. }
    ));

    // Other backends keep their own budget.
    assert!(matches!(
        state.record_crash(key("other"), now + Duration::from_secs(31)),
        BackendRecoveryDecision::Retry { attempt: 1, .. }
    ));
}
