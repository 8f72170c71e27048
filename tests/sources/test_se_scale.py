"""Stack Exchange at scale: one file read as byte ranges by several processes, flat memory, 7-Zip streaming."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tracemalloc
from pathlib import Path

import pytest

from lima_align.cli import main
from lima_align.errors import DataError
from lima_align.sources.se_dump import iter_chunks, iter_rows, resolve_input, row_start, split_spans
from lima_align.sources import se_store
from lima_align.sources.se_pairs import SelectionConfig
from lima_align.sources.se_store import select_site
from lima_align.sources.stackexchange import StackExchangeConfig, curate_stackexchange
from tests.sources.conftest import SITES



@pytest.fixture()
def seven_zip() -> str:
    """Debian's 7zz (make setup installs the 7zip package); CI sets LIMA_REQUIRE_7ZZ=1 and there it must exist."""
    tool = shutil.which("7zz") or shutil.which("7z")
    if tool is None:
        if os.environ.get("LIMA_REQUIRE_7ZZ"):
            pytest.fail("LIMA_REQUIRE_7ZZ is set but neither 7zz nor 7z is on PATH (apt-get install 7zip)")
        pytest.skip("7zz / 7z is not on PATH (apt-get install 7zip)")
    return tool


def row_lines(data: bytes) -> list[int]:
    """Offsets of the lines that start a row, found the plain way (every line, one by one)."""
    starts, pos = [], 0
    for line in data.splitlines(keepends=True):
        if line.lstrip(b" \t").startswith(b"<row "):
            starts.append(pos)
        pos += len(line)
    return starts


def test_row_start_at_every_offset_of_a_real_dump(se_data):
    path = se_data / SITES[1] / "Posts.xml"
    data = path.read_bytes()[:60_000]  # the prolog and about 40 real rows: every offset is tried
    starts = row_lines(data)
    assert len(starts) > 20
    expected, k = [], 0
    for pos in range(len(data)):
        while k < len(starts) and starts[k] < pos:
            k += 1
        expected.append(starts[k] if k < len(starts) else None)
    with path.open("rb") as fh:
        got = [row_start(fh, pos, len(data)) for pos in range(len(data))]
    # A row cut off by the 60,000-byte limit may still be found past it in the file: compare those by line start.
    last = starts[-1]
    assert got[: last + 1] == expected[: last + 1]
    assert all(g is None or g > last for g in got[last + 1:])


def ids_of(dump, span=None) -> list[str]:
    counts: dict[str, int] = {}
    return [elem.get("Id") for _, elem in iter_rows(dump, counts, span=span)]


@pytest.mark.parametrize("where", ["at_row_start", "mid_row", "at_newline_before_row", "in_prolog",
                                   "in_closing_tag"])
