"""Benchmark: Stack Exchange pipeline throughput against a bare lxml iterparse loop, and peak memory.

Builds a large Posts.xml (default >= 500 MB) by replicating the real rows of the dumps in
``../shared/data/stackexchange/`` (env ``LIMA_SHARED_DATA``) with fresh ids, then measures, each in a fresh
process so that peak RSS is its own:

- ``bare``: ``lxml.etree.iterparse`` over the file touching every row's attributes (the parsing floor);
- ``pipeline``: the whole ``curate stackexchange`` run (parse + filters + HTML cleaning + sampling + output);
- ``pipeline-7z`` (unless ``--no-7z``): the pipeline reading a ``.7z`` of a smaller replica as a stream.

Prints MB/s of each, the pipeline/bare ratio (target >= 0.5) and peak RSS (target < 300 MB).
Usage: ``python benchmarks/bench_stackexchange.py [--mb 500] [--workdir DIR] [--no-7z]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITES = ("beer.stackexchange.com", "coffee.stackexchange.com")
_IDS = re.compile(rb'(?<= )(Id|ParentId|AcceptedAnswerId)="(\d+)"')


def shared_data() -> Path:
    return Path(os.environ.get("LIMA_SHARED_DATA", ROOT.parent / "shared" / "data")) / "stackexchange"


def real_rows() -> list[bytes]:
    rows = []
    for site in SITES:
        with (shared_data() / site / "Posts.xml").open("rb") as fh:
            rows += [line.strip() for line in fh if line.lstrip().startswith(b"<row ")]
    return rows


def build_posts(path: Path, target_mb: int) -> None:
    """Replicate the real rows with ids shifted by a per-copy offset until the file reaches ``target_mb``."""
    rows = real_rows()
    target = target_mb * 1_000_000
    with path.open("wb") as fh:
        fh.write(b'\xef\xbb\xbf<?xml version="1.0" encoding="utf-8"?>\n<posts>\n')
        copy = 0
        while fh.tell() < target:
            shift = copy * 10_000_000
            repl = (lambda m, s=shift: m.group(1) + b'="' + str(int(m.group(2)) + s).encode() + b'"')
            fh.write(b"".join(b"  " + _IDS.sub(repl, row) + b"\n" for row in rows))
            copy += 1
        fh.write(b"</posts>\n")


def bare(path: str) -> dict:
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


def pipeline(path: str) -> dict:
    from lima_align.sources import curate_to_files
    from lima_align.sources.stackexchange import StackExchangeConfig

    out = Path(tempfile.mkdtemp()) / "candidates.jsonl"
    cfg = StackExchangeConfig(site=["beer.stackexchange.com"], progress=False)
    result = curate_to_files("stackexchange", [path], cfg, out, allow_empty=True)
    return {"examples": len(result.examples), "kept": result.report["totals"]["questions_kept"],
            "considered": result.report["totals"]["questions_considered"]}


def child(mode: str, path: str) -> None:
    """Run one measurement in this (fresh) process and print its JSON line."""
    start = time.perf_counter()
    info = {"bare": bare, "pipeline": pipeline}[mode](path)
    info["seconds"] = time.perf_counter() - start
    info["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(info))


def measure(mode: str, path: Path, mb: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, __file__, "--child", mode, str(path)], env=env, check=True,
                          capture_output=True, text=True)
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    info["mb_per_s"] = mb / info["seconds"]
    print(f"{mode:12s} {info['mb_per_s']:8.1f} MB/s  {info['seconds']:7.1f} s  peak RSS "
          f"{info['peak_rss_mb']:6.0f} MB  {({k: v for k, v in info.items() if k not in ('seconds', 'peak_rss_mb', 'mb_per_s')})}")
    return info


def build_7z(xml: Path, archive: Path, mb: int) -> float:
    import py7zr

    small = archive.with_suffix(".xml")
    build_posts(small, mb)
    filters = [{"id": py7zr.FILTER_LZMA2, "preset": 1}]
    with py7zr.SevenZipFile(archive, "w", filters=filters) as zf:
        zf.write(small, "Posts.xml")
    size = small.stat().st_size / 1e6
    small.unlink()
    return size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=500, help="size of the generated Posts.xml (MB)")
    ap.add_argument("--mb-7z", type=int, default=100, help="uncompressed size of the .7z replica (MB)")
    ap.add_argument("--workdir", default=None, help="where the files are built (default: a temp dir)")
    ap.add_argument("--no-7z", action="store_true", help="skip the .7z measurement")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="lima-bench-se-"))
    work.mkdir(parents=True, exist_ok=True)
    xml = work / "Posts.xml"
    if not xml.exists() or xml.stat().st_size < args.mb * 1_000_000:
        t = time.perf_counter()
        build_posts(xml, args.mb)
        print(f"built {xml} ({xml.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.0f} s")
    mb = xml.stat().st_size / 1e6
    b = measure("bare", xml, mb)
    p = measure("pipeline", xml, mb)
    print(f"ratio pipeline/bare = {p['mb_per_s'] / b['mb_per_s']:.2f} (target >= 0.5); "
          f"pipeline peak RSS = {p['peak_rss_mb']:.0f} MB (target < 300 MB)")
    if not args.no_7z:
        archive = work / "beer.stackexchange.com.7z"
        if not archive.exists():
            build_7z(xml, archive, args.mb_7z)
        from py7zr import SevenZipFile

        with SevenZipFile(archive) as zf:
            raw_mb = sum(i.uncompressed for i in zf.list()) / 1e6
        print(f".7z: {archive.stat().st_size / 1e6:.0f} MB compressed, {raw_mb:.0f} MB Posts.xml")
        measure("pipeline", archive, raw_mb)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        main()
