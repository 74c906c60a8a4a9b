"""B7: routing (issue 5), driven by bench/harness.py.

Two parts:

- The cost of the routing decision, in process (`berth-bench route-cost`): `berth_control::decide`
  on realistic policies (a 90/10 split; ten rules checked before the weights; a header rule
  matching), every call timed on its own (one clock read included) and in batches; then
  `Control::route` for new sessions against a real SQLite store in the run's scratch dir
  (store reads, the decision and the durable assignment write), and for the same sessions again.
- Affinity under load through a real `berth serve` (`berth-bench affinity`): the fast agent
  deployed as two versions that name themselves (`BERTH_FAST_AGENT_TAG` v1 / v2), an endpoint
  `bench` split 90/10 with `berth traffic set`, then many sessions invoked several times each,
  interleaved, open loop; some sessions are stopped after their first answer so their follow-ups
  are routed again through the durable assignment. Every answer says which version served it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from harness import Bench, Berth

GOAL_DECIDE_P99_US = 20.0
GOAL_SHARE_POINTS = 2.0
ENDPOINT = "bench"
SPLIT = (("v1", 90), ("v2", 10))

# Connections of the affinity load generator (one worker each).
CONNECTIONS = 32
# A call unanswered this long counts as an error. Affinity is judged on answers, not speed: the
# limit only catches a call that never ends, and lets a backlog on a busy machine drain.
AFFINITY_TIMEOUT_S = 60


def _us(ns: float) -> float:
    return ns / 1000.0


def _cli(bench: "Bench", server: "Berth", *args: str) -> dict:
    """`berth ARGS --json` as a client of `server`; its JSON answer."""
    from harness import ACCESS_KEY_ID, SECRET_ACCESS_KEY, BrokenPath

    env = bench.tools.env()
    env.update(BERTH_ENDPOINT_URL=server.url, AWS_ACCESS_KEY_ID=ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY,
               NO_COLOR="1")
    out = subprocess.run([str(bench.tools.berth), *args, "--json"], capture_output=True, text=True, timeout=120, env=env,
                         stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        raise BrokenPath(f"berth {' '.join(args)} failed: {out.stderr.strip()[-1000:]}")
    return json.loads(out.stdout)


def _deploy_split(bench: "Bench", server: "Berth") -> tuple[str, str]:
    """Runtime bench_split: the fast agent as version 1 (tag v1) and version 2 (tag v2), endpoint
    `bench` on version 1, then `berth traffic set ... 1=90 2=10`. Returns (runtime id, ARN)."""
    from harness import BUCKET, ROLE_ARN, BrokenPath, fast_agent_package, log

    package, _ = fast_agent_package(bench.tools, bench.work)
    env = {"BERTH_FAST_AGENT_THREADS": "1"}
    log("B7: deploying the fast agent as two tagged versions (v1, v2) and splitting endpoint bench 90/10")
    arn = server.deploy("bench_split", package, "agent.py", {**env, "BERTH_FAST_AGENT_TAG": "v1"}, timeout=300)
    rid = arn.rsplit("/", 1)[1]
    key = f"bench_split/{uuid.uuid4().hex}.zip"
    server.s3.put_object(Bucket=BUCKET, Key=key, Body=package)
    server.control.update_agent_runtime(
        agentRuntimeId=rid,
        agentRuntimeArtifact={"codeConfiguration": {
            "code": {"s3": {"bucket": BUCKET, "prefix": key}},
            "runtime": f"PYTHON_3_{sys.version_info.minor}",
            "entryPoint": ["agent.py"],
        }},
        roleArn=ROLE_ARN,
        environmentVariables={**env, "BERTH_FAST_AGENT_TAG": "v2"},
    )
    deadline = time.monotonic() + 300
    while True:
        r = server.control.get_agent_runtime(agentRuntimeId=rid)
        if r["status"] == "READY" and r.get("agentRuntimeVersion") == "2":
            break
        if r["status"] not in ("CREATING", "UPDATING", "READY"):
            raise BrokenPath(f"bench_split version 2 is {r['status']}: {r.get('failureReason')}")
        if time.monotonic() > deadline:
            raise BrokenPath(f"bench_split version 2 not READY after 300 s ({r['status']})")
        time.sleep(0.25)
    server.control.create_agent_runtime_endpoint(agentRuntimeId=rid, name=ENDPOINT, agentRuntimeVersion="1")
    deadline = time.monotonic() + 120
    while True:
        ep = server.control.get_agent_runtime_endpoint(agentRuntimeId=rid, endpointName=ENDPOINT)
        if ep["status"] == "READY" and ep.get("liveVersion") == "1":
            break
        if ep["status"] not in ("CREATING", "UPDATING", "READY") or time.monotonic() > deadline:
            raise BrokenPath(f"endpoint {ENDPOINT} of bench_split: {ep['status']} {ep.get('failureReason', '')}")
        time.sleep(0.1)
    t = _cli(bench, server, "traffic", "set", rid, "--endpoint", ENDPOINT, *(f"{i + 1}={w}" for i, (_, w) in enumerate(SPLIT)))
    weights = {w["version"]: w["weight"] for w in t.get("weights", [])}
    if weights != {i + 1: w for i, (_, w) in enumerate(SPLIT)}:
        raise BrokenPath(f"traffic set did not take: {t}")
    return rid, arn


def b7(bench: "Bench") -> None:
    from harness import Berth, BrokenPath, Figure, fmt, log

    p = bench.plan
    tools = bench.tools

    # -- the decision, in process ------------------------------------------------------
    log(f"B7: routing decision cost in process ({p.b7_decide_samples:,} calls per policy), Control::route x {p.b7_route_samples}")
    cost = tools.run_bench(["route-cost", "--samples", str(p.b7_decide_samples), "--batch", "100",
                            "--route-samples", str(p.b7_route_samples), "--dir", str(bench.work)],
                           timeout=600 if not p.smoke else 300)
    cases = {x["name"]: x for x in cost["decide"]}
    worst = max(cost["decide"], key=lambda x: x["per_call"]["p99"])
    worst_p99 = _us(worst["per_call"]["p99"])
    split_p99 = _us(cases["weights_90_10"]["per_call"]["p99"])
    if not 80 <= cost["route_v1_percent"] <= 100 and p.b7_route_samples >= 1000:
        bench.results.problems.append(f"B7: Control::route sent {cost['route_v1_percent']}% of new sessions to version 1 of a 90/10 split")

    # -- affinity under load, through berth serve ----------------------------------------
    server = getattr(bench, "berth", None)
    if server is None:
        log("B7: starting a berth server (warm pool 1)")
        server = Berth(bench.procs, tools, bench.work, "main", warm_pool=1, isolation=bench.isolation)
    rid, arn = _deploy_split(bench, server)
    url = f"{server.url}/runtimes/{quote(arn, safe='')}/invocations?qualifier={ENDPOINT}"
    split = ",".join(f"{tag}={w}" for tag, w in SPLIT)
    log(f"B7: affinity: {p.b7_sessions} sessions x {p.b7_invocations} calls at {p.b7_rate:g}/s, {p.b7_active} interleaved,"
        f" every {p.b7_reroute_every}th stopped after its first call")
    aff = tools.run_bench(
        ["affinity", "--url", url, "--sign", "--body", "{}", "--sessions", str(p.b7_sessions), "--invocations", str(p.b7_invocations),
         "--rate", str(p.b7_rate), "--active", str(p.b7_active), "--connections", str(CONNECTIONS),
         "--reroute-every", str(p.b7_reroute_every), "--split", split, "--timeout", str(AFFINITY_TIMEOUT_S)],
        timeout=p.b7_sessions * p.b7_invocations / p.b7_rate + 600)
    shown = _cli(bench, server, "traffic", "show", rid, "--endpoint", ENDPOINT)
    server_sessions = {f"v{s['version']}": s["assigned"] for s in shown.get("sessions", [])}
    client_sessions = {tag: v["sessions"] for tag, v in aff["versions"].items() if v["sessions"]}
    # Sessions whose every call failed were routed (and assigned) without an answer to count.
    server_agrees = server_sessions == client_sessions or aff["sessions_answered"] < aff["sessions"]
    share = {tag: aff["versions"].get(tag, {}).get("share_percent", 0.0) for tag, _ in SPLIT}
    share_ok = all(abs(share[tag] - w) <= GOAL_SHARE_POINTS for tag, w in SPLIT)
    broken = []
    if aff["errors"]:
        broken.append(f"{aff['errors']} calls failed, e.g. {aff['error_samples'][:2]}")
    if aff["violations"]:
        broken.append(f"{aff['violations']} follow-ups answered by another version than their session's first:"
                      f" {aff['violation_samples'][:3]}")
    if aff["misrouted_sessions"]:
        broken.append(f"{aff['misrouted_sessions']} sessions first answered by another version than their hash selects")
    if not server_agrees:
        broken.append(f"the server's assignments {server_sessions} differ from the answers {client_sessions}")
    if aff["reroute_stop_failed"]:
        broken.append(f"{aff['reroute_stop_failed']} sessions could not be stopped after their first answer:"
                      f" {aff['error_samples'][:2]}")
    if p.smoke and (broken or aff["sessions_answered"] == 0):
        # Affinity is correctness, not timing: a smoke run fails on it.
        raise BrokenPath("B7: " + "; ".join(broken or ["no session was answered"]))
    bench.results.problems += [f"B7: {b}" for b in broken]
    if aff["sessions_stop_failed"]:
        bench.results.problems.append(f"B7: {aff['sessions_stop_failed']} of {aff['sessions']} sessions could not be stopped"
                                      " after their last call (left to their idle timeout)")

    bench.b7_decide_ok = worst_p99 < GOAL_DECIDE_P99_US
    affinity_ok = not broken and aff["sessions_answered"] == aff["sessions"]
    ok = bench.b7_decide_ok and affinity_ok and share_ok
    v = aff["versions"]
    bench.results.add(Figure(
        "B7", "routing: decision cost p99 (per call, clock read included); affinity under load",
        f"decide p99 {fmt(split_p99, 2)} µs (90/10), worst policy {fmt(worst_p99, 2)} µs; {aff['sessions']} sessions x"
        f" {aff['invocations_per_session']}: " + " / ".join(f"{tag} {fmt(share[tag], 1)}%" for tag, _ in SPLIT)
        + f", {aff['violations']} violations, {aff['errors']} errors",
        f"p99 < {GOAL_DECIDE_P99_US:.0f} µs; 0 violations, 0 errors; shares within {GOAL_SHARE_POINTS:.0f} points of 90/10", ok))

    clock = cost["clock"]
    lines = [
        "## B7: routing decision cost and session affinity",
        "",
        f"**The decision** (`berth_control::decide`, {cost['build']} build, in process): {p.b7_decide_samples:,} calls per"
        " policy, each with another session id (`bench-` + 32 hex digits) and the request the server builds (user id,"
        " actor, a header lookup in a `HeaderMap` of 12 request headers). *Per call*: every call between two"
        " `Instant::now()` reads, so each sample includes one clock read"
        f" (alone: p50 {clock['p50']} ns, p99 {clock['p99']} ns); the goal is judged on this upper bound, on the worst"
        " policy. *Batched*: batches of 100 calls timed as one and divided by 100, with no clock cost, but a slow call"
        " inside a batch is averaged away. Microseconds.",
        "",
        "| policy | decided by | p50 | p90 | p99 | p99.9 | max | batched p50 | batched p99 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for x in cost["decide"]:
        pc, bt = x["per_call"], x["batched"]
        lines.append(f"| {x['description']} | {x['decided_by']} | {fmt(_us(pc['p50']))} | {fmt(_us(pc['p90']))} |"
                     f" {fmt(_us(pc['p99']))} | {fmt(_us(pc['p999']))} | {fmt(_us(pc['max']), 1)} | {fmt(_us(bt['p50']))} |"
                     f" {fmt(_us(bt['p99']))} |")
    rn, ra = cost["route_new"], cost["route_assigned"]
    med = {x["name"]: _us(x["per_call"]["p50"]) for x in cost["decide"]}
    lines += [
        "",
        f"Medians per call: the 90/10 weights {fmt(med['weights_90_10'])} µs, nearly all of it hashing the session id"
        f" (SHA-256): no policy at all, which still hashes, costs {fmt(med['no_policy'])} µs. Ten rules checked first add"
        f" {fmt(med['rules_10_miss'] - med['weights_90_10'])} µs; seven of them are plain string comparisons, so the three"
        " header rules' `HeaderMap` lookups (the name hashed case-insensitively on every call) are the likely bulk: ten"
        f" rules ending in a matching header rule, with no hashing, cost {fmt(med['header_rule_match'])} µs. The max of a"
        " policy is one call preempted or interrupted on a shared machine.",
        "",
        f"**The whole routing of a new session** (`Control::route`, {p.b7_route_samples} new sessions one after another, then"
        " the same sessions again) against a real store: SQLite (WAL, `synchronous=FULL`) in a fresh database in the"
        " run's scratch dir. A new session reads the endpoint, the runtime, its (missing) assignment, the policy and the"
        " version, decides, and writes its assignment in one durable transaction (an fsync); a routed session finds"
        f" its assignment (reads only). Informative: the goal is the decision's. Split observed:"
        f" {fmt(cost['route_v1_percent'], 1)}% of the new sessions to version 1. Milliseconds.",
        "",
        "| call | count | p50 | p90 | p99 | p99.9 | max |",
        "|---|---|---|---|---|---|---|",
        f"| `Control::route`, new session | {rn['count']} | {fmt(rn['p50'] / 1000)} | {fmt(rn['p90'] / 1000)} | {fmt(rn['p99'] / 1000)} |"
        f" {fmt(rn['p999'] / 1000)} | {fmt(rn['max'] / 1000)} |",
        f"| `Control::route`, assigned session | {ra['count']} | {fmt(ra['p50'] / 1000)} | {fmt(ra['p90'] / 1000)} |"
        f" {fmt(ra['p99'] / 1000)} | {fmt(ra['p999'] / 1000)} | {fmt(ra['max'] / 1000)} |",
        "",
        f"**Affinity under load.** The fast agent deployed as two versions of one runtime that name themselves in every"
        f" answer (`BERTH_FAST_AGENT_TAG` = v1, v2), endpoint `{ENDPOINT}` on version 1, then"
        f" `berth traffic set RUNTIME --endpoint {ENDPOINT} 1=90 2=10`. `berth-bench affinity`: {aff['sessions']} sessions x"
        f" {aff['invocations_per_session']} calls, open loop at {p.b7_rate:g} calls/s on {CONNECTIONS} connections;"
        f" {aff['active_sessions']} sessions in flight at once, each session's calls {aff['active_sessions'] / p.b7_rate:.2f} s"
        f" apart with the other sessions' calls between them ({p.b7_rate / p.b7_invocations:.1f} new sessions/s). Every"
        f" {p.b7_reroute_every}th session is stopped (`StopRuntimeSession`) after its first answer, so its follow-ups find no"
        " sandbox and are routed again through the session's durable assignment; every session is stopped after its"
        f" last call. A call unanswered {AFFINITY_TIMEOUT_S} s after its intended start is an error. A *violation* is a follow-up answered by another version than the session's first answer;"
        " *misrouted* is a session first answered by another version than the hash of its id selects.",
        "",
        "| version | sessions | share | expected | calls answered | assigned (server) |",
        "|---|---|---|---|---|---|",
    ]
    for tag, w in SPLIT:
        x = v.get(tag, {})
        lines.append(f"| {tag} | {x.get('sessions', 0)} | {fmt(share[tag], 2)}% | {w}% | {x.get('invocations', 0)} |"
                     f" {server_sessions.get(tag, 0)} |")
    for tag in sorted(set(v) - {t for t, _ in SPLIT}):
        lines.append(f"| {tag} (unexpected) | {v[tag]['sessions']} | {fmt(v[tag]['share_percent'], 2)}% | 0% |"
                     f" {v[tag]['invocations']} | {server_sessions.get(tag, 0)} |")
    lf, lu = aff["latency_first"], aff["latency_follow_up"]
    lines += [
        "",
        "| calls | answered | errors | violations (sessions) | misrouted sessions | rerouted sessions (follow-ups, violations) |"
        " achieved calls/s |",
        "|---|---|---|---|---|---|---|",
        f"| {aff['invocations']} | {aff['ok']} | {aff['errors']} | {aff['violations']} ({aff['sessions_with_violations']}) |"
        f" {aff['misrouted_sessions']} | {aff['rerouted_sessions']} ({aff['rerouted_follow_ups']}, {aff['rerouted_violations']}) |"
        f" {fmt(aff['achieved_rate'], 1)} |",
        "",
        f"Latency from intended start to last byte, ms: first calls (new sessions) p50 {fmt(lf['p50'] / 1000, 1)} / p99"
        f" {fmt(lf['p99'] / 1000, 1)}; follow-ups p50 {fmt(lu['p50'] / 1000, 2)} / p99 {fmt(lu['p99'] / 1000, 1)} (the"
        " follow-ups of rerouted sessions start a sandbox). Sessions stopped at their end:"
        f" {aff['sessions_stopped']}; re-routes skipped because the next call was already out: {aff['reroutes_skipped']}.",
    ]
    if broken:
        lines += ["", "Problems: " + "; ".join(broken) + "."]
    bench.results.sections.append("\n".join(lines))


def profile(bench: "Bench") -> str:
    """For a missed B7: a profile of the decision if its goal was missed (the affinity part is
    correctness: its evidence is the violation samples in the section)."""
    import shutil

    if getattr(bench, "b7_decide_ok", True):
        return ("The decision met its goal: the miss is the affinity part (violations, errors, misrouted sessions or a"
                " share off the split), a correctness matter a CPU profile does not explain; see the problems listed in"
                " the B7 section.")
    if not shutil.which("perf"):
        return "perf is not installed; no profile taken."
    out = bench.work / "perf-B7.data"
    cmd = [str(bench.tools.bench), "route-cost", "--samples", "2000000", "--route-samples", "0", "--dir", str(bench.work)]
    rec = subprocess.run(["perf", "record", "-e", "cpu-clock", "-F", "2000", "-g", "-o", str(out), "--", *cmd],
                         capture_output=True, text=True, timeout=600, env=bench.tools.env())
    if rec.returncode != 0:
        return f"perf record failed ({rec.stderr.strip()[-300:]}); no profile taken."
    rep = subprocess.run(["perf", "report", "-i", str(out), "--stdio", "--no-inline", "--no-children", "--sort", "symbol",
                          "-g", "none", "--percent-limit", "1"], capture_output=True, text=True, timeout=600)
    rows = [line.rstrip()[:200] for line in rep.stdout.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return "\n".join([
        f"`perf record -e cpu-clock -F 2000 -g -- {' '.join(cmd[1:])}` (the decision cases only), self time over 1%:",
        "",
        "```",
        *rows[:25],
        "```",
    ])
