// The runtime control plane through @aws-sdk/client-bedrock-agentcore-control, with the agent zip
// uploaded through @aws-sdk/client-s3: create, get, list, update (a second version), versions,
// DEFAULT and named endpoints (create, get, list, move, delete), delete; tags; ConflictException.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  ConflictException,
  CreateAgentRuntimeCommand,
  CreateAgentRuntimeEndpointCommand,
  DeleteAgentRuntimeCommand,
  DeleteAgentRuntimeEndpointCommand,
  GetAgentRuntimeCommand,
  GetAgentRuntimeEndpointCommand,
  ListAgentRuntimeEndpointsCommand,
  ListAgentRuntimeVersionsCommand,
  ListAgentRuntimesCommand,
  ListTagsForResourceCommand,
  TagResourceCommand,
  UntagResourceCommand,
  UpdateAgentRuntimeCommand,
  UpdateAgentRuntimeEndpointCommand,
  paginateListAgentRuntimes,
} from "@aws-sdk/client-bedrock-agentcore-control";
import { GetObjectCommand, HeadObjectCommand } from "@aws-sdk/client-s3";

import {
  ROLE_ARN,
  STATE_TIMEOUT_MS,
  assertRecent,
  clientToken,
  codeArtifact,
  control,
  expectError,
  poll,
  probeZip,
  s3,
  uniqueName,
  uploadArtifact,
  waitNotFound,
  waitRuntime,
} from "./lib.mjs";

const RUNTIME_ARN = /^arn:aws:bedrock-agentcore:[a-z0-9-]+:\d{12}:runtime\/[a-zA-Z][a-zA-Z0-9_]{0,47}-[a-zA-Z0-9]{10}$/;

async function waitEndpoint(agentRuntimeId, endpointName, liveVersion) {
  return poll(
    () => control.send(new GetAgentRuntimeEndpointCommand({ agentRuntimeId, endpointName })),
    (resp) => resp.status === "READY" && resp.liveVersion === liveVersion,
    { timeoutMs: STATE_TIMEOUT_MS * 5, what: `endpoint ${endpointName} live at v${liveVersion}` },
  );
}

