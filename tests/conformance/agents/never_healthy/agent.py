"""An agent that starts but never becomes healthy: it never opens its port.

It builds its ``BedrockAgentCoreApp`` like any agent and then, instead of ``app.run()``, waits
forever (as an agent stuck loading a model would), so ``/ping`` is never answered and Berth's
start timeout has to end it.
"""

import sys
import threading

from bedrock_agentcore.runtime import BedrockAgentCoreApp

app = BedrockAgentCoreApp()

MARKER = "berth-conformance-never-healthy"


@app.entrypoint
def invoke(payload):
    """Never reached: the server is never started."""
    return {"unreachable": True}


if __name__ == "__main__":
    print(f"{MARKER}: loading forever", file=sys.stderr, flush=True)
    threading.Event().wait()
