#![allow(clippy::unwrap_used)]

use super::*;
use serde_json::json;

async fn open(dir: &tempfile::TempDir, max: u64) -> Registry {
    Registry::open(Options {
        root: dir.path().join("registry"),
        max_blob_size: max,
    })
    .await
    .unwrap()
}

fn body(parts: &[&'static [u8]]) -> Chunks<'static> {
    let parts: Vec<Result<Bytes, Error>> =
        parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
    Box::pin(futures::stream::iter(parts))
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

async fn push_blob(r: &Registry, name: &str, content: &'static [u8]) -> Digest {
    let d = Digest::of(content);
    r.put_blob(name, &d, Some(content.len() as u64), body(&[content]))
        .await
        .unwrap();
    d
}

fn image_manifest(config: &Digest, layers: &[&Digest]) -> Bytes {
    let desc = |d: &Digest, mt: &str| json!({"mediaType": mt, "digest": d.as_str(), "size": 1});
    Bytes::from(
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": desc(config, "application/vnd.oci.image.config.v1+json"),
            "layers": layers.iter().map(|d| desc(d, "application/vnd.oci.image.layer.v1.tar")).collect::<Vec<_>>(),
        }))
        .unwrap(),
    )
}

#[tokio::test]
async fn a_digest_mismatch_is_refused_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let r = open(&dir, 1 << 20).await;
    let wrong = Digest::of(b"something else");
    let e = r
        .put_blob("team/agent", &wrong, None, body(&[b"hello"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "DIGEST_INVALID");
    assert_eq!(
        files_under(&dir.path().join("registry")),
        Vec::<PathBuf>::new()
    );
    assert_eq!(
        r.stat_blob("team/agent", &wrong).await.unwrap_err().code(),
        "BLOB_UNKNOWN"
    );

    // Chunked: the upload is gone after the mismatch too.
    let id = r.start_upload("team/agent").await.unwrap();
    r.append("team/agent", &id, None, None, body(&[b"abc"]))
        .await
        .unwrap();
    let e = r
        .complete("team/agent", &id, &wrong, None, None, body(&[]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "DIGEST_INVALID");
    assert_eq!(
        r.upload_size("team/agent", &id).await.unwrap_err().code(),
        "BLOB_UPLOAD_UNKNOWN"
    );
    assert_eq!(
        files_under(&dir.path().join("registry")),
        Vec::<PathBuf>::new()
    );
}

#[tokio::test]
async fn chunks_must_arrive_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let r = open(&dir, 1 << 20).await;
    let id = r.start_upload("a").await.unwrap();
    assert_eq!(
        r.append("a", &id, Some(0), Some(3), body(&[b"abc"]))
            .await
            .unwrap(),
        3
    );
    let e = r
        .append("a", &id, Some(5), None, body(&[b"x"]))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::RangeInvalid { size: 3 }), "{e:?}");
    assert_eq!(e.status(), 416);
    // A chunk shorter than announced is cut off again.
    let e = r
        .append("a", &id, Some(3), Some(10), body(&[b"de"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "SIZE_INVALID");
    assert_eq!(r.upload_size("a", &id).await.unwrap(), 3);
    // Another repository does not see the upload.
    assert_eq!(
        r.upload_size("b", &id).await.unwrap_err().code(),
        "BLOB_UPLOAD_UNKNOWN"
    );
    r.append("a", &id, Some(3), None, body(&[b"de"]))
        .await
        .unwrap();
    let stored = r
        .complete(
            "a",
            &id,
            &Digest::of(b"abcdef"),
            Some(5),
            None,
            body(&[b"f"]),
        )
        .await
        .unwrap();
    assert_eq!(stored.size, 6);
    let mut blob = r.open_blob("a", &Digest::of(b"abcdef")).await.unwrap();
    let mut s = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut blob.file, &mut s)
        .await
        .unwrap();
    assert_eq!(s, "abcdef");
}

#[tokio::test]
async fn blobs_over_the_cap_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let r = open(&dir, 4).await;
    let d = Digest::of(b"12345");
    let e = r
        .put_blob("a", &d, None, body(&[b"123", b"45"]))
        .await
        .unwrap_err();
    assert_eq!((e.code(), e.status()), ("SIZE_INVALID", 413));
    let e = r
        .put_blob("a", &d, Some(5), body(&[b"12345"]))
        .await
        .unwrap_err();
    assert_eq!(e.status(), 413);
}

