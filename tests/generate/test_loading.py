"""Generation loads a checkpoint with the chat format saved beside it (or, for older checkpoints, in its run
config); a model without one gets the default format."""

import copy
import json

import pytest

from lima_align.chat_format import RUN_INFO, ChatFormat, add_special_tokens, save_chat_format
from lima_align.generate.engine import HFEngine
from lima_align.generate.loading import load_for_generation

CUSTOM = ChatFormat(eot="<|end|>", user_prefix="### User\n", assistant_prefix="### Bot\n")


@pytest.fixture()
def checkpoint(make_model):
    """A model folder whose tokenizer has ``fmt``'s EOT and a pad token (as training leaves it)."""
    from lima_align.models import load_tokenizer

    base = load_tokenizer("smollm2-135m-instruct")

    def build(folder, fmt):
        tokenizer = copy.deepcopy(base)
        add_special_tokens(tokenizer, None, fmt)
        model = make_model()
        assert model.config.vocab_size == len(tokenizer)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        return folder

    return build


def _prompt_text(folder):
    model, tokenizer, fmt = load_for_generation(str(folder), device="cpu")
    engine = HFEngine(model, tokenizer, fmt)
    assert engine.eot_id == tokenizer.convert_tokens_to_ids(fmt.eot)
    return fmt, tokenizer.decode(engine.prompt_ids(["Hi", "Hello.", "Bye"]))


def test_the_saved_format_renders_the_prompts(tmp_path, checkpoint):
    folder = checkpoint(tmp_path / "ckpt", CUSTOM)
    save_chat_format(CUSTOM, folder)
    fmt, text = _prompt_text(folder)
    assert fmt == CUSTOM
    assert text == "### User\nHi<|end|>### Bot\nHello.<|end|>### User\nBye<|end|>### Bot\n"


def test_a_checkpoint_of_an_earlier_version_generates_with_its_run_config_format(tmp_path, checkpoint):
    folder = checkpoint(tmp_path / "old", CUSTOM)
    old_config = {"eot": CUSTOM.eot, "user_prefix": CUSTOM.user_prefix, "assistant_prefix": CUSTOM.assistant_prefix,
                  "train_on": "assistant", "max_len": 2048, "epochs": 15}
    (folder / RUN_INFO).write_text(json.dumps({"config": old_config, "data": {}}))
    fmt, text = _prompt_text(folder)
    assert fmt == CUSTOM and text.startswith("### User\nHi<|end|>### Bot\n")


def test_a_model_without_a_saved_format_gets_the_default_one(tmp_path, checkpoint):
    folder = checkpoint(tmp_path / "plain", ChatFormat())  # e.g. trained elsewhere; no EOT: see test_batch
    fmt, text = _prompt_text(folder)
    assert fmt == ChatFormat() and text == "Hi<|eot|>Hello.<|eot|>Bye<|eot|>"
