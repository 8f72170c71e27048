"""Typed run configs: the only place where YAML and ``key=value`` text become typed values.

A config is a (possibly nested) dataclass whose field defaults ARE the recipe. A YAML file only overrides some of
those defaults, and ``key=value`` overrides (dotted keys for nested configs, e.g. ``lora.r=16``) override the YAML.
Unknown keys and values of the wrong type are errors naming the key, never silently ignored. The loader is
generic (:func:`load_config`) so every stage (train, generate, mix, evaluate) reuses it with its own dataclass.

A key that has moved keeps working: a dataclass may map old keys to their new dotted place in a class attribute
``legacy_keys`` (``{"max_len": "chat.max_len"}``); the value is moved there with a one-line notice.
"""

from __future__ import annotations

import dataclasses
import logging
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from lima_align.errors import LimaError

T = TypeVar("T")
log = logging.getLogger(__name__)

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null", "~", ""}


class ConfigError(LimaError):
    """A config file or override that does not fit the config's fields."""


def load_config(cls: type[T], yaml_path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Build ``cls`` from its defaults, then a YAML file, then ``key=value`` overrides (in that order)."""
    values: dict[str, Any] = {}
    if yaml_path is not None:
        values = _move_legacy_keys(cls, read_yaml(yaml_path), str(yaml_path))
    for item in overrides or []:  # each override moved on its own, so it beats the YAML in either spelling
        key, value = parse_override(item)
        override: dict[str, Any] = {}
        _set_dotted(override, key, value)
        values = deep_merge(values, _move_legacy_keys(cls, override, "overrides"))
    return from_dict(cls, values, where=str(yaml_path) if yaml_path else "overrides")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping (an empty file is an empty mapping)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such config file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``; nested mappings are merged key by key (a new dict; neither input changes)."""
    out = dict(base)
    for key, value in extra.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = deep_merge(out[key], value) if both else value
    return out


def yaml_with(path: str | Path | None, settings: dict[str, Any]) -> dict[str, Any]:
    """A YAML file's mapping (``{}`` without a file) with inline ``settings`` merged over it."""
    return deep_merge(read_yaml(path) if path else {}, settings)


def parse_override(item: str) -> tuple[str, str]:
    """Split ``key=value`` (the value stays text; it is typed against the field later)."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{item}': expected key=value")
    return key.strip(), value


def _set_dotted(values: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = values
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def from_dict(cls: type[T], values: dict[str, Any], where: str = "config", prefix: str = "") -> T:
    """Instantiate dataclass ``cls`` from a mapping, typing each value against its field."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    values = _move_legacy_keys(cls, values, where, prefix)
    kwargs = {}
    for key, raw in values.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{where}: unknown key '{prefix}{key}' (known: {known})")
        kwargs[key] = coerce(raw, hints[key], where, f"{prefix}{key}")
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return obj


def _move_legacy_keys(cls: type, values: dict[str, Any], where: str, prefix: str = "") -> dict[str, Any]:
    """``values`` (a new dict) with each old key of ``cls.legacy_keys`` moved to its new dotted place.

    A moved value wins over one already at the new place in the same mapping: there, the old spelling comes from
    the more specific layer (a run's ``train_settings: {max_len: 128}`` merged over a train YAML's ``chat:``).
    """
    legacy: dict[str, str] = getattr(cls, "legacy_keys", {})
    out = dict(values)
    for old in [key for key in values if key in legacy]:
        new = legacy[old]
        log.warning("%s: '%s%s' is now '%s%s' (the old key still works)", where, prefix, old, prefix, new)
        moved: Any = out.pop(old)
        for part in reversed(new.split(".")):
            moved = {part: moved}
        out = deep_merge(out, moved)
    return out


def coerce(raw: Any, hint: Any, where: str, key: str) -> Any:
    """Turn a YAML value or override text into the field's type (bool, int, float, str, Optional, list, dataclass)."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in _NONE and str not in options):
            return None
        return coerce(raw, options[0], where, key)
    if dataclasses.is_dataclass(hint):
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: '{key}' is a section; give its keys (e.g. {key}.<name>=...)")
        return from_dict(hint, raw, where, prefix=f"{key}.")
    if origin in (list, tuple):
        return _coerce_sequence(raw, hint, where, key)
    if origin is dict or hint is dict:
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: '{key}' expects a mapping")
        return dict(raw)
    return _coerce_scalar(raw, hint, where, key)


def _coerce_sequence(raw: Any, hint: Any, where: str, key: str) -> Any:
    if isinstance(raw, str):
        raw = yaml.safe_load(raw) if raw.strip().startswith("[") else [p for p in raw.split(",") if p.strip()]
    if not isinstance(raw, (list, tuple)):
        raise ConfigError(f"{where}: '{key}' expects a list, got {raw!r}")
    args = typing.get_args(hint)
    inner = args[0] if args else str
    items = [coerce(v, inner, where, f"{key}[{i}]") for i, v in enumerate(raw)]
    return tuple(items) if typing.get_origin(hint) is tuple else items


def _coerce_scalar(raw: Any, hint: Any, where: str, key: str) -> Any:
    try:
        if hint is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _TRUE | _FALSE:
                return text in _TRUE
            raise ValueError
        if hint is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            return int(float(raw)) if isinstance(raw, str) and "e" in raw.lower() else int(raw)
        if hint is float:
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        if hint is str:
            return raw if isinstance(raw, str) else str(raw)
        if isinstance(hint, type) and issubclass(hint, Path):
            return Path(str(raw))
    except (TypeError, ValueError):
        name = getattr(hint, "__name__", str(hint))
        raise ConfigError(f"{where}: '{key}' expects {name}, got {raw!r}") from None
    return raw


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain JSON/YAML-ready values (for printing and saving beside outputs)."""
    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def dump_yaml(config: Any) -> str:
    """The resolved config as YAML text (printed at the start of a run)."""
    return yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True)
