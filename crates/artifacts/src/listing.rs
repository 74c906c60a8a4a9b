//! S3 listing semantics over a sorted key map, shared by both backends: prefix, delimiter with
//! common prefixes, `max-keys`, and resuming after a key or a rolled-up prefix.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::model::{ListQuery, Listing, MAX_LIST_KEYS, ObjectMeta};

/// Lists `map` (keys in UTF-8 binary order, which is `String`'s order) as S3 would.
///
/// Runs in O((returned entries + rolled-up prefixes) · log n): keys under a common prefix are
/// jumped over, not walked.
pub(crate) fn list<T>(
    map: &BTreeMap<String, T>,
    query: &ListQuery,
    meta: impl Fn(&str, &T) -> ObjectMeta,
) -> Listing {
    let prefix = query.prefix.as_str();
    let delimiter = query.delimiter.as_deref().filter(|d| !d.is_empty());
    let max_keys = query.max_keys.min(MAX_LIST_KEYS);
    let mut listing = Listing::default();
    if max_keys == 0 {
        return listing;
    }

    // Start just after `start_after` when it is at or beyond the prefix, else at the prefix. A
    // `start_after` that is a common prefix of this listing also hides every key below it: the
    // previous page already returned the prefix.
    let mut skip_under: Option<String> = None;
    let mut lower = Bound::Included(prefix.to_owned());
    if let Some(after) = query.start_after.as_deref().filter(|a| *a >= prefix) {
        lower = Bound::Excluded(after.to_owned());
        if delimiter.is_some_and(|d| is_common_prefix(after, prefix, d)) {
            skip_under = Some(after.to_owned());
            lower = Bound::Excluded(past_everything_under(after));
        }
    }

    let mut count = 0;
    loop {
        let mut rolled: Option<String> = None;
        let bounds = (lower.as_ref().map(String::as_str), Bound::<&str>::Unbounded);
        for (key, value) in map.range::<str, _>(bounds) {
            if !key.starts_with(prefix) {
                // Sorted keys: past the block of keys starting with the prefix, none follow.
                if key.as_str() > prefix {
                    break;
                }
                continue;
            }
            if skip_under.as_deref().is_some_and(|s| key.starts_with(s)) {
                continue;
            }
            if count == max_keys {
                listing.is_truncated = true;
                break;
            }
            count += 1;
            let common = delimiter.and_then(|d| {
                key[prefix.len()..]
                    .find(d)
                    .map(|i| &key[..prefix.len() + i + d.len()])
            });
            match common {
                Some(common) => {
                    listing.common_prefixes.push(common.to_owned());
                    listing.next_marker = Some(common.to_owned());
                    rolled = Some(common.to_owned());
                    break;
                }
                None => {
                    listing.objects.push(meta(key, value));
                    listing.next_marker = Some(key.clone());
                }
            }
        }
        match rolled {
            // Jump past the keys under the prefix just returned and keep scanning.
            Some(common) if !listing.is_truncated => {
                lower = Bound::Excluded(past_everything_under(&common));
                skip_under = Some(common);
            }
            _ => break,
        }
    }
    if !listing.is_truncated {
        listing.next_marker = None;
    }
    listing
}

/// True when `marker` is a common prefix of a listing of `prefix` with `delimiter`: it extends
/// `prefix` and its first delimiter after the prefix ends it.
fn is_common_prefix(marker: &str, prefix: &str, delimiter: &str) -> bool {
    marker
        .strip_prefix(prefix)
        .and_then(|rest| {
            rest.find(delimiter)
                .map(|i| i + delimiter.len() == rest.len())
        })
        .unwrap_or(false)
}

