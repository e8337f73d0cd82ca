"""stemedb-ctl import against a real stemedb-api, on small synthetic datasets written by
the tests themselves (no network, no npm data)."""

import json
import os
import pty
import re
import subprocess
import time
import uuid

import pytest

from node import Node
from test_ctl import ctl_path, keygen, run_ctl

SUMMARY = re.compile(r"created (\d+), existing (\d+), rejected (\d+), skipped (\d+)")


def summary(stdout):
    """Return (created, existing, rejected, skipped) from the import summary."""
    match = SUMMARY.search(stdout)
    assert match, f"no summary line in:\n{stdout}"
    return tuple(int(n) for n in match.groups())


@pytest.fixture
def dataset(tmp_path):
    """A JSON file with records under data.items, its mapping and a key."""
    prefix = f"city-{uuid.uuid4().hex[:8]}"
    records = [
        {"id": "a1", "name": " Sucre ", "area": "204.5", "coastal": False, "tags": ["old"]},
        {"id": "a2", "name": "La Paz", "area": 472, "coastal": "false", "tags": []},
        {"id": "a3", "name": "Gitega", "area": "", "coastal": True, "tags": ["new", "x"]},
        {"id": "", "name": "Nameless", "area": 1, "coastal": True},
    ]
    data = tmp_path / "cities.json"
    data.write_text(json.dumps({"data": {"items": records}}))
    mapping = {
        "records": "data.items",
        "subject": prefix + "/{id}",
        "subject_transform": ["uppercase"],
        "timestamp": 1700000000,
        "confidence": 0.8,
        "predicates": [
            {"predicate": "name", "field": "name", "type": "text", "transform": ["trim"]},
            {"predicate": "area_km2", "field": "area", "type": "number", "confidence": 0.6},
            {"predicate": "coastal", "field": "coastal", "type": "boolean"},
            {"predicate": "first_tag", "field": "tags[0]", "type": "text"},
        ],
    }
    mapping_path = tmp_path / "cities.mapping.json"
    mapping_path.write_text(json.dumps(mapping))
    key = tmp_path / "cities.key"
    keygen(key)
    return {"prefix": prefix, "data": data, "mapping": mapping_path, "key": key,
            "tmp": tmp_path}


def import_args(ds, *extra, data=None):
    return ["import", "--mapping", ds["mapping"], "--key", ds["key"], "--source-class",
            "community", *extra, data or ds["data"]]


def test_import_twice_created_then_existing(shared_node, dataset):
    first = run_ctl(*import_args(dataset, "--batch-size", "3"), url=shared_node.base_url)
    second = run_ctl(*import_args(dataset), url=shared_node.base_url)

    # Records a1..a3 give 4 + 3 + 3 assertions because a2 has no tag and a3 no area.
    # The record with an empty id has no subject, so its 4 fields are skipped too.
    assert first.returncode == 0, f"first import exit {first.returncode}:\n{first.stdout}{first.stderr}"
    assert summary(first.stdout) == (10, 0, 0, 6), f"first summary:\n{first.stdout}"
    assert second.returncode == 0, f"second import exit {second.returncode}: {second.stderr}"
    assert summary(second.stdout) == (0, 10, 0, 6), f"second summary:\n{second.stdout}"
    assert "records without a subject: 1" in first.stdout, f"summary:\n{first.stdout}"
    assert "differs" not in first.stderr, f"hash mismatch reported: {first.stderr}"


def test_import_stores_mapped_values(shared_node, dataset):
    result = run_ctl(*import_args(dataset), url=shared_node.base_url)
    assert result.returncode == 0, f"import: {result.stdout}{result.stderr}"

    def winner(subject, predicate):
        body = shared_node.get("/v1/query", params={"subject": subject,
                                                    "predicate": predicate}).json()
        return body["winner"]

    prefix = dataset["prefix"]
    name = winner(f"{prefix}/A1", "name")
    area = winner(f"{prefix}/A1", "area_km2")
    coastal = winner(f"{prefix}/A2", "coastal")
    tag = winner(f"{prefix}/A3", "first_tag")
    assert name["object"] == {"type": "text", "value": "Sucre"}, f"name {name}"
    assert area["object"] == {"type": "number", "value": 204.5}, f"area {area}"
    assert area["confidence"] == pytest.approx(0.6), f"area confidence {area['confidence']}"
    assert area["timestamp"] == 1700000000, f"timestamp {area['timestamp']}"
    assert area["source_class"] == "community", f"source_class {area['source_class']}"
    assert coastal["object"] == {"type": "boolean", "value": False}, f"coastal {coastal}"
    assert tag["object"] == {"type": "text", "value": "new"}, f"first_tag {tag}"


