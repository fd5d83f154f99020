"""Artifacts of a draft, rendered from what the read model holds: name -> (text, media type)."""
from __future__ import annotations

import json


def _ddl(artifacts: dict) -> str | None:
    statements = list(artifacts.get("target_setup_sql") or []) + [artifacts.get("target_ddl")]
    statements = [s.strip().rstrip(";") + ";" for s in statements if s]
    return "\n\n".join(statements) + "\n" if statements else None


def _mermaid(spec_json: str | None) -> str | None:
    if not spec_json:
        return None
    from services.domain.spec import PipelineSpec, render_mermaid

    return render_mermaid(PipelineSpec.model_validate_json(spec_json))


def artifact_names(artifacts: dict) -> dict[str, tuple[str, str]]:
    spec_json = artifacts.get("spec_json")
    candidates = {
        "spec.json": (json.dumps(json.loads(spec_json), indent=2, ensure_ascii=False) + "\n" if spec_json else None,
                      "application/json"),
        "extract.sql": (artifacts.get("extract_sql"), "text/plain"),
        "extract_initial.sql": (artifacts.get("extract_sql_initial"), "text/plain"),
        "transform.sql": (artifacts.get("transform_sql"), "text/plain"),
        "target_ddl.sql": (_ddl(artifacts), "text/plain"),
        "transform.py": (artifacts.get("python_code"), "text/x-python"),
        "flow.mmd": (_mermaid(spec_json), "text/plain"),
        "qa.json": (artifacts.get("checks_json"), "application/json"),
    }
    return {name: (body, media) for name, (body, media) in candidates.items() if body}
