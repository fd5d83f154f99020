"""executor: runs deployed pipelines; the only writer of ``runs.events.v1``.

It consumes ``pipelines.events.v1`` (deployments, ``RunRequested``, ``RunCancelRequested``) and moves data
with the batch data plane (:func:`services.executor.plan.run_pipeline`) in a thread, one run per pipeline
at a time (a run starts from the previous one's high-water mark), several pipelines in parallel.

Crash safety: at start it folds both logs into a :class:`RunBook`, so it knows every unfinished run and
resumes it from the cursor its first attempt started at, with the same batch keys: batches that had
landed are skipped by the writers' idempotency keys (see writers.py for the per-target guarantees), and a
``BatchLoaded`` already on the log is not written again. Events are produced and acknowledged by the
broker before the next step, so the log never claims more than happened.

Several instances: every instance folds the whole log (a Faust agent for low latency plus a catch-up
read every ``RECONCILE_S``, since Faust gives each instance only some partitions) and runs a pipeline only
while it holds that pipeline's lease in Redis (:mod:`services.executor.leases`). A dead instance's leases
expire and another one resumes its runs from the log.

Retries: errors a retry can cure (connections, timeouts, Kafka transport) end the attempt with
``RunFailed(final=false)`` and a new attempt starts after an exponential backoff; others, and the last
attempt, end the run with ``RunFailed(final=true)``. Cancellation stops a run at its next batch boundary.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import deque
from typing import Awaitable, Callable, Optional

from services.core.avro import AvroCodec
from services.core.dlq import POISON, DeadLetters, record_of
from services.core.eventlog import LogReader
from services.core.faults import crash_point
from services.core.faust_app import make_app, topic
from services.core.messages import Message, new_envelope
from services.core.settings import Settings
from services.executor.runbook import RunBook, RunRecord

log = logging.getLogger("aietl.executor")
PROCESSOR = "executor"
RECONCILE_S = 2.0
RUNS = "aietl.runs.v1."
METRICS = "aietl.metrics.v1."

Send = Callable[[str, Message], Awaitable[None]]  # (logical topic, message) -> acknowledged by the broker


class RunCancelledError(Exception):
    """Raised inside a run's batch loop when a cancellation was requested."""


def is_retryable(exc: BaseException) -> bool:
    """Transport and availability problems are worth another attempt; wrong SQL or data are not."""
    from services.connectors.registry import RegistryUnavailable

    # The connection registry's database away for a moment (a PostgreSQL restart) is no fault of the run.
    if isinstance(exc, (ConnectionError, TimeoutError, RegistryUnavailable)):
        return True
    names = {c.__name__ for c in type(exc).__mro__}
    if names & {"OperationalError", "InterfaceError", "NetworkError", "SocketTimeoutError", "KafkaException",
                "ConnectTimeout", "ConnectError", "ReadTimeout", "RemoteProtocolError"}:
        return "does not exist" not in str(exc)  # psycopg reports a missing database as OperationalError
    return False


def transient_tick_error(exc: BaseException) -> bool:
    """A periodic tick (fold the logs, renew leases) that met a server of the stack away for a moment: the
    Kafka broker restarting (metadata or fetch failing on transport), Redis restarting, the registry's
    database restarting. The tick is skipped, not the process crashed."""
    import redis

    from services.core.eventlog import broker_away
    from services.executor.streaming import retryable

    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        return True
    return broker_away(exc) or retryable(exc)


