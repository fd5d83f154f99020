"""Static rules for a generated ``transform(batch)`` function (DESIGN.md §8).

The checks here are advisory for the reflector (precise, line-numbered messages);
the sandbox enforces the same policy at run time, so a rule missed here is still
not exploitable there.
"""
from __future__ import annotations

import ast
import re

from services.agents.qa import Finding

from services.agents.qa.sandbox_child import INSPECT_ATTRIBUTES, SAFE_ATTRIBUTES

# Modules the sandbox pre-imports and injects (each with only its allow-listed names); nothing else.
ALLOWED_MODULES = frozenset(m.split(".")[0] for m in SAFE_ATTRIBUTES)

# Builtins that execute code, reach files or introspect/mutate namespaces.
FORBIDDEN_NAMES = frozenset({
    "exec", "eval", "compile", "open", "__import__", "globals", "locals", "vars",
    "breakpoint", "input", "help", "exit", "quit", "setattr", "delattr", "memoryview",
    # Not offered by the sandbox either: introspection and descriptor factories.
    "dir", "super", "type", "classmethod", "staticmethod", "property", "object",
})

# Module-level statements that define things rather than do work.
_DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.Assign, ast.AnnAssign,
                ast.ClassDef)

FILENAME = "<transform>"


def check_transform_code(code: str) -> list[Finding]:
    """All findings for ``code``; an empty list means it may be run in the sandbox."""
    try:
        tree = ast.parse(code or "", filename=FILENAME)
    except SyntaxError as e:
        return [_syntax_finding(e)]
    findings = _entry_point_findings(tree) + _module_level_findings(tree)
    aliases = _module_aliases(tree)
    for node in ast.walk(tree):
        findings += _node_findings(node) + _module_attribute_findings(node, aliases)
    return findings + _restricted_findings(code, _flagged_lines(findings))


def _syntax_finding(e: SyntaxError) -> Finding:
    text = (e.text or "").strip()
    near = f" near {text!r}" if text else ""
    return Finding("python-syntax", "error", f"syntax error at line {e.lineno}, col {e.offset}: {e.msg}{near}")


# ---------------------------------------------------------------- entry point


def _entry_point_findings(tree: ast.Module) -> list[Finding]:
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == "transform"]
    if not defs:
        return [Finding("entry-point", "error", "no top-level `def transform(batch)`: define exactly one")]
    out = [
        Finding("entry-point", "error", f"line {d.lineno}: `transform` is defined again; define it exactly once")
        for d in defs[1:]
    ]
    return out + _signature_findings(defs[0])


