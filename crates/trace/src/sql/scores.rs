//! [`ScoreStore`] on either backend (see [`crate::scores`]).

use super::logs::{CREATE_GROUP, CREATE_STREAM, STREAM_GROWS};
use super::traces::DbRow;
use super::{Db, Store};
use crate::Error;
use crate::scores::{
    Score, ScoreFilter, ScoreStore, ScoreTotal, results_group, results_stream, score_document,
    validate,
};
use sqlx::{QueryBuilder, Row};
use std::collections::HashMap;

const COLS: &str = "at_ns, ended_ns, source, evaluator_id, evaluator_name, dimension, runtime_id, \
    endpoint, version, session_id, trace_id, span_id, value, label, explanation, error, \
    input_tokens, output_tokens";

const MS: i64 = 1_000_000;

fn tokens(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn score_row(row: &DbRow) -> Result<Score, sqlx::Error> {
    let version: i64 = row.try_get("version")?;
    let input: i64 = row.try_get("input_tokens")?;
    let output: i64 = row.try_get("output_tokens")?;
    Ok(Score {
        at_ns: row.try_get("at_ns")?,
        ended_ns: row.try_get("ended_ns")?,
        source: row.try_get("source")?,
        evaluator_id: row.try_get("evaluator_id")?,
        evaluator_name: row.try_get("evaluator_name")?,
        dimension: row.try_get("dimension")?,
        runtime_id: row.try_get("runtime_id")?,
        endpoint: row.try_get("endpoint")?,
        version: u32::try_from(version).unwrap_or_default(),
        session_id: row.try_get("session_id")?,
        trace_id: row.try_get("trace_id")?,
        span_id: row.try_get("span_id")?,
        value: row.try_get("value")?,
        label: row.try_get("label")?,
        explanation: row.try_get("explanation")?,
        error: row.try_get("error")?,
        input_tokens: u64::try_from(input).unwrap_or_default(),
        output_tokens: u64::try_from(output).unwrap_or_default(),
    })
}

/// The totals key: runtime, endpoint, version, evaluator.
type TotalKey<'a> = (&'a str, &'a str, u32, &'a str);

/// The log events of `scores`, per (group, stream): `(timestamp_ms, message)`.
type EventsByStream = HashMap<(String, String), Vec<(i64, String)>>;

/// `SELECT cols` of the scores `f` selects, without an order.
fn select(f: &ScoreFilter, cols: &str) -> Result<QueryBuilder<'static, Db>, Error> {
    if f.from_ns > f.to_ns {
        return Err(Error::Invalid(format!(
            "the window's start {} is after its end {}",
            f.from_ns, f.to_ns
        )));
    }
    let mut q = QueryBuilder::<Db>::new(format!(
        "SELECT {cols} FROM eval_scores WHERE runtime_id = "
    ));
    q.push_bind(f.runtime_id.clone())
        .push(" AND endpoint = ")
        .push_bind(f.endpoint.clone())
        .push(" AND ended_ns >= ")
        .push_bind(f.from_ns)
        .push(" AND ended_ns < ")
        .push_bind(f.to_ns);
    if let Some(v) = f.version {
        q.push(" AND version = ").push_bind(i64::from(v));
    }
    if let Some(e) = &f.evaluator_id {
        q.push(" AND evaluator_id = ").push_bind(e.clone());
    }
    if let Some(s) = &f.source {
        q.push(" AND source = ").push_bind(s.clone());
    }
    Ok(q)
}

