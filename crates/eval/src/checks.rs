//! Deterministic evaluators: trajectory matches and assertions.
//!
//! Trajectories (`Builtin.Trajectory{Exact,InOrder,Any}OrderMatch`, SESSION level) compare the
//! session's tool calls, by name and in call order, with `expectedTrajectory.toolNames`: 1.0
//! (`Match`) or 0.0 (`No match`).
//!
//! Assertions (`Builtin.Berth.Assertions`, SESSION level) are the reference input's
//! `assertions` texts in these forms (prefix case-insensitive, surrounding spaces ignored):
//!
//! | text | passes when |
//! | --- | --- |
//! | `contains: S` | some agent response of the session contains `S` |
//! | `not-contains: S` | no agent response contains `S` |
//! | `regex: R` | some agent response matches the regular expression `R` (Rust `regex` syntax) |
//! | `json-schema: {...}` | the last agent response is JSON valid against the schema |
//! | `latency-ms <= N` | every trace took at most `N` ms (first span start to last span end) |
//! | `tokens <= N` | the session's model tokens (input + output) total at most `N` |
//!
//! Any other text is a free-text assertion for an LLM judge (`Builtin.GoalSuccessRate`): this
//! evaluator lists it as not checked. The value is the fraction of checked assertions that
//! pass; the label `Pass` when all pass, else `Fail`.

use crate::session::SessionView;
use serde_json::Value;

/// A deterministic check's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// In [0, 1].
    pub value: f64,
    /// The scale label.
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

/// Label of a trajectory match.
pub const MATCH: &str = "Match";
/// Label of a trajectory mismatch.
pub const NO_MATCH: &str = "No match";
/// Label when every checked assertion holds.
pub const PASS: &str = "Pass";
/// Label when some checked assertion fails.
pub const FAIL: &str = "Fail";

/// Compares `actual` tool names (call order) with `expected`.
pub fn trajectory(check: Check, actual: &[&str], expected: &[String]) -> Outcome {
    let matched = match check {
        Check::TrajectoryExactOrder => {
            actual.len() == expected.len() && actual.iter().zip(expected).all(|(a, e)| a == e)
        }
        Check::TrajectoryInOrder => {
            let mut it = actual.iter();
            expected.iter().all(|e| it.any(|a| a == e))
        }
        Check::TrajectoryAnyOrder | Check::Assertions => {
            expected.iter().all(|e| actual.iter().any(|a| a == e))
        }
    };
    let how = match check {
        Check::TrajectoryExactOrder => "exactly, in order",
        Check::TrajectoryInOrder => "in order (other calls allowed between)",
        _ => "in any order",
    };
    Outcome {
        value: if matched { 1.0 } else { 0.0 },
        label: if matched { MATCH } else { NO_MATCH }.to_owned(),
        explanation: format!(
            "expected tools [{}] {how}; the agent called [{}]: {}",
            expected.join(", "),
            actual.join(", "),
            if matched { "match" } else { "no match" }
        ),
    }
}

/// One assertion text, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Assertion {
    /// `contains: S`.
    Contains(String),
    /// `not-contains: S`.
    NotContains(String),
    /// `regex: R`.
    Regex(String),
    /// `json-schema: {...}` (the schema text).
    JsonSchema(String),
    /// `latency-ms <= N`.
    LatencyMs(f64),
    /// `tokens <= N`.
    Tokens(u64),
    /// Anything else: for an LLM judge.
    FreeText(String),
}

impl Assertion {
    /// Parses `text`.
    pub fn parse(text: &str) -> Assertion {
        let t = text.trim();
        let prefixed = |p: &str| -> Option<String> {
            let head = t.get(..p.len())?;
            head.eq_ignore_ascii_case(p)
                .then(|| t[p.len()..].trim().to_owned())
        };
        if let Some(s) = prefixed("not-contains:") {
            return Assertion::NotContains(s);
        }
        if let Some(s) = prefixed("contains:") {
            return Assertion::Contains(s);
        }
        if let Some(s) = prefixed("regex:") {
            return Assertion::Regex(s);
        }
        if let Some(s) = prefixed("json-schema:") {
            return Assertion::JsonSchema(s);
        }
        if let Some(n) = prefixed("latency-ms").and_then(|r| ceiling(&r))
            && let Ok(n) = n.parse::<f64>()
            && n.is_finite()
        {
            return Assertion::LatencyMs(n);
        }
        if let Some(n) = prefixed("tokens").and_then(|r| ceiling(&r))
            && let Ok(n) = n.parse::<u64>()
        {
            return Assertion::Tokens(n);
        }
        Assertion::FreeText(t.to_owned())
    }

    /// Whether the assertion is one of the deterministic forms.
    pub fn is_deterministic(&self) -> bool {
        !matches!(self, Assertion::FreeText(_))
    }
}

