//! The evaluations control plane: evaluators (custom ones stored, `Builtin.*` ones from the
//! [`catalogue`]) and online evaluation configs, with idempotency tokens.
//!
//! ```text
//! evaluator / online config:
//!   Create --> CREATING --settle--> ACTIVE --Update--> UPDATING --settle--> ACTIVE
//!   Delete --> DELETING --settle--> gone (Get answers ResourceNotFoundException)
//! ```
//!
//! Nothing needs provisioning, so `settle` runs as soon as the write is committed, on a task of
//! its own: the answer carries the transitional status the SDK's waiters expect, and the next Get
//! sees the settled one. A server stopped between the two settles the rows at start
//! ([`Resources::recover`]).
//!
//! Architecture Invariant: built-in evaluators are code, never rows; they are listed before the
//! stored ones and are `lockedForModification`.

use crate::catalogue;
use crate::evaluate::{Evaluator, Scoring};
use berth_api::evaluation::{
    BedrockEvaluatorModelConfig, EvaluatorConfig, EvaluatorLevel, EvaluatorModelConfig,
    LlmAsAJudgeEvaluatorConfig, NumericalScaleDefinition, RatingScale,
};
use berth_api::evaluation_resources::*;
use berth_api::{ApiError, ErrorKind};
use berth_store::eval::{EvalStore, EvaluatorRow, OnlineConfigRow, TokenRow};
use berth_types::{EpochMillis, Partition, now_millis, random_alnum};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::sync::Mutex;
use tokio_util::task::TaskTracker;
use tracing::{error, info};

/// Page size when a list request gives none.
const DEFAULT_PAGE: u32 = 100;

/// The evaluations control plane. Cheap to clone.
#[derive(Clone)]
pub struct Resources {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn EvalStore>,
    partition: Partition,
    /// The model built-in judges use, shown in their `evaluatorConfig`.
    default_model: Option<String>,
    /// Serialises writes: a name check, a token check and the write are one step.
    lock: Mutex<()>,
    /// Settling tasks, awaited at shutdown.
    tasks: TaskTracker,
}

/// What Berth keeps in [`EvaluatorRow::spec`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EvaluatorSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    evaluator_config: EvaluatorConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kms_key_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tags: Option<Tags>,
}

/// What Berth keeps in [`OnlineConfigRow::spec`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OnlineSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    rule: Rule,
    data_source_config: DataSourceConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    evaluators: Option<Vec<EvaluatorReference>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    insights: Option<Vec<Insight>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    clustering_config: Option<ClusteringConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_config: Option<OutputConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    evaluation_execution_role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tags: Option<Tags>,
}

fn internal(e: berth_store::Error) -> ApiError {
    ApiError::internal_because(format_args!("evaluations store: {e}"))
}

fn to_stored(what: &str, v: &impl Serialize) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::internal_because(format_args!("{what}: {e}")))
}

fn stored<T: DeserializeOwned>(what: &str, v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v)
        .map_err(|e| ApiError::internal_because(format_args!("stored {what}: {e}")))
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::field(field, message)
}

/// What identifies a request for idempotency: its members other than `clientToken`, hashed.
fn request_hash(input: &impl Serialize) -> Result<String, ApiError> {
    let mut v = to_stored("request", input)?;
    if let Some(o) = v.as_object_mut() {
        o.remove("clientToken");
    }
    Ok(hex::encode(Sha256::digest(v.to_string().as_bytes())))
}

/// A page position: built-ins by index, then stored rows by `(created_at, id)`.
#[derive(Debug, Clone, PartialEq)]
enum Cursor {
    Builtin(usize),
    Stored(EpochMillis, String),
}

impl Cursor {
    fn encode(&self) -> String {
        let s = match self {
            Self::Builtin(i) => format!("b\t{i}"),
            Self::Stored(t, id) => format!("s\t{t}\t{id}"),
        };
        hex::encode(s)
    }

    fn decode(token: &str) -> Result<Self, ApiError> {
        let bad = || invalid("nextToken", "nextToken is not a token this server issued");
        let raw = hex::decode(token).map_err(|_| bad())?;
        let s = String::from_utf8(raw).map_err(|_| bad())?;
        let parts: Vec<&str> = s.split('\t').collect();
        match parts.as_slice() {
            ["b", i] => Ok(Self::Builtin(i.parse().map_err(|_| bad())?)),
            ["s", t, id] => Ok(Self::Stored(
                t.parse().map_err(|_| bad())?,
                (*id).to_owned(),
            )),
            _ => Err(bad()),
        }
    }
}

fn stored_cursor(token: Option<&str>) -> Result<Option<(EpochMillis, String)>, ApiError> {
    match token.map(Cursor::decode).transpose()? {
        None => Ok(None),
        Some(Cursor::Stored(t, id)) => Ok(Some((t, id))),
        Some(Cursor::Builtin(_)) => Err(invalid(
            "nextToken",
            "nextToken is not a token this server issued",
        )),
    }
}

