"""Hugging Face ``datasets`` containers: ``save_to_disk`` folders and parquet files, and the hub push.

``datasets`` is imported lazily: it is heavy, and only these paths need it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from lima_align.errors import DataError


def _datasets():
    import datasets

    datasets.disable_progress_bars()  # our commands report their own progress
    return datasets


def _load(path: Path):
    datasets = _datasets()

    if path.suffix == ".parquet":
        return datasets.Dataset.from_parquet(str(path))
    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError as exc:
        raise DataError(f"not a saved Hugging Face dataset folder ({exc})", path) from None
    if isinstance(loaded, datasets.DatasetDict):
        if "train" not in loaded:
            raise DataError(f"dataset has splits {list(loaded)}; pass the folder of one split", path)
        loaded = loaded["train"]
    return loaded


def iter_hf_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a ``save_to_disk`` folder or a parquet file, as dicts."""
    yield from _load(path)


def _dataset(rows: list[dict[str, Any]]):
    datasets = _datasets()

    # meta is free-form per row; Arrow needs one schema, so it travels as a JSON string.
    table = {
        "id": [r["id"] for r in rows],
        "conversations": [r["conversations"] for r in rows],
        "source": [r["source"] for r in rows],
        "meta": [json.dumps(r.get("meta") or {}, ensure_ascii=False) for r in rows],
    }
    return datasets.Dataset.from_dict(table)


def write_hf(path: Path, rows: list[dict[str, Any]]) -> int:
    """Write GAIR/lima rows as a parquet file (``.parquet``) or a ``save_to_disk`` folder, atomically."""
    dataset = _dataset(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        if path.suffix == ".parquet":
            dataset.to_parquet(str(tmp / path.name))
            (tmp / path.name).replace(path)
            shutil.rmtree(tmp)
        else:
            dataset.save_to_disk(str(tmp))
            if path.exists():
                shutil.rmtree(path)
            tmp.replace(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(rows)


def push_to_hub(rows: list[dict[str, Any]], repo_id: str, *, private: bool = True, token: str | None = None):
    """Push GAIR/lima rows to the Hugging Face hub as a dataset (needs network access and a token)."""
    return _dataset(rows).push_to_hub(repo_id, private=private, token=token)
