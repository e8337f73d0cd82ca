"""stemedb-gateway against a real stemedb-api: health, metrics, cluster status and the
admin endpoints, with and without an admin token, and with stemedb-api down."""

import os
import shutil
import signal
import subprocess
import time

import pytest
import requests

from claims import BASE_TIME, signed, text
from node import Node, build_dir, free_port, write_test_operator_key

TOKEN = "gateway-test-token-0123456789abcdef"
ADMIN_PATHS = [
    ("POST", "/v1/admin/compact"),
    ("POST", "/v1/admin/indexes/rebuild"),
    ("POST", "/v1/admin/backup"),
    ("GET", "/v1/admin/cluster"),
]


class Gateway:
    """One stemedb-gateway process pointed at the run directory of a Node."""

    def __init__(self, node, token=None, env=None):
        self.node = node
        self.port = free_port()
        self.token = token
        self.extra_env = dict(env or {})
        self.process = None
        self.log_path = os.path.join(node.data_dir, f"stemedb-gateway-{self.port}.log")

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def environment(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("STEMEDB_")}
        env.update(
            {
                "STEMEDB_DATA_DIR": self.node.data_dir,
                "STEMEDB_API_LISTEN": f"127.0.0.1:{self.node.port}",
                "STEMEDB_GATEWAY_LISTEN": f"127.0.0.1:{self.port}",
                "STEMEDB_LOG_LEVEL": "debug",
            }
        )
        if self.token is not None:
            env["STEMEDB_ADMIN_TOKEN"] = self.token
        env["STEMEDB_ADMIN_SIGNING_KEY_FILE"] = write_test_operator_key(
            os.path.dirname(self.node.data_dir.rstrip("/")))
        env.update(self.extra_env)
        return env

    def start(self, timeout=10.0):
        binary = os.path.join(build_dir(), "bin", "stemedb-gateway")
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [binary], env=self.environment(), stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"stemedb-gateway exited with {self.process.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url("/metrics"), timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"stemedb-gateway did not start in {timeout} s:\n{self.log()}")

    def stop(self, timeout=15.0):
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

    def headers(self):
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def get(self, path, **kw):
        kw.setdefault("timeout", 30)
        return requests.get(self.url(path), **kw)

    def post(self, path, admin=True, **kw):
        kw.setdefault("timeout", 60)
        headers = dict(self.headers() if admin else {})
        headers.update(kw.pop("headers", {}))
        return requests.post(self.url(path), headers=headers, **kw)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    node = Node(tmp_path_factory.mktemp("gw")).start()
    yield node
    code = node.stop()
    assert code == 0, f"stemedb-api exited with {code}; log:\n{node.log()}"


@pytest.fixture(scope="module")
def open_gateway(node):
    """A gateway without an admin token."""
    gateway = Gateway(node).start()
    yield gateway
    code = gateway.stop()
    assert code == 0, f"stemedb-gateway exited with {code}; log:\n{gateway.log()}"


@pytest.fixture(scope="module")
def guarded_gateway(node):
    """A gateway that requires TOKEN on the admin endpoints."""
    gateway = Gateway(node, token=TOKEN).start()
    yield gateway
    code = gateway.stop()
    assert code == 0, f"stemedb-gateway exited with {code}; log:\n{gateway.log()}"


def write_claims(node, subject, count):
    claims = [
        signed(1 + i % 5, subject, f"p{i % 3}", text(f"value {i}"), timestamp=BASE_TIME + i)
        for i in range(count)
    ]
    response = node.post("/v1/assert/batch", json={"assertions": claims})
    assert response.status_code == 200, response.text
    return claims


def promtool_check(text_body):
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text_body.encode(), capture_output=True, timeout=60
    )
    return result.returncode, result.stdout.decode() + result.stderr.decode()


def wait_for_rebuild(gateway, timeout=60.0):
    deadline = time.monotonic() + timeout
    progress = None
    while time.monotonic() < deadline:
        progress = gateway.get("/v1/cluster/status").json()["index_rebuild"]
        if progress["state"] in ("done", "failed"):
            return progress
        time.sleep(0.1)
    raise AssertionError(f"index rebuild still not finished after {timeout} s: {progress}")


