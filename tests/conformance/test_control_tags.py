"""TagResource / UntagResource / ListTagsForResource on runtimes and endpoints."""

from __future__ import annotations

import pytest
from berth_harness import (
    ACCOUNT,
    REGION,
    assert_status,
    create_runtime,
    endpoint_arn,
    expect_error,
    expect_validation,
    unique_name,
    update_args,
    wait_not_found,
)

UNKNOWN_ARN = f"arn:aws:bedrock-agentcore:{REGION}:{ACCOUNT}:runtime/nosuchruntime-abcdefghij"


def _tags(control, arn):
    resp = control.list_tags_for_resource(resourceArn=arn)
    assert_status(resp, 200)
    return resp.get("tags", {})


def test_tags_given_at_create_are_listed(control, artifact):
    created = create_runtime(control, artifact, tags={"team": "berth", "env": "test"})
    assert _tags(control, created["agentRuntimeArn"]) == {"team": "berth", "env": "test"}


def test_runtime_without_tags_lists_none(control, artifact):
    created = create_runtime(control, artifact)
    assert _tags(control, created["agentRuntimeArn"]) == {}


def test_tag_untag_round_trip(control, artifact):
    arn = create_runtime(control, artifact, tags={"keep": "1", "change": "old"})["agentRuntimeArn"]

    resp = control.tag_resource(resourceArn=arn, tags={"change": "new", "added": "x y:z/=+-@._"})
    assert_status(resp, 204)
    assert _tags(control, arn) == {"keep": "1", "change": "new", "added": "x y:z/=+-@._"}

    resp = control.untag_resource(resourceArn=arn, tagKeys=["change", "added"])
    assert_status(resp, 204)
    assert _tags(control, arn) == {"keep": "1"}

    # Removing a key that is not there is not an error.
    resp = control.untag_resource(resourceArn=arn, tagKeys=["never-set"])
    assert_status(resp, 204)
    assert _tags(control, arn) == {"keep": "1"}


def test_tags_survive_runtime_updates(control, artifact):
    created = create_runtime(control, artifact, tags={"owner": "me"})
    control.update_agent_runtime(agentRuntimeId=created["agentRuntimeId"], **update_args(artifact))
    assert _tags(control, created["agentRuntimeArn"]) == {"owner": "me"}


def test_endpoint_tags(control, artifact):
    runtime = create_runtime(control, artifact, tags={"level": "runtime"})
    runtime_id = runtime["agentRuntimeId"]
    name = unique_name("tagged")
    made = control.create_agent_runtime_endpoint(
        agentRuntimeId=runtime_id, name=name, agentRuntimeVersion="1", tags={"level": "endpoint"}
    )
    arn = made["agentRuntimeEndpointArn"]
    assert arn == endpoint_arn(runtime_id, name)
    assert _tags(control, arn) == {"level": "endpoint"}

    assert_status(control.tag_resource(resourceArn=arn, tags={"extra": "yes"}), 204)
    assert _tags(control, arn) == {"level": "endpoint", "extra": "yes"}
    # Endpoint and runtime tags are separate.
    assert _tags(control, runtime["agentRuntimeArn"]) == {"level": "runtime"}

    default_arn = endpoint_arn(runtime_id, "DEFAULT")
    assert_status(control.tag_resource(resourceArn=default_arn, tags={"d": "1"}), 204)
    assert _tags(control, default_arn) == {"d": "1"}


def test_unknown_resource_is_not_found(control, artifact):
    expect_error(
        control.list_tags_for_resource, "ResourceNotFoundException", 404, resourceArn=UNKNOWN_ARN
    )
    expect_error(
        control.tag_resource,
        "ResourceNotFoundException",
        404,
        resourceArn=UNKNOWN_ARN,
        tags={"a": "b"},
    )
    expect_error(
        control.untag_resource,
        "ResourceNotFoundException",
        404,
        resourceArn=UNKNOWN_ARN,
        tagKeys=["a"],
    )
    runtime_id = create_runtime(control, artifact)["agentRuntimeId"]
    expect_error(
        control.list_tags_for_resource,
        "ResourceNotFoundException",
        404,
        resourceArn=endpoint_arn(runtime_id, "nosuchendpoint"),
    )


def test_tags_of_a_deleted_runtime_are_gone(control, artifact):
    created = create_runtime(control, artifact, tags={"a": "b"})
    control.delete_agent_runtime(agentRuntimeId=created["agentRuntimeId"])
    wait_not_found(control.get_agent_runtime, agentRuntimeId=created["agentRuntimeId"])
    expect_error(
        control.list_tags_for_resource,
        "ResourceNotFoundException",
        404,
        resourceArn=created["agentRuntimeArn"],
    )


@pytest.mark.parametrize(
    "arn",
    [
        "not-an-arn-at-all-but-long-enough",
        f"arn:aws:s3:{REGION}:{ACCOUNT}:bucket/whatever",
        f"arn:aws:bedrock-agentcore:{REGION}:123:runtime/x-abcdefghij",
        "arn:aws:bedrock",
    ],
    ids=["not-arn", "other-service", "short-account", "too-short"],
)
def test_malformed_arn_is_rejected(control_unvalidated, arn):
    expect_validation(control_unvalidated.list_tags_for_resource, "resourceArn", resourceArn=arn)
    expect_validation(
        control_unvalidated.tag_resource, "resourceArn", resourceArn=arn, tags={"a": "b"}
    )


@pytest.mark.parametrize(
    "tags",
    [
        {"bad!key": "v"},
        {"": "v"},
        {"k" * 129: "v"},
        {"k": "v" * 257},
        {"k": "bad*value"},
        {f"k{i}": "v" for i in range(51)},
    ],
    ids=["key-pattern", "key-empty", "key-129", "value-257", "value-pattern", "51-tags"],
)
def test_tag_validation(control_unvalidated, control, artifact, tags):
    arn = create_runtime(control, artifact, tags={"before": "1"})["agentRuntimeArn"]
    expect_validation(control_unvalidated.tag_resource, "tags", resourceArn=arn, tags=tags)
    assert _tags(control, arn) == {"before": "1"}, "a refused TagResource changed the tags"


def test_tag_resource_requires_tags(control_unvalidated, control, artifact):
    arn = create_runtime(control, artifact)["agentRuntimeArn"]
    expect_validation(control_unvalidated.tag_resource, "tags", resourceArn=arn)


def test_more_than_50_tags_in_total_is_refused(control, artifact):
    arn = create_runtime(control, artifact, tags={f"k{i}": "v" for i in range(50)})[
        "agentRuntimeArn"
    ]
    with pytest.raises(control.exceptions.ClientError) as info:
        control.tag_resource(resourceArn=arn, tags={"one-too-many": "v"})
    # The model allows either answer for a per-resource limit.
    assert info.value.response["Error"]["Code"] in {
        "ValidationException",
        "ServiceQuotaExceededException",
    }
    assert len(_tags(control, arn)) == 50
    # Overwriting an existing key stays within the limit.
    assert_status(control.tag_resource(resourceArn=arn, tags={"k0": "changed"}), 204)
    assert _tags(control, arn)["k0"] == "changed"
