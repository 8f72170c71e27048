"""A local stand-in for the few Hugging Face Hub routes a model upload uses (create the repository, validate the
card's YAML, pre-upload, commit), so that the real ``huggingface_hub`` client can be tested without a network.
Files are stored under ``root/<owner>/<name>/``; every file is taken as a "regular" (inline, base64) upload, which
the real Hub offers for small files."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def hub_app(root: Path, token: str) -> FastAPI:
    app = FastAPI()
    app.state.calls = []

    def authorised(request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {token}"

    @app.middleware("http")
    async def auth(request: Request, call_next):
        app.state.calls.append(f"{request.method} {request.url.path}")
        if not authorised(request):
            return JSONResponse({"error": "Invalid credentials"}, status_code=401)
        return await call_next(request)

    @app.post("/api/repos/create")
    async def create(request: Request):
        body = await request.json()
        repo = f"{body.get('organization') or 'me'}/{body['name']}"
        (root / repo).mkdir(parents=True, exist_ok=True)
        private = body.get("private") or body.get("visibility") == "private"  # the client sends either
        (root / repo / ".private").write_text(json.dumps(bool(private)))
        return {"url": f"{request.base_url}{repo}", "name": repo}

    @app.post("/api/validate-yaml")
    async def validate_yaml():
        return {"errors": [], "warnings": []}

    @app.post("/api/models/{owner}/{name}/preupload/{revision}")
    async def preupload(owner: str, name: str, revision: str, request: Request):
        files = (await request.json())["files"]
        return {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}

    @app.post("/api/models/{owner}/{name}/commit/{revision}")
    async def commit(owner: str, name: str, revision: str, request: Request):
        folder = root / owner / name
        summary = ""
        for line in (await request.body()).decode().splitlines():
            item = json.loads(line)
            if item["key"] == "header":
                summary = item["value"]["summary"]
            elif item["key"] == "file":
                target = folder / item["value"]["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(base64.b64decode(item["value"]["content"]))
        (folder / ".commit").write_text(summary)
        oid = "0" * 40
        return {"commitUrl": f"{request.base_url}{owner}/{name}/commit/{oid}", "commitOid": oid,
                "pullRequestUrl": None}

    return app
