#!/usr/bin/env python3
"""Berth's benchmark harness: B1-B5 of issue 6, side by side, written to bench/RESULTS.md.

Run it through bench/run.sh (which builds the binaries and sets up nginx and the venv); see
bench/README.md for the method. Everything it starts (Berth servers, the fast agent, nginx,
probes) is its own child process, started in its own process group and stopped on exit.

Paths compared, all in front of the same agent binary (bench/fast-agent):
  direct  the agent process on its own port, started here, outside Berth;
  nginx   Debian's nginx as a reverse proxy to that same process (keep-alive upstream,
          proxy_buffering off);
  berth   InvokeAgentRuntime through `berth serve` into the agent running in its session sandbox;
  hyper   B2's floor: `berth-bench proxy`, a bare reverse proxy on Berth's stack (hyper and tokio)
          in front of the same agent process, with no authentication, routing or span;
  hyper-core  the same proxy with a current-thread runtime per CPU, each with its own listener (as
          nginx's workers): the floor of a runtime-per-core architecture.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import quote

if __name__ == "__main__":
    # The figure modules import this one as `harness`: let them share this instance of it.
    sys.modules.setdefault("harness", sys.modules["__main__"])

import b6_memory  # noqa: E402
import b7_routing  # noqa: E402
import b8_edge  # noqa: E402
import b10_traces  # noqa: E402
import b1e_online  # noqa: E402
import b12_images  # noqa: E402
import b13_gateway  # noqa: E402
import b14_nodes  # noqa: E402
import b15_store  # noqa: E402

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent

REGION = "us-east-1"
ACCOUNT = "000000000000"
# Benchmark-only credentials in the shapes of real ones; every server started here gets them.
ACCESS_KEY_ID = "AKIABERTHBENCHMARKS0"
SECRET_ACCESS_KEY = "berthBenchmarkSecretKey/0123456789abcdef"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/berth-bench"
BUCKET = "berth-bench"

# Goals of issue 6, in one place (milliseconds unless named otherwise).
GOAL_B1_ADDED_P50 = 0.5
GOAL_B1_ADDED_P99 = 2.0
GOAL_B1_OVER_NGINX = 0.3
GOAL_B1_SPANS = 0.05  # issue 14: B1 with tracing on vs off
GOAL_B2_RATIO = 0.8
# Issue 12: Berth's proxy CPU per request at most twice nginx's (B2's CPU table).
GOAL_B2_CPU_RATIO = 2.0
B2_P99_LIMIT_MS = 10.0
GOAL_B3_ADDED_TTFB = 1.0
GOAL_B4_RUST_P50 = 100.0
GOAL_B4_SDK_RATIO = 1.15
GOAL_B4_WARM_P50 = 5.0
GOAL_B5_RATE = 20.0
GOAL_B5_MIB = 5.0
# A new-session rate counts as sustained when every session answered and the p99 time to first
# byte (from the intended start, open loop) stayed under this: a backlog would push it past it.
B5_P99_LIMIT_MS = 1000.0

PATHS = ("direct", "nginx", "berth")
# Berth with `--invocation-spans false`: B1 and the CPU table measure what Berth's own span costs.
UNTRACED = "untraced"
PATHS_B1 = PATHS + (UNTRACED,)
# A bare hyper proxy: what Berth's stack costs before Berth does anything (B2 and its CPU table).
HYPER = "hyper"
# The same proxy, a runtime per core: what that architecture would give Berth's stack.
HYPER_CORE = "hyper-core"
# `untraced` in B2 too: what Berth's own span costs its throughput, beside its CPU.
PATHS_B2 = PATHS_B1 + (HYPER, HYPER_CORE)
PATHS_CPU = PATHS_B2


@dataclass
class Plan:
    """Counts and durations: full (bench/run.sh) or smoke (bench/run.sh --smoke)."""

    smoke: bool
    rounds: int
    b1_rate: float
    b1_seconds: float
    b1_warmup: float
    b2_start_rate: float
    b2_step_seconds: float
    b2_bisections: int
    b2_max_rate: float
    b3_streams: int
    b3_silence_s: float
    b4_rust_samples: int
    b4_warm_samples: int
    b4_warm_pause_ms: int
    b4_sdk_samples_per_round: int
    b5_rates: tuple[float, ...]
    b5_seconds: float
    b5_idle_sessions: int
    b6_rounds: int
    b6_seconds: float
    b6_warmup: float
    b6_records: int
    b6_passes: int
    b7_decide_samples: int
    b7_route_samples: int
    b7_sessions: int
    b7_invocations: int
    b7_rate: float
    b7_active: int
    b7_reroute_every: int
    b8_rounds: int
    b8_rate: float
    b8_seconds: float
    b8_warmup: float
    b8_idle_sockets: int
    b10_writers: int
    b10_batch: int
    b10_seconds: float
    b10_warmup: float
    b10_seed_spans: int
    b10_spans_per_session: int
    b10_queries: int
    profile_seconds: float

    @staticmethod
    def full() -> "Plan":
        return Plan(
            smoke=False,
            rounds=5,
            b1_rate=500,
            b1_seconds=6,
            b1_warmup=1,
            b2_start_rate=1000,
            b2_step_seconds=3,
            b2_bisections=3,
            b2_max_rate=64000,
            b3_streams=100,
            b3_silence_s=360,
            b4_rust_samples=30,
            b4_warm_samples=20,
            b4_warm_pause_ms=300,
            b4_sdk_samples_per_round=2,
            b5_rates=(10, 20, 40, 80),
            b5_seconds=8,
            b5_idle_sessions=100,
            b6_rounds=3,
            b6_seconds=5,
            b6_warmup=1,
            b6_records=100_000,
            b6_passes=3,
            # B7: 2,000 sessions x 5 calls at 100 calls/s: 20 new sessions/s and as many stops, half
            # the start rate B5 sustains (200 calls/s, 40 starts and 40 stops a second, saturated
            # this machine: first calls waited ~1 s); 50 sessions in flight, a session's calls
            # 0.5 s apart; every 10th session routed twice.
            b7_decide_samples=1_000_000,
            b7_route_samples=2000,
            b7_sessions=2000,
            b7_invocations=5,
            b7_rate=100,
            b7_active=50,
            b7_reroute_every=10,
            # B8: B1's rate and measurement, against the same server idle and under attack.
            b8_rounds=4,
            b8_rate=500,
            b8_seconds=6,
            b8_warmup=1,
            b8_idle_sockets=2000,
            # B10: 8 writers of 50-span export requests (an agent's BatchSpanProcessor flush);
            # queries over a million stored spans, 100 per session.
            b10_writers=8,
            b10_batch=50,
            b10_seconds=5,
            b10_warmup=1,
            b10_seed_spans=1_000_000,
            b10_spans_per_session=100,
            b10_queries=1000,
            profile_seconds=8,
        )

    @staticmethod
    def smoke_plan() -> "Plan":
        return Plan(
            smoke=True,
            rounds=1,
            b1_rate=100,
            b1_seconds=1,
            b1_warmup=0.2,
            b2_start_rate=500,
            b2_step_seconds=0.5,
            b2_bisections=0,
            b2_max_rate=1000,
            b3_streams=5,
            b3_silence_s=2,
            b4_rust_samples=3,
            b4_warm_samples=2,
            b4_warm_pause_ms=300,
            b4_sdk_samples_per_round=1,
            b5_rates=(5,),
            b5_seconds=1,
            b5_idle_sessions=3,
            b6_rounds=1,
            b6_seconds=0.5,
            b6_warmup=0.1,
            b6_records=120,
            b6_passes=1,
            b7_decide_samples=20_000,
            b7_route_samples=50,
            # Enough sessions that both versions get some (all on v1: 0.9^60, under 0.2%).
            b7_sessions=60,
            b7_invocations=3,
            b7_rate=30,
            b7_active=10,
            b7_reroute_every=4,
            b8_rounds=1,
            b8_rate=100,
            b8_seconds=1,
            b8_warmup=0.2,
            b8_idle_sockets=2000,
            b10_writers=2,
            b10_batch=50,
            b10_seconds=0.5,
            b10_warmup=0.1,
            b10_seed_spans=20_000,
            b10_spans_per_session=100,
            b10_queries=20,
            profile_seconds=1,
        )


class BrokenPath(RuntimeError):
    """A path could not serve requests: the only thing that fails a smoke run."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------- processes


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it if the harness dies, so nothing outlives a run."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Proc:
    """A long-running child process whose output goes to a log file, scanned line by line."""

    def __init__(self, name: str, cmd: list[str], log_path: Path, env: dict | None = None):
        self.name = name
        self.cmd = cmd
        self.log_path = log_path
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._log = open(log_path, "a", encoding="utf-8", errors="replace")
        self._log.write(f"--- {' '.join(cmd)}\n")
        self._log.flush()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", errors="replace")
            self._log.write(line)
            self._log.flush()
            with self._cond:
                self._lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        """The first output line matching `pattern`; fails if the process exits or time runs out."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self._lines[seen:]:
                    m = rx.search(line)
                    if m:
                        return m
                seen = len(self._lines)
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise BrokenPath(f"{self.name} exited with {self.proc.returncode}: {self.tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrokenPath(f"{self.name} printed nothing matching {pattern!r} in {timeout} s: {self.tail()}")
                self._cond.wait(min(left, 0.5))

    def tail(self, n: int = 15) -> str:
        with self._cond:
            return "\n".join(self._lines[-n:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; then the rest of its process group."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log(f"{self.name} ignored SIGTERM for {grace} s; killing it")
                self.proc.kill()
                self.proc.wait()
        # Whatever it started and left behind in its own group (it was a group leader).
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._reader.join(timeout=5)
        self._log.close()


class Procs:
    """Every long-running child of the run, stopped in reverse order of start."""

    def __init__(self) -> None:
        self.items: list[Proc] = []

    def start(self, *args, **kwargs) -> Proc:
        p = Proc(*args, **kwargs)
        self.items.append(p)
        return p

    def stop_all(self) -> None:
        while self.items:
            p = self.items.pop()
            try:
                p.stop()
            except Exception as e:  # keep stopping the others
                log(f"stopping {p.name}: {e}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http_ok(url: str, timeout: float) -> None:
    """Polls a URL until it answers 200 (readiness of a process we started)."""
    import urllib.request

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception as e:  # not up yet
            last = e
        time.sleep(0.05)
    raise BrokenPath(f"{url} did not answer 200 within {timeout} s: {last}")


# ----------------------------------------------------------------------------- tools


class Tools:
    """The binaries the harness drives."""

    def __init__(self, work: Path, bin_dir: Path):
        self.work = work
        self.berth = bin_dir / "berth"
        self.fast_agent = bin_dir / "berth-fast-agent"
        self.bench = bin_dir / "berth-bench"
        self.nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
        oha = BENCH / ".tools" / "bin" / "oha"
        self.oha = str(oha) if oha.exists() and os.access(oha, os.X_OK) else None
        for b in (self.berth, self.fast_agent, self.bench):
            if not b.exists():
                raise BrokenPath(f"{b} is missing: run `cargo build [--release] -p berth -p berth-fast-agent -p berth-bench`")
        if not self.nginx:
            raise BrokenPath("nginx is missing: run bench/setup.sh")

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(BERTH_ACCESS_KEY_ID=ACCESS_KEY_ID, BERTH_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY)
        return env

    def run_bench(self, args: list[str], timeout: float) -> dict:
        """Runs one berth-bench probe and returns its JSON report."""
        cmd = [str(self.bench), *args]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.env(), stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise BrokenPath(f"berth-bench {args[0]} did not finish within {timeout} s") from e
        if out.returncode != 0:
            raise BrokenPath(f"berth-bench {' '.join(args[:1])} failed: {out.stderr.strip()[-2000:]}")
        return json.loads(out.stdout)


# ----------------------------------------------------------------------------- the paths


class FastAgent:
    """The fast agent started bare: the `direct` path, and nginx's upstream."""

    def __init__(self, procs: Procs, tools: Tools, work: Path):
        env = tools.env()
        env["BERTH_FAST_AGENT_THREADS"] = "1"
        self.proc = procs.start(
            "fast-agent", [str(tools.fast_agent), "--listen", "127.0.0.1:0"], work / "fast-agent.log", env
        )
        self.url = self.proc.wait_for(r"listening on (http://\S+)", 10).group(1)
        self.port = int(self.url.rsplit(":", 1)[1])
        wait_http_ok(self.url + "/ping", 10)


