"""Traffic splits with session affinity, routing rules, drain, rollback, rollouts, per-version
health and the audit log, end to end through real sandboxes.

Runtimes run agents/flaky: each version gets its own `LABEL` (so an answer says which version
served it) and `FAIL_PERCENT` (0 for healthy versions, 30 for the failing one). Configuration
goes through boto3 (`UpdateAgentRuntimeEndpoint`...), the native API and the `berth` CLI.

The module's server compresses rollout time by configuration (`--rollout-second-ms 20`: a
5-second step interval lasts 100 ms) and flushes health every 50 ms; nothing here sleeps to
wait for the server, it polls the state it waits for with a deadline.

The routing-level acceptance (5 000 sessions on a 90/10 split within 2 points, follow-ups
across a restart) is crates/control/tests/traffic.rs; here the same hash decides where a
handful of real sessions go, so the test can say exactly which version each one must reach.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
import urllib.request

import pytest
from berth_harness import (
    ACCESS_KEY_ID,
    STATE_TIMEOUT,
    BerthServer,
    agent_zip,
    assert_status,
    deploy_agent,
    invoke,
    live_session,
    native,
    new_session_id,
    run_cli,
    update_args,
    upload_artifact,
    wait_endpoint,
    wait_session_gone,
    wait_status,
)
from botocore.exceptions import ClientError

pytestmark = pytest.mark.build

TRAFFIC_ARGS = (
    "--rollout-second-ms",
    "20",
    "--traffic-tick-ms",
    "50",
    "--health-bucket-ms",
    "100",
    "--metrics-listen",
    "127.0.0.1:0",
)
HEALTHY = {"FAIL_PERCENT": "0"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server for this module, restarted in place by the restart test."""
    root = tmp_path_factory.mktemp("berth-traffic")
    srv = BerthServer(root / "data", root / "berth.log", args=TRAFFIC_ARGS)
    srv.start()
    yield srv
    srv.stop()
    srv.reap_group()


def clients(srv: BerthServer):
    """Fresh boto3 clients (a restarted server listens on a new port)."""
    return srv.client("bedrock-agentcore-control"), srv.client("bedrock-agentcore")


def bucket(session_id: str) -> int:
    """Berth's hash bucket of a session id (0..9999): the first 8 bytes of its SHA-256."""
    return int.from_bytes(hashlib.sha256(session_id.encode()).digest()[:8], "big") % 10_000


def sessions_below(threshold: int, count: int, tag: str) -> list[str]:
    """`count` fresh session ids whose bucket is below `threshold`."""
    out = []
    while len(out) < count:
        sid = new_session_id(tag)
        if bucket(sid) < threshold:
            out.append(sid)
    return out


def sessions_at_or_above(threshold: int, count: int, tag: str) -> list[str]:
    out = []
    while len(out) < count:
        sid = new_session_id(tag)
        if bucket(sid) >= threshold:
            out.append(sid)
    return out


def make_runtime(srv: BerthServer, envs: list[dict]) -> tuple[str, str]:
    """A runtime of agents/flaky with one version per entry of `envs` (LABEL v1, v2, ...)
    and an endpoint `prod` on version 1. Returns (runtime id, runtime ARN)."""
    control, _ = clients(srv)
    s3 = srv.s3_client()
    first = deploy_agent(
        control, s3, "flaky", environmentVariables={"LABEL": "v1", **envs[0]}
    )
    rid = first["agentRuntimeId"]
    location = upload_artifact(s3, agent_zip("flaky"), "flaky")
    for number, env in enumerate(envs[1:], start=2):
        args = update_args(location, environmentVariables={"LABEL": f"v{number}", **env})
        control.update_agent_runtime(agentRuntimeId=rid, **args)
        wait_status(control, rid, str(number))
    control.create_agent_runtime_endpoint(agentRuntimeId=rid, name="prod", agentRuntimeVersion="1")
    wait_endpoint(control, rid, "prod", live_version="1")
    return rid, first["agentRuntimeArn"]


