//! Multipart uploads in the local store: S3's entity tags and checksums, part rules, failed
//! completions that can be retried, abort, listings, and recovery after a crash mid-completion.

#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use berth_artifacts::{
    ArtifactStore, Checksum, ChecksumAlgorithm, ChecksumType, CompleteMeta, CompletePart, Error,
    MIN_PART_SIZE, PartInfo, PartMeta, UploadMeta,
};
use bytes::Bytes;
use md5::{Digest, Md5};

const MIB5: usize = MIN_PART_SIZE as usize;

async fn store() -> (tempfile::TempDir, ArtifactStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open_local(dir.path()).await.unwrap();
    store.create_bucket("artifacts", None).await.unwrap();
    (dir, store)
}

fn part_body(n: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(n))
        .collect()
}

async fn upload(
    store: &ArtifactStore,
    id: &str,
    n: u32,
    body: &[u8],
    checksum: Option<Checksum>,
) -> PartInfo {
    store
        .upload_part(
            "artifacts",
            "big.zip",
            id,
            n,
            Bytes::copy_from_slice(body),
            PartMeta {
                checksum,
                ..Default::default()
            },
        )
        .await
        .unwrap()
}

fn complete_parts(parts: &[PartInfo]) -> Vec<CompletePart> {
    parts
        .iter()
        .map(|p| CompletePart {
            part_number: p.part_number,
            etag: p.etag.clone(),
            checksum: p.checksum.clone(),
        })
        .collect()
}

fn multipart_etag(parts: &[&[u8]]) -> String {
    let mut all = Md5::new();
    for p in parts {
        all.update(Md5::digest(p));
    }
    format!("\"{}-{}\"", hex::encode(all.finalize()), parts.len())
}

