"""Agent runtimes and their versions through the unmodified boto3 control-plane client.

Authority: botocore's bedrock-agentcore-control 2023-06-05 service model, and the AgentCore
developer guide ("AgentCore Runtime versioning and endpoints") for behaviour the model does
not state.
"""

from __future__ import annotations

import pytest
from berth_harness import (
    BUILD_TIMEOUT,
    ISO8601,
    ROLE_ARN,
    RUNTIME_ID,
    RUNTIME_STATUSES,
    STATE_TIMEOUT,
    assert_recent,
    assert_status,
    client_token,
    code_artifact,
    create_runtime,
    expect_error,
    expect_validation,
    list_all,
    poll,
    runtime_args,
    runtime_arn,
    unique_name,
    update_args,
    wait_not_found,
    wait_status,
)

#: A test here waits for two builds.
TWO_BUILDS_TIMEOUT = int(BUILD_TIMEOUT * 2 + 60)


# ----------------------------------------------------------------------------- create / get


def test_create_returns_ids_arn_version_and_timestamps(control, artifact):
    name = unique_name("shape")
    resp = create_runtime(control, artifact, agentRuntimeName=name)

    runtime_id = resp["agentRuntimeId"]
    assert RUNTIME_ID.match(runtime_id), runtime_id
    assert runtime_id.startswith(name + "-") and len(runtime_id) == len(name) + 11
    assert resp["agentRuntimeArn"] == runtime_arn(runtime_id)
    assert resp["agentRuntimeVersion"] == "1"
    assert resp["status"] in {"CREATING", "READY"}
    assert_recent(resp["createdAt"])
    if "workloadIdentityDetails" in resp:
        assert resp["workloadIdentityDetails"]["workloadIdentityArn"]


def test_get_returns_the_submitted_configuration(control, artifact):
    name = unique_name("get")
    request = runtime_args(
        artifact,
        name=name,
        description="conformance get",
        environmentVariables={"GREETING": "hello", "EMPTY": ""},
        lifecycleConfiguration={"idleRuntimeSessionTimeout": 120, "maxLifetime": 3600},
        protocolConfiguration={"serverProtocol": "HTTP"},
    )
    created = control.create_agent_runtime(**request)
    assert_status(created, 202)

    got = control.get_agent_runtime(agentRuntimeId=created["agentRuntimeId"])
    assert_status(got, 200)
    assert got["agentRuntimeId"] == created["agentRuntimeId"]
    assert got["agentRuntimeArn"] == created["agentRuntimeArn"]
    assert got["agentRuntimeName"] == name
    assert got["agentRuntimeVersion"] == "1"
    assert got["roleArn"] == ROLE_ARN
    assert got["description"] == "conformance get"
    assert got["agentRuntimeArtifact"] == request["agentRuntimeArtifact"]
    assert got["networkConfiguration"] == {"networkMode": "PUBLIC"}
    assert got["environmentVariables"] == {"GREETING": "hello", "EMPTY": ""}
    assert got["lifecycleConfiguration"] == {"idleRuntimeSessionTimeout": 120, "maxLifetime": 3600}
    assert got["protocolConfiguration"]["serverProtocol"] == "HTTP"
    assert got["status"] in RUNTIME_STATUSES
    assert_recent(got["createdAt"])
    assert_recent(got["lastUpdatedAt"])
    assert got["createdAt"] == created["createdAt"]
    assert got["lastUpdatedAt"] >= got["createdAt"]


def test_get_fills_in_lifecycle_defaults(control, artifact):
    # lifecycleConfiguration is a required member of GetAgentRuntimeResponse, so a runtime
    # created without one still reports its effective timeouts (AWS: 900 s idle, 8 h max).
    created = create_runtime(control, artifact)
    got = control.get_agent_runtime(agentRuntimeId=created["agentRuntimeId"])
    lifecycle = got["lifecycleConfiguration"]
    assert isinstance(lifecycle.get("idleRuntimeSessionTimeout"), int)
    assert isinstance(lifecycle.get("maxLifetime"), int)
    assert 60 <= lifecycle["idleRuntimeSessionTimeout"] <= lifecycle["maxLifetime"]


