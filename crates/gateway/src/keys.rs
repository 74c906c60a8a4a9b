//! The key each sandbox gets for the gateway (`ANTHROPIC_API_KEY`, `OPENAI_API_KEY`,
//! `AWS_BEARER_TOKEN_BEDROCK`): `berth-gw.<sandbox>.<mac>`, an HMAC-SHA256 of the sandbox's
//! instance id under a secret drawn when the server starts. It names its sandbox, so the gateway
//! attributes a call to whatever session that sandbox serves now (a warm spare's key works once
//! it is adopted), and it means nothing outside this server: not to a provider, not to another
//! Berth, not after a restart (sandboxes do not survive one either).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

const PREFIX: &str = "berth-gw.";

/// The caller name of Berth's own model calls (memory extraction, LLM judges). Its key is
/// taken only on the public listener, never a sandbox's.
pub const INTERNAL: &str = "berth:models";

pub struct SessionKeys {
    secret: [u8; 32],
}

impl Default for SessionKeys {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionKeys {
    pub fn new() -> Self {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        Self { secret }
    }

    fn mac(&self, instance: &str) -> [u8; 32] {
        // HMAC takes a key of any length.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        m.update(b"berth gateway key\0");
        m.update(instance.as_bytes());
        m.finalize().into_bytes().into()
    }

    /// The key of sandbox `instance`.
    pub fn issue(&self, instance: &str) -> String {
        format!(
            "{PREFIX}{}.{}",
            URL_SAFE_NO_PAD.encode(instance),
            URL_SAFE_NO_PAD.encode(self.mac(instance))
        )
    }

    /// The sandbox a key was issued to, if this server issued it.
    pub fn verify(&self, key: &str) -> Option<String> {
        let (instance, mac) = key.strip_prefix(PREFIX)?.split_once('.')?;
        let instance = String::from_utf8(URL_SAFE_NO_PAD.decode(instance).ok()?).ok()?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        bool::from(self.mac(&instance).ct_eq(mac.as_slice())).then_some(instance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_names_its_sandbox_and_only_this_server_accepts_it() {
        let k = SessionKeys::new();
        let key = k.issue("sbx-1.2");
        assert_eq!(k.verify(&key).as_deref(), Some("sbx-1.2"));
        assert_eq!(SessionKeys::new().verify(&key), None);
        let forged = key.replace("c2J4LTEuMg", "c2J4LTI");
        assert_eq!(k.verify(&forged), None);
        assert_eq!(k.verify("sk-ant-whatever"), None);
        assert_eq!(k.verify(&format!("{key}x")), None);
    }
}
