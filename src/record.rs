//! Domain records and their stored (postcard, current schema) form.

use std::time::Duration;

use crate::error::StoreError;
use crate::key::BackendKey;
use crate::migrations::current as stored;
use crate::migrations::v1;
use crate::policy::BackendRecoveryPolicy;
use crate::time::{BootTime, Timestamp};

/// One backend's recovery state as kept in the store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecoveryEntry {
    /// The backend.
    pub key: BackendKey,
    /// When the current budget window began.
    pub window_started_at: Timestamp,
    /// Crashes recorded in the current window.
    pub crashes_in_window: u32,
    /// When the most recent crash was recorded.
    pub last_crash: Timestamp,
    /// Crashes recorded since the state was last cleared.
    pub total_crashes: u64,
}

/// The longest policy duration the file format holds (`u64::MAX` nanoseconds, about 584 years).
pub const MAX_POLICY_DURATION: Duration = Duration::from_nanos(u64::MAX);

/// How a crashed process ended, as far as its broker knows: the exit status it exited with, or
/// the signal that killed it (`None` for what is not known). `CrashReport::default()` knows
/// nothing, which is what [`RecoveryStore::record_crash`](crate::RecoveryStore::record_crash)
/// records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CrashReport {
    /// The exit status (`WEXITSTATUS`), when the process exited.
    pub exit_code: Option<i32>,
    /// The signal number (`WTERMSIG`), when a signal ended the process.
    pub signal: Option<i32>,
}

/// The highest signal number a report may carry (Linux's `SIGRTMAX`, 64).
pub const MAX_SIGNAL: i32 = 64;

impl CrashReport {
    /// Checks that a process could have ended this way: an exit status in 0..=255 (what
    /// `WEXITSTATUS` gives), a signal in 1..=[`MAX_SIGNAL`], and not both.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidCrashReport`] naming the value and the range.
    pub fn validate(&self) -> Result<(), StoreError> {
        let problem = match (self.exit_code, self.signal) {
            (Some(_), Some(_)) => {
                "an exit status and a signal at once (a process ends one way)".to_owned()
            }
            (Some(code), None) if !(0..=255).contains(&code) => {
                format!("exit status {code} is outside 0-255")
            }
            (None, Some(signal)) if !(1..=MAX_SIGNAL).contains(&signal) => {
                format!("signal {signal} is outside 1-{MAX_SIGNAL}")
            }
            _ => return Ok(()),
        };
        Err(StoreError::InvalidCrashReport { detail: problem })
    }
}

/// One crash in an entry's history (the last [`HISTORY_LIMIT`] are kept, oldest first): when it
/// was recorded, how the process ended (when known) and which process recorded it, with its
/// real uid. Crashes recorded before schema 2 carry no detail: only their time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct CrashRecord {
    /// When the crash was recorded.
    pub at: Timestamp,
    /// The exit status, when the process exited.
    pub exit_code: Option<i32>,
    /// The signal that ended the process, when one did.
    pub signal: Option<i32>,
    /// The recording process.
    pub pid: Option<u32>,
    /// The recording process's real uid.
    pub uid: Option<u32>,
}

impl CrashRecord {
    /// A crash at `at`, ended as `report` says, recorded by process `pid` running as `uid`.
    pub fn new(at: Timestamp, report: CrashReport, pid: Option<u32>, uid: Option<u32>) -> Self {
        Self {
            at,
            exit_code: report.exit_code,
            signal: report.signal,
            pid,
            uid,
        }
    }

    /// A crash at `at` reported by this process: its PID and real uid.
    pub(crate) fn by_this_process(at: Timestamp, report: CrashReport) -> Self {
        Self::new(
            at,
            report,
            Some(std::process::id()),
            Some(rustix::process::getuid().as_raw()),
        )
    }

    /// How the process ended.
    pub fn report(&self) -> CrashReport {
        CrashReport {
            exit_code: self.exit_code,
            signal: self.signal,
        }
    }
}

/// The most crashes an entry's history keeps (16).
pub const HISTORY_LIMIT: usize = stored::HISTORY_LIMIT;

/// Encodes an entry and its history (the last [`HISTORY_LIMIT`] crashes of it are kept).
pub(crate) fn encode_entry(
    entry: &RecoveryEntry,
    history: &[CrashRecord],
) -> Result<Vec<u8>, postcard::Error> {
    let kept = &history[history.len().saturating_sub(HISTORY_LIMIT)..];
    let record = stored::Entry {
        window_started_at: stamp(&entry.window_started_at),
        crashes_in_window: entry.crashes_in_window,
        last_crash: stamp(&entry.last_crash),
        total_crashes: entry.total_crashes,
        history: kept
            .iter()
            .map(|c| stored::Crash {
                at: stamp(&c.at),
                exit_code: c.exit_code,
                signal: c.signal,
                pid: c.pid,
                uid: c.uid,
            })
            .collect(),
    };
    encode(&record)
}

