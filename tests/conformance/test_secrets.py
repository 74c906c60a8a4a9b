"""Secrets (`berth secrets`, `/berth/v1/secrets`): values go in and never come back out; a
runtime environment variable `berth-secret:NAME` gets the value in the sandbox at start, while
the configuration (GetAgentRuntime, `berth runtimes get`) keeps the reference; the database
holds only ciphertext; runtimes' own credentials are refused on the secrets API.

The runtime tests use `berth_tight` (no warm pool): every session starts its own sandbox, so a
put is seen by the next session deterministically.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from berth_harness import (
    ACCESS_KEY_ID,
    ACCOUNT,
    REGION,
    SECRET_ACCESS_KEY,
    access_key_allowing,
    berth_binary,
    deploy_agent,
    expect_error,
    invoke,
    invoke_json,
    native,
    new_session_id,
    raw_request,
    run_cli,
)


def secret_name(tag: str) -> str:
    """A name no other test uses, with a `/` (names are paths of a sort)."""
    return f"conf-{uuid.uuid4().hex[:10]}/{tag}"


def secret_value() -> str:
    """A value easy to grep for and impossible to find by chance."""
    return f"sk-canary-{uuid.uuid4().hex}"


def secret_arn(name: str) -> str:
    return f"arn:aws:bedrock-agentcore:{REGION}:{ACCOUNT}:secret/{name}"


def path_of(name: str) -> str:
    return "/berth/v1/secrets/" + quote(name, safe="")


def cli_put_stdin(server, name: str, value: str) -> subprocess.CompletedProcess:
    """`berth secrets put NAME` with the value on standard input, as the README says to."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BERTH_"))}
    env.update(
        BERTH_ENDPOINT_URL=server.url,
        AWS_ACCESS_KEY_ID=ACCESS_KEY_ID,
        AWS_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY,
        NO_COLOR="1",
    )
    return subprocess.run(
        [str(berth_binary()), "secrets", "put", name],
        env=env,
        input=value + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )


def put(server, name: str, value: str) -> dict:
    resp = native(server, "PUT", path_of(name), body=json.dumps({"value": value}).encode())
    assert resp.status == 200, resp
    return resp.json()


def sqlite_files(data_dir: Path) -> list[Path]:
    """Every SQLite database of a data dir with its WAL and shared-memory files."""
    return [
        p
        for p in data_dir.rglob("*")
        if p.is_file() and any(p.name.endswith(s) for s in (".db", ".db-wal", ".db-shm"))
    ]


def assert_nowhere_in_clear(server, value: str) -> None:
    files = sqlite_files(server.data_dir)
    assert any(p.name == "berth.db" for p in files), files
    for path in files:
        assert value.encode() not in path.read_bytes(), f"{path} holds the secret in clear"
    assert value not in server.log_path.read_text(errors="replace"), "the server log holds it"


# ----------------------------------------------------------------------------- the CLI


def test_cli_puts_lists_and_deletes_without_ever_printing_the_value(berth):
    name, first, second = secret_name("api-key"), secret_value(), secret_value()

    made = cli_put_stdin(berth, name, first)
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == f"secret {name} saved (version 1)"
    again = run_cli(berth, "secrets", "put", name, "--value", second)
    assert again.returncode == 0, again.stderr
    assert "version 2" in again.stdout

    prefix = name.split("/")[0] + "/"
    listed = run_cli(berth, "secrets", "list", "--prefix", prefix)
    assert listed.returncode == 0, listed.stderr
    assert name in listed.stdout and "VERSION" in listed.stdout
    as_json = run_cli(berth, "secrets", "list", "--prefix", prefix, "--json")
    assert as_json.returncode == 0, as_json.stderr
    [entry] = json.loads(as_json.stdout)["secrets"]
    assert entry["name"] == name and entry["version"] == 2
    assert set(entry) == {"name", "version", "createdAt", "updatedAt"}
    everything = run_cli(berth, "secrets", "list")
    assert name in everything.stdout

    assert native(berth, "GET", path_of(name)).json()["version"] == 2

    gone = run_cli(berth, "secrets", "delete", name)
    assert gone.returncode == 0, gone.stderr
    assert gone.stdout.strip() == f"secret {name} deleted"
    missing = run_cli(berth, "secrets", "delete", name)
    assert missing.returncode != 0
    assert "ResourceNotFoundException (404)" in missing.stderr, missing.stderr
    assert name not in run_cli(berth, "secrets", "list", "--prefix", prefix).stdout

    for out in (made, again, listed, as_json, everything, gone, missing):
        assert first not in out.stdout + out.stderr and second not in out.stdout + out.stderr


