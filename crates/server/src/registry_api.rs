//! The built-in OCI registry's HTTP side: the Distribution API (v1.1) under `/v2/`, mapped onto
//! `berth_oci::registry` so `skopeo`, `podman`, `docker`, `crane` and `oras` push to Berth as
//! they would to ECR.
//!
//! These requests carry no SigV4: they authenticate with HTTP Basic, a Berth access key id as
//! the user and its secret as the password (what `berth credentials` prints), and are
//! authorized as ECR actions on `arn:aws:ecr:<region>:<account>:repository/<name>` by the same
//! policy evaluation as every other route (`authz::check`). The routes sit outside the SigV4
//! layer and so outside its body limits: blobs are streamed to disk under the registry's own
//! per-blob cap, each frame within the listener's stall timeout; manifests are read whole under
//! `MAX_MANIFEST_SIZE` and the listener's budgets of in-flight bytes.

use crate::AppState;
use crate::authz::{Operation, Refusal};
use crate::body;
use crate::edge::Context;
use crate::error::RequestId;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine as _;
use berth_auth::Principal;
use berth_control::Caller;
use berth_oci::registry::{
    Chunks, Digest, Error, MAX_MANIFEST_SIZE, ManifestRef, Registry, Started, Stored, validate_name,
};
use futures::StreamExt;
use serde_json::json;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tracing::{error, info};

const API_VERSION: &str = "docker-distribution-api-version";
const CONTENT_DIGEST: &str = "docker-content-digest";
const UPLOAD_UUID: &str = "docker-upload-uuid";
const CHALLENGE: &str = "Basic realm=\"berth\"";

/// The registry's routes. Mounted outside the SigV4 layer, inside request ids. An S3 bucket
/// name has at least three characters, so `/v2/` never shadows a path-style bucket.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2", any(base))
        .route("/v2/", any(base))
        .route("/v2/{*rest}", any(dispatch))
}

/// What a `/v2/...` path names.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Catalog,
    Tags(String),
    Manifest(String, String),
    Blob(String, String),
    Uploads(String),
    Upload(String, String),
    Referrers(String, String),
}

/// Splits the path after `/v2/`. Repository names may have slashes, so the operation is read
/// from the end.
fn route(rest: &str) -> Option<Route> {
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(name.to_owned()));
    }
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Some(Route::Uploads(name.to_owned()));
    }
    let (head, last) = rest.rsplit_once('/')?;
    let (name, kind) = head.rsplit_once('/')?;
    match kind {
        "manifests" => Some(Route::Manifest(name.to_owned(), last.to_owned())),
        "blobs" => Some(Route::Blob(name.to_owned(), last.to_owned())),
        "referrers" => Some(Route::Referrers(name.to_owned(), last.to_owned())),
        "uploads" => {
            let name = name.strip_suffix("/blobs")?;
            Some(Route::Upload(name.to_owned(), last.to_owned()))
        }
        _ => None,
    }
}

impl Route {
    fn name(&self) -> Option<&str> {
        match self {
            Route::Catalog => None,
            Route::Tags(n)
            | Route::Manifest(n, _)
            | Route::Blob(n, _)
            | Route::Uploads(n)
            | Route::Upload(n, _)
            | Route::Referrers(n, _) => Some(n),
        }
    }
}

fn repository_arn(state: &AppState, name: &str) -> String {
    let p = state.control.partition();
    format!(
        "arn:aws:ecr:{}:{}:repository/{name}",
        p.region, p.account_id
    )
}

