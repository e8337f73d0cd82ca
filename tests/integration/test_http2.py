"""HTTP/2 (h2c) on the API port next to HTTP/1.1, and on the extra listener of
STEMEDB_HTTP2_LISTEN, driven by the nghttp and h2load clients of Debian's
nghttp2-client package."""

import json
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest

from claims import agent_id, expected_hash, signed, text
from node import Node, free_port, pow_headers

pytestmark = pytest.mark.skipif(
    shutil.which("nghttp") is None or shutil.which("h2load") is None,
    reason="nghttp2-client (nghttp, h2load) is not installed; run make deps")

BATCH_LIMIT = 262144


@pytest.fixture(scope="module")
def h2_node(tmp_path_factory):
    node = Node(tmp_path_factory.mktemp("h2node"),
                env={"STEMEDB_MAX_BATCH_BODY_BYTES": str(BATCH_LIMIT)}).start()
    node.h2_url = f"http://127.0.0.1:{node.port}"
    node.h2_port = node.port
    yield node
    code = node.stop()
    assert code == 0, f"stemedb-api exited with {code} on SIGTERM; log:\n{node.log()}"


def nghttp(url, *args):
    """Runs nghttp -v and returns (statuses by stream id, output)."""
    done = subprocess.run(["nghttp", "-v", *args, url], capture_output=True, text=True,
                          timeout=30)
    statuses = [int(s) for s in re.findall(r"recv \(stream_id=\d+\) :status: (\d+)", done.stdout)]
    return statuses, done.stdout + done.stderr


def last_json(output):
    """Returns the last line of nghttp output that is a JSON object."""
    lines = [line for line in output.splitlines() if line.startswith("{")]
    assert lines, f"no JSON body in the nghttp output:\n{output}"
    # A body without a final newline runs into nghttp's next log line.
    return json.JSONDecoder().raw_decode(lines[-1])[0]


def test_prior_knowledge_get(h2_node):
    statuses, output = nghttp(h2_node.h2_url + "/v1/health")

    assert statuses == [200], output
    assert last_json(output)["status"] == "healthy", output


def test_upgrade_get(h2_node):
    statuses, output = nghttp(h2_node.h2_url + "/v1/ready", "-u")

    assert "HTTP Upgrade success" in output, output
    assert statuses == [200], output
    assert last_json(output) == {"ready": True}, output


def test_signed_post_then_http1_read(h2_node, tmp_path, subject):
    assertion = signed(1, subject, "capital", text("Sucre"))
    body = tmp_path / "assertion.json"
    body.write_text(json.dumps(assertion))

    statuses, output = nghttp(h2_node.h2_url + "/v1/assert", "-d", str(body),
                              "-H", "content-type: application/json")
    stored = h2_node.get(f"/v1/assertions/{expected_hash(assertion)}")

    assert statuses == [201], output
    assert last_json(output)["hash"] == expected_hash(assertion), output
    assert stored.status_code == 200, stored.text


def test_errors_keep_status_and_body(h2_node):
    statuses, output = nghttp(h2_node.h2_url + "/v1/query?subject=x")

    assert statuses == [400], output
    assert last_json(output)["error"]["code"] == "missing_parameter", output


def test_concurrent_streams_h2load(h2_node):
    done = subprocess.run(["h2load", "-n", "400", "-c", "4", "-m", "20",
                           h2_node.h2_url + "/v1/health"],
                          capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"400 succeeded, 0 failed, 0 errored", done.stdout), done.stdout
    assert re.search(r"status codes: 400 2xx", done.stdout), done.stdout


def test_oversized_body_413(h2_node, tmp_path):
    body = tmp_path / "big.json"
    body.write_text('{"assertions": [' + " " * (BATCH_LIMIT + 10) + "]}")

    statuses, output = nghttp(h2_node.h2_url + "/v1/assert/batch", "-d", str(body),
                              "-H", "content-type: application/json")

    assert statuses == [413], output[-2000:]
    assert last_json(output)["error"]["code"] == "payload_too_large", output[-2000:]


