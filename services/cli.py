"""The `aietl` command line."""
from __future__ import annotations

import json
import os
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
    from services.core.kafka import publish_schemas, super_admin_client
    from topology.acls import setup_bus
    from topology.model import load_topology
    from topology.ops import apply

    admin = super_admin_client(settings)
    apply(load_topology(), admin, settings.topic_prefix, log=typer.echo)
    acls = setup_bus(settings, load_topology(), admin, log=typer.echo)
    n = publish_schemas(settings, SchemaCatalog())
    typer.echo(f"topics and {acls} ACLs in place under {settings.topic_prefix!r}; {n} schemas published")


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
def credentials() -> None:
    """Print how to reach the local stack's servers by hand (psql, redis-cli, clickhouse-client): their
    passwords are derived from <state_dir>/stack.secret by `aietl up`. Treat the output as a secret."""
    from urllib.parse import urlparse

    s = _settings()
    redis_pw = urlparse(s.redis_url).password or ""
    typer.echo(f"redis:      redis-cli -h {urlparse(s.redis_url).hostname} -p {urlparse(s.redis_url).port or 6379}"
               + (f" -a '{redis_pw}' --no-auth-warning" if redis_pw else ""))
    typer.echo(f"clickhouse: clickhouse-client --host {s.clickhouse_host} --port {s.clickhouse_port} "
               f"--user {s.clickhouse_user}" + (f" --password '{s.clickhouse_password}'" if s.clickhouse_password else ""))
    typer.echo(f"postgres:   psql '{s.postgres_dsn}'")


@app.command()
def down() -> None:
    """Stop the workers and gateway, then the stack components that `up` started (reused servers stay)."""
    from infra.stack import down as stack_down
    from services.processes import stop_all

    settings = _settings()
    stop_all(settings, log=typer.echo)
    stack_down(settings, log=typer.echo)


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="One JSON document: stack, workers, readiness."))\
        -> None:
    """Show each stack component, its address and health; each worker's pid, restarts, last crash and state;
    and whether every processor has live members in its consumer group (with the lag per group)."""
    from dataclasses import asdict

    from infra.stack import status as stack_status
    from services.processes import worker_states

    settings = _settings()
    rows = stack_status(settings)
    workers = worker_states(settings)
    if "supervisor" in workers:  # it may run only some workers: those are the ones readiness expects
        settings = settings.model_copy(update={"processors": ",".join(
            n for n in workers if n not in ("supervisor", "gateway"))})
    readiness = _readiness(settings) if all(r.healthy for r in rows) else {"ready": False, "error": "stack down"}
    if as_json:
        typer.echo(json.dumps({"stack": [asdict(r) for r in rows], "workers": workers, "readiness": readiness},
                              indent=2, default=str))
    else:
        _print_status(rows)
        for name, w in workers.items():
            crash = w.get("last_crash") or {}
            how = crash and (f"signal {crash['signal']}" if crash.get("signal") else f"exit {crash.get('exit_code')}")
            typer.echo(f"{name}: {w['state']}" + (f", pid {w['pid']}" if w.get("pid") else "")
                       + (f", {w['restarts']} restart(s)" if w.get("restarts") else "")
                       + (f", last crash {crash['at']} ({how})" if crash else "")
                       + (f" — {w['reason']}" if w.get("state") == "failed" else ""))
        if readiness.get("ready"):
            typer.echo("ready: every processor has live consumers")
        else:
            typer.echo(f"NOT ready: {readiness.get('error') or 'missing ' + ', '.join(readiness['missing'])}")
    if not all(r.healthy for r in rows):
        raise typer.Exit(1)


def _readiness(settings) -> dict:
    from services.core.kafka import admin_client
    from services.readiness import expected_processors, processor_health

    try:
        groups = processor_health(settings, admin_client(settings), expected_processors(settings))
    except Exception as exc:  # the broker's answer is what is reported, not a traceback
        return {"ready": False, "error": f"{type(exc).__name__}: {exc}"}
    missing = [g.processor for g in groups if not g.live]
    return {"ready": not missing, "missing": missing, "processors": {g.processor: g.to_dict() for g in groups}}


