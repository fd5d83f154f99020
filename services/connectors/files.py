"""File folders (CSV, JSON lines, JSON, XML, Parquet) and SQLite databases, introspected by sampling.

A ``file`` connection is a folder (params.folder); its "tables" are the data files directly in it. Column
types are inferred from up to SAMPLE_ROWS records and spelled in the ``inferred`` dialect of
:mod:`services.connectors.typemap`: int, float, decimal(p,s), bool, date, timestamp, timestamptz, text,
json, bytes, array<T>. Parquet carries its own schema. The inference helpers here are shared with the
Kafka and HTTP introspection, which sample JSON records too.
"""
from __future__ import annotations

import csv
import json
import re
from collections import Counter
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from services.connectors.introspect import Column, IntrospectionError, TableNotFound
from services.connectors.registry import Connection, InvalidConnection

SAMPLE_ROWS = 1000
EXTENSIONS = (".csv", ".jsonl", ".ndjson", ".json", ".xml", ".parquet")
MAX_JSON_BYTES = 64 * 1024 * 1024  # a .json document is parsed whole; bigger ones should be JSON lines
MIN_DECIMAL_PRECISION = 18  # a sample's widest value underestimates the column; leave room to grow

# ---------------------------------------------------------------- value typing

_INT = re.compile(r"[+-]?\d+")
_FIXED = re.compile(r"[+-]?(\d+)\.(\d+)")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TS = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}(:?\d{2})?)?")
_TRUE_FALSE = {"true", "false", "t", "f", "yes", "no"}
# Cells that mean "no value" in CSV: exactly the markers Arrow's CSV reader (the executor's) reads as NULL,
# so a numeric column with `NA` gaps is typed as a number here too, not as text.
CSV_NULL_MARKERS = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                              "1.#QNAN", "N/A", "NA", "NULL", "NaN", "n/a", "nan", "null"})

# A type is a tuple: ("int", digits), ("float",), ("decimal", integer_digits, scale), ("array", item or None),
# ("text",), ...; None means only nulls were seen.


def text_type(value: str) -> tuple:
    """Type of a value read as text (CSV cells, XML text)."""
    v = value.strip()
    if v.lower() in _TRUE_FALSE:
        return ("bool",)
    if v.startswith("+") and len(v) > 6:
        return ("text",)  # "+79991234567": a phone number, whose plus sign and digits must survive
    if _INT.fullmatch(v):
        digits = len(v.lstrip("+-"))
        if digits > 1 and v.lstrip("+-").startswith("0"):
            return ("text",)  # leading zeros: a code (zip, phone, id), not a number
        return ("int", digits) if digits <= 18 else ("decimal", digits, 0)
    m = _FIXED.fullmatch(v)
    if m:
        return ("decimal", len(m.group(1).lstrip("0")) or 1, len(m.group(2)))
    if _FLOAT.fullmatch(v):
        return ("float",)
    return temporal_type(v) or ("text",)


def temporal_type(v: str) -> Optional[tuple]:
    try:
        if _DATE.fullmatch(v):
            date.fromisoformat(v)
            return ("date",)
        if _TS.fullmatch(v):
            return ("timestamptz",) if datetime.fromisoformat(v).tzinfo else ("timestamp",)
    except ValueError:
        return None
    return None


def value_type(value: Any) -> Optional[tuple]:
    """Type of a decoded value (JSON, Avro, drivers); None for null. JSON strings only become dates."""
    if value is None:
        return None
    if isinstance(value, bool):
        return ("bool",)
    if isinstance(value, int):
        return ("int", len(str(abs(value)))) if -2**63 <= value < 2**63 else ("decimal", len(str(abs(value))), 0)
    if isinstance(value, float):
        return ("float",)
    if isinstance(value, Decimal):
        sign, digits, exp = value.as_tuple()
        scale = max(0, -int(exp)) if isinstance(exp, int) else 0
        return ("decimal", max(1, len(digits) - scale), scale)
    if isinstance(value, datetime):
        return ("timestamptz",) if value.tzinfo else ("timestamp",)
    if isinstance(value, date):
        return ("date",)
    if isinstance(value, (bytes, bytearray)):
        return ("bytes",)
    if isinstance(value, (list, tuple)):
        return ("array", merge_all(value_type(v) for v in value))
    if isinstance(value, dict):
        return ("json",)
    return (temporal_type(value) or ("text",)) if isinstance(value, str) else ("text",)


