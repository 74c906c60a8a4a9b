"""InvokeAgentRuntime over WebSocket: `/runtimes/{arn}/ws` bridged to an SDK agent's `/ws`.

The agent is agents/wsecho, a `BedrockAgentCoreApp` with `@app.websocket`. The upgrade requests
are signed by the SDK's own `AgentCoreRuntimeClient` (`generate_ws_connection` for SigV4 headers,
`generate_presigned_url` for the query form). Its URL builder refuses hosts outside AWS
(`get_data_plane_endpoint`), so the test hands it this server's address in place of the AWS
endpoint; everything it signs and sends is its own. The socket is the `websockets` client.
"""

from __future__ import annotations

import socket
from unittest import mock

import boto3
import pytest
from berth_harness import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    access_key_allowing,
    deploy_agent,
    invoke_json,
    new_session_id,
    poll,
)
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

pytestmark = pytest.mark.build

#: What `generate_ws_connection` returns that the websockets client makes itself.
HANDSHAKE = {"host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-version"}


@pytest.fixture(scope="module")
def wsecho(control, s3) -> dict:
    return deploy_agent(control, s3, "wsecho")


def sdk_client(berth, key: tuple = (ACCESS_KEY_ID, SECRET_ACCESS_KEY)):
    from bedrock_agentcore.runtime import AgentCoreRuntimeClient

    session = boto3.Session(
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
        region_name=REGION,
    )
    return AgentCoreRuntimeClient(REGION, session=session)


def endpoint(berth):
    """Stands in for the AWS endpoint in the SDK's URL builder (`https://` is stripped by it)."""
    host = berth.url.split("://", 1)[1]
    return mock.patch(
        "bedrock_agentcore.runtime.agent_core_runtime_client.get_data_plane_endpoint",
        return_value=f"https://{host}",
    )


def signed(
    berth,
    arn: str,
    session: str,
    key: tuple = (ACCESS_KEY_ID, SECRET_ACCESS_KEY),
    endpoint_name: str | None = None,
):
    """`(ws:// URL, headers)` as `generate_ws_connection` makes them."""
    with endpoint(berth):
        url, headers = sdk_client(berth, key).generate_ws_connection(
            arn, session_id=session, endpoint_name=endpoint_name
        )
    headers = {k: v for k, v in headers.items() if k.lower() not in HANDSHAKE}
    return url.replace("wss://", "ws://", 1), headers


def presigned(berth, arn: str, session: str) -> str:
    with endpoint(berth):
        url = sdk_client(berth).generate_presigned_url(arn, session_id=session)
    return url.replace("wss://", "ws://", 1)


def connect_presigned(berth, url: str, **kwargs):
    """Opens a presigned URL. The SDK signs the host without its port (`_presign` signs
    `urlparse(url).hostname`), which is what a client sends to an endpoint on the default port,
    as AWS's are; so the socket goes to Berth's port and the URL is sent without it."""
    host, port = berth.url.split("://", 1)[1].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=60)
    return connect(url.replace(f"{host}:{port}", host, 1), sock=sock, **kwargs)


def echo_round_trip(ws) -> None:
    ws.send("hello, agent")
    assert ws.recv(timeout=30) == "hello, agent"
    blob = bytes(range(256)) * 4
    ws.send(blob)
    assert ws.recv(timeout=30) == blob
    ws.send("ünïcödé ✓")
    assert ws.recv(timeout=30) == "ünïcödé ✓"


def test_signed_headers_round_trip_text_and_binary(berth, data, wsecho):
    arn, session = wsecho["agentRuntimeArn"], new_session_id("ws")
    url, headers = signed(berth, arn, session)
    with connect(url, additional_headers=headers, open_timeout=60) as ws:
        assert ws.response.headers["X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"] == session
        echo_round_trip(ws)
    # The socket ran in the session InvokeAgentRuntime uses, and the agent saw its id.
    seen = invoke_json(data, arn, session, {"op": "whoami"})
    assert seen == {"session": session, "ws_session": session}


def test_presigned_url_round_trip(berth, wsecho):
    arn, session = wsecho["agentRuntimeArn"], new_session_id("ws")
    with connect_presigned(berth, presigned(berth, arn, session), open_timeout=60) as ws:
        assert ws.response.headers["X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"] == session
        echo_round_trip(ws)


