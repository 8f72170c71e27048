"""GGUF export: round trips through transformers' own GGUF loader (logits, tokenizer), the metadata
llama.cpp and Ollama read, the Ollama Modelfile's template against chat_format.render, and refusals.

Tiny random models and trimmed vocabularies keep this fast; the full built-in vocabularies, compared with the
llama.cpp-made GGUFs the built-in models ship as, are the slow tests.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from tokenizers import AddedToken

from lima_align.chat_format import (ChatFormat, add_special_tokens, install_chat_template, render,
                                    save_chat_format)
from lima_align.errors import LimaError
from lima_align.export.gguf import write_gguf
from lima_align.export.ollama import ollama_template, write_modelfile
from lima_align.generate.decoding import SamplingConfig

CONVERSATIONS = [
    ["What is the capital of France?"],
    ["Write a haiku about rain.", "Soft rain on the roof,\nthe garden drinks in silence.",
     "Now one about snow."],
    ["  Indented text, tabs\tand\nnew lines 12345!", "Sure: 67 + 89 = 156.", "Thanks! Ünïcödé ✓ 日本語?"],
]
STRINGS = ["Hello, world!", "What is 2+2?<|eot|>It is 4.<|eot|>", "  two spaces,\ttab\nnewline",
           "Ünïcödé ✓ 日本語", "digits 1234567 and code: def f(x): return x**2", "<|eot|>"]
CONTROL, USER_DEFINED = gguf.TokenType.CONTROL, gguf.TokenType.USER_DEFINED


def _builtin_tokenizer(name: str):
    from lima_align.models import is_cached, load_tokenizer

    if not is_cached(name):
        pytest.skip(f"built-in {name} is not materialised")
    return load_tokenizer(name)


def _randomise_norms(model: torch.nn.Module) -> None:
    # norms start at a constant (1 for Llama, 0 for Gemma's 1 + w); random ones make a missing or doubled
    # transform (Gemma's +1) or a swapped norm visible in the logits
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.copy_(0.5 + torch.rand(param.shape, generator=gen))


def _save(folder: Path, model, tokenizer, fmt: ChatFormat = ChatFormat()) -> Path:
    add_special_tokens(tokenizer, model, fmt)
    install_chat_template(tokenizer, fmt)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    save_chat_format(fmt, folder)
    return folder


def _load_model(path: Path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    return model.eval()


def _load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


@torch.no_grad()
def _logits(model, prompts: list[list[int]]) -> torch.Tensor:
    return torch.cat([model(torch.tensor([ids])).logits[0] for ids in prompts])


def _prompts(tokenizer) -> list[list[int]]:
    return [render(turns, tokenizer, add_generation_prompt=True).input_ids for turns in CONVERSATIONS]


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _field(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents()


def _types(reader: gguf.GGUFReader) -> dict[str, str]:
    return {t.name: t.tensor_type.name for t in reader.tensors}


# ------------------------------------------------------------------ Llama (SmolLM2's tokenizer)
def _trimmed(tokenizer, size: int):
    """SmolLM2's byte-level BPE cut to its first ``size`` ids: its merges are in id order and each merge's
    parts come before its result, so the first ids and the merges making them are a complete tokenizer. Keeps
    the token arrays short: transformers' GGUF loader parses them in Python (~8 s for 49k, twice a load)."""
    from tokenizers import Tokenizer

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    spec["model"]["vocab"] = {t: i for t, i in vocab.items() if i < size}
    spec["model"]["merges"] = [m for m in spec["model"]["merges"] if vocab["".join(m)] < size]
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["id"] < size]
    specials = {k: getattr(tokenizer, k) for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    return type(tokenizer)(tokenizer_object=Tokenizer.from_str(json.dumps(spec)), **specials)


def _llama_checkpoint(folder: Path, tokenizer) -> tuple:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    # intermediate 80: ffn_down's rows (80 values) are no multiple of 32, so Q8_0 must fall back to F16 there
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=80, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         rope_theta=50000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
                         initializer_range=0.05, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config).eval()
    _randomise_norms(model)
    return model, _save(folder, model, tokenizer)


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """A tiny untied Llama with (trimmed) SmolLM2's tokenizer + EOT as a checkpoint, its GGUFs in every
    outtype, and its logits on real prompts."""
    tokenizer = _trimmed(_builtin_tokenizer("smollm2-135m-instruct"), 3000)
    model, folder = _llama_checkpoint(tmp_path_factory.mktemp("llama-ckpt"), tokenizer)
    out = tmp_path_factory.mktemp("llama-gguf")  # nothing else there: the loaders read the GGUF alone
    files = {t: write_gguf(folder, out / f"tiny-{t}.gguf", outtype=t) for t in ("f32", "f16", "bf16", "q8_0")}
    prompts = _prompts(tokenizer)
    return model, tokenizer, files, prompts, _logits(model, prompts)


