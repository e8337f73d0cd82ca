"""Crash test: SIGKILL stemedb-api during concurrent writes, restart, and check the ledger.

Writer threads send signed single assertions and batches and record every hash the
server acknowledged (201 or 200) and every hash that was sent without an answer. After
each kill and restart on the same data directory:
- every acknowledged hash is readable by hash and appears in its lens index;
- every unanswered hash is either wholly there (record and index) or wholly absent;
- the node's assertion count equals the number of hashes found, so nothing else
  appeared and nothing was stored twice.
"""

import os
import random
import sys
import threading
import time

import pytest
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "vectors"))

import stemedb_ref  # noqa: E402
from node import Node  # noqa: E402

CYCLES = 5
WRITERS = 6
PREDICATES = ("p0", "p1", "p2")
BATCH_SIZE = 20


class Ledger:
    """What the writers sent, keyed by hash: (subject, predicate, acknowledged)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.entries = {}

    def sent(self, assertion, acknowledged):
        key = stemedb_ref.hash_hex({k: v for k, v in assertion.items() if k != "signatures"})
        with self.lock:
            old = self.entries.get(key)
            was_acknowledged = old is not None and old[2]
            self.entries[key] = (assertion["subject"], assertion["predicate"],
                                 acknowledged or was_acknowledged)
        return key


def writer(node, ledger, cycle, index, stop):
    """Send assertions until the node dies or stop is set; every 4th request is a batch."""
    session = requests.Session()
    seed = bytes([index + 1]) * 32
    rng = random.Random(cycle * 100 + index)
    subject = f"crash/c{cycle}/w{index}"
    sequence = 0
    while not stop.is_set():
        count = BATCH_SIZE if sequence % 4 == 3 else 1
        items = []
        for _ in range(count):
            sequence += 1
            items.append(stemedb_ref.make_assertion(
                seed, subject, rng.choice(PREDICATES), sequence,
                confidence=0.5, timestamp=1_700_000_000 + sequence))
        try:
            if count == 1:
                response = session.post(node.url("/v1/assert"), json=items[0], timeout=10)
                acknowledged = [response.status_code in (200, 201)]
                assert response.status_code in (200, 201), response.text
            else:
                response = session.post(node.url("/v1/assert/batch"),
                                        json={"assertions": items}, timeout=10)
                assert response.status_code == 200, response.text
                results = response.json()["results"]
                acknowledged = [r["status"] in ("created", "exists") for r in results]
        except (requests.ConnectionError, requests.Timeout):
            for item in items:
                ledger.sent(item, False)
            return
        for item, ok in zip(items, acknowledged):
            ledger.sent(item, ok)


def run_cycle(node, ledger, cycle):
    stop = threading.Event()
    threads = [threading.Thread(target=writer, args=(node, ledger, cycle, i, stop))
               for i in range(WRITERS)]
    for t in threads:
        t.start()
    time.sleep(random.Random(cycle).uniform(0.8, 2.0))
    node.kill()
    stop.set()
    for t in threads:
        t.join(30)
        assert not t.is_alive(), "writer thread did not stop after the kill"


def index_hashes(node, subject, predicate):
    response = node.get("/v1/query", params={"subject": subject, "predicate": predicate,
                                             "limit": 10000})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["candidate_count"] == len(body["candidates"]), body["candidate_count"]
    return {c["hash"] for c in body["candidates"]}


def check_ledger(node, ledger):
    found = set()
    indexed = set()
    for subject in {e[0] for e in ledger.entries.values()}:
        for predicate in PREDICATES:
            indexed |= index_hashes(node, subject, predicate)
    for key, (subject, predicate, acknowledged) in ledger.entries.items():
        response = node.get(f"/v1/assertions/{key}")
        assert response.status_code in (200, 404), response.text
        present = response.status_code == 200
        if acknowledged:
            assert present, f"acknowledged assertion {key} is missing after restart"
        if present:
            found.add(key)
            assert response.json()["subject"] == subject
        assert present == (key in indexed), (
            f"assertion {key}: record present={present} but index present={key in indexed}")
    health = node.get("/v1/health").json()
    assert health["assertions_count"] == len(found), (
        f"node counts {health['assertions_count']} assertions, ledger finds {len(found)}")
    return found


@pytest.mark.parametrize("durability", ["immediate"])
def test_kill_during_writes(tmp_path, durability):
    node = Node(tmp_path / "node", env={"STEMEDB_DURABILITY": durability,
                                         "STEMEDB_WAL_SEGMENT_BYTES": str(1 << 20)})
    ledger = Ledger()
    node.start()
    try:
        for cycle in range(CYCLES):
            run_cycle(node, ledger, cycle)
            node.start()
            acknowledged = sum(1 for e in ledger.entries.values() if e[2])
            assert acknowledged > 0, f"cycle {cycle}: no write was acknowledged before the kill"
            check_ledger(node, ledger)
    finally:
        if node.process is not None:
            node.kill()
