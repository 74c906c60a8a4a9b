//! The local store through its public API: durability layout, recovery at open, S3 listing and
//! range semantics, conditional writes, integrity checks, and keys that look like paths.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use berth_artifacts::{
    ArtifactStore, ByteRange, Checksum, ChecksumAlgorithm, Error, ListQuery, PutMeta,
    WriteCondition,
};
use bytes::Bytes;

async fn store() -> (tempfile::TempDir, ArtifactStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open_local(dir.path()).await.unwrap();
    store.create_bucket("artifacts", None).await.unwrap();
    (dir, store)
}

async fn put(store: &ArtifactStore, key: &str, body: &[u8]) {
    store
        .put_object(
            "artifacts",
            key,
            Bytes::copy_from_slice(body),
            PutMeta::default(),
        )
        .await
        .unwrap();
}

/// Every file under `dir`, relative.
fn files(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.insert(e.path().strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out
}

#[tokio::test]
async fn put_get_head_roundtrip_with_metadata() {
    let (_dir, store) = store().await;
    let mut meta = PutMeta {
        content_type: Some("application/zip".into()),
        ..Default::default()
    };
    meta.user_metadata.insert("team".into(), "berth".into());
    let stored = store
        .put_object(
            "artifacts",
            "agents/app.zip",
            Bytes::from_static(b"hello"),
            meta,
        )
        .await
        .unwrap();
    assert_eq!(stored.etag, "\"5d41402abc4b2a76b9719d911017c592\"");
    assert_eq!(stored.size, 5);
    // No checksum sent: the store computes CRC64NVME, as S3 does.
    assert_eq!(
        stored.checksum.as_ref().map(|c| c.algorithm),
        Some(ChecksumAlgorithm::Crc64Nvme)
    );

    let head = store
        .head_object("artifacts", "agents/app.zip")
        .await
        .unwrap();
    assert_eq!(head, stored);
    assert_eq!(head.content_type, "application/zip");
    assert_eq!(head.user_metadata["team"], "berth");

    let (meta, body) = store
        .get_object("artifacts", "agents/app.zip", None)
        .await
        .unwrap();
    assert_eq!(meta, stored);
    assert_eq!(body.len(), 5);
    assert_eq!(body.range(), None);
    assert_eq!(&body.collect().await.unwrap()[..], b"hello");
    assert_eq!(
        &store
            .read_object("artifacts", "agents/app.zip")
            .await
            .unwrap()[..],
        b"hello"
    );
}

#[tokio::test]
async fn objects_survive_reopen_and_layout_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("artifacts");
    let stored = {
        let store = ArtifactStore::open_local(&root).await.unwrap();
        store
            .create_bucket("artifacts", Some("eu-west-1"))
            .await
            .unwrap();
        put(&store, "a.zip", b"first").await;
        put(&store, "a.zip", b"second").await;
        put(&store, "b/c.zip", b"other").await;
        store.head_object("artifacts", "a.zip").await.unwrap()
    };
    // Nothing staged is left behind, and an overwritten object leaves exactly one content file.
    let all = files(&root);
    assert!(all.iter().all(|p| !p.starts_with("tmp")), "{all:?}");
    let data: Vec<_> = all
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "data"))
        .collect();
    let sidecars: Vec<_> = all
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json") && !p.ends_with("bucket.json"))
        .collect();
    assert_eq!(data.len(), 2, "{all:?}");
    assert_eq!(sidecars.len(), 2, "{all:?}");

    let store = ArtifactStore::open_local(&root).await.unwrap();
    let bucket = store.head_bucket("artifacts").await.unwrap();
    assert_eq!(bucket.region, "eu-west-1");
    assert_eq!(
        store.head_object("artifacts", "a.zip").await.unwrap(),
        stored
    );
    assert_eq!(
        &store.read_object("artifacts", "a.zip").await.unwrap()[..],
        b"second"
    );
    assert_eq!(
        &store.read_object("artifacts", "b/c.zip").await.unwrap()[..],
        b"other"
    );
}

#[tokio::test]
async fn a_directory_is_opened_by_one_store_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = ArtifactStore::open_local(dir.path()).await.unwrap();
    let err = ArtifactStore::open_local(dir.path()).await.unwrap_err();
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    drop(first);
    ArtifactStore::open_local(dir.path()).await.unwrap();
}

