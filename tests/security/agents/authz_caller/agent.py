"""An agent that calls another agent with the credentials Berth injected into its sandbox.

- ``{"op": "relay", "target": ARN, "payload": {...}, "userId"?: U}``: invokes ``target`` through
  the data plane exposed in the sandbox and relays its answer event by event (SSE), or one
  ``{"error": CODE, "message": ...}`` event when the call is refused.
- ``{"op": "creds"}``: reports the injected credentials (for the test that checks they die with
  the runtime).
"""

import json
import os
import uuid

import boto3
from botocore.config import Config
from bedrock_agentcore.runtime import BedrockAgentCoreApp

app = BedrockAgentCoreApp()


def _client():
    return boto3.client(
        "bedrock-agentcore",
        endpoint_url=os.environ["AWS_ENDPOINT_URL_BEDROCK_AGENTCORE"],
        region_name=os.environ["AWS_REGION"],
        config=Config(retries={"total_max_attempts": 1}, read_timeout=60),
    )


def _relay(payload):
    args = {
        "agentRuntimeArn": payload["target"],
        "runtimeSessionId": f"relay-{uuid.uuid4().hex}-{uuid.uuid4().hex[:8]}",
        "payload": json.dumps(payload.get("payload", {})).encode(),
    }
    if payload.get("userId"):
        args["runtimeUserId"] = payload["userId"]
    try:
        resp = _client().invoke_agent_runtime(**args)
    except Exception as e:  # the error code is what the test checks
        error = getattr(e, "response", {}).get("Error", {})
        yield {"error": error.get("Code", type(e).__name__), "message": error.get("Message", str(e))}
        return
    for line in resp["response"].iter_lines():
        line = line.decode() if isinstance(line, bytes) else line
        if line.startswith("data:"):
            yield {"relayed": json.loads(line[len("data:"):].strip())}


@app.entrypoint
def invoke(payload, context):
    op = payload.get("op")
    if op == "relay":
        return _relay(payload)
    if op == "creds":
        return {
            "accessKeyId": os.environ.get("AWS_ACCESS_KEY_ID"),
            "secretAccessKey": os.environ.get("AWS_SECRET_ACCESS_KEY"),
        }
    raise ValueError(f"unknown op {op!r}")


if __name__ == "__main__":
    app.run()
