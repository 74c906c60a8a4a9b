//! Secrets (`berth secrets`): named values kept sealed by the token vault, read back in clear
//! only inside the server: by a sandbox's start (a runtime environment variable whose whole value
//! is `berth-secret:NAME`) and by the model gateway (provider API keys).
//!
//! A value is sealed with the [`Vault`] (AES-256-GCM under `<data dir>/vault.key`, a fresh nonce
//! per value, `secret/<name>` as associated data) before it reaches the store, so the database
//! never holds it in clear. Nothing outside this process gets a value back: the native API and
//! the CLI see [`SecretMeta`] only.
//!
//! Architecture Invariant: [`Secrets`] is made once per process and cloned; [`Secrets::changes`]
//! counts the puts and deletes committed through any clone of it.

use crate::vault::Vault;
use berth_store::secrets::{SecretRow, SecretStore};
use berth_types::{EpochMillis, now_millis};
use std::sync::Arc;
use tokio::sync::watch;

/// The longest name.
pub const MAX_NAME_LEN: usize = 128;
/// The largest value, in bytes (values end up in environment variables and HTTP headers).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// What secrets refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The name is empty, too long, or has a character outside `[A-Za-z0-9/_.-]`.
    #[error("invalid secret name {name:?}: {reason}")]
    InvalidName {
        /// The name as given (names are not secret).
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A list prefix has a character no name can have, or is longer than a name.
    #[error("invalid secret name prefix {prefix:?}: {reason}")]
    InvalidPrefix {
        /// The prefix as given.
        prefix: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The value cannot be kept (empty, too large, or not usable as an environment variable).
    #[error("invalid value for secret {name}: {reason}")]
    InvalidValue {
        /// The secret's name (never the value).
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A stored value does not open with this server's vault key: it was tampered with, or
    /// `vault.key` is not the key it was sealed under.
    #[error(
        "secret {name} does not open with this server's vault key (was vault.key replaced? \
         put the secret again)"
    )]
    Unsealable {
        /// The secret's name.
        name: String,
    },
    /// The store failed.
    #[error("secrets store: {0}")]
    Store(#[from] berth_store::Error),
}

/// A secret without its value: what lists, the native API and the CLI show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMeta {
    /// Its name.
    pub name: String,
    /// 1 for the first put; every put adds one (a deleted and re-created secret goes on from
    /// its old version).
    pub version: u64,
    /// When it was created, epoch milliseconds.
    pub created_at: EpochMillis,
    /// When its value was last put, epoch milliseconds.
    pub updated_at: EpochMillis,
}

impl From<SecretRow> for SecretMeta {
    fn from(r: SecretRow) -> Self {
        Self {
            name: r.name,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// A secret with its value in clear. Its `Debug` hides the value, so logging one leaks nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// Its name.
    pub name: String,
    /// The version `value` is.
    pub version: u64,
    /// The value, decrypted.
    pub value: String,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("value", &"<redacted>")
            .finish()
    }
}

/// Checks a secret name: 1-128 characters of `[A-Za-z0-9/_.-]`, other than `.` and `..`.
pub fn validate_name(name: &str) -> Result<(), Error> {
    let bad = |reason: String| {
        Err(Error::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("a name must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return bad(format!(
            "a name has at most {MAX_NAME_LEN} characters, this one has {}",
            name.chars().count()
        ));
    }
    if name == "." || name == ".." {
        // A path segment of its own in `/berth/v1/secrets/{name}`, which clients normalise away.
        return bad("\".\" and \"..\" are not names".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '.' | '-')))
    {
        return bad(format!(
            "{c:?} is not allowed: use letters, digits and / _ . -"
        ));
    }
    Ok(())
}

fn validate_value(name: &str, value: &str) -> Result<(), Error> {
    let bad = |reason: String| {
        Err(Error::InvalidValue {
            name: name.to_owned(),
            reason,
        })
    };
    if value.is_empty() {
        return bad("the value must not be empty".into());
    }
    if value.len() > MAX_VALUE_BYTES {
        return bad(format!(
            "the value has {} bytes, at most {MAX_VALUE_BYTES} are allowed",
            value.len()
        ));
    }
    if value.contains('\0') {
        return bad("the value holds a NUL character, which no environment variable can".into());
    }
    Ok(())
}

