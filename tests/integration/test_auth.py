"""API keys of stemedb-api: the X-API-Key check, scopes, agent binding, revocation,
the root key bootstrap, the rejection metrics, and key management through the gateway
and stemedb-ctl keys."""

import json
import os
import re
import subprocess

import pytest
import requests

from claims import agent_id, signed, text
from node import Node, build_dir
from test_gateway import Gateway

ROOT_KEY = "sdb_0123456789abcdef_" + "ab" * 32
OTHER_ROOT_KEY = "sdb_fedcba9876543210_" + "cd" * 32
AUTH_ENV = {"STEMEDB_AUTH_ENABLED": "true", "STEMEDB_ROOT_API_KEY": ROOT_KEY}


def rejected(node, reason):
    """Return stemedb_requests_rejected_total{reason} from /metrics."""
    body = node.get("/metrics").text
    match = re.search(r'^stemedb_requests_rejected_total\{reason="%s"\} (\S+)$' % reason, body, re.M)
    assert match, f"no rejection series for {reason}"
    return float(match.group(1))


def ctl(*args, node):
    """Run stemedb-ctl keys against the node's api.sock; return the completed process."""
    socket = os.path.join(node.data_dir, "run", "api.sock")
    binary = os.path.join(build_dir(), "bin", "stemedb-ctl")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEMEDB_")}
    return subprocess.run(
        [binary, "keys", "--socket", socket, *args], capture_output=True, text=True, env=env, timeout=30
    )


def create_key(node, *scopes, agent=None, name="test"):
    args = ["create", "--scopes", ",".join(scopes), "--name", name]
    if agent is not None:
        args += ["--agent", agent]
    done = ctl(*args, node=node)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def auth_node(tmp_path_factory):
    node = Node(tmp_path_factory.mktemp("auth"), env=AUTH_ENV).start()
    yield node
    assert node.stop() == 0, node.log()


def test_missing_key_is_401(auth_node):
    before = rejected(auth_node, "missing_api_key")
    r = auth_node.get("/v1/query", params={"subject": "s", "predicate": "p"})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "missing_api_key"
    assert "X-API-Key" in r.headers["WWW-Authenticate"]
    assert rejected(auth_node, "missing_api_key") == before + 1


@pytest.mark.parametrize(
    "key",
    [
        "not-a-key",
        "sdb_0123456789abcdef_" + "00" * 32,  # known id, wrong secret
        "sdb_1111111111111111_" + "ab" * 32,  # unknown id
        ROOT_KEY.upper(),
    ],
)
def test_wrong_key_is_401(auth_node, key):
    before = rejected(auth_node, "invalid_api_key")
    r = auth_node.get("/v1/feed", headers={"X-API-Key": key})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_api_key"
    assert rejected(auth_node, "invalid_api_key") == before + 1


def test_root_key_reads_and_writes(auth_node, subject):
    headers = {"X-API-Key": ROOT_KEY}
    assert auth_node.get("/v1/feed", headers=headers).status_code == 200
    r = auth_node.post("/v1/assert", json=signed(1, subject, "p", text("x")), headers=headers)
    assert r.status_code == 201, r.text


def test_health_ready_metrics_exempt(auth_node):
    for path in ("/v1/health", "/v1/ready", "/metrics"):
        assert auth_node.get(path).status_code == 200, path


def test_read_key_gets_403_on_post(auth_node, subject):
    key = create_key(auth_node, "read")
    headers = {"X-API-Key": key["api_key"]}
    before = rejected(auth_node, "insufficient_scope")
    assert auth_node.get("/v1/feed", headers=headers).status_code == 200
    r = auth_node.post("/v1/assert", json=signed(1, subject, "p", text("x")), headers=headers)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "insufficient_scope"
    assert rejected(auth_node, "insufficient_scope") == before + 1


def test_write_key_gets_403_on_get(auth_node):
    key = create_key(auth_node, "write")
    r = auth_node.get("/v1/feed", headers={"X-API-Key": key["api_key"]})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "insufficient_scope"


def test_revoked_key_refused_at_once(auth_node):
    key = create_key(auth_node, "read")
    headers = {"X-API-Key": key["api_key"]}
    # Several requests, so both HTTP workers have served the key before the revoke.
    for _ in range(4):
        assert auth_node.get("/v1/feed", headers=headers).status_code == 200
    done = ctl("revoke", key["id"], node=auth_node)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "revoked"
    for _ in range(4):
        r = auth_node.get("/v1/feed", headers=headers)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "invalid_api_key"


