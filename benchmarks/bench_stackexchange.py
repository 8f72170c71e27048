"""Benchmark: the Stack Exchange pipeline against the bare lxml parsing floor; workers on one file; memory; .7z.

Builds a large Posts.xml (default 1,000 MB) from the real rows of the dumps in ``../shared/data/stackexchange/``
(env ``LIMA_SHARED_DATA``), each copy with fresh ids, then measures, each in a fresh process so that peak RSS is
its own (for several workers: the largest process):

- ``bare``: ``lxml.etree.iterparse`` over the file touching every row's attributes (the parsing floor);
- ``pipeline``: the whole ``curate stackexchange`` run (parse + filters + HTML cleaning + sampling + output),
  with one worker and with ``--workers`` (default 2) on the same single file;
- ``--rss-mb N`` (e.g. 5000): the one-worker pipeline's peak RSS on a second, larger file;
- ``.7z`` (unless ``--no-7z``): how fast a real-content archive's Posts.xml streams out through py7zr and through
  ``7zz x -so``. Its rows are not repeated copies (which LZMA would compress unrealistically well): after the
  first copy every copy renames the words of titles and bodies by a seeded, length-preserving permutation of
  the vocabulary (markup and entities untouched), so the archive compresses like text, not like repeats.

Prints MB/s of each, every ratio against its baseline, and whether it meets the targets of a 2-core machine:
pipeline >= 0.6x bare, workers 2 >= 1.6x one worker, peak RSS < 300 MB, 7zz >= 3x py7zr.
Each kind runs ``--rounds`` times, alternated; the medians are compared.
Usage: ``python benchmarks/bench_stackexchange.py [--mb 1000] [--workers 2] [--rounds 3] [--rss-mb 5000]
[--mb-7z 200] [--workdir DIR] [--no-7z]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITES = ("beer.stackexchange.com", "coffee.stackexchange.com")
_IDS = re.compile(rb'(?<= )(Id|ParentId|AcceptedAnswerId)="(\d+)"')
_TEXT_ATTR = re.compile(r'(?<= )(Body|Title)="([^"]*)"')
_MARKUP = re.compile(r"(&lt;.*?&gt;|&#?\w+;)")
_WORD = re.compile(r"[A-Za-z]+")


def shared_data() -> Path:
    return Path(os.environ.get("LIMA_SHARED_DATA", ROOT.parent / "shared" / "data")) / "stackexchange"


def real_rows() -> list[bytes]:
    """The rows of the shared dumps, the ids of each site after the first shifted so that no id repeats."""
    rows = []
    for i, site in enumerate(SITES):
        repl = (lambda m, s=i * 1_000_000: m.group(1) + b'="' + str(int(m.group(2)) + s).encode() + b'"')
        with (shared_data() / site / "Posts.xml").open("rb") as fh:
            rows += [_IDS.sub(repl, line.strip()) for line in fh if line.lstrip().startswith(b"<row ")]
    return rows


class Renamer:
    """Per-copy renaming of words: a seeded permutation of the vocabulary within each word length."""

    def __init__(self, rows: list[bytes]):
        vocab: dict[int, set[str]] = {}
        for row in rows:
            for _, value in _TEXT_ATTR.findall(row.decode("utf-8")):
                for part in _MARKUP.split(value)[::2]:
                    for word in _WORD.findall(part):
                        vocab.setdefault(len(word), set()).add(word.lower())
        self.vocab = {n: sorted(words) for n, words in vocab.items()}

    def rows(self, rows: list[bytes], copy: int) -> list[bytes]:
        rng = random.Random(copy)
        table: dict[str, str] = {}
        for words in self.vocab.values():
            shuffled = words[:]
            rng.shuffle(shuffled)
            table.update(zip(words, shuffled))

        def word(m: re.Match) -> str:
            w = m.group(0)
            new = table.get(w.lower(), w)
            return new.upper() if w.isupper() and len(w) > 1 else new.capitalize() if w[0].isupper() else new

        def text(value: str) -> str:
            parts = _MARKUP.split(value)
            parts[::2] = [_WORD.sub(word, part) for part in parts[::2]]
            return "".join(parts)

        def attr(m: re.Match) -> str:
            return f'{m.group(1)}="{text(m.group(2))}"'

        return [_TEXT_ATTR.sub(attr, row.decode("utf-8")).encode("utf-8") for row in rows]


def build_posts(path: Path, target_mb: int, rename: bool = False) -> None:
    """Copies of the real rows, ids shifted by a per-copy offset, until the file reaches ``target_mb``."""
    rows = real_rows()
    renamer = Renamer(rows) if rename else None
    target = target_mb * 1_000_000
    with path.open("wb") as fh:
        fh.write(b'\xef\xbb\xbf<?xml version="1.0" encoding="utf-8"?>\n<posts>\n')
        copy = 0
        while fh.tell() < target:
            shift = copy * 10_000_000
            repl = (lambda m, s=shift: m.group(1) + b'="' + str(int(m.group(2)) + s).encode() + b'"')
            batch = renamer.rows(rows, copy) if renamer is not None and copy else rows
            fh.write(b"".join(b"  " + _IDS.sub(repl, row) + b"\n" for row in batch))
            copy += 1
        fh.write(b"</posts>\n")


# ------------------------------------------------------------------ measurements, each in a fresh process
def bare(path: str, _workers: int) -> dict:
    from lxml import etree

    rows = 0
    for _, elem in etree.iterparse(path, events=("end",), tag="row"):
        for _k, _v in elem.attrib.items():
            pass
        rows += 1
        elem.clear()
        while elem.getprevious() is not None:
            del elem.getparent()[0]
    return {"rows": rows}


def pipeline(path: str, workers: int) -> dict:
    from lima_align.sources import curate_to_files
    from lima_align.sources.stackexchange import StackExchangeConfig

    with tempfile.TemporaryDirectory() as out:
        cfg = StackExchangeConfig(site=["beer.stackexchange.com"], progress=False, workers=workers)
        result = curate_to_files("stackexchange", [path], cfg, Path(out) / "candidates.jsonl", allow_empty=True)
    return {"examples": len(result.examples), "kept": result.report["totals"]["questions_kept"],
            "considered": result.report["totals"]["questions_considered"]}


def stream(path: str, _workers: int) -> dict:
    from lima_align.sources.se_dump import iter_chunks, resolve_input

    total = sum(len(chunk) for chunk in iter_chunks(resolve_input(path)))
    return {"bytes": total, "tool": os.environ.get("LIMA_7Z")}


MODES = {"bare": bare, "pipeline": pipeline, "stream": stream}


def child(mode: str, path: str, workers: int) -> None:
    """Run one measurement in this (fresh) process and print its JSON line."""
    start = time.perf_counter()
    info = MODES[mode](path, workers)
    info["seconds"] = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    info["peak_rss_mb"] = max(own, kids)
    print(json.dumps(info))


def measure(mode: str, path: Path, mb: float, label: str, workers: int = 1, env: dict | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})}
    proc = subprocess.run([sys.executable, __file__, "--child", mode, str(path), str(workers)], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{label} failed:\n{proc.stderr[-3000:]}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    info["mb_per_s"] = mb / info["seconds"]
    extra = {k: v for k, v in info.items() if k not in ("seconds", "peak_rss_mb", "mb_per_s")}
    print(f"{label:24s} {info['mb_per_s']:8.1f} MB/s {info['seconds']:7.1f} s  peak RSS "
          f"{info['peak_rss_mb']:6.0f} MB  {extra}", flush=True)
    return info


def median(runs: list[dict]) -> dict:
    """The run of median speed."""
    return sorted(runs, key=lambda r: r["mb_per_s"])[len(runs) // 2]


def verdict(name: str, value: float, target: float, unit: str = "x", below: bool = False) -> bool:
    ok = value < target if below else value >= target
    print(f"  {name:34s} {value:8.2f}{unit}  target {'<' if below else '>='} {target}{unit}  "
          f"{'meets' if ok else 'MISSES'}")
    return ok


def ensure(path: Path, mb: int, rename: bool = False) -> float:
    if not path.exists() or path.stat().st_size < mb * 1_000_000:
        t = time.perf_counter()
        build_posts(path, mb, rename)
        print(f"built {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.0f} s", flush=True)
    return path.stat().st_size / 1e6


def build_7z(archive: Path, mb: int) -> float:
    """A real-content archive (renamed copies, see the docstring) of ``mb`` MB of Posts.xml."""
    xml = archive.parent / "renamed" / "Posts.xml"
    xml.parent.mkdir(exist_ok=True)
    size = ensure(xml, mb, rename=True)
    if not archive.exists():
        tool = shutil.which("7zz") or shutil.which("7z")
        if tool:  # 7-Zip's default method (LZMA2, level 5), as the dumps are made
            subprocess.run([tool, "a", "-bd", "-mx=5", str(archive), str(xml)], check=True, capture_output=True)
        else:
            import py7zr

            with py7zr.SevenZipFile(archive, "w") as zf:
                zf.write(xml, "Posts.xml")
    return size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=1000, help="size of the generated Posts.xml (MB)")
    ap.add_argument("--workers", type=int, default=2, help="workers for the one-file parallel run")
    ap.add_argument("--rounds", type=int, default=3, help="alternated rounds of bare / 1 worker / workers")
    ap.add_argument("--rss-mb", type=int, default=0, help="also measure peak RSS on a file of this size (MB)")
    ap.add_argument("--mb-7z", type=int, default=200, help="uncompressed size of the .7z's Posts.xml (MB)")
    ap.add_argument("--workdir", default=None, help="where the files are built (default: a temp dir)")
    ap.add_argument("--no-7z", action="store_true", help="skip the .7z measurement")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="lima-bench-se-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    xml = work / "Posts.xml"
    mb = ensure(xml, args.mb)
    runs: dict[str, list[dict]] = {"bare": [], "one": [], "many": []}
    for r in range(args.rounds):  # alternated, so that a slow spell of the machine hits every kind alike
        print(f"round {r + 1} of {args.rounds}", flush=True)
        runs["bare"].append(measure("bare", xml, mb, "bare iterparse"))
        runs["one"].append(measure("pipeline", xml, mb, "pipeline, 1 worker"))
        runs["many"].append(measure("pipeline", xml, mb, f"pipeline, {args.workers} workers", args.workers))
    b, p, pw = (median(runs[k]) for k in ("bare", "one", "many"))
    if pw["examples"] != p["examples"] or pw["kept"] != p["kept"]:
        raise SystemExit(f"the {args.workers}-worker run differs from the one-worker run: {pw} vs {p}")
    print(f"on {mb:.0f} MB, medians of {args.rounds} rounds: bare {b['mb_per_s']:.1f} MB/s, pipeline "
          f"{p['mb_per_s']:.1f} MB/s, {args.workers} workers {pw['mb_per_s']:.1f} MB/s")
    verdict("pipeline / bare iterparse", p["mb_per_s"] / b["mb_per_s"], 0.6)
    verdict(f"{args.workers} workers / 1 worker, one file", pw["mb_per_s"] / p["mb_per_s"], 1.6)
    verdict("peak RSS, 1 worker", max(r["peak_rss_mb"] for r in runs["one"]), 300, " MB", below=True)
    verdict(f"peak RSS, {args.workers} workers (largest process)", max(r["peak_rss_mb"] for r in runs["many"]),
            300, " MB", below=True)
    if args.rss_mb:
        big = work / f"Posts-{args.rss_mb}.xml"
        big_mb = ensure(big, args.rss_mb)
        pb = measure("pipeline", big, big_mb, f"pipeline, 1 worker, {big_mb:.0f} MB")
        verdict(f"peak RSS, 1 worker, {big_mb:.0f} MB", pb["peak_rss_mb"], 300, " MB", below=True)
    if not args.no_7z:
        archive = work / "real-content.7z"
        raw_mb = build_7z(archive, args.mb_7z)
        print(f".7z: {archive.stat().st_size / 1e6:.0f} MB compressed, {raw_mb:.0f} MB Posts.xml "
              f"(ratio {raw_mb / (archive.stat().st_size / 1e6):.1f})")
        slow = measure("stream", archive, raw_mb, ".7z stream, py7zr", env={"LIMA_7Z": "py7zr"})
        if shutil.which("7zz") or shutil.which("7z"):
            fast = measure("stream", archive, raw_mb, ".7z stream, 7zz", env={"LIMA_7Z": ""})
            verdict("7zz / py7zr", fast["mb_per_s"] / slow["mb_per_s"], 3.0)
        else:
            print("  7zz / 7z not on PATH: apt-get install 7zip to measure it")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
