"""``lima-align export``: a training checkpoint (with optimizer state, trainer files) becomes a release folder that
plain transformers, vLLM and TGI load as it is:

* weights as safetensors: a full checkpoint's files copied (never loaded: a 65B export needs no 130 GB of RAM); a
  LoRA checkpoint merged into its base (default) or kept as an adapter (``adapter=True``, its base named by Hub
  id so it loads anywhere);
* ``config.json``, the tokenizer with the chat template it was trained with, ``chat_format.json``;
* ``generation_config.json`` stopping at EOT first, with the paper's temperature and top-p as sampling defaults;
* ``README.md``, the model card (:mod:`lima_align.export.card`), and ``lima-export.json`` (where it came from).

A run folder is accepted for the checkpoint: with a ``select.json`` the selected checkpoint, otherwise the last
complete one. The folder is built under a temporary name beside ``out`` and renamed when complete.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from lima_align.chat_format import RUN_INFO, load_chat_format
from lima_align.errors import LimaError
from lima_align.export.card import BASE_MODELS, CardInputs, model_card, strictest_license
from lima_align.fileio import write_json

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                    "tokenizer.model", "added_tokens.json", "vocab.json", "merges.txt")
_ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
PAPER_SAMPLING = {"do_sample": True, "temperature": 0.7, "top_p": 0.9}


@dataclass
class ExportOptions:
    adapter: bool = False  # a LoRA checkpoint stays an adapter (default: merged into its base)
    select: str | None = None  # a select.json (`lima-align select`): which checkpoint, and why
    report: str | None = None  # a `lima-align report` folder (its summary.json) for the card's evaluation
    gguf: str | None = None  # also write a GGUF file of this type (f32, f16, bf16, q8_0) and an Ollama Modelfile
    name: str | None = None  # the model's name in the card (default: the output folder's name)
    overwrite: bool = False


def find_checkpoint(path: str | Path, select: str | None = None) -> tuple[Path, dict[str, Any] | None]:
    """The checkpoint folder to export and the selection that chose it (None when none did)."""
    from lima_align.train.checkpoint import complete_checkpoints

    folder = Path(path)
    selection = json.loads(Path(select).read_text(encoding="utf-8")) if select else None
    if selection is not None and not (folder / RUN_INFO).is_file():
        folder = Path(selection["checkpoint"])
    if not folder.is_dir():
        raise LimaError(f"{folder}: no such checkpoint or run folder")
    if not (folder / RUN_INFO).is_file():
        found = complete_checkpoints(folder)
        if not found:
            raise LimaError(f"{folder}: neither a checkpoint (no {RUN_INFO}) nor a run folder with a complete "
                            f"checkpoint")
        folder = found[-1]
    return folder, selection


def export_checkpoint(checkpoint: str | Path, out: str | Path, options: ExportOptions = ExportOptions(),
                      log: Callable[[str], None] = print) -> Path:
    """Write the release folder ``out`` for ``checkpoint``; returns ``out``."""
    from lima_align.models import is_adapter

    if options.adapter and options.gguf:
        raise LimaError("a GGUF file holds a whole model: export the adapter merged (no --adapter) to get one")
    folder, selection = find_checkpoint(checkpoint, options.select)
    target = Path(out)
    if target.exists() and not options.overwrite:
        raise LimaError(f"{target} exists; pass --overwrite to replace it")
    run = json.loads((folder / RUN_INFO).read_text(encoding="utf-8"))
    fmt = load_chat_format(folder)
    if fmt is None:
        raise LimaError(f"{folder}: no chat_format.json, so not a lima-align checkpoint")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        adapter = is_adapter(folder)
        if adapter and options.adapter:
            _copy_adapter(folder, work, run["config"]["model"])
        elif adapter:
            log(f"merging the LoRA adapter of {folder} into its base")
            _save_merged(folder, work)
        else:
            _copy_full(folder, work)
        _tokenizer_and_generation(folder, work, fmt)
        inputs = card_inputs(folder, run, selection, options, name=options.name or target.name)
        inputs.adapter = adapter and options.adapter
        (work / "README.md").write_text(model_card(inputs), encoding="utf-8")
        write_json(work / "lima-export.json", {"checkpoint": str(folder.resolve()), "run": run,
                                               "selection": selection, "adapter": inputs.adapter})
        if options.gguf:
            _write_gguf(work, fmt, options.gguf, options.name or target.name, log)
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log(f"exported {folder} -> {target}")
    return target


def _copy_full(folder: Path, work: Path) -> None:
    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("model.safetensors.index.json"))
    if not weights:  # an old .bin checkpoint: load once, save as safetensors
        from lima_align.models import load_model

        load_model(str(folder)).save_pretrained(work, safe_serialization=True)
        return
    for f in weights + [folder / "config.json"]:
        shutil.copy2(f, work / f.name)


def _save_merged(folder: Path, work: Path) -> None:
    from lima_align.models import load_model

    load_model(str(folder)).save_pretrained(work, safe_serialization=True)


def _copy_adapter(folder: Path, work: Path, base: str) -> None:
    for name in _ADAPTER_FILES:
        if not (folder / name).is_file():
            raise LimaError(f"{folder}: a LoRA checkpoint without {name}")
        shutil.copy2(folder / name, work / name)
    config = json.loads((work / "adapter_config.json").read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = BASE_MODELS.get(base, (base, None))[0]  # a Hub id, not a local cache path
    write_json(work / "adapter_config.json", config)


def _tokenizer_and_generation(folder: Path, work: Path, fmt: Any) -> None:
    from transformers import AutoTokenizer, GenerationConfig

    from lima_align.chat_format import eot_token_id, save_chat_format
    from lima_align.train.run import set_generation_stop

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tokenizer.save_pretrained(work)
    save_chat_format(fmt, work)
    try:
        gen = GenerationConfig.from_pretrained(str(folder))
    except OSError:  # a LoRA checkpoint has none of its own
        gen = GenerationConfig()
    set_generation_stop(gen, eot_token_id(tokenizer, fmt), tokenizer.pad_token_id)
    for key, value in PAPER_SAMPLING.items():
        setattr(gen, key, value)
    gen.save_pretrained(work)


def card_inputs(folder: Path, run: dict[str, Any], selection: dict[str, Any] | None, options: ExportOptions,
                name: str) -> CardInputs:
    """Everything the card says, read from the checkpoint, its run info, the training data and a report."""
    from lima_align.config import to_dict
    from lima_align.train import TrainConfig
    from lima_align.train.checkpoint import MARKER

    config = run["config"]
    base = str(config["model"])
    hub, base_license = BASE_MODELS.get(base, (base, None))
    paper = to_dict(TrainConfig(model=base, data=config["data"], out=config["out"]))
    marker = json.loads((folder / MARKER).read_text(encoding="utf-8")) if (folder / MARKER).is_file() else {}
    table, licenses, origins = _data_stats(folder, config)
    fmt = load_chat_format(folder)
    return CardInputs(name=name, base_model=hub, base_license=base_license, license=strictest_license(licenses),
                      config=config, paper=paper, data_report=run.get("data", {}), table1=table, licenses=licenses,
                      origins=origins, checkpoint={**marker, "folder": folder.name}, selection=selection,
                      evaluation=_evaluation(options.report), versions=run.get("versions", {}),
                      eot=fmt.eot)


def _data_stats(folder: Path, config: dict[str, Any]) -> tuple[dict | None, dict[str, int], dict[str, Counter]]:
    """Table 1, rows per licence and per (source, origin) of the training data, as the run read it (its
    max_examples / max_chars applied); nothing when the file is no longer where the run read it."""
    from transformers import AutoTokenizer

    from lima_align.curate.table1 import TokenizerCounter, table1
    from lima_align.train.data import load_examples

    path = Path(config["data"])
    if not path.is_file():
        return None, {}, {}
    examples, _ = load_examples(str(path), config.get("data_format"), config.get("max_examples"),
                                config.get("max_chars"))
    counter = TokenizerCounter(AutoTokenizer.from_pretrained(str(folder)), config["model"])
    licenses = Counter(str(ex.meta.get("license") or "unknown") for ex in examples)
    origins: dict[str, Counter] = {}
    for ex in examples:
        origins.setdefault(ex.source or "unknown", Counter())[str(ex.meta.get("origin") or "unknown")] += 1
    return table1(examples, counter).to_dict(), dict(licenses), origins


def _evaluation(report: str | None) -> list[str]:
    if not report:
        return []
    from lima_align.report.text import summary_lines

    path = Path(report) / "summary.json" if Path(report).is_dir() else Path(report)
    if not path.is_file():
        raise LimaError(f"{report}: no summary.json (run `lima-align report` first)")
    return summary_lines(json.loads(path.read_text(encoding="utf-8")))


def _write_gguf(work: Path, fmt: Any, outtype: str, name: str, log: Callable[[str], None]) -> None:
    from lima_align.export.gguf import write_gguf
    from lima_align.export.ollama import write_modelfile
    from lima_align.generate.decoding import SamplingConfig

    gguf = write_gguf(work, work / f"{name}-{outtype}.gguf", outtype=outtype)
    write_modelfile(gguf, work / "Modelfile", chat=fmt, sampling=SamplingConfig())
    log(f"wrote {gguf.name} and an Ollama Modelfile")
