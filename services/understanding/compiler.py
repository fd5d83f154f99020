"""``compile_request``: a sentence in, a plan, a clarification question or a refusal out.

The compiler never guesses. Every phrase it acts on is matched by a documented rule (see
``docs/builtin-provider.md``); a source or target it cannot pin down, or any word no rule explains, turns
the answer into a question. Defaults it does apply (midnight for a bare "daily", ``created_at`` for
"per day", the source's name for an unnamed target table) are listed in ``notes`` and lower
``confidence``.
"""
from __future__ import annotations

import re
from typing import Any, Optional

from pydantic import ValidationError

from services.domain.spec import DATABASE_KINDS, PipelineSpec

from .answers import Dialogue, apply_answers
from .draft import Draft
from .endpoints import default_target_table, find_mentions, resolve
from .grounding import (Grounding, Rewrite, check_columns, choices_for, explain_leftovers, ground_source, link_values,
                        rewrite_columns)
from .grammar import RULES
from .linking import CatalogIndex
from .lexicon import (ENGINE_NAMES, ENTITY_NOUNS, STATUS_WORDS, STATUS_WORDS_RU, STOPWORDS_EN, STOPWORDS_RU,
                      VERBS)
from .rules import destructive_word
from .scanner import MASK, Scanner, Span, is_russian, normalize
from .shaping import shaping_steps

# The grammar describes a sentence or two; a cap also bounds the regex work per request.
MAX_REQUEST_CHARS = 2000
# The grammar's rules, in the order they run (grammar.py says why the order matters).
_RULES = RULES


def compile_request(text: str, *, default_connections: Optional[dict[str, str]] = None,
                    catalog: Optional[dict[str, Any]] = None,
                    answers: Optional[list[dict[str, Any]]] = None) -> dict[str, Any]:
    """Compile an English or Russian ETL request (see docs/builtin-provider.md for the grammar).

    ``catalog`` (services.connectors.catalog's shape) grounds names in the tenant's real tables and
    columns; ``answers`` ([{"slot", "text"}]) fill the slots earlier clarifications named.
    """
    text = normalize(text or "")
    russian = is_russian(text)
    if len(text) > MAX_REQUEST_CHARS:
        return _too_long(russian)
    index = CatalogIndex.of(catalog)
    text, dialogue = apply_answers(text, answers, index)
    word = destructive_word(text)
    if word:
        return _refuse(word, russian)
    sc, d, grounding = _read(text, dict(default_connections or {}), index, russian)
    dialogue.apply(d)
    _source_from_participle(sc, d, index)
    _key_from_source(d, catalog, index, grounding)
    _check_leftovers(sc, d, grounding, dialogue)
    _check_complete(d)
    if not d.problems:
        _settle_run_mode(d)
    if d.problems:
        return _clarify(d, index)
    return _plan(sc, d, grounding, dialogue)


def _read(text: str, connections: dict[str, str], index: Optional[CatalogIndex],
          russian: bool) -> tuple[Scanner, Draft, Grounding]:
    """Run the grammar; with a catalog, read once more with the source's prose column names replaced."""
    sc, d, links = _scan(text, connections, index, russian)
    grounding = Grounding(index)
    table = index.table_for(d.source) if index else None
    if table is not None:
        rewrite, notes = _rewrite_keeping(text, _new_names(sc, d), table)
        if notes:
            sc, d, links = _scan(rewrite.text, connections, index, russian)
            grounding.rewrite = rewrite
            links += notes
    for pos, note in links:
        grounding.note(pos, note)
    return sc, d, grounding


