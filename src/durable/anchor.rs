//! Mapping the broker's [`Instant`]s to stored [`Timestamp`]s.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::time::Timestamp;

/// Both clocks read together, so that an [`Instant`] maps to a [`Timestamp`].
#[derive(Clone, Copy, Debug)]
pub(super) struct Anchor {
    instant: Instant,
    stamp: Timestamp,
}

/// How far the clocks may drift from the anchor before it is taken again.
const ANCHOR_DRIFT: Duration = Duration::from_secs(1);

impl Anchor {
    // Reads the monotonic clock on both sides of the timestamp and keeps the tightest pair,
    // so a preemption between the reads does not skew the mapping.
    fn now() -> Self {
        let read = || {
            let before = Instant::now();
            let stamp = Timestamp::now();
            let spread = before.elapsed();
            let anchor = Self {
                instant: before + spread / 2,
                stamp,
            };
            (spread, anchor)
        };
        let mut best = read();
        for _ in 0..7 {
            if best.0 < Duration::from_micros(20) {
                break;
            }
            let next = read();
            if next.0 < best.0 {
                best = next;
            }
        }
        best.1
    }

    // Maps `at` through the process's anchor, taking a new one if the clocks have drifted.
    pub(super) fn stamp(at: Instant) -> Timestamp {
        static ANCHOR: Mutex<Option<Anchor>> = Mutex::new(None);
        let fresh = Self::now();
        let mut anchor = ANCHOR.lock().unwrap_or_else(PoisonError::into_inner);
        let current = anchor.get_or_insert(fresh);
        let predicted = current.map(fresh.instant);
        let drift = match fresh.stamp.duration_since(&predicted) {
            Some(ahead) => ahead,
            None => predicted
                .duration_since(&fresh.stamp)
                .unwrap_or(Duration::MAX),
        };
        if drift > ANCHOR_DRIFT {
            *current = fresh;
        }
        current.map(at)
    }

    fn map(&self, at: Instant) -> Timestamp {
        match at.checked_duration_since(self.instant) {
            Some(later) => self.stamp + later,
            None => self.stamp - self.instant.duration_since(at),
        }
    }
}
