//! The manifest media types the registry accepts, and what a manifest references.

use super::{Digest, Error};
use serde_json::Value;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// A manifest's type and the content it points at.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub media_type: String,
    /// Config and layers (image manifests); the repository must hold them.
    pub blobs: Vec<Digest>,
    /// Child manifests (indexes); the repository must hold them.
    pub manifests: Vec<Digest>,
    /// The manifest this one refers to (OCI 1.1 referrers); need not exist.
    pub subject: Option<Digest>,
    /// What the referrers API reports as its type: `artifactType`, else the config's media type.
    pub artifact_type: Option<String>,
    /// Its `annotations`, reported by the referrers API.
    pub annotations: Option<Value>,
}

/// Validates `bytes` as a manifest whose media type is `content_type` (parameters ignored) or,
/// without one, its own `mediaType` field.
pub(crate) fn parse(content_type: Option<&str>, bytes: &[u8]) -> Result<Parsed, Error> {
    let invalid = |why: String| Error::ManifestInvalid(why);
    let doc: Value = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("the manifest is not JSON: {e}")))?;
    let Some(obj) = doc.as_object() else {
        return Err(invalid("the manifest is not a JSON object".into()));
    };
    if obj.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err(invalid("schemaVersion must be 2".into()));
    }
    let declared = content_type
        .map(|c| c.split(';').next().unwrap_or_default().trim())
        .filter(|c| !c.is_empty() && *c != "application/octet-stream");
    let field = match obj.get("mediaType") {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(invalid("mediaType must be a string".into())),
    };
    let media_type = match (declared, field) {
        (Some(d), Some(f)) if d != f => {
            return Err(invalid(format!(
                "the Content-Type {d:?} differs from the manifest's mediaType {f:?}"
            )));
        }
        (Some(d), _) => d,
        (None, Some(f)) => f,
        // OCI documents may omit mediaType; what they hold says which they are.
        (None, None) if obj.contains_key("manifests") => OCI_INDEX,
        (None, None) => OCI_MANIFEST,
    };
    let subject = match obj.get("subject") {
        None | Some(Value::Null) => None,
        Some(d) => Some(descriptor(d, "subject")?.0),
    };
    let mut parsed = Parsed {
        media_type: media_type.to_owned(),
        blobs: Vec::new(),
        manifests: Vec::new(),
        subject,
        artifact_type: obj
            .get("artifactType")
            .and_then(Value::as_str)
            .map(str::to_owned),
        annotations: obj.get("annotations").filter(|a| a.is_object()).cloned(),
    };
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let config = obj
                .get("config")
                .ok_or_else(|| invalid("an image manifest has a config".into()))?;
            parsed.blobs.push(descriptor(config, "config")?.0);
            if parsed.artifact_type.is_none() {
                parsed.artifact_type = config
                    .get("mediaType")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
            let layers = obj
                .get("layers")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid("an image manifest has a layers array".into()))?;
            for (i, l) in layers.iter().enumerate() {
                let (d, foreign) = descriptor(l, &format!("layers[{i}]"))?;
                // A foreign layer (with `urls`) is fetched from elsewhere, never pushed.
                if !foreign {
                    parsed.blobs.push(d);
                }
            }
        }
        OCI_INDEX | DOCKER_LIST => {
            let children = obj
                .get("manifests")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid("an index has a manifests array".into()))?;
            for (i, m) in children.iter().enumerate() {
                parsed
                    .manifests
                    .push(descriptor(m, &format!("manifests[{i}]"))?.0);
            }
        }
        other => {
            return Err(invalid(format!(
                "unsupported manifest media type {other:?}; accepted: {OCI_MANIFEST}, \
                 {OCI_INDEX}, {DOCKER_MANIFEST}, {DOCKER_LIST}"
            )));
        }
    }
    Ok(parsed)
}

/// A descriptor's digest, and whether it lists `urls` (a foreign layer).
fn descriptor(v: &Value, at: &str) -> Result<(Digest, bool), Error> {
    let invalid = |why: &str| Error::ManifestInvalid(format!("{at}: {why}"));
    let obj = v.as_object().ok_or_else(|| invalid("not an object"))?;
    let digest = obj
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("no digest"))?;
    let digest = Digest::parse(digest).map_err(|e| invalid(&e.to_string()))?;
    if !obj.get("size").is_some_and(Value::is_u64) {
        return Err(invalid("no size"));
    }
    if !obj.get("mediaType").is_some_and(Value::is_string) {
        return Err(invalid("no mediaType"));
    }
    let foreign = obj
        .get("urls")
        .and_then(Value::as_array)
        .is_some_and(|u| !u.is_empty());
    Ok((digest, foreign))
}
