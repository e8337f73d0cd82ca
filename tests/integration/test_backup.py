"""stemedb-ctl backup, verify and restore against a real stemedb-api, including
point-in-time restore from archived WAL segments."""

import json
import os
import subprocess
import time

import pytest

from archiving import (
    Archiver,
    active_base,
    archive_node,
    archived_chain,
    ctl,
    segment_names,
    wait_for,
    write_batches,
)
from node import Node, build_dir


@pytest.fixture
def node(tmp_path):
    n = archive_node(tmp_path / "node").start()
    yield n
    if n.process is not None:
        n.kill()


@pytest.fixture
def restored(tmp_path):
    """A second node started later on a restored data directory."""
    holder = {}
    yield holder
    n = holder.get("node")
    if n is not None and n.process is not None:
        n.kill()


def socket_of(node):
    return os.path.join(node.data_dir, "run", "api.sock")


def take_backup(node, dest):
    result = ctl("backup", "--dest", str(dest), "--socket", socket_of(node), "--data-dir", node.data_dir)
    assert result.returncode == 0, f"backup exit {result.returncode}: {result.stderr}{result.stdout}"
    return result


def assert_present(n, hashes, present):
    for h in hashes:
        status = n.get(f"/v1/assertions/{h}").status_code
        expected = 200 if present else 404
        assert status == expected, f"GET /v1/assertions/{h} returned {status}, expected {expected}"


def flip_byte(path, position):
    with open(path, "r+b") as f:
        f.seek(position)
        value = f.read(1)[0]
        f.seek(position)
        f.write(bytes([value ^ 0x01]))


def test_backup_verify_restore(node, tmp_path, restored):
    before = write_batches(node, 0, 30, threads=4, tag="before")
    backup = tmp_path / "backup"
    take_backup(node, backup)
    after = write_batches(node, 30, 5, threads=2, tag="after")

    manifest = json.loads((backup / "MANIFEST.json").read_text())
    total = manifest["assertion_count"] + manifest["wal_records"]
    assert total == len(before), f"manifest covers {total} assertions, {len(before)} were written"

    result = ctl("verify", "--backup", str(backup))
    assert result.returncode == 0, f"verify exit {result.returncode}:\n{result.stdout}{result.stderr}"
    assert "verify: OK" in result.stdout, result.stdout

    data = tmp_path / "restored"
    result = ctl("restore", "--backup", str(backup), "--data-dir", str(data))
    assert result.returncode == 0, f"restore exit {result.returncode}:\n{result.stdout}{result.stderr}"
    n = restored["node"] = Node(data).start()
    assert_present(n, before[::7], True)
    assert_present(n, after[::7], False)
    count = n.get("/v1/health").json()["assertions_count"]
    assert count == len(before), f"restored node has {count} assertions, expected {len(before)}"


def test_verify_live_data_dir(node):
    write_batches(node, 0, 10, threads=2)
    result = ctl("verify", "--data-dir", node.data_dir)
    assert result.returncode == 0, f"verify exit {result.returncode}:\n{result.stdout}{result.stderr}"