/// The ECR actions a request performs (`None`: a method the path does not have).
fn operations(state: &AppState, method: &Method, r: &Route, q: &Query) -> Option<Vec<Operation>> {
    let on = |action: &str, name: &str| Operation::new(action, repository_arn(state, name));
    let ops = match (r, method.as_str()) {
        (Route::Catalog, "GET") => vec![on("ecr:DescribeRepositories", "*")],
        (Route::Tags(n), "GET") => vec![on("ecr:ListImages", n)],
        (Route::Manifest(n, _), "GET" | "HEAD") | (Route::Referrers(n, _), "GET") => {
            vec![on("ecr:BatchGetImage", n)]
        }
        (Route::Manifest(n, _), "PUT") => vec![on("ecr:PutImage", n)],
        (Route::Manifest(n, _) | Route::Blob(n, _), "DELETE") => {
            vec![on("ecr:BatchDeleteImage", n)]
        }
        (Route::Blob(n, _), "GET") => vec![on("ecr:GetDownloadUrlForLayer", n)],
        (Route::Blob(n, _), "HEAD") => vec![on("ecr:BatchCheckLayerAvailability", n)],
        (Route::Uploads(n), "POST") => {
            let mut ops = vec![on("ecr:InitiateLayerUpload", n)];
            if q.digest.is_some() {
                ops.push(on("ecr:UploadLayerPart", n));
                ops.push(on("ecr:CompleteLayerUpload", n));
            } else if let (Some(_), Some(from)) = (&q.mount, &q.from) {
                ops.push(on("ecr:CompleteLayerUpload", n));
                // Mounting reads the blob out of the other repository.
                if validate_name(from).is_ok() {
                    ops.push(on("ecr:GetDownloadUrlForLayer", from));
                }
            }
            ops
        }
        (Route::Upload(n, _), "PATCH" | "GET" | "DELETE") => {
            vec![on("ecr:UploadLayerPart", n)]
        }
        (Route::Upload(n, _), "PUT") => vec![on("ecr:CompleteLayerUpload", n)],
        _ => return None,
    };
    Some(ops)
}

/// The query parameters the API uses.
#[derive(Debug, Default)]
struct Query {
    digest: Option<String>,
    mount: Option<String>,
    from: Option<String>,
    n: Option<String>,
    last: Option<String>,
    artifact_type: Option<String>,
}

fn query(q: Option<&str>) -> Query {
    let mut out = Query::default();
    for pair in q.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_encoding::percent_decode_str(&v.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
        match k {
            "digest" => out.digest = Some(v),
            "mount" => out.mount = Some(v),
            "from" => out.from = Some(v),
            "n" => out.n = Some(v),
            "last" => out.last = Some(v),
            "artifactType" => out.artifact_type = Some(v),
            _ => {}
        }
    }
    out
}

/// A Distribution API error response.
fn error_response(e: &Error, request_id: &str) -> Response {
    let message = match e {
        Error::Io(io) => {
            error!(request_id, error = %io, "registry storage failed");
            format!("internal error; request id {request_id}")
        }
        other => other.to_string(),
    };
    let detail = match e {
        Error::RangeInvalid { size } => json!({ "size": size }),
        _ => json!({}),
    };
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({ "errors": [{ "code": e.code(), "message": message, "detail": detail }] });
    let mut resp = (status, axum::Json(body)).into_response();
    let h = resp.headers_mut();
    h.insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    match e {
        Error::Unauthorized => {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(CHALLENGE),
            );
        }
        Error::RangeInvalid { size } => {
            set(h, header::RANGE.as_str(), &range(*size));
        }
        _ => {}
    }
    resp
}

fn set(h: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (
        header::HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        h.insert(n, v);
    }
}

/// The `Range` of an upload holding `size` bytes (`0-0` when empty, as registries answer).
fn range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn respond(status: StatusCode, headers: &[(&str, String)], body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    for (k, v) in headers {
        set(h, k, v);
    }
    resp
}

/// The principal an HTTP Basic header names, if its secret matches.
fn basic_principal(state: &AppState, headers: &HeaderMap) -> Option<Principal> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let principal = state.keys.lookup(id)?;
    let same: bool = principal
        .secret_access_key
        .as_bytes()
        .ct_eq(secret.as_bytes())
        .into();
    same.then_some(principal)
}

/// `/v2/`: whether the caller's credentials are good.
async fn base(State(state): State<AppState>, req: Request) -> Response {
    let request_id = request_id(&req);
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return error_response(
            &Error::Unsupported(format!("{} /v2/", req.method())),
            &request_id,
        );
    }
    let Some(principal) = basic_principal(&state, req.headers()) else {
        return error_response(&Error::Unauthorized, &request_id);
    };
    // A revoked key or a deleted runtime's credentials: no operation, but not welcome.
    match crate::authz::check(&state, &principal, &[], &request_id).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return error_response(&Error::Unauthorized, &request_id),
        Err(e) => {
            let e = std::io::Error::other(format!("authorization: {}", e.detail()));
            return error_response(&Error::Io(e), &request_id);
        }
    }
    respond(
        StatusCode::OK,
        &[("content-type", "application/json".into())],
        Body::from("{}"),
    )
}

