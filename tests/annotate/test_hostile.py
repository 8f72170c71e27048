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


def test_the_admin_posting_an_item_form_is_a_403_not_a_crash(client, study_db):
    """Found by the schemathesis run: the admin has no study, and the form handler read its kind (500)."""
    response = client.post("/items/1", data={"label": "A"}, headers=_bearer(study_db["admin"]))
    assert response.status_code == 403 and "no queue" in response.text


@pytest.mark.parametrize("body,status", [(b"{not json", 400), (b"[1, 2]", 400), (b'{"name": ["x"]}', 422),
                                         (b'{"name": NaN}', 400), (b"[" * 100_000, 400),
                                         (b'{"name": "x", "study": 3}', 422), (b'{"name": "\xff"}', 400)])
def test_malformed_admin_annotator_bodies_are_4xx(client, study_db, body, status):
    response = client.post("/admin/annotators", content=body,
                           headers={**_bearer(study_db["admin"]), "Content-Type": "application/json"})
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


def _login(client, token: str) -> None:
    assert client.post("/login", data={"token": token}, follow_redirects=False).status_code == 303


def test_a_cookie_form_needs_its_sessions_form_token(client, study_db):
    """The second layer: a browser that sends neither Sec-Fetch-Site nor Origin (older ones, some privacy
    settings) still cannot be made to post a form without the token the page put in it."""
    from .test_app import form_token

    _login(client, study_db["tokens"]["bob"])
    bobs = form_token(client.get(client.get("/", follow_redirects=False).headers["location"]).text)
    _login(client, study_db["tokens"]["alice"])
    item_url = client.get("/", follow_redirects=False).headers["location"]
    item = int(item_url.split("/")[-1])
    alices = form_token(client.get(item_url).text)
    assert alices != bobs
    for form in ({"label": "A"}, {"label": "A", "csrf": ""}, {"label": "A", "csrf": bobs},
                 {"label": "A", "csrf": alices[:-1] + "0" if alices[-1] != "0" else alices[:-1] + "1"}):
        response = client.post(f"/items/{item}", data=form, follow_redirects=False)
        assert response.status_code == 403 and "form token" in response.text, form
        assert "default-src 'none'" in response.headers["content-security-policy"]
    assert _labels(study_db) == 0
    assert client.post("/logout", data={}, follow_redirects=False).status_code == 403
    ok = client.post(f"/items/{item}", data={"label": "A", "csrf": alices}, follow_redirects=False)
    assert ok.status_code == 303 and _labels(study_db) == 1
    assert client.post("/logout", data={"csrf": alices}, follow_redirects=False).status_code == 303


def test_the_dashboard_form_needs_the_admins_form_token(client, study_db):
    from .test_app import form_token

    _login(client, study_db["admin"])
    csrf = form_token(client.get("/dashboard").text)
    refused = client.post("/admin/close", data={"study": "pw", "closed": "1"}, follow_redirects=False)
    assert refused.status_code == 403 and not db.study(db.connect(study_db["db"]), "pw")["closed"]
    done = client.post("/admin/close", data={"study": "pw", "closed": "1", "csrf": csrf}, follow_redirects=False)
    assert done.status_code == 303 and db.study(db.connect(study_db["db"]), "pw")["closed"]


@pytest.mark.parametrize("body,status", [({"name": "x" * 201}, 422), ({"name": "   "}, 422),
                                         ({"name": "x", "study": "s" * 201}, 422), ({"name": "x", "role": 1}, 422),
                                         ({"name": " carol "}, 200)])
def test_annotator_names_are_bounded_strings(client, study_db, body, status):
    response = client.post("/admin/annotators", json=body, headers=_bearer(study_db["admin"]))
    assert response.status_code == status, response.text
    names = [r["name"] for r in db.connect(study_db["db"]).execute("SELECT name FROM annotators ORDER BY id")]
    assert names == (["alice", "bob", "carol"] if status == 200 else ["alice", "bob"])


def test_unknown_paths_methods_and_ids_answer_in_the_routes_shape(client, study_db):
    alice = _bearer(study_db["tokens"]["alice"])
    for method, path, status, media in [("get", "/items/abc", 404, "text/html"), ("get", "/nowhere", 404, "text/html"),
                                        ("post", "/api/items/1.5/label", 404, "application/json"),
                                        ("put", "/login", 405, "text/html"),
                                        ("delete", "/admin/annotators", 405, "application/json")]:
        response = client.request(method.upper(), path, headers=alice)
        assert response.status_code == status, (path, response.text)
        assert response.headers["content-type"].startswith(media), path
        assert "default-src 'none'" in response.headers["content-security-policy"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_admin_json_routes_take_json_only(client, study_db, content_type):
    headers = {**_bearer(study_db["admin"]), **({"Content-Type": content_type} if content_type else {})}
    response = client.post("/admin/annotators", content=b'{"name": "eve"}', headers=headers)
    assert response.status_code == 415 and response.json()["error"]


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
