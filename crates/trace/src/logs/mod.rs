//! The CloudWatch Logs API subset AgentCore's tools call (`StartQuery`, `GetQueryResults`,
//! `StopQuery`, `GetLogEvents`, `FilterLogEvents`, `DescribeLogGroups`, `DescribeLogStreams`,
//! `CreateLogGroup`, `CreateLogStream`, `PutLogEvents`), over the trace database.
//!
//! Log groups:
//! - `aws/spans` (stream `default`): one span document per stored span ([`doc::span_document`]);
//! - `/aws/bedrock-agentcore/runtimes/<runtimeId>-<endpoint>` (stream `runtime-logs`): that
//!   endpoint's agents' OTel log records ([`doc::log_document`]); the group exists once the
//!   endpoint has spans or log records;
//! - any group created with `CreateLogGroup`, and streams and events written into any group,
//!   stored in tables of their own (`store.rs`).
//!
//! Queries run synchronously inside `StartQuery`; their results are kept, per caller, in a
//! bounded map ([`MAX_QUERIES`], oldest forgotten first).
//!
//! Architecture Invariant: a runtime's own credentials read only that runtime's spans in
//! `aws/spans` (the row filter here; which groups they may touch at all is the authorization
//! layer's decision).

mod doc;
pub mod insights;
mod store;
pub mod wire;

pub use doc::{log_document, span_document};
pub use store::{Key, LogStore, RuntimeGroup, Select, StoredEvent, StoredGroup, StreamInfo};

use insights::{Event, Output, Query};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use wire::*;

/// The group of every span.
pub const SPANS_GROUP: &str = "aws/spans";
/// Its one stream.
pub const SPANS_STREAM: &str = "default";
/// Where a runtime endpoint's group names start.
pub const RUNTIME_GROUP_PREFIX: &str = "/aws/bedrock-agentcore/runtimes/";
/// The stream of a runtime group's log records.
pub const RUNTIME_STREAM: &str = "runtime-logs";

/// Query results kept for `GetQueryResults`: at most this many queries, and this many bytes of
/// result fields and values (the oldest are forgotten first).
pub const MAX_QUERIES: usize = 1000;
pub const MAX_RESULT_BYTES: usize = 256 * 1024 * 1024;
/// Rows per page read from the store.
const PAGE: u32 = 2000;
/// At most this many events, and this many bytes of messages, per `GetLogEvents` or
/// `FilterLogEvents` answer (CloudWatch's limits).
const MAX_EVENTS: u32 = 10_000;
const MAX_RESPONSE_BYTES: usize = 1_048_576;
/// Default and largest row count of a query's results.
const DEFAULT_QUERY_LIMIT: u32 = 10_000;
/// `PutLogEvents` limits: events per batch, bytes per batch (message bytes + 26 each), how far
/// ahead and behind an event's timestamp may be.
const MAX_BATCH_EVENTS: usize = 10_000;
const MAX_BATCH_BYTES: usize = 1_048_576;
const TOO_NEW_MS: i64 = 2 * 3600 * 1000;
const TOO_OLD_MS: i64 = 14 * 24 * 3600 * 1000;

/// Errors of the Logs API, one per CloudWatch exception.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    Malformed(insights::Malformed),
    #[error("log store: {0}")]
    Store(#[from] crate::Error),
}

impl Error {
    /// The `__type` CloudWatch answers with.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotFound(_) => "ResourceNotFoundException",
            Error::AlreadyExists(_) => "ResourceAlreadyExistsException",
            Error::InvalidParameter(_) => "InvalidParameterException",
            Error::Malformed(_) => "MalformedQueryException",
            Error::Store(_) => "ServiceUnavailableException",
        }
    }

    /// HTTP status: CloudWatch answers client errors with 400.
    pub fn status(&self) -> u16 {
        match self {
            Error::Store(_) => 500,
            _ => 400,
        }
    }

    /// The JSON 1.1 error body (`__type`, `message`, and for a malformed query its
    /// `queryCompileError`).
    pub fn body(&self) -> serde_json::Value {
        let message = match self {
            Error::Store(_) => "the log store is unavailable; retry".to_owned(),
            other => other.to_string(),
        };
        let mut v = serde_json::json!({ "__type": self.code(), "message": message });
        if let Error::Malformed(m) = self {
            v["queryCompileError"] = serde_json::json!({
                "location": { "startCharOffset": m.offset, "endCharOffset": m.offset },
                "message": m.message,
            });
        }
        v
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidParameter(msg.into())
}

/// Who is calling: the access key (query results are theirs alone) and, for a runtime's own
/// credentials, the runtime whose spans alone they read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub access_key_id: String,
    pub runtime_id: Option<String>,
}

impl Caller {
    /// Whether this caller may see `group` in a listing.
    fn lists(&self, group: &str) -> bool {
        match &self.runtime_id {
            None => true,
            Some(r) => {
                group == SPANS_GROUP
                    || group
                        .strip_prefix(RUNTIME_GROUP_PREFIX)
                        .and_then(|rest| rest.strip_prefix(r.as_str()))
                        .is_some_and(|rest| rest.starts_with('-'))
            }
        }
    }
}