#[tokio::test]
async fn mounting_needs_the_blob_in_the_source_repository() {
    let dir = tempfile::tempdir().unwrap();
    let r = open(&dir, 1 << 20).await;
    let d = push_blob(&r, "base/image", b"layer").await;
    match r
        .mount_or_start("team/agent", &d, "base/image")
        .await
        .unwrap()
    {
        Started::Done(s) => assert_eq!(s.size, 5),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.stat_blob("team/agent", &d).await.unwrap(), 5);
    // A repository that does not hold it: an upload starts instead.
    assert!(matches!(
        r.mount_or_start("other", &d, "nowhere").await.unwrap(),
        Started::Upload(_)
    ));
    assert!(r.stat_blob("other", &d).await.is_err());
    // Deleting from one repository leaves the other's.
    r.delete_blob("base/image", &d).await.unwrap();
    assert_eq!(
        r.stat_blob("base/image", &d).await.unwrap_err().code(),
        "BLOB_UNKNOWN"
    );
    assert_eq!(r.stat_blob("team/agent", &d).await.unwrap(), 5);
}

#[tokio::test]
async fn a_manifest_needs_its_blobs_and_children() {
    let dir = tempfile::tempdir().unwrap();
    let r = open(&dir, 1 << 20).await;
    let config = push_blob(&r, "a", b"{}").await;
    let absent = Digest::of(b"absent");
    let m = image_manifest(&config, &[&absent]);
    let e = r
        .put_manifest("a", &ManifestRef::Tag("v1".into()), Some(OCI_MANIFEST), m)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(e.status(), 400);

    let layer = push_blob(&r, "a", b"layer").await;
    let m = image_manifest(&config, &[&layer]);
    let stored = r
        .put_manifest(
            "a",
            &ManifestRef::Tag("v1".into()),
            Some(OCI_MANIFEST),
            m.clone(),
        )
        .await
        .unwrap();
    assert_eq!(stored.digest, Digest::of(&m));
    let (name, got) = r.resolve("a:v1").await.unwrap();
    assert_eq!(
        (name.as_str(), &got.bytes, got.media_type.as_str()),
        ("a", &m, OCI_MANIFEST)
    );
    let by_digest = r.resolve(&format!("a@{}", stored.digest)).await.unwrap().1;
    assert_eq!(by_digest.bytes, m);

    // An index over a child the repository lacks is refused; over the stored one accepted.
    let index = |child: &Digest| {
        Bytes::from(
            serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [{"mediaType": OCI_MANIFEST, "digest": child.as_str(), "size": 10,
                    "platform": {"os": "linux", "architecture": "amd64"}}],
            }))
            .unwrap(),
        )
    };
    let e = r
        .put_manifest(
            "a",
            &ManifestRef::Tag("multi".into()),
            Some(OCI_INDEX),
            index(&absent),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "MANIFEST_BLOB_UNKNOWN");
    r.put_manifest(
        "a",
        &ManifestRef::Tag("multi".into()),
        Some(OCI_INDEX),
        index(&stored.digest),
    )
    .await
    .unwrap();

    // Pushed by digest: the digest must be the content's.
    let e = r
        .put_manifest(
            "a",
            &ManifestRef::Digest(absent.clone()),
            Some(OCI_MANIFEST),
            m.clone(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "DIGEST_INVALID");
    // Content-Type and mediaType must agree; unknown types and non-JSON are invalid.
    for (ct, body) in [
        (Some(DOCKER_MANIFEST), m.clone()),
        (
            Some("text/plain"),
            Bytes::from_static(b"{\"schemaVersion\":2}"),
        ),
        (None, Bytes::from_static(b"not json")),
        (None, Bytes::from_static(b"{\"schemaVersion\":1}")),
    ] {
        let e = r
            .put_manifest("a", &ManifestRef::Tag("x".into()), ct, body)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "MANIFEST_INVALID", "{ct:?}");
    }

    // Deleting by digest removes the tags pointing at it.
    r.delete_manifest("a", &ManifestRef::Digest(stored.digest.clone()))
        .await
        .unwrap();
    assert_eq!(
        r.resolve("a:v1").await.unwrap_err().code(),
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(r.tags("a", None, None).await.unwrap().items, vec!["multi"]);
}

