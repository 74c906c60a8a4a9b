//! The keys a server accepts: its root credentials, credentials scoped to one runtime (handed to
//! that runtime's sandboxes), and access keys for people and CI.
//!
//! Runtime and access-key secrets are derived from the root secret and the key's identity, so
//! none of them is ever stored: a restart derives the same ones, and rotating the root secret
//! invalidates them all. Whether a derived key is still *valid* (its runtime exists, the access
//! key is not revoked) is the server's authorization decision, made against the store.

use crate::credentials::{Credentials, KeyLookup, Principal, Scope};
use rand::Rng;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::RwLock;

/// Prefix of runtime-scoped access key ids.
pub const RUNTIME_KEY_PREFIX: &str = "BKRT";

/// Prefix of access key ids minted for people and CI (`berth keys create`).
pub const ACCESS_KEY_PREFIX: &str = "BKAK";

/// Random characters after [`ACCESS_KEY_PREFIX`]: 16 base32 characters, 80 bits, so ids never
/// collide in practice and have AWS's 20-character shape.
const ACCESS_KEY_RANDOM_LEN: usize = 16;
const ACCESS_KEY_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Root credentials plus runtime-scoped ones derived from the root secret. Derivation makes a
/// runtime's credentials stable across restarts without storing them; the root secret never
/// leaves the server.
pub struct KeyRing {
    root: Principal,
    scoped: RwLock<HashMap<String, Principal>>,
}

impl KeyRing {
    /// A key ring whose only key so far is `root`.
    pub fn new(root: &Credentials) -> Self {
        Self {
            root: Principal::root(root),
            scoped: RwLock::new(HashMap::new()),
        }
    }

    /// `sha256(root secret || 0 || label || 0 || subject)` as hex: the derivation of every
    /// non-root key. Labels keep ids and secrets of different kinds apart.
    fn derive(&self, label: &str, subject: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.root.secret_access_key.as_bytes());
        h.update([0]);
        h.update(label.as_bytes());
        h.update([0]);
        h.update(subject.as_bytes());
        hex::encode(h.finalize())
    }

    /// The key nodes of one installation (sharing the root credentials) sign forwarded calls
    /// with; derived, so every node has it and no node stores it.
    pub fn node_key(&self) -> Vec<u8> {
        self.derive("node-forward", "").into_bytes()
    }

    /// The credentials of `runtime_id`'s sandboxes, registering them for lookup.
    pub fn issue_runtime(&self, runtime_id: &str) -> Credentials {
        let derive = |label: &str| self.derive(label, runtime_id);
        let creds = Credentials {
            access_key_id: format!(
                "{RUNTIME_KEY_PREFIX}{}",
                derive("id")[..16].to_ascii_uppercase()
            ),
            secret_access_key: derive("secret")[..40].to_owned(),
        };
        let principal = Principal {
            access_key_id: creds.access_key_id.clone(),
            secret_access_key: creds.secret_access_key.clone(),
            scope: Scope::Runtime {
                runtime_id: runtime_id.to_owned(),
            },
        };
        // A poisoned lock only means a panic elsewhere mid-insert of a map entry; the map is fine.
        self.scoped
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(creds.access_key_id.clone(), principal);
        creds
    }

    /// Forgets `runtime_id`'s credentials (its runtime was deleted): they are unrecognized from
    /// now on, until a runtime with that id issues them again (ids are never reused).
    pub fn forget_runtime(&self, runtime_id: &str) {
        self.scoped
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(
                |_, p| !matches!(&p.scope, Scope::Runtime { runtime_id: r } if r == runtime_id),
            );
    }

    /// Mints a new access key: a random id and the secret derived from it. The caller records
    /// the id (with its policy) before handing the pair out; the secret is shown once and can
    /// always be re-derived by this ring, never read back from storage.
    pub fn mint_access_key(&self) -> Credentials {
        let mut rng = OsRng;
        let suffix: String = (0..ACCESS_KEY_RANDOM_LEN)
            .map(|_| char::from(ACCESS_KEY_ALPHABET[rng.gen_range(0..ACCESS_KEY_ALPHABET.len())]))
            .collect();
        let access_key_id = format!("{ACCESS_KEY_PREFIX}{suffix}");
        Credentials {
            secret_access_key: self.access_key_secret(&access_key_id),
            access_key_id,
        }
    }

    fn access_key_secret(&self, access_key_id: &str) -> String {
        self.derive("access-key-secret", access_key_id)[..40].to_owned()
    }
}

