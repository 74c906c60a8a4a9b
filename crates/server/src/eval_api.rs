//! AgentCore Evaluations routes: evaluators and online evaluation configs of
//! `bedrock-agentcore-control`, and `Evaluate` of `bedrock-agentcore`.
//!
//! `Evaluate` runs in the request: the evaluator is resolved (`berth_eval::resources`), then
//! scored by `berth_eval::evaluate` with the server's judge and a [`CodeRunner`] that invokes a
//! Berth runtime for `codeBased` evaluators, through the invoker like any invocation (so the
//! evaluator's code runs sandboxed, routed, metered and traced).

use crate::AppState;
use crate::control_api::input;
use crate::error::WireError;
use crate::memory_api::{respond_typed, typed};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{Extension, RawPathParams, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use berth_api::evaluation::{EvaluateInput, LambdaEvaluatorConfig};
use berth_api::model;
use berth_api::{ApiError, ErrorKind};
use berth_auth::Verified;
use berth_eval::evaluate::CodeRunner;
use berth_runtime::invoker::Action;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a code evaluator may run when its config gives no `lambdaTimeoutInSeconds`
/// (Lambda's own default is 3 s; AgentCore documents no other).
const DEFAULT_CODE_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest answer a code evaluator may give.
const MAX_CODE_ANSWER: usize = 1024 * 1024;

/// What the evaluation routes share.
#[derive(Clone)]
pub struct Evals {
    /// Evaluators and online evaluation configs.
    pub resources: berth_eval::resources::Resources,
    /// The judge LLM evaluators call.
    pub judge: berth_eval::judge::Judge,
    /// `codeBased` evaluators' Lambda ARNs and the Berth runtime (id or ARN) each runs as
    /// (`berth serve --eval-code-runtime LAMBDA_ARN=RUNTIME`).
    pub code_runtimes: Arc<BTreeMap<String, String>>,
}

/// An evaluation route on the control plane: validate against the model, read the typed
/// request, call `Resources`, answer the typed response with the model's status code.
macro_rules! eval_op {
    ($name:ident, $op:literal, $method:ident) => {
        async fn $name(
            State(s): State<AppState>,
            path: Result<RawPathParams, RawPathParamsRejection>,
            RawQuery(q): RawQuery,
            body: Bytes,
        ) -> Result<Response, WireError> {
            let m = model::control();
            let input = input(m, $op, path, q.as_deref(), &body, s.relax)?;
            let out = s.evals.resources.$method(typed(input)?).await?;
            Ok(respond_typed(m, $op, &out)?)
        }
    };
}

eval_op!(create_evaluator, "CreateEvaluator", create_evaluator);
eval_op!(get_evaluator, "GetEvaluator", get_evaluator);
eval_op!(update_evaluator, "UpdateEvaluator", update_evaluator);
eval_op!(list_evaluators, "ListEvaluators", list_evaluators);
eval_op!(delete_evaluator, "DeleteEvaluator", delete_evaluator);
eval_op!(
    create_online_config,
    "CreateOnlineEvaluationConfig",
    create_online_config
);
eval_op!(
    get_online_config,
    "GetOnlineEvaluationConfig",
    get_online_config
);
eval_op!(
    update_online_config,
    "UpdateOnlineEvaluationConfig",
    update_online_config
);
eval_op!(
    list_online_configs,
    "ListOnlineEvaluationConfigs",
    list_online_configs_page
);
eval_op!(
    delete_online_config,
    "DeleteOnlineEvaluationConfig",
    delete_online_config
);

/// `Evaluate` (`POST /evaluations/evaluate/{evaluatorId}`).
async fn evaluate(
    State(s): State<AppState>,
    Extension(rid): Extension<crate::RequestId>,
    verified: Option<Extension<Verified>>,
    path: Result<RawPathParams, RawPathParamsRejection>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, WireError> {
    let m = model::data();
    let mut v = input(m, "Evaluate", path, q.as_deref(), &body, s.relax)?;
    let id = v
        .as_object_mut()
        .and_then(|o| o.remove("evaluatorId"))
        .and_then(|id| id.as_str().map(str::to_owned))
        .unwrap_or_default();
    let req: EvaluateInput = typed(v)?;
    let evaluator = s.evals.resources.resolve(&id).await?;
    let runner = RuntimeRunner {
        state: &s,
        actor: verified.as_ref().map(|v| v.principal.access_key_id.clone()),
        request_id: rid.0.clone(),
    };
    let out = berth_eval::evaluate::evaluate(&evaluator, &req, &runner, &s.evals.judge).await?;
    Ok(respond_typed(m, "Evaluate", &out)?)
}

/// The code runner of work no request asked for (online evaluation): invocations with no actor
/// and a request id of their own.
pub struct BackgroundRunner(pub AppState);

#[async_trait::async_trait]
impl CodeRunner for BackgroundRunner {
    async fn run(&self, lambda: &LambdaEvaluatorConfig, event: Value) -> Result<Value, String> {
        RuntimeRunner {
            state: &self.0,
            actor: None,
            request_id: berth_types::new_request_id(),
        }
        .run(lambda, event)
        .await
    }
}

/// Runs a `codeBased` evaluator as a Berth runtime: the Lambda ARN names a runtime through
/// `--eval-code-runtime`; the event is the runtime's invocation payload, in a session of its
/// own, and its JSON answer is the evaluator's.
struct RuntimeRunner<'a> {
    state: &'a AppState,
    actor: Option<String>,
    request_id: String,
}

impl RuntimeRunner<'_> {
    /// The runtime id a Lambda ARN maps to.
    fn runtime_of(&self, lambda_arn: &str) -> Result<String, String> {
        let Some(target) = self.state.evals.code_runtimes.get(lambda_arn) else {
            return Err(format!(
                "no Berth runtime runs {lambda_arn}: start the server with \
                 --eval-code-runtime {lambda_arn}=RUNTIME_ID"
            ));
        };
        // A runtime ARN or a bare id.
        Ok(target
            .rsplit_once(":runtime/")
            .map_or(target.as_str(), |(_, id)| id)
            .to_owned())
    }
}