#[tokio::test]
async fn open_removes_leftovers_of_interrupted_writes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    {
        let store = ArtifactStore::open_local(&root).await.unwrap();
        store.create_bucket("artifacts", None).await.unwrap();
        put(&store, "kept.zip", b"kept").await;
    }
    // A staged upload, a half-built bucket, and a content file whose sidecar never landed.
    std::fs::write(root.join("tmp/0123.data"), b"staged").unwrap();
    std::fs::create_dir_all(root.join("tmp/half-bucket/objects")).unwrap();
    let objects = root.join("buckets/artifacts/objects");
    let orphan = objects.join(format!("{}.{}.data", "ab".repeat(32), "cd".repeat(16)));
    std::fs::write(&orphan, b"orphan").unwrap();
    std::fs::create_dir_all(root.join("trash/old-bucket/objects")).unwrap();

    let store = ArtifactStore::open_local(&root).await.unwrap();
    assert!(
        std::fs::read_dir(root.join("tmp"))
            .unwrap()
            .next()
            .is_none()
    );
    assert!(
        std::fs::read_dir(root.join("trash"))
            .unwrap()
            .next()
            .is_none()
    );
    assert!(!orphan.exists());
    assert_eq!(
        &store.read_object("artifacts", "kept.zip").await.unwrap()[..],
        b"kept"
    );
}

#[tokio::test]
async fn open_refuses_tampered_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    {
        let store = ArtifactStore::open_local(&root).await.unwrap();
        store.create_bucket("artifacts", None).await.unwrap();
        put(&store, "k", b"v").await;
    }
    let objects = root.join("buckets/artifacts/objects");
    let sidecar = files(&objects)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    let path = objects.join(sidecar);
    let text = std::fs::read_to_string(&path).unwrap();
    // Point the sidecar at a file outside the bucket.
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["data_file"] = "../../../../etc/passwd".into();
    std::fs::write(&path, json.to_string()).unwrap();
    let err = ArtifactStore::open_local(&root).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");

    // An unknown layout version is refused too.
    std::fs::write(&path, text).unwrap();
    std::fs::write(root.join("FORMAT"), "berth-artifacts 99\n").unwrap();
    let err = ArtifactStore::open_local(&root).await.unwrap_err();
    assert!(err.to_string().contains("unknown store format"), "{err}");
}

#[tokio::test]
async fn keys_that_look_like_paths_stay_inside_the_bucket() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("store");
    let store = ArtifactStore::open_local(&root).await.unwrap();
    store.create_bucket("artifacts", None).await.unwrap();
    let keys = [
        "../../etc/passwd",
        "../../../escape",
        "/absolute/path",
        "..",
        ".",
        "a/../../b",
        "dir/",
        "nul\u{0}byte",
        "back\\slash",
        "ünïcode ✓/🚀.zip",
    ];
    for key in keys {
        put(&store, key, key.as_bytes()).await;
    }
    // Nothing was written outside the store directory...
    let outside: Vec<_> = files(outer.path())
        .into_iter()
        .filter(|p| !p.starts_with("store"))
        .collect();
    assert!(outside.is_empty(), "{outside:?}");
    // ...and inside it, only hashed names in the bucket's objects directory.
    for f in files(&root) {
        if f.starts_with("buckets/artifacts/objects") {
            let name = f.file_name().unwrap().to_str().unwrap();
            let (stem, ext) = name.rsplit_once('.').unwrap();
            assert!(ext == "data" || ext == "json", "{name}");
            assert!(
                stem.bytes().all(|b| b.is_ascii_hexdigit() || b == b'.'),
                "{name}"
            );
        }
    }
    for key in keys {
        assert_eq!(
            &store.read_object("artifacts", key).await.unwrap()[..],
            key.as_bytes(),
            "{key:?}"
        );
    }
    let listing = store
        .list_objects(
            "artifacts",
            &ListQuery {
                max_keys: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut expected: Vec<&str> = keys.to_vec();
    expected.sort();
    let listed: Vec<&str> = listing.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(listed, expected);
}

#[tokio::test]
async fn bucket_names_are_validated_before_touching_disk() {
    let (dir, store) = store().await;
    for name in ["../../etc", "a/b", "UPPER", "x"] {
        assert!(matches!(
            store.create_bucket(name, None).await,
            Err(Error::InvalidBucketName { .. })
        ));
        assert!(matches!(
            store.head_object(name, "k").await,
            Err(Error::InvalidBucketName { .. })
        ));
    }
    assert!(!dir.path().join("etc").exists());
}

#[tokio::test]
async fn bucket_lifecycle() {
    let (_dir, store) = store().await;
    // Re-creating an existing bucket succeeds (us-east-1 behaviour).
    store.create_bucket("artifacts", None).await.unwrap();
    store.create_bucket("another", None).await.unwrap();
    let names: Vec<_> = store
        .list_buckets()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["another", "artifacts"]);

    put(&store, "k", b"v").await;
    assert!(matches!(
        store.delete_bucket("artifacts").await,
        Err(Error::BucketNotEmpty { .. })
    ));
    store.delete_object("artifacts", "k").await.unwrap();
    // Deleting a missing key succeeds.
    store.delete_object("artifacts", "k").await.unwrap();
    store.delete_bucket("artifacts").await.unwrap();
    assert!(matches!(
        store.head_bucket("artifacts").await,
        Err(Error::NoSuchBucket { .. })
    ));
    assert!(matches!(
        store.delete_bucket("artifacts").await,
        Err(Error::NoSuchBucket { .. })
    ));
    assert!(matches!(
        store
            .put_object("artifacts", "k", Bytes::new(), PutMeta::default())
            .await,
        Err(Error::NoSuchBucket { .. })
    ));
    assert!(matches!(
        store.delete_object("artifacts", "k").await,
        Err(Error::NoSuchBucket { .. })
    ));
    assert!(matches!(
        store.head_object("another", "k").await,
        Err(Error::NoSuchKey { .. })
    ));
}

