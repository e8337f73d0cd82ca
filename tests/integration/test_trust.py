"""Agents and trust against a real node and gateway: GET /v1/agents/{agent_id},
POST /v1/admin/trust/outcome with its arithmetic and decay, the signed outcome records
in the WAL, and the authority lens weighing signers by trust."""

import hashlib
import json
import os
import shutil
import subprocess
import time

import nacl.signing
import pytest

from archiving import Archiver, active_base, archive_node, archived_chain, ctl, wait_for, \
    write_batches
from claims import BASE_TIME, agent_id, boolean, expected_hash, signed
from node import Node, build_dir
from test_gateway import Gateway

OPERATOR_SEED = bytes([7]) * 32
OTHER_SEED = bytes([8]) * 32


def public_key(seed):
    return nacl.signing.SigningKey(seed).verify_key.encode().hex()


def write_key_file(directory, seed, mode=0o600):
    """Write a key file in the `stemedb-ctl keygen` format and return its path."""
    path = os.path.join(str(directory), f"operator-{seed[0]}.key")
    with open(path, "w", encoding="utf-8") as key_file:
        json.dump({"agent_id": public_key(seed), "seed": seed.hex()}, key_file)
    os.chmod(path, mode)
    return path


def authority_env(seed=OPERATOR_SEED):
    return {"STEMEDB_TRUST_AUTHORITY_KEYS": public_key(seed)}


@pytest.fixture(scope="module")
def trust_node(tmp_path_factory):
    node = Node(tmp_path_factory.mktemp("trust-node"), env=authority_env()).start()
    yield node
    assert node.stop() == 0, node.log()


@pytest.fixture(scope="module")
def gateway(trust_node, tmp_path_factory):
    key_file = write_key_file(tmp_path_factory.mktemp("trust-key"), OPERATOR_SEED)
    gw = Gateway(trust_node, token="trust-test-token",
                 env={"STEMEDB_ADMIN_SIGNING_KEY_FILE": key_file}).start()
    yield gw
    gw.stop()


def record(gateway, agent, outcome, **extra):
    response = gateway.post("/v1/admin/trust/outcome",
                            json={"agent_id": agent, "outcome": outcome, **extra})
    assert response.status_code in (200, 201), response.text
    return response.json()


def test_agent_counts_and_span(trust_node):
    agent = agent_id(31)
    writes = [signed(31, f"agents/{i}", "p", boolean(True), timestamp=BASE_TIME + 10 * i)
              for i in range(4)]
    response = trust_node.post("/v1/assert/batch", json={"assertions": writes})
    assert response.json()["rejected"] == 0, response.text

    body = trust_node.get(f"/v1/agents/{agent}").json()

    assert body["agent_id"] == agent, body
    assert body["assertion_count"] == 4, body
    assert body["assertion_count_complete"] is True, body
    assert body["first_seen"] == BASE_TIME, body
    assert body["last_seen"] == BASE_TIME + 30, body
    assert body["trust"] == pytest.approx(0.5), body


def test_trust_accurate_raises_by_005(gateway, trust_node):
    agent = agent_id(41)

    body = record(gateway, agent, "accurate", note="label matched the regulator")

    assert body["status"] == "created", body
    assert body["trust"] == pytest.approx(0.55, abs=1e-6), body
    agent_body = trust_node.get(f"/v1/agents/{agent}").json()
    assert agent_body["trust"] == pytest.approx(0.55, abs=1e-6), agent_body
    assert agent_body["trust_outcomes"]["accurate"] == 1, agent_body
    assert agent_body["assertion_count"] == 0, agent_body


def test_trust_inaccurate_lowers_by_010(gateway):
    body = record(gateway, agent_id(42), "inaccurate")

    assert body["trust"] == pytest.approx(0.40, abs=1e-6), body


def test_trust_decays_toward_half(gateway):
    month_ago = int(time.time()) - 30 * 86400

    body = record(gateway, agent_id(43), "inaccurate", timestamp=month_ago)

    # 0.40 is 0.10 below 0.5; after one 30-day half-life it is 0.05 below.
    assert body["trust"] == pytest.approx(0.45, abs=1e-4), body


def test_trust_clamps_at_zero(gateway):
    agent = agent_id(44)
    now = int(time.time())
    for i in range(7):
        body = record(gateway, agent, "inaccurate", timestamp=now - 7 + i)

    assert body["trust"] == pytest.approx(0.0, abs=1e-4), body


