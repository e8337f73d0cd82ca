"""Votes, co-signatures, epochs, sources and aliases against a real node."""

import pytest

import stemedb_records
from claims import BASE_TIME, agent_id, boolean, cosigned, expected_hash, seed, signed, text


def store(node, assertion):
    response = node.post("/v1/assert", json=assertion)
    assert response.status_code in (200, 201), response.text
    return expected_hash(assertion)


def vote(node, voter, assertion_hash, weight, timestamp=BASE_TIME):
    body = stemedb_records.make_vote(seed(voter), assertion_hash, weight, timestamp)
    return node.post("/v1/vote", json=body)


def votes_of(node, assertion_hash):
    response = node.get(f"/v1/assertions/{assertion_hash}/votes")
    assert response.status_code == 200, response.text
    return response.json()


def query(node, subject, predicate, **params):
    response = node.get("/v1/query", params={"subject": subject, "predicate": predicate, **params})
    assert response.status_code == 200, response.text
    return response.json()


def assert_error(response, status, code, field=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    if field is not None:
        assert error.get("field") == field, error


# ---- votes ----


def test_vote_created_then_exists(shared_node, subject):
    target = store(shared_node, signed(1, subject, "p", text("a")))
    body = stemedb_records.make_vote(seed(2), target, 0.5, BASE_TIME)
    expected_id = stemedb_records.record_id("vote", body).hex()

    first = shared_node.post("/v1/vote", json=body)
    again = shared_node.post("/v1/vote", json=body)

    assert first.status_code == 201, first.text
    assert first.json() == {"id": expected_id, "type": "vote", "status": "created"}, first.json()
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "exists", again.json()


def test_votes_latest_per_voter_counts(shared_node, subject):
    target = store(shared_node, signed(1, subject, "p", text("a")))
    assert vote(shared_node, 2, target, 1.0, BASE_TIME).status_code == 201
    assert vote(shared_node, 2, target, -0.25, BASE_TIME + 10).status_code == 201
    assert vote(shared_node, 3, target, 0.5, BASE_TIME + 5).status_code == 201

    body = votes_of(shared_node, target)

    assert body["count"] == 2, body
    assert body["weight_sum"] == pytest.approx(0.25), body
    by_voter = {v["voter"]: v for v in body["votes"]}
    assert by_voter[agent_id(2)]["weight"] == pytest.approx(-0.25), by_voter
    assert by_voter[agent_id(2)]["superseded_votes"] == 1, by_voter
    assert by_voter[agent_id(3)]["weight"] == pytest.approx(0.5), by_voter


def test_votes_of_unvoted_assertion_empty(shared_node, subject):
    target = store(shared_node, signed(1, subject, "p", text("a")))

    body = votes_of(shared_node, target)

    assert body == {"assertion_hash": target, "count": 0, "weight_sum": 0.0, "votes": []}, body


def test_vote_on_missing_assertion_404(shared_node):
    response = vote(shared_node, 2, "ab" * 32, 1.0)

    assert_error(response, 404, "assertion_not_found", "assertion_hash")


@pytest.mark.parametrize("change, status, code, field", [
    ({"weight": 1.5}, 422, "out_of_range", "weight"),
    ({"weight": "high"}, 400, "invalid_field", "weight"),
    ({"voter": "zz"}, 400, "invalid_field", "voter"),
    ({"assertion_hash": None}, 400, "missing_field", "assertion_hash"),
    ({"extra": 1}, 400, "unknown_field", "extra"),
    ({"timestamp": -5}, 400, "invalid_field", "timestamp"),
])
def test_vote_hostile_fields(shared_node, subject, change, status, code, field):
    target = store(shared_node, signed(1, subject, "p", text("a")))
    body = stemedb_records.make_vote(seed(2), target, 0.5, BASE_TIME)
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}

    assert_error(shared_node.post("/v1/vote", json=body), status, code, field)


