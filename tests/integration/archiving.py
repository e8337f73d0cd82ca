"""Helpers for the WAL archival, backup and restore tests: a stemedb-walarchiver process,
write load with large signed assertions, and readers for WAL segment files."""

import concurrent.futures
import os
import signal
import struct
import subprocess
import time

import claims
from node import Node, build_dir

SEGMENT_BYTES = 1024 * 1024
PADDING = "x" * 2000  # about 500 assertions fill a 1 MiB segment


def archive_node(data_dir, **env):
    """Return a Node with 1 MiB WAL segments and archive retention on."""
    settings = {"STEMEDB_WAL_SEGMENT_BYTES": str(SEGMENT_BYTES), "STEMEDB_WAL_ARCHIVE": "true"}
    settings.update(env)
    return Node(data_dir, env=settings)


class Archiver:
    """One stemedb-walarchiver process for a node's data directory."""

    def __init__(self, data_dir, archive_dir=None, command=None, verify_command=None, env=None):
        self.data_dir = str(data_dir)
        self.log_path = os.path.join(self.data_dir, "stemedb-walarchiver.log")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("STEMEDB_")}
        self.env.update(
            {
                "STEMEDB_DATA_DIR": self.data_dir,
                "STEMEDB_WAL_ARCHIVE_INTERVAL_MS": "50",
                "STEMEDB_WAL_ARCHIVE_RETRY_INITIAL_MS": "100",
                "STEMEDB_WAL_ARCHIVE_RETRY_MAX_MS": "1000",
            }
        )
        if archive_dir is not None:
            self.env["STEMEDB_WAL_ARCHIVE_DIR"] = str(archive_dir)
        if command is not None:
            self.env["STEMEDB_WAL_ARCHIVE_COMMAND"] = command
        if verify_command is not None:
            self.env["STEMEDB_WAL_ARCHIVE_VERIFY_COMMAND"] = verify_command
        self.env.update(env or {})
        self.process = None

    def start(self):
        binary = os.path.join(build_dir(), "bin", "stemedb-walarchiver")
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([binary], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def stop(self, timeout=30.0):
        if self.process is None:
            return None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self.process = None
        return code

    def log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def metrics(self):
        """Return the metrics file as {name: value} (unlabelled samples only)."""
        path = os.path.join(self.data_dir, "run", "walarchiver.prom")
        values = {}
        try:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    if line.startswith("#") or not line.strip():
                        continue
                    name, value = line.rsplit(" ", 1)
                    values[name] = float(value)
        except OSError:
            pass
        return values


def write_batches(node, first, count, threads=8, size=50, tag="load"):
    """Write count batches of size large assertions from several threads; return the
    hashes of every created assertion."""

    def one(k):
        items = [
            claims.signed(1 + k % 3, f"{tag}/{k}", f"p{i}", claims.text(f"{tag}-{k}-{i}-{PADDING}"))
            for i in range(size)
        ]
        response = node.post("/v1/assert/batch", json={"assertions": items}, timeout=60)
        assert response.status_code == 200, f"batch {k}: {response.status_code} {response.text}"
        results = response.json()["results"]
        assert all(r["status"] == "created" for r in results), f"batch {k}: {results[:2]}"
        return [r["hash"] for r in results]

    hashes = []
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for batch in pool.map(one, range(first, first + count)):
            hashes.extend(batch)
    return hashes


def segment_names(directory):
    """Return the WAL segment file names in directory, in offset order."""
    names = [n for n in os.listdir(directory) if n.endswith(".wal") and len(n) == 20]
    return sorted(names, key=lambda n: int(n[:16], 16))


def segment_range(path):
    """Return (base, end) of a sealed segment file from its header and size."""
    with open(path, "rb") as f:
        header = f.read(32)
    assert header[:8] == b"STMWAL01", f"{path}: bad magic {header[:8]!r}"
    base = struct.unpack_from("<Q", header, 16)[0]
    return base, base + os.path.getsize(path) - 32


def archived_chain(archive_dir):
    """Return the end offset of the contiguous chain of archived segments from offset 0,
    failing on a gap."""
    end = 0
    for name in segment_names(archive_dir):
        base, segment_end = segment_range(os.path.join(archive_dir, name))
        assert base == end, f"archive gap: {name} starts at {base}, the chain ends at {end}"
        end = segment_end
    return end


def active_base(node):
    """Return the base offset of the node's newest (active) segment."""
    names = segment_names(os.path.join(node.data_dir, "wal"))
    return int(names[-1][:16], 16)


def wait_for(condition, timeout, description):
    """Poll condition until it returns a true value; fail with the description."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {description}")


def ctl(*args, env=None):
    """Run stemedb-ctl; return the CompletedProcess with text output."""
    binary = os.path.join(build_dir(), "bin", "stemedb-ctl")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("STEMEDB_")}
    full_env.update(env or {})
    return subprocess.run([binary, *args], env=full_env, capture_output=True, text=True, timeout=300)
