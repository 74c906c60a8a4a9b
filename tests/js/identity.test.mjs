// AgentCore Identity through the JavaScript SDK: workload identities, API-key and OAuth2
// credential providers and the token vault (control plane), workload access tokens and the
// credentials they unlock (data plane), with OAuth2 client credentials (M2M) fetched from a token
// endpoint double this file starts on 127.0.0.1:0. The SDK parses every member by the service
// model (timestamps as Dates, unions, 201/204 statuses), so a wrongly typed member fails here.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import { after, before, test } from "node:test";

import {
  AccessDeniedException,
  GetResourceApiKeyCommand,
  GetResourceOauth2TokenCommand,
  GetWorkloadAccessTokenCommand,
  GetWorkloadAccessTokenForJWTCommand,
  GetWorkloadAccessTokenForUserIdCommand,
  ResourceNotFoundException as DataNotFound,
} from "@aws-sdk/client-bedrock-agentcore";
import {
  ConflictException,
  CreateApiKeyCredentialProviderCommand,
  CreateOauth2CredentialProviderCommand,
  CreateWorkloadIdentityCommand,
  DeleteApiKeyCredentialProviderCommand,
  DeleteOauth2CredentialProviderCommand,
  DeleteWorkloadIdentityCommand,
  GetApiKeyCredentialProviderCommand,
  GetOauth2CredentialProviderCommand,
  GetTokenVaultCommand,
  GetWorkloadIdentityCommand,
  ListApiKeyCredentialProvidersCommand,
  ListOauth2CredentialProvidersCommand,
  ResourceNotFoundException,
  UpdateApiKeyCredentialProviderCommand,
  UpdateWorkloadIdentityCommand,
  ValidationException,
  paginateListWorkloadIdentities,
} from "@aws-sdk/client-bedrock-agentcore-control";

import { ENDPOINT, REGION, assertRecent, control, data, expectError } from "./lib.mjs";

const CLIENT_ID = "berth-js-client";
const CLIENT_SECRET = `js-secret-${randomUUID()}`;

/** A name that is both a valid workload identity and a valid credential provider name. */
function idName(prefix) {
  return `${prefix}-${randomUUID().replaceAll("-", "").slice(0, 12)}`;
}

/**
 * An OAuth2 token endpoint double: the client-credentials grant only, client credentials checked
 * (HTTP Basic or in the form); it counts the tokens it issues.
 */
const tokenEndpoint = { issued: 0, requests: [], server: undefined, url: undefined };

function answer(res, status, doc) {
  const raw = JSON.stringify(doc);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(raw) });
  res.end(raw);
}

before(async () => {
  tokenEndpoint.server = createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk) => {
      body += chunk;
    });
    req.on("end", () => {
      const form = new URLSearchParams(body);
      const auth = req.headers.authorization ?? "";
      const basic = auth.startsWith("Basic ");
      const [id, secret] = basic
        ? Buffer.from(auth.slice(6), "base64").toString().split(":").map(decodeURIComponent)
        : [form.get("client_id"), form.get("client_secret")];
      tokenEndpoint.requests.push({ method: req.method, path: req.url, basic, form: Object.fromEntries(form) });
      if (req.method !== "POST" || req.url !== "/oauth2/token") return answer(res, 404, { error: "not_found" });
      if (id !== CLIENT_ID || secret !== CLIENT_SECRET) return answer(res, 401, { error: "invalid_client" });
      if (form.get("grant_type") !== "client_credentials") {
        return answer(res, 400, { error: "unsupported_grant_type" });
      }
      tokenEndpoint.issued += 1;
      answer(res, 200, { access_token: `js-m2m-${tokenEndpoint.issued}`, token_type: "Bearer", expires_in: 3600 });
    });
  });
  await new Promise((resolve) => tokenEndpoint.server.listen(0, "127.0.0.1", resolve));
  tokenEndpoint.url = `http://127.0.0.1:${tokenEndpoint.server.address().port}`;
});

after(async () => {
  await new Promise((resolve) => tokenEndpoint.server.close(resolve));
});

async function workloadToken(workloadName, userId) {
  const out = userId
    ? await data.send(new GetWorkloadAccessTokenForUserIdCommand({ workloadName, userId }))
    : await data.send(new GetWorkloadAccessTokenCommand({ workloadName }));
  assert.equal(out.$metadata.httpStatusCode, 200);
  assert.equal(typeof out.workloadAccessToken, "string");
  return out.workloadAccessToken;
}

