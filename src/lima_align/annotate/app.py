"""The annotation web app (FastAPI, server-rendered pages, one small script, no build step).

Auth: a token in ``Authorization: Bearer`` or in the HttpOnly, SameSite=Strict cookie set by ``/login``. No or a
wrong token is 401; an annotator asking for an item outside their queue, or for the dashboard, is 403; the admin
token opens the dashboard but no queue. Every page is sent with a Content-Security-Policy that allows only this
server's own script and stylesheet, so rendered model output can neither run script nor fetch anything.

A label is committed to SQLite before the response is sent (the form posts, then follows a redirect), so what
the UI shows as saved is on disk.

Hostile input: bodies are read with a size limit (``max_body_bytes``; refused from Content-Length before being
read), JSON strictly (no NaN, no crash on deep nesting), ids out of SQLite's range are 404; a request that comes
from another origin - another port of this host included, which SameSite treats as the same site - is refused
before it can change anything (``Sec-Fetch-Site`` / ``Origin``), and the JSON API takes ``application/json``
only (a cross-origin form cannot send it without a preflight). Every answer, errors included, carries the security
headers.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from lima_align.annotate import db
from lima_align.annotate.export import export_rows
from lima_align.evaluate.agreement import agreement_from_rows
from lima_align.annotate.pages import HERE, item_view
from lima_align.annotate.study import add_annotator, validate_label
from lima_align.errors import LimaError
from lima_align.formats.turns import parse_turns
from lima_align.httpbody import BodyError, read_limited, strict_json

COOKIE = "lima_annotate_token"
MAX_ID = (1 << 63) - 1  # SQLite's integers
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
STATIC = {"app.js": "text/javascript", "app.css": "text/css"}


class HTTPFail(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


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


def _token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return request.cookies.get(COOKIE) or None


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


def dashboard_data(store: Store) -> list[dict[str, Any]]:
    out = []
    for study in db.studies(store.conn):
        people = [{"name": a["name"], "done": db.progress(store.conn, a["id"])[0],
                   "assigned": db.progress(store.conn, a["id"])[1]} for a in db.annotators(store.conn, study["id"])]
        rows = export_rows(store.conn, study) if study["kind"] != "review" else []
        out.append({"name": study["name"], "kind": study["kind"], "closed": bool(study["closed"]),
                    "annotators": people, "agreement": agreement_from_rows(rows, study["kind"]) if rows else []})
    return out


def security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


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


def json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = strict_json(raw)
    except BodyError as exc:
        raise HTTPFail(exc.status, exc.message) from None
    if not isinstance(body, dict):
        raise HTTPFail(400, "the body must be a JSON object")
    return body


def create_app(db_path: str | Path, *, max_body_bytes: int = 1 << 20) -> FastAPI:
    """The app over one study database (created by ``lima-align annotate create-study``); bodies over
    ``max_body_bytes`` are refused (413)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    store = Store(db_path)
    store.conn  # fail at start, not at the first request, when the file cannot be opened
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))
    app = FastAPI(title="lima-align annotate", docs_url=None, redoc_url=None, openapi_url=None)

    def page(name: str, code: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**context), status_code=code)

    @app.exception_handler(HTTPFail)
    async def on_fail(request: Request, exc: HTTPFail) -> Response:
        if request.url.path.startswith(("/api/", "/admin/")):
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        if exc.status == 401:
            return page("login.html", 401, error=exc.message)
        return page("error.html", exc.status, status=exc.status, message=exc.message)

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> Response:  # a 500 is a bug; still shaped, with headers
        return security_headers(JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500))

    @app.middleware("http")
    async def headers(request: Request, call_next):
        if request.method not in SAFE_METHODS and (why := cross_origin(request)):
            return security_headers(JSONResponse({"error": f"refused: {why} (cross-origin)"}, status_code=403))
        return security_headers(await call_next(request))

    async def who(request: Request) -> Who:
        return await run_in_threadpool(authenticate, store, _token(request))

    async def read_body(request: Request) -> bytes:
        try:
            return await read_limited(request, max_body_bytes)
        except BodyError as exc:
            raise HTTPFail(exc.status, exc.message) from None

    async def read_form(request: Request) -> dict[str, list[str]]:
        return parse_qs((await read_body(request)).decode("utf-8", "replace"), keep_blank_values=True)

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            raise HTTPFail(404, "no such file")
        return FileResponse(HERE / "static" / name, media_type=STATIC[name], headers={"Cache-Control": "no-cache"})

    @app.get("/login", response_class=HTMLResponse)
    def login_page() -> HTMLResponse:
        return page("login.html")

    @app.post("/login")
    async def login(request: Request) -> Response:
        token = (await read_form(request)).get("token", [""])[-1].strip()
        await run_in_threadpool(authenticate, store, token)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.post("/logout")
    def logout() -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @app.get("/")
    async def home(request: Request) -> Response:
        me = await who(request)
        if me.admin:
            return RedirectResponse("/dashboard", status_code=303)
        queue = await run_in_threadpool(db.queue, store.conn, me.annotator["id"])
        pending = [r["item_id"] for r in queue if r["label"] is None]
        return RedirectResponse(f"/items/{pending[0]}" if pending else "/queue", status_code=303)

    @app.get("/queue", response_class=HTMLResponse)
    async def queue_page(request: Request) -> HTMLResponse:
        me = await who(request)
        if me.admin:
            raise HTTPFail(403, "the admin token has no queue")
        queue = await run_in_threadpool(db.queue, store.conn, me.annotator["id"])
        return page("queue.html", me=me, queue=queue, done=sum(r["label"] is not None for r in queue))

    @app.get("/items/{item_id}", response_class=HTMLResponse)
    async def item_page(request: Request, item_id: int) -> HTMLResponse:
        me = await who(request)
        rec, queue = await run_in_threadpool(annotator_item, store, me, item_id)
        view = item_view(me.study["kind"], rec, queue)
        return page("item.html", me=me, v=view, closed=bool(me.study["closed"]), saved=request.query_params.get("saved"))

    @app.post("/items/{item_id}")
    async def item_post(request: Request, item_id: int) -> Response:
        me = await who(request)
        form = await read_form(request)
        await run_in_threadpool(save, store, me, item_id, form_label(me.study["kind"], form))
        rec, queue = await run_in_threadpool(annotator_item, store, me, item_id)
        after = item_view(me.study["kind"], rec, queue)["next_pending"]
        target = f"/items/{after}?saved={item_id}" if after is not None else f"/queue?saved={item_id}"
        return RedirectResponse(target, status_code=303)

    @app.get("/api/queue")
    async def api_queue(request: Request) -> JSONResponse:
        me = await who(request)
        if me.admin:
            raise HTTPFail(403, "the admin token has no queue")
        queue = await run_in_threadpool(db.queue, store.conn, me.annotator["id"])
        return JSONResponse({"kind": me.study["kind"], "closed": bool(me.study["closed"]), "items": [
            {"item_id": r["item_id"], "label": None if r["label"] is None else json.loads(r["label"]),
             "revision": r["revision"]} for r in queue]})

    @app.post("/api/items/{item_id}/label")
    async def api_label(request: Request, item_id: int) -> JSONResponse:
        me = await who(request)
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise HTTPFail(415, "send the label as application/json")
        body = json_object(await read_body(request))
        if "label" not in body:
            raise HTTPFail(422, 'send {"label": ...}')
        label = body["label"]
        revision = await run_in_threadpool(save, store, me, item_id, label)
        return JSONResponse({"ok": True, "item_id": item_id, "revision": revision})

    _admin_routes(app, store, who, page, read_body)
    return app