/// The associated data a secret's value is sealed with: a ciphertext copied to another name
/// does not open.
fn aad(name: &str) -> String {
    format!("secret/{name}")
}

/// The secrets of one server (cheap to clone; every clone shares one change counter).
#[derive(Clone)]
pub struct Secrets {
    store: Arc<dyn SecretStore>,
    vault: Vault,
    changes: Arc<watch::Sender<u64>>,
}

impl Secrets {
    /// Secrets over `store`, sealed by `vault` (the server's one vault: `Vault::open_dir`).
    pub fn new(store: Arc<dyn SecretStore>, vault: Vault) -> Self {
        Self {
            store,
            vault,
            changes: Arc::new(watch::channel(0).0),
        }
    }

    /// Creates `name` or replaces its value; the answer carries the new version.
    pub async fn put(&self, name: &str, value: &str) -> Result<SecretMeta, Error> {
        validate_name(name)?;
        validate_value(name, value)?;
        let sealed = self.vault.seal(value.as_bytes(), &aad(name));
        let row = self.store.put_secret(name, &sealed, now_millis()).await?;
        self.bump();
        Ok(row.into())
    }

    /// The current value of `name`, decrypted; `None` when there is no such secret.
    pub async fn get(&self, name: &str) -> Result<Option<Secret>, Error> {
        validate_name(name)?;
        let Some(s) = self.store.secret(name).await? else {
            return Ok(None);
        };
        let unsealable = || Error::Unsealable {
            name: name.to_owned(),
        };
        let plain = self
            .vault
            .open(&s.sealed, &aad(name))
            .map_err(|_| unsealable())?;
        let value = String::from_utf8(plain).map_err(|_| unsealable())?;
        Ok(Some(Secret {
            name: s.row.name,
            version: s.row.version,
            value,
        }))
    }

    /// The metadata of `name` (no value, nothing decrypted); `None` when there is none.
    pub async fn meta(&self, name: &str) -> Result<Option<SecretMeta>, Error> {
        validate_name(name)?;
        Ok(self.store.secret(name).await?.map(|s| s.row.into()))
    }

    /// Secrets whose name starts with `prefix` (`""`: all), sorted by name; never values.
    pub async fn list(&self, prefix: &str) -> Result<Vec<SecretMeta>, Error> {
        if !prefix.is_empty()
            && let Err(Error::InvalidName { reason, .. }) = validate_name(prefix)
        {
            return Err(Error::InvalidPrefix {
                prefix: prefix.to_owned(),
                reason,
            });
        }
        Ok(self
            .store
            .list_secrets(prefix)
            .await?
            .into_iter()
            .map(SecretMeta::from)
            .collect())
    }

    /// Deletes `name`; false when there was no such secret.
    pub async fn delete(&self, name: &str) -> Result<bool, Error> {
        validate_name(name)?;
        let deleted = self.store.delete_secret(name, now_millis()).await?;
        if deleted {
            self.bump();
        }
        Ok(deleted)
    }

