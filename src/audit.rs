//! The audit trail: who changed state, when, and why.
//!
//! Every call that changes state other than recording a crash writes one [`AuditEvent`] in the
//! same write transaction as its change, so an event exists exactly when its change committed;
//! a call that changes nothing writes none. The table keeps the last [`AUDIT_LIMIT`] events,
//! dropping the oldest in the transaction that adds a new one (issue 12, "Audit trail").

use crate::migrations::current as stored;
use crate::record;
use crate::time::Timestamp;

/// The most events the audit table keeps (10,000); the oldest are dropped first.
pub const AUDIT_LIMIT: u64 = stored::AUDIT_LIMIT;

/// What changed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// An operator cleared one key's state ([`AuditEvent::key`] set).
    Reset,
    /// Entries in a scope were cleared ([`AuditEvent::scope`] set: `all`, `prefix:P`, `where:P`,
    /// or what the caller named, e.g. `refused` or `service:NAME`). Written once per committed
    /// chunk (of at most [`CHUNK`](crate::CHUNK) entries).
    ResetScope,
    /// A success cleared a backend's state ([`AuditEvent::key`] set).
    Success,
    /// The default policy changed (scope `default`).
    PolicySet,
    /// A policy override was removed (scope `service:NAME` or `key:KEY`).
    PolicyUnset,
    /// An import replaced the whole state (scope `all`) or added to it (scope `merge`).
    Import,
    /// Entries whose window had ended were removed (scope `expired:N`, N the entries removed
    /// by that committed chunk).
    Prune,
}

impl AuditAction {
    /// Every action, in the order the schema numbers them.
    pub const ALL: [Self; 7] = [
        Self::Reset,
        Self::ResetScope,
        Self::Success,
        Self::PolicySet,
        Self::PolicyUnset,
        Self::Import,
        Self::Prune,
    ];

    /// The action named `name` ([`as_str`](Self::as_str)'s text), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// True for the actions on one key ([`AuditEvent::key`] set): [`Reset`](Self::Reset) and
    /// [`Success`](Self::Success); every other action names a scope.
    pub fn is_one_key(self) -> bool {
        matches!(self, Self::Reset | Self::Success)
    }

    /// The action's snake_case name, as the CLI prints it: `reset`, `reset_scope`, `success`,
    /// `policy_set`, `policy_unset`, `import`, `prune`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reset => "reset",
            Self::ResetScope => "reset_scope",
            Self::Success => "success",
            Self::PolicySet => "policy_set",
            Self::PolicyUnset => "policy_unset",
            Self::Import => "import",
            Self::Prune => "prune",
        }
    }
}

/// One audit event, as [`RecoveryStore::audit`](crate::RecoveryStore::audit) returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// Sequence number: counts up from 1 and is never reused, so a gap before the first event
    /// kept means older ones were dropped.
    pub seq: u64,
    /// When the change committed (taken inside its write transaction).
    pub at: Timestamp,
    /// What changed.
    pub action: AuditAction,
    /// The key, for one-key actions ([`AuditAction::Reset`], [`AuditAction::Success`]).
    pub key: Option<String>,
    /// The scope, for every other action.
    pub scope: Option<String>,
    /// Real uid of the acting process.
    pub uid: Option<u32>,
    /// The user name of `uid`, where the system knew it (`/etc/passwd`, else `$USER`).
    pub user: Option<String>,
    /// PID of the acting process.
    pub pid: Option<u32>,
    /// The operator's reason, when one was given.
    pub reason: Option<String>,
}

/// What a change is, before it is stamped: the action, its key or scope, and a reason.
#[derive(Clone, Debug)]
pub(crate) struct Change {
    pub action: AuditAction,
    pub key: Option<String>,
    pub scope: Option<String>,
    pub reason: Option<String>,
}

impl Change {
    pub fn key(action: AuditAction, key: String, reason: Option<&str>) -> Self {
        Self {
            action,
            key: Some(key),
            scope: None,
            reason: reason.map(str::to_owned),
        }
    }

    pub fn scope(action: AuditAction, scope: String, reason: Option<&str>) -> Self {
        Self {
            action,
            key: None,
            scope: Some(scope),
            reason: reason.map(str::to_owned),
        }
    }

    /// The stored event: this change by this process, now.
    pub fn stamped(&self) -> stored::AuditEvent {
        let uid = rustix::process::getuid().as_raw();
        stored::AuditEvent {
            at: record::stamp(&Timestamp::now()),
            action: to_stored(self.action),
            key: self.key.clone(),
            scope: self.scope.clone(),
            uid: Some(uid),
            user: user_name(uid),
            pid: Some(std::process::id()),
            reason: self.reason.clone(),
        }
    }
}

