//! The `Evaluate` operation: one evaluator over one session, by level and target.
//!
//! - SESSION: one result for the session (a target is refused).
//! - TRACE: one result per `evaluationTarget.traceIds` trace, or per trace of the session when
//!   there is no target (`spanIds` are refused).
//! - TOOL_CALL: one result per `evaluationTarget.spanIds` tool span, or per tool call of the
//!   `traceIds` traces, or of the session.
//!
//! Target ids that are not in `sessionSpans` (or span ids that are not tool spans) are a
//! ValidationException, as is a reference input naming another session. A unit that cannot be
//! scored (the judge model failed, a check lacks its reference input, the code evaluator
//! failed) gets a result with `errorCode` and `errorMessage`; the call itself succeeds.
//!
//! Reference inputs: `expectedResponse` belongs to the trace its `spanContext.traceId` names;
//! `assertions` and `expectedTrajectory` belong to the session (every reference input's are
//! gathered). Members the evaluator does not use are listed in each result's
//! `ignoredReferenceInputFields`.
//!
//! Code-based evaluators get AgentCore's documented Lambda event, one per unit:
//! `{schemaVersion: "1.0", evaluatorId, evaluatorName, evaluationLevel, evaluationInput:
//! {sessionSpans}, evaluationReferenceInputs, evaluationTarget: {traceIds: [t], spanIds: [s]}}`
//! (no target for SESSION; reference inputs: the session's for SESSION, the trace's otherwise),
//! and answer `{label, value?, explanation?}` or `{errorCode, errorMessage?}`.

use crate::checks::{self, Check};
use crate::judge::{
    self, Judge, JudgeError, JudgeSpec, REFERENCE_PLACEHOLDERS, References, Scale, Unit,
};
use crate::session::{SessionView, read_session};
use berth_api::evaluation::{
    Context, DimensionRatingScale, EvaluateInput, EvaluateOutput, EvaluationReferenceInput,
    EvaluationResultContent, EvaluationTarget, EvaluatorConfig, EvaluatorLevel,
    LambdaEvaluatorConfig, RatingScale, SpanContext, TokenUsage,
};
use berth_api::{ApiError, FieldError};
use futures::StreamExt;
use serde_json::{Value, json};

/// Units judged at once (judge-model and code-evaluator calls in flight per request).
const CONCURRENCY: usize = 4;

/// `errorCode` when an evaluator needs a reference input the request lacks.
pub const MISSING_REFERENCE: &str = "MissingReferenceInput";
/// `errorCode` when assertions cannot be checked.
pub const INVALID_ASSERTION: &str = "InvalidAssertion";
/// `errorCode` when the code evaluator could not be run.
pub const CODE_ERROR: &str = "CodeEvaluatorError";
/// `errorCode` when the code evaluator's answer is not the contract's shape.
pub const CODE_ANSWER: &str = "InvalidCodeEvaluatorResponse";

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
    /// `derived.baseEvaluatorId` (required for derived configurations; it must be an LLM judge).
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

    /// The reference-input members this evaluator reads.
    pub fn uses(&self) -> Vec<&'static str> {
        match &self.scoring {
            Scoring::Code(_) => vec!["expectedResponse", "assertions", "expectedTrajectory"],
            Scoring::Check(Check::Assertions) => vec!["assertions"],
            Scoring::Check(_) => vec!["expectedTrajectory"],
            Scoring::Judge(spec) => {
                let allowed = judge::placeholders(self.level);
                let mut text = spec.instructions.clone();
                if let RatingScale::MultiDimensional(dims) = &spec.rating_scale {
                    for d in dims {
                        text.push_str(&d.dimension_instruction);
                    }
                }
                REFERENCE_PLACEHOLDERS
                    .iter()
                    .filter(|(p, _)| allowed.contains(p) && text.contains(p))
                    .map(|(_, member)| *member)
                    .collect()
            }
        }
    }
}

