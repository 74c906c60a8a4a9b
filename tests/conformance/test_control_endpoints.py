"""Agent runtime endpoints (DEFAULT and named) through the unmodified boto3 client.

Behaviour from the AgentCore developer guide ("AgentCore Runtime versioning and endpoints"):
DEFAULT is created with the runtime and moves to every new version; named endpoints stay on
their version until UpdateAgentRuntimeEndpoint. DEFAULT cannot be deleted on its own: the
model lists no ValidationException for DeleteAgentRuntimeEndpoint, and AWS answers
ConflictException ("Default endpoints are removed when you delete the agent"), so that is
what the suite requires.
"""

from __future__ import annotations

import pytest
from berth_harness import (
    BUILD_TIMEOUT,
    ENDPOINT_ID,
    RUNTIME_STATUSES,
    assert_recent,
    assert_status,
    client_token,
    create_runtime,
    endpoint_arn,
    expect_error,
    expect_validation,
    list_all,
    unique_name,
    update_args,
    wait_endpoint,
    wait_not_found,
    wait_status,
)

#: A test here waits for four builds (conftest.BUILD_TEST_TIMEOUT is the default for one or two).
FOUR_BUILDS_TIMEOUT = int(BUILD_TIMEOUT * 4 + 60)
UNKNOWN_RUNTIME = "nosuchruntime-abcdefghij"


def _endpoints(control, runtime_id, page_size=None):
    pages = list_all(
        control.list_agent_runtime_endpoints,
        "runtimeEndpoints",
        page_size=page_size,
        agentRuntimeId=runtime_id,
    )
    return pages, [item for page in pages for item in page]


def _check_endpoint_shape(resp, runtime_id, runtime_arn, name):
    assert resp["name"] == name
    assert resp["agentRuntimeEndpointArn"] == endpoint_arn(runtime_id, name)
    assert resp["agentRuntimeArn"] == runtime_arn
    assert ENDPOINT_ID.match(resp["id"]), resp["id"]
    assert resp["status"] in RUNTIME_STATUSES
    assert_recent(resp["createdAt"])
    assert_recent(resp["lastUpdatedAt"])


def test_default_endpoint_is_created_with_the_runtime(control, artifact):
    created = create_runtime(control, artifact)
    runtime_id = created["agentRuntimeId"]

    default = control.get_agent_runtime_endpoint(agentRuntimeId=runtime_id, endpointName="DEFAULT")
    assert_status(default, 200)
    _check_endpoint_shape(default, runtime_id, created["agentRuntimeArn"], "DEFAULT")
    assert "1" in {default.get("liveVersion"), default.get("targetVersion")}, default

    _, items = _endpoints(control, runtime_id)
    assert [item["name"] for item in items] == ["DEFAULT"]
    _check_endpoint_shape(items[0], runtime_id, created["agentRuntimeArn"], "DEFAULT")


@pytest.mark.build
@pytest.mark.timeout(FOUR_BUILDS_TIMEOUT)
def test_default_tracks_latest_and_named_endpoints_stay_pinned(control, artifact):
    created = create_runtime(control, artifact)
    runtime_id = created["agentRuntimeId"]
    wait_status(control, runtime_id, "1")
    wait_endpoint(control, runtime_id, "DEFAULT", live_version="1")

    name = unique_name("pinned")
    made = control.create_agent_runtime_endpoint(
        agentRuntimeId=runtime_id, name=name, agentRuntimeVersion="1", description="pinned to v1"
    )
    assert_status(made, 202)
    assert made["targetVersion"] == "1"
    assert made["agentRuntimeEndpointArn"] == endpoint_arn(runtime_id, name)
    assert made["agentRuntimeArn"] == created["agentRuntimeArn"]
    assert made.get("agentRuntimeId", runtime_id) == runtime_id
    assert made.get("endpointName", name) == name
    assert made["status"] in RUNTIME_STATUSES
    assert_recent(made["createdAt"])
    pinned = wait_endpoint(control, runtime_id, name, live_version="1")
    assert pinned["description"] == "pinned to v1"

    control.update_agent_runtime(agentRuntimeId=runtime_id, **update_args(artifact))
    wait_status(control, runtime_id, "2")
    default = wait_endpoint(control, runtime_id, "DEFAULT", live_version="2")
    assert default["status"] == "READY"

    still = control.get_agent_runtime_endpoint(agentRuntimeId=runtime_id, endpointName=name)
    assert still["liveVersion"] == "1", "a named endpoint moved without UpdateAgentRuntimeEndpoint"

    moved = control.update_agent_runtime_endpoint(
        agentRuntimeId=runtime_id, endpointName=name, agentRuntimeVersion="2"
    )
    assert_status(moved, 202)
    assert moved["targetVersion"] == "2"
    assert moved["agentRuntimeEndpointArn"] == endpoint_arn(runtime_id, name)
    assert moved["agentRuntimeArn"] == created["agentRuntimeArn"]
    assert moved["status"] in RUNTIME_STATUSES
    assert_recent(moved["createdAt"])
    assert_recent(moved["lastUpdatedAt"])
    after = wait_endpoint(control, runtime_id, name, live_version="2")
    assert after["lastUpdatedAt"] >= pinned["lastUpdatedAt"]

    # Rolling back is the same call with an older version.
    control.update_agent_runtime_endpoint(
        agentRuntimeId=runtime_id, endpointName=name, agentRuntimeVersion="1"
    )
    wait_endpoint(control, runtime_id, name, live_version="1")


