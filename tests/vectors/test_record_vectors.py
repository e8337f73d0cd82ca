"""Reproduce tests/vectors/records.json with the independent Python implementation."""

import json
import os

import nacl.signing
import pytest

import stemedb_records

VECTORS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "records.json")

with open(VECTORS_PATH, encoding="utf-8") as vectors_file:
    CASES = json.load(vectors_file)["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_record_bytes_and_id(case):
    got = stemedb_records.canonical_bytes(case["type"], case["input"]).hex()
    assert got == case["canonical_hex"], f"{case['name']}: canonical bytes {got}"
    digest = stemedb_records.record_id(case["type"], case["input"]).hex()
    assert digest == case["id"], f"{case['name']}: id {digest}"


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_record_signature_reproduces(case):
    got = stemedb_records.sign(case["type"], case["input"], bytes.fromhex(case["seed"]))
    assert got["agent_id"] == case["agent_id"], f"agent id {got['agent_id']}"
    assert got["signature"] == case["signature"], f"signature {got['signature']}"
    key = nacl.signing.VerifyKey(bytes.fromhex(got["agent_id"]))
    message = stemedb_records.signing_message(case["type"], case["input"])
    assert key.verify(message, bytes.fromhex(got["signature"])) == message


def test_vote_domain_prefix():
    case = next(c for c in CASES if c["type"] == "vote")
    message = stemedb_records.signing_message("vote", case["input"])
    assert message[:15] == b"stemedb-vote-v1", f"prefix {message[:15]!r}"
    assert message[15:].hex() == case["id"], f"id part {message[15:].hex()}"


@pytest.mark.parametrize("weight", [1.0000001, -1.5])
def test_vote_weight_out_of_range(weight):
    with pytest.raises(ValueError):
        stemedb_records.weight_micro(weight)
