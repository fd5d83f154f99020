"""The router's two answer caches.

* :class:`ExactCache` (Redis): the key is a sha256 over everything that shapes the answer — tenant, task,
  prompt version, route, repair round, sampling parameters and the canonical JSON of messages and input —
  so a redelivered request is answered without calling a provider.
* :class:`SemanticCache` (Qdrant over MiniLM embeddings): reuses an answer for a request whose wording
  embeds (almost) identically. Only the free text is embedded (``input["text"]``, else the user messages);
  everything else — tenant, task, prompt version, route and a hash of the remaining input — must match
  exactly through a payload filter, so a different spec or tenant can never be served. So must the text's
  literals (names with digits, dots or underscores such as ``analytics.daily_revenue`` or ``orders_2024``,
  numbers, times, quoted strings): embeddings barely see them, and "load into analytics.t_1" and "... t_2"
  embed at 0.999+ while needing different answers. Repair rounds are never looked up or stored: they
  exist because the previous answer was wrong.

The threshold is ``services.core.embeddings.SEMANTIC_CACHE_THRESHOLD`` (see the reasoning there).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from services.core.embeddings import SEMANTIC_CACHE_THRESHOLD

from .providers import LlmRequest, canonical_json

# The parts of an LlmResult worth keeping; latency, attempts and cache status describe one delivery only.
CACHED_FIELDS = ("output", "text", "provider", "model", "tokens_in", "tokens_out")
_POINT_NAMESPACE = uuid.UUID("5b2f3d1e-8c4a-4e0b-9a57-6c1d2e3f4a5b")


def exact_key(request: LlmRequest, route: str) -> str:
    material = {"tenant": request.tenant_id, "task": request.task, "prompt_version": request.prompt_version,
                "route": route, "repair_round": request.repair_round, "temperature": request.temperature,
                "max_tokens": request.max_tokens, "messages": request.messages, "input": request.input}
    return hashlib.sha256(canonical_json(material).encode("utf-8")).hexdigest()


class ExactCache:
    def __init__(self, redis: Any, prefix: str, ttl_s: int = 7 * 86400) -> None:
        self.redis, self.prefix, self.ttl_s = redis, prefix, ttl_s

    def _key(self, key: str) -> str:
        return f"{self.prefix}cache:exact:{key}"

    async def get(self, key: str) -> dict[str, Any] | None:
        raw = await self.redis.get(self._key(key))
        return json.loads(raw) if raw else None

    async def put(self, key: str, answer: dict[str, Any]) -> None:
        value = json.dumps({k: answer[k] for k in CACHED_FIELDS}, ensure_ascii=False)
        await self.redis.set(self._key(key), value, ex=self.ttl_s)

    async def delete(self, key: str) -> None:
        """Forget an answer that turned out to be unusable (it would be served for the whole TTL)."""
        await self.redis.delete(self._key(key))


# ------------------------------------------------------------------------------------------- semantic


def semantic_text(request: LlmRequest) -> str:
    """The free text a user could phrase differently; whitespace runs collapsed (MiniLM is uncased)."""
    text = request.input.get("text")
    if not isinstance(text, str):
        text = "\n".join(m["content"] for m in request.messages if m["role"] == "user")
    return " ".join(text.split())


def semantic_context(request: LlmRequest) -> str:
    """Hash of everything that is not the embedded text; it must match exactly for a hit."""
    if isinstance(request.input.get("text"), str):
        # The messages are the prompt template (pinned by prompt_version) rendered around this text.
        rest: Any = {k: v for k, v in request.input.items() if k != "text"}
    else:
        rest = {"input": request.input, "system": [m for m in request.messages if m["role"] != "user"]}
    material = {"rest": rest, "temperature": request.temperature, "max_tokens": request.max_tokens}
    return hashlib.sha256(canonical_json(material).encode("utf-8")).hexdigest()


# Tokens an answer depends on verbatim: quoted strings, and words holding a digit, a dot or an underscore.
_LITERAL = re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`|[\w.:/-]*\d[\w.:/-]*|\w+(?:[_.]\w+)+")


def semantic_literals(text: str) -> str:
    """Hash of the text's literals (case-insensitive, in any order); equal literals are required for a hit."""
    found = sorted(m.group(0).lower().rstrip(".") for m in _LITERAL.finditer(text))
    return hashlib.sha256(json.dumps(found).encode("utf-8")).hexdigest()


@dataclass
class SemanticHit:
    answer: dict[str, Any]
    score: float
    point_id: str = ""


