"""The annotation web app (FastAPI, server-rendered pages, one small script, no build step).

Auth: a token in ``Authorization: Bearer`` or in the HttpOnly, SameSite=Strict cookie set by ``/login``. No or a
wrong token is 401; an annotator asking for an item outside their queue, or for the dashboard, is 403; the admin
token opens the dashboard but no queue. Every page is sent with a Content-Security-Policy that allows only this
server's own script and stylesheet, so rendered model output can neither run script nor fetch anything.

A label is committed to SQLite before the response is sent (the form posts, then follows a redirect), so what
the UI shows as saved is on disk.

Hostile input: bodies are read with a size limit (``max_body_bytes``; refused from Content-Length before being
read), JSON strictly (no NaN, no crash on deep nesting) and then validated by the pydantic models of
:mod:`~lima_align.annotate.api`; ids out of SQLite's range are 404. CSRF, three layers: a request that comes from
another origin - another port of this host included, which SameSite treats as the same site - is refused before it
can change anything (``Sec-Fetch-Site`` / ``Origin``); every form a logged-in page posts carries the session's form
token (checked whenever the cookie, not an ``Authorization`` header, authenticates it); the JSON API takes
``application/json`` only (a cross-origin page cannot send it without a preflight). Every answer, errors included,
is in the route's shape (JSON under /api/ and /admin/, a page elsewhere) with the security headers.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from lima_align.annotate import db
from lima_align.annotate.admin import admin_routes
from lima_align.annotate.api import (COOKIE, FIELD, QUEUE, SAVED, HTTPFail, LabelBody, check_form_token, cross_origin, form_body,
                                     form_token, json_body, json_object, media_type, parse,
                                     responses, token_of)
from lima_align.annotate.pages import HERE, item_view
from lima_align.annotate.study import validate_label
from lima_align.errors import LimaError
from lima_align.formats.turns import parse_turns
from lima_align.httpbody import BodyError, read_limited

MAX_ID = (1 << 63) - 1  # SQLite's integers
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
STATIC = {"app.js": "text/javascript", "app.css": "text/css"}
HTML = "text/html"


@dataclass
class Who:
    admin: bool
    annotator: Any = None  # sqlite3.Row
    study: Any = None


class Store:
    """One SQLite connection per worker thread (sqlite3 connections are not shared across threads)."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._local = threading.local()

    @property
    def conn(self):
        if getattr(self._local, "conn", None) is None:
            self._local.conn = db.connect(self.path)
        return self._local.conn


def authenticate(store: Store, token: str | None) -> Who:
    if not token:
        raise HTTPFail(401, "log in with your token")
    if db.is_admin(store.conn, token):
        return Who(admin=True)
    row = db.annotator_by_token(store.conn, token)
    if row is None:
        raise HTTPFail(401, "unknown token")
    return Who(admin=False, annotator=row, study=db.study(store.conn, study_id=row["study_id"]))


def annotator_item(store: Store, who: Who, item_id: int) -> tuple[Any, list[Any]]:
    """The assignment row of ``item_id`` in the annotator's queue, and the queue; 403 / 404 otherwise."""
    if who.admin:
        raise HTTPFail(403, "the admin token has no queue; log in as an annotator")
    if not 0 <= item_id <= MAX_ID:
        raise HTTPFail(404, "no such item")
    queue = db.queue(store.conn, who.annotator["id"])
    for rec in queue:
        if rec["item_id"] == item_id:
            return rec, queue
    if db.item_exists(store.conn, item_id):
        raise HTTPFail(403, "this item is not in your queue")
    raise HTTPFail(404, "no such item")


def save(store: Store, who: Who, item_id: int, label: Any) -> int:
    """Validate and commit one label; returns its revision."""
    rec, _ = annotator_item(store, who, item_id)
    study = db.study(store.conn, study_id=who.annotator["study_id"])
    if study["closed"]:
        raise HTTPFail(409, "the study is closed; labels can no longer change")
    try:
        value = validate_label(study["kind"], json.loads(rec["payload"]), label)
    except LimaError as exc:
        raise HTTPFail(422, str(exc)) from None
    return db.save_label(store.conn, who.annotator["id"], item_id, value)