#[async_trait::async_trait]
impl CodeRunner for RuntimeRunner<'_> {
    async fn run(&self, lambda: &LambdaEvaluatorConfig, event: Value) -> Result<Value, String> {
        use futures::StreamExt;
        let runtime_id = self.runtime_of(&lambda.lambda_arn)?;
        let payload = serde_json::to_vec(&event).map_err(|e| format!("encoding the event: {e}"))?;
        let session_id = format!("berth-eval-{}", berth_types::new_request_id());
        let headers = HeaderMap::new();
        let inv = berth_runtime::invoker::Invocation {
            runtime_id: &runtime_id,
            qualifier: None,
            session_id: &session_id,
            user_id: None,
            actor: self.actor.as_deref(),
            request_id: &self.request_id,
            headers: &headers,
            action: Action::Invoke(Bytes::from(payload)),
            forwarded: false,
        };
        let limit = lambda
            .lambda_timeout_in_seconds
            .map_or(DEFAULT_CODE_TIMEOUT, |s| {
                Duration::from_secs(s.max(1) as u64)
            });
        let call = async {
            let answer = self
                .state
                .invoker
                .invoke(inv)
                .await
                .map_err(|e| format!("invoking runtime {runtime_id}: {e}"))?;
            let (parts, mut stream) = answer.into_parts();
            let mut buf = Vec::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| format!("reading runtime {runtime_id}: {e}"))?;
                buf.extend_from_slice(&chunk);
                if buf.len() > MAX_CODE_ANSWER {
                    return Err(format!(
                        "runtime {runtime_id} answered more than {MAX_CODE_ANSWER} bytes"
                    ));
                }
            }
            if !parts.status.is_success() {
                return Err(format!(
                    "runtime {runtime_id} answered {}: {}",
                    parts.status.as_u16(),
                    String::from_utf8_lossy(&buf).trim()
                ));
            }
            serde_json::from_slice(&buf)
                .map_err(|e| format!("runtime {runtime_id} did not answer JSON: {e}"))
        };
        let out = match tokio::time::timeout(limit, call).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "runtime {runtime_id} did not answer within {} s",
                limit.as_secs()
            )),
        };
        // The session served one call; its sandbox is not kept for another evaluation.
        let _ = self.state.sessions.stop(&runtime_id, &session_id).await;
        out
    }
}

/// Parses `--eval-code-runtime LAMBDA_ARN=RUNTIME` values.
pub fn code_runtimes(pairs: &[String]) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for p in pairs {
        let Some((arn, runtime)) = p.split_once('=') else {
            return Err(ApiError::new(
                ErrorKind::Validation,
                format!("{p:?} is not LAMBDA_ARN=RUNTIME"),
            ));
        };
        if !arn.starts_with("arn:") || runtime.is_empty() {
            return Err(ApiError::new(
                ErrorKind::Validation,
                format!("{p:?} is not LAMBDA_ARN=RUNTIME"),
            ));
        }
        out.insert(arn.to_owned(), runtime.to_owned());
    }
    Ok(out)
}

/// The evaluation routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        // Control plane.
        .route("/evaluators/create", post(create_evaluator))
        .route("/evaluators", post(list_evaluators))
        .route(
            "/evaluators/{evaluatorId}",
            get(get_evaluator)
                .put(update_evaluator)
                .delete(delete_evaluator),
        )
        .route(
            "/online-evaluation-configs/create",
            post(create_online_config),
        )
        .route("/online-evaluation-configs", post(list_online_configs))
        .route(
            "/online-evaluation-configs/{onlineEvaluationConfigId}",
            get(get_online_config)
                .put(update_online_config)
                .delete(delete_online_config),
        )
        // Data plane.
        .route("/evaluations/evaluate/{evaluatorId}", post(evaluate))
        // Evaluation writes are not in the control store's transactions: audited after success.
        .route_layer(axum::middleware::from_fn(crate::authz::audit_writes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_runtime_pairs_parse_and_refuse_bad_ones() {
        let m = code_runtimes(&[
            "arn:aws:lambda:us-east-1:123456789012:function:f=rt-0123456789".into(),
        ])
        .unwrap();
        assert_eq!(
            m["arn:aws:lambda:us-east-1:123456789012:function:f"],
            "rt-0123456789"
        );
        assert!(code_runtimes(&["nope".into()]).is_err());
        assert!(code_runtimes(&["arn:x=".into()]).is_err());
    }
}
