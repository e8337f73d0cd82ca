"""stemedb-walarchiver against a real stemedb-api: archival under concurrent writes,
retention of unarchived segments, idempotence, and the archive command with retries."""

import os
import re

import pytest

from archiving import (
    Archiver,
    active_base,
    archive_node,
    archived_chain,
    segment_names,
    wait_for,
    write_batches,
)


@pytest.fixture
def node(tmp_path):
    n = archive_node(tmp_path / "node").start()
    yield n
    if n.process is not None:
        n.kill()


@pytest.fixture
def archiver_factory():
    started = []

    def make(*args, **kw):
        archiver = Archiver(*args, **kw)
        started.append(archiver)
        return archiver

    yield make
    for archiver in started:
        if archiver.process is not None:
            archiver.process.kill()
            archiver.process.wait(10)


def test_archival_under_concurrent_writes(node, tmp_path, archiver_factory):
    archive = tmp_path / "archive"
    archive.mkdir()
    archiver = archiver_factory(node.data_dir, archive_dir=archive).start()

    write_batches(node, 0, 240, threads=8)
    sealed_end = active_base(node)
    assert sealed_end >= 8 * 1024 * 1024, f"only {sealed_end} bytes were sealed"

    wait_for(lambda: archived_chain(archive) >= sealed_end, 60, "every sealed segment archived")
    names = segment_names(archive)
    log = archiver.log()
    for name in names:
        count = len(re.findall(rf"segment {name} archived and verified", log))
        assert count == 1, f"{name} was archived {count} times; log:\n{log}"
    metrics = wait_for(
        lambda: (m := archiver.metrics()).get("stemedb_wal_archived_segments_total") == len(names) and m,
        10,
        "the metrics file to count every archived segment",
    )
    assert metrics["stemedb_wal_archive_failures_total"] == 0, f"failures: {metrics}"

    # Archived segments that were not yet deleted must be byte-identical to the WAL's.
    wal_dir = os.path.join(node.data_dir, "wal")
    for name in set(names) & set(segment_names(wal_dir)):
        with open(os.path.join(wal_dir, name), "rb") as a, open(archive / name, "rb") as b:
            assert a.read() == b.read(), f"archived {name} differs from the WAL's copy"
    assert archiver.stop() == 0, f"archiver exit status; log:\n{archiver.log()}"


def test_unarchived_segments_are_kept(node, tmp_path, archiver_factory):
    wal_dir = os.path.join(node.data_dir, "wal")
    write_batches(node, 0, 100, threads=4)
    kept = segment_names(wal_dir)
    assert len(kept) >= 4, f"expected several segments to accumulate, found {kept}"
    assert kept[0] == "0000000000000000.wal", f"a segment was deleted unarchived: {kept}"

    archive = tmp_path / "archive"
    archive.mkdir()
    archiver = archiver_factory(node.data_dir, archive_dir=archive).start()
    wait_for(lambda: archived_chain(archive) >= active_base(node), 60, "the backlog archived")
    lag = wait_for(
        lambda: archiver.metrics().get("stemedb_wal_archive_lag_segments") == 0 and "done",
        10,
        "archive lag 0",
    )
    assert lag == "done"

    # The api deletes released segments after the next rotation.
    write_batches(node, 100, 40, threads=4)
    wait_for(
        lambda: segment_names(wal_dir)[0] != "0000000000000000.wal",
        30,
        "stemedb-api to delete archived segments",
    )
    assert archived_chain(archive) >= int(segment_names(wal_dir)[0][:16], 16)


def test_archiving_again_is_harmless(node, tmp_path, archiver_factory):
    archive = tmp_path / "archive"
    archive.mkdir()
    write_batches(node, 0, 60, threads=4)
    first = archiver_factory(node.data_dir, archive_dir=archive).start()
    wait_for(lambda: archived_chain(archive) >= active_base(node), 60, "first archival")
    assert first.stop() == 0
    before = {n: (archive / n).read_bytes() for n in segment_names(archive)}

    second = archiver_factory(node.data_dir, archive_dir=archive).start()
    write_batches(node, 60, 30, threads=4)
    wait_for(lambda: archived_chain(archive) >= active_base(node), 60, "second archival")
    assert second.stop() == 0
    for name, data in before.items():
        assert (archive / name).read_bytes() == data, f"{name} changed on the second run"
    assert "Z error " not in second.log(), f"the second run logged an error:\n{second.log()}"


def test_archive_command_retries(node, tmp_path, archiver_factory):
    archive = tmp_path / "remote"
    archive.mkdir()
    counter = tmp_path / "attempts"
    # Fails on the first two calls, then copies like an upload would.
    command = (
        f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; "
        f"[ $n -gt 2 ] && cp %p {archive}/%f"
    )
    verify = f"cmp %p {archive}/%f"
    write_batches(node, 0, 40, threads=4)
    archiver = archiver_factory(node.data_dir, command=command, verify_command=verify).start()

    wait_for(lambda: archived_chain(archive) >= active_base(node), 60, "command archival")
    wait_for(lambda: "archiving recovered" in archiver.log(), 10, "the recovery log line")
    log = archiver.log()
    assert "(attempt 1)" in log, f"first failure not logged:\n{log}"
    assert "(attempt 2)" in log, f"second failure not logged:\n{log}"
    assert "exited with status 1" in log, f"exit status not logged:\n{log}"
    assert "archiving recovered after 2 failed attempts" in log, log
    metrics = archiver.metrics()
    assert metrics.get("stemedb_wal_archive_failures_total") == 2, f"metrics: {metrics}"
