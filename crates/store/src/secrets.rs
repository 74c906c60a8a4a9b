//! Storage of secrets (`berth secrets`): named values, sealed by the token vault before they get
//! here.
//!
//! The domain (`berth_identity::secrets`) owns names, sealing and the rules; this module only
//! stores rows. A deleted secret stays as a tombstone so its version number never repeats.

use crate::Error;
use async_trait::async_trait;
use berth_types::EpochMillis;

/// A stored secret without its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRow {
    /// Its name.
    pub name: String,
    /// 1 for the first put, one more for each put after it (across deletes).
    pub version: u64,
    /// When it was created (or created again after a delete).
    pub created_at: EpochMillis,
    /// When its value was last put.
    pub updated_at: EpochMillis,
}

/// A stored secret with its sealed value.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    /// The row.
    pub row: SecretRow,
    /// The vault's ciphertext of the value.
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSecret")
            .field("row", &self.row)
            .field("sealed", &format_args!("<{} bytes>", self.sealed.len()))
            .finish()
    }
}

/// Storage of secrets.
#[async_trait]
pub trait SecretStore: Send + Sync + 'static {
    /// Creates or replaces a secret's sealed value in one statement; answers the row with its
    /// new version (one more than the last, tombstones included).
    async fn put_secret(
        &self,
        name: &str,
        sealed: &[u8],
        now: EpochMillis,
    ) -> Result<SecretRow, Error>;
    /// A live secret with its sealed value.
    async fn secret(&self, name: &str) -> Result<Option<SealedSecret>, Error>;
    /// Live secrets whose name starts with `prefix`, by name.
    async fn list_secrets(&self, prefix: &str) -> Result<Vec<SecretRow>, Error>;
    /// Deletes a secret (keeping its tombstone); false when there was no live one.
    async fn delete_secret(&self, name: &str, now: EpochMillis) -> Result<bool, Error>;
}
