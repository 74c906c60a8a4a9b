//! The trace store's SQL, compiled once per backend: `sqlite.rs` and `postgres.rs` each mount
//! this directory as their module `sql`, defining before it `Db` (the sqlx database), `Store`
//! (the store type, with `reader()`, `writer()` and `begin()`) and the few dialect items whose
//! text differs (`TRACE_ROW`, `sum_int`, `octets`). Everything else is one statement for both:
//! `$n` placeholders, `ON CONFLICT`, `RETURNING`, row-value `IN`, `CASE` where SQLite's
//! two-argument `min`/`max` and PostgreSQL's `least`/`greatest` differ.

use super::{Db, Store, TRACE_ROW, octets, sum_int};

mod export;
mod logs;
mod online;
mod scores;
mod traces;
mod usage;

/// Rows per multi-row statement at most: under SQLite's limit of 32,766 bound variables at the
/// widest row's 19 columns.
const MAX_ROWS: usize = 256;

/// Splits `rows` into chunks whose lengths are powers of two, largest first and at most
/// [`MAX_ROWS`], for multi-row statements of a few shapes only: each is prepared once and kept
/// in the connection's statement cache. A statement of whatever length the batch had was
/// prepared anew every time, a fifth of the SQLite writer's CPU under load (bench B2's profile).
fn cached_chunks<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if rows.is_empty() {
            return None;
        }
        let n = MAX_ROWS.min(1 << rows.len().ilog2());
        let (chunk, rest) = rows.split_at(n);
        rows = rest;
        Some(chunk)
    })
}

/// The attribution filters traces and usage are narrowed by, each an ` AND column = value`.
fn push_attribution(
    q: &mut sqlx::QueryBuilder<'_, Db>,
    runtime_id: Option<&String>,
    version: Option<u32>,
    endpoint: Option<&String>,
    session_id: Option<&String>,
    actor: Option<&String>,
) {
    let text = [
        (" AND runtime_id = ", runtime_id),
        (" AND endpoint = ", endpoint),
        (" AND session_id = ", session_id),
        (" AND actor = ", actor),
    ];
    for (clause, value) in text {
        if let Some(v) = value {
            q.push(clause).push_bind(v.clone());
        }
    }
    if let Some(v) = version {
        q.push(" AND version = ").push_bind(i64::from(v));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cached_chunks_are_powers_of_two_largest_first() {
        let rows: Vec<usize> = (0..1000).collect();
        let lens = |n: usize| {
            super::cached_chunks(&rows[..n])
                .map(<[usize]>::len)
                .collect::<Vec<_>>()
        };
        assert_eq!(lens(0), Vec::<usize>::new());
        assert_eq!(lens(1), [1]);
        assert_eq!(lens(100), [64, 32, 4]);
        assert_eq!(lens(256), [256]);
        assert_eq!(lens(1000), [256, 256, 256, 128, 64, 32, 8]);
        // Every row once, in order.
        let back: Vec<usize> = super::cached_chunks(&rows[..777])
            .flatten()
            .copied()
            .collect();
        assert_eq!(back, rows[..777]);
    }
}
