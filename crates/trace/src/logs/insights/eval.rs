//! Evaluation of a parsed query over log events: the row-wise commands (`fields`, `filter`,
//! `parse`) run as events are fed in, so only survivors are kept; the rest (`stats`, `sort`,
//! `limit`) run at the end.

use super::{Agg, AggFn, ArithOp, CmpOp, Command, Expr, Matcher, Query};
use serde_json::Value;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

/// The most rows, and message bytes, a query may keep between its row-wise commands and its
/// `stats`/`sort`: beyond either the query fails rather than answer from part of the data.
pub const MAX_KEPT_ROWS: usize = 200_000;
pub const MAX_KEPT_BYTES: usize = 256 * 1024 * 1024;

/// One log event as the query sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `@timestamp`, Unix milliseconds.
    pub timestamp_ms: i64,
    /// `@ingestionTime`, Unix milliseconds.
    pub ingestion_ms: i64,
    /// `@message`; a JSON object's keys are fields too.
    pub message: String,
    /// `@logStream`.
    pub log_stream: String,
    /// `@log`: `account:logGroupName`.
    pub log: String,
}

/// What a finished query answers: rows of `(field, value)` in display order.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub rows: Vec<Vec<(String, String)>>,
    pub statistics: Statistics,
}

/// CloudWatch's `QueryStatistics`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Statistics {
    pub records_matched: f64,
    pub records_scanned: f64,
    pub bytes_scanned: f64,
}

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Unix milliseconds, shown as CloudWatch shows `@timestamp`.
    Time(i64),
}

struct Doc {
    event: Event,
    /// `@message` parsed, when it is a JSON object; parsed on first use and dropped once a row
    /// is kept or aggregated, so kept rows cost their text, not their parse tree.
    json: std::cell::OnceCell<Option<Value>>,
}

impl Doc {
    fn json(&self) -> Option<&Value> {
        self.json
            .get_or_init(|| {
                let m = &self.event.message;
                if m.trim_start().starts_with('{') {
                    serde_json::from_str::<Value>(m).ok()
                } else {
                    None
                }
            })
            .as_ref()
    }
}

/// Drops a row's parse tree (see [`Doc::json`]).
fn forget_parse(row: &mut Row) {
    if let Some(d) = row.doc.as_mut() {
        d.json = std::cell::OnceCell::new();
    }
}

struct Row {
    doc: Option<Box<Doc>>,
    vars: Vec<(String, Val)>,
}

/// A query being evaluated: [`Execution::feed`] events, then [`Execution::finish`].
pub struct Execution<'q> {
    query: &'q Query,
    /// Commands before this index are row-wise.
    split: usize,
    limit: usize,
    rows: Vec<Row>,
    kept_bytes: usize,
    stats: Statistics,
}

/// The query kept more than [`MAX_KEPT_ROWS`] rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the query matched more than {MAX_KEPT_ROWS} events or {MAX_KEPT_BYTES} bytes; narrow its time range or filters"
)]
pub struct TooManyRows;

impl<'q> Execution<'q> {
    pub(super) fn new(query: &'q Query, limit: usize) -> Self {
        let split = query
            .commands
            .iter()
            .position(|c| {
                matches!(
                    c,
                    Command::Stats { .. } | Command::Sort(_) | Command::Limit(_)
                )
            })
            .unwrap_or(query.commands.len());
        Self {
            query,
            split,
            limit,
            rows: Vec::new(),
            kept_bytes: 0,
            stats: Statistics::default(),
        }
    }

    /// Runs the row-wise commands over `events`, keeping the rows that pass.
    pub fn feed(&mut self, events: impl IntoIterator<Item = Event>) -> Result<(), TooManyRows> {
        for event in events {
            self.stats.records_scanned += 1.0;
            self.stats.bytes_scanned += event.message.len() as f64;
            let mut row = Row {
                doc: Some(Box::new(Doc {
                    event,
                    json: std::cell::OnceCell::new(),
                })),
                vars: Vec::new(),
            };
            let keep = self.query.commands[..self.split]
                .iter()
                .all(|c| apply_rowwise(c, &mut row));
            if keep {
                let bytes = row.doc.as_ref().map_or(0, |d| d.event.message.len());
                if self.rows.len() >= MAX_KEPT_ROWS || self.kept_bytes + bytes > MAX_KEPT_BYTES {
                    return Err(TooManyRows);
                }
                self.kept_bytes += bytes;
                forget_parse(&mut row);
                self.rows.push(row);
            }
        }
        Ok(())
    }