#[tokio::test]
async fn composite_crc32_upload_as_boto3_does_it() {
    let (_dir, store) = store().await;
    let up = store
        .create_multipart_upload(
            "artifacts",
            "big.zip",
            UploadMeta {
                content_type: Some("application/zip".into()),
                checksum_algorithm: Some(ChecksumAlgorithm::Crc32),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(up.checksum_type, Some(ChecksumType::Composite));
    let bodies = [part_body(1, MIB5), part_body(2, MIB5), part_body(3, 1234)];
    // Out of order, with part 2 uploaded twice (the second wins).
    let p3 = upload(&store, &up.upload_id, 3, &bodies[2], None).await;
    upload(&store, &up.upload_id, 2, &part_body(9, MIB5), None).await;
    let crc = |b: &[u8]| Checksum::compute(ChecksumAlgorithm::Crc32, b);
    let p1 = upload(&store, &up.upload_id, 1, &bodies[0], Some(crc(&bodies[0]))).await;
    let p2 = upload(&store, &up.upload_id, 2, &bodies[1], Some(crc(&bodies[1]))).await;
    assert_eq!(
        p3.checksum,
        Some(crc(&bodies[2])),
        "the store computes a missing part checksum"
    );

    let listing = store
        .list_parts("artifacts", "big.zip", &up.upload_id, 0, 2)
        .await
        .unwrap();
    assert_eq!(
        listing
            .parts
            .iter()
            .map(|p| p.part_number)
            .collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(listing.is_truncated);
    let rest = store
        .list_parts("artifacts", "big.zip", &up.upload_id, 2, 2)
        .await
        .unwrap();
    assert_eq!(rest.parts.len(), 1);
    assert!(!rest.is_truncated);

    let object = store
        .complete_multipart_upload(
            "artifacts",
            "big.zip",
            &up.upload_id,
            complete_parts(&[p1, p2, p3]),
            CompleteMeta::default(),
        )
        .await
        .unwrap();
    let whole: Vec<u8> = bodies.concat();
    assert_eq!(object.size, whole.len() as u64);
    assert_eq!(object.content_type, "application/zip");
    assert_eq!(
        object.etag,
        multipart_etag(&[&bodies[0], &bodies[1], &bodies[2]])
    );
    // Composite: CRC32 over the parts' binary CRC32s, suffixed with the count.
    let mut raw = Vec::new();
    for b in &bodies {
        raw.extend(BASE64.decode(crc(b).value).unwrap());
    }
    let expected = format!(
        "{}-3",
        Checksum::compute(ChecksumAlgorithm::Crc32, &raw).value
    );
    let checksum = object.checksum.clone().unwrap();
    assert_eq!(checksum.value, expected);
    assert!(checksum.is_composite());

    assert_eq!(
        &store.read_object("artifacts", "big.zip").await.unwrap()[..],
        &whole[..]
    );
    assert_eq!(
        store.head_object("artifacts", "big.zip").await.unwrap(),
        object
    );
    // The upload is gone.
    assert!(matches!(
        store
            .list_parts("artifacts", "big.zip", &up.upload_id, 0, 10)
            .await,
        Err(Error::NoSuchUpload { .. })
    ));
    assert!(
        store
            .list_multipart_uploads("artifacts", "")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn full_object_checksums() {
    let (_dir, store) = store().await;
    for (algorithm, kind) in [
        (
            Some(ChecksumAlgorithm::Crc32c),
            Some(ChecksumType::FullObject),
        ),
        (Some(ChecksumAlgorithm::Crc64Nvme), None),
        (None, None),
    ] {
        let up = store
            .create_multipart_upload(
                "artifacts",
                "big.zip",
                UploadMeta {
                    checksum_algorithm: algorithm,
                    checksum_type: kind,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let bodies = [part_body(4, MIB5), part_body(5, 10)];
        let p1 = upload(&store, &up.upload_id, 1, &bodies[0], None).await;
        let p2 = upload(&store, &up.upload_id, 2, &bodies[1], None).await;
        let whole = bodies.concat();
        let full = Checksum::compute(algorithm.unwrap_or(ChecksumAlgorithm::Crc64Nvme), &whole);
        let object = store
            .complete_multipart_upload(
                "artifacts",
                "big.zip",
                &up.upload_id,
                complete_parts(&[p1, p2]),
                CompleteMeta {
                    checksum: algorithm.map(|_| full.clone()),
                    object_size: Some(whole.len() as u64),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(object.checksum, Some(full), "{algorithm:?}");
    }
}

#[tokio::test]
async fn failed_completions_leave_the_upload_usable() {
    let (_dir, store) = store().await;
    let up = store
        .create_multipart_upload(
            "artifacts",
            "big.zip",
            UploadMeta {
                checksum_algorithm: Some(ChecksumAlgorithm::Sha256),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let small = upload(&store, &up.upload_id, 1, b"too small", None).await;
    let last = upload(&store, &up.upload_id, 2, b"last", None).await;
    let complete = |parts: Vec<CompletePart>| {
        let store = store.clone();
        let id = up.upload_id.clone();
        async move {
            store
                .complete_multipart_upload(
                    "artifacts",
                    "big.zip",
                    &id,
                    parts,
                    CompleteMeta::default(),
                )
                .await
        }
    };
    let err = complete(complete_parts(&[small.clone(), last.clone()]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::EntityTooSmall { part_number: 1, .. }),
        "{err}"
    );
    let err = complete(complete_parts(&[last.clone(), small.clone()]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidPartOrder), "{err}");
    let mut wrong = complete_parts(std::slice::from_ref(&last));
    wrong[0].etag = "\"00000000000000000000000000000000\"".into();
    let err = complete(wrong).await.unwrap_err();
    assert!(
        matches!(err, Error::InvalidPart { part_number: 2, .. }),
        "{err}"
    );
    let mut missing = complete_parts(std::slice::from_ref(&last));
    missing[0].part_number = 7;
    assert!(matches!(
        complete(missing).await,
        Err(Error::InvalidPart { .. })
    ));
    // Composite uploads need each part's checksum in the request.
    let mut no_checksum = complete_parts(std::slice::from_ref(&last));
    no_checksum[0].checksum = None;
    assert_eq!(
        complete(no_checksum).await.unwrap_err().s3_code(),
        "InvalidRequest"
    );
    assert!(matches!(
        complete(vec![]).await,
        Err(Error::MalformedXml { .. })
    ));

    // Still there: re-upload part 1 big enough and finish.
    let body = part_body(7, MIB5);
    let big = upload(&store, &up.upload_id, 1, &body, None).await;
    let object = complete(complete_parts(&[big, last])).await.unwrap();
    assert_eq!(object.size, MIB5 as u64 + 4);
    // Nothing staged is left behind.
    assert!(
        std::fs::read_dir(_dir.path().join("tmp"))
            .unwrap()
            .next()
            .is_none()
    );
}

#[tokio::test]
async fn part_checksums_and_ids_are_checked() {
    let (_dir, store) = store().await;
    let up = store
        .create_multipart_upload(
            "artifacts",
            "big.zip",
            UploadMeta {
                checksum_algorithm: Some(ChecksumAlgorithm::Crc32),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let put = |n: u32, checksum: Option<Checksum>, id: String, key: &'static str| {
        let store = store.clone();
        async move {
            store
                .upload_part(
                    "artifacts",
                    key,
                    &id,
                    n,
                    Bytes::from_static(b"data"),
                    PartMeta {
                        checksum,
                        ..Default::default()
                    },
                )
                .await
        }
    };
    let id = up.upload_id.clone();
    let wrong_value = Checksum::compute(ChecksumAlgorithm::Crc32, b"other");
    assert!(matches!(
        put(1, Some(wrong_value), id.clone(), "big.zip").await,
        Err(Error::ChecksumMismatch { .. })
    ));
    let wrong_algorithm = Checksum::compute(ChecksumAlgorithm::Sha1, b"data");
    assert_eq!(
        put(1, Some(wrong_algorithm), id.clone(), "big.zip")
            .await
            .unwrap_err()
            .s3_code(),
        "InvalidRequest"
    );
    for bad in [0, 10_001] {
        assert_eq!(
            put(bad, None, id.clone(), "big.zip")
                .await
                .unwrap_err()
                .s3_code(),
            "InvalidArgument"
        );
    }
    for bad_id in ["../../../../etc", "0123", &"f".repeat(32)] {
        assert!(matches!(
            put(1, None, bad_id.to_owned(), "big.zip").await,
            Err(Error::NoSuchUpload { .. })
        ));
    }
    // The id belongs to another key.
    assert!(matches!(
        put(1, None, id.clone(), "other.zip").await,
        Err(Error::NoSuchUpload { .. })
    ));

    // An upload without an algorithm verifies a checksum sent anyway (botocore sends CRC32 by
    // default) without keeping it.
    let plain = store
        .create_multipart_upload("artifacts", "big.zip", UploadMeta::default())
        .await
        .unwrap();
    let ok = put(
        1,
        Some(Checksum::compute(ChecksumAlgorithm::Crc32, b"data")),
        plain.upload_id.clone(),
        "big.zip",
    )
    .await
    .unwrap();
    assert_eq!(ok.checksum, None);
    assert!(matches!(
        put(
            1,
            Some(Checksum::compute(ChecksumAlgorithm::Crc32, b"x")),
            plain.upload_id,
            "big.zip"
        )
        .await,
        Err(Error::ChecksumMismatch { .. })
    ));

    // Checksum types S3 refuses.
    for (algorithm, kind) in [
        (
            Some(ChecksumAlgorithm::Sha256),
            Some(ChecksumType::FullObject),
        ),
        (
            Some(ChecksumAlgorithm::Crc64Nvme),
            Some(ChecksumType::Composite),
        ),
        (None, Some(ChecksumType::FullObject)),
    ] {
        let err = store
            .create_multipart_upload(
                "artifacts",
                "k",
                UploadMeta {
                    checksum_algorithm: algorithm,
                    checksum_type: kind,
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert_eq!(err.s3_code(), "InvalidRequest");
    }
}

#[tokio::test]
async fn abort_and_list_uploads() {
    let (dir, store) = store().await;
    let a = store
        .create_multipart_upload("artifacts", "a.zip", UploadMeta::default())
        .await
        .unwrap();
    let b = store
        .create_multipart_upload("artifacts", "b.zip", UploadMeta::default())
        .await
        .unwrap();
    upload_to(&store, "a.zip", &a.upload_id).await;
    let listed = store.list_multipart_uploads("artifacts", "").await.unwrap();
    assert_eq!(
        listed.iter().map(|u| u.key.as_str()).collect::<Vec<_>>(),
        ["a.zip", "b.zip"]
    );
    assert_eq!(
        store
            .list_multipart_uploads("artifacts", "b")
            .await
            .unwrap()
            .len(),
        1
    );
    store
        .abort_multipart_upload("artifacts", "a.zip", &a.upload_id)
        .await
        .unwrap();
    assert!(matches!(
        store
            .abort_multipart_upload("artifacts", "a.zip", &a.upload_id)
            .await,
        Err(Error::NoSuchUpload { .. })
    ));
    assert_eq!(
        store.list_multipart_uploads("artifacts", "").await.unwrap(),
        vec![b]
    );
    // Aborting removed the parts' files.
    let uploads = dir.path().join("buckets/artifacts/uploads");
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 1);
    assert!(matches!(
        store.list_multipart_uploads("nope-bucket", "").await,
        Err(Error::NoSuchBucket { .. })
    ));
}

async fn upload_to(store: &ArtifactStore, key: &str, id: &str) {
    store
        .upload_part(
            "artifacts",
            key,
            id,
            1,
            Bytes::from_static(b"x"),
            PartMeta::default(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn an_interrupted_completion_is_recovered_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let store = ArtifactStore::open_local(dir.path()).await.unwrap();
        store.create_bucket("artifacts", None).await.unwrap();
        let up = store
            .create_multipart_upload("artifacts", "big.zip", UploadMeta::default())
            .await
            .unwrap();
        upload_to(&store, "big.zip", &up.upload_id).await;
        up.upload_id
    };
    // A crash after sealing the upload for completion.
    let uploads = dir.path().join("buckets/artifacts/uploads");
    std::fs::rename(uploads.join(&id), uploads.join(format!("{id}.completing"))).unwrap();

    let store = ArtifactStore::open_local(dir.path()).await.unwrap();
    let parts = store
        .list_parts("artifacts", "big.zip", &id, 0, 10)
        .await
        .unwrap();
    assert_eq!(parts.parts.len(), 1);
    let object = store
        .complete_multipart_upload(
            "artifacts",
            "big.zip",
            &id,
            complete_parts(&parts.parts),
            CompleteMeta::default(),
        )
        .await
        .unwrap();
    assert_eq!(object.size, 1);
    assert_eq!(
        object.checksum.unwrap().algorithm,
        ChecksumAlgorithm::Crc64Nvme
    );
}
