"""Content defense and quarantine against a real node and gateway.

Covers near-duplicates, low quality and the trust rule, invisibility to the read
paths, approve and reject, list filters and pages, and the pending gauge across
restarts and WAL replay."""

import json
import os
import re
import subprocess

import pytest

import stemedb_records
from claims import BASE_TIME, agent_id, expected_hash, number, seed, signed, text
from node import Node, build_dir
from test_gateway import Gateway, wait_for_rebuild

DEFENSE_ON = {"STEMEDB_CONTENT_DEFENSE_ENABLED": "true"}
TOKEN = "quarantine-test-token"
LONG_TEXT = ("Aspirin at 81 mg daily lowers the risk of a second heart attack in adults "
             "with known coronary artery disease")


@pytest.fixture
def defended(tmp_path):
    node = Node(tmp_path / "node", env=DEFENSE_ON).start()
    gateway = Gateway(node, token=TOKEN).start()
    yield node, gateway
    gateway.stop()
    if node.process is not None:
        assert node.stop() == 0, node.log()


def post(node, assertion):
    response = node.post("/v1/assert", json=assertion)
    assert response.status_code in (201, 202), response.text
    return response


def pending_gauge(node):
    body = node.get("/metrics").text
    match = re.search(r"^stemedb_quarantine_pending (\S+)$", body, re.M)
    assert match, body
    return float(match.group(1))


def rejected_count(node, reason):
    body = node.get("/metrics").text
    match = re.search(r'^stemedb_requests_rejected_total\{reason="%s"\} (\S+)$' % reason,
                      body, re.M)
    return float(match.group(1)) if match else 0.0


def visible_anywhere(node, assertion, hash_hex):
    """Return the read paths whose response contains hash_hex."""
    subject, predicate = assertion["subject"], assertion["predicate"]
    paths = {
        "query": ("/v1/query", {"subject": subject, "predicate": predicate}),
        "skeptic": ("/v1/skeptic", {"subject": subject, "predicate": predicate}),
        "layered": ("/v1/layered", {"subject": subject, "predicate": predicate}),
        "feed": ("/v1/feed", {}),
    }
    seen = []
    for name, (path, params) in paths.items():
        response = node.get(path, params=params)
        if hash_hex in response.text:
            seen.append(name)
    return seen


def test_near_duplicate_other_agent_quarantined(defended):
    node, _ = defended
    first = signed(1, "drug:aspirin", "effect", text(LONG_TEXT))
    copy = signed(2, "drug:aspirin", "effect", text(LONG_TEXT + "."))

    assert post(node, first).status_code == 201
    response = post(node, copy)

    assert response.status_code == 202, response.text
    assert response.json()["status"] == "quarantined", response.text
    assert response.json()["reason"] == "duplicate", response.text
    stored = node.get(f"/v1/assertions/{expected_hash(copy)}").json()
    assert stored["quarantined"] is True, stored
    assert stored["quarantine"]["resembles"] == expected_hash(first), stored
    assert stored["quarantine"]["similarity"] >= 0.9, stored


def test_same_agent_revision_not_duplicate(defended):
    node, _ = defended
    first = signed(3, "drug:ibuprofen", "effect", text(LONG_TEXT))
    revised = signed(3, "drug:ibuprofen", "effect", text(LONG_TEXT + "."),
                     timestamp=BASE_TIME + 1)

    assert post(node, first).status_code == 201
    response = post(node, revised)

    assert response.status_code == 201, response.text
    assert response.json()["status"] == "created", response.text


def test_duplicates_in_one_batch_caught(defended):
    node, _ = defended
    a = signed(4, "drug:naproxen", "effect", text(LONG_TEXT))
    b = signed(5, "drug:naproxen", "effect", text(LONG_TEXT + "!"))

    body = node.post("/v1/assert/batch", json={"assertions": [a, b]}).json()

    assert body["created"] == 1, body
    assert body["quarantined"] == 1, body
    assert body["results"][1]["status"] == "quarantined", body
    assert body["results"][1]["reason"] == "duplicate", body


def test_untrusted_high_confidence_quarantined(defended):
    node, gateway = defended
    agent = agent_id(6)
    response = gateway.post("/v1/admin/trust/outcome",
                            json={"agent_id": agent, "outcome": "inaccurate"})
    assert response.status_code == 201, response.text
    assert response.json()["trust"] < 0.5, response.text

    confident = signed(6, "drug:statin", "reduces_ldl", number(0.35), confidence=0.95)
    modest = signed(6, "drug:statin", "reduces_hdl", number(0.05), confidence=0.7)

    confident_response = post(node, confident)
    modest_response = post(node, modest)

    assert confident_response.status_code == 202, confident_response.text
    assert confident_response.json()["reason"] == "untrusted_high_confidence"
    assert modest_response.status_code == 201, modest_response.text


