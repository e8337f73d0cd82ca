"""Start, stop and restart a real stemedb-api process for integration tests.

The node listens on a free loopback port and keeps its data in a directory the
test owns, so a restart on the same directory exercises WAL replay and RocksDB.
"""

import hashlib
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import time

import nacl.signing
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_dir():
    """Return the build directory that contains bin/stemedb-api."""
    return os.environ.get("STEMEDB_BUILD", os.path.join(ROOT, "build"))


def free_port():
    """Return a loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Operator key that signs trust outcome records in tests: every Node trusts it unless a
# test sets STEMEDB_TRUST_AUTHORITY_KEYS, and every Gateway signs with it unless a test
# sets STEMEDB_ADMIN_SIGNING_KEY_FILE (an empty value leaves the gateway without a key).
TEST_OPERATOR_SEED = bytes([7]) * 32


def test_operator_public_key():
    """Return the hex public key of the test operator key."""
    return nacl.signing.SigningKey(TEST_OPERATOR_SEED).verify_key.encode().hex()


def write_test_operator_key(directory):
    """Write the test operator key in the `stemedb-ctl keygen` format; return its path."""
    path = os.path.join(str(directory), "test-operator.key")
    if not os.path.exists(path):
        with open(path, "w", encoding="utf-8") as key_file:
            json.dump({"agent_id": test_operator_public_key(), "seed": TEST_OPERATOR_SEED.hex()},
                      key_file)
        os.chmod(path, 0o600)
    return path


PROTECTION_OFF = {
    "STEMEDB_CIRCUIT_BREAKER_ENABLED": "false",
    "STEMEDB_ADMISSION_ENABLED": "false",
    "STEMEDB_QUOTA_ENABLED": "false",
}


def pow_digest(nonce, agent_hex, timestamp):
    """Return BLAKE2b-256 of nonce (u64 BE), agent id (32 bytes), timestamp (u64 BE)."""
    data = nonce.to_bytes(8, "big") + bytes.fromhex(agent_hex) + timestamp.to_bytes(8, "big")
    return hashlib.blake2b(data, digest_size=32).digest()


def leading_zero_bits(digest):
    """Count the leading zero bits of a byte string."""
    bits = 0
    for byte in digest:
        if byte == 0:
            bits += 8
            continue
        bits += 8 - byte.bit_length()
        break
    return bits


def solve_pow(agent_hex, difficulty, timestamp=None, start=None):
    """Return (nonce, timestamp) whose digest has at least difficulty leading zero bits.

    The search starts at a random nonce unless start is given, so two proofs made in
    the same second differ and the server does not take the second for a replay."""
    if timestamp is None:
        timestamp = int(time.time())
    nonce = random.randrange(1 << 48) if start is None else start
    while leading_zero_bits(pow_digest(nonce, agent_hex, timestamp)) < difficulty:
        nonce += 1
    return nonce, timestamp


def pow_headers(agent_hex, difficulty, timestamp=None, start=None):
    """Return the X-PoW-Nonce and X-PoW-Timestamp headers of a fresh proof."""
    nonce, ts = solve_pow(agent_hex, difficulty, timestamp, start)
    return {"X-PoW-Nonce": str(nonce), "X-PoW-Timestamp": str(ts)}


class Node:
    """One stemedb-api process on 127.0.0.1 with its own data directory."""

    def __init__(self, data_dir, env=None, threads=2):
        self.data_dir = str(data_dir)
        self.port = free_port()
        self.extra_env = dict(env or {})
        self.threads = threads
        self.process = None
        self.log_path = os.path.join(self.data_dir, "stemedb-api.log")
        self.session = requests.Session()

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}"

    def url(self, path):
        return self.base_url + path

    def environment(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("STEMEDB_")}
        env.update(
            {
                "STEMEDB_DATA_DIR": self.data_dir,
                "STEMEDB_API_LISTEN": f"127.0.0.1:{self.port}",
                "STEMEDB_HTTP_THREADS": str(self.threads),
                "STEMEDB_LOG_LEVEL": "info",
                # Older tests send many requests and bad requests on purpose, so the
                # protection layers are off unless a test's env turns them on.
                "STEMEDB_AUTH_ENABLED": "false",
                "STEMEDB_RATE_LIMIT_ENABLED": "false",
                # Older tests post the same claim from many agents on purpose; tests
                # of content defense turn it on in env.
                "STEMEDB_CONTENT_DEFENSE_ENABLED": "false",
                "STEMEDB_TRUST_AUTHORITY_KEYS": test_operator_public_key(),
                # The per-client connection limit is on in production. The older
                # tests open many connections from 127.0.0.1, so it is off here
                # unless a test sets it.
                "STEMEDB_MAX_CONNECTIONS_PER_CLIENT": "0",
            }
        )
        # The older tests send many writes from new agents and bad requests on
        # purpose, so these layers are off unless a test turns them on.
        env.update(PROTECTION_OFF)
        env.update(self.extra_env)
        return env

    def start(self, wait_ready=True, timeout=30.0):
        """Start the process; with wait_ready, block until GET /v1/ready is 200."""
        os.makedirs(self.data_dir, exist_ok=True)
        binary = os.path.join(build_dir(), "bin", "stemedb-api")
        if not os.access(binary, os.X_OK):
            raise RuntimeError(f"{binary} is missing; run make first or set STEMEDB_BUILD")
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [binary], env=self.environment(), stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"stemedb-api exited with {self.process.returncode}; log:\n{self.log()}"
                )
            try:
                last = requests.get(self.url("/v1/ready"), timeout=1)
                if last.status_code == 200:
                    return
            except requests.ConnectionError as e:
                last = e
            time.sleep(0.05)
        raise RuntimeError(f"stemedb-api not ready after {timeout} s (last: {last}); log:\n{self.log()}")

    def stop(self, timeout=30.0):
        """Send SIGTERM and return the exit code."""
        if self.process is None:
            return None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self.process = None
        self.session.close()
        self.session = requests.Session()
        return code

    def kill(self):
        """Send SIGKILL, as a crash would, and reap the process."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(10)
        self.process = None
        self.session.close()
        self.session = requests.Session()

    def restart(self, **start_args):
        self.stop()
        return self.start(**start_args)

    def log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def get(self, path, **kw):
        kw.setdefault("timeout", 30)
        return self.session.get(self.url(path), **kw)

    def post(self, path, **kw):
        kw.setdefault("timeout", 30)
        return self.session.post(self.url(path), **kw)

    def request(self, method, path, **kw):
        kw.setdefault("timeout", 30)
        return self.session.request(method, self.url(path), **kw)

    def raw_request(self, method, path, body=None, headers=None):
        """Send exactly this path and body (no client-side quoting); return
        (status, headers, parsed JSON or None)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = None
        return response.status, dict(response.getheaders()), parsed
