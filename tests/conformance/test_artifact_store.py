"""The S3-compatible artifact store, through boto3's unmodified S3 client (path-style)."""

from __future__ import annotations

import hashlib

import pytest
from berth_harness import unique_name
from botocore.exceptions import ClientError


def _bucket() -> str:
    return unique_name("b").replace("_", "-").lower()


def test_put_get_head_round_trip(s3):
    bucket = _bucket()
    assert s3.create_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    body = bytes(range(256)) * 4096  # 1 MiB, every byte value
    put = s3.put_object(Bucket=bucket, Key="dir/blob.bin", Body=body)
    assert put["ETag"].strip('"') == hashlib.md5(body).hexdigest()

    head = s3.head_object(Bucket=bucket, Key="dir/blob.bin")
    assert head["ContentLength"] == len(body)
    assert head["ETag"] == put["ETag"]

    got = s3.get_object(Bucket=bucket, Key="dir/blob.bin")
    assert got["Body"].read() == body
    assert got["ContentLength"] == len(body)


def test_overwrite_replaces_the_object(s3):
    bucket = _bucket()
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"first")
    s3.put_object(Bucket=bucket, Key="k", Body=b"second, longer")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"second, longer"


def test_list_objects_v2_with_prefix_and_paging(s3):
    bucket = _bucket()
    s3.create_bucket(Bucket=bucket)
    keys = [f"a/{i:02d}.txt" for i in range(7)] + ["b/other.txt"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())

    listed = s3.list_objects_v2(Bucket=bucket, Prefix="a/")
    assert sorted(obj["Key"] for obj in listed["Contents"]) == keys[:7]
    assert all(obj["Size"] == len(obj["Key"]) for obj in listed["Contents"])

    seen = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 3}
    ):
        assert page["KeyCount"] <= 3
        seen += [obj["Key"] for obj in page.get("Contents", [])]
    assert sorted(seen) == sorted(keys)


def test_missing_object_and_bucket(s3):
    bucket = _bucket()
    s3.create_bucket(Bucket=bucket)
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key="nope")
    assert info.value.response["Error"]["Code"] == "NoSuchKey"
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket=bucket, Key="nope")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=_bucket(), Key="k", Body=b"x")
    assert info.value.response["Error"]["Code"] == "NoSuchBucket"


def test_s3_rejects_bad_signature(berth):
    import boto3
    from botocore.config import Config

    bad = boto3.session.Session(
        aws_access_key_id="AKIABERTHCONFORMANCE",
        aws_secret_access_key="y" * 40,
        region_name="us-east-1",
    ).client(
        "s3",
        endpoint_url=berth.url,
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
    )
    with pytest.raises(ClientError) as info:
        bad.create_bucket(Bucket=_bucket())
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert info.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_objects_survive_a_restart(berth_server, tmp_path):
    data_dir = tmp_path / "s3-restart"
    first = berth_server(data_dir, name="s3-first")
    bucket = _bucket()
    first.s3_client().create_bucket(Bucket=bucket)
    first.s3_client().put_object(Bucket=bucket, Key="kept.txt", Body=b"still here")
    assert first.stop() == 0

    second = berth_server(data_dir, name="s3-second")
    kept = second.s3_client().get_object(Bucket=bucket, Key="kept.txt")
    assert kept["Body"].read() == b"still here"
