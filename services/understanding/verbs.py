"""How analysts say "move it": verb phrases, the sides of "keep X in sync with Y", format words ("a csv")
and the noun phrase naming what is moved ("copy the order lines from ...", «перелей платежи из ...»).
"""
from __future__ import annotations

import re

from .draft import Draft
from .endpoints import Mention
from .lexicon import ENGINES, ENTITY_NOUNS, STOPWORDS_EN, STOPWORDS_RU, VERBS
from .numbers import NUMBER_WORDS
from .scanner import MASK, Scanner, Span

# Particles that make a phrasal verb of a load verb: "copy over", "sync up", "bring across".
_PHRASAL = (r"\b(?P<verb>copy|copies|copying|move|moving|bring|bringing|carry|send|sending|ship|shipping|push|"
            r"pushing|pull|pulling|sync|syncing|dump|dumping|load|loading)\s+(?P<particle>over|up|across|in|out)\b"
            r"(?!\s+(?:\d|the\s+last|the\s+past))")
_SYNC_WITH = r"(?:in\s+sync|synced|synchronized|synchronised|up[\s-]to[\s-]date|consistent|identical)\s+with"


def scan_verb_phrases(sc: Scanner, d: Draft) -> None:
    if not sc.has(r"\b(?:over|up|across|in|out|keep\w*|maintain|держ\w*|поддерж\w*)\b"):
        return
    for m in list(sc.finditer(_PHRASAL)):
        if m.group("particle").lower() in ("in", "out") and m.group("verb").lower() not in ("pull", "pulling",
                                                                                           "dump", "dumping"):
            continue  # "load in batches", "send out": not a phrasal load verb
        if m.group("verb").lower().startswith("sync"):
            d.sync = True
        sc.take(m, "load verb" if not d.sync else "sync (keep the target equal to the source)")
    _scan_keep_in_sync(sc, d)


def _scan_keep_in_sync(sc: Scanner, d: Draft) -> None:
    """"keep <target> in sync with <source>": the object is the target, what follows "with" the source."""
    patterns = (rf"\b(?P<keep>keep|keeping|keeps|maintain)\b(?P<obj>[^,;]{{1,120}}?)\b(?P<with>{_SYNC_WITH})\b",
                r"\b(?P<keep>держ\w*|поддержива\w*)\b(?P<obj>[^,;]{1,120}?)(?P<with>(?:в\s+синхроне|"
                r"синхронизированн\w*|в\s+актуальном\s+состоянии|актуальн\w*)\s+с|со)\b")
    for pattern in patterns:
        for m in list(sc.finditer(pattern)):
            keep, sync_with = _group_match(m, "keep"), _group_match(m, "with")
            d.sync = True
            d.mentions += [Mention(m.start("keep"), "prep", "into"), Mention(m.start("with"), "prep", "from")]
            sc.take(keep, "keep the target (what follows) equal to the source")
            sc.take(sync_with, "sync with the source (what follows)")


def scan_verb_typos(sc: Scanner, d: Draft) -> None:
    """"laod orders from ...", "pls cpoy X": a word of 4+ letters one edit (or one swap) from a load verb's base
    form, where a verb stands (the request's first word, or after a politeness word), is that verb. Names
    and known words are never corrected: "mode" in "append mode" stays a question, "leads" a noun."""
    lead = re.compile(r"(?:^|\b(?:pls|plz|please|kindly|just|can\s+you|could\s+you|пожалуйста|плиз)\s+)$", re.I)
    known = STOPWORDS_EN | STOPWORDS_RU | ENTITY_NOUNS | VERBS | frozenset(ENGINES)
    # Base forms only, and never an -ing/-ed word: "skipping" is one edit from "shipping" and means something else.
    bases = sorted(v for v in VERBS if len(v) >= 4 and not re.search(r"(?:ing|ed|s)$", v))
    for m in list(sc.finditer(r"(?P<word>[^\W\d_]{4,})(?=\s)")):
        word = m.group("word").lower()
        if word in known or re.search(r"(?:ing|ed)$", word) or not lead.search(sc.masked[:m.start()]):
            continue
        verb = next((v for v in bases if _one_edit(word, v)), None)
        if verb:
            sc.take(Span(m.start("word"), m.end("word")), "load verb")
            d.notes.append(f'"{m.group("word")}" read as "{verb}"')