def test_quarantined_claim_is_no_duplicate_candidate(defended):
    node, gateway = defended
    untrusted = agent_id(11)
    response = gateway.post("/v1/admin/trust/outcome",
                            json={"agent_id": untrusted, "outcome": "inaccurate"})
    assert response.status_code == 201, response.text
    held = signed(11, "drug:metformin", "first_line_for", text(LONG_TEXT), confidence=0.95)
    same_text = signed(12, "drug:metformin", "first_line_for", text(LONG_TEXT),
                       confidence=0.95, timestamp=BASE_TIME + 1)

    held_response = post(node, held)
    same_response = post(node, same_text)

    assert held_response.status_code == 202, held_response.text
    assert held_response.json()["reason"] == "untrusted_high_confidence"
    # The held claim is not admitted, so the other agent's same claim is no duplicate.
    assert same_response.status_code == 201, same_response.text


def test_approved_claim_becomes_duplicate_candidate(defended):
    node, gateway = defended
    untrusted = agent_id(13)
    response = gateway.post("/v1/admin/trust/outcome",
                            json={"agent_id": untrusted, "outcome": "inaccurate"})
    assert response.status_code == 201, response.text
    held = signed(13, "drug:lisinopril", "lowers", text(LONG_TEXT), confidence=0.95)
    copy = signed(14, "drug:lisinopril", "lowers", text(LONG_TEXT), timestamp=BASE_TIME + 1)
    held_response = post(node, held)
    assert held_response.status_code == 202, held_response.text

    approve = gateway.post(f"/v1/admin/quarantine/{expected_hash(held)}/approve")
    assert approve.status_code == 200, approve.text
    copy_response = post(node, copy)

    assert copy_response.status_code == 202, copy_response.text
    assert copy_response.json()["reason"] == "duplicate"


def test_low_entropy_subject_low_quality(defended):
    node, _ = defended
    before = rejected_count(node, "low_quality")
    claim = signed(7, "aaaaaaaaaaaa", "status", text("ok"))

    response = post(node, claim)

    assert response.status_code == 202, response.text
    assert response.json()["reason"] == "low_quality", response.text
    assert rejected_count(node, "low_quality") == before + 1


def test_quarantined_invisible_until_approved(defended):
    node, gateway = defended
    original = signed(8, "drug:metformin", "effect", text(LONG_TEXT))
    copy = signed(9, "drug:metformin", "effect", text(LONG_TEXT + "?"))
    post(node, original)
    assert post(node, copy).status_code == 202
    copy_hash = expected_hash(copy)

    assert visible_anywhere(node, copy, copy_hash) == []
    approved = gateway.post(f"/v1/admin/quarantine/{copy_hash}/approve")

    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved", approved.text
    assert visible_anywhere(node, copy, copy_hash) == ["query", "skeptic", "layered", "feed"]
    again = gateway.post(f"/v1/admin/quarantine/{copy_hash}/approve")
    assert again.status_code == 409, again.text
    reject_after = gateway.post(f"/v1/admin/quarantine/{copy_hash}/reject")
    assert reject_after.status_code == 409, reject_after.text
    assert "approved" in reject_after.json()["error"]["message"], reject_after.text


def test_reject_keeps_invisible_after_rebuild(defended):
    node, gateway = defended
    original = signed(10, "drug:warfarin", "effect", text(LONG_TEXT))
    copy = signed(11, "drug:warfarin", "effect", text(LONG_TEXT + ";"))
    pending_copy = signed(12, "drug:warfarin", "effect", text(LONG_TEXT + ":"))
    post(node, original)
    post(node, copy)
    post(node, pending_copy)

    rejected = gateway.post(f"/v1/admin/quarantine/{expected_hash(copy)}/reject")
    assert rejected.status_code == 200, rejected.text
    rebuild = gateway.post("/v1/admin/indexes/rebuild")
    assert rebuild.status_code in (200, 202), rebuild.text
    assert wait_for_rebuild(gateway)["state"] == "done"

    assert visible_anywhere(node, copy, expected_hash(copy)) == []
    assert visible_anywhere(node, pending_copy, expected_hash(pending_copy)) == []
    assert node.get(f"/v1/assertions/{expected_hash(copy)}").json()["quarantine"]["status"] \
        == "rejected"

    approved = gateway.post(f"/v1/admin/quarantine/{expected_hash(pending_copy)}/approve")
    assert approved.status_code == 200, approved.text
    assert gateway.post("/v1/admin/indexes/rebuild").status_code in (200, 202)
    assert wait_for_rebuild(gateway)["state"] == "done"
    assert "query" in visible_anywhere(node, pending_copy, expected_hash(pending_copy))
    assert visible_anywhere(node, copy, expected_hash(copy)) == []


