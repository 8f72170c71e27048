"""Load: 20 concurrent annotators on 127.0.0.1 (bounded: 20 x 30 labels, then it stops), the server killed with
SIGKILL mid-run and restarted: no acknowledged label is lost, none is duplicated."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time

import httpx

from lima_align.annotate import db
from lima_align.annotate.study import StudyConfig, add_annotator, create_study, pairwise_items

from tests.annotate.conftest import free_port, start_server, stop_server, write_outputs

ANNOTATORS, ITEMS = 20, 30


async def annotate(url: str, token: str, plan: list[tuple[int, str]], acked: dict) -> None:
    """Post this annotator's labels in order; record each acknowledged one; stop at the first failure."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        for item, label in plan:
            try:
                r = await client.post(f"/api/items/{item}/label", json={"label": label})
            except httpx.HTTPError:
                return  # the server is gone: this label was never acknowledged
            assert r.status_code == 200, r.text
            acked[(token, item)] = (label, r.json()["revision"])


async def run_round(url: str, plans: dict[str, list], acked: dict, kill_after: int | None, proc) -> float:
    start = time.perf_counter()
    tasks = [asyncio.create_task(annotate(url, tok, plan, acked)) for tok, plan in plans.items()]
    if kill_after is not None:
        while len(acked) < kill_after and not all(t.done() for t in tasks):
            await asyncio.sleep(0.005)
        proc.send_signal(signal.SIGKILL)  # no shutdown hook runs: only what was committed survives
    await asyncio.gather(*tasks)
    return time.perf_counter() - start


def stored(db_path) -> dict:
    conn = db.connect(db_path)
    rows = conn.execute("SELECT n.token_sha256 AS t, l.item_id, l.label, l.revision FROM labels l "
                        "JOIN annotators n ON n.id=l.annotator_id").fetchall()
    conn.close()
    return {(r["t"], r["item_id"]): (json.loads(r["label"]), r["revision"]) for r in rows}


def test_20_annotators_kill_restart_no_lost_or_duplicated_label(tmp_path):
    a = write_outputs(tmp_path / "a.jsonl", "lima", ITEMS)
    b = write_outputs(tmp_path / "b.jsonl", "davinci", ITEMS)
    path = tmp_path / "load.sqlite"
    conn = db.connect(path)
    create_study(conn, "load", "pairwise", pairwise_items(a, b), StudyConfig())
    tokens = [add_annotator(conn, db.study(conn, "load"), f"ann{i}") for i in range(ANNOTATORS)]
    items = [r["item_id"] for r in db.queue(conn, 1)]
    conn.close()
    rng = random.Random(0)
    plans = {t: [(i, rng.choice(["A", "B", "tie"])) for i in items] for t in tokens}
    acked: dict = {}
    port = free_port()
    proc = start_server(path, port)
    url = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(run_round(url, plans, acked, kill_after=ANNOTATORS * ITEMS // 3, proc=proc))
        proc.wait(timeout=10)
        before_kill = dict(acked)
        assert 0 < len(before_kill) < ANNOTATORS * ITEMS
        on_disk = {(db.hash_token(t), i): v for (t, i), v in before_kill.items()}
        after_restart = stored(path)
        missing = [k for k, v in on_disk.items() if after_restart.get(k) != v]
        assert missing == []  # every acknowledged label is there, with its value and revision
        proc = start_server(path, port)
        rest = {t: [(i, lab) for i, lab in plan if (t, i) not in acked] for t, plan in plans.items()}
        seconds = asyncio.run(run_round(url, rest, acked, kill_after=None, proc=proc))
    finally:
        stop_server(proc)
    final = stored(path)
    assert len(acked) == ANNOTATORS * ITEMS == len(final)  # one row per (annotator, item): no duplicate
    assert all(final[(db.hash_token(t), i)][0] == plans_label for (t, i), (plans_label, _rev) in acked.items())
    n_rest = sum(len(p) for p in rest.values())
    print(f"\nload: {len(before_kill)} labels before the kill, {n_rest} after restart in {seconds:.2f}s "
          f"({n_rest / seconds:.0f} labels/s, 20 clients)")
