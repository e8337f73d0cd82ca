"""Build signed assertions for the integration tests through tests/vectors/stemedb_ref.py,
the independent Python implementation of the assertion format."""

import copy
import time

import stemedb_ref

# Claim times far enough in the past that the tests never depend on the clock,
# and recent enough that a reader can tell them apart.
BASE_TIME = 1_700_000_000


def seed(n):
    """Return the 32-byte Ed25519 seed of test agent n."""
    return bytes([n]) * 32


def agent_id(n):
    """Return the hex agent id (public key) of test agent n."""
    return stemedb_ref.agent_id(seed(n))


def text(value):
    return {"type": "text", "value": value}


def number(value):
    return {"type": "number", "value": value}


def boolean(value):
    return {"type": "boolean", "value": value}


def signed(agent, subject, predicate, obj, **kw):
    """Return an assertion signed by test agent `agent`, ready to POST."""
    kw.setdefault("timestamp", BASE_TIME)
    return stemedb_ref.make_assertion(seed(agent), subject, predicate, obj, **kw)


def cosigned(agents, subject, predicate, obj, **kw):
    """Return one assertion signed by every agent in agents."""
    first = signed(agents[0], subject, predicate, obj, **kw)
    fields = {k: v for k, v in first.items() if k != "signatures"}
    for agent in agents[1:]:
        first["signatures"].append(stemedb_ref.sign(fields, seed(agent), first["timestamp"]))
    return first


def expected_hash(assertion):
    """Return the hex hash the server must report for assertion."""
    fields = {k: v for k, v in assertion.items() if k != "signatures"}
    return stemedb_ref.assertion_hash(fields).hex()


def with_changes(assertion, **changes):
    """Return a deep copy of assertion with some fields replaced (signatures kept)."""
    out = copy.deepcopy(assertion)
    out.update(changes)
    return out


def now():
    return int(time.time())