def _new_names(sc: Scanner, d: Draft) -> list[tuple[int, int]]:
    """Where the first reading found the names a rename or an alias gives ("doctor_id as id", "rename phone to
    mobile", "columns named orders and revenue") and a ranked count ("most ordered products"): not prose names
    of the source's columns."""
    names = set(d.rename.values()) | {m["alias"] for m in (d.aggregate or {}).get("measures", []) if m.get("alias")}
    spans = []
    for h in sc.hits:
        # "the 10 most ordered products" counts rows per product: "ordered products" is not a prose column
        ranked = re.search(r"\b(?:most|least)\s+[a-z]+ed\s+[a-z]+s\b", h.text, re.I) if h.meaning.startswith("top ") else None
        if ranked:
            spans.append((h.start + ranked.start(), h.start + ranked.end()))
        if not h.meaning.startswith(("rename ", "select ", "name the measure")):
            continue
        for name in names:
            spans += [(h.start + m.start(), h.start + m.end())
                      for m in re.finditer(rf"(?<![\w.]){re.escape(name)}(?![\w.])", h.text, re.I)]
    return sorted(set(spans))


def _rewrite_keeping(text: str, keep: list[tuple[int, int]], table) -> tuple[Rewrite, list]:
    """``rewrite_columns`` with the words at ``keep`` left as they are: "doctor_id as id" must not become
    "doctor_id as doctor_id" because "id" is also a prose name of doctor_id."""
    masked = text
    for start, end in keep:  # MASK is no word character: no phrase can contain or cross it
        masked = masked[:start] + MASK * (end - start) + masked[end:]
    rewrite, notes = rewrite_columns(masked, [table])
    out = rewrite.text
    for start, end in keep:
        shift = sum((ne - ns) - (oe - os_) for ns, ne, os_, oe in rewrite.spans if oe <= start)
        out = out[:start + shift] + text[start:end] + out[end + shift:]
    return Rewrite(text, out, rewrite.spans), notes


def _scan(text: str, connections: dict[str, str], index: Optional[CatalogIndex], russian: bool):
    sc, d = Scanner(text), Draft(russian=russian)
    for rule in _RULES:
        rule(sc, d)
    mentions, links = find_mentions(sc), []
    resolve(d, mentions, connections, index, links)
    _take_verbs(sc)
    if index is not None:
        ground_source(sc, d, index, sorted(mentions + list(d.mentions), key=lambda m: m.pos))
        link_values(sc, d, index)
        default_target_table(d)
        defaults = {**index.default_connections(), **connections}
        for side in (d.source, d.target):
            if side.get("kind") in defaults and not side.get("connection"):
                side["connection"] = defaults[side["kind"]]
    return sc, d, links


def _too_long(russian: bool) -> dict[str, Any]:
    question = (f"Запрос длиннее {MAX_REQUEST_CHARS} символов; офлайн-планировщик понимает одно-два предложения. "
                f"Сократите его или подключите LLM-провайдера.") if russian else (
        f"The request is longer than {MAX_REQUEST_CHARS} characters; the offline planner reads a sentence or "
        f"two. Please shorten it or configure an LLM provider.")
    return {"outcome": "clarify", "question": question, "missing": ["request"]}


def _refuse(word: str, russian: bool) -> dict[str, Any]:
    reason = (f"Отказ: «{word}» - это изменение или удаление данных. Конвейеры aietl только читают источник и "
              f"пишут в объявленный приёмник; такие операции выполняйте вручную с проверкой.") if russian else (
        f"Refused: '{word}' asks to change or destroy data. aietl pipelines only read their source and write "
        f"their declared target; do such operations by hand, with review.")
    return {"outcome": "refuse", "reason": reason}


def _clarify(d: Draft, index: Optional[CatalogIndex] = None) -> dict[str, Any]:
    questions = [p.question_ru if d.russian else p.question_en for p in d.problems]
    questions += [choices_for(p.missing, d, index, " ".join(questions)) for p in d.problems]  # the catalog's tables
    return {"outcome": "clarify", "question": " ".join(q for q in questions if q),
            "missing": [p.missing for p in d.problems]}