/// The history stored in an entry's value, written by schema `schema`.
pub(crate) fn decode_history(
    value: &[u8],
    schema: u32,
) -> Result<Vec<CrashRecord>, postcard::Error> {
    Ok(decode_stored_entry(value, schema)?
        .history
        .iter()
        .map(|c| CrashRecord {
            at: timestamp(&c.at),
            exit_code: c.exit_code,
            signal: c.signal,
            pid: c.pid,
            uid: c.uid,
        })
        .collect())
}

// A reader of a store not yet migrated reads schema 1 values, as the migration would convert
// them. Each value is decoded strictly by its file's schema: a schema 2 value cut short can look
// like a whole schema 1 one.
fn decode_stored_entry(value: &[u8], schema: u32) -> Result<stored::Entry, postcard::Error> {
    if schema == 1 {
        decode::<v1::Entry>(value).map(Into::into)
    } else {
        decode(value)
    }
}

/// Decodes a stored entry; `raw_key` and `value` come straight from the file.
pub(crate) fn decode_entry(
    raw_key: &[u8],
    value: &[u8],
    schema: u32,
    path: &std::path::Path,
) -> Result<RecoveryEntry, StoreError> {
    let key = std::str::from_utf8(raw_key)
        .map_err(|_| "key is not UTF-8".to_owned())
        .and_then(|text| text.parse::<BackendKey>().map_err(|e| e.to_string()))
        .map_err(|detail| corrupt_entry(raw_key, path, detail))?;
    decode_entry_of(key, value, schema, path)
}

/// Decodes the value stored under `key`, which the caller already holds, so the stored key
/// text need not be parsed again (the read path of `get` and `status`).
pub(crate) fn decode_entry_of(
    key: BackendKey,
    value: &[u8],
    schema: u32,
    path: &std::path::Path,
) -> Result<RecoveryEntry, StoreError> {
    let corrupt = |detail: String| corrupt_entry(key.to_string().as_bytes(), path, detail);
    let record = decode_stored_entry(value, schema).map_err(|e| corrupt(format!("value: {e}")))?;
    if record.crashes_in_window == 0 {
        return Err(corrupt(
            "value: an entry with no crash in its window".into(),
        ));
    }
    Ok(RecoveryEntry {
        key,
        window_started_at: timestamp(&record.window_started_at),
        crashes_in_window: record.crashes_in_window,
        last_crash: timestamp(&record.last_crash),
        total_crashes: record.total_crashes,
    })
}

fn corrupt_entry(raw_key: &[u8], path: &std::path::Path, detail: String) -> StoreError {
    StoreError::CorruptEntry {
        path: path.to_owned(),
        key: String::from_utf8_lossy(raw_key).into_owned(),
        detail,
    }
}

/// Encodes a policy and its `retries_per_window`.
pub(crate) fn encode_policy(
    policy: &BackendRecoveryPolicy,
    retries_per_window: u32,
    path: &std::path::Path,
) -> Result<Vec<u8>, StoreError> {
    let nanos = |what: &str, d: Duration| {
        u64::try_from(d.as_nanos()).map_err(|_| StoreError::InvalidPolicy {
            detail: format!(
                "{what} {d:?} is longer than the {MAX_POLICY_DURATION:?} a store can hold: choose a shorter duration"
            ),
        })
    };
    policy.validate()?;
    encode(&stored::Policy {
        retry_backoff_nanos: nanos("retry backoff", policy.retry_backoff)?,
        budget_window_nanos: nanos("budget window", policy.budget_window)?,
        retries_per_window,
    })
    .map_err(|e| StoreError::Storage {
        path: path.to_owned(),
        source: Box::new(e),
    })
}

/// Decodes a policy stored by schema `schema`, and its `retries_per_window`.
pub(crate) fn decode_policy(
    value: &[u8],
    schema: u32,
) -> Result<(BackendRecoveryPolicy, u32), postcard::Error> {
    let record: stored::Policy = if schema == 1 {
        decode::<v1::Policy>(value)?.into()
    } else {
        decode(value)?
    };
    Ok((
        BackendRecoveryPolicy::new(
            Duration::from_nanos(record.retry_backoff_nanos),
            Duration::from_nanos(record.budget_window_nanos),
        ),
        record.retries_per_window,
    ))
}

pub(crate) fn encode_version(version: u32) -> Result<Vec<u8>, postcard::Error> {
    encode(&version)
}

pub(crate) fn decode_version(value: &[u8]) -> Result<u32, postcard::Error> {
    decode(value)
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(value)
}

// Trailing bytes mean the value is not what we wrote: refuse it rather than guess.
fn decode<'a, T: serde::Deserialize<'a>>(value: &'a [u8]) -> Result<T, postcard::Error> {
    let (record, rest) = postcard::take_from_bytes(value)?;
    if rest.is_empty() {
        Ok(record)
    } else {
        Err(postcard::Error::DeserializeBadEncoding)
    }
}

pub(crate) fn stamp(ts: &Timestamp) -> stored::Stamp {
    stored::Stamp {
        unix_nanos: ts.unix_nanos(),
        boot: ts.boot().map(|b| stored::Boot {
            boot_id: b.boot_id,
            since_boot_nanos: u64::try_from(b.since_boot.as_nanos()).unwrap_or(u64::MAX),
        }),
    }
}

