"""Several Berth nodes serving one installation (issue 18): three `berth serve` processes on one
shared PostgreSQL store and one external artifact store, each with its own data dir, driven through a
round-robin of the unmodified boto3 clients.

Each node advertises its own address; a session belongs to the node that started it and a call
reaching another node is forwarded there (streaming unbuffered); background jobs that must run
once (the rollout controller) run under a lease; a node killed with SIGKILL loses its sessions,
which start afresh elsewhere on their next call.

Artifacts live in one external S3-compatible service every node reads and writes through (a
fourth, standalone `berth serve`, whose S3 API is the one the conformance suite holds to boto3),
so code uploaded through any node is built by any node. The store is a real PostgreSQL, a throwaway cluster the test starts (`berth-pgtest`: Debian's
PostgreSQL 15 in a temp dir, no system service).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import time
import uuid

import pytest
from berth_harness import (
    ACCESS_KEY_ID,
    ARTIFACT_BUCKET,
    REGION,
    SECRET_ACCESS_KEY,
    BerthServer,
    agent_zip,
    deploy_agent,
    invoke,
    invoke_json,
    native,
    new_session_id,
    poll,
    postgres_database,
    read_sse,
    run_cli,
    runtime_args,
    unique_name,
    update_args,
    upload_artifact,
    wait_endpoint,
    wait_status,
)
from botocore.exceptions import ClientError

pytestmark = pytest.mark.build

#: A short node lease, so a killed node's sessions move within seconds.
LEASE_MS = 1500


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    """Three nodes of one installation. The first node's vault key is copied into the others'
    data dirs before they start (the documented way to add a node)."""
    root = tmp_path_factory.mktemp("berth-nodes")
    artifacts = BerthServer(root / "artifacts", root / "artifacts.log")
    artifacts.start()
    # The operator makes the bucket in the external service; agent code is then uploaded
    # through any node.
    artifacts.s3_client().create_bucket(Bucket=ARTIFACT_BUCKET)
    external = (
        f"s3://?endpoint={artifacts.url}&region={REGION}"
        f"&access_key_id={ACCESS_KEY_ID}&secret_access_key={SECRET_ACCESS_KEY}"
    )
    servers = []
    with postgres_database() as store:
        args = (
            "--store", store,
            "--artifact-store", external,
            "--advertise", "http://127.0.0.1:0",
            "--node-lease-ms", str(LEASE_MS),
            "--rollout-second-ms", "20",
            "--traffic-tick-ms", "50",
            "--health-bucket-ms", "100",
        )
        try:
            for i in range(3):
                data = root / f"node{i}"
                if servers:
                    data.mkdir()
                    shutil.copy(servers[0].data_dir / "vault.key", data / "vault.key")
                srv = BerthServer(data, root / f"node{i}.log", args=args)
                servers.append(srv)
                srv.start()
            yield servers
        finally:
            for srv in [*servers, artifacts]:
                srv.stop()
                srv.reap_group()


def artifact_s3(nodes):
    """S3 through a node (the second: not the one the runtime is created on), which writes
    through to the external service: any node takes uploads, any node builds."""
    return nodes[1].s3_client()


class RoundRobin:
    """boto3 data-plane clients of every node, taken in turn."""

    def __init__(self, servers):
        self.clients = [s.client("bedrock-agentcore") for s in servers]
        self.turn = itertools.cycle(range(len(servers)))

    def next(self):
        return self.clients[next(self.turn)]


def node_ids(servers) -> list[str]:
    listed = native(servers[0], "GET", "/berth/v1/nodes").json()
    assert listed["clustered"] is True, listed
    mine = {}
    for srv in servers:
        me = [n for n in native(srv, "GET", "/berth/v1/nodes").json()["nodes"] if n["thisNode"]]
        assert len(me) == 1, me
        mine[srv.url] = me[0]["nodeId"]
    return [mine[s.url] for s in servers]


def alive(servers) -> list:
    return [s for s in servers if s.proc is not None and s.proc.poll() is None]


def owners(servers, runtime_id: str) -> dict:
    """session id -> index of the node whose sandbox runs it. The list of any node gathers
    every node's sessions, each with the node running it; every live node lists the same."""
    index = {}
    for i, srv in enumerate(servers):
        if srv in alive(servers):
            me = [n for n in native(srv, "GET", "/berth/v1/nodes").json()["nodes"] if n["thisNode"]]
            index[me[0]["nodeId"]] = i
    lists = []
    for srv in alive(servers):
        listed = native(srv, "GET", "/berth/v1/sessions", query=f"runtime={runtime_id}").json()
        assert listed["unreachableNodes"] == [], listed
        out = {}
        for s in listed["sessions"]:
            assert s["sessionId"] not in out, f"session {s['sessionId']} runs on two nodes"
            out[s["sessionId"]] = index[s["nodeId"]]
        lists.append(out)
    assert all(other == lists[0] for other in lists), lists
    return lists[0]


