// AgentCore Evaluations through the unmodified @aws-sdk/client-bedrock-agentcore-control and
// @aws-sdk/client-bedrock-agentcore: built-in evaluators, a custom judge and a code-based evaluator
// (create, get, update, list, delete), online evaluation configs (enable and disable), datasets
// (examples, versions, the unsigned download URL), Evaluate with a deterministic built-in over span
// documents, and batch evaluations over stored sessions (start, get, list, stop, delete).
//
// Every response's timestamps are checked against the raw wire as well as the parsed value: the
// control plane's have no `timestampFormat` in the model (epoch seconds, a JSON number), the batch
// evaluations' are `iso8601` (an RFC 3339 string). The SDK throws on a string where it wants a
// number and the reverse; epoch milliseconds would parse into a Date thousands of years away.

import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { test } from "node:test";

import {
  AddDatasetExamplesCommand,
  CreateDatasetCommand,
  CreateDatasetVersionCommand,
  CreateEvaluatorCommand,
  CreateOnlineEvaluationConfigCommand,
  DeleteDatasetCommand,
  DeleteDatasetExamplesCommand,
  DeleteEvaluatorCommand,
  DeleteOnlineEvaluationConfigCommand,
  GetDatasetCommand,
  GetEvaluatorCommand,
  GetOnlineEvaluationConfigCommand,
  ListDatasetExamplesCommand,
  ListDatasetVersionsCommand,
  ListDatasetsCommand,
  ListEvaluatorsCommand,
  ListOnlineEvaluationConfigsCommand,
  ResourceNotFoundException,
  UpdateDatasetCommand,
  UpdateDatasetExamplesCommand,
  UpdateEvaluatorCommand,
  UpdateOnlineEvaluationConfigCommand,
  ValidationException,
  paginateListDatasetExamples,
  paginateListDatasets,
  paginateListEvaluators,
  paginateListOnlineEvaluationConfigs,
} from "@aws-sdk/client-bedrock-agentcore-control";
import {
  DeleteBatchEvaluationCommand,
  EvaluateCommand,
  GetBatchEvaluationCommand,
  ListBatchEvaluationsCommand,
  ResourceNotFoundException as DataResourceNotFoundException,
  StartBatchEvaluationCommand,
  StopBatchEvaluationCommand,
  paginateListBatchEvaluations,
} from "@aws-sdk/client-bedrock-agentcore";

import {
  STATE_TIMEOUT_MS,
  clientToken,
  control,
  data,
  expectError,
  newSessionId,
  poll,
  uniqueName,
  waitNotFound,
} from "./lib.mjs";

// ---------------------------------------------------------------------------------------------
// The raw wire, next to what the SDK parsed.

/** Response bodies as the server sent them, by request id. */
const RAW = new Map();

/**
 * Keeps every response body: a middleware inside the SDK's deserializer (the deserialize step,
 * low priority) reads the body, keeps a copy and hands the deserializer the same bytes.
 */
for (const client of [control, data]) {
  client.middlewareStack.add(
    (next) => async (args) => {
      const out = await next(args);
      const res = out.response;
      if (res?.body && typeof res.body[Symbol.asyncIterator] === "function") {
        const chunks = [];
        for await (const c of res.body) chunks.push(Buffer.from(c));
        const bytes = Buffer.concat(chunks);
        const id = res.headers?.["x-amzn-requestid"];
        if (id) RAW.set(id, bytes.toString("utf8"));
        res.body = Readable.from([bytes]);
      }
      return out;
    },
    { step: "deserialize", name: "berthKeepRawBody", priority: "low" },
  );
}

