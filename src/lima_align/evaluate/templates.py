"""Judge prompt templates: data files (``prompts/*.yaml``) with a name, a version and a ``{{placeholder}}`` text.

The version is part of every cache key and every judgment row, so editing a prompt without bumping its version
is the one way to mix results; :func:`load_template` therefore also records a hash of the text.

A template for the weighted verdict mode also lists its ``choices``: each label and the one reply token that
stands for it (``{A: "A", B: "B", tie: "C"}``); the verdict is read from the probabilities of those tokens at
the first position of the reply, so the prompt must ask for that token alone.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from lima_align.errors import LimaError

PROMPTS_DIR = Path(__file__).parent / "prompts"
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@dataclass(frozen=True)
class Template:
    name: str
    version: str
    text: str
    labels: tuple[str, ...] = ()
    source: str = ""
    choices: tuple[tuple[str, str], ...] = ()  # (label, reply token) pairs: the weighted mode's verdict tokens

    @property
    def choice_map(self) -> dict[str, str]:
        return dict(self.choices)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:12]

    @property
    def fields(self) -> set[str]:
        return set(_PLACEHOLDER.findall(self.text))

    def render(self, **values: str) -> str:
        """Fill every placeholder in ONE pass: text inserted (a model answer) is never scanned again."""
        missing = self.fields - set(values)
        if missing:
            raise LimaError(f"template {self.name!r} needs {sorted(missing)}")
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), self.text)

    def provenance(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "sha256_12": self.digest}


def load_template(name_or_path: str | Path) -> Template:
    """A built-in template by name (``pairwise``, ``absolute``, ``safety``, ``likert``, ``multiturn``) or a
    YAML file with the same keys."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROMPTS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROMPTS_DIR.glob("*.yaml")))
        raise LimaError(f"no judge prompt {name_or_path!r} (built-in: {known})")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for key in ("name", "version", "template"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise LimaError(f"{path}: judge prompt needs a non-empty '{key}'")
    return Template(data["name"], data["version"], data["template"], tuple(str(x) for x in data.get("labels", ())),
                    str(data.get("source", "")), _choices(path, data.get("choices")))


def _choices(path: Path, raw: object) -> tuple[tuple[str, str], ...]:
    """``choices: {label: token}``; tokens must be distinct, non-empty and without surrounding spaces (the
    reply token is matched with its spaces stripped)."""
    if raw is None:
        return ()
    if not isinstance(raw, dict) or len(raw) < 2:
        raise LimaError(f"{path}: 'choices' must map at least two labels to their reply tokens")
    pairs = tuple((str(label), str(token)) for label, token in raw.items())
    tokens = [token for _, token in pairs]
    if len(set(tokens)) != len(tokens) or any(not t or t != t.strip() for t in tokens):
        raise LimaError(f"{path}: 'choices' tokens must be distinct, non-empty, without surrounding spaces")
    return pairs