def test_import_bad_value_rejected(shared_node, dataset):
    rows = [{"id": "ok", "name": "Fine", "area": "12.5"},
            {"id": "bad", "name": "Broken", "area": "12 km2"}]
    data = dataset["tmp"] / "bad.json"
    data.write_text(json.dumps({"data": {"items": rows}}))

    result = run_ctl(*import_args(dataset, data=data), url=shared_node.base_url)

    assert result.returncode == 1, f"exit {result.returncode}:\n{result.stdout}{result.stderr}"
    assert summary(result.stdout) == (3, 0, 1, 4), f"summary:\n{result.stdout}"
    assert "rejected invalid_value: 1" in result.stdout, f"summary:\n{result.stdout}"
    assert "record 1 (" in result.stdout, f"rejection example missing:\n{result.stdout}"
    assert '"12 km2"' in result.stdout, f"rejected value missing:\n{result.stdout}"


def test_import_jsonl_object_form_and_value_map(shared_node, tmp_path):
    prefix = f"jl-{uuid.uuid4().hex[:8]}"
    lines = [{"code": "bo", "cont": "SA", "mass": "1.00794(4)"},
             {"code": "bi", "cont": "AF", "mass": "[209]"},
             {"code": "xx", "cont": "ZZ", "mass": [272]}]
    data = tmp_path / "rows.jsonl"
    data.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    mapping = {
        "subject": prefix + "/{code}",
        "subject_transform": ["uppercase"],
        "predicates": [
            {"predicate": "continent", "field": "cont", "type": "text",
             "value_map": {"SA": "South America", "AF": "Africa"}},
            {"predicate": "mass", "field": "mass", "type": "number",
             "number_format": "measurement"},
        ],
    }
    (tmp_path / "m.json").write_text(json.dumps(mapping))
    keygen(tmp_path / "k.key")

    result = run_ctl("import", "--mapping", tmp_path / "m.json", "--key", tmp_path / "k.key",
                     "--source-class", "expert", "--timestamp", "1700000000", data,
                     url=shared_node.base_url)

    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stdout}{result.stderr}"
    assert summary(result.stdout) == (6, 0, 0, 0), f"summary:\n{result.stdout}"
    cont = shared_node.get("/v1/query", params={"subject": f"{prefix}/BO",
                                                "predicate": "continent"}).json()
    mass = shared_node.get("/v1/query", params={"subject": f"{prefix}/XX",
                                                "predicate": "mass"}).json()
    assert cont["winner"]["object"]["value"] == "South America", f"continent {cont['winner']}"
    assert mass["winner"]["object"]["value"] == 272, f"mass {mass['winner']}"


def test_import_object_records_with_lookup(shared_node, tmp_path):
    prefix = f"lk-{uuid.uuid4().hex[:8]}"
    (tmp_path / "codes.json").write_text(json.dumps(
        [{"country": "Bolivia", "abbreviation": "BO"}, {"country": "Burundi", "abbreviation": "BI"}]))
    (tmp_path / "capitals.json").write_text(json.dumps(
        {"first": {"country": "bolivia ", "city": "La Paz"},
         "second": {"country": "Atlantis", "city": "Poseidonis"}}))
    mapping = {
        "subject": prefix + "/{code}",
        "lookup": {"file": "codes.json", "match": "country", "value": "abbreviation",
                   "from": "country", "as": "code"},
        "timestamp": 1700000000,
        "predicates": [{"predicate": "capital", "field": "city", "type": "text"},
                       {"predicate": "source_key", "field": "_key", "type": "text"}],
    }
    (tmp_path / "m.json").write_text(json.dumps(mapping))
    keygen(tmp_path / "k.key")

    result = run_ctl("import", "--mapping", tmp_path / "m.json", "--key", tmp_path / "k.key",
                     "--source-class", "anecdotal", tmp_path / "capitals.json",
                     url=shared_node.base_url)

    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stdout}{result.stderr}"
    assert summary(result.stdout) == (2, 0, 0, 2), f"summary:\n{result.stdout}"
    assert 'no "code" in the lookup table for "Atlantis"' in result.stdout, result.stdout
    key = shared_node.get("/v1/query", params={"subject": f"{prefix}/BO",
                                               "predicate": "source_key"}).json()
    assert key["winner"]["object"]["value"] == "first", f"source_key {key['winner']}"


