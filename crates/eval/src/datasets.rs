//! Evaluation datasets (`bedrock-agentcore-control`): a DRAFT of example documents that is
//! edited in place, and immutable numbered versions published from it.
//!
//! Every write is one store transaction and is done when the 2xx is sent, so a dataset is
//! `ACTIVE` on the first `GetDataset` (the SDK's `*_and_wait` helpers poll for `ACTIVE`).
//! `GetDataset`'s `downloadUrl` is a URL of Berth's own (`/berth/v1/dataset-downloads/...`)
//! carrying an expiry and an HMAC-SHA256 of what it names: it needs no SigV4, as
//! `requests.get` in the SDK's `DatasetManagementServiceProvider` sends none, and it stops
//! working at `downloadUrlExpiresAt`.

use berth_api::ApiError;
use berth_api::evaluation_data::{
    AddDatasetExamples, AddDatasetExamplesOutput, CountFilter, CreateDataset, CreateDatasetOutput,
    CreateDatasetVersion, CreateDatasetVersionOutput, DataSourceType, DatasetRef, DatasetSummary,
    DatasetVersionSummary, DeleteDatasetExamples, DeleteDatasetExamplesOutput, DeleteDatasetOutput,
    ExampleCountByField, ExampleCountByFieldCondition, GetDatasetOutput, ListDatasetExamples,
    ListDatasetExamplesOutput, ListDatasetVersions, ListDatasetVersionsOutput, ListDatasets,
    ListDatasetsOutput, UpdateDataset, UpdateDatasetExamples, UpdateDatasetExamplesOutput,
    UpdateDatasetOutput,
};
use berth_store::eval_data::{
    DRAFT, DatasetRow, EvalDataStore, ExampleChange, ExampleCounts, TokenRow,
};
use berth_types::{EpochMillis, Partition, now_millis};
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The schema types of the model's `DatasetSchemaType`.
pub const PREDEFINED: &str = "AGENTCORE_EVALUATION_PREDEFINED_V1";
/// Simulated-actor scenarios.
pub const SIMULATED: &str = "AGENTCORE_EVALUATION_SIMULATED_V1";
/// Anything a third-party framework reads.
pub const THIRD_PARTY: &str = "THIRD_PARTY_EVALUATION_V1";

/// How long a `downloadUrl` works.
pub const DOWNLOAD_TTL_MS: i64 = 15 * 60 * 1000;
/// Most examples one `s3Source` object may hold (the inline limit of one request).
const MAX_S3_EXAMPLES: usize = 100_000;

/// The datasets service. Cheap to clone.
#[derive(Clone)]
pub struct Datasets {
    store: Arc<dyn EvalDataStore>,
    artifacts: berth_artifacts::ArtifactStore,
    partition: Partition,
    /// Signs download URLs; random per server start unless configured.
    secret: Arc<[u8]>,
}

/// What a download URL names, once its signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// The dataset.
    pub dataset_id: String,
    /// Its version (0: DRAFT).
    pub version: i64,
}

fn store_err(e: berth_store::Error) -> ApiError {
    match e {
        berth_store::Error::AlreadyExists("dataset name") => {
            ApiError::conflict("a dataset with this name already exists")
        }
        berth_store::Error::AlreadyExists("example id") => ApiError::field(
            "examples",
            "an example with this id already exists in the dataset's DRAFT",
        ),
        berth_store::Error::AlreadyExists("client token") => {
            ApiError::conflict("the client token was used concurrently; retry the request")
        }
        berth_store::Error::Precondition("example") => {
            ApiError::not_found("an example id does not exist in the dataset's DRAFT")
        }
        berth_store::Error::Precondition("dataset") => not_found_dataset(),
        other => ApiError::internal_because(other),
    }
}

fn not_found_dataset() -> ApiError {
    ApiError::not_found("the dataset does not exist")
}

/// `DRAFT` or a number, as the store numbers versions.
pub fn parse_version(v: Option<&str>) -> Result<i64, ApiError> {
    match v {
        None | Some("DRAFT") => Ok(DRAFT),
        Some(n) => {
            n.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                ApiError::field("datasetVersion", "must be DRAFT or a version number")
            })
        }
    }
}

fn version_name(v: i64) -> String {
    if v == DRAFT {
        "DRAFT".to_owned()
    } else {
        v.to_string()
    }
}