def test_vote_bad_signature_422(shared_node, subject):
    target = store(shared_node, signed(1, subject, "p", text("a")))
    body = stemedb_records.make_vote(seed(2), target, 0.5, BASE_TIME)
    body["weight"] = 0.6  # the signature covers 0.5

    assert_error(shared_node.post("/v1/vote", json=body), 422, "invalid_signature", "signature")


def test_vote_signed_by_other_agent_422(shared_node, subject):
    target = store(shared_node, signed(1, subject, "p", text("a")))
    body = stemedb_records.make_vote(seed(2), target, 0.5, BASE_TIME)
    body["voter"] = agent_id(3)
    body["signature"] = stemedb_records.sign("vote", body, seed(2))["signature"]

    response = shared_node.post("/v1/vote", json=body)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_signature", response.text


def test_vote_hostile_transport(shared_node):
    not_json = shared_node.raw_request("POST", "/v1/vote", body=b"{not json",
                                       headers={"Content-Type": "application/json"})
    wrong_type = shared_node.raw_request("POST", "/v1/vote", body=b"{}",
                                         headers={"Content-Type": "text/plain"})
    array = shared_node.post("/v1/vote", json=[1, 2])
    get = shared_node.get("/v1/vote")

    assert not_json[0] == 400, not_json
    assert wrong_type[0] == 415, wrong_type
    assert_error(array, 400, "invalid_json")
    assert get.status_code == 405, get.text


def test_votes_endpoint_hostile_hash(shared_node):
    bad = shared_node.get("/v1/assertions/xyz/votes")
    missing = shared_node.get(f"/v1/assertions/{'cd' * 32}/votes")
    post = shared_node.post(f"/v1/assertions/{'cd' * 32}/votes", json={})

    assert_error(bad, 400, "invalid_parameter", "hash")
    assert_error(missing, 404, "assertion_not_found", "hash")
    assert post.status_code == 405, post.text


def test_vote_lens_picks_most_voted_claim(shared_node, subject):
    newer = store(shared_node, signed(1, subject, "p", text("newer"), timestamp=BASE_TIME + 100))
    older = store(shared_node, signed(2, subject, "p", text("older"), timestamp=BASE_TIME))
    for voter in (3, 4):
        assert vote(shared_node, voter, older, 1.0).status_code == 201
    assert vote(shared_node, 5, newer, 0.5).status_code == 201
    assert vote(shared_node, 6, newer, -1.0).status_code == 201

    body = query(shared_node, subject, "p", lens="vote")

    assert body["lens"] == "vote", body
    assert body["winner"]["hash"] == older, body["winner"]
    # 2.0 / (2.0 + 0): the other claim's sum is negative and adds nothing.
    assert body["confidence"] == pytest.approx(1.0), body


def test_vote_lens_tie_goes_to_newest(shared_node, subject):
    newer = store(shared_node, signed(1, subject, "p", text("newer"), timestamp=BASE_TIME + 100))
    older = store(shared_node, signed(2, subject, "p", text("older"), timestamp=BASE_TIME))
    assert vote(shared_node, 3, older, 0.5).status_code == 201
    assert vote(shared_node, 4, newer, 0.5).status_code == 201

    body = query(shared_node, subject, "p", lens="vote")

    assert body["winner"]["hash"] == newer, body["winner"]
    assert body["confidence"] == pytest.approx(0.5), body


def test_vote_lens_without_votes_confidence_zero(shared_node, subject):
    newest = store(shared_node, signed(1, subject, "p", text("b"), timestamp=BASE_TIME + 1))
    store(shared_node, signed(2, subject, "p", text("a"), timestamp=BASE_TIME))

    body = query(shared_node, subject, "p", lens="vote")

    assert body["winner"]["hash"] == newest, body["winner"]
    assert body["confidence"] == 0.0, body


# ---- co-signatures ----


