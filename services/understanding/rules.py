"""How and when a pipeline runs: refusals, triggers, streaming bounds, incremental cursors, load modes."""
from __future__ import annotations

import re
from typing import Optional

from .draft import Draft
from .lexicon import (DEDUPE_EXCEPTION, DESTRUCTIVE_EN, DESTRUCTIVE_RU, IDENT, MERGE_EXCEPTION, NUMBER,
                      ROW_FILTER_EXCEPTION, VALUE, VERBS)
from .numbers import NUMBER_WORDS, number_value
from .scanner import Scanner

_TOPIC = r"[A-Za-z0-9](?:[\w.\-]*\w)?"
_FILE_FORMATS = {"csv": "csv", "jsonl": "jsonl", "json lines": "jsonl", "ndjson": "jsonl", "xml": "xml",
                 "parquet": "parquet"}


def destructive_word(text: str) -> Optional[str]:
    """The first word asking to change or destroy data, ignoring quoted values and cleaning phrases."""
    unquoted = re.sub(r"'[^']*'|\"[^\"]*\"", " ", text)
    unquoted = re.sub(r"(?<![\w./])\w+(?:[./]\w+)+", " ", unquoted)  # names: a table analytics.drop is not a verb
    loads = any(w.lower() in VERBS for w in re.findall(r"[^\W\d_]+", unquoted))
    for m in re.finditer(rf"\b(?:{DESTRUCTIVE_EN}|{DESTRUCTIVE_RU})\b", unquoted, re.I):
        rest = unquoted[m.end():]
        if re.match(rf"\s+(?:{DEDUPE_EXCEPTION})", rest, re.I) and (loads or re.search(r"\b(?:into|в|во)\b", unquoted, re.I)):
            continue  # "removing duplicates", "удаляя дубликаты": cleaning the batch, not the source
        if loads and re.match(r"updat", m.group(0), re.I) and re.match(rf"\s+{MERGE_EXCEPTION}", rest, re.I):
            continue  # "updating existing rows by order_id": how the load writes (merge), not a change
        after_load = re.search(r"\b(?:then|afterwards|after\s+that|затем|потом)\W*$", unquoted[:m.start()], re.I)
        if loads and not after_load and re.match(r"(?:drop|remov|skip|exclud|убир|убра|отбрас|выкид)", m.group(0), re.I) \
                and re.match(rf"\s+(?:{ROW_FILTER_EXCEPTION})", rest, re.I):
            continue  # "loading ..., dropping rows where email is missing": a filter on what is loaded
        if re.match(rf"\s+(?:the\s+)?{IDENT}\s+column\b", rest, re.I):
            continue  # "dropping the phone column": leaving a column out of the load
        return m.group(0)
    return None


def _seconds(value: str, unit: Optional[str]) -> float:
    unit = (unit or "s").lower()
    n = float(value)
    if unit.startswith(("ms", "milli")):
        return n / 1000
    if unit.startswith(("min", "мин")):
        return n * 60
    return n


def _count(text: str) -> int:
    return int(re.sub(r"[ ,_]", "", text))


def scan_streaming(sc: Scanner, d: Draft) -> None:
    unit = r"(?P<unit>seconds?|secs?|s|milliseconds?|ms|minutes?|mins?|секунд\w*|сек|с|минут\w*|мин)"
    things = r"(?:events?|rows?|messages?|records?|событи\w*|строк\w*|сообщени\w*|запис\w*)"
    patterns = (
        rf"\bin\s+(?:micro-?)?batches\s+of\s+(?P<rows>{NUMBER})\s*{things}?(?:\s*(?:,|or|and|/)\s*"
        rf"(?:every|each|after)\s+(?P<secs>\d+(?:\.\d+)?)\s*{unit}\b)?",
        rf"\b(?:every|each)\s+(?P<secs>\d+(?:\.\d+)?)\s*{unit}\s+or\s+(?:every\s+|in\s+batches\s+of\s+)?"
        rf"(?P<rows>{NUMBER})\s*{things}",
        rf"\bпачками\s+по\s+(?P<rows>{NUMBER})\s*{things}?(?:\s*(?:,|или|и)\s*(?:каждые|раз\s+в)\s+"
        rf"(?P<secs>\d+)\s*{unit})?",
    )
    for pattern in patterns + _one_bound_patterns(sc, unit, things):
        for m in list(sc.finditer(pattern)):
            _set_streaming(sc, d, m)
    for m in list(sc.finditer(r"\b(?:stream|streams|streaming|стримить|стримь|стримь|стриминг\w*|"
                              r"потоков\w*|в\s+потоковом\s+режиме)\b")):
        d.streaming = d.streaming or {"enabled": True}
        sc.take(m, "streaming (continuous micro-batches)")


