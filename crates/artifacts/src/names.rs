//! S3's rules for bucket names and object keys.

use crate::Error;

/// Longest object key S3 accepts, in bytes of UTF-8.
pub const MAX_KEY_LEN: usize = 1024;

/// Checks a bucket name against S3's rules for general-purpose buckets: 3 to 63 characters of
/// lower-case letters, digits, `.` and `-`, starting and ending with a letter or digit, no `..`,
/// not shaped like an IPv4 address, and none of the prefixes and suffixes AWS reserves.
///
/// The local store uses the name as a directory name; these rules are also what makes that safe
/// (no `/`, no `..`, no leading dot).
pub fn validate_bucket_name(name: &str) -> Result<(), Error> {
    let invalid = |reason| {
        Err(Error::InvalidBucketName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.len() < 3 || name.len() > 63 {
        return invalid("bucket names must be between 3 and 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return invalid(
            "bucket names can consist only of lowercase letters, numbers, periods and hyphens",
        );
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = name.as_bytes();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return invalid("bucket names must begin and end with a letter or number");
    }
    if name.contains("..") {
        return invalid("bucket names must not contain two adjacent periods");
    }
    if looks_like_ipv4(name) {
        return invalid("bucket names must not be formatted as an IP address");
    }
    const RESERVED_PREFIXES: [&str; 3] = ["xn--", "sthree-", "amzn-s3-demo-"];
    const RESERVED_SUFFIXES: [&str; 5] = ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"];
    if RESERVED_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return invalid("bucket names must not start with a reserved prefix");
    }
    if RESERVED_SUFFIXES.iter().any(|s| name.ends_with(s)) {
        return invalid("bucket names must not end with a reserved suffix");
    }
    Ok(())
}

fn looks_like_ipv4(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Checks an object key: non-empty and at most [`MAX_KEY_LEN`] bytes. Any other content, `/`,
/// `..` segments and control characters included, is a valid key: the local store never uses
/// keys as paths.
pub fn validate_key(key: &str) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::InvalidArgument {
            name: "key".into(),
            reason: "object keys must not be empty".into(),
        });
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::KeyTooLong {
            len: key.len(),
            limit: MAX_KEY_LEN,
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_bucket_names() {
        for name in [
            "abc",
            "my-artifacts",
            "agent.code.v2",
            "a1b2c3",
            &"a".repeat(63),
        ] {
            assert!(validate_bucket_name(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn rejects_names_s3_rejects() {
        for name in [
            "ab",
            &"a".repeat(64),
            "MyBucket",
            "my_bucket",
            "-bucket",
            "bucket-",
            ".bucket",
            "bucket.",
            "my..bucket",
            "192.168.5.4",
            "xn--bucket",
            "sthree-bucket",
            "bucket-s3alias",
            "bucket--ol-s3",
            "bucket.mrap",
            "bucket--x-s3",
            "../etc",
            "a/b",
            "bücket",
        ] {
            assert!(
                matches!(
                    validate_bucket_name(name),
                    Err(Error::InvalidBucketName { .. })
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn keys_are_bytes_not_paths() {
        for key in [
            "../../etc/passwd",
            "/abs",
            "a//b",
            ".",
            "..",
            "sp ace",
            "ü/ß",
            "\u{1}",
        ] {
            assert!(validate_key(key).is_ok(), "{key:?}");
        }
        assert!(validate_key("").is_err());
        assert!(validate_key(&"k".repeat(MAX_KEY_LEN)).is_ok());
        assert!(matches!(
            validate_key(&"k".repeat(MAX_KEY_LEN + 1)),
            Err(Error::KeyTooLong { len: 1025, .. })
        ));
    }
}
