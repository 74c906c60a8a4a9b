"""Files at rest (issue 10 item 6): the data dir is 0700; the database (+ -wal/-shm), the root
secret, the lock and the agent logs are 0600, from the start and fixed on an existing data dir; a
`--store` outside the data dir gets the same; no sandbox can read any of them.
"""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path

import pytest
from berth_harness import deploy_agent, invoke_json, new_session_id, runtime_arn

pytestmark = pytest.mark.build


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def companions(db: Path) -> list[Path]:
    return [p for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists()]


def read_as_agent(server, runtime: dict, path: Path) -> dict:
    """What the probe agent gets when it opens `path` inside its sandbox."""
    data = server.client("bedrock-agentcore")
    answer = invoke_json(
        data, runtime_arn(runtime["agentRuntimeId"]), new_session_id("rest"),
        {"op": "read", "path": str(path)},
    )
    return answer["result"]


def test_a_fresh_data_dir_and_an_outside_store_are_private_and_unreadable_to_agents(
    berth_server, tmp_path
):
    data_dir = tmp_path / "fresh"
    store_dir = tmp_path / "elsewhere" / "db"  # made by Berth
    db = store_dir / "berth.db"
    server = berth_server(data_dir=data_dir, args=("--store", f"sqlite://{db}"))
    control, s3 = server.client("bedrock-agentcore-control"), server.s3_client()
    runtime = deploy_agent(control, s3, "probe")

    assert mode(data_dir) == 0o700
    assert mode(store_dir) == 0o700
    files = companions(db)
    assert Path(f"{db}-wal") in files and Path(f"{db}-shm") in files, files
    for path in files:
        assert mode(path) == 0o600, f"{path}: {oct(mode(path))}"
    assert not (data_dir / "berth.db").exists()
    for name in ("berth.lock",):
        assert mode(data_dir / name) == 0o600
    assert mode(data_dir / "logs") == 0o700

    # An agent (another uid, the data dir hidden) cannot read the store, the lock or its dir.
    for path in (db, Path(f"{db}-wal"), data_dir / "berth.lock", data_dir / "logs"):
        got = read_as_agent(server, runtime, path)
        assert got["ok"] is False, f"agent read {path}: {got}"


def test_an_existing_data_dir_with_loose_modes_is_fixed_at_start(berth_server, tmp_path):
    data_dir = tmp_path / "old"
    server = berth_server(data_dir=data_dir, name="old")
    server.stop()
    # As an older Berth (or a careless copy) left it.
    loose = [data_dir / "berth.db", *companions(data_dir / "berth.db")]
    for path in [data_dir, data_dir / "logs"]:
        path.chmod(0o755)
    for path in [*loose, data_dir / "berth.lock"]:
        path.chmod(0o644)
    (data_dir / "logs" / "rt").mkdir(exist_ok=True)
    kept = data_dir / "logs" / "rt" / "s.log"
    kept.write_text("agent output")
    kept.chmod(0o644)
    secret = data_dir / "credentials.json"
    secret.write_text(json.dumps({"access_key_id": "BKIAEXAMPLEEXAMPLE12", "secret_access_key": "x" * 40}))
    secret.chmod(0o644)

    server.start()
    assert mode(data_dir) == 0o700
    for path in [*companions(data_dir / "berth.db"), data_dir / "berth.lock", secret, kept]:
        assert mode(path) == 0o600, f"{path}: {oct(mode(path))}"
    assert mode(data_dir / "logs") == 0o700
    assert mode(data_dir / "logs" / "rt") == 0o700
    # The database still works after its modes changed under it.
    with sqlite3.connect(f"file:{data_dir / 'berth.db'}?mode=ro", uri=True) as c:
        assert c.execute("select count(*) from sqlite_master").fetchone()[0] > 0
