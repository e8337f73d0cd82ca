"""Admission with proof of work against a real node: 428 for a new agent without a
proof, success with one, stale and replayed proofs rejected, the difficulty table in
GET /v1/admission/status and the rejection reasons in /metrics."""

import re
import time

import pytest

from claims import agent_id, boolean, signed
from node import Node, pow_digest, leading_zero_bits, pow_headers, solve_pow
from test_gateway import Gateway

TOKEN = "admission-test-token"

ADMISSION_ON = {
    "STEMEDB_ADMISSION_ENABLED": "true",
    "STEMEDB_QUOTA_ENABLED": "false",
    "STEMEDB_CIRCUIT_BREAKER_ENABLED": "false",
    # Small thresholds keep the test fast while exercising every row of the table.
    "STEMEDB_POW_NEW_AGENT_BITS": "12",
    "STEMEDB_POW_NEW_AGENT_ASSERTIONS": "2",
    "STEMEDB_POW_ESTABLISHED_ASSERTIONS": "4",
}


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = Node(tmp_path_factory.mktemp("admission"), env=ADMISSION_ON).start()
    yield n
    assert n.stop() == 0, n.log()


def rejected_count(node, reason):
    text = node.get("/metrics").text
    match = re.search(r'stemedb_requests_rejected_total\{reason="%s"\} (\S+)' % reason, text)
    assert match is not None, f"no series for {reason}"
    return float(match.group(1))


def status(node, agent):
    response = node.get("/v1/admission/status", params={"agent_id": agent})
    assert response.status_code == 200, response.text
    return response.json()


def test_pow_digest_matches_format():
    agent = "00" * 31 + "01"
    digest = pow_digest(7, agent, 1_700_000_000)
    assert len(digest) == 32
    nonce, ts = solve_pow(agent, 8, timestamp=1_700_000_000)
    assert leading_zero_bits(pow_digest(nonce, agent, ts)) >= 8


def test_new_agent_needs_proof(node, subject):
    before = rejected_count(node, "proof_of_work_required")
    claim = signed(61, subject, "p", boolean(True))
    response = node.post("/v1/assert", json=claim)
    assert response.status_code == 428, response.text
    body = response.json()
    assert body["error"]["code"] == "proof_of_work_required"
    assert body["difficulty"] == 12
    assert rejected_count(node, "proof_of_work_required") == before + 1

    response = node.post("/v1/assert", json=claim, headers=pow_headers(agent_id(61), 12))
    assert response.status_code == 201, response.text


def test_header_agent_needs_proof(node, subject):
    agent = agent_id(62)
    claim = signed(62, subject, "p", boolean(True))
    response = node.post("/v1/assert", json=claim, headers={"X-Agent-Id": agent})
    assert response.status_code == 428, response.text
    headers = {"X-Agent-Id": agent, **pow_headers(agent, 12)}
    response = node.post("/v1/assert", json=claim, headers=headers)
    assert response.status_code == 201, response.text


def test_weak_proof_rejected(node, subject):
    agent = agent_id(63)
    before = rejected_count(node, "invalid_proof_of_work")
    ts = int(time.time())
    nonce = 0
    while leading_zero_bits(pow_digest(nonce, agent, ts)) >= 12:
        nonce += 1
    headers = {"X-PoW-Nonce": str(nonce), "X-PoW-Timestamp": str(ts)}
    response = node.post("/v1/assert", json=signed(63, subject, "p", boolean(True)),
                         headers=headers)
    assert response.status_code == 428, response.text
    assert response.json()["error"]["code"] == "invalid_proof_of_work"
    assert response.json()["difficulty"] == 12
    assert rejected_count(node, "invalid_proof_of_work") == before + 1


def test_stale_proof_rejected(node, subject):
    agent = agent_id(64)
    headers = pow_headers(agent, 12, timestamp=int(time.time()) - 301)
    response = node.post("/v1/assert", json=signed(64, subject, "p", boolean(True)),
                         headers=headers)
    assert response.status_code == 428, response.text
    assert response.json()["error"]["code"] == "invalid_proof_of_work"
    assert response.json()["error"]["field"] == "X-PoW-Timestamp"


def test_replayed_proof_rejected(node, subject):
    agent = agent_id(65)
    headers = pow_headers(agent, 12)
    first = node.post("/v1/assert", json=signed(65, subject, "a", boolean(True)),
                      headers=headers)
    assert first.status_code == 201, first.text
    again = node.post("/v1/assert", json=signed(65, subject, "b", boolean(True)),
                      headers=headers)
    assert again.status_code == 428, again.text
    assert again.json()["error"]["code"] == "invalid_proof_of_work"
    assert "used already" in again.json()["error"]["message"]


