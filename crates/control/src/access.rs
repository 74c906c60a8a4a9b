//! Roles and access keys, the identities Berth's authorization attaches policies to, and the
//! audit entries for what is authorized elsewhere (denials, memory and artifact-store writes).
//!
//! A role is named by a runtime's `roleArn` (its last path segment, as IAM names roles) and
//! carries IAM policy documents. An access key (for people and CI) carries one policy; its
//! secret is derived from the root secret by `berth_auth::KeyRing`, so only its id, name,
//! policy and status are stored. Every change is audited in its own transaction.

use crate::{Control, audit, internal};
use berth_api::ApiError;
use berth_store::{AccessKeyRow, RoleRow, Write};
use berth_types::{iso8601, now_millis};
use serde::Serialize;
use serde_json::Value;
use tracing::warn;

/// IAM's limit on a role name's length.
const MAX_ROLE_NAME: usize = 64;

/// The role name a role ARN (`arn:aws:iam::ACCOUNT:role/[PATH/]NAME`) or a bare name stands for.
/// `None` when it is neither.
pub fn role_name(name_or_arn: &str) -> Option<&str> {
    let name = if name_or_arn.starts_with("arn:") {
        let resource = name_or_arn.splitn(6, ':').nth(5)?;
        resource.strip_prefix("role/")?.rsplit('/').next()?
    } else {
        name_or_arn
    };
    let valid = !name.is_empty()
        && name.len() <= MAX_ROLE_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    valid.then_some(name)
}

/// Checks every document parses as a policy Berth can evaluate.
fn validate(docs: &[Value], field: &str) -> Result<(), ApiError> {
    if docs.is_empty() {
        return Err(ApiError::field(
            field,
            "at least one policy document is required",
        ));
    }
    for d in docs {
        berth_policy::Policy::from_value(d).map_err(|e| ApiError::field(field, e.to_string()))?;
    }
    Ok(())
}

/// A role as the native API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    /// Its name.
    pub role_name: String,
    /// Its ARN.
    pub role_arn: String,
    /// Its identity policy documents, as written.
    pub policies: Vec<Value>,
    /// ISO 8601.
    pub created_at: String,
    /// ISO 8601.
    pub updated_at: String,
}

/// Every role.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Roles {
    /// The roles, by name.
    pub roles: Vec<Role>,
}

/// Whether an access key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum KeyStatus {
    /// It signs.
    Active,
    /// Revoked.
    Inactive,
}

/// An access key as the native API shows it (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessKey {
    /// Its id (`AKIA...`).
    pub access_key_id: String,
    /// Its name.
    pub name: String,
    /// Its identity policy document, as written.
    pub policy: Value,
    /// Active or revoked.
    pub status: KeyStatus,
    /// ISO 8601.
    pub created_at: String,
    /// When it was revoked, ISO 8601 (`null` while active).
    pub revoked_at: Option<String>,
}

/// A new access key with its secret: the only answer that ever carries one.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAccessKey {
    /// The key.
    #[serde(flatten)]
    pub key: AccessKey,
    /// Its secret.
    pub secret_access_key: String,
}

/// Every access key.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeys {
    /// The keys.
    pub access_keys: Vec<AccessKey>,
}

fn role_body(r: &RoleRow) -> Role {
    Role {
        role_name: r.name.clone(),
        role_arn: r.arn.clone(),
        policies: r.policies.clone(),
        created_at: iso8601(r.created_at),
        updated_at: iso8601(r.updated_at),
    }
}

fn key_body(k: &AccessKeyRow) -> AccessKey {
    AccessKey {
        access_key_id: k.id.clone(),
        name: k.name.clone(),
        policy: k.policy.clone(),
        status: if k.active {
            KeyStatus::Active
        } else {
            KeyStatus::Inactive
        },
        created_at: iso8601(k.created_at),
        revoked_at: k.revoked_at.map(iso8601),
    }
}

/// A view as JSON, for audit records.
fn record<T: Serialize>(t: &T) -> Result<Value, ApiError> {
    serde_json::to_value(t)
        .map_err(|e| ApiError::internal_because(format_args!("encoding an audit record: {e}")))
}

