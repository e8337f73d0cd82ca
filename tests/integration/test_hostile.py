"""Hostile and malformed requests: each gets the documented status and error code,
and none changes what is stored."""

import json

import pytest

from claims import signed, text, with_changes

JSON = {"Content-Type": "application/json"}


def good(subject="hostile/s"):
    return signed(1, subject, "capital", text("Sucre"))


def body_of(obj):
    return json.dumps(obj).encode()


def duplicate_signer():
    assertion = good()
    assertion["signatures"].append(dict(assertion["signatures"][0]))
    return assertion


def bad_signature():
    assertion = good()
    signature = bytearray.fromhex(assertion["signatures"][0]["signature"])
    signature[0] ^= 1
    assertion["signatures"][0]["signature"] = signature.hex()
    return assertion


def bad_agent_hex():
    assertion = good()
    assertion["signatures"][0]["agent_id"] = "zz" * 32
    return assertion


# (name, method, path, body bytes or None, extra headers, status, error code)
CASES = [
    ("malformed_json", "POST", "/v1/assert", b'{"subject": ', JSON, 400, "invalid_json"),
    ("json_array_body", "POST", "/v1/assert", b"[]", JSON, 400, "invalid_json"),
    ("empty_body", "POST", "/v1/assert", b"", JSON, 400, "invalid_json"),
    ("nul_escape", "POST", "/v1/assert",
     body_of(good()).replace(b'"hostile/s"', b'"hostile\\u0000s"'), JSON, 400, "invalid_json"),
    ("duplicate_key", "POST", "/v1/assert",
     b'{"subject": "a", "subject": "b"}', JSON, 400, "invalid_json"),
    ("confidence_string", "POST", "/v1/assert",
     body_of(with_changes(good(), confidence="high")), JSON, 400, "invalid_field"),
    ("timestamp_float", "POST", "/v1/assert",
     body_of(with_changes(good(), timestamp=1.5)), JSON, 400, "invalid_field"),
    ("missing_predicate", "POST", "/v1/assert",
     body_of({k: v for k, v in good().items() if k != "predicate"}), JSON, 400, "missing_field"),
    ("unknown_field", "POST", "/v1/assert",
     body_of(with_changes(good(), colour="red")), JSON, 400, "unknown_field"),
    ("bad_enum", "POST", "/v1/assert",
     body_of(with_changes(good(), source_class="gossip")), JSON, 400, "invalid_field"),
    ("bad_hex_agent", "POST", "/v1/assert", body_of(bad_agent_hex()), JSON, 400, "invalid_field"),
    ("confidence_1_5", "POST", "/v1/assert",
     body_of(with_changes(good(), confidence=1.5)), JSON, 422, "out_of_range"),
    ("subject_1025_bytes", "POST", "/v1/assert",
     body_of(with_changes(good(), subject="s" * 1025)), JSON, 422, "out_of_range"),
    ("no_signatures", "POST", "/v1/assert",
     body_of(with_changes(good(), signatures=[])), JSON, 422, "out_of_range"),
    ("invalid_signature", "POST", "/v1/assert", body_of(bad_signature()), JSON, 422,
     "invalid_signature"),
    ("signature_of_other_claim", "POST", "/v1/assert",
     body_of(with_changes(good(), confidence=0.5)), JSON, 422, "invalid_signature"),
    ("duplicate_signer", "POST", "/v1/assert", body_of(duplicate_signer()), JSON, 422,
     "duplicate_signer"),
    ("body_over_1_mib", "POST", "/v1/assert",
     b'{"subject": "' + b"x" * (1024 * 1024 + 100) + b'"}', JSON, 413, "payload_too_large"),
    ("text_plain", "POST", "/v1/assert", body_of(good()), {"Content-Type": "text/plain"}, 415,
     "unsupported_media_type"),
    ("form_encoded", "POST", "/v1/assert", b"a=b",
     {"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
    ("batch_not_array", "POST", "/v1/assert/batch", b'{"assertions": {}}', JSON, 400,
     "invalid_field"),
    ("batch_missing_key", "POST", "/v1/assert/batch", b"{}", JSON, 400, "missing_field"),
    ("batch_unknown_key", "POST", "/v1/assert/batch", b'{"assertions": [], "x": 1}', JSON, 400,
     "unknown_field"),
    ("batch_1001_items", "POST", "/v1/assert/batch",
     body_of({"assertions": [good()] * 1001}), JSON, 413, "batch_too_large"),
    ("unknown_lens", "GET", "/v1/query?subject=a&predicate=b&lens=oracle", None, {}, 400,
     "invalid_parameter"),
    ("unknown_parameter", "GET", "/v1/query?subject=a&predicate=b&colour=red", None, {}, 400,
     "unknown_parameter"),
    ("repeated_parameter", "GET", "/v1/query?subject=a&subject=b&predicate=b", None, {}, 400,
     "invalid_parameter"),
    ("missing_subject", "GET", "/v1/query?predicate=b", None, {}, 400, "missing_parameter"),
    ("empty_subject", "GET", "/v1/query?subject=&predicate=b", None, {}, 400,
     "invalid_parameter"),
    ("nul_in_parameter", "GET", "/v1/query?subject=a%00b&predicate=b", None, {}, 400,
     "invalid_parameter"),
    ("bad_escape", "GET", "/v1/query?subject=a%zzb&predicate=b", None, {}, 400,
     "invalid_parameter"),
    ("as_of_negative", "GET", "/v1/query?subject=a&predicate=b&as_of=-1", None, {}, 400,
     "invalid_parameter"),
    ("limit_zero", "GET", "/v1/query?subject=a&predicate=b&limit=0", None, {}, 400,
     "invalid_parameter"),
    ("limit_10001", "GET", "/v1/query?subject=a&predicate=b&limit=10001", None, {}, 400,
     "invalid_parameter"),
    ("tolerance_2", "GET", "/v1/skeptic?subject=a&predicate=b&tolerance=2", None, {}, 400,
     "invalid_parameter"),
    ("decay_maybe", "GET", "/v1/query?subject=a&predicate=b&decay=maybe", None, {}, 400,
     "invalid_parameter"),
    ("lens_on_skeptic", "GET", "/v1/skeptic?subject=a&predicate=b&lens=recency", None, {}, 400,
     "unknown_parameter"),
    ("bad_lifecycle", "GET", "/v1/query?subject=a&predicate=b&lifecycle=final", None, {}, 400,
     "invalid_parameter"),
    ("bad_hex_hash", "GET", "/v1/assertions/xyz", None, {}, 400, "invalid_parameter"),
    ("short_hash", "GET", "/v1/assertions/" + "a" * 63, None, {}, 400, "invalid_parameter"),
    ("subject_bad_escape", "GET", "/v1/subjects/a%zz", None, {}, 400, "invalid_parameter"),
    ("unknown_route", "GET", "/v2/assert", None, {}, 404, "not_found"),
    ("root", "GET", "/", None, {}, 404, "not_found"),
    ("get_on_assert", "GET", "/v1/assert", None, {}, 405, "method_not_allowed"),
    ("post_on_query", "POST", "/v1/query?subject=a&predicate=b", b"{}", JSON, 405,
     "method_not_allowed"),
    ("delete_assertion", "DELETE", "/v1/assertions/" + "ab" * 32, None, {}, 405,
     "method_not_allowed"),
    ("params_on_health", "GET", "/v1/health?verbose=1", None, {}, 400, "unknown_parameter"),
]


@pytest.mark.parametrize("name,method,path,body,headers,status,code", CASES,
                         ids=[case[0] for case in CASES])
def test_hostile_request(shared_node, name, method, path, body, headers, status, code):
    got_status, _, got_body = shared_node.raw_request(method, path, body, headers)

    assert got_status == status, f"{name}: {got_status} {str(got_body)[:300]}"
    error = got_body["error"]
    assert error["code"] == code, f"{name}: {error}"
    assert error["message"], f"{name}: empty message"


def test_hostile_requests_store_nothing(shared_node):
    for name, method, path, body, headers, _, _ in CASES:
        shared_node.raw_request(method, path, body, headers)

    response = shared_node.get("/v1/subjects/hostile%2Fs")

    assert response.status_code == 404, response.text


def test_error_names_field(shared_node):
    response = shared_node.post("/v1/assert", json=with_changes(good(), confidence=1.5))

    assert response.json()["error"]["field"] == "confidence", response.text


def test_405_lists_allowed_method(shared_node):
    response = shared_node.get("/v1/assert")

    assert response.headers.get("Allow") == "POST", response.headers


def test_rejections_counted(shared_node):
    shared_node.get("/v1/query?subject=a&predicate=b&lens=oracle")

    metrics = shared_node.get("/metrics").text

    assert 'stemedb_requests_rejected_total{reason="invalid_parameter"}' in metrics, metrics[:2000]