/// Runs a `codeBased` evaluator's function. The server implements it by invoking a Berth
/// runtime; `event` is the Lambda event described in this module's documentation, the answer
/// the function's JSON.
#[async_trait::async_trait]
pub trait CodeRunner: Send + Sync {
    /// Calls the function `lambda` names with `event` and returns its answer, or why it could
    /// not (the result's `errorMessage`).
    async fn run(&self, lambda: &LambdaEvaluatorConfig, event: Value) -> Result<Value, String>;
}

/// Refuses every call: for servers and tests without code-based evaluators.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCodeRunner;

#[async_trait::async_trait]
impl CodeRunner for NoCodeRunner {
    async fn run(&self, lambda: &LambdaEvaluatorConfig, _event: Value) -> Result<Value, String> {
        Err(format!(
            "code-based evaluators cannot run here (function {})",
            lambda.lambda_arn
        ))
    }
}

/// One scored unit, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Target {
    unit: Unit,
}

/// Runs `evaluator` over the session in `input`.
pub async fn evaluate(
    evaluator: &Evaluator,
    input: &EvaluateInput,
    code: &dyn CodeRunner,
    judge: &Judge,
) -> Result<EvaluateOutput, ApiError> {
    let docs = input.evaluation_input.documents();
    let mut session = read_session(docs)?;
    let refs: &[EvaluationReferenceInput] = input
        .evaluation_reference_inputs
        .as_deref()
        .unwrap_or_default();
    if session.session_id.is_empty()
        && let Some(r) = refs.first()
    {
        session.session_id = r.context.span().session_id.clone();
    }
    if session.traces.is_empty() {
        return Err(ApiError::field(
            "evaluationInput.sessionSpans",
            "holds no span or log-record document (documents with a traceId)",
        ));
    }
    if session.session_id.is_empty() {
        // Spans recorded outside a runtime session (a local agent's in-memory spans, as
        // strands-agents-evals sends them) name none: the session is known by its first trace.
        session.session_id = session.traces[0].trace_id.clone();
    }
    let mut bad = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let c = r.context.span();
        if c.session_id != session.session_id {
            bad.push(FieldError {
                name: format!("evaluationReferenceInputs.{i}.context.spanContext.sessionId"),
                message: format!(
                    "session {} is not the session of evaluationInput.sessionSpans ({})",
                    c.session_id, session.session_id
                ),
            });
        }
        if let Some(t) = &c.trace_id
            && session.trace(t).is_none()
        {
            bad.push(FieldError {
                name: format!("evaluationReferenceInputs.{i}.context.spanContext.traceId"),
                message: format!("trace {t} is not in evaluationInput.sessionSpans"),
            });
        }
    }
    let targets = targets(
        evaluator.level,
        input.evaluation_target.as_ref(),
        &session,
        &mut bad,
    );
    if !bad.is_empty() {
        return Err(ApiError::fields(bad));
    }

    let assertions: Vec<String> = refs
        .iter()
        .flat_map(|r| r.assertions.iter().flatten())
        .map(|a| a.text().to_owned())
        .collect();
    let trajectory: Option<Vec<String>> = refs
        .iter()
        .filter_map(|r| r.expected_trajectory.as_ref()?.tool_names.clone())
        .reduce(|mut a, b| {
            a.extend(b);
            a
        });
    let uses = evaluator.uses();
    let mut provided: Vec<&'static str> = Vec::new();
    if refs.iter().any(|r| r.expected_response.is_some()) {
        provided.push("expectedResponse");
    }
    if refs.iter().any(|r| r.assertions.is_some()) {
        provided.push("assertions");
    }
    if refs.iter().any(|r| r.expected_trajectory.is_some()) {
        provided.push("expectedTrajectory");
    }
    let ignored: Vec<String> = provided
        .iter()
        .filter(|m| !uses.contains(m))
        .map(|m| (*m).to_owned())
        .collect();
    let ignored = (!ignored.is_empty()).then_some(ignored);

    let shared = Shared {
        evaluator,
        session: &session,
        docs,
        refs,
        assertions: &assertions,
        trajectory: trajectory.as_deref(),
        ignored: &ignored,
        code,
        judge,
    };
    let results: Vec<Vec<EvaluationResultContent>> = futures::stream::iter(targets)
        .map(|t| shared.score(t))
        .buffered(CONCURRENCY)
        .collect()
        .await;
    Ok(EvaluateOutput {
        evaluation_results: results.into_iter().flatten().collect(),
    })
}

