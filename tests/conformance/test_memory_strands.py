"""The SDK's Strands session manager (`bedrock_agentcore.memory.integrations.strands`) against Berth.

A real `strands.Agent` with a scripted local model (no network: sockets may only reach the
loopback interface) runs turns with `AgentCoreMemorySessionManager`, configured the way its README
shows: memory id, session id, actor id and a region, with the manager building its own boto3
clients. They reach Berth the way a user's would, through the `AWS_ENDPOINT_URL_*` variables
`berth serve` prints and credentials in the environment.

Each test checks both sides: what the agent sees (restored messages, injected long-term context)
and what Berth stored, read back with plain boto3 `ListEvents`.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from berth_harness import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    list_all,
    poll,
    unique_name,
)
from strands import Agent, tool
from strands.models import Model

from bedrock_agentcore.memory.integrations.strands.config import (
    AgentCoreMemoryConfig,
    RetrievalConfig,
)
from bedrock_agentcore.memory.integrations.strands.session_manager import (
    AgentCoreMemorySessionManager,
)

AGENT_ID = "assistant"
FACTS_NAMESPACE = "/strategies/{memoryStrategyId}/actors/{actorId}/"


# ----------------------------------------------------------------------------- doubles


class ScriptedModel(Model):
    """A Strands model that answers from a script and records every request it gets.

    Each reply is `{"text": ...}`, `{"tool": (name, input)}` (a tool call, answered by the
    agent with a toolResult) or `{"text": ..., "redact_user": ...}` (a guardrail intervention:
    Strands rewrites the user's message and asks the session manager to redact it).
    """

    def __init__(self, *replies: dict):
        self.replies = list(replies)
        #: The messages of each request, copied as they were when the model was called.
        self.requests: list[list[dict]] = []

    def update_config(self, **model_config) -> None:
        pass

    def get_config(self) -> dict:
        return {}

    async def structured_output(self, output_model, prompt, system_prompt=None, **kwargs):
        raise NotImplementedError("the scripted model has no structured output")
        yield  # an async generator, as the interface requires

    async def stream(self, messages, tool_specs=None, system_prompt=None, **kwargs):
        self.requests.append(copy.deepcopy(messages))
        assert self.replies, f"the model was called more often than scripted: {messages[-1]}"
        reply = self.replies.pop(0)
        yield {"messageStart": {"role": "assistant"}}
        if "tool" in reply:
            name, arguments = reply["tool"]
            use = {"toolUseId": f"call-{len(self.requests)}", "name": name}
            yield {"contentBlockStart": {"start": {"toolUse": use}}}
            yield {"contentBlockDelta": {"delta": {"toolUse": {"input": json.dumps(arguments)}}}}
            yield {"contentBlockStop": {}}
            yield {"messageStop": {"stopReason": "tool_use"}}
        else:
            yield {"contentBlockStart": {"start": {}}}
            yield {"contentBlockDelta": {"delta": {"text": reply["text"]}}}
            yield {"contentBlockStop": {}}
            if "redact_user" in reply:
                yield {"redactContent": {"redactUserContentMessage": reply["redact_user"]}}
                yield {"messageStop": {"stopReason": "guardrail_intervened"}}
            else:
                yield {"messageStop": {"stopReason": "end_turn"}}
        usage = {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}
        yield {"metadata": {"usage": usage, "metrics": {"latencyMs": 1}}}


@tool
def weather(city: str) -> str:
    """Today's weather in a city."""
    return f"sunny and 24 degrees in {city}"


class ExtractionModel(BaseHTTPRequestHandler):
    """An OpenAI-style chat endpoint standing in for Berth's extraction model: it "extracts"
    a fixed fact when the conversation mentions tea, a summary otherwise."""

    def do_POST(self):  # noqa: N802 (http.server naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        system, conversation = body["messages"][0]["content"], body["messages"][1]["content"]
        if "summar" in system:
            memories = ["Summary: the user talked about their morning drink."]
        elif "tea" in conversation.lower():
            memories = ["The user drinks green tea with honey every morning."]
        else:
            memories = []
        answer = json.dumps({"memories": memories})
        out = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out.encode())

    def log_message(self, *args):
        pass


# ----------------------------------------------------------------------------- fixtures