NGINX_CONF = """\
# Generated by bench/harness.py: nginx as a fair reverse proxy in front of the fast agent.
worker_processes auto;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    # nginx closes a client connection after 1000 requests by default, and an upstream one too;
    # Berth never does. Raised so both proxies keep their connections alike.
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream agent {{
        server 127.0.0.1:{agent_port};
        keepalive 128;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://agent;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
            client_max_body_size 100m;
        }}
    }}
}}
"""


class Nginx:
    """nginx from Debian, configured as a reverse proxy to the fast agent."""

    def __init__(self, procs: Procs, tools: Tools, work: Path, agent_port: int):
        d = work / "nginx"
        d.mkdir(parents=True, exist_ok=True)
        last = None
        # The port is picked free and then bound by nginx: retry the rare race with another process.
        for _ in range(3):
            self.port = free_port()
            conf = d / "nginx.conf"
            conf.write_text(NGINX_CONF.format(dir=d, port=self.port, agent_port=agent_port))
            self.proc = procs.start(
                "nginx",
                [tools.nginx, "-p", str(d), "-c", str(conf), "-e", str(d / "error.log"), "-g", "daemon off;"],
                work / "nginx.log",
                tools.env(),
            )
            self.url = f"http://127.0.0.1:{self.port}"
            try:
                wait_http_ok(self.url + "/ping", 10)
                return
            except BrokenPath as e:
                last = e
                self.proc.stop()
        raise BrokenPath(f"nginx would not start: {last}; see {d / 'error.log'}")


class Floor:
    """`berth-bench proxy`: the bare hyper reverse proxy in front of the fast agent (B2's floor)."""

    def __init__(self, procs: Procs, tools: Tools, work: Path, agent_port: int, per_core: bool = False):
        name = HYPER_CORE if per_core else HYPER
        self.proc = procs.start(
            name, [str(tools.bench), "proxy", "--upstream", f"127.0.0.1:{agent_port}", *(["--per-core"] if per_core else [])],
            work / f"{name}.log", tools.env()
        )
        self.url = self.proc.wait_for(r"listening on (http://\S+)", 10).group(1)
        wait_http_ok(self.url + "/ping", 10)


class Berth:
    """One `berth serve` with its own data dir, plus boto3 clients for it."""

    def __init__(self, procs: Procs, tools: Tools, work: Path, name: str, warm_pool: int, isolation: str | None,
                 data: Path | None = None, extra: list[str] | None = None):
        self.name = name
        self.data = data or work / f"berth-{name}"
        self.data.mkdir(parents=True, exist_ok=True)
        cmd = [str(tools.berth), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(self.data), "--warm-pool", str(warm_pool)]
        if isolation:
            cmd += ["--isolation", isolation]
        # Session quotas far above what any figure asks: the figures measure the machine, not the
        # default admission policy (20 new sessions/s and half of --max-sessions per runtime).
        cmd += ["--max-sessions", "4000", "--max-sessions-per-runtime", "4000", "--session-rate", "1000",
                "--session-rate-per-runtime", "1000"]
        cmd += extra or []
        env = tools.env()
        env.setdefault("BERTH_LOG", "info")
        self.tools = tools
        self.proc = procs.start(f"berth-{name}", cmd, work / f"berth-{name}.log", env)
        self.url = self.proc.wait_for(r"export AWS_ENDPOINT_URL_BEDROCK_AGENTCORE=(\S+)", 60).group(1)
        self.pid = self.proc.pid
        import boto3
        import botocore.config

        common = dict(
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )
        self.control = boto3.client(
            "bedrock-agentcore-control", config=botocore.config.Config(retries={"max_attempts": 1}), **common
        )
        self.s3 = boto3.client("s3", config=botocore.config.Config(s3={"addressing_style": "path"}), **common)
        self._bucket = False

    def deploy(self, runtime_name: str, package: bytes, entry: str, env: dict | None, timeout: float) -> str:
        """Uploads a code zip, creates the runtime and waits for READY; returns its ARN."""
        from botocore.exceptions import ClientError

        if not self._bucket:
            try:
                self.s3.create_bucket(Bucket=BUCKET)
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
            self._bucket = True
        key = f"{runtime_name}/{uuid.uuid4().hex}.zip"
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=package)
        kwargs = dict(
            agentRuntimeName=runtime_name,
            agentRuntimeArtifact={
                "codeConfiguration": {
                    "code": {"s3": {"bucket": BUCKET, "prefix": key}},
                    "runtime": f"PYTHON_3_{sys.version_info.minor}",
                    "entryPoint": [entry],
                }
            },
            roleArn=ROLE_ARN,
        )
        if env:
            kwargs["environmentVariables"] = env
        created = self.control.create_agent_runtime(**kwargs)
        rid = created["agentRuntimeId"]
        deadline = time.monotonic() + timeout
        while True:
            r = self.control.get_agent_runtime(agentRuntimeId=rid)
            status = r["status"]
            if status == "READY":
                return r["agentRuntimeArn"]
            if status not in ("CREATING", "UPDATING"):
                raise BrokenPath(f"{runtime_name} on berth-{self.name} is {status}: {r.get('failureReason')}")
            if time.monotonic() > deadline:
                raise BrokenPath(f"{runtime_name} on berth-{self.name} still {status} after {timeout} s")
            time.sleep(0.25)

    def _cli_json(self, *args: str):
        env = self.tools.env()
        env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY)
        out = subprocess.run([str(self.tools.berth), *args, "--json", "--endpoint-url", self.url],
                             capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)
        if out.returncode != 0:
            raise BrokenPath(f"berth {' '.join(args)} on berth-{self.name} failed: {out.stderr.strip()[-500:]}")
        return json.loads(out.stdout)

    def sessions(self) -> list[dict]:
        """The live sessions of the installation, each with its `nodeId` (`berth sessions list --json`)."""
        listed = self._cli_json("sessions", "list")
        return listed["sessions"] if isinstance(listed, dict) else listed

    def node_id(self) -> str:
        """This server's node id (`berth nodes list --json`)."""
        return next(n["nodeId"] for n in self._cli_json("nodes", "list")["nodes"] if n["thisNode"])

    def invoke_url(self, arn: str) -> str:
        return f"{self.url}/runtimes/{quote(arn, safe='')}/invocations?qualifier=DEFAULT"


