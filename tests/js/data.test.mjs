// The data plane through @aws-sdk/client-bedrock-agentcore: InvokeAgentRuntime answered in JSON and
// in SSE (the stream read with the SDK, event by event), session reuse, StopRuntimeSession.
// The agent is tests/conformance/agents/probe, uploaded with client-s3 and created with -control.

import assert from "node:assert/strict";
import { before, test } from "node:test";

import { InvokeAgentRuntimeCommand, StopRuntimeSessionCommand } from "@aws-sdk/client-bedrock-agentcore";

import { data, deployProbe, newSessionId } from "./lib.mjs";

let probe;

before(async () => {
  probe = await deployProbe();
});

function invoke(sessionId, payload, extra = {}) {
  return data.send(
    new InvokeAgentRuntimeCommand({
      agentRuntimeArn: probe.agentRuntimeArn,
      runtimeSessionId: sessionId,
      contentType: "application/json",
      payload: new TextEncoder().encode(JSON.stringify(payload)),
      ...extra,
    }),
  );
}

/** Reads an SSE body from the SDK's stream as it arrives; returns the decoded `data:` events. */
async function readSse(stream) {
  const events = [];
  let pending = "";
  const decoder = new TextDecoder();
  for await (const chunk of stream) {
    pending += decoder.decode(chunk, { stream: true });
    let cut;
    while ((cut = pending.indexOf("\n\n")) >= 0) {
      const frame = pending.slice(0, cut);
      pending = pending.slice(cut + 2);
      const lines = frame.split("\n").filter((line) => line.startsWith("data:"));
      if (lines.length === 0) continue;
      const text = lines.map((line) => line.slice(5).trimStart()).join("\n");
      try {
        events.push(JSON.parse(text));
      } catch {
        events.push(text);
      }
    }
  }
  assert.equal(pending.trim(), "", "the stream ended inside an event");
  return events;
}

test("a JSON answer carries the session and reaches the agent", async () => {
  const session = newSessionId();
  const resp = await invoke(session, { op: "whoami", prompt: "hi from node" });
  assert.equal(resp.$metadata.httpStatusCode, 200);
  assert.ok(resp.$metadata.requestId);
  assert.equal(resp.statusCode, 200);
  assert.equal(resp.runtimeSessionId, session);
  assert.ok(resp.contentType.startsWith("application/json"), resp.contentType);
  const body = JSON.parse(await resp.response.transformToString());
  assert.equal(body.sessionId, session);
  assert.equal(body.prompt, "hi from node");
  assert.equal(body.counter, 1);
  assert.notEqual(body.uid, 0);

  // The same session id reaches the same agent process; a new one reaches another.
  const again = JSON.parse(await (await invoke(session, { op: "whoami" })).response.transformToString());
  assert.equal(again.token, body.token);
  assert.equal(again.counter, 2);
  const other = JSON.parse(await (await invoke(newSessionId(), { op: "whoami" })).response.transformToString());
  assert.notEqual(other.token, body.token);
});

test("an SSE answer is read event by event from the SDK's stream", async () => {
  const session = newSessionId("sse");
  const resp = await invoke(session, { op: "stream", count: 5, interval: 0.05 }, { accept: "text/event-stream" });
  assert.equal(resp.statusCode, 200);
  assert.equal(resp.runtimeSessionId, session);
  assert.ok(resp.contentType.startsWith("text/event-stream"), resp.contentType);
  const events = await readSse(resp.response);
  assert.equal(events.length, 5, JSON.stringify(events));
  assert.deepEqual(
    events.map((event) => event.index),
    [0, 1, 2, 3, 4],
  );
});

test("StopRuntimeSession ends the session; the next call starts afresh", async () => {
  const session = newSessionId("stop");
  const first = JSON.parse(await (await invoke(session, { op: "whoami" })).response.transformToString());
  const stopped = await data.send(
    new StopRuntimeSessionCommand({ agentRuntimeArn: probe.agentRuntimeArn, runtimeSessionId: session }),
  );
  assert.equal(stopped.$metadata.httpStatusCode, 200);
  assert.equal(stopped.runtimeSessionId, session);
  const after = JSON.parse(await (await invoke(session, { op: "whoami" })).response.transformToString());
  assert.notEqual(after.token, first.token);
  assert.equal(after.counter, 1);
});
