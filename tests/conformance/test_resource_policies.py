"""Resource policies (issue 13 item 6): PutResourcePolicy / GetResourcePolicy /
DeleteResourcePolicy through boto3, enforced for principals other than root.

A second access key whose own policy does not allow invoking is denied; once the runtime's
resource policy names it, the invoke works; after DeleteResourcePolicy it is denied again.
Get returns the document as written; a document that is not JSON, or not a resource policy
Berth can evaluate, is a ValidationException; an explicit deny in the resource policy wins over
the key's own allow; the endpoint and memory forms work; every change is audited; deleting the
runtime deletes its policy.
"""

from __future__ import annotations

import json
import os
import subprocess

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError

from berth_harness import (
    ACCESS_KEY_ID,
    ACCOUNT,
    REGION,
    SECRET_ACCESS_KEY,
    berth_binary,
    deploy_agent,
    native,
    new_session_id,
    unique_name,
    wait_not_found,
)

INVOKE = "bedrock-agentcore:InvokeAgentRuntime"


def make_key(berth, tmp_path, statements: list) -> tuple[str, str]:
    (tmp_path / "key.json").write_text(json.dumps({"Version": "2012-10-17", "Statement": statements}))
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY}
    made = subprocess.run([str(berth_binary()), "keys", "create", "--policy", str(tmp_path / "key.json"),
                           "--name", unique_name("rp"), "--endpoint-url", berth.url],
                          env=env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    exports = dict(line.removeprefix("export ").split("=", 1)
                   for line in made.stdout.splitlines() if line.startswith("export "))
    return exports["AWS_ACCESS_KEY_ID"], exports["AWS_SECRET_ACCESS_KEY"]


def data_client(berth, key: str, secret: str):
    session = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret,
                                    region_name=REGION)
    return session.client("bedrock-agentcore", endpoint_url=berth.url,
                          config=botocore.config.Config(retries={"total_max_attempts": 1}))


def key_arn(key: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:user/berth-key/{key}"


def error_code(call, **kwargs) -> str:
    with pytest.raises(ClientError) as e:
        call(**kwargs)
    return e.value.response["Error"]["Code"]


def try_invoke(client, arn: str) -> dict:
    return client.invoke_agent_runtime(agentRuntimeArn=arn, runtimeSessionId=new_session_id("rp"),
                                       payload=json.dumps({"op": "whoami"}).encode())


def allow(principal: str, resource: str, action: str = INVOKE, effect: str = "Allow") -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "s", "Effect": effect, "Principal": {"AWS": principal}, "Action": action,
         "Resource": resource}]})


@pytest.fixture(scope="module")
def runtime(control, s3):
    return deploy_agent(control, s3, "probe", name=unique_name("rpol"))


def test_a_resource_policy_lets_a_second_key_invoke(berth, control, runtime, tmp_path):
    arn = runtime["agentRuntimeArn"]
    # The key may read runtimes but not invoke them.
    key, secret = make_key(berth, tmp_path, [
        {"Effect": "Allow", "Action": "bedrock-agentcore:GetAgentRuntime", "Resource": "*"}])
    other = data_client(berth, key, secret)
    assert error_code(try_invoke, client=other, arn=arn) == "AccessDeniedException"
    assert error_code(control.get_resource_policy, resourceArn=arn) == "ResourceNotFoundException"

    doc = allow(key_arn(key), arn)
    put = control.put_resource_policy(resourceArn=arn, policy=doc)
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert put["policy"] == doc
    assert control.get_resource_policy(resourceArn=arn)["policy"] == doc
    assert try_invoke(other, arn)["statusCode"] == 200

    deleted = control.delete_resource_policy(resourceArn=arn)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert error_code(try_invoke, client=other, arn=arn) == "AccessDeniedException"
    assert error_code(control.get_resource_policy, resourceArn=arn) == "ResourceNotFoundException"
    assert error_code(control.delete_resource_policy, resourceArn=arn) == "ResourceNotFoundException"

    # Audited, with the document before and after.
    r = native(berth, "GET", "/berth/v1/audit", query="limit=1000")
    entries = [e for e in json.loads(r.body)["entries"] if e["resource"] == arn
               and e["action"] in ("PutResourcePolicy", "DeleteResourcePolicy")]
    assert [e["action"] for e in entries][-2:] == ["PutResourcePolicy", "DeleteResourcePolicy"]
    assert entries[-1]["before"] == doc