def _one_bound_patterns(sc: Scanner, unit: str, things: str) -> tuple[str, ...]:
    """A bound given only as a time ("flush every 10 s", "in 30-second batches") or only as a size
    ("500 rows per batch"). A bare "every 10 seconds" is a bound only for a stream (the request names a
    topic, Kafka or streaming); otherwise seconds are not a schedule and stay unexplained."""
    secs = rf"(?P<secs>\d+(?:\.\d+)?|{NUMBER_WORDS})\s*-?\s*{unit}"
    patterns = [
        rf"\b(?:flush(?:ing|ed)?|commit(?:ting)?|writ(?:e|ing)|emit(?:ting)?|send(?:ing)?|batch(?:ing)?|"
        rf"micro-?batch(?:ing)?|(?:in\s+)?(?:micro-?)?batches|сбрасыва\w*|пачками|батчами)\s+(?:them\s+|it\s+)?"
        rf"(?:every|each|once\s+every|каждые|раз\s+в)\s+{secs}\b",
        rf"\b(?:in|with)\s+(?P<secs2>\d+(?:\.\d+)?)\s*-?\s*(?P<unit2>seconds?|secs?|s|minutes?|mins?)\s+"
        rf"(?:micro-?)?(?:batches|windows?)\b",
        rf"\b(?:micro-?)?batches\s+of\s+{secs}\b",
        rf"\b(?:in\s+)?(?P<rows>{NUMBER})\s*-?\s*(?:{things})\s+(?:per|a|each)\s+(?:micro-?)?batch\b",
        rf"\b(?:with\s+)?(?:a\s+)?batch\s+size\s+(?:of\s+)?(?P<rows>{NUMBER})(?:\s*{things})?",
        rf"\bin\s+(?P<rows>{NUMBER})\s*-\s*(?:row|event|message|record)\s+batches\b",
    ]
    if not sc.has(r"\d|batch|flush|commit|emit|window|пачк|батч|сбрасыва|every|each|каждые|раз\s+в"):
        return ()
    if re.search(r"\b(?:kafka|topic|stream\w*|кафк\w*|топик\w*|потоков\w*|стрим\w*)", sc.text, re.I):
        patterns.append(rf"\b(?:every|each|каждые|раз\s+в)\s+{secs}\b")
    return tuple(patterns)


def _set_streaming(sc: Scanner, d: Draft, m: re.Match) -> None:
    g = m.groupdict()
    bounds: dict = {"enabled": True}
    if g.get("rows"):
        bounds["max_batch_rows"] = _count(g["rows"])
    secs, unit = g.get("secs") or g.get("secs2"), g.get("unit") or g.get("unit2")
    if secs:
        value = number_value(secs)
        if value is None or value <= 0:
            return
        bounds["max_batch_seconds"] = _seconds(str(value), unit)
    d.streaming = {**(d.streaming or {}), **bounds}
    rows, secs_value = bounds.get("max_batch_rows"), bounds.get("max_batch_seconds")
    shown = " or ".join(([f"{rows} rows"] if rows else []) + ([f"{secs_value:g} s"] if secs_value else []))
    sc.take(m, f"micro-batches of {shown}")


def scan_triggers(sc: Scanner, d: Draft) -> None:
    webhook = (
        r"\b(?:when|whenever|each\s+time|every\s+time|once)\s+(?:the\s+|a\s+|our\s+|my\s+)?webhook\s+(?:is\s+)?"
        r"(?:called|hit|invoked|fired|fires|triggered|gets\s+called|receives\s+a\s+(?:request|call))\b",
        r"\b(?:on|via|by|upon|through)\s+(?:a\s+|the\s+)?webhook(?:\s+call)?\b",
        r"\bwebhook[- ]triggered\b",
        r"\b(?:при\s+вызове|по\s+вызову)\s+вебхука\b|\bпо\s+вебхуку\b|\bкогда\s+(?:вызывается|вызван)\s+вебхук\b",
    )
    for pattern in webhook:
        for m in list(sc.finditer(pattern)):
            _set_trigger(sc, d, m, {"kind": "webhook"}, "webhook trigger (HMAC-signed)")
    _scan_topic_trigger(sc, d)
    _scan_webhook_file(sc, d)
    _scan_folder(sc, d)
    for m in list(sc.finditer(r"\b(?:on\s+demand|manually|by\s+hand|вручную|по\s+запросу)\b")):
        _set_trigger(sc, d, m, {"kind": "manual"}, "manual trigger")


