//! AgentCore Identity wire shapes, typed: the requests `berth_identity::Identity` takes and the
//! responses it returns, member by member as the botocore models name them
//! (`bedrock-agentcore-control` for workload identities, credential providers and the token
//! vault; `bedrock-agentcore` for workload access tokens and the credentials they unlock).
//!
//! The server validates a request's raw JSON against the model first, then deserialises it into
//! one of these; members Berth does not act on are not declared (serde skips them). Responses
//! skip absent members; every Identity timestamp is a model `Timestamp` without
//! `timestampFormat`, so epoch seconds ([`epoch`]). Operations whose requests or responses have
//! the same members share a struct, named for each operation by a type alias.

use crate::memory::epoch;
use berth_types::EpochMillis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `TagsMap`: kept with the resource, not listed.
pub type Tags = BTreeMap<String, String>;

/// An empty response (`Delete*`, `CompleteResourceTokenAuth`): `{}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Empty {}

/// A request naming one resource (`Get*`, `Delete*`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NameRequest {
    /// The resource's name.
    pub name: String,
}

/// A list request: a page size and where the page starts.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListRequest {
    /// The `nextToken` of the previous page.
    pub next_token: Option<String>,
    /// The page size (the model bounds it per operation).
    pub max_results: Option<u32>,
}

/// `SecretReference`: a secret in AWS Secrets Manager, which Berth refuses (it keeps secrets
/// in its own vault).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// The secret's id.
    pub secret_id: String,
    /// The key in the secret's JSON.
    pub json_key: String,
}

/// `Secret`: where a provider's secret is kept.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    /// The secret's ARN.
    pub secret_arn: String,
}

// ---------------------------------------------------------------------------------------------
// Workload identities.

/// `CreateWorkloadIdentity`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateWorkloadIdentityRequest {
    /// `[A-Za-z0-9_.-]{3,255}`.
    pub name: String,
    /// Where 3LO flows may send the user back.
    pub allowed_resource_oauth2_return_urls: Option<Vec<String>>,
    /// Kept.
    pub tags: Option<Tags>,
}

/// `GetWorkloadIdentity`.
pub type GetWorkloadIdentityRequest = NameRequest;
/// `DeleteWorkloadIdentity`.
pub type DeleteWorkloadIdentityRequest = NameRequest;
/// `ListWorkloadIdentities` (at most 20 a page).
pub type ListWorkloadIdentitiesRequest = ListRequest;

/// `UpdateWorkloadIdentity`: the allowed return URLs are replaced (absent: none).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateWorkloadIdentityRequest {
    /// The identity.
    pub name: String,
    /// The new list.
    pub allowed_resource_oauth2_return_urls: Option<Vec<String>>,
}

/// A workload identity as Create (no times), Get and Update answer it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadIdentity {
    /// Its name.
    pub name: String,
    /// `arn:aws:bedrock-agentcore:<region>:<account>:workload-identity-directory/default/workload-identity/<name>`.
    pub workload_identity_arn: String,
    /// Where 3LO flows may send the user back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_resource_oauth2_return_urls: Option<Vec<String>>,
    /// Epoch seconds (Get, Update).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "epoch::option::serialize"
    )]
    pub created_time: Option<EpochMillis>,
    /// Epoch seconds (Get, Update).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "epoch::option::serialize"
    )]
    pub last_updated_time: Option<EpochMillis>,
}

/// `CreateWorkloadIdentityResponse`.
pub type CreateWorkloadIdentityResponse = WorkloadIdentity;
/// `GetWorkloadIdentityResponse`.
pub type GetWorkloadIdentityResponse = WorkloadIdentity;
/// `UpdateWorkloadIdentityResponse`.
pub type UpdateWorkloadIdentityResponse = WorkloadIdentity;

/// `WorkloadIdentityType`: a list item.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadIdentitySummary {
    /// Its name.
    pub name: String,
    /// Its ARN.
    pub workload_identity_arn: String,
}

/// `ListWorkloadIdentitiesResponse`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListWorkloadIdentitiesResponse {
    /// The page.
    pub workload_identities: Vec<WorkloadIdentitySummary>,
    /// Present when more follow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// API-key credential providers.

/// `CreateApiKeyCredentialProvider` (and, without `tags`, `UpdateApiKeyCredentialProvider`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyProviderRequest {
    /// The provider.
    pub name: String,
    /// The key, sealed in the vault.
    pub api_key: Option<String>,
    /// Refused: Berth keeps the key itself.
    pub api_key_secret_config: Option<SecretReference>,
    /// `MANAGED` (Berth's vault) or `EXTERNAL` (refused).
    pub api_key_secret_source: Option<String>,
    /// Kept (Create only).
    pub tags: Option<Tags>,
}

