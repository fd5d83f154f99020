"""Test support: a local HTTP server that speaks the OpenAI, Anthropic and Ollama wire protocols.

One :class:`FakeLlmServer` serves ``POST /v1/chat/completions`` (OpenAI shape; ``/chat/completions`` too,
for base URLs without ``/v1``; server-sent events when the request says ``"stream": true``, as llama.cpp
and OpenAI send them), ``POST /v1/messages`` (Anthropic shape) and ``POST /api/chat`` (Ollama's own API)
on 127.0.0.1 and a free port, in a background thread. Each test scripts what the next requests get — :func:`ok`, :func:`rate_limited`,
:func:`server_error`, :func:`hang`, :func:`malformed_body`, :func:`non_json_content`, ... — and afterwards
asserts on :attr:`FakeLlmServer.requests` (method, path, headers, parsed body). When the script runs out
the ``default`` behaviour answers.

    with FakeLlmServer() as srv:
        srv.script(rate_limited("2"), ok({"answer": 42}))
        provider = OpenAICompatibleProvider(srv.openai_base_url, "sk-test", "gpt-4o-mini")
"""
from __future__ import annotations

import json
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

OPENAI_PATHS = ("/v1/chat/completions", "/chat/completions")
ANTHROPIC_PATH = "/v1/messages"
OLLAMA_PATH = "/api/chat"
_ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                          404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                          500: "api_error", 529: "overloaded_error"}


@dataclass
class Behaviour:
    """What the server does with one request."""

    kind: str  # ok | error | hang | malformed_body | text | missing_fields
    content: Any = None  # ok: a dict (sent as JSON text) or a str (sent as is); text: the raw answer text
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    tokens_in: Optional[int] = None
    tokens_out: Optional[int] = None
    usage: bool = True
    message: str = ""


def ok(content: Any, *, tokens_in: int | None = None, tokens_out: int | None = None,
       usage: bool = True, seconds: float = 0.0) -> Behaviour:
    """An answer; ``seconds`` > 0 makes the server think that long first (a slow local model)."""
    return Behaviour("ok", content=content, tokens_in=tokens_in, tokens_out=tokens_out, usage=usage,
                     seconds=seconds)


def error(status: int, message: str = "scripted error", headers: dict[str, str] | None = None) -> Behaviour:
    return Behaviour("error", status=status, message=message, headers=dict(headers or {}))


def rate_limited(retry_after: str | float | None = "1", status: int = 429) -> Behaviour:
    headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
    return error(status, "Rate limit reached, please retry later", headers)


def server_error(status: int = 500, retry_after: str | float | None = None) -> Behaviour:
    headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
    return error(status, "The server had an error while processing your request", headers)


def hang(seconds: float = 30.0) -> Behaviour:
    """Accept the request and say nothing for ``seconds`` (the client's timeout should fire first)."""
    return Behaviour("hang", seconds=seconds)


def malformed_body() -> Behaviour:
    """HTTP 200 whose body is not JSON at all."""
    return Behaviour("malformed_body")


def non_json_content(text: str = "Sure! Here is the plan you asked for: load the table daily.") -> Behaviour:
    """A well-formed envelope whose answer text is not JSON."""
    return Behaviour("text", content=text)


def missing_fields() -> Behaviour:
    """HTTP 200 JSON without the answer fields (no ``choices`` / ``content``)."""
    return Behaviour("missing_fields")


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    raw: bytes
    body: Any  # parsed JSON, or None when the body was not JSON

    @property
    def protocol(self) -> str:
        return {ANTHROPIC_PATH: "anthropic", OLLAMA_PATH: "ollama"}.get(self.path, "openai")


class FakeLlmServer:
    def __init__(self, default: Behaviour | None = None, api_key: str | None = None,
                 model: str | None = None) -> None:
        self.default = default or ok({"ok": True})
        self.api_key = api_key  # when set, requests with another key get 401
        self.model = model  # the model named in answers; None echoes the request's model
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests it was answering at once
        self._queue: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> "FakeLlmServer":
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        # A short poll interval keeps stop() (once per test) from costing half a second.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="fake-llm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases hanging handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeLlmServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    # -- scripting and inspection

    def script(self, *behaviours: Behaviour) -> "FakeLlmServer":
        with self._lock:
            self._queue.extend(behaviours)
        return self

    @property
    def calls(self) -> int:
        return len(self.requests)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def _next(self, request: RecordedRequest) -> Behaviour:
        with self._lock:
            self.requests.append(request)
            return self._queue.popleft() if self._queue else self.default