LOOPBACK = ("127.0.0.1", "::1", "localhost")


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Refuse, and fail the test for, any lookup or connection off the loopback interface (a
    default Bedrock model, telemetry): only Berth and the local model doubles may be reached."""
    attempts: list[str] = []
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        if host not in LOOPBACK:
            attempts.append(str(host))
            raise socket.gaierror(socket.EAI_NONAME, f"{host} is off limits in this test")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:
            attempts.append(str(address[0]))
            raise ConnectionRefusedError(f"{address} is off limits in this test")
        return real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    yield
    assert attempts == [], f"connections outside the loopback interface: {attempts}"


@pytest.fixture(autouse=True)
def no_swallowed_errors(caplog):
    """The manager logs and swallows failed reads (read_agent, list_messages, retrieval), which
    would turn a server error into an agent that silently forgot: any such log fails the test."""
    caplog.set_level(logging.WARNING)
    yield
    errors = [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.split(".")[0] in ("bedrock_agentcore", "strands")
    ]
    assert errors == [], errors


def as_a_user(monkeypatch, tmp_path, server) -> None:
    """The environment of a user who ran the exports `berth serve` prints: endpoint URLs and
    credentials in variables, nothing from ~/.aws, no instance metadata."""
    for key in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
        "BEDROCK_AGENTCORE_DP_ENDPOINT",
        "BEDROCK_AGENTCORE_CP_ENDPOINT",
    ):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE", server.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL", server.url)


@pytest.fixture
def user_env(berth, monkeypatch, tmp_path):
    as_a_user(monkeypatch, tmp_path, berth)


def create_active_memory(control) -> dict:
    m = control.create_memory(
        name=unique_name("strands"),
        eventExpiryDuration=30,
        memoryStrategies=[{"semanticMemoryStrategy": {"name": "facts"}}],
    )["memory"]
    return poll(
        lambda: control.get_memory(memoryId=m["id"])["memory"],
        lambda got: got["status"] == "ACTIVE",
        timeout=30,
        what=f"memory {m['id']} to be ACTIVE",
    )


@pytest.fixture
def memory(control) -> dict:
    """A fresh ACTIVE memory with one semantic strategy; deleted afterwards."""
    m = create_active_memory(control)
    yield m
    control.delete_memory(memoryId=m["id"])


# ----------------------------------------------------------------------------- helpers


def manager(memory_id: str, actor_id: str, session_id: str, **config) -> AgentCoreMemorySessionManager:
    """The session manager as its README builds it: a config and a region, nothing else."""
    cfg = AgentCoreMemoryConfig(memory_id=memory_id, session_id=session_id, actor_id=actor_id, **config)
    return AgentCoreMemorySessionManager(agentcore_memory_config=cfg, region_name=REGION)


def agent(model: Model, session_manager, **kwargs) -> Agent:
    return Agent(
        agent_id=AGENT_ID,
        model=model,
        tools=[weather],
        system_prompt="You are a helpful assistant.",
        session_manager=session_manager,
        callback_handler=None,
        **kwargs,
    )


def stored_events(data, memory_id: str, actor_id: str, session_id: str, **filters) -> list[dict]:
    """Every event of a session as ListEvents returns them (newest first), page by page."""
    args = dict(memoryId=memory_id, actorId=actor_id, sessionId=session_id)
    if filters:
        args["filter"] = filters
    return [e for page in list_all(data.list_events, "events", page_size=3, **args) for e in page]


def stored_conversation(events: list[dict]) -> list[tuple[str, dict]]:
    """The conversational payloads of `events`, oldest first: (role, Strands message)."""
    turns = []
    for event in reversed(events):
        for item in event["payload"]:
            if "conversational" in item:
                conv = item["conversational"]
                turns.append((conv["role"], json.loads(conv["content"]["text"])["message"]))
    return turns


def text_of(message: dict) -> list:
    """A message's content reduced to comparable parts (text, tool calls, tool results)."""
    parts = []
    for block in message["content"]:
        if "text" in block:
            parts.append(block["text"])
        elif "toolUse" in block:
            parts.append(("toolUse", block["toolUse"]["name"], block["toolUse"]["input"]))
        elif "toolResult" in block:
            parts.append(("toolResult", [c.get("text") for c in block["toolResult"]["content"]]))
    return parts


def state_filter(kind: str) -> dict:
    return {
        "left": {"metadataKey": "stateType"},
        "operator": "EQUALS_TO",
        "right": {"metadataValue": {"stringValue": kind}},
    }


def create_records(data, memory_id: str, namespace: str, strategy_id: str, texts: list[str]) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    resp = data.batch_create_memory_records(
        memoryId=memory_id,
        records=[
            {
                "requestIdentifier": f"r{i}",
                "namespaces": [namespace],
                "memoryStrategyId": strategy_id,
                "content": {"text": text},
                "timestamp": now,
            }
            for i, text in enumerate(texts)
        ],
    )
    assert resp["failedRecords"] == [], resp["failedRecords"]


