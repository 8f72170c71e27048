"""`curate stackexchange` on the real dumps in ../shared/data/stackexchange, on .7z archives and on bad input."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest
from lxml import etree

from lima_align.cli import main
from lima_align.curate.html import html_to_text, strip_code
from lima_align.errors import DataError
from lima_align.sources.se_dump import parse_tags, resolve_input
from lima_align.sources.se_pairs import license_for, prompt_is_title
from lima_align.sources.se_sites import EXCLUDED, classify, load_site_table, site_from_path
from lima_align.sources.stackexchange import StackExchangeConfig, curate_stackexchange
from tests.sources.conftest import SITES

FIRST_PERSON = re.compile(r"\bI\b|\bI['’](?:m|ve|d|ll)\b|(?i:\b(?:me|my|mine|myself)\b)")
TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>")


@pytest.fixture(scope="module")
def raw_posts(se_data: Path) -> dict[tuple[str, int], dict[str, str]]:
    """Every row of both real dumps, by (site, Id)."""
    posts = {}
    for site in SITES:
        for _, el in etree.iterparse(str(se_data / site / "Posts.xml"), tag="row"):
            posts[(site, int(el.get("Id")))] = dict(el.attrib)
            el.clear()
    return posts


def run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(["curate", "stackexchange", "--no-progress", *argv])
    return code, capsys.readouterr().err


def check_row(row: dict, raw_posts: dict, min_chars: int, max_chars: int) -> None:
    """The invariants every output row must hold."""
    assert row["source"] == "stackexchange"
    prompt, answer = row["conversations"]
    meta = row["meta"]
    assert prompt.strip() and answer.strip()
    assert min_chars <= len(answer) <= max_chars
    prose = strip_code(answer)
    assert not TAG.search(prose), TAG.search(prose)
    assert not FIRST_PERSON.search(prose)
    assert "stack exchange" not in prose.lower() and "as mentioned" not in prose.lower()
    site, qid, aid = meta["site"], meta["question_id"], meta["answer_id"]
    question, body = raw_posts[(site, qid)], raw_posts[(site, aid)]["Body"]
    assert raw_posts[(site, aid)]["ParentId"] == str(qid)
    for url in re.findall(r"""(?:href|src)=["']([^"']+)""", body):
        if len(url) > 8:  # short relative links ("/q/1") may be ordinary words
            assert url not in prose, url
    assert "://" not in prose
    field = meta["curation"]["prompt_field"]
    assert field in ("title", "body")
    if field == "title":
        assert prompt == question["Title"].strip()
    for key in ("origin", "license", "url", "source_id", "group", "question_score", "answer_score"):
        assert meta[key] not in (None, ""), key
    assert meta["license"] in ("CC BY-SA 2.5", "CC BY-SA 3.0", "CC BY-SA 4.0")
    assert meta["url"] == f"https://{site}/questions/{qid}"
    assert int(raw_posts[(site, aid)]["Score"]) == meta["answer_score"]


def check_report(report: dict) -> None:
    """Report arithmetic: kept + rejected = considered, for questions and answers, per site."""
    for site, s in report["sites"].items():
        q = s["questions"]
        assert q["kept"] + sum(q["rejected"].values()) == q["considered"] == s["rows_by_type"].get("1", 0), site
        a = s["answers"]
        assert sum(a["outcomes"].values()) == a["considered"] == s["rows_by_type"].get("2", 0), site
        assert set(q["rejected"]) <= set(report["reasons"])
    t = report["totals"]
    assert t["questions_kept"] + sum(t["questions_rejected"].values()) == t["questions_considered"]


@pytest.mark.parametrize("options, min_chars, max_chars", [
    ([], 1200, 4096),
    (["--min-score", "3", "--min-chars", "400", "--max-chars", "3000"], 400, 3000),
])
def test_real_dumps_rows_and_report(se_data, raw_posts, tmp_path, capsys, options, min_chars, max_chars):
    out, report_path = tmp_path / "c.jsonl", tmp_path / "r.json"
    paths = [str(se_data / SITES[0]), str(se_data / SITES[1] / "Posts.xml")]
    code, err = run([*paths, "--out", str(out), "--report", str(report_path), *options], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows, "the run produced no output"
    for row in rows:
        check_row(row, raw_posts, min_chars, max_chars)
    report = json.loads(report_path.read_text())
    check_report(report)
    assert report["totals"]["examples_written"] == len(rows)
    assert report["sites"]["beer.stackexchange.com"]["rows_by_type"] == {"1": 663, "2": 1572, "4": 58, "5": 58,
                                                                         "7": 3}
    assert {r["meta"]["curation"]["prompt_field"] for r in rows} == {"title", "body"}
    assert len({r["id"] for r in rows}) == len(rows)


def test_seeded_reproducible_and_parallel_identical(se_data, tmp_path):
    paths = [str(se_data / s) for s in SITES]
    cfg = StackExchangeConfig(min_score=3, min_chars=400, per_group=40)
    one = curate_stackexchange(paths, cfg)
    two = curate_stackexchange(paths, StackExchangeConfig(min_score=3, min_chars=400, per_group=40, workers=2))
    assert one.examples == two.examples and len(one.examples) == 40
    other = curate_stackexchange(paths, StackExchangeConfig(min_score=3, min_chars=400, per_group=40, seed=1))
    assert [e.id for e in other.examples] != [e.id for e in one.examples]


def test_site_groups_override_and_stem_group(se_data, tmp_path, capsys):
    table = tmp_path / "groups.csv"
    table.write_text("site,group,note\ncoffee,STEM,test\n")
    out, rep = tmp_path / "c.jsonl", tmp_path / "r.json"
    code, err = run([str(se_data / s) for s in SITES] + ["--out", str(out), "--report", str(rep),
                                                         "--site-groups", str(table), "--min-score", "3",
                                                         "--min-chars", "400", "--per-group", "5"], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["meta"]["group"] for r in rows) == ["Other"] * 5 + ["STEM"] * 5
    assert json.loads(rep.read_text())["sampling"]["STEM"]["sites"]["coffee.stackexchange.com"]["sampled"] == 5


def test_7z_archive_streams_like_the_xml(se_data, tmp_path):
    py7zr = pytest.importorskip("py7zr", reason="py7zr is needed to build a .7z in the test")
    archive = tmp_path / "beer.stackexchange.com.7z"
    with py7zr.SevenZipFile(archive, "w") as zf:
        zf.write(se_data / SITES[0] / "Posts.xml", "Posts.xml")
    cfg = StackExchangeConfig(min_score=3, min_chars=400)
    from_7z = curate_stackexchange([str(archive)], cfg)
    from_xml = curate_stackexchange([str(se_data / SITES[0])], cfg)
    assert from_7z.examples == from_xml.examples and from_7z.examples
    assert from_7z.report["sites"][SITES[0]]["questions"] == from_xml.report["sites"][SITES[0]]["questions"]


@pytest.mark.parametrize("damage", ["truncate", "corrupt"])
def test_broken_7z_is_a_clear_error(se_data, tmp_path, capsys, damage):
    py7zr = pytest.importorskip("py7zr", reason="py7zr is needed to build a .7z in the test")
    archive = tmp_path / "beer.stackexchange.com.7z"
    with py7zr.SevenZipFile(archive, "w") as zf:
        zf.write(se_data / SITES[0] / "Posts.xml", "Posts.xml")
    data = bytearray(archive.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        for i in range(200, 2200):
            data[i] ^= 0x5A
    archive.write_bytes(bytes(data))
    code, err = run([str(archive), "--out", str(tmp_path / "c.jsonl")], capsys)
    assert code == 2
    assert str(archive) in err and "Traceback" not in err and err.count("\n") <= 2, err
    assert "truncated or corrupt" in err or "corrupt or truncated" in err, err


def test_malformed_xml_is_located_by_line_and_column_not_by_chunk(tmp_path):
    data = posts_xml(qa(1, 2) + qa(3, 4)).decode().splitlines()
    data[4] = data[4].replace("<row ", "<row <", 1)  # line 5 of the file
    with pytest.raises(DataError, match=r"malformed XML at line 5, column \d+") as err:
        curate_stackexchange([str(write_site(tmp_path, "\n".join(data).encode()))], StackExchangeConfig())
    assert "byte" not in str(err.value)


def posts_xml(rows: list[dict], head: str = '<?xml version="1.0" encoding="utf-8"?>\n') -> bytes:
    body = "".join(f"  <row {' '.join(f'{k}={quoteattr(str(v))}' for k, v in r.items())} />\n" for r in rows)
    return (head + "<posts>\n" + body + "</posts>\n").encode()


LONG = "<p>" + "The mash temperature decides how fermentable the wort is. " * 25 + "</p>"


def qa(qid: int, aid: int, score: int = 20, **q) -> list[dict]:
    question = {"Id": qid, "PostTypeId": 1, "Score": 5, "Title": f"Question {qid}?", "Body": "<p>Why so?</p>",
                "Tags": "|brewing|mash|", "CreationDate": "2019-01-01T00:00:00.000", **q}
    answer = {"Id": aid, "PostTypeId": 2, "ParentId": qid, "Score": score, "Body": LONG,
              "CreationDate": "2010-01-01T00:00:00.000"}
    return [question, answer]


def write_site(tmp_path: Path, data: bytes, site: str = "beer.stackexchange.com") -> Path:
    d = tmp_path / site
    d.mkdir(exist_ok=True)
    (d / "Posts.xml").write_bytes(data)
    return d


def test_quirks_bom_doctype_order_planted_and_types(tmp_path):
    rows = [qa(1, 2)[1], qa(1, 2)[0]]  # the answer comes before its question
    rows += qa(1000000001, 1000000010, OwnerUserId=-1)
    rows[-1]["OwnerUserId"] = -1
    rows += [{"Id": 9, "PostTypeId": 5, "Score": 0, "Body": ""}, {"Id": 11, "PostTypeId": 2, "Score": 50}]
    rows += qa(20, 21, Tags="<a><b-c>")
    data = b"\xef\xbb\xbf" + posts_xml(rows, '<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE posts>\n')
    result = curate_stackexchange([str(write_site(tmp_path, data))], StackExchangeConfig())
    site = result.report["sites"]["beer.stackexchange.com"]
    assert site["rows_by_type"] == {"1": 3, "2": 4, "5": 1}
    assert site["questions"]["rejected"] == {"planted_post": 1} and site["questions"]["kept"] == 2
    assert site["answers"]["outcomes"] == {"top_answer": 2, "planted_post": 1, "missing_fields": 1}
    by_id = {e.meta["question_id"]: e for e in result.examples}
    assert by_id[1].meta["tags"] == ["brewing", "mash"] and by_id[20].meta["tags"] == ["a", "b-c"]
    assert by_id[1].meta["license"] == "CC BY-SA 4.0" and by_id[1].meta["answer_license"] == "CC BY-SA 2.5"


def test_top_answer_only_and_missing_fields_counted(tmp_path):
    rows = qa(1, 2, score=12) + [{"Id": 3, "PostTypeId": 2, "ParentId": 1, "Score": 30, "Body": "<p>Short.</p>"}]
    rows += [{"Id": 4, "PostTypeId": 1, "Score": 3, "Body": "<p>x</p>"}]  # no Title
    result = curate_stackexchange([str(write_site(tmp_path, posts_xml(rows)))], StackExchangeConfig())
    site = result.report["sites"]["beer.stackexchange.com"]
    assert site["questions"]["rejected"] == {"answer_too_short": 1, "missing_fields": 1}
    assert site["answers"]["outcomes"] == {"top_answer": 1, "not_top_answer": 1}
    assert result.examples == []


@pytest.mark.parametrize("data, needle", [
    (posts_xml(qa(1, 2))[:-40], "malformed XML"),
    (posts_xml(qa(1, 2)).replace(b"Why so", b"Why \xff\xfe so"), "malformed XML"),
    (b"", "malformed XML"),
    (b'<?xml version="1.0"?>\n<comments>\n</comments>\n', "no <row> elements"),
])
def test_bad_xml_names_file_and_line(tmp_path, capsys, data, needle):
    site = write_site(tmp_path, data)
    code, err = run([str(site), "--out", str(tmp_path / "c.jsonl")], capsys)
    assert code == 2 and needle in err and str(site / "Posts.xml") in err and "Traceback" not in err, err
    assert not (tmp_path / "c.jsonl").exists()


@pytest.mark.parametrize("doctype", [
    '<!DOCTYPE posts [<!ENTITY x "EXPANDED-ENTITY">]>',
    '<!DOCTYPE posts [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
    '<!DOCTYPE posts [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>',
])
def test_entities_are_never_expanded(tmp_path, doctype):
    rows = qa(1, 2)
    rows[1]["Body"] = LONG + "<p>&x;</p>"
    data = posts_xml(rows, f'<?xml version="1.0"?>\n{doctype}\n').replace(b"&amp;x;", b"&x;")
    with pytest.raises(DataError, match="declares XML entities"):
        curate_stackexchange([str(write_site(tmp_path, data))], StackExchangeConfig())


@pytest.mark.parametrize("bypass", ["comment", "padding", "utf-16"])
def test_the_entity_check_is_the_parsers_not_a_byte_scan(tmp_path, bypass):
    # each got past a scan of the first 1 MiB up to the first "<row", and the entity's text reached the output
    rows = qa(1, 2)
    rows[1]["Body"] = LONG + "<p>&x;</p>"
    prolog = {"comment": '<?xml version="1.0"?>\n<!-- <row -->\n',
              "padding": '<?xml version="1.0"?>\n<!--' + " " * (1 << 20) + '-->\n',
              "utf-16": '<?xml version="1.0" encoding="UTF-16"?>\n'}[bypass]
    data = posts_xml(rows, prolog + '<!DOCTYPE posts [<!ENTITY x "EXPANDED-ENTITY">]>\n')
    data = data.replace(b"&amp;x;", b"&x;")
    if bypass == "utf-16":
        data = data.decode("utf-8").encode("utf-16")
    with pytest.raises(DataError, match="declares XML entities"):
        curate_stackexchange([str(write_site(tmp_path, data))], StackExchangeConfig())


def test_zero_output_is_not_silent(se_data, tmp_path, capsys):
    code, err = run([str(se_data / SITES[1]), "--out", str(tmp_path / "c.jsonl"), "--min-score", "100000"],
                    capsys)
    assert code == 1 and "no example passed the filters" in err and "no_answer_min_score" in err
    assert (tmp_path / "c.jsonl").read_text() == ""  # an empty candidates file, and the report beside it
    assert json.loads((tmp_path / "c.report.json").read_text())["totals"]["examples_written"] == 0


def test_help_shows_the_paper_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["curate", "stackexchange", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in ("(default: 10)", "(default: 1200)", "(default: 4096)", "(default: 200)", "(default: 3.0)"):
        assert default in text


def test_site_names_groups_and_exclusion(tmp_path):
    assert site_from_path(Path("/x/beer.stackexchange.com.7z")) == "beer.stackexchange.com"
    assert site_from_path(Path("/x/stackoverflow.com-Posts.7z")) == "stackoverflow.com"
    assert site_from_path(Path("/x/coffee")) == "coffee.stackexchange.com"
    table = load_site_table()
    assert classify("math", table).group == "STEM" and classify("cooking", table).group == "Other"
    assert classify("meta.cooking.stackexchange.com", table).group == EXCLUDED
    assert classify("ru.stackoverflow.com", table).group == EXCLUDED
    assert sum(i.group == "STEM" for i in table.values()) > 70 and sum(i.group == "Other" for i in table.values()) > 70
    with pytest.raises(DataError, match="not in the site table"):
        classify("nosuchsite", table)
    site = write_site(tmp_path, posts_xml(qa(1, 2)), "meta.beer.stackexchange.com")
    result = curate_stackexchange([str(site)], StackExchangeConfig())
    assert result.examples == [] and "meta.beer.stackexchange.com" in result.report["excluded_sites"]
    with pytest.raises(DataError, match="no such file"):
        resolve_input(tmp_path / "missing.7z")


def test_tags_licence_and_coin():
    assert parse_tags("<a><b-c>") == parse_tags("|a|b-c|") == ("a", "b-c")
    assert parse_tags("") == ()
    assert license_for("2011-04-07T23:59:59") == "CC BY-SA 2.5"
    assert license_for("2011-04-08T00:00:00") == "CC BY-SA 3.0"
    assert license_for("2018-05-02T00:00:00") == "CC BY-SA 4.0"
    coins = [prompt_is_title(0, "s", q, 0.5) for q in range(2000)]
    assert 900 < sum(coins) < 1100 and coins == [prompt_is_title(0, "s", q, 0.5) for q in range(2000)]


def test_cleaning_never_lengthens_real_answers(raw_posts):
    """The raw-length precheck (too short without cleaning) relies on this."""
    for post in raw_posts.values():
        if post.get("PostTypeId") == "2":
            assert len(html_to_text(post["Body"])) <= len(post["Body"])


def test_corrupt_row_attributes_are_counted_skips(tmp_path):
    rows = qa(1, 2) + [{"Id": "x", "PostTypeId": 1, "Score": 1, "Title": "t", "Body": "b"},
                       {"Id": 7, "PostTypeId": 2, "ParentId": "", "Score": 99, "Body": LONG}]
    result = curate_stackexchange([str(write_site(tmp_path, posts_xml(rows)))], StackExchangeConfig())
    site = result.report["sites"]["beer.stackexchange.com"]
    assert site["questions"]["rejected"] == {"missing_fields": 1}
    assert site["answers"]["outcomes"]["missing_fields"] == 1 and len(result.examples) == 1


def test_copy_of_real_dir_under_other_site_name(se_data, tmp_path):
    d = tmp_path / "some-dump"
    shutil.copytree(se_data / SITES[1], d)
    result = curate_stackexchange([str(d)], StackExchangeConfig(site=["coffee"], min_score=3))
    assert result.examples and {e.meta["site"] for e in result.examples} == {"coffee.stackexchange.com"}