    /// Runs the remaining commands and renders the results.
    pub fn finish(self) -> Output {
        let Execution {
            query,
            split,
            limit,
            mut rows,
            mut stats,
            ..
        } = self;
        let commands = &query.commands;
        let has_stats = commands.iter().any(|c| matches!(c, Command::Stats { .. }));
        let has_sort = commands.iter().any(|c| matches!(c, Command::Sort(_)));
        if !has_stats && !has_sort {
            // CloudWatch's default order: newest first.
            rows.sort_by_key(|r| {
                std::cmp::Reverse(r.doc.as_ref().map_or(0, |d| d.event.timestamp_ms))
            });
        }
        let mut matched = rows.len();
        let mut frozen = false;
        let mut projection: Vec<String> = Vec::new();
        let mut aggregated = false;
        for c in &commands[..split] {
            if let Command::Fields(items) = c {
                for n in items {
                    if !projection.contains(&n.name) {
                        projection.push(n.name.clone());
                    }
                }
            }
        }
        for c in &commands[split..] {
            match c {
                Command::Fields(items) => {
                    for row in &mut rows {
                        for n in items {
                            if !matches!(&n.expr, Expr::Field(f) if *f == n.name)
                                && let Some(v) = eval(&n.expr, row)
                            {
                                row.vars.push((n.name.clone(), v));
                            }
                        }
                        forget_parse(row);
                    }
                    for n in items {
                        if !projection.contains(&n.name) {
                            projection.push(n.name.clone());
                        }
                    }
                }
                Command::Filter(_) | Command::Parse { .. } => {
                    rows.retain_mut(|row| {
                        let keep = apply_rowwise(c, row);
                        forget_parse(row);
                        keep
                    });
                    if !frozen {
                        matched = rows.len();
                    }
                }
                Command::Stats { aggs, by } => {
                    if !frozen {
                        matched = rows.len();
                        frozen = true;
                    }
                    rows = aggregate(&mut rows, aggs, by);
                    projection = by
                        .iter()
                        .map(|n| n.name.clone())
                        .chain(aggs.iter().map(|(_, name)| name.clone()))
                        .collect();
                    aggregated = true;
                }
                Command::Sort(keys) => sort(&mut rows, keys),
                Command::Limit(n) => rows.truncate(*n),
            }
        }
        rows.truncate(limit);
        if projection.is_empty() && !aggregated {
            projection = ["@timestamp", "@message", "@logStream", "@log"]
                .map(str::to_owned)
                .to_vec();
        }
        stats.records_matched = matched as f64;
        let rows = rows
            .iter()
            .map(|row| {
                projection
                    .iter()
                    .filter_map(|name| get(row, name).map(|v| (name.clone(), render(&v))))
                    .collect()
            })
            .collect();
        Output {
            rows,
            statistics: stats,
        }
    }
}

/// Applies a row-wise command; false drops the row.
fn apply_rowwise(c: &Command, row: &mut Row) -> bool {
    match c {
        Command::Fields(items) => {
            for n in items {
                if !matches!(&n.expr, Expr::Field(f) if *f == n.name)
                    && let Some(v) = eval(&n.expr, row)
                {
                    row.vars.push((n.name.clone(), v));
                }
            }
            true
        }
        Command::Filter(e) => truthy(eval(e, row).as_ref()),
        Command::Parse {
            field,
            regex,
            names,
        } => {
            let Some(text) = get(row, field).map(|v| render(&v)) else {
                return true;
            };
            if let Some(caps) = regex.captures(&text) {
                let named = regex.capture_names().flatten().next().is_some();
                for (k, name) in names.iter().enumerate() {
                    let m = if named {
                        caps.name(name)
                    } else {
                        caps.get(k + 1)
                    };
                    if let Some(m) = m {
                        row.vars
                            .push((name.clone(), Val::Str(m.as_str().to_owned())));
                    }
                }
            }
            true
        }
        Command::Stats { .. } | Command::Sort(_) | Command::Limit(_) => true,
    }
}

