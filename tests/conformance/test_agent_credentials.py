"""Credentials Berth injects into a sandbox: the data plane of the runtime's own memory works,
another memory and the control plane are refused, and the root credentials never enter."""

import json

from berth_harness import ACCESS_KEY_ID, REPO, python_runtime, unique_name, wait_status, zip_tree

BUCKET = "scoped-agents"


def test_injected_credentials_are_scoped_to_the_runtime(berth, control, data, s3):
    own = control.create_memory(name=unique_name("own"), eventExpiryDuration=7)["memory"]["id"]
    other = control.create_memory(name=unique_name("other"), eventExpiryDuration=7)["memory"]["id"]

    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="scoped.zip", Body=zip_tree(REPO / "tests/conformance/agents/scoped"))
    rt = control.create_agent_runtime(
        agentRuntimeName=unique_name("scoped"),
        agentRuntimeArtifact={"codeConfiguration": {
            "code": {"s3": {"bucket": BUCKET, "prefix": "scoped.zip"}},
            "runtime": python_runtime(), "entryPoint": ["agent.py"]}},
        roleArn="arn:aws:iam::000000000000:role/agent",
        environmentVariables={"BEDROCK_AGENTCORE_MEMORY_ID": own},
    )
    wait_status(control, rt["agentRuntimeId"])

    resp = data.invoke_agent_runtime(
        agentRuntimeArn=rt["agentRuntimeArn"],
        runtimeSessionId="scoped-session-0123456789012345678901",
        payload=json.dumps({"memoryId": own, "otherMemoryId": other}).encode(),
    )
    seen = json.loads(resp["response"].read())

    assert seen["own_memory"] == "ok", seen
    assert seen["other_memory"] == "AccessDeniedException", seen
    assert seen["control_plane"] == "AccessDeniedException", seen
    assert seen["access_key_id"].startswith("BKRT"), seen
    assert seen["access_key_id"] != ACCESS_KEY_ID, seen

    # The event the agent wrote is really there, under the actor it used.
    events = data.list_events(memoryId=own, actorId="actor-1", sessionId="session-1")["events"]
    assert len(events) == 1
