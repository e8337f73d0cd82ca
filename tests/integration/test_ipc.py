"""api.sock of a real stemedb-api, driven through `stemedb-ctl ipc` and raw sockets."""

import json
import os
import socket
import struct
import subprocess
import threading
import time

import pytest

from claims import expected_hash, signed, text
from node import Node, build_dir


def socket_path(node):
    return os.path.join(node.data_dir, "run", "api.sock")


def ctl(node, *args, timeout_ms=5000, check=True):
    """Run `stemedb-ctl ipc ARGS` against node; return (exit code, parsed JSON or None, stderr)."""
    binary = os.path.join(build_dir(), "bin", "stemedb-ctl")
    done = subprocess.run(
        [binary, "ipc", "--socket", socket_path(node), "--timeout-ms", str(timeout_ms), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    body = json.loads(done.stdout) if done.returncode == 0 and done.stdout.strip() else None
    if check:
        assert done.returncode == 0, f"ipc {args}: exit {done.returncode}: {done.stderr}"
    return done.returncode, body, done.stderr


def post(node, subject, value):
    assertion = signed(1, subject, "ipc/value", text(value))
    reply = node.post("/v1/assert", json=assertion)
    assert reply.status_code == 201, f"{reply.status_code} {reply.text}"
    return expected_hash(assertion)


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


def test_stats_and_ready(shared_node, subject):
    post(shared_node, subject, "one")
    _, stats, _ = ctl(shared_node, "stats")
    health = shared_node.get("/v1/health").json()
    assert stats["ready"] is True, stats
    assert stats["healthy"] is True, stats
    assert stats["assertion_count"] >= 1, stats
    assert stats["wal_end_offset"] > 0, stats
    assert stats["wal_applied_offset"] == stats["wal_end_offset"], stats
    assert stats["node_id"] == health["node_id"], (stats, health)
    assert stats["durability"] == "immediate", stats
    assert stats["index_rebuild"]["state"] in ("idle", "running", "done"), stats
    _, ready, _ = ctl(shared_node, "ready")
    assert ready == {"ready": True, "healthy": True, "status": "ready"}, ready


def test_get_assertion(shared_node, subject):
    digest = post(shared_node, subject, "fetch me")
    _, found, _ = ctl(shared_node, "get", digest)
    assert found["found"] is True, found
    assert len(found["envelope"]) > 64, found
    assert found["hlc_wall_ms"] > 0, found
    assert subject.encode().hex() in found["envelope"], found

    _, missing, _ = ctl(shared_node, "get", "00" * 32)
    assert missing["found"] is False, missing
    code, _, err = ctl(shared_node, "get", "abc", check=False)
    assert code == 2, f"exit {code}: {err}"


def test_watermark_moves_forward_only(shared_node, subject):
    post(shared_node, subject, "w")
    _, start, _ = ctl(shared_node, "watermark")
    end = start["wal_end_offset"]
    assert start["archive_enabled"] is False, start

    code, _, err = ctl(shared_node, "set-watermark", str(end + 1), check=False)
    assert code == 1, f"exit {code}: {err}"
    assert "past the WAL end offset" in err, err

    _, moved, _ = ctl(shared_node, "set-watermark", str(end))
    assert moved["watermark"] == end, moved
    _, kept, _ = ctl(shared_node, "set-watermark", "0")
    assert kept["watermark"] == end, kept
    metrics = shared_node.get("/metrics").text
    assert f"stemedb_wal_archived_offset {end}" in metrics, metrics


def test_checkpoint(shared_node, subject, tmp_path):
    post(shared_node, subject, "in the checkpoint")
    target = str(tmp_path / "cp")
    _, reply, _ = ctl(shared_node, "checkpoint", target, timeout_ms=60000)
    _, stats, _ = ctl(shared_node, "stats")
    assert reply["assertion_count"] >= 1, reply
    assert reply["assertion_count"] <= stats["assertion_count"], (reply, stats)
    assert 0 < reply["wal_cursor"] <= stats["wal_end_offset"], (reply, stats)
    assert os.path.exists(os.path.join(target, "CURRENT")), os.listdir(target)

    code, _, err = ctl(shared_node, "checkpoint", target, check=False)
    assert code == 1, f"exit {code}: {err}"
    assert "already exists" in err, err
    code, _, err = ctl(shared_node, "checkpoint", "relative/dir", check=False)
    assert code == 1, f"exit {code}: {err}"
    assert "absolute" in err, err


def test_compact_and_rebuild(shared_node, subject):
    for i in range(20):
        post(shared_node, subject, f"v{i}")
    # A fixed as_of keeps reference_time and decay identical between the two reads.
    params = {"subject": subject, "predicate": "ipc/value", "as_of": int(time.time()) + 3600}
    before = shared_node.get("/v1/query", params=params)
    assert before.status_code == 200, before.text

    _, compacted, _ = ctl(shared_node, "compact", timeout_ms=120000)
    assert compacted["disk_bytes_after"] > 0, compacted
    _, started, _ = ctl(shared_node, "rebuild")
    assert started["state"] in ("running", "done"), started

    deadline = time.monotonic() + 60
    while True:
        _, stats, _ = ctl(shared_node, "stats")
        progress = stats["index_rebuild"]
        if progress["state"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert progress["state"] == "done", progress
    assert progress["assertions_done"] >= 20, progress
    after = shared_node.get("/v1/query", params=params)
    # Every read gets its own audit record id, so query_id is left out of the comparison.
    assert {k: v for k, v in after.json().items() if k != "query_id"} == \
        {k: v for k, v in before.json().items() if k != "query_id"}, (before.text, after.text)


class Subscriber:
    """`stemedb-ctl ipc subscribe --count N` in the background, collecting its lines."""

    def __init__(self, node, count):
        binary = os.path.join(build_dir(), "bin", "stemedb-ctl")
        self.process = subprocess.Popen(
            [binary, "ipc", "--socket", socket_path(node), "--timeout-ms", "20000",
             "--count", str(count), "subscribe"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        first = self.process.stdout.readline()
        assert '"subscribed"' in first, f"{first!r} {self.process.stderr.read()}"

    def events(self):
        out, err = self.process.communicate(timeout=60)
        assert self.process.returncode == 0, f"exit {self.process.returncode}: {err}"
        return [json.loads(line) for line in out.splitlines()]


def test_subscription_sees_every_post(shared_node, subject):
    sub = Subscriber(shared_node, 10)
    hashes = [post(shared_node, subject, f"event {i}") for i in range(10)]
    events = sub.events()
    assert [e["hash"] for e in events] == hashes, events
    offsets = [e["wal_offset"] for e in events]
    assert offsets == sorted(offsets), offsets
    assert all(e["size_bytes"] > 0 and e["hlc_wall_ms"] > 0 for e in events), events


def test_duplicate_post_sends_no_event(shared_node, subject):
    first = post(shared_node, subject, "once")
    sub = Subscriber(shared_node, 1)
    again = shared_node.post("/v1/assert", json=signed(1, subject, "ipc/value", text("once")))
    assert again.status_code == 200, again.text
    second = post(shared_node, subject, "twice")
    events = sub.events()
    assert [e["hash"] for e in events] == [second], (first, events)


def test_bad_frames_spare_other_clients(shared_node, subject):
    path = socket_path(shared_node)
    sub = Subscriber(shared_node, 5)
    stop = threading.Event()
    bad_payloads = [
        struct.pack(">I", 0),
        struct.pack(">I", 64 * 1024 * 1024),
        frame(b"\xff\xff\xff"),
        struct.pack(">I", 100) + b"\x08",
    ]
    closed = []

    def attack():
        while not stop.is_set():
            for payload in bad_payloads:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(5)
                    s.connect(path)
                    s.sendall(payload)
                    s.shutdown(socket.SHUT_WR)
                    closed.append(s.recv(1) == b"")

    thread = threading.Thread(target=attack)
    thread.start()
    try:
        hashes = []
        for i in range(5):
            _, stats, _ = ctl(shared_node, "stats")
            assert stats["ready"] is True, stats
            hashes.append(post(shared_node, subject, f"under attack {i}"))
    finally:
        stop.set()
        thread.join()
    assert [e["hash"] for e in sub.events()] == hashes
    assert closed and all(closed), f"{closed.count(False)} of {len(closed)} bad clients kept open"
    metrics = shared_node.get("/metrics").text
    for reason in ("zero_length", "too_large", "bad_envelope", "truncated"):
        line = f'stemedb_ipc_frames_rejected_total{{reason="{reason}"}} 0'
        assert line not in metrics, f"{reason} was not counted:\n{metrics}"


def sealed_segments(node):
    _, stats, _ = ctl(node, "stats")
    return stats


def fill_wal(node, subject, megabytes, start=0):
    """Posts assertions with 60 KB values until the WAL has grown by megabytes MiB."""
    big = "x" * 60000
    target = sealed_segments(node)["wal_end_offset"] + megabytes * 1024 * 1024
    i = start
    while sealed_segments(node)["wal_end_offset"] < target:
        for _ in range(10):
            post(node, subject, f"{i} {big}")
            i += 1
    return i


def test_archive_holds_segments(fresh_node, subject):
    fresh_node.extra_env.update(
        {"STEMEDB_WAL_ARCHIVE": "true", "STEMEDB_WAL_SEGMENT_BYTES": str(1024 * 1024)}
    )
    fresh_node.start()
    i = fill_wal(fresh_node, subject, 3)
    stats = sealed_segments(fresh_node)
    assert stats["wal_archive_enabled"] is True, stats
    sealed = stats["sealed_segments"]
    assert sealed[0]["base_offset"] == 0, sealed
    lag = fresh_node.get("/metrics").text
    assert "stemedb_wal_archive_lag_bytes 0\n" not in lag, lag

    # Archive only the first sealed segment: it may go, the others must stay.
    first_end = sealed[1]["base_offset"]
    ctl(fresh_node, "set-watermark", str(first_end))
    fill_wal(fresh_node, subject, 1, start=i)
    bases = [s["base_offset"] for s in sealed_segments(fresh_node)["sealed_segments"]]
    assert 0 not in bases, bases
    for s in sealed[1:]:
        assert s["base_offset"] in bases, (s, bases)
        assert os.path.exists(os.path.join(fresh_node.data_dir, "wal", s["file_name"])), s
    assert fresh_node.stop() == 0, fresh_node.log()


def test_no_archive_deletes_segments(fresh_node, subject):
    fresh_node.extra_env.update({"STEMEDB_WAL_SEGMENT_BYTES": str(1024 * 1024)})
    fresh_node.start()
    fill_wal(fresh_node, subject, 3)
    stats = sealed_segments(fresh_node)
    assert stats["wal_archive_enabled"] is False, stats
    assert len(stats["sealed_segments"]) <= 1, stats["sealed_segments"]
    assert "stemedb_wal_archive_lag_bytes 0\n" in fresh_node.get("/metrics").text
    assert fresh_node.stop() == 0, fresh_node.log()


def test_stale_socket_replaced_on_restart(fresh_node, subject):
    fresh_node.start()
    post(fresh_node, subject, "before kill")
    fresh_node.kill()
    assert os.path.exists(socket_path(fresh_node)), "the socket file vanished on SIGKILL"
    fresh_node.start()
    _, ready, _ = ctl(fresh_node, "ready")
    assert ready["ready"] is True, ready
    assert fresh_node.stop() == 0, fresh_node.log()
    assert not os.path.exists(socket_path(fresh_node)), "the socket file stayed after a stop"
