"""Validation library for the qa-validator agent (DESIGN.md §5, §8).

Modules (import them directly; this package stays light because the sandbox
child imports it too):

- ``sql_rules``    static checks of source / target / transform SQL (sqlglot + sqlparse)
- ``python_rules`` static checks of a ``transform(batch)`` function (ast + RestrictedPython)
- ``sandbox``      runs a transform in a resource-limited, network-less subprocess
- ``dry_run``      applies transform SQL (DuckDB) and/or Python (sandbox) to sample rows
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    """One problem found by a check; ``message`` is written for the reflector to act on."""

    rule: str
    severity: Severity
    message: str
    statement: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def __str__(self) -> str:
        # Events carry findings as plain strings (RecordQaResult.findings).
        return f"[{self.severity}] {self.rule}: {self.message}"


def has_errors(findings: list[Finding]) -> bool:
    return any(f.is_error for f in findings)


__all__ = ["Finding", "Severity", "has_errors"]