#[tokio::test]
async fn range_reads() {
    let (_dir, store) = store().await;
    let body: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
    put(&store, "big", &body).await;
    for (range, first, last) in [
        (ByteRange::FromTo(0, 0), 0, 0),
        (ByteRange::FromTo(10, 19), 10, 19),
        (ByteRange::FromTo(199_990, 500_000), 199_990, 199_999),
        (ByteRange::From(150_000), 150_000, 199_999),
        (ByteRange::Last(7), 199_993, 199_999),
        (ByteRange::Last(1_000_000), 0, 199_999),
    ] {
        let (meta, got) = store
            .get_object("artifacts", "big", Some(range))
            .await
            .unwrap();
        assert_eq!(meta.size, 200_000);
        assert_eq!(got.range(), Some((first, last)), "{range}");
        assert_eq!(got.len(), last - first + 1);
        let bytes = got.collect().await.unwrap();
        assert_eq!(&bytes[..], &body[first as usize..=last as usize], "{range}");
    }
    for range in [
        ByteRange::From(200_000),
        ByteRange::FromTo(300_000, 300_001),
        ByteRange::Last(0),
    ] {
        assert!(matches!(
            store.get_object("artifacts", "big", Some(range)).await,
            Err(Error::InvalidRange { size: 200_000, .. })
        ));
    }
    put(&store, "empty", b"").await;
    assert!(
        store
            .get_object("artifacts", "empty", Some(ByteRange::Last(1)))
            .await
            .is_err()
    );
    let (_, got) = store.get_object("artifacts", "empty", None).await.unwrap();
    assert!(got.is_empty());
}

#[tokio::test]
async fn a_reader_keeps_its_snapshot_across_overwrite_and_delete() {
    let (_dir, store) = store().await;
    put(&store, "k", &vec![b'a'; 300_000]).await;
    let (_, body) = store.get_object("artifacts", "k", None).await.unwrap();
    put(&store, "k", b"replaced").await;
    let (_, body2) = store.get_object("artifacts", "k", None).await.unwrap();
    store.delete_object("artifacts", "k").await.unwrap();
    assert_eq!(body.collect().await.unwrap(), vec![b'a'; 300_000]);
    assert_eq!(&body2.collect().await.unwrap()[..], b"replaced");
}