/// `<= N` -> `N`.
fn ceiling(rest: &str) -> Option<String> {
    rest.trim()
        .strip_prefix("<=")
        .map(|n| n.trim().replace('_', ""))
}

/// Checks the deterministic `assertions` against `session`. `Err` (the result's
/// `errorMessage`) when an assertion cannot be checked at all: a bad regular expression or
/// schema, or no deterministic assertion among them.
pub fn assertions(session: &SessionView, texts: &[&str]) -> Result<Outcome, String> {
    let responses: Vec<&str> = session
        .traces
        .iter()
        .filter_map(|t| t.agent_response.as_deref())
        .collect();
    let last = responses.last().copied();
    let mut lines = Vec::new();
    let (mut checked, mut passed) = (0usize, 0usize);
    for text in texts {
        let a = Assertion::parse(text);
        let verdict: Option<(bool, String)> = match &a {
            Assertion::Contains(s) => Some((
                responses.iter().any(|r| r.contains(s.as_str())),
                format!("a response contains {s:?}"),
            )),
            Assertion::NotContains(s) => Some((
                !responses.iter().any(|r| r.contains(s.as_str())),
                format!("no response contains {s:?}"),
            )),
            Assertion::Regex(r) => {
                let re = regex::Regex::new(r)
                    .map_err(|e| format!("assertion {text:?}: invalid regular expression: {e}"))?;
                Some((
                    responses.iter().any(|x| re.is_match(x)),
                    format!("a response matches /{r}/"),
                ))
            }
            Assertion::JsonSchema(s) => {
                let schema: Value = serde_json::from_str(s)
                    .map_err(|e| format!("assertion {text:?}: the schema is not JSON: {e}"))?;
                let validator = jsonschema::validator_for(&schema)
                    .map_err(|e| format!("assertion {text:?}: invalid JSON schema: {e}"))?;
                let (ok, why) = match last.map(|r| serde_json::from_str::<Value>(strip_fence(r))) {
                    None => (false, "there is no agent response".to_owned()),
                    Some(Err(e)) => (false, format!("the last response is not JSON ({e})")),
                    Some(Ok(v)) => match validator.validate(&v) {
                        Ok(()) => (true, "the last response is valid".to_owned()),
                        Err(e) => (false, format!("the last response is invalid: {e}")),
                    },
                };
                Some((
                    ok,
                    format!("the last response matches the JSON schema: {why}"),
                ))
            }
            Assertion::LatencyMs(n) => {
                let worst = session
                    .traces
                    .iter()
                    .map(|t| t.latency_ms())
                    .fold(0.0f64, f64::max);
                Some((
                    worst <= *n,
                    format!("every trace took <= {n} ms (slowest {worst:.1} ms)"),
                ))
            }
            Assertion::Tokens(n) => {
                let u = session.usage();
                let used = u.input + u.output;
                Some((used <= *n, format!("tokens <= {n} (used {used})")))
            }
            Assertion::FreeText(_) => None,
        };
        match verdict {
            Some((ok, what)) => {
                checked += 1;
                passed += usize::from(ok);
                lines.push(format!("{}: {what}", if ok { "PASS" } else { "FAIL" }));
            }
            None => lines.push(format!(
                "NOT CHECKED: {text:?} is not a deterministic assertion (use an LLM judge such as \
                 Builtin.GoalSuccessRate)"
            )),
        }
    }
    if checked == 0 {
        return Err(
            "no deterministic assertion to check: write assertions as `contains: ...`, \
             `not-contains: ...`, `regex: ...`, `json-schema: {...}`, `latency-ms <= N` or \
             `tokens <= N`"
                .to_owned(),
        );
    }
    let all = passed == checked;
    Ok(Outcome {
        value: passed as f64 / checked as f64,
        label: if all { PASS } else { FAIL }.to_owned(),
        explanation: format!(
            "{passed} of {checked} assertions hold. {}",
            lines.join("; ")
        ),
    })
}

