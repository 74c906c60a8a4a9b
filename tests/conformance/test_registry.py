"""The built-in OCI registry (`/v2/`, the Distribution API v1.1) with the unmodified `skopeo`.

Images are written offline as OCI layouts (tarfile + json, deterministic bytes), pushed to the
shared server with HTTP Basic credentials (a Berth access key id and its secret), inspected,
copied back out and compared by digest, listed, deleted. Authentication and authorization are
checked through skopeo and through plain HTTP where the exact status and error code matter.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import shutil
import socket
import subprocess
import tarfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from berth_harness import ACCESS_KEY_ID, SECRET_ACCESS_KEY, native, unique_name

pytestmark = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ROOT_CREDS = f"{ACCESS_KEY_ID}:{SECRET_ACCESS_KEY}"
#: Everything a puller needs, and nothing a pusher needs (ECR's pull-only policy).
PULL_ACTIONS = [
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchCheckLayerAvailability",
    "ecr:ListImages",
]
TIMEOUT = 120


# ---------------------------------------------------------------------------- OCI layouts


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Layout:
    """An OCI image layout directory written byte for byte."""

    def __init__(self, path: Path):
        self.path = path
        (path / "blobs" / "sha256").mkdir(parents=True)
        (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def blob(self, data: bytes, media_type: str) -> dict:
        digest = _sha(data)
        (self.path / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def image(self, files: dict, arch: str = "amd64") -> dict:
        """One image whose single layer holds `files`; returns the manifest's descriptor."""
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, content in sorted(files.items()):
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(content), 0, 0o755
                tar.addfile(info, io.BytesIO(content))
        tar_bytes = raw.getvalue()
        layer = self.blob(
            gzip.compress(tar_bytes, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip"
        )
        config = {
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["/hello"]},
            "rootfs": {"type": "layers", "diff_ids": [_sha(tar_bytes)]},
        }
        config_desc = self.blob(
            json.dumps(config, sort_keys=True).encode(), "application/vnd.oci.image.config.v1+json"
        )
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_desc,
            "layers": [layer],
        }
        desc = self.blob(json.dumps(manifest).encode(), OCI_MANIFEST)
        desc["platform"] = {"os": "linux", "architecture": arch}
        return desc

    def index_of(self, manifests: list) -> dict:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        return self.blob(json.dumps(index).encode(), OCI_INDEX)

    def publish(self, desc: dict, ref: str = "latest") -> str:
        """Names `desc` in the layout's index.json; returns the `oci:` transport reference."""
        entry = dict(desc, annotations={"org.opencontainers.image.ref.name": ref})
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}
        (self.path / "index.json").write_text(json.dumps(index))
        return f"oci:{self.path}:{ref}"


def pulled_digest(layout: Path) -> str:
    """The digest of the (only) manifest a `skopeo copy` wrote into an OCI layout."""
    index = json.loads((layout / "index.json").read_text())
    (entry,) = index["manifests"]
    return entry["digest"]


# ------------------------------------------------------------------------------- clients