def test_health_reports_every_daemon(open_gateway, node):
    response = open_gateway.get("/v1/health")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "healthy", body
    assert body["daemons"]["api"]["state"] == "healthy", body
    assert body["daemons"]["gateway"]["state"] == "healthy", body
    assert body["daemons"]["walarchiver"]["state"] == "disabled", body
    assert body["daemons"]["replicator"]["state"] == "not_configured", body
    assert body["daemons"]["gossipd"]["state"] == "not_configured", body
    api_node_id = node.get("/v1/health").json()["node_id"]
    assert body["node_id"].replace("-", "") == api_node_id.replace("-", ""), body


def test_cluster_status_figures(open_gateway, node, subject):
    write_claims(node, subject, 12)
    api_health = node.get("/v1/health").json()
    response = open_gateway.get("/v1/cluster/status")
    body = response.json()
    assert response.status_code == 200, body
    assert body["cluster"] == {"mode": "single_node", "nodes": 1}, body
    assert body["node"]["api_listen"] == f"127.0.0.1:{node.port}", body
    assert body["node"]["gateway_listen"] == f"127.0.0.1:{open_gateway.port}", body
    assert body["node"]["node_id"].replace("-", "") == api_health["node_id"].replace("-", ""), body
    assert body["storage"]["assertions"] == api_health["assertions_count"], body
    assert body["storage"]["disk_bytes"] > 0, body
    assert body["wal"]["end_offset"] == api_health["wal"]["end_offset"], body
    assert body["wal"]["end_offset"] > 0, body
    assert body["wal"]["segments"] >= 1, body
    assert body["wal"]["archive_enabled"] is False, body
    assert body["index_rebuild"]["state"] in ("idle", "running", "done"), body
    assert body["daemons"]["api"]["state"] == "healthy", body


def test_admin_cluster_alias(open_gateway):
    status = open_gateway.get("/v1/cluster/status").json()
    alias = open_gateway.get("/v1/admin/cluster")
    assert alias.status_code == 200, alias.text
    assert set(alias.json()) == set(status), alias.json()
    assert alias.json()["node"] == status["node"], alias.json()


def test_gateway_metrics_pass_promtool(open_gateway):
    open_gateway.get("/v1/health")
    response = open_gateway.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain"), response.headers
    code, output = promtool_check(response.text)
    assert code == 0, output
    assert 'stemedb_gateway_http_requests_total{method="GET",path="/v1/health",status="200"}' in response.text
    assert 'stemedb_gateway_ipc_call_duration_seconds_count{call="stats"}' in response.text


def test_api_metrics_pass_promtool(node):
    response = node.get("/metrics")
    assert response.status_code == 200, response.text
    code, output = promtool_check(response.text)
    assert code == 0, output


@pytest.mark.parametrize("method,path", ADMIN_PATHS)
def test_admin_without_token_header(guarded_gateway, method, path):
    response = requests.request(method, guarded_gateway.url(path), timeout=30)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized", response.text
    assert response.headers.get("WWW-Authenticate", "").startswith("Bearer"), response.headers


@pytest.mark.parametrize("method,path", ADMIN_PATHS)
def test_admin_with_wrong_token(guarded_gateway, method, path):
    headers = {"Authorization": f"Bearer {TOKEN}x"}
    response = requests.request(method, guarded_gateway.url(path), headers=headers, timeout=30)
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "forbidden", response.text


@pytest.mark.parametrize(
    "value", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", f"Token {TOKEN}", f"Bearer {TOKEN} extra"]
)
def test_admin_malformed_authorization(guarded_gateway, value):
    response = requests.post(
        guarded_gateway.url("/v1/admin/compact"), headers={"Authorization": value}, timeout=30
    )
    assert response.status_code == 401, f"{value!r}: {response.text}"


def test_admin_token_case_insensitive_scheme(guarded_gateway):
    response = requests.post(
        guarded_gateway.url("/v1/admin/compact"), headers={"Authorization": f"bearer {TOKEN}"}, timeout=60
    )
    assert response.status_code == 200, response.text