/// The units of `level`, from the target or the whole session; bad target ids go to `bad`.
fn targets(
    level: EvaluatorLevel,
    target: Option<&EvaluationTarget>,
    session: &SessionView,
    bad: &mut Vec<FieldError>,
) -> Vec<Target> {
    let trace_index = |id: &str| session.traces.iter().position(|t| t.trace_id == id);
    let all_calls = |traces: &[usize]| -> Vec<Target> {
        traces
            .iter()
            .flat_map(|&t| {
                (0..session.traces[t].tool_calls.len()).map(move |call| Target {
                    unit: Unit::ToolCall { trace: t, call },
                })
            })
            .collect()
    };
    let mut trace_ids = |ids: &[String]| -> Vec<usize> {
        ids.iter()
            .enumerate()
            .filter_map(|(i, id)| {
                let found = trace_index(id);
                if found.is_none() {
                    bad.push(FieldError {
                        name: format!("evaluationTarget.traceIds.{i}"),
                        message: format!("trace {id} is not in evaluationInput.sessionSpans"),
                    });
                }
                found
            })
            .collect()
    };
    match (level, target) {
        (EvaluatorLevel::Session, None) => vec![Target {
            unit: Unit::Session,
        }],
        (EvaluatorLevel::Session, Some(_)) => {
            bad.push(FieldError {
                name: "evaluationTarget".into(),
                message: "a SESSION evaluator scores the whole session: send no evaluationTarget"
                    .into(),
            });
            Vec::new()
        }
        (EvaluatorLevel::Trace, None) => (0..session.traces.len())
            .map(|t| Target {
                unit: Unit::Trace(t),
            })
            .collect(),
        (EvaluatorLevel::Trace, Some(EvaluationTarget::TraceIds(ids))) => trace_ids(ids)
            .into_iter()
            .map(|t| Target {
                unit: Unit::Trace(t),
            })
            .collect(),
        (EvaluatorLevel::Trace, Some(EvaluationTarget::SpanIds(_))) => {
            bad.push(FieldError {
                name: "evaluationTarget.spanIds".into(),
                message: "a TRACE evaluator scores traces: target them with traceIds".into(),
            });
            Vec::new()
        }
        (EvaluatorLevel::ToolCall, None) => {
            all_calls(&(0..session.traces.len()).collect::<Vec<_>>())
        }
        (EvaluatorLevel::ToolCall, Some(EvaluationTarget::TraceIds(ids))) => {
            let t = trace_ids(ids);
            all_calls(&t)
        }
        (EvaluatorLevel::ToolCall, Some(EvaluationTarget::SpanIds(ids))) => ids
            .iter()
            .enumerate()
            .filter_map(|(i, id)| {
                let found = session.traces.iter().enumerate().find_map(|(t, tv)| {
                    tv.tool_calls
                        .iter()
                        .position(|c| &c.span_id == id)
                        .map(|call| Target {
                            unit: Unit::ToolCall { trace: t, call },
                        })
                });
                if found.is_none() {
                    bad.push(FieldError {
                        name: format!("evaluationTarget.spanIds.{i}"),
                        message: format!(
                            "span {id} is not a tool span in evaluationInput.sessionSpans"
                        ),
                    });
                }
                found
            })
            .collect(),
    }
}

/// What every unit's scoring reads.
struct Shared<'a> {
    evaluator: &'a Evaluator,
    session: &'a SessionView,
    docs: &'a [Value],
    refs: &'a [EvaluationReferenceInput],
    assertions: &'a [String],
    trajectory: Option<&'a [String]>,
    ignored: &'a Option<Vec<String>>,
    code: &'a dyn CodeRunner,
    judge: &'a Judge,
}

/// A unit's score before it becomes a result.
struct Score {
    dimension: Option<String>,
    value: Option<f64>,
    label: Option<String>,
    explanation: Option<String>,
    usage: Option<TokenUsage>,
    error: Option<(String, String)>,
}

