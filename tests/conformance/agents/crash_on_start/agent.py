"""An agent that dies while starting, before it ever answers ``/ping``.

It builds its ``BedrockAgentCoreApp`` like any agent, then fails at import time, the way a
missing model key or a bad configuration usually surfaces. The marker in the message lets the
suite check that Berth's ``RuntimeClientError`` reason quotes the agent's own output.
"""

import sys

from bedrock_agentcore.runtime import BedrockAgentCoreApp

app = BedrockAgentCoreApp()

MARKER = "berth-conformance-crash-on-start"


@app.entrypoint
def invoke(payload):
    """Never reached: the module fails before the server starts."""
    return {"unreachable": True}


print(f"{MARKER}: refusing to start", file=sys.stderr, flush=True)
raise SystemExit(3)
