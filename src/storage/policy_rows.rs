//! The policy rows: the default policy in `meta` and the per-service and per-key overrides in
//! `policy_overrides`, read strictly (a damaged row is an error naming it) or tolerantly (damaged
//! rows set aside), and written.

use std::path::Path;

use redb::{ReadableTable, TableError};

use super::OVERRIDES;
use super::guard::{engine_err, missing_meta};
use super::tables::{Reader, Writer};
use crate::error::StoreError;
use crate::key::BackendKey;
use crate::migrations::{CURRENT_VERSION, current as schema};
use crate::overrides::{
    self, AppliedPolicy, DamagedOverride, Policies, PolicyScope, StoredPolicies,
};
use crate::policy::{BackendRecoveryPolicy, RecoveryPolicy};
use crate::record;

impl Reader<'_> {
    /// The store's policy.
    pub fn policy(&self) -> Result<BackendRecoveryPolicy, StoreError> {
        Ok(self.recovery_policy()?.recovery)
    }

    /// The store's policy with its retries per window.
    pub fn recovery_policy(&self) -> Result<RecoveryPolicy, StoreError> {
        read_policy(&self.meta, self.schema, self.path)
    }

    /// The default policy and every override (none in a store without the overrides table).
    /// Fails with [`StoreError::CorruptOverride`] naming the first row that does not decode;
    /// [`stored_policies`](Self::stored_policies) reads past damaged rows.
    pub fn policies(&self) -> Result<Policies, StoreError> {
        self.stored_policies()?.checked()
    }

    /// The default policy and every override row, decodable or not.
    pub fn stored_policies(&self) -> Result<StoredPolicies, StoreError> {
        let default = self.recovery_policy()?;
        match self.txn.open_table(OVERRIDES) {
            Ok(table) => read_policies(&table, default, self.path),
            Err(TableError::TableDoesNotExist(_)) => Ok(StoredPolicies::new(
                Policies {
                    default,
                    overrides: Vec::new(),
                },
                Vec::new(),
            )),
            Err(e) => Err(engine_err(self.path, e)),
        }
    }

    /// The policy that judges `key`: its key override, its service's, or the default.
    pub fn policy_for(&self, key: &BackendKey) -> Result<AppliedPolicy, StoreError> {
        let default = self.recovery_policy()?;
        match self.txn.open_table(OVERRIDES) {
            Ok(table) => applied_policy(&table, key, default, self.path),
            Err(TableError::TableDoesNotExist(_)) => Ok(AppliedPolicy {
                policy: default,
                scope: None,
            }),
            Err(e) => Err(engine_err(self.path, e)),
        }
    }
}

impl Writer<'_> {
    /// The store's policy as of this transaction.
    pub fn policy(&self) -> Result<BackendRecoveryPolicy, StoreError> {
        Ok(self.recovery_policy()?.recovery)
    }

    /// The store's policy with its retries per window, as of this transaction.
    pub fn recovery_policy(&self) -> Result<RecoveryPolicy, StoreError> {
        read_policy(&self.meta, CURRENT_VERSION, self.path)
    }

    /// The default policy and every override as of this transaction; a damaged row is an
    /// error naming it, as [`Reader::policies`].
    pub fn policies(&self) -> Result<Policies, StoreError> {
        let default = self.recovery_policy()?;
        let table = self
            .txn
            .open_table(OVERRIDES)
            .map_err(|e| engine_err(self.path, e))?;
        read_policies(&table, default, self.path)?.checked()
    }

    /// Persists a new policy, keeping the stored retries per window (1 when none is stored).
    pub fn set_policy(&mut self, policy: &BackendRecoveryPolicy) -> Result<(), StoreError> {
        let retries = match self.meta.get(schema::META_POLICY) {
            Ok(Some(old)) => {
                record::decode_policy(old.value(), CURRENT_VERSION).map_or(1, |(_, n)| n)
            }
            Ok(None) => 1,
            Err(e) => return Err(engine_err(self.path, e)),
        };
        self.set_recovery_policy(&RecoveryPolicy::new(*policy, retries))
    }

    /// The policy that judges `key` as of this transaction.
    pub fn policy_for(&self, key: &BackendKey) -> Result<AppliedPolicy, StoreError> {
        let default = self.recovery_policy()?;
        let table = self
            .txn
            .open_table(OVERRIDES)
            .map_err(|e| engine_err(self.path, e))?;
        applied_policy(&table, key, default, self.path)
    }

    /// Stores `policy` as the override for `scope`; returns false when it was already stored.
    pub fn set_override(
        &mut self,
        scope: &PolicyScope,
        policy: &RecoveryPolicy,
    ) -> Result<bool, StoreError> {
        policy.validate()?;
        let path = self.path;
        let bytes = record::encode_policy(&policy.recovery, policy.retries_per_window, self.path)?;
        let mut table = self
            .txn
            .open_table(OVERRIDES)
            .map_err(|e| engine_err(path, e))?;
        let text = scope.to_string();
        let old = table
            .insert(text.as_bytes(), bytes.as_slice())
            .map_err(|e| engine_err(path, e))?
            .map(|v| v.value().to_vec());
        Ok(old.as_deref() != Some(bytes.as_slice()))
    }

    /// Removes the override for `scope`; returns whether there was one.
    pub fn remove_override(&mut self, scope: &PolicyScope) -> Result<bool, StoreError> {
        let path = self.path;
        let mut table = self
            .txn
            .open_table(OVERRIDES)
            .map_err(|e| engine_err(path, e))?;
        let removed = table
            .remove(scope.to_string().as_bytes())
            .map_err(|e| engine_err(path, e))?
            .is_some();
        Ok(removed)
    }

    /// Persists a new policy with its retries per window.
    pub fn set_recovery_policy(&mut self, policy: &RecoveryPolicy) -> Result<(), StoreError> {
        crate::policy::validate_retries(policy.retries_per_window)?;
        let bytes = record::encode_policy(&policy.recovery, policy.retries_per_window, self.path)?;
        self.meta
            .insert(schema::META_POLICY, bytes.as_slice())
            .map_err(|e| engine_err(self.path, e))?;
        Ok(())
    }
}