fn page_size(n: Option<u32>) -> u32 {
    n.map_or(DEFAULT_PAGE, |n| n.clamp(1, 100))
}

fn evaluator_type(config: &EvaluatorConfig) -> EvaluatorType {
    match config {
        EvaluatorConfig::LlmAsAJudge(_) => EvaluatorType::Custom,
        EvaluatorConfig::CodeBased(_) => EvaluatorType::CustomCode,
        EvaluatorConfig::Derived(_) => EvaluatorType::CustomDerived,
    }
}

fn status_of(s: &str) -> Result<EvaluatorStatus, ApiError> {
    stored("evaluator status", Value::String(s.to_owned()))
}

fn online_status_of(s: &str) -> Result<OnlineConfigStatus, ApiError> {
    stored(
        "online evaluation config status",
        Value::String(s.to_owned()),
    )
}

fn wire_str(v: &impl Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Rules of an evaluator configuration the model cannot express.
fn check_config(config: &EvaluatorConfig, field: &str) -> Result<(), ApiError> {
    let EvaluatorConfig::LlmAsAJudge(j) = config else {
        return Ok(());
    };
    if j.instructions.trim().is_empty() {
        return Err(invalid(
            &format!("{field}.llmAsAJudge.instructions"),
            "the judge's instructions must not be empty",
        ));
    }
    let labels: Vec<&str> = match &j.rating_scale {
        RatingScale::Numerical(n) => n.iter().map(|d| d.label.as_str()).collect(),
        RatingScale::Categorical(c) => c.iter().map(|d| d.label.as_str()).collect(),
        RatingScale::MultiDimensional(d) => d.iter().map(|d| d.dimension_name.as_str()).collect(),
    };
    if labels.is_empty() {
        return Err(invalid(
            &format!("{field}.llmAsAJudge.ratingScale"),
            "the rating scale must define at least one rating",
        ));
    }
    let mut sorted = labels.clone();
    sorted.sort_unstable();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        return Err(invalid(
            &format!("{field}.llmAsAJudge.ratingScale"),
            format!("the rating scale uses the label {:?} twice", w[0]),
        ));
    }
    Ok(())
}

/// The `evaluatorConfig` a built-in shows: its judge definition, or for a deterministic check a
/// judge-shaped description (the model requires the member; no model is called for it).
fn builtin_config(e: &Evaluator, default_model: Option<&str>) -> EvaluatorConfig {
    let model = EvaluatorModelConfig::Bedrock(BedrockEvaluatorModelConfig {
        model_id: default_model.unwrap_or("berth-default-judge").to_owned(),
        inference_config: None,
        additional_model_request_fields: None,
    });
    match &e.scoring {
        Scoring::Judge(spec) => EvaluatorConfig::LlmAsAJudge(LlmAsAJudgeEvaluatorConfig {
            instructions: spec.instructions.clone(),
            rating_scale: spec.rating_scale.clone(),
            model_config: spec.model.clone().unwrap_or(model),
        }),
        _ => EvaluatorConfig::LlmAsAJudge(LlmAsAJudgeEvaluatorConfig {
            instructions: e
                .description
                .clone()
                .unwrap_or_else(|| format!("{}: a deterministic check", e.id)),
            rating_scale: RatingScale::Numerical(vec![
                NumericalScaleDefinition {
                    definition: "The check fails.".into(),
                    value: 0.0,
                    label: "No".into(),
                },
                NumericalScaleDefinition {
                    definition: "The check passes.".into(),
                    value: 1.0,
                    label: "Yes".into(),
                },
            ]),
            model_config: EvaluatorModelConfig::Bedrock(BedrockEvaluatorModelConfig {
                model_id: "berth-deterministic".into(),
                inference_config: None,
                additional_model_request_fields: None,
            }),
        }),
    }
}

/// Hides the judge's instructions (`includedData=METADATA_ONLY`).
fn metadata_only(config: &mut EvaluatorConfig) {
    if let EvaluatorConfig::LlmAsAJudge(j) = config {
        j.instructions = String::new();
    }
}

