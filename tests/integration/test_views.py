"""Read-side views against a real node: /v1/layered and /v1/trace."""

import pytest

from claims import BASE_TIME, boolean, expected_hash, number, signed


# Assertions that differ only in their signer have the same hash, so the many-claim
# scenarios give each anecdotal claim its own timestamp.


def write_all(node, assertions):
    response = node.post("/v1/assert/batch", json={"assertions": assertions})
    assert response.status_code == 200, response.text
    assert response.json()["rejected"] == 0, response.text


def layered(node, subject, predicate="effective", **params):
    response = node.get("/v1/layered", params={"subject": subject, "predicate": predicate, **params})
    assert response.status_code == 200, response.text
    return response.json()


def test_layered_clinical_conflict_and_anecdotal_unanimity(shared_node, subject):
    claims = [
        signed(1, subject, "effective", boolean(True), confidence=0.9, source_class="clinical"),
        signed(2, subject, "effective", boolean(False), confidence=0.9, source_class="clinical"),
    ]
    claims += [signed(10 + i, subject, "effective", boolean(True), confidence=0.7,
                      source_class="anecdotal", timestamp=BASE_TIME + i) for i in range(50)]
    write_all(shared_node, claims)

    body = layered(shared_node, subject, decay="false")
    tiers = {t["source_class"]: t for t in body["tiers"]}

    assert sorted(tiers) == ["anecdotal", "clinical"], body["tiers"]
    assert tiers["clinical"]["conflict_score"] > 0.5, tiers["clinical"]
    assert tiers["anecdotal"]["conflict_score"] == pytest.approx(0.0, abs=1e-9), tiers["anecdotal"]
    assert tiers["anecdotal"]["candidate_count"] == 50, tiers["anecdotal"]
    assert body["answer_source_class"] == "clinical", body
    assert body["answer"] == tiers["clinical"]["leading_claim"], body
    assert body["candidate_count"] == 52, body


def test_layered_regulatory_against_hundred_anecdotal(shared_node, subject):
    regulatory = signed(1, subject, "effective", boolean(False), confidence=0.9,
                        source_class="regulatory")
    anecdotal = [signed(10 + i, subject, "effective", boolean(True), confidence=0.9,
                        source_class="anecdotal", timestamp=BASE_TIME + i)
                 for i in range(100)]
    write_all(shared_node, [regulatory] + anecdotal)

    body = layered(shared_node, subject)
    names = [t["source_class"] for t in body["tiers"]]

    assert names == ["regulatory", "anecdotal"], names
    assert body["answer"]["value"] == boolean(False), body["answer"]
    assert body["answer"]["assertions"] == [expected_hash(regulatory)], body["answer"]
    assert body["tiers"][1]["leading_claim"]["value"] == boolean(True), body["tiers"][1]
    assert body["cross_tier_conflict_score"] > 0.0, body


def test_layered_no_candidates(shared_node, subject):
    body = layered(shared_node, subject)

    assert body["tiers"] == [], body
    assert body["answer"] is None, body
    assert body["cross_tier_status"] == "no_data", body


def test_layered_as_of_filters(shared_node, subject):
    write_all(shared_node, [
        signed(1, subject, "effective", boolean(True), source_class="clinical",
               timestamp=BASE_TIME),
        signed(2, subject, "effective", boolean(False), source_class="expert",
               timestamp=BASE_TIME + 100),
    ])

    body = layered(shared_node, subject, as_of=BASE_TIME + 50)

    assert [t["source_class"] for t in body["tiers"]] == ["clinical"], body


@pytest.mark.parametrize("params, status, code", [
    ({"predicate": "p"}, 400, "missing_parameter"),
    ({"subject": "s"}, 400, "missing_parameter"),
    ({"subject": "s", "predicate": "p", "as_of": "yesterday"}, 400, "invalid_parameter"),
    ({"subject": "s", "predicate": "p", "decay": "maybe"}, 400, "invalid_parameter"),
    ({"subject": "s", "predicate": "p", "tolerance": "2"}, 400, "invalid_parameter"),
    ({"subject": "s", "predicate": "p", "lens": "recency"}, 400, "unknown_parameter"),
    ({"subject": "", "predicate": "p"}, 400, "invalid_parameter"),
])
def test_layered_hostile_parameters(shared_node, params, status, code):
    response = shared_node.get("/v1/layered", params=params)

    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


def test_layered_rejects_post(shared_node):
    response = shared_node.post("/v1/layered", json={})

    assert response.status_code == 405, response.text


