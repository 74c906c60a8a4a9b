"""A data dir reached through a symlink (`/var/lib/berth` -> `/data/berth`, a common way to put it
on another disk): the server starts, and its start-up probe agent, which runs in a sandbox and
reads its own code under the data dir, finds it. Before the server resolved the data dir, the
sandbox was handed paths through the symlink, which does not exist inside it, and the start failed
with "a probe agent cannot read ... No such file or directory"."""

from __future__ import annotations

from berth_harness import BerthServer


def test_a_data_dir_behind_a_symlink_starts_and_serves(tmp_path):
    real = tmp_path / "disk" / "berth"
    real.mkdir(parents=True)
    link = tmp_path / "berth-data"
    link.symlink_to(real)
    server = BerthServer(link, tmp_path / "berth.log")
    try:
        server.start()
        control = server.client("bedrock-agentcore-control")
        assert control.list_agent_runtimes()["agentRuntimes"] == []
        # Its files are in the real directory, reached through the link.
        assert (real / "berth.db").exists()
    finally:
        server.stop()
        server.reap_group()
