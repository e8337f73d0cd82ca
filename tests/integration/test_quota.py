"""Hourly token quotas against a real node: the X-Quota-* headers, 429 quota_exceeded
with Retry-After once an agent has spent its tokens, other agents unaffected, and the
tier multiplier that trust selects."""

import re
import time

import pytest

from claims import agent_id, boolean, signed
from node import Node, pow_headers
from test_gateway import Gateway

QUOTA_ON = {
    "STEMEDB_QUOTA_ENABLED": "true",
    "STEMEDB_QUOTA_TOKENS": "100",
    "STEMEDB_ADMISSION_ENABLED": "false",
    "STEMEDB_CIRCUIT_BREAKER_ENABLED": "false",
}
TOKEN = "quota-test-token"


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = Node(tmp_path_factory.mktemp("quota"), env=QUOTA_ON).start()
    yield n
    assert n.stop() == 0, n.log()


def rejected(node, reason):
    text = node.get("/metrics").text
    match = re.search(r'stemedb_requests_rejected_total\{reason="%s"\} (\S+)' % reason, text)
    assert match is not None
    return float(match.group(1))


def test_headers_and_exhaustion(node, subject):
    agent = 91
    before = rejected(node, "quota_exceeded")
    remaining = []
    for i in range(9):
        response = node.post("/v1/assert", json=signed(agent, subject, f"p{i}", boolean(True)))
        assert response.status_code == 201, response.text
        assert response.headers["X-Quota-Limit"] == "100"
        remaining.append(int(response.headers["X-Quota-Remaining"]))
        reset = int(response.headers["X-Quota-Reset"])
        assert time.time() < reset <= time.time() + 3601
    # Each assertion costs 10 tokens plus 1 for its started KiB of body.
    assert remaining == [100 - 11 * (i + 1) for i in range(9)]

    response = node.post("/v1/assert", json=signed(agent, subject, "over", boolean(True)))
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "quota_exceeded"
    assert response.headers["X-Quota-Remaining"] == "1"
    retry = int(response.headers["Retry-After"])
    assert 3500 < retry <= 3600
    assert rejected(node, "quota_exceeded") == before + 1

    other = node.post("/v1/assert", json=signed(92, subject, "p", boolean(True)))
    assert other.status_code == 201, other.text
    assert other.headers["X-Quota-Remaining"] == "89"


def test_reads_with_agent_are_charged(node, subject):
    agent = agent_id(93)
    headers = {"X-Agent-Id": agent}
    # The agent has nothing stored, so this is a 404, which is charged all the same.
    response = node.get(f"/v1/agents/{agent}", headers=headers)
    assert response.status_code == 404, response.text
    assert response.headers["X-Quota-Remaining"] == "99"
    response = node.get("/v1/query", params={"subject": subject, "predicate": "p"},
                        headers=headers)
    # A query costs 5 plus 1 for its lens.
    assert response.headers["X-Quota-Remaining"] == "93", response.text
    response = node.get("/v1/skeptic", params={"subject": subject, "predicate": "p"},
                        headers=headers)
    # /v1/skeptic evaluates five lenses.
    assert response.headers["X-Quota-Remaining"] == "83", response.text


def test_anonymous_reads_have_no_quota(node, subject):
    response = node.get("/v1/query", params={"subject": subject, "predicate": "p"})
    assert "X-Quota-Limit" not in response.headers


def test_status_reports_usage(node, subject):
    agent = agent_id(94)
    response = node.post("/v1/assert", json=signed(94, subject, "p", boolean(True)))
    assert response.status_code == 201, response.text
    status = node.get("/v1/admission/status", params={"agent_id": agent}).json()
    assert status["quota"]["limit"] == 100
    assert status["quota"]["used"] == 11
    assert status["quota"]["remaining"] == 89
    assert status["quota"]["reset"] == int(response.headers["X-Quota-Reset"])


def test_limited_tier_halves_quota(tmp_path, subject):
    env = dict(QUOTA_ON, STEMEDB_ADMISSION_ENABLED="true")
    node = Node(tmp_path / "node", env=env).start()
    gateway = Gateway(node, token=TOKEN).start()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    agent = agent_id(95)
    try:
        response = gateway.post("/v1/admin/trust/outcome",
                                json={"agent_id": agent, "outcome": "inaccurate"}, headers=auth)
        assert response.status_code in (200, 201), response.text
        status = node.get("/v1/admission/status", params={"agent_id": agent}).json()
        assert status["tier"] == "limited"
        assert status["trust"] == pytest.approx(0.4, abs=0.01)
        assert status["quota_multiplier"] == 0.5
        assert status["quota"]["limit"] == 50
        assert status["pow_difficulty"] == 16

        response = node.post("/v1/assert", json=signed(95, subject, "p", boolean(True)),
                             headers=pow_headers(agent, 16))
        assert response.status_code == 201, response.text
        assert response.headers["X-Quota-Limit"] == "50"
    finally:
        gateway.stop()
        node.kill()