/// `CreateApiKeyCredentialProviderRequest`.
pub type CreateApiKeyCredentialProviderRequest = ApiKeyProviderRequest;
/// `UpdateApiKeyCredentialProviderRequest` (the model has no `tags`, so it never has one).
pub type UpdateApiKeyCredentialProviderRequest = ApiKeyProviderRequest;
/// `GetApiKeyCredentialProviderRequest`.
pub type GetApiKeyCredentialProviderRequest = NameRequest;
/// `DeleteApiKeyCredentialProviderRequest`.
pub type DeleteApiKeyCredentialProviderRequest = NameRequest;
/// `ListApiKeyCredentialProvidersRequest` (at most 100 a page).
pub type ListApiKeyCredentialProvidersRequest = ListRequest;

/// An API-key provider as Create (no times), Get and Update answer it (never the key).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyCredentialProvider {
    /// Where the key is kept.
    pub api_key_secret_arn: Secret,
    /// `MANAGED`.
    pub api_key_secret_source: String,
    /// Its name.
    pub name: String,
    /// `arn:aws:acps:<region>:<account>:token-vault/default/apikeycredentialprovider/<name>`.
    pub credential_provider_arn: String,
    /// Epoch seconds (Get, Update).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "epoch::option::serialize"
    )]
    pub created_time: Option<EpochMillis>,
    /// Epoch seconds (Get, Update).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "epoch::option::serialize"
    )]
    pub last_updated_time: Option<EpochMillis>,
}

/// `CreateApiKeyCredentialProviderResponse`.
pub type CreateApiKeyCredentialProviderResponse = ApiKeyCredentialProvider;
/// `GetApiKeyCredentialProviderResponse`.
pub type GetApiKeyCredentialProviderResponse = ApiKeyCredentialProvider;
/// `UpdateApiKeyCredentialProviderResponse`.
pub type UpdateApiKeyCredentialProviderResponse = ApiKeyCredentialProvider;

/// `ApiKeyCredentialProviderItem`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyCredentialProviderItem {
    /// Its name.
    pub name: String,
    /// Its ARN.
    pub credential_provider_arn: String,
    /// Epoch seconds.
    #[serde(serialize_with = "epoch::serialize")]
    pub created_time: EpochMillis,
    /// Epoch seconds.
    #[serde(serialize_with = "epoch::serialize")]
    pub last_updated_time: EpochMillis,
}

/// `ListApiKeyCredentialProvidersResponse`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListApiKeyCredentialProvidersResponse {
    /// The page.
    pub credential_providers: Vec<ApiKeyCredentialProviderItem>,
    /// Present when more follow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// OAuth2 credential providers.

/// `Oauth2AuthorizationServerMetadata`: where a provider authorizes and issues tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Oauth2AuthorizationServerMetadata {
    /// The issuer URL.
    pub issuer: String,
    /// Where the user's browser consents (3LO).
    pub authorization_endpoint: String,
    /// Where tokens are issued.
    pub token_endpoint: String,
    /// Echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_types: Option<Vec<String>>,
    /// Echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_methods: Option<Vec<String>>,
}

/// `Oauth2Discovery`: a union.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Oauth2Discovery {
    /// An OpenID discovery document's URL (Berth makes no discovery requests, so refused).
    DiscoveryUrl(String),
    /// The metadata itself.
    AuthorizationServerMetadata(Oauth2AuthorizationServerMetadata),
}

/// `CustomOauth2ProviderConfigInput`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomOauth2ProviderConfig {
    /// Where the provider is.
    pub oauth_discovery: Oauth2Discovery,
    /// The client id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The client secret (input only: sealed in the vault, never stored in the config).
    #[serde(skip_serializing)]
    pub client_secret: Option<String>,
    /// Refused (input only).
    #[serde(skip_serializing)]
    pub client_secret_config: Option<SecretReference>,
    /// `MANAGED` or `EXTERNAL` (refused) (input only).
    #[serde(skip_serializing)]
    pub client_secret_source: Option<String>,
    /// `CLIENT_SECRET_BASIC` (the default) or `CLIENT_SECRET_POST`; the JWT methods are refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_authentication_method: Option<String>,
}

