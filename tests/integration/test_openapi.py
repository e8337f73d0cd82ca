"""The OpenAPI document at /api-doc/openapi.json: its structure, that every documented
operation answers with a documented status, and that it lists exactly the routes the
server registers."""

import json
import os
import re
import time

import pytest

import stemedb_records
from claims import BASE_TIME, agent_id, expected_hash, seed, signed, text

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC_PATH = os.path.join(REPO, "api-server", "openapi.json")
ROUTES_PATH = os.path.join(REPO, "api-server", "src", "http_server.c")
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# One entry of the route table in http_server.c: the path or prefix, the route
# template (the metrics label) and the method.
ROUTE_ENTRY = re.compile(
    r'\[ROUTE_\w+\]\s*=\s*\{\s*"[^"]*",\s*"([^"]+)",\s*(?:true|false),\s*HTTP_METHOD_(\w+)')


def load_doc():
    with open(DOC_PATH, encoding="utf-8") as f:
        return json.load(f)


def documented_operations(doc):
    return sorted((method.upper(), path) for path, item in doc["paths"].items()
                  for method in item if method in METHODS)


def resolve(doc, ref):
    assert ref.startswith("#/"), f"only local references are allowed, saw {ref}"
    node = doc
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, f"reference {ref} does not resolve"
        node = node[part]
    return node


def walk_refs(doc, node):
    if isinstance(node, dict):
        if "$ref" in node:
            resolve(doc, node["$ref"])
        for value in node.values():
            walk_refs(doc, value)
    elif isinstance(node, list):
        for value in node:
            walk_refs(doc, value)


def check_operation(doc, path, method, operation):
    where = f"{method.upper()} {path}"
    assert operation.get("operationId"), f"{where} has no operationId"
    responses = operation.get("responses")
    assert responses, f"{where} has no responses"
    for status, response in responses.items():
        assert re.fullmatch(r"[1-5][0-9][0-9]", status), f"{where} has status key {status!r}"
        if "$ref" in response:
            response = resolve(doc, response["$ref"])
        assert response.get("description"), f"{where} response {status} has no description"
        # /v1/health and /v1/ready answer 503 with their own body, which is the point.
        if int(status) >= 400 and path not in ("/v1/health", "/v1/ready"):
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, \
                f"{where} error {status} does not use the shared error schema: {schema}"
    declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
    templated = set(re.findall(r"\{(\w+)\}", path))
    assert declared == templated, f"{where} declares path parameters {declared}, path has {templated}"


def test_document_structure():
    doc = load_doc()

    assert re.fullmatch(r"3\.1\.\d+", doc.get("openapi", "")), doc.get("openapi")
    assert doc["info"].get("title"), doc["info"]
    assert doc["info"].get("version"), doc["info"]
    assert doc["paths"], "the document has no paths"
    ids = [op["operationId"] for item in doc["paths"].values()
           for method, op in item.items() if method in METHODS]
    assert len(ids) == len(set(ids)), f"operationIds repeat: {sorted(ids)}"
    for path, item in doc["paths"].items():
        operations = {m: op for m, op in item.items() if m in METHODS}
        assert operations, f"path {path} has no operations"
        for method, operation in operations.items():
            check_operation(doc, path, method, operation)
    walk_refs(doc, doc)


def test_document_lists_exactly_the_routes_of_the_server():
    with open(ROUTES_PATH, encoding="utf-8") as f:
        routes = sorted(set(ROUTE_ENTRY.findall(f.read())))
    documented = documented_operations(load_doc())

    assert len(routes) >= 10, f"the route table parser found only {routes}"
    served = sorted((method, path) for path, method in routes)
    assert served == documented, (
        f"routed but not documented: {sorted(set(served) - set(documented))}; "
        f"documented but not routed: {sorted(set(documented) - set(served))}")


def test_served_document_equals_the_file(shared_node):
    response = shared_node.get("/api-doc/openapi.json")

    assert response.status_code == 200, response.text[:200]
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    assert response.json() == load_doc(), "the served document differs from api-server/openapi.json"
    rejected = shared_node.get("/api-doc/openapi.json", params={"x": "1"})
    assert rejected.status_code == 400, rejected.text


@pytest.fixture(scope="module")
def records(shared_node):
    """Stores one of each record type and returns what the calls below need."""
    subject = f"openapi/{time.time_ns()}"
    assertion = signed(1, subject, "p", text("a"))
    stored = shared_node.post("/v1/assert", json=assertion)
    assert stored.status_code in (200, 201), stored.text
    epoch = stemedb_records.make_signed(
        "epoch", [seed(7)], {"name": subject, "description": "", "timestamp": BASE_TIME})
    posted = shared_node.post("/v1/epoch", json=epoch)
    assert posted.status_code in (200, 201), posted.text
    source = stemedb_records.make_signed("source", [seed(8)], {
        "uri": f"https://example.org/{subject}", "content": "evidence", "timestamp": BASE_TIME})
    registered = shared_node.post("/v1/sources", json=source)
    assert registered.status_code in (200, 201), registered.text
    queried = shared_node.get("/v1/query", params={"subject": subject, "predicate": "p"})
    assert queried.status_code == 200, queried.text
    return {"subject": subject, "hash": expected_hash(assertion), "epoch": epoch,
            "epoch_id": stemedb_records.record_id("epoch", epoch).hex(),
            "query_id": queried.json()["query_id"], "source_id": registered.json()["id"]}


