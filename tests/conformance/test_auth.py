"""SigV4 verification, driven by botocore's own signer (`SigV4Auth` + `AWSRequest`).

Error codes are the ones AWS's front end uses for rest-json services: every authentication
failure is HTTP 403 with `x-amzn-ErrorType` InvalidSignatureException (bad or expired
signature), UnrecognizedClientException (unknown access key), MissingAuthenticationTokenException
(no Authorization) or IncompleteSignatureException (an unparsable Authorization header).
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from berth_harness import (
    ACCESS_KEY_ID,
    SECRET_ACCESS_KEY,
    create_runtime,
    list_all,
    raw_request,
    runtime_args,
    unique_name,
)


def _now():
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _assert_denied(resp, error_types):
    error_types = {error_types} if isinstance(error_types, str) else set(error_types)
    assert resp.status == 403, resp
    assert resp.error_type in error_types, resp
    assert resp.request_id, f"no x-amzn-RequestId: {dict(resp.headers)}"
    body = resp.json()
    assert body.get("message") or body.get("Message"), body


def _list(berth, **kwargs):
    return raw_request(berth.url, "POST", "/runtimes/", query="maxResults=1", **kwargs)


def test_correct_signature_passes(berth):
    resp = _list(berth)
    assert resp.status == 200, resp
    assert resp.request_id
    assert isinstance(resp.json()["agentRuntimes"], list)


def test_correct_signature_with_body_passes(berth, artifact):
    name = unique_name("rawsigned")
    body = json.dumps(runtime_args(artifact, name=name)).encode()
    resp = raw_request(berth.url, "PUT", "/runtimes/", body=body)
    assert resp.status == 202, resp
    assert resp.request_id
    assert resp.json()["agentRuntimeId"].startswith(name + "-")


def test_wrong_secret_is_an_invalid_signature(berth):
    wrong = SECRET_ACCESS_KEY[:-1] + ("A" if SECRET_ACCESS_KEY[-1] != "A" else "B")
    _assert_denied(_list(berth, secret_key=wrong), "InvalidSignatureException")


def test_unknown_access_key_is_unrecognized(berth):
    _assert_denied(_list(berth, access_key="AKIAUNKNOWNKEY000000"), "UnrecognizedClientException")


def test_missing_authorization_is_missing_token(berth):
    _assert_denied(_list(berth, sign=False), "MissingAuthenticationTokenException")
    # A date header alone is no authentication either.
    stamp = _now().strftime("%Y%m%dT%H%M%SZ")
    _assert_denied(
        _list(berth, sign=False, headers={"X-Amz-Date": stamp}),
        "MissingAuthenticationTokenException",
    )


def test_garbled_authorization_is_refused(berth):
    for header in (
        "AWS4-HMAC-SHA256 garbage",
        "Bearer abc",
        "AWS4-HMAC-SHA256 Credential=x, Signature=y",
    ):
        resp = _list(
            berth,
            sign=False,
            headers={"Authorization": header, "X-Amz-Date": _now().strftime("%Y%m%dT%H%M%SZ")},
        )
        _assert_denied(resp, {"IncompleteSignatureException", "InvalidSignatureException"})


def test_tampered_body_is_an_invalid_signature(berth, control, artifact):
    signed_name = unique_name("signed")
    sent_name = unique_name("sent")
    resp = raw_request(
        berth.url,
        "PUT",
        "/runtimes/",
        body=json.dumps(runtime_args(artifact, name=sent_name)).encode(),
        signed_body=json.dumps(runtime_args(artifact, name=signed_name)).encode(),
    )
    _assert_denied(resp, "InvalidSignatureException")
    names = {
        item["agentRuntimeName"]
        for page in list_all(control.list_agent_runtimes, "agentRuntimes")
        for item in page
    }
    assert not names & {signed_name, sent_name}, "a request with a bad signature had an effect"


def test_tampered_path_is_an_invalid_signature(berth, control, artifact):
    signed_id = create_runtime(control, artifact)["agentRuntimeId"]
    sent_id = create_runtime(control, artifact)["agentRuntimeId"]
    ok = raw_request(berth.url, "GET", f"/runtimes/{sent_id}/")
    assert ok.status == 200, ok
    resp = raw_request(
        berth.url, "GET", f"/runtimes/{sent_id}/", signed_path=f"/runtimes/{signed_id}/"
    )
    _assert_denied(resp, "InvalidSignatureException")


def test_tampered_query_is_an_invalid_signature(berth):
    resp = raw_request(
        berth.url, "POST", "/runtimes/", query="maxResults=6", signed_query="maxResults=5"
    )
    _assert_denied(resp, "InvalidSignatureException")


def test_tampered_signed_header_is_an_invalid_signature(berth):
    resp = _list(
        berth,
        headers={"X-Berth-Test": "sent"},
        signed_headers={"X-Berth-Test": "signed"},
    )
    _assert_denied(resp, "InvalidSignatureException")


@pytest.mark.parametrize("minutes", [-20, 20], ids=["20-minutes-ago", "20-minutes-ahead"])
def test_request_outside_the_clock_window_is_refused(berth, minutes):
    resp = _list(berth, signed_at=_now() + dt.timedelta(minutes=minutes))
    _assert_denied(resp, "InvalidSignatureException")


def test_small_clock_skew_is_accepted(berth):
    # AWS allows 15 minutes of skew; a client 4 minutes off must still work.
    for minutes in (-4, 4):
        resp = _list(berth, signed_at=_now() + dt.timedelta(minutes=minutes))
        assert resp.status == 200, resp


def test_wrong_scope_is_an_invalid_signature(berth):
    _assert_denied(_list(berth, region="eu-west-1"), "InvalidSignatureException")
    _assert_denied(_list(berth, service="bedrock-agentcore-control"), "InvalidSignatureException")


def test_s3_scope_is_answered_by_the_artifact_store(berth):
    # Berth serves S3 on the same listener and routes on the credential scope's service (a bucket
    # may be named "runtimes"), so an s3-scoped request is the artifact store's to answer, in
    # S3's XML error format, never the control plane's.
    resp = _list(berth, service="s3")
    assert resp.status in (400, 403), resp
    assert b"<Error>" in resp.body, resp


def test_every_response_carries_a_request_id(berth):
    responses = [
        _list(berth),
        _list(berth, sign=False),
        raw_request(berth.url, "GET", "/runtimes/nosuchruntime-abcdefghij/"),
        raw_request(berth.url, "GET", "/no/such/route"),
        raw_request(berth.url, "PUT", "/runtimes/", body=b"{not json"),
    ]
    ids = [resp.request_id for resp in responses]
    assert all(ids), list(zip(ids, responses, strict=True))
    assert len(set(ids)) == len(ids), f"request ids repeat: {ids}"
    for resp in responses[1:]:
        assert resp.error_type, f"error without x-amzn-ErrorType: {resp}"


def test_boto3_client_with_wrong_secret_gets_modelled_error(berth):
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    client = boto3.session.Session(
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key="x" * 40,
        region_name="us-east-1",
    ).client(
        "bedrock-agentcore-control",
        endpoint_url=berth.url,
        config=Config(retries={"total_max_attempts": 1}),
    )
    with pytest.raises(ClientError) as info:
        client.list_agent_runtimes()
    assert info.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
