"""The README quickstart, run as a new user would run it, and what stopping the server leaves.

The commands are read from the README's "Quickstart" block, so the test follows the README: a
server that generated its own root credentials on first start (in its data dir), then
`eval "$(berth credentials --export)"`, `berth deploy examples/hello-agent --name ...`,
`berth invoke` (plain text and a streaming JSON payload), `berth sessions list` and
`berth logs --session <id>`. The only changes: the binary is the one under test (the README
says `target/release/berth`), `BERTH_ENDPOINT_URL`/`BERTH_DATA_DIR` point at the test server,
and the runtime name is made unique.

Then the user stops the server (SIGTERM, as a service manager does) right after opening a
session, and again after a restart: every session, the warm sandbox and the one being started
for the pool must end, leaving nothing behind.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess

import pytest
from berth_harness import (
    AGENTS_DIR,
    REPO,
    berth_binary,
    runtime_sandboxes,
    unique_name,
    wait_no_leftovers,
)

pytestmark = pytest.mark.build

README = REPO / "README.md"


def quickstart_commands() -> list:
    """The quickstart block's commands, each as an argv list (comments dropped)."""
    text = README.read_text()
    section = text.split("## Quickstart", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "no ```sh block in the README quickstart"
    commands = []
    for line in block.group(1).splitlines():
        argv = shlex.split(line, comments=True)
        if argv:
            commands.append(argv)
    return commands


@pytest.fixture(scope="module")
def quickstart(module_server, tmp_path_factory) -> dict:
    """The quickstart server (its own credentials, default warm pool) and a user's environment."""
    server = module_server("quickstart", test_credentials=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BERTH_"))}
    env.update(
        BERTH_ENDPOINT_URL=server.url,
        BERTH_DATA_DIR=str(server.data_dir),
        XDG_CONFIG_HOME=str(tmp_path_factory.mktemp("quickstart-config")),
        NO_COLOR="1",
    )
    return {"server": server, "env": env, "runtime_ids": []}


def shell(env: dict, argv: list) -> subprocess.CompletedProcess:
    """Run one command as the user's shell would (in the repository), requiring success."""
    done = subprocess.run(
        argv,
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def apply_exports(env: dict, exports: str) -> None:
    """What `eval "$(berth credentials --export)"` does to a shell's environment."""
    for line in exports.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = shlex.split(value)[0]
    assert env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"), exports


def deployed_runtime_id(stdout: str) -> str:
    """The runtime id from `berth deploy`'s `arn:` line."""
    arn = re.search(r"arn:\s+arn:aws:bedrock-agentcore:[^:]+:\d{12}:runtime/(\S+)", stdout)
    assert arn, stdout
    return arn.group(1)


def test_readme_quickstart(quickstart):
    env = quickstart["env"]
    name = unique_name("hello")
    readme_name = None
    session = None
    seen = []

    for argv in quickstart_commands():
        if argv[0] == "eval":
            # eval "$(berth credentials --export)": run the inner command, apply its exports.
            inner = shlex.split(argv[1].removeprefix("$(").removesuffix(")"))
            assert inner[0].endswith("berth") and inner[1] == "credentials", argv
            apply_exports(env, shell(env, [str(berth_binary()), *inner[1:]]).stdout)
            seen.append("credentials")
            continue
        assert argv[0].endswith("berth"), f"unexpected quickstart command {argv}"
        argv = [str(berth_binary()), *argv[1:]]
        command = argv[1]
        if command == "deploy":
            readme_name = argv[argv.index("--name") + 1]
            argv[argv.index("--name") + 1] = name
        elif command in ("invoke", "logs") and argv[2] == readme_name:
            argv[2] = name
        argv = [session if arg == "<id>" else arg for arg in argv]
        done = shell(env, argv)

        if command == "deploy":
            assert "version: 1" in done.stdout, done.stdout
            runtime_id = deployed_runtime_id(done.stdout)
            assert runtime_id.startswith(name + "-"), runtime_id
            quickstart["runtime_ids"].append(runtime_id)
            seen.append("deploy")
        elif command == "invoke":
            session = next(
                line.split(": ", 1)[1]
                for line in done.stderr.splitlines()
                if line.startswith("session: ")
            )
            payload = argv[3]
            try:
                request = json.loads(payload)
            except ValueError:
                request = {"prompt": payload}
            if request.get("stream"):
                events = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
                words = [e["word"] for e in events if "word" in e]
                assert words == request["prompt"].split(), done.stdout
                assert events[-1].get("done") is True, done.stdout
                seen.append("invoke-stream")
            else:
                answer = json.loads(done.stdout)
                assert answer["result"] == request["prompt"], answer
                assert answer["sessionId"] == session
                seen.append("invoke")
        elif command == "sessions":
            assert session in done.stdout and "DEFAULT" in done.stdout, done.stdout
            seen.append("sessions")
        elif command == "logs":
            # The SDK logs each invocation of the session, tagged with its id.
            assert session in done.stdout, done.stdout
            seen.append("logs")

    assert seen == ["credentials", "deploy", "invoke", "invoke-stream", "sessions", "logs"], seen


def test_stopping_the_server_right_after_sessions_opened_leaves_nothing(quickstart):
    env, server = quickstart["env"], quickstart["server"]
    if "AWS_SECRET_ACCESS_KEY" not in env:  # the quickstart test did not get that far
        apply_exports(env, shell(env, [str(berth_binary()), "credentials", "--export"]).stdout)
    berth = str(berth_binary())
    name = unique_name("probe")
    deployed = shell(env, [berth, "deploy", str(AGENTS_DIR / "probe"), "--name", name])
    quickstart["runtime_ids"].append(deployed_runtime_id(deployed.stdout))

    def stop_and_check() -> None:
        assert server.stop() == 0
        for runtime_id in quickstart["runtime_ids"]:
            wait_no_leftovers(server, runtime_sandboxes(runtime_id), timeout=15)

    # A session with a grandchild process, then the server is stopped.
    shell(env, [berth, "invoke", name, '{"op": "spawn", "tag": "x"}', "--new-session"])
    stop_and_check()
    # Restarted on the same data dir, a new session opens and the warm pool starts refilling at
    # that moment; the server is stopped at once, while the refill is still starting an agent.
    server.start()
    env["BERTH_ENDPOINT_URL"] = server.url  # a new port
    shell(env, [berth, "invoke", name, '{"op": "whoami"}', "--new-session"])
    stop_and_check()