def test_llama_f32_reproduces_the_logits(llama):
    _, _, files, prompts, expected = llama
    loaded = _load_model(files["f32"])  # config too from the GGUF's metadata
    assert loaded.config.tie_word_embeddings is False
    diff = (_logits(loaded, prompts) - expected).abs().max().item()
    assert expected.abs().max() > 0.1  # logits big enough for the bound to mean something
    assert diff <= 1e-5, diff  # measured: 0.0 (same float32 weights, same kernels)


@pytest.mark.parametrize("outtype, bits", [("f16", 11), ("bf16", 8)])
def test_llama_half_precision_logits(llama, outtype, bits):
    _, _, files, prompts, expected = llama
    types = _types(gguf.GGUFReader(files[outtype]))
    assert types["blk.0.attn_q.weight"] == outtype.upper() and types["output.weight"] == outtype.upper()
    assert types["blk.0.attn_norm.weight"] == "F32" and types["output_norm.weight"] == "F32"
    diff = (_logits(_load_model(files[outtype]), prompts) - expected).abs().max().item()
    # rounding to `bits` significant bits moves each weight by <= 2**-bits relative; through 2 layers a logit
    # moves by about that fraction of the largest logit (measured: f16 4.7e-4, bf16 ~4e-3 of it). The bound
    # is 10x that; a wrong layout (an unpermuted q/k, a missing norm) moves logits by their own size.
    scale = expected.abs().max().item()
    assert 0 < diff <= 10 * 2.0 ** -bits * scale, (diff, scale)


def test_llama_q8_0_loads_and_its_logits_correlate(llama):
    _, _, files, prompts, expected = llama
    types = _types(gguf.GGUFReader(files["q8_0"]))
    assert types["blk.1.attn_k.weight"] == "Q8_0" and types["token_embd.weight"] == "Q8_0"
    assert types["blk.1.ffn_down.weight"] == "F16"  # rows of 80 values: no whole 32-value blocks
    assert types["blk.1.ffn_norm.weight"] == "F32"
    got = _logits(_load_model(files["q8_0"]), prompts)
    corr = np.corrcoef(got.flatten().numpy(), expected.flatten().numpy())[0, 1]
    # Q8_0 moves each weight by <= half a step, 1/254 of its 32-block's largest magnitude: the logits stay
    # almost proportional (measured: 1 - corr = 8e-5, max diff 1.7% of the largest logit); the bound allows
    # 12x that. An unquantised file gives corr == 1 exactly, a wrong layout corr far below.
    assert 0.999 <= corr < 1.0, corr


