//! GenAI usage accounting on either backend (see [`crate::usage`]).

use super::traces::DbRow;
use super::{Db, sum_int};
use crate::usage::{Counts, GroupBy, MINUTE_NS, Tally, UsageFilter, UsageRow, tally};
use crate::{Error, Span};
use sqlx::{QueryBuilder, Row};
use std::collections::HashMap;

/// A `genai_usage` row's key: runtime, version, endpoint, session, actor, model, minute.
type UsageKey<'a> = (&'a str, u32, &'a str, &'a str, &'a str, String, i64);

/// Adds just-inserted spans to the accounts, inside the transaction that stored them: the
/// batch is folded per key in Rust first, then written as a few multi-row upserts (one round
/// trip per statement, whatever the number of spans). Pass only the spans whose rows were
/// inserted (a retried export's are already counted).
pub(super) async fn accumulate<'s>(
    tx: &mut sqlx::Transaction<'_, Db>,
    inserted: impl IntoIterator<Item = &'s Span>,
) -> Result<(), Error> {
    let mut rows: HashMap<UsageKey<'s>, Tally> = HashMap::new();
    let mut totals: HashMap<(&'s str, u32, String), Tally> = HashMap::new();
    for span in inserted {
        let Some(t) = tally(span) else {
            continue;
        };
        let a = &span.attribution;
        totals
            .entry((a.runtime_id.as_str(), a.version, t.model.clone()))
            .or_default()
            .add(&t);
        rows.entry((
            a.runtime_id.as_str(),
            a.version,
            a.endpoint.as_str(),
            a.session_id.as_deref().unwrap_or(""),
            a.actor.as_deref().unwrap_or(""),
            t.model.clone(),
            span.end_ns.div_euclid(MINUTE_NS) * MINUTE_NS,
        ))
        .or_default()
        .add(&t);
    }
    if rows.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = rows.into_iter().collect();
    for chunk in super::cached_chunks(&rows) {
        let mut q = QueryBuilder::<Db>::new(format!(
            "INSERT INTO genai_usage (runtime_id, version, endpoint, session_id, actor, model, \
             minute_ns, {}) ",
            COUNT_COLS.join(", ")
        ));
        q.push_values(
            chunk,
            |mut b, ((rt, v, ep, sid, actor, model, minute), t)| {
                b.push_bind(*rt)
                    .push_bind(i64::from(*v))
                    .push_bind(*ep)
                    .push_bind(*sid)
                    .push_bind(*actor)
                    .push_bind(model.as_str())
                    .push_bind(*minute);
                push_counts(&mut b, t);
            },
        );
        q.push(
            " ON CONFLICT (runtime_id, version, endpoint, session_id, actor, model, minute_ns) \
             DO UPDATE SET ",
        )
        .push(add_excluded("genai_usage"));
        q.build().execute(&mut **tx).await?;
    }
    let totals: Vec<_> = totals.into_iter().collect();
    for chunk in super::cached_chunks(&totals) {
        let mut q = QueryBuilder::<Db>::new(format!(
            "INSERT INTO genai_totals (runtime_id, version, model, {}) ",
            COUNT_COLS.join(", ")
        ));
        q.push_values(chunk, |mut b, ((rt, v, model), t)| {
            b.push_bind(*rt)
                .push_bind(i64::from(*v))
                .push_bind(model.as_str());
            push_counts(&mut b, t);
        });
        q.push(" ON CONFLICT (runtime_id, version, model) DO UPDATE SET ")
            .push(add_excluded("genai_totals"));
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Binds a tally's counts in [`COUNT_COLS`] order.
fn push_counts(b: &mut sqlx::query_builder::Separated<'_, '_, Db, &'static str>, t: &Tally) {
    b.push_bind(t.model_calls)
        .push_bind(t.input_tokens)
        .push_bind(t.output_tokens)
        .push_bind(t.total_tokens)
        .push_bind(t.cache_read_tokens)
        .push_bind(t.cache_write_tokens)
        .push_bind(t.tool_calls)
        .push_bind(t.tool_errors);
}

/// `col = table.col + excluded.col` for every count column.
fn add_excluded(table: &str) -> String {
    COUNT_COLS
        .iter()
        .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The count columns of both tables. Read through `CAST(... AS BIGINT)` (sums through
/// `sum_int`): should a sum ever overflow, SQLite keeps it as a float, and the cast saturates
/// instead of failing the read.
const COUNT_COLS: [&str; 8] = [
    "model_calls",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "tool_calls",
    "tool_errors",
];

/// Counts since the store was created per runtime, version and model (what Prometheus shows).
pub(super) async fn totals(pool: &sqlx::Pool<Db>) -> Result<Vec<UsageRow>, Error> {
    let rows = sqlx::query(&format!(
        "SELECT runtime_id, version, model, {} FROM genai_totals \
             ORDER BY runtime_id, version, model",
        COUNT_COLS
            .iter()
            .map(|c| format!("CAST({c} AS BIGINT) AS {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let version: i64 = row.try_get("version")?;
            Ok(UsageRow {
                runtime_id: Some(row.try_get("runtime_id")?),
                version: Some(u32::try_from(version).unwrap_or_default()),
                session_id: None,
                actor: None,
                model: row.try_get("model")?,
                counts: counts_of(row)?,
            })
        })
        .collect()
}

fn counts_of(row: &DbRow) -> Result<Counts, sqlx::Error> {
    Ok(Counts {
        model_calls: row.try_get("model_calls")?,
        input_tokens: row.try_get("input_tokens")?,
        output_tokens: row.try_get("output_tokens")?,
        total_tokens: row.try_get("total_tokens")?,
        cache_read_tokens: row.try_get("cache_read_tokens")?,
        cache_write_tokens: row.try_get("cache_write_tokens")?,
        tool_calls: row.try_get("tool_calls")?,
        tool_errors: row.try_get("tool_errors")?,
    })
}

/// Sums `genai_usage` rows matching `f`, one row per group and model.
pub(super) async fn query(pool: &sqlx::Pool<Db>, f: &UsageFilter) -> Result<Vec<UsageRow>, Error> {
    let keys: &[&str] = match f.group_by {
        GroupBy::None | GroupBy::Model => &[],
        GroupBy::Version => &["runtime_id", "version"],
        GroupBy::Session => &["runtime_id", "session_id"],
        GroupBy::Actor => &["actor"],
    };
    let mut cols: Vec<&str> = keys.to_vec();
    cols.push("model");
    let group = cols.join(", ");
    let mut q = QueryBuilder::<Db>::new(format!(
        "SELECT {group}, {} FROM genai_usage WHERE 1 = 1",
        COUNT_COLS
            .iter()
            .map(|c| format!("{} AS {c}", sum_int(c)))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    super::push_attribution(
        &mut q,
        f.runtime_id.as_ref(),
        f.version,
        f.endpoint.as_ref(),
        f.session_id.as_ref(),
        f.actor.as_ref(),
    );
    if let Some(v) = f.since_ns {
        q.push(" AND minute_ns >= ")
            .push_bind(v.div_euclid(MINUTE_NS) * MINUTE_NS);
    }
    if let Some(v) = f.until_ns {
        q.push(" AND minute_ns < ").push_bind(v);
    }
    q.push(format!(" GROUP BY {group} ORDER BY {group}"));
    let rows = q.build().fetch_all(pool).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let has = |c: &str| keys.contains(&c);
        let version: Option<i64> = if has("version") {
            Some(row.try_get("version")?)
        } else {
            None
        };
        let opt = |c: &str| -> Result<Option<String>, sqlx::Error> {
            if has(c) {
                row.try_get::<String, _>(c).map(Some)
            } else {
                Ok(None)
            }
        };
        out.push(UsageRow {
            runtime_id: opt("runtime_id")?,
            version: version.map(|v| u32::try_from(v).unwrap_or_default()),
            session_id: opt("session_id")?,
            actor: opt("actor")?,
            model: row.try_get("model")?,
            counts: counts_of(row)?,
        });
    }
    Ok(out)
}