def _signature_findings(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[Finding]:
    where = f"line {fn.lineno}"
    if isinstance(fn, ast.AsyncFunctionDef):
        return [Finding("entry-point", "error", f"{where}: `transform` must be a plain `def`, not `async def`")]
    a = fn.args
    params = [p.arg for p in a.posonlyargs + a.args]
    extra = a.vararg or a.kwarg or a.kwonlyargs or a.defaults
    if params != ["batch"] or extra:
        return [Finding("entry-point", "error",
                        f"{where}: signature must be exactly `def transform(batch)`, got `def transform({ast.unparse(a)})`")]
    return []


def _module_level_findings(tree: ast.Module) -> list[Finding]:
    out = []
    for i, node in enumerate(tree.body):
        is_docstring = i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        if not isinstance(node, _DEFINITIONS) and not is_docstring:
            out.append(Finding("module-level", "warning",
                               f"line {node.lineno}: module-level `{type(node).__name__}` statement; "
                               "keep module level to imports, constants and functions"))
    return out


# ---------------------------------------------------------------- forbidden constructs


def _node_findings(node: ast.AST) -> list[Finding]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return _import_findings(node)
    if isinstance(node, ast.Attribute) and _is_dunder(node.attr):
        return [_err("dunder", node, f"access to `.{node.attr}` is not allowed (no dunder attributes)")]
    if isinstance(node, ast.Attribute) and node.attr in INSPECT_ATTRIBUTES:
        return [_err("internals", node, f"access to `.{node.attr}` is not allowed (frames, code and generator "
                                        "internals are out of reach)")]
    if isinstance(node, ast.Attribute) and node.attr in ("format", "format_map"):
        return [_err("str-format", node, f"`.{node.attr}()` is not allowed (a format string can read "
                                         "attributes); use an f-string")]
    if isinstance(node, ast.Name) and (node.id in FORBIDDEN_NAMES or _is_dunder(node.id)):
        return [_err("forbidden-name", node, f"`{node.id}` is not allowed in a transform")]
    if isinstance(node, ast.Call):
        return _getattr_findings(node)
    if isinstance(node, (ast.Global, ast.Nonlocal)):
        kw = "global" if isinstance(node, ast.Global) else "nonlocal"
        return [_err("scope", node, f"`{kw}` is not allowed; return values instead")]
    return []


def _import_findings(node: ast.Import | ast.ImportFrom) -> list[Finding]:
    if isinstance(node, ast.ImportFrom):
        if node.level:
            return [_err("import", node, "relative imports are not allowed")]
        if (node.module or "") in SAFE_ATTRIBUTES:
            return [_not_offered(node, node.module, a.name) for a in node.names
                    if a.name not in SAFE_ATTRIBUTES[node.module] and a.name != "abc"]
        names = [node.module or ""]
    else:
        names = [alias.name for alias in node.names]
    allowed = ", ".join(sorted(ALLOWED_MODULES))
    return [
        _err("import", node, f"import of `{name}` is not allowed; allowed modules: {allowed}")
        for name in names if name.split(".")[0] not in ALLOWED_MODULES
    ]


def _module_aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> allowed module (``import collections.abc as abc`` binds abc to collections.abc)."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in SAFE_ATTRIBUTES:
                    out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
    return out


def _module_attribute_findings(node: ast.AST, aliases: dict[str, str]) -> list[Finding]:
    if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases):
        return []
    module = aliases[node.value.id]
    if node.attr in SAFE_ATTRIBUTES[module] or (module == "collections" and node.attr == "abc"):
        return []
    return [] if _is_dunder(node.attr) else [_not_offered(node, module, node.attr)]


def _not_offered(node: ast.AST, module: str, name: str) -> Finding:
    offered = ", ".join(sorted(SAFE_ATTRIBUTES[module]))
    return _err("module-attribute", node, f"`{module}.{name}` is not offered in the sandbox; {module} offers: "
                                          f"{offered}")


def _getattr_findings(call: ast.Call) -> list[Finding]:
    if not (isinstance(call.func, ast.Name) and call.func.id in ("getattr", "hasattr")) or len(call.args) < 2:
        return []
    attr = call.args[1]
    if isinstance(attr, ast.Constant) and isinstance(attr.value, str):
        if attr.value.startswith("_"):
            return [_err("dunder", call, f"{call.func.id}(..., {attr.value!r}) reaches a private attribute")]
        if attr.value in INSPECT_ATTRIBUTES:
            return [_err("internals", call, f"{call.func.id}(..., {attr.value!r}) reaches interpreter internals")]
        return []
    return [Finding("dynamic-getattr", "warning",
                    f"line {call.lineno}: {call.func.id}() with a computed name; the sandbox refuses names starting with '_'")]


def _restricted_findings(code: str, flagged: set[int]) -> list[Finding]:
    """What RestrictedPython itself refuses (the sandbox compiles with it), minus lines already reported."""
    from RestrictedPython import compile_restricted_exec  # heavy; only when checking

    result = compile_restricted_exec(code, filename=FILENAME)
    return [Finding("restricted-python", "error", str(msg)) for msg in result.errors
            if _line_of(str(msg), r"^Line (\d+):") not in flagged]


def _flagged_lines(findings: list[Finding]) -> set[int]:
    return {n for f in findings if f.is_error and (n := _line_of(f.message, r"^line (\d+)")) is not None}


def _line_of(message: str, pattern: str) -> int | None:
    m = re.match(pattern, message)
    return int(m.group(1)) if m else None


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _err(rule: str, node: ast.AST, message: str) -> Finding:
    return Finding(rule, "error", f"line {node.lineno}, col {node.col_offset + 1}: {message}")
