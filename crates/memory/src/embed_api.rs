//! An [`Embedder`] that calls an OpenAI-compatible embeddings API (`POST {base}/embeddings`:
//! OpenAI, vLLM, Ollama, LiteLLM, text-embeddings-inference...) instead of running a model in
//! process.
//!
//! [`Embedder`] is synchronous and runs on the blocking pool, so this uses reqwest's blocking
//! client. That client owns a runtime thread and must not be built on an async worker, so it is
//! built on first use, which is always on the blocking pool.

use crate::ConfigError;
use crate::embed::{Embedder, Error};
use serde::Deserialize;
use serde_json::{Value, json};
use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

/// Texts sent in one request at most; APIs cap the batch (OpenAI at 2048 inputs) and the
/// tokens per request, and records are short.
const BATCH: usize = 64;

/// Per-request timeout unless configured otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// An OpenAI-compatible embeddings API.
pub struct EmbeddingsApi {
    /// `{base}/embeddings`.
    endpoint: String,
    model: String,
    api_key: Option<String>,
    timeout: Duration,
    /// Configured, or learned from the first answer; every later answer must match.
    dims: OnceLock<usize>,
    client: OnceLock<reqwest::blocking::Client>,
}

impl fmt::Debug for EmbeddingsApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddingsApi")
            .field("endpoint", &self.endpoint)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("dims", &self.dims.get())
            .finish()
    }
}

#[derive(Deserialize)]
struct Answer {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    /// Which input this vector is for; absent from some servers, then the position counts.
    #[serde(default)]
    index: Option<usize>,
    embedding: Vec<f32>,
}

impl EmbeddingsApi {
    /// An embedder for `model` at `base_url` (e.g. `https://api.openai.com/v1`), sending
    /// `api_key` as a bearer token when given. `dims`, when known, is checked against every
    /// answer; otherwise the first answer sets it.
    pub fn new(
        base_url: &str,
        model: impl Into<String>,
        api_key: Option<String>,
        dims: Option<usize>,
    ) -> Self {
        let known = OnceLock::new();
        if let Some(d) = dims {
            let _ = known.set(d);
        }
        Self {
            endpoint: format!("{}/embeddings", base_url.trim_end_matches('/')),
            model: model.into(),
            api_key,
            timeout: DEFAULT_TIMEOUT,
            dims: known,
            client: OnceLock::new(),
        }
    }

    /// The same embedder with another per-request timeout [default: 60 s].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The embedder the settings name (`BERTH_EMBEDDING_API_*`, see
    /// [`crate::Options::configure`]), or `None` when no URL is set.
    pub(crate) fn from_settings(s: &crate::Settings) -> Result<Option<Self>, ConfigError> {
        let dims = match s.embedding_api_dims {
            Some(0) => {
                return Err(ConfigError::Invalid {
                    key: "BERTH_EMBEDDING_API_DIMS",
                    detail: "\"0\" is not a positive number of dimensions".into(),
                });
            }
            d => d,
        };
        let model = s.embedding_api_model.clone();
        let Some(url) = s.embedding_api_url.clone() else {
            if model.is_some() || dims.is_some() {
                return Err(ConfigError::Invalid {
                    key: "BERTH_EMBEDDING_API_URL",
                    detail: "an embeddings api model or dimension is set but no api url".into(),
                });
            }
            return Ok(None);
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                key: "BERTH_EMBEDDING_API_URL",
                detail: format!("{url:?} is not an http:// or https:// url"),
            });
        }
        if s.embedding_model.is_some() {
            return Err(ConfigError::Invalid {
                key: "BERTH_EMBEDDING_API_URL",
                detail: "cannot be combined with an embedding model directory (or none): \
                         choose one embedder"
                    .into(),
            });
        }
        let model = model.ok_or_else(|| ConfigError::Invalid {
            key: "BERTH_EMBEDDING_API_MODEL",
            detail: "required with an embeddings api url".into(),
        })?;
        Ok(Some(Self::new(
            &url,
            model,
            s.embedding_api_key.clone(),
            dims,
        )))
    }

    fn client(&self) -> Result<&reqwest::blocking::Client, Error> {
        if let Some(c) = self.client.get() {
            return Ok(c);
        }
        let built = reqwest::blocking::Client::builder()
            .timeout(self.timeout)
            .build()
            .map_err(|e| Error::Api(format!("http client: {e}")))?;
        // Two first calls may race; either client will do.
        Ok(self.client.get_or_init(|| built))
    }

    /// One request for at most [`BATCH`] texts.
    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        let mut req = self
            .client()?
            .post(&self.endpoint)
            .json(&json!({"model": self.model, "input": texts}));
        if let Some(k) = &self.api_key {
            req = req.bearer_auth(k);
        }
        let resp = req
            .send()
            .map_err(|e| Error::Api(format!("{} unreachable: {e}", self.endpoint)))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .map_err(|e| Error::Api(format!("reading the answer: {e}")))?;
        if !status.is_success() {
            let said = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| {
                    ["/error/message", "/message", "/error"]
                        .iter()
                        .find_map(|p| v.pointer(p).and_then(Value::as_str).map(str::to_owned))
                })
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(500).collect());
            return Err(Error::Api(format!(
                "{} answered {status}: {said}",
                self.endpoint
            )));
        }
        let answer: Answer = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Api(format!(
                "{} answered {status} without a data list of embeddings: {e}",
                self.endpoint
            ))
        })?;
        self.vectors(answer, texts.len())
    }

    /// The answer's vectors in input order, checked and normalised.
    fn vectors(&self, answer: Answer, expected: usize) -> Result<Vec<Vec<f32>>, Error> {
        if answer.data.len() != expected {
            return Err(Error::Api(format!(
                "asked for {expected} embeddings, got {}",
                answer.data.len()
            )));
        }
        let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected];
        for (pos, item) in answer.data.into_iter().enumerate() {
            let i = item.index.unwrap_or(pos);
            let Some(slot) = slots.get_mut(i) else {
                return Err(Error::Api(format!("embedding index {i} is out of range")));
            };
            if slot.replace(normalised(item.embedding, i)?).is_some() {
                return Err(Error::Api(format!("embedding index {i} is repeated")));
            }
        }
        let vectors: Vec<Vec<f32>> = slots.into_iter().flatten().collect();
        for v in &vectors {
            let dims = *self.dims.get_or_init(|| v.len());
            if v.len() != dims {
                return Err(Error::Api(format!(
                    "got a {}-dimensional embedding, expected {dims}",
                    v.len()
                )));
            }
        }
        Ok(vectors)
    }
}