def raw_exchange(port, data):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(data)
        received = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return received
            received += chunk


def test_malformed_preface_is_http1_400(h2_node):
    # Not the HTTP/2 preface, so the bytes go to the HTTP/1.1 parser.
    received = raw_exchange(h2_node.h2_port, b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + b"\0" * 64)

    assert received == b"" or received.startswith(b"HTTP/1.1 400 "), received
    assert b":status" not in received, received


def test_garbage_after_preface_goaway(h2_node):
    # A valid preface, then frame headers with length 0xffffff and frame type 0xff
    # on stream 0 before any SETTINGS frame.
    garbage = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\xff\xff\xff\x00\x00\x00\x00\x00\x00" * 4
    received = raw_exchange(h2_node.h2_port, garbage)

    # The server's SETTINGS frame (type 0x4) comes first, and a GOAWAY (type 0x7) ends it.
    frame_types = []
    offset = 0
    while offset + 9 <= len(received):
        length = int.from_bytes(received[offset:offset + 3], "big")
        frame_types.append(received[offset + 3])
        offset += 9 + length
    assert frame_types and frame_types[0] == 0x4, received
    assert 0x7 in frame_types, (frame_types, received)
    assert 0x1 not in frame_types, (frame_types, received)


def test_http1_on_same_port(h2_node):
    received = raw_exchange(h2_node.h2_port, b"GET /v1/ready HTTP/1.1\r\nHost: x\r\n"
                                             b"Connection: close\r\n\r\n")

    assert received.startswith(b"HTTP/1.1 200 "), received
    assert received.rstrip().endswith(b'{"ready":true}'), received