@pytest.fixture
def lineage(shared_node, subject):
    """A revision tree: b revises a, c and d revise b, e revises c."""
    a = signed(1, subject, "dose_mg", number(100), timestamp=BASE_TIME)
    b = signed(2, subject, "dose_mg", number(80), timestamp=BASE_TIME + 1,
               parent_hash=expected_hash(a))
    c = signed(3, subject, "dose_mg", number(75), timestamp=BASE_TIME + 2,
               parent_hash=expected_hash(b))
    d = signed(4, subject, "dose_mg", number(70), timestamp=BASE_TIME + 3,
               parent_hash=expected_hash(b))
    e = signed(5, subject, "dose_mg", number(72), timestamp=BASE_TIME + 4,
               parent_hash=expected_hash(c))
    write_all(shared_node, [a, b, c, d, e])
    return {name: expected_hash(x) for name, x in zip("abcde", [a, b, c, d, e])}


def trace(node, hash_hex, **params):
    response = node.get(f"/v1/trace/{hash_hex}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_trace_both_directions(shared_node, lineage):
    body = trace(shared_node, lineage["b"])

    assert body["assertion"]["hash"] == lineage["b"], body["assertion"]
    assert [(n["hash"], n["depth"]) for n in body["ancestors"]] == [(lineage["a"], 1)], body
    seen = {n["hash"]: n["depth"] for n in body["descendants"]}
    assert seen == {lineage["c"]: 1, lineage["d"]: 1, lineage["e"]: 2}, seen
    assert body["truncated"] is False, body
    assert body["depth_limit"] == 10, body


def test_trace_ancestor_chain(shared_node, lineage):
    body = trace(shared_node, lineage["e"])

    hashes = [n["hash"] for n in body["ancestors"]]
    assert hashes == [lineage["c"], lineage["b"], lineage["a"]], hashes
    assert [n["depth"] for n in body["ancestors"]] == [1, 2, 3], body["ancestors"]
    assert body["ancestors"][0]["object"] == number(75), body["ancestors"][0]
    assert body["descendants"] == [], body


def test_trace_depth_limit(shared_node, lineage):
    down = trace(shared_node, lineage["a"], depth=1)
    up = trace(shared_node, lineage["e"], depth=2)

    assert [n["hash"] for n in down["descendants"]] == [lineage["b"]], down
    assert down["truncated"] is True, down
    assert [n["hash"] for n in up["ancestors"]] == [lineage["c"], lineage["b"]], up
    assert up["truncated"] is True, up


def test_trace_shows_registered_source(shared_node, subject):
    import stemedb_records
    from claims import seed

    source = stemedb_records.make_signed("source", [seed(6)], {
        "uri": f"https://example.org/{subject}", "title": "label", "timestamp": BASE_TIME})
    response = shared_node.post("/v1/sources", json=source)
    assert response.status_code == 201, response.text
    source_hash = response.json()["id"]
    claim = signed(1, subject, "dose_mg", number(5), source_hash=source_hash)
    unsourced = signed(1, subject, "dose_mg", number(6))
    write_all(shared_node, [claim, unsourced])

    body = trace(shared_node, expected_hash(claim))
    plain = trace(shared_node, expected_hash(unsourced))

    assert body["source_hash"] == source_hash, body
    assert body["source"]["id"] == source_hash, body["source"]
    assert body["source"]["uri"] == f"https://example.org/{subject}", body["source"]
    assert plain["source"] is None, plain


def test_trace_missing_parent(shared_node, subject):
    orphan = signed(1, subject, "dose_mg", number(5), parent_hash="ab" * 32)
    write_all(shared_node, [orphan])

    body = trace(shared_node, expected_hash(orphan))

    assert body["ancestors"] == [{"hash": "ab" * 32, "depth": 1, "stored": False}], body


@pytest.mark.parametrize("path, params, status, code", [
    ("/v1/trace/xyz", {}, 400, "invalid_parameter"),
    ("/v1/trace/" + "0" * 63, {}, 400, "invalid_parameter"),
    ("/v1/trace/" + "0" * 64, {}, 404, "not_found"),
    ("/v1/trace/" + "0" * 64, {"depth": "101"}, 400, "invalid_parameter"),
    ("/v1/trace/" + "0" * 64, {"depth": "-1"}, 400, "invalid_parameter"),
    ("/v1/trace/" + "0" * 64, {"limit": "1"}, 400, "unknown_parameter"),
])
def test_trace_hostile_input(shared_node, path, params, status, code):
    response = shared_node.get(path, params=params)

    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


@pytest.fixture
def concept_tree(shared_node, subject):
    """Five subjects under one scheme, one outside it, and two predicates on one subject."""
    root = f"drug://{subject}"
    writes = [
        signed(1, f"{root}/a", "dose_mg", number(1)),
        signed(1, f"{root}/b", "dose_mg", number(2)),
        signed(2, f"{root}/b", "dose_mg", number(3), timestamp=BASE_TIME + 5),
        signed(1, f"{root}/b", "route", number(9)),
        signed(1, f"{root}/c/d", "dose_mg", number(4)),
        signed(1, f"{root}/e", "dose_mg", number(5)),
        signed(1, f"{root}/f", "dose_mg", number(6)),
        signed(1, f"{root}x/a", "dose_mg", number(7)),
    ]
    write_all(shared_node, writes)
    return root


def prefix_query(node, **params):
    response = node.get("/v1/query", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_prefix_lists_pairs_with_winners(shared_node, concept_tree):
    body = prefix_query(shared_node, subject_prefix=concept_tree + "/")

    pairs = [(r["subject"][len(concept_tree):], r["predicate"]) for r in body["results"]]
    assert pairs == [("/a", "dose_mg"), ("/b", "dose_mg"), ("/b", "route"),
                     ("/c/d", "dose_mg"), ("/e", "dose_mg"), ("/f", "dose_mg")], pairs
    assert body["results"][1]["candidate_count"] == 2, body["results"][1]
    assert body["results"][1]["winner"]["object"] == number(3), body["results"][1]
    assert body["next_cursor"] is None, body
    assert body["lens"] == "recency", body


def test_prefix_is_a_byte_prefix(shared_node, concept_tree):
    body = prefix_query(shared_node, subject_prefix=concept_tree, predicate="dose_mg")

    subjects = [r["subject"] for r in body["results"]]
    assert concept_tree + "x/a" in subjects, subjects
    assert len(subjects) == 6, subjects


def test_prefix_predicate_filter(shared_node, concept_tree):
    body = prefix_query(shared_node, subject_prefix=concept_tree + "/", predicate="route")

    assert [r["subject"] for r in body["results"]] == [concept_tree + "/b"], body


def test_prefix_pagination(shared_node, concept_tree):
    seen, cursor, pages = [], None, 0
    while True:
        params = {"subject_prefix": concept_tree + "/", "limit": 2, "predicate": "dose_mg"}
        if cursor is not None:
            params["cursor"] = cursor
        body = prefix_query(shared_node, **params)
        pages += 1
        assert len(body["results"]) <= 2, body
        seen += [r["subject"] for r in body["results"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break

    expected = [concept_tree + s for s in ["/a", "/b", "/c/d", "/e", "/f"]]
    assert seen == expected, seen
    assert pages == 3, pages


def test_prefix_lens_and_as_of(shared_node, concept_tree):
    body = prefix_query(shared_node, subject_prefix=concept_tree + "/b", predicate="dose_mg",
                        as_of=BASE_TIME + 1, lens="confidence")

    assert body["results"][0]["candidate_count"] == 1, body
    assert body["results"][0]["winner"]["object"] == number(2), body


@pytest.mark.parametrize("params, code, field", [
    ({"subject_prefix": ""}, "invalid_parameter", "subject_prefix"),
    ({"subject_prefix": "a", "subject": "a"}, "invalid_parameter", "subject"),
    ({"subject_prefix": "a", "limit": "0"}, "invalid_parameter", "limit"),
    ({"subject_prefix": "a", "limit": "1001"}, "invalid_parameter", "limit"),
    ({"subject_prefix": "a", "cursor": "zz"}, "invalid_parameter", "cursor"),
    ({"subject_prefix": "a", "cursor": "6200"}, "invalid_parameter", "cursor"),
    ({"subject_prefix": "a", "cursor": "6162"}, "invalid_parameter", "cursor"),
    ({"subject_prefix": "a", "lens": "loudest"}, "invalid_parameter", "lens"),
    ({"subject_prefix": "a", "as_of": "x"}, "invalid_parameter", "as_of"),
    ({"subject_prefix": "a", "bogus": "1"}, "unknown_parameter", None),
])
def test_prefix_hostile_parameters(shared_node, params, code, field):
    response = shared_node.get("/v1/query", params=params)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    if field is not None:
        assert error["field"] == field, error
