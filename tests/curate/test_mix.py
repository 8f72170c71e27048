"""The mix, built from real candidates that the curate commands produce here from ../shared/data.

Candidates: Stack Exchange (beer + coffee dumps, with the paper's filters and with them off), wikiHow, r/WritingPrompts,
Super-NaturalInstructions, and the LIMA training file standing in for the hand-written ("authored") examples.
Held out: 50 dev prompts from the LIMA file and the 80 Vicuna questions as test prompts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lima_align.config import load_config
from lima_align.conversation import Example
from lima_align.curate.dedup import DedupConfig, Signer
from lima_align.curate.mix import InputSpec, MixConfig, build_mix, output_paths, write_mix
from lima_align.curate.strategies import lima_reason, response_chars

REPO = Path(__file__).resolve().parents[2]
MIX_CONFIGS = sorted((REPO / "configs" / "mix").glob("*.yaml"))
PLANTED_ID = "planted-near-dup-of-test"


def _curate(argv: list[str]) -> None:
    from lima_align.cli import curate as curate_cli

    import argparse

    parser = argparse.ArgumentParser()
    curate_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["curate", *argv])
    assert args.func(args) == 0, argv


@pytest.fixture(scope="module")
def cands(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Candidate files produced by the real curate commands, plus one row planted near a test prompt."""
    d, out = shared_data, tmp_path_factory.mktemp("candidates")
    se = [str(d / "stackexchange" / s) for s in ("beer.stackexchange.com", "coffee.stackexchange.com")]
    _curate(["stackexchange", *se, "--out", str(out / "stackexchange.jsonl"), "--no-progress"])
    _curate(["stackexchange", *se, "--out", str(out / "se-unfiltered.jsonl"), "--no-progress", "--min-score", "0",
             "--min-chars", "0", "--max-chars", "1000000000", "--allow-first-person", "--allow-references",
             "--per-group", "100000"])
    _curate(["wikihow", str(d / "wikihow" / "message_drift_wikihow_steps_conditions.jsonl"), "--index",
             str(d / "wikihow" / "wikihowagent_wikihow_tutorials_index.csv"), "--out", str(out / "wikihow.jsonl")])
    _curate(["reddit", str(d / "writingprompts" / "writingprompts_100.csv"), "--out",
             str(out / "writingprompts.jsonl")])
    _curate(["natural-instructions", str(d / "natural_instructions"), "--out",
             str(out / "natural_instructions.jsonl")])
    # A training candidate that is a light edit of Vicuna question 1 (case, punctuation, one word changed).
    planted = Example(PLANTED_ID, ["how can I improve my own time-management skills??",
                                   "Start by writing down everything you do for one week. " * 20], "authored",
                      {"license": "CC BY-NC-SA 4.0"})
    (out / "planted.jsonl").write_text(json.dumps(planted.to_dict()) + "\n")
    return out


def recipe(cands: Path, shared: Path, **changes) -> MixConfig:
    lima = str(shared / "lima" / "lima_train_instruction_response.jsonl")
    authored = dict(path=lima, source="authored", license="CC BY-NC-SA 4.0")
    cfg = MixConfig(
        inputs=[InputSpec(name="stackexchange-stem", path="stackexchange.jsonl", where={"group": "STEM"}, n=200),
                InputSpec(name="stackexchange-other", path="stackexchange.jsonl", where={"group": "Other"}, n=200),
                InputSpec(name="wikihow", path="wikihow.jsonl", n=200),
                InputSpec(name="writingprompts", path="writingprompts.jsonl", n=150),
                InputSpec(name="natural-instructions", path="natural_instructions.jsonl", n=50),
                InputSpec(name="planted", path="planted.jsonl", n=1),
                InputSpec(name="authored", n=200, **authored)],
        dev=[InputSpec(name="authored-dev", n=50, **authored)],
        test=[InputSpec(name="vicuna", path=str(shared / "eval" / "vicuna_bench" / "question.jsonl"), n=80)],
        base_dir=str(cands))
    cfg.diversity.enabled = False
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