def test_cli_refuses_bad_names_and_an_empty_stdin_clearly(berth):
    bad = run_cli(berth, "secrets", "put", "has space", "--value", "v")
    assert bad.returncode != 0
    assert "ValidationException (400)" in bad.stderr, bad.stderr
    assert "' ' is not allowed" in bad.stderr, bad.stderr
    empty = run_cli(berth, "secrets", "put", secret_name("empty"))  # stdin is /dev/null
    assert empty.returncode != 0
    assert "no value on standard input" in empty.stderr, empty.stderr


# ----------------------------------------------------------------------------- the native API


def test_native_api_answers_metadata_only_and_audits_without_the_value(berth):
    name, value = secret_name("token"), secret_value()

    meta = put(berth, name, value)
    assert meta["name"] == name and meta["version"] == 1, meta
    assert set(meta) == {"name", "version", "createdAt", "updatedAt"}
    assert put(berth, name, value + "-2")["version"] == 2

    got = native(berth, "GET", path_of(name))
    assert got.status == 200, got
    assert got.json()["version"] == 2 and "value" not in got.json()
    listed = native(berth, "GET", "/berth/v1/secrets", query="prefix=" + quote(name, safe=""))
    assert listed.status == 200, listed
    assert [m["name"] for m in listed.json()["secrets"]] == [name]
    for resp in (got, listed):
        assert value.encode() not in resp.body

    deleted = native(berth, "DELETE", path_of(name))
    assert deleted.status == 204, deleted
    for method in ("DELETE", "GET"):
        absent = native(berth, method, path_of(name))
        assert absent.status == 404, absent
        assert absent.error_type == "ResourceNotFoundException", absent
        assert name in absent.json()["message"]

    bad_name = native(berth, "PUT", path_of("a;b"), body=b'{"value": "v"}')
    assert (bad_name.status, bad_name.error_type) == (400, "ValidationException"), bad_name
    for body in (b"not json", b'{"value": 1}', b'{"value": "v", "extra": 1}', b'{"value": ""}'):
        refused = native(berth, "PUT", path_of(secret_name("bad")), body=body)
        assert (refused.status, refused.error_type) == (400, "ValidationException"), (body, refused)

    # Puts and deletes are in the audit log on the secret's ARN; the value never is.
    audit = native(berth, "GET", "/berth/v1/audit", query=f"resource={quote(secret_arn(name), safe='')}&limit=1000")
    assert audit.status == 200, audit
    actions = [e["action"] for e in audit.json()["entries"] if e["resource"] == secret_arn(name)]
    assert actions == ["PutSecret", "PutSecret", "DeleteSecret"], actions
    assert value.encode() not in audit.body


def test_access_keys_are_authorized_per_secret_action(berth):
    name, value = secret_name("scoped"), secret_value()
    put(berth, name, value)
    key, secret = access_key_allowing(berth, "berth:ListSecrets")
    listed = native(berth, "GET", "/berth/v1/secrets", access_key=key, secret_key=secret)
    assert listed.status == 200, listed
    refused = native(
        berth, "PUT", path_of(name), body=b'{"value": "x"}', access_key=key, secret_key=secret
    )
    assert (refused.status, refused.error_type) == (403, "AccessDeniedException"), refused
    assert "berth:PutSecret" in refused.json()["message"]
    assert secret_arn(name) in refused.json()["message"]


# ----------------------------------------------------------------------------- runtimes


@pytest.fixture(scope="module")
def tight_clients(berth_tight):
    return (
        berth_tight.client("bedrock-agentcore-control"),
        berth_tight.client("bedrock-agentcore"),
        berth_tight.s3_client(),
    )


def environ_of(data, arn: str, session: str) -> dict:
    """The sandbox's environment, as the probe agent reads it from /proc/self/environ."""
    seen = invoke_json(data, arn, session, {"op": "read", "path": "/proc/self/environ"})
    assert seen["result"]["ok"], seen
    return dict(
        item.split("=", 1) for item in seen["result"]["value"].split("\0") if "=" in item
    )