def test_cut_at_a_row_line_mid_row_prolog_and_end_reads_every_row_once(se_data, where):
    dump = resolve_input(se_data / SITES[0])
    data = dump.path.read_bytes()
    starts = row_lines(data)
    middle = starts[len(starts) // 2]
    pos = {"at_row_start": middle, "mid_row": middle + 37, "at_newline_before_row": middle - 1,
           "in_prolog": 10, "in_closing_tag": len(data) - 4}[where]
    with dump.path.open("rb") as fh:
        cut = row_start(fh, pos, len(data))
    if where == "in_closing_tag":
        assert cut is None
        return
    assert cut == {"at_row_start": middle, "mid_row": starts[len(starts) // 2 + 1],
                   "at_newline_before_row": middle, "in_prolog": starts[0]}[where]
    whole = ids_of(dump)
    first, second = ids_of(dump, (0, cut)), ids_of(dump, (cut, len(data)))
    assert first + second == whole
    assert len(whole) == len(re.findall(rb'<row Id="\d+" PostTypeId="[12]"', data)) == 663 + 1572
    assert second[0] == re.search(rb'Id="(\d+)"', data[cut:cut + 200]).group(1).decode()


def test_split_spans_cover_the_file_at_row_lines(se_data):
    path = se_data / SITES[0] / "Posts.xml"
    data = path.read_bytes()
    starts = set(row_lines(data))
    spans = split_spans(path, 5, 1)
    assert len(spans) == 5 and spans[0][0] == 0 and spans[-1][1] == len(data)
    assert all(a[1] == b[0] and b[0] in starts for a, b in zip(spans, spans[1:]))
    assert split_spans(path, 5, len(data)) == [(0, len(data))]  # too small to cut


def test_one_line_dump_is_not_cut(tmp_path, se_data):
    data = (se_data / SITES[1] / "Posts.xml").read_bytes()
    flat = tmp_path / "coffee.stackexchange.com" / "Posts.xml"
    flat.parent.mkdir()
    flat.write_bytes(data.replace(b"\n  <row", b"<row"))
    assert split_spans(flat, 4, 1) == [(0, flat.stat().st_size)]
    cfg = dict(min_score=3, min_chars=400, per_group=30, progress=False)
    one = curate_stackexchange([str(flat.parent)], StackExchangeConfig(**cfg))
    four = curate_stackexchange([str(flat.parent)], StackExchangeConfig(**cfg, workers=4, min_span_mb=1e-6))
    assert one.examples == four.examples and one.examples


@pytest.mark.parametrize("options", [[], ["--min-score", "3", "--min-chars", "400", "--per-group", "60"]])
def test_split_and_merge_output_is_byte_identical(se_data, tmp_path, capsys, options):
    paths = [str(se_data / s) for s in SITES]
    outputs = {}
    for name, extra in {"one": ["--workers", "1"], "two": ["--workers", "2", "--min-span-mb", "0.3"],
                        "five": ["--workers", "5", "--min-span-mb", "0.05"]}.items():
        out, rep = tmp_path / f"{name}.jsonl", tmp_path / f"{name}.json"
        code = main(["curate", "stackexchange", "--no-progress", *paths, "--out", str(out), "--report", str(rep),
                     *options, *extra])
        assert code in (0, 1), capsys.readouterr().err
        report = json.loads(rep.read_text())
        for key in ("workers", "min_span_mb"):
            report["config"].pop(key)
        outputs[name] = (out.read_bytes(), json.dumps(report, sort_keys=True))
    assert outputs["one"] == outputs["two"] == outputs["five"]
    assert outputs["one"][0].count(b"\n") > 0 or not options


def test_five_ranges_really_split_the_site(se_data, tmp_path):
    dump = resolve_input(se_data / SITES[0])
    spans = split_spans(dump.path, 5, 50_000)
    assert len(spans) == 5
    per_span = [ids_of(dump, span) for span in spans]
    assert all(per_span) and sum(per_span, []) == ids_of(dump)


def test_error_in_a_later_range_names_the_file_and_its_line(se_data, tmp_path):
    lines = (se_data / SITES[0] / "Posts.xml").read_bytes().split(b"\n")
    bad = len(lines) * 3 // 4
    lines[bad] = lines[bad].replace(b"<row ", b"<row <", 1)
    site = tmp_path / SITES[0]
    site.mkdir()
    (site / "Posts.xml").write_bytes(b"\n".join(lines))
    cfg = StackExchangeConfig(workers=2, min_span_mb=0.1, progress=False)
    with pytest.raises(DataError) as err:
        curate_stackexchange([str(site)], cfg)
    assert err.value.path == str(site / "Posts.xml")
    assert f"malformed XML at line {bad + 1}," in str(err.value)
    with pytest.raises(DataError, match=f"line {bad + 1},"):  # the same line as one process reads it
        curate_stackexchange([str(site)], StackExchangeConfig(progress=False))


def replicate(src: Path, dst: Path, copies: int) -> None:
    """Copies of a real dump's rows with fresh ids (shifted per copy)."""
    data = src.read_bytes()
    head, rest = data.split(b"\n", 1)
    rows = [line for line in data.splitlines() if line.lstrip().startswith(b"<row ")]
    ids = re.compile(rb'(?<= )(Id|ParentId|AcceptedAnswerId)="(\d+)"')
    with dst.open("wb") as fh:
        fh.write(b'<?xml version="1.0" encoding="utf-8"?>\n<posts>\n')
        for copy in range(copies):
            shift = copy * 1_000_000
            fh.write(b"".join(ids.sub(lambda m: m.group(1) + b'="%d"' % (int(m.group(2)) + shift), r) + b"\n"
                              for r in rows))
        fh.write(b"</posts>\n")


def test_memory_does_not_grow_with_the_number_of_questions(se_data, tmp_path, monkeypatch):
    """Python-side peak (tracemalloc) of the whole site pass on 2 and on 16 copies of a real dump: the per-post
    state lives in SQLite and the spool, so 8x the questions must not cost more memory (the kept pairs are
    bounded by keep_per_site, reached by both; records go to SQLite in batches, made small here)."""
    monkeypatch.setattr(se_store, "BATCH", 200)
    cfg = SelectionConfig(min_score=3, min_chars=400, keep_per_site=20)
    peaks = {}
    for copies in (2, 16):
        path = tmp_path / f"x{copies}" / "Posts.xml"
        path.parent.mkdir()
        replicate(se_data / SITES[1] / "Posts.xml", path, copies)
        dump = resolve_input(path, SITES[1])
        tracemalloc.start()
        result = select_site(dump, "Other", cfg)
        peaks[copies] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert result.questions["considered"] == 225 * copies
    assert peaks[16] < 1.25 * peaks[2], peaks


def build_7z(tool: str, xml: Path, archive: Path) -> None:
    subprocess.run([tool, "a", "-bd", "-mx=1", str(archive), str(xml)], check=True, capture_output=True)


def test_7zz_streams_the_same_bytes_as_py7zr(se_data, tmp_path, seven_zip, monkeypatch):
    xml = se_data / SITES[0] / "Posts.xml"
    archive = tmp_path / "beer.stackexchange.com.7z"
    build_7z(seven_zip, xml, archive)
    streamed = {}
    for tool in ("py7zr", seven_zip):
        monkeypatch.setenv("LIMA_7Z", tool)
        dump = resolve_input(archive)
        assert dump.member == "Posts.xml" and dump.size == xml.stat().st_size
        streamed[tool] = b"".join(iter_chunks(dump))
    assert streamed["py7zr"] == streamed[seven_zip] == xml.read_bytes()


def test_7zz_stops_when_the_reader_stops(se_data, tmp_path, seven_zip, monkeypatch):
    archive = tmp_path / "beer.stackexchange.com.7z"
    build_7z(seven_zip, se_data / SITES[0] / "Posts.xml", archive)
    monkeypatch.setenv("LIMA_7Z", seven_zip)
    chunks = iter_chunks(resolve_input(archive))
    assert next(chunks).startswith(b"\xef\xbb\xbf<?xml")
    chunks.close()  # kills 7zz; nothing is left running
    out = subprocess.run(["pgrep", "-f", str(archive)], capture_output=True, text=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("damage", ["truncate", "corrupt", "not_an_archive"])
def test_broken_archive_through_7zz_names_the_file(se_data, tmp_path, seven_zip, monkeypatch, capsys, damage):
    archive = tmp_path / "beer.stackexchange.com.7z"
    build_7z(seven_zip, se_data / SITES[0] / "Posts.xml", archive)
    data = bytearray(archive.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "corrupt":
        for i in range(300, 3000):
            data[i] ^= 0x5A
    else:
        data = bytearray(b"this is not a 7z archive\n" * 10)
    archive.write_bytes(bytes(data))
    monkeypatch.setenv("LIMA_7Z", seven_zip)
    code = main(["curate", "stackexchange", "--no-progress", str(archive), "--out", str(tmp_path / "c.jsonl")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and str(archive) in err and "Traceback" not in err, err
    assert "truncated or corrupt" in err or "corrupt or truncated" in err, err


def test_lima_7z_names_a_missing_tool(tmp_path, monkeypatch, se_data):
    monkeypatch.setenv("LIMA_7Z", "no-such-7zip-tool")
    archive = tmp_path / "beer.stackexchange.com.7z"
    archive.write_bytes(b"7z")
    with pytest.raises(DataError, match="LIMA_7Z='no-such-7zip-tool' is not an executable"):
        resolve_input(archive)


def _dump(tmp_path: Path, rows: list[dict], head: bytes = b'<?xml version="1.0" encoding="utf-8"?>\n<posts>\n',
          tail: bytes = b"</posts>\n", between: bytes = b"", encoding: str = "utf-8") -> Path:
    from xml.sax.saxutils import quoteattr

    lines = [f"  <row {' '.join(f'{k}={quoteattr(str(v))}' for k, v in r.items())} />\n".encode(encoding)
             for r in rows]
    lines.insert(len(lines) // 2, between)
    site = tmp_path / "coffee.stackexchange.com"
    site.mkdir(exist_ok=True)
    (site / "Posts.xml").write_bytes(head + b"".join(lines) + tail)
    return site


def _pairs(n: int, body: str = "The grind size decides how fast the water flows through the coffee. ") -> list[dict]:
    rows = []
    for i in range(1, n + 1):
        rows.append({"Id": i, "PostTypeId": 1, "Score": i, "Title": f"Question {i}?", "Body": f"<p>Why {i}?</p>",
                     "CreationDate": "2019-01-01T00:00:00.000"})
        rows.append({"Id": 10_000 + i, "PostTypeId": 2, "ParentId": i, "Score": 20, "Body": f"<p>{body * 22}</p>",
                     "CreationDate": "2019-01-02T00:00:00.000"})
    return rows


def _one_and_three(site: Path):
    return [curate_stackexchange([str(site)], StackExchangeConfig(progress=False, workers=w, min_span_mb=1e-4))
            for w in (1, 3)]


def test_ids_past_64_bits_are_counted_not_a_crash(tmp_path):
    rows = _pairs(10) + [{"Id": 2**63, "PostTypeId": 1, "Score": 1, "Title": "t?", "Body": "<p>b</p>"},
                         {"Id": 5, "PostTypeId": 2, "ParentId": 2**64, "Score": 50, "Body": "<p>x</p>"}]
    for result in _one_and_three(_dump(tmp_path, rows)):
        report = result.report["sites"]["coffee.stackexchange.com"]
        assert report["questions"]["rejected"] == {"missing_fields": 1} and report["questions"]["kept"] == 10
        assert report["answers"]["outcomes"]["missing_fields"] == 1


def test_a_latin1_dump_with_an_attributed_root_reads_the_same_in_ranges(tmp_path):
    head = b'<?xml version="1.0" encoding="ISO-8859-1"?>\n<rowset generator="test">\n'
    site = _dump(tmp_path, _pairs(30, "Caf\u00e9 cr\u00e8me needs a fine grind and a short pull of water. "),
                 head=head, tail=b"</rowset>\n", encoding="latin-1")
    assert len(split_spans(site / "Posts.xml", 3, 100)) == 3
    one, three = _one_and_three(site)
    assert one.examples == three.examples and len(one.examples) == 30
    assert "Caf\u00e9 cr\u00e8me" in one.examples[0].conversations[1]


def test_an_element_between_rows_longer_than_a_chunk_is_left_whole(tmp_path):
    note = b"  <note>" + b"x" * (3 << 19) + b"</note>\n"  # 1.5 MiB: it spans a 1 MiB chunk boundary
    one, three = _one_and_three(_dump(tmp_path, _pairs(20), between=note))
    assert one.examples == three.examples and len(one.examples) == 20


def test_a_repeated_answer_id_under_one_question_drops_those_rows(tmp_path):
    rows = _pairs(12)
    rows.append(dict(rows[5], Body="<p>" + "A different answer with the same id and score. " * 30 + "</p>"))
    for result in _one_and_three(_dump(tmp_path, rows)):
        report = result.report["sites"]["coffee.stackexchange.com"]
        assert report["answers"]["outcomes"]["duplicate_id"] == 2
        assert report["questions"]["rejected"] == {"no_answer_min_score": 1}
        assert 3 not in {e.meta["question_id"] for e in result.examples}


def test_a_repeated_question_id_drops_every_such_row_however_the_file_is_cut(tmp_path):
    rows = _pairs(40)
    rows.append(dict(rows[10], Title="Another question with the same id?"))  # Id 6, far from the first one
    site = _dump(tmp_path, rows)
    assert len(split_spans(site / "Posts.xml", 3, 100)) == 3
    results = _one_and_three(site)
    for result in results:
        report = result.report["sites"]["coffee.stackexchange.com"]
        assert report["questions"]["rejected"] == {"question_duplicate_id": 2}
        assert report["questions"]["kept"] == 39 and report["answers"]["outcomes"]["question_rejected"] == 1
        assert 6 not in {e.meta["question_id"] for e in result.examples}
    assert results[0].examples == results[1].examples
