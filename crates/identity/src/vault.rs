//! The token vault: secrets encrypted at rest, and workload access tokens signed.
//!
//! One key file, `<data dir>/vault.key` (mode 0600, created on first use), holds 64 random bytes:
//! the first 32 are the AES-256-GCM key every stored secret is sealed with, the last 32 the
//! HMAC-SHA256 key workload access tokens are signed with. The key never enters the database: the
//! store holds only `nonce (12 bytes) || ciphertext || tag`, each value with a fresh random nonce
//! and the resource it belongs to as associated data (a ciphertext moved to another row does not
//! open).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use berth_types::EpochMillis;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The key file's name in the data dir.
pub const KEY_FILE: &str = "vault.key";
const KEY_LEN: usize = 64;
const NONCE_LEN: usize = 12;
const TOKEN_PREFIX: &str = "bwat1";

/// What the vault refuses.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key file could not be read or written.
    #[error("vault key file {path}: {detail}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// A sealed value did not open: tampered with, moved, or sealed under another key.
    #[error("a sealed value does not open with this vault's key")]
    Open,
    /// A workload access token is malformed, forged or signed by another key.
    #[error("the workload access token is not valid")]
    BadToken,
    /// A workload access token is past its expiry.
    #[error("the workload access token has expired")]
    Expired,
}

/// The vault's keys (cheap to clone).
#[derive(Clone)]
pub struct Vault {
    cipher: Aes256Gcm,
    mac_key: [u8; 32],
    created: EpochMillis,
}

/// What a workload access token binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadClaims {
    /// The workload identity's name.
    pub workload: String,
    /// The user the workload acts for (`…ForUserId`, or `iss|sub` of a JWT), if any.
    pub user: Option<String>,
    /// Expiry, epoch seconds.
    pub expires: i64,
}

impl Vault {
    /// The vault of `data_dir`: reads `vault.key`, or creates it (mode 0600) on first use.
    pub fn open_dir(data_dir: &Path) -> Result<Self, Error> {
        Self::open_file(&data_dir.join(KEY_FILE))
    }

