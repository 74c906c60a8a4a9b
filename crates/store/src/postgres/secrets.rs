//! PostgreSQL SQL of secrets (rows in [`crate::secrets`]).

#![allow(unused_variables)]

use super::PgStore;
use crate::Error;
use crate::secrets::SecretStore;
use crate::secrets::{SealedSecret, SecretRow};
use async_trait::async_trait;
use berth_types::EpochMillis;

#[async_trait]
impl SecretStore for PgStore {
    async fn put_secret(
        &self,
        name: &str,
        sealed: &[u8],
        now: EpochMillis,
    ) -> Result<SecretRow, Error> {
        Err(super::not_yet("secrets"))
    }
    async fn secret(&self, name: &str) -> Result<Option<SealedSecret>, Error> {
        Err(super::not_yet("secrets"))
    }
    async fn list_secrets(&self, prefix: &str) -> Result<Vec<SecretRow>, Error> {
        Err(super::not_yet("secrets"))
    }
    async fn delete_secret(&self, name: &str, now: EpochMillis) -> Result<bool, Error> {
        Err(super::not_yet("secrets"))
    }
}