def test_a_bad_signature_is_refused_before_the_upgrade(berth, wsecho):
    arn, session = wsecho["agentRuntimeArn"], new_session_id("ws")
    url, headers = signed(berth, arn, session)
    auth = headers["Authorization"]
    flipped = "0" if auth[-1] != "0" else "1"
    headers["Authorization"] = auth[:-1] + flipped
    with pytest.raises(InvalidStatus) as refused:
        with connect(url, additional_headers=headers, open_timeout=60):
            pass
    response = refused.value.response
    assert response.status_code == 403
    assert b"InvalidSignatureException" in response.body or (
        response.headers.get("x-amzn-ErrorType", "").startswith("InvalidSignatureException")
    )
    # A presigned URL with its signature changed is refused too.
    url = presigned(berth, arn, session)
    with pytest.raises(InvalidStatus) as refused:
        tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
        with connect_presigned(berth, tampered, open_timeout=60):
            pass
    assert refused.value.response.status_code == 403


def test_close_codes_pass_through_both_ways(berth, data, wsecho):
    arn, session = wsecho["agentRuntimeArn"], new_session_id("ws")
    url, headers = signed(berth, arn, session)
    # The agent closes: the client gets its code and reason.
    with connect(url, additional_headers=headers, open_timeout=60) as ws:
        ws.send("close:4001")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "bye")
    # The client closes: the agent gets its code.
    url, headers = signed(berth, arn, session)
    with connect(url, additional_headers=headers, open_timeout=60) as ws:
        echo_round_trip(ws)
        ws.close(code=4002, reason="done")
    poll(
        lambda: invoke_json(data, arn, session, {"op": "last_close"})["last_close"],
        lambda code: code == 4002,
        timeout=30,
        what="the agent to see the client's close code",
    )


def test_ending_the_session_closes_the_socket(berth, data, wsecho):
    arn, session = wsecho["agentRuntimeArn"], new_session_id("ws")
    url, headers = signed(berth, arn, session)
    with connect(url, additional_headers=headers, open_timeout=60) as ws:
        echo_round_trip(ws)
        data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=session)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001


def test_messages_over_the_edge_limit_end_the_socket(module_server):
    """On a server with `--small-body-mib 1`, a 512 KiB message round-trips and a 2 MiB one ends
    the connection without reaching the agent."""
    server = module_server("ws-limits", args=("--small-body-mib", "1"))
    control = server.client("bedrock-agentcore-control")
    runtime = deploy_agent(control, server.s3_client(), "wsecho")
    arn, session = runtime["agentRuntimeArn"], new_session_id("ws")
    url, headers = signed(server, arn, session)
    with connect(url, additional_headers=headers, open_timeout=60, max_size=None) as ws:
        fits = b"x" * (512 * 1024)
        ws.send(fits)
        assert ws.recv(timeout=30) == fits
        # The server ends the socket at the limit, so the send itself may already meet the closed
        # connection (broken pipe) before the receive would.
        with pytest.raises((ConnectionClosed, OSError)):
            ws.send(b"y" * (2 * 1024 * 1024))
            ws.recv(timeout=30)


def test_the_upgrade_needs_the_websocket_action(berth, wsecho):
    arn = wsecho["agentRuntimeArn"]
    # InvokeAgentRuntime alone does not open a WebSocket (AWS has an action of its own for it).
    url, headers = signed(
        berth, arn, new_session_id("ws"), access_key_allowing(berth, "bedrock-agentcore:InvokeAgentRuntime")
    )
    with pytest.raises(InvalidStatus) as refused:
        with connect(url, additional_headers=headers, open_timeout=60):
            pass
    assert refused.value.response.status_code == 403
    assert b"AccessDeniedException" in refused.value.response.body or refused.value.response.headers.get(
        "x-amzn-ErrorType", ""
    ).startswith("AccessDeniedException")
    allowed = access_key_allowing(berth, "bedrock-agentcore:InvokeAgentRuntimeWithWebSocketStream")
    url, headers = signed(berth, arn, new_session_id("ws"), allowed)
    with connect(url, additional_headers=headers, open_timeout=60) as ws:
        echo_round_trip(ws)


def test_the_qualifier_names_the_endpoint(berth, wsecho):
    arn = wsecho["agentRuntimeArn"]
    url, headers = signed(berth, arn, new_session_id("ws"), endpoint_name="DEFAULT")
    assert "qualifier=DEFAULT" in url
    with connect(url, additional_headers=headers, open_timeout=60) as ws:
        echo_round_trip(ws)
    url, headers = signed(berth, arn, new_session_id("ws"), endpoint_name="nosuchendpoint")
    with pytest.raises(InvalidStatus) as refused:
        with connect(url, additional_headers=headers, open_timeout=60):
            pass
    assert refused.value.response.status_code == 404