#[async_trait::async_trait]
impl ScoreStore for Store {
    async fn insert_scores(&self, scores: &[Score]) -> Result<(), Error> {
        if scores.is_empty() {
            return Ok(());
        }
        scores.iter().try_for_each(validate)?;
        let mut totals: HashMap<TotalKey<'_>, (i64, f64, i64)> = HashMap::new();
        let mut events: EventsByStream = HashMap::new();
        for s in scores {
            let t = totals
                .entry((&s.runtime_id, &s.endpoint, s.version, &s.evaluator_id))
                .or_default();
            if let Some(v) = s.value.filter(|_| s.error.is_none()) {
                t.0 += 1;
                t.1 += v;
            }
            t.2 += i64::from(s.error.is_some());
            events
                .entry((results_group(&s.source), results_stream(s)))
                .or_default()
                .push((s.at_ns.div_euclid(MS), score_document(s).to_string()));
        }
        let mut tx = self.begin().await?;
        for chunk in super::cached_chunks(scores) {
            let mut q = QueryBuilder::<Db>::new(format!("INSERT INTO eval_scores ({COLS}) "));
            q.push_values(chunk, |mut b, s| {
                b.push_bind(s.at_ns)
                    .push_bind(s.ended_ns)
                    .push_bind(s.source.as_str())
                    .push_bind(s.evaluator_id.as_str())
                    .push_bind(s.evaluator_name.as_str())
                    .push_bind(s.dimension.as_deref())
                    .push_bind(s.runtime_id.as_str())
                    .push_bind(s.endpoint.as_str())
                    .push_bind(i64::from(s.version))
                    .push_bind(s.session_id.as_str())
                    .push_bind(s.trace_id.as_deref())
                    .push_bind(s.span_id.as_deref())
                    .push_bind(s.value)
                    .push_bind(s.label.as_deref())
                    .push_bind(s.explanation.as_deref())
                    .push_bind(s.error.as_deref())
                    .push_bind(tokens(s.input_tokens))
                    .push_bind(tokens(s.output_tokens));
            });
            q.build().execute(&mut *tx).await?;
        }
        for ((rt, ep, version, evaluator), (n, sum, errors)) in &totals {
            sqlx::query(
                "INSERT INTO eval_score_totals \
                   (runtime_id, endpoint, version, evaluator_id, scores, value_sum, errors) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (runtime_id, endpoint, version, evaluator_id) DO UPDATE SET \
                   scores = eval_score_totals.scores + excluded.scores, \
                   value_sum = eval_score_totals.value_sum + excluded.value_sum, \
                   errors = eval_score_totals.errors + excluded.errors",
            )
            .bind(*rt)
            .bind(*ep)
            .bind(i64::from(*version))
            .bind(*evaluator)
            .bind(n)
            .bind(sum)
            .bind(errors)
            .execute(&mut *tx)
            .await?;
        }
        let now_ms = crate::now_ns().div_euclid(MS);
        for ((group, stream), evs) in &events {
            sqlx::query(CREATE_GROUP)
                .bind(group)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            sqlx::query(CREATE_STREAM)
                .bind(group)
                .bind(stream)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            let mut bytes = 0i64;
            for chunk in super::cached_chunks(evs) {
                let mut q = QueryBuilder::<Db>::new(
                    "INSERT INTO log_events (group_name, stream, timestamp_ms, ingestion_ms, \
                     message) ",
                );
                q.push_values(chunk, |mut b, (ts, message)| {
                    b.push_bind(group.as_str())
                        .push_bind(stream.as_str())
                        .push_bind(*ts)
                        .push_bind(now_ms)
                        .push_bind(message.as_str());
                });
                q.build().execute(&mut *tx).await?;
            }
            for (_, m) in evs {
                bytes = bytes.saturating_add(i64::try_from(m.len()).unwrap_or(i64::MAX));
            }
            let first = evs.iter().map(|(t, _)| *t).min();
            let last = evs.iter().map(|(t, _)| *t).max();
            sqlx::query(STREAM_GROWS)
                .bind(first)
                .bind(last)
                .bind(now_ms)
                .bind(bytes)
                .bind(group)
                .bind(stream)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn scores(&self, f: &ScoreFilter) -> Result<Vec<Score>, Error> {
        let mut q = select(f, COLS)?;
        q.push(" ORDER BY ended_ns, id");
        let rows = q.build().fetch_all(self.reader()).await?;
        Ok(rows.iter().map(score_row).collect::<Result<_, _>>()?)
    }

    async fn ends(&self, f: &ScoreFilter, n: u32) -> Result<(Vec<Score>, Vec<Score>), Error> {
        let cols = format!("{COLS}, id");
        let valued = " AND value IS NOT NULL AND error IS NULL";
        let mut first = select(f, &cols)?;
        first
            .push(valued)
            .push(" ORDER BY ended_ns, id LIMIT ")
            .push_bind(i64::from(n));
        let first = first.build().fetch_all(self.reader()).await?;
        let mut last = select(f, &cols)?;
        last.push(valued)
            .push(" ORDER BY ended_ns DESC, id DESC LIMIT ")
            .push_bind(i64::from(n));
        let mut last = last.build().fetch_all(self.reader()).await?;
        // Fewer than 2n: the newest are only those the oldest n do not hold.
        let oldest: std::collections::HashSet<i64> = first
            .iter()
            .map(|r| r.try_get::<i64, _>("id"))
            .collect::<Result<_, _>>()?;
        last.retain(|r| {
            r.try_get::<i64, _>("id")
                .is_ok_and(|id| !oldest.contains(&id))
        });
        Ok((
            first.iter().map(score_row).collect::<Result<_, _>>()?,
            last.iter().rev().map(score_row).collect::<Result<_, _>>()?,
        ))
    }

    async fn score_totals(&self) -> Result<Vec<ScoreTotal>, Error> {
        let rows = sqlx::query(
            "SELECT runtime_id, endpoint, version, evaluator_id, scores, value_sum, errors \
             FROM eval_score_totals ORDER BY runtime_id, endpoint, version, evaluator_id",
        )
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                let version: i64 = r.try_get("version")?;
                let n: i64 = r.try_get("scores")?;
                let errors: i64 = r.try_get("errors")?;
                Ok(ScoreTotal {
                    runtime_id: r.try_get("runtime_id")?,
                    endpoint: r.try_get("endpoint")?,
                    version: u32::try_from(version).unwrap_or_default(),
                    evaluator_id: r.try_get("evaluator_id")?,
                    count: u64::try_from(n).unwrap_or_default(),
                    sum: r.try_get("value_sum")?,
                    errors: u64::try_from(errors).unwrap_or_default(),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Error::from)
    }
}