/** The JSON body the server sent for a parsed response. */
function rawOf(resp) {
  const text = RAW.get(resp.$metadata.requestId);
  assert.ok(text !== undefined, `no raw body kept for request ${resp.$metadata.requestId}`);
  return text ? JSON.parse(text) : {};
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

/**
 * Walks a parsed response and its raw body together: every Date must have come from the model's
 * wire form (`epoch-seconds`: a JSON number of seconds; `iso8601`: an RFC 3339 string) and stand
 * for the same instant. Returns how many timestamps were checked.
 */
function wireTimestamps(parsed, raw, format, path = "$") {
  if (parsed instanceof Date) {
    assert.ok(!Number.isNaN(parsed.getTime()), `${path} is an invalid Date`);
    if (format === "epoch-seconds") {
      assert.equal(typeof raw, "number", `${path} is ${JSON.stringify(raw)} on the wire, not epoch seconds`);
      assert.equal(parsed.getTime(), Math.round(raw * 1000), `${path}: ${raw} parsed as ${parsed.toISOString()}`);
    } else {
      assert.equal(typeof raw, "string", `${path} is ${JSON.stringify(raw)} on the wire, not an ISO 8601 string`);
      assert.match(raw, RFC3339, `${path} is not RFC 3339`);
      assert.equal(parsed.getTime(), Date.parse(raw), `${path}: ${raw} parsed as ${parsed.toISOString()}`);
    }
    return 1;
  }
  let n = 0;
  if (Array.isArray(parsed)) {
    parsed.forEach((item, i) => {
      n += wireTimestamps(item, raw?.[i], format, `${path}[${i}]`);
    });
  } else if (parsed && typeof parsed === "object") {
    for (const [k, v] of Object.entries(parsed)) {
      if (k === "$metadata") continue;
      n += wireTimestamps(v, raw?.[k], format, `${path}.${k}`);
    }
  }
  return n;
}

/** Send a control-plane command; check its timestamps (epoch seconds) against the wire. */
async function ctl(command, { timestamps } = {}) {
  const resp = await control.send(command);
  const n = wireTimestamps(resp, rawOf(resp), "epoch-seconds");
  if (timestamps !== undefined) assert.equal(n, timestamps, `${command.constructor.name}: timestamps checked`);
  return resp;
}

/** Send a data-plane command; check its timestamps (iso8601) against the wire. */
async function dat(command, { timestamps } = {}) {
  const resp = await data.send(command);
  const n = wireTimestamps(resp, rawOf(resp), "iso8601");
  if (timestamps !== undefined) assert.equal(n, timestamps, `${command.constructor.name}: timestamps checked`);
  return resp;
}

/** A Date between `since` (ms, taken before the request) and now, to the second. */
function assertSince(value, since, what) {
  assert.ok(value instanceof Date, `${what}: ${value} is not a Date`);
  const t = value.getTime();
  assert.ok(t >= Math.floor(since / 1000) * 1000 - 1000 && t <= Date.now() + 1000,
    `${what}: ${value.toISOString()} is not between ${new Date(since).toISOString()} and now`);
}

// ---------------------------------------------------------------------------------------------
// Shapes.

const ROLE = "arn:aws:iam::123456789012:role/eval-role";
const LAMBDA = "arn:aws:lambda:us-east-1:123456789012:function:js-eval";
const LEVELS = ["TOOL_CALL", "TRACE", "SESSION"];

function judgeConfig(instructions) {
  return {
    llmAsAJudge: {
      instructions,
      ratingScale: {
        numerical: [
          { definition: "The answer is wrong.", value: 0, label: "Bad" },
          { definition: "The answer is partly right.", value: 0.5, label: "Partial" },
          { definition: "The answer is right.", value: 1, label: "Good" },
        ],
      },
      modelConfig: {
        bedrockEvaluatorModelConfig: {
          modelId: "judge-model",
          inferenceConfig: { maxTokens: 256, temperature: 0.25, topP: 0.5, stopSequences: ["END"] },
        },
      },
    },
  };
}

async function waitActive(command, what) {
  return poll(() => control.send(command), (r) => r.status === "ACTIVE", { timeoutMs: STATE_TIMEOUT_MS, what });
}

function assertNumericScale(scale) {
  assert.ok(Array.isArray(scale) && scale.length > 0, JSON.stringify(scale));
  for (const d of scale) {
    assert.equal(typeof d.value, "number", JSON.stringify(d));
    assert.equal(typeof d.label, "string");
    assert.equal(typeof d.definition, "string");
  }
}

// ---------------------------------------------------------------------------------------------
// Evaluators.

test("built-in evaluators: get, list with their levels, and a typed not-found", async () => {
  const helpful = await ctl(new GetEvaluatorCommand({ evaluatorId: "Builtin.Helpfulness" }), { timestamps: 2 });
  assert.equal(helpful.$metadata.httpStatusCode, 200);
  assert.equal(helpful.evaluatorArn, "arn:aws:bedrock-agentcore:::evaluator/Builtin.Helpfulness");
  assert.equal(helpful.evaluatorId, "Builtin.Helpfulness");
  assert.equal(helpful.evaluatorType, "Builtin");
  assert.equal(helpful.lockedForModification, true);
  assert.equal(helpful.status, "ACTIVE");
  assert.ok(LEVELS.includes(helpful.level), helpful.level);
  assert.ok(helpful.createdAt instanceof Date && helpful.updatedAt instanceof Date);
  const judge = helpful.evaluatorConfig.llmAsAJudge;
  assert.equal(typeof judge.instructions, "string");
  const scale = judge.ratingScale.numerical ?? judge.ratingScale.categorical;
  if (judge.ratingScale.numerical) assertNumericScale(scale);
  else assert.ok(scale.length > 0);

  const trajectory = await ctl(new GetEvaluatorCommand({ evaluatorId: "Builtin.TrajectoryExactOrderMatch" }), {
    timestamps: 2,
  });
  assert.equal(trajectory.level, "SESSION");
  assert.equal(trajectory.evaluatorType, "Builtin");

  // Every page of the SDK's paginator parses; built-ins are listed with their level.
  const all = [];
  let pages = 0;
  for await (const page of paginateListEvaluators({ client: control, pageSize: 4 }, {})) {
    pages += 1;
    assert.ok(page.evaluators.length <= 4);
    assert.equal(wireTimestamps(page, rawOf(page), "epoch-seconds"), 2 * page.evaluators.length);
    all.push(...page.evaluators);
  }
  assert.ok(pages > 1, "the built-ins alone fill more than one page of 4");
  const ids = all.map((e) => e.evaluatorId);
  assert.equal(new Set(ids).size, ids.length, "an evaluator was listed twice");
  const byId = Object.fromEntries(all.map((e) => [e.evaluatorId, e]));
  for (const [id, level] of [
    ["Builtin.Helpfulness", helpful.level],
    ["Builtin.TrajectoryExactOrderMatch", "SESSION"],
    ["Builtin.TrajectoryInOrderMatch", "SESSION"],
    ["Builtin.TrajectoryAnyOrderMatch", "SESSION"],
  ]) {
    const e = byId[id];
    assert.ok(e, `${id} is not listed`);
    assert.equal(e.level, level, id);
    assert.equal(e.evaluatorType, "Builtin");
    assert.equal(e.lockedForModification, true);
    assert.equal(e.status, "ACTIVE");
    assert.equal(e.evaluatorArn, `arn:aws:bedrock-agentcore:::evaluator/${id}`);
  }

  const missing = await expectError(
    control.send(new GetEvaluatorCommand({ evaluatorId: "Builtin.NoSuchThing" })),
    ResourceNotFoundException,
    404,
  );
  assert.match(missing.message, /\S/);
});

test("a custom judge and a code-based evaluator: create, get, update, list, delete", async () => {
  const since = Date.now();
  const name = uniqueName("jsjudge");
  const created = await ctl(
    new CreateEvaluatorCommand({
      evaluatorName: name,
      description: "from the JavaScript SDK",
      level: "SESSION",
      evaluatorConfig: judgeConfig("Is the answer right? {context}"),
      clientToken: clientToken(),
      tags: { team: "js" },
    }),
    { timestamps: 1 },
  );
  assert.equal(created.$metadata.httpStatusCode, 202);
  const id = created.evaluatorId;
  assert.ok(id.startsWith(`${name}-`), id);
  assert.ok(created.evaluatorArn.endsWith(`:evaluator/${id}`), created.evaluatorArn);
  assert.equal(created.status, "CREATING");
  assertSince(created.createdAt, since, "createdAt");

  const got = await waitActive(new GetEvaluatorCommand({ evaluatorId: id }), `evaluator ${id} ACTIVE`);
  wireTimestamps(got, rawOf(got), "epoch-seconds");
  assert.equal(got.evaluatorName, name);
  assert.equal(got.description, "from the JavaScript SDK");
  assert.equal(got.evaluatorType, "Custom");
  assert.equal(got.level, "SESSION");
  assert.equal(got.lockedForModification, false);
  assert.deepEqual(got.evaluatorConfig, judgeConfig("Is the answer right? {context}"));
  assertNumericScale(got.evaluatorConfig.llmAsAJudge.ratingScale.numerical);
  const inference = got.evaluatorConfig.llmAsAJudge.modelConfig.bedrockEvaluatorModelConfig.inferenceConfig;
  assert.equal(typeof inference.maxTokens, "number");
  assert.equal(typeof inference.temperature, "number");
  assertSince(got.createdAt, since, "createdAt");
  assertSince(got.updatedAt, since, "updatedAt");
  assert.equal(got.createdAt.getTime(), created.createdAt.getTime());

  // A code-based evaluator (its Lambda ARN is only resolved when it evaluates).
  const code = await ctl(
    new CreateEvaluatorCommand({
      evaluatorName: uniqueName("jscode"),
      level: "TRACE",
      evaluatorConfig: { codeBased: { lambdaConfig: { lambdaArn: LAMBDA, lambdaTimeoutInSeconds: 30 } } },
    }),
    { timestamps: 1 },
  );
  const codeGot = await waitActive(new GetEvaluatorCommand({ evaluatorId: code.evaluatorId }), "code evaluator ACTIVE");
  assert.deepEqual(codeGot.evaluatorConfig, {
    codeBased: { lambdaConfig: { lambdaArn: LAMBDA, lambdaTimeoutInSeconds: 30 } },
  });
  assert.equal(codeGot.level, "TRACE");
  assert.equal(typeof codeGot.evaluatorType, "string");
  assert.notEqual(codeGot.evaluatorType, "Builtin");

  // Update.
  const beforeUpdate = Date.now();
  const updated = await ctl(new UpdateEvaluatorCommand({ evaluatorId: id, description: "second", level: "TRACE" }), {
    timestamps: 1,
  });
  assert.equal(updated.$metadata.httpStatusCode, 202);
  assert.equal(updated.evaluatorId, id);
  assert.equal(updated.evaluatorArn, created.evaluatorArn);
  assert.equal(updated.status, "UPDATING");
  assertSince(updated.updatedAt, beforeUpdate, "updatedAt");
  const after = await waitActive(new GetEvaluatorCommand({ evaluatorId: id }), "updated evaluator ACTIVE");
  assert.equal(after.description, "second");
  assert.equal(after.level, "TRACE");
  assert.ok(after.updatedAt >= after.createdAt);

  // Both are listed, after the built-ins.
  const listed = await ctl(new ListEvaluatorsCommand({ maxResults: 100 }));
  const mine = listed.evaluators.filter((e) => [id, code.evaluatorId].includes(e.evaluatorId));
  assert.equal(mine.length, 2, JSON.stringify(listed.evaluators.map((e) => e.evaluatorId)));
  for (const e of mine) {
    assert.equal(e.status, "ACTIVE");
    assert.equal(e.lockedForModification, false);
    assertSince(e.createdAt, since, "listed createdAt");
  }

  // Delete both.
  for (const eid of [id, code.evaluatorId]) {
    const deleted = await ctl(new DeleteEvaluatorCommand({ evaluatorId: eid }), { timestamps: 0 });
    assert.equal(deleted.$metadata.httpStatusCode, 202);
    assert.equal(deleted.status, "DELETING");
    assert.equal(deleted.evaluatorId, eid);
    await waitNotFound(() => control.send(new GetEvaluatorCommand({ evaluatorId: eid })), `evaluator ${eid}`);
  }
  await expectError(control.send(new DeleteEvaluatorCommand({ evaluatorId: id })), ResourceNotFoundException, 404);
});

// ---------------------------------------------------------------------------------------------
// Online evaluation configs.

test("online evaluation configs: create, get, list, disable, enable, delete", async () => {
  const judge = await ctl(
    new CreateEvaluatorCommand({ evaluatorName: uniqueName("jsonline"), level: "SESSION", evaluatorConfig: judgeConfig("judge") }),
  );
  const since = Date.now();
  const name = uniqueName("jsonline");
  const rule = {
    samplingConfig: { samplingPercentage: 25.5 },
    filters: [
      { key: "gen_ai.agent.name", operator: "Equals", value: { stringValue: "scripted" } },
      { key: "latency", operator: "GreaterThan", value: { doubleValue: 1.5 } },
    ],
    sessionConfig: { sessionTimeoutMinutes: 15 },
  };
  const dataSourceConfig = { cloudWatchLogs: { logGroupNames: ["aws/spans"], serviceNames: ["scripted.DEFAULT"] } };
  const created = await ctl(
    new CreateOnlineEvaluationConfigCommand({
      onlineEvaluationConfigName: name,
      description: "watch it",
      rule,
      dataSourceConfig,
      evaluators: [{ evaluatorId: "Builtin.Helpfulness" }, { evaluatorId: judge.evaluatorId }],
      evaluationExecutionRoleArn: ROLE,
      enableOnCreate: true,
      clientToken: clientToken(),
    }),
    { timestamps: 1 },
  );
  assert.equal(created.$metadata.httpStatusCode, 202);
  const id = created.onlineEvaluationConfigId;
  assert.ok(id.startsWith(`${name}-`), id);
  assert.ok(created.onlineEvaluationConfigArn.endsWith(`:online-evaluation-config/${id}`));
  assert.equal(created.status, "CREATING");
  assert.equal(created.executionStatus, "ENABLED");
  assertSince(created.createdAt, since, "createdAt");

  const got = await waitActive(new GetOnlineEvaluationConfigCommand({ onlineEvaluationConfigId: id }), `config ${id}`);
  assert.equal(wireTimestamps(got, rawOf(got), "epoch-seconds"), 2);
  assert.equal(got.onlineEvaluationConfigName, name);
  assert.equal(got.description, "watch it");
  assert.deepEqual(got.rule, rule);
  assert.equal(typeof got.rule.samplingConfig.samplingPercentage, "number");
  assert.equal(typeof got.rule.sessionConfig.sessionTimeoutMinutes, "number");
  assert.deepEqual(got.dataSourceConfig, dataSourceConfig);
  assert.deepEqual(got.evaluators, [{ evaluatorId: "Builtin.Helpfulness" }, { evaluatorId: judge.evaluatorId }]);
  assert.equal(got.evaluationExecutionRoleArn, ROLE);
  assert.equal(got.executionStatus, "ENABLED");
  assertSince(got.createdAt, since, "createdAt");
  assertSince(got.updatedAt, since, "updatedAt");

  // Disable, then enable with another rule.
  const off = await ctl(new UpdateOnlineEvaluationConfigCommand({ onlineEvaluationConfigId: id, executionStatus: "DISABLED" }), {
    timestamps: 1,
  });
  assert.equal(off.$metadata.httpStatusCode, 202);
  assert.equal(off.status, "UPDATING");
  assert.equal(off.executionStatus, "DISABLED");
  assertSince(off.updatedAt, since, "updatedAt");
  const disabled = await waitActive(new GetOnlineEvaluationConfigCommand({ onlineEvaluationConfigId: id }), "disabled");
  assert.equal(disabled.executionStatus, "DISABLED");
  const on = await ctl(
    new UpdateOnlineEvaluationConfigCommand({
      onlineEvaluationConfigId: id,
      executionStatus: "ENABLED",
      rule: { samplingConfig: { samplingPercentage: 100 } },
    }),
    { timestamps: 1 },
  );
  assert.equal(on.executionStatus, "ENABLED");
  const enabled = await waitActive(new GetOnlineEvaluationConfigCommand({ onlineEvaluationConfigId: id }), "enabled");
  assert.equal(enabled.executionStatus, "ENABLED");
  assert.deepEqual(enabled.rule, { samplingConfig: { samplingPercentage: 100 } });

  // Listed, one per page with the SDK's paginator.
  const seen = [];
  for await (const page of paginateListOnlineEvaluationConfigs({ client: control, pageSize: 1 }, {})) {
    assert.ok(page.onlineEvaluationConfigs.length <= 1);
    assert.equal(wireTimestamps(page, rawOf(page), "epoch-seconds"), 2 * page.onlineEvaluationConfigs.length);
    seen.push(...page.onlineEvaluationConfigs);
  }
  const summary = seen.find((c) => c.onlineEvaluationConfigId === id);
  assert.ok(summary, "the config is not listed");
  assert.equal(summary.onlineEvaluationConfigName, name);
  assert.equal(summary.executionStatus, "ENABLED");
  assert.equal(summary.status, "ACTIVE");
  const listed = await ctl(new ListOnlineEvaluationConfigsCommand({ maxResults: 100 }));
  assert.ok(listed.onlineEvaluationConfigs.some((c) => c.onlineEvaluationConfigId === id));

  const deleted = await ctl(new DeleteOnlineEvaluationConfigCommand({ onlineEvaluationConfigId: id }), { timestamps: 0 });
  assert.equal(deleted.$metadata.httpStatusCode, 202);
  assert.equal(deleted.status, "DELETING");
  await waitNotFound(
    () => control.send(new GetOnlineEvaluationConfigCommand({ onlineEvaluationConfigId: id })),
    `config ${id}`,
  );
  await expectError(
    control.send(new GetOnlineEvaluationConfigCommand({ onlineEvaluationConfigId: id })),
    ResourceNotFoundException,
    404,
  );
  await ctl(new DeleteEvaluatorCommand({ evaluatorId: judge.evaluatorId }));
});

// ---------------------------------------------------------------------------------------------
// Datasets.

const PREDEFINED = "AGENTCORE_EVALUATION_PREDEFINED_V1";

function scenario(id, prompt = "add 2 and 3", expected = "5") {
  return {
    scenario_id: id,
    turns: [{ input: prompt, expected_response: expected }],
    expected_trajectory: ["add"],
    assertions: ["the answer names the sum"],
  };
}

test("datasets: create, get (and download), list, update, examples, versions, delete", async () => {
  const since = Date.now();
  const name = uniqueName("jsds");
  const created = await ctl(
    new CreateDatasetCommand({
      datasetName: name,
      description: "arithmetic",
      schemaType: PREDEFINED,
      source: { inlineExamples: { examples: [scenario("add_1"), scenario("add_2", "add 1 and 1", "2")] } },
      clientToken: clientToken(),
      tags: { team: "js" },
    }),
    { timestamps: 1 },
  );
  assert.equal(created.$metadata.httpStatusCode, 202);
  const id = created.datasetId;
  assert.ok(id.startsWith(`${name}-`), id);
  assert.ok(created.datasetArn.endsWith(`:dataset/${id}`), created.datasetArn);
  assert.equal(typeof created.status, "string");
  assertSince(created.createdAt, since, "createdAt");

  const got = await waitActive(new GetDatasetCommand({ datasetId: id }), `dataset ${id}`);
  assert.equal(wireTimestamps(got, rawOf(got), "epoch-seconds"), 3);
  assert.equal(got.datasetName, name);
  assert.equal(got.description, "arithmetic");
  assert.equal(got.datasetVersion, "DRAFT");
  assert.equal(got.schemaType, PREDEFINED);
  assert.equal(got.draftStatus, "MODIFIED");
  assert.equal(got.exampleCount, 2);
  assert.equal(typeof got.exampleCount, "number");
  assertSince(got.createdAt, since, "createdAt");
  assertSince(got.updatedAt, since, "updatedAt");
  // The download URL is good for a while, and needs no signature.
  assert.ok(got.downloadUrlExpiresAt instanceof Date);
  assert.ok(got.downloadUrlExpiresAt.getTime() > Date.now(), got.downloadUrlExpiresAt.toISOString());
  assert.ok(got.downloadUrlExpiresAt.getTime() < Date.now() + 24 * 3600 * 1000, got.downloadUrlExpiresAt.toISOString());
  const download = await fetch(got.downloadUrl);
  assert.equal(download.status, 200);
  const lines = (await download.text()).split("\n").filter(Boolean).map((l) => JSON.parse(l));
  assert.deepEqual(lines.map((l) => l.scenario_id), ["add_1", "add_2"]);

  // Examples are documents, given back as sent.
  const added = await ctl(
    new AddDatasetExamplesCommand({ datasetId: id, source: { inlineExamples: { examples: [scenario("add_3")] } } }),
    { timestamps: 1 },
  );
  assert.equal(added.$metadata.httpStatusCode, 202);
  assert.equal(added.addedCount, 1);
  assert.deepEqual(added.exampleIds, ["add_3"]);
  assertSince(added.updatedAt, since, "updatedAt");
  await waitActive(new GetDatasetCommand({ datasetId: id }), "dataset ACTIVE after add");
  const examples = await ctl(new ListDatasetExamplesCommand({ datasetId: id, maxResults: 10 }), { timestamps: 0 });
  assert.equal(examples.datasetId, id);
  assert.equal(examples.datasetVersion, "DRAFT");
  assert.deepEqual(examples.examples, [scenario("add_1"), scenario("add_2", "add 1 and 1", "2"), scenario("add_3")]);

  // Publish version 1, then edit the DRAFT.
  const v1 = await ctl(new CreateDatasetVersionCommand({ datasetId: id }), { timestamps: 1 });
  assert.equal(v1.$metadata.httpStatusCode, 202);
  assert.equal(v1.datasetVersion, "1");
  assertSince(v1.createdAt, since, "version createdAt");
  const changed = await ctl(
    new UpdateDatasetExamplesCommand({ datasetId: id, examples: [scenario("add_3", "add 4 and 4", "8")] }),
    { timestamps: 1 },
  );
  assert.equal(changed.$metadata.httpStatusCode, 202);
  assert.equal(changed.updatedCount, 1);
  const removed = await ctl(new DeleteDatasetExamplesCommand({ datasetId: id, exampleIds: ["add_1"] }), {
    timestamps: 1,
  });
  assert.equal(removed.deletedCount, 1);
  assert.equal(typeof removed.deletedCount, "number");
  const draft = await waitActive(new GetDatasetCommand({ datasetId: id }), "DRAFT ACTIVE");
  assert.equal(draft.exampleCount, 2);
  const one = await ctl(new GetDatasetCommand({ datasetId: id, datasetVersion: "1" }));
  assert.equal(one.datasetVersion, "1");
  assert.equal(one.exampleCount, 3);
  const page = await ctl(new ListDatasetExamplesCommand({ datasetId: id, datasetVersion: "1", maxResults: 2 }));
  assert.deepEqual(page.examples.map((e) => e.scenario_id), ["add_1", "add_2"]);
  assert.ok(page.nextToken);
  const rest = await ctl(new ListDatasetExamplesCommand({ datasetId: id, nextToken: page.nextToken }));
  assert.equal(rest.datasetVersion, "1");
  assert.deepEqual(rest.examples.map((e) => e.scenario_id), ["add_3"]);
  assert.equal(rest.examples[0].turns[0].input, "add 2 and 3");
  const versions = await ctl(new ListDatasetVersionsCommand({ datasetId: id }));
  assert.equal(wireTimestamps(versions, rawOf(versions), "epoch-seconds"), versions.versions.length);
  assert.deepEqual(versions.versions.map((v) => [v.datasetVersion, v.exampleCount]), [["DRAFT", 2], ["1", 3]]);

  // Update and list.
  const beforeUpdate = Date.now();
  const renamed = await ctl(new UpdateDatasetCommand({ datasetId: id, description: "sums" }), { timestamps: 1 });
  assert.equal(renamed.datasetId, id);
  assert.equal(renamed.datasetArn, created.datasetArn);
  assertSince(renamed.updatedAt, beforeUpdate, "updatedAt");
  const listed = await ctl(new ListDatasetsCommand({ maxResults: 100 }));
  const summary = listed.datasets.find((d) => d.datasetId === id);
  assert.ok(summary, "the dataset is not listed");
  assert.equal(summary.description, "sums");
  assert.equal(summary.exampleCount, 2);
  assert.equal(summary.schemaType, PREDEFINED);
  assert.equal(summary.status, "ACTIVE");
  assertSince(summary.updatedAt, beforeUpdate, "listed updatedAt");

  // The list operations are GETs with their members in the query string in this SDK's model
  // (botocore's POSTs them to `.../list`): the paginators' tokens and a bad value go through it.
  const everyDataset = [];
  for await (const p of paginateListDatasets({ client: control, pageSize: 1 }, {})) {
    assert.ok(p.datasets.length <= 1);
    assert.equal(wireTimestamps(p, rawOf(p), "epoch-seconds"), 2 * p.datasets.length);
    everyDataset.push(...p.datasets.map((d) => d.datasetId));
  }
  assert.ok(everyDataset.includes(id), "the paginator missed the dataset");
  const everyExample = [];
  for await (const p of paginateListDatasetExamples({ client: control, pageSize: 1 }, { datasetId: id, datasetVersion: "1" })) {
    assert.equal(p.datasetVersion, "1");
    everyExample.push(...p.examples.map((e) => e.scenario_id));
  }
  assert.deepEqual(everyExample, ["add_1", "add_2", "add_3"]);
  const refused = await expectError(control.send(new ListDatasetsCommand({ maxResults: 0 })), ValidationException, 400);
  assert.match(refused.message, /maxResults/);

  // Delete version 1, then the dataset.
  const goneVersion = await ctl(new DeleteDatasetCommand({ datasetId: id, datasetVersion: "1" }), { timestamps: 1 });
  assert.equal(goneVersion.$metadata.httpStatusCode, 202);
  assert.equal(goneVersion.datasetVersion, "1");
  await waitNotFound(() => control.send(new GetDatasetCommand({ datasetId: id, datasetVersion: "1" })), "version 1");
  const gone = await ctl(new DeleteDatasetCommand({ datasetId: id }), { timestamps: 1 });
  assert.equal(gone.$metadata.httpStatusCode, 202);
  assert.equal(typeof gone.status, "string");
  await waitNotFound(() => control.send(new GetDatasetCommand({ datasetId: id })), `dataset ${id}`);
  await expectError(control.send(new GetDatasetCommand({ datasetId: id })), ResourceNotFoundException, 404);
});

// ---------------------------------------------------------------------------------------------
// Evaluate.

/** One span document as ADOT writes it (the shape Berth's session reader takes). */
function toolSpan(sessionId, traceId, n, tool) {
  const start = 1_700_000_000_000_000_000n + BigInt(n) * 1_000_000n;
  return {
    resource: { attributes: { "service.name": "jseval" } },
    scope: { name: "strands.telemetry.tracer" },
    traceId,
    spanId: n.toString(16).padStart(16, "0"),
    name: `execute_tool ${tool}`,
    kind: "INTERNAL",
    startTimeUnixNano: Number(start / 1000n) * 1000,
    endTimeUnixNano: Number(start / 1000n) * 1000 + 500_000,
    durationNano: 500_000,
    attributes: { "session.id": sessionId, "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool },
    status: { code: "OK" },
  };
}

test("Evaluate: Builtin.TrajectoryExactOrderMatch over span documents", async () => {
  const sessionId = newSessionId("jseval");
  const traceId = "0".repeat(31) + "a";
  const spans = [toolSpan(sessionId, traceId, 1, "add"), toolSpan(sessionId, traceId, 2, "multiply")];
  const evaluate = (toolNames) =>
    dat(
      new EvaluateCommand({
        evaluatorId: "Builtin.TrajectoryExactOrderMatch",
        evaluationInput: { sessionSpans: spans },
        evaluationReferenceInputs: [{ context: { spanContext: { sessionId } }, expectedTrajectory: { toolNames } }],
      }),
      { timestamps: 0 },
    );

  const passed = await evaluate(["add", "multiply"]);
  assert.equal(passed.$metadata.httpStatusCode, 200);
  assert.equal(passed.evaluationResults.length, 1, JSON.stringify(passed.evaluationResults));
  const [ok] = passed.evaluationResults;
  assert.equal(ok.evaluatorId, "Builtin.TrajectoryExactOrderMatch");
  assert.equal(ok.evaluatorArn, "arn:aws:bedrock-agentcore:::evaluator/Builtin.TrajectoryExactOrderMatch");
  assert.equal(typeof ok.evaluatorName, "string");
  assert.equal(ok.context.spanContext.sessionId, sessionId);
  assert.equal(typeof ok.value, "number");
  assert.equal(ok.value, 1);
  assert.equal(typeof ok.label, "string");
  assert.equal(ok.errorCode, undefined);
  assert.equal(ok.errorMessage, undefined);

  const failed = await evaluate(["multiply", "add"]);
  const [no] = failed.evaluationResults;
  assert.equal(no.value, 0);
  assert.notEqual(no.label, ok.label);

  // The raw body is what the SDK parsed: numbers stay numbers.
  const raw = rawOf(passed);
  assert.equal(typeof raw.evaluationResults[0].value, "number");

  await expectError(
    data.send(
      new EvaluateCommand({
        evaluatorId: "Builtin.NoSuchThing",
        evaluationInput: { sessionSpans: spans },
      }),
    ),
    DataResourceNotFoundException,
    404,
  );
});

// ---------------------------------------------------------------------------------------------
// Batch evaluations.

const BATCH_FINAL = ["COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "STOPPED"];

test("batch evaluations over stored sessions: start, get, list, stop, delete", async () => {
  const since = Date.now();
  const sessionId = newSessionId("jsbatch");
  const timeRange = { startTime: new Date(since - 3600_000), endTime: new Date(since + 3600_000) };
  const input = {
    batchEvaluationName: uniqueName("jsbatch"),
    description: "sessions without spans",
    evaluators: [{ evaluatorId: "Builtin.TrajectoryExactOrderMatch" }],
    dataSourceConfig: {
      cloudWatchLogs: {
        serviceNames: ["nosuch.DEFAULT"],
        logGroupNames: ["/aws/bedrock-agentcore/runtimes/nosuch-abcdefghij-DEFAULT"],
        filterConfig: { sessionIds: [sessionId], timeRange },
      },
    },
    clientToken: clientToken(),
  };
  const started = await dat(new StartBatchEvaluationCommand(input), { timestamps: 1 });
  assert.equal(started.$metadata.httpStatusCode, 202);
  const id = started.batchEvaluationId;
  assert.ok(started.batchEvaluationArn.endsWith(`/${id}`), started.batchEvaluationArn);
  assert.equal(started.batchEvaluationName, input.batchEvaluationName);
  assert.equal(started.status, "PENDING");
  assert.deepEqual(started.evaluators, input.evaluators);
  assertSince(started.createdAt, since, "createdAt");
  const cw = started.outputConfig.cloudWatchConfig;
  assert.ok(cw.logGroupName && cw.logStreamName, JSON.stringify(cw));
  // Idempotent.
  const again = await dat(new StartBatchEvaluationCommand(input));
  assert.equal(again.batchEvaluationId, id);

  // The run finds no spans and ends FAILED, saying why.
  const done = await poll(
    () => dat(new GetBatchEvaluationCommand({ batchEvaluationId: id })),
    (r) => BATCH_FINAL.includes(r.status),
    { timeoutMs: STATE_TIMEOUT_MS, what: `batch ${id} to end` },
  );
  // createdAt, updatedAt and the echoed time range.
  assert.equal(wireTimestamps(done, rawOf(done), "iso8601"), 4);
  assert.equal(done.status, "FAILED");
  assert.equal(done.batchEvaluationName, input.batchEvaluationName);
  assert.equal(done.description, "sessions without spans");
  assert.match(done.errorDetails[0], /no spans/);
  const results = done.evaluationResults;
  assert.equal(results.totalNumberOfSessions, 1);
  assert.equal(typeof results.totalNumberOfSessions, "number");
  assert.equal(results.numberOfSessionsFailed, 1);
  assert.equal(done.createdAt.getTime(), started.createdAt.getTime());
  assertSince(done.updatedAt, since, "updatedAt");
  assert.ok(done.updatedAt >= done.createdAt);
  const echoed = done.dataSourceConfig.cloudWatchLogs;
  assert.deepEqual(echoed.serviceNames, ["nosuch.DEFAULT"]);
  assert.deepEqual(echoed.filterConfig.sessionIds, [sessionId]);
  assert.equal(echoed.filterConfig.timeRange.startTime.getTime(), timeRange.startTime.getTime());
  assert.equal(echoed.filterConfig.timeRange.endTime.getTime(), timeRange.endTime.getTime());
  assert.deepEqual(done.outputConfig.cloudWatchConfig, cw);

  // Listed: every page of the SDK's paginator parses.
  const seen = [];
  for await (const page of paginateListBatchEvaluations({ client: data, pageSize: 1 }, {})) {
    assert.ok(page.batchEvaluations.length <= 1);
    wireTimestamps(page, rawOf(page), "iso8601");
    seen.push(...page.batchEvaluations);
  }
  const summary = seen.find((b) => b.batchEvaluationId === id);
  assert.ok(summary, "the batch is not listed");
  assert.equal(summary.status, "FAILED");
  assert.equal(summary.createdAt.getTime(), done.createdAt.getTime());
  assert.equal(summary.evaluationResults.numberOfSessionsFailed, 1);
  const listed = await dat(new ListBatchEvaluationsCommand({ maxResults: 50 }));
  assert.ok(listed.batchEvaluations.some((b) => b.batchEvaluationId === id));

  // Stopping a finished batch changes nothing; deleting it ends in a typed 404.
  const stopped = await dat(new StopBatchEvaluationCommand({ batchEvaluationId: id }), { timestamps: 0 });
  assert.equal(stopped.$metadata.httpStatusCode, 202);
  assert.equal(stopped.status, "FAILED");
  assert.equal(stopped.batchEvaluationArn, started.batchEvaluationArn);
  const deleted = await dat(new DeleteBatchEvaluationCommand({ batchEvaluationId: id }), { timestamps: 0 });
  assert.equal(deleted.$metadata.httpStatusCode, 202);
  assert.equal(deleted.status, "DELETING");
  await expectError(
    data.send(new GetBatchEvaluationCommand({ batchEvaluationId: id })),
    DataResourceNotFoundException,
    404,
  );
});

test("a running batch evaluation stops, and is deleted while it waits for spans", async () => {
  // Ground truth for the session makes the run wait (bounded) for its spans to be exported, so
  // the batch is still running when it is stopped.
  const sessionId = newSessionId("jswait");
  const started = await dat(
    new StartBatchEvaluationCommand({
      batchEvaluationName: uniqueName("jswait"),
      evaluators: [{ evaluatorId: "Builtin.TrajectoryExactOrderMatch" }],
      dataSourceConfig: { cloudWatchLogs: { serviceNames: ["nosuch.DEFAULT"], filterConfig: { sessionIds: [sessionId] } } },
      evaluationMetadata: {
        sessionMetadata: [
          {
            sessionId,
            testScenarioId: "wait_1",
            groundTruth: { inline: { expectedTrajectory: { toolNames: ["add"] }, turns: [{ input: { prompt: "add 2 and 3" } }] } },
            metadata: { suite: "js" },
          },
        ],
      },
    }),
    { timestamps: 1 },
  );
  const id = started.batchEvaluationId;
  const running = await poll(
    () => dat(new GetBatchEvaluationCommand({ batchEvaluationId: id })),
    (r) => r.status !== "PENDING",
    { timeoutMs: STATE_TIMEOUT_MS, what: `batch ${id} to start` },
  );
  assert.equal(running.status, "IN_PROGRESS");
  const stopping = await dat(new StopBatchEvaluationCommand({ batchEvaluationId: id }), { timestamps: 0 });
  assert.equal(stopping.status, "STOPPING");
  const got = await dat(new GetBatchEvaluationCommand({ batchEvaluationId: id }), { timestamps: 2 });
  assert.ok(["STOPPING", "STOPPED"].includes(got.status), got.status);
  const deleted = await dat(new DeleteBatchEvaluationCommand({ batchEvaluationId: id }));
  assert.equal(deleted.status, "DELETING");
  await expectError(
    data.send(new GetBatchEvaluationCommand({ batchEvaluationId: id })),
    DataResourceNotFoundException,
    404,
  );
});
