"""Trigger filters: a small, safe expression language over a message's fields.

Examples::

    status == 'paid' and amount > 100
    status = 'paid'                      # a single '=' is equality too (how people and the planner write it)
    country in ('RU', 'KZ')
    not is_test
    customer.address.country != 'US'     # dots reach into nested objects
    100 <= amount < 500 OR priority = 'high'

The text is parsed with Python's ``ast`` module and only an allowlist of nodes is evaluated by walking the
tree; nothing is ever passed to ``eval``. Allowed: field names (dotted), string/number/boolean/null
literals (``true``/``false``/``null`` or ``True``/``False``/``None``), tuples and lists of literals,
comparisons ``== = != < <= > >= in not in`` and ``is``/``is not`` against null, ``and``/``or``/``not``
(any letter case), unary minus on numbers. Everything else (calls, arithmetic, subscripts, lambdas,
comprehensions, ...) is refused when the filter is compiled, with the reason.

Missing fields: a field that is absent (or a dotted path through something that is not an object) is
null. ``==`` against null is false, ``!=`` true, ``not missing`` true; an ordering comparison or ``in`` that
Python cannot make (null, or a string against a number) is false instead of an error. So
``amount > 100`` is false for a message without ``amount``.

Field names must be Python identifiers that are not keywords; ``_kafka`` (topic, partition, offset, key,
timestamp) is available like any other field.
"""
from __future__ import annotations

import ast
import io
import operator
import tokenize
from dataclasses import dataclass
from typing import Any, Callable, Optional

MAX_FILTER_CHARS = 2000
_WORDS = {"and": "and", "or": "or", "not": "not", "in": "in", "is": "is",
          "true": "True", "false": "False", "null": "None", "none": "None"}
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_, ast.IsNot: operator.is_not,
}
_LITERALS = (str, int, float, bool, type(None))


class FilterError(ValueError):
    """A filter that does not parse or uses something outside the language."""


@dataclass(frozen=True)
class Filter:
    """A compiled filter; call it with the message object (a dict)."""

    text: Optional[str]
    _tree: Optional[ast.expr]

    def __call__(self, message: dict) -> bool:
        if self._tree is None:
            return True
        return bool(_eval(self._tree, message))


def compile_filter(text: Optional[str]) -> Filter:
    """Parse and check ``text``; an empty filter matches every message."""
    if text is None or not text.strip():
        return Filter(text, None)
    if len(text) > MAX_FILTER_CHARS:
        raise FilterError(f"the filter is longer than {MAX_FILTER_CHARS} characters")
    try:
        tree = ast.parse(_normalise(text), mode="eval")
    except (SyntaxError, tokenize.TokenError, IndentationError) as exc:
        raise FilterError(f"the filter does not parse: {getattr(exc, 'msg', exc)}") from None
    _check(tree.body)
    return Filter(text, tree.body)


def _normalise(text: str) -> str:
    """Token-level rewrites into Python syntax: '=' -> '==', AND/OR/NOT/IN -> lower case,
    true/false/null -> True/False/None. Working on tokens leaves quoted strings alone."""
    out = []
    tokens = tokenize.generate_tokens(io.StringIO(" ".join(text.split("\n"))).readline)
    for tok in tokens:
        kind, value = tok.type, tok.string
        if kind == tokenize.OP and value == "=":
            value = "=="
        elif kind == tokenize.NAME and value.lower() in _WORDS and value not in ("True", "False", "None"):
            value = _WORDS[value.lower()]
        out.append((kind, value))
    return tokenize.untokenize(out)


# -- checking: refuse anything outside the language, once, when the filter is compiled ---------------------
def _check(node: ast.AST) -> None:
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        _check(node.operand)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        if not (isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float)):
            raise FilterError("unary minus applies to numbers only")
    elif isinstance(node, ast.Compare):
        _check_compare(node)
    elif isinstance(node, (ast.Name, ast.Attribute)):
        _field_path(node)
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, _LITERALS):
            raise FilterError(f"unsupported literal {node.value!r}")
    elif isinstance(node, (ast.Tuple, ast.List)):
        for elt in node.elts:
            if not _is_literal(elt):
                raise FilterError("lists in a filter may hold literals only")
    else:
        raise FilterError(f"{_describe(node)} is not allowed in a filter")


def _check_compare(node: ast.Compare) -> None:
    operands = [node.left, *node.comparators]
    for op, right in zip(node.ops, node.comparators):
        if type(op) not in _COMPARE:
            raise FilterError(f"comparison {type(op).__name__} is not allowed")
        if isinstance(op, (ast.Is, ast.IsNot)) and not (isinstance(right, ast.Constant) and right.value is None):
            raise FilterError("'is' and 'is not' compare with null only")
    for operand in operands:
        _check(operand)


def _is_literal(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, _LITERALS)
    return (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
            and isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float))


def _field_path(node: ast.AST) -> tuple[str, ...]:
    """``a.b.c`` as ('a', 'b', 'c'); anything else in a name position is refused."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise FilterError(f"{_describe(node)} is not allowed in a field name")
    parts.append(node.id)
    return tuple(reversed(parts))


def _describe(node: ast.AST) -> str:
    names = {ast.Call: "a function call", ast.BinOp: "arithmetic", ast.Subscript: "indexing",
             ast.Lambda: "a lambda", ast.IfExp: "a conditional expression", ast.Dict: "a dict literal",
             ast.Set: "a set literal", ast.ListComp: "a comprehension", ast.GeneratorExp: "a generator",
             ast.SetComp: "a comprehension", ast.DictComp: "a comprehension", ast.Await: "await",
             ast.NamedExpr: "an assignment", ast.JoinedStr: "an f-string", ast.Starred: "unpacking"}
    return names.get(type(node), type(node).__name__)


# -- evaluation: the checked tree only --------------------------------------------------------------------
def _eval(node: ast.AST, message: dict) -> Any:
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_eval(v, message) for v in node.values)
        return any(_eval(v, message) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, message)
        return (not value) if isinstance(node.op, ast.Not) else -value
    if isinstance(node, ast.Compare):
        return _compare(node, message)
    if isinstance(node, (ast.Name, ast.Attribute)):
        return _lookup(message, _field_path(node))
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_eval(e, message) for e in node.elts)
    raise FilterError(f"{_describe(node)} is not allowed in a filter")  # unreachable after _check


def _compare(node: ast.Compare, message: dict) -> bool:
    left = _eval(node.left, message)
    for op, right_node in zip(node.ops, node.comparators):
        right = _eval(right_node, message)
        try:
            ok = _COMPARE[type(op)](left, right)
        except TypeError:  # None > 1, 'a' < 2, 1 in 5: a message that does not fit is simply no match
            return False
        if not ok:
            return False
        left = right
    return True


def _lookup(message: Any, path: tuple[str, ...]) -> Any:
    value = message
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value