test("workload identities: create, get, update, list, delete", async () => {
  const name = idName("jswi");
  const arn = `workload-identity-directory/default/workload-identity/${name}`;
  const created = await control.send(
    new CreateWorkloadIdentityCommand({ name, allowedResourceOauth2ReturnUrls: ["https://cb.example/js"] }),
  );
  assert.equal(created.$metadata.httpStatusCode, 201);
  assert.equal(created.name, name);
  assert.ok(created.workloadIdentityArn.startsWith(`arn:aws:bedrock-agentcore:${REGION}:`), created.workloadIdentityArn);
  assert.ok(created.workloadIdentityArn.endsWith(arn), created.workloadIdentityArn);
  assert.deepEqual(created.allowedResourceOauth2ReturnUrls, ["https://cb.example/js"]);

  const got = await control.send(new GetWorkloadIdentityCommand({ name }));
  assert.equal(got.workloadIdentityArn, created.workloadIdentityArn);
  assertRecent(got.createdTime);
  assertRecent(got.lastUpdatedTime);

  const updated = await control.send(
    new UpdateWorkloadIdentityCommand({ name, allowedResourceOauth2ReturnUrls: ["https://cb.example/two"] }),
  );
  assert.equal(updated.$metadata.httpStatusCode, 200);
  assert.deepEqual(updated.allowedResourceOauth2ReturnUrls, ["https://cb.example/two"]);
  assertRecent(updated.lastUpdatedTime);
  assert.ok(updated.lastUpdatedTime >= got.createdTime);

  await expectError(control.send(new CreateWorkloadIdentityCommand({ name })), ConflictException, 409);
  // The SDK does not check constraints itself: the server's model validation answers.
  const invalid = await expectError(
    control.send(new CreateWorkloadIdentityCommand({ name: "ab" })),
    ValidationException,
    400,
  );
  assert.match(invalid.message, /name/);

  // Two more, then the SDK's paginator over pages of two: every one appears once.
  const others = [idName("jswi"), idName("jswi")];
  for (const other of others) await control.send(new CreateWorkloadIdentityCommand({ name: other }));
  const seen = [];
  for await (const page of paginateListWorkloadIdentities({ client: control, pageSize: 2 }, {})) {
    assert.ok(page.workloadIdentities.length <= 2);
    for (const w of page.workloadIdentities) {
      assert.ok(w.workloadIdentityArn.endsWith(`/workload-identity/${w.name}`));
      seen.push(w.name);
    }
  }
  assert.equal(new Set(seen).size, seen.length, "a workload identity on two pages");
  for (const n of [name, ...others]) assert.ok(seen.includes(n), `${n} not listed`);

  for (const n of [name, ...others]) {
    const deleted = await control.send(new DeleteWorkloadIdentityCommand({ name: n }));
    assert.equal(deleted.$metadata.httpStatusCode, 204);
  }
  await expectError(control.send(new GetWorkloadIdentityCommand({ name })), ResourceNotFoundException, 404);
  await expectError(control.send(new DeleteWorkloadIdentityCommand({ name })), ResourceNotFoundException, 404);
});

test("the token vault", async () => {
  const vault = await control.send(new GetTokenVaultCommand({}));
  assert.equal(vault.$metadata.httpStatusCode, 200);
  assert.equal(vault.tokenVaultId, "default");
  assert.equal(vault.kmsConfiguration.keyType, "ServiceManagedKey");
  assertRecent(vault.lastModifiedDate, 365 * 24 * 3600 * 1000);
  await expectError(control.send(new GetTokenVaultCommand({ tokenVaultId: "other" })), ResourceNotFoundException, 404);
});

