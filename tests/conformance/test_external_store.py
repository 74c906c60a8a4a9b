"""Berth nodes sharing an external S3-compatible artifact store (`--artifact-store s3://?...`).

The external service is a real S3 implementation: another `berth serve`, whose own artifact
store is local. Two nodes name it as their artifact store; boto3's unmodified S3 client writes
through one node (PutObject, multipart `upload_fileobj`, DeleteObject) and reads through the
other, and a runtime deployed on the second node is built from a zip uploaded through the first.
"""

from __future__ import annotations

import hashlib
import io
import os
import urllib.parse

import pytest
from berth_harness import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    assert_status,
    hello_agent_zip,
    invoke_json,
    new_session_id,
    runtime_args,
    unique_name,
    wait_status,
)
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

MIB = 1024 * 1024
#: boto3 switches to multipart at the threshold and sends parts of `multipart_chunksize`
#: (S3's 5 MiB minimum); one thread keeps the parts' order deterministic.
MULTIPART = TransferConfig(
    multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=1
)


@pytest.fixture(scope="module")
def cluster(module_server):
    """`(service, node_a, node_b)`: the external S3 service and two nodes sharing it."""
    service = module_server("external-s3")
    query = urllib.parse.urlencode(
        {
            "endpoint": service.url,
            "region": REGION,
            "access_key_id": ACCESS_KEY_ID,
            "secret_access_key": SECRET_ACCESS_KEY,
        }
    )
    url = f"s3://?{query}"
    node_a = module_server("external-node-a", args=("--artifact-store", url))
    node_b = module_server("external-node-b", args=("--artifact-store", url))
    return service, node_a, node_b


def _bucket(service) -> str:
    """A bucket created by the operator, in the external service itself."""
    name = unique_name("ext").replace("_", "-").lower()
    service.s3_client().create_bucket(Bucket=name)
    return name


