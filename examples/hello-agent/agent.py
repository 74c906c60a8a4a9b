"""A model-free AgentCore agent that exercises the runtime contract.

It is written only against the public SDK (`bedrock_agentcore.runtime`), so the same file runs
on AWS AgentCore Runtime and on Berth. Payloads (JSON objects):

- ``{"prompt": "hello world"}`` -> ``{"result": "hello world"}`` as ``application/json``
- ``{"prompt": "a b c", "stream": true}`` -> ``text/event-stream``, one SSE event per word
- ``{"fail": true}`` -> the entrypoint raises, so the SDK answers 500 ``{"error": ...}``;
  with ``"stream": true`` as well it raises after the first event, so the stream ends with
  the SDK's error event
- ``{"sleep": 2}`` -> stays busy for 2 seconds (``/ping`` reports ``HealthyBusy``), then answers
"""

import asyncio
import os

from bedrock_agentcore.runtime import BedrockAgentCoreApp

app = BedrockAgentCoreApp()

# The pause between streamed events is part of what this agent demonstrates: events must
# reach the caller one by one as they are produced, not buffered until the stream ends.
STREAM_EVENT_INTERVAL_SECONDS = 0.2


class AgentFailure(RuntimeError):
    """Raised on purpose when the payload asks the agent to fail."""


async def stream_words(words, session_id, fail):
    """Yield one event per word, then a final event; raise mid-stream if asked to."""
    for index, word in enumerate(words):
        yield {"index": index, "word": word}
        if fail:
            raise AgentFailure("failing mid-stream as requested")
        await asyncio.sleep(STREAM_EVENT_INTERVAL_SECONDS)
    yield {"done": True, "count": len(words), "sessionId": session_id}


@app.entrypoint
async def invoke(payload, context):
    """Answer one invocation; see the module docstring for the payload contract."""
    if not isinstance(payload, dict):
        raise AgentFailure("payload must be a JSON object")

    prompt = str(payload.get("prompt", ""))
    fail = bool(payload.get("fail", False))
    session_id = getattr(context, "session_id", None)

    if payload.get("stream"):
        return stream_words(prompt.split() or [prompt], session_id, fail)

    if fail:
        raise AgentFailure("failing as requested")

    sleep_seconds = float(payload.get("sleep", 0) or 0)
    if sleep_seconds > 0:
        # Registering the work as a task makes /ping report HealthyBusy while it runs,
        # which is how an agent tells the platform not to reap an idle-looking session.
        task_id = app.add_async_task("sleep", {"seconds": sleep_seconds})
        try:
            await asyncio.sleep(sleep_seconds)
        finally:
            app.complete_async_task(task_id)

    return {
        "result": prompt,
        "sessionId": session_id,
        "pid": os.getpid(),
        "greeting": os.environ.get("GREETING"),
    }


if __name__ == "__main__":
    # AgentCore and Berth's namespace sandboxes expect 8080; Berth's process isolation (a server
    # run by a normal user) shares the host network and hands each agent its own port in PORT.
    app.run(port=int(os.environ.get("PORT", "8080")))
