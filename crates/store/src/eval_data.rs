//! Storage of AgentCore Evaluations' datasets (a DRAFT and numbered versions of example
//! documents) and batch evaluations. The domain (`berth-eval`) owns every rule; this module only
//! stores and queries rows. The SQL is in each backend's module (`sqlite/eval_data.rs`).
//!
//! Architecture Invariant: a write of examples (add, update, delete, publish) is one transaction:
//! AddDatasetExamples is all-or-nothing, and a published version is exactly the DRAFT it copied.

use crate::Error;
use async_trait::async_trait;
use berth_types::EpochMillis;
use serde_json::Value;

/// The DRAFT's version number in the store.
pub const DRAFT: i64 = 0;

/// A dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetRow {
    /// `<name>-<10 alphanumerics>`.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// The dataset's ARN.
    pub arn: String,
    /// Free text.
    pub description: Option<String>,
    /// The examples' schema type.
    pub schema_type: Option<String>,
    /// `DatasetStatus`.
    pub status: String,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// Echoed.
    pub kms_key_arn: Option<String>,
    /// Tags, a JSON object of strings.
    pub tags: Value,
    /// Whether the DRAFT changed since the last publish.
    pub draft_modified: bool,
    /// The highest version number published (0: none).
    pub latest_version: i64,
    /// Creation time.
    pub created_at: EpochMillis,
    /// Last change.
    pub updated_at: EpochMillis,
}

/// One example of one version.
#[derive(Debug, Clone, PartialEq)]
pub struct ExampleRow {
    /// Unique within the version.
    pub example_id: String,
    /// Insertion order within the version.
    pub position: i64,
    /// The document as stored.
    pub body: Value,
}

/// How many examples a version has, in all and per field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExampleCounts {
    /// All examples.
    pub total: i64,
    /// With a `turns` member.
    pub turns: i64,
    /// With an `input` member.
    pub input: i64,
    /// With an `actor_profile` member.
    pub actor_profile: i64,
}

/// A published version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRow {
    /// Its number (1, 2, ...).
    pub version: i64,
    /// When it was published.
    pub created_at: EpochMillis,
}

/// A remembered idempotent response.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRow {
    /// The client token.
    pub token: String,
    /// The operation it was sent with.
    pub operation: String,
    /// SHA-256 of the request without the token.
    pub request_hash: String,
    /// The response sent, JSON.
    pub response: Value,
    /// When.
    pub created_at: EpochMillis,
}

/// A batch evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRow {
    /// `<name>-<10 alphanumerics>`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its ARN.
    pub arn: String,
    /// `BatchEvaluationStatus`.
    pub status: String,
    /// The accepted request (JSON), with the output config Berth chose.
    pub request: Value,
    /// The results so far (`EvaluationJobResults` JSON).
    pub results: Option<Value>,
    /// Why it failed, or what went wrong.
    pub error: Option<String>,
    /// The dataset run's details (`DatasetExecutionDetails` JSON).
    pub execution: Option<Value>,
    /// Creation time.
    pub created_at: EpochMillis,
    /// Last change.
    pub updated_at: EpochMillis,
}

/// A change to a DRAFT's examples, applied in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum ExampleChange {
    /// Append examples; any id already in the DRAFT fails the whole change with
    /// `AlreadyExists("example id")`.
    Add(Vec<(String, Value)>),
    /// Replace examples by id; an id not in the DRAFT fails the whole change with
    /// `Precondition("example")`.
    Update(Vec<(String, Value)>),
    /// Delete examples by id; an id not in the DRAFT fails the whole change with
    /// `Precondition("example")`.
    Delete(Vec<String>),
}

/// Datasets and batch evaluations.
#[async_trait]
pub trait EvalDataStore: Send + Sync + 'static {
    /// A remembered response of `operation` under `token`.
    async fn eval_token(&self, token: &str, operation: &str) -> Result<Option<TokenRow>, Error>;

    /// Inserts a dataset and its first DRAFT examples (and the request's token) in one
    /// transaction. A taken name fails with `AlreadyExists("dataset name")`, a token used
    /// meanwhile with `AlreadyExists("client token")`.
    async fn insert_dataset(
        &self,
        row: &DatasetRow,
        examples: &[(String, Value)],
        token: Option<&TokenRow>,
    ) -> Result<(), Error>;
    /// One dataset.
    async fn dataset(&self, id: &str) -> Result<Option<DatasetRow>, Error>;
    /// Datasets after `after` (an id) in creation order, at most `limit`.
    async fn datasets(&self, after: Option<&str>, limit: u32) -> Result<Vec<DatasetRow>, Error>;
    /// Replaces a dataset's row (description, status, ...).
    async fn put_dataset(&self, row: &DatasetRow, token: Option<&TokenRow>) -> Result<(), Error>;
    /// Deletes a dataset with all its versions and examples; false when it did not exist.
    async fn delete_dataset(&self, id: &str) -> Result<bool, Error>;
    /// Applies a change to the DRAFT, marks it modified and sets `updated_at`, in one
    /// transaction. Returns how many examples changed.
    async fn change_examples(
        &self,
        dataset_id: &str,
        change: &ExampleChange,
        now: EpochMillis,
        token: Option<&TokenRow>,
    ) -> Result<i64, Error>;
    /// Examples of a version after position `after`, in order, at most `limit`.
    async fn examples(
        &self,
        dataset_id: &str,
        version: i64,
        after: i64,
        limit: u32,
    ) -> Result<Vec<ExampleRow>, Error>;
    /// Counts of a version's examples.
    async fn example_counts(&self, dataset_id: &str, version: i64) -> Result<ExampleCounts, Error>;
    /// Publishes the DRAFT as version `latest_version + 1` (copying its examples) and marks the
    /// DRAFT unmodified, in one transaction. Returns the new number.
    async fn publish_version(
        &self,
        dataset_id: &str,
        now: EpochMillis,
        token: Option<&TokenRow>,
    ) -> Result<i64, Error>;
    /// Published versions, newest first.
    async fn versions(&self, dataset_id: &str) -> Result<Vec<VersionRow>, Error>;
    /// Deletes one published version and its examples; false when it did not exist.
    async fn delete_version(&self, dataset_id: &str, version: i64) -> Result<bool, Error>;

    /// Inserts a batch evaluation (and the request's token) in one transaction.
    async fn insert_batch(&self, row: &BatchRow, token: Option<&TokenRow>) -> Result<(), Error>;
    /// One batch evaluation.
    async fn batch(&self, id: &str) -> Result<Option<BatchRow>, Error>;
    /// Batch evaluations, newest first, after `after` (an id), at most `limit`.
    async fn batches(&self, after: Option<&str>, limit: u32) -> Result<Vec<BatchRow>, Error>;
    /// Replaces a batch evaluation's status, results, error and execution details unless its
    /// stored status is one of `unless` (a stop or delete that won the race); returns whether
    /// it wrote.
    async fn update_batch(&self, row: &BatchRow, unless: &[&str]) -> Result<bool, Error>;
    /// Deletes a batch evaluation; false when it did not exist.
    async fn delete_batch(&self, id: &str) -> Result<bool, Error>;
    /// Batch evaluations in a non-final status (`PENDING`, `IN_PROGRESS`, `STOPPING`).
    async fn unfinished_batches(&self) -> Result<Vec<BatchRow>, Error>;
}
