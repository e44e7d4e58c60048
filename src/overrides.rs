//! Per-service and per-key policies: which stored policy judges a backend.
//!
//! A store holds a default [`RecoveryPolicy`] and any number of overrides, each for one scope:
//! a service (every key whose `service_name` is that name, whatever its instance, version or
//! hash) or one key (its canonical text, exactly). The most specific decides: the key's
//! override, then its service's, then the default. Nothing here touches the file; the storage
//! layer reads the overrides and this module picks one.

use std::fmt;
use std::path::PathBuf;

use crate::error::StoreError;
use crate::key::{BackendKey, validate_service_name};
use crate::migrations::current as schema;
use crate::policy::RecoveryPolicy;

/// What a policy override applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyScope {
    /// Every key of one service, e.g. `zccache`.
    Service(String),
    /// One key, by its canonical text (a key without its hash matches only that key).
    Key(BackendKey),
}

impl PolicyScope {
    /// The scope of every key of `name`.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidKey`] when `name` is not a valid service name (1 to 64 of a-z, 0-9
    /// and -).
    pub fn service(name: &str) -> Result<Self, StoreError> {
        validate_service_name(name)?;
        Ok(Self::Service(name.to_owned()))
    }

    /// The scope of one key.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidKey`] when the key is not valid ([`BackendKey::validate`]).
    pub fn key(key: BackendKey) -> Result<Self, StoreError> {
        key.validate()?;
        Ok(Self::Key(key))
    }

    /// Parses the stored text, `service:NAME` or `key:KEY`.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidPolicy`] for any other text, [`StoreError::InvalidKey`] for a bad
    /// name or key.
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        if let Some(name) = text.strip_prefix(schema::SCOPE_SERVICE) {
            Self::service(name)
        } else if let Some(key) = text.strip_prefix(schema::SCOPE_KEY) {
            Self::key(key.parse()?)
        } else {
            Err(StoreError::InvalidPolicy {
                detail: format!("{text:?} is not a policy scope: write service:NAME or key:KEY"),
            })
        }
    }

    /// Which scope this is, as `policy --json` and `show` name it: `service` or `key`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Service(_) => "service",
            Self::Key(_) => "key",
        }
    }
}

/// The stored text: `service:NAME` or `key:KEY`.
impl fmt::Display for PolicyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Service(name) => write!(f, "{}{name}", schema::SCOPE_SERVICE),
            Self::Key(key) => write!(f, "{}{key}", schema::SCOPE_KEY),
        }
    }
}

/// The policy that judges one key, and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedPolicy {
    /// The policy.
    pub policy: RecoveryPolicy,
    /// The override it came from; `None` for the store's default.
    pub scope: Option<PolicyScope>,
}

/// The scope texts that could hold a policy for `key`, most specific first.
pub(crate) fn scopes_of(key: &BackendKey) -> [String; 2] {
    [
        PolicyScope::Key(key.clone()).to_string(),
        PolicyScope::Service(key.service_name.clone()).to_string(),
    ]
}

/// Every policy of a store at one moment: the default and its overrides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policies {
    /// The store's default policy.
    pub default: RecoveryPolicy,
    /// Every override, by scope text order.
    pub overrides: Vec<(PolicyScope, RecoveryPolicy)>,
}

impl Policies {
    /// The policy that judges `key`: its key override, else its service's, else the default.
    pub fn for_key(&self, key: &BackendKey) -> AppliedPolicy {
        let find = |wanted: &dyn Fn(&PolicyScope) -> bool| {
            self.overrides
                .iter()
                .find(|(scope, _)| wanted(scope))
                .map(|(scope, policy)| AppliedPolicy {
                    policy: *policy,
                    scope: Some(scope.clone()),
                })
        };
        find(&|s| matches!(s, PolicyScope::Key(k) if k == key))
            .or_else(|| find(&|s| matches!(s, PolicyScope::Service(n) if *n == key.service_name)))
            .unwrap_or(AppliedPolicy {
                policy: self.default,
                scope: None,
            })
    }
}

/// A stored override row that cannot be decoded: its scope text as stored, and why.
///
/// Found by [`Snapshot::stored_policies`](crate::Snapshot::stored_policies); `check` reports
/// each one, and [`error`](Self::error) is what judging a key it would decide returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedOverride {
    /// The stored scope text, `service:NAME` or `key:KEY` when intact (lossy UTF-8; sanitize
    /// before printing it to a terminal).
    pub scope: String,
    /// Why decoding failed.
    pub detail: String,
    path: PathBuf,
}