def test_cosignature_adds_signer_and_keeps_hash(shared_node, subject):
    target = store(shared_node, signed(1, subject, "p", text("a")))
    body = stemedb_records.make_cosignature(seed(2), target, BASE_TIME + 5)

    first = shared_node.post(f"/v1/assertions/{target}/signatures", json=body)
    again = shared_node.post(f"/v1/assertions/{target}/signatures", json=body)
    stored = shared_node.get(f"/v1/assertions/{target}").json()

    assert first.status_code == 201, first.text
    assert first.json()["type"] == "cosignature", first.json()
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "exists", again.json()
    assert stored["hash"] == target, stored
    signers = [s["agent_id"] for s in stored["signatures"]]
    assert signers == [agent_id(1), agent_id(2)], signers


def test_cosignature_by_existing_signer_409(shared_node, subject):
    target = store(shared_node, signed(1, subject, "p", text("a")))
    body = stemedb_records.make_cosignature(seed(1), target, BASE_TIME + 5)

    response = shared_node.post(f"/v1/assertions/{target}/signatures", json=body)

    assert_error(response, 409, "already_signed", "agent_id")


def test_cosignature_second_time_other_timestamp_409(shared_node, subject):
    target = store(shared_node, signed(1, subject, "p", text("a")))
    first = stemedb_records.make_cosignature(seed(2), target, BASE_TIME + 5)
    second = stemedb_records.make_cosignature(seed(2), target, BASE_TIME + 6)

    assert shared_node.post(f"/v1/assertions/{target}/signatures", json=first).status_code == 201
    response = shared_node.post(f"/v1/assertions/{target}/signatures", json=second)

    assert_error(response, 409, "already_signed", "agent_id")


def test_cosignature_hostile_input(shared_node, subject):
    target = store(shared_node, signed(1, subject, "p", text("a")))
    good = stemedb_records.make_cosignature(seed(2), target, BASE_TIME + 5)
    forged = dict(good, timestamp=BASE_TIME + 6)
    other_hash = dict(good, assertion_hash="00" * 32)
    path = f"/v1/assertions/{target}/signatures"

    assert_error(shared_node.post(path, json=forged), 422, "invalid_signature", "signature")
    assert_error(shared_node.post(path, json=other_hash), 400, "invalid_field", "assertion_hash")
    assert_error(shared_node.post(path, json={"agent_id": agent_id(2)}), 400, "missing_field")
    assert_error(shared_node.post("/v1/assertions/nothex/signatures", json=good), 400,
                 "invalid_parameter", "hash")
    assert_error(shared_node.post(f"/v1/assertions/{'ee' * 32}/signatures",
                                  json=stemedb_records.make_cosignature(seed(2), "ee" * 32)),
                 404, "assertion_not_found", "assertion_hash")
    assert shared_node.get(path).status_code == 405


def test_cosignatures_raise_authority_weight(shared_node, subject):
    single = store(shared_node, signed(1, subject, "p", boolean(False), confidence=0.9,
                                       source_class="clinical", timestamp=BASE_TIME + 10))
    target = store(shared_node, signed(2, subject, "p", boolean(True), confidence=0.9,
                                       source_class="clinical"))
    for agent in (3, 4, 5):
        body = stemedb_records.make_cosignature(seed(agent), target, BASE_TIME + agent)
        response = shared_node.post(f"/v1/assertions/{target}/signatures", json=body)
        assert response.status_code == 201, response.text

    body = query(shared_node, subject, "p", lens="authority", decay="false")
    scores = {c["hash"]: c["score"] for c in body["candidates"]}

    assert body["winner"]["hash"] == target, body["winner"]
    assert scores[target] > 2 * scores[single], scores


# ---- durability ----


