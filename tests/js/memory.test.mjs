// AgentCore Memory through the JavaScript SDK: the control plane (create, get, list, delete a
// memory) and the data plane (events, sessions, actors, long-term records, retrieval). The SDK
// parses every timestamp by the service model (epoch seconds or ISO-8601 per member), so a
// wrongly typed member fails here ("Expected real number").

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";

import {
  BatchCreateMemoryRecordsCommand,
  BatchDeleteMemoryRecordsCommand,
  BatchUpdateMemoryRecordsCommand,
  CreateEventCommand,
  DeleteEventCommand,
  GetEventCommand,
  GetMemoryRecordCommand,
  ListActorsCommand,
  ListEventsCommand,
  ListMemoryRecordsCommand,
  ListSessionsCommand,
  ResourceNotFoundException,
  RetrieveMemoryRecordsCommand,
  paginateListEvents,
} from "@aws-sdk/client-bedrock-agentcore";
import {
  CreateMemoryCommand,
  DeleteMemoryCommand,
  GetMemoryCommand,
  ListMemoriesCommand,
  UpdateMemoryCommand,
} from "@aws-sdk/client-bedrock-agentcore-control";

import {
  STATE_TIMEOUT_MS,
  assertRecent,
  control,
  data,
  expectError,
  poll,
  uniqueName,
  waitNotFound,
} from "./lib.mjs";

let memory;

function conversational(text, role = "USER") {
  return { conversational: { content: { text }, role } };
}

before(async () => {
  const name = uniqueName("jsmem");
  const created = await control.send(
    new CreateMemoryCommand({
      name,
      description: "from the JavaScript SDK",
      eventExpiryDuration: 30,
      memoryStrategies: [{ semanticMemoryStrategy: { name: "facts" } }],
      clientToken: randomUUID(),
    }),
  );
  assert.equal(created.$metadata.httpStatusCode, 202);
  assert.ok(created.memory.id.startsWith(`${name}-`), created.memory.id);
  assert.ok(["CREATING", "ACTIVE"].includes(created.memory.status));
  assertRecent(created.memory.createdAt);
  assertRecent(created.memory.updatedAt);
  memory = await poll(
    async () => (await control.send(new GetMemoryCommand({ memoryId: created.memory.id }))).memory,
    (m) => m.status === "ACTIVE",
    { timeoutMs: STATE_TIMEOUT_MS, what: "the memory to be ACTIVE" },
  );
});

after(async () => {
  if (!memory) return;
  const deleted = await control.send(new DeleteMemoryCommand({ memoryId: memory.id }));
  assert.equal(deleted.memoryId, memory.id);
  await waitNotFound(() => control.send(new GetMemoryCommand({ memoryId: memory.id })), `memory ${memory.id}`);
});

