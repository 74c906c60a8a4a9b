"""A WebSocket echo agent for the conformance suite, written only against the public SDK
(`BedrockAgentCoreApp` with `@app.websocket`, served by the SDK on port 8080 at `/ws`).

- a text message comes back as it is, and so does a binary one;
- the text ``close:CODE`` makes the agent close the socket with that code and reason ``bye``;
- the close code of a client that closed is kept, and ``{"op": "last_close"}`` through
  InvokeAgentRuntime (the same session, so the same process) returns it; ``whoami`` returns
  the session id the agent saw on its last WebSocket.
"""

import os

from bedrock_agentcore.runtime import BedrockAgentCoreApp

app = BedrockAgentCoreApp()

SEEN = {"last_close": None, "ws_session": None}


@app.websocket
async def echo(websocket, context):
    await websocket.accept()
    SEEN["ws_session"] = context.session_id
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            SEEN["last_close"] = message.get("code")
            return
        text = message.get("text")
        if text is not None:
            if text.startswith("close:"):
                await websocket.close(code=int(text[len("close:"):]), reason="bye")
                return
            await websocket.send_text(text)
        elif message.get("bytes") is not None:
            await websocket.send_bytes(message["bytes"])


@app.entrypoint
def invoke(payload, context):
    if payload.get("op") == "last_close":
        return {"last_close": SEEN["last_close"]}
    return {"session": context.session_id, "ws_session": SEEN["ws_session"]}


if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", "8080")))
