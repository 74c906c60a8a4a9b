"""Durability: what the server acknowledged survives SIGKILL, and nothing half-written shows.

The crash scenario runs once per module (a private server, its own data dir): a client
thread creates and updates runtimes as fast as it can and records every 2xx answer; after
CRASH_AFTER acknowledgements the server gets SIGKILL while requests are still in flight,
then a new server starts on the same data dir and the tests below inspect it.

The runtimes point at an artifact in a bucket that does not exist, so each build fails at
once: the scenario measures the control plane's durability, not build throughput.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field

import pytest
from berth_harness import (
    ROLE_ARN,
    STATE_TIMEOUT,
    TRANSITIONAL_STATUSES,
    BerthServer,
    assert_status,
    code_artifact,
    list_all,
    poll,
    postgres_database,
)

CRASH_AFTER = 100
CRASH_BUCKET = "no-such-bucket-for-crash-tests"


@dataclass
class Ack:
    """One acknowledged (2xx) write and the config it carried."""

    runtime_id: str
    version: str
    description: str
    env: dict


@dataclass
class Workload:
    acks: list[Ack] = field(default_factory=list)
    errors_before_kill: list[str] = field(default_factory=list)
    cut_off_by_kill: bool = False
    reached: threading.Event = field(default_factory=threading.Event)
    killed: threading.Event = field(default_factory=threading.Event)


def _artifact():
    return code_artifact({"bucket": CRASH_BUCKET, "prefix": "missing/deployment_package.zip"})


def _run_workload(client, work: Workload) -> None:
    created: list[str] = []
    for step in itertools.count():
        description = f"step {step}"
        env = {"STEP": str(step), "NONCE": uuid.uuid4().hex}
        try:
            if created and step % 3 == 2:
                runtime_id = created[step % len(created)]
                resp = client.update_agent_runtime(
                    agentRuntimeId=runtime_id,
                    agentRuntimeArtifact=_artifact(),
                    roleArn=ROLE_ARN,
                    description=description,
                    environmentVariables=env,
                )
            else:
                resp = client.create_agent_runtime(
                    agentRuntimeName=f"crash_{step}_{uuid.uuid4().hex[:8]}",
                    agentRuntimeArtifact=_artifact(),
                    roleArn=ROLE_ARN,
                    description=description,
                    environmentVariables=env,
                )
                created.append(resp["agentRuntimeId"])
        except Exception as err:  # connection reset/refused once the server is gone
            if work.killed.is_set():
                work.cut_off_by_kill = True
                return
            work.errors_before_kill.append(f"step {step}: {err!r}")
            if len(work.errors_before_kill) > 20:
                work.reached.set()
                return
            continue
        work.acks.append(Ack(resp["agentRuntimeId"], resp["agentRuntimeVersion"], description, env))
        if len(work.acks) >= CRASH_AFTER:
            work.reached.set()
        if step > 100_000:  # bounded even if the kill never comes
            return


@dataclass
class Crashed:
    server: BerthServer
    control: object
    work: Workload


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def crashed(request, tmp_path_factory):
    """The crash scenario on the embedded SQLite store, then on a real PostgreSQL (a throwaway
    cluster: `berth-pgtest`)."""
    with contextlib.ExitStack() as stack:
        args = ()
        if request.param == "postgres":
            args = ("--store", stack.enter_context(postgres_database()))
        yield from _crash(tmp_path_factory, args)


def _crash(tmp_path_factory, args):
    root = tmp_path_factory.mktemp("crash")
    data_dir = root / "data"
    first = BerthServer(data_dir, root / "before-crash.log", args=args).start()
    second = None
    try:
        client = first.client("bedrock-agentcore-control", read_timeout=15, connect_timeout=2)
        work = Workload()
        thread = threading.Thread(target=_run_workload, args=(client, work), name="crash-workload")
        thread.start()
        reached = work.reached.wait(timeout=90)
        work.killed.set()
        first.kill()
        thread.join(timeout=60)
        assert not thread.is_alive(), "the workload thread did not stop after the kill"
        assert reached, f"only {len(work.acks)} writes acknowledged in 90 s"
        assert not work.errors_before_kill, work.errors_before_kill[:5]
        assert len(work.acks) >= CRASH_AFTER
        assert work.cut_off_by_kill, "the workload was not writing when the server died"

        second = BerthServer(data_dir, root / "after-crash.log", args=args).start()
        yield Crashed(second, second.client("bedrock-agentcore-control"), work)
    finally:
        if second is not None:
            second.stop()
            second.reap_group()
        first.stop()
        first.reap_group()


@pytest.mark.timeout(300)
def test_every_acknowledged_write_survives(crashed):
    control = crashed.control
    latest_acked: dict[str, int] = {}
    for ack in crashed.work.acks:
        got = control.get_agent_runtime(
            agentRuntimeId=ack.runtime_id, agentRuntimeVersion=ack.version
        )
        assert_status(got, 200)
        assert got["agentRuntimeVersion"] == ack.version
        assert got["description"] == ack.description, ack
        assert got["environmentVariables"] == ack.env, ack
        assert got["roleArn"] == ROLE_ARN
        assert got["agentRuntimeArtifact"] == _artifact()
        latest_acked[ack.runtime_id] = max(latest_acked.get(ack.runtime_id, 0), int(ack.version))

    for runtime_id, version in latest_acked.items():
        latest = control.get_agent_runtime(agentRuntimeId=runtime_id)
        # A write in flight at the kill may or may not have landed; nothing acknowledged is lost.
        assert int(latest["agentRuntimeVersion"]) >= version, (runtime_id, version, latest)


@pytest.mark.timeout(300)
def test_listing_after_crash_has_no_half_written_entries(crashed):
    control = crashed.control
    pages = list_all(control.list_agent_runtimes, "agentRuntimes", page_size=7)
    items = [item for page in pages for item in page]
    ids = [item["agentRuntimeId"] for item in items]
    assert len(ids) == len(set(ids)), "a runtime is listed twice"
    assert {ack.runtime_id for ack in crashed.work.acks} <= set(ids)

    for item in items:
        runtime_id = item["agentRuntimeId"]
        got = control.get_agent_runtime(agentRuntimeId=runtime_id)
        assert got["agentRuntimeVersion"] == item["agentRuntimeVersion"], (item, got)
        assert got["agentRuntimeName"] == item["agentRuntimeName"]
        default = control.get_agent_runtime_endpoint(
            agentRuntimeId=runtime_id, endpointName="DEFAULT"
        )
        assert default["agentRuntimeArn"] == item["agentRuntimeArn"]

        versions = [
            v["agentRuntimeVersion"]
            for page in list_all(
                control.list_agent_runtime_versions,
                "agentRuntimes",
                page_size=5,
                agentRuntimeId=runtime_id,
            )
            for v in page
        ]
        # Nothing was deleted, so the versions are exactly 1..latest.
        assert sorted(versions, key=int) == [
            str(n) for n in range(1, int(got["agentRuntimeVersion"]) + 1)
        ]
        for version in versions:
            one = control.get_agent_runtime(agentRuntimeId=runtime_id, agentRuntimeVersion=version)
            assert one["agentRuntimeVersion"] == version


@pytest.mark.timeout(300)
def test_no_version_is_left_in_a_transitional_state(crashed):
    # Builds cut off by the crash must be resumed or failed by the new process, not left
    # CREATING/UPDATING forever. (Every build here fails fast: its artifact does not exist.)
    control = crashed.control
    runtime_versions = {(ack.runtime_id, ack.version) for ack in crashed.work.acks}

    def stuck():
        left = []
        for runtime_id, version in sorted(runtime_versions):
            got = control.get_agent_runtime(agentRuntimeId=runtime_id, agentRuntimeVersion=version)
            if got["status"] in TRANSITIONAL_STATUSES:
                left.append((runtime_id, version, got["status"]))
        return left

    poll(
        stuck,
        lambda left: not left,
        timeout=STATE_TIMEOUT * 2,
        what="builds to settle after the crash",
    )
    for runtime_id, version in list(runtime_versions)[:10]:
        got = control.get_agent_runtime(agentRuntimeId=runtime_id, agentRuntimeVersion=version)
        assert got["status"] in {"CREATE_FAILED", "UPDATE_FAILED"}, got
        assert got.get("failureReason"), got


def test_clean_restart_keeps_state(berth_server, tmp_path):
    data_dir = tmp_path / "restart-data"
    first = berth_server(data_dir, name="first")
    control = first.client("bedrock-agentcore-control")
    created = control.create_agent_runtime(
        agentRuntimeName=f"restart_{uuid.uuid4().hex[:8]}",
        agentRuntimeArtifact=_artifact(),
        roleArn=ROLE_ARN,
        description="before restart",
        tags={"kept": "yes"},
    )
    runtime_id = created["agentRuntimeId"]
    control.update_agent_runtime(
        agentRuntimeId=runtime_id,
        agentRuntimeArtifact=_artifact(),
        roleArn=ROLE_ARN,
        description="v2",
    )
    assert first.stop() == 0, "berth did not exit 0 on SIGTERM:\n" + first.log_tail()

    second = berth_server(data_dir, name="second")
    control = second.client("bedrock-agentcore-control")
    assert control.get_agent_runtime(agentRuntimeId=runtime_id)["description"] == "v2"
    assert (
        control.get_agent_runtime(agentRuntimeId=runtime_id, agentRuntimeVersion="1")["description"]
        == "before restart"
    )
    default = control.get_agent_runtime_endpoint(agentRuntimeId=runtime_id, endpointName="DEFAULT")
    assert default["agentRuntimeArn"] == created["agentRuntimeArn"]
    assert control.list_tags_for_resource(resourceArn=created["agentRuntimeArn"])["tags"] == {
        "kept": "yes"
    }
    # Ids and versions keep counting from where they were.
    again = control.update_agent_runtime(
        agentRuntimeId=runtime_id, agentRuntimeArtifact=_artifact(), roleArn=ROLE_ARN
    )
    assert again["agentRuntimeVersion"] == "3"


def test_sigterm_stops_promptly_and_leaves_no_children(berth_server):
    server = berth_server(name="sigterm")
    control = server.client("bedrock-agentcore-control")
    assert_status(control.list_agent_runtimes(), 200)
    started = time.monotonic()
    code = server.stop()
    assert code == 0, f"exit code {code} on SIGTERM:\n" + server.log_tail()
    assert time.monotonic() - started < 10
    assert not server.reap_group(), "processes of the server outlived it after SIGTERM"


def test_data_dir_is_locked_against_a_second_server(berth_server, tmp_path):
    # Berth's own rule (not AWS): two processes on one data dir would run two supervisors
    # and builders over the same state, so the second must refuse to start.
    data_dir = tmp_path / "shared"
    berth_server(data_dir, name="owner")
    intruder = BerthServer(data_dir, tmp_path / "intruder.log")
    try:
        with pytest.raises(pytest.fail.Exception, match="exited"):
            intruder.start(timeout=30)
    finally:
        intruder.stop()
        intruder.reap_group()