    /// With several nodes on one store: checks every `every` until `shutdown` whether another
    /// node put or deleted a secret and bumps the change counter if so, so this node's readers
    /// (the model gateway) see it within `every`.
    pub async fn watch_store(
        &self,
        every: std::time::Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut seen = None;
        loop {
            if let Err(e) = self.notice_store_changes(&mut seen).await {
                tracing::warn!(error = %e, "cannot read secrets to notice other nodes' changes");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// One look of [`Secrets::watch_store`]: bumps the change counter when the stored names and
    /// versions differ from `seen` (the previous look; `None` on the first), then remembers them.
    pub async fn notice_store_changes(
        &self,
        seen: &mut Option<Vec<(String, u64)>>,
    ) -> Result<(), Error> {
        let now: Vec<_> = self
            .store
            .list_secrets("")
            .await?
            .into_iter()
            .map(|r| (r.name, r.version))
            .collect();
        if seen.as_ref().is_some_and(|s| *s != now) {
            self.bump();
        }
        *seen = Some(now);
        Ok(())
    }

    /// A generation counter, bumped after every put and delete committed in this process
    /// (through any clone): a reader caching values (the model gateway) re-reads when it moves.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn bump(&self) {
        // `send_modify` updates the value even while nobody is subscribed.
        self.changes.send_modify(|g| *g = g.wrapping_add(1));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    async fn secrets() -> (tempfile::TempDir, Secrets) {
        let d = tempfile::tempdir().unwrap();
        let store =
            berth_store::open_all(&format!("sqlite://{}", d.path().join("berth.db").display()))
                .await
                .unwrap();
        let vault = Vault::open_dir(d.path()).unwrap();
        (d, Secrets::new(store.secrets, vault))
    }

    #[test]
    fn names_are_checked_with_clear_errors() {
        for ok in ["a", "openai/api-key", "A.b_c-9", &"x".repeat(128)] {
            validate_name(ok).unwrap();
        }
        let reason = |n: &str| match validate_name(n) {
            Err(e @ Error::InvalidName { .. }) => e.to_string(),
            other => panic!("{n:?}: {other:?}"),
        };
        assert!(reason("").contains("must not be empty"));
        assert!(reason(&"x".repeat(129)).contains("at most 128 characters, this one has 129"));
        assert!(reason("a b").contains("' ' is not allowed"));
        assert!(reason("key=1").contains("'=' is not allowed"));
        assert!(reason("é").contains("not allowed"));
        assert!(reason("a:b").contains("':' is not allowed"));
        assert!(reason("..").contains("are not names"));
        validate_name("a/../b").unwrap();
    }

    #[tokio::test]
    async fn another_nodes_change_moves_this_nodes_counter() {
        let (d, here) = secrets().await;
        // Another node: its own handle on the database, the same vault key.
        let store =
            berth_store::open_all(&format!("sqlite://{}", d.path().join("berth.db").display()))
                .await
                .unwrap();
        let there = Secrets::new(store.secrets, Vault::open_dir(d.path()).unwrap());
        let changes = here.changes();
        let mut seen = None;
        here.notice_store_changes(&mut seen).await.unwrap();
        here.notice_store_changes(&mut seen).await.unwrap();
        assert_eq!(*changes.borrow(), 0, "nothing changed");
        there.put("k", "v1").await.unwrap();
        here.notice_store_changes(&mut seen).await.unwrap();
        assert_eq!(*changes.borrow(), 1);
        there.put("k", "v2").await.unwrap();
        here.notice_store_changes(&mut seen).await.unwrap();
        there.delete("k").await.unwrap();
        here.notice_store_changes(&mut seen).await.unwrap();
        assert_eq!(*changes.borrow(), 3);
    }

    #[tokio::test]
    async fn put_get_round_trips_and_bumps_the_version() {
        let (_d, s) = secrets().await;
        let m1 = s.put("openai/key", "sk-first").await.unwrap();
        assert_eq!((m1.name.as_str(), m1.version), ("openai/key", 1));
        let got = s.get("openai/key").await.unwrap().unwrap();
        assert_eq!((got.version, got.value.as_str()), (1, "sk-first"));
        let m2 = s.put("openai/key", "sk-second").await.unwrap();
        assert_eq!(m2.version, 2);
        assert_eq!(m2.created_at, m1.created_at);
        let got = s.get("openai/key").await.unwrap().unwrap();
        assert_eq!((got.version, got.value.as_str()), (2, "sk-second"));
        assert!(
            !format!("{got:?}").contains("sk-second"),
            "Debug hides the value"
        );
        assert_eq!(s.meta("openai/key").await.unwrap().unwrap(), m2);
        assert!(s.get("missing").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn list_is_by_prefix_and_sorted_and_delete_forgets() {
        let (_d, s) = secrets().await;
        for n in ["b/2", "a/1", "b/1", "c"] {
            s.put(n, "v").await.unwrap();
        }
        let names = |v: Vec<SecretMeta>| v.into_iter().map(|m| m.name).collect::<Vec<_>>();
        assert_eq!(names(s.list("").await.unwrap()), ["a/1", "b/1", "b/2", "c"]);
        assert_eq!(names(s.list("b/").await.unwrap()), ["b/1", "b/2"]);
        assert!(s.delete("b/1").await.unwrap());
        assert!(!s.delete("b/1").await.unwrap());
        assert!(s.get("b/1").await.unwrap().is_none());
        assert_eq!(names(s.list("b/").await.unwrap()), ["b/2"]);
        assert_eq!(s.put("b/1", "again").await.unwrap().version, 2);
    }

    #[tokio::test]
    async fn bad_names_and_values_are_refused_before_the_store() {
        let (_d, s) = secrets().await;
        assert!(matches!(
            s.put("no spaces", "v").await,
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(s.get("a;b").await, Err(Error::InvalidName { .. })));
        assert!(matches!(s.delete("").await, Err(Error::InvalidName { .. })));
        for bad in [
            String::new(),
            "a\0b".into(),
            "x".repeat(MAX_VALUE_BYTES + 1),
        ] {
            let e = s.put("k", &bad).await.unwrap_err();
            assert!(matches!(e, Error::InvalidValue { .. }), "{e}");
            assert!(!e.to_string().contains("a\0b"));
        }
        assert!(s.list("").await.unwrap().is_empty());
        assert!(matches!(
            s.list("a*").await,
            Err(Error::InvalidPrefix { .. })
        ));
    }

    #[tokio::test]
    async fn the_database_never_holds_the_value_in_clear() {
        let (d, s) = secrets().await;
        let value = "plaintext-canary-0123456789";
        s.put("canary", value).await.unwrap();
        s.put("canary", value).await.unwrap();
        assert_eq!(s.get("canary").await.unwrap().unwrap().value, value);
        // The database and its WAL: every byte SQLite wrote.
        let mut name_seen = false;
        for entry in std::fs::read_dir(d.path()).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("berth.db") {
                let bytes = std::fs::read(&path).unwrap();
                assert!(
                    !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
                    "{name} holds the value in clear"
                );
                name_seen |= bytes.windows(6).any(|w| w == b"canary");
            }
        }
        assert!(name_seen, "the row was found (its name is stored in clear)");
    }

    #[tokio::test]
    async fn a_value_sealed_for_another_name_or_key_does_not_open() {
        let (d, s) = secrets().await;
        s.put("a", "value-a").await.unwrap();
        // Another vault key over the same database: the value is refused, not garbage.
        let store =
            berth_store::open_all(&format!("sqlite://{}", d.path().join("berth.db").display()))
                .await
                .unwrap();
        let other = tempfile::tempdir().unwrap();
        let foreign = Secrets::new(store.secrets, Vault::open_dir(other.path()).unwrap());
        let e = foreign.get("a").await.unwrap_err();
        assert!(matches!(e, Error::Unsealable { .. }), "{e}");
        assert!(e.to_string().contains("secret a"));
        // The same key, but the ciphertext under another name.
        let sealed = Vault::open_dir(d.path()).unwrap().seal(b"x", &aad("b"));
        assert!(
            Vault::open_dir(d.path())
                .unwrap()
                .open(&sealed, &aad("a"))
                .is_err()
        );
    }

    #[tokio::test]
    async fn changes_count_committed_puts_and_deletes_across_clones() {
        let (_d, s) = secrets().await;
        let mut rx = s.changes();
        assert_eq!(*rx.borrow_and_update(), 0);
        let clone = s.clone();
        clone.put("k", "v").await.unwrap();
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 1);
        assert!(s.put("bad name", "v").await.is_err());
        assert!(!s.delete("absent").await.unwrap());
        assert!(
            !rx.has_changed().unwrap(),
            "refusals and no-ops change nothing"
        );
        s.delete("k").await.unwrap();
        assert_eq!(*rx.borrow_and_update(), 2);
        assert_eq!(*clone.changes().borrow(), 2);
    }
}