def test_llama_metadata_is_what_llama_cpp_reads(llama):
    _, tokenizer, files, _, _ = llama
    reader = gguf.GGUFReader(files["f32"])
    eot = tokenizer.convert_tokens_to_ids("<|eot|>")
    assert _field(reader, "general.architecture") == "llama"
    assert _field(reader, "tokenizer.ggml.eot_token_id") == eot
    assert _field(reader, "tokenizer.ggml.eos_token_id") == eot
    assert _field(reader, "tokenizer.ggml.tokens")[eot] == "<|eot|>"
    assert _field(reader, "tokenizer.ggml.token_type")[eot] == CONTROL
    assert _field(reader, "tokenizer.chat_template") == tokenizer.chat_template
    assert _field(reader, "tokenizer.ggml.model") == "gpt2"
    assert _field(reader, "tokenizer.ggml.pre") == "gpt-2"  # the built-in tokenizer: GPT-2's split only
    assert _field(reader, "tokenizer.ggml.add_bos_token") is False  # SmolLM2 adds no BOS
    assert _field(reader, "tokenizer.ggml.merges")[:2] == ["Ġ t", "Ġ a"]
    expected = {"llama.block_count": 2, "llama.embedding_length": 64, "llama.feed_forward_length": 80,
                "llama.attention.head_count": 4, "llama.attention.head_count_kv": 2,
                "llama.context_length": 1024, "llama.rope.dimension_count": 16,
                "llama.vocab_size": len(tokenizer), "general.file_type": int(gguf.LlamaFileType.ALL_F32)}
    assert {k: _field(reader, k) for k in expected} == expected
    assert _field(reader, "llama.rope.freq_base") == 50000.0
    assert _field(reader, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(1e-5)
    assert len(reader.tensors) == 2 * 9 + 3  # 9 per block + token_embd, output_norm, output (untied)


def test_smollm2_tokenizer_round_trips(tmp_path):
    """The whole built-in SmolLM2 vocabulary (49k tokens, 48.9k merges) + EOT + pad, read back by
    transformers."""
    tokenizer = _builtin_tokenizer("smollm2-135m-instruct")
    _, folder = _llama_checkpoint(tmp_path / "ckpt", tokenizer)
    loaded = _load_tokenizer(write_gguf(folder, tmp_path / "out" / "smol.gguf", outtype="f16"))
    assert len(loaded) == len(tokenizer) == 49152 + 2
    for text in STRINGS:
        assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"], text
    eot = tokenizer.convert_tokens_to_ids("<|eot|>")
    assert loaded("a<|eot|>b")["input_ids"][1] == eot  # one token, not pieces
    assert loaded.eos_token == "<|eot|>" and loaded.chat_template == tokenizer.chat_template


# ------------------------------------------------------------------ Gemma 3
def _mini_gemma_tokenizer():
    """Gemma's tokenizer class and layout (control tokens, newline runs, space runs, 256 byte tokens, then
    pieces ranked best-first) over a vocabulary small enough for a fast test. Merges follow the vocabulary's
    order, as in the built-in tokenizer (rebuilt by transformers from llama.cpp's GGUF)."""
    from transformers import GemmaTokenizer
    from transformers.tokenization_utils_base import generate_merges

    control = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"]
    words = ["▁the", "▁a", "▁is", "▁of", "▁to", "▁and", "▁in", "▁what", "▁capital", "▁France", "▁Write",
             "▁rain", "▁haiku", "▁about", "▁snow", "▁on", "▁roof", "▁garden", "▁Now", "▁one", "▁Sure",
             "▁Thanks", "Hello"]
    pieces = sorted({w[:i] for w in words for i in range(2, len(w) + 1)}, key=len)
    chars = list("▁etaoinshrdlucmfwypvbgkjqxzETAOINSHRDLUCMFWYPVBGKJQXZ0123456789.,!?'+=:")
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    tokens = control + ["\n", "\n\n", "▁▁", "▁▁▁", "▁▁▁▁"] + byte_tokens + chars + pieces
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = generate_merges(vocab, {t: -i for i, t in enumerate(tokens)})
    tokenizer = GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=True)  # as the built-in one
    extra = [AddedToken(t, special=True, normalized=False) for t in control[5:]]
    tokenizer.add_special_tokens({"additional_special_tokens": extra}, replace_extra_special_tokens=False)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in ("\n", "\n\n")])
    return tokenizer


def _gemma_model(vocab_size: int):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    # 6 layers: 5 sliding + 1 global; a 5-token window (prompts are longer), a non-default global rope base
    # and eps: each must reach the loaded model through the metadata or the logits differ. head_dim 256 =
    # query_pre_attn_scalar: the scale llama.cpp uses (and transformers' GGUF loader, by default).
    rope = {"full_attention": {"rope_type": "default", "rope_theta": 20000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}
    config = Gemma3TextConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128,
                              num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2, head_dim=256,
                              query_pre_attn_scalar=256, sliding_window=5, max_position_embeddings=512,
                              rms_norm_eps=1e-5, initializer_range=0.05, rope_parameters=rope)
    model = Gemma3ForCausalLM(config).eval()
    _randomise_norms(model)
    return model


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    tokenizer = _mini_gemma_tokenizer()
    model = _gemma_model(len(tokenizer))
    folder = _save(tmp_path_factory.mktemp("gemma-ckpt"), model, tokenizer)
    tokenizer = type(tokenizer).from_pretrained(str(folder))  # as saved: what write_gguf reads
    path = write_gguf(folder, tmp_path_factory.mktemp("gemma-gguf") / "tiny-gemma.gguf", outtype="f32")
    return model, tokenizer, folder, path


def test_gemma3_f32_reproduces_the_logits(gemma):
    model, tokenizer, _, path = gemma
    prompts = _prompts(tokenizer)
    assert min(map(len, prompts)) > model.config.sliding_window  # the window matters
    loaded = _load_model(path)
    assert loaded.config.tie_word_embeddings is True and loaded.config.sliding_window == 5
    expected = _logits(model, prompts)
    diff = (_logits(loaded, prompts) - expected).abs().max().item()
    assert expected.abs().max() > 0.1
    assert diff <= 1e-5, diff  # measured: 0.0; the norms' +1 and -1 could round in float32


