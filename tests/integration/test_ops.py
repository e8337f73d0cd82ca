"""Operations endpoints: /v1/health, /v1/ready and /metrics."""

import re

from claims import expected_hash, signed, text

METRIC_NAMES = [
    "stemedb_http_requests_total",
    "stemedb_http_request_duration_seconds",
    "stemedb_queries_total",
    "stemedb_query_latency_seconds",
    "stemedb_assertions_total",
    "stemedb_requests_rejected_total",
]


def test_health_healthy(shared_node):
    response = shared_node.get("/v1/health")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "healthy", body
    assert body["ready"] is True, body
    assert body["wal"]["healthy"] is True, body
    assert body["durability"] == "immediate", body
    assert isinstance(body["uptime_seconds"], int) and body["uptime_seconds"] >= 0, body
    assert isinstance(body["version"], str) and body["version"], body
    assert isinstance(body["wal"]["end_offset"], int), body
    assert body["wal"]["segments"] >= 1, body


def test_health_counts_assertions(shared_node, subject):
    before = shared_node.get("/v1/health").json()["assertions_count"]
    shared_node.post("/v1/assert", json=signed(1, subject, "capital", text("Sucre")))

    after = shared_node.get("/v1/health").json()["assertions_count"]

    assert after == before + 1, (before, after)


def test_ready(shared_node):
    response = shared_node.get("/v1/ready")

    assert response.status_code == 200, response.text
    assert response.json() == {"ready": True}, response.text


def test_metrics_names(shared_node, subject):
    assertion = signed(1, subject, "capital", text("Sucre"))
    shared_node.post("/v1/assert", json=assertion)
    shared_node.get(f"/v1/assertions/{expected_hash(assertion)}")
    shared_node.get("/v1/query", params={"subject": subject, "predicate": "capital"})
    shared_node.get("/v1/skeptic", params={"subject": subject, "predicate": "capital"})

    response = shared_node.get("/metrics")

    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4"), response.headers
    for name in METRIC_NAMES:
        assert re.search(rf"^{name}", response.text, re.M), f"{name} missing"


def test_metrics_use_route_templates(shared_node, subject):
    assertion = signed(1, subject, "capital", text("Sucre"))
    shared_node.post("/v1/assert", json=assertion)
    shared_node.get(f"/v1/assertions/{expected_hash(assertion)}")

    text_body = shared_node.get("/metrics").text

    assert 'path="/v1/assertions/{hash}"' in text_body, text_body[:3000]
    assert expected_hash(assertion) not in text_body, "a raw path leaked into a label"


def test_metrics_count_queries(shared_node, subject):
    def count():
        body = shared_node.get("/metrics").text
        match = re.search(r'^stemedb_queries_total\{endpoint="query"\} (\S+)$', body, re.M)
        return float(match.group(1))

    before = count()
    shared_node.get("/v1/query", params={"subject": subject, "predicate": "capital"})

    assert count() == before + 1


def test_head_health(shared_node):
    response = shared_node.request("HEAD", "/v1/health")

    assert response.status_code == 200, response.status_code
    assert response.content == b"", response.content