/// The input of the vendors Berth knows by name (`google…`, `github…`, `slack…`,
/// `salesforce…`, `microsoft…`, `atlassian…`, `linkedin…`), each `{clientId*, clientSecret…}`
/// (Microsoft adds `tenantId`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VendorOauth2ProviderConfig {
    /// The client id.
    pub client_id: String,
    /// The client secret (input only).
    #[serde(skip_serializing)]
    pub client_secret: Option<String>,
    /// Refused (input only).
    #[serde(skip_serializing)]
    pub client_secret_config: Option<SecretReference>,
    /// `MANAGED` or `EXTERNAL` (refused) (input only).
    #[serde(skip_serializing)]
    pub client_secret_source: Option<String>,
    /// Microsoft's tenant (`common` when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
}

/// `IncludedOauth2ProviderConfigInput`: one of the other vendors, with its endpoints given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IncludedOauth2ProviderConfig {
    /// The client id.
    pub client_id: String,
    /// The client secret (input only).
    #[serde(skip_serializing)]
    pub client_secret: Option<String>,
    /// Refused (input only).
    #[serde(skip_serializing)]
    pub client_secret_config: Option<SecretReference>,
    /// `MANAGED` or `EXTERNAL` (refused) (input only).
    #[serde(skip_serializing)]
    pub client_secret_source: Option<String>,
    /// The issuer URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Where the user's browser consents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    /// Where tokens are issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
}

/// `Oauth2ProviderConfigInput`: a union, one configuration. Berth stores it without its secret
/// members (they serialise to nothing) and answers [`Oauth2ProviderConfigOutput`] from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Oauth2ProviderConfigInput {
    /// `customOauth2ProviderConfig`.
    #[serde(rename = "customOauth2ProviderConfig")]
    Custom(CustomOauth2ProviderConfig),
    /// `googleOauth2ProviderConfig`.
    #[serde(rename = "googleOauth2ProviderConfig")]
    Google(VendorOauth2ProviderConfig),
    /// `githubOauth2ProviderConfig`.
    #[serde(rename = "githubOauth2ProviderConfig")]
    Github(VendorOauth2ProviderConfig),
    /// `slackOauth2ProviderConfig`.
    #[serde(rename = "slackOauth2ProviderConfig")]
    Slack(VendorOauth2ProviderConfig),
    /// `salesforceOauth2ProviderConfig`.
    #[serde(rename = "salesforceOauth2ProviderConfig")]
    Salesforce(VendorOauth2ProviderConfig),
    /// `microsoftOauth2ProviderConfig`.
    #[serde(rename = "microsoftOauth2ProviderConfig")]
    Microsoft(VendorOauth2ProviderConfig),
    /// `atlassianOauth2ProviderConfig`.
    #[serde(rename = "atlassianOauth2ProviderConfig")]
    Atlassian(VendorOauth2ProviderConfig),
    /// `linkedinOauth2ProviderConfig`.
    #[serde(rename = "linkedinOauth2ProviderConfig")]
    Linkedin(VendorOauth2ProviderConfig),
    /// `includedOauth2ProviderConfig`.
    #[serde(rename = "includedOauth2ProviderConfig")]
    Included(IncludedOauth2ProviderConfig),
}

impl Oauth2ProviderConfigInput {
    /// The union member's wire name.
    pub fn member(&self) -> &'static str {
        match self {
            Self::Custom(_) => "customOauth2ProviderConfig",
            Self::Google(_) => "googleOauth2ProviderConfig",
            Self::Github(_) => "githubOauth2ProviderConfig",
            Self::Slack(_) => "slackOauth2ProviderConfig",
            Self::Salesforce(_) => "salesforceOauth2ProviderConfig",
            Self::Microsoft(_) => "microsoftOauth2ProviderConfig",
            Self::Atlassian(_) => "atlassianOauth2ProviderConfig",
            Self::Linkedin(_) => "linkedinOauth2ProviderConfig",
            Self::Included(_) => "includedOauth2ProviderConfig",
        }
    }

    /// The client id.
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Self::Custom(c) => c.client_id.as_deref(),
            Self::Included(c) => Some(&c.client_id),
            Self::Google(c)
            | Self::Github(c)
            | Self::Slack(c)
            | Self::Salesforce(c)
            | Self::Microsoft(c)
            | Self::Atlassian(c)
            | Self::Linkedin(c) => Some(&c.client_id),
        }
    }

    /// The secret members: `clientSecret`, `clientSecretConfig`, `clientSecretSource`.
    pub fn secret(&self) -> (Option<&str>, bool, Option<&str>) {
        let (secret, config, source) = match self {
            Self::Custom(c) => (
                &c.client_secret,
                &c.client_secret_config,
                &c.client_secret_source,
            ),
            Self::Included(c) => (
                &c.client_secret,
                &c.client_secret_config,
                &c.client_secret_source,
            ),
            Self::Google(c)
            | Self::Github(c)
            | Self::Slack(c)
            | Self::Salesforce(c)
            | Self::Microsoft(c)
            | Self::Atlassian(c)
            | Self::Linkedin(c) => (
                &c.client_secret,
                &c.client_secret_config,
                &c.client_secret_source,
            ),
        };
        (secret.as_deref(), config.is_some(), source.as_deref())
    }
}

