"""``lima-align export`` on a checkpoint trained here: the release folder loads with plain transformers and stops at
EOT by itself; the card renders the run's Table 1, licences, recipe and released epoch; the Hub push goes through
the real ``huggingface_hub`` client to a local stand-in of the Hub's API."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml
from safetensors.torch import load_file

from lima_align.chat_format import RUN_INFO, load_chat_format, render
from lima_align.errors import LimaError
from lima_align.export.card import hub_license, strictest_license
from lima_align.export.release import ExportOptions, export_checkpoint


@pytest.fixture(scope="module")
def release(eot_checkpoint, tmp_path_factory):
    folder, prompts = eot_checkpoint
    out = tmp_path_factory.mktemp("export") / "tiny-lima"
    export_checkpoint(folder, out, log=lambda s: None)
    return folder, prompts, out


def test_the_release_loads_in_plain_transformers_and_stops_at_eot_by_itself(release):
    """Plain ``generate`` (greedy, no eos_token_id passed) on the release gives our engine's greedy tokens on the
    checkpoint, and ends exactly where the engine saw EOT: the release's generation config stops the turn."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lima_align.generate.decoding import SamplingConfig
    from lima_align.generate.engine import HFEngine, Request
    from lima_align.generate.loading import load_for_generation

    folder, prompts, out = release
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    fmt = load_chat_format(out)
    eot = tokenizer.convert_tokens_to_ids(fmt.eot)
    assert eot == len(tokenizer) - 2  # the added EOT (then pad), not an unknown token
    greedy = SamplingConfig(temperature=0, repetition_penalty=1.0, max_new_tokens=80)
    engine = HFEngine(*load_for_generation(str(folder), device="cpu"), batch_size=4)
    expected = engine.generate([Request(str(i), [p]) for i, p in enumerate(prompts)], greedy)
    stopped = 0
    for prompt, want in zip(prompts, sorted(expected, key=lambda c: c.index)):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)["input_ids"]
        assert ids[0].tolist() == render([prompt], tokenizer, fmt, add_generation_prompt=True).input_ids
        with torch.no_grad():
            new = model.generate(ids, do_sample=False, max_new_tokens=80)[0, ids.shape[1]:].tolist()
        if want.finish_reason == "eot":
            assert new == want.token_ids + [eot] or new == want.token_ids, (new, want.token_ids)
            assert new[-1] == eot
            stopped += 1
        else:
            assert new[:len(want.token_ids)] == want.token_ids
    assert stopped >= 1, [c.finish_reason for c in expected]
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["eos_token_id"][0] == eot and (gen["temperature"], gen["top_p"], gen["do_sample"]) == (0.7, 0.9, True)


def test_the_release_holds_the_weights_and_nothing_for_resuming(release):
    folder, _, out = release
    mine, theirs = load_file(out / "model.safetensors"), load_file(folder / "model.safetensors")
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "generation_config.json", "tokenizer.json", "chat_format.json", "README.md",
            "lima-export.json"} <= names
    assert not names & {"optimizer.pt", "scheduler.pt", "trainer_state.json", "training_args.bin", RUN_INFO}
    assert not [n for n in names if n.startswith("rng_state") or n.startswith(".")]


def test_the_card_renders_the_runs_table1_recipe_and_epoch(release, lima_train):
    from transformers import AutoTokenizer

    from lima_align.curate.table1 import TokenizerCounter, table1
    from lima_align.train.data import load_examples

    folder, _, out = release
    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["base_model"] == "tiny" and front["library_name"] == "transformers"
    assert front["license"] == "other" and "lima-align" in front["tags"]  # the LIMA rows carry no licence
    examples, _ = load_examples(str(lima_train), None, 4, 260)
    stats = table1(examples, TokenizerCounter(AutoTokenizer.from_pretrained(folder), "x")).to_dict()
    total = stats["total"]
    assert (f"| **total** | {total['examples']:,} | {total['avg_input_tokens']:,.1f} | "
            f"{total['avg_output_tokens']:,.1f} | {total['total_tokens']:,} |") in card
    assert total["examples"] == 4
    assert "| lr | `0.01` (differs) | `1e-05` |" in card and "| beta2 | `0.95` | `0.95` |" in card
    marker = json.loads((folder / "lima-complete.json").read_text())
    assert f"Epoch {marker['epoch']} (step {marker['global_step']})" in card
    assert "Not chosen by checkpoint selection" in card


def test_the_licence_is_the_strictest_of_the_rows():
    se, wikihow = "CC BY-SA 4.0", "CC BY-NC-SA 3.0"
    ni = "Apache-2.0 (Super-NaturalInstructions task definitions; instance licence not stated)"
    reddit = "Reddit user content (Reddit User Agreement; no open licence)"
    assert [hub_license(x)[1] for x in (se, wikihow, ni, "CC BY-SA 2.5", "CC BY 4.0", reddit)] == \
        ["cc-by-sa-4.0", "cc-by-nc-sa-3.0", "apache-2.0", "cc-by-sa-2.5", "cc-by-4.0", "other"]
    assert strictest_license({se: 10, ni: 3}) == "cc-by-sa-4.0"
    assert strictest_license({se: 10, wikihow: 1, ni: 3}) == "cc-by-nc-sa-3.0"
    assert strictest_license({"CC BY-SA 3.0": 1, "CC BY-SA 4.0": 1}) == "cc-by-sa-4.0"
    assert strictest_license({se: 5, reddit: 1}) == "other" and strictest_license({}) == "other"


