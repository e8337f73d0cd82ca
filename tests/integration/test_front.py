"""The connection layer of the API port: TLS 1.3, CORS, the per-client connection
limit, the whole-request read deadline and the header and body limits."""

import re
import socket
import ssl
import subprocess
import time

import pytest
import requests

from node import Node


def make_certificate(directory, name="server"):
    """Writes a self-signed certificate for 127.0.0.1 with `openssl req`."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=30)
    return cert, key


def wait_tls_ready(node, cert, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            raise RuntimeError(f"stemedb-api exited; log:\n{node.log()}")
        try:
            if requests.get(tls_url(node, "/v1/ready"), verify=str(cert), timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"not ready over TLS; log:\n{node.log()}")


def tls_url(node, path):
    return f"https://127.0.0.1:{node.port}{path}"


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    cert, key = make_certificate(directory)
    node = Node(directory / "node", env={"STEMEDB_TLS_CERT_FILE": str(cert),
                                         "STEMEDB_TLS_KEY_FILE": str(key)})
    node.start(wait_ready=False)
    wait_tls_ready(node, cert)
    node.cert = cert
    yield node
    code = node.stop()
    assert code == 0, f"stemedb-api exited with {code} on SIGTERM; log:\n{node.log()}"


def test_tls_serves_requests(tls_node):
    health = requests.get(tls_url(tls_node, "/v1/health"), verify=str(tls_node.cert), timeout=10)

    assert health.status_code == 200, health.text
    assert health.json()["status"] == "healthy", health.text


def test_tls_version_is_13(tls_node):
    context = ssl.create_default_context(cafile=str(tls_node.cert))
    with socket.create_connection(("127.0.0.1", tls_node.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            assert conn.version() == "TLSv1.3"
            assert conn.selected_alpn_protocol() is None


def test_tls12_client_rejected(tls_node):
    context = ssl.create_default_context(cafile=str(tls_node.cert))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", tls_node.port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError):
            context.wrap_socket(raw, server_hostname="127.0.0.1")


def test_tls12_curl_rejected(tls_node):
    done = subprocess.run(["curl", "-s", "-m", "10", "--cacert", str(tls_node.cert),
                           "--tlsv1.2", "--tls-max", "1.2", tls_url(tls_node, "/v1/health")],
                          capture_output=True, text=True, timeout=30)
    fine = subprocess.run(["curl", "-s", "-m", "10", "--cacert", str(tls_node.cert),
                           tls_url(tls_node, "/v1/ready")],
                          capture_output=True, text=True, timeout=30)

    assert done.returncode == 35, (done.returncode, done.stdout, done.stderr)
    assert fine.returncode == 0, fine
    assert fine.stdout.strip() == '{"ready":true}', fine


def test_cleartext_on_tls_port_gets_no_reply(tls_node):
    with socket.create_connection(("127.0.0.1", tls_node.port), timeout=5) as conn:
        conn.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            received = conn.recv(4096)
        except (ConnectionResetError, socket.timeout):
            received = b""

    assert not received.startswith(b"HTTP/1.1 200"), received


def test_tls_key_mismatch_fails_start(fresh_node, tmp_path):
    cert, _ = make_certificate(tmp_path, "one")
    _, other_key = make_certificate(tmp_path, "two")
    fresh_node.extra_env.update({"STEMEDB_TLS_CERT_FILE": str(cert),
                                 "STEMEDB_TLS_KEY_FILE": str(other_key)})

    with pytest.raises(RuntimeError) as failed:
        fresh_node.start()
    assert "STEMEDB_TLS_KEY_FILE" in str(failed.value), str(failed.value)
    assert "private key of the certificate" in str(failed.value), str(failed.value)


def test_tls_unreadable_cert_fails_start(fresh_node, tmp_path):
    _, key = make_certificate(tmp_path)
    fresh_node.extra_env.update({"STEMEDB_TLS_CERT_FILE": str(tmp_path / "missing.crt"),
                                 "STEMEDB_TLS_KEY_FILE": str(key)})

    with pytest.raises(RuntimeError) as failed:
        fresh_node.start()
    assert "STEMEDB_TLS_CERT_FILE" in str(failed.value), str(failed.value)
    assert "missing.crt" in str(failed.value), str(failed.value)


def test_tls_cert_without_key_fails_start(fresh_node, tmp_path):
    cert, _ = make_certificate(tmp_path)
    fresh_node.extra_env["STEMEDB_TLS_CERT_FILE"] = str(cert)

    with pytest.raises(RuntimeError) as failed:
        fresh_node.start()
    assert "must be set together" in str(failed.value), str(failed.value)


@pytest.fixture(scope="module")
def cors_node(tmp_path_factory):
    node = Node(tmp_path_factory.mktemp("cors"),
                env={"STEMEDB_ALLOWED_ORIGINS": "https://app.example, http://localhost:3000"})
    node.start()
    yield node
    code = node.stop()
    assert code == 0, f"stemedb-api exited with {code} on SIGTERM; log:\n{node.log()}"


def test_cors_allowed_origin(cors_node):
    reply = cors_node.get("/v1/health", headers={"Origin": "https://app.example"})

    assert reply.status_code == 200, reply.text
    assert reply.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert reply.headers["Vary"] == "Origin"
    exposed = reply.headers["Access-Control-Expose-Headers"]
    assert "Retry-After" in exposed, exposed
    assert "X-Quota-Remaining" in exposed, exposed


def test_cors_error_reply_has_headers(cors_node):
    reply = cors_node.get("/v1/query", headers={"Origin": "http://localhost:3000"})

    assert reply.status_code == 400, reply.text
    assert reply.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"


def test_cors_other_origin_gets_none(cors_node):
    reply = cors_node.get("/v1/health", headers={"Origin": "https://evil.example"})

    assert reply.status_code == 200, reply.text
    assert "Access-Control-Allow-Origin" not in reply.headers, reply.headers
    assert reply.headers["Vary"] == "Origin"


def test_cors_preflight(cors_node):
    reply = cors_node.request("OPTIONS", "/v1/assert", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-agent-id"})

    assert reply.status_code == 204, reply.text
    assert reply.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert reply.headers["Access-Control-Allow-Methods"] == "POST"
    allowed = reply.headers["Access-Control-Allow-Headers"]
    for header in ("Content-Type", "X-API-Key", "X-Agent-Id", "X-PoW-Nonce", "X-PoW-Timestamp"):
        assert header in allowed, allowed
    assert reply.headers["Vary"] == "Origin"


def test_cors_preflight_other_origin_403(cors_node):
    reply = cors_node.request("OPTIONS", "/v1/assert", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})

    assert reply.status_code == 403, reply.text
    assert reply.json()["error"]["code"] == "origin_not_allowed", reply.text
    assert "Access-Control-Allow-Origin" not in reply.headers, reply.headers


def test_cors_unset_sends_no_headers(fresh_node):
    fresh_node.start()
    reply = fresh_node.get("/v1/health", headers={"Origin": "https://app.example"})
    preflight = fresh_node.request("OPTIONS", "/v1/assert", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST"})

    assert "Access-Control-Allow-Origin" not in reply.headers, reply.headers
    assert "Vary" not in reply.headers, reply.headers
    assert preflight.status_code == 405, preflight.text


def test_cors_invalid_origin_fails_start(fresh_node):
    fresh_node.extra_env["STEMEDB_ALLOWED_ORIGINS"] = "app.example/"

    with pytest.raises(RuntimeError) as failed:
        fresh_node.start()
    assert "STEMEDB_ALLOWED_ORIGINS" in str(failed.value), str(failed.value)


REQUEST = b"GET /v1/ready HTTP/1.1\r\nHost: t\r\n\r\n"


def connect(node):
    return socket.create_connection(("127.0.0.1", node.port), timeout=5)


def closed_within(sock, seconds):
    """Returns True when the server closes sock within seconds (data before is read)."""
    sock.settimeout(seconds)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if sock.recv(4096) == b"":
                return True
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True
    return False


def test_per_client_connection_limit(fresh_node):
    fresh_node.extra_env["STEMEDB_MAX_CONNECTIONS_PER_CLIENT"] = "3"
    fresh_node.start()
    fresh_node.session.close()
    time.sleep(0.2)
    open_ones = [connect(fresh_node) for _ in range(3)]
    for sock in open_ones:
        sock.sendall(REQUEST)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200"), "connection within the limit"

    extra = connect(fresh_node)
    extra.sendall(REQUEST)
    extra.settimeout(5)
    try:
        reply = extra.recv(4096)
    except ConnectionResetError:
        reply = b""
    closed = closed_within(extra, 5)
    open_ones[0].close()
    time.sleep(0.3)
    metrics = requests.get(fresh_node.url("/metrics"), timeout=10).text

    assert reply == b"" or reply.startswith(b"HTTP/1.1 503"), reply
    assert b"connection_limit" in reply or reply == b"", reply
    assert closed, "the connection over the limit stayed open"
    assert re.search(r'stemedb_requests_rejected_total\{reason="connection_limit"\} [1-9]',
                     metrics), metrics[:3000]
    for sock in open_ones[1:]:
        sock.close()
    extra.close()


def test_per_client_limit_counts_h2(fresh_node):
    fresh_node.extra_env["STEMEDB_MAX_CONNECTIONS_PER_CLIENT"] = "1"
    fresh_node.start()
    fresh_node.session.close()
    time.sleep(0.2)
    holder = connect(fresh_node)
    holder.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    assert holder.recv(4096)[3] == 0x4, "the server SETTINGS frame"
    done = subprocess.run(["curl", "-s", "-m", "5", "--http2-prior-knowledge",
                           fresh_node.url("/v1/ready")], capture_output=True, text=True,
                          timeout=30)
    holder.close()
    time.sleep(0.3)
    after = subprocess.run(["curl", "-s", "-m", "5", "--http2-prior-knowledge",
                            fresh_node.url("/v1/ready")], capture_output=True, text=True,
                           timeout=30)

    assert done.stdout.strip() != '{"ready":true}', done
    assert after.stdout.strip() == '{"ready":true}', after


def test_slow_header_closed_at_read_timeout(fresh_node):
    fresh_node.extra_env["STEMEDB_READ_TIMEOUT_MS"] = "1000"
    fresh_node.start()
    slow = connect(fresh_node)
    started = time.monotonic()
    closed = False
    # One byte every 200 ms keeps the connection from going silent, so only the
    # whole-request deadline can close it.
    for byte in b"GET /v1/ready HTTP/1.1\r\nHost: slow\r\nX-Padding: " + b"a" * 100:
        try:
            slow.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        time.sleep(0.2)
        if closed_within(slow, 0.001):
            closed = True
            break
    elapsed = time.monotonic() - started
    served = fresh_node.get("/v1/ready")

    assert closed, "a trickled request head was not closed"
    assert elapsed < 3.0, elapsed
    assert served.status_code == 200, served.text
    slow.close()


def test_slow_body_closed_at_read_timeout(fresh_node):
    fresh_node.extra_env["STEMEDB_READ_TIMEOUT_MS"] = "1000"
    fresh_node.start()
    slow = connect(fresh_node)
    slow.sendall(b"POST /v1/assert HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json"
                 b"\r\nContent-Length: 100\r\n\r\n")
    started = time.monotonic()
    closed = False
    for _ in range(100):
        try:
            slow.sendall(b" ")
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        if closed_within(slow, 0.2):
            closed = True
            break
    elapsed = time.monotonic() - started

    assert closed, "a trickled body was not closed"
    assert elapsed < 3.0, elapsed
    slow.close()


def test_keepalive_between_requests_not_cut(fresh_node):
    fresh_node.extra_env["STEMEDB_READ_TIMEOUT_MS"] = "500"
    fresh_node.start()
    sock = connect(fresh_node)
    for _ in range(3):
        sock.sendall(REQUEST)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        time.sleep(0.4)
    sock.sendall(REQUEST)

    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    sock.close()


def test_oversized_headers_rejected(fresh_node):
    fresh_node.extra_env["STEMEDB_MAX_HEADER_BYTES"] = "4096"
    fresh_node.start()
    with connect(fresh_node) as sock:
        sock.sendall(b"GET /v1/ready HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
        reply = sock.recv(4096)

    assert reply.startswith(b"HTTP/1.1 431 "), reply[:200]
    assert b'"code":"invalid_header"' in reply, reply[:400]


def test_oversized_headers_on_second_request(fresh_node):
    fresh_node.extra_env["STEMEDB_MAX_HEADER_BYTES"] = "4096"
    fresh_node.start()
    with connect(fresh_node) as sock:
        sock.sendall(REQUEST)
        first = sock.recv(4096)
        sock.sendall(b"GET /v1/ready HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
        second = sock.recv(4096)

    assert first.startswith(b"HTTP/1.1 200 "), first[:200]
    assert second.startswith(b"HTTP/1.1 431 "), second[:200]


def test_oversized_body_413(fresh_node):
    fresh_node.start()
    reply = fresh_node.post("/v1/assert", data=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                            headers={"Content-Type": "application/json"})

    assert reply.status_code == 413, reply.text


def test_pipelined_requests_answered(fresh_node):
    fresh_node.start()
    for gap in (0, 0.001):
        with connect(fresh_node) as sock:
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: a\r\n\r\n")
            time.sleep(gap)
            sock.sendall(REQUEST)
            received = b""
            while received.count(b"HTTP/1.1 200") < 2:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk

        assert received.count(b"HTTP/1.1 200") == 2, (gap, received)