def test_malformed_nonce_rejected(node, subject):
    headers = {"X-PoW-Nonce": "12x", "X-PoW-Timestamp": str(int(time.time()))}
    response = node.post("/v1/assert", json=signed(66, subject, "p", boolean(True)),
                         headers=headers)
    assert response.status_code == 428, response.text
    assert response.json()["error"]["field"] == "X-PoW-Nonce"


def test_status_follows_difficulty_table(node, subject):
    agent = agent_id(67)
    first = status(node, agent)
    assert first["agent_id"] == agent
    assert first["tier"] == "verified"
    assert first["trust"] == pytest.approx(0.5)
    assert first["assertion_count"] == 0
    assert first["pow_difficulty"] == 12
    assert first["assertions_until_easier"] == 2
    assert first["quota"]["limit"] == 10000
    assert first["circuit_breaker"] == {"state": "CLOSED", "recent_failures": 0,
                                        "open_until_unix_ms": 0, "banned": False,
                                        "reason": ""}

    for i in range(2):
        claim = signed(67, subject, f"p{i}", boolean(True))
        response = node.post("/v1/assert", json=claim, headers=pow_headers(agent, 12))
        assert response.status_code == 201, response.text
    growing = status(node, agent)
    assert growing["assertion_count"] == 2
    assert growing["pow_difficulty"] == 1
    assert growing["assertions_until_easier"] == 2

    for i in range(2, 4):
        claim = signed(67, subject, f"p{i}", boolean(True))
        response = node.post("/v1/assert", json=claim, headers=pow_headers(agent, 1))
        assert response.status_code == 201, response.text
    established = status(node, agent)
    assert established["assertion_count"] == 4
    assert established["pow_difficulty"] == 0
    assert established["assertions_until_easier"] == 0

    response = node.post("/v1/assert", json=signed(67, subject, "free", boolean(True)))
    assert response.status_code == 201, response.text


def test_batch_needs_one_proof(node, subject):
    agent = agent_id(68)
    claims = [signed(68, subject, f"p{i}", boolean(True)) for i in range(3)]
    response = node.post("/v1/assert/batch", json={"assertions": claims})
    assert response.status_code == 428, response.text
    response = node.post("/v1/assert/batch", json={"assertions": claims},
                         headers=pow_headers(agent, 12))
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 3


def test_status_rejects_bad_agent(node):
    response = node.get("/v1/admission/status", params={"agent_id": "xyz"})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "agent_id"
    response = node.get("/v1/admission/status")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "missing_parameter"


def test_malformed_agent_header_rejected(node, subject):
    response = node.post("/v1/assert", json=signed(69, subject, "p", boolean(True)),
                         headers={"X-Agent-Id": "ABC"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == "X-Agent-Id"


def test_header_must_name_signer(node, subject):
    # Admission runs on the header's agent before the body is read, so that agent
    # brings a proof. The mismatch is found once the body names its signer.
    headers = {"X-Agent-Id": agent_id(71), **pow_headers(agent_id(71), 12)}
    response = node.post("/v1/assert", json=signed(70, subject, "p", boolean(True)),
                         headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "agent_mismatch"


# (accurate outcomes, inaccurate outcomes) -> tier, multiplier, difficulty of a new agent
# under ADMISSION_ON (12 bits for new agents).
# Trust decays toward 0.5 between an outcome and the read, so each case keeps clear of
# the tier bounds: 0.2, 0.4, 0.65, 0.75 and 0.95.
TIER_CASES = [
    (0, 3, "untrusted", 0.1, 12),
    (0, 1, "limited", 0.5, 12),
    (3, 0, "verified", 1.0, 0),
    (5, 0, "trusted", 2.0, 0),
    (9, 0, "authority", 10.0, 0),
]


def test_status_matches_tier_table(node):
    gateway = Gateway(node, token=TOKEN).start()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        for index, (accurate, inaccurate, tier, multiplier, difficulty) in enumerate(TIER_CASES):
            agent = agent_id(100 + index)
            outcomes = ["accurate"] * accurate + ["inaccurate"] * inaccurate
            for n, outcome in enumerate(outcomes):
                response = gateway.post("/v1/admin/trust/outcome", headers=auth,
                                        json={"agent_id": agent, "outcome": outcome,
                                              "note": f"case {index} outcome {n}"})
                assert response.status_code == 201, response.text
            status = node.get("/v1/admission/status", params={"agent_id": agent}).json()
            assert status["tier"] == tier, (accurate, inaccurate, status)
            assert status["quota_multiplier"] == multiplier, status
            assert status["quota"]["limit"] == int(10000 * multiplier), status
            assert status["pow_difficulty"] == difficulty, status
    finally:
        gateway.stop()
