"""The app through its HTTP interface (in process): auth (401 / 403), labels, closing, safe rendering, CSP."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from lima_align.annotate import db
from lima_align.annotate.app import COOKIE, create_app


@pytest.fixture
def client(study_db):
    return TestClient(create_app(study_db["db"]))


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def form_token(page: str) -> str:
    """The form token a rendered page put in its forms."""
    (token,) = set(re.findall(r'name="csrf" value="([0-9a-f]{32})"', page))
    return token


def queue_ids(client, token: str) -> list[int]:
    return [i["item_id"] for i in client.get("/api/queue", headers=bearer(token)).json()["items"]]


def other_item(client, study_db) -> tuple[int, str]:
    """An item in bob's queue but not in a third annotator's (an annotator with no shared items)."""
    conn = db.connect(study_db["db"])
    conn.execute("UPDATE items SET shared=0")  # carol, added now, gets no item at all
    from lima_align.annotate.study import add_annotator

    token = add_annotator(conn, db.study(conn, "pw"), "carol")
    return queue_ids(client, study_db["tokens"]["bob"])[0], token


@pytest.mark.parametrize("path,method", [("/", "get"), ("/queue", "get"), ("/items/1", "get"),
                                         ("/items/1", "post"), ("/api/queue", "get"),
                                         ("/api/items/1/label", "post"), ("/dashboard", "get"),
                                         ("/admin/annotators", "post"), ("/admin/close", "post")])
def test_no_token_or_wrong_token_is_401(client, path, method):
    assert getattr(client, method)(path).status_code == 401
    assert getattr(client, method)(path, headers=bearer("wrong-token")).status_code == 401
    client.cookies.set(COOKIE, "wrong-token")
    assert getattr(client, method)(path).status_code == 401


def test_another_annotators_item_is_403(client, study_db):
    item, carol = other_item(client, study_db)
    assert client.get(f"/items/{item}", headers=bearer(carol)).status_code == 403
    r = client.post(f"/api/items/{item}/label", json={"label": "A"}, headers=bearer(carol))
    assert r.status_code == 403
    assert client.post(f"/items/{item}", data={"label": "A"}, headers=bearer(carol)).status_code == 403
    assert client.get("/items/99999", headers=bearer(carol)).status_code == 404


def test_roles_are_separate(client, study_db):
    alice, admin = study_db["tokens"]["alice"], study_db["admin"]
    assert client.get("/dashboard", headers=bearer(alice)).status_code == 403
    assert client.post("/admin/annotators", json={"name": "x"}, headers=bearer(alice)).status_code == 403
    assert client.post("/admin/close", json={"study": "pw"}, headers=bearer(alice)).status_code == 403
    assert client.get("/items/1", headers=bearer(admin)).status_code == 403
    r = client.post("/admin/annotators", json={"name": "dave"}, headers=bearer(admin))
    assert r.status_code == 200 and len(queue_ids(client, r.json()["token"])) == 6


def test_login_cookie_label_change_and_close(client, study_db):
    r = client.post("/login", data={"token": study_db["tokens"]["alice"]}, follow_redirects=False)
    assert r.status_code == 303 and "httponly" in r.headers["set-cookie"].lower()
    assert "samesite=strict" in r.headers["set-cookie"].lower()
    first = client.get("/", follow_redirects=False).headers["location"]
    item = int(first.split("/")[-1])
    csrf = form_token(client.get(first).text)
    r = client.post(f"/items/{item}", data={"label": "A", "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith(f"?saved={item}")
    assert "1 / 6 labelled" in client.get(r.headers["location"]).text
    assert client.post(f"/items/{item}", data={"label": "bogus", "csrf": csrf}).status_code == 422
    r = client.post(f"/api/items/{item}/label", json={"label": "tie"})
    assert r.json() == {"ok": True, "item_id": item, "revision": 2}
    assert client.post("/admin/close", json={"study": "pw"}, headers=bearer(study_db["admin"]),
                       follow_redirects=False).status_code == 303
    assert client.post(f"/api/items/{item}/label", json={"label": "B"}).status_code == 409
    page = client.get(f"/items/{item}").text
    assert "study is closed" in page and "disabled" in page
    assert client.get("/api/queue").json()["closed"] is True


def test_untrusted_markdown_is_inert_and_csp_is_sent(client, study_db):
    token = study_db["tokens"]["alice"]
    conn = db.connect(study_db["db"])
    xss_item = conn.execute("SELECT id FROM items WHERE idx=0").fetchone()["id"]
    r = client.get(f"/items/{xss_item}", headers=bearer(token))
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    body = r.text
    assert "<script>window" not in body and "&lt;script&gt;window.__pwned" in body
    assert "<img" not in body and "onerror=\"window" not in body
    assert 'href="javascript:' not in body and 'src="http' not in body  # the image is a plain link, not fetched
    assert "**LIMA**" not in client.get(f"/items/{xss_item + 1}", headers=bearer(token)).text  # markdown renders


def test_dashboard_shows_progress_and_agreement(client, study_db):
    alice, bob = study_db["tokens"]["alice"], study_db["tokens"]["bob"]
    for token in (alice, bob):
        for item in queue_ids(client, token):
            client.post(f"/api/items/{item}/label", json={"label": "tie"}, headers=bearer(token))
    data = client.get("/admin/dashboard.json", headers=bearer(study_db["admin"])).json()
    assert [(a["name"], a["done"], a["assigned"]) for a in data[0]["annotators"]] == [("alice", 6, 6), ("bob", 6, 6)]
    assert data[0]["agreement"][0]["agreement"] == 1.0 and data[0]["agreement"][0]["n"] == 6
    assert "human:alice" in client.get("/dashboard", headers=bearer(study_db["admin"])).text
