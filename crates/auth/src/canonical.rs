//! Header-value canonicalization shared by the verifier and the signer.

use std::borrow::Cow;

/// The canonical form of one header value, as botocore computes it: the value's text split on
/// whitespace and re-joined with single spaces (`' '.join(value.split())`), which trims the ends
/// and collapses runs of spaces and tabs.
///
/// Bytes that are not UTF-8 are read as Latin-1: Python's HTTP client encodes header strings as
/// Latin-1, so that is the text botocore signed.
pub(crate) fn canonical_header_value(raw: &[u8]) -> String {
    let text: Cow<'_, str> = match std::str::from_utf8(raw) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => Cow::Owned(raw.iter().map(|&b| char::from(b)).collect()),
    };
    let mut out = String::with_capacity(text.len());
    for word in text.split(is_python_whitespace).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Python's `str.isspace()`: Unicode White_Space plus the ASCII information separators.
fn is_python_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapses_like_botocore() {
        assert_eq!(canonical_header_value(b"  a   b  "), "a b");
        assert_eq!(canonical_header_value(b"a\tb"), "a b");
        assert_eq!(canonical_header_value(b"already fine"), "already fine");
        assert_eq!(canonical_header_value(b""), "");
        assert_eq!(
            canonical_header_value("na\u{ef}ve \u{2603}".as_bytes()),
            "na\u{ef}ve \u{2603}"
        );
        assert_eq!(canonical_header_value("a\u{a0}b".as_bytes()), "a b");
    }

    #[test]
    fn reads_non_utf8_as_latin1() {
        assert_eq!(canonical_header_value(b"caf\xe9"), "caf\u{e9}");
    }
}