/// `path` in a JSON document, flattened as CloudWatch does: `a.b.c` is the key `a.b.c`, or
/// `b.c` inside `a`, or `c` inside `a.b`..., and array elements by index.
fn resolve<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    let child = |key: &str| match v {
        Value::Object(m) => m.get(key),
        Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    };
    if let Some(x) = child(path) {
        return Some(x);
    }
    for (i, _) in path.match_indices('.') {
        if let Some(c) = child(&path[..i])
            && let Some(x) = resolve(c, &path[i + 1..])
        {
            return Some(x);
        }
    }
    None
}

fn from_json(v: &Value) -> Option<Val> {
    match v {
        Value::Null => None,
        Value::Bool(b) => Some(Val::Bool(*b)),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => Val::Int(i),
            None => Val::Float(n.as_f64().unwrap_or(f64::NAN)),
        }),
        Value::String(s) => Some(Val::Str(s.clone())),
        other => Some(Val::Str(other.to_string())),
    }
}

fn get(row: &Row, name: &str) -> Option<Val> {
    if let Some((_, v)) = row.vars.iter().rev().find(|(k, _)| k == name) {
        return Some(v.clone());
    }
    let doc = row.doc.as_ref()?;
    let e = &doc.event;
    match name {
        "@timestamp" => Some(Val::Time(e.timestamp_ms)),
        "@ingestionTime" => Some(Val::Time(e.ingestion_ms)),
        "@message" => Some(Val::Str(e.message.clone())),
        "@logStream" => Some(Val::Str(e.log_stream.clone())),
        "@log" => Some(Val::Str(e.log.clone())),
        _ => doc
            .json()
            .and_then(|j| resolve(j, name))
            .and_then(from_json),
    }
}

fn render(v: &Val) -> String {
    match v {
        Val::Str(s) => s.clone(),
        Val::Int(i) => i.to_string(),
        Val::Float(f) => f.to_string(),
        Val::Bool(b) => b.to_string(),
        Val::Time(ms) => format_timestamp(*ms),
    }
}

/// `2024-05-01 12:34:56.789`, as CloudWatch shows `@timestamp`.
fn format_timestamp(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]"
    );
    t.format(&f).unwrap_or_default()
}

#[derive(Debug, Clone, Copy)]
enum Num {
    I(i64),
    F(f64),
}

impl Num {
    fn f(self) -> f64 {
        match self {
            Num::I(i) => i as f64,
            Num::F(f) => f,
        }
    }
}

fn parse_num(s: &str) -> Option<Num> {
    let s = s.trim();
    if let Ok(i) = s.parse::<i64>() {
        return Some(Num::I(i));
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite()).map(Num::F)
}

fn num(v: &Val) -> Option<Num> {
    match v {
        Val::Int(i) | Val::Time(i) => Some(Num::I(*i)),
        Val::Float(f) => Some(Num::F(*f)),
        Val::Bool(b) => Some(Num::I(i64::from(*b))),
        Val::Str(s) => parse_num(s),
    }
}

fn cmp_num(a: Num, b: Num) -> Option<Ordering> {
    match (a, b) {
        (Num::I(x), Num::I(y)) => Some(x.cmp(&y)),
        _ => a.f().partial_cmp(&b.f()),
    }
}

/// Compares as numbers when either side is a number (and the other reads as one), else as text.
fn compare(a: &Val, b: &Val) -> Option<Ordering> {
    let numeric = |v: &Val| !matches!(v, Val::Str(_));
    if (numeric(a) || numeric(b))
        && let (Some(x), Some(y)) = (num(a), num(b))
    {
        return cmp_num(x, y);
    }
    Some(render(a).cmp(&render(b)))
}

fn truthy(v: Option<&Val>) -> bool {
    match v {
        None => false,
        Some(Val::Bool(b)) => *b,
        Some(Val::Int(i)) => *i != 0,
        Some(Val::Float(f)) => *f != 0.0,
        Some(Val::Str(s)) => !s.is_empty(),
        Some(Val::Time(_)) => true,
    }
}

