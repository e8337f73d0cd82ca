"""Per-client rate limits of stemedb-api: 429 with Retry-After once a client's burst is
spent, separate buckets per endpoint class and per API key, exempt health and metrics,
and the rate_limited rejection count."""

import json
import re
import time

import pytest

from claims import signed, text
from node import Node
from test_auth import ROOT_KEY, ctl

LIMIT_ENV = {
    "STEMEDB_RATE_LIMIT_ENABLED": "true",
    "STEMEDB_RATE_LIMIT_READ_RATE": "0.5",
    "STEMEDB_RATE_LIMIT_READ_BURST": "3",
    "STEMEDB_RATE_LIMIT_WRITE_RATE": "0.5",
    "STEMEDB_RATE_LIMIT_WRITE_BURST": "2",
    "STEMEDB_RATE_LIMIT_OTHER_RATE": "0.5",
    "STEMEDB_RATE_LIMIT_OTHER_BURST": "1",
}


def rate_limited_count(node):
    body = node.get("/metrics").text
    pattern = r'^stemedb_requests_rejected_total\{reason="rate_limited"\} (\S+)$'
    return float(re.search(pattern, body, re.M).group(1))


@pytest.fixture
def limited_node(tmp_path):
    node = Node(tmp_path / "node", env=LIMIT_ENV).start()
    yield node
    assert node.stop() == 0, node.log()


def test_read_burst_then_429(limited_node):
    before = rate_limited_count(limited_node)
    for _ in range(3):
        assert limited_node.get("/v1/feed").status_code == 200
    r = limited_node.get("/v1/feed")
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limited"
    # 0.5 tokens per second: the next token is at most 2 s away.
    assert r.headers["Retry-After"] in ("1", "2")
    assert rate_limited_count(limited_node) == before + 1


def test_retry_after_is_honest(limited_node):
    for _ in range(3):
        limited_node.get("/v1/feed")
    r = limited_node.get("/v1/feed")
    assert r.status_code == 429
    time.sleep(int(r.headers["Retry-After"]) + 0.1)
    assert limited_node.get("/v1/feed").status_code == 200


def test_classes_have_separate_buckets(limited_node, subject):
    for _ in range(3):
        limited_node.get("/v1/feed")
    assert limited_node.get("/v1/feed").status_code == 429
    r = limited_node.post("/v1/assert", json=signed(1, subject, "p", text("x")))
    assert r.status_code == 201, r.text
    limited_node.post("/v1/assert", json=signed(1, subject, "p", text("y")))
    third = limited_node.post("/v1/assert", json=signed(1, subject, "p", text("z")))
    assert third.status_code == 429
    assert limited_node.get("/api-doc/openapi.json").status_code == 200
    assert limited_node.get("/api-doc/openapi.json").status_code == 429


def test_health_and_metrics_exempt(limited_node):
    for _ in range(10):
        assert limited_node.get("/v1/health").status_code == 200
        assert limited_node.get("/v1/ready").status_code == 200
        assert limited_node.get("/metrics").status_code == 200


def test_each_api_key_is_a_client(tmp_path):
    env = {**LIMIT_ENV, "STEMEDB_AUTH_ENABLED": "true", "STEMEDB_ROOT_API_KEY": ROOT_KEY}
    node = Node(tmp_path / "node", env=env).start()
    try:
        other = json.loads(ctl("create", "--scopes", "read", node=node).stdout)["api_key"]
        for _ in range(3):
            assert node.get("/v1/feed", headers={"X-API-Key": ROOT_KEY}).status_code == 200
        assert node.get("/v1/feed", headers={"X-API-Key": ROOT_KEY}).status_code == 429
        # Same peer address, another key: a bucket of its own.
        assert node.get("/v1/feed", headers={"X-API-Key": other}).status_code == 200
    finally:
        assert node.stop() == 0, node.log()


def test_defaults_do_not_throttle_a_burst(tmp_path):
    node = Node(tmp_path / "node", env={"STEMEDB_RATE_LIMIT_ENABLED": "true"}).start()
    try:
        statuses = {node.get("/v1/feed").status_code for _ in range(300)}
        assert statuses == {200}
    finally:
        assert node.stop() == 0, node.log()


@pytest.mark.parametrize(
    "env, variable",
    [
        ({"STEMEDB_RATE_LIMIT_READ_BURST": "0.5"}, "BURST"),
        ({"STEMEDB_RATE_LIMIT_WRITE_RATE": "0"}, "STEMEDB_RATE_LIMIT_WRITE_RATE"),
        ({"STEMEDB_RATE_LIMIT_MAX_CLIENTS": "10"}, "STEMEDB_RATE_LIMIT_MAX_CLIENTS"),
    ],
)
def test_invalid_settings_refused(tmp_path, env, variable):
    node = Node(tmp_path / "node", env={"STEMEDB_RATE_LIMIT_ENABLED": "true", **env})
    with pytest.raises(RuntimeError):
        node.start()
    assert variable in node.log()
