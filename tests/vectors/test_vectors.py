"""Reproduce tests/vectors/assertions.json with the independent Python implementation."""

import json
import os
import struct

import nacl.signing
import pytest

import stemedb_ref

VECTORS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assertions.json")

with open(VECTORS_PATH, encoding="utf-8") as vectors_file:
    CASES = json.load(vectors_file)["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_canonical_bytes_and_hash(case):
    got = stemedb_ref.canonical_bytes(case["input"]).hex()
    assert got == case["canonical_hex"], f"{case['name']}: canonical bytes {got}"
    digest = stemedb_ref.assertion_hash(case["input"]).hex()
    assert digest == case["hash"], f"{case['name']}: hash {digest}"


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_signatures_reproduce(case):
    for expected in case["signatures"]:
        seed = bytes.fromhex(expected["seed"])
        got = stemedb_ref.sign(case["input"], seed, expected["timestamp"])
        assert got["agent_id"] == expected["agent_id"], f"agent id {got['agent_id']}"
        assert got["signature"] == expected["signature"], f"signature {got['signature']}"
        assert stemedb_ref.verify(case["input"], got), f"signature by {got['agent_id']} fails"


def test_python_signature_verifies_with_pynacl():
    fields = CASES[0]["input"]
    seed = bytes(range(32))
    signature = stemedb_ref.sign(fields, seed, 1700000123)
    message = (b"stemedb-assertion-v1" + stemedb_ref.assertion_hash(fields)
               + struct.pack("<Q", 1700000123))
    verify_key = nacl.signing.VerifyKey(bytes.fromhex(signature["agent_id"]))
    assert verify_key.verify(message, bytes.fromhex(signature["signature"])) == message


@pytest.mark.parametrize("change", ["signature", "timestamp", "hash"])
def test_tampered_signature_fails(change):
    fields = dict(CASES[0]["input"])
    signature = stemedb_ref.sign(fields, bytes(32), 1700000000)
    if change == "signature":
        raw = bytearray.fromhex(signature["signature"])
        raw[5] ^= 0x01
        signature["signature"] = raw.hex()
    elif change == "timestamp":
        signature["timestamp"] += 1
    else:
        fields["confidence"] = 0.91
    assert not stemedb_ref.verify(fields, signature), f"tampered {change} still verifies"


def test_vectors_cover_the_format():
    inputs = [c["input"] for c in CASES]
    kinds = {stemedb_ref.object_parts(i["object"])[0] for i in inputs}
    classes = {stemedb_ref.source_class_index(i.get("source_class", "anecdotal")) for i in inputs}
    stages = {stemedb_ref.lifecycle_index(i.get("lifecycle", "proposed")) for i in inputs}
    assert len(CASES) >= 8, f"only {len(CASES)} vectors"
    assert kinds == set(stemedb_ref.OBJECT_TYPES), f"object types covered: {kinds}"
    assert classes == set(range(6)), f"source classes covered: {classes}"
    assert stages == set(range(5)), f"lifecycles covered: {stages}"
    assert any(i.get("parent_hash") for i in inputs) and any("parent_hash" not in i for i in inputs)
    assert any(i.get("epoch") for i in inputs) and any(not i.get("epoch") for i in inputs)
    assert any(len(c["signatures"]) > 1 for c in CASES)
    assert any(len(i["subject"].encode()) > len(i["subject"]) for i in inputs)


def test_negative_zero_matches_positive_zero():
    base = {"subject": "s", "predicate": "p", "confidence": 0.5, "timestamp": 1}
    negative = stemedb_ref.canonical_bytes({**base, "object": {"Number": -0.0}})
    positive = stemedb_ref.canonical_bytes({**base, "object": {"Number": 0.0}})
    assert negative == positive, f"{negative.hex()} != {positive.hex()}"


@pytest.mark.parametrize("confidence, micro", [
    (0.8500005, 850001), (0.5000005, 500000), (0.0, 0), (1.0, 1000000), (0.9, 900000)])
def test_confidence_rounding(confidence, micro):
    assert stemedb_ref.confidence_micro(confidence) == micro


def test_make_assertion_body():
    seed = bytes([7]) * 32
    body = stemedb_ref.make_assertion(seed, "aspirin", "treats", True, confidence=0.8,
                                      source_class="clinical", timestamp=1700000000,
                                      parent_hash="11" * 32, cosigners=[bytes([8]) * 32])
    assert body["object"] == {"type": "boolean", "value": True}
    assert body["parent_hash"] == "11" * 32
    assert len(body["signatures"]) == 2, body["signatures"]
    assert body["signatures"][0]["agent_id"] == stemedb_ref.agent_id(seed)
    for signature in body["signatures"]:
        assert stemedb_ref.verify(body, signature), f"signature {signature} fails"
