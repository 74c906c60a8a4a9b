"""Memory's model providers configured through `berth serve` flags, against local doubles.

- Bedrock Converse: extraction through a double that checks the request shape and recomputes
  the SigV4 signature with botocore's own signer (service `bedrock`, the configured region, the
  session token); a 403 from Bedrock fails the job with Bedrock's message, and the job succeeds
  when re-run once the model answers.
- An OpenAI-compatible model whose API key comes from the variable `--memory-model-api-key-env`
  names, with an OpenAI-compatible embeddings API (`--embedding-api-url`) for retrieval.
- Invalid memory flags stop `berth serve` at start with one line naming the flag.

The harness strips `AWS_*` from the server's environment (a developer's real credentials must
never reach it), so the Bedrock server is started through a wrapper script that sets the test's
fake AWS credentials and execs the real binary.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from berth_harness import BerthServer, berth_binary, poll, unique_name
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
BEDROCK_REGION = "eu-central-1"
# Fake temporary credentials in the shapes of real ones.
AWS_KEY = "ASIABERTHTESTBEDROCK"
AWS_SECRET = "bedrockDoubleSecretKey/0123456789abcdefg"
AWS_TOKEN = "IQoJb3JpZ2luX2VjEBerthTestSessionToken//with+odd=chars"
MODEL_KEY = "sk-berth-test-model-key"
EMBEDDING_KEY = "sk-berth-test-embedding-key"

FACT = "The user drinks green tea every morning."


def extraction_answer(system: str, conversation: str) -> str:
    """What the doubles 'extract': the tea fact when the conversation mentions tea."""
    if "summar" in system.lower():
        return json.dumps({"memories": [f"Summary: {conversation[:60]}"]})
    return json.dumps({"memories": [FACT] if "tea" in conversation.lower() else []})


def botocore_signature(method: str, path: str, headers: dict, body: bytes) -> tuple[str, str]:
    """(signature in the request, signature botocore computes for it) for service `bedrock`."""
    lower = {k.lower(): v for k, v in headers.items()}
    auth = lower["authorization"]
    signed = re.search(r"SignedHeaders=([^,\s]+)", auth).group(1).split(";")
    claimed = re.search(r"Signature=([0-9a-f]+)", auth).group(1)
    request = AWSRequest(
        method=method,
        url=f"http://{lower['host']}{path}",
        data=body,
        headers={name: lower[name] for name in signed},
    )
    request.context["timestamp"] = lower["x-amz-date"]
    signer = SigV4Auth(Credentials(AWS_KEY, AWS_SECRET, AWS_TOKEN), "bedrock", BEDROCK_REGION)
    canonical = signer.canonical_request(request)
    return claimed, signer.signature(signer.string_to_sign(request, canonical), request)


class ModelDouble(BaseHTTPRequestHandler):
    """Bedrock Runtime Converse, OpenAI chat completions and OpenAI embeddings, recorded."""

    requests: list[dict] = []
    #: `(status, error type, message)` Converse answers with instead of a completion.
    converse_error: tuple[int, str, str] | None = None

    def do_POST(self):  # noqa: N802 (http.server naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        headers = {k.lower(): v for k, v in self.headers.items()}
        seen = {"path": self.path, "headers": headers, "body": json.loads(body)}
        if self.path.endswith("/converse") and "authorization" in headers:
            seen["signature"] = botocore_signature("POST", self.path, headers, body)
        ModelDouble.requests.append(seen)
        req = seen["body"]
        if self.path.endswith("/converse"):
            if ModelDouble.converse_error:
                status, kind, message = ModelDouble.converse_error
                return self.answer(
                    status,
                    {"message": message},
                    {"x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"},
                )
            text = extraction_answer(req["system"][0]["text"], req["messages"][0]["content"][0]["text"])
            return self.answer(
                200,
                {
                    "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                    "stopReason": "end_turn",
                    "usage": {"inputTokens": 10, "outputTokens": 10, "totalTokens": 20},
                    "metrics": {"latencyMs": 5},
                },
            )
        if self.path == "/v1/chat/completions":
            text = extraction_answer(req["messages"][0]["content"], req["messages"][1]["content"])
            return self.answer(200, {"choices": [{"message": {"role": "assistant", "content": text}}]})
        if self.path == "/v1/embeddings":
            data = [
                {"object": "embedding", "index": i, "embedding": bag_of_words(text)}
                for i, text in enumerate(req["input"])
            ]
            return self.answer(200, {"object": "list", "data": data, "model": req["model"]})
        return self.answer(404, {"message": f"no route {self.path}"})

    def answer(self, status: int, body: dict, headers: dict | None = None):
        out = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def bag_of_words(text: str, dims: int = 64) -> list[float]:
    """A deterministic vector: word hashes into buckets (the server normalises it)."""
    v = [0.0] * dims
    for word in re.findall(r"[a-z]+", text.lower()):
        v[int(hashlib.sha256(word.encode()).hexdigest(), 16) % dims] += 1.0
    v[0] += 0.01  # never all zero
    return v


@pytest.fixture(scope="module")
def model_double():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ModelDouble)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def fresh_double():
    ModelDouble.requests = []
    ModelDouble.converse_error = None


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Factory: `servers(name, args, env)` starts a server whose environment also has `env`
    (through a wrapper script, since the harness drops `AWS_*`); all stopped at module end."""
    started: list[BerthServer] = []

    def start(name: str, args: list[str], env: dict[str, str]) -> BerthServer:
        root = tmp_path_factory.mktemp(f"berth-{name}")
        wrapper = root / "berth-with-env"
        exports = "".join(f"export {k}='{v}'\n" for k, v in env.items())
        wrapper.write_text(f"#!/bin/sh\n{exports}exec '{berth_binary()}' \"$@\"\n")
        wrapper.chmod(0o755)
        server = BerthServer(root / "data", root / "berth.log", binary=wrapper, args=args)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()
        server.reap_group()


