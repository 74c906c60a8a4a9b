//! The `Builtin.*` evaluators.

use crate::evaluate::Evaluator;

/// The ARN of built-in evaluator `id`.
pub fn builtin_arn(id: &str) -> String {
    format!("arn:aws:bedrock-agentcore:::evaluator/{id}")
}

/// The built-in evaluator `id` (e.g. `Builtin.Helpfulness`), if Berth has it.
pub fn builtin(id: &str) -> Option<Evaluator> {
    all().into_iter().find(|e| e.id == id)
}

/// Every built-in evaluator.
pub fn all() -> Vec<Evaluator> {
    Vec::new()
}
