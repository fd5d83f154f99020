"""B3a: NL -> draft latency with the builtin provider: ``python -m bench.draft``.

A deployment of its own (every worker and the gateway, on a topic prefix and tenant of their own, the demo
data and the four demo connections registered) drafts the public cases (tests/fixtures/public_cases.yaml)
through HTTP, as a user would. Latency is from the ``POST /api/v1/pipelines`` to the first final draft
status the read model shows (draft_ready, needs_clarification, refused, draft_failed), polled every 20 ms.

Reported separately: the first draft after the workers start (catalog build, model load, everything a cold
worker pays), then ``--repeat`` rounds of steady state, each round the cases one at a time, then the same
cases ``--parallel`` in flight. p50/p95 over all steady-state drafts of a mode.

Goal (issue 8): steady-state p50 <= 1 s one at a time on an idle stack. There is no baseline to run in the
same process for this path, so the load average is printed next to the figures: on a busy machine read them
with care. A missed goal prints MISSED with exit code 0 (a report, not a test); errors exit non-zero.
Everything the run created (topics, groups, Redis keys, the tenant's connections) is removed at the end.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import yaml

GOAL_P50_S = 1.0
FINAL = {"draft_ready", "draft_failed", "needs_clarification", "refused"}
CASES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "public_cases.yaml"
DEFAULT_OUT = Path(__file__).resolve().parent / "BENCHMARKS.md"
# The section this bench owns in BENCHMARKS.md (``python -m bench`` rewrites the rest; `make bench` runs it first).
BEGIN, END = "<!-- bench.draft: begin -->", "<!-- bench.draft: end -->"


def requests() -> list[tuple[str, str]]:
    return [(c["id"], c["request"]) for c in yaml.safe_load(CASES.read_text())["cases"]]


def draft_once(dep, text: str, timeout: float, stages: Optional[dict] = None) -> tuple[float, str]:
    """Seconds from the POST to a final status, and that status. With ``stages``, the gap before each
    event (from the previous event's ``occurred_at``; the first from the POST) is appended per event type,
    and the gap from the last event to the read model showing it as ``(read model)``."""
    with dep.client() as c:
        posted = time.time()
        started = time.perf_counter()
        resp = c.post("/api/v1/pipelines", json={"description": text})
        resp.raise_for_status()
        pid = resp.json()["pipeline_id"]
        while time.perf_counter() - started < timeout:
            r = c.get(f"/api/v1/pipelines/{pid}")
            if r.status_code == 200 and r.json()["status"] in FINAL:
                took, seen = time.perf_counter() - started, time.time()
                if stages is not None:
                    _stages(c.get(f"/api/v1/pipelines/{pid}/events").json()["events"], posted, seen, stages)
                return took, r.json()["status"]
            time.sleep(0.02)
    raise RuntimeError(f"no final status within {timeout}s for {text!r}")


def _stages(events: list[dict], posted: float, seen: float, stages: dict) -> None:
    from datetime import datetime

    prev = posted
    for e in events:
        at = datetime.fromisoformat(e["envelope"]["occurred_at"]).timestamp()
        stages.setdefault(e["type"], []).append(at - prev)
        prev = at
    stages.setdefault("(read model)", []).append(seen - prev)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.draft", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="steady-state rounds over the cases")
    parser.add_argument("--parallel", type=int, default=4, help="drafts in flight in the parallel mode")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up on one draft after this long")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="Markdown report whose B3a section is replaced (bench/BENCHMARKS.md); '-' for none")
    args = parser.parse_args(argv)

    from services.cli import demo_connections
    from services.core.settings import load_settings
    from services.demo.load import ensure_demo_data
    from services.runtime import WORKERS
    from tests.harness import new_deployment

    cases = requests()
    load0 = os.getloadavg()
    print(f"B3a: NL -> draft, builtin provider, {len(cases)} public cases, {args.repeat} rounds, "
          f"parallel {args.parallel}; load {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, {os.cpu_count()} CPUs")
    base = load_settings()
    shop = ensure_demo_data(base)
    dep = new_deployment(base.model_copy(update={"log_level": "warning"}), "b3", list(WORKERS))
    statuses: dict[str, int] = {}
    try:
        t0 = time.perf_counter()
        dep.start()
        with dep.client() as c:
            for conn in demo_connections(dep.settings, shop):  # what `aietl demo` registers
                r = c.post("/api/v1/connections", json=conn)
                if r.status_code not in (201, 409):
                    raise RuntimeError(f"connection {conn['name']}: {r.status_code} {r.text}")
        print(f"workers and gateway up in {time.perf_counter() - t0:.1f} s")
        cold: dict[str, list[float]] = {}
        first, status = draft_once(dep, cases[0][1], args.timeout, cold)
        print(f"first draft after start: {first:.2f} s ({cases[0][0]}: {status}); gap before each event: "
              + ", ".join(f"{k} {v[0] * 1000:.0f} ms" for k, v in cold.items()))
        serial: list[float] = []
        parallel: list[float] = []
        stages: dict[str, list[float]] = {}
        for rnd in range(args.repeat):
            for cid, text in cases:
                s, status = draft_once(dep, text, args.timeout, stages)
                serial.append(s)
                statuses[status] = statuses.get(status, 0) + 1
            with ThreadPoolExecutor(args.parallel) as pool:
                for s, status in pool.map(lambda t: draft_once(dep, t[1], args.timeout), cases):
                    parallel.append(s)
                    statuses[status] = statuses.get(status, 0) + 1
            print(f"  round {rnd + 1}: one at a time p50 {statistics.median(serial[-len(cases):]):.2f} s, "
                  f"{args.parallel} in flight p50 {statistics.median(parallel[-len(cases):]):.2f} s")
    finally:
        dep.remove()
        _remove_local_state(dep.settings)
    load1 = os.getloadavg()
    lines: list[str] = []

    def say(line: str = "") -> None:  # the summary goes to stdout and to the report
        lines.append(line)
        print(line)

    say(f"steady state, one at a time ({len(serial)} drafts): p50 {pct(serial, .5):.2f} s, "
        f"p95 {pct(serial, .95):.2f} s, max {max(serial):.2f} s")
    say(f"steady state, {args.parallel} in flight ({len(parallel)} drafts): p50 {pct(parallel, .5):.2f} s, "
        f"p95 {pct(parallel, .95):.2f} s, max {max(parallel):.2f} s")
    say("where a one-at-a-time draft's time goes (median gap before each event, from the previous one; "
        "events seen in fewer drafts are rarer paths):")
    for name, gaps in sorted(stages.items(), key=lambda kv: -statistics.median(kv[1])):
        say(f"  {name:<28} {statistics.median(gaps) * 1000:7.0f} ms median, {max(gaps) * 1000:7.0f} ms max, "
            f"in {len(gaps)} drafts")
    say(f"first draft after start: {first:.2f} s (" + ", ".join(f"{k} {v[0] * 1000:.0f} ms" for k, v in cold.items())
        + f"); outcomes {statuses}; load after {load1[0]:.2f}")
    say(f"goal steady-state p50 <= {GOAL_P50_S:.1f} s one at a time: "
        f"{'met' if pct(serial, .5) <= GOAL_P50_S else 'MISSED'}")
    if str(args.out) != "-":
        write_section(args.out, args, cases, load0, lines)
    return 0


def _remove_local_state(settings) -> None:
    """The deployment's local Qdrant store (draft memory) and Faust data dirs, named after its prefix."""
    import shutil

    prefix = settings.topic_prefix
    for parent in (settings.state_dir / "qdrant", settings.state_dir / "faust"):
        for path in parent.glob(f"{prefix}*") if parent.exists() else ():
            shutil.rmtree(path, ignore_errors=True)


def write_section(path: Path, args, cases, load0, lines: list[str]) -> None:
    import datetime as dt

    body = "\n".join([
        BEGIN, "", "## B3a: NL -> draft latency (builtin provider)", "",
        f"Written by `python -m bench.draft --repeat {args.repeat} --parallel {args.parallel}` (`make bench`); "
        "regenerate rather than edit.", "",
        f"- Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; load average at the start "
        f"{load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} on {os.cpu_count()} CPUs (no baseline exists for this "
        "path, so the figures are absolute: on a busy machine they are high for everything)",
        f"- {len(cases)} public cases (tests/fixtures/public_cases.yaml) through HTTP on a deployment of every "
        "worker; time from the POST to the read model showing a final status, polled every 20 ms", "",
        "```", *lines, "```", "", END])
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + body + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
