"""The `aietl` command line."""
from __future__ import annotations

import json
import sys
import time
from typing import Optional

import typer

from topology.cli import app as topology_app

app = typer.Typer(
    help="aietl: natural language in, validated event-sourced data pipelines out.\n\n"
         "Typical use: `aietl up` (local stack), `aietl start` (workers + gateway), then POST to "
         "http://127.0.0.1:8000/api/v1/pipelines. Settings come from AIETL_* environment variables.",
    no_args_is_help=True, pretty_exceptions_show_locals=False)
app.add_typer(topology_app, name="topology")


def _settings():
    from services.core.settings import load_settings

    return load_settings()


def _print_status(rows) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("component", "address", "healthy", "managed", "detail")
    for r in rows:
        table.add_row(r.name, r.address, "yes" if r.healthy else "NO", "yes" if r.managed else "reused",
                      r.detail or "")
    Console().print(table)


def _prepare_kafka(settings) -> None:
    """Topics from topology/, then the schemas onto the compacted schemas topic."""
    from services.core.avro import SchemaCatalog
    from services.core.kafka import admin_client, publish_schemas
    from topology.model import load_topology
    from topology.ops import apply

    apply(load_topology(), admin_client(settings), settings.topic_prefix, log=typer.echo)
    n = publish_schemas(settings, SchemaCatalog())
    typer.echo(f"topics in place under {settings.topic_prefix!r}; {n} schemas published")


@app.command()
def up(skip_topics: bool = typer.Option(False, help="Only start the servers; do not create topics.")) -> None:
    """Bring up the local stack: Kafka (KRaft), Redis, ClickHouse, PostgreSQL; create topics. Idempotent."""
    from infra.stack import StackError, up as stack_up

    settings = _settings()
    try:
        rows = stack_up(settings, log=typer.echo)
    except StackError as exc:
        typer.echo(f"the local stack did not come up:\n{exc}", err=True)
        raise typer.Exit(1) from None
    _print_status(rows)
    if not all(r.healthy for r in rows):
        raise typer.Exit(1)
    if not skip_topics:
        _prepare_kafka(settings)


@app.command()
def down() -> None:
    """Stop the workers and gateway, then the stack components that `up` started (reused servers stay)."""
    from infra.stack import down as stack_down
    from services.processes import stop_all

    settings = _settings()
    stop_all(settings, log=typer.echo)
    stack_down(settings, log=typer.echo)


@app.command()
def status() -> None:
    """Show each stack component, its address and health, and the running workers."""
    from infra.stack import status as stack_status
    from services.processes import running

    settings = _settings()
    rows = stack_status(settings)
    _print_status(rows)
    for name, pid in running(settings).items():
        typer.echo(f"{name}: {'pid ' + str(pid) if pid else 'not running'}")
    if not all(r.healthy for r in rows):
        raise typer.Exit(1)


@app.command()
def worker(name: str = typer.Argument(..., help="Processor name, e.g. pipeline-aggregate, projector.")) -> None:
    """Run one stream processor in the foreground (scale out by starting more: Kafka balances them)."""
    import logging

    from services.core.faust_app import run_worker
    from services.runtime import WORKERS, build_worker

    if name not in WORKERS:
        typer.echo(f"unknown worker {name!r}; known: {', '.join(sorted(WORKERS))}", err=True)
        raise typer.Exit(2)
    settings = _settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sys.argv = [sys.argv[0]]  # Faust's worker parses argv; it must not see ours
    run_worker(build_worker(name, settings), loglevel=settings.log_level)


@app.command()
def gateway(host: Optional[str] = None, port: Optional[int] = None) -> None:
    """Run the HTTP gateway (FastAPI) in the foreground."""
    import uvicorn

    from gateway_api.app import create_app

    settings = _settings()
    uvicorn.run(create_app(settings), host=host or settings.gateway_host, port=port or settings.gateway_port,
                log_level="info")


@app.command()
def start() -> None:
    """Start every worker and the gateway in the background; returns when the gateway is ready."""
    from services.processes import start_all
    from services.runtime import WORKERS

    settings = _settings()
    start_all(settings, list(WORKERS), log=typer.echo)
    base = f"http://{settings.gateway_host}:{settings.gateway_port}"
    typer.echo(f"gateway ready: {base}  (API docs {base}/docs)")


@app.command()
def stop() -> None:
    """Stop the background workers and gateway started by `aietl start`."""
    from services.processes import stop_all

    stop_all(_settings(), log=typer.echo)


@app.command()
def replay() -> None:
    """Rebuild the Redis read model from offset 0 of the event log."""
    import redis

    from services.core.avro import build_codec
    from services.projector.app import replay as run_replay

    settings = _settings()
    n = run_replay(settings, redis.Redis.from_url(settings.redis_url), build_codec(settings.schema_registry_url))
    typer.echo(f"replayed {n} events into the read model")


@app.command()
def demo(description: str = typer.Option("copy orders to ClickHouse", help="What to ask for.")) -> None:
    """Post a pipeline request to the running gateway and follow it until it is projected."""
    import httpx

    settings = _settings()
    base = f"http://{settings.gateway_host}:{settings.gateway_port}"
    resp = httpx.post(f"{base}/api/v1/pipelines", json={"description": description}, timeout=10)
    resp.raise_for_status()
    pid = resp.json()["pipeline_id"]
    typer.echo(f"POST /api/v1/pipelines -> {resp.status_code} pipeline {pid}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = httpx.get(f"{base}/api/v1/pipelines/{pid}", timeout=5)
        if got.status_code == 200:
            typer.echo(json.dumps(got.json(), indent=2))
            events = httpx.get(f"{base}/api/v1/pipelines/{pid}/events", timeout=5).json()["events"]
            typer.echo("events: " + ", ".join(e["type"] for e in events))
            typer.echo(f"\nlook further: {base}/api/v1/pipelines/{pid}  ·  {base}/docs")
            return
        time.sleep(0.2)
    typer.echo("the pipeline did not appear in the read model within 30 s", err=True)
    raise typer.Exit(1)


def main() -> None:
    app(prog_name="aietl")


if __name__ == "__main__":
    main()