def test_gemma3_tensors_are_llama_cpp_layout(gemma):
    model, _, _, path = gemma
    tensors = {t.name: t for t in gguf.GGUFReader(path).tensors}
    assert "output.weight" not in tensors  # tied: runtimes reuse token_embd
    state = model.state_dict()
    for hf, name in [("model.layers.0.self_attn.q_norm.weight", "blk.0.attn_q_norm.weight"),
                     ("model.layers.5.pre_feedforward_layernorm.weight", "blk.5.ffn_norm.weight"),
                     ("model.layers.5.post_feedforward_layernorm.weight", "blk.5.post_ffw_norm.weight"),
                     ("model.norm.weight", "output_norm.weight")]:
        np.testing.assert_allclose(np.asarray(tensors[name].data), state[hf].numpy() + 1.0, rtol=0, atol=1e-6)
    # no rope permutation for Gemma (llama.cpp runs it in NeoX order): q rows are stored as they are
    np.testing.assert_array_equal(np.asarray(tensors["blk.2.attn_q.weight"].data),
                                  state["model.layers.2.self_attn.q_proj.weight"].numpy())


def test_gemma3_metadata_and_tokenizer(gemma):
    _, tokenizer, _, path = gemma
    reader = gguf.GGUFReader(path)
    eot = tokenizer.convert_tokens_to_ids("<|eot|>")
    tokens, types = _field(reader, "tokenizer.ggml.tokens"), _field(reader, "tokenizer.ggml.token_type")
    scores = _field(reader, "tokenizer.ggml.scores")
    assert _field(reader, "tokenizer.ggml.model") == "llama"
    assert _field(reader, "tokenizer.ggml.pre") == "default"
    assert _field(reader, "tokenizer.ggml.eot_token_id") == eot
    assert _field(reader, "tokenizer.ggml.eos_token_id") == eot
    assert _field(reader, "tokenizer.ggml.bos_token_id") == tokenizer.bos_token_id
    assert _field(reader, "tokenizer.ggml.add_bos_token") is True
    assert _field(reader, "tokenizer.chat_template") == tokenizer.chat_template
    assert (tokens[eot], types[eot]) == ("<|eot|>", CONTROL)
    # llama.cpp's layout for Gemma: control -1000, "\n" user-defined, space runs as real spaces, bytes, pieces
    assert (tokens[5], types[5], scores[5]) == ("<start_of_turn>", CONTROL, -1000.0)
    assert (tokens[7], types[7]) == ("\n", USER_DEFINED)
    assert (tokens[9], types[9]) == ("  ", USER_DEFINED)
    assert (tokens[12], types[12], scores[12]) == ("<0x00>", gguf.TokenType.BYTE, 0.0)
    first = 12 + 256
    assert types[first] == gguf.TokenType.NORMAL and scores[first:first + 3] == [0.0, -1.0, -2.0]
    expected = {"gemma3.block_count": 6, "gemma3.attention.key_length": 256,
                "gemma3.attention.value_length": 256, "gemma3.attention.sliding_window": 5,
                "gemma3.attention.head_count_kv": 2, "gemma3.rope.freq_base": 20000.0,
                "gemma3.rope.freq_base_swa": 10000.0}
    assert {k: _field(reader, k) for k in expected} == expected
    loaded = _load_tokenizer(path)
    # without BOS: transformers' GGUF tokenizer loader ignores tokenizer.ggml.add_bos_token (checked above;
    # llama.cpp honours it), also for the llama.cpp-made file of the built-in model
    for text in STRINGS + ["<start_of_turn>user\nthe capital  of   France<end_of_turn>", "x\n\n  y"]:
        assert _ids(loaded, text) == _ids(tokenizer, text), text


