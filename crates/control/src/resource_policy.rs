//! Resource policies (`PutResourcePolicy`, `GetResourcePolicy`, `DeleteResourcePolicy`) on
//! runtimes, runtime endpoints and memories, by the resource's canonical ARN. A document is
//! validated with `berth_policy::Policy::parse_resource` before it is stored, kept as written,
//! and evaluated by the server's authorization next to the caller's identity policies. Every
//! change is audited in the same transaction. Deleting a runtime deletes the policies of it and
//! its endpoints (`Write::DeleteRuntime`), deleting an endpoint its own.

use crate::{Control, audit, internal};
use berth_api::ApiError;
use berth_api::control::ops::Empty;
use berth_store::{ResourcePolicyRow, Write};
use berth_types::now_millis;
use serde::Serialize;
use serde_json::Value;

/// `PutResourcePolicyResponse` / `GetResourcePolicyResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourcePolicy {
    /// The document, as written.
    pub policy: String,
}

fn no_policy(arn: &str) -> ApiError {
    ApiError::not_found(format!("no resource policy is attached to {arn}"))
}

impl Control {
    /// `PutResourcePolicy` on `arn` (canonical; the caller checked the resource exists).
    pub async fn put_resource_policy(
        &self,
        arn: &str,
        policy: &str,
    ) -> Result<ResourcePolicy, ApiError> {
        berth_policy::Policy::parse_resource(policy)
            .map_err(|e| ApiError::field("policy", e.to_string()))?;
        let _g = self.inner.write_lock.lock().await;
        let before = self
            .inner
            .store
            .resource_policy(arn)
            .await
            .map_err(internal)?;
        let row = ResourcePolicyRow {
            resource_arn: arn.to_owned(),
            policy: policy.to_owned(),
            updated_at: now_millis(),
        };
        self.inner
            .store
            .apply(vec![
                Write::PutResourcePolicy(row),
                audit::entry(
                    "PutResourcePolicy",
                    arn,
                    before.map_or(Value::Null, |b| Value::String(b.policy)),
                    Value::String(policy.to_owned()),
                ),
            ])
            .await
            .map_err(internal)?;
        Ok(ResourcePolicy {
            policy: policy.to_owned(),
        })
    }

    /// `GetResourcePolicy`: the document as written; ResourceNotFoundException without one.
    pub async fn get_resource_policy(&self, arn: &str) -> Result<ResourcePolicy, ApiError> {
        match self.resource_policy(arn).await? {
            Some(policy) => Ok(ResourcePolicy { policy }),
            None => Err(no_policy(arn)),
        }
    }

    /// `DeleteResourcePolicy`; ResourceNotFoundException when there is none.
    pub async fn delete_resource_policy(&self, arn: &str) -> Result<Empty, ApiError> {
        let _g = self.inner.write_lock.lock().await;
        let Some(before) = self
            .inner
            .store
            .resource_policy(arn)
            .await
            .map_err(internal)?
        else {
            return Err(no_policy(arn));
        };
        self.inner
            .store
            .apply(vec![
                Write::DeleteResourcePolicy {
                    arn: arn.to_owned(),
                    children: false,
                },
                audit::entry(
                    "DeleteResourcePolicy",
                    arn,
                    Value::String(before.policy),
                    Value::Null,
                ),
            ])
            .await
            .map_err(internal)?;
        Ok(Empty {})
    }

    /// Forgets the policy of a resource that was deleted (a memory: the memory service has no
    /// control-store transaction to put it in). Audited only when there was one.
    pub async fn forget_resource_policy(&self, arn: &str) -> Result<(), ApiError> {
        if self.resource_policy(arn).await?.is_none() {
            return Ok(());
        }
        self.delete_resource_policy(arn).await.map(drop)
    }

    /// The stored document of `arn`, if any (for authorization).
    pub async fn resource_policy(&self, arn: &str) -> Result<Option<String>, ApiError> {
        Ok(self
            .inner
            .store
            .resource_policy(arn)
            .await
            .map_err(internal)?
            .map(|r| r.policy))
    }
}
