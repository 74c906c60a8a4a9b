// InvokeAgentRuntimeCommand through @aws-sdk/client-bedrock-agentcore: the SDK's own event-stream
// parser reads contentStart, the stdout/stderr deltas and contentStop; a timeout is TIMED_OUT; the
// command sees a file the agent wrote in its session; a bad timeout is a typed ValidationException.
// The agent is tests/conformance/agents/probe.

import assert from "node:assert/strict";
import { before, test } from "node:test";

import {
  InvokeAgentRuntimeCommand,
  InvokeAgentRuntimeCommandCommand,
  ValidationException,
} from "@aws-sdk/client-bedrock-agentcore";

import { data, deployProbe, expectError, newSessionId } from "./lib.mjs";

let probe;

before(async () => {
  probe = await deployProbe();
});

async function run(sessionId, body) {
  const resp = await data.send(
    new InvokeAgentRuntimeCommandCommand({
      agentRuntimeArn: probe.agentRuntimeArn,
      runtimeSessionId: sessionId,
      body,
    }),
  );
  const chunks = [];
  for await (const event of resp.stream) {
    assert.ok(event.chunk, `an event other than chunk: ${JSON.stringify(event)}`);
    chunks.push(event.chunk);
  }
  let stdout = "";
  let stderr = "";
  for (const c of chunks) {
    stdout += c.contentDelta?.stdout ?? "";
    stderr += c.contentDelta?.stderr ?? "";
  }
  return { resp, chunks, stdout, stderr };
}

test("stdout, stderr and the exit code come through the SDK's event stream", async () => {
  const session = newSessionId();
  const { resp, chunks, stdout, stderr } = await run(session, {
    command: "echo one; echo two >&2; echo three; exit 5",
  });
  assert.equal(resp.$metadata.httpStatusCode, 200);
  assert.equal(resp.runtimeSessionId, session);
  assert.deepEqual(chunks[0], { contentStart: {} });
  assert.deepEqual(chunks.at(-1), { contentStop: { exitCode: 5, status: "COMPLETED" } });
  assert.equal(stdout, "one\nthree\n");
  assert.equal(stderr, "two\n");
});

test("a command that outlives its timeout is TIMED_OUT", async () => {
  const { chunks, stdout } = await run(newSessionId(), {
    command: "echo before; sleep 600; echo after",
    timeout: 1,
  });
  assert.equal(stdout, "before\n");
  assert.equal(chunks.at(-1).contentStop.status, "TIMED_OUT");
});

test("the command sees the files of the agent's session", async () => {
  const session = newSessionId();
  const secret = `js-${Date.now()}-${Math.random().toString(36).slice(2)}`;
  const wrote = await data.send(
    new InvokeAgentRuntimeCommand({
      agentRuntimeArn: probe.agentRuntimeArn,
      runtimeSessionId: session,
      contentType: "application/json",
      payload: new TextEncoder().encode(
        JSON.stringify({ op: "write", path: `/tmp/${secret}`, content: secret }),
      ),
    }),
  );
  assert.equal(JSON.parse(await wrote.response.transformToString()).result.ok, true);
  const { stdout } = await run(session, { command: `cat /tmp/${secret}` });
  assert.equal(stdout, secret);
});

test("a timeout out of range is a typed ValidationException", async () => {
  await expectError(
    data.send(
      new InvokeAgentRuntimeCommandCommand({
        agentRuntimeArn: probe.agentRuntimeArn,
        runtimeSessionId: newSessionId(),
        body: { command: "true", timeout: 0 },
      }),
    ),
    ValidationException,
    400,
  );
});
