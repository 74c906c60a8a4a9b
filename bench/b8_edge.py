"""B8: a legitimate client under hostile ones (issue 11), driven by bench/harness.py.

One `berth serve` (its defaults: the edge's limits as a user gets them) serves a warm session of
the fast agent to `berth-bench rate` (signed invocations, open loop) in two conditions, alternated
round by round in one run:

- `idle`: nothing else talks to the server;
- `attack`: 2,000 TCP connections that never send a byte and 8 unauthenticated 100 MB uploads are
  held against it for the whole measurement. The attacker keeps them held as a real one would: a
  socket the server closes (header timeout, load shedding) is opened again at once, and an upload
  the server refuses is started again (at most 10 starts a second per uploader, so the attack is
  memory pressure, not a connection flood competing for the same two CPUs).

Reported: the client's p50 / p99 (from each request's intended start) in both conditions, and the
server's VmRSS at rest and at its highest during the attack (sampled every 50 ms).
"""

from __future__ import annotations

import resource
import select
import socket
import threading
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from harness import Bench

GOAL_P99_RATIO = 2.0
GOAL_RSS_MIB = 64.0
UPLOAD_BYTES = 100 * 1000 * 1000
UPLOADERS = 8
UPLOAD_STARTS_PER_S = 10.0
CONNECTIONS = 8


class Attack:
    """Idle sockets and unauthenticated uploads held against one server until stopped."""

    def __init__(self, url: str, idle_sockets: int):
        split = urlsplit(url)
        self.addr = (split.hostname, split.port)
        self.idle_target = idle_sockets
        self.stop = threading.Event()
        self.idle: list[socket.socket] = []
        self.reopened = 0
        self.uploads_started = 0
        self.upload_bytes_taken = 0
        self.refusals: dict[str, int] = {}
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        while len(self.idle) < self.idle_target:
            self.idle.append(socket.create_connection(self.addr, timeout=10))
        self.threads = [threading.Thread(target=self._hold_idle, daemon=True)]
        self.threads += [threading.Thread(target=self._upload, daemon=True) for _ in range(UPLOADERS)]
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
        for s in self.idle:
            s.close()
        self.idle.clear()

    def _hold_idle(self) -> None:
        # poll, not select: the descriptors go past select's 1024.
        poller = select.poll()
        by_fd = {}
        for s in self.idle:
            poller.register(s, select.POLLIN)
            by_fd[s.fileno()] = s
        while not self.stop.is_set():
            for fd, _ in poller.poll(50):
                # A silent socket becomes readable only when the server closes it.
                old = by_fd.pop(fd)
                poller.unregister(fd)
                i = self.idle.index(old)
                old.close()
                try:
                    fresh = socket.create_connection(self.addr, timeout=10)
                except OSError:
                    # Not reopened this time; the next close frees a slot to try again.
                    self.idle.pop(i)
                    continue
                self.idle[i] = fresh
                self.reopened += 1
                poller.register(fresh, select.POLLIN)
                by_fd[fresh.fileno()] = fresh

    def _upload(self) -> None:
        head = (f"POST /runtimes/x/invocations HTTP/1.1\r\nHost: berth\r\nContent-Type: application/json\r\n"
                f"Content-Length: {UPLOAD_BYTES}\r\n\r\n").encode()
        block = b"\0" * (1 << 20)
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                with socket.create_connection(self.addr, timeout=10) as s:
                    s.sendall(head)
                    sent = 0
                    s.setblocking(False)
                    answer = b""
                    # poll, not select: with the idle sockets held this descriptor is past 1024.
                    poller = select.poll()
                    poller.register(s, select.POLLIN | select.POLLOUT)
                    while sent < UPLOAD_BYTES and not self.stop.is_set():
                        events = dict(poller.poll(500)).get(s.fileno(), 0)
                        r = events & (select.POLLIN | select.POLLHUP | select.POLLERR)
                        w = events & select.POLLOUT
                        if r:
                            chunk = s.recv(4096)
                            answer += chunk
                            if not chunk or b"\r\n\r\n" in answer:
                                break
                        if w:
                            try:
                                sent += s.send(block)
                            except (BlockingIOError, InterruptedError):
                                pass
                    code = answer.split(b" ", 2)[1].decode() if answer.count(b" ") >= 2 else "closed"
                with self.lock:
                    self.uploads_started += 1
                    self.upload_bytes_taken += sent
                    self.refusals[code] = self.refusals.get(code, 0) + 1
            except OSError:
                with self.lock:
                    self.refusals["error"] = self.refusals.get("error", 0) + 1
            self.stop.wait(max(0.0, 1.0 / UPLOAD_STARTS_PER_S - (time.monotonic() - started)))