def semantic_strategy(memory: dict) -> str:
    return next(s["strategyId"] for s in memory["strategies"] if s["type"] == "SEMANTIC")


# ----------------------------------------------------------------------------- short-term memory


def test_agent_turns_are_stored_and_a_new_manager_restores_them(user_env, data, memory):
    mid, actor, session = memory["id"], "strands-user", unique_name("session")

    first = agent(
        ScriptedModel(
            {"tool": ("weather", {"city": "Lisbon"})},
            {"text": "It is sunny and 24 degrees in Lisbon."},
            {"text": "Noted: your dog is called Biscuit."},
        ),
        manager(mid, actor, session),
    )
    first.state.set("visits", 1)
    assert str(first("What is the weather in Lisbon?")).strip() == "It is sunny and 24 degrees in Lisbon."
    first.state.set("visits", 2)
    first("Remember that my dog is called Biscuit.")
    said = [(m["role"], text_of(m)) for m in first.messages]
    assert said == [
        ("user", ["What is the weather in Lisbon?"]),
        ("assistant", [("toolUse", "weather", {"city": "Lisbon"})]),
        ("user", [("toolResult", ["sunny and 24 degrees in Lisbon"])]),
        ("assistant", ["It is sunny and 24 degrees in Lisbon."]),
        ("user", ["Remember that my dog is called Biscuit."]),
        ("assistant", ["Noted: your dog is called Biscuit."]),
    ]

    # What Berth stored, through plain boto3: one event per message in order, with ids and
    # timestamps increasing, plus the session and agent records the manager finds by metadata.
    events = stored_events(data, mid, actor, session)
    conversation = stored_conversation(events)
    assert [(role, text_of(m)) for role, m in conversation] == [
        (role.upper(), parts) for role, parts in said
    ]
    message_events = [e for e in reversed(events) if "conversational" in e["payload"][0]]
    assert [e["eventId"] for e in message_events] == sorted(e["eventId"] for e in message_events)
    stamps = [e["eventTimestamp"] for e in message_events]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)

    sessions = stored_events(data, mid, actor, session, eventMetadata=[state_filter("SESSION")])
    assert len(sessions) == 1
    assert json.loads(sessions[0]["payload"][0]["blob"])["session_id"] == session
    agents = stored_events(data, mid, actor, session, eventMetadata=[state_filter("AGENT")])
    assert len(agents) >= 2
    snapshots = [json.loads(e["payload"][-1]["blob"]) for e in agents]
    assert {s["agent_id"] for s in snapshots} == {AGENT_ID}
    # Newest first, so the first snapshot is the latest state.
    assert snapshots[0]["state"] == {"visits": 2}
    assert {"visits": 1} in [s["state"] for s in snapshots]

    # The agent wakes up in a new process: a new manager and agent on the same session restore
    # the conversation and the latest state before the first turn, and the model sees them.
    model = ScriptedModel({"text": "Your dog is called Biscuit."})
    second = agent(model, manager(mid, actor, session))
    assert [(m["role"], text_of(m)) for m in second.messages] == said
    assert second.state.get("visits") == 2
    assert str(second("What is my dog called?")).strip() == "Your dog is called Biscuit."
    assert [(m["role"], text_of(m)) for m in model.requests[0]] == said + [
        ("user", ["What is my dog called?"])
    ]

    # The manager's own read (list_messages, oldest first) sees all eight messages.
    listed = manager(mid, actor, session).list_messages(session, AGENT_ID)
    assert [text_of(m.to_message()) for m in listed] == [parts for _, parts in said] + [
        ["What is my dog called?"],
        ["Your dog is called Biscuit."],
    ]


def test_another_session_or_actor_starts_empty(user_env, data, memory):
    mid, session = memory["id"], unique_name("session")
    first = agent(ScriptedModel({"text": "Hello, Ana."}), manager(mid, "ana", session))
    first("Hi, I am Ana.")
    # Same session id, different actor: nothing of Ana's conversation.
    other_actor = agent(ScriptedModel(), manager(mid, "bruno", session))
    assert other_actor.messages == []
    # Same actor, new session: a fresh conversation too (short-term memory is per session).
    other_session = agent(ScriptedModel(), manager(mid, "ana", unique_name("session")))
    assert other_session.messages == []
    assert len(stored_conversation(stored_events(data, mid, "ana", session))) == 2


