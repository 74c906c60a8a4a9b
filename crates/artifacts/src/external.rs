//! An external S3-compatible store (AWS S3, MinIO, Ceph...), read through the `object_store`
//! crate. Berth only reads from it: operators upload artifacts with their own tools and runtimes
//! reference them by bucket and key.
//!
//! Configured by a URL `s3://?endpoint=http://host:9000&region=us-east-1`: every query parameter
//! is an `object_store` S3 option (`endpoint`, `region`, `allow_http`, `skip_signature`...);
//! credentials and anything else come from `AWS_*` environment variables, as `object_store`
//! reads them. An `http://` endpoint implies `allow_http=true`. Requests use path-style
//! addressing unless `virtual_hosted_style_request=true`.
//!
//! Limits of the `object_store` path model: keys with a leading or trailing `/`, empty (`a//b`)
//! or `.`/`..` segments, or ASCII control characters cannot be addressed and are refused with a
//! clear error. Bucket-level operations (listing or probing buckets) are not offered.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as StorePath;
use object_store::{Attribute, GetOptions, GetRange, ObjectStore};
use percent_encoding::percent_decode_str;
use time::OffsetDateTime;

use crate::listing;
use crate::model::{
    ByteRange, DEFAULT_CONTENT_TYPE, ListQuery, Listing, MAX_LIST_KEYS, ObjectBody, ObjectHeaders,
    ObjectMeta,
};
use crate::names::{validate_bucket_name, validate_key};
use crate::{Error, MAX_READ_OBJECT};

/// A read-only view of an external S3-compatible service.
#[derive(Debug)]
pub(crate) struct ExternalStore {
    config: Vec<(AmazonS3ConfigKey, String)>,
    /// For logs: the endpoint, or "aws" for the default.
    endpoint: String,
    /// `object_store` clients are per bucket; built on first use.
    clients: Mutex<HashMap<String, Arc<AmazonS3>>>,
}