def test_unknown_admin_path_needs_token(guarded_gateway):
    response = guarded_gateway.get("/v1/admin/nothing-here")
    assert response.status_code == 401, response.text
    authorized = guarded_gateway.get("/v1/admin/nothing-here", headers=guarded_gateway.headers())
    assert authorized.status_code == 404, authorized.text


def test_public_endpoints_need_no_token(guarded_gateway):
    for path in ("/v1/health", "/metrics", "/v1/cluster/status"):
        response = guarded_gateway.get(path)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:200]}"


def metric_value(gateway, series):
    """Return the value of one series line of the gateway's /metrics, or None."""
    for line in gateway.get("/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.split(" ")[1])
    return None


def test_compact_with_token(guarded_gateway):
    series = 'stemedb_gateway_admin_operations_total{operation="compact",result="ok"}'
    before = metric_value(guarded_gateway, series)
    response = guarded_gateway.post("/v1/admin/compact")
    body = response.json()
    assert response.status_code == 200, body
    assert body["disk_bytes_after"] > 0, body
    assert body["duration_ms"] >= 0, body
    after = metric_value(guarded_gateway, series)
    assert after == before + 1, f"{series}: {before} before, {after} after"
    assert "admin compact from 127.0.0.1" in guarded_gateway.log()


def test_compact_without_token_configured(open_gateway):
    response = open_gateway.post("/v1/admin/compact")
    assert response.status_code == 200, response.text
    assert "STEMEDB_ADMIN_TOKEN is not set" in open_gateway.log()


def test_compact_rejects_a_body_field(open_gateway):
    response = open_gateway.post("/v1/admin/compact", json={"column_family": "default"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "unknown_field", response.text
    assert response.json()["error"]["field"] == "column_family", response.text


def test_rebuild_keeps_query_results(open_gateway, node, subject):
    write_claims(node, subject, 30)
    before = {
        p: node.get("/v1/query", params={"subject": subject, "predicate": p, "lens": "recency"}).json()
        for p in ("p0", "p1", "p2")
    }
    skeptic_before = node.get("/v1/skeptic", params={"subject": subject, "predicate": "p1"}).json()

    response = open_gateway.post("/v1/admin/indexes/rebuild")
    body = response.json()
    assert response.status_code == 202, body
    assert body["index_rebuild"]["state"] in ("running", "done"), body
    progress = wait_for_rebuild(open_gateway)
    assert progress["state"] == "done", progress
    assert progress["assertions_done"] == progress["assertions_total"], progress
    assert progress["assertions_total"] >= 30, progress
    assert progress["finished_at"] is not None, progress

    for p, expected in before.items():
        after = node.get("/v1/query", params={"subject": subject, "predicate": p, "lens": "recency"}).json()
        # Every read gets its own audit record id, so query_id is left out of the comparison.
        after.pop("query_id")
        expected.pop("query_id")
        assert after == expected, f"{p}: {after} != {expected}"
    skeptic_after = node.get("/v1/skeptic", params={"subject": subject, "predicate": "p1"}).json()
    skeptic_after.pop("query_id")
    skeptic_before.pop("query_id")
    assert skeptic_after == skeptic_before, skeptic_after


def ctl(*args):
    return subprocess.run(
        [os.path.join(build_dir(), "bin", "stemedb-ctl"), *args], capture_output=True, timeout=120
    )


def test_backup_writes_manifest_and_checkpoint(open_gateway, node, tmp_path, subject):
    write_claims(node, subject, 5)
    target = tmp_path / "backup-1"
    response = open_gateway.post("/v1/admin/backup", json={"path": str(target)})
    body = response.json()
    assert response.status_code == 201, body
    assert body["path"] == str(target), body
    assert body["assertion_count"] == node.get("/v1/health").json()["assertions_count"], body
    assert body["wal_cursor"] > 0, body
    assert body["files"] > 0, body
    assert os.path.isfile(target / "MANIFEST.json"), sorted(os.listdir(target))
    assert os.path.isfile(target / "db" / "CURRENT"), sorted(os.listdir(target / "db"))
    assert "admin backup from 127.0.0.1" in open_gateway.log()


def test_backup_verifies_and_restores(open_gateway, node, tmp_path, subject):
    write_claims(node, subject, 7)
    target = tmp_path / "backup-2"
    response = open_gateway.post("/v1/admin/backup", json={"path": str(target)})
    assert response.status_code == 201, response.text
    expected = response.json()["assertion_count"]

    verified = ctl("verify", "--backup", str(target))
    assert verified.returncode == 0, verified.stdout.decode() + verified.stderr.decode()

    restored = Node(tmp_path / "restored")
    done = ctl("restore", "--backup", str(target), "--data-dir", restored.data_dir)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    restored.start()
    try:
        count = restored.get("/v1/health").json()["assertions_count"]
        assert count == expected, f"restored {count}, backup reported {expected}"
    finally:
        restored.stop()


def test_backup_into_non_empty_directory_rejected(open_gateway, tmp_path):
    target = tmp_path / "exists"
    target.mkdir()
    (target / "keep.txt").write_text("operator data\n")
    response = open_gateway.post("/v1/admin/backup", json={"path": str(target)})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == "path", response.text
    assert "not empty" in response.json()["error"]["message"], response.text
    assert (target / "keep.txt").read_text() == "operator data\n"


@pytest.mark.parametrize(
    "body,code,field",
    [
        ({}, "missing_field", "path"),
        ({"path": 5}, "invalid_field", "path"),
        ({"path": "relative/dir"}, "invalid_field", "path"),
        ({"path": "/"}, "invalid_field", "path"),
        ({"path": "/tmp/a/../b"}, "invalid_field", "path"),
        ({"path": "/tmp//b"}, "invalid_field", "path"),
        ({"path": "/tmp/b\n"}, "invalid_field", "path"),
        ({"path": "/tmp/b", "extra": 1}, "unknown_field", "extra"),
    ],
)
def test_backup_rejects_bad_body(open_gateway, body, code, field):
    response = open_gateway.post("/v1/admin/backup", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error.get("field") == field, error


@pytest.mark.parametrize("data", [b"{", b"[1]", b'{"path":"/a","path":"/b"}'])
def test_backup_rejects_invalid_json(open_gateway, data):
    response = open_gateway.post(
        "/v1/admin/backup", data=data, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_json", response.text


def test_backup_rejects_other_media_type(open_gateway):
    response = open_gateway.post(
        "/v1/admin/backup", data=b"path=/tmp/x", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415, response.text


def test_oversized_body_rejected(open_gateway):
    response = open_gateway.post("/v1/admin/backup", data=b"{" + b" " * 100_000 + b"}")
    assert response.status_code == 413, response.status_code


def test_unknown_path_and_wrong_method(open_gateway):
    missing = open_gateway.get("/v1/nothing")
    assert missing.status_code == 404, missing.text
    assert missing.json()["error"]["code"] == "not_found", missing.text
    wrong = open_gateway.post("/v1/health", admin=False)
    assert wrong.status_code == 405, wrong.text
    assert wrong.headers["Allow"] == "GET", wrong.headers
    wrong_admin = open_gateway.get("/v1/admin/compact")
    assert wrong_admin.status_code == 405, wrong_admin.text
    assert wrong_admin.headers["Allow"] == "POST", wrong_admin.headers


def test_query_string_rejected(open_gateway):
    response = open_gateway.get("/v1/health?verbose=1")
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "unknown_parameter", response.text


@pytest.mark.parametrize("method,path", ADMIN_PATHS)
def test_admin_endpoints_absent_on_api_port(node, method, path):
    response = node.request(method, path)
    assert response.status_code == 404, f"{method} {path} on 18180: {response.status_code}"


def test_api_down_reported(tmp_path):
    api = Node(tmp_path / "down").start()
    gateway = Gateway(api, token=TOKEN).start()
    try:
        assert gateway.get("/v1/health").status_code == 200, gateway.get("/v1/health").text
        assert api.stop() == 0

        health = gateway.get("/v1/health")
        body = health.json()
        assert health.status_code == 503, body
        assert body["status"] == "unhealthy", body
        assert body["daemons"]["api"]["state"] == "down", body
        assert body["daemons"]["gateway"]["state"] == "healthy", body

        status = gateway.get("/v1/cluster/status")
        assert status.status_code == 503, status.text
        assert status.json()["wal"] is None, status.text
        assert status.json()["daemons"]["api"]["state"] == "down", status.text

        started = time.monotonic()
        compact = gateway.post("/v1/admin/compact")
        assert compact.status_code == 503, compact.text
        assert compact.json()["error"]["code"] == "unavailable", compact.text
        assert time.monotonic() - started < 10, "a compaction against a dead stemedb-api waited too long"

        metrics = gateway.get("/metrics").text
        assert 'stemedb_gateway_ipc_errors_total{call="stats",reason="unreachable"} 0' not in metrics
        assert "api.sock" in gateway.log(), gateway.log()

        api.start()
        health = gateway.get("/v1/health")
        assert health.status_code == 200, health.text
    finally:
        assert gateway.stop() == 0, gateway.log()
        if api.process is not None:
            api.stop()


def test_stop_logs_and_exits_zero(node):
    gateway = Gateway(node).start()
    assert gateway.get("/v1/health").status_code == 200
    assert gateway.stop() == 0, gateway.log()
    log = gateway.log()
    assert "started: listening on" in log, log
    assert "stopped" in log, log


@pytest.mark.parametrize(
    "env,needle",
    [
        ({"STEMEDB_GATEWAY_LISTEN": "localhost"}, "STEMEDB_GATEWAY_LISTEN"),
        ({"STEMEDB_ADMIN_TOKEN": "has space"}, "STEMEDB_ADMIN_TOKEN"),
        ({"STEMEDB_GATEWAY_IPC_TIMEOUT_MS": "0"}, "STEMEDB_GATEWAY_IPC_TIMEOUT_MS"),
        ({"STEMEDB_GATEWAY_TYPO": "1"}, "STEMEDB_GATEWAY_TYPO"),
    ],
)
def test_invalid_configuration_exits_2(node, env, needle):
    gateway = Gateway(node, env=env)
    result = subprocess.run(
        [os.path.join(build_dir(), "bin", "stemedb-gateway")],
        env=gateway.environment(),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 2, result
    assert needle in result.stderr.decode(), result.stderr


def test_walarchiver_state_and_metrics(tmp_path):
    archive = tmp_path / "archive"
    archive.mkdir()
    api = Node(tmp_path / "archived", env={"STEMEDB_WAL_ARCHIVE": "true"}).start()
    gateway = Gateway(api, env={"STEMEDB_GATEWAY_ARCHIVE_STALL_MS": "1500"}).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEMEDB_")}
    env.update({"STEMEDB_DATA_DIR": api.data_dir, "STEMEDB_WAL_ARCHIVE_DIR": str(archive)})
    log = open(os.path.join(api.data_dir, "walarchiver.log"), "ab")
    archiver = subprocess.Popen(
        [os.path.join(build_dir(), "bin", "stemedb-walarchiver")], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    try:
        deadline = time.monotonic() + 15
        body = None
        while time.monotonic() < deadline:
            body = gateway.get("/v1/health").json()
            if body["daemons"]["walarchiver"]["state"] in ("healthy", "archiving"):
                break
            time.sleep(0.1)
        assert body["daemons"]["walarchiver"]["state"] in ("healthy", "archiving"), body
        assert body["daemons"]["walarchiver"]["metrics_age_seconds"] is not None, body

        metrics = gateway.get("/metrics").text
        assert "stemedb_wal_archive_lag_segments" in metrics, metrics[-2000:]
        code, output = promtool_check(metrics)
        assert code == 0, output

        archiver.send_signal(signal.SIGTERM)
        assert archiver.wait(30) == 0
        time.sleep(2.0)
        health = gateway.get("/v1/health")
        body = health.json()
        assert health.status_code == 503, body
        assert body["status"] == "degraded", body
        assert body["daemons"]["walarchiver"]["state"] == "down", body
    finally:
        if archiver.poll() is None:
            archiver.kill()
            archiver.wait(10)
        assert gateway.stop() == 0, gateway.log()
        api.stop()
