"""B12: container agents (issue 17, acceptance 5), driven by bench/harness.py.

One `berth serve` with no warm pool (every new session is a cold start) runs the same agent two
ways: `examples/hello-agent` as a code zip (Berth builds its venv on the host's Python) and as a
container image built like the starter toolkit builds one (tests/conformance/images.py: a
debootstrap Debian base, the SDK installed from the package index, `python agent.py` as its
command so both run the same program), pushed with skopeo to Berth's registry.

- Pull and unpack: the time from `CreateAgentRuntime` with the image's ECR-style URI to READY
  (resolve, fetch, verify, unpack every layer into an empty layer cache).
- New session to first byte: `berth-bench cold` (fresh session id, timed to the first response
  byte, session stopped after) alternating between the two runtimes by round; the figure is the
  ratio of their p50s (medians of rounds), the image's over the zip's.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness import Bench

GOAL_RATIO = 1.2


def b12(bench: "Bench") -> None:
    from harness import (ACCESS_KEY_ID, ACCOUNT, REGION, REPO, ROLE_ARN, SECRET_ACCESS_KEY, Berth, BrokenPath,
                         Figure, fmt, log, median, ms, sdk_agent_package)

    sys.path.insert(0, str(REPO / "tests" / "conformance"))
    import images

    p = bench.plan
    log("B12: building the SDK agent as a starter-toolkit image (debootstrap base, buildah; cached)")
    agent = (REPO / "examples" / "hello-agent" / "agent.py").read_text()
    layout = images.build_agent_image(agent, "localhost/berth-bench/hello:latest", bench.work / "b12-oci",
                                      cmd=["python", "agent.py"])
    server = Berth(bench.procs, bench.tools, bench.work, "images", warm_pool=0, isolation=bench.isolation)
    zip_arn = server.deploy("bench_zip_hello", sdk_agent_package(), "agent.py", None, timeout=600)

    host = server.url.split("://", 1)[1].rstrip("/")
    auth = images.authfile(bench.work / "b12-auth.json", host, ACCESS_KEY_ID, SECRET_ACCESS_KEY)
    images.skopeo_copy(f"oci:{layout}", f"docker://{host}/bench/hello:v1", dest_auth=auth)
    uri = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/bench/hello:v1"
    log("B12: deploying the image (pull and unpack into an empty layer cache)")
    started = time.monotonic()
    created = server.control.create_agent_runtime(
        agentRuntimeName="bench_image_hello",
        agentRuntimeArtifact={"containerConfiguration": {"containerUri": uri}},
        roleArn=ROLE_ARN,
    )
    while True:
        r = server.control.get_agent_runtime(agentRuntimeId=created["agentRuntimeId"])
        if r["status"] == "READY":
            break
        if r["status"] != "CREATING":
            raise BrokenPath(f"B12: the image version is {r['status']}: {r.get('failureReason')}")
        if time.monotonic() - started > 900:
            raise BrokenPath("B12: the image version is still CREATING after 900 s")
        time.sleep(0.1)
    pull_s = time.monotonic() - started
    image_arn = r["agentRuntimeArn"]
    layers_bytes = sum(f.stat().st_size for f in layout.rglob("*") if f.is_file())

    body = '{"prompt": "hello"}'
    samples = {"zip": [], "image": []}
    urls = {"zip": server.invoke_url(zip_arn), "image": server.invoke_url(image_arn)}
    for r in range(p.rounds):
        for kind in bench.order(r, ("zip", "image")):
            rep = bench.tools.run_bench(
                ["cold", "--url", urls[kind], "--sign", "--count", str(p.b4_sdk_samples_per_round), "--stop",
                 "--body", body, "--timeout", "120"], timeout=p.b4_sdk_samples_per_round * 130 + 60)
            if rep["errors"]:
                raise BrokenPath(f"B12 {kind}: {rep['error_samples']}")
            samples[kind].append(rep)
    p50 = {k: median([ms(x["ttfb"]["p50"]) for x in v]) for k, v in samples.items()}
    ratio = p50["image"] / p50["zip"] if p50["zip"] else float("nan")
    bench.results.add(Figure(
        "B12", "container agents: new session to first byte, cached image vs zip of the same agent (p50); first pull and unpack",
        f"{fmt(p50['image'], 0)} vs {fmt(p50['zip'], 0)} ms = {fmt(ratio, 2)}x; pull and unpack {fmt(pull_s, 1)} s"
        f" ({layers_bytes / (1 << 20):.0f} MiB compressed)",
        f"<= {GOAL_RATIO}x", ratio <= GOAL_RATIO))
    rows = "\n".join(
        f"| {k} | {sum(x['ok'] for x in v)} | {fmt(p50[k], 0)} | "
        + ", ".join(fmt(ms(x['ttfb']['p50']), 0) for x in v) + " |"
        for k, v in samples.items())
    bench.results.sections.append("\n".join([
        "## B12: container agents",
        "",
        "One server with no warm pool runs `examples/hello-agent` as a code zip and as a starter-toolkit-style image"
        " (Debian base from debootstrap, the SDK from the package index, `python agent.py`), pushed with skopeo to"
        " Berth's registry. Each sample is a new session timed from sending to the first response byte; rounds"
        " alternate the two runtimes. Milliseconds.",
        "",
        "| packaging | samples | p50 (median of rounds) | p50 per round |",
        "|---|---|---|---|",
        rows,
        "",
        f"First deploy of the image (resolve, fetch, verify and unpack every layer into an empty cache, then READY):"
        f" {fmt(pull_s, 1)} s for {layers_bytes / (1 << 20):.0f} MiB of compressed layers.",
    ]))