def form_label(kind: str, form: dict[str, list[str]]) -> Any:
    """The label a form posted (buttons, radio groups, the edit textarea)."""
    one = {k: v[-1] for k, v in form.items()}
    if kind == "multiturn":
        turns = sorted((int(k[5:]), v) for k, v in one.items() if k.startswith("turn-") and k[5:].isdigit())
        return [v for _, v in turns]
    if kind == "review":
        decision = one.get("decision")
        if decision != "edit":
            return {"decision": decision}
        try:
            return {"decision": "edit", "conversations": parse_turns(one.get("edited", ""), "<edited>")}
        except LimaError as exc:
            raise HTTPFail(422, f"the edit does not parse: {exc}") from None
    return one.get("label")


def security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def create_app(db_path: str | Path, *, max_body_bytes: int = 1 << 20) -> FastAPI:
    """The app over one study database (created by ``lima-align annotate create-study``); bodies over
    ``max_body_bytes`` are refused (413)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    store = Store(db_path)
    store.conn  # fail at start, not at the first request, when the file cannot be opened
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))
    app = FastAPI(title="lima-align annotate", docs_url=None, redoc_url=None, openapi_url=None)

    def page(request: Request, name: str, code: int = 200, **context: Any) -> HTMLResponse:
        token = token_of(request)
        csrf = form_token(token) if token else ""
        return HTMLResponse(env.get_template(name).render(csrf=csrf, **context), status_code=code)

    def refusal(request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith(("/api/", "/admin/")):
            return JSONResponse({"error": message}, status_code=status)
        if status == 401:
            return page(request, "login.html", 401, error=message)
        return page(request, "error.html", status, status=status, message=message)

    @app.exception_handler(HTTPFail)
    async def on_fail(request: Request, exc: HTTPFail) -> Response:
        return refusal(request, exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def on_bad_path(request: Request, exc: RequestValidationError) -> Response:
        return refusal(request, 404, "no such item")  # the only parameters are item ids in paths

    @app.exception_handler(HTTPException)
    async def on_routing(request: Request, exc: HTTPException) -> Response:  # unknown path, wrong method
        return refusal(request, exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> Response:  # a 500 is a bug; still shaped, with headers
        return security_headers(JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500))

    @app.middleware("http")
    async def headers(request: Request, call_next):
        if request.method not in SAFE_METHODS and (why := cross_origin(request)):
            return security_headers(refusal(request, 403, f"refused: {why} (cross-origin)"))
        return security_headers(await call_next(request))

    async def who(request: Request) -> Who:
        return await run_in_threadpool(authenticate, store, token_of(request))

    async def read_body(request: Request) -> bytes:
        try:
            return await read_limited(request, max_body_bytes)
        except BodyError as exc:
            raise HTTPFail(exc.status, exc.message) from None

    async def read_form(request: Request) -> dict[str, list[str]]:
        return parse_qs((await read_body(request)).decode("utf-8", "replace"), keep_blank_values=True)

    async def read_json(request: Request) -> dict[str, Any]:
        if media_type(request) != "application/json":
            raise HTTPFail(415, "send the body as application/json")
        return json_object(await read_body(request))

    @app.get("/static/{name}", responses=responses({200: "text/css"}, (404,), html=True))
    def static(request: Request, name: str) -> Response:
        if name not in STATIC:
            raise HTTPFail(404, "no such file")
        return FileResponse(HERE / "static" / name, media_type=STATIC[name], headers={"Cache-Control": "no-cache"})

    @app.get("/login", response_class=HTMLResponse, responses=responses({200: HTML}, ()))
    def login_page(request: Request) -> HTMLResponse:
        return page(request, "login.html")

    @app.post("/login", responses=responses({303: ""}, (401, 403, 413), html=True),
              openapi_extra=form_body({"token": FIELD}, ("token",)))
    async def login(request: Request) -> Response:
        token = (await read_form(request)).get("token", [""])[-1].strip()
        await run_in_threadpool(authenticate, store, token)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.post("/logout", responses=responses({303: ""}, (403, 413), html=True),
              openapi_extra=form_body({"csrf": FIELD}))
    async def logout(request: Request) -> Response:
        form = await read_form(request)
        if request.cookies.get(COOKIE):  # a logged-in page's form: it carries the token
            check_form_token(request, form)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @app.get("/", responses=responses({303: ""}, (401,), html=True))
    async def home(request: Request) -> Response:
        me = await who(request)
        if me.admin:
            return RedirectResponse("/dashboard", status_code=303)
        queue = await run_in_threadpool(db.queue, store.conn, me.annotator["id"])
        pending = [r["item_id"] for r in queue if r["label"] is None]
        return RedirectResponse(f"/items/{pending[0]}" if pending else "/queue", status_code=303)

    @app.get("/queue", response_class=HTMLResponse, responses=responses({200: HTML}, (401, 403), html=True))
    async def queue_page(request: Request) -> HTMLResponse:
        me = await who(request)
        if me.admin:
            raise HTTPFail(403, "the admin token has no queue")
        queue = await run_in_threadpool(db.queue, store.conn, me.annotator["id"])
        return page(request, "queue.html", me=me, queue=queue, done=sum(r["label"] is not None for r in queue))

    @app.get("/items/{item_id}", response_class=HTMLResponse,
             responses=responses({200: HTML}, (401, 403, 404), html=True))
    async def item_page(request: Request, item_id: int) -> HTMLResponse:
        me = await who(request)
        rec, queue = await run_in_threadpool(annotator_item, store, me, item_id)
        view = item_view(me.study["kind"], rec, queue)
        return page(request, "item.html", me=me, v=view, closed=bool(me.study["closed"]),
                    saved=request.query_params.get("saved"))

    @app.post("/items/{item_id}", responses=responses({303: ""}, (401, 403, 404, 409, 413, 422), html=True),
              openapi_extra=form_body({"label": FIELD, "decision": FIELD, "edited": FIELD, "csrf": FIELD}))
    async def item_post(request: Request, item_id: int) -> Response:
        me = await who(request)
        await run_in_threadpool(annotator_item, store, me, item_id)  # 403 / 404 before the body is read
        form = await read_form(request)
        check_form_token(request, form)
        await run_in_threadpool(save, store, me, item_id, form_label(me.study["kind"], form))
        rec, queue = await run_in_threadpool(annotator_item, store, me, item_id)
        after = item_view(me.study["kind"], rec, queue)["next_pending"]
        target = f"/items/{after}?saved={item_id}" if after is not None else f"/queue?saved={item_id}"
        return RedirectResponse(target, status_code=303)

    @app.get("/api/queue", responses=responses({200: QUEUE}, (401, 403)))
    async def api_queue(request: Request) -> JSONResponse:
        me = await who(request)
        if me.admin:
            raise HTTPFail(403, "the admin token has no queue")
        queue = await run_in_threadpool(db.queue, store.conn, me.annotator["id"])
        return JSONResponse({"kind": me.study["kind"], "closed": bool(me.study["closed"]), "items": [
            {"item_id": r["item_id"], "label": None if r["label"] is None else json.loads(r["label"]),
             "revision": r["revision"]} for r in queue]})

    @app.post("/api/items/{item_id}/label", openapi_extra=json_body(LabelBody),
              responses=responses({200: SAVED}, (400, 401, 403, 404, 409, 413, 415, 422)))
    async def api_label(request: Request, item_id: int) -> JSONResponse:
        me = await who(request)
        body = parse(LabelBody, await read_json(request))
        revision = await run_in_threadpool(save, store, me, item_id, body.label)
        return JSONResponse({"ok": True, "item_id": item_id, "revision": revision})

    admin_routes(app, store, who, page, read_body, read_json)
    return app


