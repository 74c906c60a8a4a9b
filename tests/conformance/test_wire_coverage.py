"""Every operation Berth serves, called once with boto3 and checked member by member against the
botocore model (`wire_check`, installed for every client of the suite).

Which operations Berth serves is asked of the server itself: every operation of both service models
is sent with placeholder input (the CloudWatch Logs model too), and those not answered `UnknownOperationException` are served. The
walk below must call exactly those, each to a 2xx answer; a route added without a walk step (or a
step for an operation no longer served) fails this test, so no served operation goes unchecked.
"""

import datetime as dt

import botocore
import pytest

import wire_check
from berth_harness import (
    deploy_agent,
    invoke_json,
    new_session_id,
    poll,
    runtime_arn,
    unique_name,
    wait_endpoint,
    wait_not_found,
    wait_status,
)

SERVICES = ("bedrock-agentcore", "bedrock-agentcore-control", "logs")


def _placeholder(shape, depth: int = 0):
    """A value of `shape`'s type for every required member (not meant to be valid)."""
    t = shape.type_name
    if t == "structure":
        if depth > 4:
            return {}
        out = {n: _placeholder(shape.members[n], depth + 1) for n in shape.required_members}
        if shape.metadata.get("union") and not out and shape.members:
            name, member = next(iter(shape.members.items()))
            out[name] = _placeholder(member, depth + 1)
        return out
    return {
        "list": [],
        "map": {},
        "integer": 1,
        "long": 1,
        "float": 1.0,
        "double": 1.0,
        "boolean": False,
        "timestamp": 1_700_000_000,
        "blob": b"{}",
    }.get(t, shape.enum[0] if getattr(shape, "enum", None) else "placeholder-0123456789")


