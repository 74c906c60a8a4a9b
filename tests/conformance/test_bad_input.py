"""Correctly signed but malformed requests: the server answers 4xx, never 5xx, and stays up.

Accepted answers: 400 ValidationException for a body or parameter the model rejects,
404 ResourceNotFoundException for an unknown resource, and 404 UnknownOperationException
(what AWS answers) for a path no operation matches.
"""

from __future__ import annotations

import json

import pytest
from berth_harness import ROLE_ARN, create_runtime, raw_request, runtime_args, unique_name

NOT_FOUND = {"ResourceNotFoundException", "UnknownOperationException"}


def _expect(resp, statuses, error_types):
    statuses = {statuses} if isinstance(statuses, int) else set(statuses)
    error_types = {error_types} if isinstance(error_types, str) else set(error_types)
    assert resp.status < 500, f"server error: {resp}"
    assert resp.status in statuses, resp
    assert resp.error_type in error_types, resp
    assert resp.request_id, resp
    if resp.body:
        body = resp.json()
        assert body.get("message") or body.get("Message"), body
        if resp.error_type == "ValidationException":
            assert body.get("reason"), f"ValidationException without reason: {body}"


def _create_body(artifact, **changes):
    body = runtime_args(artifact)
    body.update(changes)
    return json.dumps(body).encode()


@pytest.fixture(autouse=True)
def still_healthy(berth, control):
    """After every test here, the server process is alive and answers a normal call."""
    yield
    assert berth.alive, "the server died:\n" + berth.log_tail()
    assert control.list_agent_runtimes(maxResults=1)["ResponseMetadata"]["HTTPStatusCode"] == 200


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"agentRuntimeName": "x",',
        b"",
        b"[]",
        b'"a string"',
        b"null",
        b"42",
        b"\xff\xfe\xfa not utf-8",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"agentRuntimeName": "a", "agentRuntimeName": "b"}',
    ],
    ids=[
        "truncated",
        "unterminated",
        "empty",
        "array",
        "string",
        "null",
        "number",
        "not-utf8",
        "deep-nesting",
        "duplicate-key",
    ],
)
def test_malformed_create_body(berth, body):
    resp = raw_request(berth.url, "PUT", "/runtimes/", body=body)
    _expect(resp, 400, "ValidationException")


@pytest.mark.parametrize(
    "changes",
    [
        {"agentRuntimeName": 12345},
        {"agentRuntimeName": None},
        {"agentRuntimeName": ["a"]},
        {"environmentVariables": ["A=1"]},
        {"environmentVariables": {"A": 1}},
        {"roleArn": {"arn": ROLE_ARN}},
        {"agentRuntimeArtifact": "s3://bucket/key.zip"},
        {
            "agentRuntimeArtifact": {
                "codeConfiguration": {
                    "code": {"s3": {"bucket": "b", "prefix": "p"}},
                    "runtime": "PYTHON_3_12",
                    "entryPoint": "agent.py",
                }
            }
        },
        {"lifecycleConfiguration": {"idleRuntimeSessionTimeout": "900"}},
        {"lifecycleConfiguration": {"idleRuntimeSessionTimeout": 1.5}},
        {"lifecycleConfiguration": {"maxLifetime": 10**30}},
        {"tags": "team=berth"},
        {"description": 7},
    ],
    ids=[
        "name-number",
        "name-null",
        "name-list",
        "env-list",
        "env-int-value",
        "role-object",
        "artifact-string",
        "entrypoint-string",
        "timeout-string",
        "timeout-float",
        "timeout-huge",
        "tags-string",
        "description-number",
    ],
)
def test_wrong_json_types(berth, artifact, changes):
    resp = raw_request(berth.url, "PUT", "/runtimes/", body=_create_body(artifact, **changes))
    _expect(resp, 400, "ValidationException")


@pytest.mark.parametrize(
    "changes",
    [
        {"description": "d" * 200_000},
        {"agentRuntimeName": "n" * 10_000},
        {"environmentVariables": {f"K{i}": "v" * 5000 for i in range(200)}},
        {"roleArn": "arn:aws:iam::000000000000:role/" + "r" * 10_000},
        {"tags": {f"k{i}": "v" for i in range(5000)}},
    ],
    ids=["description-200k", "name-10k", "env-200x5k", "role-10k", "tags-5000"],
)
def test_oversize_fields(berth, artifact, changes):
    resp = raw_request(berth.url, "PUT", "/runtimes/", body=_create_body(artifact, **changes))
    _expect(resp, 400, "ValidationException")