@app.command()
def worker(name: str = typer.Argument(..., help=(
        "Processor name: pipeline-aggregate, projector, llm-router, planner, sql-expert, python-coder, "
        "schema-analyst, qa-validator, reflector, executor, scheduler, kafka-trigger, metrics-sink."))) -> None:
    """Run one stream processor in the foreground (scale out by starting more: Kafka balances them; give a
    second executor its own AIETL_INSTANCE_ID, pipelines are shared between executors by Redis leases)."""
    import logging

    from services.core.faust_app import run_worker
    from services.runtime import WORKERS, build_worker

    if name not in WORKERS:
        typer.echo(f"unknown worker {name!r}; known: {', '.join(sorted(WORKERS))}", err=True)
        raise typer.Exit(2)
    # Every Kafka client of this process authenticates as the processor (ACLs from topology/); also the
    # settings a connector loads itself (a connection to the platform's broker).
    os.environ["AIETL_KAFKA_PRINCIPAL"] = name
    settings = _settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sys.argv = [sys.argv[0]]  # Faust's worker parses argv; it must not see ours
    run_worker(build_worker(name, settings), loglevel=settings.log_level)


@app.command()
def gateway(host: Optional[str] = None, port: Optional[int] = None) -> None:
    """Run the HTTP gateway (FastAPI) in the foreground."""
    import uvicorn

    from gateway_api.app import create_app

    os.environ["AIETL_KAFKA_PRINCIPAL"] = "gateway"
    settings = _settings()
    uvicorn.run(create_app(settings), host=host or settings.gateway_host, port=port or settings.gateway_port,
                log_level="info")


@app.command()
def start(workers: Optional[str] = typer.Option(None, help="Comma-separated workers (default: every one)."),
          timeout: float = typer.Option(90.0, help="Seconds to wait for readiness.")) -> None:
    """Start the supervisor in the background: it runs the workers and the gateway and restarts a crashed
    one with backoff. Returns when the gateway is ready and every worker's consumer group is stable."""
    from services.processes import start_supervised
    from services.runtime import WORKERS

    names = [w.strip() for w in workers.split(",") if w.strip()] if workers else list(WORKERS)
    unknown = sorted(set(names) - set(WORKERS))
    if unknown:
        typer.echo(f"unknown worker(s) {', '.join(unknown)}; known: {', '.join(sorted(WORKERS))}", err=True)
        raise typer.Exit(2)
    settings = _settings()
    try:
        start_supervised(settings, names, log=typer.echo, timeout=timeout)
    except RuntimeError as exc:
        typer.echo(f"not started: {exc}", err=True)
        raise typer.Exit(1) from None
    base = f"http://{settings.gateway_host}:{settings.gateway_port}"
    typer.echo(f"gateway ready: {base}  (API docs {base}/docs)")
    _announce_local_key(settings, base)


def _local_key(settings) -> str:
    """AIETL_API_KEY, else the local tenant's admin key kept in .aietl/api_key (made on first use)."""
    from services.identity import IdentityError
    from services.identity.local import ensure_local_key

    try:
        return ensure_local_key(settings)[0]
    except IdentityError as exc:
        typer.echo(f"no API key: {exc}", err=True)
        raise typer.Exit(1) from None


def _announce_local_key(settings, base: str) -> None:
    """Every route but /healthz and /readyz needs a key: make the local admin's and say how to use it."""
    from services.identity.local import ENV, key_file

    if os.environ.get(ENV):
        return  # the caller brought its own key
    _local_key(settings)
    path = key_file(settings)
    typer.echo(f"API key of tenant {settings.tenant_id!r} (admin) in {path} (0600); use it as\n"
               f"  export {ENV}=$(cat {path})\n"
               f"  curl -H \"Authorization: Bearer ${ENV}\" {base}/api/v1/pipelines")


