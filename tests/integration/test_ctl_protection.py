"""stemedb-ctl assert and import against a node with the production defaults of every
protection layer. The client computes the proof of work that a 428 requests, waits out
a short Retry-After, and reports a long one."""

import json
import os
import subprocess

import pytest

from node import PROTECTION_OFF, Node, build_dir
from test_ctl import keygen, run_ctl
from test_import import import_args, summary

PRODUCTION = {name: "true" for name in PROTECTION_OFF}


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = Node(tmp_path_factory.mktemp("ctl-protection"), env=PRODUCTION).start()
    yield n
    assert n.stop() == 0, n.log()


def test_assert_solves_proof_of_work(node, subject, tmp_path):
    key = tmp_path / "new.key"
    keygen(key)
    result = run_ctl("assert", "--key", key, "--subject", subject, "--predicate", "capital",
                     "--text", "Sucre", "--confidence", "0.8", "--source-class", "expert",
                     url=node.base_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1] == "created"
    assert "proof of work with 16 leading zero bits" in result.stderr


def test_import_solves_proof_of_work(node, tmp_path):
    records = [{"id": f"r{i}", "name": f"name {i}"} for i in range(40)]
    data = tmp_path / "items.json"
    data.write_text(json.dumps(records))
    mapping = tmp_path / "items.mapping.json"
    mapping.write_text(json.dumps({
        "subject": "item/{id}",
        "timestamp": 1700000000,
        "predicates": [{"predicate": "name", "field": "name", "type": "text"}],
    }))
    key = tmp_path / "importer.key"
    keygen(key)
    ds = {"mapping": mapping, "key": key, "data": data}
    result = run_ctl(*import_args(ds, "--batch-size", "10"), url=node.base_url)
    assert result.returncode == 0, f"{result.stdout}{result.stderr}"
    assert summary(result.stdout) == (40, 0, 0, 0), result.stdout
    assert "proof of work" in result.stderr


def ban(node, agent, seconds):
    env = dict(os.environ, STEMEDB_RUN_DIR=os.path.join(node.data_dir, "run"))
    result = subprocess.run(
        [os.path.join(build_dir(), "bin", "stemedb-ctl"), "breakers", "ban", agent,
         "--duration", str(seconds), "--reason", "test ban"],
        capture_output=True, text=True, timeout=30, env=env)
    assert result.returncode == 0, result.stderr


def test_assert_waits_out_short_ban(node, subject, tmp_path):
    key = tmp_path / "paused.key"
    ban(node, keygen(key), 2)
    result = run_ctl("assert", "--key", key, "--subject", subject, "--predicate", "p",
                     "--text", "x", url=node.base_url)
    assert result.returncode == 0, result.stderr
    assert "waiting" in result.stderr
    assert result.stdout.split()[1] == "created"


def test_assert_reports_ban(node, subject, tmp_path):
    key = tmp_path / "banned.key"
    ban(node, keygen(key), 3600)

    # A Retry-After of an hour is beyond what the client waits for, so it reports.
    result = run_ctl("assert", "--key", key, "--subject", subject, "--predicate", "p",
                     "--text", "x", url=node.base_url)
    assert result.returncode == 1
    assert "circuit_banned" in result.stderr