test("workload access tokens: plain, for a user id, for a JWT", async () => {
  const workloadName = idName("jswat");
  await control.send(new CreateWorkloadIdentityCommand({ name: workloadName }));
  const plain = await workloadToken(workloadName);
  const forUser = await workloadToken(workloadName, "js-user");
  assert.notEqual(plain, forUser);

  const b64 = (doc) => Buffer.from(JSON.stringify(doc)).toString("base64url");
  const exp = Math.floor(Date.now() / 1000) + 600;
  const jwt = `${b64({ alg: "none" })}.${b64({ iss: "https://idp.example", sub: "js-bob", exp })}.c2ln`;
  const forJwt = await data.send(new GetWorkloadAccessTokenForJWTCommand({ workloadName, userToken: jwt }));
  assert.equal(forJwt.$metadata.httpStatusCode, 200);
  assert.ok(forJwt.workloadAccessToken);
  const expired = `${b64({ alg: "none" })}.${b64({ iss: "i", sub: "s", exp: 1 })}.c2ln`;
  await expectError(
    data.send(new GetWorkloadAccessTokenForJWTCommand({ workloadName, userToken: expired })),
    AccessDeniedException,
    403,
  );
  await expectError(
    data.send(new GetWorkloadAccessTokenCommand({ workloadName: idName("jsnone") })),
    DataNotFound,
    404,
  );
  await control.send(new DeleteWorkloadIdentityCommand({ name: workloadName }));
});

test("API-key credential providers: create, get, list, update, the key by workload token, delete (204)", async () => {
  const name = idName("jsak");
  const key = `sk-js-${randomUUID()}`;
  const created = await control.send(new CreateApiKeyCredentialProviderCommand({ name, apiKey: key }));
  assert.equal(created.$metadata.httpStatusCode, 201);
  assert.equal(created.name, name);
  assert.equal(
    created.credentialProviderArn,
    `arn:aws:acps:${REGION}:${created.credentialProviderArn.split(":")[4]}:token-vault/default/apikeycredentialprovider/${name}`,
  );
  assert.ok(created.apiKeySecretArn.secretArn.startsWith("arn:aws:secretsmanager:"), created.apiKeySecretArn.secretArn);
  assert.ok(!JSON.stringify(created).includes(key), "the key came back");

  const got = await control.send(new GetApiKeyCredentialProviderCommand({ name }));
  assert.equal(got.credentialProviderArn, created.credentialProviderArn);
  assertRecent(got.createdTime);
  assertRecent(got.lastUpdatedTime);
  assert.ok(!JSON.stringify(got).includes(key), "the key came back");

  let listed;
  let nextToken;
  do {
    const page = await control.send(new ListApiKeyCredentialProvidersCommand({ maxResults: 100, nextToken }));
    listed = page.credentialProviders.find((p) => p.name === name) ?? listed;
    nextToken = page.nextToken;
  } while (nextToken && !listed);
  assert.ok(listed, `${name} not listed`);
  assert.equal(listed.credentialProviderArn, created.credentialProviderArn);
  assertRecent(listed.createdTime);
  assertRecent(listed.lastUpdatedTime);

  const workloadName = idName("jswi");
  await control.send(new CreateWorkloadIdentityCommand({ name: workloadName }));
  const wat = await workloadToken(workloadName, "js-user");
  const fetched = await data.send(
    new GetResourceApiKeyCommand({ workloadIdentityToken: wat, resourceCredentialProviderName: name }),
  );
  assert.equal(fetched.$metadata.httpStatusCode, 200);
  assert.equal(fetched.apiKey, key);
  await expectError(
    data.send(new GetResourceApiKeyCommand({ workloadIdentityToken: "not-a-token", resourceCredentialProviderName: name })),
    AccessDeniedException,
    403,
  );

  const rotated = `sk-js-rotated-${randomUUID()}`;
  const updated = await control.send(new UpdateApiKeyCredentialProviderCommand({ name, apiKey: rotated }));
  assert.equal(updated.$metadata.httpStatusCode, 200);
  assertRecent(updated.lastUpdatedTime);
  const refetched = await data.send(
    new GetResourceApiKeyCommand({ workloadIdentityToken: wat, resourceCredentialProviderName: name }),
  );
  assert.equal(refetched.apiKey, rotated);

  const deleted = await control.send(new DeleteApiKeyCredentialProviderCommand({ name }));
  assert.equal(deleted.$metadata.httpStatusCode, 204);
  await expectError(control.send(new GetApiKeyCredentialProviderCommand({ name })), ResourceNotFoundException, 404);
  await control.send(new DeleteWorkloadIdentityCommand({ name: workloadName }));
});