@pytest.fixture(scope="module")
def probe(nodes):
    return deploy_agent(nodes[0].client("bedrock-agentcore-control"), artifact_s3(nodes), "probe")


def test_nodes_are_listed_with_their_state_and_health_probes_answer(nodes):
    ids = node_ids(nodes)
    assert len(set(ids)) == 3
    listed = native(nodes[1], "GET", "/berth/v1/nodes").json()["nodes"]
    assert {n["nodeId"] for n in listed} >= set(ids)
    for n in listed:
        if n["nodeId"] in ids:
            assert n["alive"] and not n["draining"], n
            assert n["address"].startswith("http://127.0.0.1:"), n
    done = run_cli(nodes[2], "nodes", "list")
    assert done.returncode == 0, done.stderr
    for i in ids:
        assert i in done.stdout
    import urllib.request

    for srv in nodes:
        for path in ("/berth/v1/health/live", "/berth/v1/health/ready"):
            with urllib.request.urlopen(srv.url + path, timeout=10) as resp:
                assert resp.status == 200


def test_a_session_keeps_its_sandbox_through_every_node(nodes, probe):
    arn, rid = probe["agentRuntimeArn"], probe["agentRuntimeId"]
    rr = RoundRobin(nodes)
    sessions = [new_session_id(f"rr{i}") for i in range(6)]
    tokens = {}
    for _ in range(3):
        for sid in sessions:
            answer = invoke_json(rr.next(), arn, sid, {"op": "whoami"})
            assert answer["sessionId"] == sid
            tokens.setdefault(sid, set()).add(answer["token"])
    # One sandbox per session, whichever node the calls reached.
    assert all(len(t) == 1 for t in tokens.values()), tokens
    placed = owners(nodes, rid)
    assert set(sessions) <= set(placed), placed
    # The first call of each session started it where it landed: round-robin spread them.
    assert len({placed[s] for s in sessions}) == 3, placed


def test_a_session_is_read_and_stopped_through_any_node(nodes, probe):
    arn, rid = probe["agentRuntimeArn"], probe["agentRuntimeId"]
    sid = new_session_id("admin")
    invoke_json(nodes[0].client("bedrock-agentcore"), arn, sid, {"op": "print", "text": "from-node-0"})
    assert owners(nodes, rid)[sid] == 0
    # Its log through another node (read where the session runs).
    log = poll(
        lambda: native(nodes[1], "GET", f"/berth/v1/runtimes/{rid}/logs", query=f"session={sid}"),
        lambda r: r.status == 200 and b"from-node-0" in r.body,
        timeout=30,
        what="the session's log through another node",
    )
    assert log.headers["content-type"].startswith("text/plain"), log.headers
    # Stopped through the third node.
    stopped = native(nodes[2], "DELETE", f"/berth/v1/runtimes/{rid}/sessions/{sid}")
    assert stopped.status == 200, stopped
    assert stopped.json()["status"] == "STOPPED"
    assert sid not in owners(nodes, rid)


def test_a_stream_through_a_node_that_does_not_own_the_session_is_not_buffered(nodes, probe):
    arn = probe["agentRuntimeArn"]
    sid = new_session_id("sse")
    first = nodes[0].client("bedrock-agentcore")
    invoke_json(first, arn, sid, {"op": "whoami"})
    count, interval = 6, 0.3
    resp = invoke(
        nodes[1].client("bedrock-agentcore"), arn, sid,
        {"op": "stream", "count": count, "interval": interval},
    )
    assert resp["statusCode"] == 200
    assert resp["contentType"].startswith("text/event-stream")
    assert resp["runtimeSessionId"] == sid
    events = read_sse(resp["response"], chunk_size=16)
    assert [e["index"] for _, e in events] == list(range(count))
    arrivals = [t for t, _ in events]
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    # Same rule as the direct stream test: a buffering relay would deliver them together.
    assert sum(g >= interval / 2 for g in gaps) >= (len(gaps) + 1) // 2, gaps
    assert owners(nodes, probe["agentRuntimeId"])[sid] == 0


