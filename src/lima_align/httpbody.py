"""Request bodies read with a size limit and JSON read strictly: shared by the annotation app and ``serve``.

A body is refused from its ``Content-Length`` before a byte is read, and a chunked body as soon as it passes the
limit, so an oversized request never sits in memory whole. JSON is read as JSON, not as Python's superset:
``NaN`` / ``Infinity`` are refused, and a document nested too deeply for the parser is an error, not a crash.
Each service turns :class:`BodyError` into its own error shape.
"""

from __future__ import annotations

import json
from typing import Any


class BodyError(Exception):
    """A body the service must refuse: ``status`` 413 (too large), 400 (malformed)."""

    def __init__(self, status: int, message: str, code: str):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


async def read_limited(request: Any, limit: int) -> bytes:
    """The body of a Starlette ``request``, at most ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BodyError(400, "Content-Length must be a number of bytes", "invalid_request")
        if int(declared) > limit:
            raise BodyError(413, f"request body over {limit} bytes", "body_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyError(413, f"request body over {limit} bytes", "body_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict_json(raw: bytes) -> Any:
    """``raw`` parsed as JSON (UTF-8): NaN / Infinity, invalid UTF-8 and too deep nesting are BodyErrors."""
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise BodyError(400, f"the body is not valid JSON: {exc}", "invalid_json") from None
    except RecursionError:
        raise BodyError(400, "the body is not valid JSON: nested too deeply", "invalid_json") from None