def _set_trigger(sc: Scanner, d: Draft, m: re.Match, trigger: dict, meaning: str) -> None:
    if d.trigger.get("kind") not in ("manual", trigger["kind"]):
        d.ask("trigger", "Two different triggers were given; should it run on the webhook, on messages or "
                         "on a schedule?", "Указаны разные триггеры: запускать по вебхуку, по сообщениям или "
                                           "по расписанию?")
    d.trigger = trigger
    sc.take(m, meaning)


def _scan_topic_trigger(sc: Scanner, d: Draft) -> None:
    topic = rf"(?:the\s+)?(?:kafka\s+)?topic\s+[`'\"]?(?P<topic>{_TOPIC})[`'\"]?"
    filt = rf"(?:\s+(?:with|where)\s+(?P<filter>{IDENT}\s*(?:=|==|!=)\s*(?:{VALUE})))?"
    patterns = (
        rf"\b(?:on|for|upon|after)\s+(?:each|every|any)\s+(?:new\s+)?message\s+(?:of|on|in|from|to|"
        rf"arriving\s+(?:on|in))\s+{topic}{filt}",
        rf"\bwhenever\s+a\s+(?:new\s+)?message\s+(?:arrives|lands|is\s+published)\s+(?:on|in|to)\s+{topic}{filt}",
        rf"\b(?:на|по|при)\s+каждо\w+\s+(?:новом\s+|новому\s+|новое\s+)?сообщени\w+\s+(?:в\s+|из\s+)?"
        rf"(?:топик\w*)\s+[`'\"]?(?P<topic>{_TOPIC})[`'\"]?{filt}",
    )
    for pattern in patterns:
        for m in list(sc.finditer(pattern)):
            trig = {"kind": "kafka", "topic": m.group("topic")}
            if m.group("filter"):
                trig["filter"] = m.group("filter")
            _set_trigger(sc, d, m, trig, f"run on each message of topic {m.group('topic')}")


def _scan_webhook_file(sc: Scanner, d: Draft) -> None:
    fmt = r"(?P<fmt>csv|jsonl|json\s+lines|ndjson|xml|parquet)"
    patterns = (
        rf"\b(?:the\s+|a\s+)?(?:{fmt}\s+)?file\s+(?:whose\s+name\s+is\s+)?(?:named|given|specified|passed|"
        rf"referenced|listed|sent)\s+in\s+(?:its|the|the\s+webhook's|the\s+request's)\s+(?:payload|body|request)"
        rf"(?:\s+(?:field|key|under|as)\s+[`'\"]?(?P<param>{IDENT})[`'\"]?)?",
        rf"(?:\b{fmt}[- ]?)?файл\w*(?:\s+{fmt.replace('fmt', 'fmt2')})?,?\s+(?:указанн\w+|переданн\w+|названн\w+)"
        rf"\s+в\s+(?:запросе|payload|теле\s+запроса|вебхуке)(?:\s+в\s+поле\s+[`'\"]?(?P<param>{IDENT})[`'\"]?)?",
    )
    for pattern in patterns:
        for m in list(sc.finditer(pattern)):
            groups = m.groupdict()
            fmt_word = (groups.get("fmt") or groups.get("fmt2") or "").lower()
            param = groups.get("param") or "file"
            d.source.update({"kind": "file", "path_param": param})
            if fmt_word:
                d.source["format"] = _FILE_FORMATS[" ".join(fmt_word.split())]
            else:
                d.ask("source.format", "Which format is the file named in the payload (CSV, JSON lines, XML, "
                                       "Parquet)?", "В каком формате файл из запроса (CSV, JSON lines, XML, Parquet)?")
            sc.take(m, f"source file named by run parameter '{param}'")


def _scan_folder(sc: Scanner, d: Draft) -> None:
    folder = r"[`'\"]?(?P<folder>[\w.\-/]+?)[`'\"]?"
    patterns = (
        rf"\b(?:from|in)\s+(?:the\s+)?{folder}\s+(?:folder|directory|dir)\b",
        rf"\b(?:from|in)\s+(?:the\s+)?(?:folder|directory|dir)\s+{folder}(?=[\s,.;]|$)",
        rf"\bиз\s+(?:папки|каталога|директории)\s+{folder}(?=[\s,.;]|$)",
    )
    for pattern in patterns:
        for m in list(sc.finditer(pattern)):
            name = m.group("folder").strip("/")
            if ".." in name.split("/"):
                continue
            d.source["folder"] = name
            sc.take(m, f"folder {name}")