def fast_agent_package(tools: Tools, work: Path) -> tuple[bytes, Path]:
    """The fast agent as a code zip: the binary plus bench/fast-agent/agent.py, which execs it.

    Also unpacked into a directory, for the bare-start baseline of B4 (the same files run
    without Berth). The binary keeps its executable bit in the zip's external attributes.
    """
    stage = work / "pkg-fast"
    stage.mkdir(parents=True, exist_ok=True)
    binary = stage / "berth-fast-agent"
    shutil.copy2(tools.fast_agent, binary)
    # Debug line tables are useless inside a sandbox and make the upload ten times larger.
    if shutil.which("strip"):
        subprocess.run(["strip", str(binary)], check=False)
    shutil.copy2(BENCH / "fast-agent" / "agent.py", stage / "agent.py")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, mode in (("agent.py", 0o644), ("berth-fast-agent", 0o755)):
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, (stage / name).read_bytes())
    return buf.getvalue(), stage


def sdk_agent_package() -> bytes:
    """examples/hello-agent (the SDK agent users start from) as a code zip."""
    src = REPO / "examples" / "hello-agent"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in ("agent.py", "requirements.txt"):
            z.write(src / name, name)
    return buf.getvalue()


# ----------------------------------------------------------------------------- statistics


def median(xs: list[float]) -> float:
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return statistics.median(xs) if xs else float("nan")


def ms(us: float) -> float:
    return us / 1000.0


def fmt(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"


@dataclass
class Figure:
    """One row of the summary table."""

    id: str
    name: str
    measured: str
    goal: str
    passed: bool | None  # None: not judged (smoke run, or not measurable here)
    note: str = ""


@dataclass
class Results:
    plan: Plan
    figures: list[Figure] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)
    profiles: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    b2_errors: list[str] = field(default_factory=list)

    def add(self, fig: Figure) -> None:
        if self.plan.smoke:
            fig.passed = None
        self.figures.append(fig)
        if fig.passed is False:
            self.misses.append(fig.id)


# ----------------------------------------------------------------------------- the benchmark