def test_a_runtime_gets_the_value_and_shows_the_reference(berth_tight, tight_clients):
    control, data, s3 = tight_clients
    name, first, second = secret_name("openai"), secret_value(), secret_value()
    # Through the CLI's standard input: the sandbox gets exactly the value, its newline dropped.
    made = cli_put_stdin(berth_tight, name, first)
    assert made.returncode == 0, made.stderr
    reference = f"berth-secret:{name}"
    rt = deploy_agent(
        control,
        s3,
        "probe",
        environmentVariables={"API_KEY": reference, "PLAIN": "as-is"},
    )
    arn, rid = rt["agentRuntimeArn"], rt["agentRuntimeId"]

    env = environ_of(data, arn, new_session_id("sec"))
    assert env["API_KEY"] == first
    assert env["PLAIN"] == "as-is"

    # The configuration keeps the reference as written, wherever it is shown.
    assert control.get_agent_runtime(agentRuntimeId=rid)["environmentVariables"] == {
        "API_KEY": reference,
        "PLAIN": "as-is",
    }
    pinned = control.get_agent_runtime(agentRuntimeId=rid, agentRuntimeVersion="1")
    assert pinned["environmentVariables"]["API_KEY"] == reference
    shown = run_cli(berth_tight, "runtimes", "get", rid)
    assert shown.returncode == 0, shown.stderr
    assert reference in shown.stdout and first not in shown.stdout

    # A put is what the next sandbox gets (this server keeps no warm spares).
    assert put(berth_tight, name, second)["version"] == 2
    assert environ_of(data, arn, new_session_id("sec"))["API_KEY"] == second

    assert_nowhere_in_clear(berth_tight, first)
    assert_nowhere_in_clear(berth_tight, second)


def test_agent_credentials_are_refused_on_the_secrets_api(berth_tight, tight_clients):
    control, data, s3 = tight_clients
    name = secret_name("guarded")
    put(berth_tight, name, secret_value())
    rt = deploy_agent(control, s3, "probe", environmentVariables={"K": f"berth-secret:{name}"})
    arn = rt["agentRuntimeArn"]
    session = new_session_id("sec")

    # From inside the sandbox, signed with the credentials Berth injected.
    for method, path in (
        ("GET", "/berth/v1/secrets"),
        ("GET", path_of(name)),
        ("DELETE", path_of(name)),
    ):
        seen = invoke_json(
            data, arn, session, {"op": "api", "method": method, "path": path}
        )
        result = seen["result"]["value"]
        assert result["status"] == 403, (method, path, result)
        assert result["errorType"] == "AccessDeniedException", result

    # The same credentials from outside, on a put (with a body) too: refused by an explicit
    # deny, whatever the runtime's role would allow.
    env = environ_of(data, arn, session)
    key, secret = env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    refused = raw_request(
        berth_tight.url,
        "PUT",
        path_of(name),
        body=b'{"value": "overwritten"}',
        access_key=key,
        secret_key=secret,
    )
    assert (refused.status, refused.error_type) == (403, "AccessDeniedException"), refused
    assert "explicit deny" in refused.json()["message"], refused.json()
    # Still the root's value, untouched.
    assert native(berth_tight, "GET", path_of(name)).json()["version"] == 1


def test_an_unknown_secret_fails_the_start_naming_variable_and_secret(berth_tight, tight_clients):
    control, data, s3 = tight_clients
    name = secret_name("missing")
    rt = deploy_agent(
        control, s3, "probe", environmentVariables={"DB_PASSWORD": f"berth-secret:{name}"}
    )
    arn = rt["agentRuntimeArn"]

    err = expect_error(
        invoke, "RuntimeClientError", data=data, runtime_arn=arn,
        session_id=new_session_id("sec"), payload={"op": "whoami"},
    )
    message = err["Error"]["Message"]
    assert "environment variable DB_PASSWORD" in message, message
    assert f"secret {name}, which does not exist" in message, message

    # Once the secret exists the next session starts; deleted again, the next one fails again.
    value = secret_value()
    put(berth_tight, name, value)
    assert environ_of(data, arn, new_session_id("sec"))["DB_PASSWORD"] == value
    assert native(berth_tight, "DELETE", path_of(name)).status == 204
    err = expect_error(
        invoke, "RuntimeClientError", data=data, runtime_arn=arn,
        session_id=new_session_id("sec"), payload={"op": "whoami"},
    )
    assert value not in err["Error"]["Message"]
