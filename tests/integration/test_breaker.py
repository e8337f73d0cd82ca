"""Per-agent circuit breakers against a real node: failures open the breaker, the open
period ends in half-open, one success closes it, and admins list, ban and reset it
through the gateway and stemedb-ctl. Open state survives a restart."""

import json
import os
import re
import subprocess
import time

import pytest

from claims import agent_id, boolean, signed, with_changes
from node import Node, build_dir
from test_gateway import Gateway

OPEN_SECONDS = 2
BREAKER_ON = {
    "STEMEDB_CIRCUIT_BREAKER_ENABLED": "true",
    "STEMEDB_CIRCUIT_BREAKER_FAILURES": "5",
    "STEMEDB_CIRCUIT_BREAKER_WINDOW_SECONDS": "60",
    "STEMEDB_CIRCUIT_BREAKER_OPEN_SECONDS": str(OPEN_SECONDS),
}
TOKEN = "breaker-test-token"


def bad_signature(agent, subject, predicate):
    """Return an assertion whose body no longer matches its signature (a 422)."""
    claim = signed(agent, subject, predicate, boolean(True))
    return with_changes(claim, confidence=0.123)


def metric(node, name, labels=""):
    text = node.get("/metrics").text
    match = re.search(r"^%s%s (\S+)$" % (re.escape(name), re.escape(labels)), text, re.M)
    assert match is not None, f"no series {name}{labels}"
    return float(match.group(1))


def open_breaker(node, agent, subject):
    for i in range(5):
        response = node.post("/v1/assert", json=bad_signature(agent, subject, f"bad{i}"))
        assert response.status_code == 422, response.text


def ctl(node, *args):
    env = dict(os.environ, STEMEDB_RUN_DIR=os.path.join(node.data_dir, "run"))
    result = subprocess.run([os.path.join(build_dir(), "bin", "stemedb-ctl"), "breakers", *args],
                            capture_output=True, text=True, timeout=30, env=env)
    return result


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path / "node", env=BREAKER_ON).start()
    yield n
    if n.process is not None:
        n.kill()


def test_failures_open_then_success_closes(node, subject):
    agent = 81
    rejected_before = metric(node, "stemedb_requests_rejected_total", '{reason="circuit_open"}')
    open_breaker(node, agent, subject)

    response = node.post("/v1/assert", json=signed(agent, subject, "good", boolean(True)))
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "circuit_open"
    assert response.headers["x-circuit-breaker-state"] == "OPEN"
    assert 1 <= int(response.headers["Retry-After"]) <= OPEN_SECONDS
    assert metric(node, "stemedb_circuit_breakers_open") == 1
    assert metric(node, "stemedb_circuit_breaker_state", '{state="OPEN"}') == 1
    status = node.get("/v1/admission/status", params={"agent_id": agent_id(agent)}).json()
    assert status["circuit_breaker"]["state"] == "OPEN"
    assert status["circuit_breaker"]["recent_failures"] == 5
    assert status["circuit_breaker"]["banned"] is False
    assert metric(node, "stemedb_requests_rejected_total",
                  '{reason="circuit_open"}') == rejected_before + 1

    # Reads that name the agent are rejected too; other agents are not.
    response = node.get("/v1/health", headers={"X-Agent-Id": agent_id(agent)})
    assert response.status_code == 200
    response = node.get(f"/v1/agents/{agent_id(agent)}", headers={"X-Agent-Id": agent_id(agent)})
    assert response.status_code == 429
    response = node.post("/v1/assert", json=signed(82, subject, "other", boolean(True)))
    assert response.status_code == 201, response.text

    time.sleep(OPEN_SECONDS + 0.2)
    assert metric(node, "stemedb_circuit_breaker_state", '{state="HALF_OPEN"}') == 1
    response = node.post("/v1/assert", json=signed(agent, subject, "good", boolean(True)))
    assert response.status_code == 201, response.text
    assert metric(node, "stemedb_circuit_breakers_open") == 0
    response = node.post("/v1/assert", json=signed(agent, subject, "good2", boolean(True)))
    assert response.status_code == 201, response.text


def test_half_open_failure_reopens(node, subject):
    agent = 83
    open_breaker(node, agent, subject)
    time.sleep(OPEN_SECONDS + 0.2)
    response = node.post("/v1/assert", json=bad_signature(agent, subject, "again"))
    assert response.status_code == 422, response.text
    response = node.post("/v1/assert", json=signed(agent, subject, "good", boolean(True)))
    assert response.status_code == 429, response.text


def test_four_failures_keep_closed(node, subject):
    agent = 84
    for i in range(4):
        assert node.post("/v1/assert",
                         json=bad_signature(agent, subject, f"b{i}")).status_code == 422
    response = node.post("/v1/assert", json=signed(agent, subject, "good", boolean(True)))
    assert response.status_code == 201, response.text