@app.command()
def probe(name: str = typer.Argument(..., help="A worker name, or `gateway`.")) -> None:
    """Health check for a process manager (docker compose, systemd): exit 0 when the worker's consumer group
    has live members (the gateway: when /healthz answers), 1 otherwise."""
    import httpx

    from services.core.kafka import admin_client
    from services.readiness import processor_health
    from services.runtime import WORKERS

    settings = _settings()
    try:
        if name == "gateway":
            ok = httpx.get(f"http://127.0.0.1:{settings.gateway_port}/healthz", timeout=3).status_code == 200
        elif name in WORKERS:
            ok = processor_health(settings, admin_client(settings), [name])[0].live
        else:
            typer.echo(f"unknown process {name!r}", err=True)
            raise typer.Exit(2)
    except Exception as exc:  # unreachable broker or gateway: unhealthy, with the reason
        if isinstance(exc, typer.Exit):
            raise
        typer.echo(f"{name}: {type(exc).__name__}: {exc}", err=True)
        ok = False
    typer.echo(f"{name}: {'healthy' if ok else 'NOT healthy'}")
    raise typer.Exit(0 if ok else 1)


@app.command(hidden=True)
def supervise(workers: str = typer.Option(..., help="Comma-separated workers to run.")) -> None:
    """The supervisor in the foreground (what `aietl start` runs in the background)."""
    import logging

    from services.supervisor import Supervisor

    settings = _settings()
    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s %(levelname)s %(message)s")
    Supervisor(settings, [w for w in workers.split(",") if w]).run()


@app.command()
def stop() -> None:
    """Stop the supervisor and everything it runs (and any worker or gateway started otherwise)."""
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


DEMO_REQUEST = ("Load only paid orders with a positive amount from PostgreSQL shop.orders into ClickHouse "
                "analytics.daily_revenue, summing amount per day")


def demo_connections(settings, data_dir) -> list[dict]:
    """The tenant's default connections for the demo: the local stack's servers and the demo files. The
    servers are reached as the demo's least-privilege users, never the platform's (docs/SECURITY.md §12)."""
    return [
        {"name": "warehouse-pg", "kind": "postgres", "params": {
            "host": settings.postgres_host, "port": settings.postgres_port, "database": settings.postgres_db,
            "user": settings.postgres_demo_user}, "secrets": {"password": settings.postgres_demo_password}},
        {"name": "analytics-ch", "kind": "clickhouse", "params": {
            "host": settings.clickhouse_host, "port": settings.clickhouse_port,
            "user": settings.clickhouse_demo_user}, "secrets": {"password": settings.clickhouse_demo_password}},
        {"name": "shop-files", "kind": "file", "params": {"folder": str(data_dir)}, "secrets": {}},
        {"name": "events", "kind": "kafka", "params": {"bootstrap": settings.kafka_bootstrap}, "secrets": {}},
    ]


@app.command()
def demo(description: str = typer.Option(DEMO_REQUEST, help="What to ask for."),
         run: bool = typer.Option(True, help="Deploy the draft, run it once and print the target's rows.")) -> None:
    """Load the demo shop data, register connections, ask the running system for a pipeline, follow the
    agents until the draft is ready (offline: the builtin provider), then deploy it, run it and show the
    rows it loaded. Calls the gateway with AIETL_API_KEY, else the local admin key in .aietl/api_key."""
    import httpx

    from services.demo.load import ensure_demo_data

    settings = _settings()
    base = f"http://{settings.gateway_host}:{settings.gateway_port}"
    data_dir = ensure_demo_data(settings)
    typer.echo(f"demo data: {data_dir} (PostgreSQL schema shop)")
    headers = {"Authorization": f"Bearer {_local_key(settings)}"}
    with httpx.Client(base_url=base, timeout=10, headers=headers) as c:
        for conn in demo_connections(settings, data_dir):
            resp = c.post("/api/v1/connections", json=conn)
            if resp.status_code not in (201, 409):
                typer.echo(f"connection {conn['name']}: {resp.status_code} {resp.text}", err=True)
                raise typer.Exit(1)
        resp = c.post("/api/v1/pipelines", json={"description": description})
        resp.raise_for_status()
        pid = resp.json()["pipeline_id"]
        typer.echo(f"\nPOST /api/v1/pipelines {description!r}\n  -> 202 pipeline {pid}")
        state = _follow(c, pid)
        _show_draft(state, base, pid)
        if run and state["status"] == "draft_ready":
            spec = json.loads(state["versions"][-1]["artifacts"]["spec_json"])
            if description == DEMO_REQUEST:  # never drop a table named by someone else's request
                _fresh_demo_target(settings, spec)
            run_state = _deploy_and_run(c, pid)
            _show_rows(settings, spec, run_state)
            typer.echo(f"\nlook further: {base}/api/v1/runs/{run_state['run_id']}  ·  "
                       f"{base}/api/v1/pipelines/{pid}/runs  ·  {base}/api/v1/pipelines/{pid}/events")