def test_records_survive_kill_and_replay_once(fresh_node, subject):
    fresh_node.start()
    target = store(fresh_node, signed(1, subject, "p", text("a")))
    assert vote(fresh_node, 2, target, 0.75).status_code == 201
    assert vote(fresh_node, 3, target, -0.25).status_code == 201
    cosign = stemedb_records.make_cosignature(seed(4), target, BASE_TIME + 1)
    assert fresh_node.post(f"/v1/assertions/{target}/signatures", json=cosign).status_code == 201
    old_epoch = stemedb_records.make_signed("epoch", [seed(5)], {"name": "old",
                                                                "timestamp": BASE_TIME})
    old_id = fresh_node.post("/v1/epoch", json=old_epoch).json()["id"]
    new_epoch = stemedb_records.make_signed("epoch", [seed(5)], {"name": "new",
                                                                "supersedes": old_id,
                                                                "timestamp": BASE_TIME})
    source = stemedb_records.make_signed("source", [seed(6)], {"uri": "https://example.org/s",
                                                              "timestamp": BASE_TIME})
    alias = stemedb_records.make_signed("alias", [seed(6)], {"subject_a": subject,
                                                            "subject_b": f"{subject}/alias",
                                                            "timestamp": BASE_TIME})
    store(fresh_node, signed(7, f"{subject}/alias", "p", text("b"), epoch=old_id))
    for path, body in (("/v1/epoch", new_epoch), ("/v1/sources", source), ("/v1/aliases", alias)):
        assert fresh_node.post(path, json=body).status_code == 201, path

    fresh_node.kill()
    fresh_node.start()
    after_kill = votes_of(fresh_node, target)
    signers = [s["agent_id"] for s in fresh_node.get(f"/v1/assertions/{target}").json()["signatures"]]
    old_state = fresh_node.get(f"/v1/epochs/{old_id}").json()["state"]
    sources = fresh_node.get("/v1/sources").json()["sources"]
    queried = query(fresh_node, subject, "p")
    fresh_node.stop()
    fresh_node.start()
    after_restart = votes_of(fresh_node, target)
    replies = [fresh_node.post("/v1/vote", json=stemedb_records.make_vote(seed(2), target, 0.75,
                                                                          BASE_TIME)),
               fresh_node.post(f"/v1/assertions/{target}/signatures", json=cosign),
               fresh_node.post("/v1/epoch", json=new_epoch),
               fresh_node.post("/v1/sources", json=source),
               fresh_node.post("/v1/aliases", json=alias)]

    assert after_kill["count"] == 2, after_kill
    assert after_kill["weight_sum"] == pytest.approx(0.5), after_kill
    assert signers == [agent_id(1), agent_id(4)], signers
    assert old_state == "superseded", old_state
    assert len(sources) == 1, sources
    assert queried["aliases_included"] == 1, queried
    assert queried["superseded_excluded"] == 1, queried
    assert after_restart == after_kill, after_restart
    assert [r.status_code for r in replies] == [200] * 5, [r.text for r in replies]


# ---- epochs ----


def make_epoch(name, supersedes=None, signer=7, timestamp=BASE_TIME):
    fields = {"name": name, "description": f"the {name} model", "timestamp": timestamp}
    if supersedes is not None:
        fields["supersedes"] = supersedes
    return stemedb_records.make_signed("epoch", [seed(signer)], fields)


def post_epoch(node, name, supersedes=None, **kw):
    body = make_epoch(name, supersedes, **kw)
    response = node.post("/v1/epoch", json=body)
    assert response.status_code in (200, 201), response.text
    assert response.json()["id"] == stemedb_records.record_id("epoch", body).hex(), response.text
    return response.json()["id"]


def test_epoch_created_then_exists(shared_node, subject):
    body = make_epoch(f"epoch {subject}")

    first = shared_node.post("/v1/epoch", json=body)
    again = shared_node.post("/v1/epoch", json=body)

    assert first.status_code == 201, first.text
    assert first.json()["type"] == "epoch", first.json()
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "exists", again.json()


def test_epoch_get_shows_chain(shared_node, subject):
    old = post_epoch(shared_node, f"old {subject}")
    middle = post_epoch(shared_node, f"middle {subject}", supersedes=old)
    new = post_epoch(shared_node, f"new {subject}", supersedes=middle)

    got_new = shared_node.get(f"/v1/epochs/{new}").json()
    got_old = shared_node.get(f"/v1/epochs/{old}").json()

    assert got_new["state"] == "current", got_new
    assert got_new["supersedes"] == middle, got_new
    assert [e["id"] for e in got_new["supersedes_chain"]] == [middle, old], got_new
    assert got_new["superseded_by"] == [], got_new
    assert got_old["state"] == "superseded", got_old
    assert got_old["superseded_by"] == [middle], got_old