@pytest.fixture(scope="module")
def built(cands: Path, shared_data: Path):
    return build_mix(recipe(cands, shared_data))


def _draws(result) -> dict[str, dict]:
    return {d["input"]: d for d in result.selection["draws"] if "input" in d}


def test_counts_per_source_are_as_asked_or_a_reported_shortfall(built) -> None:
    draws = _draws(built)
    shortfalls = {s["input"]: s for s in built.shortfalls}
    for name, d in draws.items():
        if d["selected"] == d["requested"]:
            assert name not in shortfalls
        else:  # never filled from elsewhere: the pool was smaller than asked, and all of it was taken
            assert shortfalls[name]["selected"] == d["selected"] == d["available"] < d["requested"]
    assert draws["authored"]["selected"] == 200 and draws["authored-dev"]["selected"] == 50
    assert draws["vicuna"]["selected"] == 80
    assert draws["stackexchange-stem"]["selected"] == 0  # beer and coffee are both "Other" sites
    assert 0 < draws["stackexchange-other"]["selected"] < 200
    train = built.splits["train"]
    assert len(train) == sum(d["selected"] for d in draws.values() if d["split"] == "train")
    by_input = {name: sum(1 for ex in train if ex.meta["mix"]["input"] == name) for name in draws}
    assert all(by_input[n] == d["selected"] for n, d in draws.items() if d["split"] == "train")


def test_a_planted_near_duplicate_of_a_test_prompt_is_removed(built) -> None:
    train_ids = {ex.id for ex in built.splits["train"]}
    assert PLANTED_ID not in train_ids
    removal = next(r for r in built.dedup["removed"]["train"] if r["id"] == PLANTED_ID)
    assert removal["reason"] == "near_dup_heldout_prompt"
    vicuna_1 = next(ex for ex in built.splits["test"] if ex.prompt.startswith("How can I improve my time"))
    assert removal["of"] == vicuna_1.id and removal["similarity"] >= 0.7


def test_no_training_prompt_is_a_near_duplicate_of_a_dev_or_test_prompt(built) -> None:
    cfg = DedupConfig()
    signer = Signer(cfg.num_perm, cfg.seed, cfg.shingle, cfg.unit)
    held = signer.signatures([ex.prompt for ex in built.splits["test"] + built.splits["dev"]])
    train = signer.signatures([ex.prompt for ex in built.splits["train"]])
    similarity = (train[:, None, :] == held[None, :, :]).mean(axis=2)  # MinHash Jaccard estimate, all pairs
    assert similarity.max() < cfg.threshold
    # the 50 dev rows came from the same file as the authored training rows: they were removed from training
    assert built.dedup["removed_by_reason"]["exact_dup_heldout_prompt"] >= 50


def test_output_is_deterministic_for_a_fixed_seed(cands: Path, shared_data: Path, tmp_path: Path) -> None:
    texts = []
    for seed, name in ((0, "a"), (0, "b"), (1, "c")):
        cfg = recipe(cands, shared_data, seed=seed)
        write_mix(build_mix(cfg), cfg, tmp_path / name / "train.jsonl")
        texts.append(tuple((tmp_path / name / f"train{s}.jsonl").read_bytes() for s in ("", ".dev", ".test")))
    assert texts[0] == texts[1]
    assert texts[0][1] != texts[2][1]  # another seed draws another dev set


def _pool_of(cands: Path, shared: Path, inputs: list[InputSpec], strategy: str):
    cfg = recipe(cands, shared, inputs=inputs, strategy=strategy)
    result = build_mix(cfg)
    return result, [ex for ex in result.splits["train"]]


def test_longest_really_returns_the_k_longest(cands: Path, shared_data: Path) -> None:
    spec = InputSpec(name="authored", path=str(shared_data / "lima" / "lima_train_instruction_response.jsonl"),
                     source="authored", n=100)
    result, chosen = _pool_of(cands, shared_data, [spec], "longest")
    pool = next(p for p in result.pools if p.split == "train").rows
    assert len(chosen) == 100 and all(ex.meta["mix"]["strategy"] == "longest" for ex in chosen)
    chosen_ids = {ex.id for ex in chosen}
    rest = [response_chars(ex) for ex in pool if ex.id not in chosen_ids]
    assert min(response_chars(ex) for ex in chosen) >= max(rest)


