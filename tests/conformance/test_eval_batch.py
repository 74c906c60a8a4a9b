"""Evaluations (issue 15, acceptance 2): datasets and batch evaluations through the unmodified
clients.

Datasets: boto3 `bedrock-agentcore-control` and the SDK's `DatasetClient` (`*_and_wait`
helpers) create, read, edit, version and delete datasets; `GetDataset`'s `downloadUrl` is
fetched with plain `requests.get` (no SigV4) exactly as the SDK's
`DatasetManagementServiceProvider` does, which turns it into the runner's `Dataset`; a tampered
or expired URL is refused; `AddDatasetExamples` is all-or-nothing; `s3Source` reads a JSONL
object from Berth's own S3-compatible store.

Batch evaluations: boto3 `bedrock-agentcore` starts (idempotent `clientToken`, 202), gets,
lists, stops and deletes them; `outputConfig.cloudWatchConfig` always names both the log group
and the stream (the SDK's `BatchEvaluationRunner` reads both with `[]`), and a batch whose
sessions have no spans ends FAILED with the reason in `errorDetails`.
"""

from __future__ import annotations

import json
import time
import urllib.parse

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from berth_harness import (
    ACCESS_KEY_ID,
    ARTIFACT_BUCKET,
    REGION,
    SECRET_ACCESS_KEY,
    STATE_TIMEOUT,
    client_token,
    expect_error,
    expect_validation,
    native,
    poll,
    unique_name,
    wait_not_found,
)

PREDEFINED = "AGENTCORE_EVALUATION_PREDEFINED_V1"


def scenario(sid: str, prompt: str = "add 2 and 3", expected: str = "the tool said 5") -> dict:
    return {
        "scenario_id": sid,
        "turns": [{"input": prompt, "expected_response": expected}],
        "expected_trajectory": ["add"],
        "assertions": ["the answer names the sum"],
    }