def _deploy_and_run(client, pid: str, timeout: float = 120.0) -> dict:
    resp = client.post(f"/api/v1/pipelines/{pid}/deploy", json={}, timeout=30)
    if resp.status_code not in (200, 202):
        typer.echo(f"deploy: {resp.status_code} {resp.text}", err=True)
        raise typer.Exit(1)
    typer.echo(f"\nPOST /api/v1/pipelines/{pid}/deploy -> {resp.status_code}")
    resp = client.post(f"/api/v1/pipelines/{pid}/runs", json={"params": {}}, timeout=30)
    if resp.status_code != 202:
        typer.echo(f"run: {resp.status_code} {resp.text}", err=True)
        raise typer.Exit(1)
    run_id = resp.json()["run_id"]
    typer.echo(f"POST /api/v1/pipelines/{pid}/runs -> 202 run {run_id}")
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        got = client.get(f"/api/v1/runs/{run_id}")
        if got.status_code == 200:
            last = got.json()
            if last["status"] in ("succeeded", "failed", "cancelled"):
                break
        time.sleep(0.3)
    if not last or last["status"] != "succeeded":
        typer.echo(f"the run did not succeed: {json.dumps(last, indent=2)}", err=True)
        raise typer.Exit(1)
    typer.echo(f"run {last['status']}: {last['rows_read']} rows read, {last['rows_written']} written in "
               f"{last['batches']} batch(es), {last['duration_ms']} ms")
    return last


def _ch_client(settings):
    from clickhouse_driver import Client

    return Client(host=settings.clickhouse_host, port=settings.clickhouse_port, user=settings.clickhouse_user,
                  password=settings.clickhouse_password)


def _fresh_demo_target(settings, spec: dict) -> None:
    """The demo appends per-day sums; a second `make run` would add them again, so its table starts afresh."""
    target = spec["target"]
    if target["kind"] == "clickhouse" and target["table"].startswith("analytics."):
        _ch_client(settings).execute(f"DROP TABLE IF EXISTS {target['table']}")
        typer.echo(f"(the demo starts its target {target['table']} afresh)")


def _show_rows(settings, spec: dict, run_state: dict, limit: int = 15) -> None:
    target = spec["target"]
    if target["kind"] != "clickhouse":
        typer.echo(f"target: {target}")
        return
    client = _ch_client(settings)
    rows, cols = client.execute(f"SELECT * FROM {target['table']} ORDER BY 1 LIMIT {limit}", with_column_types=True)
    (total,), = client.execute(f"SELECT count() FROM {target['table']}")
    typer.echo(f"\n{target['table']} in ClickHouse ({total} rows; the first {len(rows)}):")
    typer.echo("  " + " | ".join(c[0] for c in cols))
    for row in rows:
        typer.echo("  " + " | ".join(str(v) for v in row))


def _follow(client, pid: str, timeout: float = 60.0) -> dict:
    seen, last = 0, None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = client.get(f"/api/v1/pipelines/{pid}/events")
        if got.status_code == 200:
            for ev in got.json()["events"][seen:]:
                actor = ev["envelope"]["actor"]
                typer.echo(f"  {ev['type']:<24} (from {actor})")
            seen = len(got.json()["events"])
            last = client.get(f"/api/v1/pipelines/{pid}").json()
            if last["status"] in ("draft_ready", "draft_failed", "needs_clarification", "refused"):
                return last
        time.sleep(0.2)
    typer.echo(f"no draft within {timeout:.0f} s (last status: {last and last['status']})", err=True)
    raise typer.Exit(1)