def test_timestamps_are_iso8601_on_the_wire(berth, artifact):
    # botocore would also accept epoch numbers; the model says iso8601, so check the raw body.
    control = berth.client("bedrock-agentcore-control")
    bodies = {}

    def capture(operation_model, response_dict, **_):
        import json

        bodies[operation_model.name] = json.loads(response_dict["body"] or b"{}")

    control.meta.events.register("before-parse.bedrock-agentcore-control.*", capture)
    created = create_runtime(control, artifact)
    control.get_agent_runtime(agentRuntimeId=created["agentRuntimeId"])
    control.list_agent_runtimes(maxResults=1)

    assert ISO8601.match(bodies["CreateAgentRuntime"]["createdAt"]), bodies["CreateAgentRuntime"]
    assert ISO8601.match(bodies["GetAgentRuntime"]["createdAt"])
    assert ISO8601.match(bodies["GetAgentRuntime"]["lastUpdatedAt"])
    for item in bodies["ListAgentRuntimes"]["agentRuntimes"]:
        assert ISO8601.match(item["lastUpdatedAt"]), item


def test_get_unknown_runtime_and_version_are_not_found(control, artifact):
    expect_error(
        control.get_agent_runtime,
        "ResourceNotFoundException",
        404,
        agentRuntimeId="nosuchruntime-abcdefghij",
    )
    created = create_runtime(control, artifact)
    expect_error(
        control.get_agent_runtime,
        "ResourceNotFoundException",
        404,
        agentRuntimeId=created["agentRuntimeId"],
        agentRuntimeVersion="99",
    )


@pytest.mark.build
@pytest.mark.timeout(TWO_BUILDS_TIMEOUT)
def test_code_runtime_builds_to_ready(control, artifact):
    created = create_runtime(control, artifact)
    ready = wait_status(control, created["agentRuntimeId"], "1")
    assert ready["status"] == "READY"
    assert "failureReason" not in ready or not ready["failureReason"]


def test_missing_artifact_fails_the_build(control, artifact):
    created = create_runtime(
        control,
        artifact,
        agentRuntimeArtifact=code_artifact(
            {"bucket": artifact["bucket"], "prefix": f"missing/{unique_name()}.zip"}
        ),
    )
    failed = wait_status(
        control, created["agentRuntimeId"], "1", want={"CREATE_FAILED"}, timeout=STATE_TIMEOUT
    )
    assert failed["failureReason"], failed


def test_broken_zip_fails_the_build(control, s3, artifact):
    key = f"broken/{unique_name()}.zip"
    s3.put_object(Bucket=artifact["bucket"], Key=key, Body=b"this is not a zip archive")
    created = create_runtime(
        control,
        artifact,
        agentRuntimeArtifact=code_artifact({"bucket": artifact["bucket"], "prefix": key}),
    )
    failed = wait_status(
        control, created["agentRuntimeId"], "1", want={"CREATE_FAILED"}, timeout=STATE_TIMEOUT
    )
    assert failed["failureReason"], failed


def test_a_container_uri_outside_ecr_is_refused_as_the_model_says(control_unvalidated):
    # `RuntimeContainerUri` allows ECR-style and public.ecr.aws URIs only (other registries are
    # reached by mapping an ECR host, `serve --registries`); the pattern is checked like AWS does.
    expect_validation(
        control_unvalidated.create_agent_runtime,
        "agentRuntimeArtifact.containerConfiguration.containerUri",
        agentRuntimeName=unique_name("container"),
        agentRuntimeArtifact={"containerConfiguration": {"containerUri": "docker.io/library/python:3.12"}},
        roleArn=ROLE_ARN,
        networkConfiguration={"networkMode": "PUBLIC"},
    )


def test_duplicate_name_is_a_conflict(control, artifact):
    name = unique_name("dup")
    create_runtime(control, artifact, agentRuntimeName=name)
    expect_error(
        control.create_agent_runtime,
        "ConflictException",
        409,
        **runtime_args(artifact, name=name),
    )


# ----------------------------------------------------------------------------- update / versions