@pytest.mark.slow  # the 262k-token vocabulary: ~2 minutes on 2 cores, mostly Python parsing it back
def test_gemma3_builtin_vocabulary_matches_llama_cpp(tmp_path):
    """With the built-in Gemma 3 tokenizer, the vocabulary written is the one llama.cpp's converter wrote into
    the GGUF the built-in model ships as (tokens, types; scores in the same order), plus EOT; transformers
    reads it back."""
    from lima_align.models import BUILTINS

    tokenizer = _builtin_tokenizer("gemma-3-270m")
    folder = _save(tmp_path / "ckpt", _gemma_model(len(tokenizer)), tokenizer)
    path = write_gguf(folder, tmp_path / "out" / "gemma.gguf", outtype="f32")
    ours, theirs = gguf.GGUFReader(path), gguf.GGUFReader(BUILTINS["gemma-3-270m"].locate_gguf())
    n = len(_field(theirs, "tokenizer.ggml.tokens"))
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type"):
        assert _field(ours, key)[:n] == _field(theirs, key), key
    # scores: equal for control, user-defined and byte tokens. Pieces are ranked by id: Google's SentencePiece
    # scores are too, but skip 31 values after id 236742, which tokenizer.json (no scores) cannot tell.
    # llama.cpp only compares scores (best-scoring merge first), so the same order tokenizes the same.
    normal = np.array(_field(theirs, "tokenizer.ggml.token_type")) == gguf.TokenType.NORMAL
    ours_scores = np.array(_field(ours, "tokenizer.ggml.scores")[:n])
    theirs_scores = np.array(_field(theirs, "tokenizer.ggml.scores"))
    assert (ours_scores[~normal] == theirs_scores[~normal]).all()
    assert (np.diff(ours_scores[normal]) < 0).all() and (np.diff(theirs_scores[normal]) < 0).all()
    assert tokenizer.convert_tokens_to_ids("<|eot|>") == n
    assert _field(ours, "tokenizer.ggml.tokens")[n:] == ["<|eot|>"]
    loaded = _load_tokenizer(path)
    for text in STRINGS:  # without BOS: see test_gemma3_metadata_and_tokenizer
        assert _ids(loaded, text) == _ids(tokenizer, text), text


@pytest.mark.slow  # two 49k-token vocabularies parsed in Python: ~30 s on 2 cores
def test_smollm2_builtin_vocabulary_matches_llama_cpp(tmp_path):
    """With the built-in SmolLM2 tokenizer, tokens, types and merges equal those llama.cpp's converter wrote
    into the GGUF the built-in model ships as, plus EOT and pad (CONTROL). Its pre-tokenizer there is
    "smollm" (digits split one by one); the built-in tokenizer, rebuilt from that file by transformers, lost
    the digit split, so the export faithfully says "gpt-2" (test_llama_metadata_is_what_llama_cpp_reads)."""
    from lima_align.models import BUILTINS

    tokenizer = _builtin_tokenizer("smollm2-135m-instruct")
    _, folder = _llama_checkpoint(tmp_path / "ckpt", tokenizer)
    ours = gguf.GGUFReader(write_gguf(folder, tmp_path / "out" / "smol.gguf", outtype="f16"))
    theirs = gguf.GGUFReader(BUILTINS["smollm2-135m-instruct"].locate_gguf())
    n = len(_field(theirs, "tokenizer.ggml.tokens"))
    for key in ("tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.unknown_token_id",
                "tokenizer.ggml.add_bos_token"):
        assert _field(ours, key) == _field(theirs, key), key
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type"):
        assert _field(ours, key)[:n] == _field(theirs, key), key
    assert _field(ours, "tokenizer.ggml.tokens")[n:] == ["<|eot|>", "<|pad|>"]
    assert _field(ours, "tokenizer.ggml.token_type")[n:] == [CONTROL, CONTROL]


# ------------------------------------------------------------------ refusals
def test_refuses_other_architectures(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=1, n_head=2)
    GPT2LMHeadModel(config).save_pretrained(tmp_path)
    save_chat_format(ChatFormat(), tmp_path)
    with pytest.raises(LimaError, match=r"GPT2LMHeadModel.*LlamaForCausalLM, Gemma3ForCausalLM"):
        write_gguf(tmp_path, tmp_path / "x.gguf")
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".x.gguf.*"))  # nothing half-written


def test_refuses_unknown_outtype_and_folders_without_chat_format(tmp_path):
    with pytest.raises(LimaError, match="q4_k"):
        write_gguf(tmp_path, tmp_path / "x.gguf", outtype="q4_k")
    with pytest.raises(LimaError, match="chat_format.json"):
        write_gguf(tmp_path, tmp_path / "x.gguf")


# ------------------------------------------------------------------ Ollama Modelfile
def _go_render(template: str, messages: list[dict]) -> str:
    """Emulate the Go text/template constructs the Modelfile uses: range, if / else if eq, field and string
    literal output. Anything else (trim markers, other functions) fails the test instead of being guessed."""
    tokens = re.split(r"(\{\{.*?\}\})", template)
    nodes, end = _go_parse(tokens, 0)
    assert end == len(tokens)
    out: list[str] = []
    _go_eval(nodes, {"Messages": messages}, out)
    return "".join(out)


