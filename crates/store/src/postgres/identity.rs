//! PostgreSQL SQL of workload identities and credential providers (rows in [`crate::identity`]).

#![allow(unused_variables)]

use super::PgStore;
use crate::Error;
use crate::identity::IdentityRow;
use crate::identity::IdentityStore;
use async_trait::async_trait;
use berth_types::EpochMillis;

#[async_trait]
impl IdentityStore for PgStore {
    async fn insert_identity(&self, r: &IdentityRow) -> Result<(), Error> {
        Err(super::not_yet("identity"))
    }
    async fn update_identity(&self, r: &IdentityRow) -> Result<bool, Error> {
        Err(super::not_yet("identity"))
    }
    async fn identity(&self, kind: &str, name: &str) -> Result<Option<IdentityRow>, Error> {
        Err(super::not_yet("identity"))
    }
    async fn list_identities(
        &self,
        kind: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<IdentityRow>, Error> {
        Err(super::not_yet("identity"))
    }
    async fn delete_identity(&self, kind: &str, name: &str) -> Result<bool, Error> {
        Err(super::not_yet("identity"))
    }
    async fn cached_token(
        &self,
        provider: &str,
        key: &str,
        now: EpochMillis,
    ) -> Result<Option<Vec<u8>>, Error> {
        Err(super::not_yet("identity"))
    }
    async fn put_cached_token(
        &self,
        provider: &str,
        key: &str,
        sealed: &[u8],
        expires_at: EpochMillis,
    ) -> Result<(), Error> {
        Err(super::not_yet("identity"))
    }
    async fn clear_cached_tokens(&self, provider: &str) -> Result<(), Error> {
        Err(super::not_yet("identity"))
    }
    async fn delete_identities_before(
        &self,
        kind: &str,
        before: EpochMillis,
    ) -> Result<u64, Error> {
        Err(super::not_yet("identity"))
    }
}
