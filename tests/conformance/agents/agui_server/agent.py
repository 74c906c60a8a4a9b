"""An AG-UI agent for the conformance suite, served by the bedrock-agentcore SDK's `AGUIApp`
(ag-ui-protocol 0.1) on the AG-UI defaults (port 8080, `POST /invocations`, `GET /ping`): it
streams a run that echoes the last user message as AG-UI events over SSE.
"""

import os

from ag_ui.core import (
    EventType,
    RunAgentInput,
    RunFinishedEvent,
    RunStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
)
from bedrock_agentcore.runtime.ag_ui import AGUIApp

app = AGUIApp()


@app.entrypoint
async def run(run_input: RunAgentInput):
    text = run_input.messages[-1].content if run_input.messages else ""
    yield RunStartedEvent(type=EventType.RUN_STARTED, thread_id=run_input.thread_id,
                          run_id=run_input.run_id)
    yield TextMessageStartEvent(type=EventType.TEXT_MESSAGE_START, message_id="answer",
                                role="assistant")
    for part in ("echo: ", text):
        yield TextMessageContentEvent(type=EventType.TEXT_MESSAGE_CONTENT, message_id="answer",
                                      delta=part)
    yield TextMessageEndEvent(type=EventType.TEXT_MESSAGE_END, message_id="answer")
    yield RunFinishedEvent(type=EventType.RUN_FINISHED, thread_id=run_input.thread_id,
                           run_id=run_input.run_id)


if __name__ == "__main__":
    # PORT: process isolation hands each agent its own host port (8080 in namespace sandboxes).
    app.run(port=int(os.environ.get("PORT", "8080")))
