//! AgentCore Identity: workload identities, API-key and OAuth2 credential providers, the token
//! vault, and the data plane that hands an agent its credentials.
//!
//! Every operation takes its typed request (`berth_api::identity`, read from the JSON the model
//! validated) and answers its typed response; the server only routes. Secrets (API keys, client
//! secrets, cached OAuth2 tokens) are sealed by the [`vault::Vault`] before they reach the store
//! and opened only for a caller holding a valid workload access token.

pub mod oauth2;
pub mod secrets;
pub mod vault;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use berth_api::identity::{
    ApiKeyCredentialProvider, ApiKeyCredentialProviderItem, ApiKeyProviderRequest,
    CompleteResourceTokenAuthRequest, CompleteResourceTokenAuthResponse,
    CreateWorkloadIdentityRequest, CustomOauth2ProviderConfigOutput, Empty,
    GetResourceApiKeyRequest, GetResourceApiKeyResponse, GetResourceOauth2TokenRequest,
    GetResourceOauth2TokenResponse, GetTokenVaultRequest, GetTokenVaultResponse,
    GetWorkloadAccessTokenForJwtRequest, GetWorkloadAccessTokenForUserIdRequest,
    GetWorkloadAccessTokenRequest, KmsConfiguration, ListApiKeyCredentialProvidersResponse,
    ListOauth2CredentialProvidersResponse, ListRequest, ListWorkloadIdentitiesResponse,
    NameRequest, Oauth2CredentialProvider, Oauth2CredentialProviderItem, Oauth2Discovery,
    Oauth2ProviderConfigInput, Oauth2ProviderConfigOutput, Oauth2ProviderRequest, Secret,
    UpdateWorkloadIdentityRequest, UserIdentifier, VendorOauth2ProviderConfigOutput,
    WorkloadAccessToken, WorkloadIdentity, WorkloadIdentitySummary,
};
use berth_api::{ApiError, ErrorKind};
use berth_store::identity::{IdentityRow, IdentityStore};
use berth_types::{Partition, now_millis};
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
/// The spec member of an OAuth2 provider holding its configuration: the input union without
/// its secret members (the name predates the typed shapes; stored rows keep it).
const CONFIG: &str = "oauth2ProviderConfigOutput";
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

