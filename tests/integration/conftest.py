"""Fixtures for the integration tests: real stemedb-api processes on loopback."""

import os
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "vectors"))

from node import Node  # noqa: E402


@pytest.fixture(scope="module")
def shared_node(tmp_path_factory):
    """One node per test module; tests keep apart by using unique subjects."""
    node = Node(tmp_path_factory.mktemp("node")).start()
    yield node
    code = node.stop()
    assert code == 0, f"stemedb-api exited with {code} on SIGTERM; log:\n{node.log()}"


@pytest.fixture
def fresh_node(tmp_path):
    """A node of its own, for tests that restart it or change its configuration."""
    node = Node(tmp_path / "node")
    yield node
    if node.process is not None:
        node.kill()


@pytest.fixture
def subject():
    """A subject no other test uses."""
    return f"test/{uuid.uuid4().hex}"
