"""AgentCore Identity on `berth serve`, driven by unmodified clients.

Issue 16 (item 4, acceptance 3): boto3's `bedrock-agentcore-control` and `bedrock-agentcore`
clients for workload identities, API-key and OAuth2 credential providers, the token vault and
the data plane (workload access tokens, `GetResourceApiKey`, `GetResourceOauth2Token` M2M and
3LO with Berth's OAuth2 callback and `CompleteResourceTokenAuth`), and
the AgentCore SDK's own `IdentityClient` pointed at Berth by the endpoint variables only. The
OAuth2 provider is a local token-endpoint double (an `http.server` on 127.0.0.1:0) that checks
the client credentials and counts the tokens it issues. Secrets are shown to be absent from the
SQLite files in clear, and the vault key file to be mode 0600.
"""

import asyncio
import base64
import json
import os
import stat
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import boto3
import pytest

from berth_harness import (
    ACCESS_KEY_ID,
    ACCOUNT,
    BUILD_TIMEOUT,
    REGION,
    SECRET_ACCESS_KEY,
    assert_status,
    expect_error,
    expect_validation,
    deploy_agent,
    invoke_json,
    list_all,
    new_session_id,
    poll,
    runtime_args,
    unique_name,
    update_args,
    zip_files,
)

CLIENT_ID = "berth-client"


def name(prefix: str = "id") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class TokenEndpoint:
    """An OAuth2 provider double: a token endpoint (client-credentials and authorization-code grants,
    checked client credentials), an authorization endpoint whose user consents at once, and the
    app's return URL."""

    def __init__(self, secret: str):
        self.secret = secret
        self.issued = 0
        self.codes: dict[str, str] = {}
        self.authorize_requests: list[dict] = []
        self.returned: list[dict] = []
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
                form = {k: v[0] for k, v in parse_qs(body).items()}
                auth = self.headers.get("authorization", "")
                if auth.startswith("Basic "):
                    cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
                    method = "basic"
                else:
                    cid, secret = form.get("client_id"), form.get("client_secret")
                    method = "post"
                outer.requests.append({"form": form, "method": method})
                if cid != CLIENT_ID or secret != outer.secret:
                    self._answer(401, {"error": "invalid_client"})
                    return
                grant = form.get("grant_type")
                if grant == "authorization_code":
                    if outer.codes.pop(form.get("code"), None) != form.get("redirect_uri"):
                        self._answer(400, {"error": "invalid_grant"})
                        return
                    outer.issued += 1
                    self._answer(200, {"access_token": f"user-token-{outer.issued}", "token_type": "Bearer",
                                       "expires_in": 3600})
                    return
                if grant != "client_credentials":
                    self._answer(400, {"error": "unsupported_grant_type"})
                    return
                outer.issued += 1
                self._answer(200, {"access_token": f"m2m-token-{outer.issued}", "token_type": "Bearer",
                                   "expires_in": 3600, "scope": form.get("scope", "")})

            def do_GET(self):
                path, _, query = self.path.partition("?")
                q = {k: v[0] for k, v in parse_qs(query).items()}
                if path == "/authorize":
                    # The user consents at once: back to Berth's callback with a one-time code.
                    assert q["client_id"] == CLIENT_ID and q["response_type"] == "code"
                    code = uuid.uuid4().hex
                    outer.codes[code] = q["redirect_uri"]
                    outer.authorize_requests.append(q)
                    self.send_response(302)
                    self.send_header("location", f"{q['redirect_uri']}?code={code}&state={q['state']}")
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                if path == "/return":
                    outer.returned.append(q)
                    self._answer(200, {"ok": True})
                    return
                self._answer(404, {"error": "not_found"})

            def _answer(self, code, doc):
                raw = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = f"{base}/oauth2/token"
        self.authorize_url = f"{base}/authorize"
        self.return_url = f"{base}/return"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def token_endpoint():
    ep = TokenEndpoint(secret=f"client-secret-{uuid.uuid4().hex}")
    yield ep
    ep.close()


def custom_config(ep: TokenEndpoint, method: str = "CLIENT_SECRET_BASIC", secret: str | None = None) -> dict:
    return {
        "customOauth2ProviderConfig": {
            "oauthDiscovery": {
                "authorizationServerMetadata": {
                    "issuer": "http://127.0.0.1/issuer",
                    "authorizationEndpoint": ep.authorize_url,
                    "tokenEndpoint": ep.url,
                }
            },
            "clientId": CLIENT_ID,
            "clientSecret": secret or ep.secret,
            "clientAuthenticationMethod": method,
        }
    }


def db_bytes(berth) -> bytes:
    """Every byte of the server's SQLite database (main file, WAL, shared memory)."""
    out = b""
    for suffix in ("", "-wal", "-shm"):
        path = berth.data_dir / f"berth.db{suffix}"
        if path.exists():
            out += path.read_bytes()
    return out


# ---- Workload identities ----------------------------------------------------------------