def test_epoch_chain_marks_missing_epoch(shared_node, subject):
    unknown = "12" * 32
    epoch = post_epoch(shared_node, f"e {subject}", supersedes=unknown)

    body = shared_node.get(f"/v1/epochs/{epoch}").json()

    assert body["supersedes_chain"] == [{"id": unknown, "missing": True}], body


def test_epoch_hostile_input(shared_node, subject):
    good = make_epoch(f"e {subject}")
    # The Python encoder rejects a 257-byte name, so the signature is the short one's.
    long_name = dict(good, name="n" * 257)
    forged = dict(good, name="other")
    unsigned = {k: v for k, v in good.items() if k != "signatures"}

    assert_error(shared_node.post("/v1/epoch", json=forged), 422, "invalid_signature")
    assert_error(shared_node.post("/v1/epoch", json=unsigned), 400, "missing_field", "signatures")
    assert_error(shared_node.post("/v1/epoch", json=long_name), 422, "out_of_range", "name")
    assert_error(shared_node.post("/v1/epoch", json=dict(good, supersedes="xy")), 400,
                 "invalid_field", "supersedes")
    assert_error(shared_node.get("/v1/epochs/nothex"), 400, "invalid_parameter", "id")
    assert_error(shared_node.get(f"/v1/epochs/{'34' * 32}"), 404, "epoch_not_found", "id")
    assert shared_node.get("/v1/epoch").status_code == 405


def test_superseded_epoch_excluded_everywhere(shared_node, subject):
    old = post_epoch(shared_node, f"geocentric {subject}")
    new = post_epoch(shared_node, f"heliocentric {subject}", supersedes=old)
    in_old = store(shared_node, signed(1, subject, "center", text("earth"), epoch=old))
    in_new = store(shared_node, signed(2, subject, "center", text("sun"), epoch=new,
                                       timestamp=BASE_TIME - 10))

    body = query(shared_node, subject, "center")
    everything = query(shared_node, subject, "center", include_superseded="true")
    skeptic = shared_node.get("/v1/skeptic", params={"subject": subject, "predicate": "center"})

    assert [c["hash"] for c in body["candidates"]] == [in_new], body
    assert body["superseded_excluded"] == 1, body
    assert "warnings" not in body, body
    assert sorted(c["hash"] for c in everything["candidates"]) == sorted([in_old, in_new]), everything
    assert everything["winner"]["hash"] == in_old, everything
    assert skeptic.status_code == 200, skeptic.text
    assert skeptic.json()["status"] == "unanimous", skeptic.json()


def test_missing_epoch_fails_open_with_warning(shared_node, subject):
    unknown = "56" * 32
    kept = store(shared_node, signed(1, subject, "p", text("a"), epoch=unknown))

    body = query(shared_node, subject, "p")

    assert body["winner"]["hash"] == kept, body
    assert len(body["warnings"]) == 1, body
    assert unknown in body["warnings"][0], body["warnings"]


def test_include_superseded_hostile_value(shared_node, subject):
    response = shared_node.get("/v1/query", params={"subject": subject, "predicate": "p",
                                                   "include_superseded": "yes"})

    assert_error(response, 400, "invalid_parameter", "include_superseded")


def test_layered_and_prefix_exclude_superseded(shared_node, subject):
    old = post_epoch(shared_node, f"old layered {subject}")
    new = post_epoch(shared_node, f"new layered {subject}", supersedes=old)
    store(shared_node, signed(1, subject, "p", text("old"), epoch=old, source_class="clinical"))
    store(shared_node, signed(2, subject, "p", text("new"), epoch=new, source_class="anecdotal"))

    layered = shared_node.get("/v1/layered", params={"subject": subject, "predicate": "p"})
    both = shared_node.get("/v1/layered", params={"subject": subject, "predicate": "p",
                                                  "include_superseded": "true"})

    assert layered.status_code == 200, layered.text
    assert [t["source_class"] for t in layered.json()["tiers"]] == ["anecdotal"], layered.json()
    assert layered.json()["superseded_excluded"] == 1, layered.json()
    assert both.status_code == 200, both.text
    assert len(both.json()["tiers"]) == 2, both.json()


