//! The keys a server accepts: its root credentials, credentials scoped to one runtime (handed to
//! that runtime's sandboxes), and access keys for people and CI.
//!
//! Runtime and access-key secrets are derived from the root secret and the key's identity, so
//! none of them is ever stored: a restart derives the same ones, every node of an installation
//! (sharing the root credentials) knows them all, and rotating the root secret invalidates them
//! all. A key id names its subject (a runtime key's id carries the runtime id), so looking one up
//! needs no registry. Whether a derived key is still *valid* (its runtime exists, the access key
//! is not revoked) is the server's authorization decision, made against the store.

use crate::credentials::{Credentials, KeyLookup, Principal, Scope};
use rand::Rng;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

/// Prefix of runtime-scoped access key ids.
pub const RUNTIME_KEY_PREFIX: &str = "BKRT";

/// Prefix of access key ids minted for people and CI (`berth keys create`).
pub const ACCESS_KEY_PREFIX: &str = "BKAK";

/// Random characters after [`ACCESS_KEY_PREFIX`]: 16 base32 characters, 80 bits, so ids never
/// collide in practice and have AWS's 20-character shape.
const ACCESS_KEY_RANDOM_LEN: usize = 16;
const ACCESS_KEY_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// The longest runtime id a runtime key id can carry: AWS access key ids are at most 128
/// characters, and the id is the prefix plus the runtime id in hex.
const MAX_RUNTIME_ID_LEN: usize = (128 - RUNTIME_KEY_PREFIX.len()) / 2;

/// Root credentials plus the keys derived from the root secret. Derivation makes a runtime's
/// credentials stable across restarts and nodes without storing them; the root secret never
/// leaves the server.
pub struct KeyRing {
    root: Principal,
}

impl KeyRing {
    /// A key ring over `root`.
    pub fn new(root: &Credentials) -> Self {
        Self {
            root: Principal::root(root),
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

    /// The credentials of `runtime_id`'s sandboxes: the id is the prefix and the runtime id in
    /// upper-case hex (so any node can tell whose key it is), the secret is derived from both.
    pub fn issue_runtime(&self, runtime_id: &str) -> Credentials {
        let access_key_id = format!(
            "{RUNTIME_KEY_PREFIX}{}",
            hex::encode_upper(runtime_id.as_bytes())
        );
        Credentials {
            secret_access_key: self.runtime_secret(runtime_id),
            access_key_id,
        }
    }

    fn runtime_secret(&self, runtime_id: &str) -> String {
        self.derive("secret", runtime_id)[..40].to_owned()
    }

    /// The runtime a runtime key id names, if it is one.
    fn runtime_of(access_key_id: &str) -> Option<String> {
        let hex_id = access_key_id.strip_prefix(RUNTIME_KEY_PREFIX)?;
        // Upper case only: one spelling per key id.
        if hex_id.is_empty()
            || hex_id.len() > 2 * MAX_RUNTIME_ID_LEN
            || hex_id.bytes().any(|b| b.is_ascii_lowercase())
        {
            return None;
        }
        String::from_utf8(hex::decode(hex_id).ok()?).ok()
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
        // Likewise a runtime key: the secret is derived from the runtime id the key id carries,
        // and authorization refuses the key once that runtime is gone.
        let runtime_id = Self::runtime_of(access_key_id)?;
        Some(Principal {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: self.runtime_secret(&runtime_id),
            scope: Scope::Runtime { runtime_id },
        })
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
        assert!(ring.lookup(&a.access_key_id.to_ascii_lowercase()).is_none());
        assert_ne!(a.secret_access_key, root.secret_access_key);
        // Another node of the installation (a ring over the same root) that never issued the
        // key knows it: the id names the runtime.
        let other_node = KeyRing::new(&root).lookup(&b.access_key_id).unwrap();
        assert_eq!(other_node.secret_access_key, b.secret_access_key);
        // Another root derives another secret.
        assert_ne!(
            KeyRing::new(&Credentials::generate())
                .lookup(&a.access_key_id)
                .unwrap()
                .secret_access_key,
            a.secret_access_key
        );
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