class SemanticCache:
    """Qdrant collection of (embedding, scope, answer). In-memory local mode by default, an on-disk local
    store with ``path``, or a Qdrant server with ``url``."""

    def __init__(self, *, url: Optional[str] = None, path: Optional[Path | str] = None,
                 api_key: Optional[str] = None, collection: str = "llm_semantic_cache",
                 threshold: float = SEMANTIC_CACHE_THRESHOLD, ttl_s: int = 7 * 86400, embedder: Any = None,
                 embedder_factory: Optional[Callable[[], Any]] = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.url, self.path, self.api_key, self.collection = url, path, api_key, collection
        self.threshold, self.ttl_s, self.clock = threshold, ttl_s, clock
        self._embedder, self._embedder_factory = embedder, embedder_factory
        self._client: Any = None
        self._init_lock: asyncio.Lock | None = None
        self._stores = 0

    @classmethod
    def from_settings(cls, settings: Any, **kw: Any) -> "SemanticCache":
        path = getattr(settings, "qdrant_path", None)
        # A local Qdrant path is locked by one process: keep the router's store apart from other users'.
        return cls(url=getattr(settings, "qdrant_url", None), path=Path(path) / "llm-router" if path else None,
                   api_key=getattr(settings, "qdrant_api_key", None),
                   threshold=SEMANTIC_CACHE_THRESHOLD,
                   ttl_s=getattr(settings, "llm_semantic_cache_ttl_s", 7 * 86400), **kw)

    @staticmethod
    def applies(request: LlmRequest) -> bool:
        return request.repair_round == 0 and bool(semantic_text(request))

    async def embed(self, request: LlmRequest) -> list[float]:
        embedder = await self._get_embedder()
        vectors = await asyncio.to_thread(embedder.embed, [semantic_text(request)])
        return [float(x) for x in vectors[0]]

    async def lookup(self, request: LlmRequest, route: str, vector: list[float]) -> SemanticHit | None:
        if not self.applies(request):
            return None
        from qdrant_client import models

        client = await self._get_client()
        found = await client.query_points(self.collection, query=vector, query_filter=models.Filter(
            must=self._scope(request, route) + [models.FieldCondition(
                key="expires_at", range=models.Range(gt=self.clock()))]),
            limit=1, score_threshold=self.threshold, with_payload=True)
        if not found.points:
            return None
        point = found.points[0]
        return SemanticHit(json.loads(point.payload["answer"]), float(point.score), str(point.id))

    async def evict(self, point_id: str) -> None:
        """Remove one stored answer (one that was rejected), so no similar request is served it."""
        from qdrant_client import models

        client = await self._get_client()
        await client.delete(self.collection, points_selector=models.PointIdsList(points=[point_id]))

    async def store(self, request: LlmRequest, route: str, vector: list[float], answer: dict[str, Any]) -> None:
        if not self.applies(request):
            return
        from qdrant_client import models

        client = await self._get_client()
        scope = self._scope_values(request, route)
        point_id = str(uuid.uuid5(_POINT_NAMESPACE, canonical_json([scope, semantic_text(request)])))
        payload = {**scope, "text": semantic_text(request), "expires_at": self.clock() + self.ttl_s,
                   "answer": json.dumps({k: answer[k] for k in CACHED_FIELDS}, ensure_ascii=False)}
        await client.upsert(self.collection, points=[models.PointStruct(id=point_id, vector=vector, payload=payload)])
        self._stores += 1
        if self._stores % 100 == 0:
            await self._purge_expired(client)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    # -- internals

    @staticmethod
    def _scope_values(request: LlmRequest, route: str) -> dict[str, str]:
        return {"tenant_id": request.tenant_id, "task": request.task, "prompt_version": request.prompt_version,
                "route": route, "context": semantic_context(request),
                "literals": semantic_literals(semantic_text(request))}

    def _scope(self, request: LlmRequest, route: str) -> list[Any]:
        from qdrant_client import models

        return [models.FieldCondition(key=k, match=models.MatchValue(value=v))
                for k, v in self._scope_values(request, route).items()]

    async def warm_up(self) -> None:
        embedder = await self._get_embedder()
        await asyncio.to_thread(embedder.embed, ["warm up"])
        await self._get_client()

    async def _get_embedder(self) -> Any:
        if self._embedder is None:
            factory = self._embedder_factory or _default_embedder
            self._embedder = await asyncio.to_thread(factory)  # loading the weights takes a moment
        return self._embedder

    async def _get_client(self) -> Any:
        if self._client is not None:
            return self._client
        self._init_lock = self._init_lock or asyncio.Lock()
        async with self._init_lock:
            if self._client is None:
                self._client = await self._open()
        return self._client

    async def _open(self) -> Any:
        from qdrant_client import AsyncQdrantClient, models

        if self.url:
            client = AsyncQdrantClient(url=self.url, api_key=self.api_key)
        elif self.path:
            Path(self.path).mkdir(parents=True, exist_ok=True)
            client = AsyncQdrantClient(path=str(self.path))
        else:
            client = AsyncQdrantClient(location=":memory:")
        if not await client.collection_exists(self.collection):
            try:
                await client.create_collection(self.collection, vectors_config=models.VectorParams(
                    size=384, distance=models.Distance.COSINE))
            except Exception:
                # Another router created it between our check and create; anything else resurfaces here.
                if not await client.collection_exists(self.collection):
                    raise
            if self.url:  # a server filters faster with payload indexes; local mode has no use for them
                for name in ("tenant_id", "task", "prompt_version", "route", "context"):
                    await client.create_payload_index(self.collection, name, models.PayloadSchemaType.KEYWORD)
        return client

    async def _purge_expired(self, client: Any) -> None:
        from qdrant_client import models

        await client.delete(self.collection, points_selector=models.FilterSelector(filter=models.Filter(
            must=[models.FieldCondition(key="expires_at", range=models.Range(lte=self.clock()))])))


def _default_embedder() -> Any:
    from services.core.embeddings import MiniLMEmbedder

    return MiniLMEmbedder()