def test_decision_unknown_hash_404(defended):
    _, gateway = defended
    response = gateway.post(f"/v1/admin/quarantine/{'ab' * 32}/approve")
    assert response.status_code == 404, response.text


def test_list_filters_pages_and_counts(defended):
    node, gateway = defended
    headers = gateway.headers()
    post(node, signed(13, "drug:lisinopril", "effect", text(LONG_TEXT)))
    copies = [signed(14 + i % 2, "drug:lisinopril", "effect", text(LONG_TEXT + "#" * (i + 1)))
              for i in range(5)]
    for claim in copies:
        post(node, claim)
    post(node, signed(16, "bbbbbbbbbbbb", "status", text("ok")))

    everything = gateway.get("/v1/admin/quarantine", headers=headers).json()
    duplicates = gateway.get("/v1/admin/quarantine", headers=headers,
                             params={"reason": "duplicate"}).json()
    by_agent = gateway.get("/v1/admin/quarantine", headers=headers,
                           params={"agent": agent_id(14)}).json()

    assert everything["total"] == 6, everything
    assert {a["agent_id"]: a["count"] for a in everything["agents"]} == {
        agent_id(14): 3, agent_id(15): 2, agent_id(16): 1}, everything
    assert duplicates["total"] == 5, duplicates
    assert all(item["reason"] == "duplicate" for item in duplicates["items"]), duplicates
    assert by_agent["total"] == 3, by_agent

    pages, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = gateway.get("/v1/admin/quarantine", headers=headers, params=params).json()
        pages.append([item["hash"] for item in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [2, 2, 2], pages
    listed = [h for p in pages for h in p]
    assert listed == sorted(listed), listed
    assert set(listed) == {item["hash"] for item in everything["items"]}

    bad = gateway.get("/v1/admin/quarantine", headers=headers, params={"status": "maybe"})
    assert bad.status_code == 400, bad.text
    unknown = gateway.get("/v1/admin/quarantine", headers=headers, params={"colour": "red"})
    assert unknown.status_code == 400, unknown.text


def test_pending_gauge_exact_across_restart(defended):
    node, gateway = defended
    post(node, signed(17, "drug:atenolol", "effect", text(LONG_TEXT)))
    copies = [signed(18 + i, "drug:atenolol", "effect", text(LONG_TEXT + "~" * (i + 1)))
              for i in range(3)]
    for claim in copies:
        post(node, claim)
    gateway.post(f"/v1/admin/quarantine/{expected_hash(copies[0])}/approve")

    assert pending_gauge(node) == 2
    assert node.get("/v1/health").json()["quarantine"]["pending"] == 2
    gateway.stop()
    node.restart()
    gateway.start()

    assert pending_gauge(node) == 2
    assert node.get("/v1/health").json()["quarantine"]["pending"] == 2


def test_crash_replay_keeps_decisions(defended):
    node, gateway = defended
    original = signed(21, "drug:digoxin", "effect", text(LONG_TEXT))
    copy = signed(22, "drug:digoxin", "effect", text(LONG_TEXT + "*"))
    approved_copy = signed(23, "drug:digoxin", "effect", text(LONG_TEXT + "&"))
    second_copy = signed(29, "drug:digoxin", "effect", text(LONG_TEXT + "%"))
    for claim in (original, copy, approved_copy, second_copy):
        post(node, claim)
    assert gateway.post(
        f"/v1/admin/quarantine/{expected_hash(approved_copy)}/approve").status_code == 200
    before = {expected_hash(c): node.get(f"/v1/assertions/{expected_hash(c)}").json()
              for c in (copy, approved_copy, second_copy)}

    # The store writes skip RocksDB's WAL, so SIGKILL drops them and start-up replays
    # the StemeDB WAL, deciding on every assertion again. Replay puts the records of
    # one run into one batch, so it finds candidates in another order than the
    # original groups did.
    gateway.stop()
    node.kill()
    node.start()
    gateway.start()

    replayed = re.findall(r"WAL recovery in \S+ replayed (\d+) new assertions", node.log())
    assert int(replayed[-1]) == 4, replayed
    for hash_hex, stored in before.items():
        after = node.get(f"/v1/assertions/{hash_hex}").json()
        assert after["quarantine"] == stored["quarantine"], (stored, after)
    assert visible_anywhere(node, copy, expected_hash(copy)) == []
    assert "query" in visible_anywhere(node, approved_copy, expected_hash(approved_copy))
    assert "query" in visible_anywhere(node, original, expected_hash(original))
    assert pending_gauge(node) == 2


def test_defense_off_indexes_everything(tmp_path):
    node = Node(tmp_path / "off").start()
    try:
        post(node, signed(24, "drug:heparin", "effect", text(LONG_TEXT)))
        response = post(node, signed(25, "drug:heparin", "effect", text(LONG_TEXT + ".")))
        assert response.status_code == 201, response.text
        assert node.get("/v1/health").json()["quarantine"]["enabled"] is False
    finally:
        assert node.stop() == 0, node.log()


def run_ctl(node, *args):
    """Run `stemedb-ctl quarantine ARGS` on node's api.sock; return (exit code, JSON lines)."""
    binary = os.path.join(build_dir(), "bin", "stemedb-ctl")
    done = subprocess.run(
        [binary, "quarantine", "--socket", os.path.join(node.data_dir, "run", "api.sock"),
         *args],
        capture_output=True, text=True, timeout=60)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return done.returncode, lines, done.stderr


def test_ctl_list_approve_reject(defended):
    node, _ = defended
    post(node, signed(26, "drug:clopidogrel", "effect", text(LONG_TEXT)))
    first = signed(27, "drug:clopidogrel", "effect", text(LONG_TEXT + "+"))
    second = signed(28, "drug:clopidogrel", "effect", text(LONG_TEXT + "-"))
    post(node, first)
    post(node, second)

    code, lines, stderr = run_ctl(node, "list", "--reason", "duplicate", "--limit", "1")
    assert code == 0, stderr
    assert len(lines) == 2, lines
    assert lines[-1]["total"] == 2, lines
    assert lines[-1]["next_cursor"] == lines[0]["hash"], lines

    code, lines, stderr = run_ctl(node, "approve", expected_hash(first))
    assert code == 0, stderr
    assert lines[0]["status"] == "approved", lines
    code, lines, stderr = run_ctl(node, "reject", expected_hash(second))
    assert code == 0, stderr
    assert lines[0]["status"] == "rejected", lines

    code, _, stderr = run_ctl(node, "approve", expected_hash(second))
    assert code == 1, stderr
    assert "rejected already" in stderr, stderr
    code, _, stderr = run_ctl(node, "approve", "not-a-hash")
    assert code == 2, stderr
    code, lines, stderr = run_ctl(node, "list")
    assert code == 0, stderr
    assert lines[-1]["total"] == 0, lines


def test_admin_quarantine_routes_checked(defended):
    _, gateway = defended
    decision = f"/v1/admin/quarantine/{'cd' * 32}/approve"

    assert gateway.get("/v1/admin/quarantine").status_code == 401
    assert gateway.post(decision, admin=False).status_code == 401
    wrong_method = gateway.get(decision, headers=gateway.headers())
    assert wrong_method.status_code == 405, wrong_method.text
    assert wrong_method.headers["Allow"] == "POST"
    with_query = gateway.post(decision + "?x=1")
    assert with_query.status_code == 400, with_query.text
    short_hash = gateway.post("/v1/admin/quarantine/abcd/approve")
    assert short_hash.status_code == 404, short_hash.text
    bad_limit = gateway.get("/v1/admin/quarantine", headers=gateway.headers(),
                            params={"limit": "0"})
    assert bad_limit.status_code == 400, bad_limit.text
    assert bad_limit.json()["error"]["field"] == "limit", bad_limit.text


def test_cosignature_keeps_quarantined_unindexed(defended):
    node, gateway = defended
    post(node, signed(30, "drug:amiodarone", "effect", text(LONG_TEXT)))
    copy = signed(31, "drug:amiodarone", "effect", text(LONG_TEXT + "/"))
    assert post(node, copy).status_code == 202
    copy_hash = expected_hash(copy)

    body = stemedb_records.make_cosignature(seed(32), copy_hash, BASE_TIME + 5)
    response = node.post(f"/v1/assertions/{copy_hash}/signatures", json=body)

    assert response.status_code == 201, response.text
    stored = node.get(f"/v1/assertions/{copy_hash}").json()
    assert len(stored["signatures"]) == 2, stored
    assert visible_anywhere(node, copy, copy_hash) == []
    approved = gateway.post(f"/v1/admin/quarantine/{copy_hash}/approve")
    assert approved.status_code == 200, approved.text
    query = node.get("/v1/query", params={"subject": copy["subject"],
                                          "predicate": copy["predicate"]}).text
    assert agent_id(32) in query, query
