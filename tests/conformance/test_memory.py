"""AgentCore Memory through unmodified boto3 and the bedrock-agentcore SDK.

Control plane (memories and strategies), short-term events (paging, ordering, filters, branches,
idempotency, expiry), long-term records (batch operations, listing, hybrid retrieval) and
extraction jobs without a configured model.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import time
import uuid

import pytest
from berth_harness import (
    assert_recent,
    assert_status,
    expect_error,
    expect_validation,
    list_all,
    poll,
    unique_name,
    wait_not_found,
)

from bedrock_agentcore.memory import MemoryClient, MemorySessionManager
from bedrock_agentcore.memory.constants import ConversationalMessage, MessageRole


def wait_active(control, memory_id: str) -> dict:
    return poll(
        lambda: control.get_memory(memoryId=memory_id)["memory"],
        lambda m: m["status"] == "ACTIVE",
        timeout=30,
        what=f"memory {memory_id} to be ACTIVE",
    )


@pytest.fixture
def memory(control) -> dict:
    """A fresh ACTIVE memory with a semantic and a summary strategy; deleted afterwards."""
    resp = control.create_memory(
        name=unique_name("mem"),
        eventExpiryDuration=30,
        memoryStrategies=[
            {"semanticMemoryStrategy": {"name": "facts"}},
            {"summaryMemoryStrategy": {"name": "summaries"}},
        ],
    )
    m = wait_active(control, resp["memory"]["id"])
    yield m
    control.delete_memory(memoryId=m["id"])


def conv(text: str, role: str = "USER") -> dict:
    return {"conversational": {"content": {"text": text}, "role": role}}


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# ------------------------------------------------------------------------- control plane


def test_create_get_list_update_delete_memory(control):
    name = unique_name("mem")
    resp = control.create_memory(
        name=name,
        description="conformance",
        eventExpiryDuration=7,
        memoryStrategies=[
            {"semanticMemoryStrategy": {"name": "sem"}},
            {"summaryMemoryStrategy": {"name": "sum"}},
            {"userPreferenceMemoryStrategy": {"name": "pref"}},
            {"episodicMemoryStrategy": {"name": "epi"}},
        ],
        clientToken=str(uuid.uuid4()),
    )
    assert_status(resp, 202)
    m = resp["memory"]
    assert m["id"].startswith(name + "-") and len(m["id"]) == len(name) + 11
    assert m["arn"] == f"arn:aws:bedrock-agentcore:us-east-1:000000000000:memory/{m['id']}"
    assert m["status"] in ("CREATING", "ACTIVE")
    assert_recent(m["createdAt"])
    by_type = {s["type"]: s for s in m["strategies"]}
    assert set(by_type) == {"SEMANTIC", "SUMMARIZATION", "USER_PREFERENCE", "EPISODIC"}
    assert by_type["SEMANTIC"]["namespaces"] == ["/strategies/{memoryStrategyId}/actors/{actorId}/"]
    assert by_type["SUMMARIZATION"]["namespaceTemplates"] == [
        "/strategies/{memoryStrategyId}/actors/{actorId}/sessions/{sessionId}/"
    ]
    assert by_type["SEMANTIC"]["strategyId"].startswith("sem-")

    active = wait_active(control, m["id"])
    assert active["description"] == "conformance"
    assert active["eventExpiryDuration"] == 7
    assert all(s["status"] == "ACTIVE" for s in active["strategies"])

    ids = [x["id"] for page in list_all(control.list_memories, "memories", page_size=1) for x in page]
    assert m["id"] in ids

    sem = by_type["SEMANTIC"]["strategyId"]
    epi = by_type["EPISODIC"]["strategyId"]
    up = control.update_memory(
        memoryId=m["id"],
        description="changed",
        eventExpiryDuration=9,
        memoryStrategies={
            "addMemoryStrategies": [
                {"semanticMemoryStrategy": {"name": "sem2", "namespaces": ["/facts/{actorId}/"]}}
            ],
            "modifyMemoryStrategies": [{"memoryStrategyId": sem, "description": "modified"}],
            "deleteMemoryStrategies": [{"memoryStrategyId": epi}],
        },
    )
    assert_status(up, 202)
    got = wait_active(control, m["id"])
    names = {s["name"]: s for s in got["strategies"]}
    assert set(names) == {"sem", "sum", "pref", "sem2"}
    assert names["sem"]["description"] == "modified"
    assert names["sem2"]["namespaces"] == ["/facts/{actorId}/"]
    assert got["eventExpiryDuration"] == 9 and got["description"] == "changed"

    d = control.delete_memory(memoryId=m["id"])
    assert_status(d, 202)
    assert d["status"] == "DELETING"
    wait_not_found(control.get_memory, memoryId=m["id"])


def test_memory_validation_and_errors(control, control_unvalidated):
    expect_validation(
        control_unvalidated.create_memory, "name", name="9bad", eventExpiryDuration=30
    )
    expect_validation(
        control_unvalidated.create_memory,
        "eventExpiryDuration",
        name=unique_name("mem"),
        eventExpiryDuration=2,
    )
    # A template variable that is neither built in nor a declared namespace key.
    expect_error(
        control.create_memory,
        "ValidationException",
        400,
        name=unique_name("mem"),
        eventExpiryDuration=30,
        memoryStrategies=[{"semanticMemoryStrategy": {"name": "s", "namespaces": ["/x/{tenant}/"]}}],
    )
    # Strategy names are unique within a memory.
    expect_error(
        control.create_memory,
        "ValidationException",
        400,
        name=unique_name("mem"),
        eventExpiryDuration=30,
        memoryStrategies=[
            {"semanticMemoryStrategy": {"name": "same"}},
            {"summaryMemoryStrategy": {"name": "same"}},
        ],
    )
    name = unique_name("mem")
    m = control.create_memory(name=name, eventExpiryDuration=30)["memory"]
    err = expect_error(
        control.create_memory, "ValidationException", 400, name=name, eventExpiryDuration=30
    )
    assert "already exists" in err["Error"]["Message"]
    expect_error(control.get_memory, "ResourceNotFoundException", 404, memoryId="nope-0123456789")
    expect_error(
        control.update_memory,
        "ResourceNotFoundException",
        404,
        memoryId=m["id"],
        memoryStrategies={"deleteMemoryStrategies": [{"memoryStrategyId": "gone-0123456789"}]},
    )
    control.delete_memory(memoryId=m["id"])


def test_create_memory_is_idempotent_per_client_token(control):
    token = str(uuid.uuid4())
    name = unique_name("mem")
    a = control.create_memory(name=name, eventExpiryDuration=30, clientToken=token)["memory"]
    b = control.create_memory(name=name, eventExpiryDuration=30, clientToken=token)["memory"]
    assert a["id"] == b["id"]
    expect_error(
        control.create_memory,
        "ValidationException",
        400,
        name=name,
        eventExpiryDuration=31,
        clientToken=token,
    )
    control.delete_memory(memoryId=a["id"])


# ------------------------------------------------------------------------- short-term memory


def test_events_round_trip_newest_first_with_paging(data, memory):
    mid = memory["id"]
    base = now() - dt.timedelta(minutes=5)
    created = []
    for i in range(7):
        resp = data.create_event(
            memoryId=mid,
            actorId="actor-1",
            sessionId="session-1",
            eventTimestamp=base + dt.timedelta(seconds=i),
            payload=[conv(f"message {i}")],
        )
        assert_status(resp, 201)
        ev = resp["event"]
        assert ev["memoryId"] == mid and ev["actorId"] == "actor-1" and ev["sessionId"] == "session-1"
        assert ev["payload"] == [conv(f"message {i}")]
        created.append(ev["eventId"])
    # Ids sort chronologically.
    assert created == sorted(created)
    pages = list_all(
        data.list_events, "events", page_size=3, memoryId=mid, actorId="actor-1", sessionId="session-1"
    )
    assert [len(p) for p in pages] == [3, 3, 1]
    listed = [e["eventId"] for p in pages for e in p]
    assert listed == list(reversed(created))

    got = data.get_event(memoryId=mid, actorId="actor-1", sessionId="session-1", eventId=created[0])
    assert got["event"]["payload"][0]["conversational"]["content"]["text"] == "message 0"

    no_payload = data.list_events(
        memoryId=mid, actorId="actor-1", sessionId="session-1", includePayloads=False, maxResults=2
    )
    assert all("payload" not in e for e in no_payload["events"])

    d = data.delete_event(memoryId=mid, actorId="actor-1", sessionId="session-1", eventId=created[0])
    assert d["eventId"] == created[0]
    expect_error(
        data.get_event,
        "ResourceNotFoundException",
        404,
        memoryId=mid,
        actorId="actor-1",
        sessionId="session-1",
        eventId=created[0],
    )
    # Unknown actor or session: an empty list, not an error.
    empty = data.list_events(memoryId=mid, actorId="nobody", sessionId="none")
    assert empty["events"] == []


def test_same_timestamp_events_keep_acceptance_order_under_concurrency(data, memory):
    mid = memory["id"]
    ts = now()

    def write(i):
        return data.create_event(
            memoryId=mid, actorId="a", sessionId="burst", eventTimestamp=ts, payload=[conv(str(i))]
        )["event"]["eventId"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        ids = list(pool.map(write, range(64)))
    assert len(set(ids)) == 64
    pages = list_all(data.list_events, "events", page_size=10, memoryId=mid, actorId="a", sessionId="burst")
    listed = [e["eventId"] for p in pages for e in p]
    assert listed == sorted(ids, reverse=True)
    # Stable: listing again gives the same order.
    again = [e["eventId"] for p in list_all(data.list_events, "events", page_size=64, memoryId=mid, actorId="a", sessionId="burst") for e in p]
    assert again == listed


def test_blob_payloads_metadata_filters_and_branches(data, memory):
    mid = memory["id"]
    t0 = now() - dt.timedelta(minutes=1)
    root = data.create_event(
        memoryId=mid, actorId="a", sessionId="s", eventTimestamp=t0,
        payload=[conv("root")], metadata={"kind": {"stringValue": "chat"}},
    )["event"]
    blob = data.create_event(
        memoryId=mid, actorId="a", sessionId="s", eventTimestamp=t0 + dt.timedelta(seconds=1),
        payload=[{"blob": {"file": "x.txt", "bytes": [1, 2, 3]}}, {"blob": "plain string"}],
        metadata={"kind": {"stringValue": "file"}},
    )["event"]
    assert blob["payload"] == [{"blob": {"file": "x.txt", "bytes": [1, 2, 3]}}, {"blob": "plain string"}]
    fork = data.create_event(
        memoryId=mid, actorId="a", sessionId="s", eventTimestamp=t0 + dt.timedelta(seconds=2),
        payload=[conv("alternative")], branch={"name": "alt", "rootEventId": root["eventId"]},
    )["event"]
    assert fork["branch"] == {"name": "alt", "rootEventId": root["eventId"]}

    def ids(**filt):
        return [e["eventId"] for e in data.list_events(memoryId=mid, actorId="a", sessionId="s", filter=filt)["events"]]

    eq = {"left": {"metadataKey": "kind"}, "operator": "EQUALS_TO", "right": {"metadataValue": {"stringValue": "file"}}}
    assert ids(eventMetadata=[eq]) == [blob["eventId"]]
    exists = {"left": {"metadataKey": "kind"}, "operator": "EXISTS"}
    assert ids(eventMetadata=[exists]) == [blob["eventId"], root["eventId"]]
    missing = {"left": {"metadataKey": "kind"}, "operator": "NOT_EXISTS"}
    assert ids(eventMetadata=[missing]) == [fork["eventId"]]
    assert ids(branch={"name": "alt"}) == [fork["eventId"]]
    assert ids(branch={"name": "alt", "includeParentBranches": True}) == [fork["eventId"], root["eventId"]]
    expect_error(
        data.create_event, "ResourceNotFoundException", 404,
        memoryId=mid, actorId="a", sessionId="s", eventTimestamp=now(),
        payload=[conv("x")], branch={"name": "b", "rootEventId": "0000001000000000000#00"},
    )


def test_create_event_client_token_is_idempotent(data, memory):
    args = dict(memoryId=memory["id"], actorId="a", sessionId="tok", eventTimestamp=now(), payload=[conv("once")])
    token = str(uuid.uuid4())
    a = data.create_event(clientToken=token, **args)["event"]
    b = data.create_event(clientToken=token, **args)["event"]
    assert a["eventId"] == b["eventId"]
    assert len(data.list_events(memoryId=memory["id"], actorId="a", sessionId="tok")["events"]) == 1


def test_sessions_and_actors(data, memory):
    mid = memory["id"]
    t = now()
    for actor in ("zed", "amy"):
        for i, session in enumerate(("s-old", "s-new")):
            data.create_event(
                memoryId=mid, actorId=actor, sessionId=session,
                eventTimestamp=t + dt.timedelta(seconds=i), payload=[conv("hi")],
            )
    actors = [a["actorId"] for p in list_all(data.list_actors, "actorSummaries", page_size=1, memoryId=mid) for a in p]
    assert actors == ["amy", "zed"]
    sessions = [s for p in list_all(data.list_sessions, "sessionSummaries", page_size=1, memoryId=mid, actorId="amy") for s in p]
    assert [s["sessionId"] for s in sessions] == ["s-new", "s-old"]
    assert all(s["actorId"] == "amy" for s in sessions)
    assert_recent(sessions[0]["createdAt"])


def test_expired_events_are_invisible(control, data):
    m = control.create_memory(name=unique_name("mem"), eventExpiryDuration=3)["memory"]
    wait_active(control, m["id"])
    old = data.create_event(
        memoryId=m["id"], actorId="a", sessionId="s",
        eventTimestamp=now() - dt.timedelta(days=4), payload=[conv("stale")],
    )["event"]
    fresh = data.create_event(
        memoryId=m["id"], actorId="a", sessionId="s", eventTimestamp=now(), payload=[conv("fresh")]
    )["event"]
    listed = [e["eventId"] for e in data.list_events(memoryId=m["id"], actorId="a", sessionId="s")["events"]]
    assert listed == [fresh["eventId"]]
    expect_error(
        data.get_event, "ResourceNotFoundException", 404,
        memoryId=m["id"], actorId="a", sessionId="s", eventId=old["eventId"],
    )
    control.delete_memory(memoryId=m["id"])


def test_data_plane_errors(data, memory):
    expect_error(
        data.create_event, "ResourceNotFoundException", 404,
        memoryId="missing-0123456789", actorId="a", sessionId="s", eventTimestamp=now(), payload=[conv("x")],
    )
    expect_validation(
        data.create_event, "actorId",
        memoryId=memory["id"], actorId="-bad", sessionId="s", eventTimestamp=now(), payload=[conv("x")],
    )
    expect_validation(
        data.list_events, "nextToken", memoryId=memory["id"], actorId="a", sessionId="s", nextToken="garbage"
    )


# ------------------------------------------------------------------------- long-term memory


FACTS = [
    "The user is allergic to peanuts and avoids them in every meal.",
    "The user's favourite programming language is Rust.",
    "The user lives in Lisbon and commutes by bicycle.",
    "The user prefers concise answers without bullet points.",
    "The user has a golden retriever named Biscuit.",
]


def create_records(data, mid: str, namespace: str, texts: list[str], strategy: str | None = None) -> list[str]:
    records = []
    for i, t in enumerate(texts):
        r = {"requestIdentifier": f"r{i}", "namespaces": [namespace], "content": {"text": t}, "timestamp": now()}
        if strategy:
            r["memoryStrategyId"] = strategy
        records.append(r)
    resp = data.batch_create_memory_records(memoryId=mid, records=records)
    assert_status(resp, 201)
    assert resp["failedRecords"] == []
    by_req = {r["requestIdentifier"]: r for r in resp["successfulRecords"]}
    assert all(r["status"] == "SUCCEEDED" for r in by_req.values())
    return [by_req[f"r{i}"]["memoryRecordId"] for i in range(len(texts))]


def test_records_batch_get_list_delete(data, memory):
    mid = memory["id"]
    ns = "/actors/alice/"
    ids = create_records(data, mid, ns, FACTS)
    assert all(i.startswith("mem-") and 40 <= len(i) <= 50 for i in ids)
    rec = data.get_memory_record(memoryId=mid, memoryRecordId=ids[1])["memoryRecord"]
    assert rec["content"]["text"] == FACTS[1] and rec["namespaces"] == [ns]
    assert rec["memoryStrategyId"]

    listed = [r["memoryRecordId"] for p in list_all(data.list_memory_records, "memoryRecordSummaries", page_size=2, memoryId=mid, namespace=ns) for r in p]
    assert sorted(listed) == sorted(ids)
    assert data.list_memory_records(memoryId=mid, namespace="/actors/")["memoryRecordSummaries"] == []
    assert len(data.list_memory_records(memoryId=mid, namespacePath="/actors/")["memoryRecordSummaries"]) == 5

    up = data.batch_update_memory_records(
        memoryId=mid,
        records=[
            {"memoryRecordId": ids[1], "timestamp": now(), "content": {"text": "The user's favourite language is Haskell."}},
            {"memoryRecordId": "mem-" + "x" * 36, "timestamp": now()},
        ],
    )
    assert [r["memoryRecordId"] for r in up["successfulRecords"]] == [ids[1]]
    assert up["failedRecords"][0]["status"] == "FAILED"
    assert "Haskell" in data.get_memory_record(memoryId=mid, memoryRecordId=ids[1])["memoryRecord"]["content"]["text"]

    assert data.delete_memory_record(memoryId=mid, memoryRecordId=ids[0])["memoryRecordId"] == ids[0]
    expect_error(data.get_memory_record, "ResourceNotFoundException", 404, memoryId=mid, memoryRecordId=ids[0])
    bd = data.batch_delete_memory_records(memoryId=mid, records=[{"memoryRecordId": ids[2]}, {"memoryRecordId": ids[0]}])
    assert [r["memoryRecordId"] for r in bd["successfulRecords"]] == [ids[2]]
    assert [r["memoryRecordId"] for r in bd["failedRecords"]] == [ids[0]]


def test_retrieval_is_hybrid_and_scoped(data, memory):
    mid = memory["id"]
    ids = create_records(data, mid, "/actors/bob/", FACTS)
    other = create_records(data, mid, "/actors/carol/", ["Carol is allergic to peanuts as well."])

    def retrieve(query, **kw):
        kw.setdefault("namespace", "/actors/bob/")
        resp = data.retrieve_memory_records(memoryId=mid, searchCriteria={"searchQuery": query, "topK": 3}, **kw)
        return resp["memoryRecordSummaries"]

    # A paraphrase with no shared keyword finds the record by meaning.
    hits = retrieve("Which pet does this person own?")
    assert hits[0]["memoryRecordId"] == ids[4], [h["content"]["text"] for h in hits]
    assert 0 < hits[0]["score"] <= 1
    assert all("score" in h for h in hits)
    # Keywords still work, and scores are descending.
    hits = retrieve("peanuts")
    assert hits[0]["memoryRecordId"] == ids[0]
    assert [h["score"] for h in hits] == sorted([h["score"] for h in hits], reverse=True)
    assert len(hits) <= 3
    # Another actor's namespace is never returned.
    assert other[0] not in [h["memoryRecordId"] for h in hits]
    wide = data.retrieve_memory_records(
        memoryId=mid, namespacePath="/actors/", searchCriteria={"searchQuery": "peanut allergy", "topK": 10}
    )["memoryRecordSummaries"]
    assert {ids[0], other[0]} <= {h["memoryRecordId"] for h in wide}
    # Strategy filter.
    assert data.retrieve_memory_records(
        memoryId=mid, namespace="/actors/bob/", searchCriteria={"searchQuery": "peanuts", "memoryStrategyId": "nonexistent"}
    )["memoryRecordSummaries"] == []


def test_retrieve_pages_through_the_ranked_top_k(data, memory):
    mid = memory["id"]
    create_records(data, mid, "/actors/dora/", FACTS)
    criteria = {"searchQuery": "what does the user like", "topK": 5}
    whole = data.retrieve_memory_records(memoryId=mid, namespace="/actors/dora/", searchCriteria=criteria)
    assert len(whole["memoryRecordSummaries"]) == 5 and "nextToken" not in whole
    pages, token = [], None
    while True:
        kw = {"nextToken": token} if token else {}
        resp = data.retrieve_memory_records(memoryId=mid, namespace="/actors/dora/", searchCriteria=criteria, maxResults=2, **kw)
        pages.append([r["memoryRecordId"] for r in resp["memoryRecordSummaries"]])
        token = resp.get("nextToken")
        if not token:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [i for p in pages for i in p] == [r["memoryRecordId"] for r in whole["memoryRecordSummaries"]]
    paginated = data.get_paginator("retrieve_memory_records").paginate(
        memoryId=mid, namespace="/actors/dora/", searchCriteria=criteria, PaginationConfig={"PageSize": 2}
    )
    assert [r["memoryRecordId"] for p in paginated for r in p["memoryRecordSummaries"]] == [i for p in pages for i in p]
    # A token only continues the search it came from.
    first = data.retrieve_memory_records(memoryId=mid, namespace="/actors/dora/", searchCriteria=criteria, maxResults=2)
    expect_error(
        data.retrieve_memory_records, "ValidationException", 400,
        memoryId=mid, namespace="/actors/dora/", searchCriteria={"searchQuery": "something else", "topK": 5},
        nextToken=first["nextToken"],
    )
    expect_error(
        data.retrieve_memory_records, "ValidationException", 400,
        memoryId=mid, namespace="/actors/dora/", searchCriteria=criteria, nextToken="not-a-token",
    )


def test_retrieve_requires_a_namespace(data, memory):
    expect_error(
        data.retrieve_memory_records, "ValidationException", 400,
        memoryId=memory["id"], searchCriteria={"searchQuery": "x"},
    )


def test_extraction_without_a_model_fails_with_a_reason(berth, data, memory):
    mid = memory["id"]
    data.create_event(memoryId=mid, actorId="a", sessionId="s", eventTimestamp=now(), payload=[conv("I like tea")])
    # The shared server extracts sessions after 10 s of quiet; wait for the failed jobs.
    jobs = poll(
        lambda: data.list_memory_extraction_jobs(memoryId=mid, filter={"status": "FAILED"})["jobs"],
        lambda j: len(j) == 2,
        timeout=60,
        what="two failed extraction jobs",
    )
    for j in jobs:
        assert j["status"] == "FAILED"
        assert "model provider" in j["failureReason"] and "BERTH_MEMORY_MODEL" in j["failureReason"]
        assert j["actorId"] == "a" and j["sessionId"] == "s"
        assert j["messages"]["messagesList"][0]["messageIndex"] == 0
    # Restarting re-runs it (and it fails again for the same reason).
    assert data.start_memory_extraction_job(memoryId=mid, extractionJob={"jobId": jobs[0]["jobID"]})["jobId"] == jobs[0]["jobID"]
    expect_error(
        data.start_memory_extraction_job, "ResourceNotFoundException", 404,
        memoryId=mid, extractionJob={"jobId": "job-missing"},
    )


# ------------------------------------------------------------------------- the SDK


def test_memory_client_end_to_end(berth, memory):
    import boto3

    from berth_harness import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY

    session = boto3.session.Session(
        aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY, region_name=REGION
    )
    import os

    os.environ["AWS_ENDPOINT_URL_BEDROCK_AGENTCORE"] = berth.url
    os.environ["AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL"] = berth.url
    try:
        client = MemoryClient(region_name=REGION, boto3_session=session)
        mid = memory["id"]
        for i in range(3):
            client.create_event(
                memory_id=mid, actor_id="sdk-actor", session_id="sdk-session",
                messages=[(f"question {i}", "USER"), (f"answer {i}", "ASSISTANT")],
            )
        events = client.list_events(memory_id=mid, actor_id="sdk-actor", session_id="sdk-session")
        assert len(events) == 3
        turns = client.get_last_k_turns(memory_id=mid, actor_id="sdk-actor", session_id="sdk-session", k=2)
        assert len(turns) == 2
        texts = [m["content"]["text"] for turn in turns for m in turn]
        assert "question 2" in texts and "answer 2" in texts

        create_records(berth.client("bedrock-agentcore"), mid, "/strategies/x/actors/sdk-actor/", FACTS)
        found = client.retrieve_memories(
            memory_id=mid, namespace="/strategies/x/actors/sdk-actor/", query="dog", top_k=2
        )
        assert found and "Biscuit" in found[0]["content"]["text"]

        name = unique_name("sdk")
        created = client.create_memory_and_wait(
            name=name, strategies=[{"semanticMemoryStrategy": {"name": "facts"}}], poll_interval=1
        )
        assert created["status"] == "ACTIVE" and created["id"].startswith(name)

        manager = MemorySessionManager(memory_id=mid, region_name=REGION, boto3_session=session)
        sess = manager.create_memory_session(actor_id="mgr-actor", session_id="mgr-session")
        sess.add_turns(messages=[ConversationalMessage("hello there", MessageRole.USER)])
        sess.add_turns(messages=[ConversationalMessage("hi, how can I help?", MessageRole.ASSISTANT)])
        last = sess.get_last_k_turns(k=5)
        # ListEvents is newest first (as on AWS), so the SDK assembles the turn newest first.
        assert [m["content"]["text"] for turn in last for m in turn] == ["hi, how can I help?", "hello there"]
        client.delete_memory(created["id"])
    finally:
        os.environ.pop("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE", None)
        os.environ.pop("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL", None)


def test_native_context_call(berth, data, memory):
    from berth_harness import raw_request

    mid = memory["id"]
    strategy = next(s for s in memory["strategies"] if s["type"] == "SEMANTIC")["strategyId"]
    t = now()
    data.create_event(memoryId=mid, actorId="ctx", sessionId="old", eventTimestamp=t - dt.timedelta(hours=1), payload=[conv("old session")])
    for i in range(3):
        data.create_event(memoryId=mid, actorId="ctx", sessionId="new", eventTimestamp=t + dt.timedelta(seconds=i), payload=[conv(f"turn {i}")])
    create_records(data, mid, f"/strategies/{strategy}/actors/ctx/", FACTS, strategy=strategy)
    resp = raw_request(
        berth.url, "POST", f"/berth/v1/memories/{mid}/actors/ctx/context",
        body=b'{"query": "what animal do they have", "maxTurns": 2, "topK": 1}',
    )
    assert resp.status == 200, resp
    body = resp.json()
    assert body["sessionId"] == "new"
    assert [e["payload"][0]["conversational"]["content"]["text"] for e in body["turns"]] == ["turn 1", "turn 2"]
    assert len(body["records"]) == 1 and "Biscuit" in body["records"][0]["content"]["text"]
