"""The Ollama ``Modelfile`` of an exported GGUF: our chat format as a Go template, EOT as the stop token, the
paper's sampling as parameters."""

from __future__ import annotations

import json
import os
from pathlib import Path

from lima_align.chat_format import ChatFormat
from lima_align.fileio import atomic_write
from lima_align.generate.decoding import SamplingConfig


def _go_literal(text: str) -> str:
    """A Go template action printing ``text``; JSON's string escapes are valid Go string escapes."""
    return "{{ " + json.dumps(text, ensure_ascii=False) + " }}" if text else ""


def ollama_template(chat: ChatFormat) -> str:
    """Ollama's Go template for ``chat``: the text of :func:`lima_align.chat_format.render_text` with the
    generation prompt. No BOS: llama.cpp adds it itself (``tokenizer.ggml.add_bos_token``)."""
    eot = _go_literal(chat.eot)
    return ("{{ range .Messages }}"
            '{{ if eq .Role "user" }}' + _go_literal(chat.user_prefix) + "{{ .Content }}" + eot +
            '{{ else if eq .Role "assistant" }}' + _go_literal(chat.assistant_prefix) + "{{ .Content }}" + eot
            + "{{ end }}{{ end }}" + _go_literal(chat.assistant_prefix))


def write_modelfile(gguf_path: str | Path, out: str | Path, *, chat: ChatFormat,
                    sampling: SamplingConfig) -> Path:
    """Write an Ollama ``Modelfile`` at ``out`` (a file, or a folder to hold ``Modelfile``) for ``gguf_path``;
    returns its path."""
    gguf_path, out = Path(gguf_path), Path(out)
    if out.is_dir():
        out = out / "Modelfile"
    source = os.path.relpath(gguf_path.resolve(), out.parent.resolve())
    source = source if source.startswith("..") else "./" + source
    temperature = 0.0 if sampling.greedy else sampling.temperature
    lines = [
        f"# Ollama Modelfile for {gguf_path.name}, written by lima-align.",
        f"# Chat format: every turn, user and assistant, ends with {json.dumps(chat.eot)}; roles alternate",
        "# by position and there is no system prompt (a system message is left out of the prompt).",
        "# Sampling: Ollama's repeat_penalty also penalises PROMPT tokens (any among the last repeat_last_n,",
        "# 64 by default, tokens of the context); the LIMA paper's repetition penalty, which lima-align",
        f"# applies (penalty_scope={sampling.penalty_scope!r}), penalises generated tokens only.",
        f"FROM {source}",
        f'TEMPLATE """{ollama_template(chat)}"""',
        f"PARAMETER stop {json.dumps(chat.eot, ensure_ascii=False)}",
        f"PARAMETER temperature {float(temperature)!r}",
        f"PARAMETER top_p {float(sampling.top_p)!r}",
        f"PARAMETER repeat_penalty {float(sampling.repetition_penalty)!r}",
        f"PARAMETER num_predict {int(sampling.max_new_tokens)}",
    ]
    with atomic_write(out) as fh:
        fh.write("\n".join(lines) + "\n")
    return out
