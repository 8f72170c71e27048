"""The annotation app's admin routes: the dashboard (HTML and JSON), adding an annotator, closing or reopening a
study. Each needs the admin token."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from lima_align.annotate import db
from lima_align.annotate.api import (ANNOTATOR, DASHBOARD, FIELD, MAX_NAME, CloseStudy, HTTPFail, NewAnnotator, check_form_token,
                                     form_body, json_body, media_type, parse, responses)
from lima_align.annotate.export import export_rows
from lima_align.annotate.study import add_annotator
from lima_align.errors import LimaError
from lima_align.evaluate.agreement import agreement_from_rows

HTML = "text/html"


def dashboard_data(store: Any) -> list[dict[str, Any]]:
    out = []
    for study in db.studies(store.conn):
        people = [{"name": a["name"], "done": db.progress(store.conn, a["id"])[0],
                   "assigned": db.progress(store.conn, a["id"])[1]} for a in db.annotators(store.conn, study["id"])]
        rows = export_rows(store.conn, study) if study["kind"] != "review" else []
        out.append({"name": study["name"], "kind": study["kind"], "closed": bool(study["closed"]),
                    "annotators": people, "agreement": agreement_from_rows(rows, study["kind"]) if rows else []})
    return out



def admin_routes(app: FastAPI, store: Any, who, page, read_body, read_json) -> None:
    async def admin(request: Request) -> None:
        if not (await who(request)).admin:
            raise HTTPFail(403, "the dashboard needs the admin token")

    @app.get("/dashboard", response_class=HTMLResponse, responses=responses({200: HTML}, (401, 403), html=True))
    async def dashboard(request: Request) -> HTMLResponse:
        await admin(request)
        return page(request, "dashboard.html", studies=await run_in_threadpool(dashboard_data, store))

    @app.get("/admin/dashboard.json", responses=responses({200: DASHBOARD}, (401, 403)))
    async def dashboard_json(request: Request) -> JSONResponse:
        await admin(request)
        return JSONResponse(json.loads(json.dumps(await run_in_threadpool(dashboard_data, store),
                                                  default=str).replace("NaN", "null")))

    @app.post("/admin/annotators", openapi_extra=json_body(NewAnnotator),
              responses=responses({200: ANNOTATOR}, (400, 401, 403, 409, 413, 415, 422)))
    async def new_annotator(request: Request) -> JSONResponse:
        await admin(request)
        body = parse(NewAnnotator, await read_json(request))
        study = db.study(store.conn, body.study)
        if study is None:
            raise HTTPFail(422, f"no study {body.study!r}" if body.study else "name the study")
        try:
            token = await run_in_threadpool(add_annotator, store.conn, study, body.name)
        except LimaError as exc:
            raise HTTPFail(409, str(exc)) from None
        return JSONResponse({"name": body.name, "study": study["name"], "token": token})

    @app.post("/admin/close", responses=responses({303: ""}, (400, 401, 403, 413, 415, 422)),
              openapi_extra=_close_form())
    async def close(request: Request) -> Response:
        await admin(request)
        if media_type(request) == "application/json":
            body = parse(CloseStudy, await read_json(request))
            name, closed = body.study, body.closed
        elif media_type(request) in ("application/x-www-form-urlencoded", ""):
            name, closed = await _close_form_fields(request, read_body)
        else:
            raise HTTPFail(415, "send a form or application/json")
        study = db.study(store.conn, name)
        if study is None:
            raise HTTPFail(422, "name the study")
        await run_in_threadpool(db.set_closed, store.conn, study["id"], closed)
        return RedirectResponse("/dashboard", status_code=303)


def _close_form() -> dict[str, Any]:
    """/admin/close takes the dashboard's form as well as JSON: both media types in one request body."""
    form = form_body({"study": {"type": "string", "maxLength": MAX_NAME}, "closed": {"enum": ["0", "1"]},
                      "csrf": FIELD}, ("study",))
    json_part = json_body(CloseStudy)["requestBody"]["content"]
    return {"requestBody": {"required": True, "content": {**json_part, **form["requestBody"]["content"]}}}


async def _close_form_fields(request: Request, read_body) -> tuple[str, bool]:
    """The dashboard's close / reopen form: the study named, closed 1 or 0, and the session's form token."""
    try:
        form = parse_qs((await read_body(request)).decode("utf-8", "strict"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise HTTPFail(400, "the form is not UTF-8") from None
    check_form_token(request, form)
    name, closed = (form.get("study") or [None])[-1], (form.get("closed") or ["1"])[-1]
    if not name or len(name) > MAX_NAME:
        raise HTTPFail(422, f"name the study (at most {MAX_NAME} characters)")
    if closed not in ("0", "1", "true", "false"):
        raise HTTPFail(422, "closed must be 1 or 0")
    return name, closed in ("1", "true")