def call(srv: BerthServer, arn: str, session: str, **kwargs):
    """Invoke through `prod`; returns (HTTP status of the agent's answer, its JSON body)."""
    _, data = clients(srv)
    try:
        resp = invoke(data, arn, session, {}, qualifier="prod", **kwargs)
    except ClientError as err:
        # The agent's 5xx reaches boto3 as an error; the caller looks at the status.
        return err.response["ResponseMetadata"]["HTTPStatusCode"], err.response
    return resp["statusCode"], json.loads(resp["response"].read())


def label(srv: BerthServer, arn: str, session: str, **kwargs) -> str:
    status, body = call(srv, arn, session, **kwargs)
    assert status == 200, body
    return body["label"]


def stop(srv: BerthServer, arn: str, session: str) -> None:
    _, data = clients(srv)
    data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session, qualifier="prod")


def api(srv: BerthServer, method: str, path: str, body: dict | None = None) -> dict:
    resp = native(
        srv, method, path, body=json.dumps(body).encode() if body is not None else b""
    )
    assert 200 <= resp.status < 300, resp
    return resp.json()


def ep_path(rid: str) -> str:
    return f"/berth/v1/runtimes/{rid}/endpoints/prod"


def cli(srv: BerthServer, *args: str):
    done = run_cli(srv, *args)
    assert done.returncode == 0, f"berth {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def audit_actions(srv: BerthServer, rid: str) -> list[tuple[str, str]]:
    resp = native(srv, "GET", "/berth/v1/audit", query=f"resource={rid}&limit=1000")
    assert resp.status == 200, resp
    return [(e["action"], e["actor"]) for e in resp.json()["entries"]]


def test_update_endpoint_from_boto3_moves_to_100_percent_and_live_sessions_drain(server):
    rid, arn = make_runtime(server, [HEALTHY, HEALTHY])
    control, _ = clients(server)
    api(server, "PUT", f"{ep_path(rid)}/traffic", {"weights": {"1": 50, "2": 50}})
    ep = control.get_agent_runtime_endpoint(agentRuntimeId=rid, endpointName="prod")
    assert (ep["liveVersion"], ep["targetVersion"]) == ("1", "2")

    on_one = sessions_below(5000, 1, "one")[0]
    on_two = sessions_at_or_above(5000, 1, "two")[0]
    assert label(server, arn, on_one) == "v1"
    assert label(server, arn, on_two) == "v2"

    moved = control.update_agent_runtime_endpoint(
        agentRuntimeId=rid, endpointName="prod", agentRuntimeVersion="2"
    )
    assert_status(moved, 202)
    assert (moved["liveVersion"], moved["targetVersion"]) == ("2", "2")
    ep = control.get_agent_runtime_endpoint(agentRuntimeId=rid, endpointName="prod")
    assert (ep["liveVersion"], ep["targetVersion"], ep["status"]) == ("2", "2", "READY")

    # New sessions all go to version 2; the live session on version 1 finishes there.
    for sid in sessions_below(5000, 3, "new"):
        assert label(server, arn, sid) == "v2"
    assert label(server, arn, on_one) == "v1"
    traffic = api(server, "GET", f"{ep_path(rid)}/traffic")
    assert traffic["weights"] == [{"version": 2, "weight": 100}]
    assert [d["version"] for d in traffic["draining"]] == [1]
    assert ("UpdateAgentRuntimeEndpoint", ACCESS_KEY_ID) in audit_actions(server, rid)


