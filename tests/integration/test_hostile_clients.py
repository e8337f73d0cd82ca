"""Hostile clients against one real node, with one well-behaved agent writing signed
assertions meanwhile. The attackers run on several threads: request floods, slowloris
connections, oversized heads and bodies, connection floods, an agent that sends bad
signatures and an agent that copies another agent's claims. Every protection layer is on. Every
write acknowledged to the well-behaved agent must be present after a restart.

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

from claims import BASE_TIME, agent_id, expected_hash, signed, text
from node import pow_headers

ATTACK_SECONDS = 15
PER_CLIENT_LIMIT = 16
SLOWLORIS_SOCKETS = 40
HELD_SOCKETS = 60
# Requests of the bad-signature agent after its breaker opened, and claims the copying
# agent sends; both bound the work of those attackers.
BREAKER_PROBES = 20
COPIED_CLAIMS = 12

GOOD_AGENT = 7
BAD_SIGNER = 8
COPIER = 9


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


def post_assertion(conn, assertion, agent, headers=None):
    """POSTs one assertion; on 428 solves the proof of work and sends it again."""
    body = json.dumps(assertion)
    base = {"Content-Type": "application/json"}
    base.update(headers or {})
    conn.request("POST", "/v1/assert", body=body, headers=base)
    response = conn.getresponse()
    reply = response.read()
    if response.status == 428:
        difficulty = json.loads(reply)["difficulty"]
        conn.request("POST", "/v1/assert", body=body,
                     headers=dict(base, **pow_headers(agent_id(agent), difficulty)))
        response = conn.getresponse()
        reply = response.read()
    return response.status, reply


def good_agent(attack, port, subject, acknowledged):
    """Writes one signed assertion after another over one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30,
                                      source_address=("127.0.0.1", 0))
    i = 0
    while not attack.stopping.is_set():
        assertion = signed(GOOD_AGENT, f"{subject}/{i}", "value", text(f"good {i}"))
        status, body = post_assertion(conn, assertion, GOOD_AGENT)
        if status != 201:
            raise AssertionError(f"write {i} got {status}: {body[:300]!r}")
        acknowledged.append(expected_hash(assertion))
        i += 1
    conn.close()


def bad_signer(attack, port, source, subject):
    """Sends assertions with a corrupted signature, each with a valid proof of work,
    until its circuit breaker has rejected BREAKER_PROBES requests."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    i = 0
    while not attack.stopping.is_set() and attack.counts.get("429 circuit_open", 0) < BREAKER_PROBES:
        assertion = signed(BAD_SIGNER, f"{subject}/bad/{i}", "value", text(f"bad {i}"))
        signature = assertion["signatures"][0]["signature"]
        assertion["signatures"][0]["signature"] = ("00" if signature[:2] != "00" else "11") + signature[2:]
        status, body = post_assertion(conn, assertion, BAD_SIGNER)
        code = json.loads(body)["error"]["code"] if status >= 400 else ""
        attack.count(f"{status} {code}".strip())
        i += 1
    conn.close()


def copier(attack, port, source, subject, acknowledged):
    """Re-posts, as another agent, claims that the well-behaved agent has stored."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    sent = 0
    while not attack.stopping.is_set() and sent < COPIED_CLAIMS:
        if len(acknowledged) <= sent:
            time.sleep(0.1)
            continue
        # A later timestamp makes it a different assertion with the same text.
        copy = signed(COPIER, f"{subject}/{sent}", "value", text(f"good {sent}"),
                      timestamp=BASE_TIME + 1)
        status, body = post_assertion(conn, copy, COPIER)
        reason = json.loads(body).get("reason", "") if status == 202 else ""
        attack.count(f"{status} {reason}".strip())
        sent += 1
    conn.close()


def test_hostile_clients(fresh_node, subject):
    fresh_node.extra_env.update({
        "STEMEDB_MAX_CONNECTIONS_PER_CLIENT": str(PER_CLIENT_LIMIT),
        "STEMEDB_READ_TIMEOUT_MS": "1000",
        "STEMEDB_MAX_HEADER_BYTES": "16384",
        "STEMEDB_MAX_BATCH_BODY_BYTES": "1048576",
        "STEMEDB_HTTP_THREADS": "2",
        # Every layer of the write path on. The read rate is low enough that the request
        # floods hit it; the quota is high enough that the well-behaved agent never does.
        "STEMEDB_RATE_LIMIT_ENABLED": "true",
        "STEMEDB_RATE_LIMIT_READ_RATE": "200",
        "STEMEDB_RATE_LIMIT_READ_BURST": "400",
        "STEMEDB_CIRCUIT_BREAKER_ENABLED": "true",
        "STEMEDB_ADMISSION_ENABLED": "true",
        "STEMEDB_QUOTA_ENABLED": "true",
        "STEMEDB_QUOTA_TOKENS": "100000000",
        "STEMEDB_CONTENT_DEFENSE_ENABLED": "true",
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
        Attack("bad signer", bad_signer, port, "127.0.0.8", subject),
        Attack("copier", copier, port, "127.0.0.9", subject, acknowledged),
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
    bad = attacks[6].counts
    assert bad.get("422 invalid_signature", 0) >= 5, bad
    assert bad.get("429 circuit_open", 0) > 0, bad
    copies = attacks[7].counts
    assert copies.get("202 duplicate", 0) > 0, copies

    metrics = fresh_node.get("/metrics").text
    for reason in ("connection_limit", "read_timeout", "invalid_header", "rate_limited",
                   "circuit_open", "duplicate"):
        assert re.search(rf'stemedb_requests_rejected_total\{{reason="{reason}"\}} [1-9]',
                         metrics), (reason, metrics[:3000])

    code = fresh_node.stop()
    assert code == 0, f"stemedb-api exited with {code} on SIGTERM; log:\n{fresh_node.log()[-3000:]}"
    # The check reads every acknowledged write from 127.0.0.1, more than the low read
    # rate used above allows, so the restarted node runs without rate limits.
    fresh_node.extra_env["STEMEDB_RATE_LIMIT_ENABLED"] = "false"
    fresh_node.start()
    missing = [h for h in acknowledged
               if fresh_node.get(f"/v1/assertions/{h}").status_code != 200]
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged writes are gone"