class Skopeo:
    def __init__(self, host: str, tmp: Path):
        self.host = host
        self.policy = tmp / "policy.json"
        self.policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        self.tmp = tmp

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        # No auth file, registries.conf or cache of the user's is read or written.
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(self.tmp)}
        proc = subprocess.run(
            ["skopeo", "--policy", str(self.policy), *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=env,
        )
        if check:
            assert proc.returncode == 0, f"skopeo {args}: {proc.stderr}"
        return proc

    def ref(self, repo: str) -> str:
        return f"docker://{self.host}/{repo}"

    def push(self, src: str, repo: str, creds: str = ROOT_CREDS, *extra: str, check=True):
        return self.run(
            "copy",
            "--preserve-digests",
            "--dest-creds",
            creds,
            "--dest-tls-verify=false",
            *extra,
            src,
            self.ref(repo),
            check=check,
        )

    def inspect(self, repo: str, *extra: str, creds: str = ROOT_CREDS, check=True):
        return self.run(
            "inspect", "--creds", creds, "--tls-verify=false", *extra, self.ref(repo), check=check
        )


@pytest.fixture
def skopeo(berth, tmp_path) -> Skopeo:
    return Skopeo(urlsplit(berth.url).netloc, tmp_path)


def restricted_key(server, actions: list) -> str:
    """A new access key allowed only `actions` on every repository; `id:secret`."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": actions, "Resource": "arn:aws:ecr:*:*:repository/*"}
        ],
    }
    made = native(
        server,
        "POST",
        "/berth/v1/keys",
        body=json.dumps({"policy": policy, "name": unique_name("registry-pull")}).encode(),
    )
    assert made.status == 201, made
    key = made.json()
    return f"{key['accessKeyId']}:{key['secretAccessKey']}"


def repo_name() -> str:
    return f"team/{unique_name('agent').lower().replace('_', '-')}"


# --------------------------------------------------------------------------------- tests


def test_push_inspect_pull_list_delete(skopeo, tmp_path):
    layout = Layout(tmp_path / "src")
    desc = layout.image({"hello": b"#!/bin/sh\necho hello\n"})
    repo = repo_name()
    skopeo.push(layout.publish(desc), f"{repo}:v1")
    skopeo.push(layout.publish(desc), f"{repo}:v2")

    info = json.loads(skopeo.inspect(f"{repo}:v1").stdout)
    assert info["Digest"] == desc["digest"]
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    assert sorted(info["RepoTags"]) == ["v1", "v2"]
    raw = skopeo.inspect(f"{repo}:v1", "--raw").stdout
    assert _sha(raw.encode()) == desc["digest"]

    # Copied back out, byte for byte.
    out = tmp_path / "out"
    skopeo.run(
        "copy",
        "--src-creds",
        ROOT_CREDS,
        "--src-tls-verify=false",
        skopeo.ref(f"{repo}@{desc['digest']}"),
        f"oci:{out}:pulled",
    )
    assert pulled_digest(out) == desc["digest"]
    for blob in (layout.path / "blobs" / "sha256").iterdir():
        pulled = out / "blobs" / "sha256" / blob.name
        if pulled.exists():
            assert pulled.read_bytes() == blob.read_bytes()

    tags = json.loads(
        skopeo.run(
            "list-tags", "--creds", ROOT_CREDS, "--tls-verify=false", skopeo.ref(repo)
        ).stdout
    )
    assert tags["Tags"] == ["v1", "v2"]

    # Deleting resolves the tag and deletes the manifest, so every tag on it goes too.
    skopeo.run("delete", "--creds", ROOT_CREDS, "--tls-verify=false", skopeo.ref(f"{repo}:v2"))
    gone = skopeo.inspect(f"{repo}@{desc['digest']}", check=False)
    assert gone.returncode != 0 and "manifest unknown" in gone.stderr.lower(), gone.stderr
    tags = json.loads(
        skopeo.run(
            "list-tags", "--creds", ROOT_CREDS, "--tls-verify=false", skopeo.ref(repo)
        ).stdout
    )
    assert tags["Tags"] == []


def test_multi_arch_index(skopeo, tmp_path):
    layout = Layout(tmp_path / "src")
    amd = layout.image({"hello": b"amd64"}, "amd64")
    arm = layout.image({"hello": b"arm64"}, "arm64")
    index = layout.index_of([amd, arm])
    repo = repo_name()
    skopeo.push(layout.publish(index), f"{repo}:multi", ROOT_CREDS, "--all")
    raw = skopeo.inspect(f"{repo}:multi", "--raw").stdout
    assert _sha(raw.encode()) == index["digest"]
    assert [m["digest"] for m in json.loads(raw)["manifests"]] == [amd["digest"], arm["digest"]]
    # The platform's image is chosen from the index (skopeo reports the index's digest).
    info = json.loads(skopeo.inspect(f"{repo}:multi", "--override-arch", "arm64").stdout)
    assert (info["Digest"], info["Architecture"]) == (index["digest"], "arm64")
    child = skopeo.inspect(f"{repo}@{arm['digest']}", "--raw").stdout
    assert _sha(child.encode()) == arm["digest"]
    out = tmp_path / "out"
    skopeo.run(
        "copy",
        "--all",
        "--src-creds",
        ROOT_CREDS,
        "--src-tls-verify=false",
        skopeo.ref(f"{repo}:multi"),
        f"oci:{out}:multi",
    )
    assert pulled_digest(out) == index["digest"]


def test_wrong_credentials_are_refused(berth, skopeo, tmp_path):
    resp = requests.get(f"{berth.url}/v2/", timeout=30)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="berth"'
    assert resp.json()["errors"][0]["code"] == "UNAUTHORIZED"
    resp = requests.get(f"{berth.url}/v2/", auth=(ACCESS_KEY_ID, "wrong"), timeout=30)
    assert resp.status_code == 401
    resp = requests.get(f"{berth.url}/v2/", auth=(ACCESS_KEY_ID, SECRET_ACCESS_KEY), timeout=30)
    assert resp.status_code == 200
    assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"

    layout = Layout(tmp_path / "src")
    src = layout.publish(layout.image({"x": b"x"}))
    pushed = skopeo.push(src, f"{repo_name()}:v1", f"{ACCESS_KEY_ID}:wrong", check=False)
    assert pushed.returncode != 0
    assert "unauthorized" in pushed.stderr.lower() or "401" in pushed.stderr, pushed.stderr


def test_a_pull_only_key_cannot_push(berth, skopeo, tmp_path):
    repo = repo_name()
    layout = Layout(tmp_path / "src")
    src = layout.publish(layout.image({"x": b"pull only"}))
    skopeo.push(src, f"{repo}:v1")
    creds = restricted_key(berth, PULL_ACTIONS)

    # It pulls...
    info = json.loads(skopeo.inspect(f"{repo}:v1", creds=creds).stdout)
    assert info["RepoTags"] == ["v1"]
    # ...and may not push.
    pushed = skopeo.push(src, f"{repo}:v2", creds, check=False)
    assert pushed.returncode != 0
    assert "denied" in pushed.stderr.lower(), pushed.stderr
    user, secret = creds.split(":", 1)
    resp = requests.post(f"{berth.url}/v2/{repo}/blobs/uploads/", auth=(user, secret), timeout=30)
    assert resp.status_code == 403
    err = resp.json()["errors"][0]
    assert err["code"] == "DENIED"
    assert "ecr:InitiateLayerUpload" in err["message"]
    assert f"repository/{repo}" in err["message"]
    resp = requests.delete(
        f"{berth.url}/v2/{repo}/manifests/v1", auth=(user, secret), timeout=30
    )
    assert resp.status_code == 403

    # A revoked key authenticates no more.
    revoked = native(berth, "DELETE", f"/berth/v1/keys/{user}")
    assert revoked.status < 300, revoked
    for path in ("/v2/", f"/v2/{repo}/manifests/v1"):
        resp = requests.get(f"{berth.url}{path}", auth=(user, secret), timeout=30)
        assert resp.status_code == 401, path
        assert resp.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_chunked_upload_mount_and_paging(berth):
    auth = (ACCESS_KEY_ID, SECRET_ACCESS_KEY)
    base = f"{berth.url}/v2"
    repo, other = repo_name(), repo_name()
    data = b"0123456789" * 1000
    digest = _sha(data)

    started = requests.post(f"{base}/{repo}/blobs/uploads/", auth=auth, timeout=30)
    assert started.status_code == 202, started.text
    location = started.headers["Location"]
    assert started.headers["Range"] == "0-0"
    url = berth.url + location
    first = requests.patch(
        url,
        data=data[:4000],
        auth=auth,
        headers={"Content-Range": "0-3999", "Content-Type": "application/octet-stream"},
        timeout=30,
    )
    assert first.status_code == 202 and first.headers["Range"] == "0-3999"
    # Out of order: 416, and the upload still holds what it held.
    skipped = requests.patch(
        url, data=data[5000:], auth=auth, headers={"Content-Range": "5000-9999"}, timeout=30
    )
    assert skipped.status_code == 416
    assert skipped.json()["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
    status = requests.get(url, auth=auth, timeout=30)
    assert status.status_code == 204 and status.headers["Range"] == "0-3999"
    # A wrong digest fails the upload and stores nothing.
    wrong = requests.put(
        url, params={"digest": _sha(b"other")}, data=data[4000:], auth=auth, timeout=30
    )
    assert wrong.status_code == 400 and wrong.json()["errors"][0]["code"] == "DIGEST_INVALID"
    assert requests.get(url, auth=auth, timeout=30).status_code == 404
    assert requests.head(f"{base}/{repo}/blobs/{digest}", auth=auth, timeout=30).status_code == 404

    # Monolithic, then read back (whole and a range).
    put = requests.post(
        f"{base}/{repo}/blobs/uploads/", params={"digest": digest}, data=data, auth=auth, timeout=30
    )
    assert put.status_code == 201 and put.headers["Docker-Content-Digest"] == digest
    head = requests.head(f"{base}/{repo}/blobs/{digest}", auth=auth, timeout=30)
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data))
    got = requests.get(f"{base}/{repo}/blobs/{digest}", auth=auth, timeout=30)
    assert got.content == data
    part = requests.get(
        f"{base}/{repo}/blobs/{digest}", auth=auth, headers={"Range": "bytes=10-19"}, timeout=30
    )
    assert part.status_code == 206 and part.content == data[10:20]

    # Mounted into another repository without sending the bytes again.
    mounted = requests.post(
        f"{base}/{other}/blobs/uploads/",
        params={"mount": digest, "from": repo},
        auth=auth,
        timeout=30,
    )
    assert mounted.status_code == 201
    assert requests.head(f"{base}/{other}/blobs/{digest}", auth=auth, timeout=30).ok

    # A manifest naming a blob the repository lacks.
    missing = {"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": 1}
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest,
            "size": len(data),
        },
        "layers": [dict(missing, digest=_sha(b"absent"))],
    }
    refused = requests.put(
        f"{base}/{repo}/manifests/v1",
        data=json.dumps(manifest),
        headers={"Content-Type": OCI_MANIFEST},
        auth=auth,
        timeout=30,
    )
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"

    # Tags and catalog page with a Link to the next page.
    manifest["layers"] = []
    for tag in ["c", "a", "b"]:
        ok = requests.put(
            f"{base}/{repo}/manifests/{tag}",
            data=json.dumps(manifest),
            headers={"Content-Type": OCI_MANIFEST},
            auth=auth,
            timeout=30,
        )
        assert ok.status_code == 201, ok.text
    page = requests.get(f"{base}/{repo}/tags/list", params={"n": 2}, auth=auth, timeout=30)
    assert page.json() == {"name": repo, "tags": ["a", "b"]}
    assert page.headers["Link"] == f'</v2/{repo}/tags/list?n=2&last=b>; rel="next"'
    rest = requests.get(berth.url + page.headers["Link"][1:].split(">")[0], auth=auth, timeout=30)
    assert rest.json()["tags"] == ["c"] and "Link" not in rest.headers
    catalog = requests.get(f"{base}/_catalog", auth=auth, timeout=30).json()["repositories"]
    assert repo in catalog and other in catalog
    first = requests.get(f"{base}/_catalog", params={"n": 1}, auth=auth, timeout=30)
    assert len(first.json()["repositories"]) == 1 and "Link" in first.headers

    # Names outside the grammar.
    bad = requests.get(f"{base}/Team/Agent/tags/list", auth=auth, timeout=30)
    assert bad.status_code == 400 and bad.json()["errors"][0]["code"] == "NAME_INVALID"


def test_docker_schema2_manifests(skopeo, tmp_path):
    """skopeo converts to Docker's schema 2 on the way (so the digest is the new manifest's)."""
    layout = Layout(tmp_path / "src")
    src = layout.publish(layout.image({"hello": b"docker"}))
    repo = repo_name()
    skopeo.run(
        "copy",
        "--format",
        "v2s2",
        "--dest-creds",
        ROOT_CREDS,
        "--dest-tls-verify=false",
        src,
        skopeo.ref(f"{repo}:v1"),
    )
    raw = skopeo.inspect(f"{repo}:v1", "--raw").stdout
    assert json.loads(raw)["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    info = json.loads(skopeo.inspect(f"{repo}:v1").stdout)
    assert info["Digest"] == _sha(raw.encode())


@pytest.mark.skipif(shutil.which("buildah") is None, reason="buildah is not installed")
def test_buildah_image_pushed_by_buildah(skopeo, tmp_path):
    """An image built with buildah (from scratch, offline) and pushed by `buildah push`."""
    root = tmp_path / "buildah"
    buildah = [
        "buildah",
        "--root",
        str(root / "root"),
        "--runroot",
        str(root / "runroot"),
        "--storage-driver",
        "vfs",
    ]
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(tmp_path),
        "BUILDAH_ISOLATION": "chroot",
    }

    def run(*args: str) -> str:
        proc = subprocess.run(
            [*buildah, *args], capture_output=True, text=True, timeout=TIMEOUT, env=env
        )
        assert proc.returncode == 0, f"buildah {args}: {proc.stderr}"
        return proc.stdout.strip()

    (tmp_path / "hello").write_text("#!/bin/sh\necho hello\n")
    ctr = run("from", "--signature-policy", str(skopeo.policy), "scratch")
    run("copy", ctr, str(tmp_path / "hello"), "/hello")
    run("config", "--cmd", "/hello", "--arch", "amd64", "--os", "linux", ctr)
    image = run("commit", "--signature-policy", str(skopeo.policy), ctr, "berth-registry-test")
    repo = repo_name()
    run(
        "push",
        "--signature-policy",
        str(skopeo.policy),
        "--creds",
        ROOT_CREDS,
        "--tls-verify=false",
        image,
        skopeo.ref(f"{repo}:built"),
    )
    config = json.loads(skopeo.inspect(f"{repo}:built", "--config").stdout)
    assert config["config"]["Cmd"] == ["/hello"]
    assert config["architecture"] == "amd64"


def test_large_blobs_stream_past_the_body_limits(berth):
    """A blob larger than the edge's largest request body (100 MiB), sent chunked with no
    Content-Length, is streamed to disk and stored whole."""
    auth = (ACCESS_KEY_ID, SECRET_ACCESS_KEY)
    repo = repo_name()
    piece = hashlib.sha256(b"seed").digest() * (1 << 15)  # 1 MiB
    count = 101
    digest = hashlib.sha256()
    for _ in range(count):
        digest.update(piece)
    started = requests.post(f"{berth.url}/v2/{repo}/blobs/uploads/", auth=auth, timeout=30)
    assert started.status_code == 202
    put = requests.put(
        berth.url + started.headers["Location"],
        params={"digest": "sha256:" + digest.hexdigest()},
        data=(piece for _ in range(count)),
        auth=auth,
        timeout=TIMEOUT,
    )
    assert put.status_code == 201, put.text
    head = requests.head(
        f"{berth.url}/v2/{repo}/blobs/sha256:{digest.hexdigest()}", auth=auth, timeout=30
    )
    assert head.headers["Content-Length"] == str(count * len(piece))


def test_blob_cap_and_restart(berth_server, tmp_path):
    """`--registry-max-blob-mib` caps a blob (413 SIZE_INVALID, nothing kept); what was pushed
    survives a restart."""
    server = berth_server(name="registry", args=("--registry-max-blob-mib", "1"))
    auth = (ACCESS_KEY_ID, SECRET_ACCESS_KEY)
    base = f"{server.url}/v2"
    # Announced over the cap with `Expect: 100-continue` (as docker and curl send large bodies):
    # refused from the headers, before the client sends a byte of the body.
    digest = _sha(b"x" * ((1 << 20) + 1))
    url = urlsplit(server.url)
    host = url.netloc
    token = base64.b64encode(ROOT_CREDS.encode()).decode()
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(
            (
                f"POST /v2/team/capped/blobs/uploads/?digest={digest} HTTP/1.1\r\n"
                f"Host: {host}\r\nAuthorization: Basic {token}\r\n"
                f"Content-Length: {(1 << 20) + 1}\r\nExpect: 100-continue\r\n\r\n"
            ).encode()
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            assert chunk, answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer
    gone = requests.head(f"{base}/team/capped/blobs/{digest}", auth=auth, timeout=30)
    assert gone.status_code == 404
    # Exactly the cap is accepted.
    exact = b"y" * (1 << 20)
    ok = requests.post(
        f"{base}/team/capped/blobs/uploads/",
        params={"digest": _sha(exact)},
        data=exact,
        auth=auth,
        timeout=30,
    )
    assert ok.status_code == 201, ok.text

    skopeo = Skopeo(urlsplit(server.url).netloc, tmp_path)
    layout = Layout(tmp_path / "src")
    desc = layout.image({"hello": b"kept"})
    skopeo.push(layout.publish(desc), "team/kept:v1")
    server.stop()
    server = berth_server(
        data_dir=server.data_dir, name="registry", args=("--registry-max-blob-mib", "1")
    )
    skopeo.host = urlsplit(server.url).netloc
    info = json.loads(skopeo.inspect("team/kept:v1").stdout)
    assert info["Digest"] == desc["digest"]


def test_referrers(berth, skopeo, tmp_path):
    """OCI 1.1 referrers: an artifact naming a pushed image as its `subject` is listed for it."""
    auth = (ACCESS_KEY_ID, SECRET_ACCESS_KEY)
    base = f"{berth.url}/v2"
    repo = repo_name()
    layout = Layout(tmp_path / "src")
    image = layout.image({"hello": b"referred to"})
    skopeo.push(layout.publish(image), f"{repo}:v1")

    empty = b"{}"
    put = requests.post(
        f"{base}/{repo}/blobs/uploads/",
        params={"digest": _sha(empty)},
        data=empty,
        auth=auth,
        timeout=30,
    )
    assert put.status_code == 201
    sbom = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom+json",
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": _sha(empty),
            "size": 2,
        },
        "layers": [],
        "subject": {k: image[k] for k in ("mediaType", "digest", "size")},
        "annotations": {"org.example.kind": "sbom"},
    }
    body = json.dumps(sbom).encode()
    pushed = requests.put(
        f"{base}/{repo}/manifests/{_sha(body)}",
        data=body,
        headers={"Content-Type": OCI_MANIFEST},
        auth=auth,
        timeout=30,
    )
    assert pushed.status_code == 201, pushed.text
    assert pushed.headers["OCI-Subject"] == image["digest"]

    listed = requests.get(f"{base}/{repo}/referrers/{image['digest']}", auth=auth, timeout=30)
    assert listed.status_code == 200
    assert listed.headers["Content-Type"] == OCI_INDEX
    assert listed.json()["manifests"] == [
        {
            "mediaType": OCI_MANIFEST,
            "digest": _sha(body),
            "size": len(body),
            "artifactType": "application/vnd.example.sbom+json",
            "annotations": {"org.example.kind": "sbom"},
        }
    ]
    filtered = requests.get(
        f"{base}/{repo}/referrers/{image['digest']}",
        params={"artifactType": "application/other"},
        auth=auth,
        timeout=30,
    )
    assert filtered.json()["manifests"] == []
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    bad = requests.get(f"{base}/{repo}/referrers/sha256:nothex", auth=auth, timeout=30)
    assert bad.status_code == 400