# ---- sources ----


def make_source(uri, content=None, signer=8, timestamp=BASE_TIME, **fields):
    body = {"uri": uri, "title": f"title of {uri}", "source_class": "clinical",
            "timestamp": timestamp, **fields}
    if content is not None:
        body["content"] = content
    return stemedb_records.make_signed("source", [seed(signer)], body)


def test_source_register_get_and_list(fresh_node):
    fresh_node.start()
    ids = []
    for n in range(3):
        body = make_source(f"https://example.org/trial/{n}", content=f"abstract {n}")
        response = fresh_node.post("/v1/sources", json=body)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
        assert ids[-1] == stemedb_records.record_id("source", body).hex(), response.text

    one = fresh_node.get(f"/v1/sources/{ids[1]}").json()
    first_page = fresh_node.get("/v1/sources", params={"limit": 2}).json()
    second_page = fresh_node.get("/v1/sources", params={"limit": 2,
                                                       "cursor": first_page["next_cursor"]}).json()

    assert one["content"] == "abstract 1", one
    assert one["uri"] == "https://example.org/trial/1", one
    assert one["content_bytes"] == 10, one
    assert len(first_page["sources"]) == 2, first_page
    assert all("content" not in s for s in first_page["sources"]), first_page
    assert len(second_page["sources"]) == 1, second_page
    assert second_page["next_cursor"] is None, second_page
    listed = [s["id"] for s in first_page["sources"] + second_page["sources"]]
    assert sorted(listed) == sorted(ids), listed


def test_source_content_one_mib(shared_node):
    content = "x" * (1024 * 1024)
    body = make_source("https://example.org/big", content=content)
    too_big = dict(body, content=content + "x")

    response = shared_node.post("/v1/sources", json=body)
    rejected = shared_node.post("/v1/sources", json=too_big)

    assert response.status_code == 201, response.text[:300]
    stored = shared_node.get(f"/v1/sources/{response.json()['id']}").json()
    assert stored["content_bytes"] == 1024 * 1024, stored["content_bytes"]
    assert rejected.status_code == 422, rejected.text[:300]
    assert rejected.json()["error"]["field"] == "content", rejected.text[:300]


def test_source_hostile_input(shared_node):
    good = make_source("https://example.org/h")

    assert_error(shared_node.post("/v1/sources", json=dict(good, source_class="rumor")), 400,
                 "invalid_field", "source_class")
    assert_error(shared_node.post("/v1/sources", json=dict(good, title="changed")), 422,
                 "invalid_signature")
    assert_error(shared_node.post("/v1/sources", json={k: v for k, v in good.items()
                                                       if k != "uri"}), 400, "missing_field", "uri")
    assert_error(shared_node.get("/v1/sources/zz"), 400, "invalid_parameter", "hash")
    assert_error(shared_node.get(f"/v1/sources/{'9a' * 32}"), 404, "source_not_found", "hash")
    assert_error(shared_node.get("/v1/sources", params={"limit": 0}), 400, "invalid_parameter",
                 "limit")
    assert_error(shared_node.get("/v1/sources", params={"cursor": "xyz"}), 400,
                 "invalid_parameter", "cursor")
    assert_error(shared_node.get("/v1/sources", params={"sort": "new"}), 400, "unknown_parameter")
    assert shared_node.request("PUT", "/v1/sources", json=good).status_code == 405


# ---- aliases ----


def make_alias(a, b, signer=9, timestamp=BASE_TIME):
    return stemedb_records.make_signed("alias", [seed(signer)],
                                       {"subject_a": a, "subject_b": b, "timestamp": timestamp})


