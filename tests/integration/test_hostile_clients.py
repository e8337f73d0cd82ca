"""Hostile clients against one real node: request floods, slowloris connections,
oversized heads and bodies and connection floods, all from several threads, while
one well-behaved agent writes signed assertions. Every write acknowledged to the
agent must be present after a restart.

Each kind of attacker uses its own loopback source address (Linux routes all of
127.0.0.0/8 to lo), so the per-client connection limit applies to it and not to the
well-behaved agent on 127.0.0.1. Everything is bounded by ATTACK_SECONDS and by
the connection counts below."""

import http.client
import json
import re
import socket
import threading
import time

from claims import expected_hash, signed, text

ATTACK_SECONDS = 15
PER_CLIENT_LIMIT = 16
SLOWLORIS_SOCKETS = 40
HELD_SOCKETS = 60


class Attack:
    """Runs a target function on a thread until stop() and counts what it saw."""

    def __init__(self, name, target, *args):
        self.name = name
        self.counts = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(target, args), daemon=True)
        self.error = None

    def _run(self, target, args):
        try:
            target(self, *args)
        except Exception as e:  # reported by the test, which fails on it
            self.error = e

    def count(self, key):
        self.counts[key] = self.counts.get(key, 0) + 1

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), f"{self.name} did not stop"


def source_socket(port, source, timeout=5):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def first_status(sock):
    try:
        head = sock.recv(64)
    except (socket.timeout, ConnectionResetError):
        return "no reply"
    match = re.match(rb"HTTP/1\.1 (\d{3})", head)
    return match.group(1).decode() if match else "closed"


def request_flood(attack, port, source):
    """Keep-alive requests as fast as possible: reads, malformed writes, unknown paths."""
    requests_sent = [
        b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /v1/assert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 9\r\n\r\n{\"bad\": 1",
        b"GET /v1/nothing/here HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v1/query?subject=x HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    sock = None
    i = 0
    while not attack.stopping.is_set():
        try:
            if sock is None:
                sock = source_socket(port, source)
            sock.sendall(requests_sent[i % len(requests_sent)])
            attack.count(first_status(sock))
            i += 1
        except OSError:
            attack.count("connection error")
            if sock is not None:
                sock.close()
            sock = None
    if sock is not None:
        sock.close()


def slowloris(attack, port, source):
    """Holds connections that send one header byte at a time and never finish."""
    head = b"GET /v1/health HTTP/1.1\r\nHost: slow\r\n" + b"X-Slow: " + b"s" * 4000
    sockets = {}
    while not attack.stopping.is_set():
        while len(sockets) < SLOWLORIS_SOCKETS:
            try:
                sockets[source_socket(port, source)] = 0
                attack.count("opened")
            except OSError:
                attack.count("connect failed")
                break
        for sock, sent in list(sockets.items()):
            try:
                sock.sendall(head[sent:sent + 1])
                sockets[sock] = sent + 1
                sock.setblocking(False)
                try:
                    if sock.recv(4096) == b"":
                        raise ConnectionResetError
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
            except OSError:
                attack.count("closed by server")
                sock.close()
                del sockets[sock]
        time.sleep(0.2)
    for sock in sockets:
        sock.close()


def oversized(attack, port, source):
    """Sends heads over STEMEDB_MAX_HEADER_BYTES and bodies over the body limit."""
    while not attack.stopping.is_set():
        try:
            with source_socket(port, source) as sock:
                sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"h" * 70000
                             + b"\r\n\r\n")
                attack.count("head " + first_status(sock))
            with source_socket(port, source) as sock:
                sock.sendall(b"POST /v1/assert/batch HTTP/1.1\r\nHost: x\r\nContent-Type: "
                             b"application/json\r\nContent-Length: 40000000\r\n\r\n"
                             + b" " * 65536)
                attack.count("body " + first_status(sock))
        except OSError:
            attack.count("connection error")
        time.sleep(0.05)


def connection_flood(attack, port, source):
    """Opens connections that send nothing, keeps HELD_SOCKETS of them open and closes
    the others at once."""
    held = []
    while not attack.stopping.is_set():
        try:
            sock = source_socket(port, source, timeout=2)
        except OSError:
            attack.count("connect failed")
            time.sleep(0.05)
            continue
        attack.count("opened")
        if len(held) < HELD_SOCKETS:
            held.append(sock)
        else:
            sock.close()
    for sock in held:
        sock.close()


def good_agent(attack, port, subject, acknowledged):
    """Writes one signed assertion after another over one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30,
                                      source_address=("127.0.0.1", 0))
    i = 0
    while not attack.stopping.is_set():
        assertion = signed(7, f"{subject}/{i}", "value", text(f"good {i}"))
        conn.request("POST", "/v1/assert", body=json.dumps(assertion),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        body = response.read()
        if response.status != 201:
            raise AssertionError(f"write {i} got {response.status}: {body[:300]!r}")
        acknowledged.append(expected_hash(assertion))
        i += 1
    conn.close()


def test_hostile_clients(fresh_node, subject):
    fresh_node.extra_env.update({
        "STEMEDB_MAX_CONNECTIONS_PER_CLIENT": str(PER_CLIENT_LIMIT),
        "STEMEDB_READ_TIMEOUT_MS": "1000",
        "STEMEDB_MAX_HEADER_BYTES": "16384",
        "STEMEDB_MAX_BATCH_BODY_BYTES": "1048576",
        "STEMEDB_HTTP_THREADS": "2",
    })
    fresh_node.start()
    port = fresh_node.port
    acknowledged = []

    attacks = [
        Attack("request flood A", request_flood, port, "127.0.0.2"),
        Attack("request flood B", request_flood, port, "127.0.0.3"),
        Attack("slowloris", slowloris, port, "127.0.0.4"),
        Attack("oversized", oversized, port, "127.0.0.5"),
        Attack("connection flood A", connection_flood, port, "127.0.0.6"),
        Attack("connection flood B", connection_flood, port, "127.0.0.7"),
    ]
    for attack in attacks:
        attack.start()
    time.sleep(1)
    agent = Attack("good agent", good_agent, port, subject, acknowledged).start()
    time.sleep(ATTACK_SECONDS)
    agent.stop()
    for attack in attacks:
        attack.stop()

    assert agent.error is None, f"the good agent failed: {agent.error!r}"
    assert len(acknowledged) >= 20, f"only {len(acknowledged)} writes in {ATTACK_SECONDS} s"
    for attack in attacks:
        assert attack.error is None, f"{attack.name} crashed: {attack.error!r}"
    slow = attacks[2].counts
    big = attacks[3].counts
    assert slow.get("closed by server", 0) > 0, slow
    assert big.get("head 431", 0) > 0, big
    assert big.get("body 413", 0) > 0, big

    metrics = fresh_node.get("/metrics").text
    for reason in ("connection_limit", "read_timeout", "invalid_header"):
        assert re.search(rf'stemedb_requests_rejected_total\{{reason="{reason}"\}} [1-9]',
                         metrics), (reason, metrics[:3000])

    code = fresh_node.stop()
    assert code == 0, f"stemedb-api exited with {code} on SIGTERM; log:\n{fresh_node.log()[-3000:]}"
    fresh_node.start()
    missing = [h for h in acknowledged
               if fresh_node.get(f"/v1/assertions/{h}").status_code != 200]
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged writes are gone"