/// `CustomOauth2ProviderConfigOutput` (the members Berth serves).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomOauth2ProviderConfigOutput {
    /// Where the provider is.
    pub oauth_discovery: Oauth2Discovery,
    /// The client id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// How Berth authenticates to the token endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_authentication_method: Option<String>,
}

/// The output of every other member (`GoogleOauth2ProviderConfigOutput`, …,
/// `IncludedOauth2ProviderConfigOutput`): the provider's endpoints and the client id.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VendorOauth2ProviderConfigOutput {
    /// Where the provider is.
    pub oauth_discovery: Oauth2Discovery,
    /// The client id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// `Oauth2ProviderConfigOutput`: a union, the member the input set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Oauth2ProviderConfigOutput {
    /// `customOauth2ProviderConfig`.
    #[serde(rename = "customOauth2ProviderConfig")]
    Custom(CustomOauth2ProviderConfigOutput),
    /// `googleOauth2ProviderConfig`.
    #[serde(rename = "googleOauth2ProviderConfig")]
    Google(VendorOauth2ProviderConfigOutput),
    /// `githubOauth2ProviderConfig`.
    #[serde(rename = "githubOauth2ProviderConfig")]
    Github(VendorOauth2ProviderConfigOutput),
    /// `slackOauth2ProviderConfig`.
    #[serde(rename = "slackOauth2ProviderConfig")]
    Slack(VendorOauth2ProviderConfigOutput),
    /// `salesforceOauth2ProviderConfig`.
    #[serde(rename = "salesforceOauth2ProviderConfig")]
    Salesforce(VendorOauth2ProviderConfigOutput),
    /// `microsoftOauth2ProviderConfig`.
    #[serde(rename = "microsoftOauth2ProviderConfig")]
    Microsoft(VendorOauth2ProviderConfigOutput),
    /// `atlassianOauth2ProviderConfig`.
    #[serde(rename = "atlassianOauth2ProviderConfig")]
    Atlassian(VendorOauth2ProviderConfigOutput),
    /// `linkedinOauth2ProviderConfig`.
    #[serde(rename = "linkedinOauth2ProviderConfig")]
    Linkedin(VendorOauth2ProviderConfigOutput),
    /// `includedOauth2ProviderConfig`.
    #[serde(rename = "includedOauth2ProviderConfig")]
    Included(VendorOauth2ProviderConfigOutput),
}

/// `CreateOauth2CredentialProvider` (and, without `tags`, `UpdateOauth2CredentialProvider`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Oauth2ProviderRequest {
    /// The provider.
    pub name: String,
    /// `CredentialProviderVendorType` (the model checked the enum).
    pub credential_provider_vendor: String,
    /// The one configuration.
    pub oauth2_provider_config_input: Oauth2ProviderConfigInput,
    /// Kept (Create only).
    pub tags: Option<Tags>,
}

/// `CreateOauth2CredentialProviderRequest`.
pub type CreateOauth2CredentialProviderRequest = Oauth2ProviderRequest;
/// `UpdateOauth2CredentialProviderRequest` (the model has no `tags`, so it never has one).
pub type UpdateOauth2CredentialProviderRequest = Oauth2ProviderRequest;
/// `GetOauth2CredentialProviderRequest`.
pub type GetOauth2CredentialProviderRequest = NameRequest;
/// `DeleteOauth2CredentialProviderRequest`.
pub type DeleteOauth2CredentialProviderRequest = NameRequest;
/// `ListOauth2CredentialProvidersRequest` (at most 20 a page).
pub type ListOauth2CredentialProvidersRequest = ListRequest;

