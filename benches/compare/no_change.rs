//! (f) calls that change nothing: `record_success` and `reset` of a backend with no state,
//! which a broker makes after nearly every healthy check, against `status` of the same key and
//! against the in-memory `BackendRecoveryState::record_success`. Interleaved op by op.

use std::path::Path;

use recovery_store::{BackendKey, BackendRecoveryState, RecoveryStore};

use crate::Config;
use crate::common::{at_secs, interleaved, key};
use crate::table::Table;

/// Adds section (f) to `t`; `path` is the store of `cfg.entries` entries, closed.
pub fn run(cfg: &Config, path: &Path, t: &mut Table) {
    let store = RecoveryStore::open(path).expect("open store");
    // Keys no call here ever gives state to.
    let absent: Vec<BackendKey> = (0..1_000).map(|i| key(2 * cfg.entries + i)).collect();
    let now = at_secs(2_000_000);
    let mut mem = BackendRecoveryState::new();
    let (mut a, mut b, mut c, mut d) = (0usize, 0usize, 0usize, 0usize);
    let m = interleaved(
        cfg.ops,
        &mut [
            &mut || {
                a += 1;
                let k = &absent[a % absent.len()];
                std::hint::black_box(store.status(k, now).expect("status"));
            },
            &mut || {
                b += 1;
                let k = &absent[b % absent.len()];
                let had = store.record_success(k).expect("record_success");
                assert!(!had, "{k} had state");
            },
            &mut || {
                c += 1;
                let k = &absent[c % absent.len()];
                let had = store.reset(k).expect("reset");
                assert!(!had, "{k} had state");
            },
            &mut || {
                d += 1;
                mem.record_success(std::hint::black_box(&absent[d % absent.len()]));
            },
        ],
    );
    let [status, success, reset, mem_success] = m[..] else {
        unreachable!()
    };
    t.section(&format!(
        "(f) calls that change nothing: a backend with no state, {} entries (interleaved)",
        cfg.entries
    ));
    t.row("store status, no state", status, None);
    t.row(
        "store record_success, no state",
        success,
        Some(("status", status, "")),
    );
    t.row("store reset, no state", reset, Some(("status", status, "")));
    t.row("in-memory record_success, no state", mem_success, None);
    t.row_ratio("store record_success / in-memory", success, mem_success);
    t.row_ratio("store reset / in-memory", reset, mem_success);
}
