"""An agent that calls models through the providers' own SDKs and reports what it got.

It configures nothing: `anthropic.Anthropic()`, `openai.OpenAI()` and
`boto3.client("bedrock-runtime")` read `ANTHROPIC_BASE_URL`/`ANTHROPIC_API_KEY`,
`OPENAI_BASE_URL`/`OPENAI_API_KEY` and `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` (signing with the
runtime credentials `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`) from the environment Berth gives
the sandbox.

An invocation is ``{"sdk": "anthropic"|"openai"|"openai-embeddings"|"bedrock-converse"|
"bedrock-invoke", "model": ..., "stream": bool}``; the answer is ``{"text", "usage"}`` or
``{"error": "<exception class>: <message>"}``. ``{"sdk": "env"}`` answers with the gateway
variables' presence (not their values) and the key's prefix.
"""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def anthropic_call(model, stream):
    import anthropic

    client = anthropic.Anthropic()
    messages = [{"role": "user", "content": "say hello"}]
    if stream:
        with client.messages.stream(model=model, max_tokens=64, messages=messages) as s:
            text = "".join(s.text_stream)
            final = s.get_final_message()
        return {"text": text, "usage": {"input": final.usage.input_tokens, "output": final.usage.output_tokens}}
    m = client.messages.create(model=model, max_tokens=64, messages=messages)
    return {"text": m.content[0].text, "usage": {"input": m.usage.input_tokens, "output": m.usage.output_tokens}}


def openai_call(model, stream):
    import openai

    client = openai.OpenAI()
    messages = [{"role": "user", "content": "say hello"}]
    if stream:
        text, usage = "", None
        for chunk in client.chat.completions.create(model=model, messages=messages, stream=True):
            for c in chunk.choices:
                text += c.delta.content or ""
            if chunk.usage:
                usage = {"input": chunk.usage.prompt_tokens, "output": chunk.usage.completion_tokens}
        return {"text": text, "usage": usage}
    r = client.chat.completions.create(model=model, messages=messages)
    return {"text": r.choices[0].message.content, "usage": {"input": r.usage.prompt_tokens, "output": r.usage.completion_tokens}}


def openai_embeddings(model):
    import openai

    r = openai.OpenAI().embeddings.create(model=model, input="hello")
    return {"text": str(len(r.data[0].embedding)), "usage": {"input": r.usage.prompt_tokens}}


def bedrock_converse(model, stream):
    import boto3

    client = boto3.client("bedrock-runtime")
    messages = [{"role": "user", "content": [{"text": "say hello"}]}]
    if stream:
        text, usage = "", None
        for event in client.converse_stream(modelId=model, messages=messages)["stream"]:
            if "contentBlockDelta" in event:
                text += event["contentBlockDelta"]["delta"].get("text", "")
            if "metadata" in event:
                u = event["metadata"]["usage"]
                usage = {"input": u["inputTokens"], "output": u["outputTokens"]}
        return {"text": text, "usage": usage}
    r = client.converse(modelId=model, messages=messages)
    u = r["usage"]
    return {"text": r["output"]["message"]["content"][0]["text"], "usage": {"input": u["inputTokens"], "output": u["outputTokens"]}}


def bedrock_invoke(model):
    import boto3

    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64,
                       "messages": [{"role": "user", "content": "say hello"}]})
    r = boto3.client("bedrock-runtime").invoke_model(modelId=model, body=body)
    answer = json.loads(r["body"].read())
    return {"text": answer["content"][0]["text"], "usage": {"input": answer["usage"]["input_tokens"], "output": answer["usage"]["output_tokens"]}}


def handle(req):
    sdk, model, stream = req.get("sdk"), req.get("model", "m"), bool(req.get("stream"))
    if sdk == "env":
        names = ["ANTHROPIC_BASE_URL", "OPENAI_BASE_URL", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
                 "ANTHROPIC_API_KEY", "OPENAI_API_KEY", "AWS_ACCESS_KEY_ID"]
        return {"present": [n for n in names if os.environ.get(n)],
                "keyPrefix": os.environ.get("ANTHROPIC_API_KEY", "")[:9],
                "baseUrl": os.environ.get("ANTHROPIC_BASE_URL", "")}
    try:
        if sdk == "anthropic":
            return anthropic_call(model, stream)
        if sdk == "openai":
            return openai_call(model, stream)
        if sdk == "openai-embeddings":
            return openai_embeddings(model)
        if sdk == "bedrock-converse":
            return bedrock_converse(model, stream)
        if sdk == "bedrock-invoke":
            return bedrock_invoke(model)
        return {"error": f"unknown sdk {sdk!r}"}
    except Exception as e:  # the test wants to see the SDK's own error type
        return {"error": f"{type(e).__name__}: {e}"}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.reply({"status": "Healthy"})

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.reply(handle(json.loads(self.rfile.read(n) or b"{}")))


ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