def _admin_routes(app: FastAPI, store: Store, who, page, read_body) -> None:
    async def admin(request: Request) -> None:
        if not (await who(request)).admin:
            raise HTTPFail(403, "the dashboard needs the admin token")

    @app.get("/dashboard", response_class=HTMLResponse)
    async def dashboard(request: Request) -> HTMLResponse:
        await admin(request)
        return page("dashboard.html", studies=await run_in_threadpool(dashboard_data, store))

    @app.get("/admin/dashboard.json")
    async def dashboard_json(request: Request) -> JSONResponse:
        await admin(request)
        return JSONResponse(json.loads(json.dumps(await run_in_threadpool(dashboard_data, store),
                                                  default=str).replace("NaN", "null")))

    @app.post("/admin/annotators")
    async def new_annotator(request: Request) -> JSONResponse:
        await admin(request)
        body = json_object(await read_body(request) or b"{}")
        name, study_name = body.get("name"), body.get("study")
        if not isinstance(name, str) or not name.strip() or not isinstance(study_name, (str, type(None))):
            raise HTTPFail(422, 'send {"name": "...", "study": "..."} (strings; study may be omitted with one '
                                'study)')
        study = db.study(store.conn, study_name)
        if study is None:
            raise HTTPFail(422, f"no study {study_name!r}" if study_name else "name the study")
        try:
            token = await run_in_threadpool(add_annotator, store.conn, study, str(body["name"]))
        except LimaError as exc:
            raise HTTPFail(409, str(exc)) from None
        return JSONResponse({"name": body["name"], "study": study["name"], "token": token})

    @app.post("/admin/close")
    async def close(request: Request) -> Response:
        await admin(request)
        form = await read_body(request)
        if form.lstrip().startswith(b"{"):
            body = json_object(form)
        else:
            try:
                body = {k: v[-1] for k, v in parse_qs(form.decode("utf-8", "strict")).items()}
            except UnicodeDecodeError:
                raise HTTPFail(400, "the form is not UTF-8") from None
        if not isinstance(body.get("study"), (str, type(None))):
            raise HTTPFail(422, "study must be a string")
        study = db.study(store.conn, body.get("study"))
        if study is None:
            raise HTTPFail(422, "name the study")
        await run_in_threadpool(db.set_closed, store.conn, study["id"], str(body.get("closed", "1")) in ("1", "true"))
        return RedirectResponse("/dashboard", status_code=303)