def served_operations(berth) -> set[tuple[str, str]]:
    served = set()
    for service in SERVICES:
        # No host prefix: the Logs model sends StartLiveTail to `stream-<host>`.
        client = berth.client(service, validate=False, inject_host_prefix=False)
        model = client.meta.service_model
        for op in model.operation_names:
            shape = model.operation_model(op).input_shape
            params = _placeholder(shape) if shape is not None else {}
            try:
                getattr(client, botocore.xform_name(op))(**params)
            except client.exceptions.ClientError as e:
                if e.response["Error"]["Code"] == "UnknownOperationException":
                    continue
            served.add((service, op))
    return served


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def test_every_served_operation_answers_in_the_models_types(berth, control, data, s3):
    served = served_operations(berth)
    # The data plane's memory operations and the runtime and memory control planes, at least.
    assert ("bedrock-agentcore", "InvokeAgentRuntime") in served
    assert ("bedrock-agentcore-control", "CreateMemory") in served

    wire_check.checked.clear()
    walked: list[tuple[str, str]] = []

    def step(client, op: str, **params) -> dict:
        service = client.meta.service_model.service_name
        resp = getattr(client, botocore.xform_name(op))(**params)
        assert 200 <= resp["ResponseMetadata"]["HTTPStatusCode"] < 300, (op, resp)
        walked.append((service, op))
        return resp

    # Runtime control plane.
    rt = deploy_agent(control, s3, "probe")
    walked.append(("bedrock-agentcore-control", "CreateAgentRuntime"))
    rid, arn = rt["agentRuntimeId"], rt["agentRuntimeArn"]
    step(control, "GetAgentRuntime", agentRuntimeId=rid)
    step(control, "ListAgentRuntimes", maxResults=5)
    step(control, "ListAgentRuntimeVersions", agentRuntimeId=rid)
    step(control, "TagResource", resourceArn=arn, tags={"walk": "yes"})
    step(control, "ListTagsForResource", resourceArn=arn)
    step(control, "UntagResource", resourceArn=arn, tagKeys=["walk"])
    step(
        control,
        "UpdateAgentRuntime",
        agentRuntimeId=rid,
        agentRuntimeArtifact=rt["agentRuntimeArtifact"],
        roleArn=rt["roleArn"],
        networkConfiguration=rt["networkConfiguration"],
        description="walked",
    )
    wait_status(control, rid, "2")
    step(control, "CreateAgentRuntimeEndpoint", agentRuntimeId=rid, name="walk", agentRuntimeVersion="1")
    wait_endpoint(control, rid, "walk")
    step(control, "GetAgentRuntimeEndpoint", agentRuntimeId=rid, endpointName="walk")
    step(control, "ListAgentRuntimeEndpoints", agentRuntimeId=rid)
    step(control, "UpdateAgentRuntimeEndpoint", agentRuntimeId=rid, endpointName="walk", agentRuntimeVersion="2")

    # Runtime data plane.
    session = new_session_id("walk")
    invoke_json(data, arn, session, {"op": "whoami"})
    walked.append(("bedrock-agentcore", "InvokeAgentRuntime"))
    # An event stream: botocore's own parser decodes every frame (wire_check skips the body).
    ran = data.invoke_agent_runtime_command(
        agentRuntimeArn=arn, runtimeSessionId=session, body={"command": "true"}
    )
    assert [e["chunk"] for e in ran["stream"]][-1] == {
        "contentStop": {"exitCode": 0, "status": "COMPLETED"}
    }
    walked.append(("bedrock-agentcore", "InvokeAgentRuntimeCommand"))
    step(data, "StopRuntimeSession", agentRuntimeArn=arn, runtimeSessionId=session)

    # Resource policies.
    doc = ('{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", '
           f'"Action": "bedrock-agentcore:InvokeAgentRuntime", "Resource": "{arn}"}}]}}')
    step(control, "PutResourcePolicy", resourceArn=arn, policy=doc)
    step(control, "GetResourcePolicy", resourceArn=arn)
    step(control, "DeleteResourcePolicy", resourceArn=arn)

    # An A2A agent's card.
    a2a = deploy_agent(control, s3, "a2a_server", protocolConfiguration={"serverProtocol": "A2A"})
    step(data, "GetAgentCard", agentRuntimeArn=a2a["agentRuntimeArn"], runtimeSessionId=new_session_id("card"))
    control.delete_agent_runtime(agentRuntimeId=a2a["agentRuntimeId"])

    # Memory control plane.
    mem = step(
        control,
        "CreateMemory",
        name=unique_name("walk"),
        eventExpiryDuration=7,
        memoryStrategies=[{"semanticMemoryStrategy": {"name": "facts"}}],
    )["memory"]
    mid = mem["id"]
    poll(
        lambda: control.get_memory(memoryId=mid)["memory"]["status"],
        lambda s: s == "ACTIVE",
        timeout=60,
        what="an ACTIVE memory",
    )
    step(control, "GetMemory", memoryId=mid)
    step(control, "ListMemories", maxResults=5)
    step(control, "UpdateMemory", memoryId=mid, description="walked")

    # Memory data plane.
    turn = {"conversational": {"content": {"text": "I keep bees."}, "role": "USER"}}
    blob = {"blob": {"any": ["json", 1]}}
    event = step(
        data, "CreateEvent", memoryId=mid, actorId="amy", sessionId="s1", eventTimestamp=now(), payload=[turn, blob]
    )["event"]
    step(data, "GetEvent", memoryId=mid, actorId="amy", sessionId="s1", eventId=event["eventId"])
    step(data, "ListEvents", memoryId=mid, actorId="amy", sessionId="s1", includePayloads=True)
    step(data, "ListActors", memoryId=mid)
    step(data, "ListSessions", memoryId=mid, actorId="amy")
    created = step(
        data,
        "BatchCreateMemoryRecords",
        memoryId=mid,
        records=[
            {"requestIdentifier": f"r{i}", "namespaces": ["/walk/"], "content": {"text": t}, "timestamp": now()}
            for i, t in enumerate(["The user keeps bees.", "The user lives by the sea.", "The user rows."])
        ],
    )["successfulRecords"]
    ids = [r["memoryRecordId"] for r in created]
    step(data, "GetMemoryRecord", memoryId=mid, memoryRecordId=ids[0])
    step(data, "ListMemoryRecords", memoryId=mid, namespace="/walk/")
    step(
        data,
        "RetrieveMemoryRecords",
        memoryId=mid,
        namespace="/walk/",
        searchCriteria={"searchQuery": "insects", "topK": 2},
    )
    step(
        data,
        "BatchUpdateMemoryRecords",
        memoryId=mid,
        records=[{"memoryRecordId": ids[0], "timestamp": now(), "content": {"text": "The user keeps wasps."}}],
    )
    step(data, "DeleteMemoryRecord", memoryId=mid, memoryRecordId=ids[1])
    step(data, "BatchDeleteMemoryRecords", memoryId=mid, records=[{"memoryRecordId": ids[2]}])
    # The session server extracts a session after 10 s of quiet; without a model the job fails,
    # and a failed job can be started again.
    jobs = poll(
        lambda: step(data, "ListMemoryExtractionJobs", memoryId=mid)["jobs"],
        lambda j: len(j) >= 1,
        timeout=90,
        what="an extraction job",
    )
    step(data, "StartMemoryExtractionJob", memoryId=mid, extractionJob={"jobId": jobs[0]["jobID"]})
    step(data, "DeleteEvent", memoryId=mid, actorId="amy", sessionId="s1", eventId=event["eventId"])

    # Evaluations: evaluators, online evaluation configs, and a deterministic Evaluate.
    judge = {"llmAsAJudge": {
        "instructions": "Is the answer right?",
        "ratingScale": {"categorical": [{"definition": "right", "label": "Right"},
                                        {"definition": "wrong", "label": "Wrong"}]},
        "modelConfig": {"bedrockEvaluatorModelConfig": {"modelId": "judge"}},
    }}
    ev = step(control, "CreateEvaluator", evaluatorName=unique_name("walk"), level="TRACE",
              evaluatorConfig=judge)["evaluatorId"]
    poll(lambda: control.get_evaluator(evaluatorId=ev)["status"], lambda s: s == "ACTIVE",
         timeout=60, what="an ACTIVE evaluator")
    step(control, "GetEvaluator", evaluatorId=ev)
    step(control, "GetEvaluator", evaluatorId="Builtin.Helpfulness")
    step(control, "ListEvaluators", maxResults=5)
    step(control, "UpdateEvaluator", evaluatorId=ev, description="walked")
    online = step(
        control, "CreateOnlineEvaluationConfig", onlineEvaluationConfigName=unique_name("walk"),
        rule={"samplingConfig": {"samplingPercentage": 10.0}},
        dataSourceConfig={"cloudWatchLogs": {"serviceNames": ["walk.DEFAULT"]}},
        evaluators=[{"evaluatorId": ev}], evaluationExecutionRoleArn="arn:aws:iam::123456789012:role/r",
        enableOnCreate=False,
    )["onlineEvaluationConfigId"]
    step(control, "GetOnlineEvaluationConfig", onlineEvaluationConfigId=online)
    step(control, "ListOnlineEvaluationConfigs", maxResults=5)
    step(control, "UpdateOnlineEvaluationConfig", onlineEvaluationConfigId=online, executionStatus="ENABLED")
    span = {"resource": {"attributes": {"service.name": "walk"}}, "scope": {"name": "strands.telemetry.tracer"},
            "traceId": "0" * 31 + "1", "spanId": "0" * 15 + "1", "name": "execute_tool add", "kind": "INTERNAL",
            "startTimeUnixNano": 1, "endTimeUnixNano": 2, "durationNano": 1,
            "attributes": {"session.id": "walk-session", "gen_ai.operation.name": "execute_tool",
                           "gen_ai.tool.name": "add"},
            "status": {"code": "OK"}}
    step(data, "Evaluate", evaluatorId="Builtin.TrajectoryExactOrderMatch",
         evaluationInput={"sessionSpans": [span]},
         evaluationReferenceInputs=[{"context": {"spanContext": {"sessionId": "walk-session"}},
                                     "expectedTrajectory": {"toolNames": ["add"]}}])
    step(control, "DeleteOnlineEvaluationConfig", onlineEvaluationConfigId=online)
    wait_not_found(control.get_online_evaluation_config, onlineEvaluationConfigId=online)
    step(control, "DeleteEvaluator", evaluatorId=ev)

    # Evaluation datasets and batch evaluations.
    def example(sid: str, expected: str = "5") -> dict:
        return {"scenario_id": sid, "turns": [{"input": "add 2 and 3", "expected_response": expected}],
                "expected_trajectory": ["add"]}

    ds = step(control, "CreateDataset", datasetName=unique_name("walk"),
              schemaType="AGENTCORE_EVALUATION_PREDEFINED_V1",
              source={"inlineExamples": {"examples": [example("a")]}})["datasetId"]
    poll(lambda: control.get_dataset(datasetId=ds)["status"], lambda s: s == "ACTIVE",
         timeout=60, what="an ACTIVE dataset")
    step(control, "GetDataset", datasetId=ds)
    step(control, "ListDatasets", maxResults=5)
    step(control, "UpdateDataset", datasetId=ds, description="walked")
    step(control, "AddDatasetExamples", datasetId=ds, source={"inlineExamples": {"examples": [example("b")]}})
    poll(lambda: control.get_dataset(datasetId=ds)["status"], lambda s: s == "ACTIVE",
         timeout=60, what="the dataset ACTIVE again")
    step(control, "ListDatasetExamples", datasetId=ds, maxResults=5)
    step(control, "UpdateDatasetExamples", datasetId=ds, examples=[example("b", "6")])
    step(control, "DeleteDatasetExamples", datasetId=ds, exampleIds=["b"])
    step(control, "CreateDatasetVersion", datasetId=ds)
    step(control, "ListDatasetVersions", datasetId=ds)
    batch = step(data, "StartBatchEvaluation", batchEvaluationName=unique_name("walk"),
                 evaluators=[{"evaluatorId": "Builtin.TrajectoryExactOrderMatch"}],
                 dataSourceConfig={"cloudWatchLogs": {
                     "serviceNames": ["walk.DEFAULT"],
                     "logGroupNames": ["/aws/bedrock-agentcore/runtimes/walk-abcdefghij-DEFAULT"],
                     "filterConfig": {"sessionIds": ["walk-session-without-spans-000000001"]},
                 }})["batchEvaluationId"]
    step(data, "GetBatchEvaluation", batchEvaluationId=batch)
    step(data, "ListBatchEvaluations", maxResults=5)
    step(data, "StopBatchEvaluation", batchEvaluationId=batch)
    poll(lambda: data.get_batch_evaluation(batchEvaluationId=batch)["status"],
         lambda s: s not in ("PENDING", "IN_PROGRESS", "STOPPING"), timeout=180, what="the batch to end")
    step(data, "DeleteBatchEvaluation", batchEvaluationId=batch)
    step(control, "DeleteDataset", datasetId=ds)

    # Identity: workload identities, credential providers, the token vault, the data plane.
    from test_identity import TokenEndpoint, custom_config

    wi = unique_name("walk")
    step(control, "CreateWorkloadIdentity", name=wi)
    step(control, "GetWorkloadIdentity", name=wi)
    step(control, "UpdateWorkloadIdentity", name=wi, allowedResourceOauth2ReturnUrls=["https://cb.example/w"])
    step(control, "ListWorkloadIdentities", maxResults=5)
    step(control, "GetTokenVault")
    wat = step(data, "GetWorkloadAccessToken", workloadName=wi)["workloadAccessToken"]
    step(data, "GetWorkloadAccessTokenForUserId", workloadName=wi, userId="walker")
    step(data, "GetWorkloadAccessTokenForJWT", workloadName=wi,
         userToken="eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2lkcCIsInN1YiI6IndhbGtlciJ9.c2ln")
    ak = unique_name("walk")
    step(control, "CreateApiKeyCredentialProvider", name=ak, apiKey="sk-walk")
    step(control, "GetApiKeyCredentialProvider", name=ak)
    step(control, "UpdateApiKeyCredentialProvider", name=ak, apiKey="sk-walk-2")
    step(control, "ListApiKeyCredentialProviders", maxResults=5)
    step(data, "GetResourceApiKey", workloadIdentityToken=wat, resourceCredentialProviderName=ak)
    step(control, "DeleteApiKeyCredentialProvider", name=ak)
    token_endpoint = TokenEndpoint(secret="walk-secret")
    try:
        o2 = unique_name("walk")
        step(control, "CreateOauth2CredentialProvider", name=o2, credentialProviderVendor="CustomOauth2",
             oauth2ProviderConfigInput=custom_config(token_endpoint))
        step(control, "GetOauth2CredentialProvider", name=o2)
        step(control, "UpdateOauth2CredentialProvider", name=o2, credentialProviderVendor="CustomOauth2",
             oauth2ProviderConfigInput=custom_config(token_endpoint, "CLIENT_SECRET_POST"))
        step(control, "ListOauth2CredentialProviders", maxResults=5)
        step(data, "GetResourceOauth2Token", workloadIdentityToken=wat, resourceCredentialProviderName=o2,
             scopes=["walk"], oauth2Flow="M2M")
        # 3LO: the user's browser through the provider and Berth's callback, then completion.
        user_wat = data.get_workload_access_token_for_user_id(workloadName=wi, userId="walker")
        session = data.get_resource_oauth2_token(
            workloadIdentityToken=user_wat["workloadAccessToken"], resourceCredentialProviderName=o2,
            scopes=["walk"], oauth2Flow="USER_FEDERATION")
        import urllib.request
        with urllib.request.urlopen(session["authorizationUrl"], timeout=30):
            pass
        step(data, "CompleteResourceTokenAuth", sessionUri=session["sessionUri"],
             userIdentifier={"userId": "walker"})
        step(control, "DeleteOauth2CredentialProvider", name=o2)
    finally:
        token_endpoint.close()
    step(control, "DeleteWorkloadIdentity", name=wi)

    # CloudWatch Logs.
    logs = berth.client("logs")
    group = f"/walk/{unique_name('logs')}"
    step(logs, "CreateLogGroup", logGroupName=group)
    step(logs, "CreateLogStream", logGroupName=group, logStreamName="s")
    stamp = int(now().timestamp())
    step(logs, "PutLogEvents", logGroupName=group, logStreamName="s",
         logEvents=[{"timestamp": stamp * 1000, "message": "walked"}])
    step(logs, "DescribeLogGroups", logGroupNamePrefix=group)
    step(logs, "DescribeLogStreams", logGroupName=group)
    step(logs, "GetLogEvents", logGroupName=group, logStreamName="s", startFromHead=True)
    step(logs, "FilterLogEvents", logGroupName=group, filterPattern="walked")
    query = step(logs, "StartQuery", logGroupName=group, startTime=stamp - 60, endTime=stamp + 60,
                 queryString="fields @timestamp, @message | stats count(*) by @logStream")
    step(logs, "GetQueryResults", queryId=query["queryId"])
    step(logs, "StopQuery", queryId=query["queryId"])

    # Deletions last.
    step(control, "DeleteMemory", memoryId=mid)
    step(control, "DeleteAgentRuntimeEndpoint", agentRuntimeId=rid, endpointName="walk")
    step(control, "DeleteAgentRuntime", agentRuntimeId=rid)

    assert set(walked) == served, (
        f"served but not walked: {sorted(served - set(walked))}; "
        f"walked but not served: {sorted(set(walked) - served)}"
    )
    assert served <= wire_check.checked, f"not checked: {sorted(served - wire_check.checked)}"