/// A response's text without a surrounding Markdown code fence.
fn strip_fence(s: &str) -> &str {
    let t = s.trim();
    let Some(rest) = t.strip_prefix("```") else {
        return t;
    };
    let rest = rest.split_once('\n').map(|(_, body)| body).unwrap_or(rest);
    rest.trim_end().strip_suffix("```").unwrap_or(rest).trim()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Tokens, TraceView};

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn trajectories() {
        let actual = ["search", "fetch", "summarise"];
        let t = |c, e: &[&str]| trajectory(c, &actual, &names(e)).value;
        assert_eq!(
            t(
                Check::TrajectoryExactOrder,
                &["search", "fetch", "summarise"]
            ),
            1.0
        );
        assert_eq!(
            t(Check::TrajectoryExactOrder, &["search", "summarise"]),
            0.0
        );
        assert_eq!(t(Check::TrajectoryInOrder, &["search", "summarise"]), 1.0);
        assert_eq!(t(Check::TrajectoryInOrder, &["summarise", "search"]), 0.0);
        assert_eq!(t(Check::TrajectoryAnyOrder, &["summarise", "search"]), 1.0);
        assert_eq!(t(Check::TrajectoryAnyOrder, &["summarise", "delete"]), 0.0);
        // Repeated expected names need repeated calls in order.
        assert_eq!(t(Check::TrajectoryInOrder, &["search", "search"]), 0.0);
        let o = trajectory(Check::TrajectoryExactOrder, &[], &[]);
        assert_eq!((o.value, o.label.as_str()), (1.0, MATCH));
        let o = trajectory(Check::TrajectoryInOrder, &actual, &names(&["x"]));
        assert_eq!(o.label, NO_MATCH);
        assert!(
            o.explanation.contains("[search, fetch, summarise]"),
            "{}",
            o.explanation
        );
    }

    #[test]
    fn assertion_forms_parse() {
        assert_eq!(
            Assertion::parse(" Contains: hi "),
            Assertion::Contains("hi".into())
        );
        assert_eq!(
            Assertion::parse("not-contains:x"),
            Assertion::NotContains("x".into())
        );
        assert_eq!(
            Assertion::parse("regex: ^a+$"),
            Assertion::Regex("^a+$".into())
        );
        assert_eq!(
            Assertion::parse("latency-ms <= 5000"),
            Assertion::LatencyMs(5000.0)
        );
        assert_eq!(Assertion::parse("tokens<=1_000"), Assertion::Tokens(1000));
        assert_eq!(
            Assertion::parse("json-schema: {\"type\": \"object\"}"),
            Assertion::JsonSchema("{\"type\": \"object\"}".into())
        );
        assert!(!Assertion::parse("The agent greets the user").is_deterministic());
        assert!(!Assertion::parse("tokens <= many").is_deterministic());
    }

    fn session() -> SessionView {
        SessionView {
            session_id: "s".into(),
            traces: vec![
                TraceView {
                    trace_id: "t1".into(),
                    agent_response: Some("The answer is 5.".into()),
                    start_ns: 0,
                    end_ns: 2_000_000_000,
                    usage: Tokens {
                        input: 100,
                        output: 20,
                        total: 120,
                    },
                    ..Default::default()
                },
                TraceView {
                    trace_id: "t2".into(),
                    agent_response: Some(
                        "```json\n{\"total\": 5, \"unit\": \"apples\"}\n```".into(),
                    ),
                    start_ns: 3_000_000_000,
                    end_ns: 3_500_000_000,
                    usage: Tokens {
                        input: 50,
                        output: 10,
                        total: 60,
                    },
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn assertions_check_the_session() {
        let s = session();
        let o = assertions(
            &s,
            &[
                "contains: answer is 5",
                "not-contains: sorry",
                r"regex: \d+\.",
                r#"json-schema: {"type": "object", "required": ["total"], "properties": {"total": {"type": "integer"}}}"#,
                "latency-ms <= 2500",
                "tokens <= 180",
                "The agent is polite",
            ],
        )
        .expect("checks");
        assert_eq!(
            (o.value, o.label.as_str()),
            (1.0, PASS),
            "{}",
            o.explanation
        );
        assert!(o.explanation.contains("NOT CHECKED"), "{}", o.explanation);

        let o = assertions(
            &s,
            &[
                "contains: goodbye",
                "latency-ms <= 1000",
                "tokens <= 179",
                r#"json-schema: {"type": "object", "required": ["missing"]}"#,
            ],
        )
        .expect("checks");
        assert_eq!(
            (o.value, o.label.as_str()),
            (0.0, FAIL),
            "{}",
            o.explanation
        );
        assert!(
            o.explanation.contains("slowest 2000.0 ms"),
            "{}",
            o.explanation
        );
        assert!(o.explanation.contains("used 180"), "{}", o.explanation);

        let o = assertions(&s, &["contains: 5", "contains: nope"]).expect("checks");
        assert_eq!(o.value, 0.5);
    }

    #[test]
    fn unusable_assertions_are_errors() {
        let s = session();
        assert!(
            assertions(&s, &["regex: (unclosed"])
                .unwrap_err()
                .contains("invalid regular expression")
        );
        assert!(
            assertions(&s, &["json-schema: {nope"])
                .unwrap_err()
                .contains("not JSON")
        );
        assert!(
            assertions(&s, &[r#"json-schema: {"type": 5}"#])
                .unwrap_err()
                .contains("invalid JSON schema")
        );
        assert!(
            assertions(&s, &["be nice"])
                .unwrap_err()
                .contains("no deterministic assertion")
        );
    }

    #[test]
    fn fences_are_stripped() {
        assert_eq!(strip_fence("```json\n{}\n```"), "{}");
        assert_eq!(strip_fence("  {} "), "{}");
        assert_eq!(strip_fence("```\n[1]\n```"), "[1]");
    }
}
