"""An agent that probes what the credentials Berth injects into its sandbox may do.

For a payload {"memoryId": M, "otherMemoryId": O} it reports, from inside the sandbox, the
outcome of: writing an event to M (its own memory, named in its environment), writing to O (not
its own), listing runtimes on the control plane, and which AWS variables it was given.
"""

import os
import time

import boto3
from bedrock_agentcore.runtime import BedrockAgentCoreApp

app = BedrockAgentCoreApp()


def outcome(call):
    try:
        call()
        return "ok"
    except Exception as e:  # the error code is what the test checks
        return getattr(e, "response", {}).get("Error", {}).get("Code", type(e).__name__)


@app.entrypoint
def invoke(payload, context):
    url = os.environ["AWS_ENDPOINT_URL_BEDROCK_AGENTCORE"]
    data = boto3.client("bedrock-agentcore", endpoint_url=url, region_name=os.environ["AWS_REGION"])
    control = boto3.client("bedrock-agentcore-control", endpoint_url=url, region_name=os.environ["AWS_REGION"])

    def event(memory_id):
        return lambda: data.create_event(
            memoryId=memory_id,
            actorId="actor-1",
            sessionId="session-1",
            eventTimestamp=time.time(),
            payload=[{"conversational": {"content": {"text": "hi"}, "role": "USER"}}],
        )

    return {
        "own_memory": outcome(event(payload["memoryId"])),
        "other_memory": outcome(event(payload["otherMemoryId"])),
        "control_plane": outcome(lambda: control.list_agent_runtimes()),
        "access_key_id": os.environ.get("AWS_ACCESS_KEY_ID"),
        "endpoint": url,
    }


if __name__ == "__main__":
    app.run()