def scan_incremental(sc: Scanner, d: Draft) -> None:
    flag = (r"\bincremental(?:ly)?\b|\bинкрементальн\w*\b|\bdelta(?:[\s-]+(?:load(?:s|ing|ed)?|sync))?\b|"
            r"\bдельт\w*(?:[\s-]+загрузк\w*)?|\b(?:only\s+)?(?:the\s+)?new\s+(?:rows|records|data)\s+since\s+"
            r"(?:the\s+)?last\s+(?:run|load|time)\b|\bтолько\s+новые\s+(?:строки|записи)\s+с\s+прошлого\s+запуска\b|"
            r"\b(?:only\s+)?new\s+(?:or|and)\s+(?:changed|updated|modified)(?:\s+(?:rows|records|data|\w+s))?\b|"
            r"\bonly\s+new\s+\w+|\bновые\s+и\s+изменённые(?:\s+(?:строки|записи|\w+))?|"
            r"\bновые\s+и\s+измененные(?:\s+(?:строки|записи|\w+))?")
    col = rf"(?P<col>{IDENT})"
    with_flag = (rf"\bincremental(?:ly)?\s+(?:by|on|using)\s+{col}", rf"\bинкрементальн\w*\s+по\s+{col}")
    explicit = (rf"\b(?:using|with|by)\s+(?:the\s+)?{col}\s+(?:column\s+)?as\s+(?:the\s+|a\s+)?cursor\b",
                rf"\bcursor(?:\s+column)?\s+{col}", rf"\bпо\s+(?:полю|колонке|столбцу)\s+{col}")
    for pattern in with_flag + explicit:
        for m in list(sc.finditer(pattern)):
            _set_cursor(sc, d, m)
    flagged = False
    for m in list(sc.finditer(flag)):
        flagged = True
        sc.take(m, "incremental load")
    if flagged or d.incremental:
        for m in list(sc.finditer(rf"\(\s*(?:by|on|using|по)\s+{col}\s*\)")):
            _set_cursor(sc, d, m)
    if flagged and not d.incremental:  # "incrementally load X into Y by updated_at": a cursor-shaped column
        cursor = r"(?P<col>[A-Za-z_][A-Za-z0-9_]*(?:_at|_on|_id|_ts|date|time|version|_seq)|ts|id)(?![\w.])"
        for m in list(sc.finditer(rf"\b(?:by|on|using|по)\s+(?:the\s+)?{cursor}")):
            _set_cursor(sc, d, m)
    if flagged and not d.incremental:
        d.ask("incremental.cursor_column", "Which column tells new or changed rows apart (for example "
              "'by updated_at')?", "По какой колонке отличать новые и изменённые строки (например, 'по updated_at')?")


def _set_cursor(sc: Scanner, d: Draft, m: re.Match) -> None:
    column = m.group("col")
    if d.incremental and d.incremental["cursor_column"] != column:
        d.ask("incremental.cursor_column", "Two cursor columns were given; which one?",
              "Указаны две колонки курсора; какую использовать?")
    d.incremental = {"cursor_column": column}
    sc.take(m, f"incremental cursor {column}")


def scan_load_mode(sc: Scanner, d: Draft) -> None:
    verb = r"\b(?:upsert(?:ing|s)?|merg(?:e|es|ing))\s+(?:on|by|using)\s+(?:the\s+)?"
    patterns = (
        rf"{verb}(?:(?:primary\s+)?keys?\s+)?\(\s*(?P<keys>{IDENT}(?:\s*,\s*{IDENT})*)\s*\)",
        rf"{verb}(?:primary\s+)?keys\s+(?P<keys>{IDENT}(?:\s*(?:,|and)\s*{IDENT})+)",
        rf"{verb}(?:(?:primary\s+)?key\s+|column\s+)?(?P<keys>{IDENT})",
        rf"\b(?:с\s+)?(?:upsert|апсертом|апсерт|merge|мерджем)\s+по\s+(?:ключу\s+|ключам\s+)?"
        rf"(?P<keys>{IDENT}(?:\s*,\s*{IDENT})*)",
        rf"\bобновляя\s+по\s+(?:ключу\s+)?(?P<keys>{IDENT})",
        rf"\bпо\s+ключу\s+(?P<keys>{IDENT})",
    )
    for pattern in patterns:
        for m in list(sc.finditer(pattern)):
            _set_mode(sc, d, m, "merge", _keys(m.group("keys")))
    _scan_merge_keys(sc, d)
    _scan_simple_modes(sc, d)