/// A string sorting after every key that starts with `prefix` except keys continuing with
/// `char::MAX` itself, which the scan skips one by one (they do not occur in practice).
fn past_everything_under(prefix: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + 4);
    s.push_str(prefix);
    s.push(char::MAX);
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn map(keys: &[&str]) -> BTreeMap<String, ()> {
        keys.iter().map(|k| ((*k).to_owned(), ())).collect()
    }

    fn meta(key: &str, _: &()) -> ObjectMeta {
        ObjectMeta {
            key: key.to_owned(),
            size: 0,
            etag: String::new(),
            last_modified: OffsetDateTime::UNIX_EPOCH,
            content_type: String::new(),
            headers: Default::default(),
            user_metadata: Default::default(),
            checksum: None,
        }
    }

    fn run(
        m: &BTreeMap<String, ()>,
        prefix: &str,
        delim: Option<&str>,
        max: usize,
        after: Option<&str>,
    ) -> (Vec<String>, Vec<String>, bool, Option<String>) {
        let l = list(
            m,
            &ListQuery {
                prefix: prefix.into(),
                delimiter: delim.map(Into::into),
                max_keys: max,
                start_after: after.map(Into::into),
            },
            meta,
        );
        (
            l.objects.into_iter().map(|o| o.key).collect(),
            l.common_prefixes,
            l.is_truncated,
            l.next_marker,
        )
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn prefix_and_delimiter() {
        let m = map(&["a/1", "a/2", "a/b/3", "ab", "b/1", "c", "photos/2024/x.jpg"]);
        let (keys, prefixes, truncated, _) = run(&m, "", Some("/"), 1000, None);
        assert_eq!(keys, strs(&["ab", "c"]));
        assert_eq!(prefixes, strs(&["a/", "b/", "photos/"]));
        assert!(!truncated);

        let (keys, prefixes, ..) = run(&m, "a/", Some("/"), 1000, None);
        assert_eq!(keys, strs(&["a/1", "a/2"]));
        assert_eq!(prefixes, strs(&["a/b/"]));

        let (keys, prefixes, ..) = run(&m, "a", None, 1000, None);
        assert_eq!(keys, strs(&["a/1", "a/2", "a/b/3", "ab"]));
        assert!(prefixes.is_empty());

        // A prefix not ending at a delimiter.
        let (keys, prefixes, ..) = run(&m, "pho", Some("/"), 1000, None);
        assert!(keys.is_empty());
        assert_eq!(prefixes, strs(&["photos/"]));

        // Multi-character delimiter.
        let m2 = map(&["x--y--z", "x--w", "q"]);
        let (keys, prefixes, ..) = run(&m2, "x--", Some("--"), 1000, None);
        assert_eq!(keys, strs(&["x--w"]));
        assert_eq!(prefixes, strs(&["x--y--"]));
    }

    #[test]
    fn pages_through_keys_and_prefixes() {
        let m = map(&["a/1", "a/2", "b", "c/1", "c/2", "c/3", "d", "e/x"]);
        let mut after: Option<String> = None;
        let mut seen_keys = vec![];
        let mut seen_prefixes = vec![];
        let mut pages = 0;
        loop {
            let (keys, prefixes, truncated, next) = run(&m, "", Some("/"), 2, after.as_deref());
            assert!(keys.len() + prefixes.len() <= 2);
            seen_keys.extend(keys);
            seen_prefixes.extend(prefixes);
            pages += 1;
            if !truncated {
                assert_eq!(next, None);
                break;
            }
            after = next;
        }
        assert_eq!(seen_keys, strs(&["b", "d"]));
        assert_eq!(seen_prefixes, strs(&["a/", "c/", "e/"]));
        assert_eq!(pages, 3);
    }

    #[test]
    fn truncation_is_exact() {
        let m = map(&["k1", "k2", "k3"]);
        // Exactly max_keys entries: not truncated.
        let (keys, _, truncated, next) = run(&m, "", None, 3, None);
        assert_eq!(keys.len(), 3);
        assert!(!truncated);
        assert_eq!(next, None);
        let (keys, _, truncated, next) = run(&m, "", None, 2, None);
        assert_eq!(keys, strs(&["k1", "k2"]));
        assert!(truncated);
        assert_eq!(next.as_deref(), Some("k2"));
        let (keys, _, truncated, _) = run(&m, "", None, 0, None);
        assert!(keys.is_empty() && !truncated);
    }

    #[test]
    fn start_after_before_or_inside_prefix() {
        let m = map(&["a", "b/1", "b/2", "c"]);
        // start_after sorting before the prefix starts at the prefix.
        let (keys, ..) = run(&m, "b/", None, 1000, Some("a"));
        assert_eq!(keys, strs(&["b/1", "b/2"]));
        let (keys, ..) = run(&m, "b/", None, 1000, Some("b/1"));
        assert_eq!(keys, strs(&["b/2"]));
        // Beyond the prefix: nothing.
        let (keys, ..) = run(&m, "b/", None, 1000, Some("c"));
        assert!(keys.is_empty());
        // Without a delimiter a prefix-like marker hides nothing.
        let (keys, ..) = run(&m, "", None, 1000, Some("b/"));
        assert_eq!(keys, strs(&["b/1", "b/2", "c"]));
        // With one it hides the rolled-up keys.
        let (keys, prefixes, ..) = run(&m, "", Some("/"), 1000, Some("b/"));
        assert_eq!(keys, strs(&["c"]));
        assert!(prefixes.is_empty());
    }

    #[test]
    fn binary_order_for_unicode() {
        let m = map(&["z", "é", "\u{10FFFF}", "a"]);
        let (keys, ..) = run(&m, "", None, 1000, None);
        assert_eq!(keys, strs(&["a", "z", "é", "\u{10FFFF}"]));
    }

    #[test]
    fn char_max_continuations_are_still_rolled_up() {
        let m = map(&["p/\u{10FFFF}\u{10FFFF}", "p/a", "q"]);
        let (keys, prefixes, ..) = run(&m, "", Some("/"), 1000, None);
        assert_eq!(keys, strs(&["q"]));
        assert_eq!(prefixes, strs(&["p/"]));
    }
}