def test_guardrail_redaction_replaces_the_stored_event(user_env, data, memory):
    mid, actor, session = memory["id"], "redacted-user", unique_name("session")
    first = agent(
        ScriptedModel(
            {"text": "Thanks, noted."},
            {"text": "I cannot help with that.", "redact_user": "[User input redacted.]"},
        ),
        manager(mid, actor, session),
    )
    first("My favourite colour is green.")
    before = stored_events(data, mid, actor, session)
    first("My card number is 4111 1111 1111 1111.")

    # Strands rewrote the message in memory while the model was still answering, and the
    # manager replaced its event then: a new event with the redacted text, the original deleted
    # (an update is CreateEvent + DeleteEvent), so the reply is stored after it.
    said = [text_of(m) for m in first.messages]
    assert said == [
        ["My favourite colour is green."],
        ["Thanks, noted."],
        ["[User input redacted.]"],
        ["I cannot help with that."],
    ]
    events = stored_events(data, mid, actor, session)
    assert [text_of(m) for _, m in stored_conversation(events)] == said
    assert not any("4111" in json.dumps(e["payload"]) for e in events)
    assert {e["eventId"] for e in before} <= {e["eventId"] for e in events}

    # A restored agent sees the redacted text only.
    second = agent(ScriptedModel(), manager(mid, actor, session))
    assert [text_of(m) for m in second.messages] == said


def test_batched_manager_writes_one_event_per_turn(user_env, data, memory):
    mid, actor, session = memory["id"], "batched-user", unique_name("session")
    with manager(mid, actor, session, batch_size=10) as batched:
        first = agent(
            ScriptedModel({"text": "First answer."}, {"text": "Second answer."}),
            batched,
        )
        first("First question.")
        first.state.set("topic", "batching")
        first("Second question.")

    # The manager flushes after each invocation: one CreateEvent carrying the turn's messages
    # as several conversational payloads, in order.
    events = stored_events(data, mid, actor, session)
    turns = [
        [item["conversational"]["role"] for item in e["payload"]]
        for e in reversed(events)
        if "conversational" in e["payload"][0]
    ]
    assert turns == [["USER", "ASSISTANT"], ["USER", "ASSISTANT"]]
    # Batched agent snapshots share one event, oldest first; the restore reads the last payload.
    snapshots = stored_events(data, mid, actor, session, eventMetadata=[state_filter("AGENT")])
    assert any(len(e["payload"]) > 1 for e in snapshots)
    assert json.loads(snapshots[0]["payload"][-1]["blob"])["state"] == {"topic": "batching"}
    second = agent(ScriptedModel(), manager(mid, actor, session))
    assert [text_of(m) for m in second.messages] == [
        ["First question."],
        ["First answer."],
        ["Second question."],
        ["Second answer."],
    ]
    assert second.state.get("topic") == "batching"


def test_async_mode_persists_through_invoke_async(user_env, data, memory):
    mid, actor, session = memory["id"], "async-user", unique_name("session")
    first = agent(ScriptedModel({"text": "Async answer."}), manager(mid, actor, session, async_mode=True))
    result = asyncio.run(first.invoke_async("Async question."))
    assert str(result).strip() == "Async answer."
    assert [text_of(m) for _, m in stored_conversation(stored_events(data, mid, actor, session))] == [
        ["Async question."],
        ["Async answer."],
    ]


# ----------------------------------------------------------------------------- long-term memory


def test_long_term_records_are_retrieved_into_the_users_message(user_env, data, memory):
    mid, actor, session = memory["id"], "ltm-user", unique_name("session")
    strategy = semantic_strategy(memory)
    namespace = FACTS_NAMESPACE.format(memoryStrategyId=strategy, actorId=actor)
    create_records(
        data,
        mid,
        namespace,
        strategy,
        [
            "The user has a golden retriever named Biscuit.",
            "The user is allergic to peanuts.",
            "The user lives in Lisbon and commutes by bicycle.",
        ],
    )
    # Another actor's facts live in another namespace and must not leak in.
    create_records(
        data,
        mid,
        FACTS_NAMESPACE.format(memoryStrategyId=strategy, actorId="someone-else"),
        strategy,
        ["Someone else has a cat named Pixel."],
    )

    model = ScriptedModel({"text": "Your dog is Biscuit."})
    retrieval = {FACTS_NAMESPACE: RetrievalConfig(strategy_id=strategy, top_k=5, relevance_score=0.0)}
    talker = agent(model, manager(mid, actor, session, retrieval_config=retrieval))
    talker("What is the name of my dog?")

    # The manager retrieved from the namespace resolved for this actor and strategy and put the
    # records, best first, in front of the user's text inside the context tag; the model saw it.
    asked = model.requests[0][-1]
    assert asked["role"] == "user"
    context, question = asked["content"][0]["text"], asked["content"][-1]["text"]
    assert question == "What is the name of my dog?"
    assert context.startswith("<user_context>The user has a golden retriever named Biscuit.\n")
    assert context.endswith("</user_context>")
    assert "allergic to peanuts" in context and "Lisbon" in context
    assert "Pixel" not in context
    # The retrieved context is for this turn only; the stored message is the user's own.
    stored = stored_conversation(stored_events(data, mid, actor, session))
    assert text_of(stored[0][1]) == ["What is the name of my dog?"]