def test_oversize_body(berth, artifact):
    # 12 MiB of description: refused as invalid or as too large, without a crash.
    resp = raw_request(
        berth.url,
        "PUT",
        "/runtimes/",
        body=_create_body(artifact, description="d" * (12 << 20)),
        timeout=60,
    )
    _expect(resp, {400, 413}, {"ValidationException", "RequestEntityTooLargeException"})


def test_unknown_runtime_ids(berth):
    for method, path in (
        ("GET", "/runtimes/nosuchruntime-abcdefghij/"),
        ("DELETE", "/runtimes/nosuchruntime-abcdefghij/"),
        ("POST", "/runtimes/nosuchruntime-abcdefghij/versions/"),
        ("GET", "/runtimes/nosuchruntime-abcdefghij/runtime-endpoints/DEFAULT/"),
    ):
        _expect(raw_request(berth.url, method, path), 404, "ResourceNotFoundException")


@pytest.mark.parametrize(
    "path",
    [
        "/runtimes/../../etc/passwd/",
        "/runtimes/..%2F..%2Fetc%2Fpasswd/",
        "/runtimes/%00/",
        "/runtimes/%2e%2e/",
        "/runtimes/a%0Ab-abcdefghij/",
        "/runtimes/" + "a" * 5000 + "-abcdefghij/",
        "/runtimes/%E2%98%83-abcdefghij/",
        "/runtimes/%25ZZ/",
        "//runtimes//",
    ],
    ids=[
        "dotdot",
        "encoded-slashes",
        "nul",
        "encoded-dots",
        "newline",
        "5000-char-id",
        "snowman",
        "bad-escape",
        "double-slash",
    ],
)
def test_path_junk(berth, path):
    resp = raw_request(berth.url, "GET", path)
    _expect(resp, {400, 404}, {"ValidationException"} | NOT_FOUND)


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/nope"),
        ("POST", "/nope/runtimes/"),
        ("POST", "/runtimes/x-abcdefghij/unknown/"),
        ("GET", "/runtimes/x-abcdefghij/versions/1/extra/"),
        ("PATCH", "/runtimes/"),
        ("DELETE", "/runtimes/"),
    ],
)
def test_unknown_routes(berth, method, path):
    resp = raw_request(berth.url, method, path)
    _expect(resp, {404, 405}, NOT_FOUND | {"ValidationException"})


@pytest.mark.parametrize(
    "query",
    [
        "maxResults=abc",
        "maxResults=1e3",
        "maxResults=99999999999999999999",
        "maxResults=",
        "nextToken=%FF%FE",
    ],
)
def test_bad_query_values(berth, query):
    resp = raw_request(berth.url, "POST", "/runtimes/", query=query)
    _expect(resp, 400, "ValidationException")


def test_bad_version_query_on_a_real_runtime(berth, control, artifact):
    runtime_id = create_runtime(control, artifact)["agentRuntimeId"]
    for version in ("abc", "0", "99999999999", "%00"):
        resp = raw_request(berth.url, "GET", f"/runtimes/{runtime_id}/", query=f"version={version}")
        _expect(resp, 400, "ValidationException")


def test_runtime_survives_junk_and_stays_consistent(berth, control, artifact):
    # A burst of bad requests against a real runtime changes nothing about it.
    created = create_runtime(control, artifact, description="intact")
    runtime_id = created["agentRuntimeId"]
    for body in (b"{", b"[]", json.dumps({"roleArn": 5}).encode(), b"\x00" * 1024):
        resp = raw_request(berth.url, "PUT", f"/runtimes/{runtime_id}/", body=body)
        _expect(resp, 400, "ValidationException")
    got = control.get_agent_runtime(agentRuntimeId=runtime_id)
    assert got["agentRuntimeVersion"] == "1"
    assert got["description"] == "intact"


def test_unknown_json_members_do_not_break_create(berth, artifact):
    # AWS front ends ignore members they do not model (clients newer than the server
    # send them); the request must not fail with a server error either way.
    name = unique_name("extra")
    resp = raw_request(
        berth.url,
        "PUT",
        "/runtimes/",
        body=_create_body(artifact, agentRuntimeName=name, someFutureField={"x": 1}),
    )
    assert resp.status in (202, 400), resp
    assert resp.request_id
