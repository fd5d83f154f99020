"""Numbers as analysts write them: digits ("1,000", "2.5k"), words ("twenty-five", «десять») and units.

``NUMBER_ANY`` matches one number in any of these forms; ``number_value`` turns the match into an int
(or a float when it has a fraction). ``AMOUNT`` also allows a currency ("$100", "100 USD", «100 руб.»);
``amount_value`` tells the value and whether a currency was given (a currency means the column
``amount`` when the request names no column). A percent sign is not a unit we can map (is "10%" stored
as 10 or 0.1?), so ``PERCENT_AFTER`` lets a rule ask instead of silently dropping the sign.
"""
from __future__ import annotations

import re
from typing import Optional, Union

Number = Union[int, float]

_EN_UNITS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
             "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
             "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30,
             "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
             "dozen": 12}
_RU_UNITS = {"ноль": 0, "один": 1, "одна": 1, "одну": 1, "одного": 1, "два": 2, "две": 2, "двух": 2, "три": 3,
             "трёх": 3, "трех": 3, "четыре": 4, "четырёх": 4, "четырех": 4, "пять": 5, "пяти": 5, "шесть": 6,
             "шести": 6, "семь": 7, "семи": 7, "восемь": 8, "восьми": 8, "девять": 9, "девяти": 9,
             "десять": 10, "десяти": 10, "одиннадцать": 11, "двенадцать": 12, "тринадцать": 13,
             "четырнадцать": 14, "пятнадцать": 15, "пятнадцати": 15, "шестнадцать": 16, "семнадцать": 17,
             "восемнадцать": 18, "девятнадцать": 19, "двадцать": 20, "двадцати": 20, "тридцать": 30,
             "тридцати": 30, "сорок": 40, "сорока": 40, "пятьдесят": 50, "пятидесяти": 50, "шестьдесят": 60,
             "семьдесят": 70, "восемьдесят": 80, "девяносто": 90, "сто": 100, "ста": 100, "двести": 200,
             "двухсот": 200, "триста": 300, "трехсот": 300, "трёхсот": 300, "четыреста": 400, "пятьсот": 500,
             "пятисот": 500, "шестьсот": 600, "семьсот": 700, "восемьсот": 800, "девятьсот": 900,
             # other cases: «с тремя продлениями», «больше пятью», «двумя», «одним»
             "одним": 1, "одной": 1, "двумя": 2, "тремя": 3, "четырьмя": 4, "пятью": 5, "шестью": 6, "семью": 7,
             "восемью": 8, "девятью": 9, "десятью": 10, "двадцатью": 20, "тридцатью": 30, "одному": 1,
             "двум": 2, "трём": 3, "трем": 3, "четырём": 4, "четырем": 4, "сорока": 40, "девяноста": 90, "ста": 100}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000, "тысяча": 1000, "тысячи": 1000,
           "тысяч": 1000, "тысячу": 1000, "миллион": 1_000_000, "миллиона": 1_000_000, "миллионов": 1_000_000}
_WORDS = {**_EN_UNITS, **_RU_UNITS, **_SCALES}


def _trie(words: list[str]) -> str:
    """An alternation of ``words`` as a prefix tree: the same language, compiled far faster than a flat
    list of 150 words (it is embedded in many grammar patterns)."""
    tree: dict = {}
    for word in words:
        node = tree
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict) -> str:
        ends = "" in node
        alts = [re.escape(ch) + emit(sub) for ch, sub in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        if ends:
            return f"(?:{body})?"
        return body
    return emit(tree)


_WORD_RE = _trie(sorted(_WORDS))
NUMBER_WORDS = (rf"(?:(?:a|an)\s+(?=(?:hundred|thousand|million|dozen)\b))?(?:{_WORD_RE})"
                rf"(?:(?:\s+and\s+|\s+|-)(?:{_WORD_RE}))*(?!\w)")
# Digits with thousands separators, a fraction and a k/m suffix ("1,000", "1 000", "2.5k", "3M").
NUMBER_DIGITS = (r"\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,])|\d{1,3}(?: \d{3})+(?![\d])|\d+(?:\.\d+)?"
                 r"(?:\s?(?:k|K|m|M|mln|тыс\.?)(?![\w])|\s(?:thousand|million|тысяч\w*|миллион\w*))?")
NUMBER_ANY = rf"(?:(?:{NUMBER_DIGITS})|\b{NUMBER_WORDS})"
_CURRENCY = r"(?:usd|eur|gbp|rub|rubles?|roubles?|dollars?|bucks|euros?|руб(?:\.|лей|ля|ль)?|₽|\$|€|£)"
AMOUNT = rf"(?:[$€£₽]\s?)?(?:{NUMBER_ANY})(?:\s?{_CURRENCY}(?![\w]))?"
PERCENT_AFTER = r"\s?(?:%|percent\b|процент\w*)"


def _words_value(text: str) -> Optional[int]:
    total = current = 0
    seen = False
    for word in re.split(r"[\s\-]+", text.lower()):
        if word in ("and", "a", "an", ""):
            continue
        if word in _SCALES and _SCALES[word] == 100:
            current = max(current, 1) * 100
        elif word in _SCALES:
            total += max(current, 1) * _SCALES[word]
            current = 0
        elif word in _WORDS:
            current += _WORDS[word]
        else:
            return None
        seen = True
    return total + current if seen else None


def number_value(text: str) -> Optional[Number]:
    """The value of a ``NUMBER_ANY`` match: "1,000" -> 1000, "2.5k" -> 2500, "twenty-five" -> 25."""
    t = text.strip()
    m = re.fullmatch(r"(\d[\d, ]*(?:\.\d+)?)\s?(k|K|m|M|mln|тыс\.?|thousand|million|тысяч\w*|миллион\w*)?", t)
    if not m:
        return _words_value(t)
    digits = m.group(1)
    if "," in digits and not re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", digits):
        return None
    value = float(digits.replace(",", "").replace(" ", ""))
    suffix = (m.group(2) or "").lower()
    scale = 1000 if suffix[:1] in ("k", "t", "т") else 1_000_000 if suffix[:1] in ("m", "м") else 1
    value *= scale
    return int(value) if value == int(value) else value


def amount_value(text: str) -> tuple[Optional[Number], bool]:
    """(value, has_currency) of an ``AMOUNT`` match: "$1.5k" -> (1500, True), "ten" -> (10, False)."""
    t = text.strip()
    currency = bool(re.search(rf"^[$€£₽]|{_CURRENCY}$", t, re.I))
    t = re.sub(rf"^[$€£₽]\s?|\s?{_CURRENCY}$", "", t, flags=re.I)
    return number_value(t), currency
