//! AgentCore Identity: workload identities, API-key and OAuth2 credential providers, the token
//! vault, and the data plane that hands an agent its credentials.
//!
//! Every operation takes the request as the model validated it (JSON, wire member names) and
//! answers the wire response; the server only routes. Secrets (API keys, client secrets, cached
//! OAuth2 tokens) are sealed by the [`vault::Vault`] before they reach the store and opened only
//! for a caller holding a valid workload access token.

pub mod oauth2;
pub mod vault;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use berth_api::{ApiError, ErrorKind};
use berth_store::identity::{IdentityRow, IdentityStore};
use berth_types::{EpochMillis, Partition, now_millis};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;
use vault::{Vault, WorkloadClaims};

/// How long a workload access token is valid.
pub const TOKEN_TTL: Duration = Duration::from_secs(3600);

/// Resource kinds in the store.
const WORKLOAD: &str = "workload-identity";
const API_KEY: &str = "apikey-provider";
const OAUTH2: &str = "oauth2-provider";
const SESSION: &str = "oauth2-session";
/// The mark (in its spec) of a workload identity made with a runtime, deleted with it.
const RUNTIME_OWNED: &str = "agentRuntime";
/// Where OAuth2 providers send the user back, under the server's URL.
pub const CALLBACK_PATH: &str = "/identities/oauth2/callback";
const REQUEST_URI: &str = "urn:ietf:params:oauth:request_uri:";
/// How long a user has to consent.
const SESSION_TTL_MS: i64 = 10 * 60 * 1000;

/// AgentCore Identity (cheap to clone).
#[derive(Clone)]
pub struct Identity {
    store: Arc<dyn IdentityStore>,
    vault: Vault,
    partition: Partition,
    http: reqwest::Client,
    /// The server's own URL, where OAuth2 providers send the user back (`callbackUrl`).
    public_url: String,
}

fn internal(e: berth_store::Error) -> ApiError {
    ApiError::internal_because(format_args!("identity store: {e}"))
}

fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

fn name_of(v: &Value) -> Result<String, ApiError> {
    s(v, "name")
        .map(str::to_owned)
        .ok_or_else(|| ApiError::field("name", "name is required"))
}

fn secs(ms: EpochMillis) -> Value {
    json!(ms / 1000)
}

/// A list page's size: `maxResults` or the default, and the name after which it starts.
fn page(v: &Value, default: u32) -> Result<(u32, Option<String>), ApiError> {
    let limit = v
        .get("maxResults")
        .and_then(Value::as_u64)
        .map_or(default, |n| n.clamp(1, 100) as u32);
    let after = match s(v, "nextToken") {
        None => None,
        Some(t) => Some(
            URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::field("nextToken", "nextToken is not valid"))?,
        ),
    };
    Ok((limit, after))
}

impl Identity {
    /// Identity over `store`, with secrets sealed by `vault`, ARNs in `partition`, reached by
    /// OAuth2 providers' redirects at `public_url` (`http://host:port`).
    pub fn new(
        store: Arc<dyn IdentityStore>,
        vault: Vault,
        partition: Partition,
        public_url: String,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Self {
            store,
            vault,
            partition,
            http,
            public_url: public_url.trim_end_matches('/').to_owned(),
        }
    }

    fn arn(&self, service: &str, rest: &str) -> String {
        format!(
            "arn:aws:{service}:{}:{}:{rest}",
            self.partition.region, self.partition.account_id
        )
    }

    fn workload_arn(&self, name: &str) -> String {
        self.arn(
            "bedrock-agentcore",
            &format!("workload-identity-directory/default/workload-identity/{name}"),
        )
    }

    fn provider_arn(&self, kind: &str, name: &str) -> String {
        let seg = if kind == API_KEY {
            "apikeycredentialprovider"
        } else {
            "oauth2credentialprovider"
        };
        self.arn("acps", &format!("token-vault/default/{seg}/{name}"))
    }

    fn secret_arn(&self, kind: &str, name: &str) -> Value {
        let prefix = if kind == API_KEY { "apikey" } else { "oauth2" };
        json!({"secretArn": self.arn(
            "secretsmanager",
            &format!("secret:bedrock-agentcore-identity!default/{prefix}/{name}")
        )})
    }

