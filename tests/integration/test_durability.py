"""Durability: restarts, crashes and the eventual durability mode."""

import os
import time

from claims import expected_hash, signed, text


def write_claims(node, subject, count):
    hashes = []
    for i in range(count):
        response = node.post("/v1/assert", json=signed(1, subject, f"p{i % 3}", text(f"v{i}")))
        assert response.status_code == 201, response.text
        hashes.append(response.json()["hash"])
    return hashes


def assert_all_readable(node, hashes):
    for digest in hashes:
        response = node.get(f"/v1/assertions/{digest}")
        assert response.status_code == 200, f"{digest}: {response.status_code} {response.text}"


def test_restart_keeps_everything(fresh_node, subject):
    fresh_node.start()
    hashes = write_claims(fresh_node, subject, 20)
    batch = [signed(2, subject, "batch", text(f"b{i}")) for i in range(30)]
    assert fresh_node.post("/v1/assert/batch", json={"assertions": batch}).json()["created"] == 30
    hashes += [expected_hash(item) for item in batch]
    node_id = fresh_node.get("/v1/health").json()["node_id"]

    code = fresh_node.stop()
    fresh_node.start()

    assert code == 0, f"exit code {code}; log:\n{fresh_node.log()}"
    assert_all_readable(fresh_node, hashes)
    assert fresh_node.get("/v1/health").json()["assertions_count"] == 50
    assert fresh_node.get("/v1/health").json()["node_id"] == node_id
    query = fresh_node.get("/v1/query", params={"subject": subject, "predicate": "batch"})
    assert query.json()["candidate_count"] == 30, query.text


def test_acknowledged_writes_survive_kill(fresh_node, subject):
    fresh_node.start()
    hashes = write_claims(fresh_node, subject, 20)

    fresh_node.kill()
    fresh_node.start()

    assert_all_readable(fresh_node, hashes)
    again = fresh_node.post("/v1/assert", json=signed(1, subject, "p0", text("v0")))
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "exists", again.text


def test_eventual_mode(fresh_node, subject):
    fresh_node.extra_env.update({"STEMEDB_DURABILITY": "eventual",
                                 "STEMEDB_WAL_SYNC_INTERVAL_MS": "20"})
    fresh_node.start()

    health = fresh_node.get("/v1/health").json()
    hashes = write_claims(fresh_node, subject, 10)
    fresh_node.kill()
    fresh_node.start()

    assert health["durability"] == "eventual", health
    assert_all_readable(fresh_node, hashes)


def test_configured_node_id(fresh_node):
    node_id = "0f8e3c2a-6d1b-4e5f-9a7c-2b4d6e8f0a1c"
    fresh_node.extra_env["STEMEDB_NODE_ID"] = node_id
    fresh_node.start()

    assert fresh_node.get("/v1/health").json()["node_id"] == node_id


def test_invalid_configuration_exits(fresh_node):
    fresh_node.extra_env["STEMEDB_MAX_CONNECTIONS"] = "0"
    fresh_node.start(wait_ready=False)

    code = fresh_node.process.wait(10)
    fresh_node.process = None

    assert code == 2, f"exit code {code}"
    assert "STEMEDB_MAX_CONNECTIONS" in fresh_node.log(), fresh_node.log()


def test_sigterm_under_load(fresh_node, subject):
    """Writes acknowledged while the node stops are all readable after restart."""
    import threading

    import requests

    fresh_node.start()
    acknowledged, lock, stop = [], threading.Lock(), threading.Event()

    def writer(agent):
        session = requests.Session()
        i = 0
        while not stop.is_set():
            item = signed(agent, subject, f"load{agent}", text(f"v{i}"))
            i += 1
            try:
                response = session.post(fresh_node.url("/v1/assert"), json=item, timeout=10)
            except requests.RequestException:
                return
            if response.status_code in (200, 201):
                with lock:
                    acknowledged.append(response.json()["hash"])

    threads = [threading.Thread(target=writer, args=(agent,)) for agent in range(1, 9)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    code = fresh_node.stop()
    stop.set()
    for thread in threads:
        thread.join(15)
    fresh_node.start()

    assert code == 0, f"exit code {code}; log:\n{fresh_node.log()}"
    assert_all_readable(fresh_node, acknowledged)


def test_corrupt_wal_stops_node(fresh_node, subject):
    fresh_node.start()
    write_claims(fresh_node, subject, 5)
    assert fresh_node.stop() == 0
    wal_dir = os.path.join(fresh_node.data_dir, "wal")
    segment = os.path.join(wal_dir, sorted(os.listdir(wal_dir))[0])
    with open(segment, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))

    fresh_node.start(wait_ready=False)
    code = fresh_node.process.wait(20)
    fresh_node.process = None

    assert code == 1, f"exit code {code}; log:\n{fresh_node.log()}"
    assert "WAL replay failed" in fresh_node.log(), fresh_node.log()
