//! LLM-as-a-judge: a prompt from the evaluator's instructions and the session, a JSON verdict
//! from the model, the verdict mapped onto the rating scale.

use berth_api::evaluation::{EvaluatorModelConfig, RatingScale, TokenUsage};
use berth_memory::provider::{AwsSigning, ProviderKind};
use std::time::Duration;

/// Where judges' model calls go; `serve` fills it from `--eval-model-*` flags (defaulting to
/// the memory model's settings).
#[derive(Debug, Clone)]
pub struct JudgeSettings {
    /// The provider's API; `None` when no judge model is configured (judge evaluators then
    /// answer per-result errors).
    pub provider: Option<ProviderKind>,
    /// Base URL; the provider's public endpoint when `None`.
    pub base_url: Option<String>,
    /// API key / bearer token.
    pub api_key: Option<String>,
    /// SigV4 signing for Bedrock Converse without an API key.
    pub aws: Option<AwsSigning>,
    /// Region for Bedrock's default endpoint.
    pub region: String,
    /// The model built-in judges use (and custom ones when their model id is empty).
    pub default_model: Option<String>,
    /// Per-call timeout.
    pub timeout: Duration,
    /// Further attempts after a provider error or an unparsable verdict.
    pub retries: u32,
}

/// An LLM judge's definition: instructions, scale, model.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeSpec {
    /// Instructions with `{placeholder}`s.
    pub instructions: String,
    /// The scale.
    pub rating_scale: RatingScale,
    /// The model; the configured default when `None` (built-ins).
    pub model: Option<EvaluatorModelConfig>,
}

/// A judge's answer mapped onto the scale.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The scale value (`None` on categorical scales).
    pub value: Option<f64>,
    /// The scale label.
    pub label: String,
    /// The judge's reasoning.
    pub explanation: String,
    /// Tokens used over all attempts.
    pub usage: TokenUsage,
}

/// Why no verdict: the result's `errorCode` and `errorMessage`.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeError {
    /// `errorCode`.
    pub code: &'static str,
    /// `errorMessage`.
    pub message: String,
    /// Tokens used by failed attempts.
    pub usage: TokenUsage,
}

/// Calls judge models.
#[derive(Debug, Clone)]
pub struct Judge {
    settings: JudgeSettings,
}

impl Judge {
    /// A judge with `settings`.
    pub fn new(settings: JudgeSettings) -> Self {
        Self { settings }
    }

    /// The settings.
    pub fn settings(&self) -> &JudgeSettings {
        &self.settings
    }
}