def test_update_creates_immutable_versions(control, artifact):
    created = create_runtime(
        control, artifact, description="v1", environmentVariables={"STAGE": "one"}
    )
    runtime_id = created["agentRuntimeId"]

    for number, stage in ((2, "two"), (3, "three")):
        updated = control.update_agent_runtime(
            agentRuntimeId=runtime_id,
            **update_args(
                artifact, description=f"v{number}", environmentVariables={"STAGE": stage}
            ),
        )
        assert_status(updated, 202)
        assert updated["agentRuntimeId"] == runtime_id
        assert updated["agentRuntimeArn"] == created["agentRuntimeArn"]
        assert updated["agentRuntimeVersion"] == str(number)
        assert updated["status"] in RUNTIME_STATUSES
        assert_recent(updated["createdAt"])
        assert_recent(updated["lastUpdatedAt"])

    latest = control.get_agent_runtime(agentRuntimeId=runtime_id)
    assert latest["agentRuntimeVersion"] == "3"
    assert latest["description"] == "v3"
    assert latest["environmentVariables"] == {"STAGE": "three"}

    for number, stage in ((1, "one"), (2, "two"), (3, "three")):
        old = control.get_agent_runtime(agentRuntimeId=runtime_id, agentRuntimeVersion=str(number))
        assert_status(old, 200)
        assert old["agentRuntimeVersion"] == str(number)
        assert old["description"] == f"v{number}"
        assert old["environmentVariables"] == {"STAGE": stage}
        assert old["agentRuntimeName"] == created["agentRuntimeId"].rsplit("-", 1)[0]


def test_update_keeps_each_versions_artifact(control, s3, artifact, artifact_zip):
    # A new version may point at a different object; the old version keeps its own.
    other_key = f"hello-agent/copy-{unique_name()}/deployment_package.zip"
    s3.put_object(Bucket=artifact["bucket"], Key=other_key, Body=artifact_zip)
    created = create_runtime(control, artifact)
    runtime_id = created["agentRuntimeId"]
    new_artifact = code_artifact({"bucket": artifact["bucket"], "prefix": other_key})
    control.update_agent_runtime(
        agentRuntimeId=runtime_id, **update_args(artifact, agentRuntimeArtifact=new_artifact)
    )
    v1 = control.get_agent_runtime(agentRuntimeId=runtime_id, agentRuntimeVersion="1")
    v2 = control.get_agent_runtime(agentRuntimeId=runtime_id, agentRuntimeVersion="2")
    assert v1["agentRuntimeArtifact"] == code_artifact(artifact)
    assert v2["agentRuntimeArtifact"] == new_artifact


def test_update_unknown_runtime_is_not_found(control, artifact):
    expect_error(
        control.update_agent_runtime,
        "ResourceNotFoundException",
        404,
        agentRuntimeId="nosuchruntime-abcdefghij",
        **update_args(artifact),
    )


@pytest.mark.build
@pytest.mark.timeout(TWO_BUILDS_TIMEOUT)
def test_updated_version_builds_to_ready(control, artifact):
    created = create_runtime(control, artifact)
    runtime_id = created["agentRuntimeId"]
    control.update_agent_runtime(agentRuntimeId=runtime_id, **update_args(artifact))
    assert wait_status(control, runtime_id, "2")["status"] == "READY"
    assert wait_status(control, runtime_id, "1")["status"] == "READY"


# ----------------------------------------------------------------------------- list / paging


def test_list_runtimes_shows_latest_version(control, artifact):
    created = create_runtime(control, artifact, description="listed")
    runtime_id = created["agentRuntimeId"]
    control.update_agent_runtime(
        agentRuntimeId=runtime_id, **update_args(artifact, description="listed v2")
    )
    items = [
        item for page in list_all(control.list_agent_runtimes, "agentRuntimes") for item in page
    ]
    mine = [item for item in items if item["agentRuntimeId"] == runtime_id]
    assert len(mine) == 1, mine
    item = mine[0]
    assert item["agentRuntimeArn"] == created["agentRuntimeArn"]
    assert item["agentRuntimeName"] == runtime_id.rsplit("-", 1)[0]
    assert item["agentRuntimeVersion"] == "2"
    assert item["description"] == "listed v2"
    assert item["status"] in RUNTIME_STATUSES
    assert_recent(item["lastUpdatedAt"])


