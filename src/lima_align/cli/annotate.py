"""``lima-align annotate serve|create-study|add-annotator|close|export``: argument parsing for the human
annotation app (:mod:`lima_align.annotate`)."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("annotate", help="human annotation web app (pairwise, absolute, multi-turn, review)",
                            description="Human studies in the browser: create a study from outputs files, add "
                                        "annotators (each gets a token), serve, export labels as judgments JSONL.")
    asub = parser.add_subparsers(dest="annotate_command", required=True, metavar="ACTION")

    s = asub.add_parser("serve", help="run the web app on a study database")
    s.add_argument("--db", required=True, help="study database (SQLite)")
    s.add_argument("--host", default="127.0.0.1", help="default %(default)s (use a reverse proxy with TLS beyond)")
    s.add_argument("--port", type=int, default=8765, help="default %(default)s")
    s.add_argument("--max-body-bytes", type=int, default=1 << 20,
                   help="larger request bodies are refused with 413 before being read (default %(default)s)")
    s.set_defaults(func=cmd_serve)

    c = asub.add_parser("create-study", help="a study from outputs files; prints the admin token the first time")
    c.add_argument("--db", required=True, help="study database (created if missing)")
    c.add_argument("--name", required=True, help="study name")
    c.add_argument("--kind", required=True, choices=("pairwise", "absolute", "multiturn", "review"))
    c.add_argument("--a", help="pairwise: outputs of the model under test")
    c.add_argument("--b", help="pairwise: outputs to compare with")
    c.add_argument("--sample", type=int, default=0, help="pairwise: which sample of --a (default 0)")
    c.add_argument("--outputs", help="absolute: answers to rate")
    c.add_argument("--conversations", help="multiturn: full conversations")
    c.add_argument("--candidates", help="review: candidate conversations (e.g. from lima-align curate)")
    c.add_argument("--overlap", type=int, help="items shared by every annotator (default: all; the paper: 50)")
    c.add_argument("--per-annotator", type=int, default=0, help="non-shared items per annotator (default 0)")
    c.add_argument("--seed", type=int, default=0, help="draws the shared items, queue orders and sides")
    c.set_defaults(func=cmd_create)

    a = asub.add_parser("add-annotator", help="create an annotator with a queue; prints their token once")
    a.add_argument("--db", required=True)
    a.add_argument("--study", help="study name (optional when the database holds one)")
    a.add_argument("--name", required=True, help="annotator name")
    a.set_defaults(func=cmd_add_annotator)

    k = asub.add_parser("close", help="close a study (labels can no longer change); --reopen undoes it")
    k.add_argument("--db", required=True)
    k.add_argument("--study")
    k.add_argument("--reopen", action="store_true")
    k.set_defaults(func=cmd_close)

    e = asub.add_parser("export", help="labels as judgments JSONL (review studies: accepted examples)")
    e.add_argument("--db", required=True)
    e.add_argument("--study")
    e.add_argument("--out", required=True, help="judgments JSONL (review: accepted examples JSONL)")
    e.add_argument("--agreement", nargs="*", metavar="JUDGMENTS",
                   help="print the rater agreement table, with these LLM judgments files added")
    e.set_defaults(func=cmd_export)


def _open(args: argparse.Namespace, create: bool = False):
    from pathlib import Path

    from lima_align.annotate import db
    from lima_align.errors import LimaError

    if not create and not Path(args.db).is_file():
        raise LimaError(f"{args.db}: no study database (create one with lima-align annotate create-study)")
    return db.connect(args.db)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from lima_align.annotate.app import create_app

    _open(args).close()
    uvicorn.run(create_app(args.db, max_body_bytes=args.max_body_bytes), host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    from lima_align.annotate import study as st
    from lima_align.errors import LimaError

    needs = {"pairwise": ("a", "b"), "absolute": ("outputs",), "multiturn": ("conversations",),
             "review": ("candidates",)}[args.kind]
    missing = [f"--{n}" for n in needs if not getattr(args, n)]
    if missing:
        raise LimaError(f"a {args.kind} study needs {' and '.join(missing)}")
    if args.kind == "pairwise":
        items = st.pairwise_items(args.a, args.b, args.sample)
    else:
        items = getattr(st, f"{args.kind}_items")(getattr(args, needs[0]))
    config = st.StudyConfig(overlap=args.overlap, per_annotator=args.per_annotator, seed=args.seed,
                            sources={n: str(getattr(args, n)) for n in needs})
    conn = _open(args, create=True)
    _, token = st.create_study(conn, args.name, args.kind, items, config)
    print(json.dumps({"study": args.name, "kind": args.kind, "items": len(items)}))
    if token:
        print(f"admin token (shown once; keep it): {token}", file=sys.stderr)
    return 0


def cmd_add_annotator(args: argparse.Namespace) -> int:
    from lima_align.annotate.study import add_annotator, require_study

    conn = _open(args)
    token = add_annotator(conn, require_study(conn, args.study), args.name)
    print(token)
    return 0


def cmd_close(args: argparse.Namespace) -> int:
    from lima_align.annotate import db
    from lima_align.annotate.study import require_study

    conn = _open(args)
    db.set_closed(conn, require_study(conn, args.study)["id"], not args.reopen)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from lima_align.annotate.export import export_review, export_rows, render_agreement
    from lima_align.evaluate.agreement import agreement_from_rows
    from lima_align.annotate.study import require_study
    from lima_align.fileio import iter_jsonl, write_jsonl

    conn = _open(args)
    study = require_study(conn, args.study)
    if study["kind"] == "review":
        print(json.dumps(export_review(conn, study, args.out)))
        return 0
    rows = export_rows(conn, study)
    write_jsonl(args.out, rows)
    print(json.dumps({"study": study["name"], "rows": len(rows), "out": args.out}))
    if args.agreement is not None:
        extra = [row for path in args.agreement for _line, row in iter_jsonl(path)]
        print(render_agreement(agreement_from_rows(rows + extra, study["kind"])))
    return 0