test("S3 upload, then the whole runtime and endpoint life cycle", async () => {
  // The artifact store answers the S3 client like S3 does (path-style).
  const zip = probeZip();
  const location = await uploadArtifact(zip);
  const head = await s3.send(new HeadObjectCommand({ Bucket: location.bucket, Key: location.prefix }));
  assert.equal(head.ContentLength, zip.length);
  const got = await s3.send(new GetObjectCommand({ Bucket: location.bucket, Key: location.prefix }));
  assert.deepEqual(Buffer.from(await got.Body.transformToByteArray()), zip);

  // Create.
  const name = uniqueName("jsctl");
  const created = await control.send(
    new CreateAgentRuntimeCommand({
      agentRuntimeName: name,
      description: "from the JavaScript SDK",
      agentRuntimeArtifact: codeArtifact(location),
      roleArn: ROLE_ARN,
      networkConfiguration: { networkMode: "PUBLIC" },
      environmentVariables: { GREETING: "hello" },
      clientToken: clientToken(),
    }),
  );
  assert.equal(created.$metadata.httpStatusCode, 202);
  assert.ok(created.$metadata.requestId);
  const id = created.agentRuntimeId;
  assert.ok(id.startsWith(`${name}-`), id);
  assert.match(created.agentRuntimeArn, RUNTIME_ARN);
  assert.equal(created.agentRuntimeVersion, "1");
  assert.ok(["CREATING", "READY"].includes(created.status), created.status);
  assertRecent(created.createdAt);

  // Get, until the build is done.
  const ready = await waitRuntime(id, { version: "1" });
  assert.equal(ready.$metadata.httpStatusCode, 200);
  assert.equal(ready.agentRuntimeName, name);
  assert.equal(ready.agentRuntimeArn, created.agentRuntimeArn);
  assert.equal(ready.description, "from the JavaScript SDK");
  assert.equal(ready.roleArn, ROLE_ARN);
  assert.equal(ready.networkConfiguration.networkMode, "PUBLIC");
  assert.deepEqual(ready.environmentVariables, { GREETING: "hello" });
  assert.deepEqual(ready.agentRuntimeArtifact.codeConfiguration.code.s3, location);
  assertRecent(ready.createdAt);
  assertRecent(ready.lastUpdatedAt);

  // List, one item per page with the SDK's paginator: every page parses, the runtime is there.
  const seen = [];
  for await (const page of paginateListAgentRuntimes({ client: control, pageSize: 1 }, {})) {
    assert.ok(page.agentRuntimes.length <= 1);
    for (const item of page.agentRuntimes) {
      assert.ok(item.lastUpdatedAt instanceof Date);
      seen.push(item.agentRuntimeId);
    }
  }
  assert.ok(seen.includes(id), "the new runtime is not listed");
  assert.equal(new Set(seen).size, seen.length, "a runtime was listed twice");
  const listed = await control.send(new ListAgentRuntimesCommand({ maxResults: 100 }));
  assert.equal(listed.$metadata.httpStatusCode, 200);

  // A named endpoint pinned to version 1.
  const pinned = uniqueName("pinned");
  const made = await control.send(
    new CreateAgentRuntimeEndpointCommand({
      agentRuntimeId: id,
      name: pinned,
      agentRuntimeVersion: "1",
      description: "pinned to v1",
    }),
  );
  assert.equal(made.$metadata.httpStatusCode, 202);
  assert.equal(made.targetVersion, "1");
  assert.equal(made.agentRuntimeArn, created.agentRuntimeArn);
  assert.equal(made.agentRuntimeEndpointArn, `${created.agentRuntimeArn}/runtime-endpoint/${pinned}`);
  assertRecent(made.createdAt);
  const pinnedReady = await waitEndpoint(id, pinned, "1");
  assert.equal(pinnedReady.description, "pinned to v1");
  assertRecent(pinnedReady.lastUpdatedAt);

  // Update: version 2; DEFAULT follows it, the named endpoint stays.
  const updated = await control.send(
    new UpdateAgentRuntimeCommand({
      agentRuntimeId: id,
      description: "second version",
      agentRuntimeArtifact: codeArtifact(location),
      roleArn: ROLE_ARN,
      networkConfiguration: { networkMode: "PUBLIC" },
    }),
  );
  assert.equal(updated.$metadata.httpStatusCode, 202);
  assert.equal(updated.agentRuntimeVersion, "2");
  assertRecent(updated.lastUpdatedAt);
  const v2 = await waitRuntime(id, { version: "2" });
  assert.equal(v2.description, "second version");
  const v1 = await control.send(new GetAgentRuntimeCommand({ agentRuntimeId: id, agentRuntimeVersion: "1" }));
  assert.equal(v1.description, "from the JavaScript SDK");

  const versions = await control.send(new ListAgentRuntimeVersionsCommand({ agentRuntimeId: id }));
  assert.deepEqual(versions.agentRuntimes.map((v) => v.agentRuntimeVersion).sort(), ["1", "2"]);
  for (const v of versions.agentRuntimes) assert.ok(v.lastUpdatedAt instanceof Date);

  await waitEndpoint(id, "DEFAULT", "2");
  const still = await control.send(new GetAgentRuntimeEndpointCommand({ agentRuntimeId: id, endpointName: pinned }));
  assert.equal(still.liveVersion, "1");
  const endpoints = await control.send(new ListAgentRuntimeEndpointsCommand({ agentRuntimeId: id }));
  assert.deepEqual(endpoints.runtimeEndpoints.map((e) => e.name).sort(), ["DEFAULT", pinned].sort());
  for (const e of endpoints.runtimeEndpoints) {
    assert.ok(e.createdAt instanceof Date && e.lastUpdatedAt instanceof Date);
    assert.equal(e.agentRuntimeArn, created.agentRuntimeArn);
  }

  // Move the named endpoint to version 2.
  const moved = await control.send(
    new UpdateAgentRuntimeEndpointCommand({ agentRuntimeId: id, endpointName: pinned, agentRuntimeVersion: "2" }),
  );
  assert.equal(moved.$metadata.httpStatusCode, 202);
  assert.equal(moved.targetVersion, "2");
  assertRecent(moved.lastUpdatedAt);
  await waitEndpoint(id, pinned, "2");

  // Delete the named endpoint, then the runtime.
  const gone = await control.send(new DeleteAgentRuntimeEndpointCommand({ agentRuntimeId: id, endpointName: pinned }));
  assert.equal(gone.$metadata.httpStatusCode, 202);
  assert.equal(gone.status, "DELETING");
  await waitNotFound(
    () => control.send(new GetAgentRuntimeEndpointCommand({ agentRuntimeId: id, endpointName: pinned })),
    `endpoint ${pinned}`,
  );
  const deleted = await control.send(new DeleteAgentRuntimeCommand({ agentRuntimeId: id }));
  assert.equal(deleted.$metadata.httpStatusCode, 202);
  assert.equal(deleted.status, "DELETING");
  await waitNotFound(() => control.send(new GetAgentRuntimeCommand({ agentRuntimeId: id })), `runtime ${id}`);
});

