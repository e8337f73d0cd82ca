"""Reads: /v1/query with every lens and parameter, /v1/skeptic and /v1/subjects."""

import urllib.parse

import pytest

from claims import BASE_TIME, boolean, cosigned, expected_hash, number, signed, text


def write_all(node, assertions):
    response = node.post("/v1/assert/batch", json={"assertions": assertions})
    assert response.status_code == 200, response.text
    assert response.json()["rejected"] == 0, response.text


def query(node, subject, predicate="capital", **params):
    response = node.get("/v1/query", params={"subject": subject, "predicate": predicate, **params})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def lens_case(shared_node, subject):
    """Three claims that each lens resolves differently:
    newest: anecdotal "Cochabamba" (agent 3), latest timestamp, low confidence;
    most confident: community "La Paz" (agent 2);
    most agents: expert "Sucre", signed by agents 4, 5 and 6 together;
    most authoritative: regulatory "Potosi" (agent 7), lowest confidence of its tier."""
    claims = {
        "recency": signed(3, subject, "capital", text("Cochabamba"), confidence=0.3,
                          source_class="anecdotal", timestamp=BASE_TIME + 300),
        "confidence": signed(2, subject, "capital", text("La Paz"), confidence=0.99,
                             source_class="community", timestamp=BASE_TIME + 100),
        "consensus": cosigned([4, 5, 6], subject, "capital", text("Sucre"), confidence=0.6,
                              source_class="expert", timestamp=BASE_TIME + 200),
        "authority": signed(7, subject, "capital", text("Potosi"), confidence=0.5,
                            source_class="regulatory", timestamp=BASE_TIME),
    }
    write_all(shared_node, list(claims.values()))
    return claims


@pytest.mark.parametrize("lens", ["recency", "confidence", "consensus", "authority"])
def test_query_lens_winner(shared_node, subject, lens_case, lens):
    body = query(shared_node, subject, lens=lens, decay="false")

    assert body["lens"] == lens, body
    assert body["winner"]["hash"] == expected_hash(lens_case[lens]), body
    assert 0 <= body["confidence"] <= 1, body
    assert body["candidate_count"] == 4, body


def test_query_default_lens_is_recency(shared_node, subject, lens_case):
    body = query(shared_node, subject)

    assert body["lens"] == "recency", body
    assert body["winner"]["hash"] == expected_hash(lens_case["recency"]), body


def test_query_candidates_newest_first(shared_node, subject, lens_case):
    body = query(shared_node, subject)

    timestamps = [c["timestamp"] for c in body["candidates"]]
    assert timestamps == sorted(timestamps, reverse=True), timestamps
    assert body["truncated"] is False, body


def test_query_limit_truncates(shared_node, subject, lens_case):
    body = query(shared_node, subject, limit="2")

    assert len(body["candidates"]) == 2, body
    assert body["candidate_count"] == 4, body
    assert body["truncated"] is True, body


def test_query_source_class_filter(shared_node, subject, lens_case):
    body = query(shared_node, subject, source_class="expert")

    assert body["candidate_count"] == 1, body
    assert body["winner"]["hash"] == expected_hash(lens_case["consensus"]), body


def test_query_lifecycle_filter(shared_node, subject):
    approved = signed(1, subject, "capital", text("Sucre"), lifecycle="approved")
    proposed = signed(2, subject, "capital", text("La Paz"), timestamp=BASE_TIME + 10)
    write_all(shared_node, [approved, proposed])

    body = query(shared_node, subject, lifecycle="approved")

    assert body["candidate_count"] == 1, body
    assert body["winner"]["hash"] == expected_hash(approved), body


def test_query_decay_switch(shared_node, subject):
    write_all(shared_node, [signed(1, subject, "capital", text("Sucre"), confidence=0.8,
                                   source_class="clinical")])

    decayed = query(shared_node, subject, as_of=str(BASE_TIME + 200 * 86400))
    flat = query(shared_node, subject, as_of=str(BASE_TIME + 200 * 86400), decay="false")

    # A clinical claim halves every 730 days: 0.8 * 0.5^(200/730).
    expected = 0.8 * 0.5 ** (200 / 730)
    assert abs(decayed["winner"]["effective_confidence"] - expected) < 1e-6, decayed
    assert flat["winner"]["effective_confidence"] == 0.8, flat
    assert decayed["reference_time"] == BASE_TIME + 200 * 86400, decayed
    assert decayed["as_of"] == BASE_TIME + 200 * 86400, decayed