def test_split_sessions_keep_their_version_after_their_sandbox_ends_and_across_a_restart(server):
    rid, arn = make_runtime(server, [HEALTHY, HEALTHY, HEALTHY])
    cli(server, "traffic", "set", rid, "--endpoint", "prod", "1=70", "2=30")
    # The hash decides: buckets below 7000 go to version 1, the rest to version 2.
    first = {sid: "v1" for sid in sessions_below(7000, 4, "a")}
    first.update({sid: "v2" for sid in sessions_at_or_above(7000, 4, "b")})
    for sid, want in first.items():
        assert label(server, arn, sid) == want, sid
        stop(server, arn, sid)
    shown = api(server, "GET", f"{ep_path(rid)}/traffic")
    assert {s["version"]: s["assigned"] for s in shown["sessions"]} == {1: 4, 2: 4}

    server.stop()
    server.start()
    # After the restart every new session goes to version 3, but the sessions routed before
    # (whose sandboxes are long gone) come back on their own versions.
    cli(server, "traffic", "set", rid, "--endpoint", "prod", "3=100", "--drain-seconds", "3600")
    for sid, want in first.items():
        assert label(server, arn, sid) == want, sid
    assert label(server, arn, new_session_id("fresh")) == "v3"


def test_a_drain_deadline_stops_the_sessions_left_on_the_old_version(server):
    rid, arn = make_runtime(server, [HEALTHY, HEALTHY])
    sid = new_session_id("drained")
    assert label(server, arn, sid) == "v1"
    assert live_session(server, rid, sid)["version"] == 1
    # 5 seconds of drain time: 100 ms on this server.
    api(server, "PUT", f"{ep_path(rid)}/traffic", {"weights": {"2": 100}, "drainSeconds": 5})
    wait_session_gone(server, rid, sid, timeout=STATE_TIMEOUT)
    # The drain also ended the session's assignment: the same id now starts on version 2.
    assert label(server, arn, sid) == "v2"
    assert api(server, "GET", f"{ep_path(rid)}/traffic")["draining"] == []
    assert ("drain.expire", "rollout-controller") in audit_actions(server, rid)


def test_rules_send_a_user_to_a_named_version_before_the_weights(server):
    rid, arn = make_runtime(server, [HEALTHY, HEALTHY])
    added = cli(server, "traffic", "rule", "add", rid, "--endpoint", "prod", "--user-id", "alice", "--version", "2")
    assert "added rule rule-" in added.stdout
    listed = cli(server, "traffic", "rule", "list", rid, "--endpoint", "prod")
    assert "user id = alice" in listed.stdout
    assert label(server, arn, new_session_id("alice"), runtimeUserId="alice") == "v2"
    assert label(server, arn, new_session_id("bob"), runtimeUserId="bob") == "v1"
    assert label(server, arn, new_session_id("anon")) == "v1"
    ep = clients(server)[0].get_agent_runtime_endpoint(agentRuntimeId=rid, endpointName="prod")
    assert ep["liveVersion"] == "1"


def test_rollback_returns_new_sessions_to_the_previous_version_in_one_call(server):
    rid, arn = make_runtime(server, [HEALTHY, HEALTHY])
    control, _ = clients(server)
    control.update_agent_runtime_endpoint(agentRuntimeId=rid, endpointName="prod", agentRuntimeVersion="2")
    assert label(server, arn, new_session_id("before")) == "v2"
    started = time.monotonic()
    out = cli(server, "rollback", rid, "--endpoint", "prod")
    assert "new sessions now go to version 1" in out.stdout
    assert label(server, arn, new_session_id("after")) == "v1"
    assert time.monotonic() - started < 30
    ep = control.get_agent_runtime_endpoint(agentRuntimeId=rid, endpointName="prod")
    assert (ep["liveVersion"], ep["targetVersion"]) == ("1", "1")
    assert ("rollback", ACCESS_KEY_ID) in audit_actions(server, rid)


def drive(srv: BerthServer, arn: str, rid: str, invocations_per_session: int, timeout: float) -> dict:
    """Open sessions through `prod` (each invoked a few times, then stopped) until the rollout
    ends; returns its final status."""
    deadline = time.monotonic() + timeout
    while True:
        status = api(srv, "GET", f"{ep_path(rid)}/rollouts")["rollout"]
        if status["state"] in ("COMPLETED", "ABORTED"):
            return status
        assert time.monotonic() < deadline, f"rollout did not end in {timeout} s: {status}"
        sid = new_session_id("drive")
        for _ in range(invocations_per_session):
            call(srv, arn, sid)
        stop(srv, arn, sid)


