//! Authorization: what a verified principal may do, decided from IAM-style policies.
//!
//! Every authenticated request is mapped to the IAM actions it performs and the ARNs it performs
//! them on ([`operations`]: `bedrock-agentcore:InvokeAgentRuntime` on a runtime ARN,
//! `s3:PutObject` on `arn:aws:s3:::bucket/key`, `berth:PutRole` on a role ARN...). The principal's
//! policies decide each with `berth_policy` (an explicit deny wins):
//!
//! - the root credentials may do everything;
//! - a runtime's credentials (injected into its sandboxes) act as the role its `roleArn` names,
//!   with that role's policies; a role Berth does not know gets the default role: the data plane
//!   of the memories the runtime's environment names, and stopping its own sessions;
//! - an access key (for people and CI) has the one policy it was created with.
//!
//! Keys die with what they belong to: a deleted (or deleting) runtime's credentials and a
//! revoked access key are unrecognized, checked against the store on every request, so this
//! holds across restarts. Every refusal is answered as AWS answers (`AccessDeniedException`
//! naming the principal, action and resource; S3's XML `AccessDenied`) and is audited.
//!
//! Condition keys set on every request (see ARCHITECTURE.md): `aws:PrincipalArn`,
//! `aws:SecureTransport`, `bedrock-agentcore:SourceRuntimeArn` (runtime credentials only), and
//! for the data plane `bedrock-agentcore:RuntimeUserId`, `bedrock-agentcore:RuntimeSessionId`
//! and `bedrock-agentcore:Qualifier` when the request carries them.

use crate::AppState;
use crate::error::WireError;
use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_api::{ApiError, ErrorKind};
use berth_auth::{Scope, Verified};
use berth_control::{Caller, Control};
use berth_policy::{Context, Decision, Policy};
use berth_types::Partition;
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};
use tracing::{info, warn};

/// The action a user id header additionally needs, as on AWS.
pub const INVOKE_FOR_USER: &str = "bedrock-agentcore:InvokeAgentRuntimeForUser";
const USER_HEADER: &str = "x-amzn-bedrock-agentcore-runtime-user-id";
const SESSION_HEADER: &str = "x-amzn-bedrock-agentcore-runtime-session-id";

/// Audit action of a refused request.
pub const DENIED_ACTION: &str = "AccessDenied";

/// One action on one resource that a request performs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// `service:Operation`.
    pub action: String,
    /// The resource ARN, or `*`.
    pub resource: String,
}

impl Operation {
    pub(crate) fn new(action: &str, resource: impl Into<String>) -> Self {
        Self {
            action: action.to_owned(),
            resource: resource.into(),
        }
    }
}

/// What a request was classified as: the checks to pass and, for writes that happen outside the
/// control store's audited transactions (memory, artifact store), the audit entry to append once
/// the write succeeded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Classified {
    /// Every operation must be allowed.
    pub checks: Vec<Operation>,
    /// `(audit action, resource)` of a successful write.
    pub audit: Option<(String, String)>,
}

impl Classified {
    fn one(action: &str, resource: String) -> Self {
        Self {
            checks: vec![Operation::new(action, resource)],
            audit: None,
        }
    }

    /// Audited as the operation's own name (without the service prefix) on its resource.
    fn audited(mut self) -> Self {
        if let Some(op) = self.checks.first() {
            let name = op.action.rsplit(':').next().unwrap_or(&op.action);
            self.audit = Some((name.to_owned(), op.resource.clone()));
        }
        self
    }

    fn audited_as(mut self, action: &str) -> Self {
        if let Some(op) = self.checks.first() {
            self.audit = Some((action.to_owned(), op.resource.clone()));
        }
        self
    }
}

/// Put into the request's extensions once authorization passed; carries the pending audit
/// entry of a memory or artifact-store write.
#[derive(Clone)]
pub struct Granted {
    audit: Option<PendingAudit>,
}

#[derive(Clone)]
struct PendingAudit {
    control: Control,
    caller: Caller,
    action: String,
    resource: String,
    request: Value,
}

impl Granted {
    /// Appends the pending audit entry when `status` says the write happened.
    pub async fn record(&self, status: StatusCode) {
        let Some(p) = &self.audit else { return };
        if !status.is_success() {
            return;
        }
        p.caller
            .clone()
            .scope(
                p.control
                    .audit_event(&p.action, &p.resource, p.request.clone()),
            )
            .await;
    }
}

/// Runs the handler, then audits the write it made (see [`Granted`]). Layered on the memory
/// routes; the artifact store calls [`Granted::record`] itself.
pub async fn audit_writes(req: Request, next: Next) -> Response {
    let granted = req.extensions().get::<Granted>().cloned();
    let resp = next.run(req).await;
    if let Some(g) = granted {
        g.record(resp.status()).await;
    }
    resp
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The canonical ARN of the runtime a path segment names (an id, or an ARN as the data plane
/// allows), so a policy sees the same resource however the client spelled it.
fn runtime_arn(p: &Partition, seg: &str) -> String {
    let raw = decode(seg);
    if raw.starts_with("arn:") {
        return match berth_types::ResourceArn::parse(&raw, p) {
            Ok(berth_types::ResourceArn::Runtime { runtime_id }) => p.runtime_arn(&runtime_id),
            _ => raw,
        };
    }
    p.runtime_arn(&raw)
}

/// The canonical ARN of the memory a path segment (an id or an ARN) names.
pub(crate) fn memory_arn(p: &Partition, seg: &str) -> String {
    let raw = decode(seg);
    let id = raw
        .rsplit_once(":memory/")
        .map_or(raw.as_str(), |(_, id)| id);
    format!(
        "arn:aws:bedrock-agentcore:{}:{}:memory/{id}",
        p.region, p.account_id
    )
}

/// The ARN of the evaluator a path segment names: built-ins (`Builtin.X`, `ThirdParty.X.Y`)
/// have the region- and account-less form AgentCore gives them.
pub(crate) fn evaluator_arn(p: &Partition, seg: &str) -> String {
    let id = decode(seg);
    if id.starts_with("Builtin.") || id.starts_with("ThirdParty.") {
        return format!("arn:aws:bedrock-agentcore:::evaluator/{id}");
    }
    format!(
        "arn:aws:bedrock-agentcore:{}:{}:evaluator/{id}",
        p.region, p.account_id
    )
}

/// The ARN of the online evaluation config a path segment names.
pub(crate) fn online_config_arn(p: &Partition, seg: &str) -> String {
    format!(
        "arn:aws:bedrock-agentcore:{}:{}:online-evaluation-config/{}",
        p.region,
        p.account_id,
        decode(seg)
    )
}

/// The ARN of a secret (`berth secrets`).
pub fn secret_arn(p: &Partition, name: &str) -> String {
    format!(
        "arn:aws:bedrock-agentcore:{}:{}:secret/{name}",
        p.region, p.account_id
    )
}

/// The secrets actions, refused to runtimes' credentials whatever their role allows: a sandbox
/// gets the values its own configuration references at start, and must not list, overwrite or
/// delete the secrets other runtimes (or the model gateway) use.
pub const SECRET_ACTIONS: [&str; 4] = [
    "berth:PutSecret",
    "berth:GetSecret",
    "berth:ListSecrets",
    "berth:DeleteSecret",
];

/// The explicit deny every runtime's credentials carry on top of their role (see
/// [`SECRET_ACTIONS`]).
fn runtime_secrets_deny() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "NoSecretsForAgents",
            "Effect": "Deny",
            "Action": SECRET_ACTIONS,
            "Resource": "*",
        }],
    })
}

/// The wildcard resource of an Identity family: workload identities, or a token vault's
/// credential providers (`acps`).
fn identity_arn(p: &Partition, family: &str) -> String {
    if family == "workload-identity" {
        return format!(
            "arn:aws:bedrock-agentcore:{}:{}:workload-identity-directory/default/workload-identity/*",
            p.region, p.account_id
        );
    }
    format!(
        "arn:aws:acps:{}:{}:token-vault/default/{family}/*",
        p.region, p.account_id
    )
}

