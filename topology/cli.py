"""`python -m topology check | apply | render` (also `aietl topology ...`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Declared Kafka topics and processors: check them, create them, draw them.",
                  no_args_is_help=True)


def _load():
    from topology.model import load_topology

    return load_topology()


@app.command()
def check() -> None:
    """Check the topology: schemas exist, consumed topics have producers, co-partitioning holds."""
    from services.core.avro import SchemaCatalog
    from topology.ops import check as run_check

    problems = run_check(_load(), set(SchemaCatalog().by_name))
    for p in problems:
        typer.echo(f"problem: {p}", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo("topology ok")


@app.command()
def apply() -> None:
    """Create missing topics and align partitions/configs on the configured Kafka (idempotent)."""
    from services.core.kafka import admin_client
    from services.core.settings import load_settings
    from topology.ops import apply as run_apply

    settings = load_settings()
    actions = run_apply(_load(), admin_client(settings), settings.topic_prefix, log=typer.echo)
    typer.echo(f"{len(actions)} topics in place under prefix {settings.topic_prefix!r}")


@app.command()
def render(svg: Optional[Path] = typer.Option(None, help="Also write an SVG here (needs graphviz).")) -> None:
    """Print the topology as a Mermaid flowchart."""
    from services.core.settings import load_settings
    from topology.ops import render_mermaid, render_svg

    topo = _load()
    prefix = load_settings().topic_prefix
    typer.echo(render_mermaid(topo, prefix))
    if svg is not None:
        if render_svg(topo, svg, prefix) is None:
            typer.echo("graphviz `dot` is not installed: no SVG written", err=True)
        else:
            typer.echo(f"wrote {svg}")
