//! The OAuth2 client-credentials grant (RFC 6749 §4.4) against a provider's token endpoint.

use berth_api::identity::{
    Oauth2AuthorizationServerMetadata, Oauth2Discovery, Oauth2ProviderConfigInput,
};
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

/// The authorization server of a stored configuration: the custom provider's
/// `authorizationServerMetadata`, the included provider's three endpoints, or, for the vendors
/// the model names, their published endpoints. `None`: Berth cannot reach the provider (it makes
/// no discovery requests).
pub fn metadata(cfg: &Oauth2ProviderConfigInput) -> Option<Oauth2AuthorizationServerMetadata> {
    let known = |issuer: &str, authorize: &str, token: &str| Oauth2AuthorizationServerMetadata {
        issuer: issuer.to_owned(),
        authorization_endpoint: authorize.to_owned(),
        token_endpoint: token.to_owned(),
        response_types: Some(vec!["code".to_owned()]),
        token_endpoint_auth_methods: None,
    };
    match cfg {
        Oauth2ProviderConfigInput::Custom(c) => match &c.oauth_discovery {
            Oauth2Discovery::AuthorizationServerMetadata(m) => Some(m.clone()),
            Oauth2Discovery::DiscoveryUrl(_) => None,
        },
        Oauth2ProviderConfigInput::Included(c) => Some(Oauth2AuthorizationServerMetadata {
            issuer: c.issuer.clone()?,
            authorization_endpoint: c.authorization_endpoint.clone()?,
            token_endpoint: c.token_endpoint.clone()?,
            response_types: None,
            token_endpoint_auth_methods: None,
        }),
        Oauth2ProviderConfigInput::Google(_) => Some(known(
            "https://accounts.google.com",
            "https://accounts.google.com/o/oauth2/v2/auth",
            "https://oauth2.googleapis.com/token",
        )),
        Oauth2ProviderConfigInput::Github(_) => Some(known(
            "https://github.com",
            "https://github.com/login/oauth/authorize",
            "https://github.com/login/oauth/access_token",
        )),
        Oauth2ProviderConfigInput::Slack(_) => Some(known(
            "https://slack.com",
            "https://slack.com/oauth/v2/authorize",
            "https://slack.com/api/oauth.v2.access",
        )),
        Oauth2ProviderConfigInput::Salesforce(_) => Some(known(
            "https://login.salesforce.com",
            "https://login.salesforce.com/services/oauth2/authorize",
            "https://login.salesforce.com/services/oauth2/token",
        )),
        Oauth2ProviderConfigInput::Microsoft(c) => {
            let tenant = c.tenant_id.as_deref().unwrap_or("common");
            let base = format!("https://login.microsoftonline.com/{tenant}");
            Some(known(
                &format!("{base}/v2.0"),
                &format!("{base}/oauth2/v2.0/authorize"),
                &format!("{base}/oauth2/v2.0/token"),
            ))
        }
        Oauth2ProviderConfigInput::Atlassian(_) => Some(known(
            "https://auth.atlassian.com",
            "https://auth.atlassian.com/authorize",
            "https://auth.atlassian.com/oauth/token",
        )),
        Oauth2ProviderConfigInput::Linkedin(_) => Some(known(
            "https://www.linkedin.com/oauth",
            "https://www.linkedin.com/oauth/v2/authorization",
            "https://www.linkedin.com/oauth/v2/accessToken",
        )),
    }
}

impl Endpoint {
    /// The token endpoint of a stored configuration ([`metadata`]), its `clientId`, and the
    /// client authentication method (custom providers may choose `CLIENT_SECRET_POST`).
    pub fn from_config(cfg: &Oauth2ProviderConfigInput) -> Result<Self, String> {
        let member = cfg.member();
        let token_url = metadata(cfg).map(|m| m.token_endpoint).ok_or_else(|| {
            format!(
                "{member} has no token endpoint Berth can use (set \
                 oauthDiscovery.authorizationServerMetadata.tokenEndpoint)"
            )
        })?;
        let client_id = cfg
            .client_id()
            .ok_or_else(|| format!("{member} has no clientId"))?;
        let post = matches!(
            cfg,
            Oauth2ProviderConfigInput::Custom(c)
                if c.client_authentication_method.as_deref() == Some("CLIENT_SECRET_POST")
        );
        Ok(Self {
            token_url,
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

    fn config(v: serde_json::Value) -> Oauth2ProviderConfigInput {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn endpoint_reads_custom_included_and_vendor_configs() {
        let e = Endpoint::from_config(&config(json!({"customOauth2ProviderConfig": {
            "oauthDiscovery": {"authorizationServerMetadata": {
                "issuer": "i", "authorizationEndpoint": "a", "tokenEndpoint": "http://t/token"}},
            "clientId": "cid", "clientAuthenticationMethod": "CLIENT_SECRET_POST"}})))
        .unwrap();
        assert_eq!(e.token_url, "http://t/token");
        assert!(e.post);
        let e = Endpoint::from_config(&config(json!({"includedOauth2ProviderConfig": {
            "clientId": "c", "issuer": "i", "authorizationEndpoint": "a", "tokenEndpoint": "http://x"}})))
        .unwrap();
        assert_eq!(e.token_url, "http://x");
        assert!(!e.post);
        let e = Endpoint::from_config(&config(
            json!({"microsoftOauth2ProviderConfig": {"clientId": "c", "tenantId": "t1"}}),
        ))
        .unwrap();
        assert_eq!(
            e.token_url,
            "https://login.microsoftonline.com/t1/oauth2/v2.0/token"
        );
        assert!(
            Endpoint::from_config(&config(
                json!({"includedOauth2ProviderConfig": {"clientId": "c"}})
            ))
            .is_err()
        );
        assert!(
            Endpoint::from_config(&config(json!({"customOauth2ProviderConfig": {
                "oauthDiscovery": {"discoveryUrl": "https://idp/.well-known/openid-configuration"}}})))
            .is_err()
        );
    }

    #[test]
    fn form_encoding() {
        assert_eq!(url_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }
}
