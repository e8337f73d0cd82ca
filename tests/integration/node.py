"""Start, stop and restart a real stemedb-api process for integration tests.

The node listens on a free loopback port and keeps its data in a directory the
test owns, so a restart on the same directory exercises WAL replay and RocksDB.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import time

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
                # The per-client connection limit is on in production. The older
                # tests open many connections from 127.0.0.1, so it is off here
                # unless a test sets it.
                "STEMEDB_MAX_CONNECTIONS_PER_CLIENT": "0",
            }
        )
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