def test_open_breaker_survives_restart(tmp_path, subject):
    env = dict(BREAKER_ON, STEMEDB_CIRCUIT_BREAKER_OPEN_SECONDS="600")
    node = Node(tmp_path / "node", env=env).start()
    try:
        open_breaker(node, 85, subject)
        assert node.stop() == 0, node.log()
        node.start()
        response = node.post("/v1/assert", json=signed(85, subject, "good", boolean(True)))
        assert response.status_code == 429, response.text
        assert response.json()["error"]["code"] == "circuit_open"
        assert int(response.headers["Retry-After"]) > 500
    finally:
        if node.process is not None:
            node.kill()


def test_gateway_lists_bans_and_resets(node, subject):
    agent = agent_id(86)
    gateway = Gateway(node, token=TOKEN).start()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        response = gateway.post(f"/v1/admin/circuit_breakers/{agent}/ban",
                                json={"duration_seconds": 600, "reason": "spam run"},
                                headers=auth)
        assert response.status_code == 200, response.text
        breaker = response.json()["circuit_breaker"]
        assert breaker["state"] == "OPEN"
        assert breaker["banned"] is True
        assert breaker["reason"] == "spam run"

        banned_before = metric(node, "stemedb_requests_rejected_total",
                               '{reason="circuit_banned"}')
        response = node.post("/v1/assert", json=signed(86, subject, "p", boolean(True)))
        assert response.status_code == 429, response.text
        assert response.json()["error"]["code"] == "circuit_banned"
        assert metric(node, "stemedb_requests_rejected_total",
                      '{reason="circuit_banned"}') == banned_before + 1
        assert "banned" in response.json()["error"]["message"]

        listing = gateway.get("/v1/admin/circuit_breakers", headers=auth)
        assert listing.status_code == 200, listing.text
        assert listing.json()["truncated"] is False
        agents = {b["agent_id"]: b for b in listing.json()["circuit_breakers"]}
        assert agents[agent]["banned"] is True

        response = gateway.post(f"/v1/admin/circuit_breakers/{agent}/reset", headers=auth)
        assert response.status_code == 200, response.text
        assert response.json()["found"] is True
        assert response.json()["circuit_breaker"]["state"] == "CLOSED"
        response = node.post("/v1/assert", json=signed(86, subject, "p", boolean(True)))
        assert response.status_code == 201, response.text
    finally:
        gateway.stop()


def test_gateway_rejects_bad_ban(node):
    gateway = Gateway(node, token=TOKEN).start()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        response = gateway.post("/v1/admin/circuit_breakers/xyz/ban",
                                json={"duration_seconds": 5, "reason": "r"}, headers=auth)
        assert response.status_code == 400
        assert response.json()["error"]["field"] == "agent_id"
        response = gateway.post(f"/v1/admin/circuit_breakers/{agent_id(87)}/ban",
                                json={"duration_seconds": 0, "reason": "r"}, headers=auth)
        assert response.status_code == 400
        assert response.json()["error"]["field"] == "duration_seconds"
        response = gateway.post(f"/v1/admin/circuit_breakers/{agent_id(87)}/ban",
                                json={"duration_seconds": 5}, headers=auth)
        assert response.status_code == 400
        assert response.json()["error"]["field"] == "reason"
        response = gateway.get("/v1/admin/circuit_breakers")
        assert response.status_code == 401
    finally:
        gateway.stop()


def test_ban_survives_restart(tmp_path, subject):
    node = Node(tmp_path / "node", env=BREAKER_ON).start()
    try:
        result = ctl(node, "ban", agent_id(88), "--duration", "600", "--reason", "abuse")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["circuit_breaker"]["banned"] is True
        assert node.stop() == 0, node.log()
        node.start()
        response = node.post("/v1/assert", json=signed(88, subject, "p", boolean(True)))
        assert response.status_code == 429, response.text
        assert response.json()["error"]["code"] == "circuit_banned"
    finally:
        if node.process is not None:
            node.kill()


def test_ctl_list_and_reset(node, subject):
    open_breaker(node, 89, subject)
    result = ctl(node, "list")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["truncated"] is False
    listed = json.loads(result.stdout)["circuit_breakers"]
    states = {b["agent_id"]: b["state"] for b in listed}
    assert states[agent_id(89)] == "OPEN"

    result = ctl(node, "reset", agent_id(89))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["found"] is True
    response = node.post("/v1/assert", json=signed(89, subject, "good", boolean(True)))
    assert response.status_code == 201, response.text


def test_ctl_rejects_bad_arguments(node):
    result = ctl(node, "ban", agent_id(90), "--duration", "10")
    assert result.returncode == 2
    assert "--reason" in result.stderr
    result = ctl(node, "reset", "nothex")
    assert result.returncode == 2
    assert "agent id" in result.stderr