def merge(a: Optional[tuple], b: Optional[tuple]) -> Optional[tuple]:
    """The narrowest type holding values of both types (None = only nulls so far)."""
    if a is None or b is None or a == b:
        return a if b is None else b
    kinds = {a[0], b[0]}
    if a[0] == b[0] == "array":
        return ("array", merge(a[1], b[1]))
    if a[0] == b[0] == "int":
        return ("int", max(a[1], b[1]))
    if a[0] == b[0] == "decimal":
        # Mixed scales ("1.5", "1.25") look like measurements rather than fixed-point amounts.
        return ("decimal", max(a[1], b[1]), a[2]) if a[2] == b[2] else ("float",)
    if kinds == {"int", "decimal"}:
        i, d = (b, a) if a[0] == "decimal" else (a, b)
        return ("decimal", max(i[1], d[1]), d[2])
    if kinds <= {"int", "decimal", "float"}:
        return ("float",)
    if kinds <= {"date", "timestamp", "timestamptz"}:
        return ("timestamptz",) if "timestamptz" in kinds else ("timestamp",)
    if kinds <= {"json", "array"}:
        return ("json",)
    return ("text",)


def merge_all(types: Iterable[Optional[tuple]]) -> Optional[tuple]:
    out: Optional[tuple] = None
    for t in types:
        out = merge(out, t)
    return out


def type_name(t: Optional[tuple]) -> str:
    """The ``inferred``-dialect spelling of a type tuple."""
    if t is None:
        return "text"  # only nulls were seen
    if t[0] == "array":
        return f"array<{type_name(t[1])}>"
    if t[0] == "decimal":
        precision = max(MIN_DECIMAL_PRECISION, t[1] + t[2])
        return f"decimal({precision},{t[2]})" if precision <= 38 else "float"
    return t[0]


def infer_columns(records: list[dict], typer=value_type, empty_is_null: bool = False) -> list[Column]:
    """Columns of ``records`` in first-seen order; a column is nullable when a record lacks it or has null
    (or, for text formats, an empty value)."""
    types: dict[str, Optional[tuple]] = {}
    nullable: dict[str, bool] = {}
    for index, rec in enumerate(records):
        for key in types.keys() - rec.keys():
            nullable[key] = True
        for key, value in rec.items():
            if key not in types:
                types[key], nullable[key] = None, index > 0  # absent from the earlier records
            if value is None or (empty_is_null and value == ""):
                nullable[key] = True
                continue
            types[key] = merge(types[key], typer(value))
    return [Column(k, type_name(t), nullable[k] or t is None) for k, t in types.items()]


def infer_records(records: list[dict]) -> list[Column]:
    return infer_columns(records, value_type)


def records_in(doc: Any) -> list[dict]:
    """The records of a JSON document: a list of objects, an object holding one, or a single object."""
    if isinstance(doc, list):
        return [r if isinstance(r, dict) else {"value": r} for r in doc]
    if isinstance(doc, dict):
        for value in doc.values():
            if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
                return value
        return [doc]
    return [] if doc is None else [{"value": doc}]


# ---------------------------------------------------------------- the folder

class FolderNotAllowed(InvalidConnection):
    """A file connection's folder (symlinks resolved) is outside every folder an admin allowed."""


def file_roots(settings=None) -> list[Path]:
    """The folders file connections may read: ``AIETL_FILE_ROOTS`` (comma-separated), else the state dir
    (the demo's landing and data folders live under it) and the system temp dir (uploads, tests)."""
    import tempfile

    if settings is None:
        from services.core.settings import load_settings

        settings = load_settings()
    configured = getattr(settings, "file_roots", None)
    roots = [r.strip() for r in configured.split(",")] if configured else [str(settings.state_dir),
                                                                            tempfile.gettempdir()]
    return [Path(r).expanduser().resolve() for r in roots if r]


def allowed_folder(folder: Any, name: str = "", settings=None) -> Path:
    """``folder`` with symlinks resolved, when it lies inside an allowed root (never ``/`` itself: a root
    of ``/`` in the settings is ignored, so no setting turns the whole host into a table)."""
    if not isinstance(folder, (str, Path)) or not str(folder).strip():
        raise FolderNotAllowed(f"file connection {name!r} needs a folder")
    resolved = Path(folder).expanduser().resolve()
    roots = [r for r in file_roots(settings) if r != Path(r.anchor)]
    if resolved == Path(resolved.anchor) or not any(resolved.is_relative_to(r) for r in roots):
        raise FolderNotAllowed(f"folder {folder} of file connection {name!r} is not inside a folder an admin "
                               f"allowed (AIETL_FILE_ROOTS: {', '.join(map(str, roots))})")
    return resolved