@pytest.fixture(scope="module")
def bedrock_server(servers, model_double):
    return servers(
        "bedrock",
        [
            "--memory-model-provider", "bedrock-converse",
            "--memory-model-url", model_double,
            "--memory-model", MODEL_ID,
            "--memory-model-region", BEDROCK_REGION,
            "--memory-extraction-delay-ms", "300",
            "--embedding-model", "none",
        ],
        {"AWS_ACCESS_KEY_ID": AWS_KEY, "AWS_SECRET_ACCESS_KEY": AWS_SECRET, "AWS_SESSION_TOKEN": AWS_TOKEN},
    )


def conv(text: str, role: str = "USER") -> dict:
    return {"conversational": {"content": {"text": text}, "role": role}}


def new_memory(server: BerthServer) -> tuple[dict, str]:
    """An ACTIVE memory with one semantic strategy; returns it and the strategy id."""
    control = server.client("bedrock-agentcore-control")
    m = control.create_memory(
        name=unique_name("prov"),
        eventExpiryDuration=30,
        memoryStrategies=[{"semanticMemoryStrategy": {"name": "facts"}}],
    )["memory"]
    poll(
        lambda: control.get_memory(memoryId=m["id"])["memory"]["status"],
        lambda s: s == "ACTIVE",
        timeout=30,
        what="memory to be ACTIVE",
    )
    return m, m["strategies"][0]["strategyId"]


def say(data, memory_id: str, *texts: str, session: str = "s1") -> None:
    data.create_event(
        memoryId=memory_id,
        actorId="u1",
        sessionId=session,
        eventTimestamp=dt.datetime.now(dt.timezone.utc),
        payload=[conv(t) for t in texts],
    )


def jobs_in(data, memory_id: str, status: str) -> list[dict]:
    # The API filters on FAILED only; other statuses are picked out here.
    jobs = data.list_memory_extraction_jobs(memoryId=memory_id)["jobs"]
    return [j for j in jobs if j["status"] == status]


def test_converse_extraction_is_signed_for_bedrock(bedrock_server):
    data = bedrock_server.client("bedrock-agentcore")
    m, strategy = new_memory(bedrock_server)
    say(data, m["id"], "Every morning I have a cup of green tea.")
    namespace = f"/strategies/{strategy}/actors/u1/"
    records = poll(
        lambda: data.list_memory_records(memoryId=m["id"], namespace=namespace)["memoryRecordSummaries"],
        lambda r: len(r) == 1,
        timeout=30,
        what="the extracted fact",
    )
    assert records[0]["content"]["text"] == FACT
    assert jobs_in(data, m["id"], "SUCCEEDED")

    converse = [r for r in ModelDouble.requests if r["path"].endswith("/converse")]
    assert converse, ModelDouble.requests
    for r in converse:
        # The model id is one path segment, percent-encoded as botocore encodes it.
        assert r["path"] == "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
        body = r["body"]
        assert set(body) == {"messages", "system", "inferenceConfig"}
        assert body["messages"][0]["role"] == "user"
        assert [set(block) for block in body["messages"][0]["content"]] == [{"text"}]
        assert body["system"][0]["text"]
        assert body["inferenceConfig"]["maxTokens"] > 0
        auth = r["headers"]["authorization"]
        assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={AWS_KEY}/"), auth
        assert f"/{BEDROCK_REGION}/bedrock/aws4_request" in auth
        assert r["headers"]["x-amz-security-token"] == AWS_TOKEN
        assert "x-amz-security-token" in auth
        claimed, computed = r["signature"]
        assert claimed == computed, "botocore computes another signature for this request"
    log = bedrock_server.log_path.read_text()
    assert AWS_SECRET not in log and AWS_TOKEN not in log
    assert any("green tea" in r["body"]["messages"][0]["content"][0]["text"] for r in converse)