def _keys(text: str) -> list[str]:
    return [k for k in re.split(r"\s*(?:,|\band\b|\bи\b)\s*", text) if k]


_KEY_LIST = rf"(?P<keys>(?!(?:the|a|an|it|them|every|each|day|hour|week|month)\b){IDENT}(?![.\w])(?:\s*(?:,|and|и)\s*{IDENT}(?![.\w]))*)"


def _scan_merge_keys(sc: Scanner, d: Draft) -> None:
    """"Upsert <table> into <target> by customer_id", "merge doctors into ... keyed by doctor_id", "... updating
    existing rows by order_id", «с обновлением по patient_id»: the verb, the endpoints, then the key.

    The verb means merge; without a key the compiler asks for one rather than appending."""
    key_phrase = (rf"\b(?:keyed\s+(?:on|by)|(?:de-?dup(?:e|ed|ing)?|deduplicat\w*)\s+(?:on|by)|(?:on|by|using)"
                  rf"(?:\s+(?:the\s+)?(?:primary\s+|unique\s+)?(?:keys?|columns?))?)\s+(?:the\s+)?{_KEY_LIST}")
    verbs = r"\b(?:upsert(?:ing|s|ed)?|merg(?:e|es|ing)|(?:update|updating)\s+(?:the\s+)?(?:existing|matching)\s+(?:rows|records))\b"
    for v in list(sc.finditer(verbs)):
        tail = re.compile(key_phrase, re.I).search(sc.masked, v.end())
        between = sc.masked[v.end():tail.start()] if tail else ""
        if tail is None or re.search(r"[;]|\b(?:where|with|per|join\w*)\b", between, re.I) or len(between) > 160:
            d.ask("target.keys", "Merge on which key column (e.g. 'upsert by order_id')?",
                  "По какой колонке-ключу делать upsert (например, 'upsert по order_id')?")
            sc.take(v)
            continue
        sc.take(v, "load verb" if re.match(r"upsert|merg", v.group(0), re.I) else None)
        _set_mode(sc, d, tail, "merge", _keys(tail.group("keys")))
    ru = rf"\b(?:с\s+обновлением|обновляя(?:\s+существующие\s+(?:строки|записи))?|с\s+апсертом|с\s+мерджем)\s+по\s+" \
         rf"(?:ключу\s+|ключам\s+|полю\s+|колонке\s+)?{_KEY_LIST}"
    for m in list(sc.finditer(ru)):
        _set_mode(sc, d, m, "merge", _keys(m.group("keys")))


def _scan_simple_modes(sc: Scanner, d: Draft) -> None:
    replace = (r"\b(?:replacing|overwriting|overwrite|replace)\s+(?:the\s+)?(?:target(?:\s+table)?|table|"
               r"contents|existing\s+(?:data|rows))\b|\bfull[\s-]+refresh\b|\b(?:полностью\s+)?перезаписыва\w*\b|"
               r"\bполная\s+перезагрузка\b")
    for m in list(sc.finditer(replace)):
        _set_mode(sc, d, m, "replace", [])
    for m in list(sc.finditer(r"\b(?:appending|append|дописывая|дописывать)\b")):
        _set_mode(sc, d, m, "append", [])
    for m in list(sc.finditer(r"\b(?:sync|syncs|syncing|synchronize|synchronise|synchronizing|mirror|"
                              r"mirroring|синхронизир\w*)\b")):
        d.sync = True
        sc.take(m, "sync (keep the target equal to the source)")


def _set_mode(sc: Scanner, d: Draft, m: re.Match, mode: str, keys: list[str]) -> None:
    if d.load_mode and (d.load_mode, d.keys) != (mode, keys):
        d.ask("target.load_mode", "Conflicting load modes were given; append, replace or merge (on which key)?",
              "Указаны разные режимы загрузки: дописывать, перезаписывать или upsert (по какому ключу)?")
    d.load_mode, d.keys = mode, keys
    sc.take(m, f"load mode {mode}" + (f" on {', '.join(keys)}" if keys else ""))
