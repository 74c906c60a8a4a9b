"""Starts an SDK agent bare, on the port in $PORT, for B4's baseline.

`python agent.py` would bind 127.0.0.1:8080 (the SDK ignores $PORT), which collides between samples
and with other services; this imports the agent's module exactly as `python agent.py` would run it
(the same imports, the same `BedrockAgentCoreApp`), then serves it on $PORT.

Usage: python sdk_bare.py AGENT_DIR
"""

import os
import sys

agent_dir = sys.argv[1]
sys.path.insert(0, agent_dir)
import agent  # noqa: E402  (the agent's directory must be on the path first)

agent.app.run(port=int(os.environ["PORT"]))
