"""A tuned checkpoint as ONE GGUF file (llama.cpp, Ollama, LM Studio), and an Ollama ``Modelfile`` for it.

:func:`write_gguf` converts a checkpoint folder (safetensors, ``config.json``, tokenizer,
``chat_format.json``) as llama.cpp's ``convert_hf_to_gguf.py`` does, for ``LlamaForCausalLM`` (SmolLM2,
Llama) and ``Gemma3ForCausalLM`` (text-only Gemma 3). Tensors get GGUF names and llama.cpp's layout: Llama's
q/k rows go from the rotate-half rope order to the interleaved one; Gemma 3's RMSNorm weights are stored as
``w + 1`` (HF computes ``x * (1 + w)``, llama.cpp ``x * w``); a tied output matrix is not written. The whole
tokenizer goes in (byte-level BPE as ``gpt2``: tokens, types, merges; SentencePiece-style as ``llama``:
tokens, scores, types), with the chat format's EOT as BOTH ``eot_token_id`` and ``eos_token_id``, so every
runtime stops at the end of a turn.

:func:`write_modelfile` writes an Ollama ``Modelfile``: a Go template reproducing
:func:`lima_align.chat_format.render`, EOT as the stop string, and the LIMA sampling settings.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import gguf
import numpy as np

from lima_align.chat_format import ChatFormat, chat_template, load_chat_format
from lima_align.errors import LimaError

Q, FT, TT = gguf.GGMLQuantizationType, gguf.LlamaFileType, gguf.TokenType
# outtype -> (type of the 2-D weights, general.file_type)
OUTTYPES = {"f32": (Q.F32, FT.ALL_F32), "f16": (Q.F16, FT.MOSTLY_F16), "bf16": (Q.BF16, FT.MOSTLY_BF16),
            "q8_0": (Q.Q8_0, FT.MOSTLY_Q8_0)}
SPECIAL_SCORE = -1000.0  # llama.cpp's score for control / user-defined tokens of a SentencePiece vocabulary
_BYTE_TOKEN = re.compile(r"^<0x[0-9A-F]{2}>$")
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


@dataclass(frozen=True)
class _Arch:
    """How one HF architecture becomes GGUF: its llama.cpp name, hyperparameters and tensor transform."""

    gguf_arch: gguf.MODEL_ARCH
    hparams: Callable[[gguf.GGUFWriter, Any], None]
    transform: Callable[[str, np.ndarray, Any], np.ndarray]


@dataclass
class _Vocab:
    """The tokenizer as GGUF metadata."""

    model: str  # tokenizer.ggml.model: "gpt2" (byte-level BPE) or "llama" (SentencePiece-style)
    pre: str
    tokens: list[str]
    types: list[int]
    scores: list[float] | None = None
    merges: list[str] | None = None


def write_gguf(folder: str | Path, out: str | Path, *, outtype: str = "f16") -> Path:
    """Convert the checkpoint ``folder`` into the single GGUF file ``out`` (written atomically); returns it.

    ``outtype`` (``f32``, ``f16``, ``bf16``, ``q8_0``) is for the 2-D weight matrices; Q8_0 only where a row
    is a multiple of 32 values (else f16), as llama.cpp does. Norms and other 1-D tensors stay f32.
    """
    from transformers import AutoConfig, AutoTokenizer

    folder, out = Path(folder), Path(out)
    if outtype not in OUTTYPES:
        raise LimaError(f"unknown GGUF outtype {outtype!r}; choose one of {', '.join(OUTTYPES)}")
    weight_type, file_type = OUTTYPES[outtype]
    fmt = load_chat_format(folder)
    if fmt is None:
        raise LimaError(f"{folder}: no chat_format.json (not a lima-align checkpoint): its EOT is unknown")
    config = AutoConfig.from_pretrained(str(folder))
    arch = _arch(config)
    tensors = _Checkpoint(folder)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    vocab = _vocab(tokenizer, config, tensors.shape("model.embed_tokens.weight")[0])
    tmp = _temp_beside(out)
    try:
        writer = gguf.GGUFWriter(tmp, gguf.MODEL_ARCH_NAMES[arch.gguf_arch])
        writer.add_type("model")
        writer.add_name(folder.resolve().name)
        writer.add_file_type(int(file_type))
        if weight_type == Q.Q8_0:
            writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        arch.hparams(writer, config)
        writer.add_vocab_size(len(vocab.tokens))
        _add_tokenizer(writer, vocab, tokenizer, fmt)
        _write_tensors(writer, tensors, arch, config, weight_type)
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def _temp_beside(out: Path) -> str:
    if out.is_dir():
        raise LimaError(f"{out}: is a folder; give the path of the .gguf file to write")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    return tmp


# ------------------------------------------------------------------ architectures
def _arch(config: Any) -> _Arch:
    names = list(getattr(config, "architectures", None) or [])
    for name in names:
        if name in ARCHS:
            return ARCHS[name]
    raise LimaError(f"cannot export architecture {', '.join(names) or '<none in config.json>'} to GGUF; "
                    f"supported: {', '.join(ARCHS)}")


def _rope(params: dict, writer: gguf.GGUFWriter) -> None:
    """A rope's scaling; refuse the kinds whose llama.cpp form (extra tensors, YaRN keys) is not written."""
    kind = params.get("rope_type", "default")
    if kind == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(params["factor"]))
    elif kind != "default":
        raise LimaError(f"GGUF export supports default and linear rope, not rope_type {kind!r}")