def test_a_mixed_licence_run_with_a_selection_and_a_report(eot_checkpoint, tmp_path):
    """The card of a run on rows from three sources: licence, provenance counts, the selection, the report."""
    from lima_align.report.text import summary_lines

    folder, _ = eot_checkpoint
    copy = tmp_path / "checkpoint-9"
    shutil.copytree(folder, copy)
    rows = [{"id": f"r{i}", "source": src, "conversations": [f"Question {i} about {src}?", f"Answer {i}."],
             "meta": {"origin": origin, "license": lic}}
            for i, (src, origin, lic) in enumerate([("stackexchange", "cooking", "CC BY-SA 4.0")] * 3
                                                  + [("stackexchange", "physics", "CC BY-SA 3.0")]
                                                  + [("wikihow", "Food", "CC BY-NC-SA 3.0")] * 2)]
    data = tmp_path / "mix.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = json.loads((copy / RUN_INFO).read_text())
    run["config"].update(data=str(data), max_examples=None, max_chars=None)
    (copy / RUN_INFO).write_text(json.dumps(run))
    select = tmp_path / "select.json"
    select.write_text(json.dumps({"best": "epoch-9", "checkpoint": str(copy), "method": "likert", "epochs": [5, 10],
                                  "scores": {"epoch-5": {"score": 3.1}, "epoch-9": {"score": 3.4}},
                                  "judge": {"name": "local-smollm2"}}))
    report = tmp_path / "report"
    report.mkdir()
    summary = [{"protocol": "likert", "a": "lima", "b": "", "judge": "gpt-4", "likert": {"mean": 3.4, "ci": [3.1, 3.7],
                                                                   "design": "10 prompts x 1", "missing": 0}}]
    (report / "summary.json").write_text(json.dumps(summary))
    out = export_checkpoint(tmp_path, tmp_path / "rel", ExportOptions(select=str(select), report=str(report)),
                            log=lambda s: None)
    card = (out / "README.md").read_text()
    assert yaml.safe_load(card.split("---")[1])["license"] == "cc-by-nc-sa-3.0"
    assert "- stackexchange: cooking 3, physics 1" in card and "- wikihow: Food 2" in card
    assert "- CC BY-SA 4.0: 3" in card and "- CC BY-NC-SA 3.0: 2" in card
    assert "| stackexchange | 4 |" in card and "| wikihow | 2 |" in card
    assert "epoch-9 scored highest (epoch-5 3.100, epoch-9 3.400)" in card and "judge local-smollm2" in card
    assert f"- {summary_lines(summary)[0]}" in card
    assert json.loads((out / "lima-export.json").read_text())["checkpoint"] == str(copy.resolve())


def test_refusals_name_what_is_wrong(eot_checkpoint, tmp_path):
    folder, _ = eot_checkpoint
    with pytest.raises(LimaError, match="neither a checkpoint"):
        export_checkpoint(tmp_path, tmp_path / "x", log=lambda s: None)
    (tmp_path / "taken").mkdir()
    with pytest.raises(LimaError, match="--overwrite"):
        export_checkpoint(folder, tmp_path / "taken", log=lambda s: None)
    with pytest.raises(LimaError, match="GGUF"):
        export_checkpoint(folder, tmp_path / "y", ExportOptions(adapter=True, gguf="f16"), log=lambda s: None)
    with pytest.raises(LimaError, match="no summary.json"):
        export_checkpoint(folder, tmp_path / "z", ExportOptions(report=str(tmp_path)), log=lambda s: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no half-written (hidden) folder left behind


def test_push_to_hub_uploads_the_release_through_the_real_client(release, tmp_path, monkeypatch):
    import threading

    import uvicorn

    from lima_align.export.hub import push_folder

    from .hub_standin import hub_app

    _, _, out = release
    app = hub_app(tmp_path / "hub", token="hf_test")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    try:
        with pytest.raises(LimaError, match="hf auth login"):
            push_folder(out, "alice/tiny-lima", token="wrong", endpoint=endpoint)
        url = push_folder(out, "alice/tiny-lima", private=True, token="hf_test", endpoint=endpoint)
    finally:
        server.should_exit = True
        thread.join(10)
    stored = tmp_path / "hub" / "alice" / "tiny-lima"
    assert url.startswith(endpoint) and "/commit/" in url
    sent = {p.name for p in stored.iterdir() if not p.name.startswith(".")}
    assert sent == {p.name for p in out.iterdir()}
    assert all((stored / n).read_bytes() == (out / n).read_bytes() for n in sent)
    assert json.loads((stored / ".private").read_text()) is True
    assert (stored / ".commit").read_text() == "lima-align export: tiny-lima"
    with pytest.raises(LimaError, match="owner/name"):
        push_folder(out, "no-owner", token="hf_test", endpoint=endpoint)