def test_list_runtimes_pages_without_gaps_or_duplicates(control, artifact):
    mine = {create_runtime(control, artifact)["agentRuntimeId"] for _ in range(7)}

    pages = list_all(control.list_agent_runtimes, "agentRuntimes", page_size=3)
    ids = [item["agentRuntimeId"] for page in pages for item in page]
    assert len(pages) >= 3
    assert len(ids) == len(set(ids)), "a runtime appears on two pages"
    assert mine <= set(ids), f"missing from the pages: {mine - set(ids)}"

    # The same set, walked with the biggest pages and with boto3's paginator.
    big = [
        item["agentRuntimeId"]
        for page in list_all(control.list_agent_runtimes, "agentRuntimes", page_size=100)
        for item in page
    ]
    assert sorted(big) == sorted(ids)
    paginated = [
        item["agentRuntimeId"]
        for page in control.get_paginator("list_agent_runtimes").paginate(
            PaginationConfig={"PageSize": 2}
        )
        for item in page["agentRuntimes"]
    ]
    assert sorted(paginated) == sorted(ids)


def test_list_versions_pages_without_gaps_or_duplicates(control, artifact):
    created = create_runtime(control, artifact)
    runtime_id = created["agentRuntimeId"]
    for number in range(2, 8):
        resp = control.update_agent_runtime(
            agentRuntimeId=runtime_id, **update_args(artifact, description=f"v{number}")
        )
        assert resp["agentRuntimeVersion"] == str(number)

    pages = list_all(
        control.list_agent_runtime_versions, "agentRuntimes", page_size=3, agentRuntimeId=runtime_id
    )
    # Short pages are legal (AWS may return fewer than maxResults), so only the bound and
    # the total are checked: 7 versions in pages of at most 3 need at least 3 pages.
    assert len(pages) >= 3, [len(page) for page in pages]
    items = [item for page in pages for item in page]
    versions = [item["agentRuntimeVersion"] for item in items]
    assert sorted(versions, key=int) == [str(n) for n in range(1, 8)], versions
    for item in items:
        assert item["agentRuntimeId"] == runtime_id
        assert item["agentRuntimeArn"] == created["agentRuntimeArn"]
        assert item["status"] in RUNTIME_STATUSES
        assert_recent(item["lastUpdatedAt"])
        if item["agentRuntimeVersion"] != "1":
            assert item["description"] == f"v{item['agentRuntimeVersion']}"

    paginated = [
        item["agentRuntimeVersion"]
        for page in control.get_paginator("list_agent_runtime_versions").paginate(
            agentRuntimeId=runtime_id, PaginationConfig={"PageSize": 2}
        )
        for item in page["agentRuntimes"]
    ]
    assert sorted(paginated, key=int) == [str(n) for n in range(1, 8)]


def test_list_versions_of_unknown_runtime_is_not_found(control):
    expect_error(
        control.list_agent_runtime_versions,
        "ResourceNotFoundException",
        404,
        agentRuntimeId="nosuchruntime-abcdefghij",
    )


def test_garbage_next_token_is_rejected(control, artifact):
    created = create_runtime(control, artifact)
    expect_validation(control.list_agent_runtimes, nextToken="not-a-token-berth-issued")
    expect_validation(
        control.list_agent_runtime_versions,
        agentRuntimeId=created["agentRuntimeId"],
        nextToken="not-a-token-berth-issued",
    )


# ----------------------------------------------------------------------------- delete


