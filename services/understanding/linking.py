"""Linking the words of a request to the tenant's catalog: which table "the payments" is, which column
"order amount" or «дата создания» names.

A phrase is compared with catalog names by classes, in order; the first class that finds anything decides:

1. ``exact`` - the name itself, any case ("shop.orders", "orders", "Amount").
2. ``normalised`` - the same words after case, plural/singular, ``_`` vs space, camelCase, a possessive
   's, word endings (created/creation) and time words (created_at = "created date" = "created on"); the
   table's own noun may be left out ("order amount" is ``amount`` of ``orders``).
3. ``abbreviation`` - with abbreviations expanded (qty, amt, cust, txn, ...).
4. ``lexicon`` - with English synonyms (client = customer, line = item) and Russian stems (платеж =
   payment, дата = date) translated.
5. ``a typo of the name`` - one swapped, missing, extra or wrong letter in a word of 6+ letters
   ("prescritpions"), when exactly one name is that close.
6. ``similar name`` - MiniLM cosine of the phrase and the name written as prose; a link needs
   ``LINK_SIMILARITY`` and a lead of ``SIMILARITY_MARGIN`` over the runner-up. Names at
   ``ASK_SIMILARITY`` or more are only *candidates*: the compiler asks, naming them.

Two names found by the same class are ambiguous: a question, never a pick. The thresholds are constants
so the same catalog and text always give the same links. Catalog names are embedded once per process
and name (a small cache), the phrases of a request in one batch, and only when classes 1-4 found nothing.
"""
from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Optional

from .lexicon import PLACES

log = logging.getLogger(__name__)

# MiniLM all-MiniLM-L6-v2 on short names: "date of birth"/"birth date" 0.95, "payments"/"payment
# transactions" 0.80, but "patients"/"doctors" 0.72 and "clients"/"customers" 0.72 - below 0.8 a high score
# does not mean the same thing, so it is only a candidate named in a question.
LINK_SIMILARITY = 0.80
SIMILARITY_MARGIN = 0.05
ASK_SIMILARITY = 0.55
MAX_CANDIDATES = 4
_CACHE_CAP = 20_000

ABBREVIATIONS = {
    "qty": "quantity", "qnty": "quantity", "amt": "amount", "cust": "customer", "cnt": "count",
    "num": "number", "nr": "number", "desc": "description", "addr": "address", "prod": "product",
    "cat": "category", "txn": "transaction", "trx": "transaction", "tx": "transaction", "inv": "invoice",
    "pmt": "payment", "pymt": "payment", "acct": "account", "acc": "account", "org": "organization",
    "dept": "department", "emp": "employee", "mgr": "manager", "usr": "user", "msg": "message",
    "tel": "phone", "pct": "percent", "val": "value", "ref": "reference", "ctry": "country",
    "cntry": "country", "curr": "currency", "ccy": "currency", "wh": "warehouse", "loc": "location",
    "cat_id": "category_id", "sku": "sku", "info": "information", "img": "image", "lang": "language",
    "rx": "prescription", "appt": "appointment",
}
SYNONYMS = {"client": "customer", "buyer": "customer", "purchaser": "customer", "line": "item",
            "position": "item", "e-mail": "email", "mail": "email", "telephone": "phone", "mobile": "phone",
            "town": "city", "nation": "country", "cost": "price", "sum": "amount",
            # the same record under another name: a clinic's visit is its appointment
            "visit": "appointment", "physician": "doctor", "medication": "drug", "medicine": "drug",
            "script": "prescription", "worker": "employee", "staff": "employee"}
