"""HTML -> text: code and lists kept, links/images/markup gone; property tests with hypothesis."""

from __future__ import annotations

import html
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lima_align.curate.html import html_to_text, strip_code

TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>")


def test_links_images_and_tags_removed_text_kept():
    out = html_to_text('<p>See <a href="https://example.com/x">the manual</a> and '
                       '<a href="http://a.b/c">http://a.b/c</a>.<img src="http://img/i.png" alt="pic"></p>'
                       "<script>alert(1)</script><style>p{}</style><p><b>Bold</b> &amp; &eacute;t&eacute;</p>")
    assert out == "See the manual and .\n\nBold & été"


def test_code_blocks_fenced_and_lists_as_markdown():
    out = html_to_text("<p>Run:</p><pre><code>for i in x:\n    print(i &lt; 2)\n</code></pre>"
                       "<ol><li>first</li><li>second<ul><li>nested</li></ul></li></ol><p>Use <code>a`b</code></p>")
    assert out == ("Run:\n\n```\nfor i in x:\n    print(i < 2)\n```\n\n1. first\n2. second\n   - nested"
                   "\n\nUse ``a`b``")


def test_fence_longer_than_backticks_in_code():
    assert html_to_text("<pre>```\nx\n```</pre>") == "````\n```\nx\n```\n````"


def test_escaped_tags_in_prose_become_code_and_bare_urls_go():
    out = html_to_text("<p>Use the &lt;br&gt; tag, see https://x.y/z or www.q.com/r now</p>")
    assert out == "Use the `<br>` tag, see or now"
    assert not TAG.search(strip_code(out))


def test_hostile_and_empty_input():
    for bad in ("", "   ", "<", "</p>", "<<>>", "\x00\x01<b>x", "<div>" * 500 + "deep" + "</div>" * 500,
                "<a href='javascript:alert(1)'>click</a>", "<!-- c --><?pi x?>t", "<![CDATA[x]]>"):
        out = html_to_text(bad)
        assert isinstance(out, str) and not TAG.search(strip_code(out))
    assert "deep" in html_to_text("<ul><li>" * 100 + "deep")  # past MAX_DEPTH: flattened, not lost
    assert isinstance(html_to_text("<ul><li>" * 3000 + "deep"), str)  # libxml2 caps the depth itself


URL = st.from_regex(r"https://example\.com/[a-z0-9]{6,12}", fullmatch=True)
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="<>&:/`"),
               max_size=40)
CODE = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\x00",
                                      whitelist_categories=("L", "N", "P", "S", "Zs")) | st.sampled_from("\n\t"),
               min_size=1, max_size=80).filter(
    # Control characters cannot occur in an XML dump; a leading newline after <pre> is dropped by HTML itself.
    lambda s: s.strip() and not s.startswith("\n") and not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", s))


@st.composite
def fragments(draw, junk: bool = True) -> str:
    """Random HTML; ``junk=False`` leaves out stray markup (an open "<!--" rightly swallows what follows)."""
    kinds = ["text", "p", "a", "img", "ul", "tag"] + (["junk"] if junk else [])
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(kinds))
        text = html.escape(draw(TEXT))
        if kind == "p":
            parts.append(f"<p>{text}</p>")
        elif kind == "a":
            parts.append(f'<a href="{draw(URL)}">{text}</a>')
        elif kind == "img":
            parts.append(f'<img src="{draw(URL)}" alt="{text}">')
        elif kind == "ul":
            parts.append(f"<ul><li>{text}</li><li><i>{text}</i></li></ul>")
        elif kind == "tag":
            parts.append(f"<{draw(st.sampled_from(['b', 'em', 'span', 'div', 'blockquote', 'h2', 'sup']))}>{text}")
        elif kind == "junk":
            parts.append(draw(st.sampled_from(["<", ">", "</x>", "<p", "&", "&#0;", "&bogus;", "<!--", "<br/>"])))
        else:
            parts.append(text)
    return "".join(parts)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fragments())
def test_property_no_tags_no_link_urls(fragment):
    urls = re.findall(r'(?:href|src)="([^"]+)"', fragment)
    out = html_to_text(fragment)
    assert not TAG.search(strip_code(out))
    for url in urls:
        assert url not in out


@settings(max_examples=300, deadline=None)
@given(fragments(junk=False), CODE, fragments())
def test_property_code_kept_byte_for_byte(before, code, after):
    out = html_to_text(f"{before}<pre><code>{html.escape(code)}</code></pre>{after}")
    assert code in out


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_property_never_crashes_on_any_text(text):
    out = html_to_text(text)
    assert isinstance(out, str) and not TAG.search(strip_code(out))