class RssSampler:
    """The highest VmRSS of a process while running."""

    def __init__(self, pid: int):
        from harness import _status_kib

        self.read = lambda: _status_kib(pid, "VmRSS")
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.read())
            self.stop.wait(0.05)

    def __enter__(self) -> "RssSampler":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.read())


def _raise_open_files(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted, hard))


def b8(bench: "Bench") -> None:
    from harness import Berth, BrokenPath, Figure, fast_agent_package, fmt, log, median, ms

    p = bench.plan
    tools = bench.tools
    _raise_open_files(p.b8_idle_sockets + 1024)
    log("B8: starting a berth server with default edge limits and deploying the fast agent")
    server = Berth(bench.procs, tools, bench.work, "edge", warm_pool=1, isolation=bench.isolation)
    package, _ = fast_agent_package(tools, bench.work)
    arn = server.deploy("bench_edge", package, "agent.py", {"BERTH_FAST_AGENT_THREADS": "1"}, timeout=300)
    url = server.invoke_url(arn)
    session = "bench-edge-" + "0" * 24

    import os
    import resource as _res
    from harness import _cpu_ticks

    tick_ms = 1e3 / os.sysconf("SC_CLK_TCK")
    cpu: dict[str, list[dict[str, float]]] = {"idle": [], "attack": []}

    def measure(cond: str) -> dict:
        # CPU of the server and of this process (the attacker's threads) over the measurement:
        # which side pays for what the attack adds.
        server0, self0 = _cpu_ticks([server.pid]), _res.getrusage(_res.RUSAGE_SELF)
        t0 = time.monotonic()
        rep = _run(cond)
        wall = time.monotonic() - t0
        server1, self1 = _cpu_ticks([server.pid]), _res.getrusage(_res.RUSAGE_SELF)
        cpu[cond].append({
            "server": (server1 - server0) * tick_ms / wall,
            "attacker": ((self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime)) * 1e3 / wall,
        })
        return rep

    def _run(cond: str) -> dict:
        rep = tools.run_bench(["rate", "--url", url, "--sign", "--session", session, "--body-bytes", "1024",
                               "--rate", str(p.b8_rate), "--duration", str(p.b8_seconds), "--warmup", str(p.b8_warmup),
                               "--connections", str(CONNECTIONS), "--timeout", "10"],
                              timeout=p.b8_seconds + p.b8_warmup + 120)
        return rep

    # The session's sandbox is started before anything is measured.
    measure_warm = tools.run_bench(["rate", "--url", url, "--sign", "--session", session, "--body-bytes", "1024",
                                    "--rate", "10", "--duration", "0.5", "--connections", "1", "--threads", "1", "--timeout", "60"], timeout=180)
    if measure_warm["errors"]:
        raise BrokenPath(f"B8: the warm-up invocations failed: {measure_warm['error_samples'][:2]}")

    log(f"B8: {p.b8_rounds} rounds of idle / attack ({p.b8_idle_sockets} idle sockets, {UPLOADERS} unauthenticated"
        f" 100 MB uploads), {p.b8_rate:g} invocations/s for {p.b8_seconds} s each")
    idle_reps: list[dict] = []
    attack_reps: list[dict] = []
    rss_rest: list[int] = []
    rss_peak: list[int] = []
    attacks: list[Attack] = []
    for r in range(p.b8_rounds):
        for cond in (("idle", "attack") if r % 2 == 0 else ("attack", "idle")):
            if cond == "idle":
                idle_reps.append(measure("idle"))
                continue
            rss_rest.append(RssSampler(server.pid).read())
            attack = Attack(server.url, p.b8_idle_sockets)
            attacks.append(attack)
            with RssSampler(server.pid) as rss:
                attack.start()
                try:
                    attack_reps.append(measure("attack"))
                finally:
                    attack.finish()
            rss_peak.append(rss.peak)
    for name, reps in (("idle", idle_reps), ("attack", attack_reps)):
        failed = [rep for rep in reps if rep["errors"]]
        if failed:
            raise BrokenPath(f"B8 {name}: {failed[0]['errors']} invocations failed: {failed[0]['error_samples'][:2]}")

    q = {name: {k: median([ms(rep["latency"][k]) for rep in reps]) for k in ("p50", "p99")}
         for name, reps in (("idle", idle_reps), ("attack", attack_reps))}
    ratio = q["attack"]["p99"] / q["idle"]["p99"] if q["idle"]["p99"] > 0 else float("nan")
    growth_mib = max((peak - rest) / 1024 for peak, rest in zip(rss_peak, rss_rest))
    ok = ratio <= GOAL_P99_RATIO and growth_mib <= GOAL_RSS_MIB
    if sum(a.uploads_started for a in attacks) == 0:
        # An attacker that never got an upload going measured nothing.
        raise BrokenPath("B8: no unauthenticated upload was started during the attack rounds")
    bench.results.add(Figure(
        "B8", "a legitimate client's invoke p99 and server RSS under 2,000 idle sockets and 8 unauthenticated 100 MB uploads",
        f"p99 {fmt(q['idle']['p99'], 2)} ms idle, {fmt(q['attack']['p99'], 2)} ms under attack ({fmt(ratio, 2)}x);"
        f" RSS +{fmt(growth_mib, 1)} MiB",
        f"p99 <= {GOAL_P99_RATIO:g}x idle; RSS growth <= {GOAL_RSS_MIB:g} MiB", ok))

    reopened = sum(a.reopened for a in attacks)
    started = sum(a.uploads_started for a in attacks)
    taken = sum(a.upload_bytes_taken for a in attacks)
    refusals: dict[str, int] = {}
    for a in attacks:
        for code, n in a.refusals.items():
            refusals[code] = refusals.get(code, 0) + n
    lines = [
        "## B8: a legitimate client under hostile ones",
        "",
        f"One `berth serve` with the default edge limits, the fast agent warm in one session. `berth-bench rate`: signed"
        f" 1 KB invocations at {p.b8_rate:g}/s open loop on {CONNECTIONS} connections, {p.b8_seconds} s measured after"
        f" {p.b8_warmup} s of warm-up, latency from each request's intended start; {p.b8_rounds} rounds, each measuring"
        f" `idle` (nothing else on the server) and `attack` (in alternating order): {p.b8_idle_sockets} connections that"
        f" never send a byte and {UPLOADERS} uploaders each posting a 100 MB body with no credentials, held for the whole"
        f" measurement (a closed socket is reopened at once, a refused upload started again, at most"
        f" {UPLOAD_STARTS_PER_S:g} starts/s per uploader). Milliseconds; median of the rounds.",
        "",
        "| condition | p50 | p99 | server VmRSS | server CPU (ms/s) | attacker CPU (ms/s) |",
        "|---|---|---|---|---|---|",
        f"| idle | {fmt(q['idle']['p50'])} | {fmt(q['idle']['p99'])} | {fmt(median([x / 1024 for x in rss_rest]), 1)} MiB"
        f" | {fmt(median([c['server'] for c in cpu['idle']]), 1)} | {fmt(median([c['attacker'] for c in cpu['idle']]), 1)} |",
        f"| attack | {fmt(q['attack']['p50'])} | {fmt(q['attack']['p99'])} | peak {fmt(median([x / 1024 for x in rss_peak]), 1)} MiB"
        f" | {fmt(median([c['server'] for c in cpu['attack']]), 1)} | {fmt(median([c['attacker'] for c in cpu['attack']]), 1)} |",
        "",
        f"p99 ratio {fmt(ratio, 2)}x; largest RSS growth of a round {fmt(growth_mib, 1)} MiB. The attacker reopened"
        f" {reopened} idle sockets the server closed; {started} uploads were started, answered"
        f" {', '.join(f'{k}: {v}' for k, v in sorted(refusals.items()))}, and the server took"
        f" {fmt(taken / started / (1 << 20) if started else 0, 2)} MiB of each on average before refusing it"
        " (what the kernel's socket buffers absorb; the server reads none of it).",
    ]
    bench.results.sections.append("\n".join(lines))