def scrub_secrets(text: str, secrets) -> str:
    """Error texts become events and log lines: no connection secret may ride along (a driver may echo a DSN)."""
    for value in sorted({str(v) for v in secrets if v is not None and len(str(v)) >= 4}, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


class Executor:
    def __init__(self, settings: Settings, registry, book: RunBook, send: Send,
                 loop: asyncio.AbstractEventLoop, leases=None, catch_up=None):
        self.settings, self.registry, self.book, self._send, self.loop = settings, registry, book, send, loop
        self.leases = leases  # None: a lone executor that needs no coordination
        self._catch_up = catch_up  # async () -> None: fold what other instances logged since our last read
        self._queues: dict[str, deque] = {}
        self._drainers: dict[str, asyncio.Task] = {}
        self._slots = asyncio.Semaphore(max(1, settings.executor_concurrency))
        self._cancel: dict[str, threading.Event] = {}
        self._streams: dict[str, tuple[str, threading.Event, asyncio.Future]] = {}
        self._broken_streams: set[tuple[str, int]] = set()  # (pipeline, version) that failed: no restart loop
        self._log_seq: dict[str, int] = {}

    # -- events --------------------------------------------------------------------------------------
    def _message(self, name: str, run: RunRecord, payload: dict) -> Message:
        env = new_envelope(name, tenant_id=run.tenant_id, actor="service:executor", pipeline_id=run.pipeline_id,
                           correlation_id=run.run_id)
        return Message(name, env, payload)

    async def emit(self, run: RunRecord, short: str, payload: dict) -> None:
        """Append a run event and fold it into the book (we are its only writer)."""
        if short != "BatchLoaded":  # state changes say what ran and why, so consumers need no join
            payload = {"version": run.version, "trigger_kind": run.trigger_kind, **payload}
        msg = self._message(RUNS + short, run, {"run_id": run.run_id, **payload})
        await self._send("runs.events.v1", msg)
        self.book.apply(msg)

    async def metric(self, run: RunRecord, short: str, payload: dict) -> None:
        await self._send("metrics.v1", self._message(METRICS + short, run, {"run_id": run.run_id, **payload}))

    async def log_line(self, run: RunRecord, level: str, text: str, batch_no: int = 0) -> None:
        # Unique across restarts too (consumers dedupe on (run, seq)): every attempt or resumed stream has
        # its own RunStarted, so the attempt number leads.
        n = self._log_seq.get(run.run_id, 0) + 1
        self._log_seq[run.run_id] = n
        seq = run.attempts * 1_000_000 + n
        getattr(log, level.lower(), log.info)("run %s: %s", run.run_id, text)
        await self.metric(run, "RunLogged", {"seq": seq, "level": level, "message": text, "batch_no": batch_no})

    def _sync(self, coro) -> None:
        """From a run's thread: wait until the event loop has the event acknowledged."""
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    # -- queueing ------------------------------------------------------------------------------------
    def submit(self, run: RunRecord) -> None:
        queue = self._queues.setdefault(run.pipeline_id, deque())
        if run.finished or run.run_id in self._cancel or any(r.run_id == run.run_id for r in queue):
            return
        queue.append(run)
        task = self._drainers.get(run.pipeline_id)
        if task is None or task.done():
            self._drainers[run.pipeline_id] = self.loop.create_task(self._drain(run.pipeline_id))

    def request_cancel(self, run_id: str) -> None:
        flag = self._cancel.get(run_id)
        if flag:
            flag.set()

    async def _drain(self, pipeline_id: str) -> None:
        queue = self._queues[pipeline_id]
        while queue:
            run = queue[0]
            if not run.finished and not await self._lease(pipeline_id):
                # Another instance runs this pipeline; the reconcile loop tells us when it finished its runs.
                await asyncio.sleep(RECONCILE_S)
                continue
            if run.finished:  # the previous lease holder ran it (we learnt so when taking the lease)
                queue.popleft()
                continue
            try:
                async with self._slots:
                    await self.execute(run)
            except Exception:  # never let one run stop the pipeline's queue
                log.exception("run %s crashed the executor loop", run.run_id)
                await asyncio.sleep(1)
                continue
            queue.popleft()
        if self.leases and pipeline_id not in self._streams:
            await asyncio.to_thread(self.leases.release, pipeline_id)

    async def _lease(self, pipeline_id: str) -> bool:
        if self.leases is None:
            return True
        was_held = self.leases.holds(pipeline_id)
        if not await asyncio.to_thread(self.leases.acquire, pipeline_id):
            return False
        if not was_held and self._catch_up is not None:
            # Newly ours: the previous holder may have finished runs we have not read yet. It logged them
            # before letting the lease go, so reading the log to its end now shows them.
            await self._catch_up()
        return True

    def reconcile(self) -> None:
        """After a catch-up read: queue every unfinished run, start or stop streams."""
        for run in self.book.unfinished():
            self.submit(run)
        self.sync_streams()

    # -- one run -------------------------------------------------------------------------------------
    async def execute(self, run: RunRecord) -> None:
        if run.finished:
            return
        deployment = self.book.deployments.get(run.pipeline_id)
        if run.cancel_requested:
            await self.emit(run, "RunCancelled", {"reason": run.cancel_reason or "cancelled before it started"})
            return
        if deployment is None or deployment.lifecycle == "deleted":
            await self.emit(run, "RunCancelled", {"reason": "the pipeline was deleted before the run started"})
            return
        artifacts = self.book.artifacts.get((run.pipeline_id, run.version))
        if artifacts is None:
            await self.emit(run, "RunFailed", {"error_class": "DeploymentMissing", "retryable": False,
                                               "message": f"version {run.version} was never deployed",
                                               "attempt": run.attempts or 1, "final": True})
            return
        flag = self._cancel.setdefault(run.run_id, threading.Event())
        try:
            while not run.finished:
                await self._attempt(run, artifacts, flag)
        finally:
            self._cancel.pop(run.run_id, None)

    async def _attempt(self, run: RunRecord, artifacts: dict, flag: threading.Event) -> None:
        if run.cancel_requested:  # asked to stop while waiting to retry
            await self.emit(run, "RunCancelled", {"reason": run.cancel_reason or "cancelled"})
            return
        attempt = run.attempts + 1
        cursor = self.book.cursor_for(run)
        await self.emit(run, "RunStarted", {"version": run.version, "attempt": attempt, "cursor_from": cursor})
        await self.log_line(run, "INFO", f"attempt {attempt} started (trigger {run.trigger_kind}, "
                                         f"cursor {cursor or 'none'})")
        crash_point(self.settings, "executor.after_run_started")
        started = time.monotonic()
        try:
            totals = await asyncio.to_thread(self._run_data_plane, run, artifacts, cursor, flag)
        except RunCancelledError:
            await self.emit(run, "RunCancelled", {"reason": run.cancel_reason or "cancelled"})
            await self.log_line(run, "INFO", "cancelled at a batch boundary")
            return
        except Exception as exc:  # noqa: BLE001 - every failure becomes a RunFailed event
            await self._failed(run, attempt, exc)
            return
        crash_point(self.settings, "executor.before_run_succeeded")
        await self.emit(run, "RunSucceeded", {
            "rows_read": totals.rows_read, "rows_written": run.rows_written, "bytes": totals.bytes,
            "batches": totals.batches, "high_water_mark": totals.high_water_mark,
            "duration_ms": int((time.monotonic() - started) * 1000)})
        await self.log_line(run, "INFO", f"succeeded: {totals.rows_read} rows read, {run.rows_written} written "
                                         f"in {totals.batches} batches")

    def _secrets_of(self, run: RunRecord) -> list:
        """The secret values of the run's source and target connections (to scrub them from error texts)."""
        out: list = []
        artifacts = self.book.artifacts.get((run.pipeline_id, run.version)) or {}
        from services.domain.deployments import Deployment

        spec = Deployment(run.pipeline_id, run.tenant_id, run.version, artifacts).spec
        for end in (spec.get("source") or {}, spec.get("target") or {}):
            try:
                conn = self.registry.resolve(run.tenant_id, kind=end.get("kind"), name=end.get("connection"))
            except Exception:  # noqa: BLE001 - nothing to scrub if it cannot even be resolved
                continue
            out += list((conn.secrets or {}).values())
        return out

    async def _failed(self, run: RunRecord, attempt: int, exc: Exception) -> None:
        retryable = is_retryable(exc)
        final = not retryable or attempt >= self.settings.executor_max_attempts
        raw = str(exc).strip() or type(exc).__name__
        text = scrub_secrets(raw, await asyncio.to_thread(self._secrets_of, run))
        await self.emit(run, "RunFailed", {"error_class": type(exc).__name__, "message": text[:4000],
                                           "retryable": retryable, "attempt": attempt, "final": final})
        await self.log_line(run, "ERROR", f"attempt {attempt} failed ({type(exc).__name__}): {text[:500]}")
        if not final:
            await asyncio.sleep(self.settings.executor_retry_base_s * 2 ** (attempt - 1))

    def _run_data_plane(self, run: RunRecord, artifacts: dict, cursor: Optional[str], flag: threading.Event):
        from services.domain.deployments import Deployment
        from services.executor.plan import run_pipeline

        spec = Deployment(run.pipeline_id, run.tenant_id, run.version, artifacts).spec
        self._check_stores(run, spec, artifacts)

        def on_report(report) -> None:
            crash_point(self.settings, "executor.after_batch_write")
            if report.batch_no not in run.batches:  # a resumed run does not log a landed batch again
                self._sync(self.emit(run, "BatchLoaded", {
                    "batch_no": report.batch_no, "rows": report.rows_in, "rows_written": report.rows_written,
                    "bytes": report.bytes, "cursor": report.cursor}))
                self._sync(self.metric(run, "BatchMeasured", {
                    "batch_no": report.batch_no, "rows_in": report.rows_in, "rows_out": report.rows_out,
                    "bytes": report.bytes, "extract_ms": report.extract_ms, "transform_ms": report.transform_ms,
                    "load_ms": report.load_ms, "cursor": report.cursor}))
            crash_point(self.settings, "executor.after_batch_event")
            if flag.is_set() or run.cancel_requested:  # the latter when another instance saw the request
                raise RunCancelledError()

        return run_pipeline(spec, artifacts, self.registry, run.tenant_id, run_id=run.run_id, params=run.params,
                            cursor=cursor, batch_rows=self.settings.executor_batch_rows, on_report=on_report)

    def _check_stores(self, run: RunRecord, spec: dict, artifacts: dict) -> None:
        """Defence in depth next to QA: the platform's own stores are never a source or target, and the
        deployed SQL still passes the SQL rules."""
        from services.agents.qa.sql_rules import require_safe_sql
        from services.connectors.guards import PlatformStores, check_pipeline_stores

        check_pipeline_stores(spec, artifacts, PlatformStores.of(self.settings),
                              lambda kind, name: self.registry.resolve(run.tenant_id, kind=kind, name=name))
        require_safe_sql(spec, artifacts)

    # -- streaming pipelines -------------------------------------------------------------------------
    def sync_streams(self) -> None:
        """Start a stream for every active streaming deployment, stop the others."""
        wanted = {d.pipeline_id: d for d in self.book.deployments.active() if d.streaming}
        for pid, (run_id, stop, fut) in list(self._streams.items()):
            d = wanted.get(pid)
            if d is None or self.book.runs[run_id].version != d.version or fut.done():
                stop.set()
                if not fut.done():
                    continue  # it ends itself and closes its run; the next sync starts the new one
                del self._streams[pid]
        for pid, d in wanted.items():
            if pid not in self._streams and (pid, d.version) not in self._broken_streams and self._try_lease(pid):
                self._start_stream(d)
        for pid, run_id in list(self.book.streams.items()):  # open stream runs nothing will continue
            if pid not in wanted and pid not in self._streams and self._try_lease(pid):
                run = self.book.runs[run_id]
                self.book.streams.pop(pid, None)  # closed now; the catch-up read must not close it again
                self.loop.create_task(self.emit(run, "RunCancelled", {"reason": _stream_end_reason(self.book, pid)}))

    def _try_lease(self, pipeline_id: str) -> bool:
        # Redis answers in well under a millisecond; sync_streams runs on the loop and stays synchronous.
        return self.leases is None or self.leases.acquire(pipeline_id)

    def _start_stream(self, deployment) -> None:
        open_id = self.book.streams.get(deployment.pipeline_id)
        run = self.book.runs.get(open_id) if open_id else None
        if run is None or run.version != deployment.version:
            if run is not None:
                self.loop.create_task(self.emit(run, "RunCancelled", {"reason": "a new version was deployed"}))
            run = RunRecord(run_id=str(uuid.uuid4()), pipeline_id=deployment.pipeline_id,
                            tenant_id=deployment.tenant_id, version=deployment.version, trigger_kind="stream")
            self.book.runs[run.run_id] = run
        stop = threading.Event()
        fut = self.loop.create_task(self._stream(run, deployment, stop))
        self._streams[deployment.pipeline_id] = (run.run_id, stop, fut)

    async def _stream(self, run: RunRecord, deployment, stop: threading.Event) -> None:
        from services.executor.streaming import StreamRunner

        await self.emit(run, "RunStarted", {"version": run.version, "attempt": run.attempts + 1,
                                            "cursor_from": None})
        first = max(run.batches) + 1 if run.batches else 0
        runner = StreamRunner(self.settings, deployment, self.registry, run_id=run.run_id,
                              events=_StreamEvents(self, run), stop=stop, first_batch_no=first)
        try:
            await asyncio.to_thread(self._check_stores, run, deployment.spec, deployment.artifacts)
            await asyncio.to_thread(runner.run)
        except Exception as exc:  # noqa: BLE001 - the runner retries what can be retried itself
            self._broken_streams.add((run.pipeline_id, run.version))
            text = scrub_secrets(str(exc), await asyncio.to_thread(self._secrets_of, run))
            await self.log_line(run, "ERROR", f"stream stopped ({type(exc).__name__}): {text[:500]}")
            await self.emit(run, "RunFailed", {"error_class": type(exc).__name__, "message": text[:4000],
                                               "retryable": False, "attempt": run.attempts, "final": True})
        else:
            if not run.finished:
                await self.emit(run, "RunCancelled", {"reason": _stream_end_reason(self.book, run.pipeline_id)})
        finally:
            if self.leases and not self._queues.get(run.pipeline_id):
                await asyncio.to_thread(self.leases.release, run.pipeline_id)
            self.loop.call_soon(self.sync_streams)  # e.g. start the newly deployed version's stream


def _stream_end_reason(book: RunBook, pipeline_id: str) -> str:
    d = book.deployments.get(pipeline_id)
    if d is None or d.lifecycle == "deleted":
        return "the pipeline was deleted"
    if d.lifecycle == "paused":
        return "the pipeline was paused"
    return "a new version was deployed"


class _StreamEvents:
    """The StreamRunner's callbacks (called from its thread) as run events and metrics."""

    def __init__(self, executor: Executor, run: RunRecord):
        self.x, self.run = executor, run

    def batch_loaded(self, batch_no: int, rows_in: int, rows_written: int, nbytes: int, cursor: str,
                     timings: dict) -> None:
        self.x._sync(self.x.emit(self.run, "BatchLoaded", {"batch_no": batch_no, "rows": rows_in,
                                                           "rows_written": rows_written, "bytes": nbytes,
                                                           "cursor": cursor}))
        self.x._sync(self.x.metric(self.run, "BatchMeasured", {
            "batch_no": batch_no, "rows_in": rows_in, "rows_out": rows_written, "bytes": nbytes,
            "extract_ms": int(timings.get("extract_ms", 0)), "transform_ms": int(timings.get("transform_ms", 0)),
            "load_ms": int(timings.get("load_ms", 0)), "cursor": cursor}))

    def lag(self, lag: int, loaded_total: int) -> None:
        topic_name = self.x.book.deployments.get(self.run.pipeline_id).spec["source"]["topic"]
        self.x._sync(self.x.metric(self.run, "StreamLagMeasured", {"topic": topic_name, "lag": int(lag),
                                                                   "loaded_total": int(loaded_total)}))

    def log(self, level: str, message: str) -> None:
        self.x._sync(self.x.log_line(self.run, level, message))


# -- Faust glue ------------------------------------------------------------------------------------------

def _read_logs(settings: Settings, codec: AvroCodec, dead: DeadLetters,
               positions: dict[str, dict[int, int]]) -> list:
    """(record, message or the error decoding it) past ``positions`` in both logs; run in a thread,
    folded on the loop."""
    out = []
    for name, start in positions.items():
        reader = LogReader(settings, name)
        try:
            for rec in reader.read(start):
                try:
                    out.append((rec, dead.decode(codec, rec)))
                except POISON as exc:
                    out.append((rec, exc))
        finally:
            reader.close()
    return out


async def fold(book: RunBook, dead: DeadLetters, rec, decoded) -> bool:
    """Fold one record (a Message, or the error decoding it); poison is skipped and dead-lettered."""
    try:
        if isinstance(decoded, BaseException):
            if book.skip(rec.topic, rec.partition, rec.offset):
                raise decoded
            return False
        return book.observe(rec.topic, rec.partition, rec.offset, decoded)
    except POISON as exc:
        await dead.apoison(rec, exc)
        return False


async def _fold_logs(settings: Settings, codec: AvroCodec, book: RunBook, dead: DeadLetters) -> int:
    topics = [settings.topic("pipelines.events.v1"), settings.topic("runs.events.v1")]
    records = await asyncio.to_thread(_read_logs, settings, codec, dead, {t: book.positions(t) for t in topics})
    n = 0
    for rec, decoded in records:
        n += await fold(book, dead, rec, decoded)
    return n


def build(settings: Settings, codec: AvroCodec, registry, leases=None):
    app = make_app(settings, PROCESSOR)
    events = topic(app, settings, "pipelines.events.v1")
    book = RunBook(gated_topic=settings.topic("pipelines.events.v1"))
    dead = DeadLetters(settings, PROCESSOR)
    state: dict = {}

    async def send(logical: str, msg: Message) -> None:
        await app.producer.send_and_wait(settings.topic(logical), msg.pipeline_id.encode(),
                                         codec.encode(msg.name, msg.to_record()), partition=None, timestamp=None,
                                         headers=[("type", msg.name.encode()), ("message_id", msg.message_id.encode())])

    @app.task
    async def start_up() -> None:
        n = await _fold_logs(settings, codec, book, dead)

        async def catch_up() -> None:
            await _fold_logs(settings, codec, book, dead)

        executor = Executor(settings, registry, book, send, asyncio.get_running_loop(), leases, catch_up)
        unfinished = book.unfinished()
        log.info("executor folded %d events; %d unfinished runs to resume", n, len(unfinished))
        for run in unfinished:
            executor.submit(run)
        book.deployments.drain_changed()
        executor.sync_streams()
        state["executor"] = executor

    @app.timer(RECONCILE_S)
    async def reconcile() -> None:
        executor: Optional[Executor] = state.get("executor")
        if executor is None:
            return
        try:
            await _fold_logs(settings, codec, book, dead)
            book.deployments.drain_changed()
            executor.reconcile()
            if leases is not None:
                lost = await asyncio.to_thread(leases.renew_all)
                if lost:
                    log.warning("lost the leases of %s (another instance took over)", sorted(lost))
        except Exception as exc:  # noqa: BLE001 - only a server away for a moment is tolerated
            if not transient_tick_error(exc):
                raise
            # Before: a Kafka broker restart made this tick raise and Faust crashed the whole executor.
            log.warning("reconcile skipped, the next tick tries again: %s: %s", type(exc).__name__, exc)

    @app.agent(events)
    async def process(stream):
        async for event in stream.events():
            while "executor" not in state:
                await asyncio.sleep(0.05)
            executor: Executor = state["executor"]
            rec = record_of(event)
            try:
                m = dead.decode(codec, rec)
            except POISON as exc:
                m = exc
            if not await fold(book, dead, rec, m):
                continue  # already folded at start-up, or poison
            if m.short_name == "RunRequested":
                executor.submit(book.runs[m.payload["run_id"]])
            elif m.short_name == "RunCancelRequested":
                executor.request_cancel(m.payload["run_id"])
            if book.deployments.drain_changed():
                executor.sync_streams()

    return app
