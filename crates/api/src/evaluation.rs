//! AgentCore Evaluations wire shapes, typed: the `Evaluate` request and response
//! (`bedrock-agentcore`) and the evaluator configuration (`bedrock-agentcore-control`), member by
//! member as the botocore models name them.
//!
//! Unions are Rust enums whose variants carry the model's member names (serde's external tagging
//! is exactly the union's one-key object). Absent optional members are skipped on output. Span
//! documents (`Span` is a document shape) stay JSON values: `berth_eval::session` reads them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Evaluate (bedrock-agentcore).

/// `EvaluateRequest` without its URI member `evaluatorId` (the path carries it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluateInput {
    /// The session's span and log-record documents.
    pub evaluation_input: EvaluationInput,
    /// Which traces or spans to score (TRACE and TOOL_CALL evaluators); all when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluation_target: Option<EvaluationTarget>,
    /// Ground truth: expected responses, assertions, expected trajectories.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluation_reference_inputs: Option<Vec<EvaluationReferenceInput>>,
}

/// `EvaluationInput`: a union.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EvaluationInput {
    /// `Spans`: ADOT span documents and OTel log-record documents of one session.
    #[serde(rename = "sessionSpans")]
    SessionSpans(Vec<Value>),
}

impl EvaluationInput {
    /// The documents.
    pub fn documents(&self) -> &[Value] {
        match self {
            Self::SessionSpans(docs) => docs,
        }
    }
}

/// `EvaluationTarget`: a union.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EvaluationTarget {
    /// Tool spans (16 hex digits each), for TOOL_CALL evaluators.
    #[serde(rename = "spanIds")]
    SpanIds(Vec<String>),
    /// Traces (32 hex digits each), for TRACE evaluators.
    #[serde(rename = "traceIds")]
    TraceIds(Vec<String>),
}

/// `EvaluationReferenceInput`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationReferenceInput {
    /// What the reference applies to: a session, or a trace in it.
    pub context: Context,
    /// The response the agent should have given (per trace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_response: Option<EvaluationContent>,
    /// Statements the session should satisfy (per session).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assertions: Option<Vec<EvaluationContent>>,
    /// Tools the agent should have called, in order (per session).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_trajectory: Option<EvaluationExpectedTrajectory>,
}

/// `Context`: a union.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Context {
    /// `SpanContext`.
    #[serde(rename = "spanContext")]
    SpanContext(SpanContext),
}

impl Context {
    /// The span context.
    pub fn span(&self) -> &SpanContext {
        match self {
            Self::SpanContext(s) => s,
        }
    }
}

/// `SpanContext`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpanContext {
    /// `session.id` of the session.
    pub session_id: String,
    /// The trace, for TRACE and TOOL_CALL results.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The tool span, for TOOL_CALL results.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
}

/// `EvaluationContent`: a union.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EvaluationContent {
    /// Text.
    #[serde(rename = "text")]
    Text(String),
}

impl EvaluationContent {
    /// The text.
    pub fn text(&self) -> &str {
        match self {
            Self::Text(t) => t,
        }
    }
}

/// `EvaluationExpectedTrajectory`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationExpectedTrajectory {
    /// Tool names in the expected order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_names: Option<Vec<String>>,
}

/// `EvaluateResponse`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluateOutput {
    /// One result per scored unit (session, trace, tool call; per dimension when the scale is
    /// multi-dimensional).
    pub evaluation_results: Vec<EvaluationResultContent>,
}

/// `EvaluationResultContent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationResultContent {
    /// The evaluator's ARN.
    pub evaluator_arn: String,
    /// The evaluator's id.
    pub evaluator_id: String,
    /// The evaluator's name.
    pub evaluator_name: String,
    /// The dimension, for multi-dimensional scales.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluation_dimension_name: Option<String>,
    /// Why the score (at most 2048 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
    /// What was scored.
    pub context: Context,
    /// The score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The scale label of the score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Tokens the judge used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_usage: Option<TokenUsage>,
    /// Why this unit could not be scored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// A code for `errorMessage`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Reference-input members the evaluator did not use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored_reference_input_fields: Option<Vec<String>>,
}

/// `TokenUsage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    /// Prompt tokens.
    #[serde(default)]
    pub input_tokens: i64,
    /// Completion tokens.
    #[serde(default)]
    pub output_tokens: i64,
    /// Their sum.
    #[serde(default)]
    pub total_tokens: i64,
}

