"""What is deployed where: a fold of ``pipelines.events.v1`` kept by the processors that act on deployments
(executor, scheduler, Kafka triggers, webhooks).

``PipelineDeployed`` and ``PipelineRolledBack`` carry the whole deployed draft (``artifacts_json``), so a
processor needs nothing but this log to know what to run. The fold is pure: feed it messages in log order
with :meth:`Deployments.observe`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterator, Optional

from services.core.messages import Message

LIFECYCLE_EVENTS = {"PipelineDeployed", "PipelineRolledBack", "PipelinePaused", "PipelineResumed",
                    "PipelineDeleted"}


@dataclass
class Deployment:
    pipeline_id: str
    tenant_id: str
    version: int
    artifacts: dict                    # the deployed draft: spec_json, extract_sql, transform_sql, ...
    lifecycle: str = "deployed"        # deployed | paused | deleted
    deployed_at: Optional[str] = None  # ISO time of the deploy or rollback that made this version current
    history: list = field(default_factory=list)  # versions in the order they were made current

    @property
    def spec(self) -> dict:
        raw = self.artifacts.get("spec_json") or "{}"
        return json.loads(raw) if isinstance(raw, str) else dict(raw)

    @property
    def active(self) -> bool:
        """Triggers fire and streams run only for a deployed, unpaused, undeleted pipeline."""
        return self.lifecycle == "deployed"

    @property
    def trigger(self) -> dict:
        return self.spec.get("trigger") or {"kind": "manual"}

    @property
    def schedule(self) -> dict:
        return self.spec.get("schedule") or {}

    @property
    def streaming(self) -> bool:
        return bool((self.spec.get("streaming") or {}).get("enabled"))


class Deployments:
    """Current deployment per pipeline; ``changed`` lists pipelines touched since the last ``drain``."""

    def __init__(self) -> None:
        self._by_id: dict[str, Deployment] = {}
        self._changed: set[str] = set()

    def observe(self, msg: Message) -> Optional[Deployment]:
        """Fold one event; returns the pipeline's deployment when the event changed it."""
        kind, pid = msg.short_name, msg.pipeline_id
        if kind not in LIFECYCLE_EVENTS or not pid:
            return None
        current = self._by_id.get(pid)
        if kind in ("PipelineDeployed", "PipelineRolledBack"):
            artifacts = json.loads(msg.payload["artifacts_json"])
            when = msg.envelope.get("occurred_at")
            current = Deployment(
                pipeline_id=pid, tenant_id=msg.envelope["tenant_id"], version=msg.payload["version"],
                artifacts=artifacts,
                lifecycle=current.lifecycle if current and current.lifecycle == "paused" else "deployed",
                deployed_at=when.isoformat() if hasattr(when, "isoformat") else when,
                history=(current.history if current else []) + [msg.payload["version"]])
            self._by_id[pid] = current
        elif current is None:
            return None
        elif kind == "PipelinePaused":
            current.lifecycle = "paused"
        elif kind == "PipelineResumed":
            current.lifecycle = "deployed"
        elif kind == "PipelineDeleted":
            current.lifecycle = "deleted"
        self._changed.add(pid)
        return current

    def get(self, pipeline_id: str) -> Optional[Deployment]:
        return self._by_id.get(pipeline_id)

    def active(self) -> Iterator[Deployment]:
        return (d for d in self._by_id.values() if d.active)

    def drain_changed(self) -> list[Deployment]:
        out = [self._by_id[p] for p in sorted(self._changed)]
        self._changed.clear()
        return out