def test_verify_finds_flipped_wal_byte(node, tmp_path):
    write_batches(node, 0, 10, threads=2)
    backup = tmp_path / "backup"
    take_backup(node, backup)
    write_batches(node, 10, 4, threads=2)
    take_backup(node, tmp_path / "second")
    segments = segment_names(tmp_path / "second" / "wal")
    assert segments, "the second backup copied no WAL segment"
    target = tmp_path / "second" / "wal" / segments[-1]
    flip_byte(target, os.path.getsize(target) // 2)

    result = ctl("verify", "--backup", str(tmp_path / "second"))
    assert result.returncode == 1, f"verify exit {result.returncode}:\n{result.stdout}"
    assert f"{target} has BLAKE2b" in result.stdout, result.stdout
    assert "invalid record" in result.stdout, result.stdout


def test_verify_finds_tampered_checkpoint(node, tmp_path):
    write_batches(node, 0, 10, threads=2)
    backup = tmp_path / "backup"
    take_backup(node, backup)
    ssts = sorted(p for p in (backup / "db").iterdir() if p.suffix == ".sst")
    assert ssts, "the checkpoint holds no SST file"
    flip_byte(ssts[0], os.path.getsize(ssts[0]) // 3)

    result = ctl("verify", "--backup", str(backup))
    assert result.returncode == 1, f"verify exit {result.returncode}:\n{result.stdout}"
    assert f"{ssts[0]} has BLAKE2b" in result.stdout, result.stdout


def test_backup_without_manifest_is_incomplete(node, tmp_path):
    write_batches(node, 0, 2, threads=1)
    backup = tmp_path / "backup"
    take_backup(node, backup)
    (backup / "MANIFEST.json").unlink()
    result = ctl("verify", "--backup", str(backup))
    assert result.returncode == 1, f"verify exit {result.returncode}"
    assert "not a complete backup" in result.stderr, result.stderr


def test_backup_rejects_nonempty_dest(node, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep").write_text("x")
    result = ctl("backup", "--dest", str(dest), "--socket", socket_of(node))
    assert result.returncode == 2, f"backup exit {result.returncode}"
    assert "not empty" in result.stderr, result.stderr


def test_restore_rejects_nonempty_dir(node, tmp_path):
    write_batches(node, 0, 2, threads=1)
    backup = tmp_path / "backup"
    take_backup(node, backup)
    target = tmp_path / "busy"
    target.mkdir()
    (target / "precious").write_text("keep me")

    result = ctl("restore", "--backup", str(backup), "--data-dir", str(target))
    assert result.returncode == 1, f"restore exit {result.returncode}"
    assert "is not empty" in result.stderr, result.stderr
    assert sorted(os.listdir(target)) == ["precious"], os.listdir(target)
    assert (target / "precious").read_text() == "keep me"


def test_restore_rejects_until_before_backup(node, tmp_path):
    write_batches(node, 0, 2, threads=1)
    backup = tmp_path / "backup"
    take_backup(node, backup)
    result = ctl("restore", "--backup", str(backup), "--data-dir", str(tmp_path / "r"), "--until", "1000")
    assert result.returncode == 1, f"restore exit {result.returncode}: {result.stdout}"
    assert "restore from an older backup" in result.stderr, result.stderr


def test_point_in_time_restore(node, tmp_path, restored):
    archive = tmp_path / "archive"
    archive.mkdir()
    archiver = Archiver(node.data_dir, archive_dir=archive).start()
    try:
        early = write_batches(node, 0, 10, threads=2, tag="early")
        backup = tmp_path / "backup"
        take_backup(node, backup)
        middle = write_batches(node, 10, 30, threads=4, tag="middle")
        time.sleep(1.1)
        until = time.time()
        time.sleep(1.1)
        late = write_batches(node, 40, 30, threads=4, tag="late")
        # The late writes fill more than two segments, so the segment where they begin
        # is sealed. Once every sealed segment is archived, the cut point is archived too.
        sealed_end = active_base(node)
        wait_for(lambda: archived_chain(archive) >= sealed_end, 60, "every sealed segment archived")
    finally:
        archiver.stop()

    data = tmp_path / "pitr"
    result = ctl(
        "restore", "--backup", str(backup), "--data-dir", str(data),
        "--wal-archive", str(archive), "--until", f"{until:.3f}",
    )
    assert result.returncode == 0, f"restore exit {result.returncode}:\n{result.stdout}{result.stderr}"
    assert "stopped at --until" in result.stdout, result.stdout

    n = restored["node"] = Node(data).start()
    assert_present(n, early[::5], True)
    assert_present(n, middle[::5], True)
    assert_present(n, late[::5], False)
    count = n.get("/v1/health").json()["assertions_count"]
    expected = len(early) + len(middle)
    assert count == expected, f"restored node has {count} assertions, expected {expected}"


def test_dr_drill_script():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    script = os.path.join(root, "scripts", "dr-drill.sh")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEMEDB_")}
    result = subprocess.run([script, build_dir()], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"dr-drill exit {result.returncode}:\n{result.stdout}{result.stderr}"
    assert result.stdout.rstrip().endswith("PASS"), result.stdout
