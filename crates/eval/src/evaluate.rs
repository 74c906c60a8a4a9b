//! The `Evaluate` operation: one evaluator over one session, by level and target.

use crate::checks::Check;
use crate::judge::{Judge, JudgeSpec};
use berth_api::ApiError;
use berth_api::evaluation::{
    EvaluateInput, EvaluateOutput, EvaluatorConfig, EvaluatorLevel, LambdaEvaluatorConfig,
};
use serde_json::Value;

/// A resolved evaluator: a built-in from the catalogue or a stored custom one.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluator {
    /// `Builtin.X` or `name-XXXXXXXXXX`.
    pub id: String,
    /// Its ARN.
    pub arn: String,
    /// Its name (built-ins: the id).
    pub name: String,
    /// What one result scores.
    pub level: EvaluatorLevel,
    /// How it scores.
    pub scoring: Scoring,
    /// What a built-in is for (the catalogue's description; `None` for custom evaluators).
    pub description: Option<String>,
}

/// How an evaluator scores.
#[derive(Debug, Clone, PartialEq)]
pub enum Scoring {
    /// A model judges.
    Judge(JudgeSpec),
    /// A function judges.
    Code(LambdaEvaluatorConfig),
    /// A deterministic check.
    Check(Check),
}

impl Evaluator {
    /// A custom evaluator from its stored configuration. `base` is the resolved
    /// `derived.baseEvaluatorId` (required for derived configurations).
    pub fn custom(
        id: &str,
        arn: &str,
        name: &str,
        level: EvaluatorLevel,
        config: &EvaluatorConfig,
        base: Option<&Evaluator>,
    ) -> Result<Evaluator, ApiError> {
        let scoring = match config {
            EvaluatorConfig::LlmAsAJudge(j) => Scoring::Judge(JudgeSpec {
                instructions: j.instructions.clone(),
                rating_scale: j.rating_scale.clone(),
                model: Some(j.model_config.clone()),
            }),
            EvaluatorConfig::CodeBased(c) => Scoring::Code(c.lambda().clone()),
            EvaluatorConfig::Derived(d) => {
                let base = base.ok_or_else(|| {
                    ApiError::field(
                        "evaluatorConfig.derived.baseEvaluatorId",
                        format!("evaluator {} is not known", d.base_evaluator_id),
                    )
                })?;
                match &base.scoring {
                    Scoring::Judge(spec) => Scoring::Judge(JudgeSpec {
                        model: Some(d.model_config.clone()),
                        ..spec.clone()
                    }),
                    _ => {
                        return Err(ApiError::field(
                            "evaluatorConfig.derived.baseEvaluatorId",
                            format!(
                                "evaluator {} is not an LLM judge, so it has no model to replace",
                                d.base_evaluator_id
                            ),
                        ));
                    }
                }
            }
        };
        Ok(Evaluator {
            id: id.to_owned(),
            arn: arn.to_owned(),
            name: name.to_owned(),
            level,
            scoring,
            description: None,
        })
    }
}

/// Runs a `codeBased` evaluator's function. The server implements it by invoking a Berth
/// runtime; `event` is the documented event JSON, the answer the function's JSON.
#[async_trait::async_trait]
pub trait CodeRunner: Send + Sync {
    /// Calls the function `lambda` names with `event` and returns its answer.
    async fn run(&self, lambda: &LambdaEvaluatorConfig, event: Value) -> Result<Value, String>;
}

/// Runs `evaluator` over the session in `input`.
pub async fn evaluate(
    evaluator: &Evaluator,
    input: &EvaluateInput,
    code: &dyn CodeRunner,
    judge: &Judge,
) -> Result<EvaluateOutput, ApiError> {
    let _ = (evaluator, input, code, judge);
    Err(ApiError::new(
        berth_api::ErrorKind::Internal,
        "evaluate is not written yet",
    ))
}