def test_trust_outcome_is_idempotent(gateway, trust_node):
    agent = agent_id(45)
    first = record(gateway, agent, "accurate", timestamp=int(time.time()))
    again = gateway.post("/v1/admin/trust/outcome",
                         json={"agent_id": agent, "outcome": "accurate",
                               "timestamp": first["timestamp"]})

    assert again.status_code == 200, again.text
    assert again.json()["status"] == "exists", again.text
    assert again.json()["outcome_id"] == first["outcome_id"], again.text
    assert trust_node.get(f"/v1/agents/{agent}").json()["trust_outcomes"]["accurate"] == 1


def test_authority_lens_uses_trust(gateway, trust_node, subject):
    trusted, doubted = 51, 52
    now = int(time.time())
    for i in range(3):
        record(gateway, agent_id(trusted), "accurate", timestamp=now - 3 + i)
        record(gateway, agent_id(doubted), "inaccurate", timestamp=now - 3 + i)
    claims = [signed(doubted, subject, "safe", boolean(False), confidence=0.9,
                     source_class="clinical", timestamp=BASE_TIME),
              signed(trusted, subject, "safe", boolean(True), confidence=0.8,
                     source_class="clinical", timestamp=BASE_TIME)]
    response = trust_node.post("/v1/assert/batch", json={"assertions": claims})
    assert response.json()["rejected"] == 0, response.text

    body = trust_node.get("/v1/query", params={"subject": subject, "predicate": "safe",
                                              "lens": "authority", "decay": "false"}).json()

    assert body["winner"]["hash"] == expected_hash(claims[1]), body


@pytest.mark.parametrize("payload, field", [
    ({"agent_id": "12", "outcome": "accurate"}, "agent_id"),
    ({"agent_id": "ab" * 32, "outcome": "maybe"}, "outcome"),
    ({"agent_id": "ab" * 32}, "outcome"),
    ({"agent_id": "ab" * 32, "outcome": "accurate", "note": 5}, "note"),
    ({"agent_id": "ab" * 32, "outcome": "accurate", "note": "x" * 1025}, "note"),
    ({"agent_id": "ab" * 32, "outcome": "accurate", "timestamp": -1}, "timestamp"),
    ({"agent_id": "ab" * 32, "outcome": "accurate", "extra": 1}, None),
])
def test_trust_outcome_hostile_body(gateway, payload, field):
    response = gateway.post("/v1/admin/trust/outcome", json=payload)

    assert response.status_code == 400, response.text
    if field is not None:
        assert response.json()["error"]["field"] == field, response.text


def test_trust_outcome_needs_admin_token(gateway):
    response = gateway.post("/v1/admin/trust/outcome", admin=False,
                            json={"agent_id": "ab" * 32, "outcome": "accurate"})

    assert response.status_code == 401, response.text


def test_trust_outcome_id_is_record_id(gateway):
    agent = agent_id(46)
    timestamp = int(time.time())
    body = record(gateway, agent, "inaccurate", note="wrong dose", timestamp=timestamp)

    canonical = (bytes([0x07, 0x01]) + bytes.fromhex(agent) + bytes([0])
                 + timestamp.to_bytes(8, "little") + len(b"wrong dose").to_bytes(2, "little")
                 + b"wrong dose")
    assert body["outcome_id"] == hashlib.blake2b(canonical, digest_size=32).hexdigest(), body


def test_trust_outcome_replays_from_wal(tmp_path):
    node = Node(tmp_path / "node", env=authority_env()).start()
    key_file = write_key_file(tmp_path, OPERATOR_SEED)
    gw = Gateway(node, env={"STEMEDB_ADMIN_SIGNING_KEY_FILE": key_file}).start()
    agent = agent_id(61)
    try:
        record(gw, agent, "inaccurate", note="retracted", timestamp=int(time.time()) - 60)
        record(gw, agent, "accurate", timestamp=int(time.time()))
    finally:
        gw.stop()
    assert node.stop() == 0, node.log()

    # Without its RocksDB directory the node rebuilds everything from the WAL.
    shutil.rmtree(os.path.join(node.data_dir, "db"))
    node.start()
    try:
        body = node.get(f"/v1/agents/{agent}").json()
        assert body["trust_outcomes"]["accurate"] == 1, body
        assert body["trust_outcomes"]["inaccurate"] == 1, body
    finally:
        assert node.stop() == 0, node.log()