def _show_draft(state: dict, base: str, pid: str) -> None:
    typer.echo(f"\nstatus: {state['status']}")
    if state.get("versions"):
        v = state["versions"][-1]
        a = v["artifacts"]
        typer.echo(f"draft version {v['draft_version']}: quality {v['quality_score']}, "
                   f"checks passed {', '.join(v['checks_passed'])}")
        typer.echo(f"\nextract SQL ({a.get('source_dialect')}):\n{a.get('extract_sql')}")
        if a.get("target_ddl"):
            typer.echo(f"\ntarget DDL ({a.get('target_dialect')}):\n{a['target_ddl']}")
    else:
        typer.echo(json.dumps(state.get("working"), indent=2, ensure_ascii=False))
    typer.echo(f"\ndraft: {base}/api/v1/pipelines/{pid}  ·  {base}/api/v1/pipelines/{pid}/versions  "
               f"·  {base}/api/v1/pipelines/{pid}/artifacts/flow.mmd  ·  {base}/docs")


keys_app = typer.Typer(
    help="API keys of the gateway (stored hashed in the stack's PostgreSQL, aietl_meta.aietl_api_keys). "
         "These commands talk to the database directly, so they are the operator's bootstrap: no key is "
         "needed to make the first one. Roles: viewer (reads), editor (drafts, revises, deploys, runs), "
         "admin (also connections, keys, webhook secrets, audit).",
    no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _key_store():
    from services.identity.keys import build_store

    return build_store(_settings())


def _identity_call(fn, *args, **kwargs):
    from services.identity import IdentityError

    try:
        return fn(*args, **kwargs)
    except IdentityError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)


@keys_app.command("create")
def keys_create(
    tenant: str = typer.Option(..., "--tenant", help="Tenant the key acts for; it can never reach another."),
    role: str = typer.Option(..., "--role", help="viewer | editor | admin."),
    expires_in: Optional[str] = typer.Option(None, "--expires-in",
                                             help="Lifetime such as 30d, 12h, 90m, 2w; default: no expiry."),
    name: str = typer.Option("", "--name", help="A label to recognise the key in listings."),
) -> None:
    """Create a key and print it ONCE (only its hash is stored; a lost key is revoked and replaced)."""
    key, info = _identity_call(_key_store().create, tenant, role, name=name, expires_in=expires_in,
                               created_by="cli")
    typer.echo(key)
    typer.echo(f"prefix {info.prefix} · tenant {info.tenant} · role {info.role}"
               + (f" · expires {info.expires_at.isoformat()}" if info.expires_at else ""), err=True)