def _take_verbs(sc: Scanner) -> None:
    for m in list(sc.finditer(r"\b[^\W\d_]+\b")):
        if m.group(0).lower() in VERBS:
            sc.take(m)


def _name_words(d: Draft) -> set[str]:
    """Words of the source/target names: "Load orders from shop.orders" repeats a name, it adds nothing.

    A status word is never one of them ("orders paid since May ... into analytics.paid"): it says which rows
    are moved, and passing it over as a name would load the unpaid ones too."""
    words: set[str] = set()
    for side in (d.source, d.target):
        for value in (side.get("table"), side.get("topic"), side.get("path"), side.get("folder")):
            for part in re.split(r"[^\w]+|_", str(value or "").lower()):
                if part:
                    words |= {part, part + "s", part.rstrip("s")}
    return {w for w in words if w not in STATUS_WORDS and not w.startswith(tuple(STATUS_WORDS_RU))}


def _check_leftovers(sc: Scanner, d: Draft, grounding: Optional[Grounding] = None,
                     dialogue: Optional[Dialogue] = None) -> None:
    allowed = STOPWORDS_EN | STOPWORDS_RU | ENTITY_NOUNS | _name_words(d) | (dialogue.answered if dialogue else set())
    left = [(pos, w) for pos, w in sc.leftover_words() if w.lower() not in allowed]
    candidates: dict[str, tuple] = {}
    if grounding is not None and grounding.index is not None:
        left, candidates = explain_leftovers(left, sc, d, grounding.index, grounding)
    unknown = [w for _, w in left]
    if unknown:
        shown = ", ".join(f'"{w}"' for w in dict.fromkeys(unknown))
        near = "; ".join(f'"{w}" may be {" or ".join(c)}' for w, c in candidates.items())
        if near:
            shown += f" ({near})"
        words = list(dict.fromkeys(x.lower() for x in unknown))
        d.ask(f"unrecognized:{words[0]}",
              f"I did not understand {shown}. Please rephrase with the phrases the offline planner knows "
              f"(e.g. 'only paid orders', 'summing amount per day', 'daily at 2 AM'; see docs/builtin-provider.md), "
              f"answer what the word means, or configure an LLM provider.",
              f"Не понял: {shown}. Переформулируйте известными фразами (например, 'только оплаченные заказы', "
              f"'суммируя amount по дням', 'ежедневно в 2 часа ночи'; см. docs/builtin-provider.md), ответьте, что "
              f"означает слово, или подключите LLM-провайдера.")
        for w in words[1:]:  # one slot per word (each can be answered), one question for all
            d.ask(f"unrecognized:{w}", "", "")


def _source_from_participle(sc: Scanner, d: Draft, index: Optional[CatalogIndex]) -> None:
    """"the 3 most prescribed drugs" with no table named: the table is the one the participle names as an
    event ("prescribed" -> prescriptions) that also has the counted column (drug). Both must agree on exactly
    one table of the catalog; anything else stays the question about the table."""
    if index is None or d.source.get("table") or d.source.get("path") or not d.aggregate:
        return
    dims = d.aggregate.get("dimensions") or []
    if len(dims) != 1 or any(not p.missing.startswith("source") for p in d.problems):
        return
    for m in re.finditer(r"\b(?:most|least)\s+(?P<verb>[a-z]+ed)\b", sc.text, re.I):
        start, end = m.span("verb")
        if sc.masked[start:end] != sc.text[start:end]:
            continue  # read by another rule
        stem = re.sub(r"(?:ied|ed)$", "", m.group("verb").lower())
        prefix = stem[:6] if len(stem) >= 4 else None
        found = [t for t in index.tables if prefix and t.kind in DATABASE_KINDS
                 and t.name.lower().rsplit(".", 1)[-1].startswith(prefix) and dims[0] in t.column_names
                 and t.kind == d.source.get("kind", t.kind)]
        if len(found) != 1:
            return
        t = found[0]
        d.source.update({"kind": t.kind, "table": t.name, "connection": t.connection})
        d.problems[:] = [p for p in d.problems if not p.missing.startswith("source")]
        sc.take(Span(start, end), f"source table {t.name} (connection {t.connection}): the table "
                                  f"'{m.group('verb')}' names that has the counted column {dims[0]}")
        return