def test_workload_identity_crud(control):
    n = name("wi")
    created = control.create_workload_identity(name=n, allowedResourceOauth2ReturnUrls=["https://cb.example/cb"])
    assert_status(created, 201)
    arn = f"arn:aws:bedrock-agentcore:{REGION}:{ACCOUNT}:workload-identity-directory/default/workload-identity/{n}"
    assert created["name"] == n and created["workloadIdentityArn"] == arn
    assert created["allowedResourceOauth2ReturnUrls"] == ["https://cb.example/cb"]

    got = control.get_workload_identity(name=n)
    assert got["workloadIdentityArn"] == arn
    assert abs(got["createdTime"].timestamp() - time.time()) < 300
    assert got["lastUpdatedTime"] >= got["createdTime"]

    upd = control.update_workload_identity(name=n, allowedResourceOauth2ReturnUrls=["https://cb.example/2"])
    assert_status(upd, 200)
    assert upd["allowedResourceOauth2ReturnUrls"] == ["https://cb.example/2"]
    assert control.get_workload_identity(name=n)["allowedResourceOauth2ReturnUrls"] == ["https://cb.example/2"]

    expect_error(control.create_workload_identity, "ConflictException", 409, name=n)

    deleted = control.delete_workload_identity(name=n)
    assert_status(deleted, 204)
    expect_error(control.get_workload_identity, "ResourceNotFoundException", 404, name=n)
    expect_error(control.delete_workload_identity, "ResourceNotFoundException", 404, name=n)
    expect_error(control.update_workload_identity, "ResourceNotFoundException", 404, name=n)


def test_workload_identities_page_at_most_twenty(control, control_unvalidated):
    prefix = f"pg-{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}-{i:02d}" for i in range(7)]
    for n in names:
        control.create_workload_identity(name=n)
    pages = list_all(control.list_workload_identities, "workloadIdentities", page_size=3)
    assert all(len(p) <= 3 for p in pages)
    seen = [w["name"] for p in pages for w in p]
    assert len(seen) == len(set(seen)), "a name on two pages"
    assert set(names) <= set(seen)
    for w in (w for p in pages for w in p):
        assert w["workloadIdentityArn"].endswith(f"/workload-identity/{w['name']}")
    expect_validation(control_unvalidated.list_workload_identities, "maxResults", maxResults=21)
    for n in names:
        control.delete_workload_identity(name=n)


def test_workload_identity_validation(control_unvalidated):
    expect_validation(control_unvalidated.create_workload_identity, "name", name="ab")
    expect_validation(control_unvalidated.create_workload_identity, "name", name="bad name!")
    expect_validation(control_unvalidated.create_workload_identity, "name")


# ---- API-key credential providers ---------------------------------------------------------


def test_api_key_provider_crud_and_the_key_never_leaves_in_clear(berth, control, data):
    n = name("ak")
    key = f"sk-berth-{uuid.uuid4().hex}"
    created = control.create_api_key_credential_provider(name=n, apiKey=key)
    assert_status(created, 201)
    arn = f"arn:aws:acps:{REGION}:{ACCOUNT}:token-vault/default/apikeycredentialprovider/{n}"
    assert created["credentialProviderArn"] == arn
    assert created["apiKeySecretArn"]["secretArn"].startswith("arn:aws:secretsmanager:")
    assert key not in json.dumps(created, default=str)

    got = control.get_api_key_credential_provider(name=n)
    assert got["name"] == n and got["credentialProviderArn"] == arn and "createdTime" in got
    assert key not in json.dumps(got, default=str)
    listed = [p for page in list_all(control.list_api_key_credential_providers, "credentialProviders")
              for p in page]
    assert any(p["name"] == n and p["credentialProviderArn"] == arn for p in listed)
    assert key not in json.dumps(listed, default=str)

    # The key is in the database only as ciphertext; the vault key is in a 0600 file beside it.
    assert key.encode() not in db_bytes(berth)
    vault_key = berth.data_dir / "vault.key"
    assert stat.S_IMODE(os.stat(vault_key).st_mode) == 0o600
    assert vault_key.read_bytes() not in db_bytes(berth)

    # A workload's token unlocks it.
    wi = name("wi")
    control.create_workload_identity(name=wi)
    wat = data.get_workload_access_token(workloadName=wi)["workloadAccessToken"]
    resp = data.get_resource_api_key(workloadIdentityToken=wat, resourceCredentialProviderName=n)
    assert_status(resp, 200)
    assert resp["apiKey"] == key

    # Update replaces it.
    new_key = f"sk-rotated-{uuid.uuid4().hex}"
    upd = control.update_api_key_credential_provider(name=n, apiKey=new_key)
    assert_status(upd, 200)
    assert data.get_resource_api_key(workloadIdentityToken=wat, resourceCredentialProviderName=n)["apiKey"] == new_key
    assert new_key.encode() not in db_bytes(berth)

    expect_error(control.create_api_key_credential_provider, "ConflictException", 409, name=n, apiKey="x")
    assert_status(control.delete_api_key_credential_provider(name=n), 204)
    expect_error(control.get_api_key_credential_provider, "ResourceNotFoundException", 404, name=n)
    expect_error(data.get_resource_api_key, "ResourceNotFoundException", 404,
                 workloadIdentityToken=wat, resourceCredentialProviderName=n)
    control.delete_workload_identity(name=wi)