def test_a_websocket_through_a_node_that_does_not_own_the_session_reaches_its_sandbox(nodes):
    from test_websocket import connect, echo_round_trip, presigned, connect_presigned, signed

    wsecho = deploy_agent(nodes[0].client("bedrock-agentcore-control"), artifact_s3(nodes), "wsecho")
    arn, rid = wsecho["agentRuntimeArn"], wsecho["agentRuntimeId"]
    session = new_session_id("ws")
    first = nodes[0].client("bedrock-agentcore")
    assert invoke_json(first, arn, session, {"op": "whoami"}) == {"session": session, "ws_session": None}
    assert owners(nodes, rid)[session] == 0
    # Signed headers through the second node, a presigned URL through the third: both bridged
    # to the owner's sandbox, which keeps the session.
    url, headers = signed(nodes[1], arn, session)
    with connect(url, additional_headers=headers, open_timeout=60) as ws:
        assert ws.response.headers["X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"] == session
        echo_round_trip(ws)
    with connect_presigned(nodes[2], presigned(nodes[2], arn, session), open_timeout=60) as ws:
        echo_round_trip(ws)
    assert invoke_json(first, arn, session, {"op": "whoami"}) == {"session": session, "ws_session": session}
    assert owners(nodes, rid) == {session: 0}


def test_a_forwarding_header_without_a_valid_proof_is_refused(nodes, probe):
    resp = native(
        nodes[0], "POST",
        f"/runtimes/{probe['agentRuntimeId']}/invocations",
        body=b"{}",
        headers={
            "x-berth-forwarded-by": "someone:00",
            "x-amzn-bedrock-agentcore-runtime-session-id": new_session_id("forge"),
        },
    )
    assert resp.status == 403, resp
    assert resp.headers.get("x-amzn-errortype", "").startswith("AccessDeniedException"), resp.headers


def bucket(session_id: str) -> int:
    """Berth's hash bucket of a session id (0..9999), as test_traffic.py computes it."""
    return int.from_bytes(hashlib.sha256(session_id.encode()).digest()[:8], "big") % 10_000


def flaky_runtime(nodes) -> tuple[str, str]:
    """agents/flaky with versions v1 and v2 (never failing) and endpoint `prod` on v1."""
    control, s3 = nodes[0].client("bedrock-agentcore-control"), artifact_s3(nodes)
    healthy = {"FAIL_PERCENT": "0"}
    first = deploy_agent(control, s3, "flaky", environmentVariables={"LABEL": "v1", **healthy})
    rid = first["agentRuntimeId"]
    location = upload_artifact(s3, agent_zip("flaky"), "flaky")
    control.update_agent_runtime(
        agentRuntimeId=rid, **update_args(location, environmentVariables={"LABEL": "v2", **healthy})
    )
    wait_status(control, rid, "2")
    control.create_agent_runtime_endpoint(agentRuntimeId=rid, name="prod", agentRuntimeVersion="1")
    wait_endpoint(control, rid, "prod", live_version="1")
    return rid, first["agentRuntimeArn"]


def label(client, arn: str, sid: str) -> str:
    return invoke_json(client, arn, sid, {}, qualifier="prod")["label"]


def test_a_90_10_split_holds_across_nodes(nodes):
    rid, arn = flaky_runtime(nodes)
    put = native(
        nodes[1], "PUT", f"/berth/v1/runtimes/{rid}/endpoints/prod/traffic",
        body=json.dumps({"weights": {"1": 90, "2": 10}}).encode(),
    )
    assert put.status == 200, put
    rr = RoundRobin(nodes)
    sessions = [new_session_id("split") for _ in range(30)]
    # Make sure both sides of the split are exercised.
    while not any(bucket(s) >= 9000 for s in sessions):
        sessions.append(new_session_id("split"))
    for sid in sessions:
        want = "v1" if bucket(sid) < 9000 else "v2"
        # Every node answers the session's version, whichever started it.
        got = {label(rr.next(), arn, sid) for _ in range(3)}
        assert got == {want}, (sid, bucket(sid), got)
        # Stopped through whichever node comes next (forwarded to the owner): the sandbox goes.
        rr.next().stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=sid, qualifier="prod")
    assert not set(sessions) & set(owners(nodes, rid)), owners(nodes, rid)


