//! Text embeddings for vector retrieval.
//!
//! [`Embedder`] is the seam: the default implementation, [`MiniLm`], runs MiniLM-L6-v2 in
//! process through candle from files fetched at set-up time (`scripts/fetch-model.sh`), with no
//! network. [`crate::EmbeddingsApi`] calls an OpenAI-compatible embeddings API instead. An
//! implementation only has to turn texts into vectors of a fixed dimension; vectors are compared
//! by dot product, so implementations return them L2-normalised.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use std::path::{Path, PathBuf};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// Why texts could not be embedded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model file is missing or unreadable.
    #[error(
        "cannot read {path}: {detail}; run scripts/fetch-model.sh or pass --embedding-model DIR"
    )]
    Missing {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// The model files are there but do not load.
    #[error("cannot load the embedding model: {0}")]
    Load(String),
    /// Inference failed.
    #[error("embedding failed: {0}")]
    Inference(String),
    /// The embeddings API failed or answered something unusable.
    #[error("embeddings api: {0}")]
    Api(String),
}

/// Turns texts into L2-normalised vectors of [`Embedder::dims`] dimensions.
///
/// Calls are CPU-bound and blocking: async callers run them on the blocking pool.
pub trait Embedder: Send + Sync + 'static {
    /// Vector dimension.
    fn dims(&self) -> usize;
    /// A short name for logs (`all-MiniLM-L6-v2`).
    fn name(&self) -> &str;
    /// One vector per text, in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error>;
}

/// Longest input in tokens; the model was trained on 256-token sequences.
const MAX_TOKENS: usize = 256;

/// MiniLM-L6-v2 (sentence-transformers), mean-pooled and normalised, on the CPU.
pub struct MiniLm {
    model: BertModel,
    tokenizer: Tokenizer,
    dims: usize,
}

impl MiniLm {
    /// The directory `scripts/fetch-model.sh` fills, relative to a repository or data directory.
    pub const DEFAULT_SUBDIR: &'static str = ".cache/models/all-minilm-l6-v2";

    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|e| Error::Missing {
                path,
                detail: e.to_string(),
            })
        };
        let config: Config = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| Error::Load(format!("config.json: {e}")))?;
        let mut tokenizer = Tokenizer::from_bytes(read("tokenizer.json")?)
            .map_err(|e| Error::Load(format!("tokenizer.json: {e}")))?;
        // The shipped tokenizer pads every input to 128 tokens; pad to the longest in the batch
        // instead and allow the model's full training length.
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| Error::Load(format!("tokenizer truncation: {e}")))?;
        let vb = VarBuilder::from_buffered_safetensors(
            read("model.safetensors")?,
            DType::F32,
            &Device::Cpu,
        )
        .map_err(|e| Error::Load(format!("model.safetensors: {e}")))?;
        let model =
            BertModel::load(vb, &config).map_err(|e| Error::Load(format!("bert weights: {e}")))?;
        Ok(Self {
            model,
            tokenizer,
            dims: config.hidden_size,
        })
    }

    fn forward(&self, texts: &[&str]) -> candle_core::Result<Vec<Vec<f32>>> {
        let enc = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let n = enc.len();
        let len = enc.first().map_or(0, |e| e.get_ids().len());
        let flat = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> {
            enc.iter().flat_map(|e| f(e).iter().copied()).collect()
        };
        let ids = Tensor::from_vec(flat(&|e| e.get_ids()), (n, len), &Device::Cpu)?;
        let types = Tensor::from_vec(flat(&|e| e.get_type_ids()), (n, len), &Device::Cpu)?;
        let mask = Tensor::from_vec(flat(&|e| e.get_attention_mask()), (n, len), &Device::Cpu)?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        // Mean over real tokens only (padding masked out), then L2-normalise: the pooling
        // all-MiniLM-L6-v2 was trained with.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        mean.broadcast_div(&norm)?.to_vec2::<f32>()
    }
}

impl Embedder for MiniLm {
    fn dims(&self) -> usize {
        self.dims
    }

    fn name(&self) -> &str {
        "all-MiniLM-L6-v2"
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        // Batches of similar cost: padding to the longest text makes huge batches wasteful.
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(32) {
            out.extend(
                self.forward(chunk)
                    .map_err(|e| Error::Inference(e.to_string()))?,
            );
        }
        Ok(out)
    }
}

/// Dot product of two equally long vectors (cosine similarity for normalised ones).
///
/// This is the inner loop of every vector search (100k records x 384 dims per query), so it
/// keeps [`LANES`] independent partial sums: floating-point addition is not associative, so the
/// compiler may only vectorise a sum written this way, never a plain `iter().sum()`.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Partial sums in [`dot`]: four SSE registers' worth, or two AVX ones.
const LANES: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    /// The model fetched by `scripts/fetch-model.sh` into the repository.
    fn model_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(MiniLm::DEFAULT_SUBDIR)
    }

    #[test]
    fn missing_model_names_the_fix() {
        let Err(e) = MiniLm::load(Path::new("/nonexistent")) else {
            panic!("loaded a model from nowhere");
        };
        assert!(e.to_string().contains("fetch-model.sh"), "{e}");
    }

    #[test]
    fn paraphrases_are_closer_than_unrelated_text() {
        let m = MiniLm::load(&model_dir()).expect("run scripts/fetch-model.sh first");
        let v = m
            .embed(&[
                "The user prefers green tea in the morning",
                "In the mornings they like to drink green tea",
                "The quarterly tax report is due on Friday",
            ])
            .unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].len(), 384);
        assert!((dot(&v[0], &v[0]) - 1.0).abs() < 1e-4);
        let close = dot(&v[0], &v[1]);
        let far = dot(&v[0], &v[2]);
        assert!(close > 0.7 && far < 0.3, "close {close}, far {far}");
        // Batching and padding do not change a text's vector.
        let alone = m
            .embed(&["The quarterly tax report is due on Friday"])
            .unwrap();
        assert!(dot(&alone[0], &v[2]) > 0.9999);
    }

    #[test]
    fn dot_matches_the_plain_sum_at_every_length() {
        for n in [0, 1, 15, 16, 17, 33, 384] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-4, "n = {n}");
        }
    }
}