    async fn get_row(&self, kind: &str, name: &str, what: &str) -> Result<IdentityRow, ApiError> {
        self.store
            .identity(kind, name)
            .await
            .map_err(internal)?
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::ResourceNotFound,
                    format!("{what} {name} does not exist"),
                )
            })
    }

    async fn insert(&self, row: &IdentityRow, what: &str) -> Result<(), ApiError> {
        match self.store.insert_identity(row).await {
            Ok(()) => Ok(()),
            Err(berth_store::Error::AlreadyExists(_)) => Err(ApiError::new(
                ErrorKind::Conflict,
                format!("{what} {} already exists", row.name),
            )),
            Err(e) => Err(internal(e)),
        }
    }

    async fn update(&self, row: &IdentityRow, what: &str) -> Result<(), ApiError> {
        if self.store.update_identity(row).await.map_err(internal)? {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorKind::ResourceNotFound,
                format!("{what} {} does not exist", row.name),
            ))
        }
    }

    async fn delete(&self, kind: &str, v: &Value, what: &str) -> Result<Value, ApiError> {
        let name = name_of(v)?;
        if self
            .store
            .delete_identity(kind, &name)
            .await
            .map_err(internal)?
        {
            Ok(json!({}))
        } else {
            Err(ApiError::new(
                ErrorKind::ResourceNotFound,
                format!("{what} {name} does not exist"),
            ))
        }
    }

    async fn list(
        &self,
        kind: &str,
        v: &Value,
        default: u32,
        item: impl Fn(&IdentityRow) -> Value,
    ) -> Result<(Vec<Value>, Option<String>), ApiError> {
        let (limit, after) = page(v, default)?;
        let mut rows = self
            .store
            .list_identities(kind, after.as_deref(), limit + 1)
            .await
            .map_err(internal)?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = more
            .then(|| rows.last().map(|r| URL_SAFE_NO_PAD.encode(&r.name)))
            .flatten();
        Ok((rows.iter().map(item).collect(), next))
    }

    // ---- Workload identities ------------------------------------------------------------

    fn workload_out(&self, r: &IdentityRow, times: bool) -> Value {
        let mut o = Map::new();
        o.insert("name".into(), json!(r.name));
        o.insert(
            "workloadIdentityArn".into(),
            json!(self.workload_arn(&r.name)),
        );
        if let Some(urls) = r.spec.get("allowedResourceOauth2ReturnUrls") {
            o.insert("allowedResourceOauth2ReturnUrls".into(), urls.clone());
        }
        if times {
            o.insert("createdTime".into(), secs(r.created_at));
            o.insert("lastUpdatedTime".into(), secs(r.updated_at));
        }
        Value::Object(o)
    }

    /// `CreateWorkloadIdentity`.
    pub async fn create_workload_identity(&self, v: Value) -> Result<Value, ApiError> {
        let name = name_of(&v)?;
        let now = now_millis();
        let mut spec = Map::new();
        for k in ["allowedResourceOauth2ReturnUrls", "tags"] {
            if let Some(x) = v.get(k) {
                spec.insert(k.into(), x.clone());
            }
        }
        let row = IdentityRow {
            kind: WORKLOAD.into(),
            name,
            spec: Value::Object(spec),
            secret: None,
            created_at: now,
            updated_at: now,
        };
        self.insert(&row, "workload identity").await?;
        Ok(self.workload_out(&row, false))
    }

    /// `GetWorkloadIdentity`.
    pub async fn get_workload_identity(&self, v: Value) -> Result<Value, ApiError> {
        let r = self
            .get_row(WORKLOAD, &name_of(&v)?, "workload identity")
            .await?;
        Ok(self.workload_out(&r, true))
    }

    /// `UpdateWorkloadIdentity`: replaces the allowed return URLs.
    pub async fn update_workload_identity(&self, v: Value) -> Result<Value, ApiError> {
        let mut r = self
            .get_row(WORKLOAD, &name_of(&v)?, "workload identity")
            .await?;
        if let Some(o) = r.spec.as_object_mut() {
            match v.get("allowedResourceOauth2ReturnUrls") {
                Some(urls) => o.insert("allowedResourceOauth2ReturnUrls".into(), urls.clone()),
                None => o.remove("allowedResourceOauth2ReturnUrls"),
            };
        }
        r.updated_at = now_millis();
        self.update(&r, "workload identity").await?;
        Ok(self.workload_out(&r, true))
    }

    /// `ListWorkloadIdentities` (at most 20 a page).
    pub async fn list_workload_identities(&self, v: Value) -> Result<Value, ApiError> {
        let (items, next) = self
            .list(
                WORKLOAD,
                &v,
                20,
                |r| json!({"name": r.name, "workloadIdentityArn": self.workload_arn(&r.name)}),
            )
            .await?;
        Ok(with_next(json!({"workloadIdentities": items}), next))
    }

    /// `DeleteWorkloadIdentity`.
    pub async fn delete_workload_identity(&self, v: Value) -> Result<Value, ApiError> {
        self.delete(WORKLOAD, &v, "workload identity").await
    }

    // ---- API-key credential providers ----------------------------------------------------

    fn api_key_out(&self, r: &IdentityRow, times: bool) -> Value {
        let mut o = json!({
            "apiKeySecretArn": self.secret_arn(API_KEY, &r.name),
            "apiKeySecretSource": "MANAGED",
            "name": r.name,
            "credentialProviderArn": self.provider_arn(API_KEY, &r.name),
        });
        if times {
            o["createdTime"] = secs(r.created_at);
            o["lastUpdatedTime"] = secs(r.updated_at);
        }
        o
    }

    fn api_key_secret(&self, v: &Value, name: &str) -> Result<Vec<u8>, ApiError> {
        if v.get("apiKeySecretConfig").is_some()
            || s(v, "apiKeySecretSource").is_some_and(|x| x != "MANAGED")
        {
            return Err(ApiError::field(
                "apiKeySecretConfig",
                "Berth keeps API keys in its own token vault: pass apiKey (EXTERNAL secrets in \
                 AWS Secrets Manager are not supported)",
            ));
        }
        let key = s(v, "apiKey").ok_or_else(|| ApiError::field("apiKey", "apiKey is required"))?;
        Ok(self.vault.seal(key.as_bytes(), &aad(API_KEY, name)))
    }

    /// `CreateApiKeyCredentialProvider`: the key is sealed in the vault.
    pub async fn create_api_key_provider(&self, v: Value) -> Result<Value, ApiError> {
        let name = name_of(&v)?;
        let secret = self.api_key_secret(&v, &name)?;
        let now = now_millis();
        let spec = v
            .get("tags")
            .map_or_else(|| json!({}), |t| json!({"tags": t}));
        let row = IdentityRow {
            kind: API_KEY.into(),
            name,
            spec,
            secret: Some(secret),
            created_at: now,
            updated_at: now,
        };
        self.insert(&row, "API key credential provider").await?;
        Ok(self.api_key_out(&row, false))
    }

    /// `GetApiKeyCredentialProvider` (never the key).
    pub async fn get_api_key_provider(&self, v: Value) -> Result<Value, ApiError> {
        let r = self
            .get_row(API_KEY, &name_of(&v)?, "API key credential provider")
            .await?;
        Ok(self.api_key_out(&r, true))
    }

    /// `UpdateApiKeyCredentialProvider`: replaces the key.
    pub async fn update_api_key_provider(&self, v: Value) -> Result<Value, ApiError> {
        let name = name_of(&v)?;
        let mut r = self
            .get_row(API_KEY, &name, "API key credential provider")
            .await?;
        r.secret = Some(self.api_key_secret(&v, &name)?);
        r.updated_at = now_millis();
        self.update(&r, "API key credential provider").await?;
        Ok(self.api_key_out(&r, true))
    }

    /// `ListApiKeyCredentialProviders`.
    pub async fn list_api_key_providers(&self, v: Value) -> Result<Value, ApiError> {
        let (items, next) = self
            .list(API_KEY, &v, 100, |r| {
                json!({
                    "name": r.name,
                    "credentialProviderArn": self.provider_arn(API_KEY, &r.name),
                    "createdTime": secs(r.created_at),
                    "lastUpdatedTime": secs(r.updated_at),
                })
            })
            .await?;
        Ok(with_next(json!({"credentialProviders": items}), next))
    }

    /// `DeleteApiKeyCredentialProvider`.
    pub async fn delete_api_key_provider(&self, v: Value) -> Result<Value, ApiError> {
        self.delete(API_KEY, &v, "API key credential provider")
            .await
    }

    // ---- OAuth2 credential providers -----------------------------------------------------

    fn oauth2_out(&self, r: &IdentityRow, times: bool) -> Value {
        let mut o = json!({
            "clientSecretArn": self.secret_arn(OAUTH2, &r.name),
            "clientSecretSource": "MANAGED",
            "name": r.name,
            "credentialProviderArn": self.provider_arn(OAUTH2, &r.name),
            "credentialProviderVendor": r.spec["credentialProviderVendor"],
            "callbackUrl": r.spec["callbackUrl"],
            "oauth2ProviderConfigOutput": r.spec["oauth2ProviderConfigOutput"],
            "status": "READY",
        });
        if times {
            o["createdTime"] = secs(r.created_at);
            o["lastUpdatedTime"] = secs(r.updated_at);
        }
        o
    }

    /// The stored config (input minus the client secret, plus the output shape) and the
    /// sealed client secret.
    fn oauth2_config(&self, v: &Value, name: &str) -> Result<(Value, Vec<u8>), ApiError> {
        let vendor = s(v, "credentialProviderVendor").unwrap_or_default();
        let input = v
            .get("oauth2ProviderConfigInput")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                ApiError::field(
                    "oauth2ProviderConfigInput",
                    "oauth2ProviderConfigInput is required",
                )
            })?;
        let Some((member, cfg)) = input.iter().next() else {
            return Err(ApiError::field(
                "oauth2ProviderConfigInput",
                "oauth2ProviderConfigInput must set one member",
            ));
        };
        let mut cfg = cfg.as_object().cloned().unwrap_or_default();
        if cfg.contains_key("clientSecretConfig")
            || cfg
                .get("clientSecretSource")
                .and_then(Value::as_str)
                .is_some_and(|x| x != "MANAGED")
        {
            return Err(ApiError::field(
                format!("oauth2ProviderConfigInput.{member}.clientSecretConfig"),
                "Berth keeps client secrets in its own token vault: pass clientSecret (EXTERNAL \
                 secrets in AWS Secrets Manager are not supported)",
            ));
        }
        let secret = cfg
            .remove("clientSecret")
            .and_then(|x| x.as_str().map(str::to_owned))
            .ok_or_else(|| {
                ApiError::field(
                    format!("oauth2ProviderConfigInput.{member}.clientSecret"),
                    "clientSecret is required",
                )
            })?;
        cfg.remove("clientSecretSource");
        if member == "customOauth2ProviderConfig"
            && cfg
                .get("oauthDiscovery")
                .and_then(|d| d.get("authorizationServerMetadata"))
                .is_none()
        {
            return Err(ApiError::field(
                "oauth2ProviderConfigInput.customOauth2ProviderConfig.oauthDiscovery",
                "Berth needs oauthDiscovery.authorizationServerMetadata (it makes no outbound \
                 discovery requests)",
            ));
        }
        let output = json!({ member.clone(): Value::Object(cfg) });
        let spec = json!({
            "credentialProviderVendor": vendor,
            "oauth2ProviderConfigOutput": output,
        });
        Ok((spec, self.vault.seal(secret.as_bytes(), &aad(OAUTH2, name))))
    }

    /// `CreateOauth2CredentialProvider` (READY at once; the client secret sealed in the vault).
    pub async fn create_oauth2_provider(&self, v: Value) -> Result<Value, ApiError> {
        let name = name_of(&v)?;
        let (mut spec, secret) = self.oauth2_config(&v, &name)?;
        // Berth serves the callback itself (unsigned: the user's browser comes back to it).
        spec["callbackUrl"] = json!(format!(
            "{}{CALLBACK_PATH}/{}",
            self.public_url,
            uuid::Uuid::new_v4()
        ));
        if let Some(t) = v.get("tags") {
            spec["tags"] = t.clone();
        }
        let now = now_millis();
        let row = IdentityRow {
            kind: OAUTH2.into(),
            name,
            spec,
            secret: Some(secret),
            created_at: now,
            updated_at: now,
        };
        self.insert(&row, "OAuth2 credential provider").await?;
        let mut out = self.oauth2_out(&row, false);
        if let Some(o) = out.as_object_mut() {
            o.remove("credentialProviderVendor");
        }
        Ok(out)
    }

    /// `GetOauth2CredentialProvider` (never the client secret).
    pub async fn get_oauth2_provider(&self, v: Value) -> Result<Value, ApiError> {
        let r = self
            .get_row(OAUTH2, &name_of(&v)?, "OAuth2 credential provider")
            .await?;
        Ok(self.oauth2_out(&r, true))
    }

    /// `UpdateOauth2CredentialProvider`: replaces vendor and config; cached tokens are dropped.
    pub async fn update_oauth2_provider(&self, v: Value) -> Result<Value, ApiError> {
        let name = name_of(&v)?;
        let old = self
            .get_row(OAUTH2, &name, "OAuth2 credential provider")
            .await?;
        let (mut spec, secret) = self.oauth2_config(&v, &name)?;
        for k in ["callbackUrl", "tags"] {
            if let Some(x) = old.spec.get(k) {
                spec[k] = x.clone();
            }
        }
        let r = IdentityRow {
            spec,
            secret: Some(secret),
            updated_at: now_millis(),
            ..old
        };
        self.update(&r, "OAuth2 credential provider").await?;
        self.store
            .clear_cached_tokens(&provider_key(OAUTH2, &name))
            .await
            .map_err(internal)?;
        Ok(self.oauth2_out(&r, true))
    }

    /// `ListOauth2CredentialProviders` (at most 20 a page).
    pub async fn list_oauth2_providers(&self, v: Value) -> Result<Value, ApiError> {
        let (items, next) = self
            .list(OAUTH2, &v, 20, |r| {
                json!({
                    "name": r.name,
                    "credentialProviderVendor": r.spec["credentialProviderVendor"],
                    "credentialProviderArn": self.provider_arn(OAUTH2, &r.name),
                    "createdTime": secs(r.created_at),
                    "lastUpdatedTime": secs(r.updated_at),
                })
            })
            .await?;
        Ok(with_next(json!({"credentialProviders": items}), next))
    }

    /// `DeleteOauth2CredentialProvider`.
    pub async fn delete_oauth2_provider(&self, v: Value) -> Result<Value, ApiError> {
        self.delete(OAUTH2, &v, "OAuth2 credential provider").await
    }

    // ---- Token vault ---------------------------------------------------------------------

    /// `GetTokenVault`: the one vault, `default`, keyed by Berth (`ServiceManagedKey`).
    pub async fn get_token_vault(&self, v: Value) -> Result<Value, ApiError> {
        let id = s(&v, "tokenVaultId").unwrap_or("default");
        if id != "default" {
            return Err(ApiError::new(
                ErrorKind::ResourceNotFound,
                format!("token vault {id} does not exist (Berth has one, default)"),
            ));
        }
        Ok(json!({
            "tokenVaultId": "default",
            "kmsConfiguration": {"keyType": "ServiceManagedKey"},
            "lastModifiedDate": secs(self.vault.created_millis()),
        }))
    }

    // ---- Runtimes' own workload identities -------------------------------------------------

    /// The workload identity AgentCore creates with each runtime (named after it, as the
    /// runtime's `workloadIdentityDetails` says): made if missing, an existing one kept.
    pub async fn ensure_runtime_identity(&self, runtime_name: &str) -> Result<(), ApiError> {
        if self
            .store
            .identity(WORKLOAD, runtime_name)
            .await
            .map_err(internal)?
            .is_some()
        {
            return Ok(());
        }
        let now = now_millis();
        let row = IdentityRow {
            kind: WORKLOAD.into(),
            name: runtime_name.to_owned(),
            spec: json!({ RUNTIME_OWNED: true }),
            secret: None,
            created_at: now,
            updated_at: now,
        };
        match self.insert(&row, "workload identity").await {
            // Made meanwhile by a concurrent call: the same outcome.
            Err(e) if matches!(e.kind, ErrorKind::Conflict) => Ok(()),
            other => other,
        }
    }

    /// Deletes the workload identity a runtime was given, as AgentCore does when the runtime is
    /// deleted (which revokes the tokens its agents hold). One the operator made under the same
    /// name before the runtime existed (kept by [`Identity::ensure_runtime_identity`]) is not
    /// the runtime's and stays. Returns whether one was deleted.
    pub async fn delete_runtime_identity(&self, runtime_name: &str) -> Result<bool, ApiError> {
        let Some(row) = self
            .store
            .identity(WORKLOAD, runtime_name)
            .await
            .map_err(internal)?
        else {
            return Ok(false);
        };
        if row.spec.get(RUNTIME_OWNED) != Some(&Value::Bool(true)) {
            return Ok(false);
        }
        self.store
            .delete_identity(WORKLOAD, runtime_name)
            .await
            .map_err(internal)
    }

    /// A workload access token for a runtime's agent acting for `user` (the invocation's
    /// `X-Amzn-Bedrock-AgentCore-Runtime-User-Id`), as AgentCore hands one to the agent with
    /// every invocation; with its expiry (epoch seconds).
    pub fn runtime_token(&self, runtime_name: &str, user: Option<&str>) -> (String, i64) {
        let expires = now_millis() / 1000 + TOKEN_TTL.as_secs() as i64;
        let token = self.vault.sign_token(&WorkloadClaims {
            workload: runtime_name.to_owned(),
            user: user.map(str::to_owned),
            expires,
        });
        (token, expires)
    }

    // ---- Data plane ----------------------------------------------------------------------

    async fn workload_token(&self, v: &Value, user: Option<String>) -> Result<Value, ApiError> {
        let workload = s(v, "workloadName").unwrap_or_default();
        self.get_row(WORKLOAD, workload, "workload identity")
            .await?;
        let expires = now_millis() / 1000 + TOKEN_TTL.as_secs() as i64;
        let token = self.vault.sign_token(&WorkloadClaims {
            workload: workload.to_owned(),
            user,
            expires,
        });
        Ok(json!({ "workloadAccessToken": token }))
    }

    /// `GetWorkloadAccessToken`: a token for the workload acting for no user.
    pub async fn get_workload_access_token(&self, v: Value) -> Result<Value, ApiError> {
        self.workload_token(&v, None).await
    }

    /// `GetWorkloadAccessTokenForUserId`.
    pub async fn get_workload_access_token_for_user_id(&self, v: Value) -> Result<Value, ApiError> {
        let user = s(&v, "userId").unwrap_or_default().to_owned();
        self.workload_token(&v, Some(user)).await
    }

    /// `GetWorkloadAccessTokenForJWT`: the user is the JWT's `iss` and `sub`. The JWT's
    /// signature is the inbound authorizer's to check (Berth's runtime verifies it before it
    /// calls this); here it must be well formed, unexpired, and name an issuer and a subject.
    pub async fn get_workload_access_token_for_jwt(&self, v: Value) -> Result<Value, ApiError> {
        let jwt = s(&v, "userToken").unwrap_or_default();
        let claims: Value = jwt
            .split('.')
            .nth(1)
            .and_then(|p| URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| ApiError::field("userToken", "userToken is not a JWT"))?;
        let (Some(iss), Some(sub)) = (s(&claims, "iss"), s(&claims, "sub")) else {
            return Err(ApiError::field(
                "userToken",
                "userToken must carry iss and sub claims",
            ));
        };
        if claims
            .get("exp")
            .and_then(Value::as_i64)
            .is_some_and(|exp| exp <= now_millis() / 1000)
        {
            return Err(ApiError::new(
                ErrorKind::AccessDenied,
                "userToken has expired",
            ));
        }
        self.workload_token(&v, Some(format!("{iss}|{sub}"))).await
    }

    /// The claims of the request's workload access token: signed by this vault, unexpired, and
    /// of a workload identity that still exists (deleting one revokes its tokens).
    async fn verify(&self, v: &Value) -> Result<WorkloadClaims, ApiError> {
        let t = s(v, "workloadIdentityToken").unwrap_or_default();
        let c = self
            .vault
            .verify_token(t, now_millis() / 1000)
            .map_err(|e| ApiError::new(ErrorKind::AccessDenied, e.to_string()))?;
        if self
            .store
            .identity(WORKLOAD, &c.workload)
            .await
            .map_err(internal)?
            .is_none()
        {
            return Err(ApiError::new(
                ErrorKind::AccessDenied,
                format!(
                    "the workload access token's workload identity {} no longer exists",
                    c.workload
                ),
            ));
        }
        Ok(c)
    }

    /// `GetResourceApiKey`: the key of a provider, for a holder of a valid workload token.
    pub async fn get_resource_api_key(&self, v: Value) -> Result<Value, ApiError> {
        self.verify(&v).await?;
        let name = s(&v, "resourceCredentialProviderName").unwrap_or_default();
        let r = self
            .get_row(API_KEY, name, "API key credential provider")
            .await?;
        let key = self.open_secret(&r)?;
        Ok(json!({ "apiKey": key }))
    }

    fn open_secret(&self, r: &IdentityRow) -> Result<String, ApiError> {
        let sealed = r.secret.as_deref().unwrap_or_default();
        let plain = self
            .vault
            .open(sealed, &aad(&r.kind, &r.name))
            .map_err(|e| ApiError::internal_because(format_args!("{}/{}: {e}", r.kind, r.name)))?;
        String::from_utf8(plain)
            .map_err(|_| ApiError::internal_because(format_args!("{}: not UTF-8", r.name)))
    }

    /// `GetResourceOauth2Token`. `M2M` runs the client-credentials grant against the
    /// provider's token endpoint and caches the token (sealed) until it expires; the user
    /// flows are not served.
    pub async fn get_resource_oauth2_token(&self, v: Value) -> Result<Value, ApiError> {
        let claims = self.verify(&v).await?;
        let flow = s(&v, "oauth2Flow").unwrap_or_default();
        if flow == "USER_FEDERATION" {
            return self.user_federation(&v, &claims).await;
        }
        if flow != "M2M" {
            return Err(ApiError::field(
                "oauth2Flow",
                format!("Berth serves oauth2Flow M2M and USER_FEDERATION, not {flow}"),
            ));
        }
        let name = s(&v, "resourceCredentialProviderName").unwrap_or_default();
        let r = self
            .get_row(OAUTH2, name, "OAuth2 credential provider")
            .await?;
        let scopes: Vec<String> = v
            .get("scopes")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let force = v
            .get("forceAuthentication")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let provider = provider_key(OAUTH2, name);
        let cache_key = format!("m2m|{}", scopes.join(" "));
        let cache_aad = format!("{provider}|{cache_key}");
        let now = now_millis();
        if !force
            && let Some(sealed) = self
                .store
                .cached_token(&provider, &cache_key, now)
                .await
                .map_err(internal)?
            && let Ok(t) = self.vault.open(&sealed, &cache_aad)
        {
            return Ok(json!({"accessToken": String::from_utf8_lossy(&t)}));
        }
        let secret = self.open_secret(&r)?;
        let endpoint = oauth2::Endpoint::from_config(&r.spec["oauth2ProviderConfigOutput"])
            .map_err(|e| ApiError::new(ErrorKind::Validation, e))?;
        let t = endpoint
            .client_credentials(&self.http, &secret, &scopes)
            .await
            .map_err(|e| ApiError::new(ErrorKind::AccessDenied, e))?;
        if let Some(ttl) = t.expires_in {
            // Keep a margin so a cached token is never handed out in its last seconds.
            let until = now + (ttl.saturating_sub(30) as i64) * 1000;
            if until > now {
                self.store
                    .put_cached_token(
                        &provider,
                        &cache_key,
                        &self.vault.seal(t.access_token.as_bytes(), &cache_aad),
                        until,
                    )
                    .await
                    .map_err(internal)?;
            }
        }
        Ok(json!({"accessToken": t.access_token}))
    }
}