impl DamagedOverride {
    pub(crate) fn new(path: PathBuf, scope: String, detail: String) -> Self {
        Self {
            scope,
            detail,
            path,
        }
    }

    /// What to do about this row: the `policy unset` or `policy set` command that repairs it.
    pub fn remedy(&self) -> String {
        remedy(&self.scope)
    }

    /// The error naming this row and the command that removes it:
    /// [`StoreError::CorruptOverride`].
    pub fn error(&self) -> StoreError {
        StoreError::CorruptOverride {
            path: self.path.clone(),
            scope: self.scope.clone(),
            detail: self.detail.clone(),
        }
    }
}

/// Every override row of a store at one moment, decodable or not: what reports read so that
/// one damaged row stops only the keys it would judge.
///
/// The only way to judge a key from it is [`judge`](Self::judge), which refuses a key whose
/// key scope or service scope is a damaged row, so no key is ever judged by a less specific
/// policy than the one stored for it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredPolicies {
    decoded: Policies,
    damaged: Vec<DamagedOverride>,
}

impl StoredPolicies {
    pub(crate) fn new(decoded: Policies, damaged: Vec<DamagedOverride>) -> Self {
        Self { decoded, damaged }
    }

    /// The store's default policy.
    pub fn default_policy(&self) -> RecoveryPolicy {
        self.decoded.default
    }

    /// The overrides that decode, by scope text order.
    pub fn overrides(&self) -> &[(PolicyScope, RecoveryPolicy)] {
        &self.decoded.overrides
    }

    /// The override rows that do not decode, by scope text order (empty in an intact store).
    pub fn damaged(&self) -> &[DamagedOverride] {
        &self.damaged
    }

    /// The policy that judges `key`, as [`Policies::for_key`].
    ///
    /// # Errors
    ///
    /// [`StoreError::CorruptOverride`] when the scope that would decide (the key's own, else
    /// its service's) is a damaged row.
    pub fn judge(&self, key: &BackendKey) -> Result<AppliedPolicy, StoreError> {
        let applied = self.decoded.for_key(key);
        // A decoded key override decides before any service row, damaged or not.
        if self.damaged.is_empty() || matches!(applied.scope, Some(PolicyScope::Key(_))) {
            return Ok(applied);
        }
        // Otherwise a damaged key row would decide, else a damaged service row.
        for text in scopes_of(key) {
            if let Some(row) = self.damaged.iter().find(|d| d.scope == text) {
                return Err(row.error());
            }
        }
        Ok(applied)
    }

    /// These policies with the damaged row of `scope` left out (`policy set` replaces it).
    pub fn without_damaged(&self, scope: &PolicyScope) -> Self {
        let text = scope.to_string();
        Self {
            decoded: self.decoded.clone(),
            damaged: self
                .damaged
                .iter()
                .filter(|d| d.scope != text)
                .cloned()
                .collect(),
        }
    }

    /// Every policy, when every row decodes.
    ///
    /// # Errors
    ///
    /// [`StoreError::CorruptOverride`] naming the first damaged row.
    pub fn checked(self) -> Result<Policies, StoreError> {
        match self.damaged.first() {
            Some(row) => Err(row.error()),
            None => Ok(self.decoded),
        }
    }
}