def test_delete_runtime_removes_everything(control, artifact):
    created = create_runtime(control, artifact)
    runtime_id = created["agentRuntimeId"]
    control.update_agent_runtime(agentRuntimeId=runtime_id, **update_args(artifact))

    deleted = control.delete_agent_runtime(agentRuntimeId=runtime_id)
    assert_status(deleted, 202)
    assert deleted["status"] == "DELETING"
    assert deleted.get("agentRuntimeId", runtime_id) == runtime_id

    wait_not_found(control.get_agent_runtime, agentRuntimeId=runtime_id)
    for version in ("1", "2"):
        expect_error(
            control.get_agent_runtime,
            "ResourceNotFoundException",
            404,
            agentRuntimeId=runtime_id,
            agentRuntimeVersion=version,
        )
    expect_error(
        control.list_agent_runtime_versions,
        "ResourceNotFoundException",
        404,
        agentRuntimeId=runtime_id,
    )
    expect_error(
        control.get_agent_runtime_endpoint,
        "ResourceNotFoundException",
        404,
        agentRuntimeId=runtime_id,
        endpointName="DEFAULT",
    )
    listed = [
        i["agentRuntimeId"]
        for p in list_all(control.list_agent_runtimes, "agentRuntimes")
        for i in p
    ]
    assert runtime_id not in listed
    expect_error(
        control.delete_agent_runtime,
        "ResourceNotFoundException",
        404,
        agentRuntimeId=runtime_id,
    )


def test_name_is_reusable_after_delete(control, artifact):
    name = unique_name("reuse")
    first = create_runtime(control, artifact, agentRuntimeName=name)["agentRuntimeId"]
    control.delete_agent_runtime(agentRuntimeId=first)
    wait_not_found(control.get_agent_runtime, agentRuntimeId=first)
    second = create_runtime(control, artifact, agentRuntimeName=name)["agentRuntimeId"]
    assert second != first
    assert second.startswith(name + "-")


def test_delete_one_version(control, artifact):
    created = create_runtime(control, artifact, description="v1")
    runtime_id = created["agentRuntimeId"]
    for number in (2, 3):
        control.update_agent_runtime(
            agentRuntimeId=runtime_id, **update_args(artifact, description=f"v{number}")
        )
    # DEFAULT serves version 1 until a later one is READY, and a version an endpoint serves
    # cannot be deleted (ConflictException): wait until DEFAULT has moved on.
    wait_status(control, runtime_id, "3")
    poll(
        lambda: control.get_agent_runtime_endpoint(agentRuntimeId=runtime_id, endpointName="DEFAULT"),
        lambda e: e.get("liveVersion") == "3",
        timeout=STATE_TIMEOUT,
        what="DEFAULT to serve version 3",
    )

    deleted = control.delete_agent_runtime(agentRuntimeId=runtime_id, agentRuntimeVersion="1")
    assert_status(deleted, 202)
    assert deleted["status"] == "DELETING"
    assert deleted.get("agentRuntimeVersion", "1") == "1"

    wait_not_found(control.get_agent_runtime, agentRuntimeId=runtime_id, agentRuntimeVersion="1")
    v2 = control.get_agent_runtime(agentRuntimeId=runtime_id, agentRuntimeVersion="2")
    assert v2["description"] == "v2"
    latest = control.get_agent_runtime(agentRuntimeId=runtime_id)
    assert latest["agentRuntimeVersion"] == "3"
    versions = [
        i["agentRuntimeVersion"]
        for p in list_all(
            control.list_agent_runtime_versions, "agentRuntimes", agentRuntimeId=runtime_id
        )
        for i in p
    ]
    assert sorted(versions) == ["2", "3"]
    # The next update still gets a fresh number: version numbers are never reused.
    resp = control.update_agent_runtime(agentRuntimeId=runtime_id, **update_args(artifact))
    assert resp["agentRuntimeVersion"] == "4"


def test_delete_unknown_version_is_not_found(control, artifact):
    created = create_runtime(control, artifact)
    expect_error(
        control.delete_agent_runtime,
        "ResourceNotFoundException",
        404,
        agentRuntimeId=created["agentRuntimeId"],
        agentRuntimeVersion="42",
    )
    expect_error(
        control.delete_agent_runtime,
        "ResourceNotFoundException",
        404,
        agentRuntimeId="nosuchruntime-abcdefghij",
    )


# ----------------------------------------------------------------------------- idempotency