fn arith(op: ArithOp, a: Num, b: Num) -> Option<Val> {
    if let (Num::I(x), Num::I(y)) = (a, b) {
        let exact = match op {
            ArithOp::Add => x.checked_add(y),
            ArithOp::Sub => x.checked_sub(y),
            ArithOp::Mul => x.checked_mul(y),
            ArithOp::Rem => return x.checked_rem(y).map(Val::Int),
            ArithOp::Div => None,
        };
        if let Some(v) = exact {
            return Some(Val::Int(v));
        }
    }
    let (x, y) = (a.f(), b.f());
    let r = match op {
        ArithOp::Add => x + y,
        ArithOp::Sub => x - y,
        ArithOp::Mul => x * y,
        ArithOp::Div | ArithOp::Rem if y == 0.0 => return None,
        ArithOp::Div => x / y,
        ArithOp::Rem => x % y,
    };
    r.is_finite().then_some(Val::Float(r))
}

fn eval(e: &Expr, row: &Row) -> Option<Val> {
    match e {
        Expr::Field(f) => get(row, f),
        Expr::Str(s) => Some(Val::Str(s.clone())),
        Expr::Int(i) => Some(Val::Int(*i)),
        Expr::Float(f) => Some(Val::Float(*f)),
        Expr::Not(x) => Some(Val::Bool(!truthy(eval(x, row).as_ref()))),
        Expr::And(a, b) => Some(Val::Bool(
            truthy(eval(a, row).as_ref()) && truthy(eval(b, row).as_ref()),
        )),
        Expr::Or(a, b) => Some(Val::Bool(
            truthy(eval(a, row).as_ref()) || truthy(eval(b, row).as_ref()),
        )),
        Expr::Cmp(op, a, b) => {
            let (Some(x), Some(y)) = (eval(a, row), eval(b, row)) else {
                // A comparison with a missing field is false, whichever the operator.
                return Some(Val::Bool(false));
            };
            let o = compare(&x, &y);
            Some(Val::Bool(match op {
                CmpOp::Eq => o == Some(Ordering::Equal),
                CmpOp::Ne => o.is_some_and(|o| o != Ordering::Equal),
                CmpOp::Lt => o == Some(Ordering::Less),
                CmpOp::Gt => o == Some(Ordering::Greater),
                CmpOp::Le => o.is_some_and(|o| o != Ordering::Greater),
                CmpOp::Ge => o.is_some_and(|o| o != Ordering::Less),
            }))
        }
        Expr::Like(a, m) => {
            let Some(text) = eval(a, row).map(|v| render(&v)) else {
                return Some(Val::Bool(false));
            };
            Some(Val::Bool(match m {
                Matcher::Contains(s) => text.contains(s.as_str()),
                Matcher::Regex(r) => r.is_match(&text),
            }))
        }
        Expr::In(a, items) => {
            let Some(x) = eval(a, row) else {
                return Some(Val::Bool(false));
            };
            Some(Val::Bool(items.iter().any(|i| {
                eval(i, row).is_some_and(|y| compare(&x, &y) == Some(Ordering::Equal))
            })))
        }
        Expr::Arith(op, a, b) => {
            let x = num(&eval(a, row)?)?;
            let y = num(&eval(b, row)?)?;
            arith(*op, x, y)
        }
        Expr::IsPresent(f) => Some(Val::Bool(get(row, f).is_some())),
    }
}

/// Total order for `sort`: missing values last, numbers before text.
fn sort_cmp(a: Option<&Val>, b: Option<&Val>, desc: bool) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => {
            let o = match (num(x), num(y)) {
                (Some(p), Some(q)) => cmp_num(p, q).unwrap_or(Ordering::Equal),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => render(x).cmp(&render(y)),
            };
            if desc { o.reverse() } else { o }
        }
    }
}

