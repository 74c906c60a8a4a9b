//! Repository names, tags and digests, validated as the Distribution spec writes them.

use super::Error;
use sha2::{Digest as _, Sha256};
use std::fmt;

/// Longest repository name accepted (the spec's limit on name plus host, which is the tightest
/// any client applies).
pub const MAX_NAME_LEN: usize = 255;

/// Checks `name` against the spec's
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
pub fn validate_name(name: &str) -> Result<(), Error> {
    let bad = |why: &str| Err(Error::NameInvalid(format!("{name:?}: {why}")));
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return bad("a name has 1 to 255 characters");
    }
    for component in name.split('/') {
        if !valid_component(component) {
            return bad(
                "each /-separated component is lowercase letters and digits joined by '.', '_', \
                 '__' or dashes",
            );
        }
    }
    Ok(())
}

fn valid_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    // Every run of non-alphanumerics is one separator: `.`, `_`, `__` or dashes.
    let mut run: &[u8] = &[];
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if alnum(b) {
            if !run.is_empty() {
                let ok = matches!(run, b"." | b"_" | b"__") || run.iter().all(|&x| x == b'-');
                if !ok {
                    return false;
                }
                run = &[];
            }
            start = i + 1;
        } else if matches!(b, b'.' | b'_' | b'-') {
            run = &bytes[start..=i];
        } else {
            return false;
        }
    }
    true
}

/// Checks a tag against `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<(), Error> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = tag.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b[1..].iter().all(|&x| word(x) || x == b'.' || x == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::ManifestInvalid(format!(
            "invalid tag {tag:?}: 1 to 128 characters of letters, digits, '_', '.', '-', not \
             starting with '.' or '-'"
        )))
    }
}

/// A `sha256:<64 lowercase hex>` digest, the one algorithm the registry stores by.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Parses `algorithm:encoded`; a well-formed digest of another algorithm is refused as
    /// unsupported by this registry.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let Some((alg, hex)) = s.split_once(':') else {
            return Err(Error::DigestInvalid(format!(
                "{s:?} is not of the form algorithm:hex"
            )));
        };
        if alg != "sha256" {
            return Err(Error::DigestInvalid(format!(
                "digest algorithm {alg:?} is not supported; use sha256"
            )));
        }
        let ok = hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            return Err(Error::DigestInvalid(format!(
                "{s:?}: a sha256 digest is 64 lowercase hex digits"
            )));
        }
        Ok(Self(s.to_owned()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    pub(crate) fn from_hasher(h: Sha256) -> Self {
        Self(format!("sha256:{}", hex::encode(h.finalize())))
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a manifest request names: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestRef {
    /// A tag (`v1`).
    Tag(String),
    /// A digest (`sha256:...`).
    Digest(Digest),
}

impl ManifestRef {
    /// A digest if `s` has a `:`, else a tag.
    pub fn parse(s: &str) -> Result<Self, Error> {
        if s.contains(':') {
            return Digest::parse(s).map(Self::Digest);
        }
        validate_tag(s)?;
        Ok(Self::Tag(s.to_owned()))
    }
}

impl fmt::Display for ManifestRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tag(t) => f.write_str(t),
            Self::Digest(d) => d.fmt(f),
        }
    }
}

/// Splits `repo:tag`, `repo@sha256:...` or `repo` (meaning `repo:latest`) into a validated
/// repository name and reference.
pub fn parse_image(image: &str) -> Result<(String, ManifestRef), Error> {
    let (name, reference) = if let Some((n, d)) = image.split_once('@') {
        (n, ManifestRef::Digest(Digest::parse(d)?))
    } else {
        match image.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, ManifestRef::parse(t)?),
            _ => (image, ManifestRef::Tag("latest".to_owned())),
        }
    };
    validate_name(name)?;
    Ok((name.to_owned(), reference))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec_grammar() {
        for ok in [
            "a",
            "team/agent",
            "a.b/c_d/e__f/g-h/i---j",
            "0/1/2",
            "library/ubuntu",
        ] {
            validate_name(ok).unwrap();
        }
        for bad in [
            "",
            "Team/agent",
            "team//agent",
            "/agent",
            "agent/",
            "a..b",
            "a___b",
            "a._b",
            "-a",
            "a-",
            "a b",
            "_manifests",
            &"a".repeat(256),
        ] {
            let e = validate_name(bad).unwrap_err();
            assert_eq!(e.code(), "NAME_INVALID", "{bad:?}");
        }
    }

    #[test]
    fn tags_and_digests_parse() {
        validate_tag("v1.0_rc-1").unwrap();
        validate_tag(&"a".repeat(128)).unwrap();
        assert!(validate_tag(&"a".repeat(129)).is_err());
        assert!(validate_tag(".v1").is_err());
        assert!(validate_tag("v/1").is_err());
        let d = Digest::of(b"hello");
        assert_eq!(
            d.as_str(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        for bad in ["sha256:ABC", "sha256:12", "md5:abc", "nocolon"] {
            assert_eq!(Digest::parse(bad).unwrap_err().code(), "DIGEST_INVALID");
        }
        assert_eq!(
            parse_image("team/agent:v1").unwrap(),
            ("team/agent".into(), ManifestRef::Tag("v1".into()))
        );
        assert_eq!(
            parse_image("team/agent").unwrap().1,
            ManifestRef::Tag("latest".into())
        );
        assert_eq!(
            parse_image(&format!("a@{d}")).unwrap().1,
            ManifestRef::Digest(d)
        );
    }
}
