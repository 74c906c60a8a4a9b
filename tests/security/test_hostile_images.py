"""Hostile container images fail their build clearly and leave nothing behind (issue 17, acceptance 4).

Each image is written here as an OCI layout (Python's tarfile and raw tar headers), pushed with
the unmodified skopeo to Berth's registry and deployed by its ECR-style URI through boto3:

- a layer entry `../escape` (a path out of the layer),
- a symlink to `/` followed by a file written through it (an absolute link escaping the root),
- a layer whose gzip stream is garbage (the blob's digest itself is right),
- a layer whose content does not match the config's `rootfs.diff_ids` (a wrong digest),
- a GNU sparse entry claiming 10 GB (a decompression bomb),
- an image built for another platform.

Every version must end CREATE_FAILED with a `failureReason` naming the problem, and the layer
cache must hold nothing afterwards: no layer, no image record, no staging directory.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from berth_harness import ACCESS_KEY_ID, ACCOUNT, REGION, ROLE_ARN, SECRET_ACCESS_KEY, unique_name, wait_status

import images

TEN_GB = 10 * 1000**3


def tar_of(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for info, data in entries:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def file_entry(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    return info, data


def link_entry(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info, None


def octal(value: int, width: int) -> bytes:
    return f"{value:0{width - 1}o}".encode() + b"\0"


def sparse_bomb() -> bytes:
    """A GNU sparse file (type `S`) of 10 GB real size holding one 512-byte block at its end."""
    header = bytearray(512)
    header[0:9] = b"bomb.bin"
    header[100:108] = octal(0o644, 8)
    header[108:116] = octal(0, 8)
    header[116:124] = octal(0, 8)
    header[124:136] = octal(512, 12)  # bytes stored in the archive
    header[136:148] = octal(0, 12)
    header[156:157] = b"S"
    header[257:263] = b"ustar "
    header[263:265] = b" \0"
    header[386:398] = octal(TEN_GB - 512, 12)  # the one data segment's offset
    header[398:410] = octal(512, 12)  # and length
    header[483:495] = octal(TEN_GB, 12)  # the file's real size
    header[148:156] = b" " * 8
    header[148:156] = f"{sum(header):06o}".encode() + b"\0 "
    return bytes(header) + b"\xab" * 512 + b"\0" * 1024


def write_layout(root: Path, layers: list[bytes], diff_ids: list[str], arch: str = "amd64") -> Path:
    """An OCI image layout of gzip layers (`layers` already compressed) and a config naming
    `diff_ids`."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(data: bytes) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    config = blob(json.dumps({
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }).encode())
    manifest = blob(json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **blob(l)} for l in layers],
    }).encode())
    (root / "index.json").write_text(json.dumps({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest}],
    }))
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return root


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def good_layer() -> bytes:
    return tar_of([file_entry("hello.txt", b"hello\n")])


def cases() -> dict[str, tuple[list[bytes], list[str], str, str]]:
    """name -> (compressed layers, diff_ids, architecture, what failureReason must say)."""
    dotdot = tar_of([file_entry("../escape", b"out of the layer\n")])
    through_link = tar_of([link_entry("evil", "/"), file_entry("evil/tmp/pwned", b"through a link\n")])
    corrupt = b"\x1f\x8b\x08\x00" + bytes(range(256)) * 8
    bomb = sparse_bomb()
    good = good_layer()
    return {
        "dotdot": ([gz(dotdot)], [sha(dotdot)], "amd64", "unsafe layer entry"),
        "abslink": ([gz(through_link)], [sha(through_link)], "amd64", "unsafe layer entry"),
        "corrupt": ([corrupt], [sha(b"whatever")], "amd64", "corrupt"),
        "diffid": ([gz(good)], [sha(b"not this layer")], "amd64", "digest mismatch"),
        "bomb": ([gz(bomb)], [sha(bomb)], "amd64", "exceeds the limit"),
        "platform": ([gz(good)], [sha(good)], "arm64", "no manifest for linux/amd64"),
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from berth_harness import BerthServer

    root = tmp_path_factory.mktemp("hostile-images")
    srv = BerthServer(root / "data", root / "berth.log")
    srv.start()
    yield srv
    srv.stop()
    srv.reap_group()


@pytest.mark.parametrize("case", list(cases()))
def test_a_hostile_image_fails_its_build_clearly_and_leaves_nothing(server, case, tmp_path):
    layers, diff_ids, arch, reason = cases()[case]
    layout = write_layout(tmp_path / "oci", layers, diff_ids, arch)
    host = server.url.split("://", 1)[1].rstrip("/")
    auth = images.authfile(tmp_path / "auth.json", host, ACCESS_KEY_ID, SECRET_ACCESS_KEY)
    images.skopeo_copy(f"oci:{layout}", f"docker://{host}/hostile/{case}:v1", dest_auth=auth)

    control = server.client("bedrock-agentcore-control")
    created = control.create_agent_runtime(
        agentRuntimeName=unique_name(f"hostile_{case}"),
        agentRuntimeArtifact={"containerConfiguration": {
            "containerUri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/hostile/{case}:v1"}},
        roleArn=ROLE_ARN,
        networkConfiguration={"networkMode": "PUBLIC"},
    )
    failed = wait_status(control, created["agentRuntimeId"], "1", want=("CREATE_FAILED",), timeout=300)
    assert reason in failed["failureReason"].lower(), failed["failureReason"]

    cache = server.data_dir / "images"
    left = [p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.name != "layers" and p.name != "sha256"
            and p.name not in ("images", "tmp")]
    assert left == [], f"left behind by {case}: {left}"
    assert not Path("/tmp/pwned").exists() or Path("/tmp/pwned").read_bytes() != b"through a link\n"
