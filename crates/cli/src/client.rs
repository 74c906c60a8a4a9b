//! A signed HTTP client for the server's APIs, used by every client command.

use crate::ClientArgs;
use anyhow::{Context, anyhow, bail};
use berth_auth::Credentials;
use serde_json::Value;
use std::time::SystemTime;

/// Talks to one Berth server with one set of credentials.
pub struct Client {
    http: reqwest::Client,
    base: String,
    creds: Credentials,
    region: String,
}

/// Characters left alone when a path segment is encoded (RFC 3986 unreserved).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes one path segment (ARNs carry `:` and `/`).
pub fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

impl Client {
    /// Credentials from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, else the root credentials
    /// in the data dir.
    pub fn new(args: &ClientArgs) -> anyhow::Result<Self> {
        let creds = match (
            std::env::var("AWS_ACCESS_KEY_ID"),
            std::env::var("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Ok(id), Ok(secret)) if !id.is_empty() => Credentials {
                access_key_id: id,
                secret_access_key: secret,
            },
            _ => {
                let dir = args
                    .data_dir
                    .clone()
                    .unwrap_or_else(crate::serve::default_data_dir);
                crate::serve::existing_root_credentials(&dir)?.ok_or_else(|| {
                    anyhow!(
                        "no credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or point --data-dir at the server's data dir ({} has none)",
                        dir.display()
                    )
                })?
            }
        };
        Ok(Self {
            http: reqwest::Client::builder().build()?,
            base: args.endpoint_url.trim_end_matches('/').to_owned(),
            creds,
            region: args.region.clone(),
        })
    }

    /// The access key id and secret this client signs with.
    pub fn credentials(&self) -> (&str, &str) {
        (&self.creds.access_key_id, &self.creds.secret_access_key)
    }

    /// The response itself when its status is a success; else an error naming the AWS error
    /// code (`x-amzn-errortype`), the status and the message, for calls that stream a body.
    pub async fn success(resp: reqwest::Response) -> anyhow::Result<reqwest::Response> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let code = resp
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("error")
            .to_owned();
        let body = resp.text().await.unwrap_or_default();
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        bail!(
            "{code} ({}): {}",
            status.as_u16(),
            v.get("message").and_then(Value::as_str).unwrap_or(&body)
        )
    }

    /// Sends a signed request and returns the response, whatever its status.
    pub async fn send(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<reqwest::Response> {
        self.send_with(method, path_and_query, body, &[]).await
    }

    /// Like [`Client::send`], with extra headers.
    pub async fn send_with(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&Value>,
        headers: &[(String, String)],
    ) -> anyhow::Result<reqwest::Response> {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.send_raw(
            method,
            path_and_query,
            bytes,
            "application/json",
            headers,
            "bedrock-agentcore",
        )
        .await
    }

    /// Uploads to the artifact store: with `object` = None, creates `bucket` (an existing one of
    /// ours is fine); else puts the object.
    pub async fn s3_put(
        &self,
        bucket: &str,
        object: Option<(&str, Vec<u8>)>,
    ) -> anyhow::Result<()> {
        let creating = object.is_none();
        let (path, body) = match object {
            None => (format!("/{}", seg(bucket)), Vec::new()),
            Some((key, body)) => {
                let k: Vec<String> = key.split('/').map(seg).collect();
                (format!("/{}/{}", seg(bucket), k.join("/")), body)
            }
        };
        let resp = self
            .send_raw("PUT", &path, body, "application/octet-stream", &[], "s3")
            .await?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() || (creating && text.contains("BucketAlreadyOwnedByYou")) {
            return Ok(());
        }
        bail!(
            "artifact store refused PUT {path} ({}): {text}",
            status.as_u16()
        )
    }

    async fn send_raw(
        &self,
        method: &str,
        path_and_query: &str,
        bytes: Vec<u8>,
        content_type: &str,
        headers: &[(String, String)],
        service: &str,
    ) -> anyhow::Result<reqwest::Response> {
        let url = format!("{}{}", self.base, path_and_query);
        let mut b = http::Request::builder()
            .method(method)
            .uri(&url)
            .header("content-type", content_type);
        for (k, v) in headers {
            b = b.header(k, v);
        }
        let mut req = b.body(bytes).context("building the request")?;
        berth_auth::sign(
            &mut req,
            &self.creds,
            &self.region,
            service,
            SystemTime::now(),
        )
        .map_err(|e| anyhow!("signing the request: {e}"))?;
        let (parts, body) = req.into_parts();
        let mut rb = self.http.request(parts.method, url);
        for (k, v) in &parts.headers {
            rb = rb.header(k, v);
        }
        rb.body(body)
            .send()
            .await
            .with_context(|| format!("cannot reach the berth server at {}", self.base))
    }

    /// Sends a signed JSON request; AgentCore errors become readable errors.
    pub async fn call(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let resp = self.send(method, path_and_query, body).await?;
        let status = resp.status();
        let code = resp
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = resp.text().await.context("reading the response")?;
        if !status.is_success() {
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let msg = v.get("message").and_then(Value::as_str).unwrap_or(&text);
            bail!(
                "{} ({}): {msg}",
                code.unwrap_or_else(|| "error".into()),
                status.as_u16()
            );
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).context("the server sent a response that is not JSON")
    }

    /// Resolves a runtime given by id or by name to its id.
    pub async fn runtime_id(&self, id_or_name: &str) -> anyhow::Result<String> {
        if looks_like_id(id_or_name) {
            return Ok(id_or_name.to_owned());
        }
        let mut token: Option<String> = None;
        loop {
            let q = match &token {
                Some(t) => format!("/runtimes/?maxResults=100&nextToken={}", seg(t)),
                None => "/runtimes/?maxResults=100".to_owned(),
            };
            let page = self.call("POST", &q, None).await?;
            for r in page["agentRuntimes"].as_array().into_iter().flatten() {
                if r["agentRuntimeName"] == id_or_name {
                    return Ok(r["agentRuntimeId"].as_str().unwrap_or_default().to_owned());
                }
            }
            match page.get("nextToken").and_then(Value::as_str) {
                Some(t) => token = Some(t.to_owned()),
                None => bail!("no agent runtime named {id_or_name}"),
            }
        }
    }
}

/// `<name>-<10 alphanumerics>`.
fn looks_like_id(s: &str) -> bool {
    s.rsplit_once('-').is_some_and(|(n, suffix)| {
        !n.is_empty() && suffix.len() == 10 && suffix.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}
