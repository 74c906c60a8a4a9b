"""Acceptance (issue 16, 1 and 4): agents written with the Anthropic SDK, the OpenAI SDK and boto3
`bedrock-runtime` (streaming and not), configured with nothing, call a local model provider
double (model_double.py) through Berth's model gateway. The double sees the pooled upstream
credentials (Berth secrets), never the sandbox's key; tokens and cost per version and actor
appear in `GET /berth/v1/usage` and in Prometheus; the gateway refuses any other key in the
API's own error shape.

The agent (agents/model_client) is built by Berth from its pinned requirements, like any
user's agent.
"""

import json
from datetime import datetime, timezone
from urllib.parse import quote

import pytest

from berth_harness import (
    BUILD_TIMEOUT,
    deploy_agent,
    invoke_json,
    native,
    new_session_id,
    poll,
    raw_request,
    run_cli,
)
from model_double import INPUT_TOKENS, OUTPUT_TOKENS, ModelDouble

pytestmark = pytest.mark.build

ANTHROPIC_KEY = "sk-ant-pooled-0001"
OPENAI_KEY = "sk-openai-pooled-0001"
BEDROCK_KEY_ID = "AKIAGATEWAYDOUBLE001"
BEDROCK_CREDENTIAL = f"{BEDROCK_KEY_ID}:double-secret"
#: USD per million tokens (input/output) of the priced model.
PRICED = "claude-priced"
PRICE = (3.0, 15.0)
EXTRACTION_MODEL = "extraction-double"
FACT = "The user drinks green tea every morning."


@pytest.fixture(scope="module")
def double():
    d = ModelDouble({ANTHROPIC_KEY, OPENAI_KEY, BEDROCK_KEY_ID})

    def answer(body):
        if body["model"] != EXTRACTION_MODEL:
            return f"hello from {body['model']}"
        said = json.dumps(body["messages"]).lower()
        return json.dumps({"memories": [FACT] if "tea" in said else []})

    d.answer = answer
    yield d
    d.close()


@pytest.fixture(scope="module")
def server(module_server, double, tmp_path_factory):
    cfg = tmp_path_factory.mktemp("gateway") / "gateway.toml"
    cfg.write_text(
        f"""
[[upstreams]]
name = "anthropic"
protocol = "anthropic"
url = "{double.url}"
models = ["claude-*"]
secret_prefix = "anthropic/"

[[upstreams]]
name = "openai"
protocol = "openai"
url = "{double.url}"
secrets = ["openai-main"]

[[upstreams]]
name = "bedrock"
protocol = "bedrock"
url = "{double.url}"
region = "us-east-1"
secrets = ["bedrock-main"]
"""
    )
    s = module_server(
        "gateway",
        args=(
            "--gateway", str(cfg),
            "--model-prices", f"{PRICED}={PRICE[0]}/{PRICE[1]}",
            # Memory extraction names an API but no URL or key: it goes through the gateway.
            "--memory-model-provider", "openai",
            "--memory-model", EXTRACTION_MODEL,
            "--memory-extraction-delay-ms", "300",
        ),
    )
    for name, value in [
        ("anthropic/key-1", ANTHROPIC_KEY),
        ("openai-main", OPENAI_KEY),
        ("bedrock-main", BEDROCK_CREDENTIAL),
    ]:
        put = native(
            s, "PUT", f"/berth/v1/secrets/{quote(name, safe='')}", body=json.dumps({"value": value}).encode()
        )
        assert put.status == 200, put
    return s


@pytest.fixture(scope="module")
def agent(server):
    control, s3 = server.client("bedrock-agentcore-control"), server.s3_client()
    return deploy_agent(control, s3, "model_client", timeout=max(BUILD_TIMEOUT, 600))


def call(server, agent, payload, user="alice"):
    data = server.client("bedrock-agentcore")
    return invoke_json(
        data, agent["agentRuntimeArn"], new_session_id("gw"), payload, runtimeUserId=user
    )


def test_sandboxes_get_each_sdks_variables_and_a_key_of_their_own(server, agent):
    env = call(server, agent, {"sdk": "env"})
    assert sorted(env["present"]) == sorted(
        [
            "ANTHROPIC_BASE_URL",
            "OPENAI_BASE_URL",
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
            "ANTHROPIC_API_KEY",
            "OPENAI_API_KEY",
            "AWS_ACCESS_KEY_ID",
        ]
    )
    assert env["keyPrefix"] == "berth-gw."
    assert env["baseUrl"].endswith("/gateway/anthropic")


@pytest.mark.parametrize(
    "sdk,model,stream",
    [
        ("anthropic", "claude-test", False),
        ("anthropic", "claude-test", True),
        ("openai", "gpt-test", False),
        ("openai", "gpt-test", True),
        ("bedrock-converse", "anthropic.claude-test-v1:0", False),
        ("bedrock-converse", "anthropic.claude-test-v1:0", True),
        ("bedrock-invoke", "anthropic.claude-test-v1:0", False),
    ],
)
def test_each_sdk_reaches_the_double_with_the_pooled_credential(
    server, agent, double, sdk, model, stream
):
    before = len(double.credentials_seen())
    got = call(server, agent, {"sdk": sdk, "model": model, "stream": stream})
    assert "error" not in got, got
    assert got["text"] == f"hello from {model}"
    assert got["usage"] == {"input": INPUT_TOKENS, "output": OUTPUT_TOKENS}
    seen = double.credentials_seen()[before:]
    expected = {
        "anthropic": ANTHROPIC_KEY,
        "openai": OPENAI_KEY,
        "bedrock-converse": BEDROCK_KEY_ID,
        "bedrock-invoke": BEDROCK_KEY_ID,
    }[sdk]
    assert seen == [expected], seen


