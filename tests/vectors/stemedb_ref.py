"""Independent Python implementation of the StemeDB assertion format.

It builds the canonical bytes, the BLAKE2b-256 assertion hash and the Ed25519
signatures from the format description in docs/formats.md, using only hashlib and
PyNaCl, so that the fixed vectors check the C code against a second implementation.
Integration tests also use it to build signed request bodies:

    body = make_assertion(seed, "aspirin", "treats", "headache", confidence=0.8)
    requests.post(url + "/v1/assert", json=body)

`fields` everywhere is an assertion in the JSON form the API accepts.
"""

import hashlib
import math
import struct
import time

import nacl.signing

RECORD_TYPE_ASSERTION = 0x01
RECORD_VERSION = 0x01
SIGNATURE_DOMAIN = b"stemedb-assertion-v1"
HASH_LEN = 32
ZERO_HASH = "00" * HASH_LEN

SUBJECT_MAX = 1024
PREDICATE_MAX = 256
TEXT_MAX = 65536

OBJECT_TYPES = {"text": 1, "number": 2, "boolean": 3, "reference": 4}
SOURCE_CLASSES = ["regulatory", "clinical", "observational", "expert", "community", "anecdotal"]
LIFECYCLES = ["proposed", "under_review", "approved", "deprecated", "rejected"]

FLAG_PARENT = 0x01
FLAG_EPOCH = 0x02


def _snake_case(name):
    """Turn "UnderReview" or "Under_review" into "under_review"."""
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i > 0 and name[i - 1] != "_":
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def _enum_index(name, table, field):
    normalized = _snake_case(name)
    if normalized not in table:
        raise ValueError(f"{field} {name!r} is unknown; use one of {', '.join(table)}")
    return table.index(normalized)


def source_class_index(name):
    """Return the tier (0..5) of a source class name in any accepted spelling."""
    return _enum_index(name, SOURCE_CLASSES, "source_class")


def lifecycle_index(name):
    """Return the code (0..4) of a lifecycle name in any accepted spelling."""
    return _enum_index(name, LIFECYCLES, "lifecycle")


def object_parts(obj):
    """Return (type name, value) for {"type": t, "value": v} or the one-key form {"Number": v}."""
    if "type" in obj:
        kind, value = obj["type"], obj["value"]
    else:
        if len(obj) != 1:
            raise ValueError(f"object {obj!r} must have one key, such as {{'Number': 1.5}}")
        (kind, value), = obj.items()
    kind = kind.lower()
    if kind not in OBJECT_TYPES:
        raise ValueError(f"object type {kind!r} is unknown; use one of {', '.join(OBJECT_TYPES)}")
    return kind, value


def confidence_micro(confidence):
    """Confidence in millionths: floor(c * 1e6 + 0.5), with the product rounded to a double first."""
    if not 0.0 <= confidence <= 1.0:
        raise ValueError(f"confidence {confidence!r} is out of range; use 0.0 to 1.0")
    return math.floor(confidence * 1e6 + 0.5)


def _utf8(text, field, max_len, min_len=0):
    data = text.encode("utf-8")
    if not min_len <= len(data) <= max_len:
        raise ValueError(f"{field} is {len(data)} bytes; use {min_len} to {max_len}")
    if b"\0" in data:
        raise ValueError(f"{field} contains NUL")
    return data


def _hash_bytes(value, field):
    data = bytes.fromhex(value)
    if len(data) != HASH_LEN:
        raise ValueError(f"{field} must be {HASH_LEN} bytes")
    return data


def _object_bytes(obj):
    kind, value = object_parts(obj)
    out = bytes([OBJECT_TYPES[kind]])
    if kind in ("text", "reference"):
        data = _utf8(value, "object value", TEXT_MAX)
        return out + struct.pack("<I", len(data)) + data
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"number object value {value!r} is not a number")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"number object value {value!r} is not finite")
        # IEEE-754 addition gives -0.0 + 0.0 == +0.0, so both zeros encode alike.
        return out + struct.pack("<d", number + 0.0)
    if not isinstance(value, bool):
        raise ValueError(f"boolean object value {value!r} is not true or false")
    return out + bytes([1 if value else 0])


