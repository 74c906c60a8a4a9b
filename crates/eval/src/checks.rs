//! Deterministic evaluators: trajectory matches and assertions.

/// A deterministic check's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// 1.0 pass, 0.0 fail (fractions for partial trajectory credit are not given).
    pub value: f64,
    /// `PASS` or `FAIL`... see the catalogue's scale.
    pub label: String,
    /// What matched and what did not.
    pub explanation: String,
}

/// Which deterministic evaluator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Same tools, same order, nothing else.
    TrajectoryExactOrder,
    /// The expected tools appear in order (others may come between).
    TrajectoryInOrder,
    /// The expected tools all appear, in any order.
    TrajectoryAnyOrder,
    /// `evaluationReferenceInputs.assertions` of the deterministic forms.
    Assertions,
}