@pytest.mark.parametrize(
    "change,message",
    [
        ({"subjekt": "x"}, 'unknown key "subjekt"'),
        ({"timestamp": None}, "no claim timestamp"),
        ({"records": "data.missing"}, 'no array or object of records at "data.missing"'),
        ({"subject": "no placeholder"}, "has no {field}"),
        ({"predicates": [{"predicate": "p", "field": "a..b", "type": "text"}]},
         'field path "a..b"'),
        ({"predicates": [{"predicate": "p", "field": "a", "type": "decimal"}]},
         'type "decimal"'),
        ({"confidence": 2}, "from 0 to 1"),
    ],
    ids=["unknown-key", "no-timestamp", "bad-records-path", "no-placeholder", "bad-path",
         "bad-type", "bad-confidence"],
)
def test_import_bad_mapping_exit_2(shared_node, dataset, change, message):
    mapping = json.loads(dataset["mapping"].read_text())
    mapping.update(change)
    mapping = {k: v for k, v in mapping.items() if v is not None}
    dataset["mapping"].write_text(json.dumps(mapping))

    result = run_ctl(*import_args(dataset), url=shared_node.base_url)

    assert result.returncode == 2, f"exit {result.returncode}:\n{result.stdout}{result.stderr}"
    assert message in result.stderr, f"stderr: {result.stderr}"


def test_import_retries_until_node_starts(dataset, tmp_path):
    node = Node(tmp_path / "late-node")
    command = [ctl_path(), "--url", node.base_url] + [str(a) for a in import_args(dataset)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        time.sleep(1.0)
        node.start()
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        node.stop()

    assert process.returncode == 0, f"exit {process.returncode}:\n{stdout}{stderr}"
    assert "retrying in" in stderr, f"no retry logged: {stderr}"
    assert summary(stdout) == (10, 0, 0, 6), f"summary:\n{stdout}"


def test_import_progress_on_terminal(shared_node, dataset):
    primary, secondary = pty.openpty()
    command = [ctl_path(), "--url", shared_node.base_url] + [str(a) for a in import_args(dataset)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=secondary)
    os.close(secondary)
    stdout, _ = process.communicate(timeout=60)
    drawn = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:
            break
        if not chunk:
            break
        drawn += chunk
    os.close(primary)

    assert process.returncode == 0, f"exit {process.returncode}: {stdout!r}"
    assert b"4/4 records" in drawn, f"progress line: {drawn!r}"
    assert b"ETA" in drawn, f"progress line: {drawn!r}"
    assert b"/s" in drawn, f"progress line: {drawn!r}"


def test_import_whole_batch_rejected(fresh_node, dataset):
    # One signed assertion is about 600 bytes of JSON, so a 2 KiB body limit rejects a
    # batch of 5 items as a whole.
    fresh_node.extra_env["STEMEDB_MAX_BATCH_BODY_BYTES"] = "2048"
    fresh_node.start()

    result = run_ctl(*import_args(dataset, "--batch-size", "5"), url=fresh_node.base_url)

    assert result.returncode == 1, f"exit {result.returncode}:\n{result.stdout}{result.stderr}"
    created, existing, rejected, skipped = summary(result.stdout)
    assert rejected >= 5, f"rejected {rejected}:\n{result.stdout}"
    assert created + rejected == 10, f"created {created} + rejected {rejected}:\n{result.stdout}"
    assert "rejected payload_too_large" in result.stdout, f"summary:\n{result.stdout}"