fn request_id(req: &Request) -> String {
    req.extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default()
}

async fn dispatch(State(state): State<AppState>, req: Request) -> Response {
    let request_id = request_id(&req);
    match handle(&state, req, &request_id).await {
        Ok(r) => r,
        Err(e) => error_response(&e, &request_id),
    }
}

async fn handle(state: &AppState, req: Request, request_id: &str) -> Result<Response, Error> {
    let Some(principal) = basic_principal(state, req.headers()) else {
        return Err(Error::Unauthorized);
    };
    let path = percent_encoding::percent_decode_str(req.uri().path())
        .decode_utf8()
        .map_err(|_| Error::NameInvalid("the path is not UTF-8".into()))?
        .into_owned();
    let rest = path.trim_start_matches("/v2/");
    let Some(r) = route(rest) else {
        return Err(Error::NameUnknown);
    };
    if let Some(name) = r.name() {
        validate_name(name)?;
    }
    let q = query(req.uri().query());
    let method = req.method().clone();
    let Some(ops) = operations(state, &method, &r, &q) else {
        return Err(Error::Unsupported(format!("{method} on this path")));
    };
    match crate::authz::check(state, &principal, &ops, request_id).await {
        Ok(Ok(())) => {}
        Ok(Err(Refusal::Unrecognized(why))) => {
            info!(%why, "registry credentials refused");
            return Err(Error::Unauthorized);
        }
        Ok(Err(refusal)) => return Err(Error::Denied(refusal.message())),
        Err(e) => {
            return Err(Error::Io(std::io::Error::other(format!(
                "authorization: {}",
                e.detail()
            ))));
        }
    }
    let reg = &state.registry;
    let caller = Caller::new(principal.access_key_id.clone(), Some(request_id.to_owned()));
    let audit = |action: &'static str, name: String, what: String| {
        let (control, caller) = (state.control.clone(), caller.clone());
        let arn = repository_arn(state, &name);
        async move {
            caller
                .scope(control.audit_event(action, &arn, json!({ "reference": what })))
                .await;
        }
    };
    let head = method == Method::HEAD;
    match (r, method.as_str()) {
        (Route::Catalog, _) => {
            let (n, last) = paging(&q)?;
            let page = reg.catalog(n, last.as_deref()).await?;
            let link = next_link("/v2/_catalog", n, page.more, page.items.last());
            Ok(listing(json!({ "repositories": page.items }), link))
        }
        (Route::Tags(name), _) => {
            let (n, last) = paging(&q)?;
            let page = reg.tags(&name, n, last.as_deref()).await?;
            let link = next_link(
                &format!("/v2/{name}/tags/list"),
                n,
                page.more,
                page.items.last(),
            );
            Ok(listing(json!({ "name": name, "tags": page.items }), link))
        }
        (Route::Referrers(name, digest), _) => {
            let subject = Digest::parse(&digest)?;
            let found = reg
                .referrers(&name, &subject, q.artifact_type.as_deref())
                .await?;
            let index = json!({
                "schemaVersion": 2,
                "mediaType": berth_oci::registry::OCI_INDEX,
                "manifests": found,
            });
            let mut headers = vec![("content-type", berth_oci::registry::OCI_INDEX.to_owned())];
            if q.artifact_type.is_some() {
                headers.push(("oci-filters-applied", "artifactType".to_owned()));
            }
            Ok(respond(
                StatusCode::OK,
                &headers,
                Body::from(index.to_string()),
            ))
        }
        (Route::Manifest(name, reference), "GET" | "HEAD") => {
            let reference = ManifestRef::parse(&reference).map_err(|_| Error::ManifestUnknown)?;
            let m = reg.get_manifest(&name, &reference).await?;
            let headers = [
                ("content-type", m.media_type.clone()),
                ("content-length", m.bytes.len().to_string()),
                (CONTENT_DIGEST, m.digest.to_string()),
            ];
            let body = if head {
                Body::empty()
            } else {
                Body::from(m.bytes)
            };
            Ok(respond(StatusCode::OK, &headers, body))
        }
        (Route::Manifest(name, reference), "PUT") => {
            let reference = ManifestRef::parse(&reference)?;
            let content_type = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            // The bytes stay counted in the listener's budgets until the manifest is stored.
            let (bytes, _held) = read_manifest(req).await?;
            let m = reg
                .put_manifest(&name, &reference, content_type.as_deref(), bytes)
                .await?;
            audit(
                "PutImage",
                name.clone(),
                format!("{reference} {}", m.digest),
            )
            .await;
            let mut headers = vec![
                ("location", format!("/v2/{name}/manifests/{}", m.digest)),
                (CONTENT_DIGEST, m.digest.to_string()),
            ];
            if let Some(s) = Registry::subject_of(&m.bytes) {
                headers.push(("oci-subject", s.to_string()));
            }
            Ok(respond(StatusCode::CREATED, &headers, Body::empty()))
        }
        (Route::Manifest(name, reference), _) => {
            let reference = ManifestRef::parse(&reference).map_err(|_| Error::ManifestUnknown)?;
            reg.delete_manifest(&name, &reference).await?;
            audit("BatchDeleteImage", name, reference.to_string()).await;
            Ok(respond(StatusCode::ACCEPTED, &[], Body::empty()))
        }
        (Route::Blob(name, digest), "GET" | "HEAD") => {
            let digest = Digest::parse(&digest).map_err(|_| Error::BlobUnknown)?;
            blob(reg, &name, &digest, head, req.headers()).await
        }
        (Route::Blob(name, digest), _) => {
            let digest = Digest::parse(&digest)?;
            reg.delete_blob(&name, &digest).await?;
            audit("BatchDeleteImage", name, digest.to_string()).await;
            Ok(respond(StatusCode::ACCEPTED, &[], Body::empty()))
        }
        (Route::Uploads(name), _) => {
            if let Some(d) = &q.digest {
                let digest = Digest::parse(d)?;
                let declared = body::declared_length(req.headers());
                let stored = reg.put_blob(&name, &digest, declared, chunks(req)).await?;
                return Ok(blob_created(&name, &stored));
            }
            let started = match (&q.mount, &q.from) {
                (Some(m), Some(from)) => {
                    let digest = Digest::parse(m)?;
                    reg.mount_or_start(&name, &digest, from).await?
                }
                _ => Started::Upload(reg.start_upload(&name).await?),
            };
            match started {
                Started::Done(stored) => Ok(blob_created(&name, &stored)),
                Started::Upload(id) => Ok(upload_accepted(&name, &id, 0)),
            }
        }
        (Route::Upload(name, id), "GET") => {
            let size = reg.upload_size(&name, &id).await?;
            let mut resp = upload_accepted(&name, &id, size);
            *resp.status_mut() = StatusCode::NO_CONTENT;
            Ok(resp)
        }
        (Route::Upload(name, id), "DELETE") => {
            reg.cancel_upload(&name, &id).await?;
            Ok(respond(StatusCode::NO_CONTENT, &[], Body::empty()))
        }
        (Route::Upload(name, id), "PATCH") => {
            let (start, declared) = chunk_range(req.headers())?;
            let size = reg.append(&name, &id, start, declared, chunks(req)).await?;
            Ok(upload_accepted(&name, &id, size))
        }
        (Route::Upload(name, id), _) => {
            let Some(d) = &q.digest else {
                return Err(Error::DigestInvalid(
                    "completing an upload needs ?digest=".into(),
                ));
            };
            let digest = Digest::parse(d)?;
            let (start, declared) = chunk_range(req.headers())?;
            let stored = reg
                .complete(&name, &id, &digest, start, declared, chunks(req))
                .await?;
            Ok(blob_created(&name, &stored))
        }
    }
}