impl Score {
    fn error(code: &str, message: impl Into<String>, usage: Option<TokenUsage>) -> Score {
        Score {
            dimension: None,
            value: None,
            label: None,
            explanation: None,
            usage,
            error: Some((code.to_owned(), message.into())),
        }
    }

    fn judged(dimension: Option<String>, r: Result<judge::Verdict, JudgeError>) -> Score {
        match r {
            Ok(v) => Score {
                dimension,
                value: v.value,
                label: Some(v.label),
                explanation: Some(v.explanation),
                usage: Some(v.usage),
                error: None,
            },
            Err(e) => Score {
                dimension,
                ..Score::error(e.code, e.message, Some(e.usage))
            },
        }
    }
}

impl Shared<'_> {
    async fn score(&self, t: Target) -> Vec<EvaluationResultContent> {
        let (trace, span) = match t.unit {
            Unit::Session => (None, None),
            Unit::Trace(i) => (Some(&self.session.traces[i]), None),
            Unit::ToolCall { trace, call } => {
                let tv = &self.session.traces[trace];
                (Some(tv), Some(&tv.tool_calls[call]))
            }
        };
        let context = Context::SpanContext(SpanContext {
            session_id: self.session.session_id.clone(),
            trace_id: trace.map(|t| t.trace_id.clone()),
            span_id: span.map(|s| s.span_id.clone()),
        });
        let scores = match &self.evaluator.scoring {
            Scoring::Check(c) => vec![self.check(*c)],
            Scoring::Judge(spec) => {
                self.judged(spec, t.unit, trace.map(|t| t.trace_id.as_str()))
                    .await
            }
            Scoring::Code(lambda) => vec![
                self.coded(
                    lambda,
                    t.unit,
                    trace.map(|t| t.trace_id.as_str()),
                    span.map(|s| s.span_id.as_str()),
                )
                .await,
            ],
        };
        scores
            .into_iter()
            .map(|s| {
                let (error_code, error_message) = s.error.unzip();
                EvaluationResultContent {
                    evaluator_arn: self.evaluator.arn.clone(),
                    evaluator_id: self.evaluator.id.clone(),
                    evaluator_name: self.evaluator.name.clone(),
                    evaluation_dimension_name: s.dimension,
                    explanation: s.explanation,
                    context: context.clone(),
                    value: s.value,
                    label: s.label,
                    token_usage: s.usage,
                    error_message,
                    error_code,
                    ignored_reference_input_fields: self.ignored.clone(),
                }
            })
            .collect()
    }

    fn check(&self, c: Check) -> Score {
        let ok = |o: checks::Outcome| Score {
            dimension: None,
            value: Some(o.value),
            label: Some(o.label),
            explanation: Some(o.explanation),
            usage: None,
            error: None,
        };
        match c {
            Check::Assertions => {
                if self.assertions.is_empty() {
                    return Score::error(
                        MISSING_REFERENCE,
                        format!(
                            "{} checks evaluationReferenceInputs[].assertions, and the request \
                             has none",
                            self.evaluator.id
                        ),
                        None,
                    );
                }
                let texts: Vec<&str> = self.assertions.iter().map(String::as_str).collect();
                match checks::assertions(self.session, &texts) {
                    Ok(o) => ok(o),
                    Err(e) => Score::error(INVALID_ASSERTION, e, None),
                }
            }
            _ => match self.trajectory {
                None => Score::error(
                    MISSING_REFERENCE,
                    format!(
                        "{} compares the tool calls with \
                         evaluationReferenceInputs[].expectedTrajectory.toolNames, and the \
                         request has none",
                        self.evaluator.id
                    ),
                    None,
                ),
                Some(expected) => {
                    let actual: Vec<&str> =
                        self.session.tool_calls().map(|c| c.name.as_str()).collect();
                    ok(checks::trajectory(c, &actual, expected))
                }
            },
        }
    }

    async fn judged(&self, spec: &JudgeSpec, unit: Unit, trace_id: Option<&str>) -> Vec<Score> {
        let expected_response = trace_id.and_then(|t| {
            self.refs.iter().find_map(|r| {
                let c = r.context.span();
                (c.trace_id.as_deref() == Some(t))
                    .then(|| r.expected_response.as_ref().map(|e| e.text()))
                    .flatten()
            })
        });
        let refs = References {
            expected_response,
            assertions: self.assertions,
            expected_trajectory: self.trajectory,
        };
        let level = self.evaluator.level;
        let model = spec.model.as_ref();
        let prompt = judge::fill_instructions(&spec.instructions, level, self.session, unit, &refs);
        match &spec.rating_scale {
            RatingScale::Numerical(p) => vec![Score::judged(
                None,
                self.judge
                    .verdict(model, &prompt, Scale::Numerical(p))
                    .await,
            )],
            RatingScale::Categorical(p) => vec![Score::judged(
                None,
                self.judge
                    .verdict(model, &prompt, Scale::Categorical(p))
                    .await,
            )],
            RatingScale::MultiDimensional(dims) => {
                let mut out = Vec::with_capacity(dims.len());
                for d in dims {
                    let instruction = judge::fill_instructions(
                        &d.dimension_instruction,
                        level,
                        self.session,
                        unit,
                        &refs,
                    );
                    let dim_prompt = format!(
                        "{prompt}\n\n# Dimension: {}\nJudge only this dimension: {instruction}",
                        d.dimension_name
                    );
                    let scale = match &d.dimension_rating_scale {
                        DimensionRatingScale::Numerical(p) => Scale::Numerical(p),
                        DimensionRatingScale::Categorical(p) => Scale::Categorical(p),
                    };
                    out.push(Score::judged(
                        Some(d.dimension_name.clone()),
                        self.judge.verdict(model, &dim_prompt, scale).await,
                    ));
                }
                out
            }
        }
    }

    async fn coded(
        &self,
        lambda: &LambdaEvaluatorConfig,
        unit: Unit,
        trace_id: Option<&str>,
        span_id: Option<&str>,
    ) -> Score {
        let refs: Vec<&EvaluationReferenceInput> = self
            .refs
            .iter()
            .filter(|r| r.context.span().trace_id.as_deref() == trace_id)
            .collect();
        let mut event = json!({
            "schemaVersion": "1.0",
            "evaluatorId": self.evaluator.id,
            "evaluatorName": self.evaluator.name,
            "evaluationLevel": self.evaluator.level.as_str(),
            "evaluationInput": {"sessionSpans": self.docs},
            "evaluationReferenceInputs": refs,
        });
        match unit {
            Unit::Session => {}
            Unit::Trace(_) => event["evaluationTarget"] = json!({"traceIds": [trace_id]}),
            Unit::ToolCall { .. } => {
                event["evaluationTarget"] = json!({"traceIds": [trace_id], "spanIds": [span_id]})
            }
        }
        let answer = match self.code.run(lambda, event).await {
            Ok(a) => a,
            Err(e) => return Score::error(CODE_ERROR, e, None),
        };
        code_answer(&answer)
    }
}

/// Reads a code evaluator's answer: `{label, value?, explanation?}` or
/// `{errorCode, errorMessage?}`.
fn code_answer(answer: &Value) -> Score {
    let Some(o) = answer.as_object() else {
        return Score::error(
            CODE_ANSWER,
            format!("the evaluator function answered {answer}, not a JSON object"),
            None,
        );
    };
    let s = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
    if let Some(code) = s("errorCode").filter(|c| !c.is_empty()) {
        return Score::error(&code, s("errorMessage").unwrap_or_default(), None);
    }
    let value = match o.get("value") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(f) => Some(f),
            None => {
                return Score::error(
                    CODE_ANSWER,
                    format!("the evaluator function's value {v} is not a number"),
                    None,
                );
            }
        },
    };
    let Some(label) = s("label") else {
        return Score::error(
            CODE_ANSWER,
            "the evaluator function's answer has neither a label nor an errorCode",
            None,
        );
    };
    Score {
        dimension: None,
        value,
        label: Some(label),
        explanation: s("explanation"),
        usage: None,
        error: None,
    }
}