fn by_field(c: ExampleCounts) -> ExampleCountByField {
    ExampleCountByField {
        turns: c.turns,
        input: c.input,
        actor_profile: c.actor_profile,
    }
}

fn field_count(c: &ExampleCounts, field: &str) -> i64 {
    match field {
        "TURNS" => c.turns,
        "INPUT" => c.input,
        "ACTOR_PROFILE" => c.actor_profile,
        _ => 0,
    }
}

/// Whether counts satisfy a `ListDatasetsFilter`: each condition's count is that of the
/// largest field it names (examples may have several fields; Berth counts per field).
fn counts_match(c: &ExampleCounts, filter: Option<&CountFilter>) -> bool {
    let Some(conds) = filter.and_then(|f| f.example_count_by_field.as_ref()) else {
        return true;
    };
    conds.iter().all(|cond: &ExampleCountByFieldCondition| {
        let n = match &cond.any_of {
            Some(fields) => fields.iter().map(|f| field_count(c, f)).max().unwrap_or(0),
            None => c.total,
        };
        cond.min.is_none_or(|m| n >= m) && cond.max.is_none_or(|m| n <= m)
    })
}

/// The id of an example document: its `scenario_id` (the SDK's scenario key) or `exampleId`.
fn example_id(doc: &Value) -> Option<&str> {
    doc.get("scenario_id")
        .or_else(|| doc.get("exampleId"))
        .and_then(Value::as_str)
}

fn valid_example_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 256
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
}

