//! Evaluations: AgentCore's Evaluations API and what Berth builds on it.
//!
//! - `session`: a session's span and log-record documents (the ADOT JSON form the SDK sends and the
//!   trace store holds) read into traces, turns and tool calls.
//! - `catalogue`: the `Builtin.*` evaluators, each with its level and how it scores.
//! - `checks`: deterministic evaluators (trajectory matches, assertions, latency and cost ceilings).
//! - `judge`: LLM-as-a-judge through a configured model provider.
//! - `evaluate`: the `Evaluate` operation: an evaluator over a session, by level and target.
//! - `stats`: means, confidence intervals, Welch's t-test (experiments, drift, rollout signals).
//! - scores as Berth keeps them, keyed by runtime, endpoint and version, live in the trace store
//!   (`berth_trace::scores`), beside the traces they judged.
//! - `experiment`: an endpoint's versions compared on their scores in a window.
//! - `drift`: whether a version's recent scores fell below its baseline (pure).
//! - `signal`: evaluation scores as a rollout signal.
//! - `online`: online evaluation: enabled configs score their endpoints' finished sessions.
//! - `alerts`: drift alerts (log, audit, webhook, optional rollback) over online scores.
//! - `datasets`: evaluation datasets (a DRAFT and numbered versions of examples) and their
//!   signed JSONL download URLs.
//! - `batch`: batch evaluations, run off the request path and recovered after a restart.

pub mod alerts;
pub mod batch;
pub mod catalogue;
pub mod checks;
pub mod datasets;
pub mod drift;
pub mod evaluate;
pub mod experiment;
pub mod judge;
pub mod online;
pub mod resources;
pub mod session;
pub mod signal;
pub mod stats;

pub use evaluate::{CodeRunner, Evaluator, NoCodeRunner, Scoring, evaluate};
pub use judge::{Judge, JudgeSettings, JudgeSpec};
pub use session::{SessionView, ToolCall, TraceView, read_session};
