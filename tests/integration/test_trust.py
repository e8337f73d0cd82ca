"""Agents and trust against a real node and gateway: GET /v1/agents/{agent_id},
POST /v1/admin/trust/outcome with its arithmetic and decay, and the authority lens
weighing signers by trust."""

import time

import pytest

from claims import BASE_TIME, agent_id, boolean, expected_hash, signed
from node import Node
from test_gateway import Gateway


@pytest.fixture(scope="module")
def trust_node(tmp_path_factory):
    node = Node(tmp_path_factory.mktemp("trust-node")).start()
    yield node
    assert node.stop() == 0, node.log()


@pytest.fixture(scope="module")
def gateway(trust_node):
    gw = Gateway(trust_node, token="trust-test-token").start()
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


@pytest.mark.parametrize("path, status", [
    ("/v1/agents/xyz", 400),
    ("/v1/agents/" + "cd" * 32, 404),
])
def test_agent_hostile_path(trust_node, path, status):
    response = trust_node.get(path)

    assert response.status_code == status, response.text
