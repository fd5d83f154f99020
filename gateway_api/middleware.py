"""ASGI middleware of the gateway."""
from __future__ import annotations

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