class Bench:
    def __init__(self, plan: Plan, work: Path, isolation: str | None, bin_dir: Path, only: set[str] | None = None):
        self.plan = plan
        self.only = only
        self.work = work
        self.isolation = isolation
        self.procs = Procs()
        self.tools = Tools(work, bin_dir)
        self.results = Results(plan)
        self.silence: subprocess.Popen | None = None

    # -- set-up ----------------------------------------------------------------------

    def setup(self) -> None:
        log("starting the fast agent, nginx and three berth servers (warm pool 1, 0, and 1 without its own spans)")
        self.agent = FastAgent(self.procs, self.tools, self.work)
        self.nginx = Nginx(self.procs, self.tools, self.work, self.agent.port)
        self.floor = Floor(self.procs, self.tools, self.work, self.agent.port)
        self.floor_core = Floor(self.procs, self.tools, self.work, self.agent.port, per_core=True)
        self.berth = Berth(self.procs, self.tools, self.work, "main", warm_pool=1, isolation=self.isolation)
        self.cold = Berth(self.procs, self.tools, self.work, "cold", warm_pool=0, isolation=self.isolation)
        self.untraced = Berth(self.procs, self.tools, self.work, UNTRACED, warm_pool=1, isolation=self.isolation,
                              extra=["--invocation-spans", "false"])
        package, self.fast_dir = fast_agent_package(self.tools, self.work)
        self.fast_package = package
        env = {"BERTH_FAST_AGENT_THREADS": "1"}
        log(f"deploying the fast agent ({len(package) // 1024} KiB zip) to both servers")
        self.fast_arn = self.berth.deploy("bench_fast", package, "agent.py", env, timeout=300)
        self.cold_fast_arn = self.cold.deploy("bench_fast", package, "agent.py", env, timeout=300)
        self.untraced_arn = self.untraced.deploy("bench_fast", package, "agent.py", env, timeout=300)
        log("deploying examples/hello-agent (bedrock-agentcore SDK) to the warm-pool-0 server")
        self.sdk_arn = self.cold.deploy("bench_sdk", sdk_agent_package(), "agent.py", None, timeout=900)
        self.urls = {
            "direct": self.agent.url + "/invocations",
            "nginx": self.nginx.url + "/invocations",
            HYPER: self.floor.url + "/invocations",
            HYPER_CORE: self.floor_core.url + "/invocations",
            "berth": self.berth.invoke_url(self.fast_arn),
            UNTRACED: self.untraced.invoke_url(self.untraced_arn),
        }
        # One session per path for the warm figures; the agent ignores the header off Berth.
        self.sessions = {p: f"bench-{p}-{uuid.uuid4().hex}" for p in PATHS_CPU}
        for p in PATHS_CPU:
            self.check_path(p)

    def check_path(self, path: str) -> None:
        """One signed invocation per path: any failure here is a broken path."""
        r = self.tools.run_bench(
            ["rate", "--url", self.urls[path], "--sign", "--session", self.sessions[path], "--body-bytes", "1024",
             "--rate", "20", "--duration", "0.25", "--warmup", "0", "--connections", "2", "--threads", "1", "--timeout", "60"],
            timeout=120,
        )
        if r["errors"] or not r["ok"]:
            raise BrokenPath(f"{path}: invocation failed: {r['error_samples']}")

    def rate(self, path: str, rate: float, seconds: float, warmup: float, connections: int, extra: list[str] | None = None, timeout: float = 5.0) -> dict:
        args = ["rate", "--url", self.urls[path], "--sign", "--session", self.sessions[path], "--body-bytes", "1024",
                "--rate", str(rate), "--duration", str(seconds), "--warmup", str(warmup), "--connections", str(connections),
                "--timeout", str(timeout)]
        return self.tools.run_bench(args + (extra or []), timeout=seconds + warmup + 120)

    def order(self, r: int, paths: tuple[str, ...] = PATHS) -> list[str]:
        """Round r's path order: rotated, so no path always runs first or last."""
        k = r % len(paths)
        return list(paths[k:] + paths[:k])

    # -- B3's long silence runs in the background from the start -------------------------

    def start_silence(self) -> None:
        gap_ms = int(self.plan.b3_silence_s * 1000)
        log(f"B3: opening a stream through berth with a {self.plan.b3_silence_s:.0f} s silent gap (runs in the background)")
        cmd = [str(self.tools.bench), "sse", "--url", self.urls["berth"], "--sign", "--session", f"bench-silence-{uuid.uuid4().hex}",
               "--count", "1", "--events", "2", "--interval-ms", "0", "--gap-ms", str(gap_ms),
               "--timeout", str(self.plan.b3_silence_s + 120)]
        self.silence_started = time.monotonic()
        self.silence = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.tools.env(),
                                        stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)

    def finish_silence(self) -> dict:
        assert self.silence is not None
        left = self.plan.b3_silence_s + 150 - (time.monotonic() - self.silence_started)
        if left > 5:
            log(f"B3: waiting up to {left:.0f} s for the silent stream to finish")
        try:
            out, err = self.silence.communicate(timeout=max(left, 5))
        except subprocess.TimeoutExpired:
            self.silence.kill()
            out, err = self.silence.communicate()
            raise BrokenPath("the silent-gap stream probe hung")
        if self.silence.returncode != 0:
            raise BrokenPath(f"the silent-gap stream probe failed: {err.strip()[-1000:]}")
        return json.loads(out)

    # -- B1 -------------------------------------------------------------------------------

    def b1(self) -> None:
        p = self.plan
        log(f"B1: {p.rounds} rounds x {len(PATHS_B1)} paths, {p.b1_rate:.0f} req/s open loop for {p.b1_seconds} s each")
        rounds: dict[str, list[dict]] = {x: [] for x in PATHS_B1}
        for r in range(p.rounds):
            for path in self.order(r, PATHS_B1):
                rep = self.rate(path, p.b1_rate, p.b1_seconds, p.b1_warmup, 16)
                if rep["errors"]:
                    raise BrokenPath(f"B1 {path}: {rep['errors']} errors: {rep['error_samples']}")
                rounds[path].append(rep)
        oha_rounds: dict[str, list[dict]] = {x: [] for x in PATHS}
        if self.tools.oha:
            for r in range(p.rounds):
                for path in self.order(r):
                    oha_rounds[path].append(self.oha(path, p.b1_rate, p.b1_seconds))
        self.b1_data = rounds
        med = {x: {q: median([ms(rep["latency"][q]) for rep in rounds[x]]) for q in ("p50", "p99")} for x in PATHS_B1}
        sign_us = median([rep["sign"]["p50"] for rep in rounds["berth"]])
        lag = {x: median([ms(rep["dispatch_lag"]["p50"]) for rep in rounds[x]]) for x in PATHS}
        added = {q: med["berth"][q] - med["direct"][q] for q in ("p50", "p99")}
        nginx_added = {q: med["nginx"][q] - med["direct"][q] for q in ("p50", "p99")}
        ok = (added["p50"] <= GOAL_B1_ADDED_P50 and added["p99"] <= GOAL_B1_ADDED_P99
              and added["p50"] <= nginx_added["p50"] + GOAL_B1_OVER_NGINX
              and added["p99"] <= nginx_added["p99"] + GOAL_B1_OVER_NGINX)
        self.results.add(Figure(
            "B1", "added latency of a warm 1 KB invocation over a direct call, p50 / p99",
            f"berth +{fmt(added['p50'])} / +{fmt(added['p99'])} ms; nginx +{fmt(nginx_added['p50'])} / +{fmt(nginx_added['p99'])} ms",
            f"<= {GOAL_B1_ADDED_P50} / <= {GOAL_B1_ADDED_P99} ms, and <= nginx + {GOAL_B1_OVER_NGINX} ms", ok))
        spans = med["berth"]["p50"] - med[UNTRACED]["p50"]
        self.results.add(Figure(
            "B1s", "B1 with Berth's own span of each invocation recorded vs not (`--invocation-spans false`), p50",
            f"{'+' if spans >= 0 else ''}{fmt(spans)} ms ({fmt(med['berth']['p50'])} vs {fmt(med[UNTRACED]['p50'])} ms)",
            f"<= +{GOAL_B1_SPANS} ms", spans <= GOAL_B1_SPANS))
        lines = [
            "## B1: warm invocation latency, 1 KB JSON each way",
            "",
            f"Open loop at {p.b1_rate:.0f} requests/s, {p.b1_seconds} s measured per round after {p.b1_warmup} s of warm-up,"
            f" 16 connections, {p.rounds} interleaved rounds; latency from each request's intended start to its last"
            " response byte (berth-bench). Figures are medians of the round values, in ms. `untraced` is a second"
            " berth server run with `--invocation-spans false` (no span of its own per invocation), the same agent"
            " and warm session: figure B1s is berth's p50 less untraced's.",
            "",
            "| path | p50 | p99 | p99.9 | max | added p50 | added p99 | rounds (p50 / p99) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for x in PATHS_B1:
            p999 = median([ms(rep["latency"]["p999"]) for rep in rounds[x]])
            mx = median([ms(rep["latency"]["max"]) for rep in rounds[x]])
            per = ", ".join(f"{fmt(ms(rep['latency']['p50']))}/{fmt(ms(rep['latency']['p99']))}" for rep in rounds[x])
            add50 = "" if x == "direct" else f"+{fmt(med[x]['p50'] - med['direct']['p50'])}"
            add99 = "" if x == "direct" else f"+{fmt(med[x]['p99'] - med['direct']['p99'])}"
            lines.append(f"| {x} | {fmt(med[x]['p50'])} | {fmt(med[x]['p99'])} | {fmt(p999)} | {fmt(mx)} | {add50} | {add99} | {per} |")
        lines += [
            "",
            f"Client-side costs, the same on every path (every path gets the same signed request): SigV4 signing"
            f" {fmt(sign_us, 0)} µs per request (done before the request's slot, outside the measured time);"
            f" scheduling lag of the generator p50 {fmt(lag['direct'])} / {fmt(lag['nginx'])} / {fmt(lag['berth'])} ms"
            " (direct / nginx / berth), inside the measured time.",
        ]
        if self.tools.oha:
            lines += ["", "Cross-check with oha (one request signed once and replayed; `-q` with `--latency-correction`):", "",
                      "| path | p50 | p99 | added p50 | added p99 |", "|---|---|---|---|---|"]
            om = {x: {q: median([o[q] for o in oha_rounds[x]]) for q in ("p50", "p99")} for x in PATHS}
            for x in PATHS:
                a50 = "" if x == "direct" else f"+{fmt(om[x]['p50'] - om['direct']['p50'])}"
                a99 = "" if x == "direct" else f"+{fmt(om[x]['p99'] - om['direct']['p99'])}"
                lines.append(f"| {x} | {fmt(om[x]['p50'])} | {fmt(om[x]['p99'])} | {a50} | {a99} |")
        self.results.sections.append("\n".join(lines))

    def oha(self, path: str, rate: float, seconds: float) -> dict:
        """One oha run replaying a single pre-signed request; latencies in ms."""
        pre = self.tools.run_bench(["presign", "--url", self.urls[path], "--sign", "--session", self.sessions[path], "--body-bytes", "1024"], timeout=30)
        cmd = [self.tools.oha, "--no-tui", "--output-format", "json", "-z", f"{seconds}s", "-q", str(rate),
               "--latency-correction", "-c", "16", "-m", "POST", "-d", pre["body"]]
        for k, v in pre["headers"].items():
            if k in ("host", "content-length"):
                continue
            cmd += ["-H", f"{k}: {v}"]
        cmd.append(self.urls[path])
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, stdin=subprocess.DEVNULL)
        if out.returncode != 0:
            raise BrokenPath(f"oha failed on {path}: {out.stderr.strip()[-1000:]}")
        j = json.loads(out.stdout)
        pct = j["latencyPercentiles"]
        codes = j.get("statusCodeDistribution", {})
        if set(codes) - {"200"}:
            raise BrokenPath(f"oha on {path}: non-200 answers {codes}")
        return {"p50": pct["p50"] * 1000, "p99": pct["p99"] * 1000}

    # -- B2 -------------------------------------------------------------------------------

    def b2_passes(self, path: str, rate: float) -> tuple[bool, dict]:
        p = self.plan
        rep = self.rate(path, rate, p.b2_step_seconds, min(0.5, p.b2_step_seconds), 64, timeout=1.0)
        # Every measured slot either succeeded or is an error (failure, or no answer within 1 s of
        # its intended start), so no errors means the rate was kept up.
        ok = rep["errors"] == 0 and ms(rep["latency"]["p99"]) <= B2_P99_LIMIT_MS
        return ok, rep

    def b2_search(self, path: str, hint: float | None) -> tuple[float, list[tuple[float, bool, float]]]:
        """Highest rate found with p99 <= 10 ms; the steps tried as (rate, passed, p99 ms)."""
        p = self.plan
        steps: list[tuple[float, bool, float]] = []

        def note(rate: float, ok: bool, rep: dict) -> None:
            steps.append((rate, ok, ms(rep["latency"]["p99"])))
            if rep["errors"]:
                self.results.b2_errors.append(f"{path} at {rate:.0f}/s: {rep['errors']} errors, e.g. {rep['error_samples'][:1]}")

        def trial(rate: float) -> bool:
            ok, rep = self.b2_passes(path, rate)
            if not ok:
                # One noisy step (another process waking up on a shared machine) must not end the
                # search: a rate fails only if it fails twice in a row.
                note(rate, ok, rep)
                ok, rep = self.b2_passes(path, rate)
            note(rate, ok, rep)
            return ok

        if p.smoke:
            # The smoke run only exercises the path: one step, no search.
            ok, rep = self.b2_passes(path, p.b2_start_rate)
            note(p.b2_start_rate, ok, rep)
            return (p.b2_start_rate if ok else 0.0), steps

        lo, hi = 0.0, None
        rate = hint * 0.8 if hint else p.b2_start_rate
        # Bracket: double up from a passing rate, halve down from a failing one.
        if trial(rate):
            lo = rate
            while rate * 2 <= p.b2_max_rate:
                rate *= 2
                if hint:
                    rate = min(rate, hint * 1.6)
                if trial(rate):
                    lo = rate
                else:
                    hi = rate
                    break
                if hint and rate >= hint * 1.6:
                    break
        else:
            hi = rate
            while rate > 50:
                rate /= 2
                if trial(rate):
                    lo = rate
                    break
                hi = rate
        if hi is not None and lo > 0:
            for _ in range(p.b2_bisections):
                mid = math.sqrt(lo * hi)
                if trial(mid):
                    lo = mid
                else:
                    hi = mid
        return lo, steps

    def b2(self) -> None:
        p = self.plan
        rounds = 3 if not p.smoke else 1
        log(f"B2: highest rate with p99 <= {B2_P99_LIMIT_MS:.0f} ms, {rounds} interleaved rounds per path")
        found: dict[str, list[float]] = {x: [] for x in PATHS_B2}
        trace: dict[str, list] = {x: [] for x in PATHS_B2}
        for r in range(rounds):
            for path in self.order(r, PATHS_B2):
                hint = found[path][-1] if found[path] else None
                best, steps = self.b2_search(path, hint)
                found[path].append(best)
                trace[path].append(steps)
                log(f"B2 round {r + 1} {path}: {best:.0f} req/s")
        med = {x: median(found[x]) for x in PATHS_B2}

        def vs_nginx(x: str) -> float:
            return med[x] / med["nginx"] if med["nginx"] else float("nan")

        ratio = vs_nginx("berth")
        self.results.add(Figure(
            "B2", f"invocations/s at p99 <= {B2_P99_LIMIT_MS:.0f} ms (berth / nginx / direct)",
            f"{med['berth']:.0f} / {med['nginx']:.0f} / {med['direct']:.0f}; berth = {fmt(ratio, 2)}x nginx"
            f" (untraced {fmt(vs_nginx(UNTRACED), 2)}x, bare hyper proxy {fmt(vs_nginx(HYPER), 2)}x,"
            f" per core {fmt(vs_nginx(HYPER_CORE), 2)}x)",
            f">= {GOAL_B2_RATIO}x nginx", ratio >= GOAL_B2_RATIO))
        lines = [
            f"## B2: throughput at p99 <= {B2_P99_LIMIT_MS:.0f} ms",
            "",
            f"Open-loop steps of {p.b2_step_seconds} s (64 connections, 1 KB each way): double the rate until p99 (from"
            f" intended start) exceeds {B2_P99_LIMIT_MS:.0f} ms or any request fails or takes over 1 s (a failing step is"
            f" tried once more, so one noisy step does not end the search), then {p.b2_bisections} bisection steps. Later rounds start from the previous round's"
            " result. Median of the rounds. `untraced` is Berth without its own span of each invocation (as in B1). `hyper` is `berth-bench proxy`, a bare reverse proxy on Berth's stack (hyper's server and"
            " client, tokio's multi-thread runtime) with no authentication, routing or span: the floor of what Berth could reach."
            " `hyper-core` is the same proxy with a current-thread runtime per CPU, each with its own listener, as nginx's"
            " workers: the floor of that architecture."
            " The load generator, the proxy and the agent share the same"
            f" {os.cpu_count()} CPUs, so `direct` is also the ceiling of the measuring setup.",
            "",
            "| path | requests/s (median) | rounds |",
            "|---|---|---|",
        ]
        for x in PATHS_B2:
            lines.append(f"| {x} | {med[x]:.0f} | {', '.join(f'{v:.0f}' for v in found[x])} |")
        lines += self.cpu_table(rounds)
        cpu = self.cpu_per_path
        cpu_ratio = cpu["berth"]["proxy"] / cpu["nginx"]["proxy"] if cpu["nginx"]["proxy"] else float("nan")
        self.results.add(Figure(
            "B2c", "proxy CPU per request at 1000 requests/s, berth / nginx (µs)",
            f"{cpu['berth']['proxy']:.0f} / {cpu['nginx']['proxy']:.0f} = {fmt(cpu_ratio, 2)}x"
            f" (untraced {cpu[UNTRACED]['proxy']:.0f}, bare hyper proxy {cpu[HYPER]['proxy']:.0f},"
            f" per core {cpu[HYPER_CORE]['proxy']:.0f})",
            f"<= {GOAL_B2_CPU_RATIO}x nginx", cpu_ratio <= GOAL_B2_CPU_RATIO))
        lines += ["", "<details><summary>steps tried (rate: pass/fail, p99 ms)</summary>", ""]
        for x in PATHS_B2:
            for i, steps in enumerate(trace[x]):
                s = ", ".join(f"{rate:.0f}:{'ok' if ok else 'FAIL'}({fmt(p99, 2)})" for rate, ok, p99 in steps)
                lines.append(f"- {x} round {i + 1}: {s}")
        if self.results.b2_errors:
            lines += ["", "Steps that failed with errors (not only a slow p99):", ""]
            lines += [f"- {e}" for e in self.results.b2_errors[:12]]
        lines += ["", "</details>"]
        self.results.sections.append("\n".join(lines))

    def path_processes(self, path: str) -> tuple[list[int], list[int]]:
        """(proxy pids, agent pids) serving a path."""
        if path == "direct":
            return [], [self.agent.proc.pid]
        if path == "nginx":
            return [self.nginx.proc.pid, *_children_of(self.nginx.proc.pid)], [self.agent.proc.pid]
        if path == HYPER:
            return [self.floor.proc.pid], [self.agent.proc.pid]
        if path == HYPER_CORE:
            return [self.floor_core.proc.pid], [self.agent.proc.pid]
        server = self.untraced if path == UNTRACED else self.berth
        proxy, agents = [server.pid], []
        for pid in _children_of(server.pid):
            (proxy if _is_berth_process(pid) else agents).append(pid)
        return proxy, agents

    def cpu_table(self, rounds: int) -> list[str]:
        """B2's CPU table: µs per request of generator, proxy and agent per path."""
        cpu = self.cpu_per_request(rounds)
        self.cpu_per_path = cpu
        lines = [
            "",
            f"CPU time per request at a fixed {self.cpu_rate:.0f} requests/s (same generator settings as B1), from the"
            " processes' utime + stime (median of rounds, µs): where the cycles of each path go.",
            "",
            "| path | load generator | proxy | agent | total |",
            "|---|---|---|---|---|",
        ]
        for x in PATHS_CPU:
            c = cpu[x]
            proxy = "" if x == "direct" else fmt(c["proxy"], 0)
            lines.append(f"| {x} | {fmt(c['generator'], 0)} | {proxy} | {fmt(c['agent'], 0)} | {fmt(c['generator'] + c['proxy'] + c['agent'], 0)} |")
        return lines

    def cpu_only(self) -> None:
        """`--only CPU`: B2's CPU table alone (5 rounds), a quick check while working on the hot path."""
        lines = ["## CPU per request (B2's table alone)"] + self.cpu_table(5 if not self.plan.smoke else 1)
        self.results.sections.append("\n".join(lines))

    def cpu_per_request(self, rounds: int) -> dict[str, dict[str, float]]:
        """CPU µs per request of generator, proxy and agent, per path, at one fixed rate."""
        import resource

        p = self.plan
        self.cpu_rate = 1000.0
        seconds = 4.0 if not p.smoke else 0.5
        samples: dict[str, list[dict[str, float]]] = {x: [] for x in PATHS_CPU}
        tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
        for r in range(rounds):
            for path in self.order(r, PATHS_CPU):
                proxy, agents = self.path_processes(path)
                ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = (_cpu_ticks(proxy), _cpu_ticks(agents))
                rep = self.rate(path, self.cpu_rate, seconds, 0.5, 16)
                t1 = (_cpu_ticks(proxy), _cpu_ticks(agents))
                ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                n = max(rep["ok"] + rep["errors"], 1) * (seconds + 0.5) / seconds  # warm-up requests used CPU too
                samples[path].append({
                    "generator": ((ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)) * 1e6 / n,
                    "proxy": (t1[0] - t0[0]) * tick_us / n,
                    "agent": (t1[1] - t0[1]) * tick_us / n,
                })
        return {x: {k: median([s[k] for s in samples[x]]) for k in ("generator", "proxy", "agent")} for x in PATHS_CPU}

    # -- B3 -------------------------------------------------------------------------------

    def b3(self) -> None:
        p = self.plan
        log(f"B3: SSE time to first byte, {p.rounds} rounds x {p.b3_streams} streams of 3 events 10 ms apart per path")
        rounds: dict[str, list[dict]] = {x: [] for x in PATHS}
        for r in range(p.rounds):
            for path in self.order(r):
                rep = self.tools.run_bench(
                    ["sse", "--url", self.urls[path], "--sign", "--session", self.sessions[path], "--count", str(p.b3_streams),
                     "--events", "3", "--interval-ms", "10", "--event-bytes", "64", "--timeout", "30"],
                    timeout=p.b3_streams * 5 + 60,
                )
                if rep["errors"]:
                    raise BrokenPath(f"B3 {path}: {rep['error_samples']}")
                rounds[path].append(rep)
        self.b3_rounds = rounds

    def b3_report(self, silence: dict) -> None:
        p = self.plan
        rounds = self.b3_rounds
        med = {x: {q: median([ms(rep["ttfb"][q]) for rep in rounds[x]]) for q in ("p50", "p99")} for x in PATHS}
        merged = {x: sum(rep["merged"] for rep in rounds[x]) for x in PATHS}
        events = {x: sum(rep["events"] for rep in rounds[x]) for x in PATHS}
        added = med["berth"]["p50"] - med["direct"]["p50"]
        survived = silence["complete"] == 1 and silence["errors"] == 0
        silence_s = silence["longest_silence_ms"] / 1000
        self.results.add(Figure(
            "B3", "SSE: added time to first byte (p50); events merged; stream with a long silent gap",
            f"+{fmt(added)} ms; {merged['berth']} of {events['berth']} merged; "
            f"{'survived' if survived else 'BROKEN'} a {silence_s:.1f} s silence",
            f"<= {GOAL_B3_ADDED_TTFB} ms; none; survives (360 s)",
            added <= GOAL_B3_ADDED_TTFB and merged["berth"] == 0 and survived and silence_s >= 360 * 0.99))
        if not survived:
            self.results.problems.append(f"B3: the stream with a silent gap did not survive: {silence['error_samples']}")
        lines = [
            "## B3: server-sent events",
            "",
            f"{p.b3_streams} streams per path and round, one after another on a kept-alive connection; each stream is 3"
            " events of 64 bytes, 10 ms apart. Time to first byte from sending the request; an event is *merged* when it"
            " arrived in the same read as the previous one or less than 1 ms (a tenth of the interval) after it. Medians of round values, ms.",
            "",
            "| path | TTFB p50 | TTFB p99 | added p50 | added p99 | events | merged |",
            "|---|---|---|---|---|---|---|",
        ]
        for x in PATHS:
            a50 = "" if x == "direct" else f"+{fmt(med[x]['p50'] - med['direct']['p50'])}"
            a99 = "" if x == "direct" else f"+{fmt(med[x]['p99'] - med['direct']['p99'])}"
            lines.append(f"| {x} | {fmt(med[x]['p50'])} | {fmt(med[x]['p99'])} | {a50} | {a99} | {events[x]} | {merged[x]} |")
        lines += [
            "",
            f"Silent gap: one stream through berth sent an event, stayed silent for {p.b3_silence_s:.0f} s, then sent"
            f" another: {'both events arrived' if survived else 'FAILED: ' + '; '.join(silence['error_samples'])};"
            f" longest silence observed {silence_s:.1f} s, whole stream {silence['longest_stream_ms'] / 1000:.1f} s.",
        ]
        self.results.sections.append("\n".join(lines))

    # -- B4 -------------------------------------------------------------------------------

    def b4(self) -> None:
        p = self.plan
        log("B4: new session to first byte (fast agent cold, warm-pool hits, bare start; SDK agent through berth vs bare)")
        cold_url = self.cold.invoke_url(self.cold_fast_arn)
        sdk_url = self.cold.invoke_url(self.sdk_arn)
        rust_cold = self.tools.run_bench(
            ["cold", "--url", cold_url, "--sign", "--count", str(p.b4_rust_samples), "--stop", "--body", "{}", "--timeout", "60"],
            timeout=p.b4_rust_samples * 60 + 60)
        warm = self.tools.run_bench(
            ["cold", "--url", self.urls["berth"], "--sign", "--count", str(p.b4_warm_samples), "--pause-ms", str(p.b4_warm_pause_ms),
             "--stop", "--body", "{}", "--timeout", "60"],
            timeout=p.b4_warm_samples * 61 + 60)
        rust_bare = self.tools.run_bench(
            ["spawn", "--count", str(p.b4_rust_samples), "--body", "{}", "--", sys.executable, str(self.fast_dir / "agent.py")],
            timeout=p.b4_rust_samples * 30 + 60)
        for name, rep in (("fast agent through berth", rust_cold), ("warm-pool probe", warm), ("fast agent bare", rust_bare)):
            if rep["errors"]:
                raise BrokenPath(f"B4 {name}: {rep['error_samples']}")
        sdk_berth: list[dict] = []
        sdk_bare: list[dict] = []
        bare_cmd = [sys.executable, str(BENCH / "agents" / "sdk_bare.py"), str(REPO / "examples" / "hello-agent")]
        body = json.dumps({"prompt": "hello"})
        for r in range(p.rounds):
            pair = [
                ("berth", lambda: self.tools.run_bench(
                    ["cold", "--url", sdk_url, "--sign", "--count", str(p.b4_sdk_samples_per_round), "--stop", "--body", body,
                     "--timeout", "120"], timeout=p.b4_sdk_samples_per_round * 130 + 60)),
                ("bare", lambda: self.tools.run_bench(
                    ["spawn", "--count", str(p.b4_sdk_samples_per_round), "--body", body, "--timeout", "120", "--", *bare_cmd],
                    timeout=p.b4_sdk_samples_per_round * 130 + 60)),
            ]
            if r % 2:
                pair.reverse()
            for name, run in pair:
                rep = run()
                if rep["errors"]:
                    raise BrokenPath(f"B4 SDK agent {name}: {rep['error_samples']}")
                (sdk_berth if name == "berth" else sdk_bare).append(rep)
        rust_p50 = ms(rust_cold["ttfb"]["p50"])
        warm_p50 = ms(warm["ttfb_warm"]["p50"]) if warm["warm_hits"] else float("nan")
        sdk_b = median([ms(x["ttfb"]["p50"]) for x in sdk_berth])
        sdk_0 = median([ms(x["ttfb"]["p50"]) for x in sdk_bare])
        ratio = sdk_b / sdk_0 if sdk_0 else float("nan")
        ok = rust_p50 <= GOAL_B4_RUST_P50 and ratio <= GOAL_B4_SDK_RATIO and warm_p50 <= GOAL_B4_WARM_P50
        self.results.add(Figure(
            "B4", "new session to first byte: fast agent p50; SDK agent vs bare; warm-pool hit p50",
            f"{fmt(rust_p50, 1)} ms; {fmt(sdk_b, 0)} vs {fmt(sdk_0, 0)} ms = {fmt(ratio, 2)}x; {fmt(warm_p50, 2)} ms "
            f"({warm['warm_hits']} of {warm['sessions']} hits)",
            f"<= {GOAL_B4_RUST_P50:.0f} ms; <= {GOAL_B4_SDK_RATIO}x; <= {GOAL_B4_WARM_P50:.0f} ms", ok))
        if warm["warm_hits"] < warm["sessions"]:
            self.results.problems.append(
                f"B4: only {warm['warm_hits']} of {warm['sessions']} new sessions found a warm sandbox with"
                f" {p.b4_warm_pause_ms} ms between sessions (pool size 1)")
        lines = [
            "## B4: new session to first byte",
            "",
            "Each sample invokes with a fresh session id on a kept-alive connection and is timed from sending to the first"
            " response byte; the session is stopped afterwards, outside the timing. Cold samples come from a server started"
            " with `--warm-pool 0`; warm-pool samples from one with `--warm-pool 1`, spaced"
            f" {p.b4_warm_pause_ms} ms apart so the pool can refill, and classified by the agent's own age (an agent older"
            " than the request was pre-started). *Bare* starts the same files without Berth: `python agent.py` with `PORT`"
            " set, `/ping` polled every 2 ms until healthy, then the same invocation. Milliseconds.",
            "",
            "| what | samples | p50 | p90 | max |",
            "|---|---|---|---|---|",
            f"| fast agent, new session through berth (cold) | {rust_cold['ok']} | {fmt(ms(rust_cold['ttfb']['p50']), 1)} | {fmt(ms(rust_cold['ttfb']['p90']), 1)} | {fmt(ms(rust_cold['ttfb']['max']), 1)} |",
            f"| fast agent, started bare (python exec wrapper) | {rust_bare['ok']} | {fmt(ms(rust_bare['ttfb']['p50']), 1)} | {fmt(ms(rust_bare['ttfb']['p90']), 1)} | {fmt(ms(rust_bare['ttfb']['max']), 1)} |",
            f"| fast agent, warm-pool hit through berth | {warm['warm_hits']} | {fmt(ms(warm['ttfb_warm']['p50']), 2)} | {fmt(ms(warm['ttfb_warm']['p90']), 2)} | {fmt(ms(warm['ttfb_warm']['max']), 2)} |",
        ]
        if warm["cold_starts"]:
            lines.append(f"| (warm-pool probe samples that missed the pool) | {warm['cold_starts']} | {fmt(ms(warm['ttfb_cold']['p50']), 1)} | {fmt(ms(warm['ttfb_cold']['p90']), 1)} | {fmt(ms(warm['ttfb_cold']['max']), 1)} |")
        sb = [ms(x["ttfb"]["p50"]) for x in sdk_berth]
        s0 = [ms(x["ttfb"]["p50"]) for x in sdk_bare]
        lines += [
            f"| SDK agent (examples/hello-agent), new session through berth | {sum(x['ok'] for x in sdk_berth)} | {fmt(sdk_b, 0)} | | {fmt(max(sb) if sb else float('nan'), 0)} |",
            f"| SDK agent, started bare | {sum(x['ok'] for x in sdk_bare)} | {fmt(sdk_0, 0)} | | {fmt(max(s0) if s0 else float('nan'), 0)} |",
            "",
            f"SDK agent ratio berth / bare: {fmt(ratio, 3)} (median of {p.rounds} interleaved rounds of"
            f" {p.b4_sdk_samples_per_round}). Bare start of the fast agent, ready (first /ping 200) p50"
            f" {fmt(ms(rust_bare['ready']['p50']), 1)} ms: most of a cold start is the Python interpreter that execs it.",
        ]
        self.results.sections.append("\n".join(lines))

    # -- B5 -------------------------------------------------------------------------------

    def b5(self) -> None:
        p = self.plan
        log(f"B5: sustained new sessions/s (steps {', '.join(f'{r:g}' for r in p.b5_rates)}/s, {p.b5_seconds} s each)")
        steps = []
        best = 0.0
        for rate in p.b5_rates:
            rep = self.tools.run_bench(
                ["rate", "--url", self.urls["berth"], "--sign", "--new-session", "--body", "{}", "--rate", str(rate),
                 "--duration", str(p.b5_seconds), "--warmup", "0", "--connections", "64", "--timeout", "10", "--stop-sessions"],
                timeout=p.b5_seconds + 300)
            p99 = ms(rep["latency"]["p99"])
            ok = rep["errors"] == 0 and p99 <= B5_P99_LIMIT_MS
            steps.append((rate, ok, rep))
            log(f"B5 {rate:g} sessions/s: {'sustained' if ok else 'not sustained'} (p99 {p99:.0f} ms, {rep['errors']} errors)")
            if p.smoke and rep["errors"]:
                raise BrokenPath(f"B5: new sessions failed: {rep['error_samples']}")
            if not ok:
                break
            best = rate
        # Memory per idle session, on the warm-pool-0 server (no pool sandboxes to confound it).
        cold_url = self.cold.invoke_url(self.cold_fast_arn)
        time.sleep(1)
        before = memory_snapshot(self.cold.pid)
        rep = self.tools.run_bench(["cold", "--url", cold_url, "--sign", "--count", str(p.b5_idle_sessions), "--body", "{}", "--timeout", "60"],
                                   timeout=p.b5_idle_sessions * 60 + 60)
        if rep["errors"]:
            raise BrokenPath(f"B5 idle sessions: {rep['error_samples']}")
        # Let each new session's supervisor settle into its idle /ping loop before reading memory.
        time.sleep(3)
        after = memory_snapshot(self.cold.pid)
        n = max(rep["ok"], 1)
        per = lambda key: (after[key] - before[key]) / 1024 / n  # MiB per session
        server_mib = per("berth_rss_kib")
        helper_uss = per("helper_uss")
        berth_mib = server_mib + helper_uss
        self.results.add(Figure(
            "B5", "new sessions/s sustained; Berth's memory per idle session",
            f"{best:g}/s; {fmt(berth_mib, 2)} MiB (server {fmt(server_mib, 2)} + per-session helper {fmt(helper_uss, 2)} private)",
            f">= {GOAL_B5_RATE:.0f}/s; <= {GOAL_B5_MIB:.0f} MiB", best >= GOAL_B5_RATE and berth_mib <= GOAL_B5_MIB))
        lines = [
            "## B5: session churn and idle memory",
            "",
            f"New sessions at a fixed rate (open loop, every request a fresh session id, fast agent, warm pool 1), {p.b5_seconds} s"
            f" per step, stopping at the first step that is not sustained: a step is sustained when every session answered"
            f" and p99 time to first byte stayed under {B5_P99_LIMIT_MS:.0f} ms. Sessions are stopped after each step.",
            "",
            "| sessions/s offered | completed/s | errors | p50 ms | p99 ms | sustained |",
            "|---|---|---|---|---|---|",
        ]
        for rate, ok, r in steps:
            lines.append(f"| {rate:g} | {r['achieved_rate']:.1f} | {r['errors']} | {fmt(ms(r['latency']['p50']), 1)} | {fmt(ms(r['latency']['p99']), 1)} | {'yes' if ok else 'no'} |")
        lines += [
            "",
            f"Idle memory: {rep['ok']} sessions opened one by one on the `--warm-pool 0` server and left idle, then"
            " the growth of each kind of process divided by the number of sessions, in MiB. *Private* is what the"
            " process alone holds (Private_Clean + Private_Dirty); PSS also charges each process its share of pages"
            " shared with others.",
            "",
            "| process | count per session | RSS | PSS | private |",
            "|---|---|---|---|---|",
            f"| `berth serve` (VmRSS growth) | | {fmt(server_mib, 3)} | | |",
            f"| Berth's sandbox helper (`{SANDBOX_HELPER_COMM}`) | {fmt((after['helper_n'] - before['helper_n']) / n, 1)} | {fmt(per('helper_rss'), 2)} | {fmt(per('helper_pss'), 2)} | {fmt(helper_uss, 2)} |",
            f"| the agent (fast agent) | {fmt((after['agent_n'] - before['agent_n']) / n, 1)} | {fmt(per('agent_rss'), 2)} | {fmt(per('agent_pss'), 2)} | {fmt(per('agent_uss'), 2)} |",
            "",
            f"Berth's memory per idle session, judged against the goal: server growth + helper private ="
            f" **{fmt(berth_mib, 2)} MiB**. The helper is a fork of the server: its RSS counts the server's pages it still"
            " shares copy-on-write; any page the server later writes becomes the helper's own copy.",
        ]
        self.results.sections.append("\n".join(lines))

    # -- profiles for misses --------------------------------------------------------------

    def profile(self, fig: str) -> None:
        """perf samples of the load that missed: top symbols by self time, and for the berth process
        the heaviest of its own frames by inclusive time (DWARF call graphs)."""
        if fig == "B7":
            self.results.profiles[fig] = b7_routing.profile(self)
            return
        if fig.startswith("B6"):
            self.results.profiles[fig] = b6_memory.profile(self, fig)
            return
        if fig == "B10":
            self.results.profiles[fig] = b10_traces.profile(self)
            return
        if fig.startswith("B13"):
            self.results.profiles[fig] = b13_gateway.profile(self, fig)
            return
        if fig == "B8":
            # The attack's load is its own (two thousand sockets, refused uploads) and the
            # server's figure is memory as much as time: a CPU profile of B1's load says nothing.
            self.results.profiles[fig] = ("Not profiled automatically: B8's cause and plan are read from the"
                                          " server's log and the section's counts; see notes/B8.md.")
            return
        if not shutil.which("perf"):
            self.results.profiles[fig] = "perf is not installed; no profile taken."
            return
        p = self.plan
        out = self.work / f"perf-{fig}.data"
        system_wide = fig in ("B4", "B5")
        if system_wide:
            # A cold start spans berth, the sandbox set-up and the agent: sample every CPU.
            record = ["-a"]
            def load() -> None:
                # Cold starts on the warm-pool-0 server, then warm-pool hits on the main one.
                self.tools.run_bench(["cold", "--url", self.cold.invoke_url(self.cold_fast_arn), "--sign", "--count", "40",
                                      "--stop", "--body", "{}"], timeout=600)
                self.tools.run_bench(["cold", "--url", self.urls["berth"], "--sign", "--count", "20", "--pause-ms", "100",
                                      "--stop", "--body", "{}"], timeout=600)
            server = self.cold
        else:
            record = ["--call-graph", "dwarf,8192", "-p", str(self.berth.pid)]
            rate = 2000 if fig == "B2" else p.b1_rate
            load = lambda: self.rate("berth", rate, p.profile_seconds, 0.5, 64 if fig == "B2" else 16, timeout=5)
            server = self.berth
        rec = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "500", "-o", str(out), *record, "--", "sleep",
                                str(p.profile_seconds + 1)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            load()
        finally:
            _, err = rec.communicate(timeout=p.profile_seconds + 120)
        if rec.returncode != 0 or not out.exists():
            self.results.profiles[fig] = f"perf record failed ({err.strip()[-300:]}); no profile taken."
            return

        def report(args: list[str], limit: int, keep: Callable[[str], bool] = lambda _: True) -> str:
            # --no-inline: resolving inlined frames runs addr2line over the debug info for minutes.
            r = subprocess.run(["perf", "report", "-i", str(out), "--stdio", "--no-inline", *args], capture_output=True, text=True,
                               timeout=600)
            rows = []
            for line in r.stdout.splitlines():
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                # perf pads the symbol column and appends empty srcline columns: trim both.
                line = re.sub(r"\s+-\s+-\s*$", "", line).rstrip()
                if keep(line):
                    rows.append(line[:200])
            return "\n".join(rows[:limit])

        where = "all CPUs (40 cold starts, then 20 warm-pool hits)" if system_wide else f"the berth-{server.name} process"
        text = [
            f"`perf record -e cpu-clock -F 500 {' '.join(record)}` on {where} during {p.profile_seconds} s of the same load"
            " (cpu-clock: this VM exposes no hardware counters).",
            "",
            "Self time, entries over 1%:",
            "",
            "```",
            report(["--no-children", "--sort", "comm,dso,symbol" if system_wide else "dso,symbol", "-g", "none",
                    "--percent-limit", "1"], 25),
            "```",
        ]
        if not system_wide:
            ours = re.compile(r"berth_|hyper::|hyper_util::|axum::|aws_sigv4|sqlx|tower_http|tracing::|\[k\] (tcp_sendmsg|tcp_recvmsg|__schedule|do_futex|epoll_wait)\b")
            noise = re.compile(r"inlined|closure_env|call_once|catch_unwind|do_call|poll_future|poll_inner|with_mut|Instrumented|MapIntoResponse|map::Map|RouteFuture|Oneshot|from_fn::|handle_connection|UpgradeableConnection|poll_catch|Harness")
            text += [
                "",
                "Inclusive time of Berth's own frames and of the libraries on its request path (over 3%):",
                "",
                "```",
                report(["--children", "--sort", "symbol", "-g", "none", "--percent-limit", "3"], 30,
                       lambda l: bool(ours.search(l)) and not noise.search(l)),
                "```",
            ]
        self.results.profiles[fig] = "\n".join(text)

    # -- the run --------------------------------------------------------------------------

    def wants(self, fig: str) -> bool:
        return self.only is None or fig in self.only

    # -- B11 ------------------------------------------------------------------------------

    def b11(self) -> None:
        """Deterministic `Evaluate` calls per second, in process (issue 15): reported, no goal."""
        seconds = 0.5 if self.plan.smoke else 5.0
        workers = os.cpu_count() or 2
        log(f"B11: deterministic Evaluate in process, {workers} workers, {seconds:g} s")
        r = self.tools.run_bench(["evaluate", "--workers", str(workers), "--seconds", str(seconds),
                                  "--warmup", "0.1" if self.plan.smoke else "1"], timeout=300)
        lat = r["latency"]
        self.results.add(Figure(
            "B11", "deterministic Evaluate calls/s (trajectory match and assertions over a 44-document Strands"
            " session, in process)",
            f"{r['calls_per_s']:,.0f} calls/s ({workers} workers); p50 {fmt(ms(lat['p50']), 3)} ms,"
            f" p99 {fmt(ms(lat['p99']), 3)} ms per call",
            "reported (no goal)", None if self.plan.smoke else True))
        self.results.sections.append("\n".join([
            "## B11: deterministic evaluations",
            "",
            f"`berth-bench evaluate`: {workers} tasks on {workers} threads call `berth_eval::evaluate` for"
            f" {seconds:g} s, alternating `Builtin.TrajectoryExactOrderMatch` and `Builtin.Berth.Assertions`"
            f" over a Strands session ({r['documents']} documents: both log groups' copies, as the SDK sends"
            " them) with an expected trajectory and two assertions: the work of `POST"
            " /evaluations/evaluate/{id}` after the HTTP layer. Judge evaluators are bounded by their model.",
            "",
            f"{r['calls']:,} calls, {r['calls_per_s']:,.0f}/s; per call p50 {fmt(ms(lat['p50']), 3)} ms,"
            f" p99 {fmt(ms(lat['p99']), 3)} ms, max {fmt(ms(lat['max']), 3)} ms ({r['build']} build).",
        ]))

    def run(self) -> Results:
        try:
            if any(self.wants(f) for f in ("B1", "B1E", "B2", "B3", "B4", "B5", "CPU")):
                self.setup()
            if self.only is not None and "CPU" in self.only:
                self.cpu_only()
            if self.wants("B3"):
                self.start_silence()
            # B3's silent stream runs in the background meanwhile.
            for fig, measure in (("B1", self.b1), ("B3", self.b3), ("B4", self.b4), ("B2", self.b2), ("B5", self.b5)):
                if self.wants(fig):
                    measure()
            if self.wants("B1E"):
                b1e_online.b1e(self)
            if self.wants("B6"):
                b6_memory.b6(self)
            if self.wants("B7"):
                b7_routing.b7(self)
            if self.wants("B8"):
                b8_edge.b8(self)
            if self.wants("B10"):
                b10_traces.b10(self)
            if self.wants("B11"):
                self.b11()
            if self.wants("B12"):
                b12_images.b12(self)
            if self.wants("B13"):
                b13_gateway.b13(self)
            if self.wants("B14"):
                b14_nodes.b14(self)
            if self.wants("B15"):
                b15_store.b15(self)
            if self.wants("B3"):
                self.b3_report(self.finish_silence())
            if not self.plan.smoke:
                for fig in self.results.misses:
                    log(f"{fig} missed its goal: profiling")
                    try:
                        self.profile(fig)
                    except Exception as e:
                        self.results.profiles[fig] = f"profiling failed: {e}"
            return self.results
        finally:
            if self.silence and self.silence.poll() is None:
                self.silence.kill()
                self.silence.wait()
            self.procs.stop_all()