/// An OAuth2 provider as Create (no vendor, no times), Get and Update answer it (never the
/// client secret).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Oauth2CredentialProvider {
    /// Where the client secret is kept.
    pub client_secret_arn: Secret,
    /// `MANAGED`.
    pub client_secret_source: String,
    /// Its name.
    pub name: String,
    /// `arn:aws:acps:<region>:<account>:token-vault/default/oauth2credentialprovider/<name>`.
    pub credential_provider_arn: String,
    /// The vendor (Get, Update).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_provider_vendor: Option<String>,
    /// Berth's own callback, where the provider sends the user's browser back.
    pub callback_url: String,
    /// The configuration, without the secret.
    pub oauth2_provider_config_output: Oauth2ProviderConfigOutput,
    /// Epoch seconds (Get, Update).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "epoch::option::serialize"
    )]
    pub created_time: Option<EpochMillis>,
    /// Epoch seconds (Get, Update).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "epoch::option::serialize"
    )]
    pub last_updated_time: Option<EpochMillis>,
    /// `READY` (Berth configures a provider at once).
    pub status: String,
}

/// `CreateOauth2CredentialProviderResponse`.
pub type CreateOauth2CredentialProviderResponse = Oauth2CredentialProvider;
/// `GetOauth2CredentialProviderResponse`.
pub type GetOauth2CredentialProviderResponse = Oauth2CredentialProvider;
/// `UpdateOauth2CredentialProviderResponse`.
pub type UpdateOauth2CredentialProviderResponse = Oauth2CredentialProvider;

/// `Oauth2CredentialProviderItem`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Oauth2CredentialProviderItem {
    /// Its name.
    pub name: String,
    /// The vendor.
    pub credential_provider_vendor: String,
    /// Its ARN.
    pub credential_provider_arn: String,
    /// Epoch seconds.
    #[serde(serialize_with = "epoch::serialize")]
    pub created_time: EpochMillis,
    /// Epoch seconds.
    #[serde(serialize_with = "epoch::serialize")]
    pub last_updated_time: EpochMillis,
}

/// `ListOauth2CredentialProvidersResponse`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListOauth2CredentialProvidersResponse {
    /// The page.
    pub credential_providers: Vec<Oauth2CredentialProviderItem>,
    /// Present when more follow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// The token vault.

/// `GetTokenVault`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetTokenVaultRequest {
    /// The vault (`default` when absent).
    pub token_vault_id: Option<String>,
}

/// `KmsConfiguration`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KmsConfiguration {
    /// `ServiceManagedKey`: Berth's `vault.key`.
    pub key_type: String,
}

/// `GetTokenVaultResponse`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GetTokenVaultResponse {
    /// `default`.
    pub token_vault_id: String,
    /// How the vault is keyed.
    pub kms_configuration: KmsConfiguration,
    /// When the vault key was made (epoch seconds).
    #[serde(serialize_with = "epoch::serialize")]
    pub last_modified_date: EpochMillis,
}

// ---------------------------------------------------------------------------------------------
// Data plane.

/// `GetWorkloadAccessToken`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetWorkloadAccessTokenRequest {
    /// The workload identity.
    pub workload_name: String,
}

/// `GetWorkloadAccessTokenForUserId`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetWorkloadAccessTokenForUserIdRequest {
    /// The workload identity.
    pub workload_name: String,
    /// The user the workload acts for.
    pub user_id: String,
}

/// `GetWorkloadAccessTokenForJWT`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetWorkloadAccessTokenForJwtRequest {
    /// The workload identity.
    pub workload_name: String,
    /// The user's JWT (its `iss` and `sub` name the user).
    pub user_token: String,
}

/// The answer of the three `GetWorkloadAccessToken*`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadAccessToken {
    /// Opaque to clients.
    pub workload_access_token: String,
}

/// `GetWorkloadAccessTokenResponse`.
pub type GetWorkloadAccessTokenResponse = WorkloadAccessToken;
/// `GetWorkloadAccessTokenForUserIdResponse`.
pub type GetWorkloadAccessTokenForUserIdResponse = WorkloadAccessToken;
/// `GetWorkloadAccessTokenForJWTResponse`.
pub type GetWorkloadAccessTokenForJwtResponse = WorkloadAccessToken;

/// `GetResourceApiKey`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetResourceApiKeyRequest {
    /// The caller's workload access token.
    pub workload_identity_token: String,
    /// The API-key provider.
    pub resource_credential_provider_name: String,
}

/// `GetResourceApiKeyResponse`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GetResourceApiKeyResponse {
    /// The key.
    pub api_key: String,
}

