//! Evaluation datasets (`bedrock-agentcore-control`) and batch evaluations
//! (`bedrock-agentcore`): one `data_op!` line per operation (validate against the model, read the
//! typed request, call `berth_eval`, answer the typed response with the model's status code),
//! and the unsigned, HMAC-signed dataset download (`GET /berth/v1/dataset-downloads/{id}`) the
//! SDK fetches with plain `requests.get`.

use crate::AppState;
use crate::control_api::{Documents, input_from_query, input_with_documents};
use crate::error::WireError;
use crate::memory_api::{respond_typed, typed};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{Path, Query, RawPathParams, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use berth_api::ApiError;
use berth_api::model::{self, Model};
use serde_json::Value;
use std::collections::HashMap;

/// Example documents (`SensitiveJson`) hold any JSON but the embedded model describes them as
/// empty structures: they are taken out before validation and put back after.
fn take_examples(body: &mut Value) -> Documents {
    let mut out = Vec::new();
    for at in ["/source/inlineExamples/examples", "/examples"] {
        if let Some(Value::Array(items)) = body.pointer_mut(at) {
            let n = items.len();
            let docs = std::mem::replace(items, vec![Value::Object(Default::default()); n]);
            out.push((at.to_owned(), Value::Array(docs)));
        }
    }
    out
}

fn validated(
    m: &Model,
    op: &str,
    path: Result<RawPathParams, RawPathParamsRejection>,
    query: Option<&str>,
    body: &[u8],
    relax: model::Relax,
) -> Result<Value, ApiError> {
    input_with_documents(m, op, path, query, body, relax, take_examples)
}

/// A dataset or batch route: validate, read the typed request, call the domain, answer.
macro_rules! data_op {
    ($name:ident, $model:ident, $op:literal, $svc:ident . $method:ident) => {
        async fn $name(
            State(s): State<AppState>,
            path: Result<RawPathParams, RawPathParamsRejection>,
            RawQuery(q): RawQuery,
            body: Bytes,
        ) -> Result<Response, WireError> {
            let m = model::$model();
            let input = validated(m, $op, path, q.as_deref(), &body, s.relax)?;
            let out = s.$svc.$method(typed(input)?).await?;
            Ok(respond_typed(m, $op, &out)?)
        }
    };
}

data_op!(create_dataset, control, "CreateDataset", datasets.create);
data_op!(update_dataset, control, "UpdateDataset", datasets.update);
data_op!(delete_dataset, control, "DeleteDataset", datasets.delete);
data_op!(list_datasets, control, "ListDatasets", datasets.list);
data_op!(
    create_dataset_version,
    control,
    "CreateDatasetVersion",
    datasets.create_version
);
data_op!(
    list_dataset_versions,
    control,
    "ListDatasetVersions",
    datasets.list_versions
);
data_op!(
    add_examples,
    control,
    "AddDatasetExamples",
    datasets.add_examples
);
data_op!(
    update_examples,
    control,
    "UpdateDatasetExamples",
    datasets.update_examples
);
data_op!(
    delete_examples,
    control,
    "DeleteDatasetExamples",
    datasets.delete_examples
);
data_op!(
    list_examples,
    control,
    "ListDatasetExamples",
    datasets.list_examples
);
/// The GET binding of a list operation (the AWS SDK for JavaScript v3's model: `GET /datasets`,
/// `.../versions`, `.../examples` with `maxResults`, `nextToken`, `datasetVersion` in the query
/// string), answered exactly as its POST binding (botocore's model: `.../list` with a body).
macro_rules! data_op_by_query {
    ($name:ident, $op:literal, $svc:ident . $method:ident) => {
        async fn $name(
            State(s): State<AppState>,
            path: Result<RawPathParams, RawPathParamsRejection>,
            RawQuery(q): RawQuery,
        ) -> Result<Response, WireError> {
            let m = model::control();
            let input = input_from_query(m, $op, path, q.as_deref(), s.relax)?;
            let out = s.$svc.$method(typed(input)?).await?;
            Ok(respond_typed(m, $op, &out)?)
        }
    };
}

data_op_by_query!(list_datasets_by_query, "ListDatasets", datasets.list);
data_op_by_query!(
    list_dataset_versions_by_query,
    "ListDatasetVersions",
    datasets.list_versions
);
data_op_by_query!(
    list_examples_by_query,
    "ListDatasetExamples",
    datasets.list_examples
);
data_op!(start_batch, data, "StartBatchEvaluation", batches.start);
data_op!(get_batch, data, "GetBatchEvaluation", batches.get);
data_op!(list_batches, data, "ListBatchEvaluations", batches.list);
data_op!(stop_batch, data, "StopBatchEvaluation", batches.stop);
data_op!(delete_batch, data, "DeleteBatchEvaluation", batches.delete);

/// `GetDataset`: the download URL names the host the client reached.
async fn get_dataset(
    State(s): State<AppState>,
    headers: HeaderMap,
    path: Result<RawPathParams, RawPathParamsRejection>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, WireError> {
    let m = model::control();
    let input = validated(m, "GetDataset", path, q.as_deref(), &body, s.relax)?;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| ApiError::field("Host", "the request has no Host header"))?;
    let out = s
        .datasets
        .get(typed(input)?, &format!("http://{host}"))
        .await?;
    Ok(respond_typed(m, "GetDataset", &out)?)
}

/// `GET /berth/v1/dataset-downloads/{datasetId}?version&expires&signature`: a version's
/// examples as JSONL. Outside SigV4: the signature in the query is the credential.
async fn download(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, WireError> {
    let arg = |k: &str| q.get(k).map_or("", String::as_str);
    let d = s
        .datasets
        .verify_download(&id, arg("version"), arg("expires"), arg("signature"))?;
    let body = s.datasets.download(&d).await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/jsonl")],
        body,
    )
        .into_response())
}