impl ExternalStore {
    /// Parses an `s3://?...` URL; `env` supplies `AWS_*` settings (credentials, region...).
    pub(crate) fn from_url(
        url: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, Error> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| Error::Config {
            reason: format!("artifact store url {url:?} must start with s3://"),
        })?;
        let (host, query) = rest.split_once('?').unwrap_or((rest, ""));
        if !host.trim_matches('/').is_empty() {
            return Err(Error::Config {
                reason: format!(
                    "artifact store url {url:?} names a bucket ({host:?}); leave it out: \
                     buckets come from each artifact reference"
                ),
            });
        }
        let mut config = Vec::new();
        for (name, value) in env {
            if let Some(key) = name
                .starts_with("AWS_")
                .then(|| AmazonS3ConfigKey::from_str(&name.to_ascii_lowercase()).ok())
                .flatten()
            {
                config.push((key, value));
            }
        }
        let mut endpoint = None;
        let mut allow_http_set = false;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_decode_str(s)
                    .decode_utf8()
                    .map(|v| v.into_owned())
                    .map_err(|_| Error::Config {
                        reason: format!("artifact store url parameter {name:?} is not utf-8"),
                    })
            };
            let (name, value) = (decode(name)?, decode(value)?);
            let key = AmazonS3ConfigKey::from_str(&name).map_err(|_| Error::Config {
                reason: format!("unknown artifact store url parameter {name:?}"),
            })?;
            if matches!(key, AmazonS3ConfigKey::Bucket) {
                return Err(Error::Config {
                    reason: "artifact store url parameter \"bucket\" is not accepted: buckets \
                             come from each artifact reference"
                        .into(),
                });
            }
            if matches!(key, AmazonS3ConfigKey::Endpoint) {
                endpoint = Some(value.clone());
            }
            if name.ends_with("allow_http") {
                allow_http_set = true;
            }
            config.push((key, value));
        }
        if let Some(ep) = &endpoint
            && ep.starts_with("http://")
            && !allow_http_set
        {
            config.push((
                AmazonS3ConfigKey::from_str("allow_http").map_err(|e| Error::Config {
                    reason: e.to_string(),
                })?,
                "true".into(),
            ));
        }
        let store = Self {
            config,
            endpoint: endpoint.unwrap_or_else(|| "aws".into()),
            clients: Mutex::new(HashMap::new()),
        };
        // Build one client now so configuration errors surface at start-up, not on first use.
        store.build("berth-config-check")?;
        Ok(store)
    }

    /// The endpoint, for logs.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn build(&self, bucket: &str) -> Result<AmazonS3, Error> {
        let mut builder = AmazonS3Builder::new().with_bucket_name(bucket);
        for (key, value) in &self.config {
            builder = builder.with_config(*key, value);
        }
        builder.build().map_err(|e| Error::Config {
            reason: format!("external s3 store: {e}"),
        })
    }

    fn client(&self, bucket: &str) -> Result<Arc<AmazonS3>, Error> {
        validate_bucket_name(bucket)?;
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = clients.get(bucket) {
            return Ok(c.clone());
        }
        let client = Arc::new(self.build(bucket)?);
        clients.insert(bucket.to_owned(), client.clone());
        Ok(client)
    }

    pub(crate) async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectMeta, Error> {
        let client = self.client(bucket)?;
        let path = store_path(key)?;
        let meta = client
            .head(&path)
            .await
            .map_err(|e| not_found_as_key(e, bucket, key))?;
        Ok(convert_meta(key, &meta, None))
    }

    pub(crate) async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<(ObjectMeta, ObjectBody), Error> {
        let client = self.client(bucket)?;
        let path = store_path(key)?;
        let mut options = GetOptions::default();
        let mut resolved = None;
        if let Some(range) = range {
            // Resolve against the current size so unsatisfiable ranges get S3's error, and pin
            // the entity tag so the ranged read sees the same object.
            let meta = client
                .head(&path)
                .await
                .map_err(|e| not_found_as_key(e, bucket, key))?;
            let (first, last) = range.resolve(meta.size)?;
            options.range = Some(GetRange::Bounded(first..last + 1));
            options.if_match = meta.e_tag.clone();
            resolved = Some((first, last));
        }
        let result = client
            .get_opts(&path, options)
            .await
            .map_err(|e| not_found_as_key(e, bucket, key))?;
        let meta = convert_meta(key, &result.meta, Some(&result.attributes));
        let len = result.range.end - result.range.start;
        let stream = result
            .into_stream()
            .map_err(|e| std::io::Error::other(e.to_string()));
        Ok((meta, ObjectBody::new(len, resolved, Box::pin(stream))))
    }

    pub(crate) async fn read_object(&self, bucket: &str, key: &str) -> Result<Bytes, Error> {
        let client = self.client(bucket)?;
        let path = store_path(key)?;
        let result = client
            .get(&path)
            .await
            .map_err(|e| not_found_as_key(e, bucket, key))?;
        if result.meta.size > MAX_READ_OBJECT {
            return Err(Error::ObjectTooLarge {
                size: result.meta.size,
                limit: MAX_READ_OBJECT,
            });
        }
        Ok(result.bytes().await?)
    }

    pub(crate) async fn list_objects(
        &self,
        bucket: &str,
        query: &ListQuery,
    ) -> Result<Listing, Error> {
        let client = self.client(bucket)?;
        // object_store lists whole path segments: list the deepest directory containing the
        // prefix and filter by the prefix here.
        let dir = match query.prefix.rfind('/') {
            Some(i) => Some(store_path(&query.prefix[..i])?),
            None => None,
        };
        let mut stream = match query
            .start_after
            .as_deref()
            .filter(|a| *a > query.prefix.as_str())
        {
            Some(after) => client.list_with_offset(dir.as_ref(), &store_path_lenient(after)),
            None => client.list(dir.as_ref()),
        };
        // Collect in key order until the page is certainly complete: more than max_keys distinct
        // entries (keys or rolled-up prefixes) seen.
        let delimiter = query.delimiter.as_deref().filter(|d| !d.is_empty());
        let wanted = query.max_keys.min(MAX_LIST_KEYS) + 1;
        let mut found: BTreeMap<String, ObjectMeta> = BTreeMap::new();
        let mut entries = 0;
        let mut last_common: Option<String> = None;
        while let Some(meta) = stream.next().await {
            let meta = meta?;
            let key = meta.location.as_ref().to_owned();
            if !key.starts_with(&query.prefix) {
                continue;
            }
            let common = delimiter.and_then(|d| {
                key[query.prefix.len()..]
                    .find(d)
                    .map(|i| key[..query.prefix.len() + i + d.len()].to_owned())
            });
            match common {
                Some(c) if last_common.as_deref() == Some(c.as_str()) => {}
                Some(c) => {
                    last_common = Some(c);
                    entries += 1;
                }
                None => entries += 1,
            }
            found.insert(key.clone(), convert_meta(&key, &meta, None));
            if entries > wanted {
                break;
            }
        }
        Ok(listing::list(&found, query, |_, m| m.clone()))
    }
}

