"""A Strands agent with a scripted local model, meant to run under ADOT
(``entryPoint = ["opentelemetry-instrument", "agent.py"]``) exactly as one would on AgentCore:
nothing here knows about tracing. Strands records its ``invoke_agent``, ``chat`` and
``execute_tool`` spans through the global tracer provider that ``opentelemetry-instrument``
installs, and ADOT exports them to wherever the environment says.

The model answers without any network: the first call of a turn asks for a tool (``add``, or
``broken`` when the prompt says "broken"), the second answers with text. Every call reports fixed
usage numbers, so a test knows exactly what the spans must add up to:

- tool call: 100 input tokens, 20 output tokens, 40 cache-read tokens
- answer: 150 input tokens, 10 output tokens, 0 cache tokens

Payload: ``{"prompt": "..."}``; answers ``{"answer": "..."}``. With ``SCRIPTED_FAILS=1`` in its
environment the model gives up instead of reading the tool's result ("I could not compute
that."): a version that answers quickly, without errors, and wrongly (the evaluation tests).
"""

import json
import os

from bedrock_agentcore.runtime import BedrockAgentCoreApp
from strands import Agent, tool
from strands.models.model import Model

MODEL_ID = "scripted-model-v1"

app = BedrockAgentCoreApp()


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@tool
def broken(a: int, b: int) -> int:
    """A tool that always fails."""
    raise RuntimeError("the broken tool broke")


class ScriptedModel(Model):
    """A model whose answers are fixed: a tool call, then a text answer."""

    def __init__(self):
        self.config = {"model_id": MODEL_ID}

    def update_config(self, **model_config):
        self.config.update(model_config)

    def get_config(self):
        return self.config

    async def structured_output(self, output_model, prompt, system_prompt=None, **kwargs):
        raise NotImplementedError("the scripted model has no structured output")
        yield  # pragma: no cover  (makes this an async generator)

    async def stream(self, messages, tool_specs=None, system_prompt=None, **kwargs):
        last = messages[-1]
        results = [b["toolResult"] for b in last["content"] if "toolResult" in b]
        yield {"messageStart": {"role": "assistant"}}
        if not results:
            prompt = " ".join(b.get("text", "") for b in last["content"])
            name = "broken" if "broken" in prompt else "add"
            yield {"contentBlockStart": {"start": {"toolUse": {"toolUseId": "call-1", "name": name}}}}
            yield {"contentBlockDelta": {"delta": {"toolUse": {"input": json.dumps({"a": 2, "b": 3})}}}}
            yield {"contentBlockStop": {}}
            yield {"messageStop": {"stopReason": "tool_use"}}
            usage = {"inputTokens": 100, "outputTokens": 20, "totalTokens": 120, "cacheReadInputTokens": 40}
        else:
            text = " ".join(c.get("text", json.dumps(c.get("json"))) for c in results[0]["content"])
            answer = "I could not compute that." if os.environ.get("SCRIPTED_FAILS") == "1" else f"the tool said {text}"
            yield {"contentBlockStart": {"start": {}}}
            yield {"contentBlockDelta": {"delta": {"text": answer}}}
            yield {"contentBlockStop": {}}
            yield {"messageStop": {"stopReason": "end_turn"}}
            usage = {"inputTokens": 150, "outputTokens": 10, "totalTokens": 160}
        yield {"metadata": {"usage": usage, "metrics": {"latencyMs": 1}}}


@app.entrypoint
def invoke(payload):
    agent = Agent(model=ScriptedModel(), tools=[add, broken], callback_handler=None, name="scripted")
    result = agent(payload.get("prompt", "add 2 and 3"))
    return {"answer": str(result).strip()}


if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", "8080")))
