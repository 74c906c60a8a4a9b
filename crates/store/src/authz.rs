//! Roles and access keys: the identities a policy is attached to. Backend-neutral rows; the SQL
//! is in each backend's module (`sqlite/authz.rs`).

use berth_types::EpochMillis;

/// A role: a name (what a runtime's `roleArn` ends in) and its policy documents.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleRow {
    /// The role name, unique.
    pub name: String,
    /// The role's ARN as the operator gave it, or Berth's own when given a bare name.
    pub arn: String,
    /// Policy documents, each a JSON object as written.
    pub policies: Vec<serde_json::Value>,
    /// When the role was first put.
    pub created_at: EpochMillis,
    /// When the role was last put.
    pub updated_at: EpochMillis,
}

/// An access key for a person or a CI pipeline. Its secret is derived, never stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessKeyRow {
    /// The access key id.
    pub id: String,
    /// A label chosen by the operator.
    pub name: String,
    /// The key's policy document.
    pub policy: serde_json::Value,
    /// Whether the key may still sign requests.
    pub active: bool,
    /// When the key was created.
    pub created_at: EpochMillis,
    /// When the key was revoked, if it was.
    pub revoked_at: Option<EpochMillis>,
}

/// A resource policy (`PutResourcePolicy`): the document as the caller wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourcePolicyRow {
    /// The resource's canonical ARN (runtime, runtime endpoint or memory).
    pub resource_arn: String,
    /// The policy document, JSON text as written.
    pub policy: String,
    /// When it was last put.
    pub updated_at: EpochMillis,
}
