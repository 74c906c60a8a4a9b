//! The OAuth2 client-credentials grant (RFC 6749 §4.4) against a provider's token endpoint.

use serde_json::Value;

/// Where and how to ask a provider for tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The token endpoint URL.
    pub token_url: String,
    /// The client id.
    pub client_id: String,
    /// `CLIENT_SECRET_POST` sends the credentials in the form; otherwise HTTP Basic.
    pub post: bool,
}

/// A token the endpoint issued.
#[derive(Debug, Clone)]
pub struct Token {
    /// The access token.
    pub access_token: String,
    /// Its lifetime in seconds, if the endpoint said.
    pub expires_in: Option<u64>,
}

impl Endpoint {
    /// The endpoint of a stored `oauth2ProviderConfigOutput`: the one member's `clientId`, and
    /// `oauthDiscovery.authorizationServerMetadata.tokenEndpoint` (custom providers) or
    /// `tokenEndpoint` (included providers).
    pub fn from_config(cfg: &Value) -> Result<Self, String> {
        let Some((member, c)) = cfg.as_object().and_then(|o| o.iter().next()) else {
            return Err("the provider has no configuration".into());
        };
        let token_url = c
            .pointer("/oauthDiscovery/authorizationServerMetadata/tokenEndpoint")
            .or_else(|| c.get("tokenEndpoint"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                format!(
                    "{member} has no token endpoint Berth can use (set \
                     oauthDiscovery.authorizationServerMetadata.tokenEndpoint)"
                )
            })?;
        let client_id = c
            .get("clientId")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{member} has no clientId"))?;
        let post = c.get("clientAuthenticationMethod").and_then(Value::as_str)
            == Some("CLIENT_SECRET_POST");
        Ok(Self {
            token_url: token_url.to_owned(),
            client_id: client_id.to_owned(),
            post,
        })
    }

    /// Runs the client-credentials grant for `scopes`.
    pub async fn client_credentials(
        &self,
        http: &reqwest::Client,
        secret: &str,
        scopes: &[String],
    ) -> Result<Token, String> {
        let scope = scopes.join(" ");
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        self.grant(http, secret, form).await
    }

    /// Exchanges an authorization code (RFC 6749 §4.1.3) sent back to `redirect_uri`.
    pub async fn authorization_code(
        &self,
        http: &reqwest::Client,
        secret: &str,
        code: &str,
        redirect_uri: &str,
    ) -> Result<Token, String> {
        let form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
        ];
        self.grant(http, secret, form).await
    }

    async fn grant(
        &self,
        http: &reqwest::Client,
        secret: &str,
        mut form: Vec<(&str, &str)>,
    ) -> Result<Token, String> {
        let mut req = http.post(&self.token_url);
        if self.post {
            form.push(("client_id", &self.client_id));
            form.push(("client_secret", secret));
        } else {
            // RFC 6749 §2.3.1: id and secret are form-encoded before Basic encoding.
            req = req.basic_auth(url_encode(&self.client_id), Some(url_encode(secret)));
        }
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", url_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let resp = req
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("the token endpoint {} failed: {e}", self.token_url))?;
        let status = resp.status();
        let v: Value = resp
            .json()
            .await
            .map_err(|e| format!("the token endpoint answered {status} without JSON: {e}"))?;
        if !status.is_success() {
            let err = v.get("error").and_then(Value::as_str).unwrap_or("unknown");
            return Err(format!(
                "the token endpoint refused the grant ({status}: {err})"
            ));
        }
        let access_token = v
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or("the token endpoint's answer has no access_token")?
            .to_owned();
        Ok(Token {
            access_token,
            expires_in: v.get("expires_in").and_then(Value::as_u64),
        })
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub(crate) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn endpoint_reads_custom_and_included_configs() {
        let e = Endpoint::from_config(&json!({"customOauth2ProviderConfig": {
            "oauthDiscovery": {"authorizationServerMetadata": {
                "issuer": "i", "authorizationEndpoint": "a", "tokenEndpoint": "http://t/token"}},
            "clientId": "cid", "clientAuthenticationMethod": "CLIENT_SECRET_POST"}}))
        .unwrap();
        assert_eq!(e.token_url, "http://t/token");
        assert!(e.post);
        let e = Endpoint::from_config(&json!({"includedOauth2ProviderConfig": {
            "clientId": "c", "tokenEndpoint": "http://x"}}))
        .unwrap();
        assert!(!e.post);
        assert!(
            Endpoint::from_config(&json!({"githubOauth2ProviderConfig": {"clientId": "c"}}))
                .is_err()
        );
    }

    #[test]
    fn form_encoding() {
        assert_eq!(url_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }
}
