//! The decisions a degraded handle took in memory, queued in order for write-through.

use std::collections::{HashSet, VecDeque};

use super::MAX_PENDING;
use crate::key::BackendKey;
use crate::record::CrashReport;
use crate::time::Timestamp;

/// One decision taken in memory, waiting for the store.
#[derive(Clone, Debug)]
pub(super) enum Pending {
    Crash(BackendKey, Timestamp, CrashReport),
    Success(BackendKey),
}

impl Pending {
    pub(super) fn key(&self) -> &BackendKey {
        match self {
            Self::Crash(key, ..) | Self::Success(key) => key,
        }
    }
}

/// Appends `op`, keeping at most [`MAX_PENDING`]: a full queue first drops what a later
/// success for the same key makes moot, then the oldest. Returns how many were dropped that way.
pub(super) fn push(queue: &mut VecDeque<Pending>, op: Pending) -> u64 {
    if queue.len() >= MAX_PENDING {
        compact(queue);
    }
    let mut dropped = 0;
    while queue.len() >= MAX_PENDING {
        queue.pop_front();
        dropped += 1;
    }
    queue.push_back(op);
    dropped
}

// A success makes everything queued before it for the same key moot. Runs only when the
// queue is full, and keeps the order of what it keeps.
fn compact(queue: &mut VecDeque<Pending>) {
    let mut cleared = HashSet::new();
    let mut kept = VecDeque::with_capacity(queue.len());
    while let Some(op) = queue.pop_back() {
        if cleared.contains(op.key()) {
            continue;
        }
        if let Pending::Success(key) = &op {
            cleared.insert(key.clone());
        }
        kept.push_front(op);
    }
    *queue = kept;
}
