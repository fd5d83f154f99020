"""Avro schemas and the wire codec.

Schemas live in ``schemas_avro/<context>/v<major>/<full.name>.avsc``. Named types are resolved across
the whole tree by full name (a message in ``pipelines/v1`` may use ``aietl.common.v1.Envelope``), so
every schema is self-contained once loaded.

Framing:
* default: Avro single-object encoding (``C3 01`` + 8-byte CRC-64-AVRO fingerprint, little-endian, +
  body). Any subscriber can decode with ``schemas_avro/`` alone, or with the canonical schemas
  published to the compacted schemas topic.
* with a schema-registry URL: the Confluent wire format (``00`` + 4-byte schema id, big-endian, + body).
"""
from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import fastavro
from fastavro.repository.base import AbstractSchemaRepository, SchemaRepositoryError
from fastavro.schema import fingerprint, to_parsing_canonical_form

SINGLE_OBJECT_MARKER = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"


def default_schema_root() -> Path:
    import schemas_avro

    return Path(schemas_avro.__file__).resolve().parent


class AvroCodecError(ValueError):
    """A payload that cannot be encoded or decoded with the known schemas."""


class _TreeRepository(AbstractSchemaRepository):
    """fastavro repository that finds ``<full.name>.avsc`` anywhere under the schema root."""

    def __init__(self, files: dict[str, Path]):
        self._files = files

    def load(self, name: str) -> dict:
        path = self._files.get(name)
        if path is None:
            raise SchemaRepositoryError(f"no schema file for {name}")
        return json.loads(path.read_text())


@dataclass(frozen=True)
class LoadedSchema:
    name: str
    path: Path
    parsed: Any  # fastavro parsed schema
    canonical: str  # parsing canonical form, with every named type inlined
    fingerprint: bytes  # CRC-64-AVRO, as the 8 bytes of the single-object header

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()


class SchemaCatalog:
    """Every schema of a schema tree, by full name and by fingerprint."""

    def __init__(self, root: Optional[Path] = None):
        self.root = Path(root) if root else default_schema_root()
        files = {p.name[: -len(".avsc")]: p for p in sorted(self.root.rglob("*.avsc"))}
        repo = _TreeRepository(files)
        self.by_name: dict[str, LoadedSchema] = {}
        self.by_fingerprint: dict[bytes, LoadedSchema] = {}
        for name, path in files.items():
            parsed = fastavro.schema.load_schema(name, repo=repo, _write_hint=False)
            canonical = to_parsing_canonical_form(parsed)
            fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
            loaded = LoadedSchema(name, path, fastavro.parse_schema(parsed), canonical, fp)
            self.by_name[name] = loaded
            self.by_fingerprint[fp] = loaded

    def get(self, name: str) -> LoadedSchema:
        try:
            return self.by_name[name]
        except KeyError:
            raise AvroCodecError(f"unknown message type {name!r}") from None

    def short_names(self) -> dict[str, str]:
        """``PipelineRequested`` -> ``aietl.pipelines.v1.PipelineRequested``."""
        return {n.rsplit(".", 1)[-1]: n for n in self.by_name}

    def __iter__(self) -> Iterable[LoadedSchema]:
        return iter(self.by_name.values())


def _write_body(schema: LoadedSchema, record: dict) -> bytes:
    buf = io.BytesIO()
    try:
        fastavro.schemaless_writer(buf, schema.parsed, record, strict_allow_default=True)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise AvroCodecError(f"record does not match {schema.name}: {exc}") from exc
    return buf.getvalue()


def _read_body(schema: LoadedSchema, body: bytes) -> dict:
    return fastavro.schemaless_reader(io.BytesIO(body), schema.parsed, None)


class AvroCodec:
    """Encodes records as single-object Avro (or Confluent wire format) and decodes either."""

    def __init__(self, catalog: SchemaCatalog, schema_ids: Optional["SchemaIdResolver"] = None):
        self.catalog = catalog
        self.schema_ids = schema_ids

    def encode(self, name: str, record: dict) -> bytes:
        schema = self.catalog.get(name)
        body = _write_body(schema, record)
        if self.schema_ids is not None:
            return CONFLUENT_MAGIC + struct.pack(">I", self.schema_ids.id_for(schema)) + body
        return SINGLE_OBJECT_MARKER + schema.fingerprint + body

    def decode(self, data: bytes) -> tuple[str, dict]:
        if data[:2] == SINGLE_OBJECT_MARKER and len(data) >= 10:
            schema = self.catalog.by_fingerprint.get(data[2:10])
            if schema is None:
                raise AvroCodecError(f"unknown schema fingerprint {data[2:10].hex()}")
            body = data[10:]
        elif data[:1] == CONFLUENT_MAGIC and len(data) >= 5 and self.schema_ids is not None:
            schema = self.schema_ids.schema_for(struct.unpack(">I", data[1:5])[0])
            body = data[5:]
        else:
            raise AvroCodecError("payload is neither Avro single-object nor Confluent framed")
        try:
            return schema.name, _read_body(schema, body)
        except Exception as exc:  # fastavro raises many types on truncated/garbled bodies
            raise AvroCodecError(f"cannot decode {schema.name}: {exc}") from exc


class SchemaIdResolver:
    """Maps schemas to Confluent schema-registry ids (registering them on first use)."""

    def __init__(self, register: Callable[[LoadedSchema], int], fetch: Callable[[int], str],
                 catalog: SchemaCatalog):
        self._register = register
        self._fetch = fetch
        self._catalog = catalog
        self._ids: dict[str, int] = {}
        self._by_id: dict[int, LoadedSchema] = {}

    def id_for(self, schema: LoadedSchema) -> int:
        if schema.name not in self._ids:
            sid = self._register(schema)
            self._ids[schema.name] = sid
            self._by_id[sid] = schema
        return self._ids[schema.name]

    def schema_for(self, schema_id: int) -> LoadedSchema:
        if schema_id not in self._by_id:
            canonical = to_parsing_canonical_form(fastavro.parse_schema(json.loads(self._fetch(schema_id))))
            fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
            schema = self._catalog.by_fingerprint.get(fp)
            if schema is None:
                raise AvroCodecError(f"registry schema {schema_id} is not one of ours")
            self._by_id[schema_id] = schema
        return self._by_id[schema_id]


def confluent_registry_resolver(url: str, catalog: SchemaCatalog, timeout: float = 10.0) -> SchemaIdResolver:
    """A resolver talking the Confluent Schema Registry REST API (RecordNameStrategy subjects)."""
    import httpx

    client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout,
                          headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})

    def register(schema: LoadedSchema) -> int:
        resp = client.post(f"/subjects/{schema.name}/versions", json={"schema": schema.canonical})
        resp.raise_for_status()
        return int(resp.json()["id"])

    def fetch(schema_id: int) -> str:
        resp = client.get(f"/schemas/ids/{schema_id}")
        resp.raise_for_status()
        return resp.json()["schema"]

    return SchemaIdResolver(register, fetch, catalog)


def build_codec(schema_registry_url: Optional[str] = None, root: Optional[Path] = None) -> AvroCodec:
    catalog = SchemaCatalog(root)
    resolver = confluent_registry_resolver(schema_registry_url, catalog) if schema_registry_url else None
    return AvroCodec(catalog, resolver)
