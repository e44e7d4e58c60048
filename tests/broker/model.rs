//! Property test: `DurableRecoveryState` decides as the line-by-line transcription of the
//! broker's reference module, for random sequences of crashes (some reaching it late),
//! successes, time steps and reopens, with instants in the past and the future.
//!
//! `RECOVERY_STORE_PROPTEST_CASES` raises the number of cases (default 48).

use std::time::{Duration, Instant};

use proptest::prelude::*;
use recovery_store::{BackendKey, DurableRecoveryState, StoreHealth};

use crate::model::{Reference, cases, policy};
use crate::util::{TempStore, key};

const KEYS: [&str; 3] = [
    "shared/alpha@1.0.0",
    "private:beta/beta@2.1.0-rc.1",
    "explicit:ci/gamma@0.0.1#00ff",
];

#[derive(Clone, Debug)]
enum Op {
    Crash(usize),
    /// A crash whose instant lies this many milliseconds before the latest one.
    LateCrash(usize, u64),
    Success(usize),
    Reopen,
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..KEYS.len()).prop_map(Op::Crash),
        1 => ((0..KEYS.len()), 0u64..40_000).prop_map(|(k, ms)| Op::LateCrash(k, ms)),
        2 => (0..KEYS.len()).prop_map(Op::Success),
        1 => Just(Op::Reopen),
        4 => (1u64..40_000).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn durable_state_decides_as_the_reference_through_reopens(
        policy in policy(),
        // Start up to a minute in the past: instants before the handle opened map too.
        head_start_ms in 0u64..60_000,
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let t = TempStore::new();
        let keys: Vec<BackendKey> = KEYS.iter().map(|k| key(k)).collect();
        let origin = Instant::now();
        let start = origin.checked_sub(Duration::from_millis(head_start_ms)).unwrap_or(origin);
        let mut state = DurableRecoveryState::open_with_policy(&t.path, policy).unwrap();
        let mut reference = Reference::new(policy);
        let mut elapsed = Duration::ZERO;
        for op in &ops {
            match *op {
                Op::Crash(k) | Op::LateCrash(k, _) => {
                    let late = match *op {
                        Op::LateCrash(_, ms) => Duration::from_millis(ms)
                            .min(elapsed),
                        _ => Duration::ZERO,
                    };
                    let at = start + elapsed - late;
                    let want = reference.record_crash(k, at);
                    prop_assert_eq!(state.record_crash(keys[k].clone(), at), want);
                }
                Op::Success(k) => {
                    state.record_success(&keys[k]);
                    reference.record_success(k);
                }
                Op::Reopen => {
                    drop(state);
                    state = DurableRecoveryState::open(&t.path).unwrap();
                }
                Op::Advance(ms) => elapsed += Duration::from_millis(ms),
            }
            prop_assert_eq!(state.health(), StoreHealth::Durable);
        }
    }
}