def test_a_healthy_rollout_walks_every_step_to_100_percent_by_itself(server):
    rid, arn = make_runtime(server, [HEALTHY, HEALTHY])
    out = cli(
        server, "rollout", "start", rid, "--endpoint", "prod", "--to-version", "2",
        "--steps", "25,50,100", "--interval", "5", "--min-invocations", "4",
        "--max-error-rate", "0.1", "--max-p99-ms", "5000",
    )
    assert "RUNNING at step 1 (25%)" in out.stdout
    ep = clients(server)[0].get_agent_runtime_endpoint(agentRuntimeId=rid, endpointName="prod")
    assert (ep["liveVersion"], ep["targetVersion"]) == ("1", "2")
    # The stable version's health is asserted below, so it must have had a session: one whose
    # bucket the 25% step gives version 1 (buckets below 7500). `drive`'s ids are random and
    # the rollout advances as soon as the canary has its invocations, so left to chance every
    # session lands on version 2 about once in 64 runs (0.25^2 at 25%, then 0.5^2 at 50%).
    # The step cannot advance before this: the canary has had no invocation yet.
    on_stable = sessions_below(7500, 1, "stable")[0]
    assert label(server, arn, on_stable) == "v1"
    stop(server, arn, on_stable)

    final = drive(server, arn, rid, invocations_per_session=2, timeout=240)
    assert final["state"] == "COMPLETED", json.dumps(final, indent=1)
    assert final["reason"] == "all steps passed"
    ep = clients(server)[0].get_agent_runtime_endpoint(agentRuntimeId=rid, endpointName="prod")
    assert (ep["liveVersion"], ep["targetVersion"]) == ("2", "2")
    assert label(server, arn, new_session_id("done")) == "v2"
    actions = audit_actions(server, rid)
    assert ("rollout.start", ACCESS_KEY_ID) in actions
    assert actions.count(("rollout.advance", "rollout-controller")) == 2, actions
    assert ("rollout.complete", "rollout-controller") in actions
    status = cli(server, "rollout", "status", rid, "--endpoint", "prod")
    assert "COMPLETED" in status.stdout

    # Per-version health: the native API and Prometheus, with version labels.
    health = api(server, "GET", f"{ep_path(rid)}/health?seconds=600")
    by_version = {v["version"]: v["summary"] for v in health["versions"]}
    assert by_version[2]["invocations"] >= 8 and by_version[2]["errors"] == 0, by_version
    # Version 1's session was flushed no later than the canary invocations after it, which the
    # completed analysis had to read: no wait is needed.
    assert 1 in by_version and by_version[1]["newSessions"] >= 1, by_version
    assert by_version[2]["p99Ms"] is not None, by_version
    signed = native(server, "GET", "/berth/v1/metrics")
    # OpenMetrics text (prometheus-client writes it; Prometheus scrapes it natively).
    assert signed.status == 200 and signed.headers["content-type"].startswith(
        "application/openmetrics-text"
    ), signed.headers
    assert signed.body.decode().endswith("# EOF\n")
    assert f'berth_invocations_total{{runtime_id="{rid}",endpoint="prod",version="2"}}' in signed.body.decode()
    # The latest start's listener (the restart test restarted this server).
    urls = re.findall(r"prometheus metrics on (http://\S+/metrics)", server.log_path.read_text())
    assert urls, "the metrics listener line is missing from the log"
    with urllib.request.urlopen(urls[-1], timeout=10) as resp:
        text = resp.read().decode()
    assert f'berth_invocation_duration_seconds_count{{runtime_id="{rid}",endpoint="prod",version="2"}}' in text