def _common_hparams(writer: gguf.GGUFWriter, c: Any) -> None:
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_block_count(c.num_hidden_layers)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(c.num_attention_heads)
    writer.add_head_count_kv(c.num_key_value_heads)
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_key_length(c.head_dim)
    writer.add_value_length(c.head_dim)


def _llama_hparams(writer: gguf.GGUFWriter, c: Any) -> None:
    if getattr(c, "attention_bias", False) or getattr(c, "mlp_bias", False):
        raise LimaError("GGUF export of Llama models with attention or MLP biases is not supported")
    if c.hidden_act != "silu":
        raise LimaError(f"llama.cpp's llama architecture uses SiLU, this model {c.hidden_act!r}")
    _common_hparams(writer, c)
    writer.add_rope_dimension_count(c.head_dim)
    writer.add_rope_freq_base(float(c.rope_parameters["rope_theta"]))
    _rope(c.rope_parameters, writer)


def _gemma3_problems(c: Any) -> list[str]:
    """How ``c`` differs from what llama.cpp hard-codes for gemma3: every 6th layer global, local rope base
    10000, attention scale 1/sqrt(head_dim) (1/sqrt(hidden/heads) for the 62-layer 27B), GELU-tanh."""
    scale = c.hidden_size // c.num_attention_heads if c.num_hidden_layers == 62 else c.head_dim
    pattern = ["sliding_attention" if (i + 1) % 6 else "full_attention" for i in range(c.num_hidden_layers)]
    local = c.rope_parameters["sliding_attention"]
    checks = [
        (c.query_pre_attn_scalar != scale, f"query_pre_attn_scalar {c.query_pre_attn_scalar} (not {scale})"),
        (bool(c.sliding_window) and list(c.layer_types) != pattern, "layer_types not 5 local + 1 global"),
        ((local.get("rope_theta"), local.get("rope_type", "default")) != (10000.0, "default"),
         f"local rope {local}"),
        (c.hidden_activation != "gelu_pytorch_tanh", f"hidden_activation {c.hidden_activation!r}"),
        (c.attn_logit_softcapping is not None, "attn_logit_softcapping"),
        (bool(getattr(c, "use_bidirectional_attention", False)), "bidirectional attention"),
    ]
    return [problem for failed, problem in checks if failed]


def _gemma3_hparams(writer: gguf.GGUFWriter, c: Any) -> None:
    # refuse what llama.cpp would run differently rather than export a model that computes something else
    if problems := _gemma3_problems(c):
        raise LimaError("llama.cpp's gemma3 cannot run this model: " + "; ".join(problems))
    _common_hparams(writer, c)
    full, local = c.rope_parameters["full_attention"], c.rope_parameters["sliding_attention"]
    writer.add_rope_freq_base(float(full["rope_theta"]))
    writer.add_rope_freq_base_swa(float(local["rope_theta"]))
    _rope(full, writer)
    if c.sliding_window:
        writer.add_sliding_window(c.sliding_window)
    if c.final_logit_softcapping is not None:
        writer.add_final_logit_softcapping(float(c.final_logit_softcapping))


def _rope_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Each head's rows from HF's rotate-half order (x0..x(d/2-1), y0..) to GGML's interleaved (x0, y0..)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _llama_transform(name: str, w: np.ndarray, c: Any) -> np.ndarray:
    if name.endswith("self_attn.q_proj.weight"):
        return _rope_permute(w, c.num_attention_heads)
    if name.endswith("self_attn.k_proj.weight"):
        return _rope_permute(w, c.num_key_value_heads)
    return w


