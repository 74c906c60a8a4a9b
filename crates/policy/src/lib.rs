//! IAM-style policy documents, as users write them for AWS, and their evaluation.
//!
//! A [`Policy`] is parsed once from JSON (`Version`, `Statement` as a list or a single object,
//! `Effect`, `Action`/`NotAction`, `Resource`/`NotResource`, `Condition`) and then evaluated
//! against a [`Request`]: an action (`service:Operation`), a resource ARN and a context of
//! condition keys. [`evaluate`] follows AWS's identity-policy logic: an explicit `Deny` in any
//! matching statement wins, otherwise any matching `Allow` allows, otherwise the request is
//! implicitly denied.
//!
//! Matching rules, as on AWS: actions are case-insensitive, resources case-sensitive, both with
//! `*` (any run of characters) and `?` (one character). `ArnLike`/`ArnEquals` match each of the
//! six colon-separated ARN fields on its own, so `*` never crosses a `:` before the resource part.
//!
//! Supported condition operators: `StringEquals`, `StringNotEquals`, `StringEqualsIgnoreCase`,
//! `StringNotEqualsIgnoreCase`, `StringLike`, `StringNotLike`, `ArnEquals`, `ArnNotEquals`,
//! `ArnLike`, `ArnNotLike`, `Bool`, `Null`, each also with the `IfExists` suffix. Context keys are
//! single-valued; keys are compared case-insensitively, as AWS does.
//!
//! Resource policies ([`Policy::parse_resource`]) also carry `Principal`: `"*"` or
//! `{"AWS": ARN | account | [..]}`, matched against the request's `aws:PrincipalArn`. As IAM
//! does within one account, a statement naming the principal itself (or `"*"`) grants on its
//! own, while one naming the whole account (`"123456789012"`, `arn:aws:iam::123456789012:root`)
//! only delegates to the principal's identity policies: it can deny but never allows alone.
//!
//! Not supported (refused at parse time, never silently ignored): `Principal`/`NotPrincipal`
//! in identity policies, `NotPrincipal`, principals other than `AWS`, set operators (`ForAnyValue:`/`ForAllValues:`), numeric and
//! date operators, and policy variables (`${...}`).
//!
//! This crate does no IO.

mod wildcard;

use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub use wildcard::matches as wildcard_matches;

/// What is wrong with a policy document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The text is not JSON.
    #[error("the policy is not valid JSON: {0}")]
    Json(String),
    /// The document does not have the shape of an IAM policy.
    #[error("invalid policy: {0}")]
    Invalid(String),
    /// The document uses a part of the IAM language Berth does not evaluate.
    #[error("unsupported in a berth policy: {0}")]
    Unsupported(String),
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

/// The outcome of evaluating policies for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A statement allows it and none denies it.
    Allow,
    /// A statement denies it; nothing can allow it then.
    ExplicitDeny,
    /// No statement allows it.
    ImplicitDeny,
}

impl Decision {
    /// Whether the request may proceed.
    pub fn allowed(self) -> bool {
        self == Decision::Allow
    }
}