def test_relevance_threshold_keeps_unrelated_records_out(user_env, data, memory):
    """AWS: "each summary includes a relevance score derived from the cosine similarity of
    embedding vectors" (developer guide, Retrieve memory records); the manager drops records
    scoring below `RetrievalConfig.relevance_score` on the client side."""
    mid, actor = memory["id"], "threshold-user"
    strategy = semantic_strategy(memory)
    namespace = FACTS_NAMESPACE.format(memoryStrategyId=strategy, actorId=actor)
    create_records(
        data,
        mid,
        namespace,
        strategy,
        ["The user has a golden retriever named Biscuit.", "The user is allergic to peanuts."],
    )
    # The exact text of a record is as similar as it gets; a nonsense query is not similar at all.
    same = data.retrieve_memory_records(
        memoryId=mid,
        namespace=namespace,
        searchCriteria={"searchQuery": "The user is allergic to peanuts.", "topK": 2},
    )["memoryRecordSummaries"]
    assert same[0]["score"] > 0.9
    nonsense = data.retrieve_memory_records(
        memoryId=mid, namespace=namespace, searchCriteria={"searchQuery": "zzzz qqqq", "topK": 2}
    )["memoryRecordSummaries"]
    assert all(hit["score"] < 0.5 for hit in nonsense), [hit["score"] for hit in nonsense]

    model = ScriptedModel({"text": "Paris."})
    retrieval = {FACTS_NAMESPACE: RetrievalConfig(strategy_id=strategy, relevance_score=0.5)}
    agent(model, manager(mid, actor, unique_name("session"), retrieval_config=retrieval))(
        "What is the capital of France?"
    )
    assert text_of(model.requests[0][-1]) == ["What is the capital of France?"]


@pytest.fixture
def extracting_server(berth_server, monkeypatch, tmp_path):
    """A private server whose extraction model is ExtractionModel on a loopback port."""
    model = ThreadingHTTPServer(("127.0.0.1", 0), ExtractionModel)
    thread = threading.Thread(target=model.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("BERTH_MEMORY_MODEL_URL", f"http://127.0.0.1:{model.server_address[1]}/v1")
    monkeypatch.setenv("BERTH_MEMORY_MODEL", "double")
    monkeypatch.setenv("BERTH_MEMORY_EXTRACTION_DELAY_MS", "300")
    server = berth_server(name="strands-extract")
    as_a_user(monkeypatch, tmp_path, server)
    yield server
    model.shutdown()
    model.server_close()
    thread.join()


def test_facts_from_one_session_reach_the_next(extracting_server):
    """The user told the agent something yesterday; today, in a new session, it knows."""
    control = extracting_server.client("bedrock-agentcore-control")
    data = extracting_server.client("bedrock-agentcore")
    m = create_active_memory(control)
    mid, actor = m["id"], "returning-user"
    strategy = semantic_strategy(m)
    retrieval = {FACTS_NAMESPACE: RetrievalConfig(strategy_id=strategy, top_k=3, relevance_score=0.0)}

    yesterday = agent(
        ScriptedModel({"text": "Lovely, green tea with honey it is."}),
        manager(mid, actor, unique_name("yesterday"), retrieval_config=retrieval),
    )
    yesterday("Every morning I drink green tea with honey.")

    namespace = FACTS_NAMESPACE.format(memoryStrategyId=strategy, actorId=actor)
    poll(
        lambda: data.list_memory_records(memoryId=mid, namespace=namespace)["memoryRecordSummaries"],
        lambda records: len(records) == 1,
        timeout=30,
        what="the fact extracted from yesterday's session",
    )

    model = ScriptedModel({"text": "Green tea with honey, as every morning?"})
    today = agent(model, manager(mid, actor, unique_name("today"), retrieval_config=retrieval))
    assert today.messages == []
    today("What should I drink this morning?")
    context = model.requests[0][-1]["content"][0]["text"]
    assert context == "<user_context>The user drinks green tea with honey every morning.</user_context>"