# Russian stems (any ending) -> the English word they stand for.
RU_STEMS = (
    ("платёж", "payment"), ("платеж", "payment"), ("оплат", "payment"), ("заказ", "order"),
    ("клиент", "customer"), ("покупател", "customer"), ("товар", "product"), ("продукт", "product"),
    ("сумм", "amount"), ("дат", "date"), ("время", "time"), ("времен", "time"), ("город", "city"),
    ("стран", "country"), ("статус", "status"), ("цен", "price"), ("количеств", "quantity"),
    ("созда", "created"), ("обновл", "updated"), ("изменен", "updated"), ("строк", "line"),
    ("позици", "item"), ("пользовател", "user"), ("сотрудник", "employee"), ("продаж", "sale"),
    ("счёт", "invoice"), ("счет", "invoice"), ("транзакц", "transaction"), ("событи", "event"),
    ("клик", "click"), ("адрес", "address"), ("имя", "name"), ("имен", "name"), ("телефон", "phone"),
    ("почт", "email"), ("категори", "category"), ("отдел", "department"), ("регион", "region"),
    ("магазин", "store"), ("склад", "warehouse"), ("поставщик", "supplier"), ("доставк", "delivery"),
    ("скидк", "discount"), ("зарплат", "salary"), ("пациент", "patient"), ("визит", "visit"),
    ("врач", "doctor"), ("сесси", "session"), ("датчик", "sensor"), ("показани", "reading"),
    ("измерени", "measurement"), ("идентификатор", "id"), ("номер", "number"), ("описани", "description"),
    ("назван", "name"), ("наименовани", "name"), ("рождени", "birth"), ("возраст", "age"), ("пол", "gender"),
    ("приём", "appointment"), ("прием", "appointment"), ("назначени", "prescription"), ("рецепт", "prescription"),
    # events whose time a table keeps (registered_at, issued_on): «зарегистрированные в 2025», «дата выписки»
    ("зарегистр", "registered"), ("регистрац", "registration"), ("выписанн", "issued"), ("выдан", "issued"),
    ("отгруж", "shipped"), ("отгрузк", "shipment"),
)
# A name part that is a hex run with digits and letters (a uuid or hash piece), 6+ characters.
_SCRATCH = re.compile(r"(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{6,}")
_TIME_WORDS = frozenset({"at", "on", "date", "time", "ts", "timestamp", "datetime", "dt", "dttm", "tstamp"})
_FILLER = frozenset({"the", "a", "an", "of", "s", "для"})
LEVELS = ((1, "normalised"), (2, "abbreviation"), (3, "lexicon"))


# ---------------------------------------------------------------- normalisation

def _singular(w: str) -> str:
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("sses", "xes", "ches", "shes", "uses")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def _stem(w: str) -> str:
    """created/creation/create -> creat, shipped/shipping -> ship: endings do not change a name."""
    for suffix in ("ing", "ion", "ed", "e"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 4:
            w = w[:-len(suffix)]
            break
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "aeiousl":
        w = w[:-1]
    return w


def _russian(w: str) -> Optional[str]:
    return next((en for stem, en in RU_STEMS if w.startswith(stem)), None)


def words(text: str) -> list[str]:
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)  # camelCase names
    text = re.sub(r"['’]s\b", " ", text.lower())
    return [w for w in re.findall(r"[^\W_]+", text) if w]


def _norm_word(w: str, level: int) -> str:
    if level >= 3:
        w = _russian(w) or w
    if level >= 2:
        w = ABBREVIATIONS.get(w, w)
    w = _singular(w)
    if level >= 3:
        w = SYNONYMS.get(w, w)
    if w in _TIME_WORDS:
        return "@time"
    return _stem(w)


def tokens(text: str, level: int) -> frozenset[str]:
    return frozenset(_norm_word(w, level) for w in words(text) if w not in _FILLER)


def prose(name: str) -> str:
    """A catalog name as words: "shop.order_items" -> "order items", "customers.csv" -> "customers"."""
    short = name.rsplit("/", 1)[-1]
    short = re.sub(r"\.(csv|jsonl|ndjson|json|xml|parquet|tsv|txt)$", "", short, flags=re.I)
    short = short.rsplit(".", 1)[-1]
    return " ".join(words(short))


# ---------------------------------------------------------------- the catalog as the linker sees it

@dataclass(frozen=True)
class Table:
    connection: str
    kind: str
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, type)
    default: bool = False
    # (column, its values): text columns whose catalog entry lists all their values (a category).
    values: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def column_names(self) -> list[str]:
        return [c for c, _ in self.columns]

    def column(self, name: str) -> Optional[str]:
        """The real spelling of a column named in any case."""
        return next((c for c in self.column_names if c.lower() == name.lower()), None)

    def type_of(self, column: str) -> str:
        return next((t for c, t in self.columns if c == column), "")

    def entity(self, level: int) -> frozenset[str]:
        return tokens(prose(self.name), level)

    def shown(self) -> str:
        return f"{self.name} ({self.connection})"

    @property
    def scratch(self) -> bool:
        """A generated name (``ex_07959b4e5d.orders``, ``analytics.cancel_a7b02821``): a test's or a job's
        scratch copy, a candidate only when nothing else is."""
        return any(_SCRATCH.fullmatch(part) for part in re.split(r"[._/]", self.name.lower()))