def _folder(conn: Connection) -> Path:
    folder = allowed_folder(conn.param("folder"), conn.name)
    if not folder.is_dir():
        raise IntrospectionError(f"folder {folder} of connection {conn.name!r} does not exist")
    return folder


def _path(conn: Connection, name: str) -> Path:
    folder = _folder(conn)
    path = (folder / name).resolve()
    # The table name comes from the user: never read outside the connection's folder.
    if not path.is_relative_to(folder) or not path.is_file() or path.suffix.lower() not in EXTENSIONS:
        raise TableNotFound(f"no data file {name!r} in the folder of connection {conn.name!r}")
    return path


def test(conn: Connection) -> str:
    return f"{len(list_tables(conn))} data files in {_folder(conn)}"


def list_tables(conn: Connection) -> list[str]:
    return sorted(p.name for p in _folder(conn).iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)


def table_schema(conn: Connection, name: str) -> list[Column]:
    path = _path(conn, name)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return parquet_schema(path)
    if suffix == ".csv":
        return infer_columns(list(csv_rows(path, SAMPLE_ROWS)), text_type, empty_is_null=True)
    if suffix == ".xml":
        return infer_columns(xml_records(path, SAMPLE_ROWS), xml_text_type, empty_is_null=True)
    return infer_records(json_records(path, SAMPLE_ROWS))


def sample_rows(conn: Connection, name: str, limit: int) -> list[dict]:
    path = _path(conn, name)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return parquet_rows(path, limit)
    if suffix == ".csv":
        return csv_sample(path, limit)
    if suffix == ".xml":
        return xml_records(path, limit)
    return json_records(path, limit)


# ---------------------------------------------------------------- CSV

def csv_rows(path: Path, limit: int) -> Iterator[dict[str, Optional[str]]]:
    """Up to ``limit`` rows as dicts keyed by the header (delimiter sniffed; BOM tolerated); a null marker
    (CSV_NULL_MARKERS: empty, NA, NULL, ...) reads as None."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        head = fh.read(64 * 1024)
        fh.seek(0)
        reader = csv.reader(fh, sniff_dialect(head))
        header = _unique(next(reader, []))
        for i, row in enumerate(reader):
            if i >= limit:
                break
            if row:
                cells = row + [""] * (len(header) - len(row))
                yield {k: (None if v in CSV_NULL_MARKERS else v) for k, v in zip(header, cells)}


def csv_sample(path: Path, limit: int) -> list[dict]:
    """Up to ``limit`` rows typed as the executor reads them (Arrow, null markers as NULL, the columns typed
    text here kept as text), so a dry run over the sample sees the values the run will see."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    with path.open(newline="", encoding="utf-8-sig") as fh:
        delimiter = sniff_dialect(fh.read(64 * 1024)).delimiter
    text = {c.name: pa.string() for c in infer_columns(list(csv_rows(path, SAMPLE_ROWS)), text_type) if c.type == "text"}
    reader = pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=1 << 20),
                           parse_options=pcsv.ParseOptions(delimiter=delimiter),
                           convert_options=pcsv.ConvertOptions(strings_can_be_null=True, column_types=text,
                                                               null_values=sorted(CSV_NULL_MARKERS)))
    rows: list[dict] = []
    for batch in reader:
        rows += batch.to_pylist()
        if len(rows) >= limit:
            break
    return rows[:limit]


def sniff_dialect(head: str):
    try:
        return csv.Sniffer().sniff(head, delimiters=",;\t|")
    except csv.Error:
        return csv.excel  # one column, or nothing to sniff: plain commas


def _unique(header: list[str]) -> list[str]:
    seen: Counter = Counter()
    out = []
    for i, raw in enumerate(header):
        name = raw.strip() or f"column_{i + 1}"
        seen[name] += 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


# ---------------------------------------------------------------- JSON

def json_records(path: Path, limit: int) -> list[dict]:
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return list(_json_lines(path, limit))
    if path.stat().st_size > MAX_JSON_BYTES:
        raise IntrospectionError(f"{path.name} is larger than {MAX_JSON_BYTES >> 20} MB; use JSON lines")
    try:
        return records_in(json.loads(path.read_text(encoding="utf-8-sig")))[:limit]
    except json.JSONDecodeError as exc:
        raise IntrospectionError(f"{path.name} is not valid JSON: {exc}") from None


def _json_lines(path: Path, limit: int) -> Iterator[dict]:
    with path.open(encoding="utf-8-sig") as fh:
        count = 0
        for lineno, line in enumerate(fh, 1):
            if count >= limit:
                return
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise IntrospectionError(f"{path.name} line {lineno} is not valid JSON: {exc.msg}") from None
            count += 1
            yield value if isinstance(value, dict) else {"value": value}