/// `n` and `last` of a listing.
fn paging(q: &Query) -> Result<(Option<usize>, Option<String>), Error> {
    let n =
        match &q.n {
            None => None,
            Some(s) => Some(s.parse::<usize>().map_err(|_| {
                Error::Unsupported(format!("n={s:?} is not a non-negative integer"))
            })?),
        };
    Ok((n, q.last.clone()))
}

/// The `Link` header of a listing with more to come.
fn next_link(path: &str, n: Option<usize>, more: bool, last: Option<&String>) -> Option<String> {
    let (Some(n), true, Some(last)) = (n, more, last) else {
        return None;
    };
    let last = percent_encoding::utf8_percent_encode(last, percent_encoding::NON_ALPHANUMERIC);
    Some(format!("<{path}?n={n}&last={last}>; rel=\"next\""))
}

fn listing(body: serde_json::Value, link: Option<String>) -> Response {
    let mut headers = vec![("content-type", "application/json".to_owned())];
    if let Some(l) = link {
        headers.push(("link", l));
    }
    respond(StatusCode::OK, &headers, Body::from(body.to_string()))
}

fn blob_created(name: &str, s: &Stored) -> Response {
    respond(
        StatusCode::CREATED,
        &[
            ("location", format!("/v2/{name}/blobs/{}", s.digest)),
            (CONTENT_DIGEST, s.digest.to_string()),
            ("content-length", "0".into()),
        ],
        Body::empty(),
    )
}