def test_bedrock_errors_fail_the_job_with_bedrocks_message(bedrock_server):
    data = bedrock_server.client("bedrock-agentcore")
    m, strategy = new_memory(bedrock_server)
    ModelDouble.converse_error = (
        403,
        "AccessDeniedException",
        "You don't have access to the model with the specified model ID.",
    )
    say(data, m["id"], "I like green tea.", session="denied")
    [job] = poll(
        lambda: jobs_in(data, m["id"], "FAILED"),
        lambda j: len(j) == 1,
        timeout=30,
        what="the extraction job to fail",
    )
    reason = job["failureReason"]
    assert "403" in reason and "AccessDeniedException" in reason, reason
    assert "You don't have access to the model with the specified model ID." in reason

    # Once Bedrock answers, re-running the job extracts the fact.
    ModelDouble.converse_error = None
    data.start_memory_extraction_job(memoryId=m["id"], extractionJob={"jobId": job["jobID"]})
    poll(
        lambda: jobs_in(data, m["id"], "SUCCEEDED"),
        lambda j: [x["jobID"] for x in j] == [job["jobID"]],
        timeout=30,
        what="the re-run job to succeed",
    )
    records = data.list_memory_records(
        memoryId=m["id"], namespace=f"/strategies/{strategy}/actors/u1/"
    )["memoryRecordSummaries"]
    assert [r["content"]["text"] for r in records] == [FACT]


def test_openai_key_from_a_named_variable_and_an_embeddings_api(servers, model_double):
    server = servers(
        "openai",
        [
            "--memory-model-provider", "openai",
            "--memory-model-url", f"{model_double}/v1",
            "--memory-model", "double-chat",
            "--memory-model-api-key-env", "BERTH_TEST_MODEL_KEY",
            "--embedding-api-url", f"{model_double}/v1",
            "--embedding-api-model", "double-embed",
            "--embedding-api-key-env", "BERTH_TEST_EMBEDDING_KEY",
            "--memory-extraction-delay-ms", "300",
        ],
        {"BERTH_TEST_MODEL_KEY": MODEL_KEY, "BERTH_TEST_EMBEDDING_KEY": EMBEDDING_KEY},
    )
    data = server.client("bedrock-agentcore")
    m, strategy = new_memory(server)
    say(data, m["id"], "Every morning I have a cup of green tea.")
    namespace = f"/strategies/{strategy}/actors/u1/"
    poll(
        lambda: data.list_memory_records(memoryId=m["id"], namespace=namespace)["memoryRecordSummaries"],
        lambda r: len(r) == 1,
        timeout=30,
        what="the extracted fact",
    )
    hits = data.retrieve_memory_records(
        memoryId=m["id"], namespace=namespace, searchCriteria={"searchQuery": "morning tea", "topK": 1}
    )["memoryRecordSummaries"]
    assert [h["content"]["text"] for h in hits] == [FACT]

    chat = [r for r in ModelDouble.requests if r["path"] == "/v1/chat/completions"]
    embed = [r for r in ModelDouble.requests if r["path"] == "/v1/embeddings"]
    assert chat and all(r["headers"]["authorization"] == f"Bearer {MODEL_KEY}" for r in chat)
    assert all(r["body"]["model"] == "double-chat" for r in chat)
    assert embed and all(r["headers"]["authorization"] == f"Bearer {EMBEDDING_KEY}" for r in embed)
    assert all(r["body"]["model"] == "double-embed" for r in embed)
    embedded = [text for r in embed for text in r["body"]["input"]]
    # The record was embedded when written, the query when retrieving.
    assert FACT in embedded and "morning tea" in embedded
    # Secrets never reach the server's log.
    log = server.log_path.read_text()
    assert MODEL_KEY not in log and EMBEDDING_KEY not in log


NO_EMBEDDER = ["--embedding-model", "none"]


@pytest.mark.parametrize(
    "args, flag",
    [
        ([*NO_EMBEDDER, "--memory-model-provider", "bogus", "--memory-model", "m"], "--memory-model-provider"),
        ([*NO_EMBEDDER, "--memory-model-provider", "anthropic"], "--memory-model ("),
        ([*NO_EMBEDDER, "--memory-model", "m"], "--memory-model-provider"),
        (
            [*NO_EMBEDDER, "--memory-model-provider", "openai", "--memory-model", "m",
             "--memory-model-api-key-env", "BERTH_TEST_UNSET_VARIABLE"],
            "--memory-model-api-key-env",
        ),
        (["--embedding-api-url", "http://127.0.0.1:9/v1"], "--embedding-api-model"),
        ([*NO_EMBEDDER, "--embedding-api-url", "http://127.0.0.1:9/v1", "--embedding-api-model", "e"],
         "--embedding-api-url"),
    ],
)
def test_invalid_memory_flags_stop_the_start_with_one_line(tmp_path: Path, args, flag):
    proc = subprocess.run(
        [
            str(berth_binary()), "serve",
            "--listen", "127.0.0.1:0",
            "--data-dir", str(tmp_path / "data"),
            *args,
        ],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "listening" not in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and flag in lines[0], proc.stderr
    # Nothing was created: the settings are checked before the data dir is touched.
    assert not (tmp_path / "data").exists()
