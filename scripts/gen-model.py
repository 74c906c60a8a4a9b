#!/usr/bin/env python3
"""Trims botocore's AgentCore service models to the shapes Berth validates against.

The botocore service models are the authority for AgentCore's wire shapes. Berth embeds a trimmed copy
(types, constraints, members, required lists, locations; no documentation) of the shapes reachable from
the operations it serves, and validates requests against it generically (crates/api/src/model.rs).

Usage: scripts/gen-model.py BOTOCORE_DATA_DIR
  BOTOCORE_DATA_DIR is botocore/data from the pinned botocore wheel (see tests/conformance/requirements.txt):
  pip download --no-deps botocore==X && unzip it.
Re-run when an operation is added to OPERATIONS and commit the result.
"""
import glob, gzip, json, os, sys

OPERATIONS = {
    "bedrock-agentcore-control": [
        "CreateAgentRuntime", "GetAgentRuntime", "UpdateAgentRuntime", "ListAgentRuntimes",
        "ListAgentRuntimeVersions", "DeleteAgentRuntime", "CreateAgentRuntimeEndpoint",
        "GetAgentRuntimeEndpoint", "UpdateAgentRuntimeEndpoint", "ListAgentRuntimeEndpoints",
        "DeleteAgentRuntimeEndpoint", "TagResource", "UntagResource", "ListTagsForResource",
        "CreateMemory", "GetMemory", "ListMemories", "UpdateMemory", "DeleteMemory",
        "PutResourcePolicy", "GetResourcePolicy", "DeleteResourcePolicy",
        # Evaluations (wave2 §1.1): evaluators, online evaluation configs, datasets.
        "CreateEvaluator", "GetEvaluator", "UpdateEvaluator", "ListEvaluators", "DeleteEvaluator",
        "CreateOnlineEvaluationConfig", "GetOnlineEvaluationConfig", "UpdateOnlineEvaluationConfig",
        "ListOnlineEvaluationConfigs", "DeleteOnlineEvaluationConfig",
        "CreateDataset", "GetDataset", "UpdateDataset", "DeleteDataset", "ListDatasets",
        "CreateDatasetVersion", "ListDatasetVersions", "AddDatasetExamples", "UpdateDatasetExamples",
        "DeleteDatasetExamples", "ListDatasetExamples",
        # Identity (wave2 §4.2): workload identities, credential providers, the token vault.
        "CreateWorkloadIdentity", "GetWorkloadIdentity", "UpdateWorkloadIdentity",
        "ListWorkloadIdentities", "DeleteWorkloadIdentity",
        "CreateApiKeyCredentialProvider", "GetApiKeyCredentialProvider",
        "UpdateApiKeyCredentialProvider", "ListApiKeyCredentialProviders",
        "DeleteApiKeyCredentialProvider",
        "CreateOauth2CredentialProvider", "GetOauth2CredentialProvider",
        "UpdateOauth2CredentialProvider", "ListOauth2CredentialProviders",
        "DeleteOauth2CredentialProvider", "GetTokenVault",
    ],
    "bedrock-agentcore": [
        "InvokeAgentRuntime", "InvokeAgentRuntimeCommand", "StopRuntimeSession", "GetAgentCard",
        "CreateEvent", "GetEvent", "ListEvents", "DeleteEvent", "ListSessions", "ListActors",
        "RetrieveMemoryRecords", "ListMemoryRecords", "GetMemoryRecord", "DeleteMemoryRecord",
        "BatchCreateMemoryRecords", "BatchUpdateMemoryRecords", "BatchDeleteMemoryRecords",
        "ListMemoryExtractionJobs", "StartMemoryExtractionJob",
        # Evaluations (wave2 §1.1): Evaluate and batch evaluations.
        "Evaluate", "StartBatchEvaluation", "GetBatchEvaluation", "ListBatchEvaluations",
        "StopBatchEvaluation", "DeleteBatchEvaluation",
        # Identity (wave2 §4.1): workload access tokens and the credentials they unlock.
        "GetWorkloadAccessToken", "GetWorkloadAccessTokenForUserId", "GetWorkloadAccessTokenForJWT",
        "GetResourceApiKey", "GetResourceOauth2Token", "CompleteResourceTokenAuth",
    ],
}
KEEP = ("type", "required", "min", "max", "pattern", "enum", "union", "sensitive", "timestampFormat")
MEMBER_KEEP = ("shape", "location", "locationName", "idempotencyToken")


def load(data_dir, svc):
    [path] = glob.glob(os.path.join(data_dir, svc, "*", "service-2.json.gz"))
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        return json.load(f)


def trim(model, ops):
    shapes, out = model["shapes"], {}

    def visit(name):
        if name in out:
            return
        s = shapes[name]
        t = {k: s[k] for k in KEEP if k in s}
        out[name] = t
        if s["type"] == "structure":
            t["members"] = {k: {a: v[a] for a in MEMBER_KEEP if a in v} for k, v in s["members"].items()}
            for v in s["members"].values():
                visit(v["shape"])
        elif s["type"] == "list":
            t["member"] = s["member"]["shape"]
            visit(t["member"])
        elif s["type"] == "map":
            t["key"], t["value"] = s["key"]["shape"], s["value"]["shape"]
            visit(t["key"])
            visit(t["value"])

    operations = {}
    for op in ops:
        o = model["operations"][op]
        operations[op] = {"http": o["http"]}
        for k in ("input", "output"):
            if k in o:
                operations[op][k] = o[k]["shape"]
                visit(o[k]["shape"])
    return {"metadata": {"apiVersion": model["metadata"]["apiVersion"]}, "operations": operations, "shapes": out}


def main():
    data_dir = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    for svc, ops in OPERATIONS.items():
        trimmed = trim(load(data_dir, svc), ops)
        dest = os.path.join(here, "..", "crates", "api", "model", f"{svc}.json")
        with open(dest, "w") as f:
            json.dump(trimmed, f, indent=0)
            f.write("\n")
        print(f"{dest}: {len(trimmed['operations'])} operations, {len(trimmed['shapes'])} shapes")


if __name__ == "__main__":
    main()