def test_create_with_same_client_token_is_idempotent(control, artifact):
    token = client_token()
    request = runtime_args(artifact, clientToken=token, description="idem")
    first = control.create_agent_runtime(**request)
    second = control.create_agent_runtime(**request)
    assert_status(second, 202)
    assert second["agentRuntimeId"] == first["agentRuntimeId"]
    assert second["agentRuntimeArn"] == first["agentRuntimeArn"]
    assert second["agentRuntimeVersion"] == first["agentRuntimeVersion"] == "1"
    assert second["createdAt"] == first["createdAt"]

    name = request["agentRuntimeName"]
    listed = [
        i
        for p in list_all(control.list_agent_runtimes, "agentRuntimes")
        for i in p
        if i["agentRuntimeName"] == name
    ]
    assert len(listed) == 1


def test_create_with_same_client_token_and_other_params_is_rejected(control, artifact):
    # The model's ValidationExceptionReason has IdempotentParameterMismatchException, and
    # CreateAgentRuntime's modelled errors include ValidationException: that is the answer.
    token = client_token()
    request = runtime_args(artifact, clientToken=token, description="first")
    control.create_agent_runtime(**request)
    changed = dict(request, description="second")
    response = expect_error(control.create_agent_runtime, "ValidationException", 400, **changed)
    assert response.get("reason") == "IdempotentParameterMismatchException", response


def test_update_with_same_client_token_is_idempotent(control, artifact):
    created = create_runtime(control, artifact)
    runtime_id = created["agentRuntimeId"]
    token = client_token()
    request = update_args(artifact, clientToken=token, description="once")
    first = control.update_agent_runtime(agentRuntimeId=runtime_id, **request)
    second = control.update_agent_runtime(agentRuntimeId=runtime_id, **request)
    assert_status(second, 202)
    assert first["agentRuntimeVersion"] == second["agentRuntimeVersion"] == "2"
    versions = [
        i["agentRuntimeVersion"]
        for p in list_all(
            control.list_agent_runtime_versions, "agentRuntimes", agentRuntimeId=runtime_id
        )
        for i in p
    ]
    assert sorted(versions) == ["1", "2"]

    changed = dict(request, description="twice")
    response = expect_error(
        control.update_agent_runtime,
        "ValidationException",
        400,
        agentRuntimeId=runtime_id,
        **changed,
    )
    assert response.get("reason") == "IdempotentParameterMismatchException", response


# ----------------------------------------------------------------------------- validation

GOOD_BUCKET = "berth-conformance"


def _artifact_with(**changes):
    config = {
        "code": {"s3": {"bucket": GOOD_BUCKET, "prefix": "x/deployment_package.zip"}},
        "runtime": "PYTHON_3_12",
        "entryPoint": ["agent.py"],
    }
    config.update(changes)
    return {"codeConfiguration": config}


def _s3(**changes):
    s3 = {"bucket": GOOD_BUCKET, "prefix": "x/deployment_package.zip"}
    s3.update(changes)
    return _artifact_with(code={"s3": s3})


