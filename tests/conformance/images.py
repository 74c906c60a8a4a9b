"""Container images for the container-agent tests, built on this machine without Docker Hub.

- The base is Debian bookworm (minbase plus Python 3) made by debootstrap from Debian's archive
  (`scripts/debian-base.sh`, cached in `.cache/debian-base`), imported with buildah.
- The agent image follows the starter toolkit's Dockerfile steps: a working dir, the packages
  installed from the package index (`pip download` into `.cache/image-wheels` once, so rebuilds
  need no network), a non-root user, `EXPOSE 8080 8000`, and
  `CMD ["opentelemetry-instrument", "python", "-m", "agent"]`.
- Images are built with Debian's `buildah` into a storage of their own (`.cache/buildah`) and
  leave it as OCI layouts, which the tests push with `skopeo copy`.

Everything here needs root (debootstrap, buildah's storage); the suite runs as root.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from berth_harness import REPO

CACHE = REPO / ".cache"
STORAGE = CACHE / "buildah"
WHEELS = CACHE / "image-wheels"
BASE_TAG = "localhost/berth-test/debian-base:bookworm"

#: What the agent image installs from the package index, pinned like the suite's own clients
#: (tests/conformance/requirements.txt constrains every transitive version it also pins).
IMAGE_REQUIREMENTS = [
    "bedrock-agentcore==1.25.0",
    "opentelemetry-distro==0.66b1",
    "opentelemetry-exporter-otlp-proto-http==1.45.1",
]

#: The starter toolkit's Dockerfile steps, on the Debian base instead of a Docker Hub image.
DOCKERFILE = """\
FROM {base}
WORKDIR /app
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY wheels /tmp/wheels
COPY requirements.txt requirements.txt
RUN pip install --no-index --find-links /tmp/wheels -r requirements.txt && rm -rf /tmp/wheels
ENV AWS_REGION=us-east-1 DOCKER_CONTAINER=1
# Create non-root user
RUN useradd -m -u 1000 bedrock_agentcore
USER bedrock_agentcore
EXPOSE 8080
EXPOSE 8000
COPY agent.py agent.py
CMD {cmd}
"""

#: The starter toolkit's command.
STARTER_CMD = ["opentelemetry-instrument", "python", "-m", "agent"]


def run(*cmd, **kw) -> str:
    """Runs a tool; its failure fails the test with its output."""
    p = subprocess.run(
        [str(c) for c in cmd],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        **kw,
    )
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p.stdout.strip()


def buildah(*args) -> str:
    # The run root (locks, container state) belongs to one storage: two checkouts sharing one
    # confuse buildah ("does not match our static dir"), so it is named after the storage.
    tag = hashlib.sha256(str(STORAGE).encode()).hexdigest()[:12]
    runroot = Path(tempfile.gettempdir()) / f"berth-test-buildah-run-{tag}"
    return run(
        "buildah",
        "--root",
        STORAGE,
        "--runroot",
        runroot,
        "--storage-driver",
        "overlay",
        *args,
    )


def _has_image(tag: str) -> bool:
    try:
        buildah("inspect", "--type", "image", tag)
        return True
    except AssertionError:
        return False


def debian_base() -> str:
    """The Debian base image's tag, imported once from the debootstrap tarball."""
    if _has_image(BASE_TAG):
        return BASE_TAG
    tarball = run(REPO / "scripts" / "debian-base.sh", CACHE / "debian-base").splitlines()[-1]
    ctr = buildah("from", "scratch")
    try:
        buildah("add", ctr, tarball, "/")
        buildah(
            "config",
            "--env",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--cmd",
            "/bin/bash",
            ctr,
        )
        buildah("commit", "--rm", ctr, BASE_TAG)
    finally:
        try:
            buildah("rm", ctr)
        except AssertionError:
            pass  # `commit --rm` removed it already
    return BASE_TAG


def wheels() -> Path:
    """The agent image's packages, downloaded from the package index once."""
    marker = WHEELS / ".complete"
    if marker.exists():
        return WHEELS
    WHEELS.mkdir(parents=True, exist_ok=True)
    run(
        REPO / ".venv" / "bin" / "pip",
        "download",
        "--quiet",
        "--dest",
        WHEELS,
        "--constraint",
        REPO / "tests" / "conformance" / "requirements.txt",
        *IMAGE_REQUIREMENTS,
    )
    marker.write_text("\n".join(IMAGE_REQUIREMENTS))
    return WHEELS


def build_agent_image(agent_source: str, tag: str, out: Path, cmd: list[str] = STARTER_CMD) -> Path:
    """Builds the starter-toolkit-style image running `agent_source` as `agent.py` (with `cmd`,
    the starter toolkit's by default), tagged `tag` in the build storage, and writes it as an
    OCI layout at `out`."""
    _build(agent_source, tag, cmd)
    if out.exists():
        shutil.rmtree(out)
    buildah("push", tag, f"oci:{out}")
    return out


def prepare() -> None:
    """Makes what every image build starts from: the Debian base, the wheels, and (with buildah's
    layer cache) the layers below `agent.py`, which every agent image shares."""
    _build("", "localhost/berth-test/prepared:latest", STARTER_CMD)


def _build(agent_source: str, tag: str, cmd: list[str]) -> None:
    base = debian_base()
    with tempfile.TemporaryDirectory(prefix="berth-image-ctx-") as ctx:
        ctx = Path(ctx)
        (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=base, cmd=json.dumps(cmd)))
        (ctx / "requirements.txt").write_text("\n".join(IMAGE_REQUIREMENTS) + "\n")
        (ctx / "agent.py").write_text(agent_source)
        shutil.copytree(wheels(), ctx / "wheels", ignore=shutil.ignore_patterns(".complete"))
        buildah("build", "--layers", "--isolation", "chroot", "-t", tag, ctx)


def authfile(path: Path, host: str, user: str, password: str) -> Path:
    """A containers auth file (what `skopeo login` writes) for one registry."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    path.chmod(0o600)
    return path


def skopeo_copy(src: str, dest: str, *, dest_auth: Path | None = None, src_auth: Path | None = None) -> str:
    """`skopeo copy` (unmodified) between transports; plain HTTP for loopback registries."""
    args = ["skopeo", "copy", "--quiet"]
    if src.startswith("docker://"):
        args.append("--src-tls-verify=false")
    if dest.startswith("docker://"):
        args.append("--dest-tls-verify=false")
    if src_auth:
        args += ["--src-authfile", str(src_auth)]
    if dest_auth:
        args += ["--dest-authfile", str(dest_auth)]
    return run(*args, src, dest)


if __name__ == "__main__":
    # `python tests/conformance/images.py`: what every image build starts from (see `prepare`),
    # made ahead of the tests; scripts/test.sh runs it in its setup phase, in the background while
    # the Rust code builds. Idempotent: everything it makes is cached.
    prepare()
    print("images: the Debian base, the wheels and the shared layers are ready")