def _one_edit(a: str, b: str) -> bool:
    """Whether ``a`` becomes ``b`` by one insertion, deletion, substitution or swap of neighbours."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]]
                                  and a[diff[1]] == b[diff[0]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def _group_match(m: re.Match, group: str) -> Span:
    return Span(m.start(group), m.end(group))


def scan_na_markers(sc: Scanner, d: Draft) -> None:
    """"treating NA as null", «считая NA пустым»: what the CSV reader already does (NA, N/A, empty -> NULL)."""
    if not sc.has(r"\bna\b|n/a|null|nan|empty|blank|пуст"):
        return
    markers = r"(?:NA|N/A|NaN|null|NULL|empty\s+(?:strings?|cells?|values?)|blanks?|blank\s+cells|''|\"\")"
    pattern = (rf"\b(?:treating|treat|reading|read|with|where)\s+(?:the\s+)?{markers}(?:\s*(?:,|and|or)\s*{markers})*"
               rf"\s+(?:as|meaning|means|=)\s+(?:a\s+)?(?:null|nulls|missing|empty|no\s+value)\b|"
               rf"\b(?:считая|читая)\s+{markers}\s+(?:как\s+)?(?:пуст\w*|null|отсутствующ\w*)")
    for m in list(sc.finditer(pattern)):
        sc.take(m, "NA markers read as NULL (the CSV reader's default)")


# --- format words ----------------------------------------------------------------------------------

_FORMATS = {"csv": "csv", "tsv": None, "parquet": "parquet", "jsonl": "jsonl", "json lines": "jsonl",
            "ndjson": "jsonl", "xml": "xml"}


def scan_file_words(sc: Scanner, d: Draft) -> None:
    """"to a csv called out.csv", "as parquet", "into a CSV": a format said without the word "file"."""
    if not sc.has(r"csv|parquet|jsonl|json|ndjson|xml"):
        return
    fmt = r"(?P<fmt>csv|parquet|jsonl|json\s+lines|ndjson|xml)"
    before_name = (rf"\b(?:an?\s+|the\s+)?{fmt}(?:\s+(?:export|dump|extract|snapshot))?\s+(?:named\s+|called\s+)?"
                   rf"(?=[`'\"]?[\w\-/]+\.(?:csv|parquet|jsonl|ndjson|xml)\b)")
    for m in list(sc.finditer(before_name)):
        sc.take(m, f"{m.group('fmt')} format")
    for m in list(sc.finditer(rf"\bas\s+(?:an?\s+)?{fmt}(?!\s*(?:file|файл|-))\b")):
        if re.search(r"\.(?:csv|parquet|jsonl|ndjson|xml)\b", sc.text, re.I):
            sc.take(m, f"{m.group('fmt')} format")  # "out.parquet as parquet": the name already says it
    noname = rf"\b(?:an?|the|some)\s+{fmt}(?:\s+(?:export|dump|extract|snapshot))?(?!\s*(?:file|файл|-))\b"
    for m in list(sc.finditer(noname)):
        d.mentions.append(Mention(m.start(), "file_noname", _FORMATS[" ".join(m.group("fmt").lower().split())]))
        sc.take(m, f"{m.group('fmt')} file")


# --- what is moved ---------------------------------------------------------------------------------

_TOKENS = re.compile(rf"{MASK}+|\w+(?:[-'’]\w+)*(?:[./@]\w+(?:[-'’]\w+)*)*|[^\w\s]")
_BOUNDARY_WORDS = frozenset("from of into to onto in at on with by for via where whose that which who per "
                            "из в во на с со по для где которые что за".split())
# Words that say something about the rows (a filter, an order): never a name for what is moved.
_MEANINGFUL = frozenset("""
new old recent active inactive latest last first top best worst big large small huge valid invalid good bad
unique duplicate duplicates missing empty null deleted archived open closed current previous next other some
most more less few many several important cheap expensive high low long short own certain specific
total totals sum sums average averages count counts number numbers statistics stats summary summaries
""".split()) | frozenset(re.findall(r"[a-zа-яё]+", NUMBER_WORDS))
_ADJ_EN = re.compile(r".*(?:ive|ed|ful|ous|able|ible|less|ish|ical|est)$")
_ADJ_RU = re.compile(r".*(?:ый|ий|ой|ая|яя|ое|ее|ые|ие|ых|их|ого|его|ому|ему|ую|юю|ыми|ими)$")
_MAX_SLOT = 4


def scan_moved_nouns(sc: Scanner, d: Draft) -> None:
    """The noun phrase right after the load verb (or right before "from") names what is moved.

    Its head may be any plural noun ("copy the *signups* from ..."): the catalog links it to a table. Other
    words of the phrase must be known nouns or words of the named tables; an adjective ("active
    customers") would change which rows move, so it stays unexplained and the compiler asks.
    """
    tokens = [(m.start(), m.end(), m.group(0)) for m in _TOKENS.finditer(sc.masked)]
    names = _name_words(sc.text)
    russian = bool(re.search(r"[а-яё]", sc.text, re.I))
    for i, (_, _, tok) in enumerate(tokens):
        if _is_verb(tok) or (tok.startswith(MASK) and _verb_hit_ends_at(sc, tokens[i][1])):
            _claim_slot(sc, d, tokens, i + 1, names, russian)


def _is_verb(tok: str) -> bool:
    return tok.lower() in VERBS


def _verb_hit_ends_at(sc: Scanner, end: int) -> bool:
    return any(h.end == end and (h.meaning == "load verb" or h.meaning.startswith("sync")) for h in sc.hits)


def _claim_slot(sc: Scanner, d: Draft, tokens: list, start: int, names: set[str], russian: bool) -> None:
    slot: list[tuple[int, int, str]] = []
    for begin, end, tok in tokens[start:]:
        low = tok.lower()
        if tok.startswith(MASK) or low in STOPWORDS_EN or low in STOPWORDS_RU:
            if slot and tok.startswith(MASK):
                break  # a consumed phrase after the noun ends it ("order lines <filter>")
            continue
        if not re.fullmatch(r"[^\W\d_]+(?:[-'’][^\W\d_]+)*", tok) or low in _BOUNDARY_WORDS or low in ENGINES \
                or low in VERBS:
            break
        slot.append((begin, end, tok))
        if len(slot) > _MAX_SLOT:
            return
    if not slot:
        return
    words = [t for _, _, t in slot]
    head = 0 if russian and re.search(r"[а-яё]", words[0], re.I) else len(words) - 1
    claimed = [s for k, s in enumerate(slot) if _fits(s[2], k == head, names, russian)]
    if not claimed:
        return
    phrase = " ".join(t for _, _, t in claimed)
    d.subject.append(phrase)
    for begin, end, _ in claimed:
        sc.take(Span(begin, end), f"what is moved: {phrase}")


def _fits(word: str, is_head: bool, names: set[str], russian: bool) -> bool:
    low = word.lower()
    if low in ENTITY_NOUNS or low in names or low.rstrip("s") in names:
        return True
    if low in _MEANINGFUL or _ADJ_RU.match(low) or (not russian and _ADJ_EN.match(low)):
        return False
    # An unknown head must look like a plural noun ("signups", «заявки»): "orders pivot by month" keeps
    # "pivot" unexplained instead of swallowing an instruction.
    plural = re.search(r"[^s]s$", low) if re.fullmatch(r"[a-z'’-]+", low) else re.search(r"[ыиая]$", low)
    return is_head and bool(plural)


def _name_words(text: str) -> set[str]:
    """Words of the dotted names and files in the request ("shop.order_lines" -> order, lines, line)."""
    words: set[str] = set()
    for name in re.findall(r"(?<![\w./])\w+(?:[./]\w+)+", text):  # anchored: linear on a long word
        for part in re.split(r"[./_\-]+", name.lower()):
            if part:
                words |= {part, part.rstrip("s")}
    return words