def test_named_endpoint_without_version_targets_latest(control, artifact):
    created = create_runtime(control, artifact)
    runtime_id = created["agentRuntimeId"]
    control.update_agent_runtime(agentRuntimeId=runtime_id, **update_args(artifact))
    name = unique_name("latest")
    made = control.create_agent_runtime_endpoint(agentRuntimeId=runtime_id, name=name)
    assert_status(made, 202)
    assert made["targetVersion"] == "2"
    got = control.get_agent_runtime_endpoint(agentRuntimeId=runtime_id, endpointName=name)
    _check_endpoint_shape(got, runtime_id, created["agentRuntimeArn"], name)
    assert "2" in {got.get("liveVersion"), got.get("targetVersion")}


def test_endpoint_description_update(control, artifact):
    runtime_id = create_runtime(control, artifact)["agentRuntimeId"]
    name = unique_name("desc")
    control.create_agent_runtime_endpoint(
        agentRuntimeId=runtime_id, name=name, agentRuntimeVersion="1", description="before"
    )
    got = control.get_agent_runtime_endpoint(agentRuntimeId=runtime_id, endpointName=name)
    assert got["description"] == "before"
    resp = control.update_agent_runtime_endpoint(
        agentRuntimeId=runtime_id, endpointName=name, agentRuntimeVersion="1", description="after"
    )
    assert_status(resp, 202)
    got = control.get_agent_runtime_endpoint(agentRuntimeId=runtime_id, endpointName=name)
    assert got["description"] == "after"
    listed = {item["name"]: item for item in _endpoints(control, runtime_id)[1]}
    assert listed[name]["description"] == "after"


def test_duplicate_endpoint_name_is_a_conflict(control, artifact):
    runtime_id = create_runtime(control, artifact)["agentRuntimeId"]
    name = unique_name("twice")
    control.create_agent_runtime_endpoint(
        agentRuntimeId=runtime_id, name=name, agentRuntimeVersion="1"
    )
    expect_error(
        control.create_agent_runtime_endpoint,
        "ConflictException",
        409,
        agentRuntimeId=runtime_id,
        name=name,
        agentRuntimeVersion="1",
    )
    # DEFAULT already exists on every runtime.
    expect_error(
        control.create_agent_runtime_endpoint,
        "ConflictException",
        409,
        agentRuntimeId=runtime_id,
        name="DEFAULT",
    )


def test_same_endpoint_name_on_two_runtimes_is_fine(control, artifact):
    name = unique_name("shared")
    for _ in range(2):
        runtime_id = create_runtime(control, artifact)["agentRuntimeId"]
        made = control.create_agent_runtime_endpoint(agentRuntimeId=runtime_id, name=name)
        assert made["agentRuntimeEndpointArn"] == endpoint_arn(runtime_id, name)