fn upload_accepted(name: &str, id: &str, size: u64) -> Response {
    respond(
        StatusCode::ACCEPTED,
        &[
            ("location", format!("/v2/{name}/blobs/uploads/{id}")),
            ("range", range(size)),
            (UPLOAD_UUID, id.to_owned()),
            ("content-length", "0".into()),
        ],
        Body::empty(),
    )
}

/// The first byte a chunk's `Content-Range` (`<start>-<end>`) names, and the length it and
/// `Content-Length` announce (which must agree).
fn chunk_range(h: &HeaderMap) -> Result<(Option<u64>, Option<u64>), Error> {
    let declared = body::declared_length(h);
    let Some(v) = h.get(header::CONTENT_RANGE) else {
        return Ok((None, declared));
    };
    let bad = || Error::BlobUploadInvalid("Content-Range is not <start>-<end>".into());
    let s = v.to_str().map_err(|_| bad())?.trim();
    let s = s
        .strip_prefix("bytes=")
        .or_else(|| s.strip_prefix("bytes "))
        .unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (start, end): (u64, u64) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if end < start {
        return Err(bad());
    }
    let len = end - start + 1;
    if declared.is_some_and(|d| d != len) {
        return Err(Error::SizeInvalid(format!(
            "Content-Range names {len} bytes, Content-Length {}",
            declared.unwrap_or_default()
        )));
    }
    Ok((Some(start), Some(len)))
}

fn stall(req: &Request) -> Duration {
    req.extensions()
        .get::<Context>()
        .cloned()
        .unwrap_or_else(Context::standalone)
        .stall
}

/// The request body as a chunk stream, each frame within the listener's stall timeout.
fn chunks(req: Request) -> Chunks<'static> {
    let stall = stall(&req);
    let stream = req.into_body().into_data_stream();
    Box::pin(futures::stream::unfold(Some(stream), move |s| async move {
        let mut s = s?;
        match tokio::time::timeout(stall, s.next()).await {
            Err(_) => Some((
                Err(Error::Body(format!("no byte arrived for {stall:?}"))),
                None,
            )),
            Ok(None) => None,
            Ok(Some(Ok(b))) => Some((Ok(b), Some(s))),
            Ok(Some(Err(e))) => Some((Err(Error::Body(e.to_string())), None)),
        }
    }))
}

/// A manifest body, whole, under `MAX_MANIFEST_SIZE` and the listener's budgets (reserved
/// until the returned reservation is dropped).
async fn read_manifest(req: Request) -> Result<(bytes::Bytes, body::Reservation), Error> {
    let ctx = req
        .extensions()
        .get::<Context>()
        .cloned()
        .unwrap_or_else(Context::standalone);
    let declared = body::declared_length(req.headers());
    match body::read(
        req.into_body(),
        declared,
        MAX_MANIFEST_SIZE,
        &ctx.budgets,
        ctx.stall,
    )
    .await
    {
        Ok(read) => Ok(read),
        Err(body::Error::TooLarge { limit }) => Err(Error::ManifestInvalid(format!(
            "a manifest is at most {limit} bytes"
        ))),
        Err(body::Error::Throttled) => Err(Error::TooManyRequests(
            "too many request bytes are in flight; retry later".into(),
        )),
        Err(e) => Err(Error::Body(e.to_string())),
    }
}