def test_lima_applies_the_paper_filters_and_unfiltered_does_not(cands: Path, shared_data: Path) -> None:
    spec = InputSpec(name="se", path="se-unfiltered.jsonl", n=100)
    _, lima = _pool_of(cands, shared_data, [spec], "lima")
    result, unfiltered = _pool_of(cands, shared_data, [spec], "unfiltered")
    assert lima and all(lima_reason(ex) is None for ex in lima)
    draw = _draws(result)["se"]
    assert len(unfiltered) == 100 and sum(draw["audit"]["would_fail_lima_filters"].values()) > 50
    assert sum(1 for ex in unfiltered if lima_reason(ex) is not None) > 50


def test_random_is_a_seeded_uniform_draw(cands: Path, shared_data: Path) -> None:
    spec = InputSpec(name="wikihow", path="wikihow.jsonl", n=30)
    _, first = _pool_of(cands, shared_data, [spec], "random")
    _, again = _pool_of(cands, shared_data, [spec], "random")
    assert [e.id for e in first] == [e.id for e in again] and len({e.id for e in first}) == 30


def test_every_shipped_mix_yaml_loads() -> None:
    assert MIX_CONFIGS, "configs/mix/*.yaml"
    for path in MIX_CONFIGS:
        cfg = load_config(MixConfig, path)
        assert cfg.inputs and all(s.n > 0 for s in cfg.inputs), path


def test_paper_preset_is_the_papers_mix() -> None:
    cfg = load_config(MixConfig, REPO / "configs" / "mix" / "lima-paper.yaml")
    assert [(s.name, s.n) for s in cfg.inputs] == [
        ("stackexchange-stem", 200), ("stackexchange-other", 200), ("wikihow", 200), ("writingprompts", 150),
        ("natural-instructions", 50), ("authored-train", 200)]
    assert sum(s.n for s in cfg.dev) == 50 and sum(s.n for s in cfg.test) == 300 and cfg.strategy == "lima"
    assert yaml.safe_load((REPO / "configs" / "mix" / "lima-paper.yaml").read_text())["seed"] == 0


def test_cli_writes_the_sets_report_and_map(cands: Path, shared_data: Path, tmp_path: Path) -> None:
    from lima_align.cli import mix as mix_cli

    import argparse

    cfg = recipe(cands, shared_data)
    for spec in cfg.inputs:  # a smaller set: embedding prompts on 2 shared CPU cores takes ~25 prompts/s
        spec.n = min(spec.n, 40)
    from lima_align.config import to_dict

    doc = to_dict(cfg)
    doc["diversity"]["enabled"] = True
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(doc))
    parser = argparse.ArgumentParser()
    mix_cli.register(parser.add_subparsers(dest="command"))
    out = tmp_path / "mix" / "train.jsonl"
    args = parser.parse_args(["mix", str(tmp_path / "recipe.yaml"), "diversity.clusters=8", "--out", str(out)])
    assert args.func(args) == 0
    paths = output_paths(out)
    report = json.loads(paths["json"].read_text())
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## Table 1: train" in paths["md"].read_text()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == report["counts"]["train"] == report["table1"]["train"]["total"]["examples"]
    families = report["licenses"]["train"]["by_family"]
    assert families["CC BY-SA"] == sum(1 for r in rows if r["source"] == "stackexchange")
    assert families["CC BY-NC-SA"] == sum(1 for r in rows if r["source"] in ("wikihow", "authored")) >= 80
    div = report["diversity"]
    assert div["clusters"] == 8 and 0 < div["largest_cluster_share"] < 1 and 0 < div["mean_pairwise_distance"] < 2
    assert set(div["sources"]) == {r["source"] for r in rows}