def valid_request(op, r):
    """Returns (path, params, json body) of a valid call of the documented operation."""
    subject, h = r["subject"], r["hash"]
    fresh = signed(2, subject, "p", text(f"b{time.time_ns()}"))
    calls = {
        ("POST", "/v1/assert"): ("/v1/assert", None, fresh),
        ("POST", "/v1/assert/batch"): ("/v1/assert/batch", None, {"assertions": [fresh]}),
        ("GET", "/v1/assertions/{hash}"): (f"/v1/assertions/{h}", None, None),
        ("POST", "/v1/vote"): (
            "/v1/vote", None, stemedb_records.make_vote(seed(3), h, 0.5, BASE_TIME)),
        ("GET", "/v1/assertions/{hash}/votes"): (f"/v1/assertions/{h}/votes", None, None),
        ("POST", "/v1/assertions/{hash}/signatures"): (
            f"/v1/assertions/{h}/signatures", None,
            stemedb_records.make_cosignature(seed(4), h, BASE_TIME)),
        ("POST", "/v1/epoch"): ("/v1/epoch", None, r["epoch"]),
        ("GET", "/v1/epochs/{id}"): (f"/v1/epochs/{r['epoch_id']}", None, None),
        ("POST", "/v1/sources"): ("/v1/sources", None, stemedb_records.make_signed(
            "source", [seed(8)], {"uri": f"https://example.org/{time.time_ns()}",
                                  "timestamp": BASE_TIME})),
        ("GET", "/v1/sources"): ("/v1/sources", {"limit": "5"}, None),
        ("GET", "/v1/sources/{hash}"): (f"/v1/sources/{r['source_id']}", None, None),
        ("POST", "/v1/aliases"): ("/v1/aliases", None, stemedb_records.make_signed(
            "alias", [seed(9)], {"subject_a": subject, "subject_b": subject + "/alias",
                                 "timestamp": BASE_TIME})),
        ("GET", "/v1/query"): ("/v1/query", {"subject": subject, "predicate": "p"}, None),
        ("GET", "/v1/skeptic"): ("/v1/skeptic", {"subject": subject, "predicate": "p"}, None),
        ("GET", "/v1/layered"): ("/v1/layered", {"subject": subject, "predicate": "p"}, None),
        ("GET", "/v1/trace/{hash}"): (f"/v1/trace/{h}", {"depth": "3"}, None),
        ("GET", "/v1/audit/queries"): ("/v1/audit/queries", {"limit": "5"}, None),
        ("GET", "/v1/audit/query/{id}"): (f"/v1/audit/query/{r['query_id']}", None, None),
        ("GET", "/v1/feed"): ("/v1/feed", {"limit": "5"}, None),
        ("GET", "/v1/agents/{agent_id}"): (f"/v1/agents/{agent_id(1)}", None, None),
        ("GET", "/v1/subjects/{subject}"): (
            "/v1/subjects/" + subject.replace("/", "%2F"), None, None),
        ("GET", "/v1/admission/status"): ("/v1/admission/status?agent_id=" + agent_id(1),
                                          None, None),
        ("GET", "/v1/health"): ("/v1/health", None, None),
        ("GET", "/v1/ready"): ("/v1/ready", None, None),
        ("GET", "/metrics"): ("/metrics", None, None),
        ("GET", "/api-doc/openapi.json"): ("/api-doc/openapi.json", None, None),
    }
    assert op in calls, f"no valid request is known for the documented operation {op}; add one"
    return calls[op]


@pytest.mark.parametrize("op", documented_operations(load_doc()), ids=" ".join)
def test_every_documented_operation_answers_with_a_documented_status(shared_node, records, op):
    method, template = op
    path, params, body = valid_request(op, records)
    responses = load_doc()["paths"][template][method.lower()]["responses"]
    success = sorted(s for s in responses if s.startswith("2"))

    # Audit records reach storage within 100 ms, so an id is readable shortly after.
    deadline = time.monotonic() + 3
    while True:
        response = shared_node.request(method, path, params=params, json=body)
        if response.status_code != 404 or time.monotonic() > deadline:
            break
        time.sleep(0.05)

    assert str(response.status_code) in success, \
        f"{method} {path} answered {response.status_code} (documented: {success}): {response.text[:300]}"