test("OAuth2 credential providers: a custom provider without discovery, and M2M tokens", async () => {
  const name = idName("jso2");
  const metadata = {
    issuer: "http://127.0.0.1/js-issuer",
    authorizationEndpoint: `${tokenEndpoint.url}/authorize`,
    tokenEndpoint: `${tokenEndpoint.url}/oauth2/token`,
  };
  const created = await control.send(
    new CreateOauth2CredentialProviderCommand({
      name,
      credentialProviderVendor: "CustomOauth2",
      oauth2ProviderConfigInput: {
        customOauth2ProviderConfig: {
          oauthDiscovery: { authorizationServerMetadata: metadata },
          clientId: CLIENT_ID,
          clientSecret: CLIENT_SECRET,
        },
      },
    }),
  );
  assert.equal(created.$metadata.httpStatusCode, 201);
  assert.equal(created.name, name);
  assert.ok(created.credentialProviderArn.endsWith(`:token-vault/default/oauth2credentialprovider/${name}`));
  assert.ok(created.credentialProviderArn.startsWith(`arn:aws:acps:${REGION}:`));
  assert.ok(created.clientSecretArn.secretArn.startsWith("arn:aws:secretsmanager:"));
  assert.ok(created.callbackUrl.startsWith(`${ENDPOINT}/identities/oauth2/callback/`), created.callbackUrl);
  assert.equal(created.status, "READY");
  const out = created.oauth2ProviderConfigOutput.customOauth2ProviderConfig;
  assert.equal(out.clientId, CLIENT_ID);
  assert.deepEqual(out.oauthDiscovery.authorizationServerMetadata, {
    ...metadata,
    ...out.oauthDiscovery.authorizationServerMetadata,
  });
  assert.equal(out.oauthDiscovery.authorizationServerMetadata.tokenEndpoint, metadata.tokenEndpoint);
  assert.ok(!JSON.stringify(created).includes(CLIENT_SECRET), "the client secret came back");

  const got = await control.send(new GetOauth2CredentialProviderCommand({ name }));
  assert.equal(got.credentialProviderVendor, "CustomOauth2");
  assert.equal(got.status, "READY");
  assert.equal(got.callbackUrl, created.callbackUrl);
  assertRecent(got.createdTime);
  assertRecent(got.lastUpdatedTime);
  assert.ok(!JSON.stringify(got).includes(CLIENT_SECRET), "the client secret came back");

  let listed;
  let nextToken;
  do {
    const page = await control.send(new ListOauth2CredentialProvidersCommand({ maxResults: 20, nextToken }));
    assert.ok(page.credentialProviders.length <= 20);
    listed = page.credentialProviders.find((p) => p.name === name) ?? listed;
    nextToken = page.nextToken;
  } while (nextToken && !listed);
  assert.ok(listed, `${name} not listed`);
  assert.equal(listed.credentialProviderVendor, "CustomOauth2");
  assertRecent(listed.createdTime);

  const workloadName = idName("jswi");
  await control.send(new CreateWorkloadIdentityCommand({ name: workloadName }));
  const wat = await workloadToken(workloadName);
  const request = {
    workloadIdentityToken: wat,
    resourceCredentialProviderName: name,
    scopes: ["read"],
    oauth2Flow: "M2M",
  };
  const first = await data.send(new GetResourceOauth2TokenCommand(request));
  assert.equal(first.$metadata.httpStatusCode, 200);
  assert.equal(first.accessToken, `js-m2m-${tokenEndpoint.issued}`);
  const sent = tokenEndpoint.requests.at(-1);
  assert.equal(sent.basic, true, "CLIENT_SECRET_BASIC is the default");
  assert.equal(sent.form.scope, "read");
  // Cached until it expires; forceAuthentication asks the endpoint again.
  const issued = tokenEndpoint.issued;
  const cached = await data.send(new GetResourceOauth2TokenCommand(request));
  assert.equal(cached.accessToken, first.accessToken);
  assert.equal(tokenEndpoint.issued, issued);
  const forced = await data.send(new GetResourceOauth2TokenCommand({ ...request, forceAuthentication: true }));
  assert.equal(forced.accessToken, `js-m2m-${issued + 1}`);

  const deleted = await control.send(new DeleteOauth2CredentialProviderCommand({ name }));
  assert.equal(deleted.$metadata.httpStatusCode, 204);
  await expectError(control.send(new GetOauth2CredentialProviderCommand({ name })), ResourceNotFoundException, 404);
  await expectError(data.send(new GetResourceOauth2TokenCommand(request)), DataNotFound, 404);
  await control.send(new DeleteWorkloadIdentityCommand({ name: workloadName }));
});