/// Checks one example against the dataset's schema type; `at` names it in the error.
fn check_example(schema: Option<&str>, doc: &Value, at: &str) -> Result<(), ApiError> {
    let bad = |why: &str| ApiError::field(at.to_owned(), format!("{at}: {why}"));
    let obj = doc
        .as_object()
        .ok_or_else(|| bad("an example must be a JSON object"))?;
    if let Some(id) = example_id(doc)
        && !valid_example_id(id)
    {
        return Err(bad("its id must match [a-zA-Z0-9_.:-]{1,256}"));
    }
    match schema {
        Some(PREDEFINED) => {
            if example_id(doc).is_none() {
                return Err(bad("scenario_id (a string) is required"));
            }
            let turns = obj
                .get("turns")
                .and_then(Value::as_array)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| bad("turns must be a non-empty list"))?;
            for t in turns {
                match t.get("input") {
                    Some(Value::String(_) | Value::Object(_)) => {}
                    _ => return Err(bad("each turn needs an input (a string or an object)")),
                }
                if let Some(r) = t.get("expected_response")
                    && !r.is_string()
                    && !r.is_null()
                {
                    return Err(bad("a turn's expected_response must be a string"));
                }
            }
            if let Some(t) = obj.get("expected_trajectory")
                && !t.is_null()
                && !t.as_array().is_some_and(|a| a.iter().all(Value::is_string))
            {
                return Err(bad("expected_trajectory must be a list of tool names"));
            }
            if let Some(a) = obj.get("assertions")
                && !a.is_null()
                && !a.as_array().is_some_and(|a| a.iter().all(Value::is_string))
            {
                return Err(bad("assertions must be a list of strings"));
            }
        }
        Some(SIMULATED) => {
            if example_id(doc).is_none() {
                return Err(bad("scenario_id (a string) is required"));
            }
            let profile = obj
                .get("actor_profile")
                .and_then(Value::as_object)
                .ok_or_else(|| bad("actor_profile (an object) is required"))?;
            for k in ["context", "goal"] {
                if !profile.get(k).is_some_and(Value::is_string) {
                    return Err(bad(&format!("actor_profile.{k} (a string) is required")));
                }
            }
            if !obj.contains_key("input") {
                return Err(bad("input is required"));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Checks every example before any is written and gives each its id; ids repeated within the
/// batch are refused.
fn prepare(schema: Option<&str>, docs: Vec<Value>) -> Result<Vec<(String, Value)>, ApiError> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(docs.len());
    for (i, mut doc) in docs.into_iter().enumerate() {
        let at = format!("examples.{}", i + 1);
        check_example(schema, &doc, &at)?;
        let id = match example_id(&doc) {
            Some(id) => id.to_owned(),
            None => {
                // Third-party documents name no id of their own: Berth adds `exampleId` so an
                // update or delete can name the example.
                let id = format!("ex-{}", berth_types::random_alnum(16));
                if let Some(o) = doc.as_object_mut() {
                    o.insert("exampleId".into(), Value::String(id.clone()));
                }
                id
            }
        };
        if !seen.insert(id.clone()) {
            return Err(ApiError::field(
                at,
                format!("example id {id} appears twice in the request"),
            ));
        }
        out.push((id, doc));
    }
    Ok(out)
}

/// `s3://bucket/key` split.
fn split_s3_uri(uri: &str) -> Option<(&str, &str)> {
    uri.strip_prefix("s3://")?.split_once('/')
}

fn hash_request(req: &impl Serialize) -> Result<String, ApiError> {
    let mut v = serde_json::to_value(req)
        .map_err(|e| ApiError::internal_because(format_args!("encoding a request: {e}")))?;
    if let Some(o) = v.as_object_mut() {
        o.remove("clientToken");
    }
    Ok(hex::encode(Sha256::digest(v.to_string().as_bytes())))
}

/// A remembered answer to an idempotent request: `Ok(Some(out))` replays it, a token bound to
/// another request is refused.
async fn replay<T: DeserializeOwned>(
    store: &dyn EvalDataStore,
    token: Option<&str>,
    op: &str,
    hash: &str,
) -> Result<Option<T>, ApiError> {
    let Some(token) = token else { return Ok(None) };
    match store.eval_token(token, op).await.map_err(store_err)? {
        None => Ok(None),
        Some(t) if t.request_hash == hash => serde_json::from_value(t.response)
            .map(Some)
            .map_err(|e| ApiError::internal_because(format_args!("a stored response: {e}"))),
        Some(_) => Err(ApiError::idempotent_mismatch()),
    }
}

fn token_row(
    token: Option<&str>,
    op: &str,
    hash: String,
    out: &impl Serialize,
    now: EpochMillis,
) -> Result<Option<TokenRow>, ApiError> {
    let Some(token) = token else { return Ok(None) };
    Ok(Some(TokenRow {
        token: token.to_owned(),
        operation: op.to_owned(),
        request_hash: hash,
        response: serde_json::to_value(out)
            .map_err(|e| ApiError::internal_because(format_args!("encoding a response: {e}")))?,
        created_at: now,
    }))
}

/// Page tokens are the stringified position or id a page ended at.
fn page_size(max: Option<u32>, default: u32) -> u32 {
    max.unwrap_or(default).clamp(1, 1000)
}

impl Datasets {
    /// A datasets service over `store`, reading `s3Source` objects from `artifacts`, naming ARNs
    /// in `partition` and signing download URLs with `secret`.
    pub fn new(
        store: Arc<dyn EvalDataStore>,
        artifacts: berth_artifacts::ArtifactStore,
        partition: Partition,
        secret: Vec<u8>,
    ) -> Self {
        Self {
            store,
            artifacts,
            partition,
            secret: secret.into(),
        }
    }

    fn arn(&self, id: &str) -> String {
        format!(
            "arn:aws:bedrock-agentcore:{}:{}:dataset/{id}",
            self.partition.region, self.partition.account_id
        )
    }

    async fn row(&self, id: &str) -> Result<DatasetRow, ApiError> {
        self.store
            .dataset(id)
            .await
            .map_err(store_err)?
            .ok_or_else(not_found_dataset)
    }

    /// The version `v` of a dataset must exist (the DRAFT always does).
    async fn check_version(&self, row: &DatasetRow, v: i64) -> Result<(), ApiError> {
        if v == DRAFT {
            return Ok(());
        }
        let versions = self.store.versions(&row.id).await.map_err(store_err)?;
        if versions.iter().any(|x| x.version == v) {
            Ok(())
        } else {
            Err(ApiError::not_found(format!(
                "version {v} of dataset {} does not exist",
                row.id
            )))
        }
    }

    /// Reads the examples a `DataSourceType` names.
    async fn source_examples(&self, source: &DataSourceType) -> Result<Vec<Value>, ApiError> {
        match (&source.inline_examples, &source.s3_source) {
            (Some(inline), None) => Ok(inline.examples.clone()),
            (None, Some(s3)) => {
                let (bucket, key) = split_s3_uri(&s3.s3_uri)
                    .ok_or_else(|| ApiError::field("source.s3Source.s3Uri", "not an s3:// URI"))?;
                let bytes = self.artifacts.read_object(bucket, key).await.map_err(|e| {
                    ApiError::field(
                        "source.s3Source.s3Uri",
                        format!("cannot read {}: {e}", s3.s3_uri),
                    )
                })?;
                let text = std::str::from_utf8(&bytes).map_err(|_| {
                    ApiError::field("source.s3Source.s3Uri", "the object is not UTF-8 text")
                })?;
                let mut out = Vec::new();
                for (i, line) in text.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let doc: Value = serde_json::from_str(line).map_err(|e| {
                        ApiError::field(
                            "source.s3Source.s3Uri",
                            format!("line {} is not JSON: {e}", i + 1),
                        )
                    })?;
                    out.push(doc);
                    if out.len() > MAX_S3_EXAMPLES {
                        return Err(ApiError::field(
                            "source.s3Source.s3Uri",
                            format!("more than {MAX_S3_EXAMPLES} examples"),
                        ));
                    }
                }
                if out.is_empty() {
                    return Err(ApiError::field(
                        "source.s3Source.s3Uri",
                        "the object holds no examples",
                    ));
                }
                Ok(out)
            }
            _ => Err(ApiError::field(
                "source",
                "exactly one of inlineExamples and s3Source must be set",
            )),
        }
    }

    /// `CreateDataset`.
    pub async fn create(&self, req: CreateDataset) -> Result<CreateDatasetOutput, ApiError> {
        let hash = hash_request(&req)?;
        let token = req.client_token.as_deref();
        if let Some(out) = replay(&*self.store, token, "CreateDataset", &hash).await? {
            return Ok(out);
        }
        let schema = req.schema_type.as_deref();
        let docs = match &req.source {
            Some(s) => self.source_examples(s).await?,
            None => Vec::new(),
        };
        let examples = prepare(schema, docs)?;
        let now = now_millis();
        let id = format!("{}-{}", req.dataset_name, berth_types::random_alnum(10));
        let row = DatasetRow {
            id: id.clone(),
            name: req.dataset_name.clone(),
            arn: self.arn(&id),
            description: req.description.clone(),
            schema_type: req.schema_type.clone(),
            status: "ACTIVE".into(),
            failure_reason: None,
            kms_key_arn: req.kms_key_arn.clone(),
            tags: serde_json::to_value(req.tags.clone().unwrap_or_default())
                .unwrap_or_else(|_| Value::Object(Default::default())),
            draft_modified: !examples.is_empty(),
            latest_version: 0,
            created_at: now,
            updated_at: now,
        };
        let out = CreateDatasetOutput {
            dataset_arn: row.arn.clone(),
            dataset_id: id,
            status: row.status.clone(),
            created_at: now,
        };
        let t = token_row(token, "CreateDataset", hash, &out, now)?;
        self.store
            .insert_dataset(&row, &examples, t.as_ref())
            .await
            .map_err(store_err)?;
        Ok(out)
    }

    /// `GetDataset`; `base_url` is where this server was reached (`http://host:port`), for the
    /// download URL.
    pub async fn get(&self, req: DatasetRef, base_url: &str) -> Result<GetDatasetOutput, ApiError> {
        let row = self.row(&req.dataset_id).await?;
        let v = parse_version(req.dataset_version.as_deref())?;
        self.check_version(&row, v).await?;
        let counts = self
            .store
            .example_counts(&row.id, v)
            .await
            .map_err(store_err)?;
        let expires = now_millis() + DOWNLOAD_TTL_MS;
        let url = format!(
            "{}/berth/v1/dataset-downloads/{}?version={}&expires={expires}&signature={}",
            base_url.trim_end_matches('/'),
            row.id,
            version_name(v),
            self.sign(&row.id, v, expires)
        );
        let created_at = if v == DRAFT {
            row.created_at
        } else {
            self.store
                .versions(&row.id)
                .await
                .map_err(store_err)?
                .into_iter()
                .find(|x| x.version == v)
                .map_or(row.created_at, |x| x.created_at)
        };
        Ok(GetDatasetOutput {
            dataset_arn: row.arn.clone(),
            dataset_id: row.id.clone(),
            dataset_version: version_name(v),
            dataset_name: row.name.clone(),
            description: row.description.clone(),
            status: row.status.clone(),
            draft_status: Some(draft_status(&row)),
            failure_reason: row.failure_reason.clone(),
            schema_type: row.schema_type.clone(),
            kms_key_arn: row.kms_key_arn.clone(),
            example_count: counts.total,
            example_count_by_field: by_field(counts),
            download_url: Some(url),
            download_url_expires_at: Some(expires),
            created_at,
            updated_at: row.updated_at,
            tags: serde_json::from_value(row.tags.clone()).ok(),
        })
    }

    /// `UpdateDataset` (the description).
    pub async fn update(&self, req: UpdateDataset) -> Result<UpdateDatasetOutput, ApiError> {
        let hash = hash_request(&req)?;
        let token = req.client_token.as_deref();
        if let Some(out) = replay(&*self.store, token, "UpdateDataset", &hash).await? {
            return Ok(out);
        }
        let mut row = self.row(&req.dataset_id).await?;
        let now = now_millis();
        if req.description.is_some() {
            row.description = req.description.clone();
        }
        row.updated_at = now;
        let out = UpdateDatasetOutput {
            dataset_arn: row.arn.clone(),
            dataset_id: row.id.clone(),
            updated_at: now,
        };
        let t = token_row(token, "UpdateDataset", hash, &out, now)?;
        self.store
            .put_dataset(&row, t.as_ref())
            .await
            .map_err(store_err)?;
        Ok(out)
    }

    /// `DeleteDataset`: the whole dataset, or one numbered version.
    pub async fn delete(&self, req: DatasetRef) -> Result<DeleteDatasetOutput, ApiError> {
        let row = self.row(&req.dataset_id).await?;
        let now = now_millis();
        match req.dataset_version.as_deref() {
            None => {
                if !self
                    .store
                    .delete_dataset(&row.id)
                    .await
                    .map_err(store_err)?
                {
                    return Err(not_found_dataset());
                }
                Ok(DeleteDatasetOutput {
                    dataset_arn: row.arn,
                    dataset_id: row.id,
                    status: "DELETING".into(),
                    dataset_version: "DRAFT".into(),
                    updated_at: now,
                })
            }
            Some(v) => {
                let n = parse_version(Some(v))?;
                if n == DRAFT {
                    return Err(ApiError::field(
                        "datasetVersion",
                        "the DRAFT is deleted with the dataset (omit datasetVersion)",
                    ));
                }
                if !self
                    .store
                    .delete_version(&row.id, n)
                    .await
                    .map_err(store_err)?
                {
                    return Err(ApiError::not_found(format!(
                        "version {n} of dataset {} does not exist",
                        row.id
                    )));
                }
                Ok(DeleteDatasetOutput {
                    dataset_arn: row.arn,
                    dataset_id: row.id,
                    status: row.status,
                    dataset_version: n.to_string(),
                    updated_at: now,
                })
            }
        }
    }

    /// `ListDatasets`, in creation order.
    pub async fn list(&self, req: ListDatasets) -> Result<ListDatasetsOutput, ApiError> {
        let limit = page_size(req.max_results, 100).min(100);
        let mut after = req.next_token.clone();
        let mut out = Vec::new();
        // Filtering happens after the page is read: read on until the page is full.
        loop {
            let rows = self
                .store
                .datasets(after.as_deref(), limit)
                .await
                .map_err(store_err)?;
            let exhausted = rows.len() < limit as usize;
            for row in rows {
                after = Some(row.id.clone());
                let counts = self
                    .store
                    .example_counts(&row.id, DRAFT)
                    .await
                    .map_err(store_err)?;
                if !counts_match(&counts, req.filter.as_ref()) {
                    continue;
                }
                out.push(DatasetSummary {
                    dataset_arn: row.arn.clone(),
                    dataset_id: row.id.clone(),
                    dataset_name: row.name.clone(),
                    description: row.description.clone(),
                    status: row.status.clone(),
                    draft_status: Some(draft_status(&row)),
                    schema_type: row.schema_type.clone(),
                    example_count: counts.total,
                    example_count_by_field: by_field(counts),
                    created_at: row.created_at,
                    updated_at: row.updated_at,
                });
                if out.len() == limit as usize {
                    return Ok(ListDatasetsOutput {
                        datasets: out,
                        next_token: after,
                    });
                }
            }
            if exhausted {
                return Ok(ListDatasetsOutput {
                    datasets: out,
                    next_token: None,
                });
            }
        }
    }

    /// `CreateDatasetVersion`: publishes the DRAFT.
    pub async fn create_version(
        &self,
        req: CreateDatasetVersion,
    ) -> Result<CreateDatasetVersionOutput, ApiError> {
        let hash = hash_request(&req)?;
        let token = req.client_token.as_deref();
        if let Some(out) = replay(&*self.store, token, "CreateDatasetVersion", &hash).await? {
            return Ok(out);
        }
        let row = self.row(&req.dataset_id).await?;
        let now = now_millis();
        // The number is known only inside the transaction; the remembered response is written
        // with the expected one, which the transaction's own read confirms.
        let expected = row.latest_version + 1;
        let out = CreateDatasetVersionOutput {
            dataset_arn: row.arn.clone(),
            dataset_id: row.id.clone(),
            status: "ACTIVE".into(),
            dataset_version: expected.to_string(),
            created_at: now,
        };
        let t = token_row(token, "CreateDatasetVersion", hash, &out, now)?;
        let v = self
            .store
            .publish_version(&row.id, now, t.as_ref())
            .await
            .map_err(store_err)?;
        Ok(CreateDatasetVersionOutput {
            dataset_version: v.to_string(),
            ..out
        })
    }

    /// `ListDatasetVersions`: the DRAFT first, then newest first.
    pub async fn list_versions(
        &self,
        req: ListDatasetVersions,
    ) -> Result<ListDatasetVersionsOutput, ApiError> {
        let row = self.row(&req.dataset_id).await?;
        let limit = page_size(req.max_results, 100).min(100) as usize;
        let skip: usize = match req.next_token.as_deref() {
            None => 0,
            Some(t) => t
                .parse()
                .map_err(|_| ApiError::field("nextToken", "not a token this API returned"))?,
        };
        let mut all = vec![(DRAFT, row.updated_at)];
        all.extend(
            self.store
                .versions(&row.id)
                .await
                .map_err(store_err)?
                .into_iter()
                .map(|v| (v.version, v.created_at)),
        );
        let mut versions = Vec::new();
        for (v, created_at) in all.iter().skip(skip).take(limit) {
            let counts = self
                .store
                .example_counts(&row.id, *v)
                .await
                .map_err(store_err)?;
            if !counts_match(&counts, req.filter.as_ref()) {
                continue;
            }
            versions.push(DatasetVersionSummary {
                dataset_version: version_name(*v),
                example_count: counts.total,
                example_count_by_field: by_field(counts),
                created_at: *created_at,
            });
        }
        let next = skip + limit;
        Ok(ListDatasetVersionsOutput {
            versions,
            next_token: (next < all.len()).then(|| next.to_string()),
        })
    }

    /// `AddDatasetExamples`: all or nothing.
    pub async fn add_examples(
        &self,
        req: AddDatasetExamples,
    ) -> Result<AddDatasetExamplesOutput, ApiError> {
        let hash = hash_request(&req)?;
        let token = req.client_token.as_deref();
        if let Some(out) = replay(&*self.store, token, "AddDatasetExamples", &hash).await? {
            return Ok(out);
        }
        let row = self.row(&req.dataset_id).await?;
        let docs = self.source_examples(&req.source).await?;
        let examples = prepare(row.schema_type.as_deref(), docs)?;
        let now = now_millis();
        let out = AddDatasetExamplesOutput {
            dataset_arn: row.arn.clone(),
            dataset_id: row.id.clone(),
            status: row.status.clone(),
            added_count: examples.len() as i64,
            updated_at: now,
            example_ids: examples.iter().map(|(id, _)| id.clone()).collect(),
        };
        let t = token_row(token, "AddDatasetExamples", hash, &out, now)?;
        self.store
            .change_examples(&row.id, &ExampleChange::Add(examples), now, t.as_ref())
            .await
            .map_err(store_err)?;
        Ok(out)
    }

    /// `UpdateDatasetExamples`: each document names the example it replaces (`scenario_id` or
    /// `exampleId`); all or nothing.
    pub async fn update_examples(
        &self,
        req: UpdateDatasetExamples,
    ) -> Result<UpdateDatasetExamplesOutput, ApiError> {
        let hash = hash_request(&req)?;
        let token = req.client_token.as_deref();
        if let Some(out) = replay(&*self.store, token, "UpdateDatasetExamples", &hash).await? {
            return Ok(out);
        }
        let row = self.row(&req.dataset_id).await?;
        for (i, doc) in req.examples.iter().enumerate() {
            if example_id(doc).is_none() {
                return Err(ApiError::field(
                    format!("examples.{}", i + 1),
                    "an updated example must name its id (scenario_id or exampleId)",
                ));
            }
        }
        let examples = prepare(row.schema_type.as_deref(), req.examples.clone())?;
        let now = now_millis();
        let out = UpdateDatasetExamplesOutput {
            dataset_arn: row.arn.clone(),
            dataset_id: row.id.clone(),
            status: row.status.clone(),
            updated_count: examples.len() as i64,
            updated_at: now,
        };
        let t = token_row(token, "UpdateDatasetExamples", hash, &out, now)?;
        self.store
            .change_examples(&row.id, &ExampleChange::Update(examples), now, t.as_ref())
            .await
            .map_err(store_err)?;
        Ok(out)
    }

    /// `DeleteDatasetExamples`: all or nothing.
    pub async fn delete_examples(
        &self,
        req: DeleteDatasetExamples,
    ) -> Result<DeleteDatasetExamplesOutput, ApiError> {
        let hash = hash_request(&req)?;
        let token = req.client_token.as_deref();
        if let Some(out) = replay(&*self.store, token, "DeleteDatasetExamples", &hash).await? {
            return Ok(out);
        }
        let row = self.row(&req.dataset_id).await?;
        let now = now_millis();
        let out = DeleteDatasetExamplesOutput {
            dataset_arn: row.arn.clone(),
            dataset_id: row.id.clone(),
            status: row.status.clone(),
            deleted_count: req.example_ids.len() as i64,
            updated_at: now,
        };
        let t = token_row(token, "DeleteDatasetExamples", hash, &out, now)?;
        self.store
            .change_examples(
                &row.id,
                &ExampleChange::Delete(req.example_ids.clone()),
                now,
                t.as_ref(),
            )
            .await
            .map_err(store_err)?;
        Ok(out)
    }

    /// `ListDatasetExamples`; the page token pins the version (`<version>:<position>`).
    pub async fn list_examples(
        &self,
        req: ListDatasetExamples,
    ) -> Result<ListDatasetExamplesOutput, ApiError> {
        let row = self.row(&req.dataset_id).await?;
        let asked = req
            .dataset_version
            .as_deref()
            .map(|v| parse_version(Some(v)))
            .transpose()?;
        let (v, after) = match req.next_token.as_deref() {
            None => (asked.unwrap_or(DRAFT), 0),
            Some(t) => {
                let bad = || ApiError::field("nextToken", "not a token this API returned");
                let (v, p) = t.split_once(':').ok_or_else(bad)?;
                let v: i64 = v.parse().map_err(|_| bad())?;
                let p: i64 = p.parse().map_err(|_| bad())?;
                if asked.is_some_and(|a| a != v) {
                    return Err(ApiError::field(
                        "datasetVersion",
                        "the version differs from the one the pagination token is pinned to",
                    ));
                }
                (v, p)
            }
        };
        self.check_version(&row, v).await?;
        let limit = page_size(req.max_results, 100);
        let rows = self
            .store
            .examples(&row.id, v, after, limit)
            .await
            .map_err(store_err)?;
        let next_token = (rows.len() == limit as usize)
            .then(|| rows.last().map(|r| format!("{v}:{}", r.position)))
            .flatten();
        let filter = req.filter.unwrap_or_default();
        let examples = rows
            .into_iter()
            .map(|r| r.body)
            .filter(|doc| example_matches(doc, &filter))
            .collect();
        Ok(ListDatasetExamplesOutput {
            dataset_arn: row.arn,
            dataset_id: row.id,
            dataset_version: version_name(v),
            examples,
            next_token,
        })
    }

    /// Every example of a version, in order (dataset runs and downloads).
    pub async fn all_examples(&self, dataset_id: &str, v: i64) -> Result<Vec<Value>, ApiError> {
        let row = self.row(dataset_id).await?;
        self.check_version(&row, v).await?;
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = self
                .store
                .examples(&row.id, v, after, 1000)
                .await
                .map_err(store_err)?;
            let done = page.len() < 1000;
            if let Some(last) = page.last() {
                after = last.position;
            }
            out.extend(page.into_iter().map(|r| r.body));
            if done {
                return Ok(out);
            }
        }
    }

    fn sign(&self, id: &str, v: i64, expires: EpochMillis) -> String {
        // HMAC over the three things a URL names; keyed by a secret only the server holds.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .expect("HMAC takes a key of any length");
        mac.update(format!("{id}\n{v}\n{expires}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Checks a download URL's parameters: the signature over what it names, and its expiry.
    pub fn verify_download(
        &self,
        dataset_id: &str,
        version: &str,
        expires: &str,
        signature: &str,
    ) -> Result<Download, ApiError> {
        let denied = || {
            ApiError::custom(
                "AccessDeniedException",
                403,
                "the download URL is invalid or has expired",
            )
        };
        let v = parse_version(Some(version)).map_err(|_| denied())?;
        let expires: EpochMillis = expires.parse().map_err(|_| denied())?;
        let sig = hex::decode(signature).map_err(|_| denied())?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .expect("HMAC takes a key of any length");
        mac.update(format!("{dataset_id}\n{v}\n{expires}").as_bytes());
        mac.verify_slice(&sig).map_err(|_| denied())?;
        if now_millis() > expires {
            return Err(denied());
        }
        Ok(Download {
            dataset_id: dataset_id.to_owned(),
            version: v,
        })
    }

    /// The JSONL body of a download: one example per line.
    pub async fn download(&self, d: &Download) -> Result<String, ApiError> {
        let mut out = String::new();
        for doc in self.all_examples(&d.dataset_id, d.version).await? {
            out.push_str(&doc.to_string());
            out.push('\n');
        }
        Ok(out)
    }
}

fn draft_status(row: &DatasetRow) -> String {
    if row.draft_modified {
        "MODIFIED"
    } else {
        "UNMODIFIED"
    }
    .to_owned()
}

/// Whether an example has a field the filter's conditions name (each condition must hold).
fn example_matches(doc: &Value, filter: &berth_api::evaluation_data::ListExamplesFilter) -> bool {
    if filter.generation_ids.is_some() {
        // Berth generates no datasets, so no example came from a generation.
        return false;
    }
    let Some(conds) = &filter.example_fields else {
        return true;
    };
    conds.iter().all(|c| {
        c.any_of.as_ref().is_none_or(|fields| {
            fields.iter().any(|f| {
                let key = match f.as_str() {
                    "TURNS" => "turns",
                    "INPUT" => "input",
                    _ => "actor_profile",
                };
                doc.get(key).is_some()
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn predefined_examples_are_checked_before_anything_is_written() {
        let ok =
            json!({"scenario_id": "s1", "turns": [{"input": "hi", "expected_response": "hello"}]});
        let bad = json!({"scenario_id": "s2", "turns": []});
        assert!(prepare(Some(PREDEFINED), vec![ok.clone()]).is_ok());
        let e = prepare(Some(PREDEFINED), vec![ok.clone(), bad]).unwrap_err();
        assert_eq!(e.field_list[0].name, "examples.2");
        let e = prepare(Some(PREDEFINED), vec![ok.clone(), ok]).unwrap_err();
        assert!(e.message.contains("twice"), "{}", e.message);
    }

    #[test]
    fn third_party_examples_get_an_id() {
        let out = prepare(Some(THIRD_PARTY), vec![json!({"question": "q"})]).unwrap();
        assert_eq!(out[0].1["exampleId"], json!(out[0].0));
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version(None).unwrap(), DRAFT);
        assert_eq!(parse_version(Some("DRAFT")).unwrap(), DRAFT);
        assert_eq!(parse_version(Some("3")).unwrap(), 3);
        assert!(parse_version(Some("0")).is_err());
    }

    #[test]
    fn count_filters_hold_per_condition() {
        let c = ExampleCounts {
            total: 3,
            turns: 3,
            input: 0,
            actor_profile: 0,
        };
        let f: CountFilter = serde_json::from_value(
            json!({"exampleCountByField": [{"anyOf": ["TURNS"], "min": 2}]}),
        )
        .unwrap();
        assert!(counts_match(&c, Some(&f)));
        let f: CountFilter = serde_json::from_value(
            json!({"exampleCountByField": [{"anyOf": ["INPUT"], "min": 1}]}),
        )
        .unwrap();
        assert!(!counts_match(&c, Some(&f)));
    }
}