/// Berth's own part of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Builtin {
    Spans,
    Runtime {
        runtime_id: String,
        endpoint: String,
    },
}

impl Builtin {
    fn stream(&self) -> &'static str {
        match self {
            Builtin::Spans => SPANS_STREAM,
            Builtin::Runtime { .. } => RUNTIME_STREAM,
        }
    }
}

/// A group as found: Berth's own part, the created part, or both.
#[derive(Debug, Clone)]
struct Group {
    name: String,
    builtin: Option<Builtin>,
    created_ms: i64,
    stored_bytes: i64,
}

/// `<runtimeId>-<endpoint>` of a runtime group's name (endpoint names have no `-`).
fn runtime_of(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix(RUNTIME_GROUP_PREFIX)?;
    let (rid, ep) = rest.rsplit_once('-')?;
    (!rid.is_empty() && !ep.is_empty() && !rid.contains('/')).then_some((rid, ep))
}

/// A group name from a name or an ARN (`arn:aws:logs:r:a:log-group:NAME[:*]`).
pub fn group_name(identifier: &str) -> &str {
    match identifier.split_once(":log-group:") {
        Some((prefix, rest)) if prefix.starts_with("arn:") => {
            rest.strip_suffix(":*").unwrap_or(rest)
        }
        _ => identifier,
    }
}

fn valid_group_name(name: &str) -> bool {
    (1..=512).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/#".contains(c))
}

fn valid_stream_name(name: &str) -> bool {
    (1..=512).contains(&name.len()) && !name.contains(':') && !name.contains('*')
}

struct Kept {
    owner: String,
    output: Result<Output, String>,
    bytes: usize,
}

#[derive(Default)]
struct Queries {
    order: VecDeque<String>,
    by_id: HashMap<String, Kept>,
    bytes: usize,
}

/// The Logs API. Cheap to clone.
#[derive(Clone)]
pub struct Logs {
    store: Arc<dyn LogStore>,
    region: String,
    account: String,
    /// When `aws/spans` came to be (this server's start).
    started_ms: i64,
    queries: Arc<Mutex<Queries>>,
}

fn now_ms() -> i64 {
    crate::now_ns() / 1_000_000
}

/// `f/<time>/<id>` (forward) or `b/<time>/<id>` (backward).
fn token(dir: char, key: Key) -> String {
    format!("{dir}/{}/{}", key.0, key.1)
}

fn parse_token(t: &str) -> Result<(char, Key), Error> {
    let bad = || invalid("The specified nextToken is invalid.");
    let mut parts = t.splitn(3, '/');
    let dir = match parts.next() {
        Some("f") => 'f',
        Some("b") => 'b',
        _ => return Err(bad()),
    };
    let a = parts.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
    let b = parts.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
    Ok((dir, (a, b)))
}

/// One candidate event of a group, with where it came from.
struct Found {
    key: Key,
    stream: String,
    timestamp_ms: i64,
    ingestion_ms: i64,
    message: String,
}

/// A FilterLogEvents pattern: terms that must all appear, `?term`s of which one must, and
/// `-term`s that must not.
struct Pattern {
    all: Vec<String>,
    any: Vec<String>,
    none: Vec<String>,
}

impl Pattern {
    fn parse(p: &str) -> Result<Self, Error> {
        let p = p.trim();
        if p.starts_with('{') || p.starts_with('[') {
            return Err(invalid(
                "JSON and space-delimited filter patterns are not supported by this server; use \
                 terms, \"quoted phrases\", ?optional and -excluded terms, or StartQuery",
            ));
        }
        let mut out = Pattern {
            all: Vec::new(),
            any: Vec::new(),
            none: Vec::new(),
        };
        let mut chars = p.chars().peekable();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                chars.next();
                continue;
            }
            let mut kind = 'a';
            if c == '?' || c == '-' {
                kind = c;
                chars.next();
            }
            let mut term = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                let mut closed = false;
                for ch in chars.by_ref() {
                    if ch == '"' {
                        closed = true;
                        break;
                    }
                    term.push(ch);
                }
                if !closed {
                    return Err(invalid("Invalid filter pattern: unterminated quote"));
                }
            } else {
                while let Some(&ch) = chars.peek() {
                    if ch.is_whitespace() {
                        break;
                    }
                    term.push(ch);
                    chars.next();
                }
            }
            if term.is_empty() {
                continue;
            }
            match kind {
                '?' => out.any.push(term),
                '-' => out.none.push(term),
                _ => out.all.push(term),
            }
        }
        Ok(out)
    }

    fn matches(&self, m: &str) -> bool {
        self.all.iter().all(|t| m.contains(t.as_str()))
            && (self.any.is_empty() || self.any.iter().any(|t| m.contains(t.as_str())))
            && !self.none.iter().any(|t| m.contains(t.as_str()))
    }
}

impl Logs {
    /// The Logs API over `store`, answering as `account` in `region`.
    pub fn new(store: Arc<dyn LogStore>, region: &str, account: &str) -> Self {
        Self {
            store,
            region: region.to_owned(),
            account: account.to_owned(),
            started_ms: now_ms(),
            queries: Arc::new(Mutex::new(Queries::default())),
        }
    }