/// A blob's bytes (or, for `HEAD`, its headers), honouring a single `Range: bytes=a-b`.
async fn blob(
    reg: &Registry,
    name: &str,
    digest: &Digest,
    head: bool,
    headers: &HeaderMap,
) -> Result<Response, Error> {
    let mut b = reg.open_blob(name, digest).await?;
    let mut common = vec![
        (CONTENT_DIGEST, digest.to_string()),
        ("content-type", "application/octet-stream".to_owned()),
        ("accept-ranges", "bytes".to_owned()),
    ];
    let wanted = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| byte_range(r, b.size));
    let (status, start, len) = match wanted {
        Some(Some((a, z))) => {
            common.push(("content-range", format!("bytes {a}-{z}/{}", b.size)));
            (StatusCode::PARTIAL_CONTENT, a, z - a + 1)
        }
        Some(None) => {
            return Ok(respond(
                StatusCode::RANGE_NOT_SATISFIABLE,
                &[("content-range", format!("bytes */{}", b.size))],
                Body::empty(),
            ));
        }
        None => (StatusCode::OK, 0, b.size),
    };
    common.push(("content-length", len.to_string()));
    if head {
        return Ok(respond(status, &common, Body::empty()));
    }
    if start > 0 {
        b.file.seek(std::io::SeekFrom::Start(start)).await?;
    }
    let stream = tokio_util::io::ReaderStream::with_capacity(b.file.take(len), 256 * 1024);
    Ok(respond(status, &common, Body::from_stream(stream)))
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` against a blob of `size` bytes: `None` if the header
/// is not one range of that form (the whole blob is sent), `Some(None)` if it is unsatisfiable.
fn byte_range(header: &str, size: u64) -> Option<Option<(u64, u64)>> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let r = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        (n > 0 && size > 0).then(|| (size.saturating_sub(n), size - 1))
    } else {
        let a: u64 = a.parse().ok()?;
        let z = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse::<u64>().ok()?.min(size.saturating_sub(1))
        };
        (a < size && a <= z).then_some((a, z))
    };
    Some(r)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_read_from_the_end() {
        assert_eq!(route("_catalog"), Some(Route::Catalog));
        assert_eq!(
            route("team/agent/tags/list"),
            Some(Route::Tags("team/agent".into()))
        );
        assert_eq!(
            route("team/agent/manifests/v1"),
            Some(Route::Manifest("team/agent".into(), "v1".into()))
        );
        assert_eq!(
            route("a/blobs/b/blobs/sha256:00"),
            Some(Route::Blob("a/blobs/b".into(), "sha256:00".into()))
        );
        assert_eq!(
            route("a/b/blobs/uploads/"),
            Some(Route::Uploads("a/b".into()))
        );
        assert_eq!(
            route("a/b/blobs/uploads/123"),
            Some(Route::Upload("a/b".into(), "123".into()))
        );
        assert_eq!(
            route("a/referrers/sha256:00"),
            Some(Route::Referrers("a".into(), "sha256:00".into()))
        );
        assert_eq!(route("a/b/other/x"), None);
        assert_eq!(route("a"), None);
    }

    #[test]
    fn ranges_and_links() {
        assert_eq!(byte_range("bytes=0-9", 100), Some(Some((0, 9))));
        assert_eq!(byte_range("bytes=90-", 100), Some(Some((90, 99))));
        assert_eq!(byte_range("bytes=-10", 100), Some(Some((90, 99))));
        assert_eq!(byte_range("bytes=100-", 100), Some(None));
        assert_eq!(byte_range("bytes=0-1,3-4", 100), None);
        assert_eq!(range(0), "0-0");
        assert_eq!(range(10), "0-9");
        assert_eq!(
            next_link("/v2/a/tags/list", Some(2), true, Some(&"v1".to_owned())).unwrap(),
            "</v2/a/tags/list?n=2&last=v1>; rel=\"next\""
        );
        assert_eq!(next_link("/v2/_catalog", None, false, None), None);
    }

    #[test]
    fn content_range_and_length_must_agree() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_RANGE, HeaderValue::from_static("5-9"));
        assert_eq!(chunk_range(&h).unwrap(), (Some(5), Some(5)));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("4"));
        assert_eq!(chunk_range(&h).unwrap_err().code(), "SIZE_INVALID");
        h.insert(header::CONTENT_RANGE, HeaderValue::from_static("9-5"));
        assert_eq!(chunk_range(&h).unwrap_err().code(), "BLOB_UPLOAD_INVALID");
    }
}
