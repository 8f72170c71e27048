"""Hostile input to the annotation app (each case was a 500 or a saved label in an attack run): ids out of SQLite's
range, malformed admin bodies, oversized bodies, and cross-origin writes - from another port of 127.0.0.1 in
Chromium, where SameSite cookies give no protection."""

from __future__ import annotations

import http.server
import socket
import threading

import pytest
from fastapi.testclient import TestClient

from lima_align.annotate import db
from lima_align.annotate.app import create_app

from .conftest import free_port
from .test_browser import login

HUGE = 9223372036854775808  # 2**63: one past SQLite's integers


@pytest.fixture
def client(study_db):
    return TestClient(create_app(study_db["db"]))


def _labels(study_db) -> int:
    return db.connect(study_db["db"]).execute("SELECT COUNT(*) FROM labels").fetchone()[0]


def _bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_an_id_past_sqlites_range_is_a_404_with_the_security_headers(client, study_db):
    alice = _bearer(study_db["tokens"]["alice"])
    for method, path, kwargs in [("get", f"/items/{HUGE}", {}), ("post", f"/items/{HUGE}", {"data": {"label": "A"}}),
                                 ("post", f"/api/items/{HUGE}/label", {"json": {"label": "A"}})]:
        response = getattr(client, method)(path, headers=alice, **kwargs)
        assert response.status_code == 404, (path, response.text)
        assert "default-src 'none'" in response.headers["content-security-policy"]


@pytest.mark.parametrize("body,status", [(b"{not json", 400), (b"[1, 2]", 400), (b'{"name": ["x"]}', 422),
                                         (b'{"name": NaN}', 400), (b"[" * 100_000, 400),
                                         (b'{"name": "x", "study": 3}', 422), (b'{"name": "\xff"}', 400)])
def test_malformed_admin_annotator_bodies_are_4xx(client, study_db, body, status):
    response = client.post("/admin/annotators", content=body, headers=_bearer(study_db["admin"]))
    assert response.status_code == status, response.text
    assert response.json()["error"]
    names = [r["name"] for r in db.connect(study_db["db"]).execute("SELECT name FROM annotators")]
    assert names == ["alice", "bob"]  # nothing created, no annotator named "['x']"


@pytest.mark.parametrize("body", [b"study=\xff\xfe", b"{broken", b'{"study": ["pw"]}'])
def test_malformed_close_bodies_are_4xx_and_leave_the_study_open(client, study_db, body):
    response = client.post("/admin/close", content=body, headers=_bearer(study_db["admin"]))
    assert 400 <= response.status_code < 500, response.text
    assert not db.study(db.connect(study_db["db"]), "pw")["closed"]


def test_bodies_over_the_limit_are_refused_before_they_are_read(study_db):
    from .conftest import start_server, stop_server

    client = TestClient(create_app(study_db["db"], max_body_bytes=4096))
    assert client.post("/login", content=b"token=" + b"x" * 5000).status_code == 413
    port = free_port()
    proc = start_server(study_db["db"], port)  # the default limit, 1 MiB; a 2 GB declaration and no body
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                        b"Content-Length: 2000000000\r\n\r\n")
            assert raw.recv(200).startswith(b"HTTP/1.1 413")
    finally:
        stop_server(proc)


@pytest.mark.parametrize("headers", [{"Sec-Fetch-Site": "same-site"}, {"Sec-Fetch-Site": "cross-site"},
                                     {"Origin": "http://evil.example.com"}, {"Origin": "http://testserver:18799"},
                                     {"Origin": "null"}])
def test_cross_origin_writes_are_refused_before_anything_changes(client, study_db, headers):
    alice = {**_bearer(study_db["tokens"]["alice"]), **headers}
    item = client.get("/api/queue", headers=alice).json()["items"][0]["item_id"]
    assert client.post(f"/items/{item}", data={"label": "A"}, headers=alice).status_code == 403
    assert client.post(f"/api/items/{item}/label", json={"label": "A"}, headers=alice).status_code == 403
    assert client.post("/admin/close", data={"study": "pw"},
                       headers={**_bearer(study_db["admin"]), **headers}).status_code == 403
    assert _labels(study_db) == 0 and not db.study(db.connect(study_db["db"]), "pw")["closed"]
    own = {**_bearer(study_db["tokens"]["alice"]), "Sec-Fetch-Site": "same-origin"}
    assert client.post(f"/api/items/{item}/label", json={"label": "A"}, headers=own).status_code == 200


def test_the_json_api_takes_json_only(client, study_db):
    alice = _bearer(study_db["tokens"]["alice"])
    item = client.get("/api/queue", headers=alice).json()["items"][0]["item_id"]
    plain = client.post(f"/api/items/{item}/label", content=b'{"label": "A"}',
                        headers={**alice, "Content-Type": "text/plain"})
    assert plain.status_code == 415 and _labels(study_db) == 0


def test_a_page_on_another_port_cannot_make_the_browser_save_a_label(browser, server):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15000)
    login(page, server)  # alice is logged in: her cookie is set
    item = int(page.url.split("/items/")[1].split("?")[0])
    evil = (f'<html><body><form id="f" method="post" action="{server["url"]}/items/{item}">'
            f'<input name="label" value="B"></form><script>document.getElementById("f").submit()</script>'
            f'</body></html>').encode()

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(evil)

        def log_message(self, *args):
            pass

    attacker = http.server.HTTPServer(("127.0.0.1", free_port()), Evil)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        with page.expect_response(lambda r: r.url.startswith(server["url"]) and r.request.method == "POST") as got:
            page.goto(f"http://127.0.0.1:{attacker.server_address[1]}/")
        assert got.value.status == 403
    finally:
        attacker.shutdown()
        context.close()
    assert _labels(server) == 0