pub(super) fn read_policy(
    meta: &impl ReadableTable<&'static [u8], &'static [u8]>,
    schema: u32,
    path: &Path,
) -> Result<RecoveryPolicy, StoreError> {
    let value = meta
        .get(schema::META_POLICY)
        .map_err(|e| engine_err(path, e))?
        .ok_or_else(|| missing_meta(path, "policy"))?;
    record::decode_policy(value.value(), schema)
        .map(|(policy, retries)| RecoveryPolicy::new(policy, retries))
        .map_err(|e| StoreError::Corrupt {
            path: path.to_owned(),
            detail: format!("meta policy: {e}"),
        })
}

pub(super) fn decode_override(
    scope: &[u8],
    value: &[u8],
    path: &Path,
) -> Result<(PolicyScope, RecoveryPolicy), DamagedOverride> {
    let text = String::from_utf8_lossy(scope);
    let damaged = |detail: String| DamagedOverride::new(path.to_owned(), text.to_string(), detail);
    let Ok(utf8) = std::str::from_utf8(scope) else {
        return Err(damaged("its scope text is not UTF-8".into()));
    };
    let parsed = PolicyScope::parse(utf8).map_err(|e| damaged(format!("scope: {e}")))?;
    let (policy, retries) = record::decode_policy(value, CURRENT_VERSION)
        .map_err(|e| damaged(format!("value: {e}")))?;
    // A value that decodes but that no `policy set` could have stored is damage too: judging
    // by it could retry a crash loop forever.
    crate::policy::validate_retries(retries)
        .and_then(|()| policy.validate())
        .map_err(|e| damaged(format!("value out of range: {e}")))?;
    Ok((parsed, RecoveryPolicy::new(policy, retries)))
}

// Each row is decoded separately, so one damaged row does not hide the others.
fn read_policies(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    default: RecoveryPolicy,
    path: &Path,
) -> Result<StoredPolicies, StoreError> {
    let (mut overrides, mut damaged) = (Vec::new(), Vec::new());
    for item in table.iter().map_err(|e| engine_err(path, e))? {
        let (scope, value) = item.map_err(|e| engine_err(path, e))?;
        match decode_override(scope.value(), value.value(), path) {
            Ok(row) => overrides.push(row),
            Err(row) => damaged.push(row),
        }
    }
    Ok(StoredPolicies::new(
        Policies { default, overrides },
        damaged,
    ))
}

// Two point lookups, most specific first: no scan, whatever the number of overrides.
fn applied_policy(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &BackendKey,
    default: RecoveryPolicy,
    path: &Path,
) -> Result<AppliedPolicy, StoreError> {
    for scope in overrides::scopes_of(key) {
        if let Some(value) = table
            .get(scope.as_bytes())
            .map_err(|e| engine_err(path, e))?
        {
            // A damaged row of the deciding scope fails the key: never judged by another policy.
            let (scope, policy) = decode_override(scope.as_bytes(), value.value(), path)
                .map_err(|row| row.error())?;
            return Ok(AppliedPolicy {
                policy,
                scope: Some(scope),
            });
        }
    }
    Ok(AppliedPolicy {
        policy: default,
        scope: None,
    })
}
