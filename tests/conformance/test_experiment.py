"""Experiment statistics equal scipy's on the same scores.

Known scores (drawn with numpy from a fixed seed: several versions and evaluators, unequal sizes
and variances, an errored result, a one-value version) are recorded for the probe runtime's
DEFAULT endpoint through the real path (`berth scores import` -> `POST .../scores` -> the trace
store); the experiment is read back with `berth experiment show --json` (`GET .../experiment`),
and every statistic is compared with scipy's on the same values, computed here in the same run:
n, mean, sample variance (`ddof=1`), the t-based 95% interval of the mean
(`scipy.stats.t.interval`), the change against the baseline and Welch's t-test
(`scipy.stats.ttest_ind(equal_var=False)`: statistic, df, two-sided p-value). Where scipy answers
NaN (one value, no variance), Berth answers null. The same scores are counted in Prometheus and
found as log records by boto3's StartQuery in the results group.
"""

from __future__ import annotations

import json
import math
import time
import uuid

import numpy as np
import pytest
import scipy.stats
from berth_harness import access_key_allowing, native, raw_request, run_cli

pytestmark = pytest.mark.build

SEED = 20261204
#: Relative tolerance: sums in a different order (1e-12) and statrs' t quantile and survival
#: function against scipy's (both converge far below this).
REL = 1e-7


def close(got, want, what):
    if want is None or (isinstance(want, float) and math.isnan(want)):
        assert got is None, f"{what}: scipy says undefined, Berth says {got}"
        return
    assert got is not None, f"{what}: Berth says null, scipy says {want}"
    assert math.isclose(got, want, rel_tol=REL, abs_tol=1e-12), f"{what}: {got} != scipy {want}"


def draw(rng):
    """{evaluator: {version: values}}: the scores of this run."""
    return {
        # Unequal sizes and spreads: Welch's df is far from n1 + n2 - 2.
        "helpfulness": {
            1: rng.normal(0.72, 0.08, 40),
            2: rng.normal(0.64, 0.21, 23),
            3: rng.normal(0.75, 0.02, 2),
        },
        # Pass/fail scores.
        "goal": {
            1: rng.integers(0, 2, 31).astype(float),
            2: rng.integers(0, 2, 17).astype(float),
        },
        # The baseline has one value: no variance, no interval, no test.
        "sparse": {
            1: rng.uniform(0, 1, 1),
            2: rng.uniform(0, 1, 12),
        },
    }


def scipy_reference(values, base):
    n = len(values)
    mean = float(np.mean(values))
    ref = {"n": n, "mean": mean}
    if n >= 2:
        ref["variance"] = float(np.var(values, ddof=1))
        lo, hi = scipy.stats.t.interval(
            0.95, n - 1, loc=mean, scale=scipy.stats.sem(values)
        )
        ref["ci"] = (float(lo), float(hi))
    else:
        ref["variance"] = None
        ref["ci"] = None
    if base is not None:
        bmean = float(np.mean(base))
        ref["absoluteChange"] = mean - bmean
        ref["relativeChange"] = (mean - bmean) / abs(bmean)
        if n >= 2 and len(base) >= 2:
            w = scipy.stats.ttest_ind(values, base, equal_var=False)
            ref["t"], ref["df"], ref["pValue"] = float(w.statistic), float(w.df), float(w.pvalue)
        else:
            ref["t"] = ref["df"] = ref["pValue"] = None
    return ref


