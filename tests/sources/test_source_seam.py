"""The source seam: the registry, recipe options -> typed configs, and curate_to_files against the CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from lima_align.cli import build_parser, main
from lima_align.cli.curate import config_from_args
from lima_align.config import ConfigError
from lima_align.errors import LimaError
from lima_align.sources import (SOURCES, NothingKept, curate_to_files, default_report, get_source, option_names,
                                source_config)
from lima_align.sources.stackexchange import StackExchangeConfig, total_bytes
from lima_align.sources.wikihow import WikiHowConfig

REPO = Path(__file__).resolve().parents[2]
COMMANDS = ("stackexchange", "wikihow", "reddit", "natural-instructions", "authored", "dialogue")
POSITIONAL = {"stackexchange": "paths", "dialogue": "dumps"}  # the others: "inputs"

# (command, recipe options as a recipe writes them, the same options as a command line)
EQUIVALENT = [
    ("stackexchange", {"min-score": 3, "min-chars": 400, "no-progress": True, "site": ["beer", "coffee"],
                       "allow-first-person": True, "site-groups": "groups.csv", "workers": 4, "tau": 2.5},
     ["--min-score", "3", "--min-chars", "400", "--no-progress", "--site", "beer", "--site", "coffee",
      "--allow-first-person", "--site-groups", "groups.csv", "--workers", "4", "--tau", "2.5"]),
    ("wikihow", {"n": 8, "min-chars": 300, "index": "index.csv", "category-table": "t.csv",
                 "no-uncategorized": True, "seed": 1},
     ["-n", "8", "--min-chars", "300", "--index", "index.csv", "--category-table", "t.csv", "--no-uncategorized",
      "--seed", "1"]),
    ("reddit", {"subreddit": "askreddit", "max-candidates": 210, "max-words": 300, "strict": True},
     ["--subreddit", "askreddit", "--max-candidates", "210", "--max-words", "300", "--strict"]),
    ("natural-instructions", {"tasks": 7, "categories": "cats.txt", "seed": 3},
     ["--tasks", "7", "--categories", "cats.txt", "--seed", "3"]),
    ("authored", {"license": "CC BY 4.0", "min-words": 20}, ["--license", "CC BY 4.0", "--min-words", "20"]),
    ("dialogue", {"min-turns": 6}, ["--min-turns", "6"]),
]


def parsed_config(command: str, *options: str) -> Any:
    args = build_parser().parse_args(["curate", command, "some/input", "--out", "x.jsonl", *options])
    return config_from_args(args, command, POSITIONAL.get(command, "inputs"))


def test_registry_names_every_command() -> None:
    assert tuple(SOURCES) == COMMANDS
    for command, source in SOURCES.items():
        assert source.name == command and get_source(command) is source
        fields = {f.name: f.type for f in dataclasses.fields(source.config_type)}
        assert all(fields[target] in (bool, "bool") for target in source.negated.values()), command
    with pytest.raises(LimaError, match="unknown source 'twitter'.*stackexchange, wikihow"):
        get_source("twitter")


@pytest.mark.parametrize("command", COMMANDS)
def test_command_options_are_the_config_fields(command: str) -> None:
    """Every option of the command is a config option and the reverse; the command's defaults are the config's."""
    args = build_parser().parse_args(["curate", command, "some/input", "--out", "x.jsonl"])
    dests = set(vars(args)) - {"func", "source", "command", "debug", "out", "report",
                               POSITIONAL.get(command, "inputs")}
    assert {d.replace("_", "-") for d in dests} == set(option_names(command))
    assert config_from_args(args, command, POSITIONAL.get(command, "inputs")) == get_source(command).config_type()


@pytest.mark.parametrize("command, options, argv", EQUIVALENT, ids=[c for c, _, _ in EQUIVALENT])
def test_recipe_options_make_the_command_line_config(command: str, options: dict, argv: list[str]) -> None:
    from_recipe = source_config(command, options, "recipe")
    assert from_recipe == parsed_config(command, *argv)
    assert from_recipe != get_source(command).config_type()  # the options took effect
    underscored = {k.replace("-", "_"): v for k, v in options.items()}
    assert source_config(command, underscored, "recipe") == from_recipe


def test_negated_flags_and_typed_values() -> None:
    cfg = source_config("stackexchange", {"min-score": "3", "no-progress": True, "allow-references": "yes",
                                          "site": "beer"}, "recipe")
    assert (cfg.min_score, cfg.progress, cfg.drop_references, cfg.drop_first_person) == (3, False, False, True)
    assert cfg.site == ["beer"] and cfg.selection().references is False and cfg.selection().keep_per_site == 200
    assert source_config("wikihow", {"no-uncategorized": False}, "recipe").uncategorized is True
    assert source_config("reddit", {"subreddit": "askreddit"}, "recipe").limit == 210
    assert source_config("reddit", {}, "recipe").limit == 450


@pytest.mark.parametrize("recipe", sorted((REPO / "configs" / "runs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_options_are_valid(recipe: Path) -> None:
    specs = yaml.safe_load(recipe.read_text())["sources"]
    assert specs
    for spec in specs:
        cfg = source_config(spec["command"], spec.get("options") or {}, f"source {spec['name']!r}")
        assert isinstance(cfg, get_source(spec["command"]).config_type)


@pytest.mark.parametrize("command, options, match", [
    ("wikihow", {"min-scor": 3}, r"recipe \(curate wikihow\): unknown option 'min-scor' \(valid: category-table, "
                                 r"index, min-chars, n, no-uncategorized, seed, strict\)"),
    ("stackexchange", {"progress": False}, r"curate stackexchange\): unknown option 'progress'"),
    ("stackexchange", {"min-score": "lots"}, r"curate stackexchange\): 'min-score' expects int, got 'lots'"),
    ("stackexchange", {"tau": 0}, r"curate stackexchange\): tau must be positive"),
    ("stackexchange", {"no-progress": "maybe"}, r"curate stackexchange\): 'no-progress' expects bool"),
    ("wikihow", {"index": ["a.csv", "b.csv"]}, r"curate wikihow\): 'index' takes one value"),
    ("reddit", {"subreddit": "aww"}, r"curate reddit\): subreddit must be one of writingprompts, askreddit"),
    ("reddit", {"min-words": 10, "min_words": 20}, r"curate reddit\): 'min_words' and 'min-words' set the same"),
    ("natural-instructions", {"out": "x.jsonl"}, r"curate natural-instructions\): 'out' is set by the run"),
    ("dialogue", {"report": "r.json"}, r"curate dialogue\): 'report' is set by the run"),
])
def test_bad_options_name_the_source_and_key(command: str, options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        source_config(command, options, "recipe")


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_stackexchange_files_and_cli_identical(shared_data: Path, tmp_path: Path) -> None:
    paths = [str(shared_data / "stackexchange" / "beer.stackexchange.com")]
    out = tmp_path / "se.jsonl"
    cfg = source_config("stackexchange", {"min-score": 3, "min-chars": 400, "no-progress": True}, "recipe")
    done: list[int] = []
    curated = curate_to_files("stackexchange", paths, cfg, out, progress=done.append)
    assert sum(done) == total_bytes(paths, cfg) > 0
    report = json.loads(default_report(out).read_text())
    assert report == curated.report and rows(out) == [ex.to_dict() for ex in curated.examples]
    totals = report["totals"]
    assert totals["examples_written"] == len(rows(out)) > 0
    assert totals["questions_kept"] + sum(totals["questions_rejected"].values()) == totals["questions_considered"]
    library = (out.read_bytes(), default_report(out).read_bytes())
    out.unlink()
    default_report(out).unlink()
    assert main(["curate", "stackexchange", *paths, "--out", str(out), "--min-score", "3", "--min-chars", "400",
                 "--no-progress"]) == 0
    assert (out.read_bytes(), default_report(out).read_bytes()) == library


@pytest.mark.parametrize("command, inputs, options, argv", [
    ("wikihow", ["wikihow/message_drift_wikihow_steps_conditions.jsonl"],
     {"n": 8, "min-chars": 300, "index": "wikihow/wikihowagent_wikihow_tutorials_index.csv"},
     ["-n", "8", "--min-chars", "300", "--index", "wikihow/wikihowagent_wikihow_tutorials_index.csv"]),
    ("natural-instructions", ["natural_instructions"], {"tasks": 1, "seed": 2}, ["--tasks", "1", "--seed", "2"]),
    ("reddit", ["writingprompts/writingprompts_100.csv"], {"max-words": 300}, ["--max-words", "300"]),
])
def test_single_pass_sources_files_and_cli_identical(shared_data: Path, tmp_path: Path, monkeypatch, command: str,
                                                     inputs: list[str], options: dict, argv: list[str]) -> None:
    monkeypatch.chdir(shared_data)  # relative paths, as a recipe gives them
    out, report_path = tmp_path / "c.jsonl", tmp_path / "audit.json"
    curated = curate_to_files(command, inputs, source_config(command, options, "recipe"), out, report_path)
    report = json.loads(report_path.read_text())
    assert report == curated.report and report["source"] == command
    assert report["kept"] == len(rows(out)) == len(curated.examples) > 0
    assert report["kept"] + sum(report["rejected"].values()) + sum(report["skipped_bad"].values()) \
        == report["considered"] > report["kept"]
    assert report["settings"]["out"] == str(out) and report["settings"]["inputs"] == inputs
    library = (out.read_bytes(), report_path.read_bytes())
    out.unlink()
    report_path.unlink()
    assert main(["curate", command, *inputs, "--out", str(out), "--report", str(report_path), *argv]) == 0
    assert (out.read_bytes(), report_path.read_bytes()) == library


def test_nothing_kept_writes_the_report_and_raises(shared_data: Path, tmp_path: Path) -> None:
    task = shared_data / "natural_instructions" / "task318_stereoset_classification_gender.json"
    out = tmp_path / "none.jsonl"
    with pytest.raises(NothingKept, match=r"no examples kept from 1 considered .*none\.report\.json") as info:
        curate_to_files("natural-instructions", [task], source_config("natural-instructions", {}, "r"), out)
    assert info.value.command == "natural-instructions" and info.value.report_path == tmp_path / "none.report.json"
    assert json.loads(info.value.report_path.read_text())["rejected"] == {"not_generation_category": 1}
    assert not out.exists()
    coffee = [shared_data / "stackexchange" / "coffee.stackexchange.com"]
    strict = StackExchangeConfig(min_score=100000)
    with pytest.raises(NothingKept, match=r"from 225 questions considered .*no_answer_min_score"):
        curate_to_files("stackexchange", coffee, strict, out)
    assert not out.exists()
    assert curate_to_files("stackexchange", coffee, strict, out, allow_empty=True).examples == []
    assert out.read_text() == ""


def test_curate_to_files_checks_the_config_type(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="takes a StackExchangeConfig, got WikiHowConfig"):
        curate_to_files("stackexchange", ["x"], WikiHowConfig(), tmp_path / "x.jsonl")
    assert default_report("a/b.jsonl") == Path("a/b.report.json") and default_report("c") == Path("c.report.json")