    /// The vault whose key is in `path`, created (mode 0600) if missing.
    pub fn open_file(path: &Path) -> Result<Self, Error> {
        let err = |detail: String| Error::KeyFile {
            path: path.to_owned(),
            detail,
        };
        let key = match std::fs::read(path) {
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut k = vec![0u8; KEY_LEN];
                rand::rngs::OsRng.fill_bytes(&mut k);
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                match opts.open(path) {
                    Ok(mut f) => {
                        f.write_all(&k)
                            .and_then(|()| f.sync_all())
                            .map_err(|e| err(format!("cannot write: {e}")))?;
                        k
                    }
                    // Another process created it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?
                    }
                    Err(e) => return Err(err(format!("cannot create: {e}"))),
                }
            }
            Err(e) => return Err(err(format!("cannot read: {e}"))),
        };
        // A key file restored or copied with a looser mode is tightened back to 0600.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|e| err(format!("cannot stat: {e}")))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| err(format!("cannot make it 0600: {e}")))?;
            }
        }
        let created = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as EpochMillis);
        let mut v = Self::from_key(&key).ok_or_else(|| {
            err(format!(
                "holds {} bytes, not {KEY_LEN}: restore it from backup (secrets sealed under \
                 another key cannot be opened)",
                key.len()
            ))
        })?;
        v.created = created;
        Ok(v)
    }

    /// When the key was made (the key file's modification time), epoch milliseconds.
    pub fn created_millis(&self) -> EpochMillis {
        self.created
    }

    /// The vault of 64 key bytes.
    pub fn from_key(key: &[u8]) -> Option<Self> {
        if key.len() != KEY_LEN {
            return None;
        }
        let cipher = Aes256Gcm::new_from_slice(&key[..32]).ok()?;
        let mut mac_key = [0u8; 32];
        mac_key.copy_from_slice(&key[32..]);
        Some(Self {
            cipher,
            mac_key,
            created: 0,
        })
    }

    /// Seals `plain` for the resource `aad` names: `nonce || ciphertext || tag`.
    pub fn seal(&self, plain: &[u8], aad: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: aad.as_bytes(),
                },
            )
            // AES-GCM encryption fails only past 64 GiB of plaintext.
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        out
    }

    /// Opens what [`Vault::seal`] sealed for `aad`.
    pub fn open(&self, sealed: &[u8], aad: &str) -> Result<Vec<u8>, Error> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(Error::Open);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| Error::Open)
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.mac_key)
            .unwrap_or_else(|_| unreachable!("hmac accepts any key length"))
    }

    /// A workload access token: `bwat1.<claims>.<hmac>`, base64url, opaque to clients.
    pub fn sign_token(&self, c: &WorkloadClaims) -> String {
        let claims = serde_json::json!({"w": c.workload, "u": c.user, "exp": c.expires});
        let body = format!(
            "{TOKEN_PREFIX}.{}",
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{body}.{sig}")
    }

    /// The claims of a token this vault signed, if it has not expired at `now` (epoch seconds).
    pub fn verify_token(&self, token: &str, now: i64) -> Result<WorkloadClaims, Error> {
        let (body, sig) = token.rsplit_once('.').ok_or(Error::BadToken)?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| Error::BadToken)?;
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        mac.verify_slice(&sig).map_err(|_| Error::BadToken)?;
        let claims = body
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|b| b.strip_prefix('.'))
            .ok_or(Error::BadToken)?;
        let claims: serde_json::Value = URL_SAFE_NO_PAD
            .decode(claims)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(Error::BadToken)?;
        let c = WorkloadClaims {
            workload: claims["w"].as_str().ok_or(Error::BadToken)?.to_owned(),
            user: claims["u"].as_str().map(str::to_owned),
            expires: claims["exp"].as_i64().ok_or(Error::BadToken)?,
        };
        if c.expires <= now {
            return Err(Error::Expired);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault() -> (tempfile::TempDir, Vault) {
        let d = tempfile::tempdir().unwrap();
        let v = Vault::open_dir(d.path()).unwrap();
        (d, v)
    }

    #[test]
    fn seal_round_trips_and_hides_the_value() {
        let (_d, v) = vault();
        let a = v.seal(b"sk-secret-value", "apikey/openai");
        let b = v.seal(b"sk-secret-value", "apikey/openai");
        assert_ne!(a, b, "a fresh nonce per value");
        assert!(!a.windows(15).any(|w| w == b"sk-secret-value"));
        assert_eq!(v.open(&a, "apikey/openai").unwrap(), b"sk-secret-value");
    }

    #[test]
    fn tampering_moving_and_short_values_are_refused() {
        let (_d, v) = vault();
        let mut s = v.seal(b"value", "apikey/a");
        assert!(matches!(v.open(&s, "apikey/b"), Err(Error::Open)));
        let last = s.len() - 1;
        s[last] ^= 1;
        assert!(matches!(v.open(&s, "apikey/a"), Err(Error::Open)));
        assert!(matches!(v.open(&[1, 2, 3], "apikey/a"), Err(Error::Open)));
    }

    #[test]
    fn another_key_cannot_open() {
        let (_d1, v1) = vault();
        let (_d2, v2) = vault();
        let s = v1.seal(b"value", "k");
        assert!(matches!(v2.open(&s, "k"), Err(Error::Open)));
    }

    #[test]
    fn key_file_is_created_once_with_mode_0600() {
        let d = tempfile::tempdir().unwrap();
        let v1 = Vault::open_dir(d.path()).unwrap();
        let path = d.path().join(KEY_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(std::fs::read(&path).unwrap().len(), KEY_LEN);
        let v2 = Vault::open_dir(d.path()).unwrap();
        let s = v1.seal(b"x", "k");
        assert_eq!(
            v2.open(&s, "k").unwrap(),
            b"x",
            "the second open reads the same key"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            Vault::open_dir(d.path()).unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "a looser mode is tightened");
        }
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(
            Vault::open_dir(d.path()),
            Err(Error::KeyFile { .. })
        ));
    }

    #[test]
    fn tokens_bind_claims_and_expire() {
        let (_d, v) = vault();
        let c = WorkloadClaims {
            workload: "agent-1".into(),
            user: Some("alice".into()),
            expires: 1_000,
        };
        let t = v.sign_token(&c);
        assert_eq!(v.verify_token(&t, 999).unwrap(), c);
        assert!(matches!(v.verify_token(&t, 1_000), Err(Error::Expired)));
        // Another vault's key, a changed claim, garbage: refused.
        let (_d2, other) = vault();
        assert!(matches!(other.verify_token(&t, 0), Err(Error::BadToken)));
        let (body, sig) = t.rsplit_once('.').unwrap();
        let forged_claims = URL_SAFE_NO_PAD.encode(r#"{"w":"agent-2","u":"alice","exp":1000}"#);
        let forged = format!("{TOKEN_PREFIX}.{forged_claims}.{sig}");
        assert!(matches!(v.verify_token(&forged, 0), Err(Error::BadToken)));
        assert!(matches!(
            v.verify_token(&format!("{body}.AAAA"), 0),
            Err(Error::BadToken)
        ));
        assert!(matches!(v.verify_token("nope", 0), Err(Error::BadToken)));
    }
}