def test_a_rollout_advances_under_exactly_one_controller(nodes):
    rid, arn = flaky_runtime(nodes)
    done = run_cli(
        nodes[2], "rollout", "start", rid, "--endpoint", "prod", "--to-version", "2",
        "--steps", "25,50,100", "--interval", "5", "--min-invocations", "4",
        "--max-error-rate", "0.1", "--max-p99-ms", "5000",
    )
    assert done.returncode == 0, done.stderr
    rr = RoundRobin(nodes)
    deadline = time.monotonic() + 240
    while True:
        status = native(
            nodes[0], "GET", f"/berth/v1/runtimes/{rid}/endpoints/prod/rollouts"
        ).json()["rollout"]
        if status["state"] in ("COMPLETED", "ABORTED"):
            break
        assert time.monotonic() < deadline, status
        sid = new_session_id("drive")
        client = rr.next()
        for _ in range(2):
            label(client, arn, sid)
    assert status["state"] == "COMPLETED", json.dumps(status, indent=1)
    entries = native(
        nodes[1], "GET", "/berth/v1/audit", query=f"resource={rid}&limit=1000"
    ).json()["entries"]
    actions = [(e["action"], e["actor"]) for e in entries]
    assert ("rollout.start", ACCESS_KEY_ID) in actions
    # Two advances and one completion: not one per node.
    assert actions.count(("rollout.advance", "rollout-controller")) == 2, actions
    assert actions.count(("rollout.complete", "rollout-controller")) == 1, actions
    leases = native(nodes[0], "GET", "/berth/v1/nodes").json()["leases"]
    holders = [l["nodeId"] for l in leases if l["job"] == "rollout-controller"]
    assert len(holders) == 1, leases


def test_memory_written_through_one_node_is_read_through_another(nodes):
    controls = [s.client("bedrock-agentcore-control") for s in nodes]
    datas = [s.client("bedrock-agentcore") for s in nodes]
    memory = controls[0].create_memory(
        name=f"nodes_{uuid.uuid4().hex[:8]}", eventExpiryDuration=7
    )["memory"]
    mid = memory["id"]
    deadline = time.monotonic() + 60
    while controls[1].get_memory(memoryId=mid)["memory"]["status"] != "ACTIVE":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    from datetime import datetime, timezone

    datas[1].create_event(
        memoryId=mid, actorId="alice", sessionId="sess-1",
        eventTimestamp=datetime.now(timezone.utc),
        payload=[{"conversational": {"content": {"text": "the launch code is tangerine"}, "role": "USER"}}],
    )
    events = datas[2].list_events(memoryId=mid, actorId="alice", sessionId="sess-1")["events"]
    assert [e["payload"][0]["conversational"]["content"]["text"] for e in events] == [
        "the launch code is tangerine"
    ]
    datas[0].batch_create_memory_records(
        memoryId=mid,
        records=[{
            "requestIdentifier": "r1",
            "namespaces": ["/facts/alice/"],
            "content": {"text": "alice prefers tangerine sorbet"},
            "timestamp": datetime.now(timezone.utc),
        }],
    )
    found = datas[2].retrieve_memory_records(
        memoryId=mid, namespace="/facts/alice/", searchCriteria={"searchQuery": "tangerine sorbet"}
    )["memoryRecordSummaries"]
    assert [r["content"]["text"] for r in found] == ["alice prefers tangerine sorbet"]


def test_a_trace_recorded_on_one_node_is_listed_through_the_others(nodes, probe):
    """The trace store is the shared database's (schema `berth_trace`), not each node's
    `traces.db`: Berth's invocation span of a call served by the first node is listed and read
    through the second and third nodes' traces API."""
    arn = probe["agentRuntimeArn"]
    sid = new_session_id("traced")
    invoke_json(nodes[0].client("bedrock-agentcore"), arn, sid, {"op": "whoami"})
    assert owners(nodes, probe["agentRuntimeId"])[sid] == 0
    for srv in nodes[1:]:
        deadline = time.monotonic() + 30
        while True:
            resp = native(srv, "GET", "/berth/v1/traces", query=f"session={sid}")
            assert resp.status == 200, resp
            listed = resp.json()["traces"]
            if listed:
                break
            assert time.monotonic() < deadline, f"{srv.url} never listed the trace of {sid}"
            time.sleep(0.1)
        assert [t["rootName"] for t in listed] == ["InvokeAgentRuntime"], listed
        assert listed[0]["runtimeId"] == probe["agentRuntimeId"]
        spans = native(srv, "GET", f"/berth/v1/traces/{listed[0]['traceId']}").json()
        assert "InvokeAgentRuntime" in [s["name"] for s in spans["spans"]], spans


