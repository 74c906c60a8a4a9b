//! PostgreSQL SQL of evaluators and online evaluation configs (rows in [`crate::eval`]).

#![allow(unused_variables)]

use super::PgStore;
use crate::Error;
use crate::eval::EvalStore;
use crate::eval::{EvaluatorRow, OnlineConfigRow, TokenRow};
use async_trait::async_trait;
use berth_types::EpochMillis;

#[async_trait]
impl EvalStore for PgStore {
    async fn insert_evaluator(
        &self,
        e: &EvaluatorRow,
        token: Option<&TokenRow>,
    ) -> Result<(), Error> {
        Err(super::not_yet("evaluations"))
    }
    async fn put_evaluator(&self, e: &EvaluatorRow, token: Option<&TokenRow>) -> Result<(), Error> {
        Err(super::not_yet("evaluations"))
    }
    async fn evaluator(&self, id: &str) -> Result<Option<EvaluatorRow>, Error> {
        Err(super::not_yet("evaluations"))
    }
    async fn list_evaluators(
        &self,
        after: Option<(EpochMillis, String)>,
        limit: u32,
    ) -> Result<Vec<EvaluatorRow>, Error> {
        Err(super::not_yet("evaluations"))
    }
    async fn evaluators_in_status(&self, status: &str) -> Result<Vec<EvaluatorRow>, Error> {
        Err(super::not_yet("evaluations"))
    }
    async fn delete_evaluator(&self, id: &str) -> Result<bool, Error> {
        Err(super::not_yet("evaluations"))
    }

    async fn insert_online_config(
        &self,
        c: &OnlineConfigRow,
        token: Option<&TokenRow>,
    ) -> Result<(), Error> {
        Err(super::not_yet("evaluations"))
    }
    async fn put_online_config(
        &self,
        c: &OnlineConfigRow,
        token: Option<&TokenRow>,
    ) -> Result<(), Error> {
        Err(super::not_yet("evaluations"))
    }
    async fn online_config(&self, id: &str) -> Result<Option<OnlineConfigRow>, Error> {
        Err(super::not_yet("evaluations"))
    }
    async fn page_online_configs(
        &self,
        after: Option<(EpochMillis, String)>,
        limit: u32,
    ) -> Result<Vec<OnlineConfigRow>, Error> {
        Err(super::not_yet("evaluations"))
    }
    async fn list_online_configs(&self) -> Result<Vec<OnlineConfigRow>, Error> {
        Err(super::not_yet("evaluations"))
    }
    async fn online_configs_in_status(&self, status: &str) -> Result<Vec<OnlineConfigRow>, Error> {
        Err(super::not_yet("evaluations"))
    }
    async fn delete_online_config(&self, id: &str) -> Result<bool, Error> {
        Err(super::not_yet("evaluations"))
    }

    async fn eval_token(&self, operation: &str, token: &str) -> Result<Option<TokenRow>, Error> {
        Err(super::not_yet("evaluations"))
    }
}