def test_openai_embeddings(server, agent, double):
    got = call(server, agent, {"sdk": "openai-embeddings", "model": "embed-test"})
    assert got == {"text": "3", "usage": {"input": INPUT_TOKENS}}, got


def test_the_double_never_sees_a_sandbox_key(server, agent, double):
    call(server, agent, {"sdk": "anthropic", "model": "claude-test"})
    seen = double.credentials_seen()
    assert seen and not any(c.startswith("berth-gw.") for c in seen), seen


def test_an_unknown_model_is_the_sdks_not_found_error(server, agent):
    got = call(server, agent, {"sdk": "anthropic", "model": "mistral-large"})
    assert got["error"].startswith("NotFoundError"), got


def test_any_other_key_is_refused_in_the_apis_shape(server):
    for key in ["sk-ant-real-looking", "berth-gw.c2J4.AAAA", ANTHROPIC_KEY]:
        resp = raw_request(
            server.url,
            "POST",
            "/gateway/anthropic/v1/messages",
            body=json.dumps({"model": "claude-test", "max_tokens": 5, "messages": []}).encode(),
            headers={"x-api-key": key, "content-type": "application/json"},
            sign=False,
        )
        assert resp.status == 401, resp
        assert resp.json()["error"]["type"] == "authentication_error"


def test_tokens_and_cost_per_version_and_actor(server, agent):
    rid = agent["agentRuntimeId"]
    for _ in range(2):
        got = call(server, agent, {"sdk": "anthropic", "model": PRICED}, user="carol")
        assert "error" not in got, got

    def carol():
        resp = native(server, "GET", "/berth/v1/usage", query=f"runtime={rid}&groupBy=actor")
        assert resp.status == 200, resp
        return [g for g in resp.json()["usage"] if g.get("actor") == "carol"]

    groups = poll(carol, lambda g: g and g[0]["inputTokens"] == 2 * INPUT_TOKENS, timeout=30, what="carol's usage")
    g = groups[0]
    assert g["outputTokens"] == 2 * OUTPUT_TOKENS
    cost = 2 * (INPUT_TOKENS * PRICE[0] + OUTPUT_TOKENS * PRICE[1]) / 1e6
    assert g["costUsd"] == pytest.approx(cost)
    by_version = native(server, "GET", "/berth/v1/usage", query=f"runtime={rid}&groupBy=version").json()
    assert by_version["usage"][0]["version"] == 1
    text = native(server, "GET", "/berth/v1/metrics").body.decode()
    line = next(
        l for l in text.splitlines()
        if l.startswith("berth_gateway_tokens_total")
        and f'runtime_id="{rid}"' in l and 'actor="carol"' in l and 'type="input"' in l
    )
    assert line.endswith(f" {2 * INPUT_TOKENS}"), line
    cost_line = next(
        l for l in text.splitlines()
        if l.startswith("berth_gateway_cost_usd_total") and 'actor="carol"' in l
    )
    assert float(cost_line.rsplit(" ", 1)[1]) == pytest.approx(cost)
    assert f'berth_genai_tokens_total{{runtime_id="{rid}"' in text


def test_the_gateway_status_names_credentials_never_values(server):
    resp = native(server, "GET", "/berth/v1/gateway")
    assert resp.status == 200, resp
    ups = {u["name"]: u for u in resp.json()["upstreams"]}
    assert [c["name"] for c in ups["anthropic"]["credentials"]] == ["anthropic/key-1"]
    assert ANTHROPIC_KEY not in resp.body.decode()
    out = run_cli(server, "gateway")
    assert out.returncode == 0, out.stderr
    assert "anthropic/key-1" in out.stdout and "healthy" in out.stdout
    assert ANTHROPIC_KEY not in out.stdout and OPENAI_KEY not in out.stdout


def test_memory_extraction_calls_its_model_through_the_gateway(server, double):
    """Memory names the OpenAI API and a model, no URL or key: the extraction call reaches the
    double with the pooled OpenAI credential, and its tokens are Berth's own (`berth:models`)."""
    control, data = server.client("bedrock-agentcore-control"), server.client("bedrock-agentcore")
    m = control.create_memory(
        name="gw_extract", eventExpiryDuration=30,
        memoryStrategies=[{"semanticMemoryStrategy": {"name": "facts"}}],
    )["memory"]
    poll(lambda: control.get_memory(memoryId=m["id"])["memory"]["status"], lambda s: s == "ACTIVE", timeout=30, what="active")
    sem = m["strategies"][0]["strategyId"]
    before = len(double.credentials_seen())
    data.create_event(
        memoryId=m["id"], actorId="u1", sessionId="s1", eventTimestamp=datetime.now(timezone.utc),
        payload=[{"conversational": {"content": {"text": "I have green tea every morning."}, "role": "USER"}}],
    )
    records = poll(
        lambda: data.list_memory_records(memoryId=m["id"], namespace=f"/strategies/{sem}/actors/u1/")["memoryRecordSummaries"],
        lambda r: len(r) == 1, timeout=30, what="the extracted fact",
    )
    assert records[0]["content"]["text"] == FACT
    assert OPENAI_KEY in double.credentials_seen()[before:]
    usage = poll(
        lambda: native(server, "GET", "/berth/v1/usage", query="runtime=berth%3Amodels&groupBy=model").json()["usage"],
        lambda u: any(g.get("model") == EXTRACTION_MODEL for g in u), timeout=30, what="berth's own usage",
    )
    assert next(g for g in usage if g["model"] == EXTRACTION_MODEL)["inputTokens"] >= INPUT_TOKENS
