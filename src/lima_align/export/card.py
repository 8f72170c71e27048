"""The model card (``README.md``) of an exported model: Hub metadata in YAML front matter, then what a reader needs
to trust and reuse the model - the training data as the paper's Table 1 with provenance and licences, the recipe
and where it differs from the paper, which epoch was released and why, and the evaluation when a report is given.

Pure: :func:`model_card` turns a :class:`CardInputs` into text; :mod:`lima_align.export.release` gathers them.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import yaml

# the built-in models' Hub ids and licences (a card names what the weights started from)
BASE_MODELS = {"gemma-3-270m": ("google/gemma-3-270m", "gemma"),
               "smollm2-135m-instruct": ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0")}

# licence families, least to most restrictive, with their Hub identifiers; a licence matched by none is "other"
# (Reddit's user agreement, "unspecified"), which is the most restrictive of all: nobody has said what is allowed
_FAMILIES = [
    (r"\b(cc0|public domain)\b", "cc0-1.0"),
    (r"\bmit\b", "mit"),
    (r"\bbsd\b", "bsd"),
    (r"\bapache", "apache-2.0"),
    (r"\bcc[ -]by(?![ -](sa|nc|nd))", "cc-by-{v}"),
    (r"\bcc[ -]by[ -]sa\b", "cc-by-sa-{v}"),
    (r"\bcc[ -]by[ -]nc(?![ -](sa|nd))", "cc-by-nc-{v}"),
    (r"\bcc[ -]by[ -]nc[ -]sa\b", "cc-by-nc-sa-{v}"),
    (r"\bcc[ -]by[ -]nc[ -]nd\b", "cc-by-nc-nd-{v}"),
]
_VERSION = re.compile(r"(\d+\.\d+)")


def hub_license(text: str) -> tuple[int, str]:
    """``(rank, Hub licence id)`` of a licence string as the sources write it ("CC BY-SA 4.0" -> cc-by-sa-4.0);
    a higher rank is more restrictive; unrecognised text is ``other``, ranked above every known licence."""
    low = text.lower()
    for rank, (pattern, hub) in reversed(list(enumerate(_FAMILIES))):
        if re.search(pattern, low):
            version = _VERSION.search(text)
            return rank, hub.format(v=version.group(1) if version else "4.0")
    return len(_FAMILIES), "other"


def strictest_license(counts: dict[str, int]) -> str:
    """The Hub licence of a mix: the most restrictive of its rows' licences (the model carries all of them);
    among versions of one family the highest, as later CC versions are the ones adapters may choose."""
    if not counts:
        return "other"
    return max((hub_license(name) for name in counts), key=lambda r: (r[0], r[1]))[1]


@dataclass
class CardInputs:
    """What the card says; ``None`` / empty where the export did not have it."""

    name: str
    base_model: str
    base_license: str | None
    license: str
    config: dict[str, Any]  # the TrainConfig as saved in lima-run.json
    paper: dict[str, Any]  # TrainConfig defaults (the paper's recipe) for the same model and data
    data_report: dict[str, Any]
    table1: dict[str, Any] | None = None
    licenses: dict[str, int] = field(default_factory=dict)
    origins: dict[str, Counter] = field(default_factory=dict)  # per source: rows per origin
    checkpoint: dict[str, Any] = field(default_factory=dict)  # epoch, global_step, folder
    selection: dict[str, Any] | None = None  # select.json
    evaluation: list[str] = field(default_factory=list)  # report lines
    versions: dict[str, Any] = field(default_factory=dict)
    datasets: list[str] = field(default_factory=list)
    eot: str = ""  # the chat format's end-of-turn token
    adapter: bool = False


def metadata(c: CardInputs) -> dict[str, Any]:
    meta: dict[str, Any] = {"base_model": c.base_model, "license": c.license, "library_name":
                            "peft" if c.adapter else "transformers", "pipeline_tag": "text-generation",
                            "tags": ["lima-align", "lima", "sft", "alignment", "text-generation"]}
    if c.datasets:
        meta["datasets"] = c.datasets
    return meta


def model_card(c: CardInputs) -> str:
    """The whole README.md."""
    parts = ["---", yaml.safe_dump(metadata(c), sort_keys=False).strip(), "---", "", f"# {c.name}", "",
             f"`{c.base_model}` fine-tuned with lima-align on "
             f"{c.data_report.get('kept', '?')} examples following LIMA (Zhou et al. 2023, \"Less Is More for "
             f"Alignment\"): supervised fine-tuning on a small curated set, the end of each turn marked with "
             f"`{c.eot}`.", "", *_usage(c), *_data(c), *_recipe(c), *_released(c), *_evaluation(c),
             "## Versions", "", ", ".join(f"{k} {v}" for k, v in c.versions.items() if v), ""]
    return "\n".join(parts)


def _usage(c: CardInputs) -> list[str]:
    return ["## Use", "", "Generation stops at the end of the turn by itself: `generation_config.json` lists "
            f"`{c.eot}` first among the stop tokens, and the tokenizer's chat template is the one the model was "
            "trained with. The paper samples with temperature 0.7, top-p 0.9 and a repetition penalty of 1.2 on "
            "*generated* tokens only (transformers' and vLLM's `repetition_penalty` also penalise the prompt; "
            "lima-align's engines and its vLLM logits processor do not).", "", "```python",
            "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
            f'tok = AutoTokenizer.from_pretrained("{c.name}")',
            f'model = AutoModelForCausalLM.from_pretrained("{c.name}")',
            'ids = tok.apply_chat_template([{"role": "user", "content": "Hello!"}], add_generation_prompt=True, '
            'return_tensors="pt")',
            "print(tok.decode(model.generate(ids, max_new_tokens=256)[0, ids.shape[1]:], "
            "skip_special_tokens=True))", "```", ""]


def _data(c: CardInputs) -> list[str]:
    out = ["## Training data", ""]
    if c.table1:
        out += [f"Table 1 (counted in {c.table1['unit']}):", "", "| source | examples | avg input | avg output | "
                "total tokens |", "|---|---:|---:|---:|---:|"]
        rows = list(c.table1["sources"].items()) + [("**total**", c.table1["total"])]
        out += [f"| {n} | {d['examples']:,} | {d['avg_input_tokens']:,.1f} | {d['avg_output_tokens']:,.1f} | "
                f"{d['total_tokens']:,} |" for n, d in rows]
        out.append("")
    else:
        out += ["The training data file was not found at export time; the counts below are the training run's.", ""]
    report = c.data_report
    dropped = {**report.get("read", {}).get("dropped", {}), **report.get("dropped", {})}
    out += [f"Trained on {report.get('kept', '?')} examples ({report.get('trimmed', 0)} trimmed to the context; "
            f"dropped: {', '.join(f'{k}: {v}' for k, v in dropped.items()) or 'none'}), "
            f"{_count(report.get('supervised_tokens'))} supervised tokens.", ""]
    if c.origins:
        out += ["Provenance (rows per origin, the 5 largest of each source):", ""]
        for source, origins in sorted(c.origins.items()):
            top = ", ".join(f"{o} {n}" for o, n in origins.most_common(5))
            more = f" and {len(origins) - 5} more" if len(origins) > 5 else ""
            out.append(f"- {source}: {top}{more}")
        out.append("")
    if c.licenses:
        out += [f"Licences of the training rows (the card's licence, `{c.license}`, is the most restrictive):", ""]
        out += [f"- {name}: {n}" for name, n in sorted(c.licenses.items(), key=lambda kv: -kv[1])]
        out.append("")
    if c.base_license:
        out += [f"The base model's own terms (`{c.base_license}`) apply as well.", ""]
    return out


_SHOWN = ("lr", "lr_end", "epochs", "batch_size", "weight_decay", "beta1", "beta2", "max_grad_norm",
          "residual_dropout", "new_token_lr", "chat", "lora", "max_chars", "max_examples", "seed")


def _recipe(c: CardInputs) -> list[str]:
    differs = {k: (c.config.get(k), c.paper.get(k)) for k in sorted(set(c.config) | set(c.paper))
               if k not in ("model", "data", "out") and c.config.get(k) != c.paper.get(k)}
    out = ["## Recipe", "", "| setting | this model | the paper's |", "|---|---|---|"]
    for key in _SHOWN:
        if key in c.config or key in c.paper:
            mine, paper = c.config.get(key), c.paper.get(key)
            flag = " (differs)" if key in differs else ""
            out.append(f"| {key} | `{_short(mine)}`{flag} | `{_short(paper)}` |")
    other = [k for k in differs if k not in _SHOWN]
    if other:
        out += ["", "Also different from the defaults: " + ", ".join(f"{k} = `{_short(differs[k][0])}`" for k in other)]
    return out + [""]


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _released(c: CardInputs) -> list[str]:
    ck = c.checkpoint
    out = ["## Released checkpoint", "", f"Epoch {ck.get('epoch', '?')} (step {ck.get('global_step', '?')})."]
    sel = c.selection
    if sel:
        scores = ", ".join(f"{name} {s.get('score', float('nan')):.3f}" for name, s in sel.get("scores", {}).items())
        judge = sel.get("judge", {}).get("name") or sel.get("judge", {}).get("model", "?")
        out.append(f"Chosen by `lima-align select` ({sel.get('method')}, judge {judge}) among epochs "
                   f"{sel.get('epochs')}: {sel.get('best')} scored highest ({scores}); ties go to the earlier "
                   f"epoch.")
    else:
        out.append("Not chosen by checkpoint selection (the paper picks among epochs 5-10 by a dev-set judge: "
                   "`lima-align select`); this is the checkpoint that was exported.")
    return out + [""]


def _evaluation(c: CardInputs) -> list[str]:
    if not c.evaluation:
        return []
    return ["## Evaluation", "", "From `lima-align report` (95% intervals; n = prompts x samples):", "",
            *[f"- {line}" for line in c.evaluation], ""]
