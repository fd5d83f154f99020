"""BACKWARD_TRANSITIVE: every schema reads data written by every earlier committed version of itself.

Earlier versions come from git history (every commit that touched schemas_avro/). The check is done two
ways: by the Avro resolution rules, and by really decoding a datum written with the old schema.
"""
import io
import subprocess
import tempfile
from pathlib import Path

import fastavro
import pytest

from services.core.avro import SchemaCatalog
from services.core.avro_compat import can_read, incompatibilities

ROOT = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def _historic_catalogs():
    try:
        commits = _git("log", "--format=%H", "--", "schemas_avro").split()
    except (subprocess.CalledProcessError, FileNotFoundError):
        pytest.skip("not a git checkout: no history to compare with")
    for sha in commits:
        tmp = Path(tempfile.mkdtemp(prefix=f"avsc-{sha[:8]}-"))
        for path in _git("ls-tree", "-r", "--name-only", sha, "--", "schemas_avro").split():
            if path.endswith(".avsc"):
                (tmp / Path(path).name).write_text(_git("show", f"{sha}:{path}"))
        yield sha, SchemaCatalog(tmp)


def _datum(schema, names=None):
    """A datum exercising every field of a parsed schema."""
    names = {} if names is None else names
    if isinstance(schema, list):
        branch = next((s for s in schema if s != "null"), "null")
        return _datum(branch, names)
    if isinstance(schema, str):
        return {"null": None, "boolean": True, "int": 7, "long": 7, "float": 1.5, "double": 2.5,
                "bytes": b"x", "string": "s"}.get(schema) if schema in (
            "null", "boolean", "int", "long", "float", "double", "bytes", "string") else _datum(names[schema], names)
    t = schema["type"]
    if t == "record":
        names[schema["name"]] = schema
        return {f["name"]: _datum(f["type"], names) for f in schema["fields"]}
    if t == "array":
        return [_datum(schema["items"], names)]
    if t == "map":
        return {"k": _datum(schema["values"], names)}
    if t == "enum":
        return schema["symbols"][0]
    if t == "fixed":
        return b"\x00" * schema["size"]
    return _datum(t, names)


def test_every_schema_reads_every_earlier_committed_version():
    current = SchemaCatalog()
    compared = 0
    for sha, old in _historic_catalogs():
        for name, old_schema in old.by_name.items():
            if name not in current.by_name:
                continue  # a removed type has no reader to check
            new_schema = current.by_name[name]
            problems = incompatibilities(new_schema.parsed, old_schema.parsed)
            assert not problems, f"{name} cannot read data of commit {sha[:8]}: {problems}"
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, old_schema.parsed, _datum(old_schema.parsed))
            buf.seek(0)
            fastavro.schemaless_reader(buf, old_schema.parsed, new_schema.parsed)
            compared += 1
    print(f"compared {compared} (schema, earlier version) pairs")


def _rec(*fields):
    return fastavro.parse_schema({"type": "record", "name": "T", "namespace": "x", "fields": list(fields)})


def test_checker_accepts_added_field_with_default_and_removed_field():
    old = _rec({"name": "a", "type": "string"}, {"name": "b", "type": "int"})
    new = _rec({"name": "a", "type": "string"}, {"name": "c", "type": ["null", "string"], "default": None})
    assert can_read(new, old)


def test_checker_rejects_added_field_without_default():
    old = _rec({"name": "a", "type": "string"})
    new = _rec({"name": "a", "type": "string"}, {"name": "c", "type": "string"})
    assert incompatibilities(new, old) == ["c: new field without a default cannot be read from old data"]


def test_checker_follows_type_promotion_rules():
    assert can_read(_rec({"name": "a", "type": "long"}), _rec({"name": "a", "type": "int"}))
    assert not can_read(_rec({"name": "a", "type": "int"}), _rec({"name": "a", "type": "long"}))
    assert can_read(_rec({"name": "a", "type": ["null", "long"]}), _rec({"name": "a", "type": "int"}))
    assert not can_read(_rec({"name": "a", "type": "string"}), _rec({"name": "a", "type": ["null", "string"]}))


def test_checker_rejects_enum_losing_symbols_without_default():
    old = _rec({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}})
    new = _rec({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A"]}})
    assert not can_read(new, old)
