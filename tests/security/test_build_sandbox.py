"""Builds run in a sandbox: a hostile `setup.py` in the code package, run by pip at build time,
reaches nothing of the host, and requirement lines that reach outside the package fail clearly.

Everything goes through the real server: the package is uploaded, the runtime created with boto3,
and the outcome read from the version's `failureReason`.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from berth_harness import (
    SECRET_ACCESS_KEY,
    create_runtime,
    poll,
    runtime_args,
    upload_artifact,
    wait_status,
    zip_files,
)

# Builds run as uids from this range (BuildSandbox::default in crates/runtime/src/builder/confine.rs).
BUILD_UIDS = range(900_000, 900_000 + 4096)


def _hostile_setup(db_path: str, probe_path: str, sleep: int = 0) -> str:
    return f"""
import json, os, sys, time
r = {{}}
def attempt(name, f):
    try:
        r[name] = "ok:" + repr(f())[:300]
    except Exception as e:
        r[name] = "denied:" + type(e).__name__
attempt("write_etc", lambda: open({probe_path!r}, "w").write("x"))
attempt("read_shadow", lambda: open("/etc/shadow").read())
attempt("read_db", lambda: open({db_path!r}, "rb").read(64))
attempt("secret", lambda: os.environ.get("BERTH_SECRET_ACCESS_KEY"))
attempt("berth_vars", lambda: sorted(k for k in os.environ if k.startswith(("BERTH", "AWS"))))
time.sleep({sleep})
print("REPORT " + json.dumps(r, sort_keys=True), file=sys.stderr)
sys.exit(1)
"""


def _deploy(control, s3, files: dict, label: str) -> str:
    location = upload_artifact(s3, zip_files(files), label)
    return create_runtime(control, location)["agentRuntimeId"]


def _failure(control, runtime_id: str) -> str:
    resp = wait_status(control, runtime_id, "1", want=("CREATE_FAILED",))
    return resp.get("failureReason") or ""


def test_hostile_setup_py_reaches_nothing(berth, control, s3, tmp_path):
    probe = f"/etc/berth-build-probe-{os.getpid()}"
    db = berth.data_dir / "berth.db"
    assert db.exists(), "the server's database is where the test expects it"
    runtime_id = _deploy(
        control,
        s3,
        {
            "agent.py": "print('never runs')\n",
            "requirements.txt": "./hostile\n",
            "hostile/setup.py": _hostile_setup(str(db), probe),
        },
        "hostile-setup",
    )
    reason = _failure(control, runtime_id)
    line = next((l for l in reason.splitlines() if l.strip().startswith("REPORT ")), None)
    assert line, f"setup.py did not run or its output was not quoted: {reason}"
    report = json.loads(line.strip()[len("REPORT ") :])
    assert report["write_etc"].startswith("denied:"), report
    assert report["read_shadow"].startswith("denied:"), report
    assert report["read_db"].startswith("denied:"), report
    assert report["secret"] == "ok:None", report
    assert report["berth_vars"] == "ok:[]", report
    assert not os.path.exists(probe)
    assert SECRET_ACCESS_KEY not in reason
    assert "SQLite format" not in reason
    assert len(reason) < 8192, "the quoted output is bounded"


def test_requirement_line_naming_a_host_file_fails_clearly(berth, control, s3, tmp_path):
    secret = tmp_path / "root-only-file"
    secret.write_text("CANARY-root-only-7d41\n")
    secret.chmod(0o600)
    runtime_id = _deploy(
        control,
        s3,
        {"agent.py": "print('x')\n", "requirements.txt": f"six\n-r {secret}\n"},
        "host-file-req",
    )
    reason = _failure(control, runtime_id)
    assert f"-r {secret}" in reason and "outside the code package" in reason, reason
    assert "CANARY-root-only-7d41" not in reason


def _build_uid_pids(instance: str) -> list[int]:
    """Build processes of the server whose instance id is `instance`: a build uid, in a cgroup
    under `berth/<instance>/` (other servers on the host build at the same time)."""
    out = subprocess.run(["ps", "-eo", "pid=,uid="], capture_output=True, text=True, check=True)
    pids = []
    for row in out.stdout.splitlines():
        pid, uid = row.split()
        if int(uid) not in BUILD_UIDS:
            continue
        try:
            cgroups = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            continue
        if f"/berth/{instance}/" in cgroups:
            pids.append(int(pid))
    return pids


def test_killing_berth_kills_its_builds(berth_server, tmp_path):
    server = berth_server(name="killed")
    control = server.client("bedrock-agentcore-control")
    s3 = server.s3_client()
    probe = f"/etc/berth-build-probe-{os.getpid()}-kill"
    location = upload_artifact(
        s3,
        zip_files(
            {
                "agent.py": "print('x')\n",
                "requirements.txt": "./slow\n",
                "slow/setup.py": _hostile_setup("/nonexistent", probe, sleep=600),
            }
        ),
        "slow-build",
    )
    control.create_agent_runtime(**runtime_args(location))
    instance = (server.data_dir / "instance-id").read_text().strip()
    pids = poll(lambda: _build_uid_pids(instance), bool, timeout=180, what="a build process to run")
    server.kill()
    poll(
        lambda: [p for p in pids if os.path.exists(f"/proc/{p}")],
        lambda alive: not alive,
        timeout=20,
        what="the build's processes to die with berth",
    )
    assert not _build_uid_pids(instance)
