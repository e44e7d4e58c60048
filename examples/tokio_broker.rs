//! A tokio broker that keeps its recovery windows on disk.
//!
//! `DurableRecoveryState` does blocking file I/O (a durable commit is a few hundred
//! microseconds, and a store held by a stalled process can take up to its lock timeout), so an
//! async broker calls it from `spawn_blocking`, never from a runtime worker thread.
//!
//! Run it with `cargo run --example tokio_broker -- /tmp/broker.redb`. It records one crash of
//! a backend, waits out the retry backoff, then records the backend healthy again.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use recovery_store::{
    BackendKey, BackendRecoveryDecision, BackendRecoveryPolicy, BrokerInstanceKey,
    DurableRecoveryState, StoreHealth,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "broker-recovery.redb".into());
    // The one-line migration from `BackendRecoveryState::with_policy(policy)`:
    let state = DurableRecoveryState::open_with_policy(&path, BackendRecoveryPolicy::default())?;
    let state = Arc::new(Mutex::new(state));

    let key = BackendKey::new(BrokerInstanceKey::Shared, "zccache", "1.11.20", "");
    let decision = on_backend_crash(&state, key.clone()).await?;
    match decision {
        BackendRecoveryDecision::Retry { retry_after, .. } => {
            println!("{key}: retry after {retry_after:?}");
            tokio::time::sleep(retry_after).await;
        }
        BackendRecoveryDecision::Refuse { retry_after, .. } => {
            println!("{key}: refused; retry after {retry_after:?}");
        }
    }

    // The health check passed: clear the backend's state (a read when there is none).
    let shared = Arc::clone(&state);
    let ok = key.clone();
    tokio::task::spawn_blocking(move || {
        shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record_success(&ok)
    })
    .await?;

    // A broker exports this with its other health signals.
    if let StoreHealth::Degraded { cause, pending, .. } = state.lock().unwrap().health() {
        eprintln!("recovery store degraded ({pending} decisions pending): {cause}");
    }
    Ok(())
}

/// Records a crash off the async runtime's worker threads.
async fn on_backend_crash(
    state: &Arc<Mutex<DurableRecoveryState>>,
    key: BackendKey,
) -> Result<BackendRecoveryDecision, tokio::task::JoinError> {
    let state = Arc::clone(state);
    let now = Instant::now();
    tokio::task::spawn_blocking(move || {
        state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record_crash(key, now)
    })
    .await
}