/// The action and resource of `POST /identities/<op>`; writes are audited.
fn identity_operation(p: &Partition, op: &str) -> Classified {
    let (family, write) = match op {
        "CreateWorkloadIdentity" | "UpdateWorkloadIdentity" | "DeleteWorkloadIdentity" => {
            ("workload-identity", true)
        }
        "GetWorkloadIdentity"
        | "ListWorkloadIdentities"
        | "GetWorkloadAccessToken"
        | "GetWorkloadAccessTokenForUserId"
        | "GetWorkloadAccessTokenForJWT" => ("workload-identity", false),
        "CreateApiKeyCredentialProvider"
        | "UpdateApiKeyCredentialProvider"
        | "DeleteApiKeyCredentialProvider" => ("apikeycredentialprovider", true),
        "GetApiKeyCredentialProvider" | "ListApiKeyCredentialProviders" => {
            ("apikeycredentialprovider", false)
        }
        "CreateOauth2CredentialProvider"
        | "UpdateOauth2CredentialProvider"
        | "DeleteOauth2CredentialProvider" => ("oauth2credentialprovider", true),
        "GetOauth2CredentialProvider" | "ListOauth2CredentialProviders" => {
            ("oauth2credentialprovider", false)
        }
        "CompleteResourceTokenAuth" => ("oauth2credentialprovider", true),
        "api-key" => {
            return Classified::one(
                "bedrock-agentcore:GetResourceApiKey",
                identity_arn(p, "apikeycredentialprovider"),
            );
        }
        "get-token-vault" => {
            return Classified::one(
                "bedrock-agentcore:GetTokenVault",
                format!(
                    "arn:aws:acps:{}:{}:token-vault/default",
                    p.region, p.account_id
                ),
            );
        }
        _ => return Classified::default(),
    };
    let c = Classified::one(&format!("bedrock-agentcore:{op}"), identity_arn(p, family));
    if write { c.audited() } else { c }
}

/// The canonical form of an AgentCore ARN in a path segment (runtime, endpoint, memory), so a
/// policy sees one spelling; anything else as decoded.
fn canonical_arn(p: &Partition, seg: &str) -> String {
    let raw = decode(seg);
    match berth_types::ResourceArn::parse(&raw, p) {
        Ok(berth_types::ResourceArn::Runtime { runtime_id }) => p.runtime_arn(&runtime_id),
        Ok(berth_types::ResourceArn::Endpoint { runtime_id, name }) => {
            p.endpoint_arn(&runtime_id, &name)
        }
        Ok(berth_types::ResourceArn::Memory { memory_id }) => memory_arn(p, &memory_id),
        Err(_) => raw,
    }
}

fn query_has(query: Option<&str>, name: &str) -> bool {
    query.unwrap_or_default().split('&').any(|pair| {
        let k = pair.split_once('=').map_or(pair, |(k, _)| k);
        k == name
    })
}

fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    query.unwrap_or_default().split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| decode(v))
    })
}