@pytest.mark.timeout(600)
def test_experiment_statistics_equal_scipys_on_the_same_scores(berth, probe, tmp_path):
    runtime = probe["agentRuntimeId"]
    tag = uuid.uuid4().hex[:8]
    drawn = draw(np.random.default_rng(SEED))
    now_ms = int(time.time() * 1000)
    scores = []
    for evaluator, by_version in drawn.items():
        for version, values in by_version.items():
            for i, v in enumerate(values):
                scores.append(
                    {
                        "source": f"gate:{tag}",
                        "evaluatorId": f"Test.{evaluator}-{tag}",
                        "evaluatorName": evaluator,
                        "version": version,
                        "sessionId": f"s-{evaluator}-{version}-{i}",
                        "traceId": uuid.uuid4().hex,
                        "value": float(v),
                        "endedAt": now_ms - 1000 - i,
                    }
                )
    # An errored result: counted as an error, not a value.
    scores.append(
        {
            "source": f"gate:{tag}",
            "evaluatorId": f"Test.helpfulness-{tag}",
            "version": 2,
            "sessionId": "s-error",
            "error": "judge timed out",
            "endedAt": now_ms - 500,
        }
    )
    path = tmp_path / "scores.json"
    path.write_text(json.dumps(scores))
    done = run_cli(berth, "scores", "import", runtime, "--endpoint", "DEFAULT", str(path))
    assert done.returncode == 0, done.stderr
    assert f"stored {len(scores)} scores" in done.stdout

    shown = run_cli(
        berth,
        "experiment", "show", runtime, "--endpoint", "DEFAULT",
        "--since", "1h", "--baseline", "1", "--json",
    )
    assert shown.returncode == 0, shown.stderr
    exp = json.loads(shown.stdout)
    assert exp["baselineVersion"] == 1
    by_id = {e["evaluatorId"]: e for e in exp["evaluators"]}

    for evaluator, by_version in drawn.items():
        got = by_id[f"Test.{evaluator}-{tag}"]
        assert got["evaluatorName"] == evaluator
        versions = {v["version"]: v for v in got["versions"]}
        assert sorted(versions) == sorted(by_version)
        base = by_version[1]
        for version, values in by_version.items():
            what = f"{evaluator} v{version}"
            v = versions[version]
            ref = scipy_reference(values, None if version == 1 else base)
            assert v["n"] == ref["n"], what
            close(v["mean"], ref["mean"], f"{what} mean")
            close(v["variance"], ref["variance"], f"{what} variance")
            if ref["ci"] is None:
                assert v["confidenceInterval"] is None, what
            else:
                close(v["confidenceInterval"]["lower"], ref["ci"][0], f"{what} ci lower")
                close(v["confidenceInterval"]["upper"], ref["ci"][1], f"{what} ci upper")
            if version == 1:
                assert v["vsBaseline"] is None, what
                continue
            c = v["vsBaseline"]
            close(c["absoluteChange"], ref["absoluteChange"], f"{what} absolute change")
            close(c["relativeChange"], ref["relativeChange"], f"{what} relative change")
            for k in ("t", "df", "pValue"):
                close(c[k], ref[k], f"{what} {k}")
            assert c["isSignificant"] == (ref["pValue"] is not None and ref["pValue"] < 0.05), what
    assert {v["version"]: v["errors"] for v in by_id[f"Test.helpfulness-{tag}"]["versions"]} == {
        1: 0,
        2: 1,
        3: 0,
    }

    # Prometheus: count, sum and errors per endpoint, version and evaluator, from the totals.
    text = native(berth, "GET", "/berth/v1/metrics").body.decode()
    labels = f'runtime_id="{runtime}",endpoint="DEFAULT",version="2",evaluator="Test.helpfulness-{tag}"'
    samples = {
        line.split("{")[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if labels in line
    }
    help2 = drawn["helpfulness"][2]
    assert samples["berth_eval_scores_total"] == len(help2), samples
    assert math.isclose(samples["berth_eval_score_sum_total"], float(np.sum(help2)), rel_tol=1e-9)
    assert samples["berth_eval_score_errors_total"] == 1, samples

    # Each score is a log record in its source's results group: boto3's StartQuery finds it.
    logs = berth.client("logs")
    now_s = int(time.time())
    started = logs.start_query(
        logGroupName=f"/aws/bedrock-agentcore/evaluations/results/gate/{tag}",
        startTime=now_s - 600,
        endTime=now_s + 600,
        queryString='fields attributes.gen_ai.evaluation.name as name, '
        "attributes.gen_ai.evaluation.score.value as value, attributes.berth.version as version "
        '| filter attributes.session.id = "s-goal-2-0"',
    )
    got = logs.get_query_results(queryId=started["queryId"])
    assert got["status"] == "Complete", got
    found = [{f["field"]: f["value"] for f in row} for row in got["results"]]
    assert len(found) == 1, found
    assert found[0]["name"] == "goal" and found[0]["version"] == "2", found
    assert float(found[0]["value"]) == float(drawn["goal"][2][0]), found

    # Without --baseline the endpoint's live version is the baseline.
    traffic = run_cli(berth, "traffic", "show", runtime, "--endpoint", "DEFAULT", "--json")
    assert traffic.returncode == 0, traffic.stderr
    live = json.loads(traffic.stdout)["liveVersion"]
    shown = run_cli(
        berth, "experiment", "show", runtime, "--endpoint", "DEFAULT", "--since", "1h", "--json"
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["baselineVersion"] == live

    # The table names the baseline and marks what differs significantly.
    table = run_cli(
        berth, "experiment", "show", runtime, "--endpoint", "DEFAULT", "--since", "1h",
        "--baseline", "1",
    )
    assert table.returncode == 0, table.stderr
    assert f"Test.helpfulness-{tag}" in table.stdout
    assert "1 (baseline)" in table.stdout


def test_experiment_refuses_a_backwards_window_an_unknown_endpoint_and_bad_scores(berth, probe):
    runtime = probe["agentRuntimeId"]
    base = f"/berth/v1/runtimes/{runtime}/endpoints"
    resp = native(berth, "GET", f"{base}/DEFAULT/experiment", query="from=2000&to=1000")
    assert resp.status == 400 and resp.error_type == "ValidationException", resp
    resp = native(berth, "GET", f"{base}/DEFAULT/experiment", query="baseline=x")
    assert resp.status == 400 and resp.error_type == "ValidationException", resp
    resp = native(berth, "GET", f"{base}/nosuch/experiment")
    assert resp.status == 404 and resp.error_type == "ResourceNotFoundException", resp
    for body in (
        {"scores": [{"source": "x"}]},
        {"scores": [{"source": "elsewhere", "evaluatorId": "e", "version": 1, "sessionId": "s"}]},
        {"scores": [], "extra": 1},
    ):
        resp = native(berth, "POST", f"{base}/DEFAULT/scores", body=json.dumps(body).encode())
        assert resp.status == 400 and resp.error_type == "ValidationException", (body, resp)


def test_experiment_and_scores_are_authorised_as_their_own_actions(berth, probe):
    base = f"/berth/v1/runtimes/{probe['agentRuntimeId']}/endpoints/DEFAULT"
    for action, status in (("berth:GetUsage", 403), ("berth:GetExperiment", 200)):
        key, secret = access_key_allowing(berth, action)
        resp = raw_request(
            berth.url, "GET", f"{base}/experiment", access_key=key, secret_key=secret
        )
        assert resp.status == status, (action, resp)
    body = json.dumps({"scores": []}).encode()
    for action, status in (("berth:GetExperiment", 403), ("berth:PutScores", 200)):
        key, secret = access_key_allowing(berth, action)
        resp = raw_request(
            berth.url, "POST", f"{base}/scores", body=body, access_key=key, secret_key=secret
        )
        assert resp.status == status, (action, resp)