    fn arn(&self, group: &str) -> String {
        format!(
            "arn:aws:logs:{}:{}:log-group:{group}",
            self.region, self.account
        )
    }

    fn not_found(&self, group: &str) -> Error {
        Error::NotFound(format!(
            "Log group '{group}' does not exist for account ID '{}'",
            self.account
        ))
    }

    /// The group called `name`, if it exists.
    async fn find(&self, name: &str) -> Result<Option<Group>, Error> {
        let stored = self.store.stored_group(name).await?;
        let builtin = if name == SPANS_GROUP {
            Some((Builtin::Spans, self.started_ms))
        } else if let Some((rid, ep)) = runtime_of(name) {
            self.store.runtime_group(rid, ep).await?.map(|g| {
                (
                    Builtin::Runtime {
                        runtime_id: g.runtime_id,
                        endpoint: g.endpoint,
                    },
                    g.first_ns / 1_000_000,
                )
            })
        } else {
            None
        };
        if builtin.is_none() && stored.is_none() {
            return Ok(None);
        }
        let created_ms = match (&builtin, &stored) {
            (Some((_, b)), Some(s)) => (*b).min(s.created_ms),
            (Some((_, b)), None) => *b,
            (None, Some(s)) => s.created_ms,
            (None, None) => 0,
        };
        Ok(Some(Group {
            name: name.to_owned(),
            builtin: builtin.map(|(b, _)| b),
            created_ms,
            stored_bytes: stored.map_or(0, |s| s.stored_bytes),
        }))
    }

    async fn require(&self, name: &str) -> Result<Group, Error> {
        self.find(name).await?.ok_or_else(|| self.not_found(name))
    }

    /// `logGroupName` or `logGroupIdentifier`, exactly one.
    fn one_group<'a>(name: Option<&'a str>, identifier: Option<&'a str>) -> Result<&'a str, Error> {
        match (name, identifier) {
            (Some(n), None) => Ok(n),
            (None, Some(i)) => Ok(group_name(i)),
            (Some(_), Some(_)) => Err(invalid(
                "LogGroup name and LogGroup ARN are mutually exclusive parameters.",
            )),
            (None, None) => Err(invalid(
                "Should provide either name or ARN of the log group.",
            )),
        }
    }

    /// A page of Berth's own events of `builtin`, as events of its stream.
    async fn builtin_page(
        &self,
        caller: &Caller,
        builtin: &Builtin,
        sel: &Select,
    ) -> Result<Vec<Found>, Error> {
        Ok(match builtin {
            Builtin::Spans => {
                let sel = Select {
                    runtime_id: caller.runtime_id.clone(),
                    ..sel.clone()
                };
                self.store
                    .spans_page(&sel)
                    .await?
                    .into_iter()
                    .map(|(key, s)| Found {
                        key,
                        stream: SPANS_STREAM.to_owned(),
                        timestamp_ms: s.start_ns / 1_000_000,
                        ingestion_ms: s.end_ns / 1_000_000,
                        message: span_document(&s).to_string(),
                    })
                    .collect()
            }
            Builtin::Runtime {
                runtime_id,
                endpoint,
            } => self
                .store
                .logs_page(runtime_id, endpoint, sel)
                .await?
                .into_iter()
                .map(|(key, l)| Found {
                    key,
                    stream: RUNTIME_STREAM.to_owned(),
                    timestamp_ms: l.time_ns / 1_000_000,
                    ingestion_ms: l.time_ns / 1_000_000,
                    message: log_document(&l).to_string(),
                })
                .collect(),
        })
    }

    async fn stored_page(
        &self,
        group: &str,
        streams: Option<&[String]>,
        sel: &Select,
    ) -> Result<Vec<Found>, Error> {
        Ok(self
            .store
            .events_page(group, streams, sel)
            .await?
            .into_iter()
            .map(|e| Found {
                key: e.key,
                stream: e.stream,
                timestamp_ms: e.timestamp_ms,
                ingestion_ms: e.ingestion_ms,
                message: e.message,
            })
            .collect())
    }

