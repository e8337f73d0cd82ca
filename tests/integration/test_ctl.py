"""stemedb-ctl against a real stemedb-api: keygen, assert, query, skeptic, health and
option checking."""

import json
import os
import stat
import subprocess

import pytest
from nacl.signing import SigningKey

from node import build_dir, free_port


def ctl_path():
    return os.path.join(build_dir(), "bin", "stemedb-ctl")


def run_ctl(*args, url=None, timeout=60):
    """Run stemedb-ctl and return the CompletedProcess (text mode)."""
    command = [ctl_path()]
    if url is not None:
        command += ["--url", url]
    command += [str(a) for a in args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def keygen(path):
    result = run_ctl("keygen", "--out", path)
    assert result.returncode == 0, f"keygen exit {result.returncode}: {result.stderr}"
    return result.stdout.strip()


@pytest.fixture
def key(tmp_path):
    path = tmp_path / "agent.key"
    return path, keygen(path)


def test_keygen_file_mode_and_content(tmp_path):
    path = tmp_path / "new.key"
    agent_id = keygen(path)

    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o600, f"key file mode is {oct(mode)}"
    doc = json.loads(path.read_text())
    assert doc["agent_id"] == agent_id, f"file agent_id {doc['agent_id']} vs printed {agent_id}"
    derived = SigningKey(bytes.fromhex(doc["seed"])).verify_key.encode().hex()
    assert derived == agent_id, f"seed derives {derived}, not {agent_id}"


def test_keygen_refuses_overwrite(tmp_path):
    path = tmp_path / "taken.key"
    keygen(path)
    before = path.read_bytes()

    result = run_ctl("keygen", "--out", path)

    assert result.returncode == 2, f"exit {result.returncode}"
    assert "never overwritten" in result.stderr, f"stderr: {result.stderr}"
    assert path.read_bytes() == before, "the existing key file changed"


def test_assert_created_then_exists(shared_node, subject, key):
    key_path, agent_id = key
    args = ["assert", "--key", key_path, "--subject", subject, "--predicate", "capital",
            "--text", "Sucre", "--confidence", "0.8", "--source-class", "expert",
            "--timestamp", "1700000000"]

    first = run_ctl(*args, url=shared_node.base_url)
    second = run_ctl(*args, url=shared_node.base_url)

    assert first.returncode == 0, f"first assert: {first.stderr}"
    hash_hex, status = first.stdout.split()
    assert status == "created", f"first status {status}"
    assert second.returncode == 0, f"second assert: {second.stderr}"
    assert second.stdout.split() == [hash_hex, "exists"], f"second output {second.stdout!r}"
    assert "warning" not in first.stderr, f"stderr: {first.stderr}"

    stored = shared_node.get(f"/v1/assertions/{hash_hex}").json()
    assert stored["object"] == {"type": "text", "value": "Sucre"}, f"object {stored['object']}"
    assert stored["source_class"] == "expert", f"source_class {stored['source_class']}"
    assert stored["confidence"] == pytest.approx(0.8), f"confidence {stored['confidence']}"
    agents = [s["agent_id"] for s in stored["signatures"]]
    assert agents == [agent_id], f"signers {agents}"


@pytest.mark.parametrize(
    "option,value,expected",
    [
        ("--number", "1098581.5", {"type": "number", "value": 1098581.5}),
        ("--bool", "false", {"type": "boolean", "value": False}),
        ("--reference", "country/BO", {"type": "reference", "value": "country/BO"}),
    ],
)
def test_assert_value_types(shared_node, subject, key, option, value, expected):
    result = run_ctl("assert", "--key", key[0], "--subject", subject, "--predicate", "p",
                     option, value, url=shared_node.base_url)

    assert result.returncode == 0, f"assert {option}: {result.stderr}"
    stored = shared_node.get(f"/v1/assertions/{result.stdout.split()[0]}").json()
    assert stored["object"] == expected, f"stored object {stored['object']}"


def assert_claims(node, key_path, subject, values):
    for i, value in enumerate(values):
        result = run_ctl("assert", "--key", key_path, "--subject", subject, "--predicate",
                         "capital", "--text", value, "--timestamp", 1700000000 + i,
                         url=node.base_url)
        assert result.returncode == 0, f"assert {value}: {result.stderr}"


def test_query_marks_winner(shared_node, subject, key):
    assert_claims(shared_node, key[0], subject, ["La Paz", "Sucre"])

    table = run_ctl("query", "--subject", subject, "--predicate", "capital", "--lens",
                    "recency", url=shared_node.base_url)
    raw = run_ctl("query", "--subject", subject, "--predicate", "capital", "--json",
                  url=shared_node.base_url)

    assert table.returncode == 0, f"query: {table.stderr}"
    assert 'winner: "Sucre"' in table.stdout, f"table:\n{table.stdout}"
    marked = [line for line in table.stdout.splitlines() if line.startswith("*")]
    assert len(marked) == 1, f"marked rows: {marked}"
    assert '"Sucre"' in marked[0], f"marked row: {marked[0]}"
    body = json.loads(raw.stdout)
    assert body["candidate_count"] == 2, f"candidate_count {body['candidate_count']}"
    assert body["winner"]["object"]["value"] == "Sucre", f"winner {body['winner']}"


def test_skeptic_names_sources(shared_node, subject, tmp_path):
    names = tmp_path / "names"
    names.mkdir()
    keygen(names / "atlas.key")
    keygen(names / "gazette.key")
    assert_claims(shared_node, names / "atlas.key", subject, ["Sucre"])
    assert_claims(shared_node, names / "gazette.key", subject, ["La Paz"])

    table = run_ctl("skeptic", "--subject", subject, "--predicate", "capital", "--names",
                    names, "--decay", "false", url=shared_node.base_url)
    raw = run_ctl("skeptic", "--subject", subject, "--predicate", "capital", "--json",
                  url=shared_node.base_url)

    assert table.returncode == 0, f"skeptic: {table.stderr}"
    assert "contested" in table.stdout.splitlines()[0], f"first line: {table.stdout}"
    assert "atlas" in table.stdout, f"table:\n{table.stdout}"
    assert "gazette" in table.stdout, f"table:\n{table.stdout}"
    body = json.loads(raw.stdout)
    assert body["claim_count"] == 2, f"claim_count {body['claim_count']}"


def test_health_text_and_json(shared_node):
    text = run_ctl("health", url=shared_node.base_url)
    raw = run_ctl("health", "--json", url=shared_node.base_url)

    assert text.returncode == 0, f"health exit {text.returncode}: {text.stderr}"
    assert "status:      healthy" in text.stdout, f"health:\n{text.stdout}"
    assert json.loads(raw.stdout)["ready"] is True, f"health json: {raw.stdout}"


def test_url_from_environment(shared_node):
    env = dict(os.environ, STEMEDB_API_URL=shared_node.base_url)
    result = subprocess.run([ctl_path(), "health"], capture_output=True, text=True, env=env,
                            timeout=30)
    assert result.returncode == 0, f"health via STEMEDB_API_URL: {result.stderr}"


def test_unreachable_server_exit_2():
    result = run_ctl("health", url=f"http://127.0.0.1:{free_port()}")

    assert result.returncode == 2, f"exit {result.returncode}"
    assert "check that stemedb-api runs" in result.stderr, f"stderr: {result.stderr}"


BAD_OPTIONS = [
    (["assert", "--subject", "s", "--predicate", "p", "--text", "v", "--confidence", "1.5"],
     "invalid --confidence \"1.5\""),
    (["assert", "--subject", "s", "--predicate", "p", "--number", "12abc"],
     "invalid --number \"12abc\""),
    (["assert", "--subject", "s", "--predicate", "p", "--bool", "maybe"], "invalid --bool"),
    (["assert", "--subject", "s", "--predicate", "p", "--text", "a", "--number", "1"],
     "exactly one of"),
    (["assert", "--predicate", "p", "--text", "v"], "missing --subject"),
    (["assert", "--subject", "s", "--predicate", "p", "--text", "v", "--source-class", "x"],
     "invalid --source-class \"x\""),
    (["assert", "--subject", "s", "--predicate", "p", "--text", "v", "--parent", "abc"],
     "invalid --parent \"abc\": expected 64 hex"),
    (["assert", "--subject", "s", "--predicate", "p", "--text", "v", "--timestamp", "-5"],
     "invalid --timestamp \"-5\""),
    (["query", "--subject", "s", "--predicate", "p", "--lens", "popular"],
     "invalid --lens \"popular\""),
    (["query", "--subject", "s"], "missing --predicate"),
    (["skeptic", "--subject", "s", "--predicate", "p", "--lens", "recency"],
     "does not apply"),
    (["skeptic", "--subject", "s", "--predicate", "p", "--decay", "maybe"],
     "invalid --decay \"maybe\""),
    (["import", "--mapping", "m.json", "--key", "k", "--source-class", "expert",
      "--batch-size", "1001", "data.json"], "from 1 to 1000"),
    (["import", "--mapping", "m.json", "--key", "k", "data.json"], "missing --source-class"),
    (["frobnicate"], "unknown command \"frobnicate\""),
    (["health", "--verbose"], "invalid options"),
]


@pytest.mark.parametrize("args,message", BAD_OPTIONS, ids=[" ".join(a[:3]) for a, _ in BAD_OPTIONS])
def test_bad_options_exit_2(tmp_path, args, message):
    key_path = tmp_path / "k.key"
    keygen(key_path)
    if args[0] == "assert" and "--key" not in args:
        args = args + ["--key", str(key_path)]

    # No server runs at this port: every case must fail before any request is sent.
    result = run_ctl(*args, url=f"http://127.0.0.1:{free_port()}")

    assert result.returncode == 2, f"exit {result.returncode}, stderr: {result.stderr}"
    assert message in result.stderr, f"stderr: {result.stderr}"


@pytest.mark.parametrize(
    "command", ["keygen", "assert", "query", "skeptic", "health", "import", "quarantine"])
def test_help_per_command(command):
    result = run_ctl(command, "--help")

    assert result.returncode == 0, f"{command} --help exit {result.returncode}"
    assert result.stdout.startswith(f"usage: stemedb-ctl {command}"), f"help:\n{result.stdout}"