def test_agent_bound_key(auth_node, subject):
    key = create_key(auth_node, "write", agent=agent_id(1))
    headers = {"X-API-Key": key["api_key"]}
    own = auth_node.post("/v1/assert", json=signed(1, subject, "p", text("own")), headers=headers)
    assert own.status_code == 201, own.text
    other = auth_node.post("/v1/assert", json=signed(2, subject, "p", text("other")), headers=headers)
    assert other.status_code == 403
    assert other.json()["error"]["code"] == "agent_not_allowed"
    batch = auth_node.post(
        "/v1/assert/batch", json={"assertions": [signed(2, subject, "p", text("b"))]}, headers=headers
    )
    assert batch.status_code == 403
    wrong_header = auth_node.post(
        "/v1/assert",
        json=signed(1, subject, "p", text("h")),
        headers={**headers, "X-Agent-Id": agent_id(2)},
    )
    assert wrong_header.status_code == 403
    malformed = auth_node.post(
        "/v1/assert",
        json=signed(1, subject, "p", text("m")),
        headers={**headers, "X-Agent-Id": "zz"},
    )
    assert malformed.status_code == 400
    assert malformed.json()["error"]["field"] == "X-Agent-Id"


def test_ctl_list_hides_secrets(auth_node):
    key = create_key(auth_node, "read", "write", name="lister")
    done = ctl("list", node=auth_node)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    row = next(r for r in rows if r["id"] == key["id"])
    assert row["name"] == "lister"
    assert row["scopes"] == ["read", "write"]
    assert row["revoked_unix_ms"] == 0
    assert key["api_key"].split("_")[2] not in done.stdout
    assert "hash" not in row
    assert "salt" not in row


def test_ctl_usage_errors(auth_node):
    assert ctl("create", "--scopes", "owner", node=auth_node).returncode == 2
    assert ctl("revoke", "xyz", node=auth_node).returncode == 2
    assert ctl("revoke", "0000000000000000", node=auth_node).returncode == 1
    help_text = ctl("--help", node=auth_node)
    assert help_text.returncode == 0
    assert "create --scopes" in help_text.stdout


def test_ctl_generate_makes_valid_root_key(fresh_node):
    done = ctl("generate", node=fresh_node)
    assert done.returncode == 0
    key = done.stdout.strip()
    assert re.fullmatch(r"sdb_[0-9a-f]{16}_[0-9a-f]{64}", key)
    fresh_node.extra_env.update({"STEMEDB_AUTH_ENABLED": "true", "STEMEDB_ROOT_API_KEY": key})
    fresh_node.start()
    assert fresh_node.get("/v1/feed", headers={"X-API-Key": key}).status_code == 200
    assert fresh_node.stop() == 0


def test_root_key_bootstrap_idempotent(fresh_node):
    fresh_node.extra_env.update(AUTH_ENV)
    fresh_node.start()
    fresh_node.restart()
    rows = [json.loads(line) for line in ctl("list", node=fresh_node).stdout.splitlines()]
    assert len(rows) == 1
    assert rows[0]["root"] is True
    assert "root API key 0123456789abcdef is stored already" in fresh_node.log()
    assert ROOT_KEY.split("_")[2] not in fresh_node.log()

    fresh_node.extra_env["STEMEDB_ROOT_API_KEY"] = OTHER_ROOT_KEY
    fresh_node.restart()
    assert "root API key rotated" in fresh_node.log()
    assert fresh_node.get("/v1/feed", headers={"X-API-Key": ROOT_KEY}).status_code == 401
    assert fresh_node.get("/v1/feed", headers={"X-API-Key": OTHER_ROOT_KEY}).status_code == 200
    assert OTHER_ROOT_KEY.split("_")[2] not in fresh_node.log()
    assert fresh_node.stop() == 0


def test_malformed_root_key_refused(fresh_node):
    fresh_node.extra_env.update({"STEMEDB_AUTH_ENABLED": "true", "STEMEDB_ROOT_API_KEY": "sdb_short"})
    with pytest.raises(RuntimeError):
        fresh_node.start()
    assert "STEMEDB_ROOT_API_KEY is not a valid API key" in fresh_node.log()


def test_keys_off_by_default(fresh_node):
    fresh_node.extra_env.pop("STEMEDB_AUTH_ENABLED", None)
    fresh_node.start()
    assert fresh_node.get("/v1/feed").status_code == 200
    assert fresh_node.stop() == 0


