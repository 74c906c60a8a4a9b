//! Storage of AgentCore Identity: workload identities and credential providers, and the OAuth2
//! tokens cached for them.
//!
//! The domain (`berth-identity`) owns every rule and the wire shapes; this module only stores
//! rows. Secrets reach it already sealed by the token vault: the store never sees a clear value.

use crate::Error;
use async_trait::async_trait;
use berth_types::EpochMillis;
use serde_json::Value;

/// One identity resource.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityRow {
    /// `workload-identity`, `apikey-provider` or `oauth2-provider`.
    pub kind: String,
    /// Unique name within its kind.
    pub name: String,
    /// Everything else, in the domain's own JSON shape (never a secret).
    pub spec: Value,
    /// The vault's ciphertext of the resource's secret (API key, client secret), if any.
    pub secret: Option<Vec<u8>>,
    /// Creation time.
    pub created_at: EpochMillis,
    /// Last change.
    pub updated_at: EpochMillis,
}

/// Storage of AgentCore Identity.
#[async_trait]
pub trait IdentityStore: Send + Sync + 'static {
    /// Inserts a resource (fails with `AlreadyExists("identity resource name")`).
    async fn insert_identity(&self, r: &IdentityRow) -> Result<(), Error>;
    /// Replaces a resource; false when there was none.
    async fn update_identity(&self, r: &IdentityRow) -> Result<bool, Error>;
    /// A resource by kind and name.
    async fn identity(&self, kind: &str, name: &str) -> Result<Option<IdentityRow>, Error>;
    /// Resources of a kind in name order after `after`.
    async fn list_identities(
        &self,
        kind: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<IdentityRow>, Error>;
    /// Removes a resource (and its cached tokens); false when there was none.
    async fn delete_identity(&self, kind: &str, name: &str) -> Result<bool, Error>;
    /// A cached, sealed token still valid at `now`.
    async fn cached_token(
        &self,
        provider: &str,
        key: &str,
        now: EpochMillis,
    ) -> Result<Option<Vec<u8>>, Error>;
    /// Caches a sealed token until `expires_at`.
    async fn put_cached_token(
        &self,
        provider: &str,
        key: &str,
        sealed: &[u8],
        expires_at: EpochMillis,
    ) -> Result<(), Error>;
    /// Forgets every cached token of a provider.
    async fn clear_cached_tokens(&self, provider: &str) -> Result<(), Error>;
    /// Removes the resources of a kind last changed before `before`; how many went.
    async fn delete_identities_before(&self, kind: &str, before: EpochMillis)
    -> Result<u64, Error>;
}
