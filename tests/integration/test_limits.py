"""Connection limits and timeouts, observed on raw sockets."""

import socket
import time

REQUEST = b"GET /v1/ready HTTP/1.1\r\nHost: t\r\n\r\n"


def connect(node):
    return socket.create_connection(("127.0.0.1", node.port), timeout=5)


def exchange(sock):
    """Send one keep-alive request and return the start of the response."""
    sock.sendall(REQUEST)
    return sock.recv(4096)


def closed_by_server(sock, within):
    """Return True when the server closes sock within `within` seconds."""
    sock.settimeout(within)
    try:
        return sock.recv(4096) == b""
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


def test_connection_limit_waits_in_backlog(fresh_node):
    fresh_node.threads = 1
    fresh_node.extra_env["STEMEDB_MAX_CONNECTIONS"] = "2"
    fresh_node.start()
    first, second = connect(fresh_node), connect(fresh_node)
    assert exchange(first).startswith(b"HTTP/1.1 200"), "first connection"
    assert exchange(second).startswith(b"HTTP/1.1 200"), "second connection"

    third = connect(fresh_node)
    third.sendall(REQUEST)
    third.settimeout(0.5)
    try:
        early = third.recv(4096)
    except socket.timeout:
        early = None
    first.close()
    third.settimeout(5)
    late = early or third.recv(4096)

    assert early is None, f"third connection served while two were open: {early[:40]!r}"
    assert late.startswith(b"HTTP/1.1 200"), f"third connection after one closed: {late[:40]!r}"
    second.close()
    third.close()


def test_idle_keepalive_timeout(fresh_node):
    fresh_node.extra_env["STEMEDB_IDLE_TIMEOUT_MS"] = "300"
    fresh_node.start()
    sock = connect(fresh_node)
    assert exchange(sock).startswith(b"HTTP/1.1 200")

    started = time.monotonic()
    closed = closed_by_server(sock, 3)

    assert closed, "idle connection still open after 3 s"
    assert time.monotonic() - started >= 0.2, "closed before the idle timeout"


def test_read_timeout_closes_slow_request(fresh_node):
    fresh_node.extra_env["STEMEDB_READ_TIMEOUT_MS"] = "300"
    fresh_node.start()
    sock = connect(fresh_node)

    sock.sendall(b"GET /v1/ready HTTP/1.1\r\nHost: t\r\n")

    assert closed_by_server(sock, 3), "half-sent request kept open after 3 s"


def test_oversized_headers_rejected(fresh_node):
    fresh_node.extra_env["STEMEDB_MAX_HEADER_BYTES"] = "2048"
    fresh_node.start()
    sock = connect(fresh_node)

    sock.sendall(b"GET /v1/ready HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * 4096 + b"\r\n\r\n")
    sock.settimeout(5)
    try:
        reply = sock.recv(4096)
    except ConnectionResetError:
        reply = b""

    assert not reply.startswith(b"HTTP/1.1 200"), f"oversized headers accepted: {reply[:60]!r}"