@pytest.fixture
def auth_gateway(auth_node):
    gateway = Gateway(auth_node, env={"STEMEDB_AUTH_ENABLED": "true"}).start()
    yield gateway
    gateway.stop()


def test_gateway_key_lifecycle(auth_node, auth_gateway):
    admin = {"X-API-Key": ROOT_KEY}
    assert requests.get(auth_gateway.url("/v1/admin/api-keys"), timeout=10).status_code == 401

    created = requests.post(
        auth_gateway.url("/v1/admin/api-keys"),
        json={"name": "gw", "scopes": ["read"]},
        headers=admin,
        timeout=10,
    )
    assert created.status_code == 201, created.text
    key = created.json()
    assert auth_node.get("/v1/feed", headers={"X-API-Key": key["api_key"]}).status_code == 200

    listed = requests.get(auth_gateway.url("/v1/admin/api-keys"), headers=admin, timeout=10)
    assert listed.status_code == 200
    assert key["api_key"] not in listed.text
    assert any(k["id"] == key["id"] and k["revoked_at"] is None for k in listed.json()["keys"])

    read_only = requests.get(
        auth_gateway.url("/v1/admin/api-keys"), headers={"X-API-Key": key["api_key"]}, timeout=10
    )
    assert read_only.status_code == 403
    assert read_only.json()["error"]["code"] == "insufficient_scope"

    revoked = requests.post(
        auth_gateway.url(f"/v1/admin/api-keys/{key['id']}/revoke"), headers=admin, timeout=10
    )
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "revoked"
    assert auth_node.get("/v1/feed", headers={"X-API-Key": key["api_key"]}).status_code == 401
    again = requests.post(
        auth_gateway.url(f"/v1/admin/api-keys/{key['id']}/revoke"), headers=admin, timeout=10
    )
    assert again.json()["status"] == "already_revoked"
    missing = requests.post(
        auth_gateway.url("/v1/admin/api-keys/0000000000000000/revoke"), headers=admin, timeout=10
    )
    assert missing.status_code == 404


def test_gateway_create_validation(auth_gateway):
    admin = {"X-API-Key": ROOT_KEY}
    for body, field in [
        ({"scopes": []}, "scopes"),
        ({"scopes": ["owner"]}, "scopes"),
        ({"scopes": ["read"], "agent_id": "abc"}, "agent_id"),
        ({"scopes": ["read"], "extra": 1}, "extra"),
    ]:
        r = requests.post(auth_gateway.url("/v1/admin/api-keys"), json=body, headers=admin, timeout=10)
        assert r.status_code == 400, body
        assert r.json()["error"]["field"] == field


def test_gateway_admin_endpoints_take_admin_key(auth_gateway):
    r = requests.get(auth_gateway.url("/v1/admin/cluster"), headers={"X-API-Key": ROOT_KEY}, timeout=10)
    assert r.status_code == 200
    wrong = requests.get(
        auth_gateway.url("/v1/admin/cluster"), headers={"X-API-Key": OTHER_ROOT_KEY}, timeout=10
    )
    assert wrong.status_code == 401


def test_gateway_token_still_works_with_auth(auth_node):
    token = "gateway-token-0123456789abcdef"
    gateway = Gateway(auth_node, token=token, env={"STEMEDB_AUTH_ENABLED": "true"}).start()
    try:
        url = gateway.url("/v1/admin/api-keys")
        bearer = {"Authorization": f"Bearer {token}"}
        assert requests.get(url, headers=bearer, timeout=10).status_code == 200
        assert requests.get(url, timeout=10).status_code == 401
    finally:
        gateway.stop()


def test_ctl_sends_api_key_from_env(auth_node):
    binary = os.path.join(build_dir(), "bin", "stemedb-ctl")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEMEDB_")}
    args = [binary, "--url", auth_node.base_url, "query", "--subject", "s", "--predicate", "p"]
    without = subprocess.run(args, capture_output=True, text=True, env=env, timeout=30)
    assert without.returncode == 1
    assert "missing_api_key" in without.stdout + without.stderr
    keyed_env = {**env, "STEMEDB_API_KEY": ROOT_KEY}
    keyed = subprocess.run(args, capture_output=True, text=True, env=keyed_env, timeout=30)
    assert keyed.returncode == 0, keyed.stderr