def _gemma3_transform(name: str, w: np.ndarray, c: Any) -> np.ndarray:
    # every Gemma3RMSNorm (input, post-attention, pre/post-feedforward, q/k, final) computes x * (1 + w)
    return w + np.float32(1.0) if name.endswith("norm.weight") else w


ARCHS = {
    "LlamaForCausalLM": _Arch(gguf.MODEL_ARCH.LLAMA, _llama_hparams, _llama_transform),
    "Gemma3ForCausalLM": _Arch(gguf.MODEL_ARCH.GEMMA3, _gemma3_hparams, _gemma3_transform),
}


# ------------------------------------------------------------------ tensors
class _Checkpoint:
    """The safetensors weights of a folder (one file or sharded with an index), read a tensor at a time."""

    def __init__(self, folder: Path):
        index, single = folder / "model.safetensors.index.json", folder / "model.safetensors"
        if index.is_file():
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            self.files = {name: folder / file for name, file in weight_map.items()}
        elif single.is_file():
            with self._open(single) as f:
                self.files = {name: single for name in f.keys()}
        else:
            raise LimaError(f"{folder}: no safetensors weights (model.safetensors or its index)")

    @staticmethod
    def _open(path: Path):
        from safetensors import safe_open

        return safe_open(str(path), framework="pt")  # torch, not numpy: numpy has no bfloat16

    def names(self) -> list[str]:
        return list(self.files)

    def shape(self, name: str) -> tuple[int, ...]:
        if name not in self.files:
            raise LimaError(f"the checkpoint has no tensor {name}")
        with self._open(self.files[name]) as f:
            return tuple(f.get_slice(name).get_shape())

    def load(self, name: str) -> np.ndarray:
        with self._open(self.files[name]) as f:
            return f.get_tensor(name).float().numpy()


def _tensor_type(shape: tuple[int, ...], weight_type: Q) -> Q:
    if len(shape) <= 1:
        return Q.F32
    if weight_type == Q.Q8_0 and shape[-1] % gguf.GGML_QUANT_SIZES[Q.Q8_0][0]:
        return Q.F16
    return weight_type


def _encode(w: np.ndarray, qtype: Q) -> np.ndarray:
    if qtype in (Q.F32, Q.F16):
        return np.ascontiguousarray(w, dtype=np.float32 if qtype == Q.F32 else np.float16)
    return gguf.quants.quantize(np.ascontiguousarray(w, dtype=np.float32), qtype)


def _plan(tensors: _Checkpoint, arch: _Arch, config: Any) -> Iterator[tuple[str, str]]:
    """(checkpoint name, GGUF name) of every tensor to write; a tied output matrix is skipped."""
    name_map = gguf.get_tensor_name_map(arch.gguf_arch, config.num_hidden_layers)
    for name in tensors.names():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        gguf_name = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise LimaError(f"no GGUF name for the tensor {name} of a {arch.gguf_arch.name.lower()} model")
        yield name, gguf_name


def _write_tensors(writer: gguf.GGUFWriter, tensors: _Checkpoint, arch: _Arch, config: Any,
                   weight_type: Q) -> None:
    """Tensor infos first, then the data a tensor at a time: memory holds one tensor, not the model."""
    plan = []
    for name, gguf_name in _plan(tensors, arch, config):
        shape = tensors.shape(name)
        qtype = _tensor_type(shape, weight_type)
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        nbytes = int(np.prod(shape)) // block * size
        writer.add_tensor_info(gguf_name, shape, np.dtype(np.float32), nbytes, raw_dtype=qtype)
        plan.append((name, qtype))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for name, qtype in plan:
        writer.write_tensor_data(_encode(arch.transform(name, tensors.load(name), config), qtype))
    writer.close()


# ------------------------------------------------------------------ tokenizer
def _vocab(tokenizer: Any, config: Any, rows: int) -> _Vocab:
    """The vocabulary, padded with unused tokens to the embedding's ``rows`` (as llama.cpp pads)."""
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise LimaError("GGUF export needs a fast tokenizer (a tokenizer.json)")
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    if rows < len(tokens) or None in tokens:
        raise LimaError(f"the tokenizer's {len(tokens)} ids do not fit the model's {rows} embedding rows")
    added = {i: t.special for i, t in tokenizer.added_tokens_decoder.items()}
    if _has_step(spec.get("pre_tokenizer"), "ByteLevel"):
        vocab = _byte_level_vocab(tokens, added, spec)
    elif spec["model"].get("type") == "BPE" and spec["model"].get("byte_fallback"):
        vocab = _sentencepiece_vocab(tokens, added, gemma="Gemma3ForCausalLM" in config.architectures)
    else:
        raise LimaError("GGUF export supports byte-level BPE and SentencePiece-style BPE tokenizers only")
    for i in range(len(tokens), rows):
        vocab.tokens.append(f"[PAD{i}]")
        vocab.types.append(TT.UNUSED)
        if vocab.scores is not None:
            vocab.scores.append(SPECIAL_SCORE)
    return vocab