def _go_parse(tokens: list[str], i: int) -> tuple[list, int]:
    nodes: list = []
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("{{"):
            nodes.append(("text", tok))
            i += 1
            continue
        action = tok[2:-2]
        assert not action.startswith("-") and not action.endswith("-"), f"trim markers not emulated: {tok}"
        action = action.strip()
        if action == "end" or action.startswith("else"):
            return nodes, i
        if action.startswith(("range ", "if ")):
            kind, cond = action.split(" ", 1)
            branches = []
            while True:
                body, i = _go_parse(tokens, i + 1)
                branches.append((cond, body))
                action = tokens[i][2:-2].strip()
                if action == "end":
                    break
                cond = action[len("else if "):] if action.startswith("else if ") else None
            nodes.append((kind, branches))
        else:
            nodes.append(("print", action))
        i += 1
    return nodes, i


def _go_value(expr: str, dot: dict):
    if expr.startswith('"'):
        return json.loads(expr)  # Go's string escapes that JSON shares
    assert re.fullmatch(r"\.\w+", expr), f"expression not emulated: {expr}"
    return dot[expr[1:]]


def _go_eval(nodes: list, dot: dict, out: list[str]) -> None:
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "print":
            out.append(_go_value(node[1], dot))
        elif node[0] == "range":
            (expr, body), = node[1]
            for item in _go_value(expr, dot):
                _go_eval(body, item, out)
        else:
            for cond, body in node[1]:
                m = None if cond is None else re.fullmatch(r'eq (\.\w+) ("(?:[^"\\]|\\.)*")', cond)
                assert cond is None or m, f"condition not emulated: {cond}"
                if cond is None or _go_value(m[1], dot) == _go_value(m[2], dot):
                    _go_eval(body, dot, out)
                    break


def _parse_modelfile(text: str) -> tuple[dict, str, dict]:
    template = re.search(r'^TEMPLATE """(.*?)"""$', text, re.S | re.M)[1]
    lines = [line for line in text.replace(template, "").splitlines() if line and not line.startswith("#")]
    commands = dict(line.split(" ", 1) for line in lines if not line.startswith("PARAMETER"))
    params = dict(line.split(" ", 2)[1:] for line in lines if line.startswith("PARAMETER"))
    return commands, template, params


@pytest.mark.parametrize("fmt, sampling", [
    (ChatFormat(), SamplingConfig()),
    (ChatFormat(eot="<|end|>", user_prefix="### User:\n", assistant_prefix='### "Assistant":\n'),
     SamplingConfig(temperature=0.5, top_p=0.8, repetition_penalty=1.1, max_new_tokens=300)),
])
def test_modelfile_reproduces_the_chat_format(tmp_path, fmt, sampling):
    tokenizer = copy.deepcopy(_builtin_tokenizer("smollm2-135m-instruct"))
    add_special_tokens(tokenizer, None, fmt)
    gguf_path = tmp_path / "tuned-q8_0.gguf"
    gguf_path.write_bytes(b"")
    path = write_modelfile(gguf_path, tmp_path, chat=fmt, sampling=sampling)
    text = path.read_text(encoding="utf-8")
    commands, template, params = _parse_modelfile(text)
    assert path == tmp_path / "Modelfile" and commands == {"FROM": "./tuned-q8_0.gguf", "TEMPLATE": '""""""'}
    assert json.loads(params["stop"]) == fmt.eot
    got = (float(params["temperature"]), float(params["top_p"]), float(params["repeat_penalty"]),
           int(params["num_predict"]))
    assert got == (sampling.temperature, sampling.top_p, sampling.repetition_penalty, sampling.max_new_tokens)
    assert "prompt tokens" in text.lower()  # the repeat-penalty caveat
    assert template == ollama_template(fmt)
    turns = ["Write a haiku about rain.", "Soft rain on the roof,\nthe garden drinks.", "Now one about snow."]
    messages = [{"Role": "user" if i % 2 == 0 else "assistant", "Content": t} for i, t in enumerate(turns)]
    for n in (2, 3):  # a 2-turn conversation, and one waiting for the assistant's reply
        ids = render(turns[:n], tokenizer, fmt, add_generation_prompt=True).input_ids
        assert _go_render(template, messages[:n]) == tokenizer.decode(ids, clean_up_tokenization_spaces=False)