# ---------------------------------------------------------------- XML

def xml_records(path: Path, limit: int) -> list[dict]:
    """Records are the root's repeated child elements (the most common tag among the first ones)."""
    found = list(_xml_children(path, limit))
    if not found:
        return []
    tag = Counter(t for t, _ in found).most_common(1)[0][0]
    return [rec for t, rec in found if t == tag][:limit]


def _xml_children(path: Path, limit: int) -> Iterator[tuple[str, dict]]:
    # iterparse keeps memory bounded on big files; Python's expat (>= 2.4.1) refuses entity-expansion bombs.
    import xml.etree.ElementTree as ET

    depth, emitted = 0, 0
    try:
        for event, elem in ET.iterparse(path, events=("start", "end")):
            depth += 1 if event == "start" else -1
            if event == "end" and depth == 1:
                yield local_path(elem.tag), xml_record(elem)
                elem.clear()
                emitted += 1
                if emitted >= limit * 2:  # enough to find the record tag and fill the sample
                    return
    except ET.ParseError as exc:
        raise IntrospectionError(f"{path.name} is not well-formed XML: {exc}") from None


def local_path(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]  # drop the {namespace}


def xml_record(elem) -> dict:
    rec: dict[str, Any] = dict(elem.attrib)
    for child in elem:
        key, value = local_path(child.tag), (xml_record(child) if len(child) else _xml_text(child))
        if key in rec:  # a repeated child element is a list
            rec[key] = (rec[key] if isinstance(rec[key], list) else [rec[key]]) + [value]
        else:
            rec[key] = value
    if not len(elem) and (elem.text or "").strip():
        rec["value"] = elem.text.strip()
    return rec


def _xml_text(elem) -> Any:
    text = (elem.text or "").strip()
    return {**elem.attrib, "value": text} if elem.attrib else text


def xml_text_type(value: Any) -> tuple:
    """XML values are text, lists of them (repeated elements) or nested records."""
    if isinstance(value, list):
        return ("array", merge_all(xml_text_type(v) for v in value if v != ""))
    if isinstance(value, dict):
        return ("json",)
    return text_type(value)


# ---------------------------------------------------------------- Parquet

def parquet_schema(path: Path) -> list[Column]:
    import pyarrow.parquet as pq  # imported here: only Parquet needs pyarrow

    from services.connectors.typemap import from_arrow

    return [Column(f.name, from_arrow(f.type), f.nullable) for f in pq.read_schema(path)]


def parquet_rows(path: Path, limit: int) -> list[dict]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=limit):
        return batch.to_pylist()[:limit]
    return []


# ---------------------------------------------------------------- SQLite (params.path, opened read-only)

def sqlite_path(conn: Connection):
    import sqlite3

    path = Path(conn.param("path")).expanduser().resolve()
    allowed_folder(path.parent, conn.name)  # a SQLite file is confined to the file roots like a folder
    if not path.is_file():
        raise IntrospectionError(f"SQLite database {path} of connection {conn.name!r} does not exist")
    return sqlite3.connect(path.as_uri() + "?mode=ro", uri=True, timeout=5)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sqlite_test(conn: Connection) -> str:
    with _closing(sqlite_path(conn)) as db:
        return "SQLite " + db.execute("SELECT sqlite_version()").fetchone()[0]


def sqlite_list_tables(conn: Connection) -> list[str]:
    with _closing(sqlite_path(conn)) as db:
        rows = db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                          "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name").fetchall()
    return [r[0] for r in rows]


def sqlite_table_schema(conn: Connection, name: str) -> list[Column]:
    with _closing(sqlite_path(conn)) as db:
        rows = db.execute(f"PRAGMA table_info({_quote(name)})").fetchall()
    if not rows:
        raise TableNotFound(f"no table {name!r} in connection {conn.name!r}")
    # (cid, name, type, notnull, default, pk); an INTEGER PRIMARY KEY is the rowid and never null.
    return [Column(r[1], r[2] or "text", not r[3] and not (r[5] and "int" in (r[2] or "").lower()))
            for r in rows]


def sqlite_sample_rows(conn: Connection, name: str, limit: int) -> list[dict]:
    sqlite_table_schema(conn, name)  # a clear "not found" before the query
    with _closing(sqlite_path(conn)) as db:
        cur = db.execute(f"SELECT * FROM {_quote(name)} LIMIT ?", (limit,))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def _closing(db):
    from contextlib import closing

    return closing(db)  # sqlite3's own context manager commits but does not close
