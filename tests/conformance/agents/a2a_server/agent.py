"""An A2A agent for the conformance suite, served by the bedrock-agentcore SDK's A2A app
(`serve_a2a`, a2a-sdk 0.3) on the A2A contract's port (9000): JSON-RPC 2.0 at `/`, the agent
card at `/.well-known/agent-card.json` (advertising `AGENTCORE_RUNTIME_URL`), `GET /ping`.

It answers every message with ``echo: <text>``.
"""

from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.utils import new_agent_text_message
from bedrock_agentcore.runtime.a2a import serve_a2a


class Echo(AgentExecutor):
    """Echoes the user's text."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        await event_queue.enqueue_event(new_agent_text_message(f"echo: {context.get_user_input()}"))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise RuntimeError("cancel is not supported")


if __name__ == "__main__":
    serve_a2a(Echo(), host="0.0.0.0")
