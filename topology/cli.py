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
    from services.core.kafka import super_admin_client
    from services.core.settings import load_settings
    from topology.ops import apply as run_apply

    from topology.acls import setup_bus

    settings = load_settings()
    admin = super_admin_client(settings)
    actions = run_apply(_load(), admin, settings.topic_prefix, log=typer.echo)
    n = setup_bus(settings, _load(), admin, log=typer.echo)
    typer.echo(f"{len(actions)} topics and {n} ACLs in place under prefix {settings.topic_prefix!r}")


@app.command()
def acls(check: bool = typer.Option(False, "--check", help="Compare with the ACLs in the broker instead."),
         prefix: Optional[str] = typer.Option(None, help="Topic prefix (default: the settings').")) -> None:
    """Print the Kafka ACLs the topology implies; with --check, exit 1 if the broker's differ."""
    from services.core.kafka import super_admin_client
    from services.core.settings import load_settings
    from topology.acls import generate, in_broker

    settings = load_settings()
    prefix = settings.topic_prefix if prefix is None else prefix
    wanted = generate(_load(), prefix)
    if not check:
        for a in wanted:
            typer.echo(a.line())
        return
    have = {a for a in in_broker(super_admin_client(settings), "") if a.name.startswith(prefix) or a in wanted}
    for a in sorted(set(wanted) - have):
        typer.echo(f"missing: {a.line()}", err=True)
    for a in sorted(have - set(wanted)):
        typer.echo(f"extra: {a.line()}", err=True)
    if have != set(wanted):
        raise typer.Exit(1)
    typer.echo(f"{len(wanted)} ACLs under {prefix!r} match the topology")


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
