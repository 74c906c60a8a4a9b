"""A test agent for traffic tests: says which version it is and fails a fixed share of calls.

Written only against the public SDK. Every answer carries ``label`` (the ``LABEL`` environment
variable, set differently on each runtime version so a test can tell versions apart) and
``counter`` (invocations this process has served).

``FAIL_PERCENT`` (default 30) makes the failures deterministic: invocation ``n`` of a process
(1-based) fails when ``((n - 1) * FAIL_PERCENT) % 100 < FAIL_PERCENT``, which spreads exactly
``FAIL_PERCENT`` failures over every 100 invocations and fails the first one (for 30: the 1st,
5th and 8th of every ten). A failure raises, so the SDK answers 500. ``FAIL_PERCENT=0`` never
fails.
"""

import os
import threading

from bedrock_agentcore.runtime import BedrockAgentCoreApp

app = BedrockAgentCoreApp()

LABEL = os.environ.get("LABEL", "unlabelled")
FAIL_PERCENT = int(os.environ.get("FAIL_PERCENT", "30"))
_lock = threading.Lock()
_counter = 0


class Failure(RuntimeError):
    """Raised on the invocations this agent is configured to fail."""


@app.entrypoint
def invoke(payload, context):
    """Answer with the version label, or fail on schedule."""
    global _counter
    with _lock:
        _counter += 1
        n = _counter
    if FAIL_PERCENT and ((n - 1) * FAIL_PERCENT) % 100 < FAIL_PERCENT:
        raise Failure(f"invocation {n} fails on schedule ({FAIL_PERCENT}%)")
    return {"label": LABEL, "counter": n, "sessionId": getattr(context, "session_id", None)}


if __name__ == "__main__":
    app.run()
