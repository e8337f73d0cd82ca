"""Query audit against a real node: records of /v1/query, /v1/skeptic and /v1/layered,
the listing filters, lookups by id, and retention expiry."""

import time

import pytest

from claims import BASE_TIME, agent_id, boolean, expected_hash, signed
from node import Node

AGENT_A = "aa" * 32
AGENT_B = "bb" * 32


def wait_for_record(node, query_id, timeout=5.0):
    """Return the audit record of query_id once the writer has stored it."""
    deadline = time.monotonic() + timeout
    while True:
        response = node.get(f"/v1/audit/query/{query_id}")
        if response.status_code == 200:
            return response.json()
        assert response.status_code == 404, response.text
        assert time.monotonic() < deadline, f"audit record {query_id} never appeared"
        time.sleep(0.05)


@pytest.fixture
def claims_written(shared_node, subject):
    true = signed(1, subject, "safe", boolean(True), confidence=0.9, source_class="clinical")
    false = signed(2, subject, "safe", boolean(False), confidence=0.6, source_class="anecdotal")
    response = shared_node.post("/v1/assert/batch", json={"assertions": [true, false]})
    assert response.status_code == 200, response.text
    return {"true": expected_hash(true), "false": expected_hash(false)}


@pytest.mark.parametrize("endpoint, extra", [
    ("query", {"lens": "confidence"}),
    ("skeptic", {}),
    ("layered", {}),
])
def test_audit_records_each_read(shared_node, subject, claims_written, endpoint, extra):
    params = {"subject": subject, "predicate": "safe", **extra}
    response = shared_node.get(f"/v1/{endpoint}", params=params,
                               headers={"X-Agent-Id": AGENT_A})
    assert response.status_code == 200, response.text
    query_id = response.json()["query_id"]

    record = wait_for_record(shared_node, query_id)

    assert record["query_id"] == query_id, record
    assert record["endpoint"] == endpoint, record
    assert record["agent_id"] == AGENT_A, record
    assert record["parameters"] == params, record
    assert record["winner"] == claims_written["true"], record
    assert record["contributor_count"] == 2, record
    hashes = {c["hash"] for c in record["contributors"]}
    assert hashes == set(claims_written.values()), record["contributors"]
    assert all(c["weight"] >= 0 for c in record["contributors"]), record["contributors"]
    assert abs(record["time_ms"] / 1000 - time.time()) < 60, record


def test_audit_without_agent(shared_node, subject, claims_written):
    response = shared_node.get("/v1/query", params={"subject": subject, "predicate": "safe"})
    record = wait_for_record(shared_node, response.json()["query_id"])

    assert record["agent_id"] is None, record


def test_audit_caps_contributors_at_100(shared_node, subject):
    claims = [signed(1, subject, "dose", boolean(True), timestamp=BASE_TIME + i)
              for i in range(101)]
    response = shared_node.post("/v1/assert/batch", json={"assertions": claims})
    assert response.json()["rejected"] == 0, response.text

    response = shared_node.get("/v1/query", params={"subject": subject, "predicate": "dose"})
    record = wait_for_record(shared_node, response.json()["query_id"])

    assert record["contributor_count"] == 101, record["contributor_count"]
    assert len(record["contributors"]) == 100, len(record["contributors"])
    stored = {expected_hash(c) for c in claims}
    assert {c["hash"] for c in record["contributors"]} <= stored, record["contributors"]


def test_audit_without_candidates(shared_node, subject):
    response = shared_node.get("/v1/skeptic", params={"subject": subject, "predicate": "none"})
    assert response.status_code == 200, response.text

    record = wait_for_record(shared_node, response.json()["query_id"])

    assert record["winner"] is None, record
    assert record["contributors"] == [], record
    assert record["contributor_count"] == 0, record


def test_audit_keeps_escaped_parameters(shared_node):
    subject = 'audit/"quoted" \\ tab\t caf\u00e9 \u2603'
    response = shared_node.get("/v1/query", params={"subject": subject, "predicate": "p"})
    assert response.status_code == 200, response.text

    record = wait_for_record(shared_node, response.json()["query_id"])

    assert record["parameters"] == {"subject": subject, "predicate": "p"}, record


