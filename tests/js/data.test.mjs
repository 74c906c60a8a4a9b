// The data plane through @aws-sdk/client-bedrock-agentcore: InvokeAgentRuntime answered in JSON and
// in SSE (the stream read with the SDK, event by event), session reuse, qualifiers, the user id and
// trace headers, agent failures (424 RuntimeClientError, an error event ending a broken stream),
// StopRuntimeSession.
// The agent is tests/conformance/agents/probe, uploaded with client-s3 and created with -control.

import assert from "node:assert/strict";
import { before, test } from "node:test";

import {
  BedrockAgentCoreServiceException,
  InvokeAgentRuntimeCommand,
  ResourceNotFoundException,
  StopRuntimeSessionCommand,
} from "@aws-sdk/client-bedrock-agentcore";

import { data, deployProbe, expectError, newSessionId } from "./lib.mjs";

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

test("qualifiers: DEFAULT and a version serve, an unknown endpoint is ResourceNotFoundException", async () => {
  for (const qualifier of ["DEFAULT", "1"]) {
    const session = newSessionId("q");
    const resp = await invoke(session, { op: "whoami" }, { qualifier });
    assert.equal(resp.statusCode, 200);
    assert.equal(JSON.parse(await resp.response.transformToString()).sessionId, session);
  }
  await expectError(invoke(newSessionId("q"), { op: "whoami" }, { qualifier: "no_such_endpoint" }), ResourceNotFoundException, 404);

  // On a live session too: the session is not a way around the qualifier.
  const live = newSessionId("live");
  const first = JSON.parse(await (await invoke(live, { op: "whoami" })).response.transformToString());
  await expectError(invoke(live, { op: "whoami" }, { qualifier: "no_such_endpoint" }), ResourceNotFoundException, 404);
  const again = JSON.parse(await (await invoke(live, { op: "whoami" }, { qualifier: "DEFAULT" })).response.transformToString());
  assert.equal(again.token, first.token);
  assert.equal(again.counter, 2);
});

test("the user id and trace headers the SDK sends reach the agent", async () => {
  const traceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  const resp = await invoke(newSessionId("hdr"), { op: "headers" }, { runtimeUserId: "alice", traceParent, baggage: "team=js" });
  const body = JSON.parse(await resp.response.transformToString());
  assert.equal(body.userId, "alice");
  // The caller's trace continues through Berth's own invocation span, the agent's parent.
  const [version, traceId, parent, flags] = body.result.traceparent.split("-");
  assert.deepEqual([version, traceId, flags], ["00", "0af7651916cd43dd8448eb211c80319c", "01"]);
  assert.equal(parent.length, 16);
  assert.notEqual(parent, "b7ad6b7169203331");
  // The session's id leads the baggage; the caller's members follow.
  assert.equal(body.result.baggage, `session.id=${body.sessionId},team=js`);
  // The caller's signature is not passed on to the agent.
  assert.equal(body.result.authorization, undefined);
});

test("an agent that dies is a 424 RuntimeClientError; a broken stream ends with an error event", async () => {
  // RuntimeClientError is not in the SDK's model: it arrives as the service's base exception,
  // named by the x-amzn-ErrorType header.
  let caught;
  try {
    await invoke(newSessionId("exit"), { op: "exit" });
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof BedrockAgentCoreServiceException, String(caught));
  assert.equal(caught.name, "RuntimeClientError");
  assert.equal(caught.$metadata.httpStatusCode, 424);
  assert.ok(caught.message);

  const resp = await invoke(newSessionId("crash"), { op: "crash_stream" });
  assert.equal(resp.statusCode, 200);
  const events = await readSse(resp.response);
  assert.equal(events.length, 2, JSON.stringify(events));
  assert.equal(events[0].index, 0);
  assert.equal(events[1].error_type, "RuntimeClientError");
  assert.ok(events[1].error);
});

test("StopRuntimeSession on a session that was never opened is ResourceNotFoundException", async () => {
  await expectError(
    data.send(new StopRuntimeSessionCommand({ agentRuntimeArn: probe.agentRuntimeArn, runtimeSessionId: newSessionId("never") })),
    ResourceNotFoundException,
    404,
  );
});