test("optional configurations and tags on a runtime; the DEFAULT endpoint cannot be deleted on its own", async () => {
  const location = await uploadArtifact(probeZip());
  const created = await control.send(
    new CreateAgentRuntimeCommand({
      agentRuntimeName: uniqueName("jstags"),
      agentRuntimeArtifact: codeArtifact(location),
      roleArn: ROLE_ARN,
      networkConfiguration: { networkMode: "PUBLIC" },
      tags: { team: "js" },
      // Every optional configuration, so the SDK parses each of them back.
      lifecycleConfiguration: { idleRuntimeSessionTimeout: 300, maxLifetime: 3600 },
      protocolConfiguration: { serverProtocol: "HTTP" },
      requestHeaderConfiguration: { requestHeaderAllowlist: ["X-Amzn-Bedrock-AgentCore-Runtime-Custom-Flavour"] },
      authorizerConfiguration: {
        customJWTAuthorizer: {
          discoveryUrl: "https://issuer.example.com/.well-known/openid-configuration",
          allowedAudience: ["berth"],
          allowedClients: ["js-suite"],
        },
      },
    }),
  );
  const arn = created.agentRuntimeArn;
  const described = await control.send(new GetAgentRuntimeCommand({ agentRuntimeId: created.agentRuntimeId }));
  assert.deepEqual(described.lifecycleConfiguration, { idleRuntimeSessionTimeout: 300, maxLifetime: 3600 });
  assert.deepEqual(described.protocolConfiguration, { serverProtocol: "HTTP" });
  assert.deepEqual(described.requestHeaderConfiguration, {
    requestHeaderAllowlist: ["X-Amzn-Bedrock-AgentCore-Runtime-Custom-Flavour"],
  });
  assert.deepEqual(described.authorizerConfiguration.customJWTAuthorizer.allowedClients, ["js-suite"]);
  assert.ok(described.workloadIdentityDetails.workloadIdentityArn);
  const tagsNow = async () => (await control.send(new ListTagsForResourceCommand({ resourceArn: arn }))).tags;
  assert.deepEqual(await tagsNow(), { team: "js" });
  await control.send(new TagResourceCommand({ resourceArn: arn, tags: { stage: "test", team: "node" } }));
  assert.deepEqual(await tagsNow(), { stage: "test", team: "node" });
  await control.send(new UntagResourceCommand({ resourceArn: arn, tagKeys: ["team"] }));
  assert.deepEqual(await tagsNow(), { stage: "test" });

  const err = await expectError(
    control.send(new DeleteAgentRuntimeEndpointCommand({ agentRuntimeId: created.agentRuntimeId, endpointName: "DEFAULT" })),
    ConflictException,
    409,
  );
  assert.ok(err.message);
  await control.send(new DeleteAgentRuntimeCommand({ agentRuntimeId: created.agentRuntimeId }));
  await waitNotFound(
    () => control.send(new GetAgentRuntimeCommand({ agentRuntimeId: created.agentRuntimeId })),
    `runtime ${created.agentRuntimeId}`,
  );
});