/// Maps a request to the IAM actions it performs. An empty [`Classified::checks`] means no
/// known operation: only the root credentials get past that (to an UnknownOperation answer).
pub fn operations(
    p: &Partition,
    s3: bool,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Classified {
    if s3 {
        return s3_operations(method, path, query, headers);
    }
    let classified = agentcore_operations(p, method, path, query, headers);
    // The AWS SDK for Rust drops the trailing slash of a model URI (`PUT /runtimes` for
    // CreateAgentRuntime's `PUT /runtimes/`), and AgentCore answers it as the same operation.
    // The router serves both forms (`crate::model_route`).
    if classified.checks.is_empty() && !path.ends_with('/') {
        return agentcore_operations(p, method, &format!("{path}/"), query, headers);
    }
    classified
}

/// [`operations`] of an AgentCore plane (or Berth's own API), by the path as written.
fn agentcore_operations(
    p: &Partition,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Classified {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let m = method.clone();
    let any_runtime = || p.runtime_arn("*");
    let any_memory = || memory_arn(p, "*");
    let one = Classified::one;
    match (m, segs.as_slice()) {
        // AgentCore control plane.
        (Method::PUT, ["runtimes", ""]) => {
            one("bedrock-agentcore:CreateAgentRuntime", any_runtime())
        }
        (Method::POST, ["runtimes", ""]) => {
            one("bedrock-agentcore:ListAgentRuntimes", any_runtime())
        }
        (Method::GET, ["runtimes", r, ""]) => {
            one("bedrock-agentcore:GetAgentRuntime", runtime_arn(p, r))
        }
        (Method::PUT, ["runtimes", r, ""]) => {
            one("bedrock-agentcore:UpdateAgentRuntime", runtime_arn(p, r))
        }
        (Method::DELETE, ["runtimes", r, ""]) => {
            one("bedrock-agentcore:DeleteAgentRuntime", runtime_arn(p, r))
        }
        (Method::POST, ["runtimes", r, "versions", ""]) => one(
            "bedrock-agentcore:ListAgentRuntimeVersions",
            runtime_arn(p, r),
        ),
        (Method::PUT, ["runtimes", r, "runtime-endpoints", ""]) => one(
            "bedrock-agentcore:CreateAgentRuntimeEndpoint",
            runtime_arn(p, r),
        ),
        (Method::POST, ["runtimes", r, "runtime-endpoints", ""]) => one(
            "bedrock-agentcore:ListAgentRuntimeEndpoints",
            runtime_arn(p, r),
        ),
        (m, ["runtimes", r, "runtime-endpoints", e, ""]) => {
            let action = match m {
                Method::GET => "bedrock-agentcore:GetAgentRuntimeEndpoint",
                Method::PUT => "bedrock-agentcore:UpdateAgentRuntimeEndpoint",
                Method::DELETE => "bedrock-agentcore:DeleteAgentRuntimeEndpoint",
                _ => return Classified::default(),
            };
            one(
                action,
                format!("{}/runtime-endpoint/{}", runtime_arn(p, r), decode(e)),
            )
        }
        (m, ["resourcepolicy", arn]) => {
            let action = match m {
                Method::PUT => "bedrock-agentcore:PutResourcePolicy",
                Method::GET => "bedrock-agentcore:GetResourcePolicy",
                Method::DELETE => "bedrock-agentcore:DeleteResourcePolicy",
                _ => return Classified::default(),
            };
            one(action, canonical_arn(p, arn))
        }
        (m, ["tags", arn]) => {
            let action = match m {
                Method::POST => "bedrock-agentcore:TagResource",
                Method::DELETE => "bedrock-agentcore:UntagResource",
                Method::GET => "bedrock-agentcore:ListTagsForResource",
                _ => return Classified::default(),
            };
            one(action, decode(arn))
        }
        // AgentCore data plane.
        (Method::POST, ["runtimes", r, "invocations"]) => {
            let arn = runtime_arn(p, r);
            let mut c = one("bedrock-agentcore:InvokeAgentRuntime", arn.clone());
            // On AWS the user id header is a privilege of its own: whoever may set it may act
            // as any end user of the agent.
            if headers.contains_key(USER_HEADER) {
                c.checks.push(Operation::new(INVOKE_FOR_USER, arn));
            }
            c
        }
        (
            Method::GET,
            [
                "runtimes",
                r,
                "invocations",
                ".well-known",
                "agent-card.json",
            ],
        ) => one("bedrock-agentcore:GetAgentCard", runtime_arn(p, r)),
        // InvokeAgentRuntime over WebSocket has an action of its own on AWS.
        (Method::GET, ["runtimes", r, "ws"]) => {
            let arn = runtime_arn(p, r);
            let mut c = one(
                "bedrock-agentcore:InvokeAgentRuntimeWithWebSocketStream",
                arn.clone(),
            );
            if headers.contains_key(USER_HEADER) {
                c.checks.push(Operation::new(INVOKE_FOR_USER, arn));
            }
            c
        }
        (Method::POST, ["runtimes", r, "commands"]) => one(
            "bedrock-agentcore:InvokeAgentRuntimeCommand",
            runtime_arn(p, r),
        ),
        (Method::POST, ["runtimes", r, "stopruntimesession"]) => {
            one("bedrock-agentcore:StopRuntimeSession", runtime_arn(p, r))
        }
        // AgentCore Memory, control plane.
        (Method::POST, ["memories", "create"]) => {
            one("bedrock-agentcore:CreateMemory", any_memory()).audited()
        }
        (Method::POST, ["memories", ""]) => one("bedrock-agentcore:ListMemories", any_memory()),
        (Method::GET, ["memories", m, "details"]) => {
            one("bedrock-agentcore:GetMemory", memory_arn(p, m))
        }
        (Method::PUT, ["memories", m, "update"]) => {
            one("bedrock-agentcore:UpdateMemory", memory_arn(p, m)).audited()
        }
        (Method::DELETE, ["memories", m, "delete"]) => {
            one("bedrock-agentcore:DeleteMemory", memory_arn(p, m)).audited()
        }
        // AgentCore Memory, data plane. Events are not audited one by one (see ARCHITECTURE.md).
        (Method::POST, ["memories", m, "events"]) => {
            one("bedrock-agentcore:CreateEvent", memory_arn(p, m))
        }
        (Method::POST, ["memories", m, "actors"]) => {
            one("bedrock-agentcore:ListActors", memory_arn(p, m))
        }
        (Method::POST, ["memories", m, "actor", _, "sessions"]) => {
            one("bedrock-agentcore:ListSessions", memory_arn(p, m))
        }
        (Method::POST, ["memories", m, "actor", _, "sessions", _]) => {
            one("bedrock-agentcore:ListEvents", memory_arn(p, m))
        }
        (Method::GET, ["memories", m, "actor", _, "sessions", _, "events", _]) => {
            one("bedrock-agentcore:GetEvent", memory_arn(p, m))
        }
        (Method::DELETE, ["memories", m, "actor", _, "sessions", _, "events", _]) => {
            one("bedrock-agentcore:DeleteEvent", memory_arn(p, m)).audited()
        }
        (Method::POST, ["memories", m, "retrieve"]) => {
            one("bedrock-agentcore:RetrieveMemoryRecords", memory_arn(p, m))
        }
        (Method::POST, ["memories", m, "memoryRecords"]) => {
            one("bedrock-agentcore:ListMemoryRecords", memory_arn(p, m))
        }
        (Method::POST, ["memories", m, "memoryRecords", batch]) => {
            let action = match *batch {
                "batchCreate" => "bedrock-agentcore:BatchCreateMemoryRecords",
                "batchUpdate" => "bedrock-agentcore:BatchUpdateMemoryRecords",
                "batchDelete" => "bedrock-agentcore:BatchDeleteMemoryRecords",
                _ => return Classified::default(),
            };
            one(action, memory_arn(p, m)).audited()
        }
        (Method::DELETE, ["memories", m, "memoryRecords", _]) => {
            one("bedrock-agentcore:DeleteMemoryRecord", memory_arn(p, m)).audited()
        }
        (Method::GET, ["memories", m, "memoryRecord", _]) => {
            one("bedrock-agentcore:GetMemoryRecord", memory_arn(p, m))
        }
        (Method::POST, ["memories", m, "extractionJobs"]) => one(
            "bedrock-agentcore:ListMemoryExtractionJobs",
            memory_arn(p, m),
        ),
        (Method::POST, ["memories", m, "extractionJobs", "start"]) => one(
            "bedrock-agentcore:StartMemoryExtractionJob",
            memory_arn(p, m),
        )
        .audited(),
        // AgentCore Identity: every operation is `POST /identities/<op>` with the resource
        // named in the body, so a check is on the family's wildcard resource.
        (Method::POST, ["identities", "oauth2", "token"]) => one(
            "bedrock-agentcore:GetResourceOauth2Token",
            identity_arn(p, "oauth2credentialprovider"),
        ),
        (Method::POST, ["identities", op]) => identity_operation(p, op),
        // AgentCore Evaluations, control plane.
        (Method::POST, ["evaluators", "create"]) => {
            one("bedrock-agentcore:CreateEvaluator", evaluator_arn(p, "*")).audited()
        }
        (Method::POST, ["evaluators"]) => {
            one("bedrock-agentcore:ListEvaluators", evaluator_arn(p, "*"))
        }
        (m, ["evaluators", e]) => match m {
            Method::GET => one("bedrock-agentcore:GetEvaluator", evaluator_arn(p, e)),
            Method::PUT => one("bedrock-agentcore:UpdateEvaluator", evaluator_arn(p, e)).audited(),
            Method::DELETE => {
                one("bedrock-agentcore:DeleteEvaluator", evaluator_arn(p, e)).audited()
            }
            _ => Classified::default(),
        },
        (Method::POST, ["online-evaluation-configs", "create"]) => one(
            "bedrock-agentcore:CreateOnlineEvaluationConfig",
            online_config_arn(p, "*"),
        )
        .audited(),
        (Method::POST, ["online-evaluation-configs"]) => one(
            "bedrock-agentcore:ListOnlineEvaluationConfigs",
            online_config_arn(p, "*"),
        ),
        (m, ["online-evaluation-configs", c]) => {
            let arn = online_config_arn(p, c);
            match m {
                Method::GET => one("bedrock-agentcore:GetOnlineEvaluationConfig", arn),
                Method::PUT => one("bedrock-agentcore:UpdateOnlineEvaluationConfig", arn).audited(),
                Method::DELETE => {
                    one("bedrock-agentcore:DeleteOnlineEvaluationConfig", arn).audited()
                }
                _ => Classified::default(),
            }
        }
        // AgentCore Evaluations, data plane: scoring reads and writes nothing of the caller's.
        (Method::POST, ["evaluations", "evaluate", e]) => {
            one("bedrock-agentcore:Evaluate", evaluator_arn(p, e))
        }
        // Berth's one-round-trip context call reads events and records: it needs both.
        (Method::POST, ["berth", "v1", "memories", m, "actors", _, "context"]) => {
            let arn = memory_arn(p, m);
            Classified {
                checks: vec![
                    Operation::new("bedrock-agentcore:ListEvents", arn.clone()),
                    Operation::new("bedrock-agentcore:RetrieveMemoryRecords", arn),
                ],
                audit: None,
            }
        }
        // Evaluations: datasets (control plane) and batch evaluations (data plane).
        (m, ["datasets", rest @ ..]) => {
            let ds = |id: &str| {
                format!(
                    "arn:aws:bedrock-agentcore:{}:{}:dataset/{}",
                    p.region,
                    p.account_id,
                    decode(id)
                )
            };
            let (action, resource) = match (m, rest) {
                (Method::POST, []) => ("CreateDataset", ds("*")),
                // The list operations have two bindings: botocore's POST `.../list` and the
                // JavaScript SDK's GET (see `eval_data_api`).
                (Method::POST, ["list"]) | (Method::GET, []) => ("ListDatasets", ds("*")),
                (Method::GET, [d]) => ("GetDataset", ds(d)),
                (Method::PUT, [d]) => ("UpdateDataset", ds(d)),
                (Method::DELETE, [d]) => ("DeleteDataset", ds(d)),
                (Method::POST, [d, "versions"]) => ("CreateDatasetVersion", ds(d)),
                (Method::POST, [d, "versions", "list"]) | (Method::GET, [d, "versions"]) => {
                    ("ListDatasetVersions", ds(d))
                }
                (Method::POST, [d, "examples", "add"]) => ("AddDatasetExamples", ds(d)),
                (Method::POST, [d, "examples", "update"]) => ("UpdateDatasetExamples", ds(d)),
                (Method::POST, [d, "examples", "delete"]) => ("DeleteDatasetExamples", ds(d)),
                (Method::POST, [d, "examples", "list"]) | (Method::GET, [d, "examples"]) => {
                    ("ListDatasetExamples", ds(d))
                }
                _ => return Classified::default(),
            };
            let c = one(&format!("bedrock-agentcore:{action}"), resource);
            if action.starts_with("Get") || action.starts_with("List") {
                c
            } else {
                c.audited()
            }
        }
        (m, ["evaluations", "batch-evaluate", rest @ ..]) => {
            let be = |id: &str| {
                format!(
                    "arn:aws:bedrock-agentcore:{}:{}:batch-evaluation/{}",
                    p.region,
                    p.account_id,
                    decode(id)
                )
            };
            match (m, rest) {
                (Method::POST, []) => {
                    one("bedrock-agentcore:StartBatchEvaluation", be("*")).audited()
                }
                (Method::GET, []) => one("bedrock-agentcore:ListBatchEvaluations", be("*")),
                (Method::GET, [b]) => one("bedrock-agentcore:GetBatchEvaluation", be(b)),
                (Method::DELETE, [b]) => {
                    one("bedrock-agentcore:DeleteBatchEvaluation", be(b)).audited()
                }
                (Method::POST, [b, "stop"]) => {
                    one("bedrock-agentcore:StopBatchEvaluation", be(b)).audited()
                }
                _ => Classified::default(),
            }
        }
        // Berth's native API.
        (Method::GET, ["berth", "v1", "sessions"]) => one("berth:ListSessions", any_runtime()),
        (Method::GET, ["berth", "v1", "images"]) => one("berth:ListImages", any_runtime()),
        (Method::POST, ["berth", "v1", "images", "prune"]) => {
            one("berth:PruneImages", any_runtime()).audited()
        }
        (Method::DELETE, ["berth", "v1", "runtimes", r, "sessions", _]) => {
            one("bedrock-agentcore:StopRuntimeSession", runtime_arn(p, r))
        }
        (Method::GET, ["berth", "v1", "traces", ..]) => one("berth:GetTraces", any_runtime()),
        (Method::GET, ["berth", "v1", "usage"]) => one("berth:GetUsage", any_runtime()),
        (Method::GET, ["berth", "v1", "gateway"]) => one("berth:GetGateway", any_runtime()),
        (Method::GET, ["berth", "v1", "runtimes", r, "logs"]) => {
            one("berth:GetAgentLogs", runtime_arn(p, r))
        }
        (m, ["berth", "v1", "runtimes", r, "endpoints", e, rest @ ..]) => {
            let action = match (m, rest) {
                (Method::GET, ["traffic"]) => "berth:GetTrafficPolicy",
                (Method::PUT, ["traffic"]) => "berth:PutTrafficPolicy",
                (Method::POST, ["traffic", "rules"]) => "berth:AddRoutingRule",
                (Method::DELETE, ["traffic", "rules", _]) => "berth:RemoveRoutingRule",
                (Method::POST, ["rollback"]) => "berth:RollbackEndpoint",
                (Method::GET, ["rollouts"]) => "berth:GetRollout",
                (Method::POST, ["rollouts"]) => "berth:StartRollout",
                (Method::POST, ["rollouts", "current", _]) => "berth:ControlRollout",
                (Method::GET, ["health"]) => "berth:GetEndpointHealth",
                (Method::GET, ["experiment"]) => "berth:GetExperiment",
                (Method::POST, ["scores"]) => "berth:PutScores",
                _ => return Classified::default(),
            };
            one(
                action,
                format!("{}/runtime-endpoint/{}", runtime_arn(p, r), decode(e)),
            )
        }
        (Method::GET, ["berth", "v1", "audit"] | ["berth", "v1", "audit", "verify"]) => {
            one("berth:ReadAuditLog", "*".into())
        }
        (Method::GET, ["berth", "v1", "metrics"]) => one("berth:GetMetrics", "*".into()),
        (m, ["berth", "v1", "roles", rest @ ..]) => {
            let role = |n: &str| format!("arn:aws:iam::{}:role/{}", p.account_id, decode(n));
            match (m, rest) {
                (Method::GET, [] | [""]) => one("berth:ListRoles", role("*")),
                (Method::GET, [n]) => one("berth:GetRole", role(n)),
                (Method::PUT, [n]) => one("berth:PutRole", role(n)),
                (Method::DELETE, [n]) => one("berth:DeleteRole", role(n)),
                _ => Classified::default(),
            }
        }
        (m, ["berth", "v1", "nodes", rest @ ..]) => {
            let node = |id: &str| {
                format!(
                    "arn:aws:bedrock-agentcore:{}:{}:node/{id}",
                    p.region, p.account_id
                )
            };
            match (m, rest) {
                (Method::GET, [] | [""]) => one("berth:ListNodes", node("*")),
                (Method::POST, [id, "drain"]) => {
                    one("berth:DrainNode", node(&decode(id))).audited()
                }
                (Method::DELETE, [id, "drain"]) => {
                    one("berth:DrainNode", node(&decode(id))).audited()
                }
                _ => Classified::default(),
            }
        }
        (m, ["berth", "v1", "secrets", rest @ ..]) => {
            match (m, rest) {
                // A list is on the prefix's names, so a policy on `secret/team/*` lists `team/`.
                (Method::GET, [] | [""]) => {
                    let prefix = query_value(query, "prefix").unwrap_or_default();
                    one("berth:ListSecrets", secret_arn(p, &format!("{prefix}*")))
                }
                (Method::GET, [n]) => one("berth:GetSecret", secret_arn(p, &decode(n))),
                // Audited as method and path: the value in the body never enters the log.
                (Method::PUT, [n]) => one("berth:PutSecret", secret_arn(p, &decode(n))).audited(),
                (Method::DELETE, [n]) => {
                    one("berth:DeleteSecret", secret_arn(p, &decode(n))).audited()
                }
                _ => Classified::default(),
            }
        }
        (m, ["berth", "v1", "keys", rest @ ..]) => {
            let key = |id: &str| {
                format!(
                    "arn:aws:iam::{}:user/berth-key/{}",
                    p.account_id,
                    decode(id)
                )
            };
            match (m, rest) {
                (Method::GET, [] | [""]) => one("berth:ListAccessKeys", key("*")),
                (Method::POST, [] | [""]) => one("berth:CreateAccessKey", key("*")),
                (Method::DELETE, [id]) => one("berth:RevokeAccessKey", key(id)),
                _ => Classified::default(),
            }
        }
        _ => Classified::default(),
    }
}

/// The ARN of a CloudWatch Logs group (`log-group:*` for every group).
pub fn log_group_arn(p: &Partition, group: &str) -> String {
    format!(
        "arn:aws:logs:{}:{}:log-group:{group}",
        p.region, p.account_id
    )
}

/// Maps a Logs API operation (`X-Amz-Target: Logs_20140328.<op>`) to `logs:<op>` on the log
/// groups its body names (and their stream, for the operations on one stream), as IAM does:
/// one check per group a query reads. A body that does not parse names no group; the handler
/// refuses it.
pub fn logs_operations(p: &Partition, op: &str, body: &[u8]) -> Classified {
    const SERVED: &[&str] = &[
        "StartQuery",
        "GetQueryResults",
        "StopQuery",
        "GetLogEvents",
        "FilterLogEvents",
        "DescribeLogGroups",
        "DescribeLogStreams",
        "CreateLogGroup",
        "CreateLogStream",
        "PutLogEvents",
    ];
    if !SERVED.contains(&op) {
        return Classified::default();
    }
    let action = format!("logs:{op}");
    let doc: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = |k: &str| doc.get(k).and_then(Value::as_str);
    let list = |k: &str| -> Vec<String> {
        doc.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|g| berth_trace::logs::group_name(g).to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut groups: Vec<String> = text("logGroupName")
        .or(text("logGroupIdentifier"))
        .map(|g| berth_trace::logs::group_name(g).to_owned())
        .into_iter()
        .collect();
    let group_checks = |groups: &[String], stream: Option<&str>| -> Vec<Operation> {
        if groups.is_empty() {
            return vec![Operation::new(&action, log_group_arn(p, "*"))];
        }
        groups
            .iter()
            .map(|g| {
                let arn = log_group_arn(p, g);
                let arn = match stream {
                    Some(s) => format!("{arn}:log-stream:{s}"),
                    None => arn,
                };
                Operation::new(&action, arn)
            })
            .collect()
    };
    let checks = match op {
        "GetQueryResults" | "StopQuery" => vec![Operation::new(&action, "*")],
        "DescribeLogGroups" => vec![Operation::new(&action, log_group_arn(p, "*"))],
        "StartQuery" => {
            groups.extend(list("logGroupNames"));
            groups.extend(list("logGroupIdentifiers"));
            groups.sort();
            groups.dedup();
            group_checks(&groups, None)
        }
        "GetLogEvents" | "CreateLogStream" | "PutLogEvents" => {
            group_checks(&groups, Some(text("logStreamName").unwrap_or("")))
        }
        _ => group_checks(&groups, None),
    };
    let mut c = Classified {
        checks,
        audit: None,
    };
    // Creating groups and streams is audited; events and queries are not, one by one.
    if matches!(op, "CreateLogGroup" | "CreateLogStream") {
        c = c.audited();
    }
    c
}

/// S3's own action names (`s3:PutObject` also covers multipart uploads, as on AWS).
fn s3_operations(
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Classified {
    let rest = path.trim_start_matches('/');
    if rest.is_empty() {
        return match *method {
            Method::GET => Classified::one("s3:ListAllMyBuckets", "arn:aws:s3:::*".into()),
            _ => Classified::default(),
        };
    }
    let (bucket, raw_key) = rest.split_once('/').unwrap_or((rest, ""));
    let has = |n: &str| query_has(query, n);
    let one = Classified::one;
    if raw_key.is_empty() {
        let arn = format!("arn:aws:s3:::{bucket}");
        return match *method {
            Method::PUT => one("s3:CreateBucket", arn).audited(),
            Method::HEAD => one("s3:ListBucket", arn),
            Method::GET if has("location") => one("s3:GetBucketLocation", arn),
            Method::GET if has("uploads") => one("s3:ListBucketMultipartUploads", arn),
            Method::GET if has("versioning") => one("s3:GetBucketVersioning", arn),
            Method::GET => one("s3:ListBucket", arn),
            Method::DELETE => one("s3:DeleteBucket", arn).audited(),
            Method::POST if has("delete") => {
                one("s3:DeleteObject", format!("{arn}/*")).audited_as("DeleteObjects")
            }
            _ => Classified::default(),
        };
    }
    let arn = format!("arn:aws:s3:::{bucket}/{}", decode(raw_key));
    match *method {
        Method::PUT if headers.contains_key("x-amz-copy-source") => {
            let source = headers
                .get("x-amz-copy-source")
                .and_then(|v| v.to_str().ok())
                .map(|s| {
                    let s = decode(s);
                    let s = s.split_once("?versionId=").map_or(s.as_str(), |(k, _)| k);
                    format!("arn:aws:s3:::{}", s.trim_start_matches('/'))
                })
                .unwrap_or_default();
            let mut c = one("s3:PutObject", arn);
            c.checks.push(Operation::new("s3:GetObject", source));
            if has("uploadId") {
                c
            } else {
                c.audited_as("CopyObject")
            }
        }
        // A part is not a write anyone sees until the upload completes, which is audited.
        Method::PUT if has("uploadId") => one("s3:PutObject", arn),
        Method::PUT => one("s3:PutObject", arn).audited(),
        Method::GET if has("uploadId") => one("s3:ListMultipartUploadParts", arn),
        Method::GET | Method::HEAD => one("s3:GetObject", arn),
        Method::DELETE if has("uploadId") => one("s3:AbortMultipartUpload", arn),
        Method::DELETE => one("s3:DeleteObject", arn).audited(),
        Method::POST if has("uploads") => one("s3:PutObject", arn),
        Method::POST if has("uploadId") => {
            one("s3:PutObject", arn).audited_as("CompleteMultipartUpload")
        }
        _ => Classified::default(),
    }
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The key belongs to something that no longer exists (a deleted runtime, a revoked key).
    Unrecognized(String),
    /// The principal's policies do not allow `op`.
    Denied {
        /// The ARN the principal acts as.
        principal: String,
        /// The operation refused.
        op: Operation,
        /// Whether a statement denied it explicitly.
        explicit: bool,
    },
}

impl Refusal {
    /// AWS's wording.
    pub fn message(&self) -> String {
        match self {
            Refusal::Unrecognized(why) => {
                format!("The security token included in the request is invalid: {why}.")
            }
            Refusal::Denied {
                principal,
                op,
                explicit,
            } => {
                let because = if *explicit {
                    "with an explicit deny in an identity-based or resource-based policy".to_owned()
                } else {
                    format!(
                        "because no identity-based or resource-based policy allows the {} action",
                        op.action
                    )
                };
                format!(
                    "User: {principal} is not authorized to perform: {} on resource: {} {because}",
                    op.action, op.resource
                )
            }
        }
    }
}

/// Who is acting and under which policies.
struct Identity {
    arn: String,
    policies: Vec<Policy>,
    context: Context,
}

/// The default role's policy for `runtime_id`: the data plane of the memories its latest
/// configuration names (an id in an environment variable, as the starter toolkit passes
/// `BEDROCK_AGENTCORE_MEMORY_ID`), stopping its own sessions, and the CloudWatch Logs API on its
/// own log groups (`aws/spans` read-only).
pub fn default_role_policy(p: &Partition, runtime_id: &str, memory_ids: &[String]) -> Value {
    let mut statements = vec![json!({
        "Sid": "OwnSessions",
        "Effect": "Allow",
        "Action": "bedrock-agentcore:StopRuntimeSession",
        "Resource": p.runtime_arn(runtime_id),
    })];
    // Its own log groups (read and write), `aws/spans` (read; the Logs API shows a runtime's
    // credentials only that runtime's spans there), and its own queries' results.
    let own_groups = log_group_arn(
        p,
        &format!("{}{runtime_id}-*", berth_trace::logs::RUNTIME_GROUP_PREFIX),
    );
    let spans = log_group_arn(p, berth_trace::logs::SPANS_GROUP);
    statements.push(json!({
        "Sid": "OwnLogs",
        "Effect": "Allow",
        "Action": [
            "logs:StartQuery", "logs:GetLogEvents", "logs:FilterLogEvents",
            "logs:DescribeLogStreams", "logs:CreateLogGroup", "logs:CreateLogStream",
            "logs:PutLogEvents",
        ],
        "Resource": own_groups,
    }));
    statements.push(json!({
        "Sid": "ReadSpans",
        "Effect": "Allow",
        "Action": [
            "logs:StartQuery", "logs:GetLogEvents", "logs:FilterLogEvents",
            "logs:DescribeLogStreams",
        ],
        "Resource": [spans.clone(), format!("{spans}:*")],
    }));
    statements.push(json!({
        "Sid": "Queries",
        "Effect": "Allow",
        "Action": ["logs:GetQueryResults", "logs:StopQuery", "logs:DescribeLogGroups"],
        "Resource": "*",
    }));
    // The credentials an agent's `@requires_api_key` / `@requires_access_token` fetch: the
    // workload access token the call carries is what unlocks a provider's secret.
    statements.push(json!({
        "Sid": "IdentityCredentials",
        "Effect": "Allow",
        "Action": [
            "bedrock-agentcore:GetResourceApiKey", "bedrock-agentcore:GetResourceOauth2Token",
            "bedrock-agentcore:CompleteResourceTokenAuth",
        ],
        "Resource": [
            identity_arn(p, "apikeycredentialprovider"),
            identity_arn(p, "oauth2credentialprovider"),
        ],
    }));
    if !memory_ids.is_empty() {
        statements.push(json!({
            "Sid": "OwnMemories",
            "Effect": "Allow",
            "Action": [
                "bedrock-agentcore:CreateEvent", "bedrock-agentcore:GetEvent",
                "bedrock-agentcore:DeleteEvent", "bedrock-agentcore:ListEvents",
                "bedrock-agentcore:ListActors", "bedrock-agentcore:ListSessions",
                "bedrock-agentcore:RetrieveMemoryRecords", "bedrock-agentcore:ListMemoryRecords",
                "bedrock-agentcore:GetMemoryRecord", "bedrock-agentcore:DeleteMemoryRecord",
                "bedrock-agentcore:BatchCreateMemoryRecords",
                "bedrock-agentcore:BatchUpdateMemoryRecords",
                "bedrock-agentcore:BatchDeleteMemoryRecords",
                "bedrock-agentcore:StartMemoryExtractionJob",
                "bedrock-agentcore:ListMemoryExtractionJobs",
            ],
            "Resource": memory_ids.iter().map(|m| memory_arn(p, m)).collect::<Vec<_>>(),
        }));
    }
    json!({ "Version": "2012-10-17", "Statement": statements })
}

fn parse_stored(docs: &[Value], owner: &str) -> Vec<Policy> {
    docs.iter()
        .filter_map(|d| match Policy::from_value(d) {
            Ok(p) => Some(p),
            Err(e) => {
                // Validated on write; a document that no longer parses grants nothing.
                warn!(%owner, error = %e, "stored policy does not parse; ignored");
                None
            }
        })
        .collect()
}

/// The identity `scope` acts as (`None` for root). The outer `Err` is a store failure (a 500,
/// never a refusal: a database hiccup must not look like dead credentials, nor make the ring
/// forget a live runtime's); the inner one is a refusal.
async fn identity(
    state: &AppState,
    scope: &Scope,
) -> Result<Result<Option<Identity>, Refusal>, ApiError> {
    if matches!(scope, Scope::Root) {
        return Ok(Ok(None));
    }
    let control = &state.control;
    let p = control.partition();
    let mut context = Context::new();
    context.set("aws:SecureTransport", "false");
    match scope {
        Scope::Root => Ok(Ok(None)),
        Scope::Runtime { runtime_id } => {
            let store = control.store();
            let rt = store
                .runtime(runtime_id)
                .await
                .map_err(|e| ApiError::internal_because(format_args!("control store: {e}")))?;
            let Some(rt) = rt.filter(|r| !r.deleting) else {
                // The runtime is gone (or going): its credentials die with it.
                return Ok(Err(Refusal::Unrecognized(format!(
                    "the credentials of runtime {runtime_id} died with it"
                ))));
            };
            let spec = store
                .version(runtime_id, rt.latest_version)
                .await
                .map_err(|e| ApiError::internal_because(format_args!("control store: {e}")))?
                .map(|v| v.spec)
                .unwrap_or(Value::Null);
            let role_arn = spec
                .get("roleArn")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            context.set(
                "bedrock-agentcore:SourceRuntimeArn",
                p.runtime_arn(runtime_id),
            );
            let role = control.role(&role_arn).await?;
            let (arn, policies) = match role {
                Some(r) => (r.arn.clone(), parse_stored(&r.policies, &r.arn)),
                None => {
                    let memories: Vec<String> = spec
                        .get("environmentVariables")
                        .and_then(Value::as_object)
                        .map(|m| {
                            m.values()
                                .filter_map(|x| x.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default();
                    let doc = default_role_policy(p, runtime_id, &memories);
                    let arn = if role_arn.is_empty() {
                        control.role_arn("berth-default")
                    } else {
                        role_arn
                    };
                    (arn.clone(), parse_stored(&[doc], &arn))
                }
            };
            let mut policies = policies;
            policies.extend(parse_stored(&[runtime_secrets_deny()], &arn));
            context.set("aws:PrincipalArn", arn.clone());
            Ok(Ok(Some(Identity {
                arn,
                policies,
                context,
            })))
        }
        Scope::AccessKey { key_id } => {
            let key = control.access_key(key_id).await?;
            let Some(key) = key.filter(|k| k.active) else {
                return Ok(Err(Refusal::Unrecognized(format!(
                    "access key {key_id} does not exist or was revoked"
                ))));
            };
            let arn = control.access_key_arn(key_id);
            context.set("aws:PrincipalArn", arn.clone());
            Ok(Ok(Some(Identity {
                policies: parse_stored(std::slice::from_ref(&key.policy), &arn),
                arn,
                context,
            })))
        }
    }
}

/// Decides whether `verified` may perform the request in `parts`. On success the [`Granted`]
/// goes into the request's extensions; on refusal the answer is the response to send (already
/// audited).
pub async fn authorize(
    state: &AppState,
    verified: &Verified,
    parts: &Parts,
    body: &[u8],
    s3: bool,
    request_id: &str,
) -> Result<Granted, Response> {
    let p = state.control.partition();
    let classified = match crate::logs_api::target(&parts.headers) {
        Some(op) if !s3 => logs_operations(p, op, body),
        _ => operations(
            p,
            s3,
            &parts.method,
            parts.uri.path(),
            parts.uri.query(),
            &parts.headers,
        ),
    };
    let caller = Caller::new(
        verified.principal.access_key_id.clone(),
        Some(request_id.to_owned()),
    );
    let decided = match identity(state, &verified.principal.scope).await {
        Ok(Ok(None)) => Ok(()),
        Ok(Ok(Some(mut id))) => {
            let attached = if s3 {
                Ok(Vec::new())
            } else {
                resource_policies(&state.control, &classified.checks).await
            };
            match attached {
                Ok(attached) => decide(&classified, &mut id, &attached, parts, s3),
                Err(e) => return Err(WireError(e).into_response()),
            }
        }
        Ok(Err(r)) => Err(r),
        Err(e) if s3 => {
            // S3 answers in its own XML; the JSON planes log through `WireError`.
            tracing::error!(request_id, error = %e, "authorization could not read the store");
            return Err(crate::s3::internal_error(request_id));
        }
        Err(e) => return Err(WireError(e).into_response()),
    };
    if let Err(refusal) = decided {
        let (action, resource) = match &refusal {
            Refusal::Denied { op, .. } => (op.action.clone(), op.resource.clone()),
            Refusal::Unrecognized(_) => (
                classified
                    .checks
                    .first()
                    .map_or_else(|| "unknown".to_owned(), |o| o.action.clone()),
                classified
                    .checks
                    .first()
                    .map_or_else(|| parts.uri.path().to_owned(), |o| o.resource.clone()),
            ),
        };
        info!(
            access_key_id = %verified.principal.access_key_id,
            %action, %resource, "request refused by authorization"
        );
        caller
            .clone()
            .scope(state.control.audit_event(
                DENIED_ACTION,
                &resource,
                json!({
                    "action": action,
                    "method": parts.method.as_str(),
                    "path": parts.uri.path(),
                    "reason": refusal.message(),
                }),
            ))
            .await;
        return Err(refusal_response(&refusal, s3, request_id));
    }
    let audit = classified.audit.map(|(action, resource)| PendingAudit {
        control: state.control.clone(),
        caller,
        action,
        resource,
        request: json!({ "method": parts.method.as_str(), "path": parts.uri.path() }),
    });
    Ok(Granted { audit })
}

/// The resource policy attached to each check's resource (`None` where there is none, or the
/// resource is a wildcard). A stored document that no longer parses grants nothing.
async fn resource_policies(
    control: &Control,
    checks: &[Operation],
) -> Result<Vec<Option<Policy>>, ApiError> {
    let mut out = Vec::with_capacity(checks.len());
    for op in checks {
        // A store failure is an error, never "no policy": a deny in the unread policy would be
        // skipped.
        let doc = if op.resource.contains('*') {
            None
        } else {
            control.resource_policy(&op.resource).await?
        };
        out.push(doc.and_then(|d| match Policy::parse_resource(&d) {
            Ok(p) => Some(p),
            Err(e) => {
                warn!(resource = %op.resource, error = %e, "stored resource policy does not parse; ignored");
                None
            }
        }));
    }
    Ok(out)
}

fn decide(
    classified: &Classified,
    id: &mut Identity,
    attached: &[Option<Policy>],
    parts: &Parts,
    s3: bool,
) -> Result<(), Refusal> {
    if classified.checks.is_empty() {
        // A route no policy names is refused to everyone but root, so a route added without a
        // mapping here is closed, not open.
        return Err(Refusal::Denied {
            principal: id.arn.clone(),
            op: Operation::new(
                "berth:UnknownOperation",
                format!("{} {}", parts.method, parts.uri.path()),
            ),
            explicit: false,
        });
    }
    if !s3 {
        let h = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok());
        if let Some(u) = h(USER_HEADER) {
            id.context.set("bedrock-agentcore:RuntimeUserId", u);
        }
        if let Some(s) = h(SESSION_HEADER) {
            id.context.set("bedrock-agentcore:RuntimeSessionId", s);
        }
        if let Some(q) = query_value(parts.uri.query(), "qualifier") {
            id.context.set("bedrock-agentcore:Qualifier", q);
        }
    }
    evaluate_checks(&classified.checks, id, attached)
}

/// Each check against the principal's identity policies and the resource's policy (`attached`,
/// aligned with `checks`; shorter means none), as IAM decides within one account: an explicit
/// deny in either refuses, else an allow in either allows, else the request is implicitly
/// denied.
fn evaluate_checks(
    checks: &[Operation],
    id: &Identity,
    attached: &[Option<Policy>],
) -> Result<(), Refusal> {
    for (i, op) in checks.iter().enumerate() {
        let req = berth_policy::Request {
            action: &op.action,
            resource: &op.resource,
            context: &id.context,
        };
        let identity = berth_policy::evaluate(&id.policies, &req);
        let resource = attached
            .get(i)
            .and_then(Option::as_ref)
            .map_or(Decision::ImplicitDeny, |p| p.decide(&req));
        let d = match (identity, resource) {
            (Decision::ExplicitDeny, _) | (_, Decision::ExplicitDeny) => Decision::ExplicitDeny,
            (Decision::Allow, _) | (_, Decision::Allow) => Decision::Allow,
            _ => Decision::ImplicitDeny,
        };
        if d != Decision::Allow {
            return Err(Refusal::Denied {
                principal: id.arn.clone(),
                op: op.clone(),
                explicit: d == Decision::ExplicitDeny,
            });
        }
    }
    Ok(())
}

/// `iam:PassRole`, as AWS checks it on CreateAgentRuntime and UpdateAgentRuntime: whoever gives
/// a runtime a role Berth knows must be allowed to pass that role, or a key allowed to deploy
/// could run its own code with any role's rights. A role Berth does not know gives the runtime
/// only the default role, so naming one needs no grant.
pub async fn pass_role(
    state: &AppState,
    verified: Option<&Verified>,
    role_arn: &str,
    request_id: &str,
) -> Result<(), ApiError> {
    let Some(v) = verified else {
        return Ok(());
    };
    let Some(role) = state.control.role(role_arn).await? else {
        return Ok(());
    };
    let op = Operation::new("iam:PassRole", role.arn);
    let refusal = match identity(state, &v.principal.scope).await? {
        Ok(None) => return Ok(()),
        Ok(Some(id)) => match evaluate_checks(std::slice::from_ref(&op), &id, &[]) {
            Ok(()) => return Ok(()),
            Err(r) => r,
        },
        Err(r) => r,
    };
    Caller::new(
        v.principal.access_key_id.clone(),
        Some(request_id.to_owned()),
    )
    .scope(state.control.audit_event(
        DENIED_ACTION,
        &op.resource,
        json!({ "action": op.action, "reason": refusal.message() }),
    ))
    .await;
    Err(ApiError::new(ErrorKind::AccessDenied, refusal.message()))
}

/// Whether `principal`, authenticated without SigV4 (the registry's HTTP Basic), may perform
/// every one of `ops`, decided by its identity policies as [`authorize`] decides (registry
/// resources carry no resource policies). A refusal is audited. The outer `Err` is a store
/// failure, never a refusal.
pub(crate) async fn check(
    state: &AppState,
    principal: &berth_auth::Principal,
    ops: &[Operation],
    request_id: &str,
) -> Result<Result<(), Refusal>, ApiError> {
    let refusal = match identity(state, &principal.scope).await? {
        Ok(None) => return Ok(Ok(())),
        Ok(Some(id)) => match evaluate_checks(ops, &id, &[]) {
            Ok(()) => return Ok(Ok(())),
            Err(r) => r,
        },
        Err(r) => r,
    };
    let op = match &refusal {
        Refusal::Denied { op, .. } => Some(op),
        Refusal::Unrecognized(_) => ops.first(),
    };
    info!(
        access_key_id = %principal.access_key_id,
        action = op.map_or("unknown", |o| o.action.as_str()),
        "request refused by authorization"
    );
    Caller::new(principal.access_key_id.clone(), Some(request_id.to_owned()))
        .scope(state.control.audit_event(
            DENIED_ACTION,
            op.map_or("*", |o| o.resource.as_str()),
            json!({
                "action": op.map_or("unknown", |o| o.action.as_str()),
                "reason": refusal.message(),
            }),
        ))
        .await;
    Ok(Err(refusal))
}

fn refusal_response(r: &Refusal, s3: bool, request_id: &str) -> Response {
    let message = r.message();
    match (r, s3) {
        (Refusal::Unrecognized(_), true) => crate::s3::invalid_access_key(&message, request_id),
        (Refusal::Unrecognized(_), false) => WireError(ApiError::custom(
            "UnrecognizedClientException",
            403,
            message,
        ))
        .into_response(),
        (Refusal::Denied { .. }, true) => crate::s3::access_denied(&message, request_id),
        (Refusal::Denied { .. }, false) => {
            WireError(ApiError::new(ErrorKind::AccessDenied, message)).into_response()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn part() -> Partition {
        Partition {
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
        }
    }

    fn ops(s3: bool, method: Method, path: &str, query: Option<&str>) -> Classified {
        operations(&part(), s3, &method, path, query, &HeaderMap::new())
    }

    /// Every model URI with a trailing slash that Berth serves, as the AWS SDK for Rust sends it
    /// (without the slash): the same action on the same resource as the model's form.
    #[test]
    fn model_uris_without_their_trailing_slash_are_the_same_operation() {
        let cases = [
            (Method::PUT, "/runtimes/", "CreateAgentRuntime"),
            (Method::POST, "/runtimes/", "ListAgentRuntimes"),
            (Method::GET, "/runtimes/a-0123456789/", "GetAgentRuntime"),
            (Method::PUT, "/runtimes/a-0123456789/", "UpdateAgentRuntime"),
            (
                Method::DELETE,
                "/runtimes/a-0123456789/",
                "DeleteAgentRuntime",
            ),
            (
                Method::POST,
                "/runtimes/a-0123456789/versions/",
                "ListAgentRuntimeVersions",
            ),
            (
                Method::PUT,
                "/runtimes/a-0123456789/runtime-endpoints/",
                "CreateAgentRuntimeEndpoint",
            ),
            (
                Method::POST,
                "/runtimes/a-0123456789/runtime-endpoints/",
                "ListAgentRuntimeEndpoints",
            ),
            (
                Method::GET,
                "/runtimes/a-0123456789/runtime-endpoints/e/",
                "GetAgentRuntimeEndpoint",
            ),
            (
                Method::PUT,
                "/runtimes/a-0123456789/runtime-endpoints/e/",
                "UpdateAgentRuntimeEndpoint",
            ),
            (
                Method::DELETE,
                "/runtimes/a-0123456789/runtime-endpoints/e/",
                "DeleteAgentRuntimeEndpoint",
            ),
            (Method::POST, "/memories/", "ListMemories"),
        ];
        for (method, path, op) in cases {
            let model = ops(false, method.clone(), path, None);
            assert_eq!(
                model.checks.first().map(|c| c.action.as_str()),
                Some(format!("bedrock-agentcore:{op}").as_str()),
                "{method} {path}"
            );
            let bare = ops(false, method.clone(), path.trim_end_matches('/'), None);
            assert_eq!(bare, model, "{method} {path} without its slash");
        }
        // A path no operation has, with or without a slash, is still none.
        assert!(
            ops(false, Method::GET, "/runtimes/x/nothing", None)
                .checks
                .is_empty()
        );
    }

    #[test]
    fn requests_map_to_aws_actions_and_canonical_arns() {
        let rt = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/a-0123456789";
        let by_id = ops(
            false,
            Method::POST,
            "/runtimes/a-0123456789/invocations",
            None,
        );
        let encoded = rt.replace(':', "%3A").replace('/', "%2F");
        let by_arn = ops(
            false,
            Method::POST,
            &format!("/runtimes/{encoded}/invocations"),
            None,
        );
        assert_eq!(by_id, by_arn);
        assert_eq!(
            by_id.checks,
            vec![Operation::new("bedrock-agentcore:InvokeAgentRuntime", rt)]
        );
        let mut h = HeaderMap::new();
        h.insert(USER_HEADER, "alice".parse().unwrap());
        let with_user = operations(
            &part(),
            false,
            &Method::POST,
            "/runtimes/a-0123456789/invocations",
            None,
            &h,
        );
        assert_eq!(with_user.checks[1].action, INVOKE_FOR_USER);
        // The command and the WebSocket each have their own action on the runtime.
        for (method, path, action) in [
            (
                Method::POST,
                "/runtimes/a-0123456789/commands",
                "bedrock-agentcore:InvokeAgentRuntimeCommand",
            ),
            (
                Method::GET,
                "/runtimes/a-0123456789/ws",
                "bedrock-agentcore:InvokeAgentRuntimeWithWebSocketStream",
            ),
        ] {
            assert_eq!(
                ops(false, method, path, None).checks,
                vec![Operation::new(action, rt)]
            );
        }
        let mem = ops(
            false,
            Method::POST,
            "/memories/m-1/memoryRecords/batchCreate",
            None,
        );
        assert_eq!(
            mem.audit,
            Some((
                "BatchCreateMemoryRecords".into(),
                "arn:aws:bedrock-agentcore:us-east-1:123456789012:memory/m-1".into()
            ))
        );
        assert_eq!(
            ops(false, Method::POST, "/memories/m-1/events", None).audit,
            None
        );
        assert!(
            ops(false, Method::PATCH, "/runtimes/x/", None)
                .checks
                .is_empty()
        );
        assert!(ops(false, Method::GET, "/nowhere", None).checks.is_empty());
    }

    #[test]
    fn identity_requests_map_to_their_families() {
        let wi = ops(
            false,
            Method::POST,
            "/identities/CreateWorkloadIdentity",
            None,
        );
        assert_eq!(
            wi.checks[0].action,
            "bedrock-agentcore:CreateWorkloadIdentity"
        );
        assert_eq!(
            wi.checks[0].resource,
            "arn:aws:bedrock-agentcore:us-east-1:123456789012:workload-identity-directory/default/workload-identity/*"
        );
        assert!(wi.audit.is_some());
        let key = ops(false, Method::POST, "/identities/api-key", None);
        assert_eq!(key.checks[0].action, "bedrock-agentcore:GetResourceApiKey");
        assert_eq!(
            key.checks[0].resource,
            "arn:aws:acps:us-east-1:123456789012:token-vault/default/apikeycredentialprovider/*"
        );
        let token = ops(false, Method::POST, "/identities/oauth2/token", None);
        assert_eq!(
            token.checks[0].action,
            "bedrock-agentcore:GetResourceOauth2Token"
        );
        let list = ops(
            false,
            Method::POST,
            "/identities/ListOauth2CredentialProviders",
            None,
        );
        assert!(list.audit.is_none());
        assert!(
            ops(false, Method::POST, "/identities/Nope", None)
                .checks
                .is_empty()
        );
    }

    #[test]
    fn s3_requests_map_to_s3_actions() {
        let put = ops(true, Method::PUT, "/code/agent%20v1.zip", None);
        assert_eq!(put.checks[0].action, "s3:PutObject");
        assert_eq!(put.checks[0].resource, "arn:aws:s3:::code/agent v1.zip");
        assert_eq!(put.audit.as_ref().map(|a| a.0.as_str()), Some("PutObject"));
        let upload_part = ops(
            true,
            Method::PUT,
            "/code/k",
            Some("partNumber=1&uploadId=u"),
        );
        assert_eq!(upload_part.audit, None);
        let complete = ops(true, Method::POST, "/code/k", Some("uploadId=u"));
        assert_eq!(
            complete.audit.map(|a| a.0),
            Some("CompleteMultipartUpload".into())
        );
        assert_eq!(
            ops(true, Method::GET, "/code", Some("location")).checks[0].action,
            "s3:GetBucketLocation"
        );
        assert_eq!(
            ops(true, Method::DELETE, "/code", None).audit.map(|a| a.0),
            Some("DeleteBucket".into())
        );
        let mut h = HeaderMap::new();
        h.insert(
            "x-amz-copy-source",
            "/src/a%2Fb?versionId=1".parse().unwrap(),
        );
        let copy = operations(&part(), true, &Method::PUT, "/dst/k", None, &h);
        assert_eq!(
            copy.checks[1],
            Operation::new("s3:GetObject", "arn:aws:s3:::src/a/b")
        );
    }

    #[test]
    fn logs_operations_check_each_group_and_the_default_role_keeps_to_its_own() {
        let p = part();
        let group = |g: &str| log_group_arn(&p, g);
        let query = logs_operations(
            &p,
            "StartQuery",
            br#"{"logGroupNames": ["aws/spans", "/x"], "logGroupIdentifiers":
                ["arn:aws:logs:us-east-1:123456789012:log-group:/y:*"], "queryString": "q"}"#,
        );
        assert_eq!(
            query.checks,
            vec![
                Operation::new("logs:StartQuery", group("/x")),
                Operation::new("logs:StartQuery", group("/y")),
                Operation::new("logs:StartQuery", group("aws/spans")),
            ]
        );
        let put = logs_operations(
            &p,
            "PutLogEvents",
            br#"{"logGroupName": "/g", "logStreamName": "s", "logEvents": []}"#,
        );
        assert_eq!(
            put.checks,
            vec![Operation::new(
                "logs:PutLogEvents",
                format!("{}:log-stream:s", group("/g"))
            )]
        );
        assert_eq!(
            logs_operations(&p, "GetQueryResults", b"{}").checks,
            vec![Operation::new("logs:GetQueryResults", "*")]
        );
        assert_eq!(
            logs_operations(&p, "DescribeLogGroups", b"not json").checks,
            vec![Operation::new("logs:DescribeLogGroups", group("*"))]
        );
        assert!(
            logs_operations(&p, "CreateLogGroup", br#"{"logGroupName": "/g"}"#)
                .audit
                .is_some()
        );
        // Operations Berth does not serve are nobody's but root's (to an UnknownOperation).
        assert!(
            logs_operations(&p, "DeleteLogGroup", b"{}")
                .checks
                .is_empty()
        );

        let doc = default_role_policy(&p, "a-0123456789", &[]);
        let policy = Policy::from_value(&doc).unwrap();
        let ctx = Context::new();
        let allowed = |action: &str, resource: &str| {
            policy
                .decide(&berth_policy::Request {
                    action,
                    resource,
                    context: &ctx,
                })
                .allowed()
        };
        let own = group("/aws/bedrock-agentcore/runtimes/a-0123456789-DEFAULT");
        assert!(allowed("logs:StartQuery", &own));
        assert!(allowed(
            "logs:PutLogEvents",
            &format!("{own}:log-stream:emf")
        ));
        assert!(allowed("logs:StartQuery", &group("aws/spans")));
        assert!(!allowed(
            "logs:PutLogEvents",
            &format!("{}:log-stream:default", group("aws/spans"))
        ));
        assert!(!allowed(
            "logs:StartQuery",
            &group("/aws/bedrock-agentcore/runtimes/b-0123456789-DEFAULT")
        ));
        assert!(!allowed("logs:CreateLogGroup", &group("/elsewhere")));
        assert!(allowed("logs:GetQueryResults", "*"));
    }

    #[test]
    fn default_role_allows_own_memories_and_nothing_else() {
        let p = part();
        let doc = default_role_policy(&p, "a-0123456789", &["mem-1".into()]);
        let policy = Policy::from_value(&doc).unwrap();
        let ctx = Context::new();
        let allowed = |action: &str, resource: &str| {
            policy
                .decide(&berth_policy::Request {
                    action,
                    resource,
                    context: &ctx,
                })
                .allowed()
        };
        let mem = memory_arn(&p, "mem-1");
        assert!(allowed("bedrock-agentcore:CreateEvent", &mem));
        assert!(!allowed(
            "bedrock-agentcore:CreateEvent",
            &memory_arn(&p, "mem-2")
        ));
        assert!(!allowed("bedrock-agentcore:DeleteMemory", &mem));
        assert!(allowed(
            "bedrock-agentcore:StopRuntimeSession",
            &p.runtime_arn("a-0123456789")
        ));
        assert!(!allowed(
            "bedrock-agentcore:InvokeAgentRuntime",
            &p.runtime_arn("b-0123456789")
        ));
        assert!(!allowed(
            "bedrock-agentcore:InvokeAgentRuntime",
            &p.runtime_arn("a-0123456789")
        ));
    }

    #[test]
    fn secret_routes_map_to_secret_actions_and_only_writes_are_audited() {
        let arn = |n: &str| format!("arn:aws:bedrock-agentcore:us-east-1:123456789012:secret/{n}");
        let cases = [
            (
                Method::PUT,
                "/berth/v1/secrets/team%2Fkey",
                None,
                "berth:PutSecret",
                arn("team/key"),
                true,
            ),
            (
                Method::GET,
                "/berth/v1/secrets/team%2Fkey",
                None,
                "berth:GetSecret",
                arn("team/key"),
                false,
            ),
            (
                Method::DELETE,
                "/berth/v1/secrets/k",
                None,
                "berth:DeleteSecret",
                arn("k"),
                true,
            ),
            (
                Method::GET,
                "/berth/v1/secrets",
                None,
                "berth:ListSecrets",
                arn("*"),
                false,
            ),
            (
                Method::GET,
                "/berth/v1/secrets",
                Some("prefix=team%2F"),
                "berth:ListSecrets",
                arn("team/*"),
                false,
            ),
        ];
        for (method, path, query, action, resource, audited) in cases {
            let c = ops(false, method.clone(), path, query);
            assert_eq!(
                c.checks,
                [Operation::new(action, resource.clone())],
                "{method} {path}"
            );
            assert_eq!(
                c.audit,
                audited.then(|| (action.trim_start_matches("berth:").to_owned(), resource)),
                "{method} {path}"
            );
        }
        assert!(
            ops(false, Method::POST, "/berth/v1/secrets/k", None)
                .checks
                .is_empty()
        );
    }

    #[test]
    fn runtime_credentials_never_get_secrets_whatever_their_role() {
        let p = part();
        let everything = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"}]});
        for role in [default_role_policy(&p, "a-0123456789", &[]), everything] {
            let id = Identity {
                arn: "arn:aws:iam::123456789012:role/agent".into(),
                policies: parse_stored(&[role, runtime_secrets_deny()], "test"),
                context: Context::new(),
            };
            for action in SECRET_ACTIONS {
                let op = Operation::new(action, secret_arn(&p, "team/key"));
                assert!(
                    evaluate_checks(std::slice::from_ref(&op), &id, &[]).is_err(),
                    "{action} must be refused"
                );
            }
        }
        // The deny is about secrets only.
        let id = Identity {
            arn: "arn:aws:iam::123456789012:role/agent".into(),
            policies: parse_stored(
                &[
                    default_role_policy(&p, "a-0123456789", &[]),
                    runtime_secrets_deny(),
                ],
                "test",
            ),
            context: Context::new(),
        };
        let stop = Operation::new(
            "bedrock-agentcore:StopRuntimeSession",
            p.runtime_arn("a-0123456789"),
        );
        assert!(evaluate_checks(&[stop], &id, &[]).is_ok());
    }

    #[test]
    fn resource_policy_and_agent_card_routes_map_to_their_actions() {
        let rt = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/a-0123456789";
        let enc = |s: &str| s.replace(':', "%3A").replace('/', "%2F");
        for (m, action) in [
            (Method::PUT, "PutResourcePolicy"),
            (Method::GET, "GetResourcePolicy"),
            (Method::DELETE, "DeleteResourcePolicy"),
        ] {
            let c = ops(false, m, &format!("/resourcepolicy/{}", enc(rt)), None);
            assert_eq!(
                c.checks,
                [Operation::new(&format!("bedrock-agentcore:{action}"), rt)]
            );
        }
        let ep = format!("{rt}/runtime-endpoint/prod");
        let c = ops(
            false,
            Method::GET,
            &format!("/resourcepolicy/{}", enc(&ep)),
            None,
        );
        assert_eq!(c.checks[0].resource, ep);
        let c = ops(
            false,
            Method::GET,
            "/runtimes/a-0123456789/invocations/.well-known/agent-card.json",
            None,
        );
        assert_eq!(
            c.checks,
            [Operation::new("bedrock-agentcore:GetAgentCard", rt)]
        );
    }

    #[test]
    fn identity_and_resource_policies_combine_as_iam_does() {
        let rt = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/a-0123456789";
        let me = "arn:aws:iam::123456789012:user/berth-key/BKAKME";
        let invoke = [Operation::new("bedrock-agentcore:InvokeAgentRuntime", rt)];
        let identity = |doc: Value| {
            let mut context = Context::new();
            context.set("aws:PrincipalArn", me);
            Identity {
                arn: me.into(),
                policies: vec![Policy::from_value(&doc).unwrap()],
                context,
            }
        };
        let nothing = identity(json!({"Statement": [
            {"Effect": "Allow", "Action": "bedrock-agentcore:GetAgentRuntime", "Resource": "*"}]}));
        let everything = identity(json!({"Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"}]}));
        let resource = |effect: &str, principal: &str| {
            Some(
                Policy::parse_resource(
                    &json!({"Statement": [{"Effect": effect, "Principal": {"AWS": principal},
                        "Action": "bedrock-agentcore:InvokeAgentRuntime", "Resource": rt}]})
                    .to_string(),
                )
                .unwrap(),
            )
        };
        // Neither allows: implicit deny.
        assert!(matches!(
            evaluate_checks(&invoke, &nothing, &[None]),
            Err(Refusal::Denied {
                explicit: false,
                ..
            })
        ));
        // The resource policy naming the principal allows on its own.
        assert!(evaluate_checks(&invoke, &nothing, &[resource("Allow", me)]).is_ok());
        // Naming the account only delegates to identity policies.
        assert!(evaluate_checks(&invoke, &nothing, &[resource("Allow", "123456789012")]).is_err());
        assert!(
            evaluate_checks(&invoke, &everything, &[resource("Allow", "123456789012")]).is_ok()
        );
        // Another principal named: nothing for this one.
        let other = "arn:aws:iam::123456789012:user/berth-key/BKAKOTHER";
        assert!(evaluate_checks(&invoke, &nothing, &[resource("Allow", other)]).is_err());
        // A deny in the resource policy wins over the identity's allow.
        assert!(matches!(
            evaluate_checks(&invoke, &everything, &[resource("Deny", me)]),
            Err(Refusal::Denied { explicit: true, .. })
        ));
    }
}
