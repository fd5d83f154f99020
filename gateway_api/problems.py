"""RFC 9457 problem details: every error a user can cause is answered as application/problem+json.

Redis or Kafka being unreachable is not the user's fault, and passes: a 503 with Retry-After, never a 500.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_S = 5

log = logging.getLogger("aietl.gateway")


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str = "", type_: str = "about:blank",
                 headers: dict | None = None, **extra):
        self.status, self.title, self.detail, self.type, self.extra = status, title, detail, type_, extra
        self.headers = headers


class KafkaUnavailable(Exception):
    """A command could not be handed to Kafka in time (broker down or unreachable)."""


def problem_response(status: int, title: str, detail: str = "", instance: str = "",
                     type_: str = "about:blank", headers: dict | None = None, **extra) -> JSONResponse:
    body = {"type": type_, "title": title, "status": status, "detail": detail, "instance": instance, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def unavailable(request: Request, what: str, exc: BaseException) -> JSONResponse:
    return problem_response(503, f"{what} unavailable", f"{type(exc).__name__}: {exc}", str(request.url.path),
                            headers={"Retry-After": str(RETRY_AFTER_S)}, unavailable=[what.lower()])


def install(app: FastAPI) -> None:
    from confluent_kafka import KafkaError, KafkaException
    from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        return problem_response(exc.status, exc.title, exc.detail, str(request.url.path), exc.type,
                                headers=exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
                  for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
        return problem_response(422, "Invalid request", detail, str(request.url.path), errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return problem_response(exc.status_code, str(exc.detail), "", str(request.url.path))

    async def _redis_down(request: Request, exc: Exception):
        return unavailable(request, "Redis", exc)

    async def _kafka_down(request: Request, exc: Exception):
        error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
        if getattr(error, "code", lambda: None)() == KafkaError.MSG_SIZE_TOO_LARGE:
            # The request's limits should keep every command smaller; if one slips through it is still
            # the request's size, not an outage.
            return problem_response(413, "Request too large", "the command is over the broker's message "
                                    "size limit", str(request.url.path))
        return unavailable(request, "Kafka", exc)

    for cls in (RedisConnectionError, RedisTimeoutError):  # BusyLoadingError (restarting) is a ConnectionError
        app.add_exception_handler(cls, _redis_down)
    for cls in (KafkaException, KafkaUnavailable, BufferError):  # BufferError: the producer's queue is full
        app.add_exception_handler(cls, _kafka_down)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "Internal error", f"{type(exc).__name__}", str(request.url.path))
