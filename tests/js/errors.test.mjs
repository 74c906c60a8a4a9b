// Errors reach JavaScript as the SDK's typed exceptions, with the model's fields and
// `$metadata.httpStatusCode`: ResourceNotFoundException, ValidationException,
// AccessDeniedException (a key whose policy allows only GetAgentRuntime), the S3 client's NoSuchKey
// and NoSuchBucket, and an unknown access key.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  InvokeAgentRuntimeCommand,
  ListEventsCommand,
  ResourceNotFoundException as DataNotFound,
  AccessDeniedException as DataAccessDenied,
  ValidationException as DataValidation,
} from "@aws-sdk/client-bedrock-agentcore";
import {
  AccessDeniedException,
  BedrockAgentCoreControlClient,
  BedrockAgentCoreControlServiceException,
  CreateAgentRuntimeCommand,
  DeleteAgentRuntimeCommand,
  GetAgentRuntimeCommand,
  GetMemoryCommand,
  ListAgentRuntimesCommand,
  ResourceNotFoundException,
  ValidationException,
} from "@aws-sdk/client-bedrock-agentcore-control";
import { GetObjectCommand, NoSuchBucket, NoSuchKey } from "@aws-sdk/client-s3";

import {
  BUCKET,
  REGION,
  ROLE_ARN,
  codeArtifact,
  control,
  data,
  expectError,
  limitedClients,
  newSessionId,
  s3,
  uploadArtifact,
} from "./lib.mjs";

const UNKNOWN_ID = "nothere_js-0123456789";
const UNKNOWN_ARN = `arn:aws:bedrock-agentcore:${REGION}:000000000000:runtime/${UNKNOWN_ID}`;

test("an unknown runtime, memory or invocation target is ResourceNotFoundException (404)", async () => {
  await expectError(control.send(new GetAgentRuntimeCommand({ agentRuntimeId: UNKNOWN_ID })), ResourceNotFoundException, 404);
  await expectError(control.send(new GetMemoryCommand({ memoryId: "nothere_js-0123456789" })), ResourceNotFoundException, 404);
  await expectError(
    data.send(
      new InvokeAgentRuntimeCommand({
        agentRuntimeArn: UNKNOWN_ARN,
        runtimeSessionId: newSessionId(),
        payload: new TextEncoder().encode("{}"),
      }),
    ),
    DataNotFound,
    404,
  );
  await expectError(
    data.send(new ListEventsCommand({ memoryId: "nothere_js-0123456789", actorId: "a", sessionId: "s" })),
    DataNotFound,
    404,
  );
});

test("invalid input is ValidationException (400) with the model's reason and fieldList", async () => {
  // The SDK does not check patterns itself, so the name reaches the server's own validation.
  const location = { bucket: BUCKET, prefix: "never/uploaded.zip" };
  const err = await expectError(
    control.send(
      new CreateAgentRuntimeCommand({
        agentRuntimeName: "9-not-a-valid-name!",
        agentRuntimeArtifact: codeArtifact(location),
        roleArn: ROLE_ARN,
        networkConfiguration: { networkMode: "PUBLIC" },
      }),
    ),
    ValidationException,
    400,
  );
  assert.equal(err.reason, "FieldValidationFailed");
  assert.ok(Array.isArray(err.fieldList) && err.fieldList.length > 0, JSON.stringify(err.fieldList));
  assert.ok(
    err.fieldList.some((field) => /agentRuntimeName/i.test(field.name) && field.message),
    JSON.stringify(err.fieldList),
  );
  // The data plane's ValidationException.
  await expectError(
    data.send(
      new InvokeAgentRuntimeCommand({
        agentRuntimeArn: UNKNOWN_ARN,
        runtimeSessionId: "too-short",
        payload: new TextEncoder().encode("{}"),
      }),
    ),
    DataValidation,
    400,
  );
});

test("a key without the permission gets AccessDeniedException (403) naming action and resource", async () => {
  const limited = limitedClients();
  // Allowed by its policy: the call reaches the service and finds nothing.
  await expectError(
    limited.control.send(new GetAgentRuntimeCommand({ agentRuntimeId: UNKNOWN_ID })),
    ResourceNotFoundException,
    404,
  );
  const err = await expectError(
    limited.control.send(new DeleteAgentRuntimeCommand({ agentRuntimeId: UNKNOWN_ID })),
    AccessDeniedException,
    403,
  );
  assert.match(err.message, /bedrock-agentcore:DeleteAgentRuntime/);
  await expectError(limited.control.send(new ListAgentRuntimesCommand({})), AccessDeniedException, 403);
  const denied = await expectError(
    limited.data.send(
      new InvokeAgentRuntimeCommand({
        agentRuntimeArn: UNKNOWN_ARN,
        runtimeSessionId: newSessionId(),
        payload: new TextEncoder().encode("{}"),
      }),
    ),
    DataAccessDenied,
    403,
  );
  assert.match(denied.message, /bedrock-agentcore:InvokeAgentRuntime/);
});

test("an unknown access key is refused with 403 UnrecognizedClientException", async () => {
  const stranger = new BedrockAgentCoreControlClient({
    maxAttempts: 1,
    credentials: { accessKeyId: "AKIANOBODYKNOWSTHIS0", secretAccessKey: "x".repeat(40) },
  });
  let caught;
  try {
    await stranger.send(new ListAgentRuntimesCommand({}));
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof BedrockAgentCoreControlServiceException, String(caught));
  assert.equal(caught.name, "UnrecognizedClientException");
  assert.equal(caught.$metadata.httpStatusCode, 403);
  assert.ok(caught.$metadata.requestId);
});

test("the artifact store's errors are the S3 client's NoSuchKey and NoSuchBucket", async () => {
  await uploadArtifact(Buffer.from("present"), "js-errors");
  await expectError(s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "js-errors/absent" })), NoSuchKey, 404);
  await expectError(
    s3.send(new GetObjectCommand({ Bucket: "js-no-such-bucket-0123", Key: "k" })),
    NoSuchBucket,
    404,
  );
});