fn is_access_key_id(id: &str) -> bool {
    id.strip_prefix(ACCESS_KEY_PREFIX).is_some_and(|rest| {
        rest.len() == ACCESS_KEY_RANDOM_LEN
            && rest.bytes().all(|b| ACCESS_KEY_ALPHABET.contains(&b))
    })
}

impl KeyLookup for KeyRing {
    fn lookup(&self, access_key_id: &str) -> Option<Principal> {
        if access_key_id == self.root.access_key_id {
            return Some(self.root.clone());
        }
        // Any well-formed access key id resolves to its derived secret: only whoever holds that
        // secret (the key's owner) can sign with it. Whether the key exists and is active is
        // checked against the store by authorization, so revocation takes effect at once.
        if is_access_key_id(access_key_id) {
            return Some(Principal {
                access_key_id: access_key_id.to_owned(),
                secret_access_key: self.access_key_secret(access_key_id),
                scope: Scope::AccessKey {
                    key_id: access_key_id.to_owned(),
                },
            });
        }
        self.scoped
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(access_key_id)
            .cloned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn runtime_keys_are_stable_scoped_and_distinct() {
        let root = Credentials::generate();
        let ring = KeyRing::new(&root);
        let a = ring.issue_runtime("a-0123456789");
        let b = ring.issue_runtime("b-0123456789");
        assert_ne!(a.access_key_id, b.access_key_id);
        assert_eq!(a, KeyRing::new(&root).issue_runtime("a-0123456789"));
        assert!(a.access_key_id.starts_with(RUNTIME_KEY_PREFIX));
        assert_eq!(
            ring.lookup(&a.access_key_id).unwrap().scope,
            Scope::Runtime {
                runtime_id: "a-0123456789".into()
            }
        );
        assert_eq!(ring.lookup(&root.access_key_id).unwrap().scope, Scope::Root);
        assert!(ring.lookup("BKRTUNKNOWN").is_none());
        assert_ne!(a.secret_access_key, root.secret_access_key);
        ring.forget_runtime("a-0123456789");
        assert!(ring.lookup(&a.access_key_id).is_none());
        assert!(ring.lookup(&b.access_key_id).is_some());
    }

    #[test]
    fn access_keys_are_derived_and_survive_a_new_ring() {
        let root = Credentials::generate();
        let ring = KeyRing::new(&root);
        let k = ring.mint_access_key();
        assert!(k.access_key_id.starts_with(ACCESS_KEY_PREFIX));
        assert_eq!(k.access_key_id.len(), 20);
        assert_ne!(k, ring.mint_access_key());
        // A restarted server (a new ring over the same root) knows the same secret.
        let again = KeyRing::new(&root).lookup(&k.access_key_id).unwrap();
        assert_eq!(again.secret_access_key, k.secret_access_key);
        assert_eq!(
            again.scope,
            Scope::AccessKey {
                key_id: k.access_key_id.clone()
            }
        );
        // Another root secret derives another secret: the old pair no longer signs.
        let other = KeyRing::new(&Credentials::generate());
        assert_ne!(
            other.lookup(&k.access_key_id).unwrap().secret_access_key,
            k.secret_access_key
        );
        assert!(ring.lookup("BKAKshort").is_none());
        assert!(ring.lookup("BKAK0000000000000000").is_none());
    }
}