def test_a_version_failing_30_percent_is_aborted_by_the_analysis_with_no_operator(server):
    rid, arn = make_runtime(server, [HEALTHY, {"FAIL_PERCENT": "30"}])
    cli(
        server, "rollout", "start", rid, "--endpoint", "prod", "--to-version", "2",
        "--steps", "50,100", "--interval", "5", "--min-invocations", "6",
        "--max-error-rate", "0.1",
    )
    final = drive(server, arn, rid, invocations_per_session=3, timeout=240)
    assert final["state"] == "ABORTED", final
    assert "error-rate" in final["reason"], final
    assert final["analysis"]["canary"]["errorRate"] > 0.25, final["analysis"]
    # New sessions are back on the stable version at once; the canary drains.
    for _ in range(4):
        assert label(server, arn, new_session_id("after")) == "v1"
    ep = clients(server)[0].get_agent_runtime_endpoint(agentRuntimeId=rid, endpointName="prod")
    assert (ep["liveVersion"], ep["targetVersion"]) == ("1", "1")
    traffic = api(server, "GET", f"{ep_path(rid)}/traffic")
    assert [d["version"] for d in traffic["draining"]] == [2]
    assert ("rollout.abort", "rollout-controller") in audit_actions(server, rid)


def test_audit_verify_detects_an_edited_and_a_deleted_entry(berth_server):
    # No sandbox needed: the mutations are audited when they are accepted.
    srv = berth_server(name="audit")
    control, _ = clients(srv)
    created = control.create_agent_runtime(
        agentRuntimeName=f"audit_{new_session_id('x')[2:14]}",
        agentRuntimeArtifact={"codeConfiguration": {
            "code": {"s3": {"bucket": "nowhere", "prefix": "missing.zip"}},
            "runtime": "PYTHON_3_12", "entryPoint": ["agent.py"]}},
        roleArn="arn:aws:iam::000000000000:role/r",
    )
    arn = created["agentRuntimeArn"]
    control.tag_resource(resourceArn=arn, tags={"team": "a"})
    control.tag_resource(resourceArn=arn, tags={"team": "b"})
    ok = cli(srv, "audit", "--verify")
    assert "3 entries, hash chain verified" in ok.stdout
    listed = cli(srv, "audit", "--resource", arn)
    assert "CreateAgentRuntime" in listed.stdout and ACCESS_KEY_ID in listed.stdout

    db = srv.data_dir / "berth.db"

    def tamper(sql: str) -> None:
        # Edited behind the server's back, as an attacker with the file would.
        srv.stop()
        conn = sqlite3.connect(db)
        try:
            with conn:
                assert conn.execute(sql).rowcount == 1
        finally:
            conn.close()
        srv.start()

    tamper("UPDATE audit_log SET after = replace(after, '\"b\"', '\"c\"') WHERE seq = 3")
    bad = run_cli(srv, "audit", "--verify")
    assert bad.returncode != 0, bad.stdout
    assert "entry 3 was edited" in bad.stderr, bad.stderr

    tamper("DELETE FROM audit_log WHERE seq = 2")
    bad = run_cli(srv, "audit", "--verify")
    assert bad.returncode != 0
    assert "entry 2 is missing" in bad.stderr, bad.stderr


def test_traffic_changes_are_refused_on_default_and_validated(server):
    rid, _ = make_runtime(server, [HEALTHY])
    resp = native(
        server, "PUT", f"/berth/v1/runtimes/{rid}/endpoints/DEFAULT/traffic",
        body=json.dumps({"weights": {"1": 100}}).encode(),
    )
    assert resp.status == 400 and resp.error_type == "ValidationException", resp
    resp = native(server, "PUT", f"{ep_path(rid)}/traffic", body=json.dumps({"weights": {"1": 60}}).encode())
    assert resp.status == 400 and b"sum to 100" in resp.body, resp
    resp = native(server, "PUT", f"{ep_path(rid)}/traffic", body=json.dumps({"weights": {"1": 50, "7": 50}}).encode())
    assert resp.status == 400, resp
