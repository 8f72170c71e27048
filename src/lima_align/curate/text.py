"""Text helpers shared by the sources: fairseq/PTB detokenization and a strict, line-numbered CSV reader."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

from lima_align.errors import DataError
from lima_align.fileio import read_text

# fairseq-style tokenization (WritingPrompts; some wikiHow scrapes): punctuation and clitics split off by spaces.
_NEWLINE = re.compile(r"\s*<newline>\s*")
_TAG = re.compile(r"\[\s*([A-Za-z]{2,4})\s*\]")
_CLITIC = re.compile(r"(\w) (n['’]t|['’](?:s|re|ve|ll|d|m|S|RE|VE|LL|D|M))\b")
_BEFORE = re.compile(r" ([.,!?;:%)\]}]|\.\.\.|…)")
_AFTER = re.compile(r"([(\[{$#]) ")
_APOSTROPHE = re.compile(r"(\w) ([’']) (\w)")
_QUOTE = re.compile(r"``|''|\"")


def detokenize(text: str) -> str:
    """Undo fairseq/PTB-style tokenization: ``"[ WP ] You 're here , do n't go .<newline>"`` -> readable text."""
    text = _NEWLINE.sub("\n", text)
    lines = [_detok_line(line) for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _detok_line(line: str) -> str:
    line = re.sub(r"\s+", " ", line).strip()
    line = _TAG.sub(lambda m: f"[{m.group(1)}]", line)
    line = _APOSTROPHE.sub(r"\1\2\3", line)
    line = _CLITIC.sub(r"\1\2", line)
    line = _pair_quotes(line)
    line = _BEFORE.sub(r"\1", line)
    return _AFTER.sub(r"\1", line)


def _pair_quotes(line: str) -> str:
    """Attach each double quote to its quoted words: odd ones open (to the right), even ones close (to the left)."""
    parts = _QUOTE.split(line)
    if len(parts) == 1:
        return line
    out = [parts[0]]
    for i, part in enumerate(parts[1:]):
        if i % 2 == 0:  # opening quote
            out[-1] = out[-1].rstrip() + (" " if out[-1].strip() else "")
            out.append('"' + part.lstrip())
        else:
            out[-1] = out[-1].rstrip() + '"'
            out.append(part)
    return "".join(out)


def csv_rows(path: str | Path) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line, row)`` with lower-cased column names; broken quoting raises a DataError naming the line."""
    text = read_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        reader.fieldnames = [(f or "").strip().lower() for f in (reader.fieldnames or [])]
        for row in reader:
            if None in row:
                raise DataError("more fields than the header has (broken quoting?)", path, reader.line_num)
            yield reader.line_num, row
    except csv.Error as exc:
        raise DataError(f"malformed CSV: {exc}", path, reader.line_num) from None