#[tokio::test]
async fn integrity_checks() {
    let (_dir, store) = store().await;
    let put_with = |meta: PutMeta| {
        let store = store.clone();
        async move {
            store
                .put_object("artifacts", "k", Bytes::from_static(b"hello"), meta)
                .await
        }
    };
    let ok = put_with(PutMeta {
        content_md5: Some("XUFAKrxLKna5cZ2REBfFkg==".into()),
        checksum: Some(Checksum::compute(ChecksumAlgorithm::Sha256, b"hello")),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(ok.checksum.unwrap().algorithm, ChecksumAlgorithm::Sha256);

    let err = put_with(PutMeta {
        content_md5: Some("AAAAAAAAAAAAAAAAAAAAAA==".into()),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Md5Mismatch));
    assert_eq!(err.s3_code(), "BadDigest");
    let err = put_with(PutMeta {
        content_md5: Some("short".into()),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(err.s3_code(), "InvalidDigest");
    let err = put_with(PutMeta {
        checksum: Some(Checksum::compute(ChecksumAlgorithm::Crc32, b"other")),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(matches!(
        err,
        Error::ChecksumMismatch {
            algorithm: ChecksumAlgorithm::Crc32
        }
    ));
    // A failed write leaves the previous object in place.
    assert_eq!(
        &store.read_object("artifacts", "k").await.unwrap()[..],
        b"hello"
    );

    // Asked-for algorithm without a value: computed and stored.
    let m = put_with(PutMeta {
        checksum_algorithm: Some(ChecksumAlgorithm::Crc32c),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        m.checksum,
        Some(Checksum::compute(ChecksumAlgorithm::Crc32c, b"hello"))
    );

    let mut big_meta = PutMeta::default();
    big_meta.user_metadata.insert("k".into(), "v".repeat(2048));
    assert!(matches!(
        put_with(big_meta).await,
        Err(Error::MetadataTooLarge { .. })
    ));
    assert!(matches!(
        store
            .put_object(
                "artifacts",
                &"k".repeat(1025),
                Bytes::new(),
                PutMeta::default()
            )
            .await,
        Err(Error::KeyTooLong { .. })
    ));
}

#[tokio::test]
async fn conditional_writes() {
    let (_dir, store) = store().await;
    let cond_put = |cond: WriteCondition, body: &'static [u8]| {
        let store = store.clone();
        async move {
            store
                .put_object(
                    "artifacts",
                    "k",
                    Bytes::from_static(body),
                    PutMeta {
                        condition: cond,
                        ..Default::default()
                    },
                )
                .await
        }
    };
    assert!(matches!(
        cond_put(WriteCondition::IfMatch("\"x\"".into()), b"0").await,
        Err(Error::NoSuchKey { .. })
    ));
    let first = cond_put(WriteCondition::IfNoneMatchAny, b"1")
        .await
        .unwrap();
    assert!(matches!(
        cond_put(WriteCondition::IfNoneMatchAny, b"2").await,
        Err(Error::PreconditionFailed { .. })
    ));
    assert!(matches!(
        cond_put(WriteCondition::IfMatch("\"other\"".into()), b"3").await,
        Err(Error::PreconditionFailed { .. })
    ));
    cond_put(WriteCondition::IfMatch(first.etag), b"4")
        .await
        .unwrap();
    assert_eq!(
        &store.read_object("artifacts", "k").await.unwrap()[..],
        b"4"
    );
}

#[tokio::test]
async fn concurrent_writers_leave_one_consistent_object() {
    let (dir, store) = store().await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16u8 {
        let store = store.clone();
        tasks.spawn(async move {
            let body = vec![i; 10_000 + usize::from(i)];
            store
                .put_object("artifacts", "shared", Bytes::from(body), PutMeta::default())
                .await
                .unwrap()
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let head = store.head_object("artifacts", "shared").await.unwrap();
    let body = store.read_object("artifacts", "shared").await.unwrap();
    assert_eq!(body.len() as u64, head.size);
    let i = body[0];
    assert!(body.iter().all(|b| *b == i));
    assert_eq!(body.len(), 10_000 + usize::from(i));
    // Exactly one content file survives.
    let data = files(&dir.path().join("buckets/artifacts/objects"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "data"))
        .count();
    assert_eq!(data, 1);
}

#[tokio::test]
async fn listing_pages_with_delimiter() {
    let (_dir, store) = store().await;
    let keys = [
        "agents/a/v1.zip",
        "agents/a/v2.zip",
        "agents/b/v1.zip",
        "agents/readme.txt",
        "agents/z.zip",
        "other/x",
        "top.zip",
    ];
    for k in keys {
        put(&store, k, k.as_bytes()).await;
    }
    let mut query = ListQuery {
        prefix: "agents/".into(),
        delimiter: Some("/".into()),
        max_keys: 2,
        start_after: None,
    };
    let mut pages = Vec::new();
    loop {
        let page = store.list_objects("artifacts", &query).await.unwrap();
        let entries: Vec<String> = page
            .common_prefixes
            .iter()
            .cloned()
            .chain(page.objects.iter().map(|o| o.key.clone()))
            .collect();
        pages.push(entries);
        if !page.is_truncated {
            break;
        }
        query.start_after = page.next_marker;
    }
    assert_eq!(
        pages,
        vec![
            vec!["agents/a/".to_owned(), "agents/b/".to_owned()],
            vec!["agents/readme.txt".to_owned(), "agents/z.zip".to_owned()],
        ]
    );
    // Listed objects carry their metadata.
    let all = store
        .list_objects(
            "artifacts",
            &ListQuery {
                max_keys: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all.objects.len(), keys.len());
    assert!(
        all.objects
            .iter()
            .all(|o| o.size == o.key.len() as u64 && o.etag.starts_with('"'))
    );
}

#[tokio::test]
async fn open_by_url() {
    let dir = tempfile::tempdir().unwrap();
    let s = ArtifactStore::open_with_env("", dir.path(), Vec::new())
        .await
        .unwrap();
    assert_eq!(
        s.describe(),
        format!("local:{}", dir.path().join("artifacts").display())
    );
    assert!(!s.is_read_only());
    drop(s);
    let s = ArtifactStore::open_with_env("local", dir.path(), Vec::new())
        .await
        .unwrap();
    s.create_bucket("b-1", None).await.unwrap();
    let custom = dir.path().join("custom");
    let s = ArtifactStore::open_with_env(
        &format!("file://{}", custom.display()),
        dir.path(),
        Vec::new(),
    )
    .await
    .unwrap();
    assert!(s.list_buckets().await.unwrap().is_empty());
    assert!(custom.join("FORMAT").exists());

    let creds = || {
        vec![
            ("AWS_ACCESS_KEY_ID".to_owned(), "k".to_owned()),
            ("AWS_SECRET_ACCESS_KEY".to_owned(), "s".to_owned()),
        ]
    };
    // An external store is writable unless opened read-only; its buckets are the operator's.
    let ext = ArtifactStore::open_with_env(
        "s3://?endpoint=http://127.0.0.1:1&region=us-east-1",
        dir.path(),
        creds(),
    )
    .await
    .unwrap();
    assert!(!ext.is_read_only());
    assert_eq!(ext.describe(), "s3:http://127.0.0.1:1");
    assert!(dir.path().join("artifact-uploads").join("FORMAT").exists());
    let err = ext.delete_bucket("b-1").await.unwrap_err();
    assert!(matches!(err, Error::NotImplemented { .. }), "{err}");
    assert!(
        err.to_string().contains("external S3-compatible service"),
        "{err}"
    );
    // Creating one asks the service whether it has it already (succeeding, as S3 in us-east-1
    // does, when it does): with the service unreachable, that is the error.
    let err = ext.create_bucket("b-1", None).await.unwrap_err();
    assert!(!matches!(err, Error::NotImplemented { .. }), "{err}");
    // Checked before anything is sent: the endpoint (port 1) is never contacted.
    let bad_md5 = PutMeta {
        content_md5: Some("AAAAAAAAAAAAAAAAAAAAAA==".into()),
        ..PutMeta::default()
    };
    assert!(matches!(
        ext.put_object("b-1", "k", Bytes::from_static(b"body"), bad_md5)
            .await,
        Err(Error::Md5Mismatch)
    ));
    let expires = PutMeta {
        headers: berth_artifacts::ObjectHeaders {
            expires: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
            ..Default::default()
        },
        ..PutMeta::default()
    };
    assert!(matches!(
        ext.put_object("b-1", "k", Bytes::new(), expires).await,
        Err(Error::NotImplemented { .. })
    ));
    assert!(matches!(
        ext.upload_part(
            "b-1",
            "k",
            &"a".repeat(32),
            1,
            Bytes::new(),
            Default::default()
        )
        .await,
        Err(Error::NoSuchUpload { .. })
    ));
    drop(ext);

    let ro = ArtifactStore::open_with_env(
        "s3://?endpoint=http://127.0.0.1:1&region=us-east-1&read_only=true",
        dir.path(),
        creds(),
    )
    .await
    .unwrap();
    assert!(ro.is_read_only());
    assert_eq!(ro.describe(), "s3:http://127.0.0.1:1 (read-only)");
    assert!(matches!(
        ro.put_object("b-1", "k", Bytes::new(), PutMeta::default())
            .await,
        Err(Error::ReadOnly)
    ));
    assert!(matches!(
        ro.delete_object("b-1", "k").await,
        Err(Error::ReadOnly)
    ));
    assert!(matches!(
        ro.create_multipart_upload("b-1", "k", Default::default())
            .await,
        Err(Error::ReadOnly)
    ));
    assert!(matches!(
        ArtifactStore::open_with_env(
            "s3://?endpoint=http://127.0.0.1:1&read_only=yes",
            dir.path(),
            creds(),
        )
        .await,
        Err(Error::Config { .. })
    ));

    for bad in ["file://relative", "ftp://x", "sqlite://x"] {
        assert!(matches!(
            ArtifactStore::open_with_env(bad, dir.path(), Vec::new()).await,
            Err(Error::Config { .. })
        ));
    }
}