/// Condition keys and their values for one request. Keys are stored lower-case (IAM condition
/// keys are case-insensitive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context(BTreeMap<String, String>);

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`.
    pub fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.0.insert(key.to_ascii_lowercase(), value.into());
        self
    }

    /// The value of `key`, if the request has it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(&key.to_ascii_lowercase()).map(String::as_str)
    }
}

/// One request to authorize.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `service:Operation`, e.g. `bedrock-agentcore:InvokeAgentRuntime`.
    pub action: &'a str,
    /// The resource's ARN (or `*` for operations on no particular resource).
    pub resource: &'a str,
    /// Condition keys.
    pub context: &'a Context,
}

/// Evaluates `policies` together, as AWS evaluates all identity policies of a principal: an
/// explicit deny anywhere wins over any allow.
pub fn evaluate<'p>(policies: impl IntoIterator<Item = &'p Policy>, req: &Request<'_>) -> Decision {
    let mut allowed = false;
    for p in policies {
        match p.decide(req) {
            Decision::ExplicitDeny => return Decision::ExplicitDeny,
            Decision::Allow => allowed = true,
            Decision::ImplicitDeny => {}
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

/// A parsed policy document.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    statements: Vec<Statement>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

/// A list of patterns, matched positively (`Action`) or negatively (`NotAction`).
#[derive(Debug, Clone, PartialEq)]
struct Patterns {
    negated: bool,
    patterns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct Statement {
    effect: Effect,
    /// `Principal` of a resource policy; `None` in identity policies.
    principal: Option<Vec<String>>,
    action: Patterns,
    resource: Patterns,
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    ArnEquals,
    ArnNotEquals,
    ArnLike,
    ArnNotLike,
    Bool,
    Null,
}

impl Operator {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "StringEquals" => Self::StringEquals,
            "StringNotEquals" => Self::StringNotEquals,
            "StringEqualsIgnoreCase" => Self::StringEqualsIgnoreCase,
            "StringNotEqualsIgnoreCase" => Self::StringNotEqualsIgnoreCase,
            "StringLike" => Self::StringLike,
            "StringNotLike" => Self::StringNotLike,
            "ArnEquals" => Self::ArnEquals,
            "ArnNotEquals" => Self::ArnNotEquals,
            "ArnLike" => Self::ArnLike,
            "ArnNotLike" => Self::ArnNotLike,
            "Bool" => Self::Bool,
            "Null" => Self::Null,
            _ => return None,
        })
    }

    /// Negated operators hold when the key is absent (AWS: "the values do not match" is true).
    fn negated(self) -> bool {
        matches!(
            self,
            Self::StringNotEquals
                | Self::StringNotEqualsIgnoreCase
                | Self::StringNotLike
                | Self::ArnNotEquals
                | Self::ArnNotLike
        )
    }

    /// Whether `actual` matches `expected` under the positive form of the operator.
    fn positive_match(self, actual: &str, expected: &str) -> bool {
        match self {
            Self::StringEquals | Self::StringNotEquals => actual == expected,
            Self::StringEqualsIgnoreCase | Self::StringNotEqualsIgnoreCase => {
                actual.eq_ignore_ascii_case(expected)
            }
            Self::StringLike | Self::StringNotLike => wildcard::matches(expected, actual, false),
            Self::ArnEquals | Self::ArnNotEquals | Self::ArnLike | Self::ArnNotLike => {
                arn_matches(expected, actual)
            }
            Self::Bool => actual.eq_ignore_ascii_case(expected),
            // Handled before values are compared.
            Self::Null => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Condition {
    op: Operator,
    if_exists: bool,
    key: String,
    values: Vec<String>,
}

impl Condition {
    fn holds(&self, ctx: &Context) -> bool {
        let actual = ctx.get(&self.key);
        if self.op == Operator::Null {
            // `"Null": {"k": "true"}` holds when k is absent; "false" when it is present.
            return self
                .values
                .iter()
                .any(|v| v.eq_ignore_ascii_case("true") == actual.is_none());
        }
        let Some(actual) = actual else {
            return self.if_exists || self.op.negated();
        };
        let any = self
            .values
            .iter()
            .any(|v| self.op.positive_match(actual, v));
        if self.op.negated() { !any } else { any }
    }
}

/// ARN matching: the six `:`-separated fields are matched one by one, the last (the resource)
/// keeping any further colons.
fn arn_matches(pattern: &str, arn: &str) -> bool {
    let p: Vec<&str> = pattern.splitn(6, ':').collect();
    let a: Vec<&str> = arn.splitn(6, ':').collect();
    if p.len() != 6 || a.len() != 6 {
        // Not an ARN on either side: fall back to a whole-string match.
        return wildcard::matches(pattern, arn, false);
    }
    p.iter()
        .zip(&a)
        .all(|(p, a)| wildcard::matches(p, a, false))
}

impl Statement {
    fn applies(&self, req: &Request<'_>) -> bool {
        let action = self
            .action
            .patterns
            .iter()
            .any(|p| wildcard::matches(p, req.action, true));
        if action == self.action.negated {
            return false;
        }
        let resource = self
            .resource
            .patterns
            .iter()
            .any(|p| p == "*" || arn_matches(p, req.resource));
        if resource == self.resource.negated {
            return false;
        }
        self.conditions.iter().all(|c| c.holds(req.context))
    }
}

impl Policy {
    /// Parses a policy document from its JSON text.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let v: Value = serde_json::from_str(text).map_err(|e| Error::Json(e.to_string()))?;
        Self::from_value(&v)
    }

    /// Parses a policy document already decoded from JSON.
    pub fn from_value(v: &Value) -> Result<Self, Error> {
        Self::from_value_as(v, false)
    }

    /// Parses a resource policy (one attached to a runtime, endpoint or memory) from its JSON
    /// text: every statement names a `Principal`.
    pub fn parse_resource(text: &str) -> Result<Self, Error> {
        let v: Value = serde_json::from_str(text).map_err(|e| Error::Json(e.to_string()))?;
        Self::from_value_as(&v, true)
    }

    fn from_value_as(v: &Value, resource_policy: bool) -> Result<Self, Error> {
        let doc = v
            .as_object()
            .ok_or_else(|| invalid("the policy must be a JSON object"))?;
        for key in doc.keys() {
            if !matches!(key.as_str(), "Version" | "Id" | "Statement") {
                return Err(invalid(format!("unknown top-level element {key:?}")));
            }
        }
        match doc.get("Version").map(Value::as_str) {
            None | Some(Some("2012-10-17" | "2008-10-17")) => {}
            Some(_) => {
                return Err(invalid("Version must be \"2012-10-17\" or \"2008-10-17\""));
            }
        }
        let statements = match doc.get("Statement") {
            Some(Value::Array(list)) => list
                .iter()
                .map(|s| Statement::parse(s, resource_policy))
                .collect::<Result<Vec<_>, _>>()?,
            Some(s @ Value::Object(_)) => vec![Statement::parse(s, resource_policy)?],
            Some(_) => return Err(invalid("Statement must be an object or a list of objects")),
            None => return Err(invalid("the policy has no Statement")),
        };
        Ok(Self { statements })
    }

    /// This policy's decision alone. In a resource policy a statement applies to the principal
    /// in the context's `aws:PrincipalArn`; an allow naming only the principal's account
    /// delegates to its identity policies and so allows nothing here.
    pub fn decide(&self, req: &Request<'_>) -> Decision {
        let mut allowed = false;
        for s in self.statements.iter().filter(|s| s.applies(req)) {
            let principal = s.principal_match(req.context);
            match (s.effect, principal) {
                (_, PrincipalMatch::No) => {}
                (Effect::Deny, _) => return Decision::ExplicitDeny,
                (Effect::Allow, PrincipalMatch::Exact) => allowed = true,
                (Effect::Allow, PrincipalMatch::Account) => {}
            }
        }
        if allowed {
            Decision::Allow
        } else {
            Decision::ImplicitDeny
        }
    }
}

fn strings(v: &Value, what: &str) -> Result<Vec<String>, Error> {
    let list = match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid(format!("{what} must hold strings")))
            })
            .collect::<Result<Vec<_>, _>>()?,
        // Condition values may be written as JSON booleans or numbers (`"Bool": {"k": true}`).
        Value::Bool(b) => vec![b.to_string()],
        Value::Number(n) => vec![n.to_string()],
        _ => {
            return Err(invalid(format!(
                "{what} must be a string or a list of strings"
            )));
        }
    };
    if list.is_empty() {
        return Err(invalid(format!("{what} must not be empty")));
    }
    if let Some(s) = list.iter().find(|s| s.contains("${")) {
        return Err(Error::Unsupported(format!("policy variables ({s:?})")));
    }
    Ok(list)
}

fn patterns(st: &Map<String, Value>, positive: &str, negative: &str) -> Result<Patterns, Error> {
    match (st.get(positive), st.get(negative)) {
        (Some(v), None) => Ok(Patterns {
            negated: false,
            patterns: strings(v, positive)?,
        }),
        (None, Some(v)) => Ok(Patterns {
            negated: true,
            patterns: strings(v, negative)?,
        }),
        (Some(_), Some(_)) => Err(invalid(format!(
            "a statement has both {positive} and {negative}"
        ))),
        (None, None) => Err(invalid(format!(
            "a statement needs {positive} or {negative}"
        ))),
    }
}

/// How a statement's `Principal` relates to the request's principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PrincipalMatch {
    /// Not named.
    No,
    /// Named by its account only (delegation to its identity policies).
    Account,
    /// Named itself, or `*`; identity policies always match this way.
    Exact,
}

/// The account an IAM principal entry names (`123456789012`, `arn:aws:iam::123456789012:root`).
fn account_of_entry(entry: &str) -> Option<&str> {
    if entry.len() == 12 && entry.bytes().all(|b| b.is_ascii_digit()) {
        return Some(entry);
    }
    let rest = entry.strip_prefix("arn:")?;
    let f: Vec<&str> = rest.splitn(5, ':').collect();
    (f.len() == 5 && f[1] == "iam" && f[4] == "root").then_some(f[3])
}

fn parse_principal(v: &Value) -> Result<Vec<String>, Error> {
    match v {
        Value::String(s) if s == "*" => Ok(vec!["*".into()]),
        Value::Object(m) => {
            let mut out = Vec::new();
            for (k, v) in m {
                if k != "AWS" {
                    return Err(Error::Unsupported(format!(
                        "Principal type {k:?} (only \"AWS\" principals exist in berth)"
                    )));
                }
                for p in strings(v, "Principal")? {
                    if p != "*" && account_of_entry(&p).is_none() && !p.starts_with("arn:") {
                        return Err(invalid(format!(
                            "Principal {p:?} is not \"*\", an account id or an ARN"
                        )));
                    }
                    out.push(p);
                }
            }
            if out.is_empty() {
                return Err(invalid("Principal names no principal"));
            }
            Ok(out)
        }
        _ => Err(invalid(
            "Principal must be \"*\" or an object such as {\"AWS\": \"arn:...\"}",
        )),
    }
}

impl Statement {
    fn principal_match(&self, ctx: &Context) -> PrincipalMatch {
        let Some(list) = &self.principal else {
            return PrincipalMatch::Exact;
        };
        let Some(who) = ctx.get("aws:PrincipalArn") else {
            return PrincipalMatch::No;
        };
        let mut best = PrincipalMatch::No;
        for p in list {
            if p == "*" || p == who {
                return PrincipalMatch::Exact;
            }
            if let Some(acct) = account_of_entry(p)
                && who.split(':').nth(4) == Some(acct)
            {
                best = PrincipalMatch::Account;
            }
        }
        best
    }

    fn parse(v: &Value, resource_policy: bool) -> Result<Self, Error> {
        let st = v
            .as_object()
            .ok_or_else(|| invalid("each statement must be a JSON object"))?;
        for key in st.keys() {
            match key.as_str() {
                "Sid" | "Effect" | "Action" | "NotAction" | "Resource" | "NotResource"
                | "Condition" => {}
                "Principal" if resource_policy => {}
                "NotPrincipal" if resource_policy => {
                    return Err(Error::Unsupported("NotPrincipal".into()));
                }
                "Principal" | "NotPrincipal" => {
                    return Err(Error::Unsupported(format!(
                        "{key} (a role's policies are identity policies; the principal is the role)"
                    )));
                }
                other => return Err(invalid(format!("unknown statement element {other:?}"))),
            }
        }
        let effect = match st.get("Effect").and_then(Value::as_str) {
            Some("Allow") => Effect::Allow,
            Some("Deny") => Effect::Deny,
            _ => return Err(invalid("Effect must be \"Allow\" or \"Deny\"")),
        };
        let action = patterns(st, "Action", "NotAction")?;
        let resource = patterns(st, "Resource", "NotResource")?;
        let mut conditions = Vec::new();
        if let Some(c) = st.get("Condition") {
            let ops = c
                .as_object()
                .ok_or_else(|| invalid("Condition must be an object"))?;
            for (name, keys) in ops {
                if name.contains(':') {
                    return Err(Error::Unsupported(format!(
                        "condition set operator {name:?}"
                    )));
                }
                let (base, if_exists) = match name.strip_suffix("IfExists") {
                    Some(b) => (b, true),
                    None => (name.as_str(), false),
                };
                let op = Operator::parse(base)
                    .ok_or_else(|| Error::Unsupported(format!("condition operator {name:?}")))?;
                let keys = keys
                    .as_object()
                    .ok_or_else(|| invalid(format!("{name} must map condition keys to values")))?;
                for (key, values) in keys {
                    conditions.push(Condition {
                        op,
                        if_exists,
                        key: key.clone(),
                        values: strings(values, name)?,
                    });
                }
            }
        }
        let principal = if resource_policy {
            let p = st
                .get("Principal")
                .ok_or_else(|| invalid("a resource policy statement needs a Principal"))?;
            Some(parse_principal(p)?)
        } else {
            None
        };
        Ok(Self {
            effect,
            principal,
            action,
            resource,
            conditions,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
