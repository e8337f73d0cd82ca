"""The Prometheus examples under promtool, and promtool's lint of live /metrics."""

import os
import shutil
import subprocess
import time

import pytest
import requests

from claims import signed, text
from node import build_dir, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples", "prometheus")
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(PROMTOOL is None,
                                reason="promtool is needed (make deps installs prometheus)")


def promtool(*args, stdin=None):
    return subprocess.run([PROMTOOL, *args], cwd=EXAMPLES, input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_alert_rules_pass_check():
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, f"promtool check rules: {result.stdout}{result.stderr}"


def test_alert_rule_unit_tests_pass():
    result = promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, f"promtool test rules: {result.stdout}{result.stderr}"


def test_scrape_config_passes_check():
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, f"promtool check config: {result.stdout}{result.stderr}"


def test_every_alert_has_severity_and_runbook():
    yaml = pytest.importorskip("yaml")
    with open(os.path.join(EXAMPLES, "alerts.yml")) as f:
        groups = yaml.safe_load(f)["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) >= 8, f"only {len(rules)} rules"
    for rule in rules:
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        url = rule["annotations"]["runbook_url"]
        runbook = url.split("/operations/runbooks/", 1)[1]
        path = os.path.join(ROOT, "docs", "operations", "runbooks", runbook)
        assert os.path.isfile(path), f"{name}: runbook {path} does not exist"


def test_api_metrics_pass_check(shared_node):
    # Traffic first, so that the histograms and labelled counters have samples.
    response = shared_node.post("/v1/assert", json=signed(1, "prometheus/lint", "p", text("v")))
    assert response.status_code == 201, response.text
    shared_node.get("/v1/query", params={"subject": "prometheus/lint"})
    shared_node.get("/v1/assertions/" + "0" * 64)

    exposition = shared_node.get("/metrics").text
    result = promtool("check", "metrics", stdin=exposition)
    assert result.returncode == 0, f"promtool check metrics: {result.stdout}{result.stderr}"
    assert "stemedb_wal_fsync_latency_seconds_bucket" in exposition


def test_gateway_metrics_pass_check(shared_node, tmp_path):
    binary = os.path.join(build_dir(), "bin", "stemedb-gateway")
    if not os.access(binary, os.X_OK):
        pytest.skip("stemedb-gateway is not built")
    port = free_port()
    env = shared_node.environment()
    env["STEMEDB_GATEWAY_LISTEN"] = f"127.0.0.1:{port}"
    log_path = tmp_path / "gateway.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([binary], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        exposition = None
        deadline = time.monotonic() + 20
        while exposition is None and time.monotonic() < deadline:
            try:
                exposition = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except requests.ConnectionError:
                assert process.poll() is None, f"gateway exited:\n{log_path.read_text()}"
                time.sleep(0.2)
        assert exposition is not None, f"gateway not answering:\n{log_path.read_text()}"
        result = promtool("check", "metrics", stdin=exposition)
        assert result.returncode == 0, f"promtool check metrics: {result.stdout}{result.stderr}"
    finally:
        process.terminate()
        process.wait(timeout=30)
