"""The hostile-input corpus (tests/security/corpus/*.yaml): loading and the tried/blocked tally."""
from __future__ import annotations

from collections import Counter
from functools import lru_cache
from pathlib import Path

import yaml

CORPUS = Path(__file__).parent / "corpus"


@lru_cache(maxsize=None)
def load(name: str) -> dict:
    return yaml.safe_load((CORPUS / name).read_text())


def tally(title: str, results: list[tuple[dict, str]]) -> str:
    """'tried N, blocked B (expected block E), passed P' plus a line per attack class."""
    tried = len(results)
    blocked = sum(got == "block" for _, got in results)
    expected = sum(entry["verdict"] == "block" for entry, _ in results)
    by_class = Counter(entry["class"] for entry, got in results if got == "block")
    lines = [f"{title}: tried {tried}, blocked {blocked} (expected to block {expected}), passed {tried - blocked}"]
    lines += [f"  {cls}: {n} blocked" for cls, n in sorted(by_class.items())]
    return "\n".join(lines)