/// What to do about a damaged override row with this stored scope text: the `policy unset`
/// command that removes it when its scope can be typed (quoted for a POSIX shell), and always
/// `check --drop-damaged`, which removes every damaged row.
pub(crate) fn remedy(scope: &str) -> String {
    const DROP: &str = "`recovery-store check --drop-damaged` removes every damaged row";
    // `policy unset --service` takes a stored name even when it is not a valid one; a name
    // with a control character, or bytes that were not UTF-8 (shown as U+FFFD), cannot be
    // typed, so only the repair is offered for it.
    let typable =
        |text: &str| !text.is_empty() && !text.chars().any(|c| c.is_control() || c == '\u{fffd}');
    let flag = if let Some(name) = scope
        .strip_prefix(schema::SCOPE_SERVICE)
        .filter(|name| validate_service_name(name).is_ok())
    {
        format!("--service {name}")
    } else if let Some(key) = scope
        .strip_prefix(schema::SCOPE_KEY)
        .filter(|k| k.parse::<BackendKey>().is_ok())
    {
        format!("--key {key}")
    } else if let Some(name) = scope
        .strip_prefix(schema::SCOPE_SERVICE)
        .filter(|name| typable(name))
    {
        // Not a valid name: it judges nothing, and `policy set` would refuse the name.
        return format!(
            "its name is not a valid service name, so it judges no backend; `recovery-store \
             policy unset --service {}` removes it, and {DROP}",
            crate::error::shell_quote(name)
        );
    } else {
        return format!(
            "its scope is not a valid service:NAME or key:KEY, so it judges no backend; {DROP}"
        );
    };
    format!(
        "the keys it would judge get no decision from the store until it is removed with \
         `recovery-store policy unset {flag}` (they are then judged by the next most specific \
         policy) or replaced with `recovery-store policy set {flag} ...`; {DROP}"
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::policy::BackendRecoveryPolicy;

    fn p(ms: u64) -> RecoveryPolicy {
        RecoveryPolicy::new(
            BackendRecoveryPolicy::new(Duration::from_millis(ms), Duration::from_secs(30)),
            1,
        )
    }

    #[test]
    fn the_most_specific_policy_decides() {
        let a: BackendKey = "shared/zccache@1.0.0".parse().unwrap();
        let b: BackendKey = "private:zccache/zccache@2.0.0".parse().unwrap();
        let c: BackendKey = "shared/other@1.0.0".parse().unwrap();
        let policies = Policies {
            default: p(1),
            overrides: vec![
                (PolicyScope::key(a.clone()).unwrap(), p(2)),
                (PolicyScope::service("zccache").unwrap(), p(3)),
            ],
        };
        assert_eq!(policies.for_key(&a).policy, p(2));
        assert_eq!(policies.for_key(&a).scope.unwrap().kind(), "key");
        assert_eq!(policies.for_key(&b).policy, p(3));
        assert_eq!(
            policies.for_key(&c),
            AppliedPolicy {
                policy: p(1),
                scope: None
            }
        );
    }

    #[test]
    fn a_damaged_row_stops_only_the_keys_it_would_judge() {
        let a: BackendKey = "shared/zccache@1.0.0".parse().unwrap();
        let b: BackendKey = "shared/zccache@2.0.0".parse().unwrap();
        let c: BackendKey = "shared/other@1.0.0".parse().unwrap();
        let d: BackendKey = "shared/other@2.0.0".parse().unwrap();
        let damaged = |scope: &str| {
            DamagedOverride::new("/s".into(), scope.to_owned(), "value: bad".to_owned())
        };
        let stored = StoredPolicies::new(
            Policies {
                default: p(1),
                overrides: vec![(PolicyScope::key(a.clone()).unwrap(), p(2))],
            },
            vec![
                damaged("key:shared/other@2.0.0"),
                damaged("service:zccache"),
            ],
        );
        // A's key override decides before its damaged service row.
        assert_eq!(stored.judge(&a).unwrap().policy, p(2));
        // B would be judged by the damaged service row; D by its damaged key row.
        for (key, scope) in [(&b, "service:zccache"), (&d, "key:shared/other@2.0.0")] {
            let err = stored.judge(key).unwrap_err();
            assert!(
                matches!(&err, StoreError::CorruptOverride { scope: s, .. } if s == scope),
                "{err}"
            );
        }
        assert_eq!(stored.judge(&c).unwrap().policy, p(1));
        assert!(stored.clone().checked().is_err());
        let service = PolicyScope::service("zccache").unwrap();
        assert_eq!(
            stored.without_damaged(&service).judge(&b).unwrap().policy,
            p(1)
        );
    }

    #[test]
    fn remedies_name_the_command_that_removes_the_row() {
        assert!(remedy("service:zc").contains("`recovery-store policy unset --service zc`"));
        assert!(
            remedy("key:shared/zc@1.0.0")
                .contains("`recovery-store policy unset --key shared/zc@1.0.0`")
        );
        let text = remedy("service:it's");
        assert!(
            text.contains(r"policy unset --service 'it'\''s'") && !text.contains("policy set"),
            "{text}"
        );
        // A name that cannot be typed is not offered to `policy unset`.
        for untypable in ["service:\u{1b}[31mEVIL", "service:zc\u{fffd}", "service:"] {
            let text = remedy(untypable);
            assert!(
                text.contains("check --drop-damaged") && !text.contains("policy unset"),
                "{text}"
            );
        }
        assert!(remedy("service:zc").contains("check --drop-damaged"));
        assert!(remedy("key:not a key").contains("judges no backend"));
    }

    #[test]
    fn scopes_round_trip_and_bad_ones_are_refused() {
        for text in ["service:zccache", "key:shared/zccache@1.0.0#00ff"] {
            assert_eq!(PolicyScope::parse(text).unwrap().to_string(), text);
        }
        assert!(PolicyScope::parse("zccache").is_err());
        assert!(PolicyScope::service("Zc Cache").is_err());
        assert!(PolicyScope::parse("key:not a key").is_err());
    }
}