def test_unknown_runtime_endpoint_or_version_is_not_found(control, artifact):
    for call, kwargs in (
        (control.create_agent_runtime_endpoint, {"name": "ep"}),
        (control.get_agent_runtime_endpoint, {"endpointName": "DEFAULT"}),
        (
            control.update_agent_runtime_endpoint,
            {"endpointName": "DEFAULT", "agentRuntimeVersion": "1"},
        ),
        (control.delete_agent_runtime_endpoint, {"endpointName": "ep"}),
    ):
        expect_error(
            call, "ResourceNotFoundException", 404, agentRuntimeId=UNKNOWN_RUNTIME, **kwargs
        )

    runtime_id = create_runtime(control, artifact)["agentRuntimeId"]
    for call, kwargs in (
        (control.get_agent_runtime_endpoint, {}),
        (control.update_agent_runtime_endpoint, {"agentRuntimeVersion": "1"}),
        (control.delete_agent_runtime_endpoint, {}),
    ):
        expect_error(
            call,
            "ResourceNotFoundException",
            404,
            agentRuntimeId=runtime_id,
            endpointName="nosuchendpoint",
            **kwargs,
        )

    # A version that does not exist is a missing resource too.
    expect_error(
        control.create_agent_runtime_endpoint,
        "ResourceNotFoundException",
        404,
        agentRuntimeId=runtime_id,
        name=unique_name("future"),
        agentRuntimeVersion="7",
    )
    name = unique_name("exists")
    control.create_agent_runtime_endpoint(
        agentRuntimeId=runtime_id, name=name, agentRuntimeVersion="1"
    )
    expect_error(
        control.update_agent_runtime_endpoint,
        "ResourceNotFoundException",
        404,
        agentRuntimeId=runtime_id,
        endpointName=name,
        agentRuntimeVersion="7",
    )


def test_list_endpoints_of_unknown_runtime_is_not_found(control):
    # Not among ListAgentRuntimeEndpoints' modelled errors, but GetAgentRuntime and
    # ListAgentRuntimeVersions answer ResourceNotFoundException for the same id; an empty
    # list would claim the runtime exists.
    expect_error(
        control.list_agent_runtime_endpoints,
        "ResourceNotFoundException",
        404,
        agentRuntimeId=UNKNOWN_RUNTIME,
    )


def test_delete_named_endpoint(control, artifact):
    runtime_id = create_runtime(control, artifact)["agentRuntimeId"]
    name = unique_name("gone")
    control.create_agent_runtime_endpoint(
        agentRuntimeId=runtime_id, name=name, agentRuntimeVersion="1"
    )
    deleted = control.delete_agent_runtime_endpoint(agentRuntimeId=runtime_id, endpointName=name)
    assert_status(deleted, 202)
    assert deleted["status"] == "DELETING"
    assert deleted.get("agentRuntimeId", runtime_id) == runtime_id
    assert deleted.get("endpointName", name) == name
    wait_not_found(control.get_agent_runtime_endpoint, agentRuntimeId=runtime_id, endpointName=name)
    assert [item["name"] for item in _endpoints(control, runtime_id)[1]] == ["DEFAULT"]
    # The runtime itself is untouched.
    assert control.get_agent_runtime(agentRuntimeId=runtime_id)["agentRuntimeVersion"] == "1"


def test_default_endpoint_cannot_be_deleted_alone(control, artifact):
    runtime_id = create_runtime(control, artifact)["agentRuntimeId"]
    expect_error(
        control.delete_agent_runtime_endpoint,
        "ConflictException",
        409,
        agentRuntimeId=runtime_id,
        endpointName="DEFAULT",
    )
    default = control.get_agent_runtime_endpoint(agentRuntimeId=runtime_id, endpointName="DEFAULT")
    assert default["status"] != "DELETING"


def test_runtime_with_named_endpoints_cannot_be_deleted(control, artifact):
    # Observed AWS behaviour: DeleteAgentRuntime answers ConflictException ("This agent has
    # endpoints that must be deleted first") while named endpoints exist; DEFAULT goes with
    # the runtime.
    runtime_id = create_runtime(control, artifact)["agentRuntimeId"]
    name = unique_name("blocker")
    control.create_agent_runtime_endpoint(
        agentRuntimeId=runtime_id, name=name, agentRuntimeVersion="1"
    )
    expect_error(control.delete_agent_runtime, "ConflictException", 409, agentRuntimeId=runtime_id)
    assert control.get_agent_runtime(agentRuntimeId=runtime_id)["status"] != "DELETING"

    control.delete_agent_runtime_endpoint(agentRuntimeId=runtime_id, endpointName=name)
    wait_not_found(control.get_agent_runtime_endpoint, agentRuntimeId=runtime_id, endpointName=name)
    assert_status(control.delete_agent_runtime(agentRuntimeId=runtime_id), 202)
    wait_not_found(control.get_agent_runtime, agentRuntimeId=runtime_id)
    expect_error(
        control.get_agent_runtime_endpoint,
        "ResourceNotFoundException",
        404,
        agentRuntimeId=runtime_id,
        endpointName="DEFAULT",
    )


