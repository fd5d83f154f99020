"""The offline grammar's own corpus (tests/fixtures/grammar_corpus.yaml): every phrase class, several
phrasings each, with the outcome and the spec fragment each must compile to."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.domain.spec import PipelineSpec
from services.understanding import compile_request

FIXTURES = Path(__file__).parents[1] / "fixtures"
CORPUS = yaml.safe_load((FIXTURES / "grammar_corpus.yaml").read_text())["cases"]
# Phrase classes that need the tenant's data (a source's primary key, a column's values) name one of these
# catalogs (services/connectors/catalog.py's shape) with `catalog:`.
CATALOGS = yaml.safe_load((FIXTURES / "grammar_catalogs.yaml").read_text())


def _contains(actual: Any, expected: Any, path: str = "spec") -> None:
    """Dicts by subset, lists element by element (same length), scalars by equality."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} missing in {actual!r}"
            _contains(actual[key], value, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{path}: {actual!r} != {expected!r}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            _contains(a, e, f"{path}[{i}]")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


@pytest.mark.parametrize("case", CORPUS, ids=[f"{c['class']}:{c['text'][:60]}" for c in CORPUS])
def test_corpus_case(case):
    result = compile_request(case["text"], catalog=CATALOGS[case["catalog"]] if "catalog" in case else None)
    assert result["outcome"] == case["outcome"], result
    if result["outcome"] == "plan":
        spec = PipelineSpec.model_validate(result["spec"]).model_dump(mode="json")
        _contains(spec, case.get("expect", {}))
        assert result["understood"], "a plan lists what it understood"
        for line in case.get("understood", []):  # each named note is among what it understood
            assert any(line in u for u in result["understood"]), (line, result["understood"])
    elif result["outcome"] == "clarify":
        slots = {m.split(":", 1)[0] for m in result["missing"]} | set(result["missing"])
        assert set(case.get("missing", [])) <= slots, result
        assert result["question"]
    else:
        assert result["reason"] and "spec" not in result


@pytest.mark.parametrize("case", CORPUS[::7], ids=[c["text"][:60] for c in CORPUS[::7]])
def test_corpus_is_deterministic(case):
    catalog = CATALOGS.get(case.get("catalog"))
    first, again = (json.dumps(compile_request(case["text"], catalog=catalog), sort_keys=True, ensure_ascii=False)
                    for _ in range(2))
    assert first == again


def test_every_class_has_three_phrasings():
    classes = Counter(c["class"].removesuffix("-ask") for c in CORPUS)
    thin = {k: n for k, n in classes.items() if n < 3}
    assert not thin, f"phrase classes with fewer than 3 phrasings: {thin}"
