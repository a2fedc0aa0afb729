"""``[cluster]``: the node's name and its own state folder, and the lease rule
(docs/cluster.md, "Nodes" and "Leases and fencing")."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pipeline.config import load_settings, node_name
from pipeline.errors import ConfigError

PG = '[state]\nledger = "postgresql://leadpipe@db.example.com/leadpipe"\n'


def cfg(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "leadpipe.toml"
    path.write_text('[paths]\nstate = "state"\n' + text, encoding="utf-8")
    return path


def test_one_config_many_nodes_each_with_its_own_state_folder(tmp_path: Path) -> None:
    path = cfg(tmp_path, PG + '[cluster]\nnode = "from-config"\n')
    n1 = load_settings(path, {"LEADPIPE_NODE": "n1"})
    n2 = load_settings(path, {"LEADPIPE_NODE": "n2"})
    assert n1.paths.state == tmp_path / "state" / "nodes" / "n1"
    assert n2.paths.state == tmp_path / "state" / "nodes" / "n2"
    assert n1.cluster.shared_state == tmp_path / "state"
    assert n1.cluster.enabled
    assert load_settings(path, {}).cluster.node == "from-config"
    default = load_settings(cfg(tmp_path, PG), {}).cluster.node
    assert default == node_name("", {})
    assert socket.gethostname().startswith(default[:1])


def test_sqlite_keeps_one_node_and_its_state_folder_as_before(tmp_path: Path) -> None:
    s = load_settings(cfg(tmp_path, '[cluster]\nnode = "x"\n'), {"LEADPIPE_NODE": "n1"})
    assert s.paths.state == tmp_path / "state"
    assert not s.cluster.enabled
    # the API timeouts of a single node are not held to a lease they do not use
    load_settings(cfg(tmp_path, "[api]\nread_timeout = 300\n"), {})


def test_a_lease_shorter_than_a_heartbeat_and_a_request_is_refused(tmp_path: Path) -> None:
    path = cfg(
        tmp_path,
        PG + "[api]\nread_timeout = 30\nconnect_timeout = 5\n"
        "[cluster]\nheartbeat_seconds = 5\nlease_seconds = 40\n",
    )
    with pytest.raises(ConfigError) as err:
        load_settings(path, {"LEADPIPE_NODE": "n1"})
    (problem,) = err.value.problems
    assert problem.key == "cluster.lease_seconds"
    assert "5 + 5 + 30 = 40 s" in problem.message
    ok = cfg(tmp_path, PG + "[cluster]\nheartbeat_seconds = 5\nlease_seconds = 41\n")
    assert load_settings(ok, {"LEADPIPE_NODE": "n1"}).cluster.lease_seconds == 41


def test_a_node_name_must_be_a_folder_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(cfg(tmp_path, PG), {"LEADPIPE_NODE": "../etc"})
    assert err.value.problems[0].key == "cluster.node"
    with pytest.raises(ConfigError):
        load_settings(cfg(tmp_path, PG + "[cluster]\nshared_state = '/x'\n"), {})