def test_resource_api_key_refuses_bad_tokens(control, data):
    n = name("ak")
    control.create_api_key_credential_provider(name=n, apiKey="sk-guarded")
    expect_error(data.get_resource_api_key, "AccessDeniedException", 403,
                 workloadIdentityToken="not-a-token", resourceCredentialProviderName=n)
    wi = name("wi")
    control.create_workload_identity(name=wi)
    wat = data.get_workload_access_token(workloadName=wi)["workloadAccessToken"]
    forged = wat[:-4] + ("AAAA" if not wat.endswith("AAAA") else "BBBB")
    expect_error(data.get_resource_api_key, "AccessDeniedException", 403,
                 workloadIdentityToken=forged, resourceCredentialProviderName=n)
    assert data.get_resource_api_key(workloadIdentityToken=wat, resourceCredentialProviderName=n)["apiKey"]
    # Deleting the workload identity revokes its tokens.
    control.delete_workload_identity(name=wi)
    expect_error(data.get_resource_api_key, "AccessDeniedException", 403,
                 workloadIdentityToken=wat, resourceCredentialProviderName=n)
    control.delete_api_key_credential_provider(name=n)


def test_workload_access_tokens(control, data, data_unvalidated):
    wi = name("wi")
    control.create_workload_identity(name=wi)
    plain = data.get_workload_access_token(workloadName=wi)
    assert_status(plain, 200)
    user = data.get_workload_access_token_for_user_id(workloadName=wi, userId="alice")
    assert user["workloadAccessToken"] != plain["workloadAccessToken"]

    def b64(doc):
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    jwt = f"{b64({'alg': 'none'})}.{b64({'iss': 'https://idp.example', 'sub': 'bob', 'exp': int(time.time()) + 600})}.c2ln"
    assert data.get_workload_access_token_for_jwt(workloadName=wi, userToken=jwt)["workloadAccessToken"]
    expired = f"{b64({'alg': 'none'})}.{b64({'iss': 'i', 'sub': 's', 'exp': 1})}.c2ln"
    expect_error(data.get_workload_access_token_for_jwt, "AccessDeniedException", 403,
                 workloadName=wi, userToken=expired)
    expect_error(data.get_workload_access_token, "ResourceNotFoundException", 404, workloadName=name("none"))
    expect_validation(data_unvalidated.get_workload_access_token, "workloadName", workloadName="x")
    control.delete_workload_identity(name=wi)


def test_token_vault(control):
    v = control.get_token_vault()
    assert_status(v, 200)
    assert v["tokenVaultId"] == "default"
    assert v["kmsConfiguration"]["keyType"] == "ServiceManagedKey"
    assert control.get_token_vault(tokenVaultId="default")["tokenVaultId"] == "default"
    expect_error(control.get_token_vault, "ResourceNotFoundException", 404, tokenVaultId="other")


# ---- OAuth2 credential providers ----------------------------------------------------------


@pytest.mark.parametrize("method", ["CLIENT_SECRET_BASIC", "CLIENT_SECRET_POST"])
def test_oauth2_provider_crud_and_m2m(berth, control, control_unvalidated, data, token_endpoint, method):
    n = name("o2")
    created = control.create_oauth2_credential_provider(
        name=n, credentialProviderVendor="CustomOauth2",
        oauth2ProviderConfigInput=custom_config(token_endpoint, method))
    assert_status(created, 201)
    assert created["credentialProviderArn"] == (
        f"arn:aws:acps:{REGION}:{ACCOUNT}:token-vault/default/oauth2credentialprovider/{n}")
    assert created["status"] == "READY"
    # Berth serves the callback itself.
    assert created["callbackUrl"].startswith(f"{berth.url}/identities/oauth2/callback/")
    out = created["oauth2ProviderConfigOutput"]["customOauth2ProviderConfig"]
    assert out["clientId"] == CLIENT_ID
    assert out["oauthDiscovery"]["authorizationServerMetadata"]["tokenEndpoint"] == token_endpoint.url
    assert token_endpoint.secret not in json.dumps(created, default=str)

    got = control.get_oauth2_credential_provider(name=n)
    assert got["credentialProviderVendor"] == "CustomOauth2" and got["status"] == "READY"
    assert token_endpoint.secret not in json.dumps(got, default=str)
    assert token_endpoint.secret.encode() not in db_bytes(berth)
    listed = [p for page in list_all(control.list_oauth2_credential_providers, "credentialProviders", page_size=20)
              for p in page]
    assert any(p["name"] == n and p["credentialProviderVendor"] == "CustomOauth2" for p in listed)
    expect_validation(control_unvalidated.list_oauth2_credential_providers, "maxResults", maxResults=21)

    wi = name("wi")
    control.create_workload_identity(name=wi)
    wat = data.get_workload_access_token(workloadName=wi)["workloadAccessToken"]
    first = data.get_resource_oauth2_token(workloadIdentityToken=wat, resourceCredentialProviderName=n,
                                           scopes=["read"], oauth2Flow="M2M")
    assert_status(first, 200)
    assert first["accessToken"] == "m2m-token-1"
    assert token_endpoint.requests[-1]["method"] == ("post" if method == "CLIENT_SECRET_POST" else "basic")
    assert token_endpoint.requests[-1]["form"]["scope"] == "read"
    # Cached (sealed) until it expires; forceAuthentication asks again.
    again = data.get_resource_oauth2_token(workloadIdentityToken=wat, resourceCredentialProviderName=n,
                                           scopes=["read"], oauth2Flow="M2M")
    assert again["accessToken"] == "m2m-token-1" and token_endpoint.issued == 1
    assert b"m2m-token-1" not in db_bytes(berth)
    forced = data.get_resource_oauth2_token(workloadIdentityToken=wat, resourceCredentialProviderName=n,
                                            scopes=["read"], oauth2Flow="M2M", forceAuthentication=True)
    assert forced["accessToken"] == "m2m-token-2"

    # A wrong secret after update: the endpoint refuses, and the cache was dropped.
    upd = control.update_oauth2_credential_provider(
        name=n, credentialProviderVendor="CustomOauth2",
        oauth2ProviderConfigInput=custom_config(token_endpoint, method, secret="wrong"))
    assert_status(upd, 200)
    assert upd["callbackUrl"] == created["callbackUrl"]
    expect_error(data.get_resource_oauth2_token, "AccessDeniedException", 403,
                 workloadIdentityToken=wat, resourceCredentialProviderName=n, scopes=["read"], oauth2Flow="M2M")
    expect_validation(data.get_resource_oauth2_token, "oauth2Flow",
                      workloadIdentityToken=wat, resourceCredentialProviderName=n, scopes=["read"],
                      oauth2Flow="ON_BEHALF_OF_TOKEN_EXCHANGE")

    assert_status(control.delete_oauth2_credential_provider(name=n), 204)
    expect_error(control.get_oauth2_credential_provider, "ResourceNotFoundException", 404, name=n)
    control.delete_workload_identity(name=wi)