CREATE_CASES = [
    # (id, changes to a valid request (None value = drop the member), field named in fieldList)
    ("name-starts-with-digit", {"agentRuntimeName": "1agent"}, "agentRuntimeName"),
    ("name-with-dash", {"agentRuntimeName": "bad-name"}, "agentRuntimeName"),
    ("name-49-chars", {"agentRuntimeName": "a" * 49}, "agentRuntimeName"),
    ("name-empty", {"agentRuntimeName": ""}, "agentRuntimeName"),
    ("name-missing", {"agentRuntimeName": None}, "agentRuntimeName"),
    ("description-empty", {"description": ""}, "description"),
    ("description-4097", {"description": "d" * 4097}, "description"),
    (
        "env-51-vars",
        {"environmentVariables": {f"K{i}": "v" for i in range(51)}},
        "environmentVariables",
    ),
    ("env-key-empty", {"environmentVariables": {"": "v"}}, "environmentVariables"),
    ("env-key-101", {"environmentVariables": {"k" * 101: "v"}}, "environmentVariables"),
    ("env-value-5001", {"environmentVariables": {"K": "v" * 5001}}, "environmentVariables"),
    ("tag-key-pattern", {"tags": {"bad!key": "v"}}, "tags"),
    ("tag-key-empty", {"tags": {"": "v"}}, "tags"),
    ("tag-key-129", {"tags": {"k" * 129: "v"}}, "tags"),
    ("tag-value-257", {"tags": {"k": "v" * 257}}, "tags"),
    ("tag-value-pattern", {"tags": {"k": "no*stars"}}, "tags"),
    ("tags-51", {"tags": {f"k{i}": "v" for i in range(51)}}, "tags"),
    (
        "idle-timeout-59",
        {"lifecycleConfiguration": {"idleRuntimeSessionTimeout": 59}},
        "idleRuntimeSessionTimeout",
    ),
    ("max-lifetime-59", {"lifecycleConfiguration": {"maxLifetime": 59}}, "maxLifetime"),
    (
        "idle-timeout-too-big",
        {"lifecycleConfiguration": {"idleRuntimeSessionTimeout": 1209601}},
        "idleRuntimeSessionTimeout",
    ),
    ("role-not-an-arn", {"roleArn": "not-an-arn"}, "roleArn"),
    ("role-short-account", {"roleArn": "arn:aws:iam::123:role/x"}, "roleArn"),
    ("role-is-a-user", {"roleArn": "arn:aws:iam::000000000000:user/x"}, "roleArn"),
    ("role-missing", {"roleArn": None}, "roleArn"),
    ("bucket-uppercase", {"agentRuntimeArtifact": _s3(bucket="Bad_Bucket")}, "bucket"),
    ("bucket-too-short", {"agentRuntimeArtifact": _s3(bucket="ab")}, "bucket"),
    ("prefix-empty", {"agentRuntimeArtifact": _s3(prefix="")}, "prefix"),
    ("version-id-too-short", {"agentRuntimeArtifact": _s3(versionId="ab")}, "versionId"),
    ("entrypoint-empty", {"agentRuntimeArtifact": _artifact_with(entryPoint=[])}, "entryPoint"),
    (
        "entrypoint-3-items",
        {"agentRuntimeArtifact": _artifact_with(entryPoint=["a.py", "b", "c"])},
        "entryPoint",
    ),
    (
        "entrypoint-item-129",
        {"agentRuntimeArtifact": _artifact_with(entryPoint=["a" * 129])},
        "entryPoint",
    ),
    ("runtime-enum", {"agentRuntimeArtifact": _artifact_with(runtime="PYTHON_2_7")}, "runtime"),
    ("artifact-no-member", {"agentRuntimeArtifact": {}}, "agentRuntimeArtifact"),
    (
        "artifact-both-members",
        {
            "agentRuntimeArtifact": {
                **_artifact_with(),
                "containerConfiguration": {
                    "containerUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/agent:latest"
                },
            }
        },
        "agentRuntimeArtifact",
    ),
    ("code-no-member", {"agentRuntimeArtifact": _artifact_with(code={})}, "code"),
    ("artifact-missing", {"agentRuntimeArtifact": None}, "agentRuntimeArtifact"),
    ("network-mode-enum", {"networkConfiguration": {"networkMode": "LAN"}}, "networkMode"),
    ("protocol-enum", {"protocolConfiguration": {"serverProtocol": "GRPC"}}, "serverProtocol"),
    ("client-token-short", {"clientToken": "short"}, "clientToken"),
    ("client-token-pattern", {"clientToken": "x" * 32 + "!!"}, "clientToken"),
    (
        "header-allowlist-pattern",
        {"requestHeaderConfiguration": {"requestHeaderAllowlist": ["1bad"]}},
        "requestHeaderAllowlist",
    ),
    (
        "header-allowlist-21",
        {"requestHeaderConfiguration": {"requestHeaderAllowlist": [f"X-H{i}" for i in range(21)]}},
        "requestHeaderAllowlist",
    ),
]


def _apply(base: dict, changes: dict) -> dict:
    request = dict(base)
    for key, value in changes.items():
        if value is None:
            request.pop(key, None)
        else:
            request[key] = value
    return request