@dataclass(frozen=True)
class Lookup:
    """What a phrase links to: one name (linked), several (ambiguous) or none, plus question candidates."""

    phrase: str
    names: tuple[str, ...] = ()
    how: Optional[str] = None
    candidates: tuple[str, ...] = ()

    @property
    def linked(self) -> Optional[str]:
        return self.names[0] if len(self.names) == 1 else None

    @property
    def choices(self) -> tuple[str, ...]:
        return self.names if len(self.names) > 1 else self.candidates


@dataclass
class CatalogIndex:
    tables: list[Table] = field(default_factory=list)
    chosen: dict[str, str] = field(default_factory=dict)  # role -> connection an answer picked

    @classmethod
    def of(cls, catalog: Optional[dict[str, Any]]) -> Optional["CatalogIndex"]:
        if not isinstance(catalog, dict) or not catalog.get("connections"):
            return None
        tables = []
        for conn in catalog["connections"]:
            for t in conn.get("tables") or []:
                cols = tuple((str(c["name"]), str(c.get("type") or "")) for c in t.get("columns") or [])
                values = tuple((str(c["name"]), tuple(str(v) for v in c.get("samples") or []))
                               for c in t.get("columns") or [] if c.get("values") and c.get("samples"))
                tables.append(Table(str(conn["name"]), str(conn["kind"]), str(t["name"]), cols,
                                    bool(conn.get("default")), values))
        return cls(tables) if tables else None

    def holders(self, name: str, kind: Optional[str] = None) -> list[Table]:
        """Tables called ``name`` (schema.table, or a bare table name), optionally of one kind."""
        low = name.lower()
        pool = [t for t in self.tables if kind in (None, t.kind)]
        full = [t for t in pool if t.name.lower() == low]
        return full or ([t for t in pool if t.name.lower().rsplit(".", 1)[-1] == low] if "." not in low else [])

    def schema_home(self, name: str) -> list["Table"]:
        """For a table the catalog does not hold yet: the tables of the one kind of connection whose
        schema (database) ``name``'s prefix names - "analytics.new_x" goes where ``analytics`` is."""
        if "." not in name:
            return []
        schema = name.lower().split(".", 1)[0]
        found = [t for t in self.tables if t.kind != "file" and t.name.lower().split(".", 1)[0] == schema]
        return found if len({t.kind for t in found}) == 1 else []

    def default_connections(self) -> dict[str, str]:
        """kind -> the catalog's default connection of that kind (the planner's defaults win over it)."""
        return {t.kind: t.connection for t in self.tables if t.default}

    def table_for(self, side: dict) -> Optional[Table]:
        """The catalog table a resolved spec side names (its connection when several hold it)."""
        name = side.get("table") or side.get("path")
        if not name:
            return None
        found = self.holders(name, side.get("kind"))
        if side.get("connection"):
            found = [t for t in found if t.connection == side["connection"]] or found
        if len(found) > 1:
            found = [t for t in found if t.default] or found
        return found[0] if len(found) == 1 else None


# ---------------------------------------------------------------- matching

def match(phrase: str, names: list[str], entity: Optional[dict[int, list[frozenset]]] = None,
          similar: bool = True, exact_forms: Optional[dict[str, str]] = None) -> Lookup:
    """Link ``phrase`` to one of ``names`` (see the module docstring for the classes)."""
    names = list(dict.fromkeys(names))
    low = " ".join(phrase.lower().split())
    forms = exact_forms or {}
    exact = [n for n in names if low in (n.lower(), _short(n))]
    if exact:
        return Lookup(phrase, tuple(exact), "exact")
    for level, how in LEVELS:
        p = tokens(phrase, level)
        if not p:
            return Lookup(phrase)
        ents = (entity or {}).get(level, [])
        found = [n for n in names if _same(p, tokens(prose_of(n, forms), level), ents)]
        if found:
            return Lookup(phrase, tuple(found), how)
    typo = _typo(low, names, forms)
    if len(typo) == 1:
        return Lookup(phrase, tuple(typo), "a typo of the name")
    if not similar or not names:
        return Lookup(phrase)
    return _similar(phrase, names, forms)


def _typo(low: str, names: list[str], forms: dict[str, str]) -> list[str]:
    """Names one slip away from a one-word phrase: a swapped, missing, extra or wrong letter ("prescritpions",
    "custmers"); words of 6+ letters only, so short words never link by accident."""
    if " " in low or len(low) < 6 or not low.isalpha():
        return []
    word = _singular(low)
    found = []
    for n in names:
        target = _singular(prose_of(n, forms).replace(" ", "_").lower())
        if target.replace("_", "") == word:
            continue  # "zipcode" for zip_code is the same words run together, not a slip
        if abs(len(target) - len(word)) <= 1 and target != word and _one_edit(word, target):
            found.append(n)
    return found