def test_list_endpoints_pages_without_gaps_or_duplicates(control, artifact):
    runtime_id = create_runtime(control, artifact)["agentRuntimeId"]
    names = {unique_name("page") for _ in range(5)}
    for name in names:
        control.create_agent_runtime_endpoint(
            agentRuntimeId=runtime_id, name=name, agentRuntimeVersion="1"
        )

    pages, items = _endpoints(control, runtime_id, page_size=2)
    listed = [item["name"] for item in items]
    assert len(pages) >= 3, [len(page) for page in pages]
    assert len(listed) == len(set(listed)), listed
    assert set(listed) == names | {"DEFAULT"}

    paginated = [
        item["name"]
        for page in control.get_paginator("list_agent_runtime_endpoints").paginate(
            agentRuntimeId=runtime_id, PaginationConfig={"PageSize": 4}
        )
        for item in page["runtimeEndpoints"]
    ]
    assert sorted(paginated) == sorted(listed)


def test_create_endpoint_is_idempotent_with_client_token(control, artifact):
    runtime_id = create_runtime(control, artifact)["agentRuntimeId"]
    token = client_token()
    name = unique_name("idem")
    first = control.create_agent_runtime_endpoint(
        agentRuntimeId=runtime_id, name=name, agentRuntimeVersion="1", clientToken=token
    )
    second = control.create_agent_runtime_endpoint(
        agentRuntimeId=runtime_id, name=name, agentRuntimeVersion="1", clientToken=token
    )
    assert_status(second, 202)
    assert second["agentRuntimeEndpointArn"] == first["agentRuntimeEndpointArn"]
    assert second["createdAt"] == first["createdAt"]
    response = expect_error(
        control.create_agent_runtime_endpoint,
        "ValidationException",
        400,
        agentRuntimeId=runtime_id,
        name=name,
        agentRuntimeVersion="1",
        description="different",
        clientToken=token,
    )
    assert response.get("reason") == "IdempotentParameterMismatchException", response


@pytest.mark.parametrize(
    "name", ["1endpoint", "bad-name", "e" * 49, ""], ids=["digit", "dash", "49-chars", "empty"]
)
def test_endpoint_name_validation(control_unvalidated, control, artifact, name):
    runtime_id = create_runtime(control, artifact)["agentRuntimeId"]
    expect_validation(
        control_unvalidated.create_agent_runtime_endpoint,
        "name",
        agentRuntimeId=runtime_id,
        name=name,
    )


def test_endpoint_field_validation(control_unvalidated, control, artifact):
    runtime_id = create_runtime(control, artifact)["agentRuntimeId"]
    expect_validation(
        control_unvalidated.create_agent_runtime_endpoint,
        "description",
        agentRuntimeId=runtime_id,
        name=unique_name("long"),
        description="d" * 257,
    )
    expect_validation(
        control_unvalidated.create_agent_runtime_endpoint,
        "ersion",
        agentRuntimeId=runtime_id,
        name=unique_name("badver"),
        agentRuntimeVersion="v1",
    )
    expect_validation(
        control_unvalidated.update_agent_runtime_endpoint,
        "ersion",
        agentRuntimeId=runtime_id,
        endpointName="DEFAULT",
        agentRuntimeVersion="0",
    )
    for max_results in (0, 101):
        expect_validation(
            control_unvalidated.list_agent_runtime_endpoints,
            "maxResults",
            agentRuntimeId=runtime_id,
            maxResults=max_results,
        )
    # Nothing was created by the refused calls.
    assert [item["name"] for item in _endpoints(control, runtime_id)[1]] == ["DEFAULT"]