def _handler_for(server: FakeLlmServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        fake = server

    return Handler


class _Handler(BaseHTTPRequestHandler):
    fake: FakeLlmServer
    protocol_version = "HTTP/1.1"  # keep-alive, like the real APIs

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        return None

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = self.path.split("?", 1)[0]
        recorded = RecordedRequest("POST", path, {k.lower(): v for k, v in self.headers.items()}, raw, body)
        if path not in OPENAI_PATHS and path not in (ANTHROPIC_PATH, OLLAMA_PATH):
            self._send_json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
            return
        behaviour = self.fake._next(recorded)
        with self.fake._lock:
            self.fake.in_flight += 1
            self.fake.max_in_flight = max(self.fake.max_in_flight, self.fake.in_flight)
        try:
            self._serve(recorded, behaviour)
        finally:
            with self.fake._lock:
                self.fake.in_flight -= 1

    def _serve(self, recorded: RecordedRequest, behaviour: Behaviour) -> None:
        if not self._authorized(recorded):
            self._send_error(recorded, 401, "invalid x-api-key" if recorded.protocol == "anthropic"
                             else "Incorrect API key provided")
            return
        self._respond(recorded, behaviour)

    def _authorized(self, req: RecordedRequest) -> bool:
        if self.fake.api_key is None:
            return True
        if req.protocol == "anthropic":
            return req.headers.get("x-api-key") == self.fake.api_key
        return req.headers.get("authorization") == f"Bearer {self.fake.api_key}"

    def _respond(self, req: RecordedRequest, b: Behaviour) -> None:
        if b.kind == "hang":
            self.fake._stopping.wait(b.seconds)
            self.close_connection = True
            return  # say nothing; the client has normally given up by now
        if b.kind == "error":
            self._send_error(req, b.status, b.message, b.headers)
        elif b.kind == "malformed_body":
            self._send(200, b"<html><body>502 Bad Gateway (proxy)</body></html>", "text/html")
        elif b.kind == "missing_fields":
            self._send_json(200, {"id": _id(req), "object": "chat.completion", "model": self._model(req)})
        else:
            if b.seconds:
                self.fake._stopping.wait(b.seconds)
            text = b.content if isinstance(b.content, str) else json.dumps(b.content)
            if req.protocol == "openai" and isinstance(req.body, dict) and req.body.get("stream"):
                self._send_events(req, text)
            else:
                self._send_json(200, self._answer(req, text, b))

    def _send_events(self, req: RecordedRequest, text: str) -> None:
        """OpenAI's streaming answer: one ``chat.completion.chunk`` event per piece, then ``[DONE]``."""
        pieces = [text[i:i + 16] for i in range(0, len(text), 16)] or [""]
        events = [{"id": _id(req), "object": "chat.completion.chunk", "model": self._model(req),
                   "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                  for piece in pieces]
        events[-1]["choices"][0]["finish_reason"] = "stop"
        data = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        self._send(200, data.encode(), "text/event-stream")

    def _answer(self, req: RecordedRequest, text: str, b: Behaviour) -> dict[str, Any]:
        tokens_in = b.tokens_in if b.tokens_in is not None else max(1, len(req.raw) // 4)
        tokens_out = b.tokens_out if b.tokens_out is not None else max(1, len(text) // 4)
        if req.protocol == "ollama":
            answer: dict[str, Any] = {"model": self._model(req), "created_at": "2026-01-01T00:00:00Z",
                                      "message": {"role": "assistant", "content": text}, "done": True}
            return {**answer, "prompt_eval_count": tokens_in, "eval_count": tokens_out} if b.usage else answer
        if req.protocol == "anthropic":
            answer = {
                "id": _id(req), "type": "message", "role": "assistant", "model": self._model(req),
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None}
            usage = {"input_tokens": tokens_in, "output_tokens": tokens_out}
        else:
            answer = {"id": _id(req), "object": "chat.completion", "created": 1700000000, "model": self._model(req),
                      "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                   "finish_reason": "stop"}]}
            usage = {"prompt_tokens": tokens_in, "completion_tokens": tokens_out,
                     "total_tokens": tokens_in + tokens_out}
        if b.usage:
            answer["usage"] = usage
        return answer

    def _model(self, req: RecordedRequest) -> str:
        requested = req.body.get("model") if isinstance(req.body, dict) else None
        return self.fake.model or requested or "fake-model"

    def _send_error(self, req: RecordedRequest, status: int, message: str,
                    headers: dict[str, str] | None = None) -> None:
        if req.protocol == "anthropic":
            payload = {"type": "error", "error": {"type": _ANTHROPIC_ERROR_TYPES.get(status, "api_error"),
                                                  "message": message}}
        else:
            payload = {"error": {"message": message, "type": "rate_limit_exceeded" if status == 429 else "error",
                                 "param": None, "code": None}}
        self._send_json(status, payload, headers)

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _send(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test); nothing to tell it


def _id(req: RecordedRequest) -> str:
    return ("msg_" if req.protocol == "anthropic" else "chatcmpl-") + uuid.uuid4().hex[:24]
