"""Agent memory: completed drafts in Qdrant, recalled by meaning when a similar request comes in."""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Optional

DIM = 384


class DraftMemory:
    def __init__(self, client, embedder, collection: str):
        self._client = client
        self._embedder = embedder
        self._collection = collection
        self._ready = False

    @classmethod
    def local(cls, path: Path, collection: str, url: Optional[str] = None) -> "DraftMemory":
        from qdrant_client import QdrantClient

        from services.core.embeddings import MiniLMEmbedder

        path.mkdir(parents=True, exist_ok=True)
        client = QdrantClient(url=url) if url else QdrantClient(path=str(path))
        return cls(client, MiniLMEmbedder(), collection)

    def _ensure(self) -> None:
        if self._ready:
            return
        from qdrant_client import models

        if not self._client.collection_exists(self._collection):
            self._client.create_collection(self._collection, vectors_config=models.VectorParams(
                size=DIM, distance=models.Distance.COSINE))
        self._ready = True

    def warm_up(self) -> None:
        """Open the collection and run the embedder once, so the first recall costs what later ones do."""
        self._ensure()
        self._embedder.embed(["warm up"])

    def remember(self, tenant_id: str, pipeline_id: str, draft_version: int, text: str, spec_json: str) -> None:
        from qdrant_client import models

        self._ensure()
        vector = self._embedder.embed([text])[0].tolist()
        point_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{pipeline_id}/{draft_version}"))
        self._client.upsert(self._collection, points=[models.PointStruct(
            id=point_id, vector=vector, payload={"tenant_id": tenant_id, "pipeline_id": pipeline_id,
                                                 "draft_version": draft_version, "text": text,
                                                 "spec_json": spec_json})])

    def recall(self, tenant_id: str, text: str, k: int = 3, exclude_pipeline: Optional[str] = None) -> list[dict]:
        from qdrant_client import models

        self._ensure()
        vector = self._embedder.embed([text])[0].tolist()
        must = [models.FieldCondition(key="tenant_id", match=models.MatchValue(value=tenant_id))]
        must_not = ([models.FieldCondition(key="pipeline_id", match=models.MatchValue(value=exclude_pipeline))]
                    if exclude_pipeline else [])
        hits = self._client.query_points(self._collection, query=vector, limit=k,
                                         query_filter=models.Filter(must=must, must_not=must_not)).points
        return [{"id": f"{h.payload['pipeline_id']}/v{h.payload['draft_version']}", "score": round(h.score, 4),
                 "text": h.payload["text"]} for h in hits]