/// `v` scaled to unit length.
fn normalised(mut v: Vec<f32>, index: usize) -> Result<Vec<f32>, Error> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if v.is_empty() || !norm.is_finite() || norm == 0.0 {
        return Err(Error::Api(format!(
            "embedding {index} is empty, zero or not finite"
        )));
    }
    for x in &mut v {
        *x /= norm;
    }
    Ok(v)
}

impl Embedder for EmbeddingsApi {
    /// The configured dimension, else the one the first answer had; 0 before that.
    fn dims(&self) -> usize {
        self.dims.get().copied().unwrap_or(0)
    }

    fn name(&self) -> &str {
        &self.model
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(BATCH) {
            out.extend(self.embed_batch(chunk)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail by panicking
mod tests {
    use super::*;

    fn answer(items: Value) -> Answer {
        serde_json::from_value(json!({"data": items})).unwrap()
    }

    #[test]
    fn vectors_come_back_in_input_order_and_unit_length() {
        let api = EmbeddingsApi::new("http://x/v1/", "m", None, None);
        assert_eq!(api.endpoint, "http://x/v1/embeddings");
        assert_eq!(api.dims(), 0);
        let v = api
            .vectors(
                answer(json!([{"index": 1, "embedding": [0.0, 2.0]},
                              {"index": 0, "embedding": [3.0, 4.0]}])),
                2,
            )
            .unwrap();
        assert_eq!(v, vec![vec![0.6, 0.8], vec![0.0, 1.0]]);
        assert_eq!(api.dims(), 2);
        // A later answer of another dimension is an error, not a silently wrong index.
        let err = api
            .vectors(
                answer(json!([{"index": 0, "embedding": [1.0, 0.0, 0.0]}])),
                1,
            )
            .unwrap_err();
        assert!(err.to_string().contains("expected 2"), "{err}");
    }

    #[test]
    fn malformed_answers_are_errors() {
        let api = EmbeddingsApi::new("http://x", "m", None, Some(2));
        let cases = [
            (
                json!([{"index": 0, "embedding": [1.0, 0.0]}]),
                2,
                "asked for 2",
            ),
            (
                json!([{"index": 0, "embedding": [1.0, 0.0]},
                    {"index": 0, "embedding": [0.0, 1.0]}]),
                2,
                "repeated",
            ),
            (
                json!([{"index": 5, "embedding": [1.0, 0.0]}]),
                1,
                "out of range",
            ),
            (json!([{"index": 0, "embedding": [0.0, 0.0]}]), 1, "zero"),
            (
                json!([{"index": 0, "embedding": [1.0, 0.0, 0.0]}]),
                1,
                "expected 2",
            ),
        ];
        for (items, n, want) in cases {
            let err = api.vectors(answer(items), n).unwrap_err().to_string();
            assert!(err.contains(want), "{err} lacks {want}");
        }
        // Servers that leave out `index` answer in input order.
        let v = api
            .vectors(answer(json!([{"embedding": [0.0, 5.0]}])), 1)
            .unwrap();
        assert_eq!(v, vec![vec![0.0, 1.0]]);
    }
}
