"""Which Stack Exchange site a dump is, and whether it counts as STEM, Other, or is excluded.

The shipped table ``lima_align/data/stackexchange_sites.csv`` (columns ``site,group,note``) classifies the current
sites into the paper's two groups. It is our classification (the paper publishes only the counts: 75 STEM, 99
Other, 5 niche discarded): STEM is science, mathematics, engineering, programming and computing; Other is
everything else (languages, culture, hobbies, life). A user table with the same columns overrides rows by site.

Exclusion rule: a per-site meta (``meta.*``, ``*.meta.*``) missing from the table is excluded, because its
questions are about the site itself; the table marks ``excluded`` the network meta, two niche sites about the
network (Stack Apps, Moderators) and the sites not written in English (the localized Stack Overflows and the
Russian-language site). A site in no table is an error, not a guess: classify it with a user table.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from lima_align.errors import DataError

STEM = "STEM"
OTHER = "Other"
EXCLUDED = "excluded"
GROUPS = (STEM, OTHER)
_VALID = (STEM, OTHER, EXCLUDED)
_ARCHIVE_SUFFIX = re.compile(r"(?:-posts)?(?:\.7z)?$", re.IGNORECASE)


@dataclass(frozen=True)
class SiteInfo:
    """A site's group (``STEM``, ``Other`` or ``excluded``) and why, when excluded."""

    site: str
    group: str
    note: str = ""


def canonical_site(name: str) -> str:
    """Full domain of a site name: ``beer`` -> ``beer.stackexchange.com``; domains are kept (lower-cased)."""
    name = name.strip().lower()
    return name if "." in name else f"{name}.stackexchange.com"


def site_from_path(path: Path) -> str:
    """Site name of a dump path: the archive name (``beer.stackexchange.com.7z``, ``stackoverflow.com-Posts.7z``),
    the directory name, or for a ``Posts.xml`` file the name of the directory holding it."""
    if path.is_file() and path.suffix.lower() == ".xml":
        path = path.parent
    name = _ARCHIVE_SUFFIX.sub("", path.name) if path.suffix.lower() == ".7z" else path.name
    return canonical_site(name)


def _parse_table(text: str, origin: str) -> dict[str, SiteInfo]:
    table: dict[str, SiteInfo] = {}
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not {"site", "group"} <= set(reader.fieldnames):
        raise DataError("a site table needs a header with columns 'site' and 'group' (and optionally 'note')",
                        origin, 1)
    for row in reader:
        site, group = (row.get("site") or "").strip(), (row.get("group") or "").strip()
        if not site:
            continue
        match = {g.lower(): g for g in _VALID}.get(group.lower())
        if match is None:
            raise DataError(f"unknown group {group!r} (expected one of {', '.join(_VALID)})", origin,
                            reader.line_num, "group")
        table[canonical_site(site)] = SiteInfo(canonical_site(site), match, (row.get("note") or "").strip())
    return table


def load_site_table(override: str | Path | None = None) -> dict[str, SiteInfo]:
    """The shipped site table, with the rows of a user CSV (``site,group[,note]``) replacing the same sites."""
    text = resources.files("lima_align").joinpath("data/stackexchange_sites.csv").read_text("utf-8")
    table = _parse_table(text, "stackexchange_sites.csv")
    if override is not None:
        path = Path(override)
        if not path.is_file():
            raise DataError("site table not found", path)
        try:
            table.update(_parse_table(path.read_text("utf-8-sig"), str(path)))
        except UnicodeDecodeError:
            raise DataError("site table is not valid UTF-8", path) from None
    return table


def classify(site: str, table: dict[str, SiteInfo]) -> SiteInfo:
    """The site's group; meta sites are excluded by rule; a site missing from the table is an error."""
    site = canonical_site(site)
    if site in table:
        return table[site]
    if site.startswith("meta.") or ".meta." in site:
        return SiteInfo(site, EXCLUDED, "meta: questions about the site itself")
    raise DataError(f"site {site!r} is not in the site table; classify it with --site-groups FILE "
                    "(CSV with columns site,group where group is STEM, Other or excluded)")