def test_a_drained_node_takes_no_new_sessions_and_keeps_its_live_ones(nodes, probe):
    import urllib.error
    import urllib.request

    arn, rid = probe["agentRuntimeArn"], probe["agentRuntimeId"]
    ids = node_ids(nodes)
    clients = [s.client("bedrock-agentcore") for s in nodes]
    live = new_session_id("kept")
    token = invoke_json(clients[1], arn, live, {"op": "whoami"})["token"]
    assert owners(nodes, rid)[live] == 1
    done = run_cli(nodes[0], "nodes", "drain", ids[1])
    assert done.returncode == 0, done.stderr
    # The drained node learns it from the store within a lease renewal: poll its probe.
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(nodes[1].url + "/berth/v1/health/ready", timeout=10)
        except urllib.error.HTTPError as err:
            assert err.code == 503
            assert err.read() == b"draining\n"
            break
        assert time.monotonic() < deadline, "node 1 never reported draining"
        time.sleep(0.1)
    assert "draining" in run_cli(nodes[2], "nodes", "list").stdout
    # New sessions reaching it start elsewhere; its live session stays where it is.
    fresh = [new_session_id("after-drain") for _ in range(3)]
    for sid in fresh:
        invoke_json(clients[1], arn, sid, {"op": "whoami"})
    placed = owners(nodes, rid)
    assert all(placed[sid] != 1 for sid in fresh), placed
    assert invoke_json(clients[1], arn, live, {"op": "whoami"})["token"] == token
    assert invoke_json(clients[2], arn, live, {"op": "whoami"})["token"] == token
    assert owners(nodes, rid)[live] == 1
    done = run_cli(nodes[0], "nodes", "drain", ids[1], "--undo")
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(nodes[1].url + "/berth/v1/health/ready", timeout=10):
                break
        except urllib.error.HTTPError:
            assert time.monotonic() < deadline, "node 1 stayed draining"
            time.sleep(0.1)


def test_a_killed_nodes_sessions_start_afresh_elsewhere_and_others_are_untouched(nodes, probe):
    arn, rid = probe["agentRuntimeArn"], probe["agentRuntimeId"]
    clients = [s.client("bedrock-agentcore") for s in nodes]
    on_victim = new_session_id("victim")
    on_survivor = new_session_id("survivor")
    before_victim = invoke_json(clients[2], arn, on_victim, {"op": "whoami"})["token"]
    before_survivor = invoke_json(clients[0], arn, on_survivor, {"op": "whoami"})["token"]
    placed = owners(nodes, rid)
    assert (placed[on_victim], placed[on_survivor]) == (2, 0), placed
    # A build the victim starts and never finishes (killed right after the create answers,
    # long before a Python build can end) is taken over by a live node once its lease lapses.
    location = upload_artifact(artifact_s3(nodes), agent_zip("probe"), "probe")
    orphan = nodes[2].client("bedrock-agentcore-control").create_agent_runtime(
        **runtime_args(location, unique_name("orphan"))
    )["agentRuntimeId"]

    nodes[2].kill()
    # Until the dead node's lease lapses its sessions' calls are refused as unavailable (the
    # client retries); after it, the next call starts the session on a live node.
    deadline = time.monotonic() + 30
    while True:
        try:
            after = invoke_json(clients[1], arn, on_victim, {"op": "whoami"})
            break
        except ClientError as err:
            assert err.response["Error"]["Code"] == "ServiceUnavailableException", err.response
            assert time.monotonic() < deadline, "the dead node's session never moved"
            time.sleep(0.2)
    assert after["token"] != before_victim
    assert owners(nodes, rid)[on_victim] == 1
    # The other node's session kept its sandbox, through either live node.
    for c in clients[:2]:
        assert invoke_json(c, arn, on_survivor, {"op": "whoami"})["token"] == before_survivor
    listed = {n["nodeId"]: n for n in native(nodes[0], "GET", "/berth/v1/nodes").json()["nodes"]}
    assert sum(1 for n in listed.values() if not n["alive"]) >= 1
    wait_status(nodes[0].client("bedrock-agentcore-control"), orphan, "1")
    builders = [
        i
        for i, srv in enumerate(nodes[:2])
        for line in srv.log_path.read_text().splitlines()
        if "building" in line and orphan in line
    ]
    assert builders, "no live node took over the dead node's build"
