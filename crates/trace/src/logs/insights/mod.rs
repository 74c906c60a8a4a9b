//! A CloudWatch Logs Insights subset: the commands and functions AgentCore's tools send (the
//! SDK's span collector, the starter toolkit's `agentcore obs`, strands-evals), parsed by a
//! hand-written tokenizer and recursive-descent parser (`parse.rs`) and evaluated over log
//! events in Rust (`eval.rs`).
//!
//! Supported: `fields` (with `as`), `filter` (`=`, `!=`, `<`, `>`, `<=`, `>=`, `like` with a
//! string or a `/regex/`, `in [...]`, `not`, `and`, `or`, `ispresent(f)`), `parse <field>
//! "glob*" as a, b` (and `parse <field> /(?<name>re)/`), `stats count(*)`, `count(e)`,
//! `count_distinct`, `sum`, `min`, `max`, `avg` `by` (with `as`), `sort f asc|desc`, `limit n`,
//! arithmetic (`+ - * / %`), dotted field flattening as CloudWatch does it (`attributes.session.id`
//! is the key `"session.id"` inside `"attributes"`), and the `@timestamp`, `@message`,
//! `@logStream`, `@log` and `@ingestionTime` fields.
//!
//! Architecture Invariant: anything else is a [`Malformed`] error when the query is parsed
//! (CloudWatch's `MalformedQueryException` at `StartQuery`), never ignored.

mod eval;
mod parse;

pub use eval::{Event, Execution, MAX_KEPT_ROWS, Output, Statistics, TooManyRows};

use regex::Regex;

/// Why a query cannot run: CloudWatch's `MalformedQueryException`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {offset})")]
pub struct Malformed {
    /// Byte offset into the query.
    pub offset: usize,
    pub message: String,
}

impl Malformed {
    fn at(offset: usize, message: impl Into<String>) -> Self {
        Self {
            offset,
            message: message.into(),
        }
    }
}

/// A parsed query.
#[derive(Debug, Clone)]
pub struct Query {
    commands: Vec<Command>,
}

#[derive(Debug, Clone)]
enum Command {
    Fields(Vec<Named>),
    Filter(Expr),
    Parse {
        field: String,
        regex: Regex,
        names: Vec<String>,
    },
    Stats {
        aggs: Vec<(Agg, String)>,
        by: Vec<Named>,
    },
    Sort(Vec<(Expr, bool)>),
    Limit(usize),
}

/// An expression and the name its value goes by in results.
#[derive(Debug, Clone)]
struct Named {
    expr: Expr,
    name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AggFn {
    Count,
    CountDistinct,
    Sum,
    Min,
    Max,
    Avg,
}

#[derive(Debug, Clone)]
struct Agg {
    f: AggFn,
    /// `None` for `count(*)`.
    arg: Option<Expr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone)]
enum Matcher {
    /// `like "text"`: a substring.
    Contains(String),
    Regex(Regex),
}

#[derive(Debug, Clone)]
enum Expr {
    Field(String),
    Str(String),
    Int(i64),
    Float(f64),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    Like(Box<Expr>, Matcher),
    In(Box<Expr>, Vec<Expr>),
    Arith(ArithOp, Box<Expr>, Box<Expr>),
    IsPresent(String),
}

/// What the store can narrow candidates by before the query is evaluated: equalities every
/// result must satisfy, found in the query's leading `filter` commands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pushdown {
    /// `filter attributes.session.id = "S"`.
    pub session_id: Option<String>,
    /// `filter traceId = "T"` or `filter traceId in ["T1", ...]`.
    pub trace_ids: Option<Vec<String>>,
}

impl Query {
    /// Parses `src`; anything outside the supported subset is [`Malformed`].
    pub fn parse(src: &str) -> Result<Self, Malformed> {
        Ok(Self {
            commands: parse::parse(src)?,
        })
    }

    /// The equalities a store may select candidates by (see [`Pushdown`]). Only `filter`
    /// commands before anything that can define or rename a field count, and only their
    /// top-level `and` terms.
    pub fn pushdown(&self) -> Pushdown {
        let mut p = Pushdown::default();
        let mut defined: Vec<&str> = Vec::new();
        for c in &self.commands {
            match c {
                Command::Filter(e) => collect_pushdown(e, &defined, &mut p),
                Command::Fields(items) => defined.extend(
                    items
                        .iter()
                        .filter(|n| !matches!(&n.expr, Expr::Field(f) if *f == n.name))
                        .map(|n| n.name.as_str()),
                ),
                Command::Parse { names, .. } => defined.extend(names.iter().map(String::as_str)),
                Command::Stats { .. } | Command::Sort(_) | Command::Limit(_) => break,
            }
        }
        p
    }

    /// Starts evaluating; feed it events, then finish.
    pub fn execute(&self, limit: usize) -> Execution<'_> {
        Execution::new(self, limit)
    }
}

fn collect_pushdown(e: &Expr, defined: &[&str], p: &mut Pushdown) {
    let field_is =
        |x: &Expr, name: &str| matches!(x, Expr::Field(f) if f == name) && !defined.contains(&name);
    match e {
        Expr::And(a, b) => {
            collect_pushdown(a, defined, p);
            collect_pushdown(b, defined, p);
        }
        Expr::Cmp(CmpOp::Eq, a, b) => {
            let (field, value) = match (a.as_ref(), b.as_ref()) {
                (f, Expr::Str(s)) | (Expr::Str(s), f) => (f, s),
                _ => return,
            };
            if field_is(field, "attributes.session.id") && p.session_id.is_none() {
                p.session_id = Some(value.clone());
            } else if field_is(field, "traceId") && p.trace_ids.is_none() {
                p.trace_ids = Some(vec![value.clone()]);
            }
        }
        Expr::In(a, items) if field_is(a, "traceId") && p.trace_ids.is_none() => {
            let ids: Option<Vec<String>> = items
                .iter()
                .map(|i| match i {
                    Expr::Str(s) => Some(s.clone()),
                    _ => None,
                })
                .collect();
            p.trace_ids = ids;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
