"""The assertion feed against a real node: pages newest first with cursors and a
subject prefix, and a Server-Sent Events stream that delivers assertions stored after
the client connected."""

import json
import socket
import time

import pytest

from claims import BASE_TIME, expected_hash, number, signed
from node import Node


@pytest.fixture
def feed_node(tmp_path):
    """A node of its own, so that the feed holds only this test's assertions."""
    node = Node(tmp_path / "node").start()
    yield node
    assert node.stop() == 0, node.log()


def write_one_by_one(node, assertions):
    """Write each assertion in its own request, so that ingest order is list order."""
    for a in assertions:
        response = node.post("/v1/assert", json=a)
        assert response.status_code == 201, response.text
    return [expected_hash(a) for a in assertions]


def test_feed_pages_newest_first(feed_node):
    hashes = write_one_by_one(feed_node, [
        signed(1, f"feed/{i}", "n", number(i), timestamp=BASE_TIME + i) for i in range(7)])

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        body = feed_node.get("/v1/feed", params=params).json()
        pages += 1
        seen += [a["hash"] for a in body["assertions"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert seen == list(reversed(hashes)), seen
    assert pages == 3, pages


def test_feed_entry_fields(feed_node):
    [h] = write_one_by_one(feed_node, [signed(1, "feed/x", "n", number(1))])

    entry = feed_node.get("/v1/feed").json()["assertions"][0]

    assert entry["hash"] == h, entry
    assert entry["subject"] == "feed/x", entry
    assert entry["hlc"]["wall_ms"] > 0, entry
    assert len(entry["cursor"]) == 2 * (1 + 8 + 4 + 32), entry


def test_feed_subject_prefix(feed_node):
    hashes = write_one_by_one(feed_node, [
        signed(1, "drug://a/1", "n", number(1)),
        signed(1, "other://a/1", "n", number(2)),
        signed(1, "drug://a/2", "n", number(3)),
    ])

    body = feed_node.get("/v1/feed", params={"subject_prefix": "drug://"}).json()

    assert [a["hash"] for a in body["assertions"]] == [hashes[2], hashes[0]], body


def test_feed_duplicate_not_repeated(feed_node):
    a = signed(1, "feed/dup", "n", number(1))
    write_one_by_one(feed_node, [a])
    assert feed_node.post("/v1/assert", json=a).status_code == 200

    body = feed_node.get("/v1/feed").json()

    assert [x["hash"] for x in body["assertions"]] == [expected_hash(a)], body


@pytest.mark.parametrize("params, field", [
    ({"limit": "0"}, "limit"),
    ({"limit": "1001"}, "limit"),
    ({"cursor": "zz"}, "cursor"),
    ({"cursor": "00" * 45}, "cursor"),
    ({"subject_prefix": ""}, "subject_prefix"),
])
def test_feed_hostile_parameters(shared_node, params, field):
    response = shared_node.get("/v1/feed", params=params)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_parameter", response.text
    assert response.json()["error"]["field"] == field, response.text


def read_events(sock, count, timeout=10.0):
    """Read from an open SSE socket until count 'assertion' events arrived."""
    sock.settimeout(0.2)
    data, deadline = b"", time.monotonic() + timeout
    while data.count(b"event: assertion") < count:
        assert time.monotonic() < deadline, f"only {data.count(b'event: assertion')} events:\n{data!r}"
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        assert chunk, f"the server closed the stream:\n{data!r}"
        data += chunk
    events = []
    for line in data.decode().splitlines():
        if line.startswith("data: "):
            events.append(json.loads(line[len("data: "):]))
    return data, events


def open_stream(node, query=""):
    sock = socket.create_connection(("127.0.0.1", node.port), timeout=5)
    sock.sendall(f"GET /v1/feed{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 "Accept: text/event-stream\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"text/event-stream" in head.lower(), head
    return sock


def test_feed_stream_receives_new_assertions(feed_node):
    write_one_by_one(feed_node, [signed(1, "feed/before", "n", number(0))])
    sock = open_stream(feed_node)
    try:
        time.sleep(0.2)
        hashes = write_one_by_one(feed_node, [
            signed(1, "feed/after", "n", number(i), timestamp=BASE_TIME + i) for i in range(3)])

        raw, events = read_events(sock, 3)

        assert [e["hash"] for e in events] == hashes, events
        assert b": keep-alive" in raw, raw
        assert b"id: " in raw, raw
    finally:
        sock.close()


def test_feed_stream_subject_prefix(feed_node):
    sock = open_stream(feed_node, "?subject_prefix=keep/")
    try:
        time.sleep(0.2)
        hashes = write_one_by_one(feed_node, [
            signed(1, "drop/1", "n", number(1)),
            signed(1, "keep/1", "n", number(2)),
        ])

        _, events = read_events(sock, 1)

        assert [e["hash"] for e in events] == [hashes[1]], events
    finally:
        sock.close()


def test_feed_stream_client_leaves(feed_node):
    sock = open_stream(feed_node)
    sock.close()
    time.sleep(0.2)

    write_one_by_one(feed_node, [signed(1, "feed/after-close", "n", number(1))])
    health = feed_node.get("/v1/health")

    assert health.status_code == 200, health.text


def test_feed_stream_slow_client_disconnected(feed_node):
    sock = socket.create_connection(("127.0.0.1", feed_node.port), timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(b"GET /v1/feed HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    time.sleep(0.2)
    try:
        padding = "x" * 3000
        for batch in range(2):
            assertions = [signed(1, f"slow/{batch}/{i}", "n", {"type": "text", "value": padding})
                          for i in range(1000)]
            response = feed_node.post("/v1/assert/batch", json={"assertions": assertions})
            assert response.status_code == 200, response.text

        # The client reads nothing, so over 4 MiB of events wait in the server's buffer.
        deadline = time.monotonic() + 10
        while "closing a feed stream: the client did not read 4 MiB" not in feed_node.log():
            assert time.monotonic() < deadline, feed_node.log()[-2000:]
            time.sleep(0.1)
        assert feed_node.get("/v1/health").status_code == 200
    finally:
        sock.close()
