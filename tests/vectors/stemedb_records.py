"""Independent Python implementation of the StemeDB vote, epoch, co-signature, source,
alias and trust outcome records, written from the layouts in docs/formats.md with hashlib and PyNaCl.

Every function takes the record in the JSON form the API accepts, without signatures.
make_vote, make_epoch, make_cosignature, make_source and make_alias return signed
request bodies for the HTTP API.
"""

import hashlib
import math
import struct
import time

import nacl.signing

import stemedb_ref

RECORD_VERSION = 0x01
HASH_LEN = 32
TYPES = {"vote": 0x02, "epoch": 0x03, "cosignature": 0x04, "source": 0x05, "alias": 0x06,
         "trust-outcome": 0x07}
OUTCOMES = {"inaccurate": 0, "accurate": 1}
FLAG_SUPERSEDES = 0x01
FLAG_CONTENT = 0x01


def weight_micro(weight):
    """Vote weight in millionths: floor(w * 1e6 + 0.5), in -1,000,000..1,000,000."""
    if not -1.0 <= weight <= 1.0:
        raise ValueError(f"weight {weight!r} is out of range; use -1.0 to 1.0")
    return math.floor(weight * 1e6 + 0.5)


def _string(text, prefix, field, max_len, min_len=0):
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if not min_len <= len(data) <= max_len:
        raise ValueError(f"{field} is {len(data)} bytes; use {min_len} to {max_len}")
    return struct.pack(prefix, len(data)) + data


def _hash(value, field):
    data = bytes.fromhex(value)
    if len(data) != HASH_LEN:
        raise ValueError(f"{field} must be {HASH_LEN} bytes")
    return data


def _body(kind, fields):
    if kind == "vote":
        return (_hash(fields["assertion_hash"], "assertion_hash") + _hash(fields["voter"], "voter")
                + struct.pack("<iQ", weight_micro(fields["weight"]), fields["timestamp"]))
    if kind == "epoch":
        supersedes = fields.get("supersedes")
        flags = FLAG_SUPERSEDES if supersedes else 0
        superseded = _hash(supersedes, "supersedes") if supersedes else bytes(HASH_LEN)
        return (_string(fields["name"], "<H", "name", 256, 1)
                + _string(fields.get("description", ""), "<I", "description", 65536)
                + bytes([flags]) + superseded + struct.pack("<Q", fields["timestamp"]))
    if kind == "cosignature":
        return (_hash(fields["assertion_hash"], "assertion_hash")
                + _hash(fields["agent_id"], "agent_id") + struct.pack("<Q", fields["timestamp"]))
    if kind == "source":
        out = (_string(fields["uri"], "<H", "uri", 4096, 1)
               + _string(fields.get("title", ""), "<H", "title", 1024)
               + bytes([stemedb_ref.source_class_index(fields.get("source_class", "anecdotal"))]))
        content = fields.get("content")
        if content is None:
            out += bytes([0])
        else:
            out += bytes([FLAG_CONTENT]) + _string(content, "<I", "content", 1 << 20)
        return out + struct.pack("<Q", fields["timestamp"])
    if kind == "alias":
        return (_string(fields["subject_a"], "<H", "subject_a", 1024, 1)
                + _string(fields["subject_b"], "<H", "subject_b", 1024, 1)
                + struct.pack("<Q", fields["timestamp"]))
    if kind == "trust-outcome":
        return (_hash(fields["agent_id"], "agent_id") + bytes([OUTCOMES[fields["outcome"]]])
                + struct.pack("<Q", fields["timestamp"])
                + _string(fields.get("note", ""), "<H", "note", 1024))
    raise ValueError(f"unknown record type {kind!r}")


def canonical_bytes(kind, fields):
    """Return the canonical bytes: type, version, then the fields of that type."""
    return bytes([TYPES[kind], RECORD_VERSION]) + _body(kind, fields)


def record_id(kind, fields):
    """Return the 32-byte BLAKE2b-256 digest (no key) of the canonical bytes."""
    return hashlib.blake2b(canonical_bytes(kind, fields), digest_size=HASH_LEN).digest()


def signing_message(kind, fields):
    """Return the signed message: "stemedb-<type>-v1" || id; an assertion message for
    co-signatures."""
    if kind == "cosignature":
        return stemedb_ref.signing_message(bytes.fromhex(fields["assertion_hash"]),
                                           fields["timestamp"])
    return b"stemedb-" + kind.encode() + b"-v1" + record_id(kind, fields)


def sign(kind, fields, seed):
    """Return {"agent_id", "signature"} of a 32-byte seed over the record."""
    key = nacl.signing.SigningKey(seed)
    return {"agent_id": key.verify_key.encode().hex(),
            "signature": key.sign(signing_message(kind, fields)).signature.hex()}


def make_vote(seed, assertion_hash, weight, timestamp=None):
    """Return a signed POST /v1/vote body; the voter is the seed's agent."""
    body = {"assertion_hash": assertion_hash, "voter": stemedb_ref.agent_id(seed),
            "weight": weight, "timestamp": timestamp or int(time.time())}
    body["signature"] = sign("vote", body, seed)["signature"]
    return body


def make_cosignature(seed, assertion_hash, timestamp=None):
    """Return a POST /v1/assertions/{hash}/signatures body."""
    body = {"agent_id": stemedb_ref.agent_id(seed), "timestamp": timestamp or int(time.time())}
    fields = dict(body, assertion_hash=assertion_hash)
    body["signature"] = sign("cosignature", fields, seed)["signature"]
    return body


def make_signed(kind, seeds, fields):
    """Return fields with "signatures" from every seed (epochs, sources, aliases)."""
    body = dict(fields)
    body.setdefault("timestamp", int(time.time()))
    body["signatures"] = [sign(kind, body, seed) for seed in seeds]
    return body