def test_query_as_of_three_timestamps(shared_node, subject):
    times = [BASE_TIME + 1000, BASE_TIME + 2000, BASE_TIME + 3000]
    write_all(shared_node, [signed(i + 1, subject, "capital", text(f"v{i}"), timestamp=t)
                            for i, t in enumerate(times)])

    counts = {as_of: query(shared_node, subject, as_of=str(as_of))["candidate_count"]
              for as_of in (times[0] - 1, times[0], times[1] + 500, times[2] + 1)}

    assert counts == {times[0] - 1: 0, times[0]: 1, times[1] + 500: 2, times[2] + 1: 3}, counts


def test_query_no_candidates(shared_node, subject):
    body = query(shared_node, subject)

    assert body["winner"] is None, body
    assert body["confidence"] is None, body
    assert body["candidates"] == [], body


def test_skeptic_contested(shared_node, subject):
    write_all(shared_node, [
        signed(1, subject, "effective", boolean(True), confidence=0.8, source_class="clinical"),
        signed(2, subject, "effective", boolean(False), confidence=0.8, source_class="clinical"),
    ])

    response = shared_node.get("/v1/skeptic", params={"subject": subject, "predicate": "effective",
                                                      "as_of": str(BASE_TIME)})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "contested", body
    assert body["conflict_score"] >= 0.88, body
    assert body["claim_count"] == 2, body
    assert body["candidate_count"] == 2, body
    shares = [c["share"] for c in body["claims"]]
    assert abs(sum(shares) - 1) < 1e-9, shares
    for claim in body["claims"]:
        assert claim["source_classes"] == ["clinical"], claim
        assert claim["assertion_count"] == 1, claim
        assert len(claim["agents"]) == 1, claim


def test_skeptic_unanimous_groups_text(shared_node, subject):
    write_all(shared_node, [
        signed(1, subject, "capital", text("Sucre")),
        signed(2, subject, "capital", text("  sucre ")),
    ])

    body = shared_node.get("/v1/skeptic", params={"subject": subject, "predicate": "capital"}).json()

    assert body["status"] == "unanimous", body
    assert body["claims"][0]["assertion_count"] == 2, body
    assert len(body["claims"][0]["agents"]) == 2, body


def test_skeptic_tolerance_groups_numbers(shared_node, subject):
    write_all(shared_node, [
        signed(1, subject, "population", number(1000.0)),
        signed(2, subject, "population", number(1005.0)),
    ])
    params = {"subject": subject, "predicate": "population"}

    exact = shared_node.get("/v1/skeptic", params=params).json()
    tolerant = shared_node.get("/v1/skeptic", params={**params, "tolerance": "0.01"}).json()

    assert exact["claim_count"] == 2, exact
    assert tolerant["claim_count"] == 1, tolerant


def test_skeptic_no_data(shared_node, subject):
    body = shared_node.get("/v1/skeptic", params={"subject": subject, "predicate": "x"}).json()

    assert body["status"] == "no_data", body
    assert body["claims"] == [], body


def test_subject_predicates(shared_node, subject):
    write_all(shared_node, [
        signed(1, subject, "capital", text("Sucre")),
        signed(2, subject, "capital", text("La Paz")),
        signed(1, subject, "currency", text("boliviano")),
    ])

    response = shared_node.get("/v1/subjects/" + urllib.parse.quote(subject, safe=""))

    assert response.status_code == 200, response.text
    assert response.json() == {
        "subject": subject,
        "assertion_count": 3,
        "predicates": [{"predicate": "capital", "count": 2}, {"predicate": "currency", "count": 1}],
    }


def test_subject_unknown(shared_node, subject):
    response = shared_node.get("/v1/subjects/" + urllib.parse.quote(subject, safe=""))

    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found", response.text


def test_assertion_unknown_hash(shared_node):
    response = shared_node.get("/v1/assertions/" + "ab" * 32)

    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found", response.text