def test_post_upgrade_served_as_http1(h2_node):
    # Only GET and HEAD are upgraded, so the reply to a POST comes in HTTP/1.1.
    with socket.create_connection(("127.0.0.1", h2_node.h2_port), timeout=10) as conn:
        conn.sendall(b"POST /v1/assert HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, "
                     b"HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        received = conn.recv(65536)

    assert received.startswith(b"HTTP/1.1 4"), received
    assert b"101 Switching" not in received, received


def test_curl_upgrade_and_prior_knowledge(h2_node):
    for flag in ("--http2", "--http2-prior-knowledge"):
        done = subprocess.run(["curl", "-s", "-m", "10", flag, "-w", "\n%{http_version}",
                               h2_node.h2_url + "/v1/ready"],
                              capture_output=True, text=True, timeout=30)
        body, version = done.stdout.rsplit("\n", 1)

        assert version == "2", (flag, done.stdout, done.stderr)
        assert json.loads(body) == {"ready": True}, (flag, body)


def test_sse_feed_streams_over_h2(h2_node, subject):
    """An assertion written after the feed opened arrives while the stream is open."""
    feed = subprocess.Popen(["curl", "-sN", "--http2-prior-knowledge", "-m", "20",
                             "-H", "Accept: text/event-stream", h2_node.h2_url + "/v1/feed"],
                            stdout=subprocess.PIPE, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(iter(feed.stdout.readline, "")),
                              daemon=True)
    reader.start()
    try:
        time.sleep(0.5)
        assertion = signed(2, subject, "capital", text("Quito"))
        created = h2_node.post("/v1/assert", json=assertion)
        assert created.status_code == 201, created.text

        deadline = time.time() + 10
        while time.time() < deadline and not any(expected_hash(assertion) in l for l in lines):
            time.sleep(0.1)
        assert feed.poll() is None, "the feed ended instead of streaming"
        assert any(line.startswith("event: assertion") for line in lines), lines
        assert any(expected_hash(assertion) in line for line in lines), lines
    finally:
        feed.kill()
        feed.wait()


def test_internal_listener_needs_token(h2_node):
    match = re.search(r"internal listener 127\.0\.0\.1:(\d+)", h2_node.log())
    assert match, h2_node.log()
    received = raw_exchange(int(match.group(1)),
                            b"GET /v1/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                            b"X-StemeDB-Forwarded-For: 10.0.0.1\r\n\r\n")

    assert received.startswith(b"HTTP/1.1 403 "), received


def test_extra_listener(fresh_node):
    port = free_port()
    fresh_node.extra_env["STEMEDB_HTTP2_LISTEN"] = f"127.0.0.1:{port}"
    fresh_node.start()
    statuses, output = nghttp(f"http://127.0.0.1:{port}/v1/health")

    assert statuses == [200], output
    assert last_json(output)["status"] == "healthy", output


def test_sse_over_h2_outlives_idle_timeout(fresh_node, subject):
    fresh_node.extra_env["STEMEDB_IDLE_TIMEOUT_MS"] = "500"
    fresh_node.start()
    feed = subprocess.Popen(["curl", "-sN", "--http2-prior-knowledge", "-m", "20",
                             "-H", "Accept: text/event-stream", fresh_node.url("/v1/feed")],
                            stdout=subprocess.PIPE, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(iter(feed.stdout.readline, "")),
                              daemon=True)
    reader.start()
    try:
        time.sleep(1.5)
        assertion = signed(3, subject, "capital", text("Lima"))
        created = fresh_node.post("/v1/assert", json=assertion)
        assert created.status_code == 201, created.text

        deadline = time.time() + 10
        while time.time() < deadline and not any(expected_hash(assertion) in l for l in lines):
            time.sleep(0.1)
        assert feed.poll() is None, f"the feed ended during client silence: {lines}"
        assert any(expected_hash(assertion) in line for line in lines), lines
    finally:
        feed.kill()
        feed.wait()


def test_api_key_and_auth_headers_forwarded(tmp_path):
    port = free_port()
    key = "sdb_0123456789abcdef_" + "ab" * 32
    node = Node(tmp_path / "node",
                env={"STEMEDB_HTTP2_LISTEN": f"127.0.0.1:{port}", "STEMEDB_AUTH_ENABLED": "true",
                     "STEMEDB_ROOT_API_KEY": key, "STEMEDB_RATE_LIMIT_ENABLED": "true",
                     "STEMEDB_RATE_LIMIT_READ_RATE": "0.5",
                     "STEMEDB_RATE_LIMIT_READ_BURST": "1"}).start()
    try:
        url = f"http://127.0.0.1:{port}/v1/feed"
        statuses, output = nghttp(url)
        assert statuses == [401], output
        assert "www-authenticate: ApiKey" in output, output

        statuses, output = nghttp(url, "-H", f"x-api-key: {key}")
        assert statuses == [200], output

        statuses, output = nghttp(url, "-H", f"x-api-key: {key}")
        assert statuses == [429], output
        assert re.search(r"retry-after: [12]\b", output), output
    finally:
        assert node.stop() == 0, node.log()


def test_protection_headers_pass_through(tmp_path, subject):
    port = free_port()
    node = Node(tmp_path / "node", env={"STEMEDB_HTTP2_LISTEN": f"127.0.0.1:{port}",
                                        "STEMEDB_ADMISSION_ENABLED": "true",
                                        "STEMEDB_QUOTA_ENABLED": "true"}).start()
    url = f"http://127.0.0.1:{port}/v1/assert"
    body = tmp_path / "assertion.json"
    body.write_text(json.dumps(signed(3, subject, "capital", text("Sucre"))))
    try:
        statuses, output = nghttp(url, "-d", str(body))
        assert statuses == [428], output
        assert "x-pow-difficulty: 16" in output, output

        proof = pow_headers(agent_id(3), 16)
        statuses, output = nghttp(url, "-d", str(body),
                                  "-H", f"x-pow-nonce: {proof['X-PoW-Nonce']}",
                                  "-H", f"x-pow-timestamp: {proof['X-PoW-Timestamp']}")
        assert statuses == [201], output
        assert "x-quota-limit: 10000" in output, output
        assert re.search(r"x-quota-remaining: 99\d\d", output), output
    finally:
        assert node.stop() == 0, node.log()