impl TokenUsage {
    /// `a + b`, member by member.
    #[allow(clippy::should_implement_trait)]
    pub fn add(self, other: TokenUsage) -> TokenUsage {
        TokenUsage {
            input_tokens: self.input_tokens + other.input_tokens,
            output_tokens: self.output_tokens + other.output_tokens,
            total_tokens: self.total_tokens + other.total_tokens,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluator configuration (bedrock-agentcore-control).

/// `EvaluatorLevel`: what one result scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EvaluatorLevel {
    /// One tool call (a tool span).
    ToolCall,
    /// One trace (a turn: user input to agent response).
    Trace,
    /// The whole session.
    Session,
}

impl EvaluatorLevel {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ToolCall => "TOOL_CALL",
            Self::Trace => "TRACE",
            Self::Session => "SESSION",
        }
    }
}

/// `EvaluatorConfig`: a union.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EvaluatorConfig {
    /// A model judges with instructions and a rating scale.
    #[serde(rename = "llmAsAJudge")]
    LlmAsAJudge(LlmAsAJudgeEvaluatorConfig),
    /// A function judges (a Lambda in AgentCore; a Berth runtime in Berth).
    #[serde(rename = "codeBased")]
    CodeBased(CodeBasedEvaluatorConfig),
    /// Another evaluator's definition with a different judge model.
    #[serde(rename = "derived")]
    Derived(DerivedEvaluatorConfig),
}

/// `LlmAsAJudgeEvaluatorConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LlmAsAJudgeEvaluatorConfig {
    /// The judge's instructions, with `{placeholder}`s filled from the session.
    pub instructions: String,
    /// The scores the judge may give.
    pub rating_scale: RatingScale,
    /// The judge model.
    pub model_config: EvaluatorModelConfig,
}

/// `RatingScale`: a union.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RatingScale {
    /// Labelled numbers.
    #[serde(rename = "numerical")]
    Numerical(Vec<NumericalScaleDefinition>),
    /// Labels only (results carry `label`, no `value`).
    #[serde(rename = "categorical")]
    Categorical(Vec<CategoricalScaleDefinition>),
    /// Several dimensions, each with its own instruction and scale (one result each).
    #[serde(rename = "multiDimensional")]
    MultiDimensional(Vec<EvaluationDimension>),
}

/// `NumericalScaleDefinition`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NumericalScaleDefinition {
    /// What the score means.
    pub definition: String,
    /// The score (>= 0).
    pub value: f64,
    /// Its label.
    pub label: String,
}

/// `CategoricalScaleDefinition`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CategoricalScaleDefinition {
    /// What the label means.
    pub definition: String,
    /// The label.
    pub label: String,
}

/// `EvaluationDimension`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationDimension {
    /// The dimension's name (`evaluationDimensionName` of its results).
    pub dimension_name: String,
    /// What to judge on this dimension.
    pub dimension_instruction: String,
    /// Its scale.
    pub dimension_rating_scale: DimensionRatingScale,
}

/// `DimensionRatingScale`: a union.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DimensionRatingScale {
    /// Labelled numbers.
    #[serde(rename = "numerical")]
    Numerical(Vec<NumericalScaleDefinition>),
    /// Labels.
    #[serde(rename = "categorical")]
    Categorical(Vec<CategoricalScaleDefinition>),
}

/// `EvaluatorModelConfig`: a union.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EvaluatorModelConfig {
    /// A Bedrock (Converse) model.
    #[serde(rename = "bedrockEvaluatorModelConfig")]
    Bedrock(BedrockEvaluatorModelConfig),
    /// An OpenAI Responses-style model.
    #[serde(rename = "responsesEvaluatorModelConfig")]
    Responses(OpenResponsesEvaluatorModelConfig),
}

impl EvaluatorModelConfig {
    /// The model id either member names.
    pub fn model_id(&self) -> &str {
        match self {
            Self::Bedrock(c) => &c.model_id,
            Self::Responses(c) => &c.model_id,
        }
    }

    /// The maximum completion tokens, if set.
    pub fn max_tokens(&self) -> Option<i64> {
        match self {
            Self::Bedrock(c) => c.inference_config.as_ref().and_then(|i| i.max_tokens),
            Self::Responses(c) => c.max_output_tokens,
        }
    }

    /// The temperature, if set.
    pub fn temperature(&self) -> Option<f64> {
        match self {
            Self::Bedrock(c) => c.inference_config.as_ref().and_then(|i| i.temperature),
            Self::Responses(c) => c.temperature,
        }
    }
}

/// `BedrockEvaluatorModelConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BedrockEvaluatorModelConfig {
    /// The model id.
    pub model_id: String,
    /// Sampling settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inference_config: Option<InferenceConfiguration>,
    /// Provider-specific request fields (a document), echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additional_model_request_fields: Option<Value>,
}

/// `InferenceConfiguration`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceConfiguration {
    /// Maximum completion tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<i64>,
    /// 0..=1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// 0..=1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Stop sequences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
}

/// `OpenResponsesEvaluatorModelConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenResponsesEvaluatorModelConfig {
    /// The model id.
    pub model_id: String,
    /// Maximum completion tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<i64>,
    /// 0..=2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// 0..=1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Reasoning effort.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<ReasoningConfiguration>,
}

/// `ReasoningConfiguration`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasoningConfiguration {
    /// E.g. `low`, `medium`, `high`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
}

/// `CodeBasedEvaluatorConfig`: a union.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CodeBasedEvaluatorConfig {
    /// The function to call.
    #[serde(rename = "lambdaConfig")]
    LambdaConfig(LambdaEvaluatorConfig),
}

impl CodeBasedEvaluatorConfig {
    /// The Lambda configuration.
    pub fn lambda(&self) -> &LambdaEvaluatorConfig {
        match self {
            Self::LambdaConfig(l) => l,
        }
    }
}

/// `LambdaEvaluatorConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LambdaEvaluatorConfig {
    /// `arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]`.
    pub lambda_arn: String,
    /// 1..=300 seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lambda_timeout_in_seconds: Option<i64>,
}

/// `DerivedEvaluatorConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DerivedEvaluatorConfig {
    /// The evaluator whose instructions and scale are reused.
    pub base_evaluator_id: String,
    /// The judge model to use instead.
    pub model_config: EvaluatorModelConfig,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unions_use_the_model_member_names() {
        let cfg: EvaluatorConfig = serde_json::from_value(json!({
            "llmAsAJudge": {
                "instructions": "Judge {assistant_turn}",
                "ratingScale": {"numerical": [{"definition": "good", "value": 1.0, "label": "Good"}]},
                "modelConfig": {"bedrockEvaluatorModelConfig": {"modelId": "m", "inferenceConfig": {"maxTokens": 100}}}
            }
        }))
        .expect("parses");
        let EvaluatorConfig::LlmAsAJudge(j) = &cfg else {
            panic!("not llmAsAJudge: {cfg:?}")
        };
        assert_eq!(j.model_config.model_id(), "m");
        assert_eq!(j.model_config.max_tokens(), Some(100));
        let back = serde_json::to_value(&cfg).expect("serialises");
        assert_eq!(
            back["llmAsAJudge"]["modelConfig"]["bedrockEvaluatorModelConfig"]["modelId"],
            "m"
        );
        assert!(
            back["llmAsAJudge"]["modelConfig"]["bedrockEvaluatorModelConfig"]
                .get("additionalModelRequestFields")
                .is_none()
        );

        let input: EvaluateInput = serde_json::from_value(json!({
            "evaluationInput": {"sessionSpans": [{"traceId": "t"}]},
            "evaluationTarget": {"traceIds": ["0123456789abcdef0123456789abcdef"]},
            "evaluationReferenceInputs": [{
                "context": {"spanContext": {"sessionId": "s"}},
                "assertions": [{"text": "contains: hi"}],
                "expectedTrajectory": {"toolNames": ["a", "b"]}
            }]
        }))
        .expect("parses");
        assert_eq!(input.evaluation_input.documents().len(), 1);
        let refs = input.evaluation_reference_inputs.expect("refs");
        assert_eq!(refs[0].context.span().session_id, "s");
        assert_eq!(
            refs[0].assertions.as_ref().expect("assertions")[0].text(),
            "contains: hi"
        );
        assert_eq!(
            serde_json::to_value(EvaluatorLevel::ToolCall).expect("level"),
            json!("TOOL_CALL")
        );
    }

    #[test]
    fn results_skip_absent_members() {
        let r = EvaluationResultContent {
            evaluator_arn: "arn:aws:bedrock-agentcore:::evaluator/Builtin.Helpfulness".into(),
            evaluator_id: "Builtin.Helpfulness".into(),
            evaluator_name: "Builtin.Helpfulness".into(),
            evaluation_dimension_name: None,
            explanation: Some("fine".into()),
            context: Context::SpanContext(SpanContext {
                session_id: "s".into(),
                trace_id: None,
                span_id: None,
            }),
            value: Some(0.5),
            label: Some("Somewhat".into()),
            token_usage: None,
            error_message: None,
            error_code: None,
            ignored_reference_input_fields: None,
        };
        assert_eq!(
            serde_json::to_value(&r).expect("serialises"),
            json!({
                "evaluatorArn": "arn:aws:bedrock-agentcore:::evaluator/Builtin.Helpfulness",
                "evaluatorId": "Builtin.Helpfulness",
                "evaluatorName": "Builtin.Helpfulness",
                "explanation": "fine",
                "context": {"spanContext": {"sessionId": "s"}},
                "value": 0.5,
                "label": "Somewhat"
            })
        );
    }
}