def test_a_deny_in_the_resource_policy_wins_over_the_keys_allow(berth, control, runtime, tmp_path):
    arn = runtime["agentRuntimeArn"]
    key, secret = make_key(berth, tmp_path, [{"Effect": "Allow", "Action": INVOKE, "Resource": "*"}])
    other = data_client(berth, key, secret)
    assert try_invoke(other, arn)["statusCode"] == 200
    control.put_resource_policy(resourceArn=arn, policy=allow(key_arn(key), arn, effect="Deny"))
    try:
        assert error_code(try_invoke, client=other, arn=arn) == "AccessDeniedException"
        # Root is not subject to resource policies.
        assert control.get_agent_runtime(agentRuntimeId=runtime["agentRuntimeId"])
    finally:
        control.delete_resource_policy(resourceArn=arn)
    assert try_invoke(other, arn)["statusCode"] == 200


@pytest.mark.parametrize("policy", [
    "{not json",
    json.dumps({"Statement": [{"Effect": "Allow", "Action": INVOKE, "Resource": "*"}]}),
    json.dumps({"Statement": [{"Effect": "Allow", "Principal": {"Service": "x.amazonaws.com"},
                               "Action": INVOKE, "Resource": "*"}]}),
    json.dumps({"Statement": [{"Effect": "Maybe", "Principal": "*", "Action": INVOKE,
                               "Resource": "*"}]}),
])
def test_bad_documents_are_validation_errors(control, runtime, policy):
    assert error_code(control.put_resource_policy, resourceArn=runtime["agentRuntimeArn"],
                      policy=policy) == "ValidationException"


def test_unknown_resources_are_not_found_and_bad_arns_invalid(control):
    gone = f"arn:aws:bedrock-agentcore:{REGION}:{ACCOUNT}:runtime/gone-0123456789"
    assert error_code(control.put_resource_policy, resourceArn=gone,
                      policy=allow("*", gone)) == "ResourceNotFoundException"
    bad = f"arn:aws:bedrock-agentcore:{REGION}:{ACCOUNT}:gateway/g-0123456789"
    assert error_code(control.get_resource_policy, resourceArn=bad) == "ValidationException"


def test_endpoint_and_memory_policies(control, runtime):
    ep = control.get_agent_runtime_endpoint(agentRuntimeId=runtime["agentRuntimeId"],
                                            endpointName="DEFAULT")["agentRuntimeEndpointArn"]
    doc = allow("*", ep, action="bedrock-agentcore:GetAgentRuntimeEndpoint")
    control.put_resource_policy(resourceArn=ep, policy=doc)
    assert control.get_resource_policy(resourceArn=ep)["policy"] == doc
    control.delete_resource_policy(resourceArn=ep)

    memory = control.create_memory(name=unique_name("rpmem"), eventExpiryDuration=7)["memory"]
    doc = allow("*", memory["arn"], action="bedrock-agentcore:ListEvents")
    control.put_resource_policy(resourceArn=memory["arn"], policy=doc)
    assert control.get_resource_policy(resourceArn=memory["arn"])["policy"] == doc
    # Deleting the memory deletes its policy.
    control.delete_memory(memoryId=memory["id"])
    assert error_code(control.get_resource_policy,
                      resourceArn=memory["arn"]) == "ResourceNotFoundException"


def test_deleting_the_runtime_deletes_its_policy(control, s3):
    rt = deploy_agent(control, s3, "probe", name=unique_name("rpdel"))
    arn = rt["agentRuntimeArn"]
    control.put_resource_policy(resourceArn=arn, policy=allow("*", arn))
    control.delete_agent_runtime(agentRuntimeId=rt["agentRuntimeId"])
    wait_not_found(control.get_agent_runtime, agentRuntimeId=rt["agentRuntimeId"])
    assert error_code(control.get_resource_policy, resourceArn=arn) == "ResourceNotFoundException"