@pytest.mark.parametrize(
    "changes,field", [c[1:] for c in CREATE_CASES], ids=[c[0] for c in CREATE_CASES]
)
def test_create_validation(control_unvalidated, changes, field):
    base = {
        "agentRuntimeName": unique_name("val"),
        "agentRuntimeArtifact": _artifact_with(),
        "roleArn": ROLE_ARN,
        "networkConfiguration": {"networkMode": "PUBLIC"},
    }
    expect_validation(control_unvalidated.create_agent_runtime, field, **_apply(base, changes))


def test_invalid_create_leaves_nothing_behind(control_unvalidated, control):
    name = unique_name("ghost")
    expect_validation(
        control_unvalidated.create_agent_runtime,
        "entryPoint",
        agentRuntimeName=name,
        agentRuntimeArtifact=_artifact_with(entryPoint=[]),
        roleArn=ROLE_ARN,
    )
    listed = [i for p in list_all(control.list_agent_runtimes, "agentRuntimes") for i in p]
    assert name not in {i["agentRuntimeName"] for i in listed}


UPDATE_CASES = [
    ("role-not-an-arn", {"roleArn": "not-an-arn"}, "roleArn"),
    ("role-missing", {"roleArn": None}, "roleArn"),
    ("artifact-missing", {"agentRuntimeArtifact": None}, "agentRuntimeArtifact"),
    (
        "entrypoint-3-items",
        {"agentRuntimeArtifact": _artifact_with(entryPoint=["a", "b", "c"])},
        "entryPoint",
    ),
    (
        "env-51-vars",
        {"environmentVariables": {f"K{i}": "v" for i in range(51)}},
        "environmentVariables",
    ),
    ("description-4097", {"description": "d" * 4097}, "description"),
    ("max-lifetime-59", {"lifecycleConfiguration": {"maxLifetime": 59}}, "maxLifetime"),
]


@pytest.mark.parametrize(
    "changes,field", [c[1:] for c in UPDATE_CASES], ids=[c[0] for c in UPDATE_CASES]
)
def test_update_validation_creates_no_version(
    control, control_unvalidated, artifact, changes, field
):
    created = create_runtime(control, artifact)
    runtime_id = created["agentRuntimeId"]
    base = update_args(artifact)
    expect_validation(
        control_unvalidated.update_agent_runtime,
        field,
        agentRuntimeId=runtime_id,
        **_apply(base, changes),
    )
    latest = control.get_agent_runtime(agentRuntimeId=runtime_id)
    assert latest["agentRuntimeVersion"] == "1"


@pytest.mark.parametrize("version", ["0", "abc", "123456", "01", "-1"])
def test_bad_version_string_is_rejected(control_unvalidated, control, artifact, version):
    created = create_runtime(control, artifact)
    expect_validation(
        control_unvalidated.get_agent_runtime,
        "ersion",
        agentRuntimeId=created["agentRuntimeId"],
        agentRuntimeVersion=version,
    )


@pytest.mark.parametrize(
    "runtime_id", ["noSuffix", "bad id-abcdefghij", "x-abc", "1abc-abcdefghij"]
)
def test_malformed_runtime_id_is_rejected(control_unvalidated, runtime_id):
    expect_validation(
        control_unvalidated.get_agent_runtime, "agentRuntimeId", agentRuntimeId=runtime_id
    )


@pytest.mark.parametrize("max_results", [0, 101, -5])
def test_max_results_bounds(control_unvalidated, control, artifact, max_results):
    created = create_runtime(control, artifact)
    expect_validation(control_unvalidated.list_agent_runtimes, "maxResults", maxResults=max_results)
    expect_validation(
        control_unvalidated.list_agent_runtime_versions,
        "maxResults",
        agentRuntimeId=created["agentRuntimeId"],
        maxResults=max_results,
    )


def test_max_results_limits_are_inclusive(control, artifact):
    create_runtime(control, artifact)
    assert len(control.list_agent_runtimes(maxResults=1)["agentRuntimes"]) == 1
    assert_status(control.list_agent_runtimes(maxResults=100), 200)