def test_trust_outcome_point_in_time_restore(tmp_path):
    node = archive_node(tmp_path / "node", **authority_env()).start()
    key_file = write_key_file(tmp_path, OPERATOR_SEED)
    gw = Gateway(node, env={"STEMEDB_ADMIN_SIGNING_KEY_FILE": key_file}).start()
    archive = tmp_path / "archive"
    archive.mkdir()
    archiver = Archiver(node.data_dir, archive_dir=archive).start()
    agent = agent_id(63)
    try:
        backup = tmp_path / "backup"
        result = ctl("backup", "--dest", str(backup), "--data-dir", node.data_dir,
                     "--socket", os.path.join(node.data_dir, "run", "api.sock"))
        assert result.returncode == 0, result.stderr
        record(gw, agent, "accurate", timestamp=int(time.time()) - 10)
        time.sleep(1.1)
        until = time.time()
        time.sleep(1.1)
        record(gw, agent, "inaccurate", timestamp=int(time.time()))
        # Fill more than two segments, so the one holding the outcomes is sealed.
        write_batches(node, 0, 30, threads=4, tag="trust-pitr")
        sealed_end = active_base(node)
        wait_for(lambda: archived_chain(archive) >= sealed_end, 60, "sealed segments archived")
    finally:
        archiver.stop()
        gw.stop()
        node.kill()

    data = tmp_path / "pitr"
    result = ctl("restore", "--backup", str(backup), "--data-dir", str(data),
                 "--wal-archive", str(archive), "--until", f"{until:.3f}")
    assert result.returncode == 0, f"restore exit {result.returncode}:\n{result.stdout}{result.stderr}"

    restored = Node(data).start()
    try:
        body = restored.get(f"/v1/agents/{agent}").json()
        assert body["trust_outcomes"]["accurate"] == 1, body
        assert body["trust_outcomes"]["inaccurate"] == 0, body
    finally:
        assert restored.stop() == 0, restored.log()


def test_trust_outcome_without_signing_key(trust_node):
    gw = Gateway(trust_node, env={"STEMEDB_ADMIN_SIGNING_KEY_FILE": ""}).start()
    try:
        response = gw.post("/v1/admin/trust/outcome",
                           json={"agent_id": "ab" * 32, "outcome": "accurate"})
    finally:
        gw.stop()

    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "signing_key_missing", response.text
    assert "STEMEDB_ADMIN_SIGNING_KEY_FILE" in response.json()["error"]["message"]


def test_trust_outcome_unknown_signer(trust_node, tmp_path):
    gw = Gateway(trust_node, env={
        "STEMEDB_ADMIN_SIGNING_KEY_FILE": write_key_file(tmp_path, OTHER_SEED)}).start()
    agent = agent_id(62)
    try:
        response = gw.post("/v1/admin/trust/outcome",
                           json={"agent_id": agent, "outcome": "accurate"})
    finally:
        gw.stop()

    assert response.status_code == 500, response.text
    assert response.json()["error"]["code"] == "trust_outcome_rejected", response.text
    assert "STEMEDB_TRUST_AUTHORITY_KEYS" in response.json()["error"]["message"]
    assert trust_node.get(f"/v1/agents/{agent}").status_code == 404


@pytest.mark.parametrize("mode, needle", [
    (0o644, "chmod 600"),
    (None, "cannot be read"),
])
def test_gateway_rejects_bad_key_file(trust_node, tmp_path, mode, needle):
    path = write_key_file(tmp_path, OPERATOR_SEED, mode or 0o600)
    if mode is None:
        os.unlink(path)
    gw = Gateway(trust_node, env={"STEMEDB_ADMIN_SIGNING_KEY_FILE": path})

    result = subprocess.run([os.path.join(build_dir(), "bin", "stemedb-gateway")], env=gw.environment(), capture_output=True,
                            text=True, timeout=10)

    assert result.returncode == 2, result.stderr
    assert needle in result.stderr, result.stderr


def test_node_rejects_bad_authority_key(tmp_path):
    node = Node(tmp_path / "node", env={"STEMEDB_TRUST_AUTHORITY_KEYS": "abc"})

    result = subprocess.run([os.path.join(build_dir(), "bin", "stemedb-api")], env=node.environment(), capture_output=True,
                            text=True, timeout=10)

    assert result.returncode == 2, result.stderr
    assert "STEMEDB_TRUST_AUTHORITY_KEYS" in result.stderr, result.stderr


@pytest.mark.parametrize("path, status", [
    ("/v1/agents/xyz", 400),
    ("/v1/agents/" + "cd" * 32, 404),
])
def test_agent_hostile_path(trust_node, path, status):
    response = trust_node.get(path)

    assert response.status_code == status, response.text
