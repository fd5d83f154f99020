"""Semantic-cache threshold: a cached pipeline may only be reused when precision stays >= 0.99.

The figures (and every pair with its cosine) are printed in the run summary.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from services.core.embeddings import SEMANTIC_CACHE_THRESHOLD, MiniLMEmbedder, choose_threshold, cosine

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "paraphrase_pairs.yaml"
MIN_PRECISION = 0.99


def _counts(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, int]:
    hit = scores >= threshold
    return {
        "tp": int(np.sum(hit & labels)),
        "fp": int(np.sum(hit & ~labels)),
        "fn": int(np.sum(~hit & labels)),
        "tn": int(np.sum(~hit & ~labels)),
    }


@pytest.fixture(scope="module")
def scored() -> tuple[list[dict], np.ndarray, np.ndarray]:
    pairs = yaml.safe_load(FIXTURE.read_text(encoding="utf-8"))["pairs"]
    embedder = MiniLMEmbedder()
    a = embedder.embed([p["a"] for p in pairs])
    b = embedder.embed([p["b"] for p in pairs])
    return pairs, cosine(a, b), np.array([bool(p["paraphrase"]) for p in pairs])


def test_fixture_is_large_and_has_hard_negatives(scored: tuple[list[dict], np.ndarray, np.ndarray]) -> None:
    pairs, _, labels = scored
    kinds = {p["kind"] for p in pairs if not p["paraphrase"]}
    assert len(pairs) >= 40 and labels.any() and (~labels).any()
    assert {"table", "schedule", "engine", "filter"} <= kinds
    assert any(any("\u0400" <= ch <= "\u04ff" for ch in p["a"] + p["b"]) for p in pairs), "no Russian pairs"


def test_semantic_cache_threshold_precision(scored: tuple[list[dict], np.ndarray, np.ndarray], figures) -> None:
    pairs, scores, labels = scored
    threshold, precision, recall = choose_threshold(scores, labels, min_precision=MIN_PRECISION)

    lines = ["cosine     label  hit  kind        b"]
    for i in np.argsort(-scores):
        p = pairs[i]
        hit = "HIT" if scores[i] >= SEMANTIC_CACHE_THRESHOLD else "   "
        lines.append(f"{scores[i]:.6f}   {'para' if labels[i] else 'diff'}  {hit}  {p['kind']:<10}  {p['b'][:72]!r}")
    max_neg = float(scores[~labels].max())
    best_pos_below = float(scores[labels & (scores < max_neg)].max()) if np.any(labels & (scores < max_neg)) else math.nan
    counts = _counts(scores, labels, SEMANTIC_CACHE_THRESHOLD)
    hits = counts["tp"] + counts["fp"]
    cache_precision = counts["tp"] / hits if hits else math.nan
    cache_recall = counts["tp"] / int(labels.sum())
    sweep = []
    for t in (0.90, 0.95, 0.97, 0.98, 0.99, SEMANTIC_CACHE_THRESHOLD):
        c = _counts(scores, labels, t)
        prec = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else math.nan
        sweep.append(f"  t={t:.3f}: precision={prec:.3f} recall={c['tp'] / labels.sum():.3f} {c}")
    lines += [
        f"pairs={len(pairs)} positives={int(labels.sum())} negatives={int((~labels).sum())}",
        f"max negative cosine={max_neg:.6f} (precision >= {MIN_PRECISION} impossible below it; "
        f"best paraphrase under it={best_pos_below:.6f})",
        f"choose_threshold(min_precision={MIN_PRECISION}) -> threshold={threshold:.6f} "
        f"precision={precision:.3f} recall={recall:.3f}",
        f"SEMANTIC_CACHE_THRESHOLD={SEMANTIC_CACHE_THRESHOLD}: precision={cache_precision:.3f} "
        f"recall={cache_recall:.3f} {counts}",
        "sweep:",
        *sweep,
    ]
    report = "\n".join(lines)
    figures("semantic-cache threshold on labelled request pairs", report)

    assert math.isfinite(threshold), f"no threshold reaches precision {MIN_PRECISION}:\n{report}"
    assert precision >= MIN_PRECISION, report
    assert hits > 0 and cache_precision >= MIN_PRECISION, report
    # Safety margin: the constant must clear every labelled negative, not just meet the precision bar.
    assert SEMANTIC_CACHE_THRESHOLD > max_neg, report
    # The constant may sit below the measured threshold only inside the empty gap above the worst negative:
    # then it admits exactly the same hits.
    assert counts == _counts(scores, labels, threshold), report


def test_choose_threshold_picks_lowest_qualifying() -> None:
    scores = [0.2, 0.5, 0.6, 0.7, 0.8, 0.9]
    labels = [False, True, False, True, True, True]
    assert choose_threshold(scores, labels, min_precision=0.99) == (0.7, 1.0, 0.75)
    # 4 of 5 hits correct at 0.5 -> precision 0.8 qualifies for min_precision=0.8.
    assert choose_threshold(scores, labels, min_precision=0.8) == (0.5, 0.8, 1.0)


def test_choose_threshold_reports_impossible() -> None:
    threshold, precision, recall = choose_threshold([0.9, 0.5], [False, True])
    assert threshold == math.inf and math.isnan(precision) and recall == 0.0
    with pytest.raises(ValueError):
        choose_threshold([0.1], [True, False])
    with pytest.raises(ValueError):
        choose_threshold([0.1, 0.2], [False, False])