test("the memory is described and listed", async () => {
  assert.equal(memory.description, "from the JavaScript SDK");
  assert.equal(memory.eventExpiryDuration, 30);
  assert.match(memory.arn, /^arn:aws:bedrock-agentcore:[a-z0-9-]+:\d{12}:memory\//);
  assert.deepEqual(
    memory.strategies.map((s) => [s.type, s.name, s.status]),
    [["SEMANTIC", "facts", "ACTIVE"]],
  );
  assertRecent(memory.createdAt);
  const ids = [];
  let nextToken;
  do {
    const page = await control.send(new ListMemoriesCommand({ maxResults: 10, nextToken }));
    for (const m of page.memories) {
      assert.ok(m.createdAt instanceof Date && m.updatedAt instanceof Date);
      ids.push(m.id);
    }
    nextToken = page.nextToken;
  } while (nextToken);
  assert.ok(ids.includes(memory.id));
});

test("events round-trip: create, get, list newest first, sessions and actors", async () => {
  const actorId = "alice";
  const sessionId = `js-session-${randomUUID()}`;
  const start = Math.floor(Date.now() / 1000) - 60;
  const made = [];
  for (let i = 0; i < 3; i++) {
    const resp = await data.send(
      new CreateEventCommand({
        memoryId: memory.id,
        actorId,
        sessionId,
        eventTimestamp: new Date((start + i) * 1000),
        payload: [conversational(`turn ${i}`), conversational(`answer ${i}`, "ASSISTANT")],
        clientToken: randomUUID(),
      }),
    );
    assert.equal(resp.$metadata.httpStatusCode, 201);
    assert.equal(resp.event.memoryId, memory.id);
    assert.equal(resp.event.actorId, actorId);
    assert.equal(resp.event.sessionId, sessionId);
    // Whole seconds in, the same instant out, as a Date.
    assert.equal(resp.event.eventTimestamp.getTime(), (start + i) * 1000);
    made.push(resp.event.eventId);
  }

  const got = await data.send(
    new GetEventCommand({ memoryId: memory.id, actorId, sessionId, eventId: made[1] }),
  );
  assert.equal(got.event.eventId, made[1]);
  assert.equal(got.event.payload[0].conversational.content.text, "turn 1");
  assert.equal(got.event.payload[1].conversational.role, "ASSISTANT");

  const listed = await data.send(
    new ListEventsCommand({ memoryId: memory.id, actorId, sessionId, includePayloads: true }),
  );
  assert.deepEqual(
    listed.events.map((e) => e.eventId),
    [...made].reverse(),
  );
  for (const e of listed.events) assert.ok(e.eventTimestamp instanceof Date);

  // The SDK's paginator walks pages of one.
  const paged = [];
  for await (const page of paginateListEvents(
    { client: data, pageSize: 1 },
    { memoryId: memory.id, actorId, sessionId },
  )) {
    assert.ok(page.events.length <= 1);
    paged.push(...page.events.map((e) => e.eventId));
  }
  assert.deepEqual(paged, [...made].reverse());

  const sessions = await data.send(new ListSessionsCommand({ memoryId: memory.id, actorId }));
  const session = sessions.sessionSummaries.find((s) => s.sessionId === sessionId);
  assert.ok(session, JSON.stringify(sessions.sessionSummaries));
  assert.equal(session.actorId, actorId);
  assert.ok(session.createdAt instanceof Date && !Number.isNaN(session.createdAt.getTime()));

  const actors = await data.send(new ListActorsCommand({ memoryId: memory.id }));
  const actor = actors.actorSummaries.find((a) => a.actorId === actorId);
  assert.ok(actor, JSON.stringify(actors.actorSummaries));
});

const FACTS = [
  "The user is allergic to peanuts and avoids them in every meal.",
  "The user's favourite programming language is Rust.",
  "The user lives in Lisbon and commutes by bicycle.",
];

test("long-term records: batch create, get, list, retrieve", async () => {
  const namespace = `/actors/js-${randomUUID().slice(0, 8)}/`;
  const created = await data.send(
    new BatchCreateMemoryRecordsCommand({
      memoryId: memory.id,
      records: FACTS.map((text, i) => ({
        requestIdentifier: `r${i}`,
        namespaces: [namespace],
        content: { text },
        timestamp: new Date(),
      })),
    }),
  );
  assert.equal(created.$metadata.httpStatusCode, 201);
  assert.deepEqual(created.failedRecords, []);
  const byRequest = Object.fromEntries(created.successfulRecords.map((r) => [r.requestIdentifier, r]));
  const ids = FACTS.map((_, i) => byRequest[`r${i}`].memoryRecordId);
  assert.ok(created.successfulRecords.every((r) => r.status === "SUCCEEDED"));

  const one = await data.send(new GetMemoryRecordCommand({ memoryId: memory.id, memoryRecordId: ids[1] }));
  assert.equal(one.memoryRecord.content.text, FACTS[1]);
  assert.deepEqual(one.memoryRecord.namespaces, [namespace]);
  assertRecent(one.memoryRecord.createdAt);

  const listed = await data.send(new ListMemoryRecordsCommand({ memoryId: memory.id, namespace }));
  assert.deepEqual(listed.memoryRecordSummaries.map((r) => r.memoryRecordId).sort(), [...ids].sort());
  for (const r of listed.memoryRecordSummaries) assertRecent(r.createdAt);

  const hits = await data.send(
    new RetrieveMemoryRecordsCommand({
      memoryId: memory.id,
      namespace,
      searchCriteria: { searchQuery: "peanuts", topK: 2 },
    }),
  );
  assert.equal(hits.$metadata.httpStatusCode, 200);
  const summaries = hits.memoryRecordSummaries;
  assert.ok(summaries.length >= 1 && summaries.length <= 2, JSON.stringify(summaries));
  assert.equal(summaries[0].memoryRecordId, ids[0]);
  assert.equal(summaries[0].content.text, FACTS[0]);
  assert.equal(typeof summaries[0].score, "number");
  assertRecent(summaries[0].createdAt);
  const scores = summaries.map((s) => s.score);
  assert.deepEqual(scores, [...scores].sort((a, b) => b - a));
});

test("blob payloads, metadata filters, branches and deletion of events", async () => {
  const key = { memoryId: memory.id, actorId: "bob", sessionId: `js-branches-${randomUUID()}` };
  const blob = { state: ["any", "json", 1, { nested: true }] };
  const root = await data.send(
    new CreateEventCommand({
      ...key,
      eventTimestamp: new Date(),
      payload: [{ blob }],
      metadata: { kind: { stringValue: "state" } },
    }),
  );
  // A document member comes back as the same JavaScript value.
  assert.deepEqual(root.event.payload, [{ blob }]);
  assert.deepEqual(root.event.metadata, { kind: { stringValue: "state" } });
  const fork = await data.send(
    new CreateEventCommand({
      ...key,
      eventTimestamp: new Date(),
      payload: [conversational("what if")],
      branch: { name: "alt", rootEventId: root.event.eventId },
    }),
  );
  assert.deepEqual(fork.event.branch, { name: "alt", rootEventId: root.event.eventId });

  const byMetadata = await data.send(
    new ListEventsCommand({
      ...key,
      filter: {
        eventMetadata: [
          { left: { metadataKey: "kind" }, operator: "EQUALS_TO", right: { metadataValue: { stringValue: "state" } } },
        ],
      },
    }),
  );
  assert.deepEqual(
    byMetadata.events.map((e) => e.eventId),
    [root.event.eventId],
  );
  const onBranch = await data.send(new ListEventsCommand({ ...key, filter: { branch: { name: "alt" } } }));
  assert.deepEqual(
    onBranch.events.map((e) => e.eventId),
    [fork.event.eventId],
  );

  const deleted = await data.send(new DeleteEventCommand({ ...key, eventId: fork.event.eventId }));
  assert.equal(deleted.eventId, fork.event.eventId);
  await expectError(data.send(new GetEventCommand({ ...key, eventId: fork.event.eventId })), ResourceNotFoundException, 404);
});

test("records are updated and deleted in batches; the memory is updated", async () => {
  const namespace = `/actors/js-batch-${randomUUID().slice(0, 8)}/`;
  const created = await data.send(
    new BatchCreateMemoryRecordsCommand({
      memoryId: memory.id,
      records: [{ requestIdentifier: "only", namespaces: [namespace], content: { text: "Likes tea" }, timestamp: new Date() }],
    }),
  );
  const id = created.successfulRecords[0].memoryRecordId;
  const updated = await data.send(
    new BatchUpdateMemoryRecordsCommand({
      memoryId: memory.id,
      records: [{ memoryRecordId: id, content: { text: "Likes coffee" }, timestamp: new Date() }],
    }),
  );
  assert.deepEqual(
    updated.successfulRecords.map((r) => [r.memoryRecordId, r.status]),
    [[id, "SUCCEEDED"]],
  );
  const got = await data.send(new GetMemoryRecordCommand({ memoryId: memory.id, memoryRecordId: id }));
  assert.equal(got.memoryRecord.content.text, "Likes coffee");
  const removeIt = () =>
    data.send(new BatchDeleteMemoryRecordsCommand({ memoryId: memory.id, records: [{ memoryRecordId: id }] }));
  const removed = await removeIt();
  assert.deepEqual(
    removed.successfulRecords.map((r) => [r.memoryRecordId, r.status]),
    [[id, "SUCCEEDED"]],
  );
  assert.deepEqual(removed.failedRecords, []);
  // Deleting it again fails for that record, with the model's integer errorCode.
  const again = await removeIt();
  assert.deepEqual(again.successfulRecords, []);
  assert.deepEqual(
    again.failedRecords.map((r) => [r.memoryRecordId, r.status, r.errorCode]),
    [[id, "FAILED", 404]],
  );
  assert.ok(again.failedRecords[0].errorMessage);

  const changed = await control.send(
    new UpdateMemoryCommand({
      memoryId: memory.id,
      description: "changed from the JavaScript SDK",
      memoryStrategies: { addMemoryStrategies: [{ summaryMemoryStrategy: { name: "summaries" } }] },
    }),
  );
  assert.equal(changed.memory.description, "changed from the JavaScript SDK");
  assertRecent(changed.memory.updatedAt);
  const names = (
    await poll(
      async () => (await control.send(new GetMemoryCommand({ memoryId: memory.id }))).memory,
      (m) => m.status === "ACTIVE" && m.strategies.every((st) => st.status === "ACTIVE"),
      { timeoutMs: STATE_TIMEOUT_MS, what: "the updated memory to be ACTIVE" },
    )
  ).strategies.map((st) => st.name);
  assert.deepEqual(names.sort(), ["facts", "summaries"]);
});

test("every strategy type and custom override round-trips through the SDK's union parsing", async () => {
  const override = { appendToPrompt: "be brief", modelId: "anthropic.claude-3-haiku" };
  const sets = [
    [
      { semanticMemoryStrategy: { name: "sem", namespaces: ["/facts/{actorId}/"] } },
      { summaryMemoryStrategy: { name: "sum" } },
      { userPreferenceMemoryStrategy: { name: "pref" } },
      { episodicMemoryStrategy: { name: "epi", reflectionConfiguration: { namespaces: ["/reflect/{actorId}/"] } } },
      { customMemoryStrategy: { name: "csem", configuration: { semanticOverride: { extraction: override, consolidation: override } } } },
    ],
    [
      { customMemoryStrategy: { name: "csum", configuration: { summaryOverride: { consolidation: override } } } },
      { customMemoryStrategy: { name: "cpref", configuration: { userPreferenceOverride: { extraction: override } } } },
      {
        customMemoryStrategy: {
          name: "cepi",
          configuration: { episodicOverride: { extraction: override, consolidation: override, reflection: override } },
        },
      },
      {
        customMemoryStrategy: {
          name: "cself",
          configuration: {
            selfManagedConfiguration: {
              triggerConditions: [{ messageBasedTrigger: { messageCount: 5 } }, { timeBasedTrigger: { idleSessionTimeout: 60 } }],
              invocationConfiguration: {
                topicArn: "arn:aws:sns:us-east-1:000000000000:memory-topic",
                payloadDeliveryBucketName: "memory-payloads",
              },
              historicalContextWindowSize: 4,
            },
          },
        },
      },
    ],
  ];
  const seen = {};
  for (const memoryStrategies of sets) {
    const created = await control.send(
      new CreateMemoryCommand({ name: uniqueName("jsstrat"), eventExpiryDuration: 7, memoryStrategies }),
    );
    const got = await control.send(new GetMemoryCommand({ memoryId: created.memory.id }));
    for (const st of got.memory.strategies) seen[st.name] = st;
    await control.send(new DeleteMemoryCommand({ memoryId: created.memory.id }));
  }
  assert.deepEqual(
    Object.fromEntries(Object.entries(seen).map(([name, st]) => [name, st.type])),
    {
      sem: "SEMANTIC",
      sum: "SUMMARIZATION",
      pref: "USER_PREFERENCE",
      epi: "EPISODIC",
      csem: "CUSTOM",
      csum: "CUSTOM",
      cpref: "CUSTOM",
      cepi: "CUSTOM",
      cself: "CUSTOM",
    },
  );
  assert.deepEqual(seen.sem.namespaces, ["/facts/{actorId}/"]);
  assert.deepEqual(seen.epi.configuration.reflection.episodicReflectionConfiguration.namespaces, ["/reflect/{actorId}/"]);
  assert.equal(seen.csem.configuration.type, "SEMANTIC_OVERRIDE");
  assert.deepEqual(seen.csem.configuration.extraction.customExtractionConfiguration.semanticExtractionOverride, override);
  assert.deepEqual(
    seen.csem.configuration.consolidation.customConsolidationConfiguration.semanticConsolidationOverride,
    override,
  );
  assert.deepEqual(
    seen.csum.configuration.consolidation.customConsolidationConfiguration.summaryConsolidationOverride,
    override,
  );
  assert.deepEqual(
    seen.cpref.configuration.extraction.customExtractionConfiguration.userPreferenceExtractionOverride,
    override,
  );
  assert.deepEqual(seen.cepi.configuration.reflection.customReflectionConfiguration.episodicReflectionOverride, override);
  const self = seen.cself.configuration.selfManagedConfiguration;
  assert.equal(seen.cself.configuration.type, "SELF_MANAGED");
  assert.deepEqual(self.triggerConditions, [
    { messageBasedTrigger: { messageCount: 5 } },
    { timeBasedTrigger: { idleSessionTimeout: 60 } },
  ]);
  assert.equal(self.historicalContextWindowSize, 4);
  for (const st of Object.values(seen)) {
    assert.ok(st.strategyId.startsWith(`${st.name}-`), st.strategyId);
    assert.ok(st.createdAt instanceof Date && st.updatedAt instanceof Date);
  }
});