def test_audit_ids_are_distinct(shared_node, subject):
    ids = [shared_node.get("/v1/query", params={"subject": subject, "predicate": "p"})
           .json()["query_id"] for _ in range(200)]

    assert len(set(ids)) == len(ids), ids
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids), ids


def test_audit_filter_by_agent_and_pages(shared_node, subject, claims_written):
    agent = agent_id(77)
    ids = []
    for _ in range(5):
        response = shared_node.get("/v1/skeptic", params={"subject": subject, "predicate": "safe"},
                                   headers={"X-Agent-Id": agent})
        ids.append(response.json()["query_id"])
    shared_node.get("/v1/skeptic", params={"subject": subject, "predicate": "safe"},
                    headers={"X-Agent-Id": AGENT_B})
    wait_for_record(shared_node, ids[-1])

    seen, cursor = [], None
    while True:
        params = {"agent_id": agent, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        body = shared_node.get("/v1/audit/queries", params=params).json()
        assert len(body["records"]) <= 2, body
        seen += [r["query_id"] for r in body["records"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert sorted(seen) == sorted(ids), seen
    assert len(seen) == 5, seen
    times = []
    for query_id in seen:
        times.append(wait_for_record(shared_node, query_id)["time_ms"])
    assert times == sorted(times, reverse=True), times


def test_audit_time_range(shared_node, subject, claims_written):
    response = shared_node.get("/v1/query", params={"subject": subject, "predicate": "safe"})
    query_id = response.json()["query_id"]
    wait_for_record(shared_node, query_id)
    now = int(time.time())

    recent = shared_node.get("/v1/audit/queries", params={"from": now - 60, "limit": 1000})
    old = shared_node.get("/v1/audit/queries", params={"to": now - 3600})

    assert query_id in [r["query_id"] for r in recent.json()["records"]], recent.text
    assert old.json()["records"] == [], old.text


@pytest.mark.parametrize("path, params, headers, status, code", [
    ("/v1/query", {"subject": "s", "predicate": "p"}, {"X-Agent-Id": "xyz"}, 400,
     "invalid_header"),
    ("/v1/audit/queries", {"agent_id": "12"}, {}, 400, "invalid_parameter"),
    ("/v1/audit/queries", {"from": "soon"}, {}, 400, "invalid_parameter"),
    ("/v1/audit/queries", {"from": "20", "to": "10"}, {}, 400, "invalid_parameter"),
    ("/v1/audit/queries", {"limit": "0"}, {}, 400, "invalid_parameter"),
    ("/v1/audit/queries", {"cursor": "00"}, {}, 400, "invalid_parameter"),
    ("/v1/audit/queries", {"winner": "x"}, {}, 400, "unknown_parameter"),
    ("/v1/audit/query/123", {}, {}, 400, "invalid_parameter"),
    ("/v1/audit/query/" + "0" * 32, {}, {}, 404, "not_found"),
])
def test_audit_hostile_input(shared_node, path, params, headers, status, code):
    response = shared_node.get(path, params=params, headers=headers)

    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


def test_audit_retention_expires_records(tmp_path):
    node = Node(tmp_path / "node", env={"STEMEDB_AUDIT_RETENTION_SECONDS": "2"}).start()
    try:
        response = node.get("/v1/query", params={"subject": "s", "predicate": "p"})
        query_id = response.json()["query_id"]
        wait_for_record(node, query_id)

        deadline = time.monotonic() + 10
        while node.get(f"/v1/audit/query/{query_id}").status_code == 200:
            assert time.monotonic() < deadline, "the record outlived its 2 s retention by 8 s"
            time.sleep(0.2)
        assert node.get("/v1/audit/queries").json()["records"] == [], "expired record listed"
    finally:
        assert node.stop() == 0, node.log()


def test_audit_disabled(tmp_path):
    node = Node(tmp_path / "node", env={"STEMEDB_AUDIT_RETENTION_DAYS": "0"}).start()
    try:
        response = node.get("/v1/query", params={"subject": "s", "predicate": "p"})
        listing = node.get("/v1/audit/queries").json()

        assert "query_id" not in response.json(), response.text
        assert listing == {"records": [], "next_cursor": None, "enabled": False}, listing
    finally:
        assert node.stop() == 0, node.log()