/// The `object_store` path of a key, refusing keys it would rewrite.
fn store_path(key: &str) -> Result<StorePath, Error> {
    validate_key(key)?;
    let path = StorePath::parse(key).map_err(|e| Error::InvalidArgument {
        name: "key".into(),
        reason: format!("this key cannot be read from the external artifact store: {e}"),
    })?;
    if path.as_ref() != key {
        return Err(Error::InvalidArgument {
            name: "key".into(),
            reason: "keys with a leading or trailing '/' cannot be read from the external \
                     artifact store"
                .into(),
        });
    }
    Ok(path)
}

/// A listing offset: any string works as a lower bound, so encode what the path model rejects.
fn store_path_lenient(key: &str) -> StorePath {
    StorePath::parse(key).unwrap_or_else(|_| StorePath::from(key))
}

fn not_found_as_key(e: object_store::Error, bucket: &str, key: &str) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::NoSuchKey {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        },
        other => other.into(),
    }
}

fn convert_meta(
    key: &str,
    meta: &object_store::ObjectMeta,
    attributes: Option<&object_store::Attributes>,
) -> ObjectMeta {
    let attr = |a: Attribute| {
        attributes
            .and_then(|attrs| attrs.get(&a))
            .map(|v| v.as_ref().to_owned())
    };
    ObjectMeta {
        key: key.to_owned(),
        size: meta.size,
        etag: meta
            .e_tag
            .clone()
            .map(|t| {
                if t.starts_with('"') {
                    t
                } else {
                    format!("\"{t}\"")
                }
            })
            .unwrap_or_default(),
        last_modified: OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(meta.last_modified.timestamp_millis()) * 1_000_000,
        )
        .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        content_type: attr(Attribute::ContentType).unwrap_or_else(|| DEFAULT_CONTENT_TYPE.into()),
        headers: ObjectHeaders {
            cache_control: attr(Attribute::CacheControl),
            content_disposition: attr(Attribute::ContentDisposition),
            content_encoding: attr(Attribute::ContentEncoding),
            content_language: attr(Attribute::ContentLanguage),
            expires: None,
        },
        user_metadata: BTreeMap::new(),
        checksum: None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env() -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), "AKIDEXAMPLE".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "secret".into()),
            ("HOME".into(), "/root".into()),
        ]
    }

    #[test]
    fn parses_urls() {
        let store = ExternalStore::from_url(
            "s3://?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=eu-west-1",
            env(),
        )
        .unwrap();
        assert_eq!(store.endpoint(), "http://127.0.0.1:9000");
        assert!(
            store
                .config
                .iter()
                .any(|(k, v)| matches!(k, AmazonS3ConfigKey::Region) && v == "eu-west-1")
        );
        assert!(
            store
                .config
                .iter()
                .any(|(k, _)| matches!(k, AmazonS3ConfigKey::AccessKeyId))
        );
        // An http endpoint needs allow_http, added implicitly.
        assert!(
            store
                .config
                .iter()
                .any(|(k, v)| k.as_ref().contains("allow_http") && v == "true")
        );

        assert!(ExternalStore::from_url("s3://", env()).is_ok());
        assert!(ExternalStore::from_url("s3://?endpoint=http://h:9000", env()).is_ok());
    }

    #[test]
    fn rejects_bad_urls() {
        for (url, needle) in [
            ("s3://mybucket?region=us-east-1", "names a bucket"),
            ("s3://?bucket=x", "bucket"),
            ("s3://?no_such_option=1", "no_such_option"),
            ("gs://x", "must start with s3://"),
        ] {
            let err = ExternalStore::from_url(url, env()).unwrap_err();
            assert!(err.to_string().contains(needle), "{url}: {err}");
        }
    }

    #[test]
    fn keys_object_store_cannot_address_are_refused() {
        assert!(store_path("agents/app.zip").is_ok());
        assert!(store_path("odd ~%[]#?*.zip").is_ok());
        for key in ["/abs", "dir/", "a//b", "a/../b", "ctl\u{1}"] {
            assert!(
                matches!(store_path(key), Err(Error::InvalidArgument { .. })),
                "{key}"
            );
        }
    }
}