def _one_edit(a: str, b: str) -> bool:
    """Damerau-Levenshtein distance 1 (a transposition counts as one)."""
    if len(a) == len(b):
        diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]]
                                  and a[diff[1]] == b[diff[0]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def _short(name: str) -> str:
    """A table without its schema or file extension, as written: "shop.order_items" -> "order_items"."""
    short = re.sub(r"\.(csv|jsonl|ndjson|json|xml|parquet|tsv|txt)$", "", name.lower().rsplit("/", 1)[-1])
    return short.rsplit(".", 1)[-1]


def prose_of(name: str, forms: dict[str, str]) -> str:
    return forms.get(name) or " ".join(words(name))


def _same(p: frozenset, n: frozenset, entities: list[frozenset]) -> bool:
    if not n:
        return False
    if p == n:
        return True
    for ent in entities:  # the table's own noun may be said or left out: "order amount", "customer id"
        if (p - ent and p - ent == n) or (n - ent and p == n - ent):
            return True
    return False


def _similar(phrase: str, names: list[str], forms: dict[str, str]) -> Lookup:
    scores = similarity(phrase, [prose_of(n, forms) for n in names])
    if scores is None:
        return Lookup(phrase)
    ranked = sorted(zip(names, scores), key=lambda x: (-x[1], x[0]))
    best, top = ranked[0]
    runner = ranked[1][1] if len(ranked) > 1 else -1.0
    if top >= LINK_SIMILARITY and top - runner >= SIMILARITY_MARGIN:
        return Lookup(phrase, (best,), "similar name")
    candidates = tuple(n for n, s in ranked if s >= ASK_SIMILARITY)[:MAX_CANDIDATES]
    return Lookup(phrase, (), None, candidates)


def link_table(phrase: str, tables: list[Table], similar: bool = True) -> Lookup:
    """Link a phrase to a table; names in the Lookup are table names (unique among ``tables``)."""
    forms = {t.name: prose(t.name) for t in tables}
    return match(phrase, [t.name for t in tables], similar=similar, exact_forms=forms)


def link_column(phrase: str, tables: list[Table], similar: bool = True, spec_column: bool = False) -> Lookup:
    """Link a phrase to a column of ``tables`` (the source, plus joined tables).

    After the classes of ``match`` (similarity last) come two more: *extension* - the one column that is
    the phrase plus a unit or a time suffix ("dose" -> dose_mg, "scheduled" -> scheduled_at) - and, for a
    column the spec names that the source lacks (``spec_column``), any role suffix ("diagnosis" ->
    diagnosis_code) and *money* - a money word ("price", «стоимость») is the table's one money-like
    numeric column. In prose, "appointments" is never appointment_id and "most expensive" stays the
    grammar's, so those two only apply to spec columns."""
    names = [c for t in tables for c in t.column_names]
    entities = {level: [t.entity(level) for t in tables] for level, _ in LEVELS}
    look = match(phrase, names, entities, similar=False)
    if look.names:
        return look
    extended = _extension(phrase, names, EXTENSIONS if spec_column else UNIT_EXTENSIONS)
    if len(extended) == 1:
        return Lookup(phrase, tuple(extended), EXTENSION)
    nominal = _event_time_phrase(phrase, tables)
    if len(nominal) == 1:
        return Lookup(phrase, tuple(nominal), NOMINAL)
    money = _money(phrase, [(c, ty) for t in tables for c, ty in t.columns]) if spec_column else []
    if len(money) == 1:
        return Lookup(phrase, tuple(money), "the table's money column")
    if extended:
        return Lookup(phrase, (), None, tuple(extended)[:MAX_CANDIDATES])
    return match(phrase, names, entities, similar) if similar else look


EXTENSION = "the name plus a unit or suffix"
NOMINAL = "the event's date/time column"
_WHEN_WORDS = _TIME_WORDS | {"moment", "day", "when", "timing"}


def _event_time_phrase(phrase: str, tables: list[Table]) -> list[str]:
    """Date/time columns that a noun of an event plus a time word names: "registration time" ->
    registered_at, "enrolment date" -> enrolled_at, "shipment date" -> shipped_on. The noun and the column's
    verb share their root (5 letters, or the whole of a shorter one); a time word must be said, so "shipment"
    alone stays a question."""
    said = [w for w in words(phrase) if w not in _FILLER]
    event = [w for w in said if w not in _WHEN_WORDS and _russian(w) not in ("date", "time")]
    if len(event) != 1 or len(event) == len(said) or len(event[0]) < 4:
        return []
    word = event[0]
    found = []
    for t in tables:
        for c, ty in t.columns:
            head = [w for w in c.lower().split("_") if w and w not in _TIME_WORDS]
            if len(head) != 1 or not is_temporal(ty):
                continue
            root = _stem(head[0])
            if len(root) >= 4 and _common_prefix(root, word) >= min(5, len(root)):
                found.append(c)
    return list(dict.fromkeys(found))
# What a column name adds to the word a user says: a unit, a currency or a role suffix ("dose" ->
# dose_mg, "fee" -> fee_rub, "diagnosis" -> diagnosis_code, "customer" -> customer_id).
UNIT_EXTENSIONS = frozenset("""
at on date time ts dt mg g kg lb ml l cm mm m km min mins minutes sec secs seconds ms h hr hrs hours days d pct
percent usd eur rub gbp jpy cny kzt cents local utc
""".split())
EXTENSIONS = UNIT_EXTENSIONS | frozenset("id ids code codes name num number no count cnt total qty amount value val "
                                         "type kind flag".split())
# Words for money; the table's one numeric column whose name says money is what they mean.
MONEY_WORDS = frozenset("""
price prices cost costs amount amounts revenue revenues sum sums fee fees charge charges payment payments
expensive cheap cheaper dearer turnover sales spend spent
цена цены цену стоимость стоимости сумма суммы сумму выручка выручку оплата оплаты оплат платеж платёж дорогих
дорогие дороже дешевле дешёвых дешевых
""".split())
_MONEY_COLUMN = re.compile(r"(?:^|_)(?:amount|price|fee|fees|cost|revenue|total|sum|charge|paid|payment|"
                           r"usd|eur|rub|gbp|kzt|cents)(?:_|$)", re.I)
_NUMERIC = re.compile(r"numeric|decimal|float|double|real|money|int|number", re.I)


def _extension(phrase: str, names: list[str], suffixes: frozenset) -> list[str]:
    said = [_singular(w) for w in words(phrase)]
    if not said:
        return []
    out = []
    for name in names:
        parts = [_singular(w) for w in name.lower().split("_") if w]
        extra = (parts[len(said):] if parts[:len(said)] == said else
                 parts[:-len(said)] if parts[-len(said):] == said else None)
        if extra and len(extra) == 1 and extra[0] in suffixes:
            out.append(name)
    return out


def _money(phrase: str, columns: list[tuple[str, str]]) -> list[str]:
    if not any(w in MONEY_WORDS or _russian(w) in ("amount", "price", "payment") for w in words(phrase)):
        return []
    return list(dict.fromkeys(c for c, ty in columns if _MONEY_COLUMN.search(c) and _NUMERIC.search(ty)
                              and not re.search(r"(?:^|_)(?:id|count|qty)$", c, re.I)))


def time_column_named(text: str, table: Table) -> Optional[str]:
    """The one date/time column of ``table`` a word of ``text`` names by its stem: "scheduled" ->
    scheduled_at, "issued" -> issued_on, «зарегистрированные» -> registered_at (Russian through RU_STEMS)."""
    temporal = [c for c, ty in table.columns if is_temporal(ty)]
    entity = table.entity(1)
    said = {_stem(_singular(_russian(w) or w)) for w in words(text) if len(w) >= 4 and not tokens(w, 1) <= entity}
    found = []
    for c in temporal:
        head = [w for w in c.lower().split("_") if w and w not in _TIME_WORDS]
        stem = _stem(head[0]) if head else ""
        if stem and any(_common_prefix(stem, w) >= min(5, len(stem)) and abs(len(w) - len(stem)) <= 3
                        for w in said):
            found.append(c)
    return found[0] if len(found) == 1 else None


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


# ---------------------------------------------------------------- similarity (MiniLM)

class _Embeddings:
    """The MiniLM embedder, built on first use, and a cache of name vectors (catalog names repeat)."""

    def __init__(self) -> None:
        self._model: Any = None
        self._failed = False
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()

    def vectors(self, texts: list[str]):
        with self._lock:
            if self._failed:
                return None
            if self._model is None:
                try:
                    from services.core.embeddings import MiniLMEmbedder

                    self._model = MiniLMEmbedder()
                except Exception:  # no model installed: the similarity class is off, the others still work
                    log.warning("linking: MiniLM unavailable; similar-name links are off", exc_info=True)
                    self._failed = True
                    return None
            missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
            if missing:
                if len(self._cache) + len(missing) > _CACHE_CAP:
                    self._cache.clear()
                for text, vec in zip(missing, self._model.embed(missing)):
                    self._cache[text] = vec
            return [self._cache[t] for t in texts]


_EMBEDDINGS = _Embeddings()


def similarity(phrase: str, names: list[str]) -> Optional[list[float]]:
    """Cosine of ``phrase`` with each name, rounded to 4 places (stable comparisons with thresholds)."""
    import numpy as np

    vecs = _EMBEDDINGS.vectors([phrase.lower(), *[n.lower() for n in names]])
    if vecs is None:
        return None
    head, rest = vecs[0], np.asarray(vecs[1:])
    return [round(float(s), 4) for s in rest @ head]


def is_temporal(type_: str) -> bool:
    return bool(re.search(r"date|time", type_, re.I))


# ---------------------------------------------------------------- category values named in prose

# Russian words for common category values (stems, any ending) -> the English value they name.
VALUE_STEMS_RU = (
    ("завершён", "completed"), ("завершен", "completed"), ("выполнен", "completed"), ("отменён", "cancelled"),
    ("отменен", "cancelled"), ("оплачен", "paid"), ("неоплачен", "unpaid"), ("ожидающ", "pending"),
    ("возвращён", "refunded"), ("возвращен", "refunded"), ("доставлен", "delivered"), ("отправлен", "shipped"),
    ("запланирован", "scheduled"), ("неяв", "no_show"), ("активн", "active"),
    ("неактивн", "inactive"), ("новы", "new"), ("закрыт", "closed"), ("открыт", "open"), ("онлайн", "online"),
    ("телефон", "phone"), ("мужск", "m"), ("женск", "f"),
)
_TRANSLIT = str.maketrans({"а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh",
                           "з": "z", "и": "i", "й": "i", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o",
                           "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts",
                           "ч": "ch", "ш": "sh", "щ": "sch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu",
                           "я": "ya"})
_SPELLINGS = {"canceled": "cancelled", "cancelled": "cancelled"}


def value_key(text: str) -> str:
    """A value or a word as compared: case, ``-``/``_``/space, plural and spelling do not matter."""
    key = re.sub(r"[\s_\-]+", "_", text.strip().lower())
    key = "_".join(_singular(part) for part in key.split("_"))
    return _SPELLINGS.get(key, key)


def link_value(word: str, table: Table) -> list[tuple[str, str]]:
    """(column, value) pairs of ``table``'s category columns that ``word`` names (``names_value``)."""
    return list(dict.fromkeys((column, v) for column, values in table.values for v in values if names_value(word, v)))


def names_value(word: str, value: str) -> bool:
    """Whether ``word`` names ``value``: the value itself ("completed", "no-shows", "GLU"), a Russian word
    for it («завершённых», «отменённые»), a Russian spelling of a proper name («из Казани» -> Kazan) or a
    place's name in either language ("German" -> DE, «Москвы» -> Moscow; lexicon.PLACES). One- and
    two-letter values need the exact spelling in capitals ("in" is not India) or a place's name."""
    low = word.lower()
    if _names_place(low, value):
        return True
    if len(value) <= 2:
        return word == value and word.isupper()
    vk = value_key(value)
    if value_key(word) == vk or any(low.startswith(stem) and value_key(en) == vk for stem, en in VALUE_STEMS_RU):
        return True
    latin = low.translate(_TRANSLIT) if re.search(r"[а-яё]", low) else ""
    return bool(latin) and value[:1].isupper() and len(vk) >= 4 and _common_prefix(latin, vk) >= max(4, len(vk) - 1)


def _names_place(low: str, value: str) -> bool:
    vk = value_key(value)
    return any(vk in {value_key(n) for n in names} and low.startswith(stems) for names, stems in PLACES)


def names_column(word: str, column: str) -> bool:
    """Whether ``word`` names ``column`` by its stem or a lexicon word: "insured" -> insurance, «по
    телефону» -> phone, «городе» -> city."""
    low = word.lower()
    parts = [w for w in column.lower().split("_") if w]
    if _norm_word(low, 3) in {_norm_word(p, 3) for p in parts}:
        return True
    stem = _stem(_singular(low))
    return len(stem) >= 5 and any(_common_prefix(stem, _stem(p)) >= 5 for p in parts)