@keys_app.command("list")
def keys_list(tenant: Optional[str] = typer.Option(None, "--tenant", help="Only this tenant's keys."),
              as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table.")) -> None:
    """List keys (prefix, tenant, role, name, created, expiry, revocation); secrets are never shown."""
    rows = [k.public() for k in _identity_call(_key_store().list, tenant)]
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("prefix", "tenant", "role", "name", "created", "expires", "revoked")
    for r in rows:
        table.add_row(r["prefix"], r["tenant"], r["role"], r["name"], r["created_at"] or "",
                      r["expires_at"] or "never", r["revoked_at"] or "")
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(prefix: str = typer.Argument(..., help="The key's prefix (the 8 hex chars after 'aietl_').")) -> None:
    """Revoke a key; the gateway refuses it within a few seconds (its lookup cache lives 5 s)."""
    info = _identity_call(_key_store().revoke, prefix)
    typer.echo(f"revoked {info.prefix} (tenant {info.tenant}, role {info.role})")


dlq_app = typer.Typer(
    help="Dead-letter topics: records a processor could not decode or apply, skipped so it could go on. "
         "Each log with a DLQ (topology/topology.yaml) has one writer of <log>.dlq; a letter is the "
         "original record (key, value, headers) plus error_class, error_message, error_trace, "
         "source_topic/partition/offset and dead_lettered_by headers. TOPIC may name the log or its DLQ, "
         "with or without the topic prefix (pipelines.events.v1, aietl.pipelines.events.v1.dlq).",
    no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


def _dlq_call(fn, *args, **kwargs):
    from services.core.dlq import DlqError

    try:
        return fn(*args, **kwargs)
    except DlqError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)


@dlq_app.command("list")
def dlq_list(as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table.")) -> None:
    """Every dead-letter topic of this deployment's prefix: its source log, who writes it, how many letters."""
    from services.core.dlq import list_dlqs

    rows = list_dlqs(_settings())
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("dlq", "source log", "written by", "letters")
    for r in rows:
        table.add_row(r["dlq"], r["source"], ", ".join(r["written_by"]),
                      "missing: run `aietl topology apply`" if r.get("missing") else str(r["letters"]))
    Console().print(table)


@dlq_app.command("show")
def dlq_show(topic: str = typer.Argument(..., help="The log or its DLQ, e.g. pipelines.events.v1."),
             offset: Optional[int] = typer.Option(None, "--offset", help="Only the letter at this DLQ offset."),
             partition: Optional[int] = typer.Option(None, "--partition", help="Only this DLQ partition."),
             as_json: bool = typer.Option(False, "--json", help="One JSON object per letter.")) -> None:
    """The letters of a DLQ: where each came from (topic/partition/offset), the error, key, headers and
    the start of the value. Letters are addressed by their own partition and offset in the DLQ."""
    from services.core.dlq import dlq_name, letter, read_letters

    settings = _settings()
    name = _dlq_call(dlq_name, settings, topic)
    letters = [letter(rec) for rec in read_letters(settings, name, offset, partition)]
    if offset is not None and not letters:
        typer.echo(f"error: no letter at offset {offset} of {name}", err=True)
        raise typer.Exit(2)
    for row in letters:
        if as_json:
            typer.echo(json.dumps(row, ensure_ascii=False))
            continue
        typer.echo(f"{name} {row['partition']}:{row['offset']}  from {row['source_topic']} "
                   f"{row['source_partition']}:{row['source_offset']}  by {row['dead_lettered_by'] or '?'}")
        typer.echo(f"  {row['error_class']}: {row['error_message']}")
        typer.echo(f"  key {row['key']!r}  headers {row['headers']}  {row['bytes']} bytes: "
                   f"{row['value_preview']!r}")
    if not as_json:
        typer.echo(f"{len(letters)} letter(s)", err=True)


@dlq_app.command("replay")
def dlq_replay(topic: str = typer.Argument(..., help="The log or its DLQ, e.g. pipelines.events.v1."),
               offset: Optional[int] = typer.Option(None, "--offset", help="Re-publish the letter at this DLQ offset."),
               partition: Optional[int] = typer.Option(None, "--partition",
                                                       help="With --offset: the DLQ partition (else every "
                                                            "partition's letter at that offset)."),
               replay_all: bool = typer.Option(False, "--all", help="Re-publish every letter of the DLQ.")) -> None:
    """Re-publish letters to the topic they came from, with the original key and headers (the dead
    letter's own headers removed), e.g. once the cause is fixed. The DLQ keeps them (Kafka cannot delete
    one record); a replayed record that fails again becomes a new letter."""
    from services.core.dlq import dlq_name, read_letters, replay_letters

    if (offset is None) == (not replay_all):
        typer.echo("error: give exactly one of --offset N or --all", err=True)
        raise typer.Exit(2)
    settings = _settings()
    name = _dlq_call(dlq_name, settings, topic)
    letters = read_letters(settings, name, offset, partition)
    if not letters:
        typer.echo(f"error: no letter {'at offset %d of ' % offset if offset is not None else 'in '}{name}", err=True)
        raise typer.Exit(2)
    landed = _dlq_call(replay_letters, settings, letters)
    for rec, (t, p, o) in zip(letters, landed):
        typer.echo(f"replayed {name} {rec.partition}:{rec.offset} -> {t} {p}:{o}")
    typer.echo(f"{len(landed)} letter(s) re-published", err=True)


def main() -> None:
    app(prog_name="aietl")


if __name__ == "__main__":
    main()
