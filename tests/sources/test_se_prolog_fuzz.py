"""Hostile Posts.xml prologs, generated: whatever comes before the rows (comments that mention ``<row``, padding
past the first chunk, processing instructions, UTF-8 or UTF-16, a DOCTYPE with or without an internal subset),
a declared entity is refused and no entity text ever reaches a row."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lima_align.errors import DataError
from lima_align.sources.se_dump import iter_rows, resolve_input

SECRET = "EXPANDED-ENTITY-TEXT"
PIECES = st.one_of(
    st.text(alphabet="ab <row->!x", max_size=20).filter(lambda t: "--" not in t and not t.endswith("-"))
    .map(lambda t: f"<!--{t}-->"),
    st.sampled_from(["\n", "  ", "<?lima x?>", "<!-- <row Id='1'/> -->"]),
    st.just("<!--" + " " * ((1 << 20) + 17) + "-->"),  # past the first 1 MiB chunk
)
DOCTYPES = st.sampled_from([
    ("", False), ("<!DOCTYPE posts>", False), ("<!DOCTYPE posts [<!ELEMENT posts ANY>]>", False),
    (f'<!DOCTYPE posts [<!ENTITY x "{SECRET}">]>', True),
    (f'<!DOCTYPE posts [<!-- <row --><!ENTITY x "{SECRET}">]>', True),
    (f'<!DOCTYPE posts [<!ENTITY y "{SECRET}"><!ENTITY x "&y;&y;">]>', True),
])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=st.lists(PIECES, max_size=3), between=st.lists(PIECES, max_size=2), doctype=DOCTYPES,
       encoding=st.sampled_from(["utf-8", "utf-16", None]))
def test_a_declared_entity_is_refused_wherever_and_however_it_is_written(before, between, doctype, encoding):
    declaration, declares = doctype
    body = "&amp;x;" if not declares else "&x;"
    head = f'<?xml version="1.0" encoding="{encoding}"?>\n' if encoding else ""
    text = (head + "".join(before) + declaration + "".join(between) + "<posts>\n"
            f'<row Id="1" PostTypeId="1" Score="5" Title="t" Body="a {body} b" />\n</posts>\n')
    data = text.encode(encoding or "utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "Posts.xml"
        path.write_bytes(data)
        dump = resolve_input(path, site="beer.stackexchange.com")
        try:
            bodies = [elem.get("Body") for _, elem in iter_rows(dump, {})]
        except DataError as exc:
            assert declares and "declares XML entities" in str(exc), exc
            return
    assert not declares, "a declared entity was not refused"
    assert bodies == ["a &x; b"] and all(SECRET not in b for b in bodies)