def _has_step(node: dict | None, kind: str) -> bool:
    steps = node.get("pretokenizers", []) if node else []
    return bool(node) and (node["type"] == kind or any(_has_step(n, kind) for n in steps))


def _byte_level_vocab(tokens: list[str], added: dict[int, bool], spec: dict) -> _Vocab:
    types = [TT.NORMAL if i not in added else TT.CONTROL if added[i] else TT.USER_DEFINED
             for i in range(len(tokens))]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    return _Vocab("gpt2", _pre_name(spec.get("pre_tokenizer")), tokens, types, merges=merges)


def _pre_name(pre: dict | None) -> str:
    """llama.cpp's name for the split before BPE; refuse a split it does not know (it would get it wrong)."""
    steps = pre.get("pretokenizers", []) if pre and pre["type"] == "Sequence" else [pre or {}]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex"):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and steps[0]["pattern"].get("Regex") == _LLAMA3_SPLIT:
        return "llama-bpe"
    raise LimaError(f"no llama.cpp pre-tokenizer is known to match this tokenizer's: {json.dumps(pre)[:200]}")


def _sentencepiece_vocab(tokens: list[str], added: dict[int, bool], gemma: bool) -> _Vocab:
    """Types and scores as llama.cpp writes a SentencePiece vocabulary: pieces score by rank (-0, -1, ..),
    bytes 0, control and user-defined tokens -1000. Gemma's runs of 2+ spaces are user-defined pieces of real
    spaces there; its HF tokenizer spells them "▁▁" (transformers' GGUF loader spells them back)."""
    vocab, rank = _Vocab("llama", "default", [], [], scores=[]), 0
    for i, token in enumerate(tokens):
        if gemma and len(token) > 1 and set(token) == {"\u2581"} and i not in added:
            token, kind, score = " " * len(token), TT.USER_DEFINED, SPECIAL_SCORE
        elif i in added:
            kind, score = TT.CONTROL if added[i] else TT.USER_DEFINED, SPECIAL_SCORE
        elif _BYTE_TOKEN.match(token):
            kind, score = TT.BYTE, 0.0
        else:  # ranked in id order: the best-first order of the merges
            kind, score, rank = TT.NORMAL, -float(rank), rank + 1
        vocab.tokens.append(token)
        vocab.types.append(kind)
        vocab.scores.append(score)
    return vocab


def _add_tokenizer(writer: gguf.GGUFWriter, vocab: _Vocab, tokenizer: Any, fmt: ChatFormat) -> None:
    eot = tokenizer.get_vocab().get(fmt.eot)
    if eot is None:
        raise LimaError(f"the tokenizer has no {fmt.eot!r} token, the EOT of the checkpoint's chat format")
    vocab.types[eot] = TT.CONTROL
    writer.add_tokenizer_model(vocab.model)
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types([int(t) for t in vocab.types])
    if vocab.scores is not None:
        writer.add_token_scores(vocab.scores)
    if vocab.merges is not None:
        writer.add_token_merges(vocab.merges)
    for add, token_id in ((writer.add_bos_token_id, tokenizer.bos_token_id),
                          (writer.add_unk_token_id, tokenizer.unk_token_id),
                          (writer.add_pad_token_id, tokenizer.pad_token_id)):
        if token_id is not None:
            add(token_id)
    # EOT is EOS too: a runtime that knows only EOS (or only EOT) stops at the end of a turn all the same
    writer.add_eos_token_id(eot)
    writer.add_eot_token_id(eot)
    ids = tokenizer("a")["input_ids"]  # what the tokenizer adds by default, for llama.cpp to add too
    writer.add_add_bos_token(tokenizer.bos_token_id is not None and ids[:1] == [tokenizer.bos_token_id])
    writer.add_add_eos_token(tokenizer.eos_token_id is not None and ids[-1:] == [tokenizer.eos_token_id])
    writer.add_add_space_prefix(False)
    writer.add_chat_template(tokenizer.chat_template or chat_template(tokenizer, fmt))


# ------------------------------------------------------------------ Ollama
