"""Avro schema resolution rules (the spec's "Schema Resolution"), as a compatibility checker.

``can_read(reader, writer)`` answers: can data written with ``writer`` be read with ``reader``?
BACKWARD_TRANSITIVE compatibility of a new schema means ``can_read(new, old)`` for every old version.
Schemas are fastavro-parsed (named types inlined on first use, referenced by name afterwards).
"""
from __future__ import annotations

from typing import Any

_PROMOTIONS = {
    "int": {"int"},
    "long": {"int", "long"},
    "float": {"int", "long", "float"},
    "double": {"int", "long", "float", "double"},
    "bytes": {"bytes", "string"},
    "string": {"string", "bytes"},
}
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def _index(schema: Any, names: dict) -> None:
    if isinstance(schema, list):
        for s in schema:
            _index(s, names)
    elif isinstance(schema, dict):
        if "name" in schema and schema.get("type") in ("record", "enum", "fixed", "error"):
            names[schema["name"]] = schema
        for f in schema.get("fields", []):
            _index(f["type"], names)
        for k in ("items", "values"):
            if k in schema:
                _index(schema[k], names)


def _resolve(schema: Any, names: dict) -> Any:
    if isinstance(schema, str) and schema not in _PRIMITIVES:
        return names[schema]
    if isinstance(schema, dict) and schema.get("type") in _PRIMITIVES and "logicalType" in schema:
        return schema["type"]  # logical types are read as their underlying type
    if isinstance(schema, dict) and schema.get("type") in _PRIMITIVES:
        return schema["type"]
    return schema


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, str):
        return schema
    return "record" if schema["type"] == "error" else schema["type"]


def incompatibilities(reader: Any, writer: Any) -> list[str]:
    """Every reason why ``reader`` cannot read ``writer`` data (empty list: compatible)."""
    rnames: dict = {}
    wnames: dict = {}
    _index(reader, rnames)
    _index(writer, wnames)
    problems: list[str] = []
    _check(reader, writer, rnames, wnames, "", problems, set())
    return problems


def can_read(reader: Any, writer: Any) -> bool:
    return not incompatibilities(reader, writer)


def _check(r: Any, w: Any, rn: dict, wn: dict, path: str, out: list[str], seen: set) -> None:
    r, w = _resolve(r, rn), _resolve(w, wn)
    rk, wk = _kind(r), _kind(w)
    if wk == "union":
        # Every branch the writer may have used must be readable.
        for branch in w:
            _check(r, branch, rn, wn, path, out, seen)
        return
    if rk == "union":
        for branch in r:
            sub: list[str] = []
            _check(branch, w, rn, wn, path, sub, seen)
            if not sub:
                return
        out.append(f"{path or '<root>'}: no branch of the reader union reads writer type {wk}")
        return
    if rk in _PROMOTIONS or wk in _PROMOTIONS or rk in ("null", "boolean") or wk in ("null", "boolean"):
        if wk not in _PROMOTIONS.get(rk, {rk}):
            out.append(f"{path or '<root>'}: writer {wk} cannot be read as {rk}")
        return
    if rk != wk:
        out.append(f"{path or '<root>'}: writer {wk} cannot be read as {rk}")
        return
    if rk == "array":
        _check(r["items"], w["items"], rn, wn, path + "[]", out, seen)
    elif rk == "map":
        _check(r["values"], w["values"], rn, wn, path + "{}", out, seen)
    elif rk == "enum":
        if r["name"].split(".")[-1] != w["name"].split(".")[-1]:
            out.append(f"{path}: enum name {w['name']} != {r['name']}")
        missing = set(w["symbols"]) - set(r["symbols"])
        if missing and "default" not in r:
            out.append(f"{path}: reader enum lacks symbols {sorted(missing)} and has no default")
    elif rk == "fixed":
        if r["size"] != w["size"]:
            out.append(f"{path}: fixed size {w['size']} != {r['size']}")
    elif rk == "record":
        if r["name"].split(".")[-1] != w["name"].split(".")[-1]:
            out.append(f"{path or '<root>'}: record name {w['name']} != {r['name']}")
            return
        key = (r["name"], w["name"])
        if key in seen:  # recursive types: already being checked higher up
            return
        seen = seen | {key}
        wfields = {f["name"]: f for f in w["fields"]}
        for wf in w["fields"]:
            for alias in wf.get("aliases", []):
                wfields.setdefault(alias, wf)
        for rf in r["fields"]:
            match = wfields.get(rf["name"]) or next(
                (wfields[a] for a in rf.get("aliases", []) if a in wfields), None)
            fpath = f"{path}.{rf['name']}" if path else rf["name"]
            if match is None:
                if "default" not in rf:
                    out.append(f"{fpath}: new field without a default cannot be read from old data")
                continue
            _check(rf["type"], match["type"], rn, wn, fpath, out, seen)