/// `GetResourceOauth2Token`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetResourceOauth2TokenRequest {
    /// The caller's workload access token.
    pub workload_identity_token: String,
    /// The OAuth2 provider.
    pub resource_credential_provider_name: String,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// `M2M` or `USER_FEDERATION` (`ON_BEHALF_OF_TOKEN_EXCHANGE` is refused).
    pub oauth2_flow: String,
    /// A 3LO session to poll (`urn:ietf:params:oauth:request_uri:<id>`).
    pub session_uri: Option<String>,
    /// Where the user's browser goes after consent (one of the workload identity's allowed URLs).
    pub resource_oauth2_return_url: Option<String>,
    /// Ask the provider again even when a token is cached.
    pub force_authentication: Option<bool>,
    /// Extra authorization request parameters (3LO).
    pub custom_parameters: Option<BTreeMap<String, String>>,
}

/// `GetResourceOauth2TokenResponse`: a token, or where the user must consent.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GetResourceOauth2TokenResponse {
    /// The provider's authorization URL (3LO, while consent is pending).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_url: Option<String>,
    /// The token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// The session to poll with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_uri: Option<String>,
    /// `IN_PROGRESS` or `FAILED`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_status: Option<String>,
}

/// `UserIdentifier`: a union.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UserIdentifier {
    /// The user's JWT (its `iss` and `sub` name the user).
    UserToken(String),
    /// The user's id.
    UserId(String),
}

/// `CompleteResourceTokenAuth`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompleteResourceTokenAuthRequest {
    /// The user who came back.
    pub user_identifier: UserIdentifier,
    /// The session.
    pub session_uri: String,
}

/// `CompleteResourceTokenAuthResponse`.
pub type CompleteResourceTokenAuthResponse = Empty;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_read_the_model_member_names() {
        let r: GetResourceOauth2TokenRequest = serde_json::from_value(json!({
            "workloadIdentityToken": "t", "resourceCredentialProviderName": "p", "scopes": ["a"],
            "oauth2Flow": "M2M", "resourceOauth2ReturnUrl": "https://x/cb",
            "forceAuthentication": true, "customState": "ignored",
        }))
        .unwrap();
        assert_eq!(
            r.resource_oauth2_return_url.as_deref(),
            Some("https://x/cb")
        );
        assert_eq!(r.force_authentication, Some(true));
        let c: CreateWorkloadIdentityRequest = serde_json::from_value(json!({
            "name": "wi", "allowedResourceOauth2ReturnUrls": ["https://x/cb"],
        }))
        .unwrap();
        assert_eq!(
            c.allowed_resource_oauth2_return_urls.unwrap(),
            ["https://x/cb"]
        );
        let u: CompleteResourceTokenAuthRequest = serde_json::from_value(json!({
            "userIdentifier": {"userId": "alice"}, "sessionUri": "urn:x",
        }))
        .unwrap();
        assert_eq!(u.user_identifier, UserIdentifier::UserId("alice".into()));
    }

    #[test]
    fn a_stored_config_keeps_no_secret() {
        let input: Oauth2ProviderConfigInput = serde_json::from_value(json!({
            "customOauth2ProviderConfig": {
                "oauthDiscovery": {"authorizationServerMetadata": {
                    "issuer": "i", "authorizationEndpoint": "a", "tokenEndpoint": "t"}},
                "clientId": "c", "clientSecret": "s", "clientAuthenticationMethod": "CLIENT_SECRET_POST",
            }
        }))
        .unwrap();
        assert_eq!(input.secret().0, Some("s"));
        let stored = serde_json::to_value(&input).unwrap();
        assert!(!stored.to_string().contains("\"s\""), "{stored}");
        let back: Oauth2ProviderConfigInput = serde_json::from_value(stored).unwrap();
        assert_eq!(back.client_id(), Some("c"));
        assert_eq!(back.secret().0, None);
    }

    #[test]
    fn responses_skip_absent_members_and_give_epoch_seconds() {
        let w = WorkloadIdentity {
            name: "wi".into(),
            workload_identity_arn: "arn".into(),
            allowed_resource_oauth2_return_urls: None,
            created_time: Some(1_500),
            last_updated_time: None,
        };
        assert_eq!(
            serde_json::to_value(&w).unwrap(),
            json!({"name": "wi", "workloadIdentityArn": "arn", "createdTime": 1.5})
        );
        assert_eq!(serde_json::to_value(Empty::default()).unwrap(), json!({}));
    }
}
