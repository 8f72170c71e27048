"""Model loading: local folders, tiny random models, and the built-in offline models for real."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from lima_align import models
from lima_align.errors import LimaError


def tiny_llama(path):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    model = LlamaForCausalLM(config)
    model.save_pretrained(path)
    return model


def test_local_folder_loads_the_same_weights(tmp_path):
    model = tiny_llama(tmp_path / "tiny")
    loaded = models.load_model(tmp_path / "tiny")
    ids = torch.tensor([[1, 5, 9, 3]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)


def test_resolve_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(LimaError, match="not a transformers checkpoint folder"):
        models.resolve_model(tmp_path / "empty")
    with pytest.raises(LimaError, match="no such model folder; built-in models: gemma-3-270m"):
        models.resolve_model("./nope/model")
    assert models.resolve_model("meta-llama/Llama-3.1-8B") == "meta-llama/Llama-3.1-8B"  # hub id untouched


def test_smollm2_materialises_once_with_equal_logits(tmp_path, monkeypatch):
    """The real GGUF -> safetensors conversion, into an empty cache; logits equal the GGUF-loaded model's."""
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "cache"))
    name = "smollm2-135m-instruct"
    assert not models.is_cached(name)
    folder = models.materialise_builtin(name)
    assert models.is_cached(name) and (folder / "model.safetensors").is_file()
    marker = json.loads((folder / "lima-align-builtin.json").read_text())
    assert marker["name"] == name
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    assert models.materialise_builtin(name) == folder  # second call reuses the cache
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime

    gguf = models.BUILTINS[name].locate_gguf()
    reference = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    cached = models.load_model(name)
    tok = models.load_tokenizer(name)
    ids = tok("Less is more for alignment.", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(reference(ids).logits, cached(ids).logits)
    listed = {r["name"]: r for r in models.list_models()}
    assert listed[name]["cached"] and listed[name]["size_bytes"] > 100 * 2**20
    assert not listed["gemma-3-270m"]["cached"]


@pytest.fixture(scope="module")
def gemma():
    return models.load_tokenizer("gemma-3-270m"), models.load_model("gemma-3-270m")


def test_gemma_tokenizer_round_trip_and_forward(gemma):
    tok, model = gemma
    text = "How to cook an omelette?\n\n```python\nprint('ok')\n```\nÜnïcödé ✓"
    ids = tok(text, add_special_tokens=False).input_ids
    assert tok.decode(ids) == text
    assert tok.bos_token == "<bos>" and tok.eos_token == "<eos>"
    assert model.config.model_type == "gemma3_text" and model.config.vocab_size == 262144
    assert 260e6 < sum(p.numel() for p in model.parameters()) < 280e6
    with torch.no_grad():
        logits = model(torch.tensor([tok(text).input_ids])).logits
    assert logits.shape[-1] == 262144 and torch.isfinite(logits).all()


def test_gemma_save_reload_gives_equal_logits(gemma, tmp_path):
    tok, model = gemma
    model.save_pretrained(tmp_path / "g")
    tok.save_pretrained(tmp_path / "g")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "g")
    tok2 = AutoTokenizer.from_pretrained(tmp_path / "g")
    ids = torch.tensor([tok("Less is more").input_ids])
    assert tok2("Less is more").input_ids == ids[0].tolist()
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)


def test_stats_with_the_gemma_tokenizer(gemma, lima_train):
    from lima_align.formats.rows import read_examples
    from lima_align.curate.table1 import TokenizerCounter, table1

    result = table1(read_examples(lima_train), TokenizerCounter(gemma[0], "gemma-3-270m")).to_dict()
    words = table1(read_examples(lima_train)).to_dict()
    assert result["total"]["examples"] == 1022
    # subword tokens outnumber whitespace words on English text
    assert result["total"]["output_tokens"] > words["total"]["output_tokens"]


def test_a_cache_folder_of_an_older_conversion_is_not_taken_as_cached(tmp_path, monkeypatch):
    """A folder built before BUILD_FORMAT changed (e.g. a tokenizer without the GGUF's <bos> flag) is rebuilt."""
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "cache"))
    folder = models.builtin_dir("gemma-3-270m")
    folder.mkdir(parents=True)
    marker = folder / "lima-align-builtin.json"
    marker.write_text(json.dumps({"name": "gemma-3-270m", "package": "x", "gguf": "x.gguf"}))
    assert not models.is_cached("gemma-3-270m")
    marker.write_text(json.dumps({"name": "gemma-3-270m", "package": "x", "gguf": "x.gguf",
                                  "format": models.BUILD_FORMAT}))
    assert models.is_cached("gemma-3-270m")
    marker.write_text("{not json")
    assert not models.is_cached("gemma-3-270m")
