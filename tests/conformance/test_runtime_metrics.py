"""AgentCore's vended runtime metrics in Berth's Prometheus exposition (README "Prometheus"):
a new session refused by the per-runtime cap counts as a throttle of the version it was routed
to, the live sessions are the ActiveSessionCount gauge, and the invocations are counted per
version. (An agent's 4xx answer as a user error is covered by
crates/runtime/tests/invoker_fake.rs.)
"""

import re

import pytest
from botocore.exceptions import ClientError

from berth_harness import deploy_agent, invoke_json, native, new_session_id

pytestmark = pytest.mark.build


@pytest.fixture(scope="module")
def server(module_server):
    # One sandbox per runtime and no warm spare: a second session is over the cap.
    return module_server("vended", args=("--max-sessions-per-runtime", "1", "--warm-pool", "0"))


def series(text: str, name: str, rid: str) -> dict:
    """`{labels: value}` of one family's series for runtime `rid`."""
    out = {}
    for labels, value in re.findall(rf'^{name}{{([^}}]*runtime_id="{rid}"[^}}]*)}} (\S+)$', text, re.M):
        out[labels] = float(value)
    return out


def test_throttles_active_sessions_and_invocations_per_version(server):
    control, data = server.client("bedrock-agentcore-control"), server.client("bedrock-agentcore")
    probe = deploy_agent(control, server.s3_client(), "probe")
    arn, rid = probe["agentRuntimeArn"], probe["agentRuntimeId"]
    first = new_session_id("vended-1")
    invoke_json(data, arn, first, {"op": "whoami"})
    invoke_json(data, arn, first, {"op": "whoami"})
    with pytest.raises(ClientError) as refused:
        invoke_json(data, arn, new_session_id("vended-2"), {"op": "whoami"})
    assert refused.value.response["Error"]["Code"] == "ServiceQuotaExceededException", refused.value.response

    resp = native(server, "GET", "/berth/v1/metrics")
    assert resp.status == 200, resp
    text = resp.body.decode()
    labels = f'runtime_id="{rid}",endpoint="DEFAULT",version="1"'
    assert series(text, "berth_throttles_total", rid) == {labels: 1.0}, text
    assert series(text, "berth_active_sessions", rid) == {labels: 1.0}, text
    assert series(text, "berth_invocations_total", rid) == {labels: 2.0}, text
    # (berth_new_sessions_total counts sessions when they are routed, which is before the quota
    # check: the refused one is in it too; see README "Prometheus".)
    assert series(text, "berth_user_errors_total", rid) == {labels: 0.0}, text

    # The session ends: the gauge follows.
    data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=first)
    text = native(server, "GET", "/berth/v1/metrics").body.decode()
    assert series(text, "berth_active_sessions", rid) == {}, text