def test_alias_query_sees_both_subjects(shared_node, subject):
    brand, ingredient = f"{subject}/brand", f"{subject}/ingredient"
    on_brand = store(shared_node, signed(1, brand, "treats", text("headache")))
    on_ingredient = store(shared_node, signed(2, ingredient, "treats", text("fever"),
                                              timestamp=BASE_TIME + 5))
    body = make_alias(brand, ingredient)

    created = shared_node.post("/v1/aliases", json=body)
    again = shared_node.post("/v1/aliases", json=body)
    from_brand = query(shared_node, brand, "treats")
    from_ingredient = query(shared_node, ingredient, "treats")
    skeptic = shared_node.get("/v1/skeptic", params={"subject": brand, "predicate": "treats"})

    assert created.status_code == 201, created.text
    assert again.status_code == 200, again.text
    both = sorted([on_brand, on_ingredient])
    assert sorted(c["hash"] for c in from_brand["candidates"]) == both, from_brand
    assert sorted(c["hash"] for c in from_ingredient["candidates"]) == both, from_ingredient
    assert from_brand["aliases_included"] == 1, from_brand
    assert len(skeptic.json()["claims"]) == 2, skeptic.json()


def test_alias_is_one_level(shared_node, subject):
    a, b, c = f"{subject}/a", f"{subject}/b", f"{subject}/c"
    store(shared_node, signed(1, c, "p", text("only on c")))
    assert shared_node.post("/v1/aliases", json=make_alias(a, b)).status_code == 201
    assert shared_node.post("/v1/aliases", json=make_alias(b, c)).status_code == 201

    from_a = query(shared_node, a, "p")
    from_b = query(shared_node, b, "p")

    assert from_a["candidate_count"] == 0, from_a
    assert from_b["candidate_count"] == 1, from_b


def test_alias_hostile_input(shared_node, subject):
    good = make_alias(f"{subject}/x", f"{subject}/y")
    same = make_alias(f"{subject}/x", f"{subject}/x")

    assert_error(shared_node.post("/v1/aliases", json=same), 422, "out_of_range", "subject_b")
    assert_error(shared_node.post("/v1/aliases", json=dict(good, subject_b=f"{subject}/z")), 422,
                 "invalid_signature")
    assert_error(shared_node.post("/v1/aliases", json=dict(good, subject_a="")), 422,
                 "out_of_range", "subject_a")
    assert_error(shared_node.post("/v1/aliases", json=dict(good, subject_b=5)), 400,
                 "invalid_field", "subject_b")
    assert shared_node.get("/v1/aliases").status_code == 405


def test_vote_lens_in_prefix_query(shared_node, subject):
    store(shared_node, signed(1, f"{subject}/x", "p", text("newer"), timestamp=BASE_TIME + 100))
    older = store(shared_node, signed(2, f"{subject}/x", "p", text("older")))
    assert vote(shared_node, 3, older, 1.0).status_code == 201

    response = shared_node.get("/v1/query", params={"subject_prefix": f"{subject}/",
                                                   "predicate": "p", "lens": "vote"})

    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["winner"]["hash"] for r in results] == [older], results


def test_sources_allow_header_lists_both(shared_node):
    response = shared_node.request("PUT", "/v1/sources", json={})
    votes = shared_node.request("DELETE", f"/v1/assertions/{'ab' * 32}/votes")

    assert response.status_code == 405, response.text
    assert response.headers["Allow"] == "GET, HEAD, POST", response.headers
    assert votes.status_code == 405, votes.text
    assert votes.headers["Allow"] == "GET, HEAD", votes.headers


def test_cosignature_on_full_signer_list_409(shared_node, subject):
    full = cosigned(list(range(1, 17)), subject, "p", text("a"))
    target = store(shared_node, full)
    body = stemedb_records.make_cosignature(seed(17), target, BASE_TIME + 1)

    response = shared_node.post(f"/v1/assertions/{target}/signatures", json=body)

    assert_error(response, 409, "too_many_signatures")
