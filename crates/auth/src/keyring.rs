//! The keys a server accepts: its root credentials and credentials scoped to one runtime, which
//! are handed to that runtime's sandboxes.

use crate::credentials::{Credentials, KeyLookup, Principal, Scope};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::RwLock;

/// Prefix of runtime-scoped access key ids.
pub const RUNTIME_KEY_PREFIX: &str = "BKRT";

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

    /// The credentials of `runtime_id`'s sandboxes, registering them for lookup.
    pub fn issue_runtime(&self, runtime_id: &str) -> Credentials {
        let derive = |label: &str| {
            let mut h = Sha256::new();
            h.update(self.root.secret_access_key.as_bytes());
            h.update([0]);
            h.update(label.as_bytes());
            h.update([0]);
            h.update(runtime_id.as_bytes());
            hex::encode(h.finalize())
        };
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
}

impl KeyLookup for KeyRing {
    fn lookup(&self, access_key_id: &str) -> Option<Principal> {
        if access_key_id == self.root.access_key_id {
            return Some(self.root.clone());
        }
        self.scoped
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(access_key_id)
            .cloned()
    }
}

#[cfg(test)]
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
    }
}