/// The routes behind authentication.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/datasets",
            post(create_dataset).get(list_datasets_by_query),
        )
        .route("/datasets/list", post(list_datasets))
        .route(
            "/datasets/{datasetId}",
            get(get_dataset).put(update_dataset).delete(delete_dataset),
        )
        .route(
            "/datasets/{datasetId}/versions",
            post(create_dataset_version).get(list_dataset_versions_by_query),
        )
        .route(
            "/datasets/{datasetId}/versions/list",
            post(list_dataset_versions),
        )
        .route("/datasets/{datasetId}/examples/add", post(add_examples))
        .route(
            "/datasets/{datasetId}/examples/update",
            post(update_examples),
        )
        .route(
            "/datasets/{datasetId}/examples/delete",
            post(delete_examples),
        )
        .route("/datasets/{datasetId}/examples/list", post(list_examples))
        .route(
            "/datasets/{datasetId}/examples",
            get(list_examples_by_query),
        )
        .route(
            "/evaluations/batch-evaluate",
            post(start_batch).get(list_batches),
        )
        .route(
            "/evaluations/batch-evaluate/{batchEvaluationId}",
            get(get_batch).delete(delete_batch),
        )
        .route(
            "/evaluations/batch-evaluate/{batchEvaluationId}/stop",
            post(stop_batch),
        )
        // Dataset and batch writes are not in the control store's transactions: audited after
        // success.
        .route_layer(axum::middleware::from_fn(crate::authz::audit_writes))
}

/// The routes outside authentication: only the signed download.
pub fn unsigned_routes() -> Router<AppState> {
    Router::new().route("/berth/v1/dataset-downloads/{datasetId}", get(download))
}

/// Dataset runs invoke runtimes through the same invocation flow as `InvokeAgentRuntime`
/// (routing, quotas, the sandbox, Berth's spans), as the actor `berth-batch-evaluation`.
pub struct RuntimeCaller {
    invoker: berth_runtime::invoker::Invoker,
}

impl RuntimeCaller {
    /// A caller over `invoker`.
    pub fn new(invoker: berth_runtime::invoker::Invoker) -> Self {
        Self { invoker }
    }
}

/// The actor dataset runs invoke as (routing rules may match it).
pub const BATCH_ACTOR: &str = "berth-batch-evaluation";

#[async_trait::async_trait]
impl berth_eval::batch::AgentCaller for RuntimeCaller {
    async fn invoke(
        &self,
        runtime_id: &str,
        endpoint: &str,
        session_id: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, ApiError> {
        use futures::StreamExt;
        let headers = HeaderMap::new();
        let request_id = berth_types::new_request_id();
        let inv = berth_runtime::invoker::Invocation {
            runtime_id,
            qualifier: Some(endpoint),
            session_id,
            user_id: None,
            actor: Some(BATCH_ACTOR),
            request_id: &request_id,
            headers: &headers,
            action: berth_runtime::invoker::Action::Invoke(Bytes::from(payload)),
            forwarded: false,
        };
        let resp = self
            .invoker
            .invoke(inv)
            .await
            .map_err(crate::data_api::invoke_error)?;
        let (parts, mut stream) = resp.into_parts();
        let mut body = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => body.extend_from_slice(&c),
                Err(e) => {
                    return Err(ApiError::internal_because(format_args!(
                        "reading the agent's answer: {e}"
                    )));
                }
            }
        }
        if !parts.status.is_success() {
            return Err(ApiError::new(
                berth_api::ErrorKind::RuntimeClient,
                format!(
                    "Received error ({}) from runtime: {}",
                    parts.status.as_u16(),
                    String::from_utf8_lossy(&body)
                ),
            ));
        }
        Ok(body)
    }
}

/// Batch evaluations score sessions with the same engine as `Evaluate`: the evaluator resolved
/// by `berth_eval::resources`, scored by `berth_eval::evaluate` with the server's judge.
/// `codeBased` evaluators are refused per result here: their runner invokes a runtime as the
/// caller of an `Evaluate` request, and a batch runs after its request is answered.
pub struct EngineEvaluator {
    evals: crate::eval_api::Evals,
}

impl EngineEvaluator {
    /// Scores with `evals`' evaluators and judge.
    pub fn new(evals: crate::eval_api::Evals) -> Self {
        Self { evals }
    }
}

struct NoCode;

#[async_trait::async_trait]
impl berth_eval::evaluate::CodeRunner for NoCode {
    async fn run(
        &self,
        lambda: &berth_api::evaluation::LambdaEvaluatorConfig,
        _event: Value,
    ) -> Result<Value, String> {
        Err(format!(
            "code-based evaluator {} cannot run in a batch evaluation on this server; call              Evaluate for it",
            lambda.lambda_arn
        ))
    }
}

#[async_trait::async_trait]
impl berth_eval::batch::SessionEvaluator for EngineEvaluator {
    async fn evaluate(&self, evaluator_id: &str, input: Value) -> Result<Vec<Value>, ApiError> {
        let req: berth_api::evaluation::EvaluateInput = typed(input)?;
        let evaluator = self.evals.resources.resolve(evaluator_id).await?;
        let out =
            berth_eval::evaluate::evaluate(&evaluator, &req, &NoCode, &self.evals.judge).await?;
        let v = serde_json::to_value(out)
            .map_err(|e| ApiError::internal_because(format_args!("encoding results: {e}")))?;
        Ok(v.get("evaluationResults")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }
}