    /// Deletes events written through `PutLogEvents` older than `max_age` every `every`, until
    /// `shutdown` (the spans and log records of Berth's own groups follow the trace store's
    /// retention).
    pub async fn run_retention(
        self,
        max_age: std::time::Duration,
        every: std::time::Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let age_ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self
                .store
                .retain_events(now_ms().saturating_sub(age_ms))
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(events = n, "log event retention"),
                Err(e) => tracing::warn!(error = %e, "log event retention failed"),
            }
        }
    }

    /// `StartQuery`: runs the query now and keeps its results.
    pub async fn start_query(
        &self,
        caller: &Caller,
        req: StartQueryRequest,
    ) -> Result<StartQueryResponse, Error> {
        if let Some(lang) = req.query_language.as_deref()
            && lang != "CWLI"
        {
            return Err(invalid(format!(
                "queryLanguage {lang} is not supported by this server; use CWLI"
            )));
        }
        let mut names: Vec<String> = Vec::new();
        names.extend(req.log_group_name.clone());
        names.extend(req.log_group_names.clone().unwrap_or_default());
        names.extend(
            req.log_group_identifiers
                .iter()
                .flatten()
                .map(|i| group_name(i).to_owned()),
        );
        if names.is_empty() {
            return Err(invalid(
                "Log group names or identifiers must be specified for this query",
            ));
        }
        names.dedup();
        if req.end_time < req.start_time {
            return Err(invalid("End time should not be before the start time"));
        }
        let query = Query::parse(&req.query_string).map_err(Error::Malformed)?;
        let mut groups = Vec::with_capacity(names.len());
        for n in &names {
            groups.push(self.require(n).await?);
        }
        let limit = req.limit.unwrap_or(DEFAULT_QUERY_LIMIT).max(1);
        let push = query.pushdown();
        // Seconds, both ends included.
        let window = Select {
            from_ms: Some(req.start_time.saturating_mul(1000)),
            to_ms: Some(req.end_time.saturating_add(1).saturating_mul(1000)),
            limit: PAGE,
            ..Select::default()
        };
        let mut run = query.execute(usize::try_from(limit).unwrap_or(usize::MAX));
        let mut failed = None;
        'groups: for g in &groups {
            let log = format!("{}:{}", self.account, g.name);
            let to_event = |f: Found| Event {
                timestamp_ms: f.timestamp_ms,
                ingestion_ms: f.ingestion_ms,
                message: f.message,
                log_stream: f.stream,
                log: log.clone(),
            };
            if let Some(b) = &g.builtin {
                let mut sel = Select {
                    session_id: push.session_id.clone(),
                    trace_ids: push.trace_ids.clone(),
                    ..window.clone()
                };
                loop {
                    let page = self.builtin_page(caller, b, &sel).await?;
                    let Some(last) = page.last().map(|f| f.key) else {
                        break;
                    };
                    let n = page.len();
                    if let Err(e) = run.feed(page.into_iter().map(to_event)) {
                        failed = Some(e.to_string());
                        break 'groups;
                    }
                    if n < PAGE as usize {
                        break;
                    }
                    sel.after = Some(last);
                }
            }
            let mut sel = window.clone();
            loop {
                let page = self.stored_page(&g.name, None, &sel).await?;
                let Some(last) = page.last().map(|f| f.key) else {
                    break;
                };
                let n = page.len();
                if let Err(e) = run.feed(page.into_iter().map(to_event)) {
                    failed = Some(e.to_string());
                    break 'groups;
                }
                if n < PAGE as usize {
                    break;
                }
                sel.after = Some(last);
            }
        }
        let output = match failed {
            Some(msg) => Err(msg),
            None => Ok(run.finish()),
        };
        let id = uuid::Uuid::new_v4().to_string();
        let bytes = output.as_ref().map_or(0, |o| {
            o.rows
                .iter()
                .flatten()
                .map(|(f, v)| f.len() + v.len() + 16)
                .sum()
        });
        let mut q = self
            .queries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while q.order.len() >= MAX_QUERIES
            || (q.bytes + bytes > MAX_RESULT_BYTES && !q.order.is_empty())
        {
            if let Some(old) = q.order.pop_front()
                && let Some(k) = q.by_id.remove(&old)
            {
                q.bytes -= k.bytes;
            }
        }
        q.bytes += bytes;
        q.order.push_back(id.clone());
        q.by_id.insert(
            id.clone(),
            Kept {
                owner: caller.access_key_id.clone(),
                output,
                bytes,
            },
        );
        Ok(StartQueryResponse { query_id: id })
    }

    /// `GetQueryResults`.
    pub fn get_query_results(
        &self,
        caller: &Caller,
        req: &GetQueryResultsRequest,
    ) -> Result<GetQueryResultsResponse, Error> {
        let q = self
            .queries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let kept = q
            .by_id
            .get(&req.query_id)
            .filter(|k| k.owner == caller.access_key_id)
            .ok_or_else(|| Error::NotFound(format!("Query {} not found", req.query_id)))?;
        let out = match &kept.output {
            Ok(out) => out,
            Err(_) => {
                return Ok(GetQueryResultsResponse {
                    query_language: "CWLI",
                    results: Vec::new(),
                    statistics: QueryStatistics::default(),
                    status: "Failed",
                    next_token: None,
                });
            }
        };
        let start = match &req.next_token {
            Some(t) => t
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= out.rows.len())
                .ok_or_else(|| invalid("The specified nextToken is invalid."))?,
            None => 0,
        };
        let take = match req.max_items {
            Some(n) if n > 0 => n as usize,
            _ => out.rows.len(),
        };
        let end = start.saturating_add(take).min(out.rows.len());
        let results = out.rows[start..end]
            .iter()
            .map(|row| {
                row.iter()
                    .map(|(f, v)| ResultField {
                        field: f.clone(),
                        value: v.clone(),
                    })
                    .collect()
            })
            .collect();
        Ok(GetQueryResultsResponse {
            query_language: "CWLI",
            results,
            statistics: QueryStatistics {
                records_matched: out.statistics.records_matched,
                records_scanned: out.statistics.records_scanned,
                bytes_scanned: out.statistics.bytes_scanned,
            },
            status: "Complete",
            next_token: (end < out.rows.len()).then(|| end.to_string()),
        })
    }

    /// `StopQuery`: every query has finished by the time `StartQuery` answers, so there is
    /// nothing to stop (`success: false`, as CloudWatch answers for a finished query).
    pub fn stop_query(
        &self,
        caller: &Caller,
        req: &StopQueryRequest,
    ) -> Result<StopQueryResponse, Error> {
        let q = self
            .queries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        q.by_id
            .get(&req.query_id)
            .filter(|k| k.owner == caller.access_key_id)
            .ok_or_else(|| Error::NotFound(format!("Query {} not found", req.query_id)))?;
        Ok(StopQueryResponse { success: false })
    }

    /// `DescribeLogGroups`, by name, paged by the last name of the previous page.
    pub async fn describe_log_groups(
        &self,
        caller: &Caller,
        req: &DescribeLogGroupsRequest,
    ) -> Result<DescribeLogGroupsResponse, Error> {
        if req.log_group_name_prefix.is_some() && req.log_group_name_pattern.is_some() {
            return Err(invalid(
                "LogGroup name prefix and LogGroup name pattern are mutually exclusive parameters.",
            ));
        }
        let limit = req.limit.unwrap_or(50).clamp(1, 50) as usize;
        let mut all: Vec<Group> = vec![Group {
            name: SPANS_GROUP.to_owned(),
            builtin: Some(Builtin::Spans),
            created_ms: self.started_ms,
            stored_bytes: 0,
        }];
        for g in self.store.runtime_groups().await? {
            all.push(Group {
                name: format!("{RUNTIME_GROUP_PREFIX}{}-{}", g.runtime_id, g.endpoint),
                builtin: Some(Builtin::Runtime {
                    runtime_id: g.runtime_id,
                    endpoint: g.endpoint,
                }),
                created_ms: g.first_ns / 1_000_000,
                stored_bytes: 0,
            });
        }
        for s in self.store.stored_groups().await? {
            match all.iter_mut().find(|g| g.name == s.name) {
                Some(g) => {
                    g.created_ms = g.created_ms.min(s.created_ms);
                    g.stored_bytes = s.stored_bytes;
                }
                None => all.push(Group {
                    name: s.name,
                    builtin: None,
                    created_ms: s.created_ms,
                    stored_bytes: s.stored_bytes,
                }),
            }
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        let wanted: Option<Vec<&str>> = req
            .log_group_identifiers
            .as_ref()
            .map(|ids| ids.iter().map(|i| group_name(i)).collect());
        let pattern = req.log_group_name_pattern.as_deref().map(str::to_lowercase);
        let class_ok = req
            .log_group_class
            .as_deref()
            .is_none_or(|c| c == "STANDARD");
        let mut groups: Vec<&Group> = all
            .iter()
            .filter(|g| class_ok && caller.lists(&g.name))
            .filter(|g| {
                req.log_group_name_prefix
                    .as_deref()
                    .is_none_or(|p| g.name.starts_with(p))
            })
            .filter(|g| {
                pattern
                    .as_deref()
                    .is_none_or(|p| g.name.to_lowercase().contains(p))
            })
            .filter(|g| wanted.as_ref().is_none_or(|w| w.contains(&g.name.as_str())))
            .filter(|g| {
                req.next_token
                    .as_deref()
                    .is_none_or(|t| g.name.as_str() > t)
            })
            .collect();
        let more = groups.len() > limit;
        groups.truncate(limit);
        Ok(DescribeLogGroupsResponse {
            next_token: if more {
                groups.last().map(|g| g.name.clone())
            } else {
                None
            },
            log_groups: groups
                .into_iter()
                .map(|g| LogGroup {
                    log_group_name: g.name.clone(),
                    creation_time: g.created_ms,
                    metric_filter_count: 0,
                    arn: format!("{}:*", self.arn(&g.name)),
                    log_group_arn: self.arn(&g.name),
                    stored_bytes: g.stored_bytes,
                    log_group_class: "STANDARD",
                })
                .collect(),
        })
    }

    /// `DescribeLogStreams`.
    pub async fn describe_log_streams(
        &self,
        req: &DescribeLogStreamsRequest,
    ) -> Result<DescribeLogStreamsResponse, Error> {
        let name = Self::one_group(
            req.log_group_name.as_deref(),
            req.log_group_identifier.as_deref(),
        )?;
        let by_time = match req.order_by.as_deref() {
            None | Some("LogStreamName") => false,
            Some("LastEventTime") => true,
            Some(other) => return Err(invalid(format!("Invalid orderBy: {other}"))),
        };
        if by_time && req.log_stream_name_prefix.is_some() {
            return Err(invalid(
                "Cannot order by LastEventTime with a logStreamNamePrefix.",
            ));
        }
        let group = self.require(name).await?;
        let mut streams: Vec<StreamInfo> = self.store.streams(name).await?;
        if let Some(b) = &group.builtin {
            streams.push(StreamInfo {
                name: b.stream().to_owned(),
                created_ms: group.created_ms,
                first_event_ms: None,
                last_event_ms: None,
                last_ingestion_ms: None,
                stored_bytes: 0,
            });
        }
        if let Some(p) = &req.log_stream_name_prefix {
            streams.retain(|s| s.name.starts_with(p.as_str()));
        }
        if by_time {
            streams.sort_by(|a, b| {
                (a.last_event_ms.unwrap_or(0), &a.name)
                    .cmp(&(b.last_event_ms.unwrap_or(0), &b.name))
            });
        } else {
            streams.sort_by(|a, b| a.name.cmp(&b.name));
        }
        if req.descending.unwrap_or(false) {
            streams.reverse();
        }
        let start = match &req.next_token {
            Some(t) => t
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= streams.len())
                .ok_or_else(|| invalid("The specified nextToken is invalid."))?,
            None => 0,
        };
        let limit = req.limit.unwrap_or(50).clamp(1, 50) as usize;
        let end = start.saturating_add(limit).min(streams.len());
        let arn = self.arn(name);
        Ok(DescribeLogStreamsResponse {
            log_streams: streams[start..end]
                .iter()
                .map(|s| LogStream {
                    log_stream_name: s.name.clone(),
                    creation_time: s.created_ms,
                    first_event_timestamp: s.first_event_ms,
                    last_event_timestamp: s.last_event_ms,
                    last_ingestion_time: s.last_ingestion_ms,
                    arn: format!("{arn}:log-stream:{}", s.name),
                    stored_bytes: s.stored_bytes,
                })
                .collect(),
            next_token: (end < streams.len()).then(|| end.to_string()),
        })
    }

    /// `CreateLogGroup`.
    pub async fn create_log_group(&self, req: &CreateLogGroupRequest) -> Result<(), Error> {
        if !valid_group_name(&req.log_group_name) {
            return Err(invalid(format!(
                "1 validation error detected: Value '{}' at 'logGroupName' failed to satisfy \
                 constraint: Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+",
                req.log_group_name
            )));
        }
        if req.kms_key_id.is_some() {
            return Err(invalid("kmsKeyId is not supported by this server"));
        }
        if req.tags.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(invalid("tags are not supported by this server"));
        }
        if req
            .log_group_class
            .as_deref()
            .is_some_and(|c| c != "STANDARD")
        {
            return Err(invalid("only the STANDARD log group class is supported"));
        }
        if req.deletion_protection_enabled == Some(true) {
            return Err(invalid(
                "deletion protection is not supported by this server",
            ));
        }
        let exists = || Error::AlreadyExists("The specified log group already exists".into());
        if self.find(&req.log_group_name).await?.is_some() {
            return Err(exists());
        }
        if !self
            .store
            .create_group(&req.log_group_name, now_ms())
            .await?
        {
            return Err(exists());
        }
        Ok(())
    }

    /// `CreateLogStream`.
    pub async fn create_log_stream(&self, req: &CreateLogStreamRequest) -> Result<(), Error> {
        if !valid_stream_name(&req.log_stream_name) {
            return Err(invalid(format!(
                "1 validation error detected: Value '{}' at 'logStreamName' failed to satisfy \
                 constraint: Member must satisfy regular expression pattern: [^:*]*",
                req.log_stream_name
            )));
        }
        let group = self.require(&req.log_group_name).await?;
        let exists = || Error::AlreadyExists("The specified log stream already exists".into());
        if group
            .builtin
            .as_ref()
            .is_some_and(|b| b.stream() == req.log_stream_name)
        {
            return Err(exists());
        }
        if !self
            .store
            .create_stream(&req.log_group_name, &req.log_stream_name, now_ms())
            .await?
        {
            return Err(exists());
        }
        Ok(())
    }

    /// `PutLogEvents`: events outside CloudWatch's window (more than 14 days old, more than
    /// 2 hours ahead) are rejected and reported, the rest stored in one transaction.
    pub async fn put_log_events(
        &self,
        req: &PutLogEventsRequest,
    ) -> Result<PutLogEventsResponse, Error> {
        if req.log_events.is_empty() || req.log_events.len() > MAX_BATCH_EVENTS {
            return Err(invalid(format!(
                "a batch holds 1 to {MAX_BATCH_EVENTS} log events"
            )));
        }
        let bytes: usize = req.log_events.iter().map(|e| e.message.len() + 26).sum();
        if bytes > MAX_BATCH_BYTES {
            return Err(invalid(format!(
                "Log event batch size of {bytes} bytes exceeds the maximum of {MAX_BATCH_BYTES}"
            )));
        }
        let group = self.require(&req.log_group_name).await?;
        if group
            .builtin
            .as_ref()
            .is_some_and(|b| b.stream() == req.log_stream_name)
        {
            return Err(invalid(format!(
                "stream {} of {} holds Berth's own telemetry and cannot be written",
                req.log_stream_name, req.log_group_name
            )));
        }
        let streams = self.store.streams(&req.log_group_name).await?;
        if !streams.iter().any(|s| s.name == req.log_stream_name) {
            return Err(Error::NotFound(
                "The specified log stream does not exist.".into(),
            ));
        }
        let now = now_ms();
        let mut info = RejectedLogEventsInfo::default();
        let mut keep = Vec::with_capacity(req.log_events.len());
        for (i, e) in req.log_events.iter().enumerate() {
            let i = i32::try_from(i).unwrap_or(i32::MAX);
            if e.timestamp > now.saturating_add(TOO_NEW_MS) {
                info.too_new_log_event_start_index =
                    Some(info.too_new_log_event_start_index.map_or(i, |s| s.min(i)));
            } else if e.timestamp < now.saturating_sub(TOO_OLD_MS) {
                info.too_old_log_event_end_index =
                    Some(info.too_old_log_event_end_index.map_or(i, |s| s.max(i)));
            } else {
                keep.push((e.timestamp, e.message.clone()));
            }
        }
        self.store
            .put_events(&req.log_group_name, &req.log_stream_name, &keep, now)
            .await?;
        let rejected = info.too_new_log_event_start_index.is_some()
            || info.too_old_log_event_end_index.is_some();
        Ok(PutLogEventsResponse {
            rejected_log_events_info: rejected.then_some(info),
        })
    }

    /// `GetLogEvents`: one stream, by position tokens; at the end of the stream the token sent
    /// comes back unchanged.
    pub async fn get_log_events(
        &self,
        caller: &Caller,
        req: &GetLogEventsRequest,
    ) -> Result<GetLogEventsResponse, Error> {
        let name = Self::one_group(
            req.log_group_name.as_deref(),
            req.log_group_identifier.as_deref(),
        )?;
        let group = self.require(name).await?;
        let builtin = group
            .builtin
            .as_ref()
            .filter(|b| b.stream() == req.log_stream_name);
        if builtin.is_none() {
            let streams = self.store.streams(name).await?;
            if !streams.iter().any(|s| s.name == req.log_stream_name) {
                return Err(Error::NotFound(
                    "The specified log stream does not exist.".into(),
                ));
            }
        }
        let given = req.next_token.as_deref().map(parse_token).transpose()?;
        let limit = req.limit.unwrap_or(MAX_EVENTS).clamp(1, MAX_EVENTS);
        let mut sel = Select {
            from_ms: req.start_time,
            to_ms: req.end_time,
            limit,
            ..Select::default()
        };
        match given {
            Some(('f', key)) => sel.after = Some(key),
            Some((_, key)) => {
                sel.before = Some(key);
                sel.descending = true;
            }
            None => sel.descending = !req.start_from_head.unwrap_or(false),
        }
        let streams = [req.log_stream_name.clone()];
        let mut page = match builtin {
            Some(b) => self.builtin_page(caller, b, &sel).await?,
            None => self.stored_page(name, Some(&streams), &sel).await?,
        };
        if sel.descending {
            page.reverse();
        }
        // At most 1 MB of messages; when trimming, keep the end nearest the position read from.
        let mut total = 0usize;
        let fits = |f: &Found, total: &mut usize| {
            *total += f.message.len() + 26;
            *total <= MAX_RESPONSE_BYTES
        };
        if sel.descending {
            let n = page
                .iter()
                .rev()
                .take_while(|f| fits(f, &mut total))
                .count();
            page.drain(..page.len() - n);
        } else {
            let n = page.iter().take_while(|f| fits(f, &mut total)).count();
            page.truncate(n);
        }
        let (forward, backward) = match (page.first(), page.last()) {
            (Some(first), Some(last)) => (token('f', last.key), token('b', first.key)),
            _ => match given {
                Some(('f', key)) => (
                    req.next_token.clone().unwrap_or_default(),
                    token('b', (key.0, key.1.saturating_add(1))),
                ),
                Some((_, _)) => (
                    token('f', (0, 0)),
                    req.next_token.clone().unwrap_or_default(),
                ),
                None => (token('f', (0, 0)), token('b', (0, 0))),
            },
        };
        Ok(GetLogEventsResponse {
            events: page
                .into_iter()
                .map(|f| OutputLogEvent {
                    timestamp: f.timestamp_ms,
                    message: f.message,
                    ingestion_time: f.ingestion_ms,
                })
                .collect(),
            next_forward_token: forward,
            next_backward_token: backward,
        })
    }

    /// `FilterLogEvents`: Berth's own stream first, then the created streams by time.
    pub async fn filter_log_events(
        &self,
        caller: &Caller,
        req: &FilterLogEventsRequest,
    ) -> Result<FilterLogEventsResponse, Error> {
        let name = Self::one_group(
            req.log_group_name.as_deref(),
            req.log_group_identifier.as_deref(),
        )?;
        if req.log_stream_names.is_some() && req.log_stream_name_prefix.is_some() {
            return Err(invalid(
                "logStreamNames and logStreamNamePrefix are mutually exclusive parameters.",
            ));
        }
        let pattern = Pattern::parse(req.filter_pattern.as_deref().unwrap_or(""))?;
        let group = self.require(name).await?;
        let wanted = |s: &str| {
            req.log_stream_names
                .as_ref()
                .is_none_or(|n| n.iter().any(|x| x == s))
                && req
                    .log_stream_name_prefix
                    .as_deref()
                    .is_none_or(|p| s.starts_with(p))
        };
        let stored: Vec<String> = self
            .store
            .streams(name)
            .await?
            .into_iter()
            .map(|s| s.name)
            .filter(|s| wanted(s))
            .collect();
        let builtin = group.builtin.as_ref().filter(|b| wanted(b.stream()));
        // `<source>/<time>/<id>`: source 0 is Berth's stream, 1 the created ones.
        let (mut source, mut after) = match &req.next_token {
            None => (0u8, None),
            Some(t) => {
                let bad = || invalid("The specified nextToken is invalid.");
                let (s, rest) = t.split_once('/').ok_or_else(bad)?;
                let s: u8 = s.parse().ok().filter(|s| *s <= 1).ok_or_else(bad)?;
                let (_, key) = parse_token(&format!("f/{rest}"))?;
                (s, Some(key))
            }
        };
        let limit = req.limit.unwrap_or(MAX_EVENTS).clamp(1, MAX_EVENTS) as usize;
        let mut events = Vec::new();
        let mut bytes = 0usize;
        let mut next = None;
        'sources: while source <= 1 {
            let mut sel = Select {
                from_ms: req.start_time,
                to_ms: req.end_time,
                after,
                limit: PAGE,
                ..Select::default()
            };
            loop {
                let page = match (source, builtin) {
                    (0, Some(b)) => self.builtin_page(caller, b, &sel).await?,
                    (0, None) => Vec::new(),
                    _ if stored.is_empty() => Vec::new(),
                    _ => self.stored_page(name, Some(&stored), &sel).await?,
                };
                let n = page.len();
                for f in page {
                    let key = f.key;
                    if pattern.matches(&f.message) {
                        if events.len() == limit || bytes + f.message.len() > MAX_RESPONSE_BYTES {
                            next = sel.after.map(|k| format!("{source}/{}/{}", k.0, k.1));
                            // Resume at this event: `after` the previous one.
                            if next.is_none() {
                                next = Some(format!("{source}/0/0"));
                            }
                            break 'sources;
                        }
                        bytes += f.message.len();
                        events.push(FilteredLogEvent {
                            log_stream_name: f.stream,
                            timestamp: f.timestamp_ms,
                            message: f.message,
                            ingestion_time: f.ingestion_ms,
                            event_id: format!("{source}{:019}{:019}", key.0.max(0), key.1.max(0)),
                        });
                    }
                    sel.after = Some(key);
                }
                if n < PAGE as usize {
                    break;
                }
            }
            source += 1;
            after = None;
        }
        let mut searched: Vec<SearchedLogStream> = Vec::new();
        if let Some(b) = builtin {
            searched.push(SearchedLogStream {
                log_stream_name: b.stream().to_owned(),
                searched_completely: next.is_none(),
            });
        }
        searched.extend(stored.iter().map(|s| SearchedLogStream {
            log_stream_name: s.clone(),
            searched_completely: next.is_none(),
        }));
        Ok(FilterLogEventsResponse {
            events,
            searched_log_streams: searched,
            next_token: next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_terms_phrases_options_and_exclusions() {
        let cases: &[(&str, &str, bool)] = &[
            ("", "anything", true),
            ("ERROR", "an ERROR here", true),
            ("ERROR", "an error here", false),
            ("ERROR timeout", "ERROR: timeout", true),
            ("ERROR timeout", "ERROR only", false),
            ("\"disk full\"", "the disk full again", true),
            ("\"disk full\"", "full disk", false),
            ("?ERROR ?WARN", "WARN: x", true),
            ("?ERROR ?WARN", "INFO: x", false),
            ("ERROR -retry", "ERROR, will retry", false),
            ("ERROR -retry", "ERROR, giving up", true),
        ];
        for (p, m, want) in cases {
            let pat = Pattern::parse(p).expect("parses");
            assert_eq!(pat.matches(m), *want, "{p:?} on {m:?}");
        }
        assert!(Pattern::parse("{ $.a = 1 }").is_err());
        assert!(Pattern::parse("[ip, user]").is_err());
        assert!(Pattern::parse("\"open").is_err());
    }

    #[test]
    fn group_names_and_arns() {
        assert_eq!(group_name("aws/spans"), "aws/spans");
        assert_eq!(
            group_name("arn:aws:logs:us-east-1:1:log-group:/aws/x:*"),
            "/aws/x"
        );
        assert_eq!(
            runtime_of("/aws/bedrock-agentcore/runtimes/agent-Ab12345678-DEFAULT"),
            Some(("agent-Ab12345678", "DEFAULT"))
        );
        assert_eq!(runtime_of("/aws/bedrock-agentcore/runtimes/nohyphen"), None);
        let r = Caller {
            access_key_id: "k".into(),
            runtime_id: Some("rt-1".into()),
        };
        assert!(r.lists("aws/spans"));
        assert!(r.lists("/aws/bedrock-agentcore/runtimes/rt-1-DEFAULT"));
        assert!(!r.lists("/aws/bedrock-agentcore/runtimes/rt-12-DEFAULT"));
        assert!(!r.lists("/aws/other"));
    }

    #[test]
    fn tokens_round_trip_and_refuse_garbage() {
        assert_eq!(
            parse_token(&token('f', (5, 7))).ok().map(|t| t.1),
            Some((5, 7))
        );
        assert!(parse_token("x/1/2").is_err());
        assert!(parse_token("f/1").is_err());
        assert!(parse_token("f/a/2").is_err());
    }
}