fn sort(rows: &mut Vec<Row>, keys: &[(Expr, bool)]) {
    let mut keyed: Vec<(Vec<Option<Val>>, Row)> = rows
        .drain(..)
        .map(|mut r| {
            let k = keys.iter().map(|(e, _)| eval(e, &r)).collect();
            forget_parse(&mut r);
            (k, r)
        })
        .collect();
    keyed.sort_by(|(a, _), (b, _)| {
        for (k, (_, desc)) in keys.iter().enumerate() {
            let o = sort_cmp(a[k].as_ref(), b[k].as_ref(), *desc);
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    });
    rows.extend(keyed.into_iter().map(|(_, r)| r));
}

enum State {
    Count(u64),
    Distinct(HashSet<String>),
    Sum {
        int: i64,
        float: f64,
        is_float: bool,
    },
    Min(Option<Val>),
    Max(Option<Val>),
    Avg {
        sum: f64,
        n: u64,
    },
}

impl State {
    fn new(f: AggFn) -> Self {
        match f {
            AggFn::Count => State::Count(0),
            AggFn::CountDistinct => State::Distinct(HashSet::new()),
            AggFn::Sum => State::Sum {
                int: 0,
                float: 0.0,
                is_float: false,
            },
            AggFn::Min => State::Min(None),
            AggFn::Max => State::Max(None),
            AggFn::Avg => State::Avg { sum: 0.0, n: 0 },
        }
    }

    fn add(&mut self, v: Option<Val>) {
        match self {
            State::Count(n) => *n += u64::from(v.is_some()),
            State::Distinct(set) => {
                if let Some(v) = v {
                    set.insert(render(&v));
                }
            }
            State::Sum {
                int,
                float,
                is_float,
            } => match v.as_ref().and_then(num) {
                Some(Num::I(i)) if !*is_float => match int.checked_add(i) {
                    Some(s) => *int = s,
                    None => {
                        *is_float = true;
                        *float = *int as f64 + i as f64;
                    }
                },
                Some(n) => {
                    if !*is_float {
                        *is_float = true;
                        *float = *int as f64;
                    }
                    *float += n.f();
                }
                None => {}
            },
            State::Min(cur) => keep(cur, v, Ordering::Less),
            State::Max(cur) => keep(cur, v, Ordering::Greater),
            State::Avg { sum, n } => {
                if let Some(x) = v.as_ref().and_then(num) {
                    *sum += x.f();
                    *n += 1;
                }
            }
        }
    }

    fn value(self) -> Option<Val> {
        match self {
            State::Count(n) => Some(Val::Int(i64::try_from(n).unwrap_or(i64::MAX))),
            State::Distinct(s) => Some(Val::Int(i64::try_from(s.len()).unwrap_or(i64::MAX))),
            State::Sum {
                int,
                float,
                is_float,
            } => Some(if is_float {
                Val::Float(float)
            } else {
                Val::Int(int)
            }),
            State::Min(v) | State::Max(v) => v,
            State::Avg { sum, n } => (n > 0).then(|| Val::Float(sum / n as f64)),
        }
    }
}

/// Replaces `cur` with `v` when `v` compares to it as `want` (or `cur` is empty).
fn keep(cur: &mut Option<Val>, v: Option<Val>, want: Ordering) {
    let Some(v) = v else { return };
    if cur.as_ref().is_none_or(|c| compare(&v, c) == Some(want)) {
        *cur = Some(v);
    }
}

fn aggregate(rows: &mut [Row], aggs: &[(Agg, String)], by: &[super::Named]) -> Vec<Row> {
    let mut index: HashMap<Vec<Option<String>>, usize> = HashMap::new();
    let mut groups: Vec<(Vec<Option<Val>>, Vec<State>)> = Vec::new();
    for row in rows.iter_mut() {
        let keys: Vec<Option<Val>> = by.iter().map(|n| eval(&n.expr, row)).collect();
        let id: Vec<Option<String>> = keys.iter().map(|k| k.as_ref().map(render)).collect();
        let g = *index.entry(id).or_insert_with(|| {
            groups.push((keys, aggs.iter().map(|(a, _)| State::new(a.f)).collect()));
            groups.len() - 1
        });
        for (k, (agg, _)) in aggs.iter().enumerate() {
            let v = match &agg.arg {
                None => Some(Val::Int(1)),
                Some(e) => eval(e, row),
            };
            groups[g].1[k].add(v);
        }
        forget_parse(row);
    }
    // Without `by`, stats over no rows is still one row (count 0), as CloudWatch answers.
    if groups.is_empty() && by.is_empty() {
        groups.push((
            Vec::new(),
            aggs.iter().map(|(a, _)| State::new(a.f)).collect(),
        ));
    }
    groups
        .into_iter()
        .map(|(keys, states)| {
            let mut vars = Vec::with_capacity(keys.len() + states.len());
            for (n, k) in by.iter().zip(keys) {
                if let Some(k) = k {
                    vars.push((n.name.clone(), k));
                }
            }
            for ((_, name), s) in aggs.iter().zip(states) {
                if let Some(v) = s.value() {
                    vars.push((name.clone(), v));
                }
            }
            Row { doc: None, vars }
        })
        .collect()
}
