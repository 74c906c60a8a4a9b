// Shared set-up for the JavaScript conformance suite: unmodified AWS SDK for JavaScript v3 clients
// pointed at the `berth serve` that tests/conformance/test_js_sdk.py started.
//
// Everything comes from the environment that test sets (never from the developer's AWS config):
//   AWS_ENDPOINT_URL_BEDROCK_AGENTCORE, AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL,
//   AWS_ENDPOINT_URL_S3, AWS_REGION, AWS_ACCESS_KEY_ID
//                                      exactly the `export` lines `berth serve` printed: the SDK
//                                      finds the endpoints and region there by itself, as a
//                                      user's would after `eval`-ing them
//   AWS_SECRET_ACCESS_KEY              the suite's root secret (`berth credentials --export`)
//   BERTH_JS_LIMITED_KEY_ID, BERTH_JS_LIMITED_SECRET
//                                      an access key whose policy allows only GetAgentRuntime
//   BERTH_JS_PROBE_ZIP                 tests/conformance/agents/probe as a deployment zip
//   BERTH_JS_PYTHON_RUNTIME            the `codeConfiguration.runtime` value for this machine
//   BERTH_JS_ROLE_ARN, BERTH_JS_BUCKET the runtime role and the artifact bucket
//   BERTH_TEST_BUILD_TIMEOUT           seconds a build may take (default 300)

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { setTimeout as delay } from "node:timers/promises";

