"""Token prices and cost arithmetic.

Prices are USD per 1,000 tokens. A provider config's own ``cost_in_per_1k``/``cost_out_per_1k`` always wins;
the table below only fills in well-known hosted models when the config leaves them out (list prices as of
early 2025 — configure them explicitly when it matters). Unknown models (local vLLM/Ollama/llama.cpp) cost 0.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Price:
    in_per_1k: float = 0.0
    out_per_1k: float = 0.0

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return round(tokens_in / 1000.0 * self.in_per_1k + tokens_out / 1000.0 * self.out_per_1k, 8)


FREE = Price()

# Longest matching prefix wins, so "gpt-4o-mini-2024-07-18" finds "gpt-4o-mini", not "gpt-4o".
KNOWN_PRICES: dict[str, Price] = {
    "gpt-4o-mini": Price(0.00015, 0.0006),
    "gpt-4o": Price(0.0025, 0.01),
    "gpt-4.1-nano": Price(0.0001, 0.0004),
    "gpt-4.1-mini": Price(0.0004, 0.0016),
    "gpt-4.1": Price(0.002, 0.008),
    "o3-mini": Price(0.0011, 0.0044),
    "claude-3-5-haiku": Price(0.0008, 0.004),
    "claude-3-5-sonnet": Price(0.003, 0.015),
    "claude-3-7-sonnet": Price(0.003, 0.015),
    "claude-sonnet-4": Price(0.003, 0.015),
    "claude-opus-4": Price(0.015, 0.075),
    "deepseek-chat": Price(0.00027, 0.0011),
    "deepseek-reasoner": Price(0.00055, 0.00219),
    "qwen-turbo": Price(0.00005, 0.0002),
    "qwen-plus": Price(0.0004, 0.0012),
    "qwen-max": Price(0.0016, 0.0064),
}


def lookup_price(model: str) -> Price:
    """The list price of ``model`` (longest known prefix), or free when unknown."""
    matches = [key for key in KNOWN_PRICES if model.startswith(key)]
    return KNOWN_PRICES[max(matches, key=len)] if matches else FREE


def resolve_price(model: str, in_per_1k: float | None, out_per_1k: float | None) -> Price:
    """Configured prices, falling back per side to the table."""
    listed = lookup_price(model)
    return Price(listed.in_per_1k if in_per_1k is None else in_per_1k,
                 listed.out_per_1k if out_per_1k is None else out_per_1k)