def test_put_head_get_list_delete_across_nodes(cluster):
    service, node_a, node_b = cluster
    bucket = _bucket(service)
    s3_a, s3_b = node_a.s3_client(), node_b.s3_client()
    body = os.urandom(300_000)

    put = s3_a.put_object(
        Bucket=bucket,
        Key="agents/app.zip",
        Body=body,
        ContentType="application/zip",
        CacheControl="no-cache",
        ContentDisposition='attachment; filename="app.zip"',
        Metadata={"owner": "team-a"},
        ChecksumAlgorithm="SHA256",
    )
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    assert put["ChecksumSHA256"]

    # The object lives in the external service, with its attributes...
    direct = service.s3_client().head_object(Bucket=bucket, Key="agents/app.zip")
    assert direct["ETag"] == put["ETag"]
    assert direct["ContentType"] == "application/zip"
    assert direct["Metadata"] == {"owner": "team-a"}

    # ...and every node sees it.
    head = s3_b.head_object(Bucket=bucket, Key="agents/app.zip")
    assert head["ContentLength"] == len(body)
    assert head["ETag"] == put["ETag"]
    assert head["ContentType"] == "application/zip"
    assert head["CacheControl"] == "no-cache"
    assert head["ContentDisposition"] == 'attachment; filename="app.zip"'
    assert head["Metadata"] == {"owner": "team-a"}
    got = s3_b.get_object(Bucket=bucket, Key="agents/app.zip")
    assert got["Body"].read() == body
    ranged = s3_b.get_object(Bucket=bucket, Key="agents/app.zip", Range="bytes=10-19")
    assert ranged["Body"].read() == body[10:20]

    listed = s3_b.list_objects_v2(Bucket=bucket, Prefix="agents/")
    assert [(o["Key"], o["Size"]) for o in listed["Contents"]] == [("agents/app.zip", len(body))]

    # Deleting through one node removes it for all; deleting again is not an error.
    assert s3_b.delete_object(Bucket=bucket, Key="agents/app.zip")[
        "ResponseMetadata"
    ]["HTTPStatusCode"] == 204
    assert s3_a.delete_object(Bucket=bucket, Key="agents/app.zip")[
        "ResponseMetadata"
    ]["HTTPStatusCode"] == 204
    for client in (s3_a, service.s3_client()):
        with pytest.raises(ClientError) as info:
            client.head_object(Bucket=bucket, Key="agents/app.zip")
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_bad_checksum_is_refused_before_anything_is_stored(cluster):
    service, node_a, _ = cluster
    bucket = _bucket(service)
    s3_a = node_a.s3_client()
    with pytest.raises(ClientError) as info:
        s3_a.put_object(
            Bucket=bucket,
            Key="bad",
            Body=b"the body",
            ChecksumSHA256="47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",  # of b""
        )
    assert info.value.response["Error"]["Code"] == "BadDigest"
    with pytest.raises(ClientError) as info:
        service.s3_client().head_object(Bucket=bucket, Key="bad")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_conditional_put(cluster):
    service, node_a, _ = cluster
    bucket = _bucket(service)
    s3_a = node_a.s3_client()
    first = s3_a.put_object(Bucket=bucket, Key="once", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as info:
        s3_a.put_object(Bucket=bucket, Key="once", Body=b"second", IfNoneMatch="*")
    assert info.value.response["Error"]["Code"] == "PreconditionFailed"
    s3_a.put_object(Bucket=bucket, Key="once", Body=b"third", IfMatch=first["ETag"])
    assert s3_a.get_object(Bucket=bucket, Key="once")["Body"].read() == b"third"


def test_multipart_upload_fileobj(cluster):
    service, node_a, node_b = cluster
    bucket = _bucket(service)
    s3_a = node_a.s3_client()
    body = os.urandom(12 * MIB)  # parts of 5, 5 and 2 MiB
    s3_a.upload_fileobj(
        io.BytesIO(body),
        bucket,
        "big/blob.bin",
        ExtraArgs={"ContentType": "application/x-test", "Metadata": {"kind": "multipart"}},
        Config=MULTIPART,
    )
    parts = [body[i : i + 5 * MIB] for i in range(0, len(body), 5 * MIB)]
    md5s = b"".join(hashlib.md5(p).digest() for p in parts)
    expected_etag = f'"{hashlib.md5(md5s).hexdigest()}-{len(parts)}"'

    # S3's multipart entity tag of the client's parts, in the external service and on every node.
    direct = service.s3_client().head_object(Bucket=bucket, Key="big/blob.bin")
    assert direct["ETag"] == expected_etag
    head = node_b.s3_client().head_object(Bucket=bucket, Key="big/blob.bin")
    assert head["ETag"] == expected_etag
    assert head["ContentLength"] == len(body)
    assert head["ContentType"] == "application/x-test"
    assert head["Metadata"] == {"kind": "multipart"}
    out = io.BytesIO()
    node_b.s3_client().download_fileobj(bucket, "big/blob.bin", out)
    assert out.getvalue() == body

    # Nothing is left staged on the node.
    uploads = s3_a.list_multipart_uploads(Bucket=bucket)
    assert uploads.get("Uploads", []) == []


def test_multipart_upload_answers_like_s3(cluster):
    service, node_a, _ = cluster
    bucket = _bucket(service)
    s3_a = node_a.s3_client()
    created = s3_a.create_multipart_upload(Bucket=bucket, Key="mp/key")
    upload_id = created["UploadId"]
    first = os.urandom(5 * MIB)
    part1 = s3_a.upload_part(
        Bucket=bucket, Key="mp/key", UploadId=upload_id, PartNumber=1, Body=first
    )
    part3 = s3_a.upload_part(
        Bucket=bucket, Key="mp/key", UploadId=upload_id, PartNumber=3, Body=b"tail"
    )
    assert part1["ETag"] == f'"{hashlib.md5(first).hexdigest()}"'

    listed = s3_a.list_parts(Bucket=bucket, Key="mp/key", UploadId=upload_id)
    assert [(p["PartNumber"], p["ETag"]) for p in listed["Parts"]] == [
        (1, part1["ETag"]),
        (3, part3["ETag"]),
    ]
    uploads = s3_a.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("mp/key", upload_id)]

    # A wrong entity tag is refused and the upload stays open for a retry.
    with pytest.raises(ClientError) as info:
        s3_a.complete_multipart_upload(
            Bucket=bucket,
            Key="mp/key",
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"0000"'}]},
        )
    assert info.value.response["Error"]["Code"] == "InvalidPart"

    # Completing with a part list that skips part 2 works, as on S3.
    done = s3_a.complete_multipart_upload(
        Bucket=bucket,
        Key="mp/key",
        UploadId=upload_id,
        MultipartUpload={
            "Parts": [
                {"PartNumber": 1, "ETag": part1["ETag"]},
                {"PartNumber": 3, "ETag": part3["ETag"]},
            ]
        },
    )
    md5s = hashlib.md5(first).digest() + hashlib.md5(b"tail").digest()
    assert done["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-2"'
    got = service.s3_client().get_object(Bucket=bucket, Key="mp/key")["Body"].read()
    assert got == first + b"tail"
    with pytest.raises(ClientError) as info:
        s3_a.list_parts(Bucket=bucket, Key="mp/key", UploadId=upload_id)
    assert info.value.response["Error"]["Code"] == "NoSuchUpload"

    # Aborting an upload leaves nothing behind.
    aborted = s3_a.create_multipart_upload(Bucket=bucket, Key="mp/aborted")["UploadId"]
    s3_a.upload_part(Bucket=bucket, Key="mp/aborted", UploadId=aborted, PartNumber=1, Body=b"x")
    s3_a.abort_multipart_upload(Bucket=bucket, Key="mp/aborted", UploadId=aborted)
    assert s3_a.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(ClientError) as info:
        service.s3_client().head_object(Bucket=bucket, Key="mp/aborted")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_buckets_and_missing_buckets(cluster):
    _, node_a, _ = cluster
    s3_a = node_a.s3_client()
    missing = unique_name("nobucket").replace("_", "-").lower()
    # Buckets are the operator's to create in the external service.
    with pytest.raises(ClientError) as info:
        s3_a.create_bucket(Bucket=missing)
    assert info.value.response["Error"]["Code"] == "NotImplemented"
    assert "external S3-compatible service" in info.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as info:
        s3_a.put_object(Bucket=missing, Key="k", Body=b"x")
    assert info.value.response["Error"]["Code"] == "NoSuchBucket"
    with pytest.raises(ClientError) as info:
        s3_a.create_multipart_upload(Bucket=missing, Key="k")
    assert info.value.response["Error"]["Code"] == "NoSuchBucket"


def test_deploy_on_one_node_from_an_upload_through_another(cluster):
    service, node_a, node_b = cluster
    bucket = _bucket(service)
    key = "agents/hello/deployment_package.zip"
    # Uploaded through node A as a (one-part) multipart upload.
    node_a.s3_client().upload_fileobj(
        io.BytesIO(hello_agent_zip()),
        bucket,
        key,
        Config=TransferConfig(multipart_threshold=1, max_concurrency=1),
    )
    # Built and run by node B.
    control = node_b.client("bedrock-agentcore-control")
    created = control.create_agent_runtime(
        **runtime_args({"bucket": bucket, "prefix": key}, unique_name("external"))
    )
    assert_status(created, 202)
    runtime = wait_status(control, created["agentRuntimeId"], "1")
    answer = invoke_json(
        node_b.client("bedrock-agentcore"),
        runtime["agentRuntimeArn"],
        new_session_id("ext"),
        {"prompt": "built from the shared store"},
    )
    assert answer["result"] == "built from the shared store"
