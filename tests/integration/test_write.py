"""Writes: POST /v1/assert and POST /v1/assert/batch, and reading them back."""

from claims import agent_id, cosigned, expected_hash, signed, text, with_changes


def test_assert_created_then_exists(shared_node, subject):
    assertion = signed(1, subject, "capital", text("Sucre"), confidence=0.9)

    first = shared_node.post("/v1/assert", json=assertion)
    again = shared_node.post("/v1/assert", json=assertion)

    assert first.status_code == 201, first.text
    assert first.json() == {"hash": expected_hash(assertion), "status": "created"}, first.text
    assert again.status_code == 200, again.text
    assert again.json() == {"hash": expected_hash(assertion), "status": "exists"}, again.text


def test_cosignature_keeps_identity(shared_node, subject):
    alone = signed(1, subject, "capital", text("Sucre"))
    both = cosigned([2, 3], subject, "capital", text("Sucre"))

    first = shared_node.post("/v1/assert", json=alone)
    second = shared_node.post("/v1/assert", json=both)

    assert first.status_code == 201, first.text
    assert second.status_code == 200, second.text
    assert second.json()["hash"] == first.json()["hash"], second.text


def test_read_your_writes(shared_node, subject):
    assertion = signed(4, subject, "population", text("11.8 million"), confidence=0.75,
                       source_class="observational", lifecycle="approved")

    created = shared_node.post("/v1/assert", json=assertion)
    digest = created.json()["hash"]
    read = shared_node.get(f"/v1/assertions/{digest}")

    assert created.status_code == 201, created.text
    assert read.status_code == 200, read.text
    body = read.json()
    for field in ("subject", "predicate", "object", "confidence", "source_class", "lifecycle",
                  "timestamp", "signatures"):
        assert body[field] == assertion[field], f"{field}: sent {assertion[field]!r}, read {body[field]!r}"
    assert body["hash"] == digest, body
    assert set(body["hlc"]) == {"wall_ms", "logical", "node_id"}, body["hlc"]
    assert body["hlc"]["wall_ms"] > 0, body["hlc"]


def test_query_sees_write_at_once(shared_node, subject):
    assertion = signed(5, subject, "capital", text("La Paz"))

    created = shared_node.post("/v1/assert", json=assertion)
    query = shared_node.get("/v1/query", params={"subject": subject, "predicate": "capital"})

    assert created.status_code == 201, created.text
    assert query.json()["candidate_count"] == 1, query.text
    assert query.json()["winner"]["hash"] == created.json()["hash"], query.text


def test_batch_mixed_items(shared_node, subject):
    existing = signed(1, subject, "capital", text("Sucre"))
    fresh = signed(2, subject, "capital", text("La Paz"))
    bad_signature = signed(3, subject, "capital", text("Santa Cruz"))
    bad_signature["signatures"][0]["signature"] = "00" * 64
    wrong_type = with_changes(signed(4, subject, "capital", text("Cochabamba")), confidence="high")
    assert shared_node.post("/v1/assert", json=existing).status_code == 201

    response = shared_node.post("/v1/assert/batch",
                                json={"assertions": [fresh, existing, bad_signature, wrong_type]})

    assert response.status_code == 200, response.text
    body = response.json()
    statuses = [r["status"] for r in body["results"]]
    assert statuses == ["created", "exists", "rejected", "rejected"], body
    assert [r["index"] for r in body["results"]] == [0, 1, 2, 3], body
    assert body["results"][0]["hash"] == expected_hash(fresh), body
    assert body["results"][2]["error"]["code"] == "invalid_signature", body
    assert body["results"][3]["error"]["code"] == "invalid_field", body
    assert body["results"][3]["error"]["field"] == "confidence", body
    assert (body["created"], body["existing"], body["rejected"]) == (1, 1, 2), body


def test_batch_items_readable_after_reply(shared_node, subject):
    items = [signed(1, subject, f"p{i}", text(f"v{i}")) for i in range(50)]

    response = shared_node.post("/v1/assert/batch", json={"assertions": items})

    assert response.json()["created"] == 50, response.text
    for item in items:
        read = shared_node.get(f"/v1/assertions/{expected_hash(item)}")
        assert read.status_code == 200, f"{expected_hash(item)}: {read.status_code} {read.text}"


def test_batch_duplicate_items(shared_node, subject):
    item = signed(6, subject, "capital", text("Sucre"))

    response = shared_node.post("/v1/assert/batch", json={"assertions": [item, item]})

    body = response.json()
    assert sorted(r["status"] for r in body["results"]) == ["created", "exists"], body


def test_batch_empty(shared_node):
    response = shared_node.post("/v1/assert/batch", json={"assertions": []})

    assert response.status_code == 200, response.text
    assert response.json() == {
        "results": [], "created": 0, "existing": 0, "rejected": 0, "quarantined": 0}


def test_agent_ids_in_candidates(shared_node, subject):
    shared_node.post("/v1/assert", json=cosigned([7, 8], subject, "capital", text("Sucre")))

    query = shared_node.get("/v1/query", params={"subject": subject, "predicate": "capital"})

    assert query.json()["winner"]["agents"] == [agent_id(7), agent_id(8)], query.text