#[tokio::test]
async fn tags_and_catalog_page() {
    let dir = tempfile::tempdir().unwrap();
    let r = open(&dir, 1 << 20).await;
    assert_eq!(
        r.tags("team/agent", None, None).await.unwrap_err().code(),
        "NAME_UNKNOWN"
    );
    let config = push_blob(&r, "team/agent", b"{}").await;
    let m = image_manifest(&config, &[]);
    for t in ["v3", "v1", "latest", "v2"] {
        r.put_manifest("team/agent", &ManifestRef::Tag(t.into()), None, m.clone())
            .await
            .unwrap();
    }
    let p = r.tags("team/agent", Some(2), None).await.unwrap();
    assert_eq!(
        p,
        Page {
            items: vec!["latest".into(), "v1".into()],
            more: true
        }
    );
    let p = r.tags("team/agent", Some(2), Some("v1")).await.unwrap();
    assert_eq!(
        p,
        Page {
            items: vec!["v2".into(), "v3".into()],
            more: false
        }
    );
    let p = r.tags("team/agent", Some(0), None).await.unwrap();
    assert_eq!(
        p,
        Page {
            items: vec![],
            more: true
        }
    );

    push_blob(&r, "team", b"x").await;
    push_blob(&r, "zeta/one/two", b"y").await;
    let all = r.catalog(None, None).await.unwrap();
    assert_eq!(all.items, vec!["team", "team/agent", "zeta/one/two"]);
    let p = r.catalog(Some(1), Some("team")).await.unwrap();
    assert_eq!(
        p,
        Page {
            items: vec!["team/agent".into()],
            more: true
        }
    );
}

#[tokio::test]
async fn names_are_validated_before_any_storage() {
    let dir = tempfile::tempdir().unwrap();
    let r = open(&dir, 1 << 20).await;
    for bad in ["../escape", "Upper", "a//b", "_manifests", "a/_layers"] {
        assert_eq!(
            r.start_upload(bad).await.unwrap_err().code(),
            "NAME_INVALID",
            "{bad}"
        );
        assert_eq!(
            r.tags(bad, None, None).await.unwrap_err().code(),
            "NAME_INVALID"
        );
    }
    assert_eq!(
        r.upload_size("a", "../../etc").await.unwrap_err().code(),
        "BLOB_UPLOAD_UNKNOWN"
    );
}

#[tokio::test]
async fn referrers_are_indexed_by_subject() {
    let dir = tempfile::tempdir().unwrap();
    let r = open(&dir, 1 << 20).await;
    let config = push_blob(&r, "a", b"{}").await;
    let image = r
        .put_manifest(
            "a",
            &ManifestRef::Tag("v1".into()),
            None,
            image_manifest(&config, &[]),
        )
        .await
        .unwrap();
    let sbom = |n: u32| {
        Bytes::from(
            serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": "application/vnd.example.sbom",
                "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                    "digest": config.as_str(), "size": 2},
                "layers": [],
                "subject": {"mediaType": OCI_MANIFEST, "digest": image.digest.as_str(),
                    "size": image.bytes.len()},
                "annotations": {"n": n.to_string()},
            }))
            .unwrap(),
        )
    };
    // The subject need not exist when the referrer is pushed.
    let a = r
        .put_manifest(
            "a",
            &ManifestRef::Digest(Digest::of(&sbom(1))),
            None,
            sbom(1),
        )
        .await
        .unwrap();
    assert_eq!(Registry::subject_of(&a.bytes), Some(image.digest.clone()));
    let found = r.referrers("a", &image.digest, None).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["digest"], a.digest.as_str());
    assert_eq!(found[0]["artifactType"], "application/vnd.example.sbom");
    assert_eq!(found[0]["annotations"]["n"], "1");
    assert!(
        r.referrers("a", &image.digest, Some("other/type"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        r.referrers("b", &image.digest, None)
            .await
            .unwrap()
            .is_empty()
    );
    r.delete_manifest("a", &ManifestRef::Digest(a.digest.clone()))
        .await
        .unwrap();
    assert!(
        r.referrers("a", &image.digest, None)
            .await
            .unwrap()
            .is_empty()
    );
}
