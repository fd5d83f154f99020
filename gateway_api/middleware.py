"""ASGI middleware of the gateway."""
from __future__ import annotations

import re

FORM = b"application/x-www-form-urlencoded"


class JsonBodyByDefault:
    """The API only speaks JSON. `curl -d '{...}'` labels its body as a form, so a request body without
    a content type, or labelled as a form, is read as JSON (and fails as invalid JSON if it is not)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            ctype = dict(scope["headers"]).get(b"content-type", b"")
            if not ctype or ctype.split(b";")[0].strip() == FORM:
                scope = {**scope, "headers": headers + [(b"content-type", b"application/json")]}
        await self.app(scope, receive, send)


class BodyLimits:
    """Bounds request bodies before anything parses them: a body over the size limit is a 413 (read no
    further than the limit; webhook bodies, which become one Kafka message, have a lower one), and a JSON
    body nested deeper than ``max_json_depth`` is a 422 (Python's JSON parser would recurse until its
    RecursionError). The checked body is then handed on unchanged."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        settings = scope["app"].state.deps.settings
        hook = scope["path"].startswith("/api/v1/hooks/")
        limit = settings.max_hook_body_bytes if hook else settings.max_body_bytes
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            return await _too_large(scope, receive, send, limit)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                return await _too_large(scope, receive, send, limit)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if json_depth_exceeds(body, settings.max_json_depth):
            from gateway_api.problems import problem_response

            response = problem_response(422, "Invalid request",
                                        f"the JSON body is nested deeper than {settings.max_json_depth} levels",
                                        scope["path"])
            return await response(scope, receive, send)
        delivered = False

        async def replay():
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _too_large(scope, receive, send, limit: int):
    from gateway_api.problems import problem_response

    response = problem_response(413, "Request body too large", f"request bodies here are at most {limit} bytes",
                                scope["path"], max_bytes=limit)
    await response(scope, receive, send)


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKET = bytes(i for i in range(256) if i not in b"[]{}")


def json_depth_exceeds(body: bytes, max_depth: int) -> bool:
    """Whether brackets outside JSON strings nest deeper than ``max_depth`` (a body that is not JSON at all
    is left to the JSON parser)."""
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return False
    depth = 0
    for b in _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKET):
        if b in b"[{":
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
    return False