def _key_from_source(d: Draft, catalog: Optional[dict[str, Any]], index: Optional[CatalogIndex],
                     grounding: Grounding) -> None:
    """A sync ("mirror", "keep X in sync with Y") that names no key upserts on the source's primary key:
    the catalog knows it (PostgreSQL's primary key, a Replacing table's sorting key). A source without
    one (a file, a topic, a table with no key) still gets the question."""
    if not d.sync or d.load_mode or index is None or d.target.get("kind") not in DATABASE_KINDS:
        return
    table = index.table_for(d.source)
    if table is None:
        return
    keys = next((list(t.get("primary_key") or []) for c in catalog["connections"] if c["name"] == table.connection
                 for t in c.get("tables") or [] if t["name"] == table.name), [])
    if keys:
        d.load_mode, d.keys = "merge", keys
        grounding.note(None, f"sync: upsert on {', '.join(keys)} (key from the source's primary key)")


def _check_complete(d: Draft) -> None:
    _check_endpoint(d, "source", d.source)
    _check_endpoint(d, "target", d.target)
    if len({c for c, _ in d.crons}) > 1:
        shown = ", ".join(f'"{p}"' for _, p in d.crons)
        d.ask("schedule", f"Several schedules were given ({shown}); which one?",
              f"Указано несколько расписаний ({shown}); какое нужно?")
    if d.sync and not d.load_mode:
        d.ask("target.keys", "To sync, which column identifies a row (e.g. 'upserting on order_id'), or should "
                             "the target be replaced on each run?",
              "Для синхронизации: какая колонка - ключ строки (например, 'upsert по order_id'), или перезаписывать "
              "приёмник целиком?")
    if d.aggregate and d.incremental:
        d.ask("aggregate", "An incremental load would only aggregate the new rows; should it aggregate the whole "
                           "table (drop 'incrementally') or load rows without aggregating?",
              "Инкрементальная загрузка просуммирует только новые строки; агрегировать всю таблицу или грузить "
              "строки без агрегации?")


def _check_endpoint(d: Draft, role: str, ep: dict) -> None:
    is_source = role == "source"
    if not ep.get("kind"):
        if not any(p.missing.startswith(role) for p in d.problems):
            d.ask(role, *(_WHERE_FROM if is_source else _WHERE_TO))
        return
    kind, name = ep["kind"], ENGINE_NAMES.get(ep["kind"], ep["kind"])
    ru_role = "источник" if is_source else "приёмник"
    if kind in DATABASE_KINDS and not ep.get("table"):
        d.ask(f"{role}.table", f"Which {name} table (schema.table) is the {role}?",
              f"Какая таблица {name} (схема.таблица) - {ru_role}?")
    elif kind == "kafka" and not ep.get("topic"):
        d.ask(f"{role}.topic", f"Which Kafka topic is the {role}?", f"Какой топик Kafka - {ru_role}?")
    elif kind == "file" and not (ep.get("path") or ep.get("path_param")):
        example = f"out.{ep.get('format') or 'parquet'}"
        d.ask(f"{role}.path", f"What is the {role} file called (e.g. {example})?",
              f"Как называется файл ({ru_role}), например {example}?")


_WHERE_FROM = ("Where should the data come from? Name the source, e.g. 'from PostgreSQL shop.orders', "
               "'customers.csv' or 'the Kafka topic shop.clicks'.",
               "Откуда брать данные? Укажите источник, например 'из PostgreSQL shop.orders' или 'customers.csv'.")