impl Control {
    /// The ARN of the role `name` in this server's account.
    pub fn role_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:iam::{}:role/{name}",
            self.inner.partition.account_id
        )
    }

    /// The ARN an access key is audited and matched (`aws:PrincipalArn`) as.
    pub fn access_key_arn(&self, id: &str) -> String {
        format!(
            "arn:aws:iam::{}:user/berth-key/{id}",
            self.inner.partition.account_id
        )
    }

    /// Creates or replaces the role `name_or_arn` with `policies`.
    pub async fn put_role(
        &self,
        name_or_arn: &str,
        policies: Vec<Value>,
    ) -> Result<Role, ApiError> {
        let name = role_name(name_or_arn).ok_or_else(|| {
            ApiError::field(
                "roleName",
                format!("{name_or_arn:?} is neither a role name ([A-Za-z0-9+=,.@_-], 1-64) nor a role ARN"),
            )
        })?;
        validate(&policies, "policies")?;
        let _g = self.inner.write_lock.lock().await;
        let before = self.inner.store.role(name).await.map_err(internal)?;
        let now = now_millis();
        let arn = if name_or_arn.starts_with("arn:") {
            name_or_arn.to_owned()
        } else {
            before
                .as_ref()
                .map_or_else(|| self.role_arn(name), |r| r.arn.clone())
        };
        let row = RoleRow {
            name: name.to_owned(),
            arn: arn.clone(),
            policies,
            created_at: before.as_ref().map_or(now, |r| r.created_at),
            updated_at: now,
        };
        let body = role_body(&row);
        self.inner
            .store
            .apply(vec![
                Write::PutRole(row),
                audit::entry(
                    "berth:PutRole",
                    &arn,
                    match &before {
                        Some(b) => record(&role_body(b))?,
                        None => Value::Null,
                    },
                    record(&body)?,
                ),
            ])
            .await
            .map_err(internal)?;
        Ok(body)
    }

    /// The role a runtime's `roleArn` (or a bare name) names, if Berth knows it.
    pub async fn role(&self, name_or_arn: &str) -> Result<Option<RoleRow>, ApiError> {
        let Some(name) = role_name(name_or_arn) else {
            return Ok(None);
        };
        self.inner.store.role(name).await.map_err(internal)
    }

    /// `GET /berth/v1/roles/{name}`.
    pub async fn get_role(&self, name_or_arn: &str) -> Result<Role, ApiError> {
        self.role(name_or_arn)
            .await?
            .map(|r| role_body(&r))
            .ok_or_else(|| ApiError::not_found(format!("no role {name_or_arn}")))
    }

    /// Every role.
    pub async fn list_roles(&self) -> Result<Roles, ApiError> {
        let roles = self.inner.store.roles().await.map_err(internal)?;
        Ok(Roles {
            roles: roles.iter().map(role_body).collect(),
        })
    }

    /// Deletes a role; runtimes naming it get the default role from their next request on.
    pub async fn delete_role(&self, name_or_arn: &str) -> Result<Role, ApiError> {
        let _g = self.inner.write_lock.lock().await;
        let role = self
            .role(name_or_arn)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no role {name_or_arn}")))?;
        let before = role_body(&role);
        self.inner
            .store
            .apply(vec![
                Write::DeleteRole {
                    name: role.name.clone(),
                },
                audit::entry("berth:DeleteRole", &role.arn, record(&before)?, Value::Null),
            ])
            .await
            .map_err(internal)?;
        Ok(before)
    }

    /// Records a new access key `id` (minted by the caller) with `policy`.
    pub async fn create_access_key(
        &self,
        id: &str,
        name: &str,
        policy: Value,
    ) -> Result<AccessKey, ApiError> {
        validate(std::slice::from_ref(&policy), "policy")?;
        let row = AccessKeyRow {
            id: id.to_owned(),
            name: name.to_owned(),
            policy,
            active: true,
            created_at: now_millis(),
            revoked_at: None,
        };
        let body = key_body(&row);
        self.inner
            .store
            .apply(vec![
                Write::InsertAccessKey(row),
                audit::entry(
                    "berth:CreateAccessKey",
                    &self.access_key_arn(id),
                    Value::Null,
                    record(&body)?,
                ),
            ])
            .await
            .map_err(|e| match e {
                berth_store::Error::AlreadyExists(_) => {
                    ApiError::conflict(format!("access key {id} already exists"))
                }
                other => internal(other),
            })?;
        Ok(body)
    }

    /// An access key, active or revoked.
    pub async fn access_key(&self, id: &str) -> Result<Option<AccessKeyRow>, ApiError> {
        self.inner.store.access_key(id).await.map_err(internal)
    }

    /// Every access key (never a secret: none is stored).
    pub async fn list_access_keys(&self) -> Result<AccessKeys, ApiError> {
        let keys = self.inner.store.access_keys().await.map_err(internal)?;
        Ok(AccessKeys {
            access_keys: keys.iter().map(key_body).collect(),
        })
    }

    /// Revokes an access key: it signs nothing from now on.
    pub async fn revoke_access_key(&self, id: &str) -> Result<AccessKey, ApiError> {
        let _g = self.inner.write_lock.lock().await;
        let key = self
            .access_key(id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no access key {id}")))?;
        if !key.active {
            return Ok(key_body(&key));
        }
        let at = now_millis();
        let after = AccessKeyRow {
            active: false,
            revoked_at: Some(at),
            ..key.clone()
        };
        let body = key_body(&after);
        self.inner
            .store
            .apply(vec![
                Write::RevokeAccessKey {
                    id: id.to_owned(),
                    at,
                },
                audit::entry(
                    "berth:RevokeAccessKey",
                    &self.access_key_arn(id),
                    record(&key_body(&key))?,
                    record(&body)?,
                ),
            ])
            .await
            .map_err(internal)?;
        Ok(body)
    }

    /// Appends an audit entry for something authorized or done outside the control store's
    /// transactions (an authorization denial, a memory or artifact-store write), as the current
    /// caller. A failure is logged, not returned: the request's outcome is already decided.
    pub async fn audit_event(&self, action: &str, resource: &str, after: Value) {
        let entry = audit::entry(action, resource, Value::Null, after);
        let store = self.inner.store.clone();
        // In a task of its own: the action it records has happened, so the entry is written even
        // if the request awaiting it is dropped (its client left).
        let written = tokio::spawn(async move { store.apply(vec![entry]).await }).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, %action, %resource, "cannot append an audit entry"),
            Err(e) => warn!(error = %e, %action, %resource, "cannot append an audit entry"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::role_name;

    #[test]
    fn role_names_from_arns_and_names() {
        assert_eq!(role_name("arn:aws:iam::123456789012:role/ci"), Some("ci"));
        assert_eq!(
            role_name("arn:aws:iam::123456789012:role/service-role/Agent.Role@x"),
            Some("Agent.Role@x")
        );
        assert_eq!(role_name("ci-deploy"), Some("ci-deploy"));
        assert_eq!(role_name("arn:aws:iam::123456789012:user/ci"), None);
        assert_eq!(role_name("arn:aws:iam::1:role"), None);
        assert_eq!(role_name("bad name"), None);
        assert_eq!(role_name(""), None);
        assert_eq!(role_name(&"x".repeat(65)), None);
    }
}
