//! PostgreSQL SQL of datasets and batch evaluations (rows in [`crate::eval_data`]).

#![allow(unused_variables)]

use super::PgStore;
use crate::Error;
use crate::eval_data::EvalDataStore;
use crate::eval_data::{
    BatchRow, DatasetRow, ExampleChange, ExampleCounts, ExampleRow, TokenRow, VersionRow,
};
use async_trait::async_trait;
use berth_types::EpochMillis;
use serde_json::Value;

#[async_trait]
impl EvalDataStore for PgStore {
    async fn eval_token(&self, token: &str, operation: &str) -> Result<Option<TokenRow>, Error> {
        Err(super::not_yet("evaluation data"))
    }

    async fn insert_dataset(
        &self,
        row: &DatasetRow,
        examples: &[(String, Value)],
        token: Option<&TokenRow>,
    ) -> Result<(), Error> {
        Err(super::not_yet("evaluation data"))
    }
    async fn dataset(&self, id: &str) -> Result<Option<DatasetRow>, Error> {
        Err(super::not_yet("evaluation data"))
    }
    async fn datasets(&self, after: Option<&str>, limit: u32) -> Result<Vec<DatasetRow>, Error> {
        Err(super::not_yet("evaluation data"))
    }
    async fn put_dataset(&self, row: &DatasetRow, token: Option<&TokenRow>) -> Result<(), Error> {
        Err(super::not_yet("evaluation data"))
    }
    async fn delete_dataset(&self, id: &str) -> Result<bool, Error> {
        Err(super::not_yet("evaluation data"))
    }
    async fn change_examples(
        &self,
        dataset_id: &str,
        change: &ExampleChange,
        now: EpochMillis,
        token: Option<&TokenRow>,
    ) -> Result<i64, Error> {
        Err(super::not_yet("evaluation data"))
    }
    async fn examples(
        &self,
        dataset_id: &str,
        version: i64,
        after: i64,
        limit: u32,
    ) -> Result<Vec<ExampleRow>, Error> {
        Err(super::not_yet("evaluation data"))
    }
    async fn example_counts(&self, dataset_id: &str, version: i64) -> Result<ExampleCounts, Error> {
        Err(super::not_yet("evaluation data"))
    }
    async fn publish_version(
        &self,
        dataset_id: &str,
        now: EpochMillis,
        token: Option<&TokenRow>,
    ) -> Result<i64, Error> {
        Err(super::not_yet("evaluation data"))
    }
    async fn versions(&self, dataset_id: &str) -> Result<Vec<VersionRow>, Error> {
        Err(super::not_yet("evaluation data"))
    }
    async fn delete_version(&self, dataset_id: &str, version: i64) -> Result<bool, Error> {
        Err(super::not_yet("evaluation data"))
    }

    async fn insert_batch(&self, row: &BatchRow, token: Option<&TokenRow>) -> Result<(), Error> {
        Err(super::not_yet("evaluation data"))
    }
    async fn batch(&self, id: &str) -> Result<Option<BatchRow>, Error> {
        Err(super::not_yet("evaluation data"))
    }
    async fn batches(&self, after: Option<&str>, limit: u32) -> Result<Vec<BatchRow>, Error> {
        Err(super::not_yet("evaluation data"))
    }
    async fn update_batch(&self, row: &BatchRow, unless: &[&str]) -> Result<bool, Error> {
        Err(super::not_yet("evaluation data"))
    }
    async fn delete_batch(&self, id: &str) -> Result<bool, Error> {
        Err(super::not_yet("evaluation data"))
    }
    async fn unfinished_batches(&self) -> Result<Vec<BatchRow>, Error> {
        Err(super::not_yet("evaluation data"))
    }
}