_WHERE_TO = ("Where should the data go? Name the target, e.g. 'into ClickHouse analytics.orders' or "
             "'to a Parquet file out.parquet'.",
             "Куда загружать данные? Укажите приёмник, например 'в ClickHouse analytics.orders'.")


def _settle_run_mode(d: Draft) -> None:
    """Trigger, streaming and load-mode defaults that follow from what was understood."""
    if d.source.get("kind") == "kafka" and not d.streaming:
        d.streaming = {"enabled": True}
        d.default("a Kafka source is read continuously in micro-batches (1000 rows or 5 s)")
    if d.streaming and d.source.get("kind") != "kafka":
        d.ask("source", "Streaming reads a Kafka topic; which topic should it read?",
              "Потоковая загрузка читает топик Kafka; какой топик?")
        return
    if d.crons:
        _use_trigger(d, {"kind": "cron"})
    if d.streaming:
        _use_trigger(d, {"kind": "kafka", "topic": d.source["topic"]})
    _default_load_mode(d)


def _use_trigger(d: Draft, trigger: dict) -> None:
    if d.trigger.get("kind") not in ("manual", trigger["kind"]):
        d.ask("trigger", "Should it run on a schedule, on the webhook or on each message? Pick one trigger.",
              "Запускать по расписанию, по вебхуку или по сообщениям? Выберите один триггер.")
        return
    d.trigger = trigger


def _default_load_mode(d: Draft) -> None:
    if d.load_mode:
        return
    if d.target.get("kind") == "file":
        d.load_mode = "replace"
        d.notes.append("a file target is written anew on each run (replace)")
        return
    if d.target.get("kind") not in DATABASE_KINDS:
        return
    if d.aggregate:
        d.load_mode = "replace"
        d.default("aggregates are recomputed from the whole source, so each run replaces the target")
        return
    dedupe = [c["column"] for c in d.cleaning if c["op"] == "dedupe" and c["column"] != "*"]
    if len(dedupe) == 1:
        d.load_mode, d.keys = "merge", dedupe
        d.default(f"duplicates by {dedupe[0]} are also removed across batches and runs: merge on {dedupe[0]}")


def _plan(sc: Scanner, d: Draft, grounding: Optional[Grounding] = None,
          dialogue: Optional[Dialogue] = None) -> dict[str, Any]:
    spec = _spec_dict(d)
    if grounding is not None and grounding.index is not None:
        check_columns(spec, d, grounding.index, grounding, dialogue.columns if dialogue else {},
                      grounding.rewrite.original if grounding.rewrite else sc.text)
        if d.problems:
            return _clarify(d, grounding.index)
        spec["steps"] = _steps(spec)  # with the real column names
    try:
        model = PipelineSpec.model_validate(spec)
    except ValidationError as exc:
        problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        d.ask("spec", f"The request does not make a valid pipeline: {problems}. Could you adjust it?",
              f"Из запроса не получается корректный конвейер: {problems}. Уточните, пожалуйста.")
        return _clarify(d)
    dumped = model.model_dump(mode="json")
    confidence = round(max(0.5, 1.0 - 0.1 * d.defaults_used), 2)
    understood = grounding.understood(sc) if grounding is not None else sc.understood()
    understood += dialogue.notes if dialogue else []
    return {"outcome": "plan", "spec": dumped, "understood": understood, "confidence": confidence}


def _spec_dict(d: Draft) -> dict[str, Any]:
    target = {**d.target, "load_mode": d.load_mode or "append", "keys": d.keys}
    for key in d.keys:
        d.add_check({"kind": "not_null", "column": key})
    schedule = None
    if d.crons or d.timezone:
        schedule = {"cron": d.crons[0][0] if d.crons else None, "timezone": d.timezone or "UTC"}
    spec = {"spec_version": "1", "source": d.source, "target": target, "filters": d.filters,
            "aggregate": d.aggregate, "cleaning": [{k: v for k, v in c.items() if v is not None} for c in d.cleaning],
            "incremental": d.incremental, "schedule": schedule, "trigger": d.trigger,
            "streaming": d.streaming or {"enabled": False}, "quality_checks": d.checks, "pii": d.pii,
            "notes": d.notes, **d.shaping()}
    spec["name"] = _name(d)
    spec["steps"] = _steps(spec)
    return spec