/// The name of `uid`, looked up once per process and uid: events are written inside the write
/// transaction, which should not wait on a file read each time.
fn user_name(uid: u32) -> Option<String> {
    static CACHE: std::sync::Mutex<Option<(u32, Option<String>)>> = std::sync::Mutex::new(None);
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match &*cache {
        Some((cached, name)) if *cached == uid => name.clone(),
        _ => {
            let name = look_up_user(uid);
            *cache = Some((uid, name.clone()));
            name
        }
    }
}

/// The name of `uid` in `/etc/passwd`, else `$USER` (which may name someone else after
/// `su`, so the passwd entry wins), else none.
fn look_up_user(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let found: u32 = fields.nth(1)?.parse().ok()?;
            (found == uid && !name.is_empty()).then(|| name.to_owned())
        })
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
}

fn to_stored(action: AuditAction) -> stored::AuditAction {
    match action {
        AuditAction::Reset => stored::AuditAction::Reset,
        AuditAction::ResetScope => stored::AuditAction::ResetScope,
        AuditAction::Success => stored::AuditAction::Success,
        AuditAction::PolicySet => stored::AuditAction::PolicySet,
        AuditAction::PolicyUnset => stored::AuditAction::PolicyUnset,
        AuditAction::Import => stored::AuditAction::Import,
        AuditAction::Prune => stored::AuditAction::Prune,
    }
}

fn from_stored(action: stored::AuditAction) -> AuditAction {
    match action {
        stored::AuditAction::Reset => AuditAction::Reset,
        stored::AuditAction::ResetScope => AuditAction::ResetScope,
        stored::AuditAction::Success => AuditAction::Success,
        stored::AuditAction::PolicySet => AuditAction::PolicySet,
        stored::AuditAction::PolicyUnset => AuditAction::PolicyUnset,
        stored::AuditAction::Import => AuditAction::Import,
        stored::AuditAction::Prune => AuditAction::Prune,
    }
}

/// The postcard bytes of a stored event.
pub(crate) fn encode(event: &stored::AuditEvent) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_stdvec(event)
}

/// A stored event, decoded, with its sequence number.
pub(crate) fn decode(seq: u64, value: &[u8]) -> Result<AuditEvent, postcard::Error> {
    let (event, rest): (stored::AuditEvent, _) = postcard::take_from_bytes(value)?;
    if !rest.is_empty() {
        return Err(postcard::Error::DeserializeBadEncoding);
    }
    Ok(AuditEvent {
        seq,
        at: record::timestamp(&event.at),
        action: from_stored(event.action),
        key: event.key,
        scope: event.scope,
        uid: event.uid,
        user: event.user,
        pid: event.pid,
        reason: event.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_with_this_process() {
        let change = Change::key(AuditAction::Reset, "shared/a@1.0.0".into(), Some("why"));
        let stamped = change.stamped();
        let event = decode(5, &encode(&stamped).unwrap()).unwrap();
        assert_eq!(event.seq, 5);
        assert_eq!(event.action, AuditAction::Reset);
        assert_eq!(event.pid, Some(std::process::id()));
        assert_eq!(event.uid, Some(rustix::process::getuid().as_raw()));
        assert_eq!(event.reason.as_deref(), Some("why"));
        assert!(decode(5, &[0xff; 3]).is_err());
    }

    #[test]
    fn the_trail_keeps_the_last_events_and_never_reuses_a_number() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::RecoveryStore::open(dir.path().join("s.redb")).unwrap();
        let change = Change::scope(AuditAction::Prune, "expired:1".into(), None);
        let extra = 10;
        store
            .storage()
            .write(|w| {
                for _ in 0..AUDIT_LIMIT + extra {
                    w.append_audit(&change)?;
                }
                Ok(())
            })
            .unwrap();
        let events = store.audit(None).unwrap();
        assert_eq!(events.len() as u64, AUDIT_LIMIT);
        assert_eq!(events[0].seq, extra + 1, "the oldest were dropped");
        assert_eq!(events.last().unwrap().seq, AUDIT_LIMIT + extra);
        // A change in a later transaction drops one more and takes the next number.
        let key: crate::BackendKey = "shared/a@1.0.0".parse().unwrap();
        store.record_crash(&key, Timestamp::now()).unwrap();
        assert!(store.reset(&key).unwrap());
        let events = store.audit(None).unwrap();
        assert_eq!(events.len() as u64, AUDIT_LIMIT);
        assert_eq!(events[0].seq, extra + 2);
        assert_eq!(events.last().unwrap().seq, AUDIT_LIMIT + extra + 1);
        assert_eq!(events.last().unwrap().action, AuditAction::Reset);
    }

    #[test]
    fn root_is_named_from_passwd() {
        // Every Linux system names uid 0 in /etc/passwd, whatever $USER says.
        assert_eq!(look_up_user(0).as_deref(), Some("root"));
        assert_eq!(user_name(0), user_name(0));
    }
}