def canonical_bytes(fields):
    """Return the canonical encoding of an assertion given in its JSON form."""
    subject = _utf8(fields["subject"], "subject", SUBJECT_MAX, 1)
    predicate = _utf8(fields["predicate"], "predicate", PREDICATE_MAX, 1)
    parent = fields.get("parent_hash")
    epoch = fields.get("epoch")
    flags = 0
    if parent is not None:
        flags |= FLAG_PARENT
    if epoch is not None:
        flags |= FLAG_EPOCH
    timestamp = fields["timestamp"]
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or not 0 <= timestamp < 2**64:
        raise ValueError(f"timestamp {timestamp!r} must be an integer of Unix seconds")

    out = bytearray([RECORD_TYPE_ASSERTION, RECORD_VERSION])
    out += struct.pack("<H", len(subject)) + subject
    out += struct.pack("<H", len(predicate)) + predicate
    out += _object_bytes(fields["object"])
    out += struct.pack("<I", confidence_micro(fields["confidence"]))
    out.append(source_class_index(fields.get("source_class", "anecdotal")))
    out.append(lifecycle_index(fields.get("lifecycle", "proposed")))
    source_hash = fields.get("source_hash")
    out += _hash_bytes(source_hash if source_hash is not None else ZERO_HASH, "source_hash")
    out.append(flags)
    if parent is not None:
        out += _hash_bytes(parent, "parent_hash")
    if epoch is not None:
        out += _hash_bytes(epoch, "epoch")
    out += struct.pack("<Q", timestamp)
    return bytes(out)


def assertion_hash(fields):
    """Return the 32-byte BLAKE2b-256 digest (no key) of the canonical bytes."""
    return hashlib.blake2b(canonical_bytes(fields), digest_size=HASH_LEN).digest()


def signing_message(hash_bytes, timestamp):
    """Return the 60-byte signed message: domain, hash, u64 little-endian timestamp."""
    return SIGNATURE_DOMAIN + hash_bytes + struct.pack("<Q", timestamp)


def agent_id(seed):
    """Return the agent id (Ed25519 public key, hex) of a 32-byte seed."""
    return nacl.signing.SigningKey(seed).verify_key.encode().hex()


def sign(fields, seed, timestamp):
    """Sign an assertion with a 32-byte seed; return the signature as the API takes it."""
    key = nacl.signing.SigningKey(seed)
    message = signing_message(assertion_hash(fields), timestamp)
    return {
        "agent_id": key.verify_key.encode().hex(),
        "signature": key.sign(message).signature.hex(),
        "timestamp": timestamp,
    }


def verify(fields, signature):
    """Return True when one signature dict verifies over the assertion."""
    message = signing_message(assertion_hash(fields), signature["timestamp"])
    key = nacl.signing.VerifyKey(bytes.fromhex(signature["agent_id"]))
    try:
        key.verify(message, bytes.fromhex(signature["signature"]))
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def object_value(value):
    """Return the JSON object form of a Python value: str is text, bool boolean, int or float number."""
    if isinstance(value, dict):
        return value
    if isinstance(value, bool):
        return {"type": "boolean", "value": value}
    if isinstance(value, (int, float)):
        return {"type": "number", "value": value}
    if isinstance(value, str):
        return {"type": "text", "value": value}
    raise TypeError(f"cannot express {value!r} as an assertion object")


def make_assertion(seed, subject, predicate, obj, confidence=0.9, source_class="anecdotal",
                   timestamp=None, **kw):
    """Return a signed assertion body ready to POST to /v1/assert.

    obj is a Python value (see object_value) or an object dict. Keyword arguments
    lifecycle, source_hash, parent_hash and epoch are copied into the body;
    signature_timestamp sets the signature's own timestamp (default: timestamp);
    cosigners is a list of further seeds that co-sign the assertion.
    """
    if timestamp is None:
        timestamp = int(time.time())
    signature_timestamp = kw.pop("signature_timestamp", timestamp)
    cosigners = kw.pop("cosigners", [])
    fields = {
        "subject": subject,
        "predicate": predicate,
        "object": object_value(obj),
        "confidence": confidence,
        "source_class": source_class,
        "timestamp": timestamp,
    }
    for key in ("lifecycle", "source_hash", "parent_hash", "epoch"):
        if key in kw:
            fields[key] = kw.pop(key)
    if kw:
        raise TypeError(f"unknown arguments: {', '.join(sorted(kw))}")

    fields["signatures"] = [sign(fields, seed, signature_timestamp)]
    for cosigner in cosigners:
        fields["signatures"].append(sign(fields, cosigner, signature_timestamp))
    return fields


def hash_hex(fields):
    """Return the assertion hash as 64 lowercase hex characters, as the API reports it."""
    return assertion_hash(fields).hex()