pub(crate) fn timestamp(stamp: &stored::Stamp) -> Timestamp {
    Timestamp::from_parts(
        stamp.unix_nanos,
        stamp.boot.map(|b| BootTime {
            boot_id: b.boot_id,
            since_boot: Duration::from_nanos(b.since_boot_nanos),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn entries_round_trip() {
        let at = Timestamp::from_parts(
            -5,
            Some(BootTime {
                boot_id: u128::MAX,
                since_boot: Duration::from_secs(9),
            }),
        );
        let entry = RecoveryEntry {
            key: "explicit:ci/svc@1.2.3-rc.1#ab".parse().unwrap(),
            window_started_at: at,
            crashes_in_window: 2,
            last_crash: at + Duration::from_secs(1),
            total_crashes: 7,
        };
        let bytes = encode_entry(&entry, &[]).unwrap();
        let key = entry.key.to_string();
        assert_eq!(
            decode_entry(key.as_bytes(), &bytes, 2, Path::new("x")).unwrap(),
            entry
        );
    }

    #[test]
    fn damaged_values_name_their_key() {
        let entry = RecoveryEntry {
            key: "shared/svc@1.0.0".parse().unwrap(),
            window_started_at: Timestamp::from_parts(1, None),
            crashes_in_window: 1,
            last_crash: Timestamp::from_parts(1, None),
            total_crashes: 1,
        };
        let good = encode_entry(&entry, &[]).unwrap();
        for bad in [
            &good[..good.len() - 1],
            &[good.as_slice(), &[0]].concat(),
            &[],
        ] {
            let err = decode_entry(b"shared/svc@1.0.0", bad, 2, Path::new("x")).unwrap_err();
            assert!(
                matches!(&err, StoreError::CorruptEntry { key, .. } if key == "shared/svc@1.0.0"),
                "{err}"
            );
        }
        let err = decode_entry(b"\xff", &good, 2, Path::new("x")).unwrap_err();
        assert!(matches!(err, StoreError::CorruptEntry { .. }));
    }

    #[test]
    fn policies_round_trip_and_refuse_what_the_format_cannot_hold() {
        let p = BackendRecoveryPolicy::new(Duration::from_millis(3), Duration::from_secs(4));
        let path = Path::new("x");
        assert_eq!(
            decode_policy(&encode_policy(&p, 3, path).unwrap(), 2).unwrap(),
            (p, 3)
        );
        let huge = BackendRecoveryPolicy::new(Duration::from_secs(1), Duration::MAX);
        assert!(matches!(
            encode_policy(&huge, 1, path),
            Err(StoreError::InvalidPolicy { .. })
        ));
    }

    #[test]
    fn histories_round_trip_and_keep_only_the_newest() {
        let entry = RecoveryEntry {
            key: "shared/svc@1.0.0".parse().unwrap(),
            window_started_at: Timestamp::from_parts(1, None),
            crashes_in_window: 1,
            last_crash: Timestamp::from_parts(40, None),
            total_crashes: 40,
        };
        let history: Vec<CrashRecord> = (0..40)
            .map(|i| CrashRecord {
                at: Timestamp::from_parts(i, None),
                exit_code: (i % 2 == 0).then_some(i as i32),
                signal: (i % 2 == 1).then_some(9),
                pid: Some(i as u32),
                uid: (i > 3).then_some(0),
            })
            .collect();
        let bytes = encode_entry(&entry, &history).unwrap();
        assert_eq!(decode_history(&bytes, 2).unwrap(), history[24..]);
        let path = Path::new("x");
        assert_eq!(
            decode_entry(b"shared/svc@1.0.0", &bytes, 2, path).unwrap(),
            entry
        );
    }

    #[test]
    fn schema_1_values_read_as_schema_2_with_a_detail_free_history() {
        let old = v1::Entry {
            window_started_at: v1::Stamp {
                unix_nanos: 5,
                boot: None,
            },
            crashes_in_window: 2,
            last_crash: v1::Stamp {
                unix_nanos: 7,
                boot: Some(v1::Boot {
                    boot_id: 3,
                    since_boot_nanos: 9,
                }),
            },
            total_crashes: 4,
        };
        let bytes = postcard::to_allocvec(&old).unwrap();
        let entry = decode_entry(b"shared/svc@1.0.0", &bytes, 1, Path::new("x")).unwrap();
        assert!(decode_entry(b"shared/svc@1.0.0", &bytes, 2, Path::new("x")).is_err());
        assert_eq!(entry.total_crashes, 4);
        assert_eq!(entry.last_crash.unix_nanos(), 7);
        let history = decode_history(&bytes, 1).unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].at, entry.last_crash);
        assert_eq!((history[0].exit_code, history[0].pid), (None, None));
        let policy = postcard::to_allocvec(&v1::Policy {
            retry_backoff_nanos: 250_000_000,
            budget_window_nanos: 30_000_000_000,
        })
        .unwrap();
        assert_eq!(
            decode_policy(&policy, 1).unwrap(),
            (BackendRecoveryPolicy::default(), 1)
        );
    }
}