# ----------------------------------------------------------------------------- memory


def _children_of(root: int) -> list[int]:
    """Every descendant of `root`, from /proc."""
    parent: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields resume after the last ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        parent[int(d)] = int(fields[1])
    out, frontier = [], [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        frontier += kids
    return out


def _cpu_ticks(pids: list[int]) -> int:
    """utime + stime of processes (all their threads), in clock ticks."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
    return total


def _is_berth_process(pid: int) -> bool:
    """A process running Berth's own code (the server, or a sandbox helper cloned from it)."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        exe = os.path.basename(os.readlink(f"/proc/{pid}/exe")).removesuffix(" (deleted)")
    except OSError:
        return False
    # The helper is a clone of the server (same executable); it inherits the name of the thread
    # that clones sandboxes.
    return comm == SANDBOX_HELPER_COMM or exe == "berth"


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _rollup_kib(pid: int) -> dict:
    """Pss and Uss (private clean + private dirty) from /proc/PID/smaps_rollup."""
    out = {"pss": 0, "uss": 0}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key == "Pss":
                out["pss"] = int(rest.split()[0])
            elif key in ("Private_Clean", "Private_Dirty"):
                out["uss"] += int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


#: Berth's own per-session process (a clone of the server that stays as the sandbox's parent).
SANDBOX_HELPER_COMM = "berth-sandbox"


def memory_snapshot(berth_pid: int) -> dict:
    """Memory of the berth process and of its descendants, split into Berth's per-session helper
    processes and everything else (the agents); KiB."""
    snap = {"berth_rss_kib": _status_kib(berth_pid, "VmRSS")}
    for cls in ("helper", "agent"):
        for k in ("n", "rss", "pss", "uss"):
            snap[f"{cls}_{k}"] = 0
    for pid in _children_of(berth_pid):
        cls = "helper" if _is_berth_process(pid) else "agent"
        roll = _rollup_kib(pid)
        snap[f"{cls}_n"] += 1
        snap[f"{cls}_rss"] += _status_kib(pid, "VmRSS")
        snap[f"{cls}_pss"] += roll["pss"]
        snap[f"{cls}_uss"] += roll["uss"]
    return snap


# ----------------------------------------------------------------------------- report


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def wait_for_quiet(limit: float) -> None:
    """Waits (up to `limit` seconds) until the machine is mostly idle: other work running during a
    benchmark shows up as noise in every tail latency. Runs anyway when the limit passes."""
    threshold = (os.cpu_count() or 1) / 2
    deadline = time.monotonic() + limit
    announced = False
    while True:
        try:
            one = float(Path("/proc/loadavg").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        if one < threshold:
            return
        if time.monotonic() >= deadline:
            log(f"load average still {one:.2f} after {limit:.0f} s; running anyway (see the machine table)")
            return
        if not announced:
            log(f"load average {one:.2f} >= {threshold:.1f}: waiting up to {limit:.0f} s for a quieter machine")
            announced = True
        time.sleep(5)


def machine() -> list[tuple[str, str]]:
    def sh(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "n/a"

    cpu = "n/a"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "n/a"
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    commit = sh(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = sh(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    nginx = subprocess.run([shutil.which("nginx") or "/usr/sbin/nginx", "-v"], capture_output=True, text=True).stderr.strip()
    oha = BENCH / ".tools" / "bin" / "oha"
    return [
        ("date (UTC)", dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")),
        ("cpus (nproc)", sh(["nproc"])),
        ("cpu model", cpu),
        ("kernel", platform.release()),
        ("memory", mem),
        ("berth commit", commit + (" (with uncommitted changes)" if dirty else "")),
        ("rustc", sh(["rustc", "--version"])),
        ("python", platform.python_version()),
        ("nginx", nginx.replace("nginx version: ", "")),
        ("load tools", "berth-bench (bench/loadgen)" + (f", {sh([str(oha), '--version'])}" if oha.exists() else "")),
    ]


def figure_order(text: str) -> tuple[int, str, str]:
    """B1 < B1e < B1s < B2 < ... < B10: by the figure's number, then its suffix (a figure id, or a
    section starting with its `## Bn...:` heading)."""
    m = re.search(r"B(\d+)(\w*)", text)
    return (int(m.group(1)), m.group(2), text) if m else (1 << 30, "", text)


def write_report(results: Results, path: Path, isolation: str | None, load_at_start: str) -> None:
    p = results.plan
    out = [
        "# Berth benchmark results",
        "",
        f"Written by `bench/run.sh{' --smoke' if p.smoke else ''}`; rerun it to refresh, do not edit by hand (causes and plans"
        " for missed goals live in bench/notes/). Method: bench/README.md.",
    ]
    if p.smoke:
        out += ["", "**Smoke run: tiny counts, every path exercised, timings not judged.**"]
    out += ["", "## Machine", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in machine()]
    out.append(f"| session isolation | {isolation or 'namespaces (default)'} |")
    out.append(f"| load average (1, 5, 15 min) at start / end | {load_at_start} / {loadavg()} |")
    out += ["", "## Summary", "", "| id | figure | measured | goal | result |", "|---|---|---|---|---|"]
    for f in sorted(results.figures, key=lambda f: figure_order(f.id)):
        verdict = "not judged" if f.passed is None else ("pass" if f.passed else "**miss**")
        out.append(f"| {f.id} | {f.name} | {f.measured} | {f.goal} | {verdict} |")
    out += ["", "AgentCore documents 25 invocations/s per endpoint, 100 new sessions per minute and cold starts of one to three"
            " seconds; the issue asks Berth to beat those by an order of magnitude on two cores."]
    # Sections start with "## Bn:"; measured in another order, reported in figure order.
    for s in sorted(results.sections, key=figure_order):
        out += ["", s]
    observations = BENCH / "notes" / "observations.md"
    if observations.exists() and not p.smoke:
        out += ["", observations.read_text().strip()]
    if results.problems:
        out += ["", "## Problems seen", ""] + [f"- {x}" for x in results.problems]
    if results.misses and not p.smoke:
        out += ["", "## Missed goals: profile, cause, plan"]
        for fig in sorted(results.misses, key=figure_order):
            out += ["", f"### {fig}", ""]
            out.append(results.profiles.get(fig, "(no profile)"))
            note = BENCH / "notes" / f"{fig}.md"
            out += ["", note.read_text().strip() if note.exists() else
                    f"Cause and plan: not written yet (bench/notes/{fig}.md)."]
    path.write_text("\n".join(out) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny counts; fails only if a path is broken")
    ap.add_argument("--isolation", choices=["namespaces", "process"], help="passed to berth serve")
    ap.add_argument("--output", type=Path, default=None, help="where to write the report (default bench/RESULTS.md; smoke: bench/.work/RESULTS-smoke.md)")
    ap.add_argument("--bin-dir", type=Path, default=REPO / "target" / "release", help="where berth, berth-fast-agent and berth-bench are")
    ap.add_argument("--wait-quiet", type=float, default=120, metavar="SECONDS",
                    help="full run: wait up to this long for the 1-minute load average to drop below half the CPUs (0: don't)")
    ap.add_argument("--keep-work", action="store_true", help="keep the scratch directory (logs, data dirs)")
    ap.add_argument("--only", action="append", metavar="FIGURE",
                    help="measure only these figures (repeatable, or comma-separated: --only B6,B7); the report lists only them")
    args = ap.parse_args()

    plan = Plan.smoke_plan() if args.smoke else Plan.full()
    (BENCH / ".work").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=BENCH / ".work"))
    # Sandboxed agents run as an unprivileged user and must be able to reach their code.
    os.chmod(work, 0o755)
    # A partial run (--only) never overwrites the full report unless told to.
    output = args.output or (BENCH / ".work" / "RESULTS-smoke.md" if args.smoke else
                             BENCH / ".work" / "RESULTS-partial.md" if args.only else BENCH / "RESULTS.md")
    started = time.monotonic()
    if not args.smoke and args.wait_quiet > 0:
        wait_for_quiet(args.wait_quiet)
    load_at_start = loadavg()
    log(f"{'smoke' if args.smoke else 'full'} run; scratch dir {work}; load average {load_at_start}")
    ok = False
    try:
        only = {f.strip().upper() for arg in args.only for f in arg.split(",") if f.strip()} if args.only else None
        bench = Bench(plan, work, args.isolation, args.bin_dir.resolve(), only)
        results = bench.run()
        write_report(results, output, args.isolation, load_at_start)
        log(f"wrote {output} in {time.monotonic() - started:.0f} s")
        for f in results.figures:
            log(f"{f.id}: {f.measured}  [{'not judged' if f.passed is None else 'pass' if f.passed else 'MISS'}]")
        ok = True
        return 0
    except BrokenPath as e:
        log(f"BROKEN: {e}")
        log(f"logs kept in {work}")
        return 1
    finally:
        if ok and not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
