"""QA side of the platform-store rule (services/connectors/guards.py): the same check, as findings."""
from __future__ import annotations

from services.agents.qa import Finding


def check_platform_stores(spec: dict, artifacts: dict, settings, resolve=None) -> list[Finding]:
    """One error finding per platform store (topic, schema, database) the draft reads or writes;
    ``resolve`` (kind, connection name) -> Connection lets the rule see where a connection points."""
    from services.connectors.guards import PlatformStores, platform_store_problems

    return [Finding("platform-store", "error", p)
            for p in platform_store_problems(spec, artifacts, PlatformStores.of(settings), resolve)]
