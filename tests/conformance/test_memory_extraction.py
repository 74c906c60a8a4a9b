"""Asynchronous extraction against a local model-server double speaking the OpenAI chat API.

The double answers with fixed extractions chosen by what the conversation mentions, so the test
shows records appearing, consolidating (a restated fact replaces its record instead of adding a
duplicate) and being retrieved by meaning.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from berth_harness import poll, unique_name

# What the double "extracts", by a word the conversation contains.
SEMANTIC = {
    "tea": "The user drinks green tea every morning.",
    "honey": "The user drinks green tea every morning, sweetened with honey.",
    "bicycle": "The user commutes to the office by bicycle.",
}


class ModelDouble(BaseHTTPRequestHandler):
    requests: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ModelDouble.requests.append({"path": self.path, "body": body})
        system = body["messages"][0]["content"]
        convo = body["messages"][1]["content"].lower()
        if "summar" in system:
            memories = [f"Summary: {convo[:60]}"]
        else:
            memories = [fact for word, fact in SEMANTIC.items() if word in convo]
            # A restatement carries the newer wording only.
            if "honey" in convo:
                memories = [SEMANTIC["honey"]]
        answer = json.dumps({"memories": memories})
        out = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


@pytest.fixture
def model_double():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ModelDouble)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    ModelDouble.requests = []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def extracting_server(berth_server, model_double, monkeypatch):
    monkeypatch.setenv("BERTH_MEMORY_MODEL_URL", model_double)
    monkeypatch.setenv("BERTH_MEMORY_MODEL", "double")
    monkeypatch.setenv("BERTH_MEMORY_EXTRACTION_DELAY_MS", "300")
    return berth_server(name="extract")


def conv(text, role="USER"):
    return {"conversational": {"content": {"text": text}, "role": role}}


def test_records_appear_consolidate_and_are_found_by_meaning(extracting_server):
    control = extracting_server.client("bedrock-agentcore-control")
    data = extracting_server.client("bedrock-agentcore")
    m = control.create_memory(
        name=unique_name("ext"),
        eventExpiryDuration=30,
        memoryStrategies=[
            {"semanticMemoryStrategy": {"name": "facts"}},
            {"summaryMemoryStrategy": {"name": "summary"}},
        ],
    )["memory"]
    poll(lambda: control.get_memory(memoryId=m["id"])["memory"]["status"], lambda s: s == "ACTIVE", timeout=30, what="active")
    sem = next(s["strategyId"] for s in m["strategies"] if s["type"] == "SEMANTIC")
    summ = next(s["strategyId"] for s in m["strategies"] if s["type"] == "SUMMARIZATION")
    facts_ns = f"/strategies/{sem}/actors/u1/"
    now = dt.datetime.now(dt.timezone.utc)

    def say(session, *texts):
        data.create_event(
            memoryId=m["id"], actorId="u1", sessionId=session, eventTimestamp=now,
            payload=[conv(t) for t in texts],
        )

    def facts():
        return data.list_memory_records(memoryId=m["id"], namespace=facts_ns)["memoryRecordSummaries"]

    say("s1", "Every morning I have a cup of green tea.", "Also I ride my bicycle to work.")
    first = poll(facts, lambda r: len(r) == 2, timeout=30, what="two extracted facts")
    tea_id = next(r["memoryRecordId"] for r in first if "tea" in r["content"]["text"])
    assert all(r["memoryStrategyId"] == sem for r in first)

    # The same fact restated in another session replaces its record: no duplicate.
    say("s2", "I always put honey in it.")
    poll(
        lambda: data.get_memory_record(memoryId=m["id"], memoryRecordId=tea_id)["memoryRecord"]["content"]["text"],
        lambda t: "honey" in t,
        timeout=30,
        what="the tea fact to be superseded",
    )
    assert len(facts()) == 2

    # One summary per session, in the session's namespace.
    summary_ns = f"/strategies/{summ}/actors/u1/sessions/s1/"
    summaries = poll(
        lambda: data.list_memory_records(memoryId=m["id"], namespace=summary_ns)["memoryRecordSummaries"],
        lambda r: len(r) == 1,
        timeout=30,
        what="a session summary",
    )
    assert summaries[0]["content"]["text"].startswith("Summary:")

    def top(query):
        hits = data.retrieve_memory_records(
            memoryId=m["id"], namespace=facts_ns, searchCriteria={"searchQuery": query, "topK": 2}
        )["memoryRecordSummaries"]
        return hits[0]["content"]["text"]

    # Paraphrased queries with no word in common find the right record first.
    assert "tea" in top("What hot beverage do they like?")
    assert "bicycle" in top("How does this person get to their job?")

    jobs = data.list_memory_extraction_jobs(memoryId=m["id"])["jobs"]
    assert jobs and all(j["status"] == "SUCCEEDED" for j in jobs), jobs
    assert {j["strategyId"] for j in jobs} == {sem, summ}
    # The double saw the conversation and the strategy's instructions.
    assert any("green tea" in r["body"]["messages"][1]["content"] for r in ModelDouble.requests)
    assert all(r["path"] == "/v1/chat/completions" for r in ModelDouble.requests)