@pytest.fixture
def sdk_env(monkeypatch, berth):
    """The SDK's clients take no endpoint: point botocore's endpoint variables at Berth."""
    for var in (
        "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE",
        "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL",
        "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS",
    ):
        monkeypatch.setenv(var, berth.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    return berth


def test_dataset_lifecycle_with_the_sdk_dataset_client(sdk_env, control):
    from bedrock_agentcore.evaluation.dataset_client import DatasetClient
    from bedrock_agentcore.evaluation.runner.dataset_providers import (
        DatasetManagementServiceProvider,
    )

    client = DatasetClient(region_name=REGION)
    name = unique_name("ds")
    got = client.create_dataset_and_wait(
        datasetName=name,
        description="arithmetic",
        schemaType=PREDEFINED,
        source={"inlineExamples": {"examples": [scenario("add_1"), scenario("add_2", "add 1 and 1", "2")]}},
        clientToken=client_token(),
    )
    assert got["status"] == "ACTIVE" and got["datasetVersion"] == "DRAFT", got
    assert got["exampleCount"] == 2, got
    assert got["exampleCountByField"] == {"turns": 2, "input": 0, "actorProfile": 0}, got
    assert got["draftStatus"] == "MODIFIED" and got["datasetName"] == name
    ds = got["datasetId"]
    assert got["datasetArn"].endswith(f":dataset/{ds}")

    # The download URL needs no signature: plain requests.get, one example per line.
    assert got["downloadUrlExpiresAt"].timestamp() > time.time()
    r = requests.get(got["downloadUrl"], timeout=10)
    assert r.status_code == 200, r.text
    lines = [json.loads(l) for l in r.text.splitlines() if l]
    assert [l["scenario_id"] for l in lines] == ["add_1", "add_2"]
    # ... and the SDK's provider turns it into the runners' Dataset.
    dataset = DatasetManagementServiceProvider(ds, client=client).get_dataset()
    assert [s.scenario_id for s in dataset.scenarios] == ["add_1", "add_2"]
    assert dataset.scenarios[0].turns[0].expected_response == "the tool said 5"
    assert dataset.scenarios[0].expected_trajectory == ["add"]

    # A tampered or altered URL is refused.
    parts = urllib.parse.urlsplit(got["downloadUrl"])
    q = dict(urllib.parse.parse_qsl(parts.query))
    forged = parts._replace(query=urllib.parse.urlencode({**q, "expires": str(int(q["expires"]) + 1)}))
    assert requests.get(urllib.parse.urlunsplit(forged), timeout=10).status_code == 403
    other = parts._replace(path=parts.path.replace(ds, ds + "x"))
    assert requests.get(urllib.parse.urlunsplit(other), timeout=10).status_code == 403

    # Add is all or nothing: one bad example and nothing is written.
    expect_validation(
        control.add_dataset_examples,
        "examples",
        datasetId=ds,
        source={"inlineExamples": {"examples": [scenario("add_3"), {"scenario_id": "bad", "turns": []}]}},
    )
    expect_validation(
        control.add_dataset_examples,
        datasetId=ds,
        source={"inlineExamples": {"examples": [scenario("add_1")]}},
    )
    assert control.get_dataset(datasetId=ds)["exampleCount"] == 2
    added = client.add_examples_and_wait(
        datasetId=ds, source={"inlineExamples": {"examples": [scenario("add_3")]}}
    )
    assert added["exampleCount"] == 3

    # Publish: version 1 is the DRAFT as it was; the DRAFT stays editable.
    v = control.create_dataset_version(datasetId=ds)
    assert v["datasetVersion"] == "1" and v["ResponseMetadata"]["HTTPStatusCode"] == 202, v
    assert control.get_dataset(datasetId=ds)["draftStatus"] == "UNMODIFIED"
    updated = control.update_dataset_examples(
        datasetId=ds, examples=[scenario("add_3", "add 4 and 4", "8")]
    )
    assert updated["updatedCount"] == 1
    deleted = control.delete_dataset_examples(datasetId=ds, exampleIds=["add_1"])
    assert deleted["deletedCount"] == 1
    expect_error(control.delete_dataset_examples, "ResourceNotFoundException", 404,
                 datasetId=ds, exampleIds=["add_1"])
    draft = control.get_dataset(datasetId=ds)
    assert draft["draftStatus"] == "MODIFIED" and draft["exampleCount"] == 2, draft
    one = control.get_dataset(datasetId=ds, datasetVersion="1")
    assert one["exampleCount"] == 3 and one["datasetVersion"] == "1", one
    first_page = control.list_dataset_examples(datasetId=ds, datasetVersion="1", maxResults=2)
    assert [e["scenario_id"] for e in first_page["examples"]] == ["add_1", "add_2"]
    # The token pins the version: the rest of version 1, even without naming it.
    rest = control.list_dataset_examples(datasetId=ds, nextToken=first_page["nextToken"])
    assert rest["datasetVersion"] == "1" and [e["scenario_id"] for e in rest["examples"]] == ["add_3"]
    assert rest["examples"][0]["turns"][0]["input"] == "add 2 and 3"
    expect_validation(control.list_dataset_examples, datasetId=ds, datasetVersion="DRAFT",
                      nextToken=first_page["nextToken"])
    versions = control.list_dataset_versions(datasetId=ds)["versions"]
    assert [(x["datasetVersion"], x["exampleCount"]) for x in versions] == [("DRAFT", 2), ("1", 3)]

    assert control.update_dataset(datasetId=ds, description="sums")["datasetId"] == ds
    listed = [d for d in control.list_datasets(maxResults=100)["datasets"] if d["datasetId"] == ds]
    assert listed and listed[0]["description"] == "sums" and listed[0]["exampleCount"] == 2

    # Deleting a version leaves the dataset; deleting the dataset ends in 404.
    after = client.delete_dataset_and_wait(datasetId=ds, datasetVersion="1")
    assert after["status"] == "ACTIVE"
    expect_error(control.get_dataset, "ResourceNotFoundException", 404, datasetId=ds, datasetVersion="1")
    client.delete_dataset_and_wait(datasetId=ds)
    expect_error(control.get_dataset, "ResourceNotFoundException", 404, datasetId=ds)


def test_dataset_from_s3_and_idempotent_create(control, s3):
    key = f"datasets/{unique_name('s3')}.jsonl"
    body = "\n".join(json.dumps(scenario(f"s{i}")) for i in range(3)) + "\n"
    try:
        s3.create_bucket(Bucket=ARTIFACT_BUCKET)
    except ClientError:
        pass
    s3.put_object(Bucket=ARTIFACT_BUCKET, Key=key, Body=body.encode())
    token, name = client_token(), unique_name("ds")
    args = dict(datasetName=name, schemaType=PREDEFINED, clientToken=token,
                source={"s3Source": {"s3Uri": f"s3://{ARTIFACT_BUCKET}/{key}"}})
    first = control.create_dataset(**args)
    assert first["ResponseMetadata"]["HTTPStatusCode"] == 202
    again = control.create_dataset(**args)
    assert again["datasetId"] == first["datasetId"]
    # The token bound to another request is refused, as everywhere in Berth.
    expect_validation(control.create_dataset, **{**args, "description": "other"})
    expect_error(control.create_dataset, "ConflictException", 409,
                 **{**args, "clientToken": client_token()})
    got = control.get_dataset(datasetId=first["datasetId"])
    assert got["exampleCount"] == 3 and got["schemaType"] == PREDEFINED
    expect_validation(control.create_dataset, datasetName=unique_name("ds"), schemaType=PREDEFINED,
                      source={"s3Source": {"s3Uri": f"s3://{ARTIFACT_BUCKET}/missing.jsonl"}})
    control.delete_dataset(datasetId=first["datasetId"])
    wait_not_found(control.get_dataset, datasetId=first["datasetId"])


def wait_batch(data, bid: str, timeout: float = STATE_TIMEOUT) -> dict:
    return poll(
        lambda: data.get_batch_evaluation(batchEvaluationId=bid),
        lambda r: r["status"] not in ("PENDING", "IN_PROGRESS", "STOPPING"),
        timeout=timeout,
        what=f"batch evaluation {bid} to finish",
    )


def test_batch_evaluation_lifecycle(data):
    token = client_token()
    args = dict(
        batchEvaluationName=unique_name("batch"),
        evaluators=[{"evaluatorId": "Builtin.Helpfulness"}],
        dataSourceConfig={"cloudWatchLogs": {
            "serviceNames": ["nosuch.DEFAULT"],
            "logGroupNames": ["/aws/bedrock-agentcore/runtimes/nosuch-abcdefghij-DEFAULT"],
            "filterConfig": {"sessionIds": ["session-without-any-spans-0000000001"]},
        }},
        clientToken=token,
    )
    started = data.start_batch_evaluation(**args)
    assert started["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert started["status"] == "PENDING"
    cw = started["outputConfig"]["cloudWatchConfig"]
    assert cw["logGroupName"] and cw["logStreamName"], cw
    bid = started["batchEvaluationId"]
    # Idempotent: the same token and request answer the same batch.
    assert data.start_batch_evaluation(**args)["batchEvaluationId"] == bid
    expect_validation(data.start_batch_evaluation, **{**args, "description": "another request"})

    done = wait_batch(data, bid)
    assert done["status"] == "FAILED", done
    assert "no spans" in done["errorDetails"][0], done
    assert done["evaluationResults"]["totalNumberOfSessions"] == 1
    assert done["evaluationResults"]["numberOfSessionsFailed"] == 1
    assert done["outputConfig"]["cloudWatchConfig"] == cw
    assert bid in [b["batchEvaluationId"] for b in data.list_batch_evaluations()["batchEvaluations"]]

    # Stopping a finished batch changes nothing; deleting it ends in 404.
    assert data.stop_batch_evaluation(batchEvaluationId=bid)["status"] == "FAILED"
    gone = data.delete_batch_evaluation(batchEvaluationId=bid)
    assert gone["status"] == "DELETING" and gone["ResponseMetadata"]["HTTPStatusCode"] == 202
    expect_error(data.get_batch_evaluation, "ResourceNotFoundException", 404, batchEvaluationId=bid)


def test_batch_evaluation_refuses_bad_input(data):
    expect_validation(data.start_batch_evaluation, batchEvaluationName="bad-name",
                      evaluators=[{"evaluatorId": "Builtin.Helpfulness"}],
                      dataSourceConfig={"cloudWatchLogs": {"serviceNames": ["a.DEFAULT"]}})
    expect_validation(data.start_batch_evaluation, "evaluators", batchEvaluationName=unique_name("b"),
                      dataSourceConfig={"cloudWatchLogs": {"serviceNames": ["a.DEFAULT"]}})
    expect_error(data.start_batch_evaluation, "ResourceNotFoundException", 404,
                 batchEvaluationName=unique_name("b"),
                 evaluators=[{"evaluatorId": "Builtin.Helpfulness"}],
                 dataSourceConfig={"cloudWatchLogs": {"serviceNames": ["a.DEFAULT"]}},
                 datasetExecutionConfig={
                     "dataset": {"datasetId": "nosuch-abcdefghij"},
                     "agentInvocation": {"agentCoreRuntime": {"agentRuntimeEndpointArn":
                         f"arn:aws:bedrock-agentcore:{REGION}:000000000000:runtime/a-abcdefghij/runtime-endpoint/DEFAULT"}},
                 })
    expect_error(data.get_batch_evaluation, "ResourceNotFoundException", 404,
                 batchEvaluationId="nosuch-abcdefghij")


# ---------------------------------------------------------------------------------------------
# The SDK's runners against a real agent: agents/strands_adot (a scripted model that calls the
# `add` tool, under ADOT), scored by the deterministic Builtin.TrajectoryExactOrderMatch.

from berth_harness import BUILD_TIMEOUT, deploy_agent, invoke_json  # noqa: E402

TRAJECTORY = "Builtin.TrajectoryExactOrderMatch"


@pytest.fixture(scope="module")
def agent_server(module_server):
    return module_server("evalbatch")


@pytest.fixture(scope="module")
def strands(agent_server) -> dict:
    control, s3 = agent_server.client("bedrock-agentcore-control"), agent_server.s3_client()
    return deploy_agent(control, s3, "strands_adot",
                        entry_point=["opentelemetry-instrument", "agent.py"],
                        timeout=max(BUILD_TIMEOUT, 600))


@pytest.fixture
def agent_env(monkeypatch, agent_server):
    for var in (
        "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE",
        "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL",
        "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS",
    ):
        monkeypatch.setenv(var, agent_server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    return agent_server


def service_of(runtime: dict) -> str:
    return f"{runtime['agentRuntimeName']}.DEFAULT"


def scenarios() -> list:
    good = scenario("traj_ok")
    bad = {**scenario("traj_bad", "add 1 and 1", "2"), "expected_trajectory": ["multiply"]}
    return [good, bad]


def sdk_dataset(agent_env) -> tuple:
    """The scenarios as a Berth dataset, read back through the SDK's provider."""
    from bedrock_agentcore.evaluation.dataset_client import DatasetClient
    from bedrock_agentcore.evaluation.runner.dataset_providers import (
        DatasetManagementServiceProvider,
    )

    client = DatasetClient(region_name=REGION)
    ds = client.create_dataset_and_wait(
        datasetName=unique_name("traj"), schemaType=PREDEFINED,
        source={"inlineExamples": {"examples": scenarios()}},
    )["datasetId"]
    return ds, DatasetManagementServiceProvider(ds, client=client).get_dataset()


def invoker_for(agent_server, runtime: dict):
    from bedrock_agentcore.evaluation.runner.invoker_types import AgentInvokerOutput

    data = agent_server.client("bedrock-agentcore")

    def invoke(inp):
        prompt = inp.payload if isinstance(inp.payload, str) else json.dumps(inp.payload)
        out = invoke_json(data, runtime["agentRuntimeArn"], inp.session_id, {"prompt": prompt})
        return AgentInvokerOutput(agent_output=out)

    return invoke


def scores_by_scenario(events: list) -> dict:
    return {e["testScenarioId"]: e["gen_ai.evaluation.score.value"] for e in events}


@pytest.mark.build
def test_sdk_batch_evaluation_runner_with_a_dataset(agent_env, strands):
    from bedrock_agentcore.evaluation.runner.batch.batch_evaluation_models import (
        BatchEvaluationRunConfig,
        BatchEvaluatorConfig,
        CloudWatchDataSourceConfig,
    )
    from bedrock_agentcore.evaluation.runner.batch.batch_evaluation_runner import (
        BatchEvaluationRunner,
    )

    _, dataset = sdk_dataset(agent_env)
    runner = BatchEvaluationRunner(region=REGION)
    config = BatchEvaluationRunConfig(
        batch_evaluation_name=unique_name("sdkbatch"),
        evaluator_config=BatchEvaluatorConfig(evaluator_ids=[TRAJECTORY]),
        data_source=CloudWatchDataSourceConfig(
            service_names=[service_of(strands)],
            log_group_names=[f"/aws/bedrock-agentcore/runtimes/{strands['agentRuntimeId']}-DEFAULT"],
            # Berth waits for the sessions' spans itself (bounded): no blind sleep.
            ingestion_delay_seconds=0,
        ),
        polling_interval_seconds=1,
        polling_timeout_seconds=int(STATE_TIMEOUT) + 120,
    )
    result = runner.run_dataset_evaluation(config, dataset, invoker_for(agent_env, strands))
    assert result.status == "COMPLETED", result
    assert not result.agent_invocation_failures
    summary = result.evaluation_results
    assert summary.total_number_of_sessions == 2 and summary.number_of_sessions_completed == 2
    [ev] = summary.evaluator_summaries
    assert ev.evaluator_id == TRAJECTORY and ev.total_evaluated == 2
    assert ev.statistics.average_score == pytest.approx(0.5)

    events = runner.fetch_evaluation_events(result)
    assert scores_by_scenario(events) == {"traj_ok": 1.0, "traj_bad": 0.0}, events
    for e in events:
        # A SESSION-level result names the session; its trace context is the session's.
        assert e["session.id"].startswith(e["testScenarioId"]), e
        assert e["gen_ai.evaluation.evaluator.id"] == TRAJECTORY


@pytest.mark.build
def test_batch_evaluation_runs_a_dataset_against_an_endpoint(agent_env, strands):
    ds, _ = sdk_dataset(agent_env)
    data = agent_env.client("bedrock-agentcore")
    endpoint = f"{strands['agentRuntimeArn']}/runtime-endpoint/DEFAULT"
    started = data.start_batch_evaluation(
        batchEvaluationName=unique_name("dsbatch"),
        evaluators=[{"evaluatorId": TRAJECTORY}],
        dataSourceConfig={"cloudWatchLogs": {"serviceNames": [service_of(strands)]}},
        datasetExecutionConfig={
            "dataset": {"datasetId": ds},
            "agentInvocation": {"agentCoreRuntime": {"agentRuntimeEndpointArn": endpoint}},
        },
    )
    done = wait_batch(data, started["batchEvaluationId"], timeout=STATE_TIMEOUT + 120)
    assert done["status"] == "COMPLETED", done
    details = done["datasetExecutionDetails"]
    assert details["dataset"] == {"datasetId": ds, "datasetVersion": "DRAFT"}
    assert details["agentInvocation"]["agentCoreRuntime"]["agentRuntimeVersion"] == "1"
    res = done["evaluationResults"]
    assert res["numberOfSessionsCompleted"] == 2
    assert res["evaluatorSummaries"][0]["statistics"]["averageScore"] == pytest.approx(0.5)
    cw = done["outputConfig"]["cloudWatchConfig"]
    logs = agent_env.client("logs")
    events = logs.get_log_events(logGroupName=cw["logGroupName"], logStreamName=cw["logStreamName"],
                                 startFromHead=True)["events"]
    got = scores_by_scenario([json.loads(e["message"]) for e in events])
    assert got == {"traj_ok": 1.0, "traj_bad": 0.0}, got


@pytest.mark.build
def test_sdk_on_demand_dataset_runner(agent_env, strands):
    from bedrock_agentcore.evaluation.agent_span_collector.agent_span_collector import (
        CloudWatchAgentSpanCollector,
    )
    from bedrock_agentcore.evaluation.runner.on_demand.config import (
        EvaluationRunConfig,
        EvaluatorConfig,
    )
    from bedrock_agentcore.evaluation.runner.on_demand.on_demand_runner import (
        OnDemandEvaluationDatasetRunner,
    )

    class SettledCollector(CloudWatchAgentSpanCollector):
        """The SDK's collector, asked once the session's agent spans are stored. ADOT exports
        every 5 s while Berth's own span lands at once, so the SDK's collector (which stops at
        the first span it sees) would read a session without its agent; the SDK's answer is
        `evaluation_delay_seconds`, a blind sleep. This polls Berth for the agent's
        `invoke_agent` span (it ends after the tool calls under it), then collects as the SDK
        does, over the CloudWatch Logs API."""

        def collect(self, session_id, start_time, end_time):
            poll(
                lambda: native(agent_env, "GET", f"/berth/v1/traces/sessions/{session_id}").json()["spans"],
                lambda spans: any(s["attributes"].get("gen_ai.operation.name") == "invoke_agent" for s in spans),
                timeout=STATE_TIMEOUT,
                what=f"the agent's spans of {session_id}",
            )
            return super().collect(session_id, start_time, end_time)

    _, dataset = sdk_dataset(agent_env)
    collector = SettledCollector(
        log_group_name=f"/aws/bedrock-agentcore/runtimes/{strands['agentRuntimeId']}-DEFAULT",
        region=REGION, max_wait_seconds=60, poll_interval_seconds=1,
    )
    result = OnDemandEvaluationDatasetRunner(region=REGION).run(
        EvaluationRunConfig(evaluator_config=EvaluatorConfig(evaluator_ids=[TRAJECTORY]),
                            evaluation_delay_seconds=0),
        dataset, invoker_for(agent_env, strands), collector,
    )
    values = {}
    for sr in result.scenario_results:
        assert sr.status == "COMPLETED", sr
        [er] = sr.evaluator_results
        values[sr.scenario_id] = [r.get("value") for r in er.results]
    assert values == {"traj_ok": [1.0], "traj_bad": [0.0]}, result