/// A list page's size: `maxResults` or the default, and the name after which it starts.
fn page(req: &ListRequest, default: u32) -> Result<(u32, Option<String>), ApiError> {
    let limit = req.max_results.map_or(default, |n| n.clamp(1, 100));
    let after = match req.next_token.as_deref() {
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

/// The `iss|sub` a JWT names its user by (the payload only: its signature is the inbound
/// authorizer's to check), with its `exp`.
fn jwt_user(jwt: &str) -> Option<(String, Option<i64>)> {
    let claims: Value = jwt
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())?;
    let (iss, sub) = (s(&claims, "iss")?, s(&claims, "sub")?);
    Some((
        format!("{iss}|{sub}"),
        claims.get("exp").and_then(Value::as_i64),
    ))
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

    fn secret_arn(&self, kind: &str, name: &str) -> Secret {
        let prefix = if kind == API_KEY { "apikey" } else { "oauth2" };
        Secret {
            secret_arn: self.arn(
                "secretsmanager",
                &format!("secret:bedrock-agentcore-identity!default/{prefix}/{name}"),
            ),
        }
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

    async fn delete(&self, kind: &str, name: &str, what: &str) -> Result<Empty, ApiError> {
        if self
            .store
            .delete_identity(kind, name)
            .await
            .map_err(internal)?
        {
            Ok(Empty {})
        } else {
            Err(ApiError::new(
                ErrorKind::ResourceNotFound,
                format!("{what} {name} does not exist"),
            ))
        }
    }

    /// One page of `kind`, each row made an item by `item`, and the next page's token.
    async fn list<T>(
        &self,
        kind: &str,
        req: &ListRequest,
        default: u32,
        item: impl Fn(&IdentityRow) -> T,
    ) -> Result<(Vec<T>, Option<String>), ApiError> {
        let (limit, after) = page(req, default)?;
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

    fn workload_out(&self, r: &IdentityRow, times: bool) -> WorkloadIdentity {
        WorkloadIdentity {
            name: r.name.clone(),
            workload_identity_arn: self.workload_arn(&r.name),
            allowed_resource_oauth2_return_urls: r
                .spec
                .get("allowedResourceOauth2ReturnUrls")
                .and_then(|v| serde_json::from_value(v.clone()).ok()),
            created_time: times.then_some(r.created_at),
            last_updated_time: times.then_some(r.updated_at),
        }
    }

    /// `CreateWorkloadIdentity`.
    pub async fn create_workload_identity(
        &self,
        req: CreateWorkloadIdentityRequest,
    ) -> Result<WorkloadIdentity, ApiError> {
        let now = now_millis();
        let mut spec = Map::new();
        if let Some(urls) = req.allowed_resource_oauth2_return_urls {
            spec.insert("allowedResourceOauth2ReturnUrls".into(), json!(urls));
        }
        if let Some(tags) = req.tags {
            spec.insert("tags".into(), json!(tags));
        }
        let row = IdentityRow {
            kind: WORKLOAD.into(),
            name: req.name,
            spec: Value::Object(spec),
            secret: None,
            created_at: now,
            updated_at: now,
        };
        self.insert(&row, "workload identity").await?;
        Ok(self.workload_out(&row, false))
    }

    /// `GetWorkloadIdentity`.
    pub async fn get_workload_identity(
        &self,
        req: NameRequest,
    ) -> Result<WorkloadIdentity, ApiError> {
        let r = self
            .get_row(WORKLOAD, &req.name, "workload identity")
            .await?;
        Ok(self.workload_out(&r, true))
    }

    /// `UpdateWorkloadIdentity`: replaces the allowed return URLs.
    pub async fn update_workload_identity(
        &self,
        req: UpdateWorkloadIdentityRequest,
    ) -> Result<WorkloadIdentity, ApiError> {
        let mut r = self
            .get_row(WORKLOAD, &req.name, "workload identity")
            .await?;
        if let Some(o) = r.spec.as_object_mut() {
            match req.allowed_resource_oauth2_return_urls {
                Some(urls) => o.insert("allowedResourceOauth2ReturnUrls".into(), json!(urls)),
                None => o.remove("allowedResourceOauth2ReturnUrls"),
            };
        }
        r.updated_at = now_millis();
        self.update(&r, "workload identity").await?;
        Ok(self.workload_out(&r, true))
    }

    /// `ListWorkloadIdentities` (at most 20 a page).
    pub async fn list_workload_identities(
        &self,
        req: ListRequest,
    ) -> Result<ListWorkloadIdentitiesResponse, ApiError> {
        let (workload_identities, next_token) = self
            .list(WORKLOAD, &req, 20, |r| WorkloadIdentitySummary {
                name: r.name.clone(),
                workload_identity_arn: self.workload_arn(&r.name),
            })
            .await?;
        Ok(ListWorkloadIdentitiesResponse {
            workload_identities,
            next_token,
        })
    }

    /// `DeleteWorkloadIdentity`.
    pub async fn delete_workload_identity(&self, req: NameRequest) -> Result<Empty, ApiError> {
        self.delete(WORKLOAD, &req.name, "workload identity").await
    }

    // ---- API-key credential providers ----------------------------------------------------

    fn api_key_out(&self, r: &IdentityRow, times: bool) -> ApiKeyCredentialProvider {
        ApiKeyCredentialProvider {
            api_key_secret_arn: self.secret_arn(API_KEY, &r.name),
            api_key_secret_source: "MANAGED".into(),
            name: r.name.clone(),
            credential_provider_arn: self.provider_arn(API_KEY, &r.name),
            created_time: times.then_some(r.created_at),
            last_updated_time: times.then_some(r.updated_at),
        }
    }

    fn api_key_secret(&self, req: &ApiKeyProviderRequest) -> Result<Vec<u8>, ApiError> {
        if req.api_key_secret_config.is_some()
            || req
                .api_key_secret_source
                .as_deref()
                .is_some_and(|x| x != "MANAGED")
        {
            return Err(ApiError::field(
                "apiKeySecretConfig",
                "Berth keeps API keys in its own token vault: pass apiKey (EXTERNAL secrets in \
                 AWS Secrets Manager are not supported)",
            ));
        }
        let key = req
            .api_key
            .as_deref()
            .ok_or_else(|| ApiError::field("apiKey", "apiKey is required"))?;
        Ok(self.vault.seal(key.as_bytes(), &aad(API_KEY, &req.name)))
    }

    /// `CreateApiKeyCredentialProvider`: the key is sealed in the vault.
    pub async fn create_api_key_provider(
        &self,
        req: ApiKeyProviderRequest,
    ) -> Result<ApiKeyCredentialProvider, ApiError> {
        let secret = self.api_key_secret(&req)?;
        let now = now_millis();
        let spec = req
            .tags
            .as_ref()
            .map_or_else(|| json!({}), |t| json!({"tags": t}));
        let row = IdentityRow {
            kind: API_KEY.into(),
            name: req.name,
            spec,
            secret: Some(secret),
            created_at: now,
            updated_at: now,
        };
        self.insert(&row, "API key credential provider").await?;
        Ok(self.api_key_out(&row, false))
    }

    /// `GetApiKeyCredentialProvider` (never the key).
    pub async fn get_api_key_provider(
        &self,
        req: NameRequest,
    ) -> Result<ApiKeyCredentialProvider, ApiError> {
        let r = self
            .get_row(API_KEY, &req.name, "API key credential provider")
            .await?;
        Ok(self.api_key_out(&r, true))
    }

    /// `UpdateApiKeyCredentialProvider`: replaces the key.
    pub async fn update_api_key_provider(
        &self,
        req: ApiKeyProviderRequest,
    ) -> Result<ApiKeyCredentialProvider, ApiError> {
        let mut r = self
            .get_row(API_KEY, &req.name, "API key credential provider")
            .await?;
        r.secret = Some(self.api_key_secret(&req)?);
        r.updated_at = now_millis();
        self.update(&r, "API key credential provider").await?;
        Ok(self.api_key_out(&r, true))
    }

    /// `ListApiKeyCredentialProviders`.
    pub async fn list_api_key_providers(
        &self,
        req: ListRequest,
    ) -> Result<ListApiKeyCredentialProvidersResponse, ApiError> {
        let (credential_providers, next_token) = self
            .list(API_KEY, &req, 100, |r| ApiKeyCredentialProviderItem {
                name: r.name.clone(),
                credential_provider_arn: self.provider_arn(API_KEY, &r.name),
                created_time: r.created_at,
                last_updated_time: r.updated_at,
            })
            .await?;
        Ok(ListApiKeyCredentialProvidersResponse {
            credential_providers,
            next_token,
        })
    }

    /// `DeleteApiKeyCredentialProvider`.
    pub async fn delete_api_key_provider(&self, req: NameRequest) -> Result<Empty, ApiError> {
        self.delete(API_KEY, &req.name, "API key credential provider")
            .await
    }

    // ---- OAuth2 credential providers -----------------------------------------------------

    /// A provider's stored configuration (the input union without its secret).
    fn stored_config(r: &IdentityRow) -> Result<Oauth2ProviderConfigInput, ApiError> {
        serde_json::from_value(r.spec.get(CONFIG).cloned().unwrap_or_default()).map_err(|e| {
            ApiError::internal_because(format_args!("OAuth2 provider {}: {e}", r.name))
        })
    }

    /// The output union of a stored configuration: a custom provider's own discovery, every
    /// other provider's endpoints ([`oauth2::metadata`]).
    fn config_out(cfg: &Oauth2ProviderConfigInput) -> Oauth2ProviderConfigOutput {
        let discovery = || {
            oauth2::metadata(cfg).map_or(
                Oauth2Discovery::DiscoveryUrl(String::new()),
                Oauth2Discovery::AuthorizationServerMetadata,
            )
        };
        let vendor = || VendorOauth2ProviderConfigOutput {
            oauth_discovery: discovery(),
            client_id: cfg.client_id().map(str::to_owned),
        };
        match cfg {
            Oauth2ProviderConfigInput::Custom(c) => {
                Oauth2ProviderConfigOutput::Custom(CustomOauth2ProviderConfigOutput {
                    oauth_discovery: c.oauth_discovery.clone(),
                    client_id: c.client_id.clone(),
                    client_authentication_method: c.client_authentication_method.clone(),
                })
            }
            Oauth2ProviderConfigInput::Google(_) => Oauth2ProviderConfigOutput::Google(vendor()),
            Oauth2ProviderConfigInput::Github(_) => Oauth2ProviderConfigOutput::Github(vendor()),
            Oauth2ProviderConfigInput::Slack(_) => Oauth2ProviderConfigOutput::Slack(vendor()),
            Oauth2ProviderConfigInput::Salesforce(_) => {
                Oauth2ProviderConfigOutput::Salesforce(vendor())
            }
            Oauth2ProviderConfigInput::Microsoft(_) => {
                Oauth2ProviderConfigOutput::Microsoft(vendor())
            }
            Oauth2ProviderConfigInput::Atlassian(_) => {
                Oauth2ProviderConfigOutput::Atlassian(vendor())
            }
            Oauth2ProviderConfigInput::Linkedin(_) => {
                Oauth2ProviderConfigOutput::Linkedin(vendor())
            }
            Oauth2ProviderConfigInput::Included(_) => {
                Oauth2ProviderConfigOutput::Included(vendor())
            }
        }
    }

    fn oauth2_out(
        &self,
        r: &IdentityRow,
        times: bool,
    ) -> Result<Oauth2CredentialProvider, ApiError> {
        Ok(Oauth2CredentialProvider {
            client_secret_arn: self.secret_arn(OAUTH2, &r.name),
            client_secret_source: "MANAGED".into(),
            name: r.name.clone(),
            credential_provider_arn: self.provider_arn(OAUTH2, &r.name),
            credential_provider_vendor: times
                .then(|| s(&r.spec, "credentialProviderVendor").map(str::to_owned))
                .flatten(),
            callback_url: s(&r.spec, "callbackUrl").unwrap_or_default().to_owned(),
            oauth2_provider_config_output: Self::config_out(&Self::stored_config(r)?),
            created_time: times.then_some(r.created_at),
            last_updated_time: times.then_some(r.updated_at),
            status: "READY".into(),
        })
    }

    /// The stored spec (vendor and the configuration without its secret) and the sealed client
    /// secret; refuses what Berth cannot serve, naming the member.
    fn oauth2_config(&self, req: &Oauth2ProviderRequest) -> Result<(Value, Vec<u8>), ApiError> {
        let cfg = &req.oauth2_provider_config_input;
        let at = |m: &str| format!("oauth2ProviderConfigInput.{}.{m}", cfg.member());
        let (secret, secret_config, source) = cfg.secret();
        if secret_config || source.is_some_and(|x| x != "MANAGED") {
            return Err(ApiError::field(
                at("clientSecretConfig"),
                "Berth keeps client secrets in its own token vault: pass clientSecret (EXTERNAL \
                 secrets in AWS Secrets Manager are not supported)",
            ));
        }
        let secret = secret
            .ok_or_else(|| ApiError::field(at("clientSecret"), "clientSecret is required"))?;
        if let Oauth2ProviderConfigInput::Custom(c) = cfg
            && let Some(m) = c.client_authentication_method.as_deref()
            && !matches!(m, "CLIENT_SECRET_BASIC" | "CLIENT_SECRET_POST")
        {
            return Err(ApiError::field(
                at("clientAuthenticationMethod"),
                format!(
                    "Berth authenticates to token endpoints with CLIENT_SECRET_BASIC or \
                     CLIENT_SECRET_POST, not {m}"
                ),
            ));
        }
        if oauth2::metadata(cfg).is_none() {
            let (member, what) = match cfg {
                Oauth2ProviderConfigInput::Included(_) => (
                    at("tokenEndpoint"),
                    "issuer, authorizationEndpoint and tokenEndpoint",
                ),
                _ => (
                    at("oauthDiscovery"),
                    "oauthDiscovery.authorizationServerMetadata",
                ),
            };
            return Err(ApiError::field(
                member,
                format!("Berth needs {what} (it makes no outbound discovery requests)"),
            ));
        }
        let spec = json!({
            "credentialProviderVendor": req.credential_provider_vendor,
            CONFIG: cfg,
        });
        Ok((
            spec,
            self.vault.seal(secret.as_bytes(), &aad(OAUTH2, &req.name)),
        ))
    }

    /// `CreateOauth2CredentialProvider` (READY at once; the client secret sealed in the vault).
    pub async fn create_oauth2_provider(
        &self,
        req: Oauth2ProviderRequest,
    ) -> Result<Oauth2CredentialProvider, ApiError> {
        let (mut spec, secret) = self.oauth2_config(&req)?;
        // Berth serves the callback itself (unsigned: the user's browser comes back to it).
        spec["callbackUrl"] = json!(format!(
            "{}{CALLBACK_PATH}/{}",
            self.public_url,
            uuid::Uuid::new_v4()
        ));
        if let Some(t) = &req.tags {
            spec["tags"] = json!(t);
        }
        let now = now_millis();
        let row = IdentityRow {
            kind: OAUTH2.into(),
            name: req.name,
            spec,
            secret: Some(secret),
            created_at: now,
            updated_at: now,
        };
        self.insert(&row, "OAuth2 credential provider").await?;
        self.oauth2_out(&row, false)
    }

    /// `GetOauth2CredentialProvider` (never the client secret).
    pub async fn get_oauth2_provider(
        &self,
        req: NameRequest,
    ) -> Result<Oauth2CredentialProvider, ApiError> {
        let r = self
            .get_row(OAUTH2, &req.name, "OAuth2 credential provider")
            .await?;
        self.oauth2_out(&r, true)
    }

    /// `UpdateOauth2CredentialProvider`: replaces vendor and config; cached tokens are dropped.
    pub async fn update_oauth2_provider(
        &self,
        req: Oauth2ProviderRequest,
    ) -> Result<Oauth2CredentialProvider, ApiError> {
        let old = self
            .get_row(OAUTH2, &req.name, "OAuth2 credential provider")
            .await?;
        let (mut spec, secret) = self.oauth2_config(&req)?;
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
            .clear_cached_tokens(&provider_key(OAUTH2, &req.name))
            .await
            .map_err(internal)?;
        self.oauth2_out(&r, true)
    }

    /// `ListOauth2CredentialProviders` (at most 20 a page).
    pub async fn list_oauth2_providers(
        &self,
        req: ListRequest,
    ) -> Result<ListOauth2CredentialProvidersResponse, ApiError> {
        let (credential_providers, next_token) = self
            .list(OAUTH2, &req, 20, |r| Oauth2CredentialProviderItem {
                name: r.name.clone(),
                credential_provider_vendor: s(&r.spec, "credentialProviderVendor")
                    .unwrap_or_default()
                    .to_owned(),
                credential_provider_arn: self.provider_arn(OAUTH2, &r.name),
                created_time: r.created_at,
                last_updated_time: r.updated_at,
            })
            .await?;
        Ok(ListOauth2CredentialProvidersResponse {
            credential_providers,
            next_token,
        })
    }

    /// `DeleteOauth2CredentialProvider`.
    pub async fn delete_oauth2_provider(&self, req: NameRequest) -> Result<Empty, ApiError> {
        self.delete(OAUTH2, &req.name, "OAuth2 credential provider")
            .await
    }

    // ---- Token vault ---------------------------------------------------------------------

    /// `GetTokenVault`: the one vault, `default`, keyed by Berth (`ServiceManagedKey`).
    pub async fn get_token_vault(
        &self,
        req: GetTokenVaultRequest,
    ) -> Result<GetTokenVaultResponse, ApiError> {
        let id = req.token_vault_id.as_deref().unwrap_or("default");
        if id != "default" {
            return Err(ApiError::new(
                ErrorKind::ResourceNotFound,
                format!("token vault {id} does not exist (Berth has one, default)"),
            ));
        }
        Ok(GetTokenVaultResponse {
            token_vault_id: "default".into(),
            kms_configuration: KmsConfiguration {
                key_type: "ServiceManagedKey".into(),
            },
            last_modified_date: self.vault.created_millis(),
        })
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

    async fn workload_token(
        &self,
        workload: &str,
        user: Option<String>,
    ) -> Result<WorkloadAccessToken, ApiError> {
        self.get_row(WORKLOAD, workload, "workload identity")
            .await?;
        let expires = now_millis() / 1000 + TOKEN_TTL.as_secs() as i64;
        let token = self.vault.sign_token(&WorkloadClaims {
            workload: workload.to_owned(),
            user,
            expires,
        });
        Ok(WorkloadAccessToken {
            workload_access_token: token,
        })
    }

    /// `GetWorkloadAccessToken`: a token for the workload acting for no user.
    pub async fn get_workload_access_token(
        &self,
        req: GetWorkloadAccessTokenRequest,
    ) -> Result<WorkloadAccessToken, ApiError> {
        self.workload_token(&req.workload_name, None).await
    }

    /// `GetWorkloadAccessTokenForUserId`.
    pub async fn get_workload_access_token_for_user_id(
        &self,
        req: GetWorkloadAccessTokenForUserIdRequest,
    ) -> Result<WorkloadAccessToken, ApiError> {
        self.workload_token(&req.workload_name, Some(req.user_id))
            .await
    }

    /// `GetWorkloadAccessTokenForJWT`: the user is the JWT's `iss` and `sub`. The JWT's
    /// signature is the inbound authorizer's to check (Berth's runtime verifies it before it
    /// calls this); here it must be well formed, unexpired, and name an issuer and a subject.
    pub async fn get_workload_access_token_for_jwt(
        &self,
        req: GetWorkloadAccessTokenForJwtRequest,
    ) -> Result<WorkloadAccessToken, ApiError> {
        let (user, exp) = jwt_user(&req.user_token).ok_or_else(|| {
            ApiError::field(
                "userToken",
                "userToken is not a JWT carrying iss and sub claims",
            )
        })?;
        if exp.is_some_and(|exp| exp <= now_millis() / 1000) {
            return Err(ApiError::new(
                ErrorKind::AccessDenied,
                "userToken has expired",
            ));
        }
        self.workload_token(&req.workload_name, Some(user)).await
    }

    /// The claims of a workload access token: signed by this vault, unexpired, and of a
    /// workload identity that still exists (deleting one revokes its tokens).
    async fn verify(&self, token: &str) -> Result<WorkloadClaims, ApiError> {
        let c = self
            .vault
            .verify_token(token, now_millis() / 1000)
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
    pub async fn get_resource_api_key(
        &self,
        req: GetResourceApiKeyRequest,
    ) -> Result<GetResourceApiKeyResponse, ApiError> {
        self.verify(&req.workload_identity_token).await?;
        let r = self
            .get_row(
                API_KEY,
                &req.resource_credential_provider_name,
                "API key credential provider",
            )
            .await?;
        Ok(GetResourceApiKeyResponse {
            api_key: self.open_secret(&r)?,
        })
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
    /// provider's token endpoint and caches the token (sealed) until it expires;
    /// `USER_FEDERATION` is the 3LO flow ([`Identity::user_federation`]).
    pub async fn get_resource_oauth2_token(
        &self,
        req: GetResourceOauth2TokenRequest,
    ) -> Result<GetResourceOauth2TokenResponse, ApiError> {
        let claims = self.verify(&req.workload_identity_token).await?;
        match req.oauth2_flow.as_str() {
            "USER_FEDERATION" => return self.user_federation(&req, &claims).await,
            "M2M" => {}
            flow => {
                return Err(ApiError::field(
                    "oauth2Flow",
                    format!("Berth serves oauth2Flow M2M and USER_FEDERATION, not {flow}"),
                ));
            }
        }
        let name = req.resource_credential_provider_name.as_str();
        let r = self
            .get_row(OAUTH2, name, "OAuth2 credential provider")
            .await?;
        let force = req.force_authentication.unwrap_or(false);
        let provider = provider_key(OAUTH2, name);
        let cache_key = format!("m2m|{}", req.scopes.join(" "));
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
            return Ok(token_answer(String::from_utf8_lossy(&t).into_owned()));
        }
        let secret = self.open_secret(&r)?;
        let endpoint = oauth2::Endpoint::from_config(&Self::stored_config(&r)?)
            .map_err(|e| ApiError::new(ErrorKind::Validation, e))?;
        let t = endpoint
            .client_credentials(&self.http, &secret, &req.scopes)
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
        Ok(token_answer(t.access_token))
    }
}

/// A `GetResourceOauth2Token` answer holding the token.
fn token_answer(access_token: String) -> GetResourceOauth2TokenResponse {
    GetResourceOauth2TokenResponse {
        access_token: Some(access_token),
        ..Default::default()
    }
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
    async fn user_federation(
        &self,
        req: &GetResourceOauth2TokenRequest,
        c: &WorkloadClaims,
    ) -> Result<GetResourceOauth2TokenResponse, ApiError> {
        let Some(user) = c.user.as_deref() else {
            return Err(ApiError::field(
                "workloadIdentityToken",
                "USER_FEDERATION needs a workload access token for a user \
                 (GetWorkloadAccessTokenForUserId or ...ForJWT)",
            ));
        };
        let name = req.resource_credential_provider_name.as_str();
        let provider = self
            .get_row(OAUTH2, name, "OAuth2 credential provider")
            .await?;
        let scopes = &req.scopes;
        let pkey = provider_key(OAUTH2, name);
        let ckey = Self::user_cache_key(&c.workload, user, scopes);
        let caad = format!("{pkey}|{ckey}");
        let now = now_millis();
        let force = req.force_authentication.unwrap_or(false);
        if let Some(uri) = req.session_uri.as_deref() {
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
                return Ok(token_answer(String::from_utf8_lossy(&t).into_owned()));
            }
            let status = if sess.spec["status"] == "FAILED"
                || now > sess.spec["expires"].as_i64().unwrap_or(0)
            {
                "FAILED"
            } else {
                "IN_PROGRESS"
            };
            return Ok(GetResourceOauth2TokenResponse {
                authorization_url: s(&sess.spec, "authorizationUrl").map(str::to_owned),
                access_token: None,
                session_uri: Some(uri.to_owned()),
                session_status: Some(status.to_owned()),
            });
        }
        if !force
            && let Some(sealed) = self
                .store
                .cached_token(&pkey, &ckey, now)
                .await
                .map_err(internal)?
            && let Ok(t) = self.vault.open(&sealed, &caad)
        {
            return Ok(token_answer(String::from_utf8_lossy(&t).into_owned()));
        }
        let return_url = req.resource_oauth2_return_url.clone();
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
        let cfg = Self::stored_config(&provider)?;
        let auth_endpoint = oauth2::metadata(&cfg)
            .map(|m| m.authorization_endpoint)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::Validation,
                    format!("provider {name} has no authorization endpoint Berth can use"),
                )
            })?;
        let client_id = cfg.client_id().unwrap_or_default();
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
        for (k, p) in req.custom_parameters.iter().flatten() {
            url.push_str(&format!(
                "&{}={}",
                oauth2::url_encode(k),
                oauth2::url_encode(p)
            ));
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
        Ok(GetResourceOauth2TokenResponse {
            authorization_url: Some(url),
            access_token: None,
            session_uri: Some(uri),
            session_status: Some("IN_PROGRESS".into()),
        })
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
        let cfg = Self::stored_config(&provider).map_err(|e| e.to_string())?;
        let endpoint = oauth2::Endpoint::from_config(&cfg)?;
        let redirect = provider.spec["callbackUrl"].as_str().unwrap_or_default();
        endpoint
            .authorization_code(&self.http, &secret, code, redirect)
            .await
    }

    /// `CompleteResourceTokenAuth`: the app confirms the user who came back is the session's.
    pub async fn complete_resource_token_auth(
        &self,
        req: CompleteResourceTokenAuthRequest,
    ) -> Result<CompleteResourceTokenAuthResponse, ApiError> {
        let uri = req.session_uri.as_str();
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
        let user = match req.user_identifier {
            UserIdentifier::UserId(u) => u,
            UserIdentifier::UserToken(jwt) => jwt_user(&jwt).map(|(u, _)| u).ok_or_else(|| {
                ApiError::field(
                    "userIdentifier.userToken",
                    "userToken is not a JWT carrying iss and sub claims",
                )
            })?,
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
        Ok(Empty {})
    }
}
