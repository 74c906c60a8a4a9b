"""Roles, policies and keys (issue 10 item 4) through a real server and real agents.

- one agent calling another with the credentials injected into its sandbox is refused until its
  role grants bedrock-agentcore:InvokeAgentRuntime on the callee, then streams the callee's
  answer through (SSE relayed event by event);
- the user id header needs InvokeAgentRuntimeForUser;
- a deleted runtime's credentials are dead;
- a CI access key made with `berth keys create` deploys and invokes within its policy, is
  refused (and audited) outside it, and dies when revoked;
- memory and artifact-store writes are in the audit log, whose hash chain stays intact.
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
    invoke,
    native,
    new_session_id,
    read_sse,
    unique_name,
    wait_not_found,
    zip_tree,
)
from pathlib import Path

AGENTS = Path(__file__).resolve().parent / "agents"
INVOKE = "bedrock-agentcore:InvokeAgentRuntime"


def role_arn(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/{name}"


def put_role(berth, name: str, statements: list) -> None:
    doc = {"Version": "2012-10-17", "Statement": statements}
    r = native(berth, "PUT", f"/berth/v1/roles/{name}", body=json.dumps({"policies": [doc]}).encode())
    assert r.status == 200, (r.status, r.body)


def deploy_caller(control, s3, role: str) -> dict:
    return deploy_agent(control, s3, zip_tree(AGENTS / "authz_caller"), name=unique_name("caller"),
                        roleArn=role_arn(role))


def relay(data, caller_arn: str, target_arn: str, **extra) -> list:
    payload = {"op": "relay", "target": target_arn,
               "payload": {"op": "stream", "count": 3, "interval": 0.05}, **extra}
    resp = invoke(data, caller_arn, new_session_id("relay"), payload)
    assert resp["statusCode"] == 200, resp
    return [event for _, event in read_sse(resp["response"])]


def audit(berth, **query) -> list:
    entries, after = [], 0
    while True:
        q = f"limit=1000&after={after}"
        r = native(berth, "GET", "/berth/v1/audit", query=q)
        assert r.status == 200, r.body
        page = json.loads(r.body)
        entries += page["entries"]
        if "nextSeq" not in page:
            return entries
        after = page["nextSeq"]


def assert_chain_intact(berth) -> None:
    r = native(berth, "GET", "/berth/v1/audit/verify")
    assert r.status == 200 and json.loads(r.body)["valid"] is True, r.body


def clients_for(berth, access_key: str, secret: str):
    session = boto3.session.Session(aws_access_key_id=access_key, aws_secret_access_key=secret,
                                    region_name=REGION)
    config = botocore.config.Config(retries={"total_max_attempts": 1}, read_timeout=60)
    s3_config = botocore.config.Config(retries={"total_max_attempts": 1},
                                       s3={"addressing_style": "path"})
    return (session.client("bedrock-agentcore-control", endpoint_url=berth.url, config=config),
            session.client("bedrock-agentcore", endpoint_url=berth.url, config=config),
            session.client("s3", endpoint_url=berth.url, config=s3_config))


def error_code(call, **kwargs) -> str:
    with pytest.raises(ClientError) as e:
        call(**kwargs)
    return e.value.response["Error"]["Code"]


@pytest.fixture(scope="module")
def callee(control, s3):
    """agents/probe (its `stream` op answers in SSE)."""
    from berth_harness import agent_zip

    return deploy_agent(control, s3, agent_zip("probe"), name=unique_name("callee"))


def test_cross_runtime_invoke_needs_a_grant_then_streams(berth, control, data, s3, callee):
    role = unique_name("relay")
    caller = deploy_caller(control, s3, role)
    # The role is unknown to Berth: the default role has no InvokeAgentRuntime at all.
    events = relay(data, caller["agentRuntimeArn"], callee["agentRuntimeArn"])
    assert [e.get("error") for e in events] == ["AccessDeniedException"], events
    assert INVOKE in events[0]["message"] and callee["agentRuntimeArn"] in events[0]["message"]

    # A grant on another runtime is not a grant on this one.
    put_role(berth, role, [{"Effect": "Allow", "Action": INVOKE,
                            "Resource": f"arn:aws:bedrock-agentcore:{REGION}:{ACCOUNT}:runtime/nothing-*"}])
    events = relay(data, caller["agentRuntimeArn"], callee["agentRuntimeArn"])
    assert [e.get("error") for e in events] == ["AccessDeniedException"], events

    put_role(berth, role, [{"Effect": "Allow", "Action": "bedrock-agentcore:Invoke*",
                            "Resource": callee["agentRuntimeArn"]}])
    events = relay(data, caller["agentRuntimeArn"], callee["agentRuntimeArn"])
    assert [e["relayed"]["index"] for e in events] == [0, 1, 2], events

    # An explicit deny beats the allow.
    put_role(berth, role, [
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Effect": "Deny", "Action": INVOKE, "Resource": callee["agentRuntimeArn"]},
    ])
    events = relay(data, caller["agentRuntimeArn"], callee["agentRuntimeArn"])
    assert [e.get("error") for e in events] == ["AccessDeniedException"], events
    assert "explicit deny" in events[0]["message"]

    denied = [e for e in audit(berth) if e["action"] == "AccessDenied"
              and e["resource"] == callee["agentRuntimeArn"]]
    assert len(denied) >= 3 and all(e["actor"].startswith("BKRT") for e in denied), denied
    assert denied[-1]["after"]["action"] == INVOKE
    assert_chain_intact(berth)


def test_user_id_needs_invoke_for_user(berth, control, data, s3, callee):
    role = unique_name("foruser")
    caller = deploy_caller(control, s3, role)
    put_role(berth, role, [{"Effect": "Allow", "Action": INVOKE, "Resource": callee["agentRuntimeArn"]}])
    events = relay(data, caller["agentRuntimeArn"], callee["agentRuntimeArn"], userId="alice")
    assert [e.get("error") for e in events] == ["AccessDeniedException"], events
    assert "InvokeAgentRuntimeForUser" in events[0]["message"]
    # Without the header the same grant suffices.
    events = relay(data, caller["agentRuntimeArn"], callee["agentRuntimeArn"])
    assert [e["relayed"]["index"] for e in events] == [0, 1, 2], events

    put_role(berth, role, [{"Effect": "Allow", "Action": [INVOKE, INVOKE + "ForUser"],
                            "Resource": callee["agentRuntimeArn"],
                            "Condition": {"StringLike": {"bedrock-agentcore:RuntimeUserId": "ali*"}}}])
    events = relay(data, caller["agentRuntimeArn"], callee["agentRuntimeArn"], userId="alice")
    assert [e["relayed"]["index"] for e in events] == [0, 1, 2], events
    events = relay(data, caller["agentRuntimeArn"], callee["agentRuntimeArn"], userId="mallory")
    assert [e.get("error") for e in events] == ["AccessDeniedException"], events

    # Root may set any user id.
    resp = invoke(data, callee["agentRuntimeArn"], new_session_id(), {"op": "whoami"},
                  runtimeUserId="alice")
    assert json.loads(resp["response"].read())["userId"] == "alice"


def test_a_deleted_runtimes_credentials_are_dead(berth, control, data, s3):
    caller = deploy_caller(control, s3, unique_name("doomed"))
    resp = invoke(data, caller["agentRuntimeArn"], new_session_id(), {"op": "creds"})
    creds = json.loads(resp["response"].read())
    assert creds["accessKeyId"].startswith("BKRT")
    _, agent_data, agent_s3 = clients_for(berth, creds["accessKeyId"], creds["secretAccessKey"])

    def stop_own():
        return agent_data.stop_runtime_session(agentRuntimeArn=caller["agentRuntimeArn"],
                                               runtimeSessionId=new_session_id())

    # Alive: the default role may stop its own sessions (there is none: not found, not denied).
    assert error_code(stop_own) == "ResourceNotFoundException"
    assert error_code(agent_s3.list_buckets) == "AccessDenied"

    control.delete_agent_runtime(agentRuntimeId=caller["agentRuntimeId"])
    wait_not_found(control.get_agent_runtime, agentRuntimeId=caller["agentRuntimeId"])
    assert error_code(stop_own) in ("UnrecognizedClientException", "AccessDeniedException")
    assert error_code(agent_s3.list_buckets) in ("InvalidAccessKeyId", "AccessDenied")


def berth_cli(berth, *args, env_extra=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
           "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY, **(env_extra or {})}
    return subprocess.run([str(berth_binary()), *args, "--endpoint-url", berth.url],
                          env=env, capture_output=True, text=True, timeout=60)


def test_ci_key_deploys_and_invokes_within_its_policy(berth, control, s3, tmp_path):
    bucket = unique_name("ci-code").replace("_", "-").lower()
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow",
         "Action": ["bedrock-agentcore:CreateAgentRuntime", "bedrock-agentcore:GetAgentRuntime",
                    "bedrock-agentcore:InvokeAgentRuntime"],
         "Resource": "*"},
        {"Effect": "Allow", "Action": ["s3:CreateBucket", "s3:PutObject"],
         "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]},
    ]}
    (tmp_path / "ci.json").write_text(json.dumps(policy))
    made = berth_cli(berth, "keys", "create", "--policy", str(tmp_path / "ci.json"), "--name", "ci")
    assert made.returncode == 0, made.stderr
    exports = dict(line.removeprefix("export ").split("=", 1)
                   for line in made.stdout.splitlines() if line.startswith("export "))
    key, secret = exports["AWS_ACCESS_KEY_ID"], exports["AWS_SECRET_ACCESS_KEY"]
    assert key.startswith("BKAK") and key != ACCESS_KEY_ID
    listed = berth_cli(berth, "keys", "list", "--json")
    assert listed.returncode == 0 and secret not in listed.stdout and key in listed.stdout

    ci_control, ci_data, ci_s3 = clients_for(berth, key, secret)
    ci_s3.create_bucket(Bucket=bucket)
    ci_s3.put_object(Bucket=bucket, Key="agent.zip", Body=zip_tree(AGENTS / "authz_caller"))
    from berth_harness import python_runtime, wait_status

    rt = ci_control.create_agent_runtime(
        agentRuntimeName=unique_name("ci"),
        agentRuntimeArtifact={"codeConfiguration": {
            "code": {"s3": {"bucket": bucket, "prefix": "agent.zip"}},
            "runtime": python_runtime(), "entryPoint": ["agent.py"]}},
        roleArn=role_arn("ci-agent"))
    wait_status(ci_control, rt["agentRuntimeId"])
    resp = ci_data.invoke_agent_runtime(agentRuntimeArn=rt["agentRuntimeArn"],
                                        runtimeSessionId=new_session_id(),
                                        payload=json.dumps({"op": "creds"}).encode())
    assert json.loads(resp["response"].read())["accessKeyId"].startswith("BKRT")

    # Outside the policy: refused, naming action and resource, and audited.
    e = pytest.raises(ClientError, ci_control.delete_agent_runtime, agentRuntimeId=rt["agentRuntimeId"])
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "bedrock-agentcore:DeleteAgentRuntime" in e.value.response["Error"]["Message"]
    assert rt["agentRuntimeArn"] in e.value.response["Error"]["Message"]
    assert error_code(ci_s3.put_object, Bucket="berth-conformance", Key="x", Body=b"x") == "AccessDenied"
    assert error_code(ci_s3.get_object, Bucket=bucket, Key="agent.zip") == "AccessDenied"
    # Deploying with a role Berth knows needs iam:PassRole on it (no escalation through a runtime).
    powerful = unique_name("powerful")
    put_role(berth, powerful, [{"Effect": "Allow", "Action": "*", "Resource": "*"}])
    e = pytest.raises(ClientError, ci_control.create_agent_runtime,
                      agentRuntimeName=unique_name("ci2"),
                      agentRuntimeArtifact={"codeConfiguration": {
                          "code": {"s3": {"bucket": bucket, "prefix": "agent.zip"}},
                          "runtime": python_runtime(), "entryPoint": ["agent.py"]}},
                      roleArn=role_arn(powerful))
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "iam:PassRole" in e.value.response["Error"]["Message"]
    r = native(berth, "GET", "/berth/v1/keys", access_key=key, secret_key=secret)
    assert r.status == 403 and r.error_type == "AccessDeniedException", r.body

    entries = [e for e in audit(berth) if e["actor"] == key]
    actions = [(e["action"], e.get("after", {}).get("action") if isinstance(e.get("after"), dict) else None)
               for e in entries]
    assert ("CreateBucket", None) in actions and ("PutObject", None) in actions, actions
    assert ("CreateAgentRuntime", None) in actions, actions
    assert ("AccessDenied", "bedrock-agentcore:DeleteAgentRuntime") in actions, actions
    assert ("AccessDenied", "s3:PutObject") in actions, actions
    assert_chain_intact(berth)

    revoked = berth_cli(berth, "keys", "revoke", key)
    assert revoked.returncode == 0, revoked.stderr
    assert error_code(ci_control.get_agent_runtime, agentRuntimeId=rt["agentRuntimeId"]) \
        == "UnrecognizedClientException"
    control.delete_agent_runtime(agentRuntimeId=rt["agentRuntimeId"])


def test_memory_and_artifact_writes_are_audited(berth, control, s3):
    memory = control.create_memory(name=unique_name("audited"), eventExpiryDuration=7)["memory"]
    bucket = unique_name("audited").replace("_", "-").lower()
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    s3.delete_object(Bucket=bucket, Key="k")
    s3.delete_bucket(Bucket=bucket)
    control.delete_memory(memoryId=memory["id"])
    entries = audit(berth)
    seen = {(e["action"], e["resource"]) for e in entries if e["actor"] == ACCESS_KEY_ID}
    mem_arn = f"arn:aws:bedrock-agentcore:{REGION}:{ACCOUNT}:memory/{memory['id']}"
    for want in [("CreateBucket", f"arn:aws:s3:::{bucket}"),
                 ("PutObject", f"arn:aws:s3:::{bucket}/k"),
                 ("DeleteObject", f"arn:aws:s3:::{bucket}/k"),
                 ("DeleteBucket", f"arn:aws:s3:::{bucket}"),
                 ("DeleteMemory", mem_arn)]:
        assert want in seen, want
    assert any(a == "CreateMemory" for a, _ in seen)
    assert_chain_intact(berth)