# ---- The AgentCore SDK's IdentityClient -----------------------------------------------------


@pytest.fixture
def sdk_env(monkeypatch, berth):
    """The SDK's clients take no endpoint: point botocore's endpoint variables at Berth."""
    for var in ("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE", "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL"):
        monkeypatch.setenv(var, berth.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    return berth


def test_sdk_identity_client(sdk_env, token_endpoint):
    from bedrock_agentcore.services.identity import IdentityClient

    client = IdentityClient(REGION)
    wi = client.create_workload_identity(allowed_resource_oauth_2_return_urls=["https://cb.example/cb"])
    assert wi["workloadIdentityArn"].endswith(f"/workload-identity/{wi['name']}")
    assert client.get_workload_identity(wi["name"])["name"] == wi["name"]
    client.update_workload_identity(wi["name"], ["https://cb.example/other"])
    assert client.get_workload_identity(wi["name"])["allowedResourceOauth2ReturnUrls"] == ["https://cb.example/other"]

    key_provider = name("ak")
    key = f"sk-sdk-{uuid.uuid4().hex}"
    client.create_api_key_credential_provider({"name": key_provider, "apiKey": key})
    assert client.get_api_key_credential_provider(name=key_provider)["name"] == key_provider
    assert any(p["name"] == key_provider
               for p in client.list_api_key_credential_providers()["credentialProviders"])

    o2 = name("o2")
    client.create_oauth2_credential_provider({
        "name": o2, "credentialProviderVendor": "CustomOauth2",
        "oauth2ProviderConfigInput": custom_config(token_endpoint)})
    assert client.get_oauth2_credential_provider(name=o2)["status"] == "READY"

    wat = client.get_workload_access_token(wi["name"], user_id="sdk-user")["workloadAccessToken"]
    assert asyncio.run(client.get_api_key(provider_name=key_provider, agent_identity_token=wat)) == key
    token = asyncio.run(client.get_token(provider_name=o2, scopes=["read"], agent_identity_token=wat,
                                         auth_flow="M2M"))
    assert token.startswith("m2m-token-")

    client.delete_oauth2_credential_provider(name=o2)
    client.delete_api_key_credential_provider(name=key_provider)
    client.cp_client.delete_workload_identity(name=wi["name"])


def test_sdk_decorators_in_local_development(sdk_env, token_endpoint, control, tmp_path, monkeypatch):
    """`@requires_api_key` and M2M `@requires_access_token` outside a runtime: the SDK creates a
    workload identity, gets a token for a user id (remembered in `.agentcore.json`), and fetches
    the credentials, all from Berth."""
    from bedrock_agentcore.identity.auth import requires_access_token, requires_api_key

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DOCKER_CONTAINER", raising=False)
    key_provider, o2 = name("ak"), name("o2")
    key = f"sk-decorated-{uuid.uuid4().hex}"
    control.create_api_key_credential_provider(name=key_provider, apiKey=key)
    control.create_oauth2_credential_provider(
        name=o2, credentialProviderVendor="CustomOauth2",
        oauth2ProviderConfigInput=custom_config(token_endpoint, "CLIENT_SECRET_POST"))

    @requires_api_key(provider_name=key_provider)
    def with_key(*, api_key: str) -> str:
        return api_key

    @requires_access_token(provider_name=o2, scopes=["read", "write"], auth_flow="M2M")
    async def with_token(*, access_token: str) -> str:
        return access_token

    assert with_key() == key
    config = json.loads((tmp_path / ".agentcore.json").read_text())
    workload = config["workload_identity_name"]
    assert control.get_workload_identity(name=workload)["name"] == workload
    assert asyncio.run(with_token()).startswith("m2m-token-")
    assert token_endpoint.requests[-1]["form"]["scope"] == "read write"
    # The second call reuses the remembered workload identity and the cached token.
    assert with_key() == key
    assert json.loads((tmp_path / ".agentcore.json").read_text())["workload_identity_name"] == workload
    issued = token_endpoint.issued
    asyncio.run(with_token())
    assert token_endpoint.issued == issued

    control.delete_api_key_credential_provider(name=key_provider)
    control.delete_oauth2_credential_provider(name=o2)
    control.delete_workload_identity(name=workload)


def test_oauth2_user_federation_three_legged(berth, control, data, token_endpoint):
    """3LO: an authorization URL and a session; the user's browser goes to the provider and back
    through Berth's unsigned callback to the app's return URL; the app completes the session for
    the same user; the poll then answers the token, and later requests get it from the cache."""
    import urllib.request

    n, wi = name("o2"), name("wi")
    control.create_oauth2_credential_provider(
        name=n, credentialProviderVendor="CustomOauth2", oauth2ProviderConfigInput=custom_config(token_endpoint))
    control.create_workload_identity(name=wi, allowedResourceOauth2ReturnUrls=[token_endpoint.return_url])
    wat = data.get_workload_access_token_for_user_id(workloadName=wi, userId="alice")["workloadAccessToken"]
    args = dict(workloadIdentityToken=wat, resourceCredentialProviderName=n, scopes=["profile"],
                oauth2Flow="USER_FEDERATION")

    first = data.get_resource_oauth2_token(resourceOauth2ReturnUrl=token_endpoint.return_url, **args)
    assert "accessToken" not in first and first["sessionStatus"] == "IN_PROGRESS"
    assert first["authorizationUrl"].startswith(token_endpoint.authorize_url + "?")
    session = first["sessionUri"]
    assert session.startswith("urn:ietf:params:oauth:request_uri:")
    waiting = data.get_resource_oauth2_token(sessionUri=session, **args)
    assert "accessToken" not in waiting and waiting["sessionStatus"] == "IN_PROGRESS"

    # The user's browser: provider, Berth's callback (unsigned), the app's return URL.
    with urllib.request.urlopen(first["authorizationUrl"], timeout=30) as resp:
        assert resp.status == 200
    assert token_endpoint.authorize_requests[-1]["scope"] == "profile"
    assert token_endpoint.returned[-1]["session_id"] == session
    # The code is spent: the callback does not run twice.
    assert "accessToken" not in data.get_resource_oauth2_token(sessionUri=session, **args)

    expect_error(data.complete_resource_token_auth, "AccessDeniedException", 403,
                 sessionUri=session, userIdentifier={"userId": "mallory"})
    assert_status(data.complete_resource_token_auth(sessionUri=session, userIdentifier={"userId": "alice"}), 200)
    done = data.get_resource_oauth2_token(sessionUri=session, **args)
    assert done["accessToken"] == "user-token-1"
    # Cached for alice (sealed): no new consent, no new token.
    assert data.get_resource_oauth2_token(**args)["accessToken"] == "user-token-1"
    assert token_endpoint.issued == 1
    assert b"user-token-1" not in db_bytes(berth)

    # Another user of the same workload starts from scratch; bad return URLs and user-less
    # tokens are refused.
    bob = data.get_workload_access_token_for_user_id(workloadName=wi, userId="bob")["workloadAccessToken"]
    assert "authorizationUrl" in data.get_resource_oauth2_token(**{**args, "workloadIdentityToken": bob})
    expect_validation(data.get_resource_oauth2_token, "resourceOauth2ReturnUrl",
                      resourceOauth2ReturnUrl="https://evil.example/cb", **{**args, "workloadIdentityToken": bob})
    plain = data.get_workload_access_token(workloadName=wi)["workloadAccessToken"]
    expect_validation(data.get_resource_oauth2_token, "workloadIdentityToken",
                      **{**args, "workloadIdentityToken": plain})

    control.delete_oauth2_credential_provider(name=n)
    control.delete_workload_identity(name=wi)


def test_sdk_get_token_user_federation(sdk_env, control, token_endpoint):
    """The SDK's own 3LO loop: `get_token(auth_flow="USER_FEDERATION")` hands the authorization
    URL to `on_auth_url` (here: the user's browser, then the app completing the session), and its
    default poller (every 5 s) gets the token."""
    import urllib.request

    from bedrock_agentcore.services.identity import IdentityClient, UserIdIdentifier

    client = IdentityClient(REGION)
    o2 = name("o2")
    client.create_oauth2_credential_provider({
        "name": o2, "credentialProviderVendor": "CustomOauth2",
        "oauth2ProviderConfigInput": custom_config(token_endpoint)})
    wi = client.create_workload_identity(allowed_resource_oauth_2_return_urls=[token_endpoint.return_url])
    wat = client.get_workload_access_token(wi["name"], user_id="sdk-user")["workloadAccessToken"]

    def on_auth_url(url: str):
        with urllib.request.urlopen(url, timeout=30) as resp:
            assert resp.status == 200
        session = token_endpoint.returned[-1]["session_id"]
        client.complete_resource_token_auth(session, UserIdIdentifier(user_id="sdk-user"))

    token = asyncio.run(client.get_token(provider_name=o2, scopes=["profile"], agent_identity_token=wat,
                                         auth_flow="USER_FEDERATION", on_auth_url=on_auth_url,
                                         callback_url=token_endpoint.return_url))
    assert token.startswith("user-token-")
    client.delete_oauth2_credential_provider(name=o2)
    client.cp_client.delete_workload_identity(name=wi["name"])


def test_secrets_and_tokens_survive_a_restart(berth_server, tmp_path):
    """The vault key is read back from `vault.key` on restart: stored keys still open and issued
    workload tokens still verify; the key file is the same one, still 0600."""
    data_dir = tmp_path / "identity-restart"
    first = berth_server(data_dir, name="identity-first")
    control, data = first.client("bedrock-agentcore-control"), first.client("bedrock-agentcore")
    control.create_workload_identity(name="restart-wi")
    control.create_api_key_credential_provider(name="restart-key", apiKey="sk-survives")
    wat = data.get_workload_access_token(workloadName="restart-wi")["workloadAccessToken"]
    key_file = data_dir / "vault.key"
    key = key_file.read_bytes()
    assert first.stop() == 0

    second = berth_server(data_dir, name="identity-second")
    data2 = second.client("bedrock-agentcore")
    assert key_file.read_bytes() == key
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    got = data2.get_resource_api_key(workloadIdentityToken=wat, resourceCredentialProviderName="restart-key")
    assert got["apiKey"] == "sk-survives"


#: An agent written as AgentCore's docs write one: credentials come from the decorators, which
#: read the workload access token AgentCore hands the agent with each invocation.
DECORATED_AGENT = """
from bedrock_agentcore.runtime import BedrockAgentCoreApp
from bedrock_agentcore.identity.auth import requires_access_token, requires_api_key

app = BedrockAgentCoreApp()


@requires_api_key(provider_name=KEY_PROVIDER)
async def key(*, api_key):
    return api_key


@requires_access_token(provider_name=OAUTH2_PROVIDER, scopes=["read"], auth_flow="M2M")
async def token(*, access_token):
    return access_token


@app.entrypoint
async def invoke(payload, context):
    return {"apiKey": await key(), "accessToken": await token()}


if __name__ == "__main__":
    app.run()
"""


def test_an_agent_in_a_runtime_gets_its_credentials_through_the_decorators(
    control, data, s3, token_endpoint
):
    key_provider, o2 = name("ak"), name("o2")
    key = f"sk-in-runtime-{uuid.uuid4().hex}"
    control.create_api_key_credential_provider(name=key_provider, apiKey=key)
    control.create_oauth2_credential_provider(
        name=o2, credentialProviderVendor="CustomOauth2",
        oauth2ProviderConfigInput=custom_config(token_endpoint))
    source = f"KEY_PROVIDER = {key_provider!r}\nOAUTH2_PROVIDER = {o2!r}\n" + DECORATED_AGENT
    runtime = deploy_agent(
        control, s3,
        zip_files({"agent.py": source, "requirements.txt": "bedrock-agentcore==1.25.0\n"}),
        name=name("decorated").replace("-", "_"),
    )
    # The runtime's workload identity exists as its workloadIdentityDetails name it.
    identity_arn = runtime["workloadIdentityDetails"]["workloadIdentityArn"]
    workload = control.get_workload_identity(name=runtime["agentRuntimeName"])
    assert workload["workloadIdentityArn"] == identity_arn

    answer = invoke_json(data, runtime["agentRuntimeArn"], new_session_id("wat"), {})
    assert answer == {"apiKey": key, "accessToken": answer["accessToken"]}, answer
    assert answer["accessToken"].startswith("m2m-token-"), answer
    control.delete_api_key_credential_provider(name=key_provider)
    control.delete_oauth2_credential_provider(name=o2)


#: An agent whose 3LO flow uses the callback URL AgentCore hands it with the call: the SDK's app
#: reads `OAuth2CallbackUrl` into its context, and `@requires_access_token` (given no
#: `callback_url`) sends it as `resourceOauth2ReturnUrl`. The authorization URL is streamed to
#: the caller while the SDK polls for the token, which ends the stream.
CALLBACK_AGENT = """
import asyncio

from bedrock_agentcore.identity.auth import requires_access_token
from bedrock_agentcore.runtime import BedrockAgentCoreApp, BedrockAgentCoreContext

app = BedrockAgentCoreApp()


@app.entrypoint
async def invoke(payload, context):
    headers = {k.lower(): v for k, v in (context.request_headers or {}).items()}
    seen = {"contextCallbackUrl": BedrockAgentCoreContext.get_oauth2_callback_url(),
            "headerCallbackUrl": headers.get("oauth2callbackurl")}
    if payload.get("probe"):
        yield seen
        return
    urls = asyncio.Queue()

    @requires_access_token(provider_name=OAUTH2_PROVIDER, scopes=["profile"],
                           auth_flow="USER_FEDERATION", on_auth_url=urls.put_nowait)
    async def token(*, access_token):
        return access_token

    fetch = asyncio.ensure_future(token())
    url = asyncio.ensure_future(urls.get())
    done, _ = await asyncio.wait({fetch, url}, return_when=asyncio.FIRST_COMPLETED)
    if url in done:
        yield {**seen, "authorizationUrl": url.result()}
    yield {"accessToken": await fetch}


if __name__ == "__main__":
    app.run()
"""


def with_callback_header(client, url: str):
    """The data-plane client, sending `OAuth2CallbackUrl` with each InvokeAgentRuntime: the
    model has no member for it, so a caller adds it to the request (botocore's event hook)."""

    def add(request, **_):
        request.headers["OAuth2CallbackUrl"] = url

    client.meta.events.register("before-sign.bedrock-agentcore.InvokeAgentRuntime", add)
    return client


def sse_events(body):
    """Decoded `data:` events of an SSE body, yielded as they arrive (read a byte at a time:
    a larger read waits for bytes the agent only sends after the test acts on this event)."""
    line = b""
    for byte in body.iter_chunks(chunk_size=1):
        if byte != b"\n":
            line += byte
            continue
        if line.startswith(b"data:"):
            yield json.loads(line[5:].strip())
        line = b""


def test_invocations_carry_the_oauth2_callback_url_to_the_agent_and_its_3lo_flow(
    berth, control, data_unvalidated, s3, token_endpoint
):
    """AgentCore hands the agent the caller's `OAuth2CallbackUrl` with each call; an agent's
    `@requires_access_token(auth_flow="USER_FEDERATION")` returns the user there after consent:
    the authorization URL goes out while the SDK polls, the app completes the session for the
    invocation's user, and the poll gets the token."""
    import urllib.request

    o2 = name("o2")
    control.create_oauth2_credential_provider(
        name=o2, credentialProviderVendor="CustomOauth2", oauth2ProviderConfigInput=custom_config(token_endpoint))
    source = f"OAUTH2_PROVIDER = {o2!r}\n" + CALLBACK_AGENT
    runtime = deploy_agent(
        control, s3,
        zip_files({"agent.py": source, "requirements.txt": "bedrock-agentcore==1.25.0\n"}),
        name=name("callback").replace("-", "_"),
    )
    arn = runtime["agentRuntimeArn"]
    # The app's return URL must be allowed on the runtime's own workload identity.
    control.update_workload_identity(name=runtime["agentRuntimeName"],
                                     allowedResourceOauth2ReturnUrls=[token_endpoint.return_url])
    client = with_callback_header(berth.client("bedrock-agentcore", read_timeout=120),
                                  token_endpoint.return_url)

    def probe(c):
        resp = c.invoke_agent_runtime(agentRuntimeArn=arn, runtimeSessionId=new_session_id("cb"),
                                      payload=json.dumps({"probe": True}).encode())
        return list(sse_events(resp["response"]))

    assert probe(client) == [{"contextCallbackUrl": token_endpoint.return_url,
                              "headerCallbackUrl": token_endpoint.return_url}]
    # Without the header the agent has none.
    assert probe(data_unvalidated) == [{"contextCallbackUrl": None, "headerCallbackUrl": None}]

    resp = client.invoke_agent_runtime(agentRuntimeArn=arn, runtimeSessionId=new_session_id("cb"),
                                       runtimeUserId="alice", payload=b"{}")
    assert resp["contentType"].startswith("text/event-stream"), resp["contentType"]
    events = sse_events(resp["response"])
    first = next(events)
    assert first["contextCallbackUrl"] == token_endpoint.return_url, first
    assert first["authorizationUrl"].startswith(token_endpoint.authorize_url + "?"), first
    # The user's browser: provider, Berth's callback, then the app at the callback URL the agent
    # was handed; the app completes the session for the invocation's user.
    with urllib.request.urlopen(first["authorizationUrl"], timeout=30) as r:
        assert r.status == 200
    session = token_endpoint.returned[-1]["session_id"]
    assert session.startswith("urn:ietf:params:oauth:request_uri:")
    data_unvalidated.complete_resource_token_auth(sessionUri=session, userIdentifier={"userId": "alice"})
    # The SDK's poller (every 5 s) gets the token, and the agent answers it.
    last = next(events)
    assert last == {"accessToken": "user-token-1"}, last
    assert list(events) == []

    # A callback URL that is not one the model allows is the caller's error, before the agent.
    for bad in ("no-scheme-here", "https://cb.example/a b", "x:" + "a" * 2048):
        bad_client = with_callback_header(berth.client("bedrock-agentcore"), bad)
        expect_validation(bad_client.invoke_agent_runtime, "OAuth2CallbackUrl",
                          agentRuntimeArn=arn, runtimeSessionId=new_session_id("cb"), payload=b"{}")
    control.delete_agent_runtime(agentRuntimeId=runtime["agentRuntimeId"])
    control.delete_oauth2_credential_provider(name=o2)


def test_deleting_a_runtime_deletes_its_workload_identity(control, data, artifact):
    """The workload identity a runtime is given goes with the runtime (its tokens stop
    working); one the operator made under the runtime's name beforehand is not the runtime's
    and stays, and deleting one version keeps the identity."""
    key_provider = name("ak")
    control.create_api_key_credential_provider(name=key_provider, apiKey="sk-runtime-scoped")

    rt = control.create_agent_runtime(**runtime_args(artifact, unique_name("wi_gone")))
    rt_name = rt["agentRuntimeId"].rsplit("-", 1)[0]
    assert rt["workloadIdentityDetails"]["workloadIdentityArn"].endswith(f"/workload-identity/{rt_name}")
    assert control.get_workload_identity(name=rt_name)["name"] == rt_name
    wat = data.get_workload_access_token_for_user_id(workloadName=rt_name, userId="u")["workloadAccessToken"]
    assert data.get_resource_api_key(workloadIdentityToken=wat,
                                     resourceCredentialProviderName=key_provider)["apiKey"]
    # Deleting one version (once the DEFAULT endpoint serves version 2) keeps the identity.
    control.update_agent_runtime(agentRuntimeId=rt["agentRuntimeId"], **update_args(artifact))
    poll(lambda: control.get_agent_runtime_endpoint(agentRuntimeId=rt["agentRuntimeId"], endpointName="DEFAULT"),
         lambda ep: ep.get("liveVersion") == "2", timeout=BUILD_TIMEOUT, what="DEFAULT to serve version 2")
    assert_status(control.delete_agent_runtime(agentRuntimeId=rt["agentRuntimeId"], agentRuntimeVersion="1"), 202)
    assert control.get_workload_identity(name=rt_name)["name"] == rt_name
    assert data.get_resource_api_key(workloadIdentityToken=wat,
                                     resourceCredentialProviderName=key_provider)["apiKey"]
    assert_status(control.delete_agent_runtime(agentRuntimeId=rt["agentRuntimeId"]), 202)
    expect_error(control.get_workload_identity, "ResourceNotFoundException", 404, name=rt_name)
    expect_error(data.get_resource_api_key, "AccessDeniedException", 403,
                 workloadIdentityToken=wat, resourceCredentialProviderName=key_provider)

    # An identity the operator made first, under the name a runtime then takes, stays.
    own = unique_name("wi_kept")
    control.create_workload_identity(name=own, allowedResourceOauth2ReturnUrls=["https://cb.example/cb"])
    kept = control.create_agent_runtime(**runtime_args(artifact, own))
    control.delete_agent_runtime(agentRuntimeId=kept["agentRuntimeId"])
    assert control.get_workload_identity(name=own)["allowedResourceOauth2ReturnUrls"] == ["https://cb.example/cb"]
    control.delete_workload_identity(name=own)
    control.delete_api_key_credential_provider(name=key_provider)


def test_oauth2_provider_configurations_berth_can_and_cannot_serve(control, control_unvalidated):
    """A named vendor answers its published endpoints as `oauthDiscovery`; an included provider
    answers the endpoints it was given. What Berth cannot serve is refused, naming the member:
    discovery by URL (Berth makes no outbound discovery requests), an included provider without
    its endpoints, and token-endpoint authentication other than a client secret."""
    google = name("o2")
    created = control.create_oauth2_credential_provider(
        name=google, credentialProviderVendor="GoogleOauth2",
        oauth2ProviderConfigInput={"googleOauth2ProviderConfig": {"clientId": "gid", "clientSecret": "gsecret"}})
    out = created["oauth2ProviderConfigOutput"]["googleOauth2ProviderConfig"]
    assert out["clientId"] == "gid"
    assert out["oauthDiscovery"]["authorizationServerMetadata"]["tokenEndpoint"] == "https://oauth2.googleapis.com/token"
    assert "gsecret" not in json.dumps(created, default=str)
    got = control.get_oauth2_credential_provider(name=google)
    assert got["credentialProviderVendor"] == "GoogleOauth2"
    assert got["oauth2ProviderConfigOutput"] == created["oauth2ProviderConfigOutput"]

    okta = name("o2")
    endpoints = {"issuer": "https://okta.example", "authorizationEndpoint": "https://okta.example/authorize",
                 "tokenEndpoint": "https://okta.example/token"}
    created = control.create_oauth2_credential_provider(
        name=okta, credentialProviderVendor="OktaOauth2",
        oauth2ProviderConfigInput={"includedOauth2ProviderConfig": {
            "clientId": "oid", "clientSecret": "osecret", **endpoints}})
    out = created["oauth2ProviderConfigOutput"]["includedOauth2ProviderConfig"]
    assert out == {"clientId": "oid", "oauthDiscovery": {"authorizationServerMetadata": endpoints}}

    refused = [
        ("oauth2ProviderConfigInput.customOauth2ProviderConfig.oauthDiscovery",
         {"customOauth2ProviderConfig": {"oauthDiscovery": {"discoveryUrl": "https://idp.example/.well-known/openid-configuration"},
                                         "clientId": "c", "clientSecret": "s"}}, "CustomOauth2"),
        ("oauth2ProviderConfigInput.includedOauth2ProviderConfig.tokenEndpoint",
         {"includedOauth2ProviderConfig": {"clientId": "c", "clientSecret": "s"}}, "OktaOauth2"),
        ("oauth2ProviderConfigInput.customOauth2ProviderConfig.clientAuthenticationMethod",
         {"customOauth2ProviderConfig": {"oauthDiscovery": {"authorizationServerMetadata": endpoints},
                                         "clientId": "c", "clientSecret": "s",
                                         "clientAuthenticationMethod": "PRIVATE_KEY_JWT"}}, "CustomOauth2"),
        ("oauth2ProviderConfigInput.githubOauth2ProviderConfig.clientSecret",
         {"githubOauth2ProviderConfig": {"clientId": "c"}}, "GithubOauth2"),
    ]
    for member, config, vendor in refused:
        expect_validation(control_unvalidated.create_oauth2_credential_provider, member,
                          name=name("o2"), credentialProviderVendor=vendor, oauth2ProviderConfigInput=config)
    control.delete_oauth2_credential_provider(name=google)
    control.delete_oauth2_credential_provider(name=okta)