fn with_next(mut v: Value, next: Option<String>) -> Value {
    if let Some(n) = next {
        v["nextToken"] = json!(n);
    }
    v
}

/// The associated data a resource's secret is sealed with.
fn aad(kind: &str, name: &str) -> String {
    format!("{kind}/{name}")
}

/// The cache's provider key (what deleting a provider clears).
fn provider_key(kind: &str, name: &str) -> String {
    format!("{kind}/{name}")
}

fn scopes_of(v: &Value) -> Vec<String> {
    v.get("scopes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Where the browser goes after the callback: the app's return URL, told the session (`None`:
/// the session gave none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect(pub Option<String>);

impl Identity {
    fn user_cache_key(workload: &str, user: &str, scopes: &[String]) -> String {
        format!("user|{workload}|{user}|{}", scopes.join(" "))
    }

    /// `GetResourceOauth2Token` with `USER_FEDERATION` (3LO): a token the user consented to
    /// earlier, or an authorization URL and a session to poll with `sessionUri`.
    async fn user_federation(&self, v: &Value, c: &WorkloadClaims) -> Result<Value, ApiError> {
        let Some(user) = c.user.as_deref() else {
            return Err(ApiError::field(
                "workloadIdentityToken",
                "USER_FEDERATION needs a workload access token for a user \
                 (GetWorkloadAccessTokenForUserId or ...ForJWT)",
            ));
        };
        let name = s(v, "resourceCredentialProviderName").unwrap_or_default();
        let provider = self
            .get_row(OAUTH2, name, "OAuth2 credential provider")
            .await?;
        let scopes = scopes_of(v);
        let pkey = provider_key(OAUTH2, name);
        let ckey = Self::user_cache_key(&c.workload, user, &scopes);
        let caad = format!("{pkey}|{ckey}");
        let now = now_millis();
        let force = v
            .get("forceAuthentication")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if let Some(uri) = s(v, "sessionUri") {
            let id = uri.strip_prefix(REQUEST_URI).unwrap_or_default();
            let sess = self
                .store
                .identity(SESSION, id)
                .await
                .map_err(internal)?
                .filter(|r| {
                    r.spec["workload"] == c.workload
                        && r.spec["user"] == user
                        && r.spec["provider"] == name
                })
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorKind::ResourceNotFound,
                        format!("session {uri} does not exist"),
                    )
                })?;
            if sess.spec["status"] == "COMPLETE"
                && let Some(sealed) = &sess.secret
            {
                let t = self
                    .vault
                    .open(sealed, &aad(SESSION, id))
                    .map_err(|e| ApiError::internal_because(format_args!("session {id}: {e}")))?;
                return Ok(json!({"accessToken": String::from_utf8_lossy(&t)}));
            }
            let status = if sess.spec["status"] == "FAILED"
                || now > sess.spec["expires"].as_i64().unwrap_or(0)
            {
                "FAILED"
            } else {
                "IN_PROGRESS"
            };
            return Ok(json!({
                "authorizationUrl": sess.spec["authorizationUrl"],
                "sessionUri": uri,
                "sessionStatus": status,
            }));
        }
        if !force
            && let Some(sealed) = self
                .store
                .cached_token(&pkey, &ckey, now)
                .await
                .map_err(internal)?
            && let Ok(t) = self.vault.open(&sealed, &caad)
        {
            return Ok(json!({"accessToken": String::from_utf8_lossy(&t)}));
        }
        let return_url = s(v, "resourceOauth2ReturnUrl").map(str::to_owned);
        let workload = self
            .get_row(WORKLOAD, &c.workload, "workload identity")
            .await?;
        let allowed = workload.spec["allowedResourceOauth2ReturnUrls"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(r) = &return_url
            && !allowed.iter().any(|a| a.as_str() == Some(r))
        {
            return Err(ApiError::field(
                "resourceOauth2ReturnUrl",
                format!(
                    "{r} is not one of workload identity {}'s allowedResourceOauth2ReturnUrls",
                    c.workload
                ),
            ));
        }
        let cfg = &provider.spec["oauth2ProviderConfigOutput"];
        let (_, member) = cfg
            .as_object()
            .and_then(|o| o.iter().next())
            .ok_or_else(|| ApiError::internal_because("provider without configuration"))?;
        let auth_endpoint = member
            .pointer("/oauthDiscovery/authorizationServerMetadata/authorizationEndpoint")
            .or_else(|| member.get("authorizationEndpoint"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::Validation,
                    format!("provider {name} has no authorization endpoint Berth can use"),
                )
            })?;
        let client_id = member["clientId"].as_str().unwrap_or_default();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut url = format!(
            "{auth_endpoint}{}response_type=code&client_id={}&redirect_uri={}&state={id}",
            if auth_endpoint.contains('?') {
                '&'
            } else {
                '?'
            },
            oauth2::url_encode(client_id),
            oauth2::url_encode(provider.spec["callbackUrl"].as_str().unwrap_or_default()),
        );
        if !scopes.is_empty() {
            url.push_str(&format!("&scope={}", oauth2::url_encode(&scopes.join(" "))));
        }
        if let Some(params) = v.get("customParameters").and_then(Value::as_object) {
            for (k, p) in params {
                url.push_str(&format!(
                    "&{}={}",
                    oauth2::url_encode(k),
                    oauth2::url_encode(p.as_str().unwrap_or_default())
                ));
            }
        }
        let uri = format!("{REQUEST_URI}{id}");
        // Sessions past any use (consent window over, the SDK's poll long done) are swept as new
        // ones start; a completed session's token lives on in the user's cache.
        self.store
            .delete_identities_before(SESSION, now - 2 * SESSION_TTL_MS)
            .await
            .map_err(internal)?;
        let row = IdentityRow {
            kind: SESSION.into(),
            name: id,
            spec: json!({
                "provider": name, "workload": c.workload, "user": user, "scopes": scopes,
                "returnUrl": return_url, "authorizationUrl": url, "sessionUri": uri,
                "status": "IN_PROGRESS", "expires": now + SESSION_TTL_MS,
            }),
            secret: None,
            created_at: now,
            updated_at: now,
        };
        self.insert(&row, "session").await?;
        Ok(json!({"authorizationUrl": url, "sessionUri": uri, "sessionStatus": "IN_PROGRESS"}))
    }

    /// The provider's redirect back (`GET /identities/oauth2/callback/{id}?code&state`): the
    /// code is exchanged for a token, sealed in the session, which then waits for the app's
    /// `CompleteResourceTokenAuth`. Answers where to send the browser.
    pub async fn oauth2_callback(
        &self,
        code: Option<&str>,
        state: &str,
        error: Option<&str>,
    ) -> Result<Redirect, ApiError> {
        let not_found = || ApiError::not_found(format!("no OAuth2 session {state}"));
        let mut sess = self
            .store
            .identity(SESSION, state)
            .await
            .map_err(internal)?
            .ok_or_else(not_found)?;
        let now = now_millis();
        if sess.spec["status"] != "IN_PROGRESS" || now > sess.spec["expires"].as_i64().unwrap_or(0)
        {
            return Err(ApiError::new(
                ErrorKind::Conflict,
                "this OAuth2 session is no longer waiting for consent",
            ));
        }
        let result = match (code, error) {
            (Some(code), None) => self.exchange_code(&sess, code).await,
            (_, e) => Err(format!("the provider refused: {}", e.unwrap_or("no code"))),
        };
        match result {
            Ok(token) => {
                sess.secret = Some(
                    self.vault
                        .seal(token.access_token.as_bytes(), &aad(SESSION, state)),
                );
                sess.spec["status"] = json!("AUTHORIZED");
                if let Some(ttl) = token.expires_in {
                    sess.spec["tokenExpires"] = json!(now + (ttl.saturating_sub(30) as i64) * 1000);
                }
            }
            Err(e) => {
                sess.spec["status"] = json!("FAILED");
                sess.spec["failureReason"] = json!(e);
            }
        }
        sess.updated_at = now;
        self.update(&sess, "session").await?;
        // No return URL: the browser's journey ends at Berth's page.
        let Some(base) = sess.spec["returnUrl"].as_str() else {
            return Ok(Redirect(None));
        };
        let uri = sess.spec["sessionUri"].as_str().unwrap_or_default();
        Ok(Redirect(Some(format!(
            "{base}{}session_id={}",
            if base.contains('?') { '&' } else { '?' },
            oauth2::url_encode(uri)
        ))))
    }

    async fn exchange_code(&self, sess: &IdentityRow, code: &str) -> Result<oauth2::Token, String> {
        let name = sess.spec["provider"].as_str().unwrap_or_default();
        let provider = self
            .get_row(OAUTH2, name, "OAuth2 credential provider")
            .await
            .map_err(|e| e.to_string())?;
        let secret = self.open_secret(&provider).map_err(|e| e.to_string())?;
        let endpoint = oauth2::Endpoint::from_config(&provider.spec["oauth2ProviderConfigOutput"])?;
        let redirect = provider.spec["callbackUrl"].as_str().unwrap_or_default();
        endpoint
            .authorization_code(&self.http, &secret, code, redirect)
            .await
    }

    /// `CompleteResourceTokenAuth`: the app confirms the user who came back is the session's.
    pub async fn complete_resource_token_auth(&self, v: Value) -> Result<Value, ApiError> {
        let uri = s(&v, "sessionUri").unwrap_or_default();
        let id = uri.strip_prefix(REQUEST_URI).unwrap_or_default();
        let mut sess = self
            .store
            .identity(SESSION, id)
            .await
            .map_err(internal)?
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::ResourceNotFound,
                    format!("session {uri} does not exist"),
                )
            })?;
        let who = v.get("userIdentifier").cloned().unwrap_or_default();
        let user = if let Some(u) = s(&who, "userId") {
            u.to_owned()
        } else {
            let jwt = s(&who, "userToken").unwrap_or_default();
            let claims: Value = jwt
                .split('.')
                .nth(1)
                .and_then(|p| URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok())
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            format!(
                "{}|{}",
                s(&claims, "iss").unwrap_or_default(),
                s(&claims, "sub").unwrap_or_default()
            )
        };
        if sess.spec["user"] != user.as_str() {
            return Err(ApiError::new(
                ErrorKind::AccessDenied,
                "the user does not match the session's",
            ));
        }
        if sess.spec["status"] != "AUTHORIZED" {
            return Err(ApiError::new(
                ErrorKind::Validation,
                format!(
                    "session {uri} is {}, not waiting for completion",
                    sess.spec["status"].as_str().unwrap_or("unknown")
                ),
            ));
        }
        sess.spec["status"] = json!("COMPLETE");
        sess.updated_at = now_millis();
        self.update(&sess, "session").await?;
        // The user's token now serves their later requests too, until it expires.
        if let (Some(until), Some(sealed)) = (sess.spec["tokenExpires"].as_i64(), &sess.secret) {
            let token = self
                .vault
                .open(sealed, &aad(SESSION, id))
                .map_err(|e| ApiError::internal_because(format_args!("session {id}: {e}")))?;
            let name = sess.spec["provider"].as_str().unwrap_or_default();
            let pkey = provider_key(OAUTH2, name);
            let ckey = Self::user_cache_key(
                sess.spec["workload"].as_str().unwrap_or_default(),
                &user,
                &scopes_of(&sess.spec),
            );
            let sealed = self.vault.seal(&token, &format!("{pkey}|{ckey}"));
            self.store
                .put_cached_token(&pkey, &ckey, &sealed, until)
                .await
                .map_err(internal)?;
        }
        Ok(json!({}))
    }
}