impl Resources {
    /// The control plane over `store`; `default_model` is what built-in judges show.
    pub fn new(
        store: Arc<dyn EvalStore>,
        partition: Partition,
        default_model: Option<String>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                partition,
                default_model,
                lock: Mutex::new(()),
                tasks: TaskTracker::new(),
            }),
        }
    }

    /// Settles what a stopped server left transitional: CREATING and UPDATING rows become
    /// ACTIVE, DELETING rows go.
    pub async fn recover(&self) -> Result<(), ApiError> {
        let s = &self.inner.store;
        let mut n = 0;
        for status in ["CREATING", "UPDATING", "DELETING"] {
            for e in s.evaluators_in_status(status).await.map_err(internal)? {
                self.settle_evaluator(&e.id).await?;
                n += 1;
            }
            for c in s.online_configs_in_status(status).await.map_err(internal)? {
                self.settle_online_config(&c.id).await?;
                n += 1;
            }
        }
        if n > 0 {
            info!(resources = n, "evaluation resources settled at start");
        }
        Ok(())
    }

    /// Waits for the settling tasks in flight.
    pub async fn shutdown(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    fn evaluator_arn(&self, id: &str) -> String {
        let p = &self.inner.partition;
        format!(
            "arn:aws:bedrock-agentcore:{}:{}:evaluator/{id}",
            p.region, p.account_id
        )
    }

    fn online_config_arn(&self, id: &str) -> String {
        let p = &self.inner.partition;
        format!(
            "arn:aws:bedrock-agentcore:{}:{}:online-evaluation-config/{id}",
            p.region, p.account_id
        )
    }

    async fn replay<T: DeserializeOwned>(
        &self,
        op: &str,
        token: Option<&str>,
        hash: &str,
    ) -> Result<Option<T>, ApiError> {
        let Some(t) = token.filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        match self.inner.store.eval_token(op, t).await.map_err(internal)? {
            Some(r) if r.request_hash == hash => {
                Ok(Some(stored("idempotent response", r.response)?))
            }
            Some(_) => Err(ApiError::idempotent_mismatch()),
            None => Ok(None),
        }
    }

    fn remember(
        op: &str,
        token: Option<&str>,
        hash: String,
        response: &impl Serialize,
    ) -> Result<Option<TokenRow>, ApiError> {
        let Some(t) = token.filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        Ok(Some(TokenRow {
            operation: op.to_owned(),
            token: t.to_owned(),
            request_hash: hash,
            response: to_stored("response", response)?,
            created_at: now_millis(),
        }))
    }

    // -----------------------------------------------------------------------------------------
    // Evaluators

    /// A stored evaluator that is not being deleted.
    async fn evaluator_row(&self, id: &str) -> Result<EvaluatorRow, ApiError> {
        match self.inner.store.evaluator(id).await.map_err(internal)? {
            Some(e) if e.status != "DELETING" => Ok(e),
            _ => Err(ApiError::not_found(format!("evaluator {id} not found"))),
        }
    }

    /// The evaluator `id` names, resolved for `Evaluate`: a built-in, or a stored evaluator
    /// (a derived one with its base resolved).
    pub async fn resolve(&self, id: &str) -> Result<Evaluator, ApiError> {
        if let Some(b) = catalogue::builtin(id) {
            return Ok(b);
        }
        if id.starts_with("Builtin.") || id.starts_with("ThirdParty.") {
            return Err(ApiError::not_found(format!("evaluator {id} not found")));
        }
        let row = self.evaluator_row(id).await?;
        let spec: EvaluatorSpec = stored("evaluator spec", row.spec.clone())?;
        let level: EvaluatorLevel = stored("evaluator level", Value::String(row.level.clone()))?;
        let base = match &spec.evaluator_config {
            EvaluatorConfig::Derived(d) => {
                Some(Box::pin(self.resolve(&d.base_evaluator_id)).await?)
            }
            _ => None,
        };
        Evaluator::custom(
            &row.id,
            &self.evaluator_arn(&row.id),
            &row.name,
            level,
            &spec.evaluator_config,
            base.as_ref(),
        )
    }

    /// Checks a derived configuration's base exists (and can be derived from).
    async fn check_derived(&self, config: &EvaluatorConfig, field: &str) -> Result<(), ApiError> {
        let EvaluatorConfig::Derived(d) = config else {
            return Ok(());
        };
        let base = Box::pin(self.resolve(&d.base_evaluator_id))
            .await
            .map_err(|_| {
                invalid(
                    &format!("{field}.derived.baseEvaluatorId"),
                    format!("evaluator {} does not exist", d.base_evaluator_id),
                )
            })?;
        if !matches!(base.scoring, Scoring::Judge(_)) {
            return Err(invalid(
                &format!("{field}.derived.baseEvaluatorId"),
                format!(
                    "evaluator {} is not an LLM judge, so it has no model to replace",
                    d.base_evaluator_id
                ),
            ));
        }
        Ok(())
    }

    /// `CreateEvaluator`.
    pub async fn create_evaluator(
        &self,
        input: CreateEvaluatorRequest,
    ) -> Result<CreateEvaluatorResponse, ApiError> {
        check_config(&input.evaluator_config, "evaluatorConfig")?;
        self.check_derived(&input.evaluator_config, "evaluatorConfig")
            .await?;
        let _g = self.inner.lock.lock().await;
        let token = input.client_token.as_deref();
        let hash = request_hash(&input)?;
        if let Some(r) = self.replay("CreateEvaluator", token, &hash).await? {
            return Ok(r);
        }
        let now = now_millis();
        let row = EvaluatorRow {
            id: format!("{}-{}", input.evaluator_name, random_alnum(10)),
            name: input.evaluator_name.clone(),
            level: input.level.as_str().to_owned(),
            status: "CREATING".into(),
            spec: to_stored(
                "evaluator spec",
                &EvaluatorSpec {
                    description: input.description,
                    evaluator_config: input.evaluator_config,
                    kms_key_arn: input.kms_key_arn,
                    tags: input.tags,
                },
            )?,
            created_at: now,
            updated_at: now,
        };
        let response = CreateEvaluatorResponse {
            evaluator_arn: self.evaluator_arn(&row.id),
            evaluator_id: row.id.clone(),
            created_at: now,
            status: EvaluatorStatus::Creating,
        };
        let tok = Self::remember("CreateEvaluator", token, hash, &response)?;
        match self.inner.store.insert_evaluator(&row, tok.as_ref()).await {
            Ok(()) => {}
            Err(berth_store::Error::AlreadyExists("evaluator name")) => {
                return Err(ApiError::conflict(format!(
                    "an evaluator named {} already exists",
                    row.name
                )));
            }
            Err(e) => return Err(internal(e)),
        }
        info!(evaluator_id = %row.id, "evaluator created");
        self.spawn_settle_evaluator(row.id);
        Ok(response)
    }

    /// `GetEvaluator`: a stored evaluator or a built-in.
    pub async fn get_evaluator(
        &self,
        input: GetEvaluatorRequest,
    ) -> Result<GetEvaluatorResponse, ApiError> {
        let id = &input.evaluator_id;
        let mut out = if let Some(b) = catalogue::builtin(id) {
            GetEvaluatorResponse {
                evaluator_arn: b.arn.clone(),
                evaluator_id: b.id.clone(),
                evaluator_name: b.name.clone(),
                description: b.description.clone(),
                evaluator_config: builtin_config(&b, self.inner.default_model.as_deref()),
                evaluator_type: Some(EvaluatorType::Builtin),
                provider: Some(Provider::Aws),
                level: b.level,
                status: EvaluatorStatus::Active,
                created_at: 0,
                updated_at: 0,
                locked_for_modification: Some(true),
                kms_key_arn: None,
            }
        } else {
            let row = self.evaluator_row(id).await?;
            let spec: EvaluatorSpec = stored("evaluator spec", row.spec)?;
            GetEvaluatorResponse {
                evaluator_arn: self.evaluator_arn(&row.id),
                evaluator_type: Some(evaluator_type(&spec.evaluator_config)),
                evaluator_id: row.id,
                evaluator_name: row.name,
                description: spec.description,
                evaluator_config: spec.evaluator_config,
                provider: Some(Provider::Custom),
                level: stored("evaluator level", Value::String(row.level))?,
                status: status_of(&row.status)?,
                created_at: row.created_at,
                updated_at: row.updated_at,
                locked_for_modification: Some(false),
                kms_key_arn: spec.kms_key_arn,
            }
        };
        if input.included_data.as_deref() == Some("METADATA_ONLY") {
            metadata_only(&mut out.evaluator_config);
        }
        Ok(out)
    }

    /// `ListEvaluators`: the built-ins first, then stored evaluators oldest first.
    pub async fn list_evaluators(
        &self,
        input: ListEvaluatorsRequest,
    ) -> Result<ListEvaluatorsResponse, ApiError> {
        let limit = page_size(input.max_results) as usize;
        let cursor = input
            .next_token
            .as_deref()
            .map(Cursor::decode)
            .transpose()?;
        let mut evaluators = Vec::new();
        let builtins = catalogue::all();
        let mut after = None;
        match cursor {
            None => evaluators.extend(builtins.iter().map(|b| self.builtin_summary(b))),
            Some(Cursor::Builtin(i)) => {
                evaluators.extend(builtins.iter().skip(i).map(|b| self.builtin_summary(b)))
            }
            Some(Cursor::Stored(t, id)) => after = Some((t, id)),
        }
        let skipped = match &input.next_token {
            Some(_) if after.is_none() => builtins.len() - evaluators.len(),
            Some(_) => builtins.len(),
            None => 0,
        };
        if evaluators.len() > limit {
            evaluators.truncate(limit);
            return Ok(ListEvaluatorsResponse {
                evaluators,
                next_token: Some(Cursor::Builtin(skipped + limit).encode()),
            });
        }
        let want = (limit - evaluators.len()) as u32;
        let mut rows = if want == 0 {
            Vec::new()
        } else {
            self.inner
                .store
                .list_evaluators(after.clone(), want + 1)
                .await
                .map_err(internal)?
        };
        let mut next_token = None;
        if want == 0 {
            // The page is exactly the rest of the built-ins: go on from the first stored one.
            let any = self
                .inner
                .store
                .list_evaluators(after, 1)
                .await
                .map_err(internal)?;
            if !any.is_empty() {
                next_token = Some(Cursor::Stored(i64::MIN, String::new()).encode());
            }
        } else if rows.len() > want as usize {
            rows.truncate(want as usize);
            next_token = rows
                .last()
                .map(|r| Cursor::Stored(r.created_at, r.id.clone()).encode());
        }
        for r in rows.into_iter().filter(|r| r.status != "DELETING") {
            let spec: EvaluatorSpec = stored("evaluator spec", r.spec)?;
            evaluators.push(EvaluatorSummary {
                evaluator_arn: self.evaluator_arn(&r.id),
                evaluator_id: r.id,
                evaluator_name: r.name,
                description: spec.description,
                evaluator_type: evaluator_type(&spec.evaluator_config),
                provider: Some(Provider::Custom),
                level: Some(stored("evaluator level", Value::String(r.level))?),
                status: status_of(&r.status)?,
                created_at: r.created_at,
                updated_at: r.updated_at,
                locked_for_modification: Some(false),
                kms_key_arn: spec.kms_key_arn,
            });
        }
        Ok(ListEvaluatorsResponse {
            evaluators,
            next_token,
        })
    }

    fn builtin_summary(&self, b: &Evaluator) -> EvaluatorSummary {
        EvaluatorSummary {
            evaluator_arn: b.arn.clone(),
            evaluator_id: b.id.clone(),
            evaluator_name: b.name.clone(),
            description: b.description.clone(),
            evaluator_type: EvaluatorType::Builtin,
            provider: Some(Provider::Aws),
            level: Some(b.level),
            status: EvaluatorStatus::Active,
            created_at: 0,
            updated_at: 0,
            locked_for_modification: Some(true),
            kms_key_arn: None,
        }
    }

    fn refuse_builtin(id: &str) -> Result<(), ApiError> {
        if id.starts_with("Builtin.") || id.starts_with("ThirdParty.") {
            return Err(ApiError::new(
                ErrorKind::AccessDenied,
                format!("evaluator {id} is built in and locked for modification"),
            ));
        }
        Ok(())
    }

    /// `UpdateEvaluator`.
    pub async fn update_evaluator(
        &self,
        input: UpdateEvaluatorRequest,
    ) -> Result<UpdateEvaluatorResponse, ApiError> {
        Self::refuse_builtin(&input.evaluator_id)?;
        if let Some(c) = &input.evaluator_config {
            check_config(c, "evaluatorConfig")?;
            self.check_derived(c, "evaluatorConfig").await?;
        }
        let _g = self.inner.lock.lock().await;
        let token = input.client_token.as_deref();
        let hash = request_hash(&input)?;
        if let Some(r) = self.replay("UpdateEvaluator", token, &hash).await? {
            return Ok(r);
        }
        let mut row = self.evaluator_row(&input.evaluator_id).await?;
        let mut spec: EvaluatorSpec = stored("evaluator spec", row.spec.clone())?;
        if let Some(d) = input.description {
            spec.description = Some(d);
        }
        if let Some(c) = input.evaluator_config {
            spec.evaluator_config = c;
        }
        if let Some(k) = input.kms_key_arn {
            spec.kms_key_arn = Some(k);
        }
        if let Some(l) = input.level {
            row.level = l.as_str().to_owned();
        }
        let now = now_millis();
        row.spec = to_stored("evaluator spec", &spec)?;
        row.status = "UPDATING".into();
        row.updated_at = now;
        let response = UpdateEvaluatorResponse {
            evaluator_arn: self.evaluator_arn(&row.id),
            evaluator_id: row.id.clone(),
            updated_at: now,
            status: EvaluatorStatus::Updating,
        };
        let tok = Self::remember("UpdateEvaluator", token, hash, &response)?;
        self.inner
            .store
            .put_evaluator(&row, tok.as_ref())
            .await
            .map_err(internal)?;
        self.spawn_settle_evaluator(row.id);
        Ok(response)
    }

    /// `DeleteEvaluator`: refused while an online evaluation config uses the evaluator.
    pub async fn delete_evaluator(
        &self,
        input: DeleteEvaluatorRequest,
    ) -> Result<DeleteEvaluatorResponse, ApiError> {
        let id = &input.evaluator_id;
        Self::refuse_builtin(id)?;
        let _g = self.inner.lock.lock().await;
        let mut row = self.evaluator_row(id).await?;
        for c in self
            .inner
            .store
            .list_online_configs()
            .await
            .map_err(internal)?
        {
            let spec: OnlineSpec = stored("online evaluation config spec", c.spec)?;
            if spec.evaluators.iter().flatten().any(|e| e.id() == id) {
                return Err(ApiError::conflict(format!(
                    "evaluator {id} is used by online evaluation config {}",
                    c.id
                )));
            }
        }
        row.status = "DELETING".into();
        row.updated_at = now_millis();
        self.inner
            .store
            .put_evaluator(&row, None)
            .await
            .map_err(internal)?;
        self.spawn_settle_evaluator(row.id.clone());
        Ok(DeleteEvaluatorResponse {
            evaluator_arn: self.evaluator_arn(&row.id),
            evaluator_id: row.id,
            status: EvaluatorStatus::Deleting,
        })
    }

    fn spawn_settle_evaluator(&self, id: String) {
        let this = self.clone();
        self.inner.tasks.spawn(async move {
            if let Err(e) = this.settle_evaluator(&id).await {
                error!(evaluator_id = %id, error = %e.detail(), "settling the evaluator failed");
            }
        });
    }

    async fn settle_evaluator(&self, id: &str) -> Result<(), ApiError> {
        let _g = self.inner.lock.lock().await;
        let s = &self.inner.store;
        let Some(mut row) = s.evaluator(id).await.map_err(internal)? else {
            return Ok(());
        };
        match row.status.as_str() {
            "DELETING" => {
                s.delete_evaluator(id).await.map_err(internal)?;
                info!(evaluator_id = %id, "evaluator deleted");
            }
            "CREATING" | "UPDATING" => {
                row.status = "ACTIVE".into();
                s.put_evaluator(&row, None).await.map_err(internal)?;
            }
            _ => {}
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Online evaluation configs

    /// Rules of a config the model cannot express: evaluators exist, filters compare values of
    /// the operator's kind.
    async fn check_online(
        &self,
        rule: Option<&Rule>,
        evaluators: Option<&[EvaluatorReference]>,
    ) -> Result<(), ApiError> {
        if let Some(rule) = rule {
            let p = rule.sampling_config.sampling_percentage;
            if !(0.01..=100.0).contains(&p) {
                return Err(invalid(
                    "rule.samplingConfig.samplingPercentage",
                    "samplingPercentage must be between 0.01 and 100",
                ));
            }
            for (i, f) in rule.filters.iter().flatten().enumerate() {
                let field = format!("rule.filters.{}.value", i + 1);
                let ordered = matches!(
                    f.operator,
                    FilterOperator::GreaterThan
                        | FilterOperator::LessThan
                        | FilterOperator::GreaterThanOrEqual
                        | FilterOperator::LessThanOrEqual
                );
                let textual = matches!(
                    f.operator,
                    FilterOperator::Contains | FilterOperator::NotContains
                );
                if ordered && !matches!(f.value, FilterValue::Double(_)) {
                    return Err(invalid(
                        &field,
                        format!(
                            "{} compares numbers: give a doubleValue",
                            wire_str(&f.operator)
                        ),
                    ));
                }
                if textual && !matches!(f.value, FilterValue::String(_)) {
                    return Err(invalid(
                        &field,
                        format!(
                            "{} compares text: give a stringValue",
                            wire_str(&f.operator)
                        ),
                    ));
                }
            }
        }
        for (i, e) in evaluators.unwrap_or_default().iter().enumerate() {
            if self.resolve(e.id()).await.is_err() {
                return Err(invalid(
                    &format!("evaluators.{}.evaluatorId", i + 1),
                    format!("evaluator {} does not exist", e.id()),
                ));
            }
        }
        Ok(())
    }

    fn online_config_of(&self, row: OnlineConfigRow) -> Result<OnlineConfig, ApiError> {
        let spec: OnlineSpec = stored("online evaluation config spec", row.spec)?;
        Ok(OnlineConfig {
            online_evaluation_config_arn: self.online_config_arn(&row.id),
            online_evaluation_config_id: row.id,
            online_evaluation_config_name: row.name,
            description: spec.description,
            rule: spec.rule,
            data_source_config: spec.data_source_config,
            evaluators: spec.evaluators,
            insights: spec.insights,
            clustering_config: spec.clustering_config,
            output_config: spec.output_config,
            evaluation_execution_role_arn: spec.evaluation_execution_role_arn,
            status: online_status_of(&row.status)?,
            execution_status: stored("execution status", Value::String(row.execution_status))?,
            created_at: row.created_at,
            updated_at: row.updated_at,
            failure_reason: row.failure_reason,
        })
    }

    async fn online_row(&self, id: &str) -> Result<OnlineConfigRow, ApiError> {
        match self.inner.store.online_config(id).await.map_err(internal)? {
            Some(c) if c.status != "DELETING" => Ok(c),
            _ => Err(ApiError::not_found(format!(
                "online evaluation config {id} not found"
            ))),
        }
    }

    /// Every online evaluation config that is not being deleted, typed, oldest first: what the
    /// online evaluation loop samples by (its `rule`, `dataSourceConfig`, `evaluators` and
    /// `executionStatus`).
    pub async fn list_online_configs(&self) -> Result<Vec<OnlineConfig>, ApiError> {
        self.inner
            .store
            .list_online_configs()
            .await
            .map_err(internal)?
            .into_iter()
            .filter(|c| c.status != "DELETING")
            .map(|c| self.online_config_of(c))
            .collect()
    }

    /// `CreateOnlineEvaluationConfig`.
    pub async fn create_online_config(
        &self,
        input: CreateOnlineConfigRequest,
    ) -> Result<CreateOnlineConfigResponse, ApiError> {
        if input.evaluators.as_ref().is_none_or(Vec::is_empty)
            && input.insights.as_ref().is_none_or(Vec::is_empty)
        {
            return Err(invalid(
                "evaluators",
                "an online evaluation config needs at least one evaluator or insight",
            ));
        }
        self.check_online(Some(&input.rule), input.evaluators.as_deref())
            .await?;
        let _g = self.inner.lock.lock().await;
        let token = input.client_token.as_deref();
        let hash = request_hash(&input)?;
        if let Some(r) = self
            .replay("CreateOnlineEvaluationConfig", token, &hash)
            .await?
        {
            return Ok(r);
        }
        let now = now_millis();
        let execution = if input.enable_on_create {
            ExecutionStatus::Enabled
        } else {
            ExecutionStatus::Disabled
        };
        let row = OnlineConfigRow {
            id: format!(
                "{}-{}",
                input.online_evaluation_config_name,
                random_alnum(10)
            ),
            name: input.online_evaluation_config_name.clone(),
            status: "CREATING".into(),
            execution_status: wire_str(&execution),
            failure_reason: None,
            spec: to_stored(
                "online evaluation config spec",
                &OnlineSpec {
                    description: input.description,
                    rule: input.rule,
                    data_source_config: input.data_source_config,
                    evaluators: input.evaluators,
                    insights: input.insights,
                    clustering_config: input.clustering_config,
                    output_config: input.output_config.clone(),
                    evaluation_execution_role_arn: Some(input.evaluation_execution_role_arn),
                    tags: input.tags,
                },
            )?,
            created_at: now,
            updated_at: now,
        };
        let response = CreateOnlineConfigResponse {
            online_evaluation_config_arn: self.online_config_arn(&row.id),
            online_evaluation_config_id: row.id.clone(),
            created_at: now,
            output_config: input.output_config,
            status: OnlineConfigStatus::Creating,
            execution_status: execution,
            failure_reason: None,
        };
        let tok = Self::remember("CreateOnlineEvaluationConfig", token, hash, &response)?;
        match self
            .inner
            .store
            .insert_online_config(&row, tok.as_ref())
            .await
        {
            Ok(()) => {}
            Err(berth_store::Error::AlreadyExists("online evaluation config name")) => {
                return Err(ApiError::conflict(format!(
                    "an online evaluation config named {} already exists",
                    row.name
                )));
            }
            Err(e) => return Err(internal(e)),
        }
        info!(online_evaluation_config_id = %row.id, "online evaluation config created");
        self.spawn_settle_online_config(row.id);
        Ok(response)
    }

    /// `GetOnlineEvaluationConfig`.
    pub async fn get_online_config(
        &self,
        input: OnlineConfigIdRequest,
    ) -> Result<OnlineConfig, ApiError> {
        let row = self.online_row(&input.online_evaluation_config_id).await?;
        self.online_config_of(row)
    }

    /// `ListOnlineEvaluationConfigs`, oldest first.
    pub async fn list_online_configs_page(
        &self,
        input: ListOnlineConfigsRequest,
    ) -> Result<ListOnlineConfigsResponse, ApiError> {
        let limit = page_size(input.max_results);
        let after = stored_cursor(input.next_token.as_deref())?;
        let mut rows = self
            .inner
            .store
            .page_online_configs(after, limit + 1)
            .await
            .map_err(internal)?;
        let mut next_token = None;
        if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            next_token = rows
                .last()
                .map(|r| Cursor::Stored(r.created_at, r.id.clone()).encode());
        }
        let online_evaluation_configs = rows
            .into_iter()
            .filter(|r| r.status != "DELETING")
            .map(|r| {
                let c = self.online_config_of(r)?;
                Ok(OnlineConfigSummary {
                    online_evaluation_config_arn: c.online_evaluation_config_arn,
                    online_evaluation_config_id: c.online_evaluation_config_id,
                    online_evaluation_config_name: c.online_evaluation_config_name,
                    description: c.description,
                    status: c.status,
                    execution_status: c.execution_status,
                    created_at: c.created_at,
                    updated_at: c.updated_at,
                    failure_reason: c.failure_reason,
                    insights: c.insights,
                    clustering_config: c.clustering_config,
                })
            })
            .collect::<Result<_, ApiError>>()?;
        Ok(ListOnlineConfigsResponse {
            online_evaluation_configs,
            next_token,
        })
    }

    /// `UpdateOnlineEvaluationConfig`; `executionStatus` enables or disables it.
    pub async fn update_online_config(
        &self,
        input: UpdateOnlineConfigRequest,
    ) -> Result<UpdateOnlineConfigResponse, ApiError> {
        self.check_online(input.rule.as_ref(), input.evaluators.as_deref())
            .await?;
        let _g = self.inner.lock.lock().await;
        let token = input.client_token.as_deref();
        let hash = request_hash(&input)?;
        if let Some(r) = self
            .replay("UpdateOnlineEvaluationConfig", token, &hash)
            .await?
        {
            return Ok(r);
        }
        let mut row = self.online_row(&input.online_evaluation_config_id).await?;
        let mut spec: OnlineSpec = stored("online evaluation config spec", row.spec.clone())?;
        if let Some(d) = input.description {
            spec.description = Some(d);
        }
        if let Some(r) = input.rule {
            spec.rule = r;
        }
        if let Some(d) = input.data_source_config {
            spec.data_source_config = d;
        }
        if let Some(e) = input.evaluators {
            spec.evaluators = Some(e);
        }
        if let Some(i) = input.insights {
            spec.insights = Some(i);
        }
        if let Some(c) = input.clustering_config {
            spec.clustering_config = Some(c);
        }
        if let Some(o) = input.output_config {
            spec.output_config = Some(o);
        }
        if let Some(r) = input.evaluation_execution_role_arn {
            spec.evaluation_execution_role_arn = Some(r);
        }
        if spec.evaluators.as_ref().is_none_or(Vec::is_empty)
            && spec.insights.as_ref().is_none_or(Vec::is_empty)
        {
            return Err(invalid(
                "evaluators",
                "an online evaluation config needs at least one evaluator or insight",
            ));
        }
        if let Some(x) = input.execution_status {
            row.execution_status = wire_str(&x);
        }
        let now = now_millis();
        row.spec = to_stored("online evaluation config spec", &spec)?;
        row.status = "UPDATING".into();
        row.updated_at = now;
        let response = UpdateOnlineConfigResponse {
            online_evaluation_config_arn: self.online_config_arn(&row.id),
            online_evaluation_config_id: row.id.clone(),
            updated_at: now,
            status: OnlineConfigStatus::Updating,
            execution_status: stored(
                "execution status",
                Value::String(row.execution_status.clone()),
            )?,
            failure_reason: row.failure_reason.clone(),
        };
        let tok = Self::remember("UpdateOnlineEvaluationConfig", token, hash, &response)?;
        self.inner
            .store
            .put_online_config(&row, tok.as_ref())
            .await
            .map_err(internal)?;
        self.spawn_settle_online_config(row.id);
        Ok(response)
    }

    /// `DeleteOnlineEvaluationConfig`.
    pub async fn delete_online_config(
        &self,
        input: OnlineConfigIdRequest,
    ) -> Result<DeleteOnlineConfigResponse, ApiError> {
        let _g = self.inner.lock.lock().await;
        let mut row = self.online_row(&input.online_evaluation_config_id).await?;
        row.status = "DELETING".into();
        row.updated_at = now_millis();
        self.inner
            .store
            .put_online_config(&row, None)
            .await
            .map_err(internal)?;
        self.spawn_settle_online_config(row.id.clone());
        Ok(DeleteOnlineConfigResponse {
            online_evaluation_config_arn: self.online_config_arn(&row.id),
            online_evaluation_config_id: row.id,
            status: OnlineConfigStatus::Deleting,
        })
    }

    fn spawn_settle_online_config(&self, id: String) {
        let this = self.clone();
        self.inner.tasks.spawn(async move {
            if let Err(e) = this.settle_online_config(&id).await {
                error!(online_evaluation_config_id = %id, error = %e.detail(),
                       "settling the online evaluation config failed");
            }
        });
    }

    async fn settle_online_config(&self, id: &str) -> Result<(), ApiError> {
        let _g = self.inner.lock.lock().await;
        let s = &self.inner.store;
        let Some(mut row) = s.online_config(id).await.map_err(internal)? else {
            return Ok(());
        };
        match row.status.as_str() {
            "DELETING" => {
                s.delete_online_config(id).await.map_err(internal)?;
                info!(online_evaluation_config_id = %id, "online evaluation config deleted");
            }
            "CREATING" | "UPDATING" => {
                row.status = "ACTIVE".into();
                s.put_online_config(&row, None).await.map_err(internal)?;
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_foreign_tokens() {
        for c in [
            Cursor::Builtin(3),
            Cursor::Stored(17, "a-0123456789".into()),
        ] {
            assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        }
        assert!(Cursor::decode("zz").is_err());
        assert!(Cursor::decode(&hex::encode("x\t1")).is_err());
        assert!(stored_cursor(Some(&Cursor::Builtin(1).encode())).is_err());
    }
}