import { BedrockAgentCoreClient } from "@aws-sdk/client-bedrock-agentcore";
import {
  BedrockAgentCoreControlClient,
  CreateAgentRuntimeCommand,
  GetAgentRuntimeCommand,
} from "@aws-sdk/client-bedrock-agentcore-control";
import { CreateBucketCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";

function required(name) {
  const value = process.env[name];
  assert.ok(value, `${name} is not set: run this suite through tests/conformance/test_js_sdk.py`);
  return value;
}

/** The server's URL. Required first, so a missing endpoint can never send a request to AWS. */
export const ENDPOINT = required("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL");
for (const name of ["AWS_ENDPOINT_URL_BEDROCK_AGENTCORE", "AWS_ENDPOINT_URL_S3"]) {
  assert.equal(required(name), ENDPOINT, `${name} is not the server's URL`);
}
assert.match(ENDPOINT, /^http:\/\/127\.0\.0\.1:\d+$/, "the suite only talks to a server on loopback");
export const REGION = required("AWS_REGION");
export const ROLE_ARN = required("BERTH_JS_ROLE_ARN");
export const BUCKET = required("BERTH_JS_BUCKET");
export const PYTHON_RUNTIME = required("BERTH_JS_PYTHON_RUNTIME");
export const BUILD_TIMEOUT_MS = 1000 * Number(process.env.BERTH_TEST_BUILD_TIMEOUT ?? "300");
/** How long an asynchronous change without a build (deletion, memory activation) may take. */
export const STATE_TIMEOUT_MS = 60_000;

// Nothing but retries off (so every error the server returns reaches the test): endpoints,
// region and credentials are the SDK's own defaults, read from the environment.
const common = { maxAttempts: 1 };

/** Clients signed with the default credential chain (the suite's root key from the environment). */
export const control = new BedrockAgentCoreControlClient(common);
export const data = new BedrockAgentCoreClient(common);
/**
 * Berth's artifact store is addressed path-style (`ENDPOINT/bucket/key`); the SDK picks that by
 * itself for an IP-address endpoint, and says so here for any other host.
 */
export const s3 = new S3Client({ ...common, forcePathStyle: true });

/** Clients for the limited access key (its policy allows only GetAgentRuntime). */
export function limitedClients() {
  const credentials = {
    accessKeyId: required("BERTH_JS_LIMITED_KEY_ID"),
    secretAccessKey: required("BERTH_JS_LIMITED_SECRET"),
  };
  return {
    control: new BedrockAgentCoreControlClient({ ...common, credentials }),
    data: new BedrockAgentCoreClient({ ...common, credentials }),
  };
}

/** A name matching `[a-zA-Z][a-zA-Z0-9_]{0,47}`, unique per call. */
export function uniqueName(prefix = "js") {
  return `${prefix}_${randomUUID().replaceAll("-", "").slice(0, 16)}`;
}

/** A runtime session id (the data plane wants 33 to 256 characters). */
export function newSessionId(tag = "js") {
  return `${tag}-${randomUUID()}-${randomUUID().slice(0, 8)}`;
}

/** A client token the models accept (33-256 characters). */
export function clientToken() {
  return `tok-${randomUUID()}`;
}

/** Call `probe` until `done(result)`; throws with the last result once `timeoutMs` has passed. */
export async function poll(probe, done, { timeoutMs, what }) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const last = await probe();
    if (done(last)) return last;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${JSON.stringify(last)}`);
    }
    // The deadline, not this interval, bounds the wait.
    await delay(200);
  }
}

const FAILED = new Set(["CREATE_FAILED", "UPDATE_FAILED", "DELETE_FAILED"]);

/** Poll GetAgentRuntime (for `version`, else the latest) until its status is `want`. */
export async function waitRuntime(agentRuntimeId, { version, want = "READY", timeoutMs = BUILD_TIMEOUT_MS } = {}) {
  const input = { agentRuntimeId, ...(version ? { agentRuntimeVersion: version } : {}) };
  return poll(
    () => control.send(new GetAgentRuntimeCommand(input)),
    (resp) => {
      if (resp.status !== want && FAILED.has(resp.status)) {
        throw new Error(`runtime ${agentRuntimeId} is ${resp.status}: ${resp.failureReason}`);
      }
      return resp.status === want;
    },
    { timeoutMs, what: `runtime ${agentRuntimeId} v${version ?? "latest"} to be ${want}` },
  );
}

/** Poll `call()` until it rejects with ResourceNotFoundException. */
export async function waitNotFound(call, what) {
  await poll(
    async () => {
      try {
        await call();
        return "found";
      } catch (err) {
        return err.name;
      }
    },
    (name) => name === "ResourceNotFoundException",
    { timeoutMs: STATE_TIMEOUT_MS, what: `${what} to be gone` },
  );
}

/** The probe agent's deployment zip. */
export function probeZip() {
  return readFileSync(required("BERTH_JS_PROBE_ZIP"));
}

/** Upload `body` with the S3 client; returns the `code.s3` location for a runtime. */
export async function uploadArtifact(body, name = "js-probe") {
  try {
    await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  } catch (err) {
    if (!["BucketAlreadyOwnedByYou", "BucketAlreadyExists"].includes(err.name)) throw err;
  }
  const key = `${name}/${randomUUID()}/deployment_package.zip`;
  const put = await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
  assert.equal(put.$metadata.httpStatusCode, 200);
  return { bucket: BUCKET, prefix: key };
}

/** `agentRuntimeArtifact` for a zip uploaded to `location`. */
export function codeArtifact(location) {
  return {
    codeConfiguration: {
      code: { s3: location },
      runtime: PYTHON_RUNTIME,
      entryPoint: ["agent.py"],
    },
  };
}

/** Upload the probe agent, create a runtime and wait until version 1 is READY. */
export async function deployProbe(name = uniqueName("jsprobe")) {
  const location = await uploadArtifact(probeZip());
  const created = await control.send(
    new CreateAgentRuntimeCommand({
      agentRuntimeName: name,
      agentRuntimeArtifact: codeArtifact(location),
      roleArn: ROLE_ARN,
      networkConfiguration: { networkMode: "PUBLIC" },
    }),
  );
  assert.equal(created.$metadata.httpStatusCode, 202);
  return waitRuntime(created.agentRuntimeId, { version: "1" });
}

/**
 * Await `promise`, require it to reject with the SDK's typed exception `type` and HTTP `status`;
 * returns the exception.
 */
export async function expectError(promise, type, status) {
  let caught;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught, `expected ${type.name}, but the call succeeded`);
  assert.ok(
    caught instanceof type,
    `expected ${type.name}, got ${caught.name} (HTTP ${caught.$metadata?.httpStatusCode}): ${caught.message}`,
  );
  assert.equal(caught.name, type.name);
  assert.equal(caught.$metadata.httpStatusCode, status);
  assert.ok(caught.$metadata.requestId, "no x-amzn-RequestId on the error");
  assert.equal(caught.$fault, status >= 500 ? "server" : "client");
  assert.ok(caught.message, "the exception carries no message");
  return caught;
}

/** A Date within `slackMs` of now (the SDK parsed a timestamp into a real Date). */
export function assertRecent(value, slackMs = 600_000) {
  assert.ok(value instanceof Date, `${value} is not a Date`);
  assert.ok(!Number.isNaN(value.getTime()), `${value} is an invalid Date`);
  const delta = Math.abs(Date.now() - value.getTime());
  assert.ok(delta < slackMs, `${value.toISOString()} is ${delta} ms away from now`);
}
