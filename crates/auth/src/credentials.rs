//! Signing identities: generated credentials, the principals the server knows, and lookup.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use rand::Rng;
use rand::rngs::OsRng;

/// Prefix of generated access key ids ("Berth" in place of AWS's `AKIA`).
pub const ACCESS_KEY_ID_PREFIX: &str = "BKIA";

/// Length of a generated access key id, the same as AWS's.
const ACCESS_KEY_ID_LEN: usize = 20;
/// Length of a generated secret access key, the same as AWS's.
const SECRET_ACCESS_KEY_LEN: usize = 40;

/// AWS access key ids use upper-case base32 characters; keeping to them keeps ids recognisable.
const ACCESS_KEY_ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Alphanumerics only (AWS also uses `+` and `/`), so secrets paste safely into shells and URLs;
/// 40 of them still carry about 238 bits.
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A signing identity: an access key id and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Public identifier, sent in every request's credential scope.
    pub access_key_id: String,
    /// The HMAC secret; never sent and never logged.
    pub secret_access_key: String,
}

impl Credentials {
    /// Generates fresh credentials from the operating system's CSPRNG: a 20-character access key
    /// id starting with [`ACCESS_KEY_ID_PREFIX`] and a 40-character alphanumeric secret.
    pub fn generate() -> Self {
        // OsRng reads getrandom(2); it only fails on a kernel without it, where nothing secure
        // can be generated anyway (rand panics in that case).
        let mut rng = OsRng;
        let mut pick = |alphabet: &[u8], len: usize| -> String {
            (0..len)
                .map(|_| char::from(alphabet[rng.gen_range(0..alphabet.len())]))
                .collect()
        };
        let suffix = pick(
            ACCESS_KEY_ID_ALPHABET,
            ACCESS_KEY_ID_LEN - ACCESS_KEY_ID_PREFIX.len(),
        );
        Self {
            access_key_id: format!("{ACCESS_KEY_ID_PREFIX}{suffix}"),
            secret_access_key: pick(SECRET_ALPHABET, SECRET_ACCESS_KEY_LEN),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &Redacted)
            .finish()
    }
}

/// What a principal may do. The server decides what each scope grants; this crate only carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The operator's root credentials: everything.
    Root,
    /// Credentials injected into one runtime's sandboxes.
    Runtime {
        /// The runtime the credentials were issued for.
        runtime_id: String,
    },
    /// An access key minted for a person or CI; its policy is in the store.
    AccessKey {
        /// The access key id.
        key_id: String,
    },
}

/// A signing identity known to the server, with what it may do.
#[derive(Clone, PartialEq, Eq)]
pub struct Principal {
    /// Public identifier, matched against the request's credential scope.
    pub access_key_id: String,
    /// The HMAC secret used to recompute signatures; redacted from `Debug`.
    pub secret_access_key: String,
    /// What the principal may do.
    pub scope: Scope,
}

impl Principal {
    /// A principal with the root scope for `credentials`.
    pub fn root(credentials: &Credentials) -> Self {
        Self {
            access_key_id: credentials.access_key_id.clone(),
            secret_access_key: credentials.secret_access_key.clone(),
            scope: Scope::Root,
        }
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &Redacted)
            .field("scope", &self.scope)
            .finish()
    }
}

/// Prints in place of a secret.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Finds the principal for an access key id. The server implements it (root credentials today,
/// scoped session credentials later).
pub trait KeyLookup: Send + Sync {
    /// The principal owning `access_key_id`, or `None` when the id is unknown.
    fn lookup(&self, access_key_id: &str) -> Option<Principal>;
}

impl<T: KeyLookup + ?Sized> KeyLookup for Arc<T> {
    fn lookup(&self, access_key_id: &str) -> Option<Principal> {
        (**self).lookup(access_key_id)
    }
}

impl<T: KeyLookup + ?Sized> KeyLookup for &T {
    fn lookup(&self, access_key_id: &str) -> Option<Principal> {
        (**self).lookup(access_key_id)
    }
}

/// A fixed set of principals held in memory, for root credentials from configuration and tests.
#[derive(Clone, Debug, Default)]
pub struct StaticKeys {
    by_id: HashMap<String, Principal>,
}

impl StaticKeys {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a principal.
    pub fn insert(&mut self, principal: Principal) {
        self.by_id
            .insert(principal.access_key_id.clone(), principal);
    }
}

impl FromIterator<Principal> for StaticKeys {
    fn from_iter<I: IntoIterator<Item = Principal>>(iter: I) -> Self {
        let mut keys = Self::new();
        for principal in iter {
            keys.insert(principal);
        }
        keys
    }
}

impl KeyLookup for StaticKeys {
    fn lookup(&self, access_key_id: &str) -> Option<Principal> {
        self.by_id.get(access_key_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_credentials_have_aws_shape() {
        let creds = Credentials::generate();
        assert_eq!(creds.access_key_id.len(), 20);
        assert!(creds.access_key_id.starts_with("BKIA"));
        assert!(
            creds
                .access_key_id
                .bytes()
                .all(|b| ACCESS_KEY_ID_ALPHABET.contains(&b))
        );
        assert_eq!(creds.secret_access_key.len(), 40);
        assert!(
            creds
                .secret_access_key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric())
        );
        let other = Credentials::generate();
        assert_ne!(creds.access_key_id, other.access_key_id);
        assert_ne!(creds.secret_access_key, other.secret_access_key);
    }

    #[test]
    fn debug_redacts_secrets() {
        let creds = Credentials::generate();
        let principal = Principal {
            scope: Scope::Runtime {
                runtime_id: "r-1".into(),
            },
            ..Principal::root(&creds)
        };
        for text in [
            format!("{creds:?}"),
            format!("{creds:#?}"),
            format!("{principal:?}"),
            format!("{principal:#?}"),
        ] {
            assert!(!text.contains(&creds.secret_access_key), "{text}");
            assert!(text.contains(&creds.access_key_id), "{text}");
            assert!(text.contains("<redacted>"), "{text}");
        }
    }

    #[test]
    fn static_keys_look_up_by_id() {
        let creds = Credentials::generate();
        let keys: StaticKeys = [Principal::root(&creds)].into_iter().collect();
        assert_eq!(
            keys.lookup(&creds.access_key_id).map(|p| p.scope),
            Some(Scope::Root)
        );
        assert!(keys.lookup("BKIAUNKNOWN000000000").is_none());
    }
}