def _where(ep: dict) -> str:
    if ep.get("path_param"):
        return f"the {ep.get('format', '')} file named by run parameter '{ep['path_param']}'" + (
            f" in folder {ep['folder']}" if ep.get("folder") else "")
    name = ENGINE_NAMES.get(ep["kind"], ep["kind"])
    what = ep.get("table") or ep.get("topic") or ep.get("path") or ep.get("url")
    conn = f" (connection {ep['connection']})" if ep.get("connection") else ""
    return f"{name} {what}{conn}"


def _name(d: Draft) -> str:
    def short(ep: dict) -> str:
        raw = ep.get("table") or ep.get("topic") or ep.get("path") or ep.get("path_param") or ep.get("kind", "")
        return re.sub(r"\W+", "_", str(raw).rsplit("/", 1)[-1]).strip("_")
    return f"{short(d.source)}_to_{short(d.target)}"[:64]


def _steps(spec: dict) -> list[str]:
    steps = [_when(spec)]
    extract = f"Extract from {_where(spec['source'])}"
    if spec["incremental"]:
        extract += f", only rows with {spec['incremental']['cursor_column']} above the last high-water mark"
    steps.append(extract)
    if spec["filters"]:
        steps.append("Keep rows where " + " AND ".join(
            f"{f['column']} {f['op']}" + ("" if f["value"] is None else f" {f['value']!r}") for f in spec["filters"]))
    steps += [_cleaning_step(c) for c in spec["cleaning"]]
    if spec["aggregate"]:
        a = spec["aggregate"]
        groups = ([f"{a['period']} of {a['time_column']}"] if a["period"] else []) + a["dimensions"]
        measures = ", ".join(f"{m['fn']}({m['column'] or '*'}) AS {m['alias']}" for m in a["measures"])
        steps.append(f"Aggregate per {' and '.join(groups)}: {measures}")
    steps += shaping_steps(spec)
    steps += [f"{p['action'].capitalize()} columns matching {p['column']}" for p in spec["pii"]]
    t = spec["target"]
    keys = f" on {', '.join(t['keys'])}" if t["keys"] else ""
    steps.append(f"Load into {_where(t)} ({t['load_mode']}{keys})")
    if spec["quality_checks"]:
        steps.append("Check " + ", ".join(
            c["kind"] + (f"({c['column']})" if c.get("column") else "") + (f" >= {c['value']}" if c.get("value") else "")
            for c in spec["quality_checks"]))
    return steps


def _cleaning_step(c: dict) -> str:
    if c["op"] == "fill_empty":
        return f"Fill empty {c['column']} with {c['value']!r}"
    if c["op"] == "dedupe":
        return "Remove duplicate rows" if c["column"] == "*" else f"Keep one row per {c['column']}"
    return f"{c['op'].capitalize()} {c['column']}"


def _when(spec: dict) -> str:
    trig, stream = spec["trigger"], spec["streaming"]
    if stream.get("enabled"):
        rows, secs = stream.get("max_batch_rows", 1000), stream.get("max_batch_seconds", 5.0)
        return f"Run continuously on topic {trig.get('topic')}: micro-batches of {rows} rows or {secs:g} s"
    if trig["kind"] == "cron":
        return f"Run on cron {spec['schedule']['cron']} ({spec['schedule']['timezone']})"
    if trig["kind"] == "webhook":
        return "Run when the signed webhook is called"
    if trig["kind"] == "kafka":
        return f"Run on each message of topic {trig['topic']}"
    return "Run on demand"
