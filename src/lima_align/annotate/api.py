"""What the annotation app accepts and answers, as data: the request bodies (pydantic models, validated at the
edge after the body is read with its size limit and parsed strictly), the per-session form token, and the OpenAPI
description of every route (what ``schemathesis`` fuzzes in the tests).

The OpenAPI document is built but not served (``create_app(...).openapi()`` gives it); every status a route can
answer is listed, so an undocumented one is a bug a fuzzer finds.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError
from starlette.requests import Request

from lima_align.annotate.study import MAX_NAME
from lima_align.httpbody import BodyError, strict_json

COOKIE = "lima_annotate_token"
MAX_TOKEN = 256  # characters of a login token (ours are 43)

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NAME)]
StudyName = Annotated[str, StringConstraints(max_length=MAX_NAME)]


class HTTPFail(Exception):
    """A refusal: ``status`` and a message, answered as JSON under /api/ and /admin/, as a page elsewhere."""

    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LabelBody(_Body):
    """``POST /api/items/{id}/label``: the label in the study kind's form (checked by ``validate_label``)."""

    label: Any


class NewAnnotator(_Body):
    """``POST /admin/annotators``: the study may be omitted when the database holds one."""

    name: Name
    study: StudyName | None = None


class CloseStudy(_Body):
    """``POST /admin/close`` as JSON (the dashboard's form sends the same fields as strings)."""

    study: StudyName | None = None
    closed: bool = True


def parse(model: type[_Body], body: Any) -> Any:
    """``body`` (parsed JSON) as ``model``, or a 422 naming the first field that is wrong."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "body"
        raise HTTPFail(422, f"{where}: {err['msg']}") from None


def form_token(token: str) -> str:
    """The form token of the session logged in with ``token``: a keyed hash of it, so a page of another origin
    (which cannot read the HttpOnly cookie) cannot compute it, and it survives a restart of the server."""
    return hmac.new(token.encode(), b"lima-align annotate form", hashlib.sha256).hexdigest()[:32]


def form_token_ok(token: str, sent: str | None) -> bool:
    return sent is not None and hmac.compare_digest(form_token(token).encode(), sent.encode())


# ------------------------------------------------------------------------------------------- the request edge
def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return (auth[7:].strip() or None) if auth.lower().startswith("bearer ") else None


def token_of(request: Request) -> str | None:
    return _bearer(request) or request.cookies.get(COOKIE) or None


def cross_origin(request: Request) -> str | None:
    """Why a state-changing request is not this app's own page or a non-browser client, or None.

    Browsers send ``Sec-Fetch-Site`` (``same-origin`` for our pages, ``none`` for a typed URL; a page on another
    port of 127.0.0.1 is ``same-site``); without it, an ``Origin`` must name this host and port. A client that sends
    neither (curl, scripts) is not a browser a page could drive.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:  # every current browser sends it: it decides (our no-referrer policy makes Origin "null")
        return None if site in ("same-origin", "none") else f"a {site} request"
    origin = request.headers.get("origin")
    if origin == "null":
        return "a request from an opaque origin"
    # host and port only: behind a TLS-terminating proxy the page is https while this app sees http
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host", ""):
        return f"a request from {origin}"
    return None


def check_form_token(request: Request, form: dict[str, list[str]]) -> None:
    """A form authenticated by the cookie must carry that session's form token (the pages put it in every form);
    a client sending ``Authorization`` is not a browser acting on ambient credentials."""
    if _bearer(request) is not None:
        return
    cookie = request.cookies.get(COOKIE)
    if not cookie or not form_token_ok(cookie, (form.get("csrf") or [None])[-1]):
        raise HTTPFail(403, "the form token is missing or wrong: reload the page and try again")


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = strict_json(raw)
    except BodyError as exc:
        raise HTTPFail(exc.status, exc.message) from None
    if not isinstance(body, dict):
        raise HTTPFail(400, "the body must be a JSON object")
    return body


# ------------------------------------------------------------------------------------------------ OpenAPI
_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
_WHY = {400: "malformed body", 401: "no or a wrong token", 403: "not allowed, or a cross-origin write",
        404: "no such item or page", 409: "the study is closed, or the name is taken", 413: "body over the limit",
        415: "not application/json", 422: "a body or label that does not validate"}


def responses(ok: dict[int, Any], errors: tuple[int, ...], *, html: bool = False) -> dict[int | str, Any]:
    """The ``responses=`` of a route: its successes (``{status: media type}``, "" for a redirect, or
    ``{status: JSON schema}`` for a JSON answer) and its refusals, as JSON errors (API routes) or as HTML pages."""
    out: dict[int | str, Any] = {}
    for status, what in ok.items():
        out[status] = {"description": "ok" if what else "redirect"}
        if isinstance(what, dict):
            out[status]["content"] = {"application/json": {"schema": what}}
        elif what:
            out[status]["content"] = {what: {"schema": {"type": "string"}}}
    for status in errors:
        body = {"text/html": {"schema": {"type": "string"}}} if html else {"application/json": {"schema": _ERROR}}
        out[status] = {"description": _WHY[status], "content": body}
    return out


def _obj(required: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": required}


_INT, _STR, _BOOL = {"type": "integer"}, {"type": "string"}, {"type": "boolean"}
QUEUE = _obj({"kind": _STR, "closed": _BOOL, "items": {"type": "array", "items": _obj(
    {"item_id": _INT, "label": {}, "revision": {"type": ["integer", "null"]}})}})
SAVED = _obj({"ok": _BOOL, "item_id": _INT, "revision": _INT})
ANNOTATOR = _obj({"name": _STR, "study": _STR, "token": _STR})
DASHBOARD = {"type": "array", "items": _obj({"name": _STR, "kind": _STR, "closed": _BOOL,
                                             "annotators": {"type": "array"}, "agreement": {"type": "array"}})}


def json_body(model: type[_Body]) -> dict[str, Any]:
    """``openapi_extra`` declaring ``model`` as the route's (required) JSON body."""
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": model.model_json_schema()}}}}


def form_body(fields: dict[str, dict[str, Any]], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """``openapi_extra`` declaring a form body (application/x-www-form-urlencoded) with ``fields``."""
    schema = {"type": "object", "properties": fields, "required": list(required)}
    return {"requestBody": {"required": bool(required),
                            "content": {"application/x-www-form-urlencoded": {"schema": schema}}}}


FIELD = {"type": "string"}  # bounded by the body limit; a form field is any text
